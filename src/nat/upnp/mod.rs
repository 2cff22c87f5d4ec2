//! A UPnP-IGD port-mapping client as a sans-IO state machine (spec: `protocol-spec/nat.md`,
//! section 10): for routers that offer neither PCP nor NAT-PMP.
//!
//! [`UpnpClient`] owns no socket and never reads the clock. The driver carries out its
//! [`UpnpIo`]s (an SSDP search multicast from a UDP socket of its own, whose unicast answers
//! it feeds back; an HTTP exchange on a TCP connection read to its end) and drives it:
//!
//! - **inputs**: [`UpnpClient::handle_ssdp`], [`UpnpClient::handle_http`] (the whole
//!   response, or `None` when the connection failed or timed out),
//!   [`UpnpClient::handle_timeout`];
//! - **commands**: [`UpnpClient::start`], [`UpnpClient::shutdown`] (remove the mappings);
//! - **outputs**: [`UpnpClient::poll_io`], [`UpnpClient::poll_event`],
//!   [`UpnpClient::poll_timeout`].
//!
//! The steps: M-SEARCH for an Internet gateway device (3 tries, 1 s apart); GET its
//! description; find the WANIPConnection (or WANPPPConnection) control URL; then SOAP calls
//! one at a time: GetExternalIPAddress, AddPortMapping UDP, AddPortMapping TCP (same port
//! outside as inside, lease as configured). Renewed by adding them again at half the lease;
//! removed with DeletePortMapping on shutdown. A router that only grants permanent leases
//! (error 725) gets lease 0, removed on shutdown all the same. Events are NAT-PMP's
//! ([`PmpEvent`]), so the node treats every mapping protocol alike.

pub mod codec;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub use codec::{HttpUrl, UpnpError};

use crate::nat::pmp::{PmpEvent, PmpState, Proto};

/// Tunables.
#[derive(Clone, Debug)]
pub struct UpnpConfig {
    /// The port to map, UDP and TCP, the same number outside.
    pub port: u16,
    /// Our address on the router's LAN (`NewInternalClient`).
    pub local: Ipv4Addr,
    /// The lease to ask for.
    pub lifetime: Duration,
    /// M-SEARCHes sent before giving up.
    pub search_tries: u32,
    /// Gap between M-SEARCHes.
    pub search_gap: Duration,
    /// After giving up, when to try again.
    pub retry_after: Duration,
}

impl Default for UpnpConfig {
    fn default() -> Self {
        UpnpConfig {
            port: 0,
            local: Ipv4Addr::UNSPECIFIED,
            lifetime: Duration::from_secs(7200),
            search_tries: 3,
            search_gap: Duration::from_secs(1),
            retry_after: Duration::from_secs(600),
        }
    }
}

/// Socket work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpnpIo {
    /// Send these bytes to the SSDP group (239.255.255.250:1900); feed answers to
    /// [`UpnpClient::handle_ssdp`].
    Search(Vec<u8>),
    /// Connect to `to`, write `request`, read the response to the end of the connection
    /// (at most [`codec::MAX_HTTP`] bytes); feed it to [`UpnpClient::handle_http`] with `id`.
    Http {
        /// Matches the answer to the request.
        id: u64,
        /// The router's HTTP server.
        to: SocketAddrV4,
        /// The request.
        request: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Describe,
    ExternalAddress,
    Add(Proto),
    Delete(Proto),
}

/// Counters for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpnpCounters {
    /// Searches and HTTP requests sent.
    pub sent: u64,
    /// Renewals (both mappings).
    pub renewals: u64,
    /// Answers ignored: unparsable, or answering nothing asked.
    pub ignored: u64,
}

