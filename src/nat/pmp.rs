//! A NAT-PMP client (RFC 6886) as a sans-IO state machine (spec: `protocol-spec/nat.md`,
//! section 10).
//!
//! A node behind a router that offers NAT-PMP asks it to forward the node's port — UDP for
//! the DHT and TCP for the wire protocol, the same number outside as inside — so that the
//! node is reachable as it is, without a rendezvous ("mapped" in nat.md, section 2).
//!
//! [`PmpClient`] owns no socket and never reads the clock. The reactor
//! (`src/net/reactor_nat.rs`) finds the gateway (the default route), sends every datagram of
//! [`PmpClient::poll_transmit`] to the gateway's port [`SERVER_PORT`], and drives it:
//!
//! - **inputs**: [`PmpClient::handle_datagram`] (a datagram from the gateway's port 5351),
//!   [`PmpClient::handle_unreachable`] (ICMP port unreachable: no NAT-PMP server there),
//!   [`PmpClient::handle_timeout`];
//! - **commands**: [`PmpClient::start`], [`PmpClient::shutdown`] (remove the mappings);
//! - **outputs**: [`PmpClient::poll_transmit`], [`PmpClient::poll_event`],
//!   [`PmpClient::poll_timeout`].
//!
//! As everywhere in PeerShare: after every input or command, drain the outputs, then sleep
//! until `poll_timeout`.
//!
//! One request is outstanding at a time (first the external address, then the UDP mapping,
//! then the TCP one), retransmitted after 250 ms, doubling, at most `max_tries` times
//! (section 3.1, says 9). Mappings are renewed at half their granted lifetime
//! (section 3.3), and at once when the gateway's epoch shows it lost its state (section
//! 3.6): while mapped, the client asks for the external address every `retry_after`
//! (10 minutes), a 2-byte request whose answer carries the epoch, so a rebooted router is
//! noticed within minutes rather than at the next renewal.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The UDP port a NAT-PMP gateway listens on.
pub const SERVER_PORT: u16 = 5351;

/// NAT-PMP's version number (PCP, its successor, is version 2).
pub const VERSION: u8 = 0;

/// Request opcodes; a response has the request's opcode plus 128.
pub mod opcode {
    /// What is the gateway's external IPv4 address?
    pub const EXTERNAL_ADDRESS: u8 = 0;
    /// Map a UDP port.
    pub const MAP_UDP: u8 = 1;
    /// Map a TCP port.
    pub const MAP_TCP: u8 = 2;
    /// Added to a request's opcode in its response.
    pub const RESPONSE: u8 = 128;
}

/// Result codes (RFC 6886, section 3.5).
pub mod result_code {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: u16 = 1;
    /// Not authorized or refused (the gateway has NAT-PMP disabled, or refuses this port).
    pub const NOT_AUTHORIZED: u16 = 2;
    /// Network failure (the gateway has no external address yet).
    pub const NETWORK_FAILURE: u16 = 3;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u16 = 4;
    /// Unsupported opcode.
    pub const UNSUPPORTED_OPCODE: u16 = 5;

    /// A short name for logs and status pages.
    pub fn name(code: u16) -> &'static str {
        match code {
            SUCCESS => "success",
            UNSUPPORTED_VERSION => "unsupported version",
            NOT_AUTHORIZED => "not authorized or refused",
            NETWORK_FAILURE => "network failure",
            OUT_OF_RESOURCES => "out of resources",
            UNSUPPORTED_OPCODE => "unsupported opcode",
            _ => "unknown result code",
        }
    }
}

/// A transport protocol of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// UDP (the DHT).
    Udp,
    /// TCP (the wire protocol).
    Tcp,
}

impl Proto {
    fn opcode(self) -> u8 {
        match self {
            Proto::Udp => opcode::MAP_UDP,
            Proto::Tcp => opcode::MAP_TCP,
        }
    }

