//! Reading HTTP responses from the node's web side (protocol-spec/http.md) on connections
//! that may stay open (keep-alive): one response is its head and `Content-Length` bytes.

use std::io::Read;
use std::net::TcpStream;

/// Reads one response from `s`: its head, then `Content-Length` bytes of body (to the end of
/// the stream if the head has none, or the node closes first). The bytes as read.
pub fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut want: Option<usize> = None;
    loop {
        if want.is_none() {
            if let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
                want = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .map(|n| split + 4 + n);
                if want.is_none() {
                    want = Some(usize::MAX);
                }
            }
        }
        if want.is_some_and(|w| out.len() >= w) {
            return out;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
