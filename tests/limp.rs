//! A node that never limps: a panic anywhere stops it cleanly, RPC
//! connections are capped and closed when idle, the open-file limit sizes
//! the connection caps, JSON-RPC 2.0 errors follow the spec, and bad
//! command lines and failed starts leave nothing behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Launch, NodeProcess};

fn address(seed: u8) -> String {
    let secp = secp256k1::Secp256k1::new();
    let key = secp256k1::Keypair::from_seckey_slice(&secp, &[seed; 32]).expect("key");
    cairn_consensus::Address::from_key(
        cairn_consensus::Network::Regtest,
        key.x_only_public_key().0.serialize(),
    )
    .to_string()
}

fn node_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

#[test]
fn a_panic_in_block_connection_stops_the_node_cleanly_and_a_restart_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failpoint = Launch { env: &[("CAIRN_FAILPOINT", "connect-block@5")], ..Launch::default() };
    let mut node = NodeProcess::start_with(dir.path(), &[], failpoint);
    // The fifth block panics while its connection holds the state lock.
    let answer = node.rpc.call("generatetoaddress", json!([10, address(1)]));
    assert!(answer.is_err(), "the call that panicked does not succeed: {answer:?}");
    let status = node.wait_exit(Duration::from_secs(60)).expect("the node stops by itself");
    assert!(!status.success(), "a panic is a failure: {status}");
    let log = node_log(dir.path());
    assert!(log.contains("panic in thread") && log.contains("failpoint connect-block"), "{log}");
    assert!(log.contains("stopped at height 4"), "the stop ran to its end: {log}");
    assert!(!dir.path().join(".cookie").exists(), "the cookie is removed");
    drop(node);
    // Nothing half written: the fifth block's body was stored before its
    // connection panicked, so the restart connects it (as after a crash),
    // and mining goes on from there.
    let node = NodeProcess::start(dir.path(), &[]);
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 5);
    node.rpc.ok("generatetoaddress", json!([3, address(1)]));
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 8);
    assert_eq!(node.rpc.ok("gettxoutsetinfo", json!([]))["txouts"], 8);
    node.stop();
}

#[test]
fn a_panic_in_the_network_task_stops_the_node_instead_of_leaving_it_without_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failpoint = Launch { env: &[("CAIRN_FAILPOINT", "network-task@3")], ..Launch::default() };
    let mut node = NodeProcess::start_with(dir.path(), &[], failpoint);
    let status = node.wait_exit(Duration::from_secs(60)).expect("the node stops by itself");
    assert!(!status.success(), "{status}");
    let log = node_log(dir.path());
    assert!(log.contains("failpoint network-task") && log.contains("stopped at height 0"), "{log}");
    assert!(log.contains("error: panic in thread"), "the exit says why: {log}");
}

/// Sends one keep-alive request on `stream` and reads its whole answer;
/// `None` when the server closed the connection instead.
fn one_request(stream: &mut TcpStream, auth: &str) -> Option<String> {
    use base64::Engine;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAuthorization: Basic {}\r\n\r\n",
        body.len(),
        base64::engine::general_purpose::STANDARD.encode(auth)
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer is small: read until its body is complete.
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned());
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|length| body.len() >= length) {
                return Some(text.into_owned());
            }
        }
    }
}

/// Whether the server closed `stream` (a read returns end of file).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn rpc_connections_are_capped_and_idle_ones_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &["--rpc-max-connections", "16", "--rpc-idle-timeout", "2"]);
    let auth = node.rpc.auth.clone().expect("cookie");
    // 300 clients each make one request and keep the connection open.
    let mut streams: Vec<TcpStream> = (0..300)
        .map(|_| {
            let stream = TcpStream::connect(node.rpc.addr).expect("the kernel accepts");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            stream
        })
        .collect();
    let answered = streams.iter_mut().filter_map(|s| one_request(s, &auth)).count();
    assert!(answered <= 16, "{answered} connections were served at once, over the cap of 16");
    assert!(answered >= 1, "some were served");
    // Held open past the idle timeout, each is closed by the node.
    std::thread::sleep(Duration::from_secs(3));
    let still_open = streams.iter_mut().map(closed).filter(|closed| !closed).count();
    assert_eq!(still_open, 0, "idle connections are closed");
    // And the node serves new clients again, and peers.
    assert_eq!(node.rpc.ok("getblockcount", json!([])), 0);
    // p2p.address is /ip4/<ip>/tcp/<port>/p2p/<id>.
    let p2p = node.p2p_address();
    let parts: Vec<&str> = p2p.split('/').collect();
    let peer = TcpStream::connect(format!("{}:{}", parts[2], parts[4]));
    assert!(peer.is_ok(), "peers still connect");
    node.stop();
}

