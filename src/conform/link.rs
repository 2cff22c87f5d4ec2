//! The suite's two clients of the peer under test, each keeping a transcript of the bytes it
//! sent and received so that a failing case can show them: [`WireLink`] (one TCP connection,
//! wire.md, inside its secure session, secure.md: the transcript shows the frames' plaintext)
//! and [`DhtLink`] (one UDP socket, dht.md).

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::id::Id;
use crate::identity::Identity;
use crate::net::secure_io::SecureStream;
use crate::proto::codec::DecodeError;
use crate::proto::dht::{Datagram, Message as DhtMessage};
use crate::proto::wire::{decode_frame, Handshake, Message};
use crate::secure::LocalKeys;

/// Bytes exchanged during one case, in order: `(sent, bytes)`.
pub type Transcript = Rc<RefCell<Vec<(bool, Vec<u8>)>>>;

/// What [`WireLink::recv`] saw.
#[derive(Debug)]
pub enum Got {
    /// One whole frame.
    Frame(Message),
    /// The peer closed the connection (or reset it).
    Closed,
    /// Nothing arrived in time.
    Silent,
    /// The peer sent bytes that do not decode.
    Garbage(DecodeError),
}

/// One TCP connection to the peer's wire port.
pub struct WireLink {
    stream: SecureStream<TcpStream>,
    keys: std::sync::Arc<LocalKeys>,
    buf: Vec<u8>,
    log: Transcript,
    /// The node ID this side proves and sends in its HANDSHAKE (a fresh identity per
    /// connection, so that one case's misdeeds are not held against the next: bans are per
    /// node ID).
    pub node_id: Id,
}

/// Keys of a fresh identity, and its node ID.
pub fn fresh_keys() -> Result<(LocalKeys, Id), String> {
    let keys = LocalKeys::generate(Identity::generate()).map_err(|e| e.to_string())?;
    let id = keys.node_id();
    Ok((keys, id))
}

impl WireLink {
    /// Connects to `addr` and runs the secure handshake, giving up after `wait`.
    pub fn connect(addr: SocketAddr, wait: Duration, log: &Transcript) -> Result<Self, String> {
        let (keys, _) = fresh_keys()?;
        WireLink::connect_as(addr, wait, log, std::sync::Arc::new(keys))
    }

    /// Connects again to `addr` as the same node (the same identity, so the same node ID).
    pub fn again(&self, addr: SocketAddr, wait: Duration) -> Result<Self, String> {
        WireLink::connect_as(addr, wait, &self.log, self.keys.clone())
    }

    fn connect_as(
        addr: SocketAddr,
        wait: Duration,
        log: &Transcript,
        keys: std::sync::Arc<LocalKeys>,
    ) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, wait)
            .map_err(|e| format!("cannot connect to {addr} (TCP): {e}"))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(wait));
        let node_id = keys.node_id();
        let stream = SecureStream::connect(stream, &keys, None)
            .map_err(|e| format!("secure handshake with {addr} (secure.md) failed: {e}"))?;
        Ok(WireLink {
            stream,
            keys,
            buf: Vec::new(),
            log: log.clone(),
            node_id,
        })
    }

    /// A connection the peer opened to us: the secure handshake as the accepting side.
    pub fn accepted(stream: TcpStream, wait: Duration, log: &Transcript) -> Result<Self, String> {
        let (keys, _) = fresh_keys()?;
        WireLink::accepted_as(stream, wait, log, keys)
    }

    /// [`WireLink::accepted`] proving the identity of `keys` (one the suite named to the peer
    /// beforehand, in PEERS).
    pub fn accepted_as(
        stream: TcpStream,
        wait: Duration,
        log: &Transcript,
        keys: LocalKeys,
    ) -> Result<Self, String> {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(wait));
        let node_id = keys.node_id();
        let stream = SecureStream::accept(stream, &keys).map_err(|e| {
            format!("secure handshake (secure.md) with the dialing peer failed: {e}")
        })?;
        Ok(WireLink {
            stream,
            keys: std::sync::Arc::new(keys),
            buf: Vec::new(),
            log: log.clone(),
            node_id,
        })
    }

    /// Sends one frame built by the crate's encoder.
    pub fn send(&mut self, msg: &Message) -> Result<(), String> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        self.send_raw(&out)
    }

    /// Sends several frames in one write (one TCP segment on loopback), so the peer reads
    /// them together.
    pub fn send_all(&mut self, msgs: &[Message]) -> Result<(), String> {
        let mut out = Vec::new();
        for m in msgs {
            m.encode(&mut out);
        }
        self.send_raw(&out)
    }

    /// Sends bytes as they are (hand-made, possibly malformed, frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.log.borrow_mut().push((true, bytes.to_vec()));
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Our HANDSHAKE for `content`, listen port 0 (we accept no connections).
    pub fn handshake(&self, content: Id) -> Message {
        Message::Handshake(Handshake::new(self.node_id, content, 0))
    }

    /// The next frame, waiting at most `wait`.
    pub fn recv(&mut self, wait: Duration) -> Got {
        let deadline = Instant::now() + wait;
        loop {
            match decode_frame(&self.buf) {
                Ok(Some((msg, used))) => {
                    let bytes: Vec<u8> = self.buf.drain(..used).collect();
                    self.log.borrow_mut().push((false, bytes));
                    return Got::Frame(msg);
                }
                Ok(None) => {}
                Err(e) => {
                    let bytes = std::mem::take(&mut self.buf);
                    self.log.borrow_mut().push((false, bytes));
                    return Got::Garbage(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Silent;
            }
            let _ = self.stream.get_ref().set_read_timeout(Some(left));
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        let bytes = std::mem::take(&mut self.buf);
                        self.log.borrow_mut().push((false, bytes));
                    }
                    return Got::Closed;
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Got::Silent;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Got::Closed,
            }
        }
    }
}

