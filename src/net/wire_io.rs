//! The wire protocol's sockets, one per connection, registered under the token of the
//! connection's [`ConnId`]. Each has its buffers ([`WireConn`]: frames in, frames and PIECEs
//! out) and a few flags; reading and writing take a byte budget so the reactor's bandwidth
//! scheduler can pace them. What the frames mean is the node core's business.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry};

use super::bandwidth::Budgeted;
use super::secure_io::SecureIo;
use super::tokens;
use super::wire_conn::WireConn;
use crate::conn::ConnId;
use crate::proto::codec::DecodeError;
use crate::proto::wire::Message;
use crate::secure::{Handshake, LocalKeys, SecureError};

struct WireSock {
    stream: TcpStream,
    /// The session (secure.md): every byte of `io` goes through it.
    sec: SecureIo,
    io: WireConn,
    /// A non-blocking connect still in progress (registered for WRITABLE to learn how it ends).
    connecting: bool,
    /// Close once what is queued is written.
    closing: bool,
    writable_interest: bool,
    /// A frame that ends the framed part arrived (nat.md): read no further frames.
    framing_ended: bool,
}

/// What a read produced.
#[derive(Default)]
pub struct ReadResult {
    /// Complete frames, in order (none after one that ends the framed part).
    pub frames: Vec<Message>,
    /// The stream is not valid protocol.
    pub error: Option<DecodeError>,
    /// The session failed or was refused (secure.md): the connection is gone (counted).
    pub secure_error: Option<SecureError>,
    /// The peer closed, or the socket failed: the connection is gone.
    pub gone: bool,
    /// Bytes read.
    pub moved: u64,
    /// The budget ran out before the socket was drained.
    pub exhausted: bool,
}

/// What a write did.
#[derive(Default)]
pub struct WriteResult {
    /// PIECEs written in full.
    pub pieces: usize,
    /// Bytes written.
    pub moved: u64,
    /// The budget ran out with output left.
    pub exhausted: bool,
    /// The socket failed: the connection is gone.
    pub failed: bool,
    /// It was closing and is now flushed and closed (the core already forgot it).
    pub closed: bool,
}

/// How a connect in progress is doing.
pub enum Connecting {
    /// Not connected yet.
    Pending,
    /// It has just connected (reported once).
    JustConnected,
    /// Connected long ago, or never was an outgoing connect.
    Established,
    /// It failed.
    Failed(io::Error),
}

/// Every wire socket.
pub struct WireSocks {
    socks: HashMap<ConnId, WireSock>,
    keys: Arc<LocalKeys>,
    shared: Arc<super::shared::Shared>,
    /// `PEERSHARE_KEYLOG`'s file: one line per session (secure.md section 6).
    keylog: Option<File>,
}

/// Which side of the session a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// It dialled (directly, by a punch, or through a relay): the Noise initiator.
    Dialer,
    /// It was accepted: the responder.
    Acceptor,
}

impl WireSocks {
    /// No sockets yet; sessions are made with `keys`, counted in `shared`.
    pub fn new(
        keys: Arc<LocalKeys>,
        shared: Arc<super::shared::Shared>,
        keylog: Option<File>,
    ) -> Self {
        WireSocks {
            socks: HashMap::new(),
            keys,
            shared,
            keylog,
        }
    }