#[test]
fn the_open_file_limit_is_raised_and_sizes_the_connection_caps() {
    // A soft limit below the hard one is raised to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let low_soft = Launch { wrapper: &["prlimit", "--nofile=200:4096", "--"], ..Launch::default() };
    let node = NodeProcess::start_with(dir.path(), &[], low_soft);
    assert!(
        node_log(dir.path()).contains("open-file limit raised from 200 to 4096"),
        "{}",
        node_log(dir.path())
    );
    node.stop();

    // A hard limit too low for the defaults shrinks the caps and says so.
    let dir = tempfile::tempdir().expect("tempdir");
    let tight = Launch { wrapper: &["prlimit", "--nofile=450", "--"], ..Launch::default() };
    let node = NodeProcess::start_with(dir.path(), &[], tight);
    let log = node_log(dir.path());
    assert!(log.contains("only 450 files can be open at once: inbound peers reduced from 64 to"), "{log}");
    node.stop();

    // One too low to run at all is refused, with the number needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let too_low = Launch { wrapper: &["prlimit", "--nofile=300", "--"], ..Launch::default() };
    let (status, log) = NodeProcess::run_to_exit(dir.path(), &[], too_low, Duration::from_secs(60));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(log.contains("only 300 files can be open at once") && log.contains("needs at least"), "{log}");
    assert!(!dir.path().join(".cookie").exists());
}

#[test]
fn json_rpc_errors_follow_the_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let post = |body: &str| {
        let (status, answer) = node.rpc.post(body.as_bytes(), node.rpc.auth.as_deref()).expect("posted");
        assert_eq!(status, 200, "{body}: HTTP {status} {answer}");
        serde_json::from_str::<Value>(&answer)
            .unwrap_or_else(|e| panic!("{body}: {answer:?} is not JSON: {e}"))
    };
    for body in [
        "{}",
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"getblockcount"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount","params":"bar"}"#,
        "[]",
    ] {
        let answer = post(body);
        assert_eq!(answer["error"]["code"], -32600, "{body}: {answer}");
        assert_eq!(answer["id"], Value::Null, "{body}: {answer}");
    }
    let answer = post("{not json");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    let answer = post("[1,2,3]");
    let errors = answer.as_array().expect("a batch answer");
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e["error"]["code"] == -32600), "{answer}");
    let answer = post(r#"[{"jsonrpc":"2.0","id":7,"method":"getblockcount"},{"foo":"boo"}]"#);
    let answers = answer.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 2, "{answer}");
    assert!(answers.iter().any(|a| a["id"] == 7 && a["result"] == 0), "{answer}");
    assert!(answers.iter().any(|a| a["error"]["code"] == -32600), "{answer}");
    node.stop();
}

#[test]
fn a_failed_start_leaves_no_cookie_and_a_new_data_directory_is_private() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("new").join("node");
    // The peer port is taken, so the start fails after the cookie is written.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    std::fs::create_dir_all(parent.path().join("new")).expect("dir");
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    // (`spawn` writes node.log into the data directory, which must exist
    // for it; the node's own creation of a missing one is checked below.)
    std::fs::create_dir(&dir).expect("dir");
    let (status, log) =
        NodeProcess::run_to_exit(&dir, &["--listen", &listen], Launch::default(), Duration::from_secs(60));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {log}");
    assert!(!dir.join(".cookie").exists(), "the cookie of a failed start is removed: {log}");
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("chain")), 0o700, "chain/ is private");

    // A data directory the node makes itself (and its parents) is 0700.
    let made = parent.path().join("made").join("by").join("node");
    let log_dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(crate::support::binary("cairn-node"))
        .args(["--network", "regtest", "--rpc-bind", "127.0.0.1:0", "--listen", &listen, "--datadir"])
        .arg(&made)
        .current_dir(log_dir.path())
        .output()
        .expect("ran");
    assert!(!output.status.success());
    for path in [parent.path().join("made"), made.clone(), made.join("chain")] {
        assert_eq!(mode(&path), 0o700, "{}", path.display());
    }
    assert!(!made.join(".cookie").exists());
}

#[test]
fn a_peer_address_without_a_port_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["/ip4/127.0.0.1", "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/5/quic-v1"] {
        let (status, log) = NodeProcess::run_to_exit(
            dir.path(),
            &["--connect", bad],
            Launch::default(),
            Duration::from_secs(60),
        );
        assert!(status.is_some_and(|s| !s.success()), "{bad}: {status:?}");
        assert!(log.contains(&format!("--connect {bad}")), "{bad}: {log}");
    }
    let node = NodeProcess::start(dir.path(), &[]);
    let error = node.rpc.call("addnode", json!(["/ip4/127.0.0.1", "add"])).expect_err("no port");
    assert_eq!(error["code"], -8, "{error}");
    assert!(error["message"].as_str().expect("text").contains("no TCP port"), "{error}");
    node.stop();
}
