//! JSON-RPC's HTTP side: the accept loop, with a cap on open connections
//! and an idle timeout (hyper's header-read timeout, which runs from the
//! end of one answer to the head of the next request); authentication
//! before any body is read; the request's shape checked against JSON-RPC
//! 2.0 before jsonrpsee sees it (which answers some malformed requests
//! with `null` or the wrong code).
//!
//! What one client can make the server hold: one connection of at most
//! [`RpcLimits::max_connections`], each with a request body of at most
//! [`MAX_REQUEST_BODY`](super::MAX_REQUEST_BODY) bytes (read only once the
//! credentials are accepted) and an answer of at most
//! [`MAX_RESPONSE_BODY`]; a connection idle for
//! [`RpcLimits::idle_timeout`] is closed, and one over the cap is closed
//! the moment it is accepted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::server::{stop_channel, HttpBody, Methods, Server, ServerConfig, ServerHandle, StopHandle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tower::Service;

use super::MAX_REQUEST_BODY;

/// Largest answer sent, in bytes (a verbose block with room to spare).
pub const MAX_RESPONSE_BODY: u32 = 64 * 1024 * 1024;

/// Open RPC connections, at most, unless the open-file limit says fewer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// How long a connection may sit without a request (Bitcoin Core's
/// `-rpcservertimeout` is 30 s too).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server lets clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// A connection without a request for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self { max_connections: DEFAULT_MAX_CONNECTIONS, idle_timeout: DEFAULT_IDLE_TIMEOUT }
    }
}

/// Accepted credentials, as the `Authorization` header values that carry them.
#[derive(Debug, Clone)]
pub struct Credentials {
    headers: Arc<Vec<String>>,
}

impl Credentials {
    /// Accepts each `(user, password)` pair.
    #[must_use]
    pub fn new(pairs: &[(String, String)]) -> Self {
        let headers = pairs
            .iter()
            .map(|(user, password)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            })
            .collect();
        Self { headers: Arc::new(headers) }
    }

    fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        // Compare every byte of every candidate, so timing says nothing.
        self.headers.iter().fold(false, |ok, expected| {
            let expected = expected.as_bytes();
            let same_len = expected.len() == header.len();
            let diff = expected.iter().zip(header).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            ok | (same_len && diff == 0)
        })
    }
}

/// Starts the server on `addr` with the node's methods.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    methods: impl Into<Methods>,
    addr: SocketAddr,
    credentials: Credentials,
    limits: RpcLimits,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let shared = Arc::new(Shared { methods: methods.into(), credentials, limits });
    tokio::spawn(accept_loop(listener, shared, stop));
    Ok((handle, local))
}

struct Shared {
    methods: Methods,
    credentials: Credentials,
    limits: RpcLimits,
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: StopHandle) {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BODY)
        .max_response_body_size(MAX_RESPONSE_BODY)
        .max_connections(u32::try_from(shared.limits.max_connections).unwrap_or(u32::MAX))
        .http_only()
        .build();
    let services = Server::builder().set_config(config).to_service_builder();
    let open = Arc::new(Semaphore::new(shared.limits.max_connections));
    let stopped = stop.clone().shutdown();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => break,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!("RPC accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::debug!(
                "RPC connection closed at once: {} are open, the most allowed",
                shared.limits.max_connections
            );
            drop(socket);
            continue;
        };
        let service = services.clone().build(shared.methods.clone(), stop.clone());
        let idle = shared.limits.idle_timeout;
        let shared = Arc::clone(&shared);
        let stopped = stop.clone().shutdown();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            let handler = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let shared = Arc::clone(&shared);
                let mut service = service.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &mut service, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .keep_alive(true)
                .serve_connection(TokioIo::new(socket), handler);
            tokio::pin!(connection, stopped);
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!("RPC connection ended: {error}");
                    }
                }
                () = &mut stopped => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// One HTTP request: credentials first (no body is read without them),