    fn index(self) -> usize {
        match self {
            Proto::Udp => 0,
            Proto::Tcp => 1,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// A request from the client to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `00 00`: what is your external address?
    ExternalAddress,
    /// Map (or, with `lifetime` 0 and `external` 0, remove) a port.
    Map {
        /// Which protocol.
        proto: Proto,
        /// The port on this host.
        internal: u16,
        /// The external port we would like (a hint).
        external: u16,
        /// Requested lifetime in seconds; 0 removes the mapping.
        lifetime: u32,
    },
}

impl Request {
    /// The request's bytes: 2 for the external address, 12 for a mapping.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Request::ExternalAddress => vec![VERSION, opcode::EXTERNAL_ADDRESS],
            Request::Map {
                proto,
                internal,
                external,
                lifetime,
            } => {
                let mut v = Vec::with_capacity(12);
                v.extend_from_slice(&[VERSION, proto.opcode(), 0, 0]);
                v.extend_from_slice(&internal.to_be_bytes());
                v.extend_from_slice(&external.to_be_bytes());
                v.extend_from_slice(&lifetime.to_be_bytes());
                v
            }
        }
    }

    fn opcode(&self) -> u8 {
        match self {
            Request::ExternalAddress => opcode::EXTERNAL_ADDRESS,
            Request::Map { proto, .. } => proto.opcode(),
        }
    }
}

/// What a response carries after its common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The gateway's external IPv4 address (zero when the result is not success).
    ExternalAddress(Ipv4Addr),
    /// A mapping (or its removal).
    Map {
        /// UDP or TCP.
        proto: Proto,
        /// The port on this host the mapping is for.
        internal: u16,
        /// The external port granted (0 for a removal).
        external: u16,
        /// Granted lifetime in seconds (0 for a removal).
        lifetime: u32,
    },
}

/// A response from the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Result code ([`result_code`]).
    pub result: u16,
    /// Seconds since the gateway's mapping table was (re)initialised.
    pub epoch: u32,
    /// The rest.
    pub body: Body,
}

/// Why a datagram from the gateway is not a NAT-PMP response we accept. Every input gets
/// one of these or a [`Response`]; nothing panics and nothing is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header or than the response its opcode announces.
    UnexpectedEnd {
        /// Bytes that response needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// Not version 0 (a PCP gateway answers version 2).
    UnsupportedVersion(u8),
    /// The opcode is a request's (below 128): not a response.
    NotAResponse(u8),
    /// A response opcode other than 128, 129, 130.
    UnknownOpcode(u8),
    /// Bytes after the response.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd { needed, got } => {
                write!(f, "NAT-PMP response cut short: {got} bytes, needs {needed}")
            }
            DecodeError::UnsupportedVersion(v) => write!(f, "NAT-PMP version {v}, expected 0"),
            DecodeError::NotAResponse(op) => write!(f, "opcode {op} is a request, not a response"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown NAT-PMP response opcode {op}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the NAT-PMP response"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b2, c, d]) => u32::from_be_bytes([a, b2, c, d]),
        _ => 0,
    }
}

