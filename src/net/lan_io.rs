//! LAN discovery's sockets (spec: `protocol-spec/nat.md`, section 11): per address family, a
//! receiver bound to the group's port that joined the group, and a sender on a port of its
//! own (multicast with TTL / hop limit 1, and the unicast answers, which come back to it).
//! Decisions are the node core's ([`crate::nat::lan::Lan`]); this module only moves bytes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::tokens::Tokens;
use crate::nat::lan::{LanTransmit, GROUP_PORT, GROUP_V4, GROUP_V6};

/// One family's pair of sockets.
struct Family {
    recv: UdpSocket,
    send: UdpSocket,
    recv_token: Token,
    send_token: Token,
    group: SocketAddr,
}

impl Family {
    /// Tokens are given at registration.
    fn new(recv: Socket, send: Socket, group: SocketAddr) -> Family {
        Family {
            recv: UdpSocket::from_std(recv.into()),
            send: UdpSocket::from_std(send.into()),
            recv_token: Token(usize::MAX),
            send_token: Token(usize::MAX),
            group,
        }
    }
}

/// The LAN discovery sockets, IPv4 and/or IPv6.
pub struct LanSockets {
    families: Vec<Family>,
}

impl LanSockets {
    /// Opens the sockets for a node listening at `local`: the family of its address (both
    /// for `::`), on the interface of its address when it names one. Fails only if no
    /// family could be opened.
    pub fn open(local: SocketAddr) -> io::Result<LanSockets> {
        let ip = local.ip();
        let mut families = Vec::new();
        let mut last = None;
        let v4 = match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) if a.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => None,
        };
        if let Some(a) = v4 {
            match open_v4(a) {
                Ok(f) => families.push(f),
                Err(e) => last = Some(e),
            }
        }
        if let IpAddr::V6(a) = ip {
            match open_v6(a) {
                Ok(f) => families.push(f),
                Err(e) => last = Some(e),
            }
        }
        if families.is_empty() {
            return Err(last.unwrap_or_else(|| io::Error::other("no address family")));
        }
        Ok(LanSockets { families })
    }

    /// Registers every socket.
    pub fn register(&mut self, reg: &Registry, tokens: &mut Tokens) -> io::Result<()> {
        for f in &mut self.families {
            f.recv_token = tokens.fresh();
            f.send_token = tokens.fresh();
            reg.register(&mut f.recv, f.recv_token, Interest::READABLE)?;
            reg.register(&mut f.send, f.send_token, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether `t` is one of these sockets.
    pub fn owns(&self, t: Token) -> bool {
        self.families
            .iter()
            .any(|f| f.recv_token == t || f.send_token == t)
    }

    /// Reads every datagram waiting on socket `t` into `out` (source, bytes).
    pub fn read(&mut self, t: Token, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let mut buf = [0u8; 1500];
        for f in &mut self.families {
            let sock = if f.recv_token == t {
                &f.recv
            } else if f.send_token == t {
                &f.send
            } else {
                continue;
            };
            // Until WouldBlock: readiness is edge-triggered.
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => out.push((from, buf[..n].to_vec())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("lan: receive: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Sends a datagram of the core: to every family's group, or to one node.
    pub fn send(&self, t: &LanTransmit) {
        for f in &self.families {
            let dest = match t.dest {
                None => f.group,
                Some(d) if d.is_ipv4() == f.group.is_ipv4() => d,
                Some(_) => continue,
            };
            if let Err(e) = f.send.send_to(&t.bytes, dest) {
                // No route (an interface down, no address yet): the next announce retries.
                log::debug!("lan: send to {dest}: {e}");
            }
        }
    }
}

fn reusable(domain: Domain) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Several nodes on one host all listen on the group's port, and all get each datagram.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn open_v4(iface: Ipv4Addr) -> io::Result<Family> {
    let recv = reusable(Domain::IPV4)?;
    recv.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), GROUP_PORT).into())?;
    recv.join_multicast_v4(&GROUP_V4, &iface)?;
    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_nonblocking(true)?;
    // Link-local only: no router forwards a datagram with TTL 1.
    send.set_multicast_ttl_v4(1)?;
    send.set_multicast_loop_v4(true)?;
    if !iface.is_unspecified() {
        send.set_multicast_if_v4(&iface)?;
    }
    send.bind(&SocketAddr::new(iface.into(), 0).into())?;
    Ok(Family::new(
        recv,
        send,
        SocketAddr::new(GROUP_V4.into(), GROUP_PORT),
    ))
}

fn open_v6(addr: Ipv6Addr) -> io::Result<Family> {
    let recv = reusable(Domain::IPV6)?;
    recv.set_only_v6(true)?;
    recv.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), GROUP_PORT).into())?;
    // Interface 0: the one the routing table gives the group (the default interface).
    recv.join_multicast_v6(&GROUP_V6, 0)?;
    let send = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_only_v6(true)?;
    send.set_nonblocking(true)?;
    send.set_multicast_hops_v6(1)?;
    send.set_multicast_loop_v6(true)?;
    // Bound to the node's own address when it has one, so that is the source peers see.
    send.bind(&SocketAddr::new(addr.into(), 0).into())?;
    Ok(Family::new(
        recv,
        send,
        SocketAddr::new(GROUP_V6.into(), GROUP_PORT),
    ))
}
