//! The Kademlia routing table: 256 k-buckets (spec: `protocol-spec/dht.md`, "Routing table").
//!
//! Implementation notes:
//! - Bucket `i` holds the contacts whose XOR distance to the local ID has exactly `i` leading
//!   zero bits. A flat array of 256 buckets is simpler than a splitting tree and costs nothing
//!   for the far buckets, which stay empty in any network smaller than 2^200 nodes.
//! - Inside a bucket contacts are ordered least-recently-seen first. A full bucket keeps its
//!   old contacts: a newcomer goes to the bucket's replacement cache unless the oldest contact
//!   has been silent for a while, in which case the caller pings it and calls
//!   [`RoutingTable::on_ping_result`]. Long-lived nodes tend to stay alive, and this makes
//!   the table hard to flood with fresh identities.
//! - A contact that fails [`MAX_FAILURES`] requests in a row is dropped and replaced by the
//!   most recently seen entry of the replacement cache.
//! - The table never reads the clock: every method that needs the time takes `now`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::{Distance, Id};
use crate::proto::dht::Contact;

/// Contacts per bucket (k).
pub const K: usize = 20;
/// Entries in each bucket's replacement cache.
pub const REPLACEMENT_CACHE: usize = 8;
/// Consecutive failed requests after which a contact is dropped.
pub const MAX_FAILURES: u32 = 3;
/// A least-recently-seen contact heard from within this window is kept without a ping.
pub const FRESH: Duration = Duration::from_secs(60);

/// A contact in the table with its liveness bookkeeping.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The node.
    pub contact: Contact,
    /// When we last heard from it.
    pub last_seen: Instant,
    /// Requests in a row that got no answer.
    pub failures: u32,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Least-recently-seen first.
    entries: Vec<Entry>,
    /// Most recently seen last; bounded by [`REPLACEMENT_CACHE`].
    replacements: VecDeque<Contact>,
    /// The contact being pinged to decide an eviction, and the newcomer waiting on it.
    pending: Option<(Id, Contact)>,
    /// The last time a lookup touched this bucket's range (for refresh).
    last_lookup: Option<Instant>,
}

/// What [`RoutingTable::insert`] did.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertResult {
    /// The contact was new and is now in its bucket.
    Inserted,
    /// The contact was already known; its last-seen time was refreshed.
    Updated,
    /// The bucket is full and its oldest entry is stale: ping `ping` to decide whether the
    /// newcomer replaces it, then call [`RoutingTable::on_ping_result`].
    PingOldest {
        /// The least-recently-seen contact to ping.
        ping: Contact,
    },
    /// The bucket is full of live contacts; the newcomer waits in the replacement cache.
    Cached,
    /// Not inserted: it is the local node.
    IsSelf,
}

