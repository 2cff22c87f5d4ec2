//! UPnP-IGD's sockets (spec: `protocol-spec/nat.md`, section 10): a UDP socket that sends
//! the SSDP search to 239.255.255.250:1900 and receives the routers' unicast answers, and one
//! TCP connection per HTTP exchange, written once connected and read to its end (at most
//! `MAX_HTTP` bytes, within [`HTTP_FOR`]). What the bytes mean is the core's
//! ([`crate::nat::upnp::UpnpClient`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use super::nat_io::NatSockEvent;
use super::tokens::Tokens;
use crate::nat::upnp::codec::{MAX_HTTP, SSDP_GROUP};

/// How long one HTTP exchange with the router may take.
pub const HTTP_FOR: Duration = Duration::from_secs(5);

struct Exchange {
    id: u64,
    stream: TcpStream,
    request: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    deadline: Instant,
}

/// The SSDP socket and the HTTP exchanges in progress.
#[derive(Default)]
pub struct UpnpSocks {
    ssdp: Option<(UdpSocket, Token)>,
    http: HashMap<Token, Exchange>,
}

impl UpnpSocks {
    /// Whether `t` is one of these sockets.
    pub fn owns(&self, t: Token) -> bool {
        self.http.contains_key(&t) || self.ssdp.as_ref().is_some_and(|(_, k)| *k == t)
    }

    /// When the next exchange times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.http.values().map(|x| x.deadline).min()
    }

    /// Sends the search (opening the socket the first time).
    pub fn search(&mut self, reg: &Registry, tokens: &mut Tokens, bytes: &[u8]) {
        if self.ssdp.is_none() {
            match open_ssdp(reg, tokens) {
                Ok(s) => self.ssdp = Some(s),
                Err(e) => {
                    log::debug!("upnp: cannot open the SSDP socket: {e}");
                    return;
                }
            }
        }
        if let Some((s, _)) = &self.ssdp {
            if let Err(e) = s.send_to(bytes, SocketAddr::V4(SSDP_GROUP)) {
                log::debug!("upnp: search: {e}");
            }
        }
    }

    /// Starts an HTTP exchange; reports a failure at once if the connect cannot start.
    #[allow(clippy::too_many_arguments)]
    pub fn http(
        &mut self,
        reg: &Registry,
        tokens: &mut Tokens,
        now: Instant,
        id: u64,
        to: SocketAddr,
        request: Vec<u8>,
        ev: &mut Vec<NatSockEvent>,
    ) {
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("upnp: connect to {to}: {e}");
                ev.push(NatSockEvent::UpnpHttp { id, response: None });
                return;
            }
        };
        let token = tokens.fresh();
        if let Err(e) = reg.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
            log::debug!("upnp: register: {e}");
            ev.push(NatSockEvent::UpnpHttp { id, response: None });
            return;
        }
        self.http.insert(
            token,
            Exchange {
                id,
                stream,
                request,
                written: 0,
                got: Vec::new(),
                deadline: now + HTTP_FOR,
            },
        );
    }

    /// Readiness of one of these sockets.
    pub fn ready(&mut self, reg: &Registry, t: Token, ev: &mut Vec<NatSockEvent>) {
        if let Some((s, _)) = self.ssdp.as_ref().filter(|(_, k)| *k == t) {
            let mut buf = [0u8; 2048];
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => ev.push(NatSockEvent::UpnpSsdp(buf[..n].to_vec())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("upnp: SSDP receive: {e}");
                        break;
                    }
                }
            }
            return;
        }
        let Some(x) = self.http.get_mut(&t) else {
            return;
        };
        match step(x) {
            Ok(false) => {}
            Ok(true) => self.finish(reg, t, true, ev),
            Err(e) => {
                log::debug!("upnp: HTTP exchange: {e}");
                self.finish(reg, t, false, ev);
            }
        }
    }

    /// Exchanges past their deadline fail.
    pub fn timeouts(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<NatSockEvent>) {
        let late: Vec<Token> = self
            .http
            .iter()
            .filter(|(_, x)| x.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.finish(reg, t, false, ev);
        }
    }

    fn finish(&mut self, reg: &Registry, t: Token, ok: bool, ev: &mut Vec<NatSockEvent>) {
        if let Some(mut x) = self.http.remove(&t) {
            let _ = reg.deregister(&mut x.stream);
            ev.push(NatSockEvent::UpnpHttp {
                id: x.id,
                response: ok.then_some(x.got),
            });
        }
    }
}

/// Moves the exchange on; true once the response is complete (the router closed).
fn step(x: &mut Exchange) -> io::Result<bool> {
    if let Some(e) = x.stream.take_error()? {
        return Err(e);
    }
    while x.written < x.request.len() {
        match x.stream.write(&x.request[x.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => x.written += n,
            // Not connected yet, or the buffer is full: wait for writability.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::NotConnected =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        match x.stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                if x.got.len() + n > MAX_HTTP {
                    return Err(io::Error::other("response too large"));
                }
                x.got.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn open_ssdp(reg: &Registry, tokens: &mut Tokens) -> io::Result<(UdpSocket, Token)> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_nonblocking(true)?;
    // UDA 1.1 asks for TTL 2; the router is on our link in any case.
    s.set_multicast_ttl_v4(2)?;
    s.set_multicast_loop_v4(false)?;
    s.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0).into())?;
    let mut u = UdpSocket::from_std(s.into());
    let token = tokens.fresh();
    reg.register(&mut u, token, Interest::READABLE)?;
    Ok((u, token))
}
