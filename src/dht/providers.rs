//! Provider records: content ID -> addresses of nodes that serve it
//! (spec: `protocol-spec/dht.md`, sections 10 and 13.2).
//!
//! Implementation notes:
//! - Bounded on every axis: at most `max_per_key` providers of one key and `max_total`
//!   records in all, and within those the quotas of [`DiversityLimits`] for the source and
//!   the network of the address that announced (records per key, records in all). A record
//!   is charged to the UDP source address of the ANNOUNCE that stored it: the address its
//!   token was bound to, so it cannot be chosen freely.
//! - A source over its own quota is refused. A network over its quota makes room by
//!   dropping the newest record of its own most represented source, if that source holds at
//!   least two more than the newcomer's (so a neighbour of a flooder still gets in).
//! - A full key or a full store does not simply refuse a newcomer: under max-min fairness
//!   ([`fair_victim`]) the newest record of the most represented source gives way, so a
//!   flood can only ever push out its own newest records, never lock honest providers out.
//!   Only a newcomer whose own source or network is already among the most represented is
//!   refused. Long-held records are the ones kept: the newest go first.
//! - Answers list providers round-robin over networks, and over the sources of each network,
//!   each source's longest-held record first ([`ProviderStore::get`]): one network fills at
//!   most its share of an answer however many records it holds.
//! - Records expire after a TTL unless their provider announces again. Expired records of a
//!   key are dropped when the key is written to, and all of them by [`ProviderStore::expire`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::diversity::{
    fair_victim, DiversityLimits, Level, Network, Origin, QuotaHit, Scope, Source, Tally,
};
use crate::id::Id;

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The key already has `max` providers, and the newcomer's source and network are
    /// already as well represented among them as any other.
    KeyFull {
        /// The per-key limit.
        max: usize,
    },
    /// The store holds `max` records in all, and the newcomer's source and network are
    /// already as well represented as any other.
    StoreFull {
        /// The overall limit.
        max: usize,
    },
    /// The announcing address's source or network holds its quota (spec section 13.2).
    Quota(QuotaHit),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::KeyFull { max } => write!(f, "this key already has {max} providers"),
            StoreError::StoreFull { max } => write!(f, "provider store full ({max} records)"),
            StoreError::Quota(hit) => write!(f, "{hit}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What [`ProviderStore::add_via`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new record.
    Added,
    /// The record existed; its expiry (and rendezvous) were renewed.
    Refreshed,
    /// A new record, for which the newest record of a more represented source gave way.
    Replaced {
        /// The provider address of the record dropped.
        evicted: SocketAddr,
    },
}

#[derive(Clone, Debug)]
struct Record {
    addr: SocketAddr,
    /// For a provider that cannot be reached directly: its node ID and its rendezvous
    /// (spec: `nat.md`).
    via: Option<(Id, SocketAddr)>,
    /// The announcer's node ID (the ANNOUNCE's sender), if known.
    node: Option<Id>,
    /// Who announced it (from the ANNOUNCE's source address).
    origin: Origin,
    /// Order of arrival in the store: lower is held longer.
    seq: u64,
    expires: Instant,
}

/// The limits of a [`ProviderStore`].
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// Records in all.
    pub max_total: usize,
    /// Providers of one key.
    pub max_per_key: usize,
    /// How long a record lives without a refresh.
    pub ttl: Duration,
    /// Quotas per source and network.
    pub diversity: DiversityLimits,
}

/// The provider records a node holds for others.
#[derive(Debug)]
pub struct ProviderStore {
    map: HashMap<Id, Vec<Record>>,
    total: usize,
    limits: StoreLimits,
    /// Records per source and per network, all keys together.
    tally: Tally,
    /// `(source, seq, key)` of every record: the last entry of a source is its newest.
    by_source: BTreeSet<(Source, u64, Id)>,
    next_seq: u64,
    /// When [`ProviderStore::expire`] last swept everything.
    swept_at: Option<Instant>,
}

/// A full store sweeps expired records before it evicts, but not more often than this: under
/// a flood it stays full, and a sweep visits every record.
const SWEEP_GAP: Duration = Duration::from_secs(1);

impl ProviderStore {
    /// An empty store with the given limits.
    pub fn new(limits: StoreLimits) -> Self {
        ProviderStore {
            map: HashMap::new(),
            total: 0,
            limits,
            tally: Tally::default(),
            by_source: BTreeSet::new(),
            next_seq: 0,
            swept_at: None,
        }
    }

