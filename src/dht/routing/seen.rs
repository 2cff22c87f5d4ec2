//! Which addresses and networks a routing table may hold: two small Bloom filters that let
//! the table skip its whole-table passes for a contact it cannot know.
//!
//! Every new contact costs passes over the whole table: one looks for another ID at its
//! address (one address holds one node), one counts its source and network for the quotas.
//! A table holds a few hundred contacts in a few dozen allocations, and these passes were
//! 7% of a 10,000-node simulation's CPU at 10% loss (`perf`: `insert` and `admits`), nearly
//! all of it waiting on memory; 3% with the filters. Most contacts share neither address
//! nor network with anything in the table; a filter says so from one cache line.
//!
//! A filter may say "maybe" of something absent (a false hit: the caller then makes the
//! pass, as it always did), never "no" of something present. Bits are only ever set; the
//! table rebuilds both filters from its contents when a pass finds a false hit, so contacts
//! that left stop causing passes. Kept counts would cost about 50 KB per node (the module
//! docs of `routing`); these filters cost 384 bytes.
//!
//! The hash is fixed, not keyed: a peer that picks addresses to collide only brings back
//! the passes it would have cost anyway.

use std::net::{IpAddr, SocketAddr};

use crate::dht::diversity::Network;

/// A Bloom filter of `64 * W` bits with one hash.
#[derive(Clone, Debug)]
pub(super) struct Filter<const W: usize> {
    bits: [u64; W],
}

impl<const W: usize> Default for Filter<W> {
    fn default() -> Self {
        Filter { bits: [0; W] }
    }
}

impl<const W: usize> Filter<W> {
    fn slot(h: u64) -> (usize, u64) {
        // The high bits of a multiplicative hash are its best mixed.
        let bit = (h >> 32) as usize % (64 * W);
        (bit / 64, 1 << (bit % 64))
    }

    /// Adds the item of hash `h`.
    pub(super) fn insert(&mut self, h: u64) {
        let (w, m) = Self::slot(h);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
        }
    }

    /// A filter that says "maybe" of everything (for tests: the table then makes every pass).
    #[cfg(test)]
    pub(super) fn full() -> Self {
        Filter {
            bits: [u64::MAX; W],
        }
    }

    /// False only if the item of hash `h` was never added since the last clear.
    pub(super) fn may_contain(&self, h: u64) -> bool {
        let (w, m) = Self::slot(h);
        self.bits.get(w).is_none_or(|word| word & m != 0)
    }
}

/// The filter of addresses: entries, replacements and eviction newcomers (2,048 bits).
pub(super) type AddrFilter = Filter<32>;
/// The filter of the entries' networks (1,024 bits).
pub(super) type NetFilter = Filter<16>;

/// Mixes `x` (Fibonacci hashing: one multiplication).
fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Folds 128 bits into 64, the high half rotated by `r` first.
fn fold(x: u128, r: u32) -> u64 {
    (x as u64) ^ ((x >> 64) as u64).rotate_left(r)
}

/// The hash of an address as the table compares addresses: exactly, so an IPv4-mapped IPv6
/// address is not its IPv4 address here.
pub(super) fn addr_hash(addr: &SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(a) => mix((u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())),
        SocketAddr::V6(a) => mix(mix(fold(a.ip().to_bits(), 17)) ^ u64::from(a.port()) ^ 1 << 63),
    }
}

/// The hash of a network (an [`Origin`](crate::dht::diversity::Origin)'s: a /24, a /64, or
/// one local IP).
pub(super) fn net_hash(n: &Network) -> u64 {
    match n {
        Network::V4([a, b, c]) => mix(u64::from_be_bytes([0, 0, 0, 0, 0, *a, *b, *c])),
        Network::V6(p) => mix(mix(u64::from_be_bytes(*p)) ^ 1 << 63),
        Network::LocalHost(ip) => {
            let bits = match ip {
                IpAddr::V4(v4) => u128::from(v4.to_bits()),
                IpAddr::V6(v6) => v6.to_bits(),
            };
            mix(mix(fold(bits, 29)) ^ 1 << 62)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_never_forgets_what_it_was_given() {
        let mut f = AddrFilter::default();
        let addrs: Vec<SocketAddr> = (0..500u32)
            .map(|i| SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 4000 + (i % 7) as u16)))
            .chain((0..50u16).map(|i| SocketAddr::from(([0x2001, 0xdb8, 0, i, 0, 0, 0, 1], 5000))))
            .collect();
        for a in &addrs {
            f.insert(addr_hash(a));
        }
        assert!(addrs.iter().all(|a| f.may_contain(addr_hash(a))));
        // And it is a filter: most of what it was not given, it says so of.
        let absent = (0..1000u32)
            .map(|i| SocketAddr::from(([192, 0, (i >> 8) as u8, i as u8], 9)))
            .filter(|a| f.may_contain(addr_hash(a)))
            .count();
        assert!(absent < 400, "{absent} of 1000 absent addresses hit");
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let f = NetFilter::default();
        let n = Network::prefix_of([198, 51, 100, 7].into());
        assert!(!f.may_contain(net_hash(&n)));
        assert!(!f.may_contain(net_hash(&Network::LocalHost([10, 0, 0, 1].into()))));
    }
}
