//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cairn_consensus::BlockHeader;

/// The published vectors folder: `$CAIRN_VECTORS`, else `../shared/vectors`
/// beside the project root.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("CAIRN_VECTORS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"), PathBuf::from)
}

/// Reads a vector file; panics with the path when it is missing.
pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("test vector {} is required and could not be read: {e}", path.display()))
}

/// Reads a vector file as text.
pub fn read_vector_text(relative: &str) -> String {
    String::from_utf8(read_vector(relative)).expect("vector files are UTF-8")
}

/// Reads a JSON vector file.
pub fn read_vector_json(relative: &str) -> serde_json::Value {
    serde_json::from_slice(&read_vector(relative)).expect("vector file is valid JSON")
}

/// Decodes hex that a vector file holds.
pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex in vector {text:?}: {e}"))
}

/// Parses `0x`-prefixed or bare hex as u32.
pub fn hex_u32(text: &str) -> u32 {
    u32::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex u32 in vector")
}

/// Reads a vector file of concatenated 80-byte headers.
pub fn read_headers(file: &str) -> Vec<BlockHeader> {
    let bytes = read_vector(file);
    assert_eq!(bytes.len() % 80, 0, "{file} holds whole headers");
    bytes.chunks_exact(80).map(|chunk| BlockHeader::from_bytes(chunk.try_into().expect("80 bytes"))).collect()
}

/// The path of a workspace binary (`cairn-node`, `cairn-miner`,
/// `cairn-wallet`), built on first use. Cargo offers `CARGO_BIN_EXE_*` only
/// for the test's own package, so this builds the binaries into the target
/// directory this test binary runs from, in the same profile.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // <target>/<profile>/deps/system-<hash>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // `--tests` as scripts/test.sh builds them: the features `cargo test`
        // resolves, so the binaries share its dependencies' builds.
        let mut args = vec!["build", "--bins", "--tests", "--workspace", "--locked"];
        // target/<profile>: `debug` is the dev profile; any other directory
        // is named after its profile (release, checked).
        let profile = profile_dir.file_name().and_then(|name| name.to_str()).expect("a profile directory");
        if profile != "debug" {
            args.extend(["--profile", profile]);
        }
        let status = Command::new(cargo)
            .args(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A `cairn-node` process on 127.0.0.1, killed when dropped.
pub struct NodeProcess {
    child: std::process::Child,
    /// Its JSON-RPC endpoint.
    pub rpc: Rpc,
    /// Its data directory.
    pub datadir: PathBuf,
}

/// How to launch a node process beyond its arguments.
#[derive(Debug, Default, Clone, Copy)]
pub struct Launch<'a> {
    /// A command (with its arguments) the node runs under, like
    /// `["prlimit", "--nofile=400"]`.
    pub wrapper: &'a [&'a str],
    /// Environment variables set for it.
    pub env: &'a [(&'a str, &'a str)],
}

impl NodeProcess {
    /// Starts a node in `datadir` with `extra` arguments (on regtest unless
    /// they name a `--network`) and waits until its RPC answers.
    pub fn start(datadir: &Path, extra: &[&str]) -> Self {
        Self::start_with(datadir, extra, Launch::default())
    }

    /// [`NodeProcess::start`], launched as `launch` says.
    pub fn start_with(datadir: &Path, extra: &[&str], launch: Launch<'_>) -> Self {
        let mut node = Self::spawn(datadir, extra, launch);
        node.wait_ready(std::time::Duration::from_secs(60));
        node
    }

