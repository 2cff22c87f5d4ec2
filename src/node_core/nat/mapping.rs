//! Port mapping inside the node (spec: `protocol-spec/nat.md`, section 10): the PCP/NAT-PMP
//! client asks the default gateway, and UPnP-IGD takes over when neither answers; a mapping
//! makes the node reachable as it is, and is removed when the node stops.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::super::output::{NatIo, Output};
use super::{NatGlue, Parts};
use crate::nat::pmp::{self, Gateway, PmpClient, PmpConfig, PmpEvent};
use crate::nat::upnp::{UpnpClient, UpnpConfig, UpnpIo};

/// The NAT-PMP client and the gateway it talks to.
pub(super) struct Pmp {
    pub(super) client: PmpClient,
    pub(super) gateway: SocketAddr,
    /// Whether it ever mapped the port (else giving up means: no server here).
    pub(super) ever_mapped: bool,
}

/// Logs a mapping event of `proto` (`pcp`, `nat-pmp`, `upnp`); `Some(mapped)` when the
/// node's reachability changes with it.
fn mapping_event(proto: &str, ev: PmpEvent) -> Option<bool> {
    match ev {
        PmpEvent::Mapped {
            external,
            port,
            lifetime,
        } => {
            log::info!(
                "{proto}: {external}:{port} (udp and tcp) maps to us for {} s",
                lifetime.as_secs()
            );
            Some(true)
        }
        PmpEvent::Unavailable { reason } => {
            log::info!("{proto}: no port mapping: {reason}");
            Some(false)
        }
        PmpEvent::Removed => {
            log::debug!("{proto}: removal done");
            None
        }
    }
}

impl NatGlue {
    // ----- port mapping -------------------------------------------------------------

    /// Starts port mapping with the default gateway `gateway` (the driver reads it from the
    /// system), if configured and if there is one: without an IPv4 gateway (a public host,
    /// an IPv6-only node) there is nothing to ask, which is not an error.
    pub fn start_mapping(&mut self, p: &mut Parts<'_>, now: Instant, gateway: Option<Gateway>) {
        let cfg = self.nat.config();
        // A node on a loopback address cannot be reached through any router's mapping (and
        // must not search the network for one: the tests run many such nodes).
        if !cfg.enabled
            || !cfg.port_mapping
            || self.local.ip().is_loopback()
            || self.local.is_ipv6() && !self.local.ip().is_unspecified()
        {
            return;
        }
        let lifetime = cfg.mapping_lifetime;
        let use_pcp = cfg.pcp;
        self.gateway = gateway;
        let Some(Gateway { addr: gw, local }) = gateway else {
            log::debug!("nat-pmp: no IPv4 default gateway: no port mapping");
            return;
        };
        log::info!(
            "nat-pmp: asking the gateway {gw} to map port {}",
            self.local.port()
        );
        let pcp = local
            .filter(|_| use_pcp)
            .map(|ip| (ip, self.nat.random_nonce()));
        let mut client = PmpClient::new(PmpConfig {
            port: self.local.port(),
            lifetime,
            pcp,
            ..PmpConfig::default()
        });
        client.start(now);
        self.pmp = Some(Pmp {
            ever_mapped: false,
            client,
            gateway: SocketAddr::new(IpAddr::V4(gw), pmp::SERVER_PORT),
        });
        self.pmp_flush(p, now);
    }

    /// An answer from the gateway.
    pub fn pmp_datagram(&mut self, p: &mut Parts<'_>, now: Instant, bytes: &[u8]) {
        if let Some(m) = self.pmp.as_mut() {
            if let Err(e) = m.client.handle_datagram(now, bytes) {
                log::debug!("nat-pmp: from {}: {e}", m.gateway);
            }
        }
        self.pmp_flush(p, now);
    }

    /// The gateway's port is closed (ICMP port unreachable).
    pub fn pmp_unreachable(&mut self, p: &mut Parts<'_>, now: Instant) {
        if let Some(m) = self.pmp.as_mut() {
            m.client.handle_unreachable(now);
        }
        self.pmp_flush(p, now);
    }

    /// The driver cannot talk to the gateway at all: no port mapping.
    pub fn pmp_failed(&mut self) {
        if self.pmp.take().is_some() {
            log::warn!("nat-pmp: cannot reach the gateway; no port mapping");
        }
    }