    /// Stores or refreshes `addr` as a provider of `key`, announced from `addr` itself.
    pub fn add(&mut self, key: Id, addr: SocketAddr, now: Instant) -> Result<Stored, StoreError> {
        self.add_via(key, addr, None, addr, now)
    }

    /// Stores or refreshes `addr` as a provider of `key` until `now + ttl`, announced from
    /// the UDP address `from` (whose source and network are charged for it), with the
    /// provider's node ID and rendezvous when it cannot be reached directly (`None` clears
    /// them on a refresh). A refresh is always accepted.
    pub fn add_via(
        &mut self,
        key: Id,
        addr: SocketAddr,
        via: Option<(Id, SocketAddr)>,
        from: SocketAddr,
        now: Instant,
    ) -> Result<Stored, StoreError> {
        self.add_from(key, addr, None, via, from, now)
    }

    /// [`ProviderStore::add_via`] with the announcer's node ID, which answers list with the
    /// record (dht.md section 4.6). A refresh takes the newest ID.
    pub fn add_from(
        &mut self,
        key: Id,
        addr: SocketAddr,
        node: Option<Id>,
        via: Option<(Id, SocketAddr)>,
        from: SocketAddr,
        now: Instant,
    ) -> Result<Stored, StoreError> {
        let expires = now + self.limits.ttl;
        let known = self
            .map
            .get_mut(&key)
            .and_then(|v| v.iter_mut().find(|r| r.addr == addr));
        if let Some(r) = known {
            r.expires = expires;
            r.via = via;
            r.node = node;
            return Ok(Stored::Refreshed);
        }
        self.expire_key(&key, now);
        let origin = Origin::of(from);
        let evicted = self.make_room(&key, &origin, now)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.entry(key).or_default().push(Record {
            addr,
            via,
            node,
            origin,
            seq,
            expires,
        });
        self.tally.add(&origin);
        self.by_source.insert((origin.source, seq, key));
        self.total += 1;
        Ok(match evicted {
            Some(evicted) => Stored::Replaced { evicted },
            None => Stored::Added,
        })
    }

