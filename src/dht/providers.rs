//! Provider records: content ID -> addresses of nodes that serve it
//! (spec: `protocol-spec/dht.md`, "ANNOUNCE" and "Provider records").
//!
//! Bounded on both axes: at most `max_per_key` providers for one key and `max_total`
//! records overall, so a remote peer cannot grow this table without limit. Records expire
//! after a TTL unless their provider announces again.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::Id;

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The key already has `max` providers.
    KeyFull {
        /// The per-key limit.
        max: usize,
    },
    /// The store holds `max` records in all.
    StoreFull {
        /// The overall limit.
        max: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::KeyFull { max } => write!(f, "this key already has {max} providers"),
            StoreError::StoreFull { max } => write!(f, "provider store full ({max} records)"),
        }
    }
}

impl std::error::Error for StoreError {}

#[derive(Clone, Debug)]
struct Record {
    addr: SocketAddr,
    /// For a provider that cannot be reached directly: its node ID and its rendezvous
    /// (spec: `nat.md`).
    via: Option<(Id, SocketAddr)>,
    expires: Instant,
}

/// The provider records a node holds for others.
#[derive(Debug)]
pub struct ProviderStore {
    map: HashMap<Id, Vec<Record>>,
    total: usize,
    max_total: usize,
    max_per_key: usize,
    ttl: Duration,
}

impl ProviderStore {
    /// An empty store with the given limits.
    pub fn new(max_total: usize, max_per_key: usize, ttl: Duration) -> Self {
        ProviderStore {
            map: HashMap::new(),
            total: 0,
            max_total,
            max_per_key,
            ttl,
        }
    }

    /// Stores or refreshes `addr` as a provider of `key` until `now + ttl`.
    pub fn add(&mut self, key: Id, addr: SocketAddr, now: Instant) -> Result<(), StoreError> {
        self.add_via(key, addr, None, now)
    }

    /// Like [`ProviderStore::add`], recording the provider's node ID and rendezvous when it
    /// cannot be reached directly (`None` clears them on a refresh).
    pub fn add_via(
        &mut self,
        key: Id,
        addr: SocketAddr,
        via: Option<(Id, SocketAddr)>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let expires = now + self.ttl;
        if let Some(v) = self.map.get_mut(&key) {
            if let Some(r) = v.iter_mut().find(|r| r.addr == addr) {
                r.expires = expires;
                r.via = via;
                return Ok(());
            }
            // Make room from expired records before refusing.
            let before = v.len();
            v.retain(|r| r.expires > now);
            self.total -= before - v.len();
            if v.len() >= self.max_per_key {
                return Err(StoreError::KeyFull {
                    max: self.max_per_key,
                });
            }
        }
        if self.total >= self.max_total {
            self.expire(now);
            if self.total >= self.max_total {
                return Err(StoreError::StoreFull {
                    max: self.max_total,
                });
            }
        }
        self.map
            .entry(key)
            .or_default()
            .push(Record { addr, via, expires });
        self.total += 1;
        Ok(())
    }

    /// The live providers of `key`, most recently refreshed first, at most `max`.
    pub fn get(&self, key: &Id, now: Instant, max: usize) -> Vec<SocketAddr> {
        let Some(v) = self.map.get(key) else {
            return Vec::new();
        };
        let mut live: Vec<&Record> = v.iter().filter(|r| r.expires > now).collect();
        live.sort_by_key(|r| std::cmp::Reverse(r.expires));
        live.into_iter().take(max).map(|r| r.addr).collect()
    }

    /// The live providers of `key` that are reached through a rendezvous, most recently
    /// refreshed first, at most `max`: (address, node ID, rendezvous).
    pub fn get_via(&self, key: &Id, now: Instant, max: usize) -> Vec<(SocketAddr, Id, SocketAddr)> {
        let Some(v) = self.map.get(key) else {
            return Vec::new();
        };
        let mut live: Vec<&Record> = v.iter().filter(|r| r.expires > now).collect();
        live.sort_by_key(|r| std::cmp::Reverse(r.expires));
        live.into_iter()
            .filter_map(|r| r.via.map(|(id, rv)| (r.addr, id, rv)))
            .take(max)
            .collect()
    }

    /// Drops every expired record.
    pub fn expire(&mut self, now: Instant) {
        let mut total = 0;
        self.map.retain(|_, v| {
            v.retain(|r| r.expires > now);
            total += v.len();
            !v.is_empty()
        });
        self.total = total;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], p))
    }

    #[test]
    fn add_get_refresh_expire() {
        let now = Instant::now();
        let mut s = ProviderStore::new(100, 4, Duration::from_secs(10));
        let k = Id([1; 32]);
        s.add(k, a(1), now).unwrap();
        s.add(k, a(2), now + Duration::from_secs(5)).unwrap();
        s.add(k, a(1), now + Duration::from_secs(5)).unwrap(); // refresh, not a duplicate
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&k, now + Duration::from_secs(12), 10).len(), 2);
        assert!(s.get(&k, now + Duration::from_secs(16), 10).is_empty());
        s.expire(now + Duration::from_secs(16));
        assert!(s.is_empty());
        assert_eq!(s.keys().count(), 0);
    }

    #[test]
    fn limits_are_enforced_with_typed_errors() {
        let now = Instant::now();
        let mut s = ProviderStore::new(5, 3, Duration::from_secs(10));
        let k = Id([1; 32]);
        for p in 0..3 {
            s.add(k, a(p), now).unwrap();
        }
        assert_eq!(s.add(k, a(9), now), Err(StoreError::KeyFull { max: 3 }));
        // Refreshing an existing provider is always allowed.
        s.add(k, a(0), now).unwrap();
        s.add(Id([2; 32]), a(0), now).unwrap();
        s.add(Id([3; 32]), a(0), now).unwrap();
        assert_eq!(
            s.add(Id([4; 32]), a(0), now),
            Err(StoreError::StoreFull { max: 5 })
        );
        // Once records expire there is room again.
        let later = now + Duration::from_secs(11);
        s.add(Id([4; 32]), a(0), later).unwrap();
        assert_eq!(s.len(), 1);
    }
}
