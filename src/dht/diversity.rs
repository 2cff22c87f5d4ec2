//! Address diversity: how much of the routing table and of the provider store one address
//! may hold (spec: `protocol-spec/dht.md`, section 13.2).
//!
//! Implementation notes:
//! - Everything a remote peer puts into this node's tables is charged to its **source**
//!   and to the source's **network** ([`Origin::of`]). For a global address the source is
//!   the IP (ports cost an attacker nothing) and the network its /24 (IPv4) or /64 (IPv6)
//!   (a rented block of addresses is one network). For a loopback or private address the
//!   source is the IP:port and the network the IP: several honest nodes commonly share one
//!   such IP (a test network on one machine, the simulator), while on the Internet an
//!   address outside the global ranges can only be a neighbour on the same network.
//! - Each level has a [`Quota`]: contacts per bucket and per table, records per key and in
//!   all. The quota of a network depends on its kind: [`DiversityLimits::network`] for a
//!   global prefix, [`DiversityLimits::local_host`] for a loopback or private IP, which
//!   leaves room for a local test network of a few dozen nodes.
//! - The quotas only ever refuse what would be *added*: an entry already held is never
//!   pushed out for diversity's sake (long-lived entries are the valuable ones), except in
//!   the provider store, where a full key or store makes room for a newcomer by evicting
//!   the newest record of the most represented source (`providers.rs`).
//! - Nothing here reads a clock or does I/O.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proto::codec::canonical_addr;

/// The unit one attacker pays for: a global IP, or the IP:port of a local address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A global IP address (any port).
    Ip(IpAddr),
    /// A loopback or private address, port included.
    Port(SocketAddr),
}

/// The group a [`Source`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// A global IPv4 /24: the first three octets.
    V4(Ipv4Prefix),
    /// A global IPv6 /64: the first eight bytes.
    V6(Ipv6Prefix),
    /// One loopback or private IP (all its ports).
    LocalHost(IpAddr),
}

/// The first three octets of an IPv4 address.
pub type Ipv4Prefix = [u8; 3];
/// The first eight bytes of an IPv6 address.
pub type Ipv6Prefix = [u8; 8];

/// Where something came from, for the quotas: its source and that source's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The address's source.
    pub source: Source,
    /// The source's network.
    pub network: Network,
}

impl Origin {
    /// The origin of a datagram from `addr` (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(addr: SocketAddr) -> Origin {
        let addr = canonical_addr(addr);
        let ip = addr.ip();
        if is_local(ip) {
            return Origin {
                source: Source::Port(addr),
                network: Network::LocalHost(ip),
            };
        }
        Origin {
            source: Source::Ip(ip),
            network: Network::prefix_of(ip),
        }
    }
}

impl Network {
    /// The /24 (IPv4) or /64 (IPv6) that `ip` lies in, local or not: the network of a
    /// global address, and a prefix that every address of one source or network shares.
    pub fn prefix_of(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Network::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// True for addresses that are not globally routable: loopback, private (RFC 1918, shared
/// address space 100.64/10, IPv6 unique local fc00::/7) and link-local.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        IpAddr::V6(v6) => is_local_v6(v6),
    }
}

fn is_local_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    let shared = a == 100 && (b & 0xc0) == 64;
    v4.is_loopback() || v4.is_private() || v4.is_link_local() || shared
}

fn is_local_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00;
    let link_local = (first & 0xffc0) == 0xfe80;
    v6.is_loopback() || unique_local || link_local
}

/// What one source, or one network, may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Contacts in one bucket of the routing table.
    pub contacts_per_bucket: usize,
    /// Contacts in the whole routing table.
    pub contacts_per_table: usize,
    /// Provider records of one key.
    pub records_per_key: usize,
    /// Provider records in the whole store.
    pub records_total: usize,
}

/// The quotas of [`Origin`]s (spec: dht.md, section 13.2). The defaults:
///
/// | level | contacts per bucket | per table | records per key | records in all |
/// | --- | --- | --- | --- | --- |
/// | source | 1 | 2 | 2 | 5,000 |
/// | global network (/24, /64) | 2 | 10 | 4 | 10,000 |
/// | local host (loopback or private IP) | no limit | 256 | 32 | 10,000 |
///
/// Why: one contact per bucket and two per table are enough for two honest nodes behind
/// one NAT, and a node behind each of several addresses of one /24 (the discv5 figures
/// are alike: 2 per bucket, 10 per table for a /24). Two records per key let a node
/// announce two ports. 5,000 records in all (5% of the default store) cover a large
/// library announced to a node among the k closest to its keys; a source with more is
/// refused, not evicting others. A local host holds what a test network on one machine
/// needs (dozens of nodes, a few dozen providers of a key) and still leaves most of a key
/// and of the store to others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiversityLimits {
    /// One source: a global IP, or the IP:port of a local address.
    pub source: Quota,
    /// One global network: an IPv4 /24 or an IPv6 /64.
    pub network: Quota,
    /// One loopback or private IP, all its ports together.
    pub local_host: Quota,
}