    /// Checks every limit for a new record of `key` from `origin`, dropping at most one
    /// record of a more represented source to make room. Returns the dropped provider.
    fn make_room(
        &mut self,
        key: &Id,
        origin: &Origin,
        now: Instant,
    ) -> Result<Option<SocketAddr>, StoreError> {
        let src_quota = self.limits.diversity.source;
        let net_quota = *self.limits.diversity.network_quota(&origin.network);
        let in_key = KeyCounts::of(self.map.get(key).map_or(&[][..], Vec::as_slice));
        let quota = |level, scope, max| Err(StoreError::Quota(QuotaHit { level, scope, max }));

        // The source's own quotas: it never takes from others to exceed them.
        let src_in_key = in_key.source(&origin.source);
        if src_in_key >= src_quota.records_per_key {
            return quota(Level::Source, Scope::Key, src_quota.records_per_key);
        }
        let src_total = self.tally.source(&origin.source);
        if src_total >= src_quota.records_total {
            return quota(Level::Source, Scope::Store, src_quota.records_total);
        }
        // The network's quotas: its most represented source gives way to another of its
        // sources that holds at least two fewer.
        if in_key.network(&origin.network) >= net_quota.records_per_key {
            return match in_key.largest_source_in(&origin.network) {
                Some((s, c)) if s != origin.source && c >= src_in_key + 2 => {
                    Ok(self.evict_newest_in_key(key, &s))
                }
                _ => quota(Level::Network, Scope::Key, net_quota.records_per_key),
            };
        }
        // Room in the key: the most represented of the key gives way. Decided before
        // anything is dropped, so that a refusal never costs anyone a record.
        let key_victim = if in_key.len >= self.limits.max_per_key {
            let victim = fair_victim(
                origin,
                in_key.largest_network(),
                |n| in_key.network(n),
                |s| in_key.source(s),
                |n| in_key.largest_source_in(n),
            );
            match victim {
                Some(s) => Some(s),
                None => {
                    return Err(StoreError::KeyFull {
                        max: self.limits.max_per_key,
                    })
                }
            }
        } else {
            None
        };
        if self.tally.network(&origin.network) >= net_quota.records_total {
            let Some((key_of, seq)) = self
                .tally
                .largest_source_in(&origin.network)
                .filter(|&(s, c)| s != origin.source && c >= src_total + 2)
                .and_then(|(s, _)| self.newest_of(&s))
            else {
                return quota(Level::Network, Scope::Store, net_quota.records_total);
            };
            // A record of another key leaves this one full: its own victim goes too.
            if key_of != *key {
                if let Some(s) = key_victim {
                    self.evict_newest_in_key(key, &s);
                }
            }
            return Ok(self.remove_seq(&key_of, seq));
        }
        if let Some(s) = key_victim {
            // The store total is unchanged: one record out, one in.
            return Ok(self.evict_newest_in_key(key, &s));
        }
        let swept_lately = self
            .swept_at
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_GAP);
        if self.total >= self.limits.max_total && !swept_lately {
            self.expire(now);
        }
        if self.total >= self.limits.max_total {
            let t = &self.tally;
            let victim = fair_victim(
                origin,
                t.largest_network(),
                |n| t.network(n),
                |s| t.source(s),
                |n| t.largest_source_in(n),
            );
            return match victim {
                Some(s) => Ok(self.evict_newest(&s)),
                None => Err(StoreError::StoreFull {
                    max: self.limits.max_total,
                }),
            };
        }
        Ok(None)
    }

    /// Drops the newest record `source` holds of `key`.
    fn evict_newest_in_key(&mut self, key: &Id, source: &Source) -> Option<SocketAddr> {
        let v = self.map.get(key)?;
        let pos = (0..v.len())
            .filter(|&i| v[i].origin.source == *source)
            .max_by_key(|&i| v[i].seq)?;
        self.remove_at(key, pos)
    }

    /// The key and sequence number of the newest record `source` holds of any key.
    fn newest_of(&self, source: &Source) -> Option<(Id, u64)> {
        self.by_source
            .range((*source, 0, Id::ZERO)..=(*source, u64::MAX, Id([0xff; 32])))
            .next_back()
            .map(|&(_, seq, key)| (key, seq))
    }

    /// Drops the newest record `source` holds of any key.
    fn evict_newest(&mut self, source: &Source) -> Option<SocketAddr> {
        let (key, seq) = self.newest_of(source)?;
        self.remove_seq(&key, seq)
    }

    /// Drops the record of `key` with sequence number `seq`.
    fn remove_seq(&mut self, key: &Id, seq: u64) -> Option<SocketAddr> {
        let pos = self.map.get(key)?.iter().position(|r| r.seq == seq)?;
        self.remove_at(key, pos)
    }

    /// Removes the record at `pos` of `key` and everything that counts it.
    fn remove_at(&mut self, key: &Id, pos: usize) -> Option<SocketAddr> {
        let v = self.map.get_mut(key)?;
        if pos >= v.len() {
            return None;
        }
        let r = v.swap_remove(pos);
        if v.is_empty() {
            self.map.remove(key);
        }
        self.uncount(key, &r);
        Some(r.addr)
    }

    fn uncount(&mut self, key: &Id, r: &Record) {
        self.tally.remove(&r.origin);
        self.by_source.remove(&(r.origin.source, r.seq, *key));
        self.total -= 1;
    }

    /// Drops the expired records of `key`.
    fn expire_key(&mut self, key: &Id, now: Instant) {
        let Some(v) = self.map.get_mut(key) else {
            return;
        };
        let gone: Vec<Record> = v.extract_if(.., |r| r.expires <= now).collect();
        if v.is_empty() {
            self.map.remove(key);
        }
        for r in &gone {
            self.uncount(key, r);
        }
    }

    /// The live providers of `key`, at most `max`, in answer order: round-robin over
    /// networks, then over the sources of a network, longest-held first.
    pub fn get(&self, key: &Id, now: Instant, max: usize) -> Vec<SocketAddr> {
        self.answer_order(key, now)
            .into_iter()
            .take(max)
            .map(|r| r.addr)
            .collect()
    }

    /// [`ProviderStore::get`] with each record's announcer node ID, if known.
    pub fn get_with_ids(
        &self,
        key: &Id,
        now: Instant,
        max: usize,
    ) -> Vec<(SocketAddr, Option<Id>)> {
        self.answer_order(key, now)
            .into_iter()
            .take(max)
            .map(|r| (r.addr, r.node))
            .collect()
    }

    /// The live providers of `key` that are reached through a rendezvous, in the order of
    /// [`ProviderStore::get`], at most `max`: (address, node ID, rendezvous).
    pub fn get_via(&self, key: &Id, now: Instant, max: usize) -> Vec<(SocketAddr, Id, SocketAddr)> {
        self.answer_order(key, now)
            .into_iter()
            .filter_map(|r| r.via.map(|(id, rv)| (r.addr, id, rv)))
            .take(max)
            .collect()
    }

    fn answer_order(&self, key: &Id, now: Instant) -> Vec<&Record> {
        let Some(v) = self.map.get(key) else {
            return Vec::new();
        };
        let mut live: Vec<&Record> = v.iter().filter(|r| r.expires > now).collect();
        live.sort_by_key(|r| r.seq);
        // Rank of each record among its source's, then, in that order, among its network's.
        let mut src_seen: HashMap<Source, usize> = HashMap::new();
        let mut ranked: Vec<(usize, u64, &Record)> = live
            .into_iter()
            .map(|r| {
                let n = src_seen.entry(r.origin.source).or_default();
                *n += 1;
                (*n, r.seq, r)
            })
            .collect();
        ranked.sort_by_key(|&(rank, seq, _)| (rank, seq));
        let mut net_seen: HashMap<Network, usize> = HashMap::new();
        let mut ranked: Vec<(usize, usize, u64, &Record)> = ranked
            .into_iter()
            .map(|(rank, seq, r)| {
                let n = net_seen.entry(r.origin.network).or_default();
                *n += 1;
                (*n, rank, seq, r)
            })
            .collect();
        ranked.sort_by_key(|&(net_rank, rank, seq, _)| (net_rank, rank, seq));
        ranked.into_iter().map(|(.., r)| r).collect()
    }

    /// Drops every expired record.
    pub fn expire(&mut self, now: Instant) {
        self.swept_at = Some(now);
        let mut gone: Vec<(Id, Record)> = Vec::new();
        self.map.retain(|key, v| {
            gone.extend(v.extract_if(.., |r| r.expires <= now).map(|r| (*key, r)));
            !v.is_empty()
        });
        for (key, r) in &gone {
            self.uncount(key, r);
        }
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The keys with at least one record (possibly expired but not yet swept).
    pub fn keys(&self) -> impl Iterator<Item = &Id> {
        self.map.keys()
    }

    /// Records held for announces from `addr`'s source (all keys).
    pub fn records_of(&self, addr: SocketAddr) -> usize {
        self.tally.source(&Origin::of(addr).source)
    }

    /// Records held for announces from `addr`'s network (all keys).
    pub fn records_of_network(&self, addr: SocketAddr) -> usize {
        self.tally.network(&Origin::of(addr).network)
    }
}

