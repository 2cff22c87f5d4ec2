//! The HTTP side's sockets (protocol-spec/http.md): accepting clients, reading requests
//! within limits, answering them one after the other on a kept-alive connection, and
//! closing politely. What a request means is `web`'s business (sans-IO); a JSON API request
//! leaves as [`HttpEvent::Api`] and its reply comes back through [`HttpServer::deliver`]; a
//! stream's response comes as a plan ([`HttpServer::start_stream`]) whose file bytes are
//! asked for a segment at a time ([`HttpEvent::StreamRead`], [`HttpServer::stream_bytes`])
//! as the client takes them, so a response of any size holds at most about two segments.
//!
//! Limits, so that no client can take the node's web side away from the others: a request
//! must arrive whole within the request timeout from the moment its connection was accepted
//! or its previous response was sent (a slow client gets 408 and is closed); a kept-alive
//! connection that sends nothing for [`IDLE`] is closed, and one serves at most
//! [`MAX_REQUESTS`] requests; at most [`MAX_HTTP_CONNS`] connections are open, and when all
//! are taken the one that has been waiting for its request longest makes room (a client
//! that opens connections and sends nothing cannot lock others out).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::edge_stream::EdgeStream;
use super::shared::Shared;
use super::tokens::Tokens;
use crate::web::metrics::{self, HttpStats};
use crate::web::request::{self, Parsed};
use crate::web::route::{self, Action};
use crate::web::{guard, response};

mod body;

/// Most HTTP connections open at once.
pub const MAX_HTTP_CONNS: usize = 256;
/// How long a lingering close waits for the client to close its side.
const DRAIN_FOR: Duration = Duration::from_secs(2);
/// How long a kept-alive connection may wait for its next request before it is closed.
pub const IDLE: Duration = Duration::from_secs(5);
/// Most requests served on one connection; the last response says `Connection: close`.
pub const MAX_REQUESTS: u32 = 100;
/// How long a response may go without a byte taken by its client before the connection is
/// closed (a client that stops reading a long stream must not hold its slot for ever).
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// What the HTTP sockets produced for the loop.
#[derive(Debug)]
pub enum HttpEvent {
    /// A JSON API request to run; its reply goes to [`HttpServer::deliver`] with `conn`.
    Api {
        /// The connection's number.
        conn: u64,
        /// The request's bytes.
        bytes: Vec<u8>,
    },
    /// Bytes of a content to stream (http.md section 6); the whole response goes to
    /// [`HttpServer::deliver`] with `conn`.
    Stream {
        /// The connection's number.
        conn: u64,
        /// The content.
        content: crate::id::Id,
        /// A folder's file (see `web::route::Action::Stream`).
        path: String,
        /// The `Range` header.
        range: Option<String>,
    },
    /// The next segment of a stream's body to read; the bytes go to
    /// [`HttpServer::stream_bytes`] with its `conn`.
    StreamRead(super::jobs::SegmentRead),
    /// A connection closed: a reply it waited for is not needed any more.
    Closed {
        /// The connection's number.
        conn: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Receiving the request.
    Reading,
    /// Waiting for the JSON API's reply (`None`), or a stream's whole response.
    Waiting(Option<Box<Pending>>),
    /// Sending the response.
    Writing,
    /// The response is out; waiting for the client to close (until then).
    Draining(Instant),
    /// A server-sent event stream: events are written as they come, until the client goes.
    Events,
}

/// A stream request waiting for its response, kept to be tried again while the bytes it
/// needs are fetched.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    content: crate::id::Id,
    path: String,
    range: Option<String>,
    /// Since when it waits.
    since: Instant,
    /// Its bytes were not here: ask again at the next tick.
    retry: bool,
}

/// Most bytes of events a client may leave unread; a client further behind is closed.
const MAX_EVENTS_BEHIND: usize = 1 << 20;

/// How long a stream request waits for bytes that are not here yet; then `503`.
const STREAM_WAIT: Duration = Duration::from_secs(60);