/// then the body within its cap, its JSON-RPC shape, then jsonrpsee.
async fn handle<S>(
    shared: &Shared,
    service: &mut S,
    request: http::Request<Incoming>,
) -> http::Response<HttpBody>
where
    S: Service<http::Request<HttpBody>, Response = http::Response<HttpBody>>,
    S::Error: std::fmt::Display,
{
    let header = request.headers().get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes);
    if !shared.credentials.accepts(header) {
        let body = error_object(
            -32001,
            "authentication required: use the cookie in the data directory (.cookie) or --rpc-user/--rpc-password",
        );
        let mut response = json_response(http::StatusCode::UNAUTHORIZED, &body);
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic realm=\"cairn\""));
        return response;
    }
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, MAX_REQUEST_BODY as usize).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let (status, message) = if too_large {
                (http::StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_REQUEST_BODY} bytes"))
            } else {
                (http::StatusCode::BAD_REQUEST, format!("reading the request body: {error}"))
            };
            return json_response(status, &error_object(-32600, &message));
        }
    };
    let (forward, errors) = match check_shape(&bytes) {
        Shape::Pass => (bytes, Vec::new()),
        Shape::Answer(answer) => return json_response(http::StatusCode::OK, &answer),
        Shape::Split { valid, errors } => (Bytes::from(Value::Array(valid).to_string()), errors),
    };
    let request = http::Request::from_parts(parts, HttpBody::new(Full::new(forward)));
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(error) => {
            let body = error_object(-32603, &format!("internal error: {error}"));
            return json_response(http::StatusCode::INTERNAL_SERVER_ERROR, &body);
        }
    };
    if errors.is_empty() {
        return response;
    }
    // A batch with invalid members: their errors join jsonrpsee's answers.
    let (parts, body) = response.into_parts();
    let answers = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut all = match serde_json::from_slice::<Value>(&answers) {
        Ok(Value::Array(answers)) => answers,
        Ok(Value::Null) | Err(_) => Vec::new(),
        Ok(other) => vec![other],
    };
    all.extend(errors);
    json_response(parts.status, &Value::Array(all))
}

/// What the shape check makes of a request body.
#[derive(Debug, PartialEq)]
enum Shape {
    /// Well formed (or not JSON at all, which jsonrpsee answers with -32700).
    Pass,
    /// Nothing to run: this is the whole answer.
    Answer(Value),
    /// A batch whose valid members run and whose invalid ones get these errors.
    Split { valid: Vec<Value>, errors: Vec<Value> },
}

/// JSON-RPC 2.0's Request object: `"jsonrpc": "2.0"`, a string method,
/// structured (or no) params, and an id that is a string, a number or
/// null, or none (a notification). Numbers jsonrpsee cannot carry
/// (negative, fractional, past 2^64) are refused as invalid here rather
/// than answered with `null`.
fn is_valid_request(value: &Value) -> bool {
    let Some(object) = value.as_object() else { return false };
    let id_ok = match object.get("id") {
        None | Some(Value::Null | Value::String(_)) => true,
        Some(Value::Number(number)) => number.is_u64(),
        Some(_) => false,
    };
    object.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && object.get("method").is_some_and(Value::is_string)
        && object.get("params").is_none_or(|p| p.is_array() || p.is_object() || p.is_null())
        && id_ok
}

fn check_shape(body: &[u8]) -> Shape {
    let invalid = || error_object(-32600, "invalid request: not a JSON-RPC 2.0 request object");
    match serde_json::from_slice::<Value>(body) {
        Err(_) => Shape::Pass,
        Ok(Value::Array(members)) if members.is_empty() => Shape::Answer(invalid()),
        Ok(Value::Array(members)) => {
            let (valid, bad): (Vec<Value>, Vec<Value>) = members.into_iter().partition(is_valid_request);
            if bad.is_empty() {
                Shape::Pass
            } else if valid.is_empty() {
                Shape::Answer(Value::Array(bad.iter().map(|_| invalid()).collect()))
            } else {
                Shape::Split { valid, errors: bad.iter().map(|_| invalid()).collect() }
            }
        }
        Ok(single) if is_valid_request(&single) => Shape::Pass,
        Ok(_) => Shape::Answer(invalid()),
    }
}

fn error_object(code: i32, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } })
}

fn json_response(status: http::StatusCode, body: &Value) -> http::Response<HttpBody> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body.to_string()))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_against_json_rpc_2() {
        let pass = |body: &str| assert_eq!(check_shape(body.as_bytes()), Shape::Pass, "{body}");
        pass(r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#);
        pass(r#"{"jsonrpc":"2.0","id":"a","method":"m","params":[1]}"#);
        pass(r#"{"jsonrpc":"2.0","id":null,"method":"m","params":{"a":1}}"#);
        pass(r#"{"jsonrpc":"2.0","method":"notification"}"#);
        pass(r#"[{"jsonrpc":"2.0","id":1,"method":"m"},{"jsonrpc":"2.0","id":2,"method":"n"}]"#);
        pass("not json at all");
        let single_error = |body: &str| match check_shape(body.as_bytes()) {
            Shape::Answer(answer) => {
                assert_eq!(answer["error"]["code"], json!(-32600), "{body}");
                assert_eq!(answer["id"], Value::Null, "{body}");
            }
            other => panic!("{body}: {other:?}"),
        };
        for body in [
            "{}",
            "[]",
            "1",
            "\"text\"",
            "null",
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":-1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"bar"}"#,
        ] {
            single_error(body);
        }
        match check_shape(b"[1,2,3]") {
            Shape::Answer(Value::Array(errors)) => assert_eq!(errors.len(), 3),
            other => panic!("{other:?}"),
        }
        match check_shape(br#"[{"jsonrpc":"2.0","id":1,"method":"m"},{"foo":"boo"}]"#) {
            Shape::Split { valid, errors } => assert_eq!((valid.len(), errors.len()), (1, 1)),
            other => panic!("{other:?}"),
        }
    }
}
