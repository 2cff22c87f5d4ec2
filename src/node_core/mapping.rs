//! The node core's inputs from the port-mapping sockets (spec: `protocol-spec/nat.md`,
//! section 10): PCP and NAT-PMP datagrams from the gateway, UPnP-IGD's SSDP answers and HTTP
//! exchanges. The decisions are [`super::NatGlue`]'s.

use std::time::Instant;

use super::NodeCore;

impl NodeCore {
    /// The node is stopping: port mappings are removed (their requests leave as outputs).
    /// Returns true if the driver should wait a little for the gateway's confirmation
    /// (until [`NodeCore::mapping_removed`], at most a few seconds).
    pub fn begin_shutdown(&mut self, now: Instant) -> bool {
        let (nat, mut p) = self.nat_parts();
        let wait = nat.stop_mapping(&mut p, now);
        self.settle(now);
        wait
    }

    /// True once the gateway confirmed that our mappings are gone (or there were none).
    pub fn mapping_removed(&self) -> bool {
        self.nat.mapping_removed()
    }

    /// The gateway answered a NAT-PMP request.
    pub fn handle_pmp_datagram(&mut self, now: Instant, bytes: &[u8]) {
        let (nat, mut p) = self.nat_parts();
        nat.pmp_datagram(&mut p, now, bytes);
        self.settle(now);
    }

    /// The gateway's NAT-PMP port is closed (ICMP port unreachable).
    pub fn handle_pmp_unreachable(&mut self, now: Instant) {
        let (nat, mut p) = self.nat_parts();
        nat.pmp_unreachable(&mut p, now);
        self.settle(now);
    }

    /// The driver cannot open a socket to the gateway: no port mapping.
    pub fn handle_pmp_failed(&mut self) {
        self.nat.pmp_failed();
    }

    /// An answer to the UPnP-IGD search ([`super::NatIo::UpnpSearch`]).
    pub fn handle_upnp_ssdp(&mut self, now: Instant, bytes: &[u8]) {
        let (nat, mut p) = self.nat_parts();
        nat.upnp_ssdp(&mut p, now, bytes);
        self.settle(now);
    }

    /// An HTTP exchange with the UPnP router ([`super::NatIo::UpnpHttp`]) ended: the whole
    /// response, or `None` when it failed or timed out.
    pub fn handle_upnp_http(&mut self, now: Instant, id: u64, response: Option<&[u8]>) {
        let (nat, mut p) = self.nat_parts();
        nat.upnp_http(&mut p, now, id, response);
        self.settle(now);
    }
}