impl Response {
    /// Decodes a response. Lengths are checked before every read (the helpers above only
    /// see checked ranges).
    pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
        let (Some(&version), Some(&op)) = (b.first(), b.get(1)) else {
            return Err(DecodeError::UnexpectedEnd {
                needed: 2,
                got: b.len(),
            });
        };
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if op < opcode::RESPONSE {
            return Err(DecodeError::NotAResponse(op));
        }
        let (needed, proto) = match op - opcode::RESPONSE {
            opcode::EXTERNAL_ADDRESS => (12, None),
            opcode::MAP_UDP => (16, Some(Proto::Udp)),
            opcode::MAP_TCP => (16, Some(Proto::Tcp)),
            _ => return Err(DecodeError::UnknownOpcode(op)),
        };
        if b.len() < needed {
            return Err(DecodeError::UnexpectedEnd {
                needed,
                got: b.len(),
            });
        }
        if b.len() > needed {
            return Err(DecodeError::TrailingBytes(b.len() - needed));
        }
        let result = be16(b, 2);
        let epoch = be32(b, 4);
        let body = match proto {
            None => Body::ExternalAddress(Ipv4Addr::from(be32(b, 8))),
            Some(proto) => Body::Map {
                proto,
                internal: be16(b, 8),
                external: be16(b, 10),
                lifetime: be32(b, 12),
            },
        };
        Ok(Response {
            result,
            epoch,
            body,
        })
    }

    /// The response's bytes (what a gateway sends; used by tests and the spec's examples).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        let op = match self.body {
            Body::ExternalAddress(_) => opcode::EXTERNAL_ADDRESS,
            Body::Map { proto, .. } => proto.opcode(),
        };
        v.extend_from_slice(&[VERSION, opcode::RESPONSE + op]);
        v.extend_from_slice(&self.result.to_be_bytes());
        v.extend_from_slice(&self.epoch.to_be_bytes());
        match self.body {
            Body::ExternalAddress(a) => v.extend_from_slice(&a.octets()),
            Body::Map {
                internal,
                external,
                lifetime,
                ..
            } => {
                v.extend_from_slice(&internal.to_be_bytes());
                v.extend_from_slice(&external.to_be_bytes());
                v.extend_from_slice(&lifetime.to_be_bytes());
            }
        }
        v
    }

    fn request_opcode(&self) -> u8 {
        match self.body {
            Body::ExternalAddress(_) => opcode::EXTERNAL_ADDRESS,
            Body::Map { proto, .. } => proto.opcode(),
        }
    }
}

/// The default IPv4 gateway in the text of Linux's `/proc/net/route`: the first route with
/// destination 0 and the RTF_GATEWAY flag. Fields are hexadecimal, addresses in host byte
/// order (little-endian on the machines we run on). The reactor reads the file; this only
/// parses it.
pub fn default_gateway(proc_net_route: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    proc_net_route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().take(4).collect();
        let [_iface, dest, gw, flags] = f.as_slice() else {
            return None;
        };
        let dest = u32::from_str_radix(dest, 16).ok()?;
        let gw = u32::from_str_radix(gw, 16).ok()?;
        let flags = u32::from_str_radix(flags, 16).ok()?;
        (dest == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY && gw != 0)
            .then(|| Ipv4Addr::from(gw.to_le_bytes()))
    })
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct PmpConfig {
    /// The port to map, UDP and TCP, the same number outside.
    pub port: u16,
    /// The lifetime to ask for (RFC 6886 recommends 7200 s).
    pub lifetime: Duration,
    /// First retransmission timeout; it doubles with every try.
    pub first_rto: Duration,
    /// Most transmissions of one request.
    pub max_tries: u32,
    /// After the gateway refused or never answered, when to ask again (the router may be
    /// replaced or reconfigured); while mapped, how often to check the gateway's epoch.
    pub retry_after: Duration,
}

impl Default for PmpConfig {
    fn default() -> Self {
        PmpConfig {
            port: 0,
            lifetime: Duration::from_secs(7200),
            first_rto: Duration::from_millis(250),
            max_tries: 9,
            retry_after: Duration::from_secs(600),
        }
    }
}

/// What happened to our mappings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PmpEvent {
    /// Both mappings are in place: the node is reachable at `external`:`port`.
    Mapped {
        /// The gateway's external address.
        external: Ipv4Addr,
        /// The port, UDP and TCP.
        port: u16,
        /// The shorter of the two granted lifetimes.
        lifetime: Duration,
    },
    /// We had no mapping, or lost it; `reason` says why.
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// Shutdown: the mappings are removed (or the gateway stopped answering).
    Removed,
}

/// Where the client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmpState {
    /// Not started.
    Idle,
    /// Asking for the address and the mappings.
    Mapping,
    /// Both mappings are in place (renewals happen in this state).
    Mapped,
    /// The gateway refused or does not answer; we ask again after `retry_after`.
    Unavailable,
    /// Removing the mappings.
    Removing,
    /// Stopped.
    Done,
}

