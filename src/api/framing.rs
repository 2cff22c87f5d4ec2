//! Sans-IO framing of API connections: finds where each JSON request ends.
//!
//! EchoChain clients send one JSON object with no newline and keep the connection open, so
//! the end of a request is found by scanning the JSON structure: a small incremental state
//! machine tracks whether it is inside a string, after a backslash, and the stack of open
//! brackets. It keeps its state between reads, so a request that arrives one byte at a time
//! costs O(n) in total. It does not validate JSON (the parser does that); it only has to
//! find boundaries, including brackets inside strings and escaped quotes.
//!
//! # Rules
//! - A request is one top-level JSON value that starts with `{`. JSON whitespace between
//!   requests (`' '`, `\t`, `\n`, `\r`) is skipped.
//! - **Anything else ends the connection.** A top-level value that does not start with `{`
//!   (`hello`, `[1]`, `POST / HTTP/1.1`), or a closing bracket that does not match the open
//!   one (`{"a":1]`), gives one [`Frame::Malformed`] (or [`Frame::Http`] for an HTTP request
//!   line) and the framer reads nothing more: no later bytes on that connection can become
//!   a request. This is what keeps web pages out: a browser can make a page send an HTTP
//!   request to `127.0.0.1:8002` without asking the user (a "simple" POST with a
//!   `text/plain` body needs no CORS preflight), and the request's body could be a valid
//!   JSON command. An HTTP request always starts with its method, never with `{`, so the
//!   connection is refused before its body is read. Earlier versions skipped a bad line and
//!   read on, which ran such a body as a command.
//! - A request longer than [`MAX_REQUEST_BYTES`], or nested deeper than [`MAX_NESTING`], is
//!   refused the same way as soon as the limit is crossed (nothing more is buffered).
//! - After a refusal the connection reads nothing more and closes once every reply has been
//!   written.
//!
//! # Call order (for the reactor)
//! Inputs: [`ApiConnection::on_bytes`] after every read, [`ApiConnection::on_eof`] when the
//! peer half-closes. Commands: [`ApiConnection::queue_reply`] exactly once per frame, in the
//! order the frames were returned. Outputs: write [`ApiConnection::pending_output`], then call
//! [`ApiConnection::consume_output`] with the number of bytes written; close when
//! [`ApiConnection::wants_close`]; stop reading while [`ApiConnection::wants_read`] is false.

use std::fmt;

/// The largest request accepted, in bytes, from its opening `{` to its closing `}`.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The deepest bracket nesting accepted; the request's own outer `{` counts as depth 1.
pub const MAX_NESTING: usize = 64;

/// Above this many unwritten reply bytes, [`ApiConnection::wants_read`] turns false, so a
/// client that sends requests but never reads replies cannot grow memory without bound.
pub const OUTPUT_HIGH_WATER: usize = 4 << 20;

/// Above this many frames still waiting for their reply, [`ApiConnection::wants_read`] turns
/// false, so a pipelining client cannot queue unbounded work.
pub const MAX_OUTSTANDING: usize = 32;

/// Once this many consumed bytes sit at the front of the output buffer (and they are at
/// least half of it), they are dropped; this keeps draining amortised O(1) per byte.
const COMPACT_THRESHOLD: usize = 64 * 1024;

/// HTTP methods (RFC 9110 and WebDAV's common ones, plus HTTP/2's connection preface `PRI`)
/// that a request line can start with. Matching them only picks the reply's form (an HTTP
/// response that a browser or curl can show); the refusal itself does not depend on it.
const HTTP_METHODS: [&[u8]; 14] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
];

// The bracket stack is a u64 bitmask, one bit per open bracket.
const _: () = assert!(MAX_NESTING <= 64);

