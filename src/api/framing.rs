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
//! - A top-level value that does not start with `{` (`hello`, `[1]`) gives a non-fatal
//!   [`Frame::Malformed`] at once, and the framer skips to just after the next `\n`. The same
//!   happens for a closing bracket that does not match the open one (`{"a":1]`). If skipping
//!   discards more than [`MAX_REQUEST_BYTES`] without finding a `\n`, that is fatal.
//! - A request longer than [`MAX_REQUEST_BYTES`], or nested deeper than [`MAX_NESTING`], gives
//!   a fatal `Frame::Malformed` as soon as the limit is crossed (nothing more is buffered).
//!   After a fatal frame the connection reads nothing more and closes once every reply has
//!   been written.
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

// The bracket stack is a u64 bitmask, one bit per open bracket.
const _: () = assert!(MAX_NESTING <= 64);

/// One unit of input found by the framer; each one needs exactly one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of one complete request, from its opening `{` to its closing `}`.
    Request(Vec<u8>),
    /// Input that is not a request. Answer it with `reply::error(&reason)`. When `fatal` is
    /// true, the connection reads nothing more and closes after its replies are written.
    Malformed {
        /// A human-readable explanation, suitable as the error reply's `message`.
        reason: String,
        /// Whether framing cannot continue on this connection.
        fatal: bool,
    },
}