/// The routing table of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: Id,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table centred on `local`.
    pub fn new(local: Id) -> Self {
        RoutingTable {
            local,
            buckets: vec![Bucket::default(); 256],
        }
    }

    /// The local node ID.
    pub fn local_id(&self) -> Id {
        self.local
    }

    /// Which bucket `id` belongs to, or None for the local ID itself.
    pub fn bucket_index(&self, id: &Id) -> Option<usize> {
        let lz = self.local.distance(id).leading_zeros();
        (lz < 256).then_some(lz)
    }

    /// Records that `contact` is alive now (it answered us, or sent us a request). See
    /// [`InsertResult`] for what the caller must do next.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> InsertResult {
        let Some(i) = self.bucket_index(&contact.id) else {
            return InsertResult::IsSelf;
        };
        let b = &mut self.buckets[i];
        if let Some(pos) = b.entries.iter().position(|e| e.contact.id == contact.id) {
            let mut e = b.entries.remove(pos);
            // The address of a known ID is not changed by a message from elsewhere: that
            // would let anyone redirect a live contact. A dead one is replaced via failures.
            e.last_seen = now;
            e.failures = 0;
            b.entries.push(e);
            return InsertResult::Updated;
        }
        if b.entries.len() < K {
            b.replacements.retain(|c| c.id != contact.id);
            b.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
            return InsertResult::Inserted;
        }
        // Full bucket: remember the newcomer, and maybe question the oldest entry.
        push_replacement(b, contact);
        let oldest = &b.entries[0];
        if b.pending.is_none() && now.saturating_duration_since(oldest.last_seen) >= FRESH {
            let ping = oldest.contact;
            b.pending = Some((ping.id, contact));
            return InsertResult::PingOldest { ping };
        }
        InsertResult::Cached
    }

    /// Like [`RoutingTable::insert`] but only when the bucket has room: used for nodes that
    /// sent us a request (their source address is not verified by a round trip).
    pub fn insert_if_room(&mut self, contact: Contact, now: Instant) -> Option<InsertResult> {
        let i = self.bucket_index(&contact.id)?;
        let b = &self.buckets[i];
        let known = b.entries.iter().any(|e| e.contact.id == contact.id);
        if known || b.entries.len() < K {
            Some(self.insert(contact, now))
        } else {
            None
        }
    }

    /// The outcome of the eviction ping started by [`InsertResult::PingOldest`].
    pub fn on_ping_result(&mut self, pinged: &Id, alive: bool, now: Instant) {
        let Some(i) = self.bucket_index(pinged) else {
            return;
        };
        let b = &mut self.buckets[i];
        let Some((pid, newcomer)) = b.pending else {
            return;
        };
        if pid != *pinged {
            return;
        }
        b.pending = None;
        let Some(pos) = b.entries.iter().position(|e| e.contact.id == *pinged) else {
            return;
        };
        if alive {
            let mut e = b.entries.remove(pos);
            e.last_seen = now;
            e.failures = 0;
            b.entries.push(e);
        } else {
            b.entries.remove(pos);
            b.replacements.retain(|c| c.id != newcomer.id);
            b.entries.push(Entry {
                contact: newcomer,
                last_seen: now,
                failures: 0,
            });
        }
    }

    /// A request to `id` got no answer. After [`MAX_FAILURES`] in a row the contact is
    /// dropped and the freshest replacement takes its place. Returns true if it was dropped.
    pub fn on_failure(&mut self, id: &Id, now: Instant) -> bool {
        let Some(i) = self.bucket_index(id) else {
            return false;
        };
        let b = &mut self.buckets[i];
        let Some(pos) = b.entries.iter().position(|e| e.contact.id == *id) else {
            b.replacements.retain(|c| c.id != *id);
            return false;
        };
        b.entries[pos].failures += 1;
        if b.entries[pos].failures < MAX_FAILURES {
            return false;
        }
        b.entries.remove(pos);
        if b.pending.is_some_and(|(p, _)| p == *id) {
            b.pending = None;
        }
        if let Some(r) = b.replacements.pop_back() {
            // Inserted as if just seen: it was seen more recently than the one it replaces,
            // and failures will weed it out if it is gone too.
            b.entries.push(Entry {
                contact: r,
                last_seen: now,
                failures: 0,
            });
        }
        true
    }

    /// Removes a contact outright (e.g. it turned out to be ourselves under another address).
    pub fn remove(&mut self, id: &Id) {
        if let Some(i) = self.bucket_index(id) {
            self.buckets[i].entries.retain(|e| e.contact.id != *id);
            self.buckets[i].replacements.retain(|c| c.id != *id);
        }
    }

    /// Up to `n` contacts closest to `target`, closest first. Excludes `exclude` (the
    /// requester) if given.
    pub fn closest(&self, target: &Id, n: usize, exclude: Option<&Id>) -> Vec<Contact> {
        let mut all: Vec<(Distance, Contact)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| Some(&e.contact.id) != exclude)
            .map(|e| (e.contact.id.distance(target), e.contact))
            .collect();
        // Only the n closest need ordering: select them first (this runs for every
        // FIND_NODE and GET_PROVIDERS answered, so it is the DHT's hottest path).
        if n == 0 {
            return Vec::new();
        }
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |a| a.0);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, c)| c).collect()
    }

    /// Looks up a contact by ID.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        let i = self.bucket_index(id)?;
        self.buckets[i].entries.iter().find(|e| e.contact.id == *id)
    }

    /// Finds the contact known at `addr`, if any.
    pub fn find_by_addr(&self, addr: &SocketAddr) -> Option<&Entry> {
        self.iter().find(|e| e.contact.addr == *addr)
    }

    /// All entries, bucket by bucket.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Number of contacts in the table (replacement caches excluded).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// True when the table holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of contacts in bucket `i`.
    pub fn bucket_len(&self, i: usize) -> usize {
        self.buckets.get(i).map_or(0, |b| b.entries.len())
    }

    /// Marks that a lookup for `target` ran now, so its bucket needs no refresh.
    pub fn touch_bucket(&mut self, target: &Id, now: Instant) {
        if let Some(i) = self.bucket_index(target) {
            self.buckets[i].last_lookup = Some(now);
        }
    }

    /// Buckets due for a refresh: those up to the deepest non-empty one (deeper buckets
    /// cannot fill in a network of this size) with no lookup within `interval`.
    pub fn buckets_to_refresh(&self, now: Instant, interval: Duration) -> Vec<usize> {
        let deepest = match self.buckets.iter().rposition(|b| !b.entries.is_empty()) {
            Some(d) => d,
            None => return Vec::new(),
        };
        (0..=deepest)
            .filter(|&i| {
                self.buckets[i]
                    .last_lookup
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            })
            .collect()
    }
}

