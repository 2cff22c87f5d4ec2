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

//!
//! The datagrams themselves (encoding, decoding) are in `codec.rs`; this module is the
//! client's state machine.

mod codec;
pub mod pcp;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use codec::{default_gateway, opcode, result_code, Body, DecodeError, Proto, Request};
pub use codec::{Response, SERVER_PORT, VERSION};

/// The default gateway as the driver finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// Its address (the IPv4 default route's next hop).
    pub addr: Ipv4Addr,
    /// Our own address towards it (PCP requests carry it), if the driver could tell.
    pub local: Option<Ipv4Addr>,
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
    /// Speak PCP (RFC 6887) first, as this client address with this mapping nonce, and fall
    /// back to NAT-PMP when the gateway answers as a NAT-PMP server; `None`: NAT-PMP only.
    pub pcp: Option<(Ipv4Addr, [u8; 12])>,
}

impl Default for PmpConfig {
    fn default() -> Self {
        PmpConfig {
            port: 0,
            lifetime: Duration::from_secs(7200),
            first_rto: Duration::from_millis(250),
            max_tries: 9,
            retry_after: Duration::from_secs(600),
            pcp: None,
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

/// Which protocol the client speaks to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// PCP (RFC 6887), version 2.
    Pcp,
    /// NAT-PMP (RFC 6886), version 0.
    NatPmp,
}

impl Version {
    /// Lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            Version::Pcp => "pcp",
            Version::NatPmp => "nat-pmp",
        }
    }
}

/// Why a gateway's datagram was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// Not a NAT-PMP response we accept.
    NatPmp(DecodeError),
    /// Not a PCP response we accept.
    Pcp(pcp::PcpError),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::NatPmp(e) => e.fmt(f),
            AnswerError::Pcp(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AnswerError {}

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
    version: Version,
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
            version: if cfg.pcp.is_some() {
                Version::Pcp
            } else {
                Version::NatPmp
            },
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
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), AnswerError> {
        let (resp, external) = match (self.version, self.cfg.pcp) {
            (Version::Pcp, Some((_, nonce))) => match pcp::decode(bytes, &nonce) {
                Ok(a) => (a.response, a.external),
                Err(pcp::PcpError::NatPmpAnswer(result_code::UNSUPPORTED_VERSION)) => {
                    // A NAT-PMP server: ask again in its version (RFC 6887, section 9).
                    self.version = Version::NatPmp;
                    if let Some(f) = self.in_flight.take() {
                        self.queue.push_front(f.req);
                        self.send_next(now);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.counters.ignored += 1;
                    return Err(AnswerError::Pcp(e));
                }
            },
            _ => match Response::decode(bytes) {
                Ok(r) => (r, None),
                Err(e) => {
                    self.counters.ignored += 1;
                    return Err(AnswerError::NatPmp(e));
                }
            },
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
            let name = match self.version {
                Version::Pcp => pcp::result_name(u8::try_from(resp.result).unwrap_or(u8::MAX)),
                Version::NatPmp => result_code::name(resp.result),
            };
            let why = format!(
                "the gateway answered {} {} ({name}) to {}",
                self.version.name(),
                resp.result,
                describe(&f.req)
            );
            self.give_up(now, why);
            return Ok(());
        }
        if let Some(a) = external.filter(|a| !a.is_unspecified()) {
            self.external = Some(a);
        }
        match (resp.body, f.req) {
            // PCP's ANNOUNCE carries no address (its MAP answers do).
            (Body::ExternalAddress(a), _) if a.is_unspecified() && self.version == Version::Pcp => {
            }
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
            "the gateway has no PCP or NAT-PMP server (port unreachable)".into(),
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

    /// The protocol spoken (PCP until the gateway shows it speaks only NAT-PMP).
    pub fn version(&self) -> Version {
        self.version
    }

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
        let bytes = match (self.version, self.cfg.pcp) {
            (Version::Pcp, Some((client, nonce))) => pcp::encode(req, client, &nonce),
            _ => req.encode(),
        };
        self.transmits.push_back(bytes);
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
mod tests;
