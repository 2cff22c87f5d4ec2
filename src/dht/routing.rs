//! The Kademlia routing table: 256 k-buckets (spec: `protocol-spec/dht.md`, "Routing table").
//!
//! Implementation notes:
//! - Bucket `i` holds the contacts whose XOR distance to the local ID has exactly `i` leading
//!   zero bits. A flat array of 256 buckets is simpler than a splitting tree. It is allocated
//!   up to the deepest bucket ever used (a bucket past the end is empty and was never looked
//!   up): the deep buckets stay empty in any network smaller than 2^200 nodes, and a
//!   simulator of 100,000 nodes would pay 45 KB per node for them.
//! - Inside a bucket contacts are ordered least-recently-seen first. A full bucket keeps its
//!   old contacts: a newcomer goes to the bucket's replacement cache unless the oldest contact
//!   has been silent for a while, in which case the caller pings it and calls
//!   [`RoutingTable::on_ping_result`]. Long-lived nodes tend to stay alive, and this makes
//!   the table hard to flood with fresh identities.
//! - A contact that fails [`MAX_FAILURES`] requests in a row is dropped and replaced by the
//!   most recently seen entry of the replacement cache.
//! - Address diversity (spec section 13.2): a contact is refused when its source or its
//!   network already holds its quota of the bucket or of the table
//!   ([`DiversityLimits`]), so one address, or one /24, cannot fill the table however many
//!   IDs it makes up. The counts cover the buckets only (the replacement caches are small
//!   and a cached contact is checked again when it is promoted). They are counted when
//!   needed, not kept: a table holds a few hundred contacts, and a simulator of 10,000
//!   nodes would pay about 50 KB per node for kept counts. Two small filters (`seen`) skip
//!   the counting, and the search for another ID at a new contact's address, when nothing
//!   in the table can match. An ID already in the table
//!   keeps its address: a datagram from the same ID at another address neither moves nor
//!   refreshes it ([`InsertResult::OtherAddress`]).
//! - The table does not decide whom to trust: the caller inserts only contacts that answered
//!   a request of ours from the address they claim (see `Dht`'s verification PINGs), and
//!   asks [`RoutingTable::wants`] before spending a PING on a contact.
//! - The table never reads the clock: every method that needs the time takes `now`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::diversity::{DiversityLimits, Level, Network, Origin, QuotaHit, Scope};
use crate::id::Id;
use crate::proto::codec::canonical_addr;
use crate::proto::dht::Contact;
use seen::{addr_hash, net_hash, AddrFilter, NetFilter};

/// Contacts per bucket (k).
pub const K: usize = 20;

// `closest_where` numbers a bucket's entries in the low byte of a u64.
const _: () = assert!(K <= 256);

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

#[derive(Clone, Debug)]
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

impl Bucket {
    /// A bucket never used (what every bucket past the end of [`RoutingTable`]'s is).
    const EMPTY: Bucket = Bucket {
        entries: Vec::new(),
        replacements: VecDeque::new(),
        pending: None,
        last_lookup: None,
    };

    /// Entry `pos` answered, or asked, now: it moves to the end (most recently seen) with
    /// no failures.
    fn seen(&mut self, pos: usize, now: Instant) {
        let mut e = self.entries.remove(pos);
        e.last_seen = now;
        e.failures = 0;
        self.entries.push(e);
    }
}

static EMPTY_BUCKET: Bucket = Bucket::EMPTY;

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
    /// Not inserted: its source or network already holds its quota (spec section 13.2).
    Refused(QuotaHit),
    /// Not inserted or refreshed: the table knows this ID at another address, and keeps it.
    OtherAddress {
        /// The address the table holds for the ID.
        known: SocketAddr,
    },
    /// Not inserted: it is the local node.
    IsSelf,
}

/// The routing table of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: Id,
    /// Buckets `0..len`; those past the end are empty (module docs).
    buckets: Vec<Bucket>,
    limits: DiversityLimits,
    /// Changes of membership so far (see [`RoutingTable::changes`]).
    changes: u64,
    /// Holds the address of every entry, replacement and eviction newcomer, and maybe
    /// more (`seen`).
    seen_addrs: AddrFilter,
    /// Holds the network (`Origin::network`) of every entry, and maybe more.
    seen_nets: NetFilter,
}

