//! The local API's sockets: accepting clients, framing their requests
//! ([`ApiConnection`]), writing replies in request order, and closing connections politely
//! (api.md sections 1-4). What a request means is the node core's business: a framed
//! request leaves as an [`ApiEvent::Request`], and its reply comes back through
//! [`ApiServer::deliver`].
//!
//! One misbehaving client only ever closes its own connection: errors on one socket never
//! end the loop, slow or stuck clients are timed out, and when all slots are taken the
//! client idle longest makes room.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use super::api_stream::ApiStream;
use super::tokens::Tokens;
use crate::api::framing::{ApiConnection, Frame};
use crate::api::{auth, reply, ReplyTo};

/// The answer to a client outside loopback that does not speak TLS (api.md section 1).
const PLAIN_REFUSED: &str = "this node's API needs TLS from clients outside loopback \
     (api.md section 1: trust the certificate by the SHA-256 fingerprint the node prints)";

/// Most API connections open at once; more are accepted and closed at once.
const MAX_API_CONNS: usize = 1024;
/// How long and how much a lingering close waits for the client to finish sending.
const DRAIN_FOR: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 8 << 20;

/// What the API's sockets produced for the loop.
#[derive(Debug)]
pub enum ApiEvent {
    /// A framed request to parse and execute.
    Request {
        /// Where its reply goes.
        to: ReplyTo,
        /// Its bytes, from `{` to `}`.
        bytes: Vec<u8>,
        /// The token the client must have sent (clients outside loopback), if any.
        token: Option<Arc<str>>,
    },
    /// A client connection closed: what it waited for needs no reply any more.
    Closed {
        /// The connection's number (as in [`ReplyTo::conn`]).
        conn: u64,
    },
}

struct ApiConn {
    stream: ApiStream,
    peer: SocketAddr,
    framer: ApiConnection,
    next_seq: u64,
    next_flush: u64,
    /// Replies finished out of order, held until their turn.
    ready: BTreeMap<u64, Vec<u8>>,
    eof: bool,
    writable_interest: bool,
    /// After a refusal: our side is shut down and input is discarded until the client
    /// closes, the deadline passes or the byte budget runs out. Closing with unread input
    /// would make the kernel send RST, which can destroy the error reply in flight.
    draining: Option<(Instant, usize)>,
    /// Since when the client owes the rest of a request (see `request_timeout`).
    waiting_since: Option<Instant>,
    /// Last time bytes came in or a reply went out (the oldest idle one makes room).
    last_active: Instant,
    /// Accept order: among clients idle since the same instant, the oldest goes first.
    order: u64,
}

/// The API listener and its client connections.
pub struct ApiServer {
    listener: TcpListener,
    conns: HashMap<Token, ApiConn>,
    /// Connections refused since start (not a request, or not finished in time).
    refused: u64,
    request_timeout: Duration,
    /// The token clients outside loopback must send (`api::auth`).
    api_token: Option<Arc<str>>,
    /// TLS for clients outside loopback (`api::tls`): with it, such a client that speaks
    /// plain JSON is refused before its first request is read.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients accepted so far.
    accepted: u64,
}

impl ApiServer {
    /// Serves clients of `listener` (registered by the caller under its own token).
    pub fn new(
        listener: TcpListener,
        request_timeout: Duration,
        api_token: Option<Arc<str>>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        ApiServer {
            listener,
            conns: HashMap::new(),
            refused: 0,
            request_timeout,
            api_token,
            tls,
            accepted: 0,
        }
    }

    /// The listener (to register it).
    pub fn listener(&mut self) -> &mut TcpListener {
        &mut self.listener
    }

    /// Whether `t` is one of the API's client sockets.
    pub fn owns(&self, t: Token) -> bool {
        self.conns.contains_key(&t)
    }