impl Default for DiversityLimits {
    fn default() -> Self {
        DiversityLimits {
            source: Quota {
                contacts_per_bucket: 1,
                contacts_per_table: 2,
                records_per_key: 2,
                records_total: 5_000,
            },
            network: Quota {
                contacts_per_bucket: 2,
                contacts_per_table: 10,
                records_per_key: 4,
                records_total: 10_000,
            },
            local_host: Quota {
                // No limit within a bucket: a bucket of a local test network may be all
                // one IP, and a newcomer there must still reach the replacement cache.
                contacts_per_bucket: usize::MAX,
                contacts_per_table: 256,
                records_per_key: 32,
                records_total: 10_000,
            },
        }
    }
}

impl DiversityLimits {
    /// The quota of `network`.
    pub fn network_quota(&self, network: &Network) -> &Quota {
        match network {
            Network::LocalHost(_) => &self.local_host,
            Network::V4(_) | Network::V6(_) => &self.network,
        }
    }
}

/// Which quota refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The source's.
    Source,
    /// The network's (or the local host's).
    Network,
}

/// Where a quota was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One bucket of the routing table.
    Bucket,
    /// The whole routing table.
    Table,
    /// The records of one key.
    Key,
    /// The whole provider store.
    Store,
}

/// A quota that was reached: which level, where, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaHit {
    /// Source or network.
    pub level: Level,
    /// Where.
    pub scope: Scope,
    /// The quota.
    pub max: usize,
}

impl fmt::Display for QuotaHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.level {
            Level::Source => "this address",
            Level::Network => "this network",
        };
        let what = match self.scope {
            Scope::Bucket => "contacts in one bucket",
            Scope::Table => "contacts in the routing table",
            Scope::Key => "records of this key",
            Scope::Store => "records in the store",
        };
        write!(f, "{who} already holds {} {what}", self.max)
    }
}

/// Counts of what each source and network holds, with the largest found in O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    sources: HashMap<Source, usize>,
    networks: HashMap<Network, usize>,
    /// (count, network), to find the network holding most.
    network_order: BTreeSet<(usize, Network)>,
    /// (network, count, source), to find the source of a network holding most.
    source_order: BTreeSet<(Network, usize, Source)>,
}

impl Tally {
    /// Counts one more entry of `o`.
    pub fn add(&mut self, o: &Origin) {
        self.shift(o, 1);
    }

    /// Counts one entry of `o` less.
    pub fn remove(&mut self, o: &Origin) {
        self.shift(o, -1);
    }

    fn shift(&mut self, o: &Origin, by: isize) {
        let s = self.sources.get(&o.source).copied().unwrap_or(0);
        let n = self.networks.get(&o.network).copied().unwrap_or(0);
        let (s2, n2) = (s.saturating_add_signed(by), n.saturating_add_signed(by));
        self.source_order.remove(&(o.network, s, o.source));
        self.network_order.remove(&(n, o.network));
        if s2 == 0 {
            self.sources.remove(&o.source);
        } else {
            self.sources.insert(o.source, s2);
            self.source_order.insert((o.network, s2, o.source));
        }
        if n2 == 0 {
            self.networks.remove(&o.network);
        } else {
            self.networks.insert(o.network, n2);
            self.network_order.insert((n2, o.network));
        }
    }

    /// Entries of `source`.
    pub fn source(&self, source: &Source) -> usize {
        self.sources.get(source).copied().unwrap_or(0)
    }

    /// Entries of `network`.
    pub fn network(&self, network: &Network) -> usize {
        self.networks.get(network).copied().unwrap_or(0)
    }

    /// The network holding most entries, and how many.
    pub fn largest_network(&self) -> Option<(Network, usize)> {
        self.network_order.last().map(|&(c, n)| (n, c))
    }

    /// The source of `network` holding most entries, and how many.
    pub fn largest_source_in(&self, network: &Network) -> Option<(Source, usize)> {
        // The smallest source, so the range covers every source of `network`.
        let min = Source::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.source_order
            .range((*network, 0, min)..(*network, usize::MAX, min))
            .next_back()
            .map(|&(_, c, s)| (s, c))
    }