struct HttpConn {
    stream: EdgeStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    state: State,
    /// When it was accepted, or its last response was sent: its request is due within the
    /// request timeout from here.
    accepted_at: Instant,
    out: Vec<u8>,
    written: usize,
    writable_interest: bool,
    /// The rest of a stream's body, still to read and send.
    body: Option<body::Body>,
    /// Responses sent whole on it.
    served: u32,
    /// The response being made keeps the connection open for another request.
    keep: bool,
    /// When its client last took bytes of a response (or the response began).
    progress_at: Instant,
}

/// The HTTP listener and its clients.
pub struct HttpServer {
    listener: TcpListener,
    local: SocketAddr,
    conns: HashMap<Token, HttpConn>,
    token: Option<Arc<str>>,
    /// TLS for clients on other machines (http.md section 1), when the side listens beyond
    /// loopback; such a client speaking plain HTTP is refused before its request is read.
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    timeout: Duration,
    stats: HttpStats,
}

impl HttpServer {
    /// Serves clients of `listener` (bound to `local`); clients outside loopback must send
    /// `token`; a request must be whole within `timeout` of its connection's accept.
    pub fn new(
        listener: TcpListener,
        local: SocketAddr,
        token: Option<Arc<str>>,
        tls: Option<Arc<rustls::ServerConfig>>,
        shared: Arc<Shared>,
        timeout: Duration,
    ) -> Self {
        HttpServer {
            listener,
            local,
            conns: HashMap::new(),
            token,
            tls,
            shared,
            timeout,
            stats: HttpStats::default(),
        }
    }

    /// The listener (to register it).
    pub fn listener(&mut self) -> &mut TcpListener {
        &mut self.listener
    }

    /// Whether `t` is one of the HTTP client sockets.
    pub fn owns(&self, t: Token) -> bool {
        self.conns.contains_key(&t)
    }

