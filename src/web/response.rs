//! HTTP responses as bytes (http.md section 3). Responses are made without a `Connection`
//! header: whether the connection stays open for another request is the server's choice
//! (`net::http_server`), added with [`set_connection`] as the response goes out.

/// The reason phrase of the statuses the node sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The head of a response whose body of type `ctype` is `len` bytes long, with `extra`
/// header lines (each ending `\r\n`).
pub fn head(status: u16, ctype: &str, extra: &str, len: u64) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{extra}\r\n",
        reason(status),
    )
    .into_bytes()
}

/// A response with `body` of type `ctype`, and `extra` header lines (each ending `\r\n`).
pub fn with(status: u16, ctype: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = head(status, ctype, extra, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// Adds the `Connection` header to `response` (after its status line): `close`, or
/// `keep-alive` with the idle timeout and the requests left (RFC 9112 section 9).
pub fn set_connection(response: &mut Vec<u8>, keep: Option<(u64, u32)>) {
    let line = match keep {
        Some((idle_secs, left)) => {
            format!("Connection: keep-alive\r\nKeep-Alive: timeout={idle_secs}, max={left}\r\n")
        }
        None => "Connection: close\r\n".to_string(),
    };
    let at = response
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(response.len(), |i| i + 2);
    response.splice(at..at, line.into_bytes());
}

/// A plain-text error or notice (the message and a newline).
pub fn text(status: u16, message: &str) -> Vec<u8> {
    with(
        status,
        "text/plain; charset=utf-8",
        "",
        format!("{message}\n").as_bytes(),
    )
}

/// A JSON API reply (its bytes end with a newline already).
pub fn json(body: &[u8]) -> Vec<u8> {
    with(200, "application/json", "", body)
}

/// The head of a server-sent event stream (its events follow until the connection closes).
pub fn event_stream_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
      Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        .to_vec()
}

/// One server-sent event carrying `data` (JSON: one line, no newline inside).
pub fn event(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend(data.iter().copied().filter(|b| *b != b'\n'));
    out.extend_from_slice(b"\n\n");
    out
}

/// A page of the dashboard: it may load only its own scripts and styles, and no other site
/// may frame it (clickjacking).
pub fn page(ctype: &str, body: &[u8]) -> Vec<u8> {
    with(
        200,
        ctype,
        "Content-Security-Policy: default-src 'self'; media-src 'self'; frame-ancestors 'none'\r\n\
         X-Frame-Options: DENY\r\n",
        body,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_response_is_head_then_body() {
        let r = super::text(404, "no such page");
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
        assert!(s.contains("Content-Length: 13\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\nno such page\n"), "{s}");
        let mut r = super::text(200, "x");
        super::set_connection(&mut r, Some((5, 99)));
        let s = String::from_utf8(r).unwrap();
        assert!(
            s.starts_with(
                "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=99\r\n"
            ),
            "{s}"
        );
        let mut r = super::text(200, "x");
        super::set_connection(&mut r, None);
        assert!(String::from_utf8(r)
            .unwrap()
            .contains("\r\nConnection: close\r\n"));
    }
}