/// What the framer is doing between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between requests, skipping whitespace.
    Idle,
    /// Inside a request; its bytes so far are in `buf`.
    InRequest,
    /// Skipping input up to and including the next `\n`, after a non-fatal error.
    Discarding { discarded: usize },
    /// After a fatal error or EOF: input is ignored.
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
    /// Set by a fatal error or EOF: close once all replies are written.
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
    /// Bytes after a fatal error or EOF are ignored.
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
                            frames.push(Frame::Malformed {
                                reason: format!(
                                    "a request must be a JSON object starting with `{{`, found {}",
                                    describe_byte(b)
                                ),
                                fatal: false,
                            });
                            self.mode = Mode::Discarding { discarded: 0 };
                        }
                    }
                }
                Mode::Discarding { discarded } => match rest.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        rest = rest.get(nl + 1..).unwrap_or_default();
                        self.mode = Mode::Idle;
                    }
                    None => {
                        let discarded = discarded.saturating_add(rest.len());
                        rest = &[];
                        if discarded > MAX_REQUEST_BYTES {
                            frames.push(self.fatal(format!(
                                "more than {MAX_REQUEST_BYTES} bytes of input that is not a \
                                     request, with no newline; closing the connection"
                            )));
                        } else {
                            self.mode = Mode::Discarding { discarded };
                        }
                    }
                },
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
                            self.buf = Vec::new();
                            frames.push(self.fatal(format!(
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
                            self.buf = Vec::new();
                            frames.push(Frame::Malformed {
                                reason: format!(
                                    "malformed JSON: unbalanced `{}` in request",
                                    char::from(b)
                                ),
                                fatal: false,
                            });
                            self.mode = Mode::Discarding { discarded: 0 };
                        }
                        ScanEnd::TooDeep => {
                            self.buf = Vec::new();
                            frames.push(self.fatal(format!(
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

    /// The peer half-closed its side. A partial request becomes a fatal
    /// [`Frame::Malformed`]; with nothing pending, returns `None`. Either way the connection
    /// closes once every reply has been written.
    #[must_use]
    pub fn on_eof(&mut self) -> Option<Frame> {
        let frame = match self.mode {
            Mode::InRequest => Some(Frame::Malformed {
                reason: format!(
                    "connection closed in the middle of a request ({} bytes received)",
                    self.buf.len()
                ),
                fatal: true,
            }),
            Mode::Idle | Mode::Discarding { .. } | Mode::Closed => None,
        };
        self.buf = Vec::new();
        self.mode = Mode::Closed;
        self.closing = true;
        if frame.is_some() {
            self.outstanding = self.outstanding.saturating_add(1);
        }
        frame
    }

    /// True while the client owes the rest of something: a request, or a malformed line
    /// being skipped up to its `\n`. The reactor gives such a client a deadline.
    #[must_use]
    pub fn mid_request(&self) -> bool {
        matches!(self.mode, Mode::InRequest | Mode::Discarding { .. })
    }

    /// True when nothing is in progress: no partial input, every frame answered and every
    /// reply written. Such a connection may be closed to make room for others.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Idle) && self.outstanding == 0 && self.pending_output().is_empty()
    }

    /// Gives up on input in progress (the client took too long to finish it): like a fatal
    /// error, the connection reads nothing more and closes after its replies. Returns the
    /// frame to answer (with `reason` as the message), or `None` if nothing was in progress.
    #[must_use]
    pub fn abandon(&mut self, reason: &str) -> Option<Frame> {
        if !self.mid_request() {
            return None;
        }
        let got = self.buf.len();
        self.buf = Vec::new();
        self.mode = Mode::Closed;
        self.closing = true;
        self.outstanding = self.outstanding.saturating_add(1);
        Some(Frame::Malformed {
            reason: format!("{reason} ({got} bytes of it received); closing the connection"),
            fatal: true,
        })
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

    /// True once the connection should be closed: after a fatal framing error or EOF, when
    /// every frame has had its reply queued and all output has been written.
    #[must_use]
    pub fn wants_close(&self) -> bool {
        self.closing && self.outstanding == 0 && self.pending_output().is_empty()
    }

    /// Whether the reactor should keep reading from this connection. False after a fatal
    /// error or EOF, and while too much output or too many unanswered frames are pending
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

    /// Enters the closed state and builds the fatal frame that explains why.
    fn fatal(&mut self, reason: String) -> Frame {
        self.mode = Mode::Closed;
        self.closing = true;
        Frame::Malformed {
            reason,
            fatal: true,
        }
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

    fn is_fatal(f: &Frame) -> bool {
        matches!(f, Frame::Malformed { fatal: true, .. })
    }

    fn is_nonfatal(f: &Frame) -> bool {
        matches!(f, Frame::Malformed { fatal: false, .. })
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
            Some(Frame::Malformed {
                reason,
                fatal: true,
            }) => {
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
        assert!(is_fatal(&frames[0]), "{frames:?}");
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
            Frame::Malformed { reason, fatal } => {
                assert!(fatal);
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
        assert!(is_fatal(&frames[0]));
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

    #[test]
    fn garbage_line_then_valid_request() {
        let mut c = ApiConnection::new();
        let input = format!("hello {{ not json\n{LIST}");
        let frames = c.on_bytes(input.as_bytes());
        assert_eq!(frames.len(), 2);
        assert!(is_nonfatal(&frames[0]), "{frames:?}");
        let Frame::Request(bytes) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(parse_request(bytes).unwrap(), ApiRequest::ListContent);
    }

    #[test]
    fn top_level_array_is_malformed_until_newline() {
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(b"[1, {\"type\":\"status\"}]");
        assert_eq!(frames.len(), 1);
        assert!(is_nonfatal(&frames[0]));
        // Still discarding: no newline yet, so this object is part of the bad line.
        assert!(c.on_bytes(LIST.as_bytes()).is_empty());
        assert_eq!(c.on_bytes(format!("\n{LIST}").as_bytes()), vec![req(LIST)]);
    }

    #[test]
    fn endless_garbage_becomes_fatal() {
        let mut c = ApiConnection::new();
        let mut frames = c.on_bytes(b"x");
        let chunk = vec![b'y'; 64 * 1024];
        for _ in 0..(MAX_REQUEST_BYTES / chunk.len() + 1) {
            frames.extend(c.on_bytes(&chunk));
        }
        assert_eq!(frames.len(), 2);
        assert!(is_nonfatal(&frames[0]));
        assert!(is_fatal(&frames[1]));
    }

    #[test]
    fn mismatched_closing_bracket_is_malformed() {
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(format!("{{\"a\":[1}}\n{LIST}").as_bytes());
        assert_eq!(frames.len(), 2);
        assert!(is_nonfatal(&frames[0]), "{frames:?}");
        assert_eq!(frames[1], req(LIST));
        // A stray closer at top level.
        let mut c = ApiConnection::new();
        let frames = c.on_bytes(format!("}}\n{LIST}").as_bytes());
        assert!(is_nonfatal(&frames[0]));
        assert_eq!(frames[1], req(LIST));
    }

    #[test]
    fn half_close_with_partial_data() {
        let mut c = ApiConnection::new();
        assert!(c.on_bytes(br#"{"type": "local_li"#).is_empty());
        let frame = c.on_eof().unwrap();
        assert!(is_fatal(&frame), "{frame:?}");
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
