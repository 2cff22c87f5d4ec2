//! One HTTP/1.1 request, parsed from the bytes a client has sent so far (http.md section 3).
//!
//! The head is parsed by `httparse`; this module adds the limits: a head larger than
//! [`MAX_HEAD`] bytes or with more than [`MAX_HEADERS`] fields, and a body larger than
//! [`MAX_BODY`] bytes, are refused with the status the reply should carry. Total on any
//! input: every outcome is a value, never a panic.

/// Most bytes of a request's head (request line and header fields, up to the empty line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of a request's body (the JSON API's own request limit, api.md section 4).
pub const MAX_BODY: usize = 1 << 20;

/// The parts of a request the node looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query (still percent-encoded).
    pub path: String,
    /// The query after `?`, if any.
    pub query: Option<String>,
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Sec-Fetch-Site` (browsers tell whether a request comes from another site).
    pub fetch_site: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `Range`.
    pub range: Option<String>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The client would keep the connection for another request: HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive` (RFC 9112 section 9.3).
    pub keep_alive: bool,
    /// It came over TLS (set by the server, not parsed): its pages' origin is `https://`.
    pub over_tls: bool,
}

impl Request {
    /// The value of query parameter `key` (not decoded: the node's parameters are hex and
    /// plain words).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Why a request is refused before it is looked at; each maps to one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The head passed [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields: 431.
    HeadTooLarge,
    /// The body is larger than [`MAX_BODY`]: 413.
    BodyTooLarge {
        /// The `Content-Length` given.
        len: u64,
    },
    /// Not HTTP/1.x, or a malformed head: 400.
    Malformed(String),
    /// Chunked request bodies are not accepted (no request the node serves needs one): 411.
    LengthRequired,
}

impl RequestError {
    /// The status code and a message for the reply.
    pub fn status(&self) -> (u16, String) {
        match self {
            RequestError::HeadTooLarge => (
                431,
                format!("request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} fields"),
            ),
            RequestError::BodyTooLarge { len } => (
                413,
                format!("request body of {len} bytes is larger than the {MAX_BODY}-byte limit"),
            ),
            RequestError::Malformed(why) => (400, format!("malformed request: {why}")),
            RequestError::LengthRequired => {
                (411, "a request body needs a Content-Length".to_string())
            }
        }
    }
}

/// What the bytes so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet.
    Partial,
    /// A whole request, and how many bytes it took.
    Complete(Box<Request>, usize),
}

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        ..Request::default()
    };
    let mut body_len = 0u64;
    let (mut close, mut keep) = (false, false);
    for h in req.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).trim().to_string();
        let name = h.name.to_ascii_lowercase();
        let slot = match name.as_str() {
            "host" => &mut out.host,
            "origin" => &mut out.origin,
            "sec-fetch-site" => &mut out.fetch_site,
            "authorization" => &mut out.authorization,
            "range" => &mut out.range,
            "content-length" => {
                body_len = value()
                    .parse()
                    .map_err(|_| RequestError::Malformed("bad Content-Length".into()))?;
                continue;
            }
            "transfer-encoding" => return Err(RequestError::LengthRequired),
            "connection" => {
                for token in value().split(',') {
                    let token = token.trim();
                    close |= token.eq_ignore_ascii_case("close");
                    keep |= token.eq_ignore_ascii_case("keep-alive");
                }
                continue;
            }
            _ => continue,
        };
        // A repeated Host or Origin could mean one thing to us and another to a proxy.
        if slot.is_some() {
            return Err(RequestError::Malformed(format!("repeated {name} header")));
        }
        *slot = Some(value());
    }
    if body_len > MAX_BODY as u64 {
        return Err(RequestError::BodyTooLarge { len: body_len });
    }
    let end = head_len + body_len as usize;
    let Some(body) = buf.get(head_len..end) else {
        return Ok(Parsed::Partial);
    };
    out.body = body.to_vec();
    out.keep_alive = !close && (req.version == Some(1) || keep);
    Ok(Parsed::Complete(Box::new(out), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_partial_and_refused_requests() {
        let r = b"GET /metrics?x=1&token=abc HTTP/1.1\r\nHost: 127.0.0.1:8003\r\n\r\n";
        let Ok(Parsed::Complete(req, n)) = parse(r) else {
            panic!("not parsed")
        };
        assert_eq!(n, r.len());
        assert_eq!(req.path, "/metrics");
        assert_eq!(req.query_param("token"), Some("abc"));
        assert_eq!(req.host.as_deref(), Some("127.0.0.1:8003"));
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut]), Ok(Parsed::Partial), "cut at {cut}");
        }
        let post = b"POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\"}";
        assert!(matches!(
            parse(&post[..post.len() - 1]),
            Ok(Parsed::Partial)
        ));
        let Ok(Parsed::Complete(req, _)) = parse(post) else {
            panic!()
        };
        assert_eq!(req.body, b"{\"a\"}");

        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(big.as_bytes()), Err(RequestError::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()), Err(RequestError::HeadTooLarge));
        let huge = b"POST /api HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
        assert!(matches!(
            parse(huge),
            Err(RequestError::BodyTooLarge { .. })
        ));
        let two_hosts = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        assert!(matches!(parse(two_hosts), Err(RequestError::Malformed(_))));
        assert!(matches!(
            parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        let keeps = |r: &[u8]| match parse(r) {
            Ok(Parsed::Complete(req, _)) => req.keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(keeps(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        let chunked = b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked), Err(RequestError::LengthRequired));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&bytes);
        }
    }
}
