//! A small blocking JSON-RPC client over HTTP/1.1, enough for
//! `cairn-miner mine` to talk to a node on this machine or the LAN.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Largest response read, in bytes (a template holds at most a 2 MB block in hex).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Where the node is and how to log in.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    authorization: Option<String>,
}

impl Client {
    /// `url` is `http://host:port` (a path after it is ignored); `credentials`
    /// is `user:password` (a cookie file's contents are exactly that).
    ///
    /// # Errors
    /// When the URL is not `http://host:port`.
    pub fn new(url: &str, credentials: Option<&str>) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("--rpc must start with http:// (got {url:?})"))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || !host.contains(':') {
            bail!("--rpc must name a host and port, like http://127.0.0.1:18732 (got {url:?})");
        }
        let authorization = credentials.map(|c| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c.trim()))
        });
        Ok(Self { host: host.to_owned(), authorization })
    }

    /// Calls `method` with positional `params`.
    ///
    /// # Errors
    /// When the node cannot be reached, answers with an error, or not with JSON-RPC.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let address = self
            .host
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.host))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", self.host))?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
            .with_context(|| format!("the node at {} is unreachable", self.host))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.host,
            body.len()
        );
        if let Some(authorization) = &self.authorization {
            request.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes())?;

        let mut reader = BufReader::new(stream.take(MAX_RESPONSE));
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse::<u64>().ok(),
                    "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let size = u64::from_str_radix(size.trim(), 16).context("bad chunk size from the node")?;
                if size == 0 {
                    break;
                }
                (&mut reader).take(size).read_to_end(&mut body)?;
                let mut crlf = String::new();
                reader.read_line(&mut crlf)?;
            }
        } else if let Some(length) = length {
            (&mut reader).take(length).read_to_end(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
        if status == 401 {
            bail!("the node refused the credentials (give --rpc-cookie FILE or --rpc-user/--rpc-password)");
        }
        let response: Value = serde_json::from_slice(&body)
            .with_context(|| format!("the node answered HTTP {status} without JSON-RPC"))?;
        match response.get("error") {
            Some(error) if !error.is_null() => {
                bail!("{method}: {}", error.get("message").and_then(Value::as_str).unwrap_or("error"))
            }
            _ => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}
