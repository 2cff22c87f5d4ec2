//! The reprovide sweep (dht.md section 10.1): republishing many keys at once by walking the
//! keyspace region by region instead of running one announce lookup per key (IPFS's answer
//! to falling behind on reprovides; issue 21).
//!
//! The keys due are sorted. The sweep takes the smallest, `K`, and runs one GET_PROVIDERS
//! lookup for it with a width of `w = 2k` instead of `k` ([`QueryKind::Region`]): its
//! answer is the `w` closest nodes to `K`, each with a token (a token is bound to our
//! address, not to a key, so one token serves every key we announce to that node). Every
//! node closer to `K` than `r`, the distance of the `3k/2`-th, is taken to be among them
//! (answers name only k contacts, so the ranks past k are less sure). For another key
//! `K'` at distance `d = K ^ K'` from `K`, let `S'` be the `k` of them closest to `K'`: if
//! `d + dist(K', S'[k-1]) <= r`, any node closer to `K'` than `S'[k-1]` is within `r` of `K`
//! (XOR distance is at most the sum), so `S'` is the true `k` closest of `K'`, and `K'` is
//! placed without a lookup of its own. Placed keys go out in ANNOUNCE_MANY batches, up to
//! [`MAX_ANNOUNCE_KEYS`] keys per node and datagram (section 4.9a), 35 with our rendezvous
//! when we are behind a NAT (the batch carries it, nat.md section 5); the others wait for a
//! later region. A region covers about `k * keys / nodes` keys, so the lookups stop
//! mattering once a node provides many more keys than the network has nodes / k, and the
//! batches make the announces ~36 times cheaper. Up to [`PARALLEL_REGIONS`] regions run at
//! once, each starting past the likely reach of the others.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::queries::QueryKind;
use super::requests::{Outstanding, Purpose};
use super::{Dht, QueryId};
use crate::id::{Distance, Id};
#[cfg(doc)]
use crate::proto::dht::MAX_ANNOUNCE_KEYS;
use crate::proto::dht::{max_announce_keys, Contact, Message, TOKEN_LEN};

/// A sweep in progress.
#[derive(Debug)]
pub(super) struct Sweep {
    /// Keys not yet placed, with the port each is served on.
    pending: BTreeMap<Id, u16>,
    /// The region lookups running, by query, with the key each is for.
    running: BTreeMap<QueryId, Id>,
    /// Depth (leading bits) of the last region finished: a new region starts outside the
    /// subtrees of that depth around the running ones, where they will likely place keys.
    /// Unknown at first, so the first region runs alone.
    depth_hint: Option<usize>,
    /// ANNOUNCE_MANY requests not yet answered (or failed).
    batches_out: usize,
    started: Instant,
}

/// What the sweeps of this node did, for `status` and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Sweeps started, and finished.
    pub started: u64,
    /// Sweeps finished.
    pub finished: u64,
    /// Keys taken by sweeps.
    pub keys: u64,
    /// Region lookups run.
    pub regions: u64,
    /// Requests of the region lookups (answered plus failed; copies sent again at a soft
    /// timeout not counted).
    pub lookup_requests: u64,
    /// Answers to them.
    pub lookup_answers: u64,
    /// ANNOUNCE_MANY datagrams sent (a retry counts again).
    pub batches: u64,
    /// STORED answers.
    pub batch_answers: u64,
    /// Records the STORED answers counted (keys x nodes).
    pub records_stored: u64,
    /// ANNOUNCEs sent for the keys of batches never answered (dht.md section 4.9a), and
    /// their answers.
    pub fallback_announces: u64,
    /// Answers to those.
    pub fallback_acks: u64,
    /// Keys given back to the per-key schedule because a region lookup reached nobody.
    pub keys_deferred: u64,
    /// How long the last finished sweep took.
    pub last_duration: Option<Duration>,
}

impl SweepStats {
    /// Datagrams the sweeps sent and received: requests plus answers.
    pub fn datagrams(&self) -> u64 {
        self.lookup_requests
            + self.lookup_answers
            + self.batches
            + self.batch_answers
            + self.fallback_announces
            + self.fallback_acks
    }
}

/// Keys due at once below this go out one announce each: a region lookup is wider than an
/// announce's, and buys nothing for one key.
pub(super) const SWEEP_MIN_KEYS: usize = 2;

