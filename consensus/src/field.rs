//! Whether 32 bytes are the x coordinate of a secp256k1 point, without a
//! square root.
//!
//! An x-only key is valid when x < p and x^3 + 7 is a square modulo p
//! (BIP-340's `lift_x` succeeds). `lift_x` answers that with a square root,
//! an exponentiation of about 270 field multiplications. The Legendre
//! symbol answers it too, and the binary GCD computes it several times
//! faster: this is libsecp256k1's `jacobi64_maybe_var` (its `modinv64`
//! "posdivsteps", Bernstein-Yang safegcd with the Jacobi symbol tracked
//! through each step), which it uses for `fe_is_square_var` but does not
//! export. Like the original it gives up after a bounded number of steps
//! (never seen on random input); the caller then falls back to `lift_x`.
//!
//! Variable time, which is fine: keys in outputs are public.

/// p = 2^256 - 2^32 - 977, little-endian 64-bit limbs.
const P: [u64; 4] = [0xFFFF_FFFE_FFFF_FC2F, u64::MAX, u64::MAX, u64::MAX];

/// 2^256 mod p.
const R: u64 = 0x1_0000_03D1;

/// The bottom 62 bits.
const M62: u64 = u64::MAX >> 2;

/// Steps of 62 posdivsteps before giving up (libsecp256k1's bound: 1,550
/// posdivsteps; 756 are needed at the median).
const JACOBI_ITERATIONS: usize = 25;

/// Whether `x` (big-endian) is the x coordinate of a point on secp256k1:
/// `Some(answer)`, or `None` in the rare case the Legendre symbol did not
/// converge in time (ask `lift_x` then).
#[must_use]
pub fn is_x_coordinate(x: &[u8; 32]) -> Option<bool> {
    let x = limbs(x);
    if !less_than_p(&x) {
        return Some(false);
    }
    let cube = mul_mod(&mul_mod(&x, &x), &x);
    let c = add_small_mod(&cube, 7);
    // x^3 + 7 is never 0 on secp256k1 (it has no point of order two), but
    // 0 would be a square: let lift_x decide rather than assume.
    if c == [0; 4] {
        return None;
    }
    match jacobi(&c) {
        0 => None,
        symbol => Some(symbol == 1),
    }
}

fn limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0; 4];
    for (i, limb) in out.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[start..start + 8]);
        *limb = u64::from_be_bytes(word);
    }
    out
}

fn less_than_p(a: &[u64; 4]) -> bool {
    for i in (0..4).rev() {
        if a[i] != P[i] {
            return a[i] < P[i];
        }
    }
    false
}