    /// Accepts every waiting client (and reads what each sent already); an accept error
    /// (EMFILE) only ends this round. Returns the events for the loop.
    pub fn accept(&mut self, reg: &Registry, tokens: &mut Tokens, now: Instant) -> Vec<HttpEvent> {
        let mut ev = Vec::new();
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        log::warn!("http: accept failed: {e}");
                    }
                    break;
                }
            };
            self.admit(reg, tokens, stream, peer, now, &mut ev);
        }
        ev
    }

    /// Takes a new client in, making room if all slots are taken, and reads what it sent.
    fn admit(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        mut stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
        ev: &mut Vec<HttpEvent>,
    ) {
        if self.conns.len() >= MAX_HTTP_CONNS {
            self.evict_slowest(reg);
        }
        if self.conns.len() >= MAX_HTTP_CONNS {
            let _ = stream.write(&response::text(503, "too many HTTP connections"));
            self.count(503);
            return;
        }
        let t = tokens.fresh();
        if let Err(e) = reg.register(&mut stream, t, Interest::READABLE) {
            log::warn!("http: cannot register {peer}: {e}");
            return;
        }
        let conn = HttpConn {
            stream: EdgeStream::new(stream, self.tls.clone()),
            peer,
            buf: Vec::new(),
            state: State::Reading,
            accepted_at: now,
            out: Vec::new(),
            written: 0,
            writable_interest: false,
            body: None,
            served: 0,
            keep: false,
            progress_at: now,
        };
        self.conns.insert(t, conn);
        self.read(reg, t, now, ev);
    }

    /// Readiness (readable, writable) of client socket `t`; returns the events for the loop.
    pub fn ready(
        &mut self,
        reg: &Registry,
        t: Token,
        rw: (bool, bool),
        now: Instant,
    ) -> Vec<HttpEvent> {
        let (readable, writable) = rw;
        let mut ev = Vec::new();
        if readable {
            self.read(reg, t, now, &mut ev);
        }
        if writable {
            self.write(reg, t, now, &mut ev);
        }
        ev
    }

    fn read(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<HttpEvent>) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            if matches!(c.state, State::Waiting(_) | State::Writing) {
                // The next request (pipelined) waits in the socket until this response is
                // out; `finish` reads it then.
                return;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    // The client is done sending: a half-read or answered connection goes.
                    self.close(reg, t, ev);
                    return;
                }
                Ok(n) if c.state == State::Reading => {
                    c.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    if self.try_request(reg, t, now, ev) {
                        return;
                    }
                }
                // Input after the last response (draining) or to an event stream is discarded.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("http: {}: read error: {e}", c.peer);
                    self.close(reg, t, ev);
                    return;
                }
            }
        }
    }

    /// Parses what connection `t` has sent; when it is a whole request (or a refused one),
    /// acts on it. Returns true when the connection is no longer reading.
    fn try_request(
        &mut self,
        reg: &Registry,
        t: Token,
        now: Instant,
        ev: &mut Vec<HttpEvent>,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&t) else {
            return true;
        };
        c.keep = false;
        if self.tls.is_some() && c.stream.is_plain() && !c.peer.ip().to_canonical().is_loopback() {
            // Another machine in clear: its token would cross the network readable. Answer
            // why without reading the request.
            log::info!("http: {}: refused a plain (not TLS) client", c.peer);
            let msg = "this node's HTTP side speaks HTTPS to other machines: open \
                       https://HOST:PORT/ and trust the certificate whose SHA-256 fingerprint \
                       the node printed (http.md section 1)";
            self.respond(reg, t, 403, response::text(403, msg), now, ev);
            return true;
        }
        let req = match request::parse(&c.buf) {
            Ok(Parsed::Partial) => return false,
            Ok(Parsed::Complete(mut req, used)) => {
                req.over_tls = c.stream.is_tls();
                // What follows is the next request (pipelined), for after this response.
                c.buf.drain(..used.min(c.buf.len()));
                req
            }
            Err(e) => {
                let (status, msg) = e.status();
                log::info!("http: {}: {msg}", c.peer);
                self.respond(reg, t, status, response::text(status, &msg), now, ev);
                return true;
            }
        };
        if let Err(r) = guard::check(&req, c.peer, self.local, self.token.as_deref()) {
            log::info!("http: {}: refused: {}", c.peer, r.message);
            self.respond(
                reg,
                t,
                r.status,
                response::text(r.status, &r.message),
                now,
                ev,
            );
            return true;
        }
        // A refused request closed the connection above; a served one may keep it.
        c.keep = req.keep_alive && c.served.saturating_add(1) < MAX_REQUESTS;
        match route::route(&req) {
            Action::Respond(bytes) => {
                let status = status_of(&bytes);
                self.respond(reg, t, status, bytes, now, ev);
            }
            Action::Metrics => {
                self.stats.connections = self.conns.len();
                let text = metrics::render(&self.shared.view(), &self.shared.live(), &self.stats);
                let bytes = response::with(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    "",
                    text.as_bytes(),
                );
                self.respond(reg, t, 200, bytes, now, ev);
            }
            Action::Lookups => {
                let view = self.shared.view();
                let body = crate::web::lookups::recent(&view.lookups, &view.running_lookups, now);
                let bytes = response::with(200, "application/json", "", &body);
                self.respond(reg, t, 200, bytes, now, ev);
            }
            Action::Events => {
                c.keep = false;
                c.state = State::Events;
                c.out = response::event_stream_head();
                c.written = 0;
                self.count(200);
                self.write(reg, t, now, ev);
            }
            Action::Stream {
                content,
                path,
                range,
            } => {
                ev.push(HttpEvent::Stream {
                    conn: t.0 as u64,
                    content,
                    path: path.clone(),
                    range: range.clone(),
                });
                c.state = State::Waiting(Some(Box::new(Pending {
                    content,
                    path,
                    range,
                    since: now,
                    retry: false,
                })));
            }
            Action::Api(bytes) => {
                c.state = State::Waiting(None);
                ev.push(HttpEvent::Api {
                    conn: t.0 as u64,
                    bytes,
                });
            }
        }
        true
    }

    /// The JSON API's reply to connection `conn`'s request, or its whole response.
    pub fn deliver(
        &mut self,
        reg: &Registry,
        conn: u64,
        reply: &[u8],
        now: Instant,
    ) -> Vec<HttpEvent> {
        let mut ev = Vec::new();
        let t = Token(conn as usize);
        match self.conns.get(&t).map(|c| &c.state) {
            Some(State::Waiting(None)) => {
                self.respond(reg, t, 200, response::json(reply), now, &mut ev)
            }
            Some(State::Waiting(Some(_))) => {
                let status = status_of(reply);
                self.respond(reg, t, status, reply.to_vec(), now, &mut ev)
            }
            _ => {}
        }
        ev
    }

    /// The stream request of `conn` waits for bytes not here yet: try it again at the next
    /// tick.
    pub fn retry(&mut self, conn: u64) {
        if let Some(State::Waiting(Some(p))) = self
            .conns
            .get_mut(&Token(conn as usize))
            .map(|c| &mut c.state)
        {
            p.retry = true;
        }
    }

    /// Stream requests to try again (or, after [`STREAM_WAIT`], to answer `503`).
    fn retries(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<HttpEvent>) {
        let mut late = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            let State::Waiting(Some(p)) = &mut c.state else {
                continue;
            };
            if !p.retry {
                continue;
            }
            p.retry = false;
            if now.saturating_duration_since(p.since) >= STREAM_WAIT {
                late.push((*t, p.content));
                continue;
            }
            ev.push(HttpEvent::Stream {
                conn: t.0 as u64,
                content: p.content,
                path: p.path.clone(),
                range: p.range.clone(),
            });
        }
        for (t, content) in late {
            let bytes = crate::net::stream::too_slow(content);
            self.respond(reg, t, 503, bytes, now, ev);
        }
    }

    fn count(&mut self, status: u16) {
        *self.stats.responses.entry(status).or_default() += 1;
    }

    fn respond(
        &mut self,
        reg: &Registry,
        t: Token,
        status: u16,
        mut bytes: Vec<u8>,
        now: Instant,
        ev: &mut Vec<HttpEvent>,
    ) {
        self.count(status);
        if let Some(c) = self.conns.get_mut(&t) {
            response::set_connection(&mut bytes, keep_alive(c));
            c.progress_at = now;
            c.state = State::Writing;
            c.out = bytes;
            c.written = 0;
            c.body = None;
            if !c.keep {
                c.buf = Vec::new();
            }
        }
        self.write(reg, t, now, ev);
    }

    fn write(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<HttpEvent>) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if !matches!(c.state, State::Writing | State::Events) {
            return;
        }
        loop {
            body::refill(c, t, ev);
            while let Some(rest) = c.out.get(c.written..).filter(|r| !r.is_empty()) {
                match c.stream.write(rest) {
                    Ok(0) => {
                        self.close(reg, t, ev);
                        return;
                    }
                    Ok(n) => {
                        c.written += n;
                        c.progress_at = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        want_writable(reg, t, c);
                        // Ask for the next segment while this one goes out.
                        body::refill(c, t, ev);
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("http: {}: write error: {e}", c.peer);
                        self.close(reg, t, ev);
                        return;
                    }
                }
            }
            // TLS may still hold sealed bytes the socket did not take.
            match c.stream.flush_tls() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    want_writable(reg, t, c);
                    return;
                }
                Err(e) => {
                    log::debug!("http: {}: write error: {e}", c.peer);
                    self.close(reg, t, ev);
                    return;
                }
            }
            c.out.clear();
            c.written = 0;
            match &c.body {
                // Its next segment is being read: written when it comes.
                Some(b) if b.reading => return,
                Some(b) if !b.pieces.is_empty() => continue,
                _ => break,
            }
        }
        c.body = None;
        if c.state == State::Events {
            return; // more events come
        }
        self.finish(reg, t, now, ev);
    }

    /// A response is all out: read the next request on a kept-alive connection, or stop
    /// sending and wait briefly for the client to close, so that unread input does not
    /// make the kernel reset the connection under the response.
    fn finish(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<HttpEvent>) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        c.served = c.served.saturating_add(1);
        if c.keep {
            c.state = State::Reading;
            c.accepted_at = now;
            // The next request decides for itself (a 408 for it closes).
            c.keep = false;
            if !c.buf.is_empty() && self.try_request(reg, t, now, ev) {
                return;
            }
        } else {
            c.stream.shutdown_write();
            c.state = State::Draining(now + DRAIN_FOR);
        }
        self.read(reg, t, now, ev);
    }

    /// Closes the connection that has spent longest receiving its request, to admit a new
    /// client when all slots are taken.
    fn evict_slowest(&mut self, reg: &Registry) {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Reading | State::Draining(_)))
            .min_by_key(|(t, c)| (c.accepted_at, t.0))
            .map(|(t, c)| (*t, c.peer));
        if let Some((t, peer)) = oldest {
            log::debug!("http: closing {peer}'s connection to make room");
            let mut ev = Vec::new();
            self.close(reg, t, &mut ev);
        }
    }

    /// Sends every event stream the node's status (the `status` reply, api.md 5.9).
    fn send_events(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<HttpEvent>) {
        let streams: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Events)
            .map(|(t, _)| *t)
            .collect();
        if streams.is_empty() {
            return;
        }
        let status = crate::node_core::view::status_reply(&self.shared.view(), &self.shared.live());
        let event = response::event(&status);
        for t in streams {
            let Some(c) = self.conns.get_mut(&t) else {
                continue;
            };
            if c.out.len() - c.written > MAX_EVENTS_BEHIND {
                log::debug!("http: {}: not reading its events; closing", c.peer);
                self.close(reg, t, ev);
                continue;
            }
            c.out.extend_from_slice(&event);
            self.write(reg, t, now, ev);
        }
    }

    /// Times out slow clients (408), ends lingering closes, retries waiting streams and
    /// sends events; returns events for the loop.
    pub fn housekeeping(&mut self, reg: &Registry, now: Instant) -> Vec<HttpEvent> {
        let mut ev = Vec::new();
        self.retries(reg, now, &mut ev);
        self.send_events(reg, now, &mut ev);
        let limit = self.timeout;
        let due: Vec<(Token, bool)> = self
            .conns
            .iter()
            .filter_map(|(t, c)| match c.state {
                // A kept-alive connection with no next request.
                State::Reading
                    if c.served > 0
                        && c.buf.is_empty()
                        && now.saturating_duration_since(c.accepted_at) >= IDLE =>
                {
                    Some((*t, true))
                }
                State::Reading if now.saturating_duration_since(c.accepted_at) >= limit => {
                    Some((*t, c.buf.is_empty()))
                }
                State::Draining(until) if until <= now => Some((*t, true)),
                State::Writing if now.saturating_duration_since(c.progress_at) >= WRITE_STALL => {
                    Some((*t, true))
                }
                _ => None,
            })
            .collect();
        for (t, silent) in due {
            if silent {
                self.close(reg, t, &mut ev);
            } else {
                let msg = format!("request not finished within {limit:?}");
                self.respond(reg, t, 408, response::text(408, &msg), now, &mut ev);
            }
        }
        ev
    }

    fn close(&mut self, reg: &Registry, t: Token, ev: &mut Vec<HttpEvent>) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = reg.deregister(&mut c.stream.sock);
            if matches!(c.state, State::Waiting(_)) {
                ev.push(HttpEvent::Closed { conn: t.0 as u64 });
            }
        }
    }
}

/// The `Connection` choice for `c`'s response: kept alive (the idle timeout in seconds and
/// the requests left), or closed.
fn keep_alive(c: &HttpConn) -> Option<(u64, u32)> {
    c.keep.then(|| {
        let left = MAX_REQUESTS.saturating_sub(c.served.saturating_add(1));
        (IDLE.as_secs(), left)
    })
}

/// The status code of a response's bytes (`HTTP/1.1 NNN ...`).
fn status_of(bytes: &[u8]) -> u16 {
    bytes
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Asks the poll to say when connection `t` can take more bytes (once: edge-triggered).
fn want_writable(reg: &Registry, t: Token, c: &mut HttpConn) {
    if !c.writable_interest {
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = reg.reregister(&mut c.stream.sock, t, both) {
            log::debug!("http: reregister: {e}");
        }
        c.writable_interest = true;
    }
}
