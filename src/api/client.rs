//! The blocking API client that the CLI subcommands use to drive a running node.
//!
//! It speaks exactly like an EchoChain client: it writes one compact JSON object with no
//! newline, then reads one reply line. Plain `std::net`: the CLI makes one call and exits,
//! so there is nothing for an event loop to do here.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tls_client;

/// The largest reply accepted, in bytes (the `all_available_content` listing can be big).
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Why an API call failed. The Display text is written for the person at the terminal.
#[derive(Debug)]
pub enum ClientError {
    /// The node could not be reached.
    Connect {
        /// The API address tried.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the request or reading the reply failed (including timeouts).
    Io(io::Error),
    /// The reply was not one JSON object.
    BadReply(String),
    /// The reply exceeded [`MAX_REPLY_BYTES`].
    TooLarge,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, source } => {
                let why = match source.kind() {
                    io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                        "connection timed out".to_owned()
                    }
                    _ => source.to_string(),
                };
                write!(
                    f,
                    "cannot reach the peershare node's API at {addr}: {why} — \
                     is `peershare run` running?"
                )
            }
            ClientError::Io(e) => match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    f.write_str("timed out waiting for the peershare node's reply")
                }
                _ => write!(f, "error talking to the peershare node's API: {e}"),
            },
            ClientError::BadReply(why) => {
                write!(f, "the peershare node sent an unreadable reply: {why}")
            }
            ClientError::TooLarge => write!(
                f,
                "the peershare node's reply is larger than {} MiB; gave up reading it",
                MAX_REPLY_BYTES >> 20
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } => Some(source),
            ClientError::Io(e) => Some(e),
            ClientError::BadReply(_) | ClientError::TooLarge => None,
        }
    }
}

/// Builds a request object: `{"type": kind, "payload": payload}`.
pub fn request(kind: &str, payload: Value) -> Value {
    serde_json::json!({ "type": kind, "payload": payload })
}

/// Sends `request` to the node's API at `addr` and returns its reply object.
///
/// `timeout` bounds the connect and each read and write; `None` (or zero) waits forever,
/// which `local_request_file` needs since it blocks until the download is done. The
/// reply's `"status"` is not interpreted: an error reply is still `Ok`.
pub fn call(
    addr: SocketAddr,
    request: &Value,
    timeout: Option<Duration>,
) -> Result<Value, ClientError> {
    call_with_limit(addr, request, timeout, MAX_REPLY_BYTES)
}

fn call_with_limit(
    addr: SocketAddr,
    request: &Value,
    timeout: Option<Duration>,
    limit: usize,
) -> Result<Value, ClientError> {
    // std rejects a zero timeout; treat it as "no timeout".
    let timeout = timeout.filter(|t| !t.is_zero());
    let tcp = connect(addr, timeout)?;
    tcp.set_read_timeout(timeout).map_err(ClientError::Io)?;
    tcp.set_write_timeout(timeout).map_err(ClientError::Io)?;
    // Nagle would hold back nothing here (one write), but the reply latency matters.
    let _ = tcp.set_nodelay(true);
    // Another machine's API is reached over TLS, with its token (api.md section 1).
    let remote = !addr.ip().to_canonical().is_loopback();
    let (mut stream, request) = if remote {
        let Ok(fp) = std::env::var(tls_client::FINGERPRINT_ENV) else {
            return Err(ClientError::Connect {
                addr,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "an API outside loopback is reached over TLS: set {} to the \
                         fingerprint its node printed (`api_tls:` line) and {} to its token",
                        tls_client::FINGERPRINT_ENV,
                        tls_client::TOKEN_ENV
                    ),
                ),
            });
        };
        let tls = tls_client::connect(tcp, &fp)
            .map_err(|source| ClientError::Connect { addr, source })?;
        let mut with_token = request.clone();
        if let (Some(obj), Ok(tok)) = (
            with_token.as_object_mut(),
            std::env::var(tls_client::TOKEN_ENV),
        ) {
            obj.insert("token".to_owned(), Value::String(tok.trim().to_owned()));
        }
        (tls_client::ClientStream::Tls(Box::new(tls)), with_token)
    } else {
        (tls_client::ClientStream::Plain(tcp), request.clone())
    };

    let body = serde_json::to_vec(&request)
        .map_err(|e| ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    stream.write_all(&body).map_err(ClientError::Io)?;
    stream.flush().map_err(ClientError::Io)?;

    let line = read_line(&mut stream, limit)?;
    let reply: Value = serde_json::from_slice(&line)
        .map_err(|e| ClientError::BadReply(format!("not JSON: {e}")))?;
    if !reply.is_object() {
        return Err(ClientError::BadReply("not a JSON object".to_owned()));
    }
    Ok(reply)
}

/// How long a refused connection is retried: a node started a moment ago (`peershare run
/// &` followed at once by a client, as in a script) binds its API port within this.
pub const STARTING_GRACE: Duration = Duration::from_secs(2);