/// One unit of input found by the framer; each one needs exactly one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of one complete request, from its opening `{` to its closing `}`.
    Request(Vec<u8>),
    /// Input that is not a request. Answer it with `reply::error(&reason)`; the connection
    /// reads nothing more and closes after its replies are written.
    Malformed {
        /// A human-readable explanation, suitable as the error reply's `message`.
        reason: String,
    },
    /// The connection opened with an HTTP request line (a browser, curl, a web page's
    /// `fetch`). Answer it with `reply::http_refusal(&reason)`, an HTTP error response the
    /// sender can display; like `Malformed`, nothing more is read.
    Http {
        /// A human-readable explanation for the response body.
        reason: String,
    },
}

/// What the framer is doing between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between requests, skipping whitespace.
    Idle,
    /// Inside a request; its bytes so far are in `buf`.
    InRequest,
    /// After a refusal or EOF: input is ignored.
    Closed,
}

/// How a scan over part of a request ended.
enum ScanEnd {
    /// All the bytes were consumed and the request is still open.
    NeedMore,
    /// The request's closing `}` was the last byte consumed.
    Complete,
    /// A closing bracket did not match the open one.
    Mismatch(u8),
    /// An opening bracket went past [`MAX_NESTING`].
    TooDeep,
}

/// The per-connection state of one API connection: the request framer plus the output
/// buffer. It holds no socket; see the module docs for the call order.
pub struct ApiConnection {
    mode: Mode,
    /// The current partial request (only in `Mode::InRequest`).
    buf: Vec<u8>,
    /// Open brackets, innermost in bit 0: 1 for `{`, 0 for `[`.
    stack: u64,
    /// Number of open brackets.
    depth: usize,
    in_string: bool,
    escape: bool,
    /// Reply bytes; the first `out_start` of them are already written.
    out: Vec<u8>,
    out_start: usize,
    /// Frames returned that have not had their reply queued yet.
    outstanding: usize,
    /// Set by a refusal or EOF: close once all replies are written.
    closing: bool,
}

impl ApiConnection {
    /// A fresh connection with nothing buffered.
    pub fn new() -> Self {
        ApiConnection {
            mode: Mode::Idle,
            buf: Vec::new(),
            stack: 0,
            depth: 0,
            in_string: false,
            escape: false,
            out: Vec::new(),
            out_start: 0,
            outstanding: 0,
            closing: false,
        }
    }

