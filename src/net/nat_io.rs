//! NAT traversal's sockets (spec: `protocol-spec/nat.md`), opened when the node core says so
//! ([`NatIo`]) and reported back when something happens on them ([`NatSockEvent`]):
//!
//! - dial-backs: a TCP connection to a prober's wire port carrying one PROBE frame;
//! - punches: TCP sockets bound to our own wire port (SO_REUSEPORT beside the listener)
//!   connecting to the peer while it connects to us, so each side's SYN opens its own NAT
//!   for the other's (a simultaneous open);
//! - relays: a connection to the rendezvous announced with RELAY (as the downloader, until
//!   RELAY_OK; as the provider, joining the circuit);
//! - port mapping: a UDP socket connected to the default gateway's NAT-PMP port (so ICMP
//!   port unreachable comes back as an error, and nobody else's datagrams arrive).
//!
//! Decisions (when to punch, whether a punched socket is kept) are the core's; this module
//! only connects, writes the first frame, reads RELAY_OK, and keeps deadlines.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::socket::dest_for;
use super::tokens::Tokens;
use crate::conn::ConnId;
use crate::nat::Strategy;
use crate::node_core::NatIo;
use crate::proto::wire::Message as WireMsg;

/// How long a dial-back may take to connect and deliver its PROBE.
const DIALBACK_FOR: Duration = Duration::from_secs(3);
/// How long punch and relay sockets may take to connect (the core gives up sooner).
const CONNECT_FOR: Duration = Duration::from_secs(10);

/// What happened on a NAT socket, for the node core.
#[derive(Debug)]
pub enum NatSockEvent {
    /// A dial-back is over (delivered or not).
    DialBackDone,
    /// A downloader's punch socket connected: the core decides whether it becomes `conn`.
    PunchConnected {
        /// The engine's connection.
        conn: ConnId,
        /// The connected socket.
        stream: TcpStream,
    },
    /// A provider's punch socket connected, or its side of a relayed circuit opened: an
    /// incoming connection from `peer`.
    Accepted {
        /// The downloader.
        peer: SocketAddr,
        /// The connected socket.
        stream: TcpStream,
        /// How: punched or relayed.
        via: Strategy,
    },
    /// RELAY_OK came back: the socket is `conn`'s, relayed end to end.
    RelayReady {
        /// The engine's connection.
        conn: ConnId,
        /// The socket to the rendezvous.
        stream: TcpStream,
    },
    /// The relay attempt of `conn` failed.
    RelayFailed {
        /// The engine's connection.
        conn: ConnId,
    },
    /// The gateway answered.
    PmpDatagram(Vec<u8>),
    /// The gateway's NAT-PMP port is closed.
    PmpUnreachable,
    /// No socket to the gateway could be opened.
    PmpFailed,
    /// An answer to our SSDP search.
    UpnpSsdp(Vec<u8>),
    /// An HTTP exchange with a UPnP router ended: the whole response, or `None`.
    UpnpHttp {
        /// The core's request.
        id: u64,
        /// What the router sent before closing.
        response: Option<Vec<u8>>,
    },
}

enum Kind {
    DialBack,
    PunchOut { conn: ConnId },
    PunchIn,
    RelayOpen { conn: ConnId, got: Vec<u8> },
    RelayJoin { peer: SocketAddr },
}

struct NatSock {
    stream: TcpStream,
    kind: Kind,
    deadline: Instant,
    /// The first frame to write once connected (PROBE, RELAY).
    hello: Vec<u8>,
    connected: bool,
}

struct PmpSock {
    sock: UdpSocket,
    token: Token,
    gateway: SocketAddr,
}

/// The NAT layer's sockets.
#[derive(Default)]
pub struct NatSockets {
    socks: HashMap<Token, NatSock>,
    pmp: Option<PmpSock>,
    upnp: super::upnp_io::UpnpSocks,
}

impl NatSockets {
    /// Whether `t` is one of these sockets.
    pub fn owns(&self, t: Token) -> bool {
        self.socks.contains_key(&t)
            || self.pmp.as_ref().is_some_and(|p| p.token == t)
            || self.upnp.owns(t)
    }