/// Connects to the API, retrying a refused connection for [`STARTING_GRACE`] (never past
/// `timeout`). Any other failure is reported at once.
fn connect(addr: SocketAddr, timeout: Option<Duration>) -> Result<TcpStream, ClientError> {
    let started = Instant::now();
    let grace = timeout.map_or(STARTING_GRACE, |t| t.min(STARTING_GRACE));
    loop {
        let connected = match timeout {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match connected {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && started.elapsed() < grace => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => return Err(ClientError::Connect { addr, source }),
        }
    }
}

/// Reads up to the first `\n` (excluded). A node that closes without a newline after a
/// non-empty reply is tolerated; the JSON parser judges what arrived.
fn read_line(stream: &mut impl Read, limit: usize) -> Result<Vec<u8>, ClientError> {
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ClientError::Io(e)),
        };
        let got = chunk.get(..n).unwrap_or_default();
        if got.is_empty() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                return Err(ClientError::BadReply(
                    "the node closed the connection without replying".to_owned(),
                ));
            }
            return Ok(line);
        }
        // Only the new bytes are searched, so a big reply costs O(n).
        let end = got.iter().position(|&b| b == b'\n');
        let take = got.get(..end.unwrap_or(got.len())).unwrap_or(got);
        if line.len().saturating_add(take.len()) > limit {
            return Err(ClientError::TooLarge);
        }
        line.extend_from_slice(take);
        if end.is_some() {
            return Ok(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::framing::{ApiConnection, Frame};
    use serde_json::json;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot server: frames one request like the node does, checks it, sends `reply`.
    fn serve_once(reply: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut conn = ApiConnection::new();
            let mut buf = [0u8; 4096];
            let request = loop {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before sending a request");
                if let Some(Frame::Request(r)) = conn.on_bytes(&buf[..n]).into_iter().next() {
                    break r;
                }
            };
            // The client may hang up early (the size-limit test); that is not a failure here.
            let _ = s.write_all(&reply);
            request
        });
        (addr, handle)
    }

    const T: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn request_builds_envelope() {
        assert_eq!(
            request("local_list_content", json!({})),
            json!({"type": "local_list_content", "payload": {}})
        );
    }

    #[test]
    fn call_round_trip() {
        let (addr, server) =
            serve_once(b"{\"status\":\"success\",\"content_hashes\":[]}\n".to_vec());
        let req = request("local_list_content", json!({}));
        let reply = call(addr, &req, T).unwrap();
        assert_eq!(reply, json!({"status": "success", "content_hashes": []}));
        let sent = server.join().unwrap();
        // Sent compact, with no trailing newline (like EchoChain clients).
        assert_eq!(sent, serde_json::to_vec(&req).unwrap());
    }

    #[test]
    fn reply_without_newline_then_close_is_accepted() {
        let (addr, server) = serve_once(b"{\"status\":\"error\",\"message\":\"x\"}".to_vec());
        let reply = call(addr, &request("status", json!({})), None).unwrap();
        assert_eq!(reply["status"], "error");
        server.join().unwrap();
    }

    #[test]
    fn bad_and_empty_replies() {
        let (addr, server) = serve_once(b"nope\n".to_vec());
        let e = call(addr, &request("status", json!({})), T).unwrap_err();
        assert!(matches!(e, ClientError::BadReply(_)), "{e}");
        server.join().unwrap();

        let (addr, server) = serve_once(b"[1]\n".to_vec());
        let e = call(addr, &request("status", json!({})), T).unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        server.join().unwrap();

        let (addr, server) = serve_once(Vec::new());
        let e = call(addr, &request("status", json!({})), T).unwrap_err();
        assert!(e.to_string().contains("without replying"), "{e}");
        server.join().unwrap();
    }

    #[test]
    fn oversized_reply_is_refused() {
        let mut big = b"{\"pad\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 200_000));
        big.extend_from_slice(b"\"}\n");
        let (addr, server) = serve_once(big);
        let e = call_with_limit(addr, &request("status", json!({})), T, 100_000).unwrap_err();
        assert!(matches!(e, ClientError::TooLarge), "{e}");
        let _ = server.join();
    }

    /// A script that starts a node in the background and calls it at once: the client
    /// waits for the API port to open rather than failing.
    #[test]
    fn a_node_still_starting_is_waited_for() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let l = TcpListener::bind(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"{\"status\":\"success\"}\n").unwrap();
        });
        let v = call(addr, &request("status", json!({})), T).unwrap();
        assert_eq!(v["status"], "success");
        server.join().unwrap();
    }

    #[test]
    fn connect_refused_explains_itself() {
        // Bind then drop to find a port that is (almost certainly) closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = call(addr, &request("status", json!({})), T).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ClientError::Connect { .. }), "{text}");
        assert_eq!(
            text,
            format!(
                "cannot reach the peershare node's API at {addr}: connection refused — \
                 is `peershare run` running?"
            )
        );
    }
}