    /// Feeds bytes read from the peer; returns every frame these bytes complete, in order.
    /// Bytes after a refusal or EOF are ignored.
    #[must_use]
    pub fn on_bytes(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            match self.mode {
                Mode::Closed => break,
                Mode::Idle => {
                    let ws = rest.iter().take_while(|&&b| is_json_ws(b)).count();
                    rest = rest.get(ws..).unwrap_or_default();
                    match rest.first() {
                        None => break,
                        Some(b'{') => self.start_request(),
                        Some(&b) => {
                            let frame = if HTTP_METHODS.iter().any(|m| rest.starts_with(m)) {
                                Frame::Http {
                                    reason: "this port speaks the PeerShare JSON API, not \
                                             HTTP; HTTP requests are refused so that no web \
                                             page can drive the node"
                                        .to_owned(),
                                }
                            } else {
                                Frame::Malformed {
                                    reason: format!(
                                        "a request must be a JSON object starting with `{{`, \
                                         found {}",
                                        describe_byte(b)
                                    ),
                                }
                            };
                            frames.push(self.refuse(frame));
                        }
                    }
                }
                Mode::InRequest => {
                    // Never look past the size limit, so the buffer stays bounded.
                    let allowance = MAX_REQUEST_BYTES.saturating_sub(self.buf.len());
                    let window = rest.get(..allowance).unwrap_or(rest);
                    let (used, end) = self.scan(window);
                    let taken = window.get(..used).unwrap_or(window);
                    rest = rest.get(used..).unwrap_or_default();
                    match end {
                        ScanEnd::NeedMore if rest.is_empty() => {
                            self.buf.extend_from_slice(taken);
                        }
                        ScanEnd::NeedMore => {
                            // More bytes arrived than the limit leaves room for.
                            frames.push(self.refuse_with(format!(
                                "request is larger than the {MAX_REQUEST_BYTES}-byte limit; \
                                 closing the connection"
                            )));
                        }
                        ScanEnd::Complete => {
                            let mut request = std::mem::take(&mut self.buf);
                            request.extend_from_slice(taken);
                            frames.push(Frame::Request(request));
                            self.mode = Mode::Idle;
                        }
                        ScanEnd::Mismatch(b) => {
                            frames.push(self.refuse_with(format!(
                                "malformed JSON: unbalanced `{}` in request",
                                char::from(b)
                            )));
                        }
                        ScanEnd::TooDeep => {
                            frames.push(self.refuse_with(format!(
                                "request is nested deeper than {MAX_NESTING} levels; \
                                 closing the connection"
                            )));
                        }
                    }
                }
            }
        }
        self.outstanding = self.outstanding.saturating_add(frames.len());
        frames
    }

    /// The peer half-closed its side. A partial request becomes a [`Frame::Malformed`]; with
    /// nothing pending, returns `None`. Either way the connection closes once every reply
    /// has been written.
    #[must_use]
    pub fn on_eof(&mut self) -> Option<Frame> {
        let frame = match self.mode {
            Mode::InRequest => Some(Frame::Malformed {
                reason: format!(
                    "connection closed in the middle of a request ({} bytes received)",
                    self.buf.len()
                ),
            }),
            Mode::Idle | Mode::Closed => None,
        };
        self.buf = Vec::new();
        self.mode = Mode::Closed;
        self.closing = true;
        if frame.is_some() {
            self.outstanding = self.outstanding.saturating_add(1);
        }
        frame
    }

    /// True while the client owes the rest of a request. The reactor gives such a client a
    /// deadline.
    #[must_use]
    pub fn mid_request(&self) -> bool {
        matches!(self.mode, Mode::InRequest)
    }

    /// True when nothing is in progress: no partial input, every frame answered and every
    /// reply written. Such a connection may be closed to make room for others.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Idle) && self.outstanding == 0 && self.pending_output().is_empty()
    }

    /// Gives up on a request in progress (the client took too long to finish it): the
    /// connection reads nothing more and closes after its replies. Returns the frame to
    /// answer (with `reason` as the message), or `None` if nothing was in progress.
    #[must_use]
    pub fn abandon(&mut self, reason: &str) -> Option<Frame> {
        if !self.mid_request() {
            return None;
        }
        let got = self.buf.len();
        self.outstanding = self.outstanding.saturating_add(1);
        Some(self.refuse_with(format!(
            "{reason} ({got} bytes of it received); closing the connection"
        )))
    }

    /// Refuses the connection whatever it sent (a client that may not use it): reads
    /// nothing more and closes after answering the returned frame, whose message is `reason`.
    #[must_use]
    pub fn refuse_connection(&mut self, reason: &str) -> Frame {
        self.outstanding = self.outstanding.saturating_add(1);
        self.refuse_with(reason.to_owned())
    }

    /// Queues the reply to the oldest frame that has none yet. Call it exactly once per
    /// frame, in the order the frames were returned, so replies stay in request order.
    pub fn queue_reply(&mut self, reply: &[u8]) {
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
        self.out.extend_from_slice(reply);
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// The reply bytes not yet written to the socket.
    #[must_use]
    pub fn pending_output(&self) -> &[u8] {
        self.out.get(self.out_start..).unwrap_or_default()
    }

    /// Marks the first `n` bytes of [`pending_output`](Self::pending_output) as written
    /// (clamped to what is pending).
    pub fn consume_output(&mut self, n: usize) {
        self.out_start = self.out_start.saturating_add(n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start >= COMPACT_THRESHOLD && self.out_start * 2 >= self.out.len() {
            // Copying the (shorter) unwritten tail keeps the total work linear.
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// True once the connection should be closed: after a refusal or EOF, when
    /// every frame has had its reply queued and all output has been written.
    #[must_use]
    pub fn wants_close(&self) -> bool {
        self.closing && self.outstanding == 0 && self.pending_output().is_empty()
    }

    /// Whether the reactor should keep reading from this connection. False after a refusal
    /// or EOF, and while too much output or too many unanswered frames are pending
    /// (backpressure: resume reading when this turns true again).
    #[must_use]
    pub fn wants_read(&self) -> bool {
        !self.closing
            && self.pending_output().len() < OUTPUT_HIGH_WATER
            && self.outstanding < MAX_OUTSTANDING
    }

    fn start_request(&mut self) {
        self.mode = Mode::InRequest;
        self.buf = Vec::new();
        self.stack = 0;
        self.depth = 0;
        self.in_string = false;
        self.escape = false;
    }

    /// Enters the closed state (dropping any partial request) and returns `frame`, the
    /// refusal that explains why.
    fn refuse(&mut self, frame: Frame) -> Frame {
        self.buf = Vec::new();
        self.mode = Mode::Closed;
        self.closing = true;
        frame
    }

    /// [`refuse`](Self::refuse) with a [`Frame::Malformed`] carrying `reason`.
    fn refuse_with(&mut self, reason: String) -> Frame {
        self.refuse(Frame::Malformed { reason })
    }

    /// Advances the scanner over `bytes`; returns how many bytes belong to the current
    /// request and why the scan stopped.
    fn scan(&mut self, bytes: &[u8]) -> (usize, ScanEnd) {
        for (i, &b) in bytes.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    if self.depth >= MAX_NESTING {
                        return (i + 1, ScanEnd::TooDeep);
                    }
                    self.stack = (self.stack << 1) | u64::from(b == b'{');
                    self.depth += 1;
                }
                b'}' | b']' => {
                    let open_is_brace = self.stack & 1 == 1;
                    if self.depth == 0 || open_is_brace != (b == b'}') {
                        return (i + 1, ScanEnd::Mismatch(b));
                    }
                    self.stack >>= 1;
                    self.depth -= 1;
                    if self.depth == 0 {
                        return (i + 1, ScanEnd::Complete);
                    }
                }
                _ => {}
            }
        }
        (bytes.len(), ScanEnd::NeedMore)
    }
}

