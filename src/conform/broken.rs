//! A deliberately broken peer, for the suite's own test: a proxy in front of a real node
//! that breaks the protocol in one known way, so that exactly the cases checking that rule
//! fail (`peershare conform --broken KIND --listen ADDR UPSTREAM`).
//!
//! The proxy forwards TCP connections and UDP datagrams to the upstream node. For the DHT it
//! acts as a NAT that fixes its own traces: the addresses the upstream saw (PONG's observed
//! address, provider records announced with port 0) are rewritten to the client's, so the
//! cases see what they would see talking to the node directly.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::identity::Identity;
use crate::net::secure_io::SecureStream;
use crate::secure::LocalKeys;

use crate::proto::dht::{self, Datagram};
use crate::proto::wire::{decode_frame, Message};

/// How the proxy breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokenKind {
    /// Hangs up without the ERROR the spec asks for: every wire ERROR from the node is
    /// swallowed (wire.md §3, §4.17).
    SilentErrors,
    /// Lenient where the spec is strict: a second BITFIELD and chunk indices past the end
    /// are ignored (wire.md §3 rules 4 and 5), and malformed DHT datagrams are answered with
    /// an ERROR instead of being dropped (overview.md §7).
    Lenient,
    /// Trusts what a HANDSHAKE frame claims: a frame naming another node than the one its
    /// secure session proved is taken as naming the proven one (secure.md §3 says hang up).
    Trusting,
}

/// Serves as a broken peer at `listen` (TCP and UDP, one port) in front of `upstream`;
/// prints `listen: ADDR` and `ready`, then runs until killed.
pub fn serve_broken(
    kind: BrokenKind,
    upstream: SocketAddr,
    listen: SocketAddr,
) -> std::io::Result<()> {
    let tcp = TcpListener::bind(listen)?;
    let addr = tcp.local_addr()?;
    let udp = UdpSocket::bind(addr)?;
    println!("listen: {addr}");
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::spawn(move || udp_loop(kind, udp, upstream));
    // The identity the proxy shows the node for each client identity: the same client is
    // the same node upstream too (wire.md §3 rule 2 is about node IDs).
    let idents: Idents = Default::default();
    for client in tcp.incoming() {
        let Ok(client) = client else { continue };
        let Ok(up) = TcpStream::connect(upstream) else {
            continue;
        };
        let idents = idents.clone();
        std::thread::spawn(move || relay_sessions(kind, client, up, &idents));
    }
    Ok(())
}

/// One client connection: the proxy ends both secure sessions itself (a man in the middle
/// the client chose), the client's with one fresh identity and the node's with another, and
/// rewrites each HANDSHAKE frame to name the identity its receiver sees, as secure.md
/// section 3 requires. Frames pass one by one, some dropped by `kind`; bytes that do not
/// decode are forwarded as they are (the node must see them).
fn relay_sessions(kind: BrokenKind, client: TcpStream, up: TcpStream, idents: &Idents) {
    let wait = Some(Duration::from_secs(10));
    for s in [&client, &up] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(wait);
    }
    let Ok(down_keys) = LocalKeys::generate(Identity::generate()) else {
        return;
    };
    let Ok(mut c) = SecureStream::accept(client, &down_keys) else {
        return;
    };
    let Some(client_id) = c.peer().map(|p| p.node_id) else {
        return;
    };
    let up_keys = {
        let mut map = idents.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&client_id) {
            Some(k) => k.clone(),
            None => match LocalKeys::generate(Identity::generate()) {
                Ok(k) => map.entry(client_id).or_insert(Arc::new(k)).clone(),
                Err(_) => return,
            },
        }
    };
    let Ok(mut u) = SecureStream::connect(up, &up_keys, None) else {
        return;
    };
    // Both directions in one thread (a session is one object): short read timeouts.
    let poll = Some(Duration::from_millis(5));
    let _ = c.get_ref().set_read_timeout(poll);
    let _ = u.get_ref().set_read_timeout(poll);
    // The node's chunk count, from its BITFIELD (u32::MAX until then).
    let chunks = AtomicU32::new(u32::MAX);
    let mut bitfields = 0u32;
    let (mut to_up, mut to_down) = (Pump::default(), Pump::default());
    let (up_id, down_id) = (up_keys.node_id(), down_keys.node_id());
    loop {
        let a = to_up.step(&mut c, &mut u, |m| {
            // Only the client's own ID: a claim of another ID goes up as it is, and the node
            // refuses it as it would the client's; unless the proxy trusts every claim.
            if kind == BrokenKind::Trusting {
                if let Message::Handshake(h) = m {
                    h.node_id = up_id;
                }
            }
            rename(m, client_id, up_id);
            to_node(kind, m, &chunks, &mut bitfields)
        });
        let b = to_down.step(&mut u, &mut c, |m| {
            if let Message::Handshake(h) = m {
                h.node_id = down_id;
            }
            from_node(kind, m, &chunks)
        });
        if a.is_err() || b.is_err() {
            break;
        }
    }
    let _ = c.get_ref().shutdown(Shutdown::Both);
    let _ = u.get_ref().shutdown(Shutdown::Both);
}

