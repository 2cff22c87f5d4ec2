//! HTTP responses as bytes (http.md section 3). Every response closes the connection
//! (`Connection: close`): one request per connection keeps the server's state small, and the
//! dashboard's requests go to loopback, where a new connection costs little.

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

/// A response with `body` of type `ctype`, and `extra` header lines (each ending `\r\n`).
pub fn with(status: u16, ctype: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         {extra}\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
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
    }
}