/// What a pass over the table counted for a contact of some origin, to go into bucket `i`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Entries of the same source, and of the same network, in bucket `i`.
    src_here: usize,
    net_here: usize,
    /// The same in the whole table.
    src_all: usize,
    net_all: usize,
}

impl RoutingTable {
    /// An empty table centred on `local`, with the address quotas of `limits`.
    pub fn new(local: Id, limits: DiversityLimits) -> Self {
        RoutingTable {
            local,
            buckets: Vec::new(),
            limits,
            changes: 0,
            seen_addrs: AddrFilter::default(),
            seen_nets: NetFilter::default(),
        }
    }

    /// The local node ID.
    pub fn local_id(&self) -> Id {
        self.local
    }

    /// Bucket `i` (an empty one past the end).
    fn bucket(&self, i: usize) -> &Bucket {
        self.buckets.get(i).unwrap_or(&EMPTY_BUCKET)
    }

    /// Bucket `i`, allocated up to it if need be.
    fn bucket_mut(&mut self, i: usize) -> &mut Bucket {
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, || Bucket::EMPTY);
        }
        &mut self.buckets[i]
    }

    /// Which bucket `id` belongs to, or None for the local ID itself.
    pub fn bucket_index(&self, id: &Id) -> Option<usize> {
        let lz = self.local.distance(id).leading_zeros();
        (lz < 256).then_some(lz)
    }

    /// Records that `contact` is alive now: it answered a request of ours from
    /// `contact.addr`. See [`InsertResult`] for what the caller must do next.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> InsertResult {
        let Some(i) = self.bucket_index(&contact.id) else {
            return InsertResult::IsSelf;
        };
        let b = self.bucket_mut(i);
        if let Some(pos) = b.entries.iter().position(|e| e.contact.id == contact.id) {
            // The address of a known ID is not changed by a message from elsewhere: that
            // would let anyone redirect a live contact, or keep a dead one fresh. A dead
            // one is replaced via failures.
            if b.entries[pos].contact.addr != contact.addr {
                return InsertResult::OtherAddress {
                    known: b.entries[pos].contact.addr,
                };
            }
            b.seen(pos, now);
            return InsertResult::Updated;
        }
        // One address holds one node: a contact proven at an address replaces any other ID
        // the table held there (that node restarted with a new ID; spec section 6, rule 5).
        // The quotas are counted in the same pass that looks for such IDs (one pass over the
        // table rather than two: a new contact's insert was two of them); when there are
        // some, they go first and the quotas are counted again.
        // The filters skip both when nothing in the table can match (`seen`): no other ID is
        // at an address the table never held, and no quota is near for a network it never
        // held.
        let origin = Origin::of(contact.addr);
        let addr_hit = self.seen_addrs.may_contain(addr_hash(&contact.addr));
        let net_hit = self.seen_nets.may_contain(net_hash(&origin.network));
        let counts = if addr_hit || net_hit {
            match self.count(i, &origin, |b| {
                addr_hit && forgets(b, contact.addr, &contact.id)
            }) {
                Some(c) => {
                    // Nothing else at that address, or nothing in that network: a false
                    // hit, or one left by contacts gone. Rebuilt, they stop costing passes
                    // (not for a contact waiting in its own bucket's replacements, which is
                    // the hit).
                    let b = self.bucket(i);
                    let waiting = b.replacements.iter().any(|r| r.id == contact.id)
                        || b.pending.is_some_and(|(_, n)| n.id == contact.id);
                    if (addr_hit && !waiting) || (net_hit && c.net_all == 0) {
                        self.rebuild_seen();
                    }
                    c
                }
                None => {
                    self.forget_addr(contact.addr, &contact.id);
                    self.count(i, &origin, |_| false).unwrap_or_default()
                }
            }
        } else {
            Counts::default()
        };
        if let Err(hit) = self.judge(&origin, &counts) {
            return InsertResult::Refused(hit);
        }
        // In the bucket or in its replacements from now on.
        self.seen_addrs.insert(addr_hash(&contact.addr));
        let b = &mut self.buckets[i];
        if b.entries.len() < K {
            self.seen_nets.insert(net_hash(&origin.network));
            self.changes += 1;
            b.replacements.retain(|c| c.id != contact.id);
            if b.entries.len() == b.entries.capacity() {
                // Doubling, but never past K: a full bucket holds K entries, not 32.
                let more = b.entries.len().max(4).min(K - b.entries.len());
                b.entries.reserve_exact(more);
            }
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

    /// A request came from `contact`: whether the table holds its ID (at any address). One
    /// it holds at that address is refreshed, as [`RoutingTable::insert`] does; the table
    /// takes no new contact this way.
    pub fn heard_from(&mut self, contact: &Contact, now: Instant) -> bool {
        let Some((i, pos)) = self.locate(&contact.id) else {
            return false;
        };
        let b = &mut self.buckets[i];
        if b.entries[pos].contact.addr == contact.addr {
            b.seen(pos, now);
        }
        true
    }

    /// Like [`RoutingTable::insert`] but only when the bucket has room: used for contacts
    /// saved by an earlier run, which failures remove if they are gone.
    pub fn insert_if_room(&mut self, contact: Contact, now: Instant) -> Option<InsertResult> {
        let i = self.bucket_index(&contact.id)?;
        let b = self.bucket(i);
        let known = b.entries.iter().any(|e| e.contact.id == contact.id);
        if known || b.entries.len() < K {
            Some(self.insert(contact, now))
        } else {
            None
        }
    }

    /// Whether `contact`, unknown so far, would enter the table now if it proved itself:
    /// its bucket has room and its source and network are within their quotas. The caller
    /// asks this before spending a verification PING on a contact heard from only through
    /// a request.
    pub fn wants(&self, contact: &Contact) -> bool {
        let Some(i) = self.bucket_index(&contact.id) else {
            return false;
        };
        let b = self.bucket(i);
        b.entries.len() < K
            && !b.entries.iter().any(|e| e.contact.id == contact.id)
            && self.admits(i, &Origin::of(contact.addr)).is_ok()
    }

    /// Whether `contact`, unknown at that address, is worth a proof (dht.md section 6.1):
    /// its source and network are within their quotas, and its bucket has room, or its
    /// oldest entry is stale (a PING may make room), or its replacement cache has room.
    /// A full bucket of live contacts with a full cache would only swap cache entries.
    pub fn would_take(&self, contact: &Contact, now: Instant) -> bool {
        let Some(i) = self.bucket_index(&contact.id) else {
            return false;
        };
        let b = self.bucket(i);
        if b.entries.iter().any(|e| e.contact.id == contact.id) {
            // Known at another address: the table keeps the address it has (rule 2).
            return false;
        }
        let room = b.entries.len() < K
            || b.replacements.len() < REPLACEMENT_CACHE
            || b.entries
                .first()
                .is_some_and(|e| now.saturating_duration_since(e.last_seen) >= FRESH);
        room && self.admits(i, &Origin::of(contact.addr)).is_ok()
    }

    /// Whether a contact of origin `o` fits the quotas of bucket `i` and of the table.
    fn admits(&self, i: usize, o: &Origin) -> Result<(), QuotaHit> {
        if !self.seen_nets.may_contain(net_hash(&o.network)) {
            // No entry in its network, so none of its source (a source lies in one
            // network): nothing to count.
            return self.judge(o, &Counts::default());
        }
        self.count(i, o, |_| false)
            .map_or(Ok(()), |c| self.judge(o, &c))
    }

    /// Counts the entries of `o`'s source and network, in bucket `i` and in the table, in
    /// a pass that first asks `stop` of each bucket: None, and nothing counted, if it says
    /// true of one.
    fn count(&self, i: usize, o: &Origin, stop: impl Fn(&Bucket) -> bool) -> Option<Counts> {
        // One pass over the table: each entry's origin is worked out once, for the bucket's
        // counts and the table's (this runs for every contact heard from).
        // An address of the same source or network always shares its /24 or /64 (a local
        // network is one IP): most entries are told apart by that alone.
        let prefix = prefix(o);
        let mut c = Counts::default();
        for (j, b) in self.buckets.iter().enumerate() {
            if stop(b) {
                return None;
            }
            for e in &b.entries {
                if !in_prefix(&e.contact.addr, &prefix) {
                    continue;
                }
                let eo = Origin::of(e.contact.addr);
                let (s, n) = (
                    usize::from(eo.source == o.source),
                    usize::from(eo.network == o.network),
                );
                c.src_all += s;
                c.net_all += n;
                if j == i {
                    c.src_here += s;
                    c.net_here += n;
                }
            }
        }
        Some(c)
    }

    /// Whether counts `c` leave room for a contact of origin `o`.
    fn judge(&self, o: &Origin, c: &Counts) -> Result<(), QuotaHit> {
        let src = &self.limits.source;
        let net = self.limits.network_quota(&o.network);
        let Counts {
            src_here,
            net_here,
            src_all,
            net_all,
        } = *c;
        let checks = [
            (
                Level::Source,
                Scope::Bucket,
                src_here,
                src.contacts_per_bucket,
            ),
            (
                Level::Network,
                Scope::Bucket,
                net_here,
                net.contacts_per_bucket,
            ),
            (Level::Source, Scope::Table, src_all, src.contacts_per_table),
            (
                Level::Network,
                Scope::Table,
                net_all,
                net.contacts_per_table,
            ),
        ];
        match checks.into_iter().find(|&(_, _, have, max)| have >= max) {
            Some((level, scope, _, max)) => Err(QuotaHit { level, scope, max }),
            None => Ok(()),
        }
    }

    /// Sets the filters again from what the table holds (`seen`).
    fn rebuild_seen(&mut self) {
        let (mut addrs, mut nets) = (AddrFilter::default(), NetFilter::default());
        for b in &self.buckets {
            for e in &b.entries {
                addrs.insert(addr_hash(&e.contact.addr));
                nets.insert(net_hash(&Origin::of(e.contact.addr).network));
            }
            for r in &b.replacements {
                addrs.insert(addr_hash(&r.addr));
            }
            if let Some((_, n)) = &b.pending {
                addrs.insert(addr_hash(&n.addr));
            }
        }
        self.seen_addrs = addrs;
        self.seen_nets = nets;
    }

    /// Notes that the contact at `addr` is now an entry (it may have been a replacement).
    fn seen_entry(&mut self, addr: &SocketAddr) {
        self.seen_addrs.insert(addr_hash(addr));
        self.seen_nets.insert(net_hash(&Origin::of(*addr).network));
    }

    /// Moves the most recently seen replacement of bucket `i` that fits the quotas into the
    /// bucket, as if just seen: it was seen more recently than the entry it replaces, and
    /// failures will weed it out if it is gone too.
    fn promote_replacement(&mut self, i: usize, now: Instant) {
        let b = self.bucket(i);
        let fits = b
            .replacements
            .iter()
            .rposition(|c| self.admits(i, &Origin::of(c.addr)).is_ok());
        let Some(pos) = fits else {
            return;
        };
        if let Some(contact) = self.buckets[i].replacements.remove(pos) {
            self.changes += 1;
            self.seen_entry(&contact.addr);
            self.buckets[i].entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
        }
    }

    /// The outcome of the eviction ping started by [`InsertResult::PingOldest`].
    pub fn on_ping_result(&mut self, pinged: &Id, alive: bool, now: Instant) {
        let Some(i) = self
            .bucket_index(pinged)
            .filter(|&i| i < self.buckets.len())
        else {
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
            return;
        }
        self.buckets[i].entries.remove(pos);
        self.changes += 1;
        // The newcomer was within its quotas when it was heard; check again, since others
        // may have entered since.
        if self.admits(i, &Origin::of(newcomer.addr)).is_ok() {
            self.buckets[i].replacements.retain(|c| c.id != newcomer.id);
            self.seen_entry(&newcomer.addr);
            self.buckets[i].entries.push(Entry {
                contact: newcomer,
                last_seen: now,
                failures: 0,
            });
        } else {
            self.promote_replacement(i, now);
        }
    }

    /// A request to `id` got no answer. After [`MAX_FAILURES`] in a row the contact is
    /// dropped and the freshest replacement takes its place. Returns true if it was dropped.
    pub fn on_failure(&mut self, id: &Id, now: Instant) -> bool {
        let Some(i) = self.bucket_index(id).filter(|&i| i < self.buckets.len()) else {
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
        if b.pending.is_some_and(|(p, _)| p == *id) {
            b.pending = None;
        }
        self.buckets[i].entries.remove(pos);
        self.changes += 1;
        self.promote_replacement(i, now);
        true
    }

    /// Removes a contact outright (e.g. it turned out to be ourselves under another address).
    pub fn remove(&mut self, id: &Id) {
        if let Some(i) = self.bucket_index(id).filter(|&i| i < self.buckets.len()) {
            if let Some(pos) = self.buckets[i]
                .entries
                .iter()
                .position(|e| e.contact.id == *id)
            {
                self.buckets[i].entries.remove(pos);
                self.changes += 1;
                // An eviction PING of it is moot (as `on_failure` and `forget_addr` have it):
                // a bucket's pending PING always has its head in the bucket.
                if self.buckets[i].pending.is_some_and(|(p, _)| p == *id) {
                    self.buckets[i].pending = None;
                }
            }
            self.buckets[i].replacements.retain(|c| c.id != *id);
        }
    }

    /// Drops every contact and replacement at `addr` whose ID is not `keep`. Returns how
    /// many entries (not replacements) were dropped.
    pub fn forget_addr(&mut self, addr: SocketAddr, keep: &Id) -> usize {
        let mut dropped = 0;
        // This runs for every contact that enters the table, and seldom finds anything:
        // the buckets are only read unless something goes.
        let other = |c: &Contact| c.addr == addr && c.id != *keep;
        for b in &mut self.buckets {
            if b.entries.iter().any(|e| other(&e.contact)) {
                let before = b.entries.len();
                b.entries.retain(|e| !other(&e.contact));
                dropped += before - b.entries.len();
            }
            if b.replacements.iter().any(other) {
                b.replacements.retain(|c| !other(c));
            }
            // An eviction PING whose head or newcomer just went is moot.
            if b.pending.is_some_and(|(p, c)| {
                (c.addr == addr && c.id != *keep) || !b.entries.iter().any(|e| e.contact.id == p)
            }) {
                b.pending = None;
            }
        }
        self.changes += dropped as u64;
        dropped
    }

    /// The address quotas this table applies.
    pub fn limits(&self) -> &DiversityLimits {
        &self.limits
    }

    /// Up to `n` contacts closest to `target`, closest first. Excludes `exclude` (the
    /// requester) if given.
    pub fn closest(&self, target: &Id, n: usize, exclude: Option<&Id>) -> Vec<Contact> {
        self.closest_where(target, n, exclude, |_| true)
    }

    /// Like [`RoutingTable::closest`], among the contacts `keep` accepts (for an answer:
    /// those of the requester's address family, spec section 8).
    pub fn closest_where(
        &self,
        target: &Id,
        n: usize,
        exclude: Option<&Id>,
        keep: impl Fn(&Contact) -> bool,
    ) -> Vec<Contact> {
        if n == 0 {
            return Vec::new();
        }
        // This runs for every FIND_NODE and GET_PROVIDERS answered: the DHT's hottest path.
        // Buckets are taken nearest first until n contacts are in hand. Every contact of a
        // bucket is nearer the target than every contact of any bucket after it in this
        // order, so the n closest are among those taken: with D = local XOR target, first
        // the buckets j where bit j of D is 1, shallowest first, then those where it is 0,
        // deepest first. (A contact c of bucket j agrees with D above bit j in c XOR target
        // and has bit j flipped there; a deeper bucket's contacts keep D's bit j. So where
        // D's bit j is 1, bucket j is nearer than everything deeper, else farther.) The
        // first is the target's own bucket; for the local ID itself (D = 0) deeper is nearer.
        let d = self.local.distance(target);
        let len = self.buckets.len();
        let order = (0..len)
            .filter(|&j| d.bit(j))
            .chain((0..len).rev().filter(|&j| !d.bit(j)));
        // Each bucket is ordered on the stack (at most K entries, by index) and taken whole
        // or in part: no buffer of the table's contacts, which at this rate cost a large
        // allocation per call.
        let mut out: Vec<Contact> = Vec::with_capacity(n.min(K));
        for j in order {
            if out.len() >= n {
                break;
            }
            let entries = &self.buckets[j].entries;
            // Sorted as u64s: the first 56 bits of the distance above the entry's index.
            // When two entries agree in those bits (all contacts of a bucket 55 or more
            // deep; elsewhere a chance of about 2^-30 for a bucket of 20 some 17 deep, as
            // in a 100,000-node network) the bucket is sorted again on whole distances.
            let mut near = [0u64; K];
            let mut m = 0;
            for (i, e) in entries.iter().enumerate().take(K) {
                if Some(&e.contact.id) != exclude && keep(&e.contact) {
                    near[m] = (e.contact.id.distance_head(target) & !0xff) | i as u64;
                    m += 1;
                }
            }
            let near = &mut near[..m];
            near.sort_unstable();
            let entry = |k: &u64| &entries[(k & 0xff) as usize];
            if near.windows(2).any(|w| w[0] >> 8 == w[1] >> 8) {
                near.sort_unstable_by_key(|k| entry(k).contact.id.distance(target));
            }
            let room = n - out.len();
            out.extend(near.iter().take(room).map(|k| entry(k).contact));
        }
        out
    }

    /// Looks up a contact by ID.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.locate(id)
            .map(|(i, pos)| &self.buckets[i].entries[pos])
    }

    /// Where the entry of `id` is: its bucket and its place in it.
    fn locate(&self, id: &Id) -> Option<(usize, usize)> {
        let i = self.bucket_index(id)?;
        let pos = self
            .buckets
            .get(i)?
            .entries
            .iter()
            .position(|e| e.contact.id == *id)?;
        Some((i, pos))
    }

    /// Finds the contact known at `addr`, if any.
    pub fn find_by_addr(&self, addr: &SocketAddr) -> Option<&Entry> {
        self.iter().find(|e| e.contact.addr == *addr)
    }

    /// All entries, bucket by bucket.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// A counter that moves whenever a contact enters or leaves the table (not when one is
    /// merely heard from again): a caller that shows the table redraws it when this moves.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The contacts waiting in the replacement caches, bucket by bucket.
    pub fn replacements(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.replacements.iter())
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
            self.bucket_mut(i).last_lookup = Some(now);
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
                self.bucket(i)
                    .last_lookup
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            })
            .collect()
    }
}