impl PmpState {
    /// Lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            PmpState::Idle => "idle",
            PmpState::Mapping => "mapping",
            PmpState::Mapped => "mapped",
            PmpState::Unavailable => "unavailable",
            PmpState::Removing => "removing",
            PmpState::Done => "done",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    req: Request,
    tries: u32,
    rto: Duration,
    deadline: Instant,
}

/// Counters for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PmpCounters {
    /// Requests sent, retransmissions included.
    pub sent: u64,
    /// Successful renewals (both mappings).
    pub renewals: u64,
    /// Datagrams ignored: undecodable, or answering nothing we asked.
    pub ignored: u64,
}

/// The NAT-PMP client. See the module docs for the call order.
#[derive(Debug)]
pub struct PmpClient {
    cfg: PmpConfig,
    state: PmpState,
    queue: VecDeque<Request>,
    in_flight: Option<InFlight>,
    external: Option<Ipv4Addr>,
    /// Granted (external port, lifetime), by [`Proto::index`].
    granted: [Option<(u16, Duration)>; 2],
    renew_at: Option<Instant>,
    retry_at: Option<Instant>,
    /// While mapped: when to ask for the external address (and so the epoch) again.
    check_at: Option<Instant>,
    /// The gateway's last epoch and when we saw it.
    epoch: Option<(u32, Instant)>,
    counters: PmpCounters,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<PmpEvent>,
}