/// One UDP socket talking to the peer's DHT port.
pub struct DhtLink {
    sock: UdpSocket,
    peer: SocketAddr,
    log: Transcript,
    /// The node ID this side sends in its headers.
    pub node_id: Id,
}

impl DhtLink {
    /// A socket of `peer`'s address family on an ephemeral port.
    pub fn open(peer: SocketAddr, log: &Transcript) -> Result<Self, String> {
        let bind: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        Ok(DhtLink {
            sock,
            peer,
            log: log.clone(),
            node_id: Id::random(&mut rand::thread_rng()),
        })
    }

    /// The local port (the peer sees our address as its IP and this port).
    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map_or(0, |a| a.port())
    }

    /// Sends a request built by the crate's encoder; returns its txid.
    pub fn send(&mut self, msg: DhtMessage) -> Result<u64, String> {
        let txid = rand::random::<u64>();
        let d = Datagram {
            flags: 0,
            txid,
            sender: self.node_id,
            msg,
        };
        self.send_raw(&d.encode())?;
        Ok(txid)
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.log.borrow_mut().push((true, bytes.to_vec()));
        self.sock
            .send_to(bytes, self.peer)
            .map(|_| ())
            .map_err(|e| format!("send failed: {e}"))
    }

    /// Sends `msg` and waits up to `wait` for the datagram from the peer carrying its txid.
    pub fn request(&mut self, msg: DhtMessage, wait: Duration) -> Result<Datagram, String> {
        let txid = self.send(msg)?;
        match self.recv(wait, Some(txid)) {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(format!("the answer does not decode: {e}")),
            None => Err(format!("no answer within {} ms", wait.as_millis())),
        }
    }

    /// The next datagram from the peer (with `txid`, if given) within `wait`; `None` if none.
    pub fn recv(
        &mut self,
        wait: Duration,
        txid: Option<u64>,
    ) -> Option<Result<Datagram, DecodeError>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self.sock.set_read_timeout(Some(left));
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            let bytes = buf.get(..n).unwrap_or_default();
            if crate::proto::codec::canonical_addr(from) != self.peer {
                continue;
            }
            let d = Datagram::decode(bytes);
            match (&d, txid) {
                // The peer's own requests (a PING checking us before it adds us to its
                // table, dht.md 13.3) are not what anyone waits for here.
                (Ok(d), _) if d.msg.is_request() => continue,
                (Ok(d), Some(t)) if d.txid != t => continue,
                _ => {
                    self.log.borrow_mut().push((false, bytes.to_vec()));
                    return Some(d);
                }
            }
        }
    }
}