/// How long a key a download began to provide waits for others to be announced with
/// ([`Dht::provide_soon`]; dht.md section 10).
pub const FRESH_DELAY: Duration = Duration::from_millis(500);

/// Region lookups a sweep runs at once: a sparse library (a region per key or two) must
/// still be swept well within the republish interval.
const PARALLEL_REGIONS: usize = 4;

impl Dht {
    /// True while a sweep runs.
    pub(super) fn sweeping(&self) -> bool {
        self.sweep.is_some()
    }

    /// Provides `key` on TCP `port` (0: the DHT's UDP port) like [`Dht::announce`], but
    /// announces it with the other keys that start being provided within [`FRESH_DELAY`]
    /// of the first: one sweep (or one announce, for a key alone) instead of one announce
    /// lookup each. For a downloader's first announce (dht.md section 10): many small
    /// downloads from one peer would otherwise send it two requests each at once (issue 21).
    pub fn provide_soon(&mut self, key: Id, port: u16, now: Instant) {
        self.provided.insert(
            key,
            super::Provided {
                port,
                next_republish: now + self.config.republish_interval,
                retry: super::ANNOUNCE_RETRY,
                table_len: self.routing.len(),
            },
        );
        self.fresh.insert(key, port);
        self.fresh_due.get_or_insert(now + FRESH_DELAY);
    }

    /// The keys of [`Dht::provide_soon`] are due: a key alone gets its announce lookup,
    /// several join the sweep running or start one (with our rendezvous, if any: the
    /// batches carry it). Without sweeps, or with an empty table, they are left due for the
    /// next housekeeping.
    pub(super) fn announce_fresh(&mut self, now: Instant) {
        self.fresh_due = None;
        let keys: Vec<(Id, u16)> = std::mem::take(&mut self.fresh).into_iter().collect();
        let batch = self.config.reprovide_sweep;
        if self.routing.is_empty() || (!batch && keys.len() > 1) {
            for (key, _) in &keys {
                if let Some(p) = self.provided.get_mut(key) {
                    p.next_republish = now;
                }
            }
            self.next_maintenance = now;
            return;
        }
        if keys.len() < SWEEP_MIN_KEYS {
            for (key, port) in keys {
                // Refused (too many lookups): the key stays due soon rather than waiting a
                // whole republish interval.
                let _ = self.start_announce(key, port, now);
            }
        } else if let Some(sw) = self.sweep.as_mut() {
            self.sweep_stats.keys += keys.len() as u64;
            sw.pending.extend(keys);
            self.sweep_next_region(now);
        } else {
            self.start_sweep(keys, now);
        }
    }

    /// Starts a sweep over `keys` (their `next_republish` already moved on by the caller).
    pub(super) fn start_sweep(&mut self, keys: Vec<(Id, u16)>, now: Instant) {
        let pending: BTreeMap<Id, u16> = keys.into_iter().collect();
        self.sweep_stats.started += 1;
        self.sweep_stats.keys += pending.len() as u64;
        self.sweep = Some(Sweep {
            pending,
            running: BTreeMap::new(),
            depth_hint: None,
            batches_out: 0,
            started: now,
        });
        self.sweep_next_region(now);
    }

    /// Starts region lookups for the smallest keys not yet placed nor likely placed by a
    /// running region, up to [`PARALLEL_REGIONS`]; ends the sweep when nothing is left.
    fn sweep_next_region(&mut self, now: Instant) {
        loop {
            let Some(sw) = self.sweep.as_ref() else {
                return;
            };
            if sw.pending.is_empty() && sw.running.is_empty() {
                if sw.batches_out == 0 {
                    let took = now.saturating_duration_since(sw.started);
                    self.sweep = None;
                    self.sweep_stats.finished += 1;
                    self.sweep_stats.last_duration = Some(took);
                }
                return;
            }
            let parallel = if sw.depth_hint.is_some() {
                PARALLEL_REGIONS
            } else {
                1
            };
            if sw.running.len() >= parallel {
                return;
            }
            let depth = sw.depth_hint.unwrap_or(256);
            let claimed = |key: &Id| {
                sw.running
                    .values()
                    .any(|a| a == key || a.distance(key).leading_zeros() >= depth)
            };
            // After the last running region's key, so regions do not overlap.
            let from = sw.running.values().max().copied();
            let next = sw
                .pending
                .keys()
                .filter(|k| from.is_none_or(|f| **k > f))
                .find(|k| !claimed(k))
                .copied();
            let Some(key) = next else {
                return;
            };
            self.sweep_stats.regions += 1;
            // Claimed before the lookup starts: with nobody to ask it ends inside
            // `start_query`, and its end must find it running.
            let q = QueryId(self.next_query);
            if let Some(sw) = self.sweep.as_mut() {
                sw.running.insert(q, key);
            }
            if self.start_query(QueryKind::Region, key, now).is_none() {
                // Too many lookups running: the keys left go back to the per-key schedule.
                self.sweep_give_back(now);
                return;
            }
        }
    }

