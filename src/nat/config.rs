//! The NAT layer's tunables ([`NatConfig`]).

use std::time::Duration;

/// Tunables. The defaults are the values of nat.md, section 8.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Run the reachability test and the rendezvous client at all.
    pub enabled: bool,
    /// How long to wait for a PROBE after a DIALBACK was acknowledged.
    pub probe_wait: Duration,
    /// How long a rendezvous keeps a registration.
    pub registration_lifetime: Duration,
    /// How often a client renews its registration (also keeps its NAT mapping alive).
    pub renew_every: Duration,
    /// Most clients a rendezvous serves.
    pub max_clients: usize,
    /// How long a downloader waits for INTRODUCED.
    pub introduce_timeout: Duration,
    /// How long a downloader lets the simultaneous open try before asking for a relay.
    pub punch_timeout: Duration,
    /// The same, when the provider is behind our own router (its public IP is ours): the
    /// punch then needs the router to hairpin, which most do not, and those that do connect
    /// in milliseconds.
    pub same_router_punch_timeout: Duration,
    /// How long a relay request may take to come up.
    pub relay_timeout: Duration,
    /// Most relayed circuits a rendezvous carries at once.
    pub max_circuits: usize,
    /// Most dial-backs in progress at once (others are refused with RATE_LIMITED).
    pub max_dialbacks: usize,
    /// How often to test reachability again once it is known (the router, the address or
    /// the network may change; nat.md, section 3).
    pub recheck_every: Duration,
    /// Ask the router for a port mapping with NAT-PMP (nat.md, section 10).
    pub port_mapping: bool,
    /// The mapping lifetime to ask for; renewed at half of what the router grants.
    pub mapping_lifetime: Duration,
    /// Find the nodes on our link by multicast (nat.md, section 11).
    pub lan_discovery: bool,
    /// Speak PCP to the gateway first (NAT-PMP is its fallback); false: NAT-PMP only.
    pub pcp: bool,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            enabled: true,
            probe_wait: Duration::from_secs(3),
            registration_lifetime: Duration::from_secs(90),
            renew_every: Duration::from_secs(20),
            max_clients: 256,
            introduce_timeout: Duration::from_secs(2),
            punch_timeout: Duration::from_secs(3),
            same_router_punch_timeout: Duration::from_millis(300),
            relay_timeout: Duration::from_secs(5),
            max_circuits: 8,
            max_dialbacks: 8,
            recheck_every: Duration::from_secs(600),
            port_mapping: true,
            mapping_lifetime: Duration::from_secs(7200),
            lan_discovery: true,
            pcp: true,
        }
    }
}
