//! BIP-340: all 19 published vectors, through secp256k1 and through Cairn's
//! signature check type.

use cairn_consensus::sighash::{is_valid_key, SignatureCheck};
use secp256k1::{schnorr, Keypair, Secp256k1, SecretKey, XOnlyPublicKey};

use crate::support::{read_vector_text, unhex};

#[test]
fn all_bip340_vectors() {
    let text = read_vector_text("bip340/test-vectors.csv");
    let secp = Secp256k1::new();
    let mut cases = 0;
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.splitn(8, ',').collect();
        assert!(fields.len() >= 7, "malformed line {line:?}");
        let (index, secret, public, aux, message, signature, expected) =
            (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6] == "TRUE");
        let public: [u8; 32] = unhex(public).try_into().expect("32-byte key");
        let signature: [u8; 64] = unhex(signature).try_into().expect("64-byte signature");
        let message = unhex(message);

        if !secret.is_empty() {
            let secret = SecretKey::from_slice(&unhex(secret)).expect("valid secret key");
            let keypair = Keypair::from_secret_key(&secp, &secret);
            assert_eq!(keypair.x_only_public_key().0.serialize(), public, "vector {index}: public key");
            let aux: [u8; 32] = unhex(aux).try_into().expect("32-byte aux");
            let produced = secp.sign_schnorr_with_aux_rand(&message, &keypair, &aux);
            assert_eq!(produced.to_byte_array(), signature, "vector {index}: signature");
        }

        let verified = XOnlyPublicKey::from_byte_array(&public).is_ok_and(|key| {
            secp.verify_schnorr(&schnorr::Signature::from_byte_array(signature), &message, &key).is_ok()
        });
        assert_eq!(verified, expected, "vector {index}: verification");

        // Cairn signs 32-byte messages only; those vectors also go through its own check.
        if let Ok(message) = <[u8; 32]>::try_from(message.as_slice()) {
            let check = SignatureCheck { input: 0, message, signature, key: public };
            assert_eq!(check.verify(&secp), expected, "vector {index}: SignatureCheck");
            if !is_valid_key(&public) {
                assert!(!expected, "vector {index}: invalid key cannot verify");
            }
        }
        cases += 1;
    }
    assert_eq!(cases, 19, "every BIP-340 vector was checked");
}