    /// The region lookup `qid` for `key` finished: `answered` are the up to `w` closest
    /// nodes that answered, closest first, with their tokens.
    pub(super) fn sweep_region_done(
        &mut self,
        qid: QueryId,
        key: Id,
        answered: Vec<(Contact, [u8; TOKEN_LEN])>,
        requests: u64,
        answers: u64,
        now: Instant,
    ) {
        self.sweep_stats.lookup_requests += requests;
        self.sweep_stats.lookup_answers += answers;
        let k = self.config.k;
        let Some(sw) = self.sweep.as_mut() else {
            return;
        };
        if sw.running.remove(&qid).is_none() {
            return;
        }
        if answered.is_empty() {
            // Nobody answered: the node is cut off for now. Give every key back to the
            // per-key schedule (an announce that stored nowhere is retried soon).
            self.sweep_give_back(now);
            return;
        }
        // The lookup is 2k wide, but an answer names only k contacts: its ranks past k are
        // less certain than its first k. Every node within `r`, the distance of the
        // 3k/2-th, is taken to have answered (dht.md section 10.1 gives the measurements
        // behind 3k/2). With fewer answers only `key` itself is placed.
        let rank = k + k / 2;
        let r = (answered.len() >= rank).then(|| answered[rank - 1].0.id.distance(&key));
        let depth = r.map_or(256, |r| r.leading_zeros());
        if r.is_some() {
            sw.depth_hint = Some(depth);
        }
        let mut placed: Vec<(Id, u16, Vec<usize>)> = Vec::new();
        let mut order: Vec<usize> = (0..answered.len()).collect();
        // A network smaller than k (fewer than k nodes answered a lookup 2k wide, and our own
        // table holds fewer than k): every node is among the k closest of every key, so
        // every key is placed on all of them (dht.md section 10.1).
        let small = answered.len() < k && self.routing.len() < k;
        // Keys outside `key`'s subtree at `r`'s depth are farther than `r` from it: the
        // region is that subtree.
        let in_region: Vec<(Id, u16)> = sw
            .pending
            .range(if small { Id([0; 32]) } else { key }..)
            .take_while(|(k2, _)| {
                small || **k2 == key || k2.distance(&key).leading_zeros() >= depth
            })
            .map(|(k2, p)| (*k2, *p))
            .collect();
        for (key2, port) in in_region {
            let d = key2.distance(&key);
            order.sort_by_key(|&i| answered[i].0.id.distance(&key2));
            let top: Vec<usize> = order.iter().copied().take(k).collect();
            let covered = key2 == key
                || small
                || match (r, top.last()) {
                    (Some(r), Some(&far)) => {
                        sum_at_most(&d, &answered[far].0.id.distance(&key2), &r)
                    }
                    _ => false,
                };
            if covered {
                sw.pending.remove(&key2);
                placed.push((key2, port, top));
            }
        }
        // Batches per node and port.
        let mut batches: BTreeMap<(usize, u16), Vec<Id>> = BTreeMap::new();
        for (key2, port, top) in &placed {
            for &i in top {
                batches.entry((i, *port)).or_default().push(*key2);
            }
        }
        let mut sent = 0;
        // Behind a NAT each batch carries our rendezvous, as an ANNOUNCE would (nat.md
        // section 5), which leaves room for one key less.
        let rendezvous = self.rendezvous;
        let per_batch = max_announce_keys(rendezvous.is_some());
        for ((i, port), keys) in batches {
            let (c, token) = answered[i];
            for chunk in keys.chunks(per_batch) {
                let msg = Message::AnnounceMany {
                    token,
                    port,
                    keys: chunk.to_vec(),
                    rendezvous,
                };
                self.send_request(now, c.addr, Some(c.id), msg, Purpose::Batch);
                sent += 1;
            }
        }
        self.sweep_stats.batches += sent;
        // Held here too when we are among the k closest (as an announce does).
        if let Some(ext) = self.external {
            for (key2, port, top) in &placed {
                let far = top.last().map(|&i| answered[i].0.id.distance(key2));
                if top.len() < k || far.is_some_and(|f| self.id.distance(key2) < f) {
                    let port = if *port == 0 { ext.port() } else { *port };
                    let addr = std::net::SocketAddr::new(ext.ip(), port);
                    let via = rendezvous.map(|rv| (self.id, rv));
                    let _ = self.store.add_via(*key2, addr, via, ext, now);
                }
            }
        }
        if let Some(sw) = self.sweep.as_mut() {
            sw.batches_out += sent as usize;
        }
        self.sweep_next_region(now);
    }