    /// Starts the process without waiting for anything (see
    /// [`NodeProcess::wait_ready`]).
    pub fn spawn(datadir: &Path, extra: &[&str], launch: Launch<'_>) -> Self {
        let _ = std::fs::remove_file(datadir.join("rpc.address"));
        let _ = std::fs::remove_file(datadir.join("p2p.address"));
        // Any free port on loopback for peers too, unless the test chose.
        let listen: &[&str] =
            if extra.contains(&"--listen") { &[] } else { &["--listen", "/ip4/127.0.0.1/tcp/0"] };
        // The node's log, kept beside its data for when a test fails.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(datadir.join("node.log"))
            .expect("node.log");
        let network: &[&str] = if extra.contains(&"--network") { &[] } else { &["--network", "regtest"] };
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary("cairn-node"));
                command
            }
            None => Command::new(binary("cairn-node")),
        };
        let child = command
            .envs(launch.env.iter().copied())
            .args(network)
            .args(["--rpc-bind", "127.0.0.1:0", "--datadir"])
            .arg(datadir)
            .args(listen)
            .args(extra)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting cairn-node");
        Self {
            child,
            rpc: Rpc { addr: ([127, 0, 0, 1], 0).into(), auth: None },
            datadir: datadir.to_path_buf(),
        }
    }

    /// Waits until the node's RPC answers (panics after `timeout`, or at
    /// once when the process exits, with its log).
    pub fn wait_ready(&mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let (Ok(addr), Ok(cookie)) = (
                std::fs::read_to_string(self.datadir.join("rpc.address")),
                std::fs::read_to_string(self.datadir.join(".cookie")),
            ) {
                // (A file from a process killed while writing it may be empty.)
                if let Ok(addr) = addr.trim().parse() {
                    let rpc = Rpc { addr, auth: Some(cookie.trim().to_owned()) };
                    if rpc.call("getblockcount", serde_json::json!([])).is_ok() {
                        self.rpc = rpc;
                        return;
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cairn-node in {} exited with {status} before it was ready", self.datadir.display());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cairn-node did not start in {}",
                self.datadir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs a node to its exit (killed after `timeout`); its status and log.
    pub fn run_to_exit(
        datadir: &Path,
        extra: &[&str],
        launch: Launch<'_>,
        timeout: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let _ = std::fs::remove_file(datadir.join("node.log"));
        let mut node = Self::spawn(datadir, extra, launch);
        let status = node.wait_exit(timeout);
        let log = std::fs::read_to_string(datadir.join("node.log")).unwrap_or_default();
        (status, log)
    }

    /// The multiaddr peers reach it at (with `/p2p/<peer id>`), once it listens.
    pub fn p2p_address(&self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.datadir.join("p2p.address")) {
                if let Some(line) = text.lines().next().filter(|l| !l.is_empty()) {
                    return line.to_owned();
                }
            }
            assert!(std::time::Instant::now() < deadline, "the node never listened for peers");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit; returns
    /// whether it exited successfully.
    pub fn interrupt(mut self) -> bool {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        self.child.wait().is_ok_and(|status| status.success())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// [`NodeProcess::kill`], keeping the value (to start another in its place).
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Asks it to stop over RPC and waits for it to exit.
    pub fn stop(mut self) {
        let _ = self.rpc.call("stop", serde_json::json!([]));
        let status = self.child.wait().expect("waiting for cairn-node");
        assert!(status.success(), "cairn-node exited with {status}");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its nodes said last.
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.datadir.join("node.log")) {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                eprintln!("--- last lines of {}/node.log ---\n{tail}", self.datadir.display());
            }
        }
    }
}

/// A JSON-RPC endpoint spoken to over plain HTTP/1.1, so tests can send
/// anything, malformed requests included.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// `user:password`, if any.
    pub auth: Option<String>,
}

impl Rpc {
    /// Posts `body` and returns the status code and the response body.
    pub fn post(&self, body: &[u8], auth: Option<&str>) -> std::io::Result<(u16, String)> {
        use base64::Engine;
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(300)))?;
        let mut head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        if let Some(auth) = auth {
            head.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(auth)
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        // The server may answer (and close) before the whole body is sent.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        // Chunked bodies: keep the JSON between the chunk sizes.
        let body = match (body.find(['{', '[']), body.rfind(['}', ']'])) {
            (Some(start), Some(end)) if end >= start => body[start..=end].to_owned(),
            _ => body,
        };
        Ok((status, body))
    }

    /// Calls `method`; the `result`, or the `error` object.
    pub fn call(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let request = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let (_, body) = self
            .post(request.to_string().as_bytes(), self.auth.as_deref())
            .map_err(|e| serde_json::json!({ "io": e.to_string() }))?;
        let response: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| serde_json::json!({ "body": body, "parse": e.to_string() }))?;
        match response.get("error") {
            Some(error) if !error.is_null() => Err(error.clone()),
            _ => Ok(response["result"].clone()),
        }
    }

    /// Calls `method` and expects success.
    pub fn ok(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.call(method, params.clone()).unwrap_or_else(|e| panic!("{method} {params}: {e}"))
    }
}