    /// A fresh session for a socket on `side`; a dialer with `expect` hangs up on any peer
    /// that proves another node ID.
    fn session(&self, side: Side, expect: Option<crate::id::Id>) -> io::Result<SecureIo> {
        let hs = match side {
            Side::Dialer => Handshake::initiator(&self.keys, expect),
            Side::Acceptor => Handshake::responder(&self.keys),
        };
        hs.map(SecureIo::new)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Whether `conn` has a socket here.
    pub fn contains(&self, conn: ConnId) -> bool {
        self.socks.contains_key(&conn)
    }

    /// Starts a non-blocking connect to `addr` for `conn`, expecting node ID `expect` there
    /// if given (from a DHT provider record).
    pub fn connect(
        &mut self,
        reg: &Registry,
        conn: ConnId,
        addr: SocketAddr,
        expect: Option<crate::id::Id>,
    ) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        reg.register(
            &mut stream,
            tokens::of(conn),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        let sec = self.session(Side::Dialer, expect)?;
        self.insert(conn, stream, sec, true);
        Ok(())
    }

    /// Takes a connected socket as `conn`'s: registered anew under `conn`'s token. A dialer
    /// `expect`ing a node ID hangs up unless the peer proves that ID.
    pub fn adopt(
        &mut self,
        reg: &Registry,
        conn: ConnId,
        mut stream: TcpStream,
        side: Side,
        expect: Option<crate::id::Id>,
    ) -> io::Result<()> {
        let t = tokens::of(conn);
        // Already registered (under a NAT socket's token) or not yet (just accepted).
        reg.reregister(&mut stream, t, Interest::READABLE)
            .or_else(|_| reg.register(&mut stream, t, Interest::READABLE))?;
        let _ = stream.set_nodelay(true);
        let sec = self.session(side, expect)?;
        self.insert(conn, stream, sec, false);
        // A dialer's msg1 is queued: make sure it is written.
        if side == Side::Dialer {
            if let Some(ws) = self.socks.get_mut(&conn) {
                let t = tokens::of(conn);
                let _ = reg.reregister(&mut ws.stream, t, Interest::READABLE | Interest::WRITABLE);
                ws.writable_interest = true;
            }
        }
        Ok(())
    }

    fn insert(&mut self, conn: ConnId, stream: TcpStream, sec: SecureIo, connecting: bool) {
        self.socks.insert(
            conn,
            WireSock {
                stream,
                sec,
                io: WireConn::new(),
                connecting,
                closing: false,
                writable_interest: connecting,
                framing_ended: false,
            },
        );
    }

    /// Whether `conn`'s connect finished, once its socket reports readiness.
    pub fn connecting(&mut self, conn: ConnId) -> Connecting {
        let Some(ws) = self.socks.get_mut(&conn) else {
            return Connecting::Established;
        };
        if !ws.connecting {
            return Connecting::Established;
        }
        match ws.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Connecting::Failed(e),
        }
        match ws.stream.peer_addr() {
            Ok(_) => {
                ws.connecting = false;
                Connecting::JustConnected
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Connecting::Pending,
            Err(e) => Connecting::Failed(e),
        }
    }

    /// The peer's address as the socket sees it.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.socks.get(&conn)?.stream.peer_addr().ok()
    }

    /// Reads up to `budget` bytes and decodes the frames.
    pub fn read(&mut self, conn: ConnId, budget: u64) -> ReadResult {
        let mut r = ReadResult::default();
        let Some(ws) = self.socks.get_mut(&conn) else {
            return r;
        };
        if ws.closing || ws.connecting || ws.framing_ended {
            return r;
        }
        let mut src = Budgeted::new(&mut ws.stream, budget);
        let res = ws.io.read_frames(&mut ws.sec.reader(&mut src));
        r.moved = src.moved;
        r.exhausted = src.exhausted;
        if let Some(keys) = ws.sec.take_established() {
            self.shared
                .secure
                .sessions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(f) = self.keylog.as_mut() {
                // One write of the whole line: several nodes may share one key log file.
                let mut line = crate::secure::keylog_line(&keys);
                line.push('\n');
                if let Err(e) = f.write_all(line.as_bytes()) {
                    log::warn!("PEERSHARE_KEYLOG: cannot write: {e}");
                }
            }
        }
        let Some(ws) = self.socks.get_mut(&conn) else {
            return r;
        };
        if let Some(e) = ws.sec.take_failure() {
            log::info!("wire: connection {conn}: {e}");
            self.shared.secure.count(&e);
            r.secure_error = Some(e);
            r.gone = true;
            return r;
        }
        match res {
            Ok(out) => {
                for f in out.frames {
                    // The HANDSHAKE frame must name the node ID the session proved.
                    if let (Message::Handshake(h), Some(p)) = (&f, ws.sec.peer()) {
                        if h.node_id != p.node_id {
                            let e = SecureError::ClaimedOtherId {
                                proven: p.node_id,
                                claimed: h.node_id,
                            };
                            log::info!("wire: connection {conn}: {e}");
                            self.shared.secure.count(&e);
                            r.secure_error = Some(e);
                            r.gone = true;
                            return r;
                        }
                    }
                    let end = f.ends_framing();
                    r.frames.push(f);
                    if end {
                        // The rest belongs to whoever the NAT layer gives the socket to.
                        ws.framing_ended = true;
                        return r;
                    }
                }
                r.gone = out.error.is_none() && out.eof;
                r.error = out.error;
            }
            Err(e) => {
                log::debug!("wire: read error on connection {conn}: {e}");
                r.gone = true;
            }
        }
        r
    }