/// Identities shown upstream, by client node ID.
type Idents = Arc<Mutex<HashMap<crate::id::Id, Arc<LocalKeys>>>>;

/// A HANDSHAKE frame naming `from` names `to` instead.
fn rename(m: &mut Message, from: crate::id::Id, to: crate::id::Id) {
    if let Message::Handshake(h) = m {
        if h.node_id == from {
            h.node_id = to;
        }
    }
}

/// One direction of the proxy: frames decoded from one session, forwarded into the other.
#[derive(Default)]
struct Pump {
    buf: Vec<u8>,
    raw: bool,
}

impl Pump {
    /// Forwards what one read brings; `Err` when either side is gone.
    fn step<R: Read, W: Write>(
        &mut self,
        from: &mut R,
        to: &mut W,
        mut keep: impl FnMut(&mut Message) -> bool,
    ) -> Result<(), ()> {
        let mut chunk = vec![0u8; 65536];
        match from.read(&mut chunk) {
            Ok(0) => return Err(()),
            Ok(n) => self
                .buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(_) => return Err(()),
        }
        let mut out = Vec::new();
        while !self.raw {
            match decode_frame(&self.buf) {
                Ok(Some((mut m, used))) => {
                    if keep(&mut m) {
                        if matches!(m, Message::Handshake(_)) {
                            m.encode(&mut out);
                        } else {
                            out.extend_from_slice(self.buf.get(..used).unwrap_or_default());
                        }
                    }
                    self.buf.drain(..used);
                }
                Ok(None) => break,
                Err(_) => self.raw = true,
            }
        }
        if self.raw {
            out.append(&mut self.buf);
        }
        to.write_all(&out).map_err(|_| ())
    }
}

fn from_node(kind: BrokenKind, m: &Message, chunks: &AtomicU32) -> bool {
    if let Message::Bitfield(b) = m {
        chunks.store(b.len(), Ordering::Relaxed);
    }
    !(kind == BrokenKind::SilentErrors && matches!(m, Message::Error { .. }))
}

fn to_node(kind: BrokenKind, m: &Message, chunks: &AtomicU32, bitfields: &mut u32) -> bool {
    if kind != BrokenKind::Lenient {
        return true;
    }
    let n = chunks.load(Ordering::Relaxed);
    match m {
        Message::Bitfield(_) => {
            *bitfields += 1;
            *bitfields == 1
        }
        Message::Have(i) | Message::Request(i) | Message::Cancel(i) => *i < n,
        Message::Reject { chunk, .. } => *chunk < n,
        _ => true,
    }
}

/// The UDP side: one upstream socket per client address, answers rewritten on the way back.
fn udp_loop(kind: BrokenKind, sock: UdpSocket, upstream: SocketAddr) {
    let mut clients: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let bytes = buf.get(..n).unwrap_or_default();
        if kind == BrokenKind::Lenient && Datagram::decode(bytes).is_err() {
            // Answers what it should drop.
            let err = Datagram {
                flags: 0,
                txid: 0,
                sender: crate::id::Id::ZERO,
                msg: dht::Message::Error {
                    code: dht::error_code::BAD_REQUEST,
                    text: "malformed".into(),
                },
            };
            let _ = sock.send_to(&err.encode(), client);
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = clients.entry(client) {
            let Some(up) = upstream_socket(&sock, upstream, client) else {
                continue;
            };
            e.insert(up);
        }
        if let Some(up) = clients.get(&client) {
            let _ = up.send_to(bytes, upstream);
        }
    }
}

/// A socket towards `upstream` for `client`, with a thread carrying the answers back.
fn upstream_socket(
    sock: &UdpSocket,
    upstream: SocketAddr,
    client: SocketAddr,
) -> Option<UdpSocket> {
    let any = if upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let up = UdpSocket::bind(any).ok()?;
    let back = sock.try_clone().ok()?;
    let reader = up.try_clone().ok()?;
    std::thread::spawn(move || answers(reader, back, client));
    Some(up)
}

/// Carries the node's answers back to `client`, with our upstream address replaced by the
/// client's wherever the node wrote it.
fn answers(up: UdpSocket, back: UdpSocket, client: SocketAddr) {
    let port = up.local_addr().map_or(0, |a| a.port());
    let fix = |a: &mut SocketAddr| {
        if a.port() == port && a.ip().is_loopback() {
            *a = client;
        }
    };
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, _)) = up.recv_from(&mut buf) else {
            return;
        };
        let bytes = buf.get(..n).unwrap_or_default();
        let out = match Datagram::decode(bytes) {
            Ok(mut d) => {
                match &mut d.msg {
                    dht::Message::Pong { observed } => fix(observed),
                    dht::Message::Providers { providers, .. } => providers.iter_mut().for_each(fix),
                    _ => {}
                }
                d.encode()
            }
            Err(_) => bytes.to_vec(),
        };
        let _ = back.send_to(&out, client);
    }
}