impl Default for ApiConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ApiConnection {
    // Sizes only: the buffers can hold a megabyte.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConnection")
            .field("mode", &self.mode)
            .field("buffered_request_bytes", &self.buf.len())
            .field("depth", &self.depth)
            .field("pending_output_bytes", &self.pending_output().len())
            .field("outstanding", &self.outstanding)
            .field("closing", &self.closing)
            .finish()
    }
}

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A byte as a reader would want to see it in an error message.
fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", char::from(b))
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::{parse_request, ApiRequest};
    use proptest::prelude::*;
    use serde_json::Value;

    fn req(s: &str) -> Frame {
        Frame::Request(s.as_bytes().to_vec())
    }

    fn is_refusal(f: &Frame) -> bool {
        matches!(f, Frame::Malformed { .. } | Frame::Http { .. })
    }

    const LIST: &str = r#"{"type": "local_list_content", "payload": {}}"#;

    #[test]
    fn abandoned_request_gets_one_fatal_reply() {
        let mut c = ApiConnection::new();
        assert!(c.is_idle() && !c.mid_request());
        assert!(c.abandon("too slow").is_none(), "nothing in progress");
        assert!(c.on_bytes(br#"{"type": "sta"#).is_empty());
        assert!(c.mid_request() && !c.is_idle());
        match c.abandon("request not finished within 30 s") {
            Some(Frame::Malformed { reason }) => {
                assert!(
                    reason.contains("within 30 s") && reason.contains("13 bytes"),
                    "{reason}"
                )
            }
            f => panic!("{f:?}"),
        }
        assert!(!c.wants_read());
        assert!(c.on_bytes(br#"tus"}"#).is_empty(), "nothing is read after");
        c.queue_reply(b"{}\n");
        c.consume_output(3);
        assert!(c.wants_close());
    }

    #[test]
    fn request_without_newline_is_framed() {
        let mut c = ApiConnection::new();
        assert_eq!(c.on_bytes(LIST.as_bytes()), vec![req(LIST)]);
        assert_eq!(c.on_eof(), None);
    }

    #[test]
    fn two_requests_in_one_chunk() {
        let mut c = ApiConnection::new();
        let a = r#"{"type":"status"}"#;
        let input = format!("{LIST}{a}");
        assert_eq!(c.on_bytes(input.as_bytes()), vec![req(LIST), req(a)]);
    }

    #[test]
    fn newline_delimited_requests() {
        let mut c = ApiConnection::new();
        let a = r#"{"type":"status"}"#;
        let input = format!("{LIST}\n{a}\r\n\n  \t{LIST}\n");
        assert_eq!(
            c.on_bytes(input.as_bytes()),
            vec![req(LIST), req(a), req(LIST)]
        );
        assert_eq!(c.on_eof(), None);
    }

    #[test]
    fn pretty_printed_request_spanning_lines() {
        let mut c = ApiConnection::new();
        let s = "{\n  \"type\": \"status\",\n  \"payload\": {\n  }\n}";
        assert_eq!(c.on_bytes(s.as_bytes()), vec![req(s)]);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let input = format!("{LIST}\n{LIST}");
        let bytes = input.as_bytes();
        for cut in 0..=bytes.len() {
            let mut c = ApiConnection::new();
            let mut frames = c.on_bytes(&bytes[..cut]);
            frames.extend(c.on_bytes(&bytes[cut..]));
            assert_eq!(frames, vec![req(LIST), req(LIST)], "cut at {cut}");
        }
        // And one byte per read.
        let mut c = ApiConnection::new();
        let frames: Vec<Frame> = bytes.iter().flat_map(|b| c.on_bytes(&[*b])).collect();
        assert_eq!(frames, vec![req(LIST), req(LIST)]);
    }

    #[test]
    fn brackets_and_escaped_quotes_inside_strings() {
        let s = r#"{"type":"x}]{[","payload":{"k":"a \"}\" b \\","j":"\\\"}"}}"#;
        let mut c = ApiConnection::new();
        assert_eq!(c.on_bytes(s.as_bytes()), vec![req(s)]);
        let v: Value = serde_json::from_str(s).unwrap();
        assert_eq!(v["type"], "x}]{[");
        // Byte by byte too: escape state must survive read boundaries.
        let mut c = ApiConnection::new();
        let frames: Vec<Frame> = s.bytes().flat_map(|b| c.on_bytes(&[b])).collect();
        assert_eq!(frames, vec![req(s)]);
    }

    fn nested(depth: usize) -> String {
        // depth-1 arrays inside the outer object.
        let inner = "[".repeat(depth - 1) + &"]".repeat(depth - 1);
        format!(r#"{{"type":"status","payload":{{}},"x":{inner}}}"#)
    }

    #[test]
    fn nesting_64_ok_65_fatal() {
        let mut c = ApiConnection::new();
        let ok = nested(MAX_NESTING);
        assert_eq!(c.on_bytes(ok.as_bytes()), vec![req(&ok)]);
        assert_eq!(parse_request(ok.as_bytes()).unwrap(), ApiRequest::Status);

        let mut c = ApiConnection::new();
        let frames = c.on_bytes(nested(MAX_NESTING + 1).as_bytes());
        assert_eq!(frames.len(), 1);
        assert!(is_refusal(&frames[0]), "{frames:?}");
        // Nothing more is read after a fatal error.
        assert!(c.on_bytes(LIST.as_bytes()).is_empty());
        assert!(!c.wants_read());
    }

    #[test]
    fn nested_objects_64_ok() {
        let s = "{\"a\":".repeat(MAX_NESTING - 1) + "{}" + &"}".repeat(MAX_NESTING - 1);
        let mut c = ApiConnection::new();
        assert_eq!(c.on_bytes(s.as_bytes()), vec![req(&s)]);
    }

    fn sized_request(total: usize) -> String {
        let head = r#"{"type":"status","pad":""#;
        let tail = r#""}"#;
        let pad = "x".repeat(total - head.len() - tail.len());
        let s = format!("{head}{pad}{tail}");
        assert_eq!(s.len(), total);
        s
    }

    #[test]
    fn exactly_max_size_is_accepted() {
        let s = sized_request(MAX_REQUEST_BYTES);
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(s.as_bytes());
        assert_eq!(frames, vec![req(&s)]);
    }

    #[test]
    fn one_mib_plus_one_is_fatal_and_closes_after_reply() {
        let s = sized_request(MAX_REQUEST_BYTES + 1);
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(s.as_bytes());
        assert_eq!(frames.len(), 1);
        match &frames[0] {
            Frame::Malformed { reason } => {
                assert!(reason.contains("1048576"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Not before the error reply is written.
        assert!(!c.wants_close());
        c.queue_reply(b"{\"status\":\"error\"}\n");
        assert!(!c.wants_close());
        let n = c.pending_output().len();
        c.consume_output(n);
        assert!(c.wants_close());
    }

    #[test]
    fn oversize_detected_across_small_reads() {
        let s = sized_request(MAX_REQUEST_BYTES + 1);
        let mut c = ApiConnection::new();
        let mut frames = Vec::new();
        for chunk in s.as_bytes().chunks(1000) {
            frames.extend(c.on_bytes(chunk));
        }
        assert_eq!(frames.len(), 1);
        assert!(is_refusal(&frames[0]));
    }

    #[test]
    fn one_mib_in_one_byte_reads_is_linear() {
        // O(n^2) here would take minutes; O(n) takes well under a second even unoptimised.
        let s = sized_request(MAX_REQUEST_BYTES);
        let mut c = ApiConnection::new();
        let mut frames = Vec::new();
        for b in s.bytes() {
            frames.extend(c.on_bytes(&[b]));
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0], req(&s));
    }

    /// Input that is not a request is answered once and ends the connection: nothing sent
    /// after it, on any line, is ever framed as a request.
    #[test]
    fn garbage_line_refuses_the_connection() {
        let mut c = ApiConnection::new();
        let input = format!("hello {{ not json\n{LIST}");
        let frames = c.on_bytes(input.as_bytes());
        assert_eq!(frames.len(), 1, "{frames:?}");
        match &frames[0] {
            Frame::Malformed { reason } => assert_eq!(
                reason,
                "a request must be a JSON object starting with `{`, found `h`"
            ),
            f => panic!("{f:?}"),
        }
        assert!(!c.wants_read());
        assert!(c.on_bytes(format!("\n{LIST}\n").as_bytes()).is_empty());
        c.queue_reply(b"{}\n");
        c.consume_output(3);
        assert!(c.wants_close());
    }

    #[test]
    fn top_level_array_is_refused() {
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(b"[1, {\"type\":\"status\"}]");
        assert_eq!(frames.len(), 1);
        assert!(matches!(&frames[0], Frame::Malformed { .. }), "{frames:?}");
        assert!(c.on_bytes(format!("\n{LIST}").as_bytes()).is_empty());
    }

    #[test]
    fn mismatched_closing_bracket_is_refused() {
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(format!("{{\"a\":[1}}\n{LIST}").as_bytes());
        assert_eq!(frames.len(), 1, "{frames:?}");
        match &frames[0] {
            Frame::Malformed { reason } => {
                assert_eq!(reason, "malformed JSON: unbalanced `}` in request")
            }
            f => panic!("{f:?}"),
        }
        // A stray closer at top level.
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(format!("}}\n{LIST}").as_bytes());
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(is_refusal(&frames[0]));
    }

    /// The requests a web page can make a browser send without asking anyone: a "simple"
    /// POST (text/plain or form body, no CORS preflight) whose body is a valid command, a
    /// GET with the command in its query, a preflight; each is also split at every byte.
    const BROWSER_REQUESTS: [&str; 4] = [
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:8002\r\nConnection: keep-alive\r\n\
         Content-Length: 81\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Origin: http://evil.example\r\nAccept: */*\r\n\r\n\
         {\"type\":\"local_add_file\",\"payload\":{\"filepath\":\"/home/me/.ssh/id_ed25519\"}}",
        "POST /x HTTP/1.1\r\nHost: 127.0.0.1:8002\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 44\r\n\r\n\
         {\"type\":\"local_list_content\",\"x\":\"=\"}\n",
        "GET /?{\"type\":\"status\"} HTTP/1.1\r\nHost: 127.0.0.1:8002\r\n\r\n\
         {\"type\":\"status\"}",
        "OPTIONS / HTTP/1.1\r\nHost: localhost:8002\r\n\
         Access-Control-Request-Method: POST\r\n\r\n{\"type\":\"status\"}",
    ];

    #[test]
    fn browser_shaped_requests_never_become_requests() {
        for http in BROWSER_REQUESTS {
            let bytes = http.as_bytes();
            for cut in 0..=bytes.len() {
                let mut c = ApiConnection::new();
                let mut frames = c.on_bytes(&bytes[..cut]);
                frames.extend(c.on_bytes(&bytes[cut..]));
                frames.extend(c.on_eof());
                assert_eq!(frames.len(), 1, "cut {cut}: {frames:?}");
                assert!(is_refusal(&frames[0]), "cut {cut}: {frames:?}");
                // A whole method token in the first read gets an HTTP answer that a
                // browser or curl can show; a cut inside it still refuses, in JSON.
                if cut == 0 || cut > 8 {
                    assert!(matches!(frames[0], Frame::Http { .. }), "{frames:?}");
                }
            }
        }
    }

    #[test]
    fn half_close_with_partial_data() {
        let mut c = ApiConnection::new();
        assert!(c.on_bytes(br#"{"type": "local_li"#).is_empty());
        let frame = c.on_eof().unwrap();
        assert!(is_refusal(&frame), "{frame:?}");
        assert!(c.on_bytes(b"st_content\"}").is_empty());
        c.queue_reply(b"err\n");
        assert!(!c.wants_close());
        c.consume_output(4);
        assert!(c.wants_close());
    }

    #[test]
    fn nc_style_request_then_half_close() {
        let mut c = ApiConnection::new();
        assert_eq!(c.on_bytes(format!("{LIST}\n").as_bytes()), vec![req(LIST)]);
        assert_eq!(c.on_eof(), None);
        // The reply to the request is still owed: don't close yet.
        assert!(!c.wants_close());
        c.queue_reply(b"{}\n");
        c.consume_output(3);
        assert!(c.wants_close());
    }

    #[test]
    fn output_buffer_consume() {
        let mut c = ApiConnection::new();
        assert!(c.pending_output().is_empty());
        let _ = c.on_bytes(format!("{LIST}{LIST}").as_bytes());
        c.queue_reply(b"abc\n");
        c.queue_reply(b"def\n");
        assert_eq!(c.pending_output(), b"abc\ndef\n");
        c.consume_output(2);
        assert_eq!(c.pending_output(), b"c\ndef\n");
        c.consume_output(100);
        assert!(c.pending_output().is_empty());
        assert!(!c.wants_close());
        c.queue_reply(b"x");
        assert_eq!(c.pending_output(), b"x");
    }

    #[test]
    fn output_buffer_compacts_large_prefix() {
        let mut c = ApiConnection::new();
        let chunk = vec![7u8; COMPACT_THRESHOLD];
        c.queue_reply(&chunk);
        c.queue_reply(&chunk);
        c.consume_output(COMPACT_THRESHOLD + 10);
        assert_eq!(c.pending_output().len(), COMPACT_THRESHOLD - 10);
        assert_eq!(c.out_start, 0, "consumed prefix should be dropped");
    }

    #[test]
    fn backpressure_when_too_many_unanswered() {
        let mut c = ApiConnection::new();
        let input = LIST.repeat(MAX_OUTSTANDING);
        assert_eq!(c.on_bytes(input.as_bytes()).len(), MAX_OUTSTANDING);
        assert!(!c.wants_read());
        c.queue_reply(b"{}\n");
        assert!(c.wants_read());
    }

    /// A strategy for arbitrary JSON values, shallow enough to stay within MAX_NESTING.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[{}\\[\\]\"\\\\ \n]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_request_text() -> impl Strategy<Value = String> {
        (
            prop::collection::btree_map("[a-z{}\"\\\\]{0,6}", arb_json(), 0..5),
            any::<bool>(),
        )
            .prop_map(|(m, pretty)| {
                let v = Value::Object(m.into_iter().collect());
                if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                }
            })
    }

    /// Splits `bytes` at the given (unsorted, possibly out-of-range) cut points.
    fn split_at_points(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut out = Vec::new();
        let mut prev = 0;
        for p in points {
            out.push(bytes[prev..p].to_vec());
            prev = p;
        }
        out.push(bytes[prev..].to_vec());
        out
    }

    proptest! {
        #[test]
        fn random_bytes_in_random_chunks_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..2048),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut c = ApiConnection::new();
            for chunk in split_at_points(&data, &cuts) {
                for frame in c.on_bytes(&chunk) {
                    if let Frame::Request(bytes) = frame {
                        let _ = parse_request(&bytes);
                    }
                }
            }
            let _ = c.on_eof();
            let _ = parse_request(&data);
        }

        #[test]
        fn json_ish_bytes_never_panic(
            data in prop::collection::vec(
                prop::sample::select(b"{}[]\"\\ \nab:,".to_vec()), 0..512),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut c = ApiConnection::new();
            for chunk in split_at_points(&data, &cuts) {
                for frame in c.on_bytes(&chunk) {
                    if let Frame::Request(bytes) = frame {
                        let _ = parse_request(&bytes);
                    }
                }
            }
            let _ = c.on_eof();
        }

        /// Whatever follows, a connection whose first byte of input (after white space) is
        /// not `{` never yields a request.
        #[test]
        fn input_not_starting_with_a_brace_never_yields_a_request(
            first in any::<u8>().prop_filter("not `{` or white space", |b| *b != b'{' && !is_json_ws(*b)),
            data in prop::collection::vec(
                prop::sample::select(b"{}[]\"\\ \nab:,".to_vec()), 0..256),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut input = vec![first];
            input.extend_from_slice(&data);
            input.extend_from_slice(LIST.as_bytes());
            let mut c = ApiConnection::new();
            let mut frames = Vec::new();
            for chunk in split_at_points(&input, &cuts) {
                frames.extend(c.on_bytes(&chunk));
            }
            frames.extend(c.on_eof());
            prop_assert_eq!(frames.len(), 1);
            prop_assert!(is_refusal(&frames[0]));
        }

        #[test]
        fn valid_requests_frame_exactly(
            requests in prop::collection::vec(arb_request_text(), 1..6),
            seps in prop::collection::vec("[ \t\r\n]{0,3}", 6),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut input = Vec::new();
            for (r, sep) in requests.iter().zip(&seps) {
                input.extend_from_slice(r.as_bytes());
                input.extend_from_slice(sep.as_bytes());
            }
            let mut c = ApiConnection::new();
            let mut frames = Vec::new();
            for chunk in split_at_points(&input, &cuts) {
                frames.extend(c.on_bytes(&chunk));
            }
            prop_assert_eq!(c.on_eof(), None);
            let expected: Vec<Frame> =
                requests.iter().map(|r| Frame::Request(r.as_bytes().to_vec())).collect();
            prop_assert_eq!(frames, expected);
        }
    }
}