    /// An ANNOUNCE_MANY was answered (`stored` keys stored) or failed (`None`).
    pub(super) fn on_batch_answer(&mut self, stored: Option<u8>, now: Instant) {
        if let Some(n) = stored {
            self.sweep_stats.batch_answers += 1;
            self.sweep_stats.records_stored += u64::from(n);
        }
        if let Some(sw) = self.sweep.as_mut() {
            sw.batches_out = sw.batches_out.saturating_sub(1);
        }
        self.sweep_next_region(now);
    }

    /// A batch that its node answered neither time: it may be a node that does not know
    /// ANNOUNCE_MANY (it drops it), so each key goes to it in an ANNOUNCE of its own, with
    /// the same token and rendezvous, once. The node answered the region lookup a moment
    /// ago, so it is most likely alive; a lost ANNOUNCE is not sent again. (A node older than
    /// the rendezvous form of ANNOUNCE_MANY drops it too, as trailing bytes: it lands here,
    /// and never stores the keys without the rendezvous.)
    pub(super) fn batch_fallback(&mut self, now: Instant, out: &Outstanding) {
        let Message::AnnounceMany {
            token,
            port,
            keys,
            rendezvous,
        } = &out.msg
        else {
            return;
        };
        for key in keys {
            let msg = Message::Announce {
                key: *key,
                token: *token,
                port: *port,
                rendezvous: *rendezvous,
            };
            self.send_request(now, out.to, out.node, msg, Purpose::BatchKey);
            self.sweep_stats.fallback_announces += 1;
        }
    }

    /// Ends the sweep, handing the keys it has not placed back to the per-key schedule, to
    /// be tried again soon.
    fn sweep_give_back(&mut self, now: Instant) {
        let Some(sw) = self.sweep.take() else {
            return;
        };
        self.sweep_stats.keys_deferred += sw.pending.len() as u64;
        for key in sw.pending.keys() {
            if let Some(p) = self.provided.get_mut(key) {
                p.next_republish = now + p.retry;
                p.retry = (p.retry * 2).min(self.config.republish_interval);
            }
        }
    }
}

/// `a + b <= c` for 256-bit big-endian numbers (false on overflow).
fn sum_at_most(a: &Distance, b: &Distance, c: &Distance) -> bool {
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let s = u16::from(a.0[i]) + u16::from(b.0[i]) + carry;
        sum[i] = (s & 0xff) as u8;
        carry = s >> 8;
    }
    carry == 0 && sum <= c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_distances_compare_as_256_bit_numbers() {
        let d = |last: u8, first: u8| {
            let mut x = [0u8; 32];
            x[31] = last;
            x[0] = first;
            Distance(x)
        };
        assert!(sum_at_most(&d(1, 0), &d(2, 0), &d(3, 0)));
        assert!(!sum_at_most(&d(2, 0), &d(2, 0), &d(3, 0)));
        // A carry across bytes.
        assert!(sum_at_most(
            &d(0xff, 0),
            &d(1, 0),
            &Distance({
                let mut x = [0u8; 32];
                x[30] = 1;
                x
            })
        ));
        // Overflow of 256 bits is never "at most".
        assert!(!sum_at_most(
            &d(0, 0x80),
            &d(0, 0x80),
            &Distance([0xff; 32])
        ));
    }
}