    /// Sources counted.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

/// Which source should give up an entry so that a newcomer of origin `new` fits, under
/// max-min fairness: the most represented network gives, if it holds at least two more
/// than the newcomer's network; otherwise the newcomer's own network gives, if its most
/// represented source holds at least two more than the newcomer's source. `None`: the
/// newcomer is itself among the most represented and must wait.
///
/// `net` and `src` count entries by network and by source in the scope concerned (a key,
/// or the whole store); `largest_in` gives the most represented source of a network.
pub fn fair_victim(
    new: &Origin,
    largest_network: Option<(Network, usize)>,
    net: impl Fn(&Network) -> usize,
    src: impl Fn(&Source) -> usize,
    largest_in: impl Fn(&Network) -> Option<(Source, usize)>,
) -> Option<Source> {
    let (top, top_count) = largest_network?;
    if top != new.network && top_count >= net(&new.network) + 2 {
        return largest_in(&top).map(|(s, _)| s);
    }
    let (s, c) = largest_in(&new.network)?;
    (s != new.source && c >= src(&new.source) + 2).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::of(s.parse().unwrap())
    }

    #[test]
    fn global_addresses_count_by_ip_and_prefix() {
        let a = o("198.51.100.7:4000");
        assert_eq!(a.source, Source::Ip("198.51.100.7".parse().unwrap()));
        assert_eq!(a.network, Network::V4([198, 51, 100]));
        // Another port is the same source; another IP of the /24 the same network.
        assert_eq!(o("198.51.100.7:1").source, a.source);
        assert_ne!(o("198.51.100.8:4000").source, a.source);
        assert_eq!(o("198.51.100.8:4000").network, a.network);
        assert_ne!(o("198.51.101.7:4000").network, a.network);
        let v6 = o("[2001:db8:1:2:3::9]:4000");
        assert_eq!(
            v6.network,
            Network::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2])
        );
        assert_eq!(o("[2001:db8:1:2:ffff::1]:1").network, v6.network);
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(o("[::ffff:198.51.100.7]:4000").source, a.source);
    }

    #[test]
    fn local_addresses_count_by_port_and_ip() {
        for s in [
            "127.0.0.1:4000",
            "10.1.2.3:4000",
            "172.16.0.1:4000",
            "192.168.1.2:4000",
            "169.254.0.1:4000",
            "100.64.0.1:4000",
            "[::1]:4000",
            "[fd00::1]:4000",
            "[fe80::1]:4000",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(Origin::of(a).source, Source::Port(a), "{s}");
            assert_eq!(Origin::of(a).network, Network::LocalHost(a.ip()), "{s}");
        }
        assert!(!is_local("100.128.0.1".parse().unwrap()));
        assert!(!is_local("172.32.0.1".parse().unwrap()));
        assert!(!is_local("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn tally_tracks_the_largest() {
        let mut t = Tally::default();
        let (a1, a2, b) = (o("198.51.100.1:1"), o("198.51.100.2:1"), o("203.0.113.1:1"));
        for x in [&a1, &a1, &a2, &b] {
            t.add(x);
        }
        assert_eq!(t.largest_network(), Some((a1.network, 3)));
        assert_eq!(t.largest_source_in(&a1.network), Some((a1.source, 2)));
        assert_eq!(t.largest_source_in(&b.network), Some((b.source, 1)));
        t.remove(&a1);
        t.remove(&a1);
        assert_eq!(t.source(&a1.source), 0);
        assert_eq!(t.largest_source_in(&a1.network), Some((a2.source, 1)));
        t.remove(&a2);
        t.remove(&b);
        assert_eq!(t.largest_network(), None);
        assert_eq!(t.sources(), 0);
    }

    #[test]
    fn fairness_takes_from_the_most_represented() {
        let mut t = Tally::default();
        let flood = o("198.51.100.1:1");
        for _ in 0..5 {
            t.add(&flood);
        }
        let newcomer = o("203.0.113.9:1");
        let pick = |t: &Tally, new: &Origin| {
            fair_victim(
                new,
                t.largest_network(),
                |n| t.network(n),
                |s| t.source(s),
                |n| t.largest_source_in(n),
            )
        };
        assert_eq!(pick(&t, &newcomer), Some(flood.source));
        // The flooder itself gets nothing by coming back.
        assert_eq!(pick(&t, &flood), None);
        // Nor does an equal: one each is fair.
        let mut even = Tally::default();
        even.add(&flood);
        assert_eq!(pick(&even, &newcomer), None);
        // Inside one network: another source of it may take from the largest.
        let neighbour = o("198.51.100.2:1");
        assert_eq!(pick(&t, &neighbour), Some(flood.source));
    }
}