fn push_replacement(b: &mut Bucket, c: Contact) {
    b.replacements.retain(|r| r.id != c.id);
    if b.replacements.len() >= REPLACEMENT_CACHE {
        b.replacements.pop_front();
    }
    b.replacements.push_back(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], n))
    }

    /// `n` distinct contacts that all fall in bucket `b` of a table centred on `local`.
    fn in_bucket(local: &Id, b: usize, n: usize, seed: u64) -> Vec<Contact> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| Contact {
                id: local.random_in_bucket(b, &mut rng),
                addr: addr(1000 + i as u16),
            })
            .collect()
    }

    #[test]
    fn bucket_placement_follows_leading_zeros() {
        let local = Id([0; 32]);
        let t = RoutingTable::new(local);
        let mut far = [0u8; 32];
        far[0] = 0x80;
        assert_eq!(t.bucket_index(&Id(far)), Some(0));
        let mut near = [0u8; 32];
        near[31] = 1;
        assert_eq!(t.bucket_index(&Id(near)), Some(255));
        assert_eq!(t.bucket_index(&local), None);
    }

    #[test]
    fn full_bucket_keeps_fresh_old_contacts() {
        let local = Id([7; 32]);
        let mut t = RoutingTable::new(local);
        let now = Instant::now();
        let cs = in_bucket(&local, 0, K + 1, 1);
        for c in &cs[..K] {
            assert_eq!(t.insert(*c, now), InsertResult::Inserted);
        }
        // Everyone was seen just now: the newcomer is cached, nobody is pinged.
        assert_eq!(t.insert(cs[K], now), InsertResult::Cached);
        assert_eq!(t.bucket_len(0), K);
        assert!(t.get(&cs[K].id).is_none());
    }

    #[test]
    fn stale_oldest_is_pinged_and_evicted_when_dead() {
        let local = Id([7; 32]);
        let mut t = RoutingTable::new(local);
        let t0 = Instant::now();
        let cs = in_bucket(&local, 0, K + 1, 2);
        for c in &cs[..K] {
            let _ = t.insert(*c, t0);
        }
        let later = t0 + FRESH + Duration::from_secs(1);
        assert_eq!(
            t.insert(cs[K], later),
            InsertResult::PingOldest { ping: cs[0] }
        );
        // A second newcomer while the ping is out does not start another ping.
        let extra = in_bucket(&local, 0, 1, 99)[0];
        assert_eq!(t.insert(extra, later), InsertResult::Cached);
        t.on_ping_result(&cs[0].id, false, later);
        assert!(t.get(&cs[0].id).is_none());
        assert!(t.get(&cs[K].id).is_some());
        assert_eq!(t.bucket_len(0), K);
    }

    #[test]
    fn stale_oldest_that_answers_stays_and_moves_to_tail() {
        let local = Id([7; 32]);
        let mut t = RoutingTable::new(local);
        let t0 = Instant::now();
        let cs = in_bucket(&local, 3, K + 1, 3);
        for c in &cs[..K] {
            let _ = t.insert(*c, t0);
        }
        let later = t0 + FRESH * 2;
        assert!(matches!(
            t.insert(cs[K], later),
            InsertResult::PingOldest { .. }
        ));
        t.on_ping_result(&cs[0].id, true, later);
        assert!(t.get(&cs[0].id).is_some());
        assert!(t.get(&cs[K].id).is_none());
        // It is now the most recently seen: the next stale candidate is cs[1].
        let n2 = in_bucket(&local, 3, 1, 77)[0];
        assert_eq!(
            t.insert(n2, later + FRESH),
            InsertResult::PingOldest { ping: cs[1] }
        );
    }

    #[test]
    fn repeated_failures_promote_a_replacement() {
        let local = Id([1; 32]);
        let mut t = RoutingTable::new(local);
        let now = Instant::now();
        let cs = in_bucket(&local, 1, K + 1, 4);
        for c in &cs {
            let _ = t.insert(*c, now);
        }
        for i in 1..MAX_FAILURES {
            assert!(!t.on_failure(&cs[5].id, now), "failure {i}");
        }
        assert!(t.on_failure(&cs[5].id, now));
        assert!(t.get(&cs[5].id).is_none());
        assert!(t.get(&cs[K].id).is_some(), "replacement promoted");
    }

    #[test]
    fn known_id_keeps_its_address() {
        let local = Id([1; 32]);
        let mut t = RoutingTable::new(local);
        let now = Instant::now();
        let c = in_bucket(&local, 2, 1, 5)[0];
        let _ = t.insert(c, now);
        let spoof = Contact {
            id: c.id,
            addr: addr(9),
        };
        assert_eq!(t.insert(spoof, now), InsertResult::Updated);
        assert_eq!(t.get(&c.id).unwrap().contact.addr, c.addr);
    }

    #[test]
    fn closest_is_sorted_and_excludes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let local = Id::random(&mut rng);
        let mut t = RoutingTable::new(local);
        let now = Instant::now();
        let cs: Vec<Contact> = (0..200)
            .map(|i| Contact {
                id: Id::random(&mut rng),
                addr: addr(i),
            })
            .collect();
        for c in &cs {
            let _ = t.insert(*c, now);
        }
        let target = Id::random(&mut rng);
        let got = t.closest(&target, K, Some(&cs[0].id));
        assert_eq!(got.len(), K);
        for w in got.windows(2) {
            assert!(w[0].id.distance(&target) <= w[1].id.distance(&target));
        }
        assert!(!got.iter().any(|c| c.id == cs[0].id));
        // Brute force: the k closest of everything in the table.
        let mut all: Vec<Contact> = t
            .iter()
            .map(|e| e.contact)
            .filter(|c| c.id != cs[0].id)
            .collect();
        all.sort_by_key(|c| c.id.distance(&target));
        assert_eq!(got, all[..K].to_vec());
    }

    #[test]
    fn refresh_covers_buckets_up_to_deepest() {
        let local = Id([0; 32]);
        let mut t = RoutingTable::new(local);
        let now = Instant::now();
        let c = in_bucket(&local, 4, 1, 8)[0];
        let _ = t.insert(c, now);
        let due = t.buckets_to_refresh(now, Duration::from_secs(900));
        assert_eq!(due, vec![0, 1, 2, 3, 4]);
        t.touch_bucket(&c.id, now);
        let due = t.buckets_to_refresh(now, Duration::from_secs(900));
        assert_eq!(due, vec![0, 1, 2, 3]);
    }
}
