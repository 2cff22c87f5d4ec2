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
use std::sync::Arc;

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
    for client in tcp.incoming() {
        let Ok(client) = client else { continue };
        let Ok(up) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let (Ok(c2), Ok(u2)) = (client.try_clone(), up.try_clone()) else {
            continue;
        };
        // The node's chunk count, from its BITFIELD (u32::MAX until then).
        let chunks = Arc::new(AtomicU32::new(u32::MAX));
        let seen = chunks.clone();
        std::thread::spawn(move || pump(up, c2, |m| from_node(kind, m, &seen)));
        let mut bitfields = 0u32;
        std::thread::spawn(move || pump(client, u2, |m| to_node(kind, m, &chunks, &mut bitfields)));
    }
    Ok(())
}

/// Forwards frames from `from` to `to` while `keep` says so; bytes that do not decode are
/// forwarded as they are (the node must see them). Closes both ends when `from` ends.
fn pump(mut from: TcpStream, mut to: TcpStream, mut keep: impl FnMut(&Message) -> bool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut raw = false;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut out = Vec::new();
        while !raw {
            match decode_frame(&buf) {
                Ok(Some((m, used))) => {
                    if keep(&m) {
                        out.extend_from_slice(buf.get(..used).unwrap_or_default());
                    }
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(_) => raw = true,
            }
        }
        if raw {
            out.append(&mut buf);
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
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
