//! Binding the node's sockets: a UDP socket for the DHT and a TCP listener for the wire
//! protocol on the same port number, dual-stack when the address is `[::]`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The bound DHT and wire sockets.
pub struct Bound {
    /// UDP, for the DHT.
    pub udp: mio::net::UdpSocket,
    /// TCP, for the wire protocol.
    pub tcp: mio::net::TcpListener,
    /// The address both are bound to.
    pub local: SocketAddr,
}

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    // Restarting a node must not fail on connections lingering in TIME_WAIT.
    s.set_reuse_address(true)?;
    if reuse_port {
        // NAT hole punching connects from this very port (nat.md: simultaneous open), which
        // Linux allows only when every socket bound to it sets SO_REUSEPORT. The UDP socket
        // on the same port number still keeps a second node off it.
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s)
}

/// Binds UDP and TCP on `ip:port`. Port 0 picks a port free for both. If `ip` is the IPv6
/// wildcard and IPv6 is unavailable, falls back to `0.0.0.0`.
pub fn bind_pair(ip: IpAddr, port: u16) -> io::Result<Bound> {
    match bind_pair_exact(ip, port) {
        Err(e)
            if ip == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                && e.kind() != io::ErrorKind::AddrInUse =>
        {
            log::info!("IPv6 unavailable ({e}); listening on IPv4 only");
            bind_pair_exact(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        }
        r => r,
    }
}

fn bind_pair_exact(ip: IpAddr, port: u16) -> io::Result<Bound> {
    // With port 0 the kernel picks a free UDP port; TCP may have it taken, so try a few.
    let attempts = if port == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp_socket(SocketAddr::new(ip, port))?;
        let local = udp
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("UDP socket has no IP address"))?;
        match tcp_listener(SocketAddr::new(ip, local.port()), true) {
            Ok(tcp) => {
                let udp = mio::net::UdpSocket::from_std(udp.into());
                let tcp = mio::net::TcpListener::from_std(tcp.into());
                return Ok(Bound { udp, tcp, local });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

/// The address to give others for this node when it is bound to `local`. A wildcard bind
/// (`[::]` or `0.0.0.0`) is nobody's address: this is the source address the kernel would
/// pick to reach the internet (asked by connecting a UDP socket, which sends nothing),
/// IPv4 first since most peers speak it, else IPv6, else loopback on a machine without a
/// route. The port is `local`'s.
pub fn advertised_addr(local: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    // Documentation addresses (RFC 5737, RFC 3849): routed by the default route, never used.
    let v4 = route_source("0.0.0.0:0", "192.0.2.1:9");
    let v6 = || route_source("[::]:0", "[2001:db8::1]:9");
    let ip = match local.ip() {
        IpAddr::V4(_) => v4.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => v4.or_else(v6).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    SocketAddr::new(ip, local.port())
}

/// The source address the routing table chooses towards `dest`, if there is a route.
fn route_source(bind: &str, dest: &str) -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(dest).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Binds a TCP listener (the local API).
pub fn listen_tcp(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let s = tcp_listener(addr, false)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// The destination as the socket wants it: an IPv4 destination from a dual-stack IPv6
/// socket must be written as an IPv4-mapped IPv6 address.
pub fn dest_for(local: &SocketAddr, dest: SocketAddr) -> SocketAddr {
    match (local.ip(), dest.ip()) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => {
            SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), dest.port())
        }
        _ => dest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_pair_shares_one_port() {
        let b = bind_pair(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        assert_ne!(b.local.port(), 0);
        assert_eq!(b.tcp.local_addr().unwrap().port(), b.local.port());
        // The same fixed port cannot be bound twice.
        assert!(bind_pair(IpAddr::V4(Ipv4Addr::LOCALHOST), b.local.port()).is_err());
    }

    #[test]
    fn v4_destinations_are_mapped_on_v6_sockets() {
        let l6: SocketAddr = "[::]:1".parse().unwrap();
        let l4: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let d: SocketAddr = "192.0.2.1:9".parse().unwrap();
        assert_eq!(dest_for(&l6, d), "[::ffff:192.0.2.1]:9".parse().unwrap());
        assert_eq!(dest_for(&l4, d), d);
    }

    #[test]
    fn a_wildcard_bind_is_advertised_as_a_real_address() {
        let exact: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(advertised_addr(exact), exact);
        for wild in ["[::]:7", "0.0.0.0:7"] {
            let a = advertised_addr(wild.parse().unwrap());
            assert!(!a.ip().is_unspecified(), "{wild} -> {a}");
            assert_eq!(a.port(), 7);
        }
    }
}