/// The /24 or /64 that every address of `o`'s source and network lies in.
fn prefix(o: &Origin) -> Network {
    match o.network {
        Network::LocalHost(ip) => Network::prefix_of(ip),
        global => global,
    }
}

/// Whether `addr` lies in `prefix` (a [`Network::prefix_of`]): the same as
/// `Network::prefix_of(canonical_addr(addr).ip()) == prefix`, with a shortcut for an IPv4
/// address and a /24: three bytes compared rather than two networks built and compared,
/// for every entry of the table at every quota count (a large share of a simulation's
/// CPU).
#[inline]
fn in_prefix(addr: &SocketAddr, prefix: &Network) -> bool {
    match (addr, prefix) {
        (SocketAddr::V4(a), Network::V4(p)) => {
            let [x, y, z, _] = a.ip().octets();
            [x, y, z] == *p
        }
        _ => Network::prefix_of(canonical_addr(*addr).ip()) == *prefix,
    }
}

/// Whether [`RoutingTable::forget_addr`]`(addr, keep)` would change bucket `b`: it holds an
/// entry or a replacement at `addr` under another ID, or an eviction PING that would become
/// moot (its newcomer is such a one, or its head is no longer in the bucket).
fn forgets(b: &Bucket, addr: SocketAddr, keep: &Id) -> bool {
    let other = |c: &Contact| c.addr == addr && c.id != *keep;
    b.entries.iter().any(|e| other(&e.contact))
        || b.replacements.iter().any(other)
        || b.pending
            .is_some_and(|(p, c)| other(&c) || !b.entries.iter().any(|e| e.contact.id == p))
}

fn push_replacement(b: &mut Bucket, c: Contact) {
    b.replacements.retain(|r| r.id != c.id);
    if b.replacements.len() >= REPLACEMENT_CACHE {
        b.replacements.pop_front();
    }
    b.replacements.push_back(c);
}

mod seen;
#[cfg(test)]
mod tests;