    /// Clients connected.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Accepts every waiting client (readiness is edge-triggered: drain the listener); an
    /// accept error (EMFILE and the like) only ends this round.
    pub fn accept(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        now: Instant,
        ev: &mut Vec<ApiEvent>,
    ) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= MAX_API_CONNS {
                        self.evict_idle(reg, ev);
                    }
                    if self.conns.len() >= MAX_API_CONNS {
                        log::warn!(
                            "api: refusing {peer}: {MAX_API_CONNS} connections open, none idle"
                        );
                        let _ = stream.write(&reply::error("too many API connections"));
                        continue;
                    }
                    let token = tokens.fresh();
                    if let Err(e) = reg.register(&mut stream, token, Interest::READABLE) {
                        log::warn!("api: cannot register {peer}: {e}");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.accepted += 1;
                    self.conns.insert(
                        token,
                        ApiConn {
                            stream: ApiStream::new(stream, self.tls.clone()),
                            peer,
                            framer: ApiConnection::new(),
                            next_seq: 0,
                            next_flush: 0,
                            ready: BTreeMap::new(),
                            eof: false,
                            writable_interest: false,
                            draining: None,
                            waiting_since: None,
                            last_active: now,
                            order: self.accepted,
                        },
                    );
                    // Data may already be waiting: edge-triggered readiness won't tell us twice.
                    self.ready(reg, token, true, false, now, ev);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("api: accept failed: {e}");
                    break;
                }
            }
        }
    }

    /// Readiness of client socket `t`.
    pub fn ready(
        &mut self,
        reg: &Registry,
        t: Token,
        readable: bool,
        writable: bool,
        now: Instant,
        ev: &mut Vec<ApiEvent>,
    ) {
        if readable {
            self.read(reg, t, now, ev);
        }
        if writable || readable {
            self.write(reg, t, now, ev);
        }
    }

    fn read(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<ApiEvent>) {
        let mut frames = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            if let Some((_, discarded)) = c.draining.as_mut() {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if *discarded + n < DRAIN_BYTES => *discarded += n,
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                self.close(reg, t, ev);
                return;
            }
            while !c.eof && c.framer.wants_read() {
                let r = c.stream.read(&mut buf);
                if self.tls.is_some() && c.stream.is_plain() && auth::required_for(c.peer.ip()) {
                    // A client on another machine in clear: its token would have crossed
                    // the network readable. Answer why, read nothing of it.
                    log::info!("api: {}: refused a plain (not TLS) client", c.peer);
                    frames.push(c.framer.refuse_connection(PLAIN_REFUSED));
                    break;
                }
                match r {
                    Ok(0) => {
                        c.eof = true;
                        frames.extend(c.framer.on_eof());
                    }
                    Ok(n) => {
                        c.last_active = now;
                        frames.extend(c.framer.on_bytes(buf.get(..n).unwrap_or(&[])));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("api: {}: read error: {e}", c.peer);
                        self.close(reg, t, ev);
                        return;
                    }
                }
            }
            // The deadline runs from the first byte of a request to its last.
            c.waiting_since = if c.framer.mid_request() {
                Some(c.waiting_since.unwrap_or(c.last_active))
            } else {
                None
            };
        }
        self.answer_frames(reg, t, frames, now, ev);
    }

    /// Gives every frame its place in the reply order; requests go to the loop, refusals
    /// are answered here.
    fn answer_frames(
        &mut self,
        reg: &Registry,
        t: Token,
        frames: Vec<Frame>,
        now: Instant,
        ev: &mut Vec<ApiEvent>,
    ) {
        for f in frames {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            let seq = c.next_seq;
            c.next_seq += 1;
            let to = ReplyTo {
                conn: t.0 as u64,
                seq,
            };
            match f {
                Frame::Request(bytes) => {
                    let token = match &self.api_token {
                        Some(tok) if auth::required_for(c.peer.ip()) => Some(tok.clone()),
                        _ => None,
                    };
                    ev.push(ApiEvent::Request { to, bytes, token });
                }
                Frame::Malformed { reason } => {
                    self.refused += 1;
                    self.deliver(reg, to, reply::error(&reason), now, ev);
                }
                Frame::Http { reason } => {
                    self.refused += 1;
                    log::info!("api: {}: refused an HTTP request", c.peer);
                    self.deliver(reg, to, reply::http_refusal(&reason), now, ev);
                }
            }
        }
    }

    /// Puts a reply in its place in the connection's order and writes what is ready.
    pub fn deliver(
        &mut self,
        reg: &Registry,
        to: ReplyTo,
        bytes: Vec<u8>,
        now: Instant,
        ev: &mut Vec<ApiEvent>,
    ) {
        let t = Token(to.conn as usize);
        let Some(c) = self.conns.get_mut(&t) else {
            return; // the client went away; nothing to do
        };
        c.ready.insert(to.seq, bytes);
        while let Some(b) = c.ready.remove(&c.next_flush) {
            c.framer.queue_reply(&b);
            c.next_flush += 1;
        }
        self.write(reg, t, now, ev);
        // Replies may have lifted the framer's back-pressure: read what waits.
        if self
            .conns
            .get(&t)
            .is_some_and(|c| !c.eof && c.framer.wants_read())
        {
            self.read(reg, t, now, ev);
        }
    }

    fn write(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<ApiEvent>) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        loop {
            let out = c.framer.pending_output();
            if out.is_empty() {
                break;
            }
            match c.stream.write(out) {
                Ok(0) => {
                    self.close(reg, t, ev);
                    return;
                }
                Ok(n) => {
                    c.framer.consume_output(n);
                    c.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("api: {}: write error: {e}", c.peer);
                    self.close(reg, t, ev);
                    return;
                }
            }
        }
        // TLS may hold sealed bytes (or handshake answers) after the framer's are taken.
        match c.stream.flush_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("api: {}: write error: {e}", c.peer);
                self.close(reg, t, ev);
                return;
            }
        }
        let want_write = !c.framer.pending_output().is_empty() || c.stream.tls_pending();
        if c.framer.wants_close() && !want_write && c.draining.is_none() {
            if c.eof {
                self.close(reg, t, ev);
                return;
            }
            // Lingering close: the reply is out; stop sending, discard what still comes.
            c.stream.shutdown_write();
            c.draining = Some((now + DRAIN_FOR, 0));
            self.read(reg, t, now, ev);
            return;
        }
        if want_write != c.writable_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = reg.reregister(&mut c.stream.sock, t, interest) {
                log::debug!("api: reregister: {e}");
            }
            c.writable_interest = want_write;
        }
    }

    /// Closes the connection that has been idle longest (nothing in progress, nothing owed),
    /// to admit a new client when all slots are taken.
    fn evict_idle(&mut self, reg: &Registry, ev: &mut Vec<ApiEvent>) {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.draining.is_none() && c.framer.is_idle() && c.ready.is_empty())
            .min_by_key(|(_, c)| (c.last_active, c.order))
            .map(|(t, c)| (*t, c.peer));
        if let Some((t, peer)) = oldest {
            log::info!("api: closing idle connection from {peer} to make room");
            self.close(reg, t, ev);
        }
    }

    /// Answers and closes connections whose client started a request and did not finish it
    /// within the request timeout, and closes lingering connections whose time is up.
    pub fn housekeeping(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<ApiEvent>) {
        let limit = self.request_timeout;
        let slow: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.waiting_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(t, _)| *t)
            .collect();
        for t in slow {
            let Some(c) = self.conns.get_mut(&t) else {
                continue;
            };
            c.waiting_since = None;
            let reason = format!("request not finished within {limit:?}");
            log::info!("api: {}: {reason}", c.peer);
            let frames: Vec<Frame> = c.framer.abandon(&reason).into_iter().collect();
            self.answer_frames(reg, t, frames, now, ev);
            self.write(reg, t, now, ev);
        }
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.draining.is_some_and(|(until, _)| until <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.close(reg, t, ev);
        }
    }

    fn close(&mut self, reg: &Registry, t: Token, ev: &mut Vec<ApiEvent>) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = reg.deregister(&mut c.stream.sock);
            ev.push(ApiEvent::Closed { conn: t.0 as u64 });
        }
    }
}