/// `a - p` if `a >= p`, else `a` (for `a < 2p`).
fn reduce_once(a: [u64; 4]) -> [u64; 4] {
    if less_than_p(&a) {
        return a;
    }
    let mut out = [0; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(P[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 || b2;
    }
    out
}

/// `a + b mod p` for `a < p` and `b < 2^32 + 977`: the sum stays below 2^256.
fn add_small_mod(a: &[u64; 4], b: u64) -> [u64; 4] {
    reduce_once(add_small(*a, b))
}

/// `a + b` for a sum known to stay below 2^256.
fn add_small(mut a: [u64; 4], b: u64) -> [u64; 4] {
    let mut carry = b;
    for limb in &mut a {
        let (s, c) = limb.overflowing_add(carry);
        *limb = s;
        carry = u64::from(c);
    }
    a
}

/// `a * b mod p` for `a, b < p`.
fn mul_mod(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let mut wide = [0u64; 8];
    for i in 0..4 {
        let mut carry: u128 = 0;
        for j in 0..4 {
            let v = u128::from(wide[i + j]) + u128::from(a[i]) * u128::from(b[j]) + carry;
            wide[i + j] = v as u64;
            carry = v >> 64;
        }
        wide[i + 4] = carry as u64;
    }
    // wide = lo + hi * 2^256 = lo + hi * R (mod p): below 2^256 + 2^289.
    let mut folded = [0u64; 4];
    let mut carry: u128 = 0;
    for i in 0..4 {
        let v = u128::from(wide[i]) + u128::from(wide[i + 4]) * u128::from(R) + carry;
        folded[i] = v as u64;
        carry = v >> 64;
    }
    // carry < 2^34: fold it once more; carry * R < 2^67.
    let mut extra = carry * u128::from(R);
    let mut wrapped = false;
    for limb in &mut folded {
        let v = u128::from(*limb) + (extra & u128::from(u64::MAX));
        *limb = v as u64;
        extra = (extra >> 64) + (v >> 64);
    }
    if extra != 0 {
        wrapped = true;
    }
    if wrapped {
        // Past 2^256 once more: what is left is below 2^67, so adding R
        // cannot wrap again.
        folded = add_small(folded, R);
    }
    reduce_once(folded)
}

/// A number in signed 62-bit limbs (libsecp256k1's `signed62`): the value
/// is the sum of `v[i] * 2^(62 i)`; limbs may be negative.
type Signed62 = [i64; 5];

/// p in signed 62-bit limbs: -(2^32 + 977) + 256 * 2^248.
const P62: Signed62 = [-0x1_0000_03D1, 0, 0, 0, 256];

fn to_signed62(a: &[u64; 4]) -> Signed62 {
    [
        (a[0] & M62) as i64,
        ((a[0] >> 62 | a[1] << 2) & M62) as i64,
        ((a[1] >> 60 | a[2] << 4) & M62) as i64,
        ((a[2] >> 58 | a[3] << 6) & M62) as i64,
        (a[3] >> 56) as i64,
    ]
}

/// The transition matrix of 62 posdivsteps, scaled by 2^62.
struct Transition {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// 62 posdivsteps on the bottom 64 bits of f and g, from `eta`; returns
/// the new eta and the matrix. Bit 0 of `jac` flips each time the Jacobi
/// symbol (g | f) changes sign. (libsecp256k1's `modinv64_posdivsteps_62_var`.)
fn posdivsteps_62(mut eta: i64, f0: u64, g0: u64, jac: &mut u64) -> (i64, Transition) {
    let (mut u, mut v, mut q, mut r) = (1u64, 0u64, 0u64, 1u64);
    let (mut f, mut g) = (f0, g0);
    let mut i: u32 = 62;
    loop {
        // A sentinel bit counts zeros only up to i.
        let zeros = (g | (u64::MAX << i)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        i -= zeros;
        // Dividing g by an odd power of two flips the symbol when f is 3 or 5 mod 8.
        *jac ^= u64::from(zeros) & ((f >> 1) ^ (f >> 2));
        if i == 0 {
            break;
        }
        let w = if eta < 0 {
            eta = -eta;
            std::mem::swap(&mut f, &mut g);
            std::mem::swap(&mut u, &mut q);
            std::mem::swap(&mut v, &mut r);
            // Swapping flips the symbol when both are 3 mod 4.
            *jac ^= (f & g) >> 1;
            // No more than i bits (then it is done), nor eta + 1 (then eta
            // changes sign again): between 1 and 62.
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 63;
            // The multiple of f that cancels up to 6 bottom bits of g.
            (f.wrapping_mul(g).wrapping_mul(f.wrapping_mul(f).wrapping_sub(2))) & m
        } else {
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 15;
            // Up to 4 bits.
            let w = f.wrapping_add((f.wrapping_add(1) & 4) << 1);
            w.wrapping_neg().wrapping_mul(g) & m
        };
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    (eta, Transition { u: u as i64, v: v as i64, q: q as i64, r: r as i64 })
}

/// [f, g] = t [f, g] / 2^62 on the first `len` limbs (libsecp256k1's
/// `modinv64_update_fg_62_var`).
fn update_fg(len: usize, f: &mut Signed62, g: &mut Signed62, t: &Transition) {
    let (u, v, q, r) = (i128::from(t.u), i128::from(t.v), i128::from(t.q), i128::from(t.r));
    let mut cf = u * i128::from(f[0]) + v * i128::from(g[0]);
    let mut cg = q * i128::from(f[0]) + r * i128::from(g[0]);
    // The bottom 62 bits of both are zero by construction.
    cf >>= 62;
    cg >>= 62;
    for i in 1..len {
        let (fi, gi) = (i128::from(f[i]), i128::from(g[i]));
        cf += u * fi + v * gi;
        cg += q * fi + r * gi;
        f[i - 1] = (cf as u64 & M62) as i64;
        g[i - 1] = (cg as u64 & M62) as i64;
        cf >>= 62;
        cg >>= 62;
    }
    f[len - 1] = cf as i64;
    g[len - 1] = cg as i64;
}

/// The Jacobi symbol (x | p) of `0 < x < p`: 1 or -1, or 0 when it did
/// not converge in time (libsecp256k1's `jacobi64_maybe_var`).
fn jacobi(x: &[u64; 4]) -> i32 {
    let mut f = P62;
    let mut g = to_signed62(x);
    let mut len = 5;
    let mut eta: i64 = -1;
    let mut jac: u64 = 0;
    for _ in 0..JACOBI_ITERATIONS {
        let f0 = (f[0] as u64) | ((f[1] as u64) << 62);
        let g0 = (g[0] as u64) | ((g[1] as u64) << 62);
        let (next_eta, t) = posdivsteps_62(eta, f0, g0, &mut jac);
        eta = next_eta;
        update_fg(len, &mut f, &mut g, &t);
        // f = 1 ends it: (g | 1) = 1, so the symbol is what the flips made it.
        if f[0] == 1 && f[1..len].iter().all(|&limb| limb == 0) {
            return if jac & 1 == 0 { 1 } else { -1 };
        }
        if len > 1 && f[len - 1] == 0 && g[len - 1] == 0 {
            len -= 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a * b mod p` by doubling and adding, bit by bit: slow and plainly right.
    fn mul_mod_slow(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
        let add_mod = |x: [u64; 4], y: [u64; 4]| {
            let mut out = [0; 4];
            let mut carry = false;
            for i in 0..4 {
                let (s, c1) = x[i].overflowing_add(y[i]);
                let (s, c2) = s.overflowing_add(u64::from(carry));
                out[i] = s;
                carry = c1 || c2;
            }
            if carry {
                // x + y = out + 2^256 < 2p, so out + R < p.
                add_small(out, R)
            } else {
                reduce_once(out)
            }
        };
        let mut acc = [0; 4];
        for i in (0..256).rev() {
            acc = add_mod(acc, acc);
            if b[i / 64] >> (i % 64) & 1 == 1 {
                acc = add_mod(acc, *a);
            }
        }
        acc
    }

    fn p_minus(k: u64) -> [u64; 4] {
        [P[0] - k, P[1], P[2], P[3]]
    }

    fn bytes(a: &[u64; 4]) -> [u8; 32] {
        let mut out = [0; 32];
        for (i, limb) in a.iter().enumerate() {
            out[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// A deterministic stream of test numbers (SplitMix64).
    fn numbers(seed: u64) -> impl Iterator<Item = [u64; 4]> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        std::iter::from_fn(move || Some([next(), next(), next(), next()]))
    }

    fn edge_cases() -> Vec<[u64; 4]> {
        vec![
            [0; 4],
            [1, 0, 0, 0],
            [2, 0, 0, 0],
            [7, 0, 0, 0],
            [u64::MAX, 0, 0, 0],
            [0, 0, 0, 1 << 63],
            [u64::MAX, u64::MAX, u64::MAX, u64::MAX >> 1],
            p_minus(1),
            p_minus(2),
            p_minus(7),
            p_minus(R),
            [R, 0, 0, 0],
            [R - 1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    }

    #[test]
    fn field_multiplication_matches_double_and_add() {
        let mut values = edge_cases();
        values.extend(numbers(1).take(300).map(reduce_once));
        for a in &values {
            for b in values.iter().take(40) {
                assert_eq!(mul_mod(a, b), mul_mod_slow(a, b), "{a:x?} * {b:x?}");
            }
        }
    }

    #[test]
    fn x_coordinates_match_lift_x() {
        // Random 32-byte strings (about half valid), then values at and
        // around p and small ones.
        let mut xs: Vec<[u8; 32]> = numbers(2).take(20_000).map(|x| bytes(&x)).collect();
        xs.extend(edge_cases().iter().map(bytes));
        xs.extend(numbers(3).take(200).map(|x| bytes(&[x[0], u64::MAX, u64::MAX, u64::MAX])));
        xs.extend((0..64u64).map(|k| bytes(&[P[0].wrapping_add(k).wrapping_sub(32), P[1], P[2], P[3]])));
        xs.extend((0..2_000u64).map(|k| bytes(&[k, 0, 0, 0])));
        let mut undecided = 0;
        let mut valid = 0;
        for x in &xs {
            let expected = secp256k1::XOnlyPublicKey::from_byte_array(x).is_ok();
            match is_x_coordinate(x) {
                Some(answer) => assert_eq!(answer, expected, "{}", hex::encode(x)),
                None => undecided += 1,
            }
            valid += usize::from(expected);
        }
        assert_eq!(undecided, 0, "the Legendre symbol converges on every input here");
        assert!(valid > xs.len() / 3 && valid < xs.len() * 2 / 3, "{valid} of {}", xs.len());
    }

    #[test]
    fn keys_at_and_above_p_are_not_coordinates() {
        assert_eq!(is_x_coordinate(&bytes(&P)), Some(false));
        assert_eq!(is_x_coordinate(&[0xFF; 32]), Some(false));
        // p - 1 is not, per libsecp256k1's lift_x either way.
        assert_eq!(
            is_x_coordinate(&bytes(&p_minus(1))),
            Some(secp256k1::XOnlyPublicKey::from_byte_array(&bytes(&p_minus(1))).is_ok())
        );
    }
}