/// The UPnP-IGD client. See the module docs for the call order.
#[derive(Debug)]
pub struct UpnpClient {
    cfg: UpnpConfig,
    state: PmpState,
    searches_left: u32,
    search_at: Option<Instant>,
    location: Option<HttpUrl>,
    control: Option<(HttpUrl, &'static str)>,
    queue: VecDeque<Call>,
    in_flight: Option<(u64, Call)>,
    next_id: u64,
    /// The lease asked for (0 once the router said it grants only permanent ones).
    lease: u32,
    external: Option<Ipv4Addr>,
    added: [bool; 2],
    renew_at: Option<Instant>,
    retry_at: Option<Instant>,
    counters: UpnpCounters,
    io: VecDeque<UpnpIo>,
    events: VecDeque<PmpEvent>,
}

impl UpnpClient {
    /// A client for `cfg.port`; nothing is sent before [`UpnpClient::start`].
    pub fn new(cfg: UpnpConfig) -> Self {
        let lease = u32::try_from(cfg.lifetime.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        UpnpClient {
            cfg,
            state: PmpState::Idle,
            searches_left: 0,
            search_at: None,
            location: None,
            control: None,
            queue: VecDeque::new(),
            in_flight: None,
            next_id: 1,
            lease,
            external: None,
            added: [false; 2],
            renew_at: None,
            retry_at: None,
            counters: UpnpCounters::default(),
            io: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- commands -----------------------------------------------------------------

    /// Searches for the gateway, then maps both ports.
    pub fn start(&mut self, now: Instant) {
        if matches!(self.state, PmpState::Removing | PmpState::Done) {
            return;
        }
        self.state = PmpState::Mapping;
        self.retry_at = None;
        self.queue.clear();
        self.in_flight = None;
        self.searches_left = self.cfg.search_tries.max(1);
        self.search_at = Some(now);
        self.handle_timeout(now);
    }

    /// Removes the mappings. Returns false when there is nothing to remove.
    pub fn shutdown(&mut self, now: Instant) -> bool {
        self.renew_at = None;
        self.retry_at = None;
        self.search_at = None;
        self.queue.clear();
        // An AddPortMapping in flight may have been carried out: remove it too.
        if let Some((_, Call::Add(p))) = self.in_flight {
            self.added[index(p)] = true;
        }
        self.in_flight = None;
        if self.control.is_none() || !self.added.iter().any(|a| *a) {
            self.state = PmpState::Done;
            return false;
        }
        self.state = PmpState::Removing;
        for p in [Proto::Udp, Proto::Tcp] {
            if self.added[index(p)] {
                self.queue.push_back(Call::Delete(p));
            }
        }
        self.send_next(now);
        true
    }

    // ----- inputs -------------------------------------------------------------------

    /// An answer to our M-SEARCH.
    pub fn handle_ssdp(&mut self, now: Instant, bytes: &[u8]) -> Result<(), UpnpError> {
        if self.location.is_some() || self.state != PmpState::Mapping {
            self.counters.ignored += 1;
            return Ok(());
        }
        let url = codec::parse_ssdp(bytes).inspect_err(|_| self.counters.ignored += 1)?;
        self.search_at = None;
        self.location = Some(url);
        self.queue.push_back(Call::Describe);
        self.send_next(now);
        Ok(())
    }

    /// The whole HTTP response to request `id`, or `None` if the exchange failed.
    pub fn handle_http(
        &mut self,
        now: Instant,
        id: u64,
        response: Option<&[u8]>,
    ) -> Result<(), UpnpError> {
        let Some((want, call)) = self.in_flight else {
            self.counters.ignored += 1;
            return Ok(());
        };
        if want != id {
            self.counters.ignored += 1;
            return Ok(());
        }
        self.in_flight = None;
        let result = match response {
            None => Err(UpnpError::BadHttp(
                "no answer (connection failed or timed out)".into(),
            )),
            Some(b) => self.answer(call, b),
        };
        match result {
            Ok(()) => {}
            Err(UpnpError::Refused { code: 725, .. })
                if matches!(call, Call::Add(_)) && self.lease != 0 =>
            {
                // OnlyPermanentLeasesSupported: ask for a permanent one (removed on stop).
                self.lease = 0;
                self.queue.push_front(call);
            }
            Err(e) if self.state == PmpState::Removing => {
                log::debug!("upnp: removal: {e}");
            }
            Err(e) => {
                let why = format!("{}: {e}", describe(call));
                self.give_up(now, why);
                return Err(e);
            }
        }
        self.send_next(now);
        if self.in_flight.is_none() {
            self.all_answered(now);
        }
        Ok(())
    }

    /// Time has passed: search again, renew, retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.search_at.is_some_and(|t| t <= now) {
            if self.searches_left == 0 {
                self.search_at = None;
                self.give_up(now, "no UPnP gateway answered the search".into());
            } else {
                self.searches_left -= 1;
                self.counters.sent += 1;
                self.io.push_back(UpnpIo::Search(codec::msearch()));
                self.search_at = Some(now + self.cfg.search_gap);
            }
        }
        if self.renew_at.is_some_and(|t| t <= now) {
            self.renew_at = None;
            if self.in_flight.is_none() && self.queue.is_empty() {
                self.queue
                    .extend([Call::Add(Proto::Udp), Call::Add(Proto::Tcp)]);
                self.send_next(now);
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.location = None;
            self.control = None;
            self.start(now);
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next socket work.
    #[must_use]
    pub fn poll_io(&mut self) -> Option<UpnpIo> {
        self.io.pop_front()
    }

    /// The next thing that happened to the mappings.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PmpEvent> {
        self.events.pop_front()
    }

    /// When [`UpnpClient::handle_timeout`] must next be called (HTTP deadlines are the
    /// driver's, which answers `None` when one passes).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.search_at, self.renew_at, self.retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- introspection ------------------------------------------------------------

    /// Where the client is.
    pub fn state(&self) -> PmpState {
        self.state
    }

    /// The router's external address, once known.
    pub fn external(&self) -> Option<Ipv4Addr> {
        self.external
    }

    /// The lease in force while mapped (zero: permanent).
    pub fn lifetime(&self) -> Option<Duration> {
        (self.state == PmpState::Mapped).then(|| Duration::from_secs(u64::from(self.lease)))
    }

    /// The router's control URL, once found.
    pub fn control(&self) -> Option<&HttpUrl> {
        self.control.as_ref().map(|(u, _)| u)
    }

    /// Counters.
    pub fn counters(&self) -> &UpnpCounters {
        &self.counters
    }

    /// True once shut down.
    pub fn is_done(&self) -> bool {
        self.state == PmpState::Done
    }

    // ----- internals ----------------------------------------------------------------

    fn answer(&mut self, call: Call, b: &[u8]) -> Result<(), UpnpError> {
        let (status, body) = codec::parse_http(b)?;
        match call {
            Call::Describe => {
                if status != 200 {
                    return Err(UpnpError::Status(status));
                }
                let base = self.location.clone().ok_or(UpnpError::NoLocation)?;
                self.control = Some(codec::control_url(body, &base)?);
                self.queue.extend([
                    Call::ExternalAddress,
                    Call::Add(Proto::Udp),
                    Call::Add(Proto::Tcp),
                ]);
            }
            Call::ExternalAddress => {
                let ip = codec::soap_result(status, body, Some("NewExternalIPAddress"))?;
                self.external = ip.and_then(|s| s.parse().ok());
            }
            Call::Add(p) => {
                codec::soap_result(status, body, None)?;
                self.added[index(p)] = true;
            }
            Call::Delete(p) => {
                self.added[index(p)] = false;
                codec::soap_result(status, body, None)?;
            }
        }
        Ok(())
    }

    fn request(&self, call: Call) -> Option<(SocketAddrV4, Vec<u8>)> {
        if call == Call::Describe {
            let url = self.location.as_ref()?;
            return Some((url.addr, codec::http_get(url)));
        }
        let (url, service) = self.control.as_ref()?;
        let port = self.cfg.port.to_string();
        let req = match call {
            Call::Describe => return None,
            Call::ExternalAddress => codec::soap(url, service, "GetExternalIPAddress", &[]),
            Call::Add(p) => codec::soap(
                url,
                service,
                "AddPortMapping",
                &[
                    ("NewRemoteHost", String::new()),
                    ("NewExternalPort", port.clone()),
                    ("NewProtocol", proto_name(p).into()),
                    ("NewInternalPort", port),
                    ("NewInternalClient", self.cfg.local.to_string()),
                    ("NewEnabled", "1".into()),
                    ("NewPortMappingDescription", "peershare".into()),
                    ("NewLeaseDuration", self.lease.to_string()),
                ],
            ),
            Call::Delete(p) => codec::soap(
                url,
                service,
                "DeletePortMapping",
                &[
                    ("NewRemoteHost", String::new()),
                    ("NewExternalPort", port),
                    ("NewProtocol", proto_name(p).into()),
                ],
            ),
        };
        Some((url.addr, req))
    }

    fn send_next(&mut self, _now: Instant) {
        while self.in_flight.is_none() {
            let Some(call) = self.queue.pop_front() else {
                return;
            };
            let Some((to, request)) = self.request(call) else {
                continue;
            };
            let id = self.next_id;
            self.next_id += 1;
            self.counters.sent += 1;
            self.in_flight = Some((id, call));
            self.io.push_back(UpnpIo::Http { id, to, request });
        }
    }

    fn all_answered(&mut self, now: Instant) {
        match self.state {
            PmpState::Mapping if self.added == [true, true] => {
                self.state = PmpState::Mapped;
                let lifetime = Duration::from_secs(u64::from(self.lease));
                self.events.push_back(PmpEvent::Mapped {
                    external: self.external.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    port: self.cfg.port,
                    lifetime,
                });
                self.schedule_renewal(now);
            }
            PmpState::Mapped => {
                self.counters.renewals += 1;
                self.schedule_renewal(now);
            }
            PmpState::Removing => {
                self.state = PmpState::Done;
                self.events.push_back(PmpEvent::Removed);
            }
            _ => {}
        }
    }

    fn schedule_renewal(&mut self, now: Instant) {
        // A permanent lease needs no renewal.
        self.renew_at = (self.lease != 0).then(|| {
            now + (Duration::from_secs(u64::from(self.lease)) / 2).max(Duration::from_secs(1))
        });
    }

    fn give_up(&mut self, now: Instant, reason: String) {
        self.queue.clear();
        self.in_flight = None;
        self.renew_at = None;
        self.search_at = None;
        self.state = PmpState::Unavailable;
        self.retry_at = Some(now + self.cfg.retry_after);
        self.events.push_back(PmpEvent::Unavailable { reason });
    }
}

fn index(p: Proto) -> usize {
    match p {
        Proto::Udp => 0,
        Proto::Tcp => 1,
    }
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "UDP",
        Proto::Tcp => "TCP",
    }
}

fn describe(call: Call) -> String {
    match call {
        Call::Describe => "the device description".into(),
        Call::ExternalAddress => "GetExternalIPAddress".into(),
        Call::Add(p) => format!("AddPortMapping {}", proto_name(p)),
        Call::Delete(p) => format!("DeletePortMapping {}", proto_name(p)),
    }
}

#[cfg(test)]
mod tests;