impl PmpClient {
    /// A client for `cfg.port`; nothing is sent before [`PmpClient::start`].
    pub fn new(cfg: PmpConfig) -> Self {
        PmpClient {
            cfg,
            state: PmpState::Idle,
            queue: VecDeque::new(),
            in_flight: None,
            external: None,
            granted: [None, None],
            renew_at: None,
            retry_at: None,
            check_at: None,
            epoch: None,
            counters: PmpCounters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- commands -----------------------------------------------------------------

    /// Asks the gateway for its external address, then for both mappings.
    pub fn start(&mut self, now: Instant) {
        if matches!(self.state, PmpState::Removing | PmpState::Done) {
            return;
        }
        self.state = PmpState::Mapping;
        self.retry_at = None;
        self.queue.clear();
        self.queue.push_back(Request::ExternalAddress);
        self.queue_maps();
        self.in_flight = None;
        self.send_next(now);
    }

    /// Removes the mappings (requests with lifetime 0). Returns false when there is nothing
    /// to remove (then the client is done at once).
    pub fn shutdown(&mut self, now: Instant) -> bool {
        self.queue.clear();
        self.in_flight = None;
        self.renew_at = None;
        self.retry_at = None;
        self.check_at = None;
        // A mapping request may have been granted without our seeing the answer: remove
        // what we asked for, not only what we know was granted; but a gateway that never
        // answered anything has granted nothing, and a stopping node should not wait for it.
        let answered = self.epoch.is_some();
        let asked = (answered && matches!(self.state, PmpState::Mapping | PmpState::Mapped))
            || self.granted.iter().any(Option::is_some);
        if !asked {
            self.state = PmpState::Done;
            return false;
        }
        self.state = PmpState::Removing;
        for proto in [Proto::Udp, Proto::Tcp] {
            self.queue_removal(proto);
        }
        self.send_next(now);
        true
    }

    // ----- inputs -------------------------------------------------------------------

    /// A datagram from the gateway's NAT-PMP port (the reactor checks the source).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DecodeError> {
        let resp = match Response::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.counters.ignored += 1;
                return Err(e);
            }
        };
        let Some(f) = self.in_flight else {
            self.counters.ignored += 1;
            return Ok(());
        };
        let ours = resp.request_opcode() == f.req.opcode()
            && match resp.body {
                Body::Map { internal, .. } => internal == self.cfg.port,
                Body::ExternalAddress(_) => true,
            };
        if !ours {
            // A late answer to an earlier request, or someone else's.
            self.counters.ignored += 1;
            return Ok(());
        }
        self.in_flight = None;
        let lost_state = self.check_epoch(now, resp.epoch);
        if resp.result != result_code::SUCCESS {
            if self.state == PmpState::Removing {
                self.send_next(now);
                self.finish_removal();
                return Ok(());
            }
            let why = format!(
                "the gateway answered {} ({}) to {}",
                resp.result,
                result_code::name(resp.result),
                describe(&f.req)
            );
            self.give_up(now, why);
            return Ok(());
        }
        match (resp.body, f.req) {
            (Body::ExternalAddress(a), _) => self.external = Some(a),
            (
                Body::Map {
                    proto,
                    external,
                    lifetime,
                    ..
                },
                Request::Map {
                    lifetime: asked, ..
                },
            ) => {
                if asked == 0 {
                    self.granted[proto.index()] = None;
                } else if external != self.cfg.port || lifetime == 0 {
                    // Our provider records carry our port number: another external port
                    // would be announced wrongly. Remove what was granted and do without.
                    self.granted[proto.index()] = Some((external, Duration::ZERO));
                    let why = format!(
                        "the gateway mapped {} port {} to {external} (lifetime {lifetime} s), not to the same port",
                        proto.name(),
                        self.cfg.port
                    );
                    self.give_up(now, why);
                    self.queue_removal(proto);
                    self.send_next(now);
                    return Ok(());
                } else {
                    self.granted[proto.index()] =
                        Some((external, Duration::from_secs(u64::from(lifetime))));
                }
            }
            // An ExternalAddress request cannot get a Map answer (opcodes matched above).
            (Body::Map { .. }, Request::ExternalAddress) => {}
        }
        self.send_next(now);
        if self.in_flight.is_none() {
            self.all_answered(now, &f.req);
        }
        if lost_state && self.state == PmpState::Mapped {
            // The gateway restarted and forgot our mappings: ask again now (section 3.6).
            self.renew(now);
        }
        Ok(())
    }

    /// ICMP port unreachable from the gateway: it runs no NAT-PMP server.
    pub fn handle_unreachable(&mut self, now: Instant) {
        if self.in_flight.is_none() {
            return;
        }
        if self.state == PmpState::Removing {
            self.in_flight = None;
            self.queue.clear();
            self.finish_removal();
            return;
        }
        self.give_up(
            now,
            "the gateway has no NAT-PMP server (port unreachable)".into(),
        );
    }

    /// Time has passed: retransmit, renew, retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(mut f) = self.in_flight {
            if f.deadline <= now {
                if f.tries >= self.cfg.max_tries {
                    self.in_flight = None;
                    if self.state == PmpState::Removing {
                        // The gateway is gone; its mappings will expire on their own.
                        self.queue.clear();
                        self.finish_removal();
                    } else {
                        let why =
                            format!("no answer to {} after {} tries", describe(&f.req), f.tries);
                        self.give_up(now, why);
                    }
                } else {
                    f.tries += 1;
                    f.rto = f.rto.saturating_mul(2);
                    f.deadline = now + f.rto;
                    self.in_flight = Some(f);
                    self.transmit(&f.req);
                }
            }
        }
        if self.renew_at.is_some_and(|t| t <= now) {
            self.renew(now);
        }
        if self.check_at.is_some_and(|t| t <= now) {
            self.check_at = None;
            if self.in_flight.is_none() && self.queue.is_empty() {
                self.queue.push_back(Request::ExternalAddress);
                self.send_next(now);
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.start(now);
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send to the gateway's port [`SERVER_PORT`].
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next thing that happened to the mappings.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PmpEvent> {
        self.events.pop_front()
    }

    /// When [`PmpClient::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.in_flight.map(|f| f.deadline),
            self.renew_at,
            self.retry_at,
            self.check_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- introspection ------------------------------------------------------------

    /// Where the client is.
    pub fn state(&self) -> PmpState {
        self.state
    }

    /// The gateway's external address, once known.
    pub fn external(&self) -> Option<Ipv4Addr> {
        self.external
    }

    /// The shorter granted lifetime, while mapped.
    pub fn lifetime(&self) -> Option<Duration> {
        self.min_lifetime()
    }

    /// Counters.
    pub fn counters(&self) -> &PmpCounters {
        &self.counters
    }

    /// True once shut down (mappings removed, or nothing to remove).
    pub fn is_done(&self) -> bool {
        self.state == PmpState::Done
    }

    // ----- internals ----------------------------------------------------------------

    fn queue_maps(&mut self) {
        for proto in [Proto::Udp, Proto::Tcp] {
            let lifetime = u32::try_from(self.cfg.lifetime.as_secs())
                .unwrap_or(u32::MAX)
                .max(1);
            self.queue.push_back(Request::Map {
                proto,
                internal: self.cfg.port,
                external: self.cfg.port,
                lifetime,
            });
        }
    }

    /// A removal: lifetime 0 and external port 0 (RFC 6886, section 3.4).
    fn queue_removal(&mut self, proto: Proto) {
        self.queue.push_back(Request::Map {
            proto,
            internal: self.cfg.port,
            external: 0,
            lifetime: 0,
        });
    }

    fn transmit(&mut self, req: &Request) {
        self.counters.sent += 1;
        self.transmits.push_back(req.encode());
    }

    fn send_next(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some(req) = self.queue.pop_front() {
            self.in_flight = Some(InFlight {
                req,
                tries: 1,
                rto: self.cfg.first_rto,
                deadline: now + self.cfg.first_rto,
            });
            self.transmit(&req);
        }
    }

    fn all_answered(&mut self, now: Instant, last: &Request) {
        match self.state {
            PmpState::Mapped if *last == Request::ExternalAddress => {
                // The periodic epoch check; a lost state is handled by the caller.
                self.check_at = Some(now + self.cfg.retry_after);
            }
            PmpState::Mapping | PmpState::Mapped => {
                let Some(lifetime) = self.min_lifetime() else {
                    return;
                };
                let external = self.external.unwrap_or(Ipv4Addr::UNSPECIFIED);
                if self.state == PmpState::Mapped {
                    self.counters.renewals += 1;
                } else {
                    self.state = PmpState::Mapped;
                    self.events.push_back(PmpEvent::Mapped {
                        external,
                        port: self.cfg.port,
                        lifetime,
                    });
                }
                // Renew at half-life (RFC 6886, section 3.3), never sooner than 1 s.
                self.renew_at = Some(now + (lifetime / 2).max(Duration::from_secs(1)));
                self.check_at = Some(now + self.cfg.retry_after);
            }
            PmpState::Removing => self.finish_removal(),
            PmpState::Idle | PmpState::Unavailable | PmpState::Done => {}
        }
    }

    fn min_lifetime(&self) -> Option<Duration> {
        match self.granted {
            [Some((_, a)), Some((_, b))] if !a.is_zero() && !b.is_zero() => Some(a.min(b)),
            _ => None,
        }
    }

    fn renew(&mut self, now: Instant) {
        self.renew_at = None;
        if self.in_flight.is_none() && self.queue.is_empty() {
            self.queue_maps();
            self.send_next(now);
        }
    }

    fn finish_removal(&mut self) {
        if self.in_flight.is_none() && self.queue.is_empty() {
            self.granted = [None, None];
            self.state = PmpState::Done;
            self.events.push_back(PmpEvent::Removed);
        }
    }

    fn give_up(&mut self, now: Instant, reason: String) {
        self.queue.clear();
        self.in_flight = None;
        self.renew_at = None;
        self.check_at = None;
        self.state = PmpState::Unavailable;
        self.retry_at = Some(now + self.cfg.retry_after);
        self.events.push_back(PmpEvent::Unavailable { reason });
    }

    /// Records the gateway's epoch; true if it shows the gateway lost its mappings: it
    /// advanced less than 7/8 of our own elapsed time, minus 2 s (RFC 6886, section 3.6).
    fn check_epoch(&mut self, now: Instant, epoch: u32) -> bool {
        let lost = match self.epoch {
            Some((e0, t0)) => {
                let ours = now.saturating_duration_since(t0).as_secs();
                let expected = u64::from(e0) + ours * 7 / 8;
                u64::from(epoch) + 2 < expected
            }
            None => false,
        };
        self.epoch = Some((epoch, now));
        lost
    }
}

fn describe(req: &Request) -> String {
    match req {
        Request::ExternalAddress => "the external address request".into(),
        Request::Map {
            proto, lifetime: 0, ..
        } => format!("the {} removal", proto.name()),
        Request::Map { proto, .. } => format!("the {} mapping request", proto.name()),
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    // The examples of protocol-spec/nat.md, section 10 (the answers are in the form
    // miniupnpd 2.3.1 sent them in the lab; EXTERNAL_OK is byte for byte one of them).
    const MAP_UDP: &str = "00 01 0000 0fa1 0fa1 00001c20";
    const MAP_UDP_OK: &str = "00 81 0000 00000002 0fa1 0fa1 00001c20";
    const EXTERNAL_OK: &str = "00 80 0000 00000002 cb00711b";
    const UNMAP_TCP: &str = "00 02 0000 0fa1 0000 00000000";

    #[test]
    fn spec_examples_encode_and_decode() {
        let map = Request::Map {
            proto: Proto::Udp,
            internal: 4001,
            external: 4001,
            lifetime: 7200,
        };
        assert_eq!(map.encode(), hex(MAP_UDP));
        let unmap = Request::Map {
            proto: Proto::Tcp,
            internal: 4001,
            external: 0,
            lifetime: 0,
        };
        assert_eq!(unmap.encode(), hex(UNMAP_TCP));
        assert_eq!(Request::ExternalAddress.encode(), hex("0000"));
        let ok = Response::decode(&hex(MAP_UDP_OK)).expect("valid");
        assert_eq!(
            ok,
            Response {
                result: 0,
                epoch: 2,
                body: Body::Map {
                    proto: Proto::Udp,
                    internal: 4001,
                    external: 4001,
                    lifetime: 7200
                }
            }
        );
        assert_eq!(ok.encode(), hex(MAP_UDP_OK));
        let ext = Response::decode(&hex(EXTERNAL_OK)).expect("valid");
        assert_eq!(
            ext.body,
            Body::ExternalAddress(Ipv4Addr::new(203, 0, 113, 27))
        );
        assert_eq!(ext.encode(), hex(EXTERNAL_OK));
    }

    #[test]
    fn bad_responses_get_typed_errors() {
        let e = |s: &str| Response::decode(&hex(s)).expect_err("invalid");
        assert_eq!(e(""), DecodeError::UnexpectedEnd { needed: 2, got: 0 });
        assert_eq!(e("02 81"), DecodeError::UnsupportedVersion(2));
        assert_eq!(e("00 01"), DecodeError::NotAResponse(1));
        assert_eq!(e("00 83"), DecodeError::UnknownOpcode(0x83));
        assert_eq!(
            e("00 81 0000 00000002 0fa1 0fa1 0000"),
            DecodeError::UnexpectedEnd {
                needed: 16,
                got: 14
            }
        );
        assert_eq!(
            e("00 80 0000 00000002 cb00711b 00"),
            DecodeError::TrailingBytes(1)
        );
        // A refusal decodes: the result code is the client's business.
        let r = Response::decode(&hex("00 82 0002 00000002 0fa1 0000 00000000")).expect("valid");
        assert_eq!(r.result, result_code::NOT_AUTHORIZED);
    }

    #[test]
    fn the_default_gateway_comes_from_proc_net_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(192, 0, 2, 1)));
        // No default route, a default route without a gateway, garbage: none.
        assert_eq!(
            default_gateway(&table.replace("00000000\t0102", "0000000a\t0102")),
            None
        );
        assert_eq!(default_gateway(&table.replace("0003", "0001")), None);
        assert_eq!(default_gateway("Iface\nx y z\n\u{0}\n"), None);
        assert_eq!(default_gateway(""), None);
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Ok(r) = Response::decode(&bytes) {
                proptest::prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn any_route_table_text_never_panics(text in "\\PC{0,200}") {
            let _ = default_gateway(&text);
        }
    }
}