    /// The node is stopping: remove the mappings. Returns true if the driver should wait a
    /// little for the gateway's confirmation ([`NatGlue::mapping_removed`]).
    pub fn stop_mapping(&mut self, p: &mut Parts<'_>, now: Instant) -> bool {
        let wait = self.pmp.as_mut().is_some_and(|m| m.client.shutdown(now))
            | self.upnp.as_mut().is_some_and(|u| u.shutdown(now));
        self.pmp_flush(p, now);
        self.upnp_flush(p, now);
        wait
    }

    /// True once the gateway confirmed the removal (or there was nothing to remove).
    pub fn mapping_removed(&self) -> bool {
        self.pmp.as_ref().is_none_or(|m| m.client.is_done())
            && self.upnp.as_ref().is_none_or(UpnpClient::is_done)
    }

    /// An answer to the UPnP search.
    pub fn upnp_ssdp(&mut self, p: &mut Parts<'_>, now: Instant, bytes: &[u8]) {
        if let Some(u) = self.upnp.as_mut() {
            if let Err(e) = u.handle_ssdp(now, bytes) {
                log::debug!("upnp: SSDP answer: {e}");
            }
        }
        self.upnp_flush(p, now);
    }

    /// An HTTP exchange with the UPnP router ended.
    pub fn upnp_http(&mut self, p: &mut Parts<'_>, now: Instant, id: u64, resp: Option<&[u8]>) {
        if let Some(u) = self.upnp.as_mut() {
            if let Err(e) = u.handle_http(now, id, resp) {
                log::debug!("upnp: {e}");
            }
        }
        self.upnp_flush(p, now);
    }

    /// PCP and NAT-PMP found no server: ask the router with UPnP-IGD instead.
    pub(super) fn start_upnp(&mut self, p: &mut Parts<'_>, now: Instant) {
        let Some(local) = self.gateway.and_then(|g| g.local) else {
            return;
        };
        if self.upnp.is_some() {
            return;
        }
        log::info!(
            "upnp: searching for a UPnP-IGD router to map port {}",
            self.local.port()
        );
        let mut u = UpnpClient::new(UpnpConfig {
            port: self.local.port(),
            local,
            lifetime: self.nat.config().mapping_lifetime,
            ..UpnpConfig::default()
        });
        u.start(now);
        self.upnp = Some(u);
        self.upnp_flush(p, now);
    }

    /// Drains the UPnP client: socket work for the driver, mapping events to the NAT core.
    pub(super) fn upnp_flush(&mut self, p: &mut Parts<'_>, now: Instant) {
        let mut changed = Vec::new();
        if let Some(u) = self.upnp.as_mut() {
            while let Some(io) = u.poll_io() {
                p.out.push_back(Output::Nat(match io {
                    UpnpIo::Search(bytes) => NatIo::UpnpSearch { bytes },
                    UpnpIo::Http { id, to, request } => NatIo::UpnpHttp {
                        id,
                        to: SocketAddr::V4(to),
                        request,
                    },
                }));
            }
            while let Some(ev) = u.poll_event() {
                changed.extend(mapping_event("upnp", ev));
            }
        }
        for mapped in changed {
            self.nat.set_mapped(now, mapped);
            p.out.push_back(Output::ViewChanged);
            self.flush(p, now);
        }
    }

    /// Drains the NAT-PMP client: requests to the gateway, mapping events to the NAT core.
    pub(super) fn pmp_flush(&mut self, p: &mut Parts<'_>, now: Instant) {
        let mut changed = Vec::new();
        let mut no_server = false;
        if let Some(m) = self.pmp.as_mut() {
            loop {
                while let Some(bytes) = m.client.poll_transmit() {
                    p.out.push_back(Output::Nat(NatIo::PmpSend {
                        gateway: m.gateway,
                        bytes,
                    }));
                }
                let Some(ev) = m.client.poll_event() else {
                    break;
                };
                if let PmpEvent::Mapped { .. } = ev {
                    m.ever_mapped = true;
                }
                let gave_up = matches!(ev, PmpEvent::Unavailable { .. });
                changed.extend(mapping_event(m.client.version().name(), ev));
                // No PCP or NAT-PMP server, or one that refuses: UPnP-IGD is the last way.
                no_server |= gave_up && !m.ever_mapped;
            }
        }
        if no_server && self.upnp.is_none() {
            self.pmp = None;
            self.start_upnp(p, now);
        }
        for mapped in changed {
            self.nat.set_mapped(now, mapped);
            p.out.push_back(Output::ViewChanged);
            self.flush(p, now);
        }
    }
}