/// Records of one key counted by source and network (a key holds at most a few dozen).
struct KeyCounts {
    len: usize,
    sources: HashMap<Source, (Network, usize)>,
    networks: HashMap<Network, usize>,
}

impl KeyCounts {
    fn of(v: &[Record]) -> KeyCounts {
        let mut k = KeyCounts {
            len: v.len(),
            sources: HashMap::new(),
            networks: HashMap::new(),
        };
        for r in v {
            k.sources
                .entry(r.origin.source)
                .or_insert((r.origin.network, 0))
                .1 += 1;
            *k.networks.entry(r.origin.network).or_default() += 1;
        }
        k
    }

    fn source(&self, s: &Source) -> usize {
        self.sources.get(s).map_or(0, |&(_, c)| c)
    }

    fn network(&self, n: &Network) -> usize {
        self.networks.get(n).copied().unwrap_or(0)
    }

    /// Ties are broken by the larger network or source, so the choice is deterministic.
    fn largest_network(&self) -> Option<(Network, usize)> {
        self.networks
            .iter()
            .map(|(&n, &c)| (c, n))
            .max()
            .map(|(c, n)| (n, c))
    }

    fn largest_source_in(&self, network: &Network) -> Option<(Source, usize)> {
        self.sources
            .iter()
            .filter(|(_, (n, _))| n == network)
            .map(|(&s, &(_, c))| (c, s))
            .max()
            .map(|(c, s)| (s, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    /// A provider in a /24 of its own.
    fn honest(n: u16) -> SocketAddr {
        let [hi, lo] = n.to_be_bytes();
        a([203, hi, lo, 1], 4000)
    }

    fn store(max_total: usize, max_per_key: usize) -> ProviderStore {
        ProviderStore::new(StoreLimits {
            max_total,
            max_per_key,
            ttl: Duration::from_secs(10),
            diversity: DiversityLimits::default(),
        })
    }

    impl ProviderStore {
        /// Recounts everything and checks the counts and every limit.
        fn check(&self) -> Result<(), String> {
            let mut t = Tally::default();
            let mut n = 0;
            for (key, v) in &self.map {
                let k = KeyCounts::of(v);
                if v.is_empty() || v.len() > self.limits.max_per_key {
                    return Err(format!("key with {} records", v.len()));
                }
                for (s, &(net, c)) in &k.sources {
                    let q = self.limits.diversity.network_quota(&net);
                    if c > self.limits.diversity.source.records_per_key
                        || k.network(&net) > q.records_per_key
                    {
                        return Err(format!("{c} records of {s:?} for {key:?}"));
                    }
                }
                for r in v {
                    t.add(&r.origin);
                    n += 1;
                    if !self.by_source.contains(&(r.origin.source, r.seq, *key)) {
                        return Err("record missing from the source index".into());
                    }
                }
            }
            if n != self.total || n != self.by_source.len() || n > self.limits.max_total {
                return Err(format!("{n} records, total {}", self.total));
            }
            if t != self.tally {
                return Err("the tally is off".into());
            }
            Ok(())
        }
    }

    #[test]
    fn add_get_refresh_expire() {
        let now = Instant::now();
        let mut s = store(100, 4);
        let k = Id([1; 32]);
        assert_eq!(s.add(k, honest(1), now), Ok(Stored::Added));
        assert_eq!(
            s.add(k, honest(2), now + Duration::from_secs(5)),
            Ok(Stored::Added)
        );
        // A refresh, not a duplicate.
        assert_eq!(
            s.add(k, honest(1), now + Duration::from_secs(5)),
            Ok(Stored::Refreshed)
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&k, now + Duration::from_secs(12), 10).len(), 2);
        assert!(s.get(&k, now + Duration::from_secs(16), 10).is_empty());
        s.expire(now + Duration::from_secs(16));
        assert!(s.is_empty());
        assert_eq!(s.keys().count(), 0);
        s.check().unwrap();
    }

    #[test]
    fn full_key_and_store_refuse_an_equal_newcomer_with_typed_errors() {
        let now = Instant::now();
        let mut s = store(5, 3);
        let k = Id([1; 32]);
        for p in 0..3 {
            assert_eq!(s.add(k, honest(p), now), Ok(Stored::Added));
        }
        // Three providers of three networks: a fourth network is no less represented.
        assert_eq!(
            s.add(k, honest(9), now),
            Err(StoreError::KeyFull { max: 3 })
        );
        // Refreshing an existing provider is always allowed.
        assert_eq!(s.add(k, honest(0), now), Ok(Stored::Refreshed));
        assert_eq!(s.add(Id([2; 32]), honest(0), now), Ok(Stored::Added));
        assert_eq!(s.add(Id([3; 32]), honest(1), now), Ok(Stored::Added));
        assert_eq!(
            s.add(Id([4; 32]), honest(2), now),
            Err(StoreError::StoreFull { max: 5 })
        );
        // Once records expire there is room again.
        let later = now + Duration::from_secs(11);
        assert_eq!(s.add(Id([4; 32]), honest(2), later), Ok(Stored::Added));
        assert_eq!(s.len(), 1);
        s.check().unwrap();
    }

    #[test]
    fn seventy_ports_of_one_ip_hold_two_records_of_a_key() {
        let now = Instant::now();
        let mut s = store(100_000, 64);
        let k = Id([7; 32]);
        assert_eq!(s.add(k, honest(1), now), Ok(Stored::Added));
        let mut refused = 0;
        for port in 0..70 {
            match s.add(k, a([198, 51, 100, 7], 1000 + port), now) {
                Ok(_) => {}
                Err(StoreError::Quota(QuotaHit {
                    level: Level::Source,
                    scope: Scope::Key,
                    max: 2,
                })) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(refused, 68);
        // A late honest provider still fits, and answers lead with the honest ones.
        assert_eq!(s.add(k, honest(2), now), Ok(Stored::Added));
        let got = s.get(&k, now, 2);
        assert_eq!(got, vec![honest(1), a([198, 51, 100, 7], 1000)]);
        assert!(s.get(&k, now, 50).contains(&honest(2)));
        s.check().unwrap();
    }

    #[test]
    fn a_full_key_makes_room_for_a_new_network() {
        let now = Instant::now();
        let mut s = store(100_000, 64);
        let k = Id([7; 32]);
        // 16 /24s of 4 records each (2 IPs x 2 ports): the key is full.
        for net in 0..16u8 {
            for host in 1..=2u8 {
                for port in 0..2 {
                    assert_eq!(
                        s.add(k, a([198, 51, net, host], 1000 + port), now),
                        Ok(Stored::Added)
                    );
                }
            }
        }
        assert_eq!(s.get(&k, now, 100).len(), 64);
        let r = s.add(k, honest(1), now);
        assert!(matches!(r, Ok(Stored::Replaced { .. })), "{r:?}");
        assert_eq!(s.get(&k, now, 100).len(), 64);
        // The honest record is in every answer: one network per round.
        assert!(s.get(&k, now, 17).contains(&honest(1)));
        s.check().unwrap();
    }

    #[test]
    fn a_loopback_host_holds_its_quota_and_its_ports_share_it_fairly() {
        let now = Instant::now();
        let mut s = store(100_000, 64);
        let k = Id([8; 32]);
        let first = a([127, 0, 0, 1], 5000);
        assert_eq!(s.add(k, first, now), Ok(Stored::Added));
        for port in 0..70 {
            let _ = s.add(k, a([127, 0, 0, 2], 6000 + port), now);
        }
        let flood = s.records_of_network(a([127, 0, 0, 2], 1));
        assert_eq!(
            flood, 32,
            "one loopback IP holds the local host quota of a key"
        );
        // Another loopback IP (the honest test network) still has room.
        assert_eq!(s.add(k, a([127, 0, 0, 1], 5001), now), Ok(Stored::Added));
        assert!(s.get(&k, now, 2).contains(&first));
        s.check().unwrap();
    }

    #[test]
    fn one_ip_cannot_fill_the_store_and_a_full_store_makes_room() {
        let now = Instant::now();
        let mut s = store(12_000, 64);
        let mut key = 0u32;
        let mut next_key = || {
            key += 1;
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&key.to_be_bytes());
            Id(id)
        };
        let (mut ok, mut quota) = (0, 0);
        for i in 0..6_000u32 {
            match s.add(next_key(), a([198, 51, 100, 7], (i % 100) as u16), now) {
                Ok(_) => ok += 1,
                Err(StoreError::Quota(hit)) => {
                    assert_eq!((hit.level, hit.scope), (Level::Source, Scope::Store));
                    quota += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, quota), (5_000, 1_000));
        // Three more IPs of other /24s fill the rest of the store ...
        for ip in 1..=3u8 {
            for _ in 0..5_000 {
                let _ = s.add(next_key(), a([198, 51, ip, 9], 1), now);
            }
        }
        assert_eq!(s.len(), 12_000);
        // ... and an honest newcomer takes the place of the newest record of a flooder.
        let r = s.add(next_key(), honest(1), now);
        assert!(matches!(r, Ok(Stored::Replaced { .. })), "{r:?}");
        assert_eq!(s.len(), 12_000);
        assert!(s.records_of(a([198, 51, 100, 7], 1)) <= 5_000);
        s.check().unwrap();
    }

    #[test]
    fn a_network_over_its_total_never_overfills_a_key() {
        let now = Instant::now();
        let mut limits = DiversityLimits::default();
        limits.network.records_total = 4;
        let mut s = ProviderStore::new(StoreLimits {
            max_total: 1000,
            max_per_key: 3,
            ttl: Duration::from_secs(10),
            diversity: limits,
        });
        let flooder = a([198, 51, 100, 1], 1);
        for k in 1..=4 {
            assert_eq!(s.add(Id([k; 32]), flooder, now), Ok(Stored::Added));
        }
        let full = Id([9; 32]);
        for n in 1..=3 {
            assert_eq!(s.add(full, honest(n), now), Ok(Stored::Added));
        }
        // A neighbour of the flooder: its /24 is at its total, and the key it wants is full
        // of three networks with one record each, so it is refused, and nobody loses a record.
        let neighbour = a([198, 51, 100, 2], 1);
        assert_eq!(
            s.add(full, neighbour, now),
            Err(StoreError::KeyFull { max: 3 })
        );
        assert_eq!(s.len(), 7);
        // Into a key with room it takes the place of the flooder's newest record.
        assert_eq!(
            s.add(Id([8; 32]), neighbour, now),
            Ok(Stored::Replaced { evicted: flooder })
        );
        assert!(s.get(&Id([4; 32]), now, 10).is_empty());
        // And into a full key where its network is the least represented, two records
        // make way: the flooder's newest (for the /24's total) and one of the key's most
        // represented network (for the key's room).
        let crowded = Id([7; 32]);
        for x in [
            a([203, 0, 113, 1], 1),
            a([203, 0, 113, 1], 2),
            a([203, 0, 113, 2], 1),
        ] {
            assert_eq!(s.add(crowded, x, now), Ok(Stored::Added));
        }
        let third = a([198, 51, 100, 3], 1);
        assert_eq!(
            s.add(crowded, third, now),
            Ok(Stored::Replaced { evicted: flooder })
        );
        let got = s.get(&crowded, now, 10);
        assert_eq!(got.len(), 3);
        assert!(got.contains(&third) && !got.contains(&a([203, 0, 113, 1], 2)));
        assert_eq!(s.records_of_network(flooder), 4);
        s.check().unwrap();
    }

    #[test]
    fn answers_go_round_robin_over_networks_and_sources() {
        let now = Instant::now();
        let mut s = store(1000, 64);
        let k = Id([9; 32]);
        let (x1, x2, y) = (a([198, 51, 100, 1], 1), a([198, 51, 100, 2], 1), honest(1));
        for addr in [x1, a([198, 51, 100, 1], 2), x2, y] {
            assert_eq!(s.add(k, addr, now), Ok(Stored::Added));
        }
        // Network 198.51.100 first (held longest), then the honest network, then the
        // second IP of the first network before the second record of its first IP.
        assert_eq!(s.get(&k, now, 10), vec![x1, y, x2, a([198, 51, 100, 1], 2)]);
    }

    mod fairness_properties {
        use super::*;
        use crate::dht::diversity::Quota;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever four /24s announce (any hosts, ports and keys), none holds more than
            /// its network's records of a key or in all, no IP more than the source's, the
            /// counts stay exact, an honest provider stored first is kept, and an honest
            /// provider from a fresh network announced afterwards is always stored, though
            /// the flood fills keys and the store.
            #[test]
            fn one_network_never_exceeds_its_quotas(
                floods in proptest::collection::vec(
                    (0u8..4, any::<u8>(), any::<u16>(), 0u8..12),
                    1..400,
                ),
                honest_first in any::<bool>(),
            ) {
                let now = Instant::now();
                let mut s = ProviderStore::new(StoreLimits {
                    max_total: 60,
                    max_per_key: 8,
                    ttl: Duration::from_secs(10),
                    diversity: DiversityLimits {
                        source: Quota { records_per_key: 2, records_total: 12, ..DiversityLimits::default().source },
                        network: Quota { records_per_key: 4, records_total: 24, ..DiversityLimits::default().network },
                        ..DiversityLimits::default()
                    },
                });
                let key = |n: u8| Id([n; 32]);
                let early = honest(1);
                if honest_first {
                    assert_eq!(s.add(key(0), early, now), Ok(Stored::Added));
                }
                for (net, host, port, k) in floods {
                    let _ = s.add(key(k), a([198, 51, net, host], port), now);
                    prop_assert!(s.check().is_ok(), "{:?}", s.check());
                }
                for net in 0..4 {
                    prop_assert!(s.records_of_network(a([198, 51, net, 1], 1)) <= 24);
                }
                if honest_first {
                    prop_assert!(s.get(&key(0), now, 2).contains(&early));
                }
                for k in 0..6 {
                    let r = s.add(key(k), honest(100 + u16::from(k)), now);
                    prop_assert!(r.is_ok(), "{:?}", r);
                    // In the first round of the answer: one record per network (at most
                    // four flooding ones, the early honest one and this one).
                    prop_assert!(s.get(&key(k), now, 6).contains(&honest(100 + u16::from(k))));
                }
                prop_assert!(s.check().is_ok(), "{:?}", s.check());
            }
        }
    }
}