    /// When the next socket times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let tcp = self.socks.values().map(|s| s.deadline).min();
        [tcp, self.upnp.next_deadline()].into_iter().flatten().min()
    }

    /// Carries out a socket output of the core (not the relay ones, which are `Relays`').
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        local: SocketAddr,
        now: Instant,
        io: NatIo,
        ev: &mut Vec<NatSockEvent>,
    ) {
        match io {
            NatIo::DialBack { addr, hello } => {
                let s = TcpStream::connect(dest_for(&local, addr));
                if !self.track(reg, tokens, now, s, Kind::DialBack, hello, DIALBACK_FOR) {
                    ev.push(NatSockEvent::DialBackDone);
                }
            }
            NatIo::PunchConnect { conn, addr } => {
                let s = punch_socket(local, addr);
                self.track(
                    reg,
                    tokens,
                    now,
                    s,
                    Kind::PunchOut { conn },
                    Vec::new(),
                    CONNECT_FOR,
                );
            }
            NatIo::PunchAccept { addr } => {
                let s = punch_socket(local, addr);
                self.track(reg, tokens, now, s, Kind::PunchIn, Vec::new(), CONNECT_FOR);
            }
            NatIo::DropPunches { conn } => {
                let mine: Vec<Token> = self
                    .socks
                    .iter()
                    .filter(|(_, s)| matches!(s.kind, Kind::PunchOut { conn: c } if c == conn))
                    .map(|(t, _)| *t)
                    .collect();
                for t in mine {
                    if let Some(mut s) = self.socks.remove(&t) {
                        let _ = reg.deregister(&mut s.stream);
                    }
                }
            }
            NatIo::RelayOpen {
                conn,
                rendezvous,
                hello,
            } => {
                let s = TcpStream::connect(dest_for(&local, rendezvous));
                let kind = Kind::RelayOpen {
                    conn,
                    got: Vec::new(),
                };
                if !self.track(reg, tokens, now, s, kind, hello, CONNECT_FOR) {
                    ev.push(NatSockEvent::RelayFailed { conn });
                }
            }
            NatIo::RelayJoin {
                rendezvous,
                hello,
                peer,
            } => {
                let s = TcpStream::connect(dest_for(&local, rendezvous));
                self.track(
                    reg,
                    tokens,
                    now,
                    s,
                    Kind::RelayJoin { peer },
                    hello,
                    CONNECT_FOR,
                );
            }
            NatIo::PmpSend { gateway, bytes } => self.pmp_send(reg, tokens, gateway, &bytes, ev),
            NatIo::UpnpSearch { bytes } => self.upnp.search(reg, tokens, &bytes),
            NatIo::UpnpHttp { id, to, request } => {
                self.upnp.http(reg, tokens, now, id, to, request, ev)
            }
            // The relay's own sockets live in `Relays`; the reactor routes these there.
            NatIo::HoldForRelay { .. } | NatIo::StartCircuit { .. } | NatIo::DropHeld { .. } => {
                log::error!("nat: relay output given to the NAT sockets; ignored");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        now: Instant,
        s: io::Result<TcpStream>,
        kind: Kind,
        hello: Vec<u8>,
        life: Duration,
    ) -> bool {
        let mut stream = match s {
            Ok(s) => s,
            Err(e) => {
                log::debug!("nat: connect failed: {e}");
                return false;
            }
        };
        let token = tokens.fresh();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = reg.register(&mut stream, token, interest) {
            log::debug!("nat: register: {e}");
            return false;
        }
        self.socks.insert(
            token,
            NatSock {
                stream,
                kind,
                deadline: now + life,
                hello,
                connected: false,
            },
        );
        true
    }

    /// Readiness of one of these sockets.
    pub fn ready(&mut self, reg: &Registry, t: Token, ev: &mut Vec<NatSockEvent>) {
        if self.pmp.as_ref().is_some_and(|p| p.token == t) {
            self.pmp_read(ev);
            return;
        }
        if self.upnp.owns(t) {
            self.upnp.ready(reg, t, ev);
            return;
        }
        let Some(s) = self.socks.get_mut(&t) else {
            return;
        };
        if !s.connected {
            match s.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    log::debug!("nat: connect failed: {e}");
                    self.failed(reg, t, ev);
                    return;
                }
            }
            match s.stream.peer_addr() {
                Ok(_) => s.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    log::debug!("nat: connect failed: {e}");
                    self.failed(reg, t, ev);
                    return;
                }
            }
            if !s.hello.is_empty() {
                // A small first frame on a fresh connection: one write takes it.
                let hello = std::mem::take(&mut s.hello);
                if s.stream.write_all(&hello).is_err() {
                    self.failed(reg, t, ev);
                    return;
                }
            }
            let _ = s.stream.set_nodelay(true);
        }
        let Some(s) = self.socks.remove(&t) else {
            return;
        };
        match s.kind {
            Kind::DialBack => {
                let mut stream = s.stream;
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = reg.deregister(&mut stream);
                ev.push(NatSockEvent::DialBackDone);
            }
            Kind::PunchOut { conn } => ev.push(NatSockEvent::PunchConnected {
                conn,
                stream: s.stream,
            }),
            Kind::PunchIn => {
                let peer = s
                    .stream
                    .peer_addr()
                    .map(crate::proto::codec::canonical_addr);
                match peer {
                    Ok(peer) => ev.push(NatSockEvent::Accepted {
                        peer,
                        stream: s.stream,
                        via: Strategy::Punched,
                    }),
                    Err(e) => {
                        let mut stream = s.stream;
                        log::debug!("nat: punched socket lost its peer: {e}");
                        let _ = reg.deregister(&mut stream);
                    }
                }
            }
            Kind::RelayJoin { peer } => ev.push(NatSockEvent::Accepted {
                peer,
                stream: s.stream,
                via: Strategy::Relayed,
            }),
            Kind::RelayOpen { conn, mut got } => {
                let mut stream = s.stream;
                // Read RELAY_OK (5 bytes) and nothing more: what follows is the provider's.
                let mut ok = Vec::new();
                WireMsg::RelayOk.encode(&mut ok);
                let mut failed = false;
                while got.len() < ok.len() {
                    let mut b = [0u8; 8];
                    let want = ok.len() - got.len();
                    match stream.read(b.get_mut(..want).unwrap_or(&mut [])) {
                        Ok(0) => {
                            failed = true;
                            break;
                        }
                        Ok(n) => got.extend_from_slice(b.get(..n).unwrap_or(&[])),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed || !ok.starts_with(&got) {
                    log::debug!("nat: relay refused for connection {conn}");
                    let _ = reg.deregister(&mut stream);
                    ev.push(NatSockEvent::RelayFailed { conn });
                    return;
                }
                if got.len() < ok.len() {
                    self.socks.insert(
                        t,
                        NatSock {
                            stream,
                            kind: Kind::RelayOpen { conn, got },
                            deadline: s.deadline,
                            hello: Vec::new(),
                            connected: true,
                        },
                    );
                    return;
                }
                ev.push(NatSockEvent::RelayReady { conn, stream });
            }
        }
    }

    fn failed(&mut self, reg: &Registry, t: Token, ev: &mut Vec<NatSockEvent>) {
        let Some(mut s) = self.socks.remove(&t) else {
            return;
        };
        let _ = reg.deregister(&mut s.stream);
        match s.kind {
            Kind::DialBack => ev.push(NatSockEvent::DialBackDone),
            // The punch may still succeed from the other side (its SYN to our listener)
            // until the core's deadline moves on to a relay.
            Kind::PunchOut { .. } | Kind::PunchIn | Kind::RelayJoin { .. } => {}
            Kind::RelayOpen { conn, .. } => ev.push(NatSockEvent::RelayFailed { conn }),
        }
    }

    /// Sockets that took too long.
    pub fn timeouts(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<NatSockEvent>) {
        self.upnp.timeouts(reg, now, ev);
        let late: Vec<Token> = self
            .socks
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.failed(reg, t, ev);
        }
    }

    /// Sends a NAT-PMP request, opening the socket to the gateway on first use.
    fn pmp_send(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        gateway: SocketAddr,
        bytes: &[u8],
        ev: &mut Vec<NatSockEvent>,
    ) {
        if self.pmp.as_ref().is_none_or(|p| p.gateway != gateway) {
            let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                .and_then(|s| s.connect(gateway).map(|()| s))
                .and_then(|s| s.set_nonblocking(true).map(|()| s));
            let mut sock = match sock {
                Ok(s) => UdpSocket::from_std(s),
                Err(e) => {
                    log::warn!("nat-pmp: cannot open a socket to the gateway {gateway}: {e}");
                    ev.push(NatSockEvent::PmpFailed);
                    return;
                }
            };
            let token = tokens.fresh();
            if let Err(e) = reg.register(&mut sock, token, Interest::READABLE) {
                log::warn!("nat-pmp: cannot register the gateway socket: {e}");
                ev.push(NatSockEvent::PmpFailed);
                return;
            }
            self.pmp = Some(PmpSock {
                sock,
                token,
                gateway,
            });
        }
        let Some(p) = self.pmp.as_ref() else {
            return;
        };
        match p.sock.send(bytes) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                ev.push(NatSockEvent::PmpUnreachable)
            }
            // Lost like a datagram on the wire; the client retransmits.
            Err(e) => log::debug!("nat-pmp: send to {}: {e}", p.gateway),
        }
    }

    /// Reads what the gateway sent.
    fn pmp_read(&mut self, ev: &mut Vec<NatSockEvent>) {
        let Some(p) = self.pmp.as_ref() else {
            return;
        };
        let mut buf = [0u8; 64];
        loop {
            match p.sock.recv(&mut buf) {
                Ok(n) => ev.push(NatSockEvent::PmpDatagram(
                    buf.get(..n).unwrap_or(&[]).to_vec(),
                )),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    ev.push(NatSockEvent::PmpUnreachable)
                }
                Err(e) => {
                    log::debug!("nat-pmp: receive from {}: {e}", p.gateway);
                    break;
                }
            }
        }
    }
}

/// A TCP socket bound to our wire port (beside the listener, SO_REUSEPORT), connecting
/// to `to`: one half of a simultaneous open.
fn punch_socket(local: SocketAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if local.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    match s.connect(&dest_for(&local, to).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let std: std::net::TcpStream = s.into();
    Ok(TcpStream::from_std(std))
}

/// The IPv4 default gateway, for port mapping (`None`: there is none, or it cannot be read),
/// and our address towards it (what a UDP socket connected to it is bound to: PCP requests
/// carry it).
pub fn default_gateway() -> Option<crate::nat::pmp::Gateway> {
    let addr = match std::fs::read_to_string("/proc/net/route") {
        Ok(text) => crate::nat::pmp::default_gateway(&text)?,
        Err(e) => {
            log::debug!("nat-pmp: cannot read /proc/net/route: {e}");
            return None;
        }
    };
    let local = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((addr, crate::nat::pmp::SERVER_PORT))?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        });
    Some(crate::nat::pmp::Gateway { addr, local })
}