    /// Queues a frame on `conn`.
    pub fn queue(&mut self, conn: ConnId, msg: &Message) -> bool {
        match self.socks.get_mut(&conn) {
            Some(ws) => {
                ws.io.queue(msg);
                true
            }
            None => false,
        }
    }

    /// Queues a PIECE on `conn`; false (and the buffer unused) if it has no socket.
    pub fn queue_piece(&mut self, conn: ConnId, chunk: u32, data: Arc<Vec<u8>>) -> bool {
        match self.socks.get_mut(&conn) {
            Some(ws) => {
                ws.io.queue_piece(chunk, data);
                true
            }
            None => false,
        }
    }

    /// Marks `conn` to close once what is queued is written.
    pub fn close_when_flushed(&mut self, conn: ConnId) -> bool {
        match self.socks.get_mut(&conn) {
            Some(ws) => {
                ws.closing = true;
                true
            }
            None => false,
        }
    }

    /// Whether `conn` has output waiting.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.socks
            .get(&conn)
            .is_some_and(|ws| !ws.connecting && (!ws.io.is_flushed() || ws.sec.has_output()))
    }

    /// Whether `conn` waits to be closed (it then needs a write even with nothing queued).
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.socks.get(&conn).is_some_and(|ws| ws.closing)
    }

    /// Writes up to `budget` bytes of `conn`'s queue; closes it if it was closing and is
    /// flushed; asks for writability if output is left.
    pub fn write(&mut self, reg: &Registry, conn: ConnId, budget: u64) -> WriteResult {
        let mut w = WriteResult::default();
        let Some(ws) = self.socks.get_mut(&conn) else {
            return w;
        };
        if ws.connecting {
            return w;
        }
        if ws.closing && !ws.sec.is_open() {
            // Nothing queued can be sent before a session: close now.
            self.remove(reg, conn);
            w.closed = true;
            return w;
        }
        let mut dst = Budgeted::new(&mut ws.stream, budget);
        let res = {
            let mut out = ws.sec.writer(&mut dst);
            ws.io
                .flush(&mut out)
                .and_then(|p| match out.flush_pending() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                    _ => Ok(p),
                })
        };
        w.moved = dst.moved;
        let hit = dst.exhausted;
        match res {
            Ok(pieces) => w.pieces = pieces,
            Err(e) => {
                log::debug!("wire: write error on connection {conn}: {e}");
                w.failed = true;
            }
        }
        if w.failed {
            self.remove(reg, conn);
            return w;
        }
        let Some(ws) = self.socks.get_mut(&conn) else {
            return w;
        };
        let flushed = ws.io.is_flushed() && !ws.sec.has_output();
        if ws.closing && flushed {
            // Closing with unread input makes the kernel send RST, which can destroy the
            // ERROR just written: stop sending, and discard what has already arrived.
            let _ = ws.stream.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 16 * 1024];
            let mut discarded = 0usize;
            while discarded < (1 << 20) {
                match ws.stream.read(&mut sink) {
                    Ok(n) if n > 0 => discarded += n,
                    _ => break,
                }
            }
            w.closed = true;
            self.remove(reg, conn);
            return w;
        }
        if flushed == ws.writable_interest {
            let interest = if flushed {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if let Err(e) = reg.reregister(&mut ws.stream, tokens::of(conn), interest) {
                log::debug!("wire: reregister: {e}");
            }
            ws.writable_interest = !flushed;
        }
        w.exhausted = hit && !flushed;
        w
    }

    /// Takes `conn`'s socket out (still registered under its token), e.g. to hold it for a
    /// relayed circuit.
    pub fn take(&mut self, conn: ConnId) -> Option<TcpStream> {
        self.socks.remove(&conn).map(|ws| ws.stream)
    }

    /// Forgets `conn`'s socket, closing it.
    pub fn remove(&mut self, reg: &Registry, conn: ConnId) {
        if let Some(mut ws) = self.socks.remove(&conn) {
            let _ = reg.deregister(&mut ws.stream);
        }
    }
}
