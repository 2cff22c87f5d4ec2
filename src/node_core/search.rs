//! How a download finds peers (issue 21: many downloads at once from one peer). Two rules,
//! decided here without I/O and carried out by the node core:
//!
//! - **Known providers first.** Providers a recent lookup found for another download (those
//!   dialled directly: not through a rendezvous, which would cost a punch or a relay) are
//!   offered to a new download as candidates before the DHT is asked (IPFS's Bitswap asks
//!   its connected peers first, and the DHT only after a "provider search delay" of 1 s).
//!   Its DHT lookup is put off by [`SEARCH_DELAY`], and skipped if the download has a peer
//!   by then (the engine asks again later while it wants more peers); it starts at once
//!   when every offered peer failed (none had the content).
//! - **Coalesced lookups.** At most `max(MIN_LOOKUPS, routing table size)` download lookups
//!   run at once; the others wait in line, and when their turn comes a download that has a
//!   peer meanwhile, or that known providers can now be offered to, does without.
//!
//! Why: 250 downloads from one peer each ran their own lookup (and, finished, their own
//! announce) at the same instant, and in a two-node network every request went to that
//! peer, whose per-source rate limit (dht.md section 13.1: 100 a second, bursts of 200)
//! dropped a thousand of them; the timeouts and retries made the last download take 16 s
//! against 0.49 s for the median. In a network of many nodes the lookups of different keys
//! spread over different nodes, so the bound grows with the routing table.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Lookup, NodeCore};
use crate::dht::{QueryId, QueryResult};
use crate::id::Id;

/// How long a download tries the providers it was offered before its DHT lookup starts.
pub const SEARCH_DELAY: Duration = Duration::from_secs(1);
/// Providers remembered for the next downloads.
pub const RECENT_MAX: usize = 8;
/// How long a provider found by a lookup is offered to new downloads.
pub const RECENT_FOR: Duration = Duration::from_secs(600);
/// Download lookups run at once, at the least (with a routing table of more contacts, as
/// many as it has).
pub const MIN_LOOKUPS: usize = 8;
/// How long a download that was offered the known providers is not offered them again (its
/// later searches go to the DHT).
const OFFER_MEMORY: Duration = Duration::from_secs(600);
/// Most downloads remembered as offered (the oldest are forgotten first beyond it).
const MAX_OFFERS: usize = 65_536;

/// What the node core does for a download that looks for peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Offer these providers (address, node ID if known) as candidates; no lookup now.
    Offer(Vec<(SocketAddr, Option<Id>)>),
    /// Start its DHT lookup (a slot is taken: [`PeerSearch::lookup_done`] frees it).
    Lookup,
}

/// A download that was offered the known providers.
#[derive(Clone, Copy, Debug)]
struct Offer {
    /// When its DHT lookup is due if it still has no peer.
    due: Instant,
    /// The lookup decision is still to be taken.
    open: bool,
}

/// Counters for `status` (`dht.search`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Downloads offered the known providers before the DHT.
    pub offered: u64,
    /// Download lookups started.
    pub lookups: u64,
    /// Lookups not run: the download had a peer (or had ended) by its turn.
    pub skipped: u64,
    /// Searches that waited in line for a lookup slot.
    pub queued: u64,
}

/// The provider search of the downloads (see the module docs).
#[derive(Debug, Default)]
pub struct PeerSearch {
    /// Providers found lately, newest first.
    recent: VecDeque<(SocketAddr, Option<Id>, Instant)>,
    offers: HashMap<Id, Offer>,
    /// The offers still open, by due time (all offers wait the same delay, so in the order
    /// they were made); some may have been decided since, and leave at the next pump. What
    /// `poll_timeout` and `pump` look at, rather than every offer remembered.
    open: VecDeque<(Instant, Id)>,
    /// Offered contents in the order they were offered (bounds `offers`).
    offer_order: VecDeque<Id>,
    /// Downloads waiting for a lookup slot, in order, and the same as a set.
    waiting: VecDeque<Id>,
    queued: HashSet<Id>,
    /// Download lookups running.
    running: usize,
    stats: SearchStats,
}

impl PeerSearch {
    /// What was done so far.
    pub fn stats(&self) -> &SearchStats {
        &self.stats
    }

    /// Download lookups running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// The engine asks for peers of `content`; `cap` is how many download lookups may run.
    /// `None`: nothing to do now (it waits for its offer's decision or for a slot).
    pub fn find(&mut self, now: Instant, content: Id, cap: usize) -> Option<Step> {
        self.forget_old(now);
        if let Some(o) = self.offers.get(&content) {
            if o.open {
                // Its offered providers are being tried; the decision comes at `due`.
                return None;
            }
        } else if !self.recent.is_empty() {
            return Some(self.offer(now, content));
        }
        self.enqueue(content, cap)
    }

    /// A download lookup ended, with these providers (address, node ID if named): they are
    /// remembered for the next downloads, and its slot is free.
    pub fn lookup_done(&mut self, now: Instant, providers: &[(SocketAddr, Option<Id>)]) {
        self.running = self.running.saturating_sub(1);
        for (addr, node) in providers.iter().rev() {
            self.recent.retain(|(a, _, _)| a != addr);
            self.recent.push_front((*addr, *node, now));
        }
        self.recent.truncate(RECENT_MAX);
    }

    /// The providers that would be offered now.
    pub fn recent_providers(&self) -> impl Iterator<Item = &SocketAddr> {
        self.recent.iter().map(|(a, _, _)| a)
    }

    /// A provider the engine found wrong (banned, or gone): not offered any more.
    pub fn forget_provider(&mut self, addr: &SocketAddr) {
        self.recent.retain(|(a, _, _)| a != addr);
    }

    /// The open offers: what [`PeerSearch::pump`] needs to know about them from the engine.
    pub fn open_offers(&self) -> Vec<Id> {
        self.open
            .iter()
            .filter(|(_, id)| self.offers.get(id).is_some_and(|o| o.open))
            .map(|(_, id)| *id)
            .collect()
    }

    /// When the next offer's decision is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open.front().map(|(due, _)| *due)
    }

    /// Takes the decisions that are due and fills free lookup slots. `prospects` are the
    /// engine's `(content, peers, dials and candidates)` of running downloads among the
    /// open offers and the waiting ones (a content missing from it is no longer a running
    /// download). Returns what to do, in order.
    pub fn pump(
        &mut self,
        now: Instant,
        cap: usize,
        prospects: &[(Id, usize, usize)],
    ) -> Vec<(Id, Step)> {
        let by_id: HashMap<Id, (usize, usize)> =
            prospects.iter().map(|&(id, a, p)| (id, (a, p))).collect();
        let mut steps = Vec::new();
        let mut decide: Vec<Id> = Vec::new();
        for (_, id) in &self.open {
            let Some(o) = self.offers.get_mut(id).filter(|o| o.open) else {
                continue;
            };
            match by_id.get(id) {
                // Over (complete, cancelled): nothing to decide.
                None => o.open = false,
                // Due, or every offered provider failed already.
                Some(&(_, pending)) if o.due <= now || pending == 0 => {
                    o.open = false;
                    decide.push(*id);
                }
                Some(_) => {}
            }
        }
        let offers = &self.offers;
        self.open
            .retain(|(_, id)| offers.get(id).is_some_and(|o| o.open));
        for id in decide {
            match by_id.get(&id) {
                Some(&(0, _)) => {
                    if let Some(s) = self.enqueue(id, cap) {
                        steps.push((id, s));
                    }
                }
                _ => self.stats.skipped += 1,
            }
        }
        while self.running < cap {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.queued.remove(&id);
            match by_id.get(&id) {
                Some(&(0, _)) => {}
                _ => {
                    self.stats.skipped += 1;
                    continue;
                }
            }
            if !self.offers.contains_key(&id) && !self.recent.is_empty() {
                steps.push((id, self.offer(now, id)));
            } else {
                self.running += 1;
                self.stats.lookups += 1;
                steps.push((id, Step::Lookup));
            }
        }
        steps
    }

    /// The contents waiting for a slot (for the engine's prospects).
    pub fn waiting(&self) -> impl Iterator<Item = &Id> {
        self.waiting.iter()
    }

    fn offer(&mut self, now: Instant, content: Id) -> Step {
        self.stats.offered += 1;
        self.offers.insert(
            content,
            Offer {
                due: now + SEARCH_DELAY,
                open: true,
            },
        );
        self.open.push_back((now + SEARCH_DELAY, content));
        self.offer_order.push_back(content);
        while self.offer_order.len() > MAX_OFFERS {
            if let Some(old) = self.offer_order.pop_front() {
                self.offers.remove(&old);
            }
        }
        Step::Offer(
            self.recent
                .iter()
                .map(|&(addr, node, _)| (addr, node))
                .collect(),
        )
    }

    fn enqueue(&mut self, content: Id, cap: usize) -> Option<Step> {
        if self.running < cap && self.waiting.is_empty() {
            self.running += 1;
            self.stats.lookups += 1;
            return Some(Step::Lookup);
        }
        if self.queued.insert(content) {
            self.stats.queued += 1;
            self.waiting.push_back(content);
        }
        None
    }

    /// Providers found too long ago, and offers decided too long ago, are forgotten.
    fn forget_old(&mut self, now: Instant) {
        self.recent
            .retain(|&(_, _, seen)| now.saturating_duration_since(seen) < RECENT_FOR);
        while let Some(id) = self.offer_order.front() {
            match self.offers.get(id) {
                Some(o) if o.open || now.saturating_duration_since(o.due) < OFFER_MEMORY => break,
                _ => {
                    self.offers.remove(id);
                    self.offer_order.pop_front();
                }
            }
        }
    }
}

impl NodeCore {
    /// How many download lookups may run at once (`search.rs`): lookups of different keys
    /// spread over about as many nodes as the routing table holds.
    pub(super) fn search_cap(&self) -> usize {
        MIN_LOOKUPS.max(self.dht.routing_table().len())
    }

    /// Carries out one decision of the provider search for `content`.
    /// The engine wants peers for `content`: known providers, a lookup, or a wait.
    pub(super) fn find_peers(&mut self, now: Instant, content: Id) {
        // A provider learnt since to be behind a rendezvous is offered no more: a guess is
        // worth a connection, not a punch or a circuit on a relay.
        let behind: Vec<SocketAddr> = self
            .search
            .recent_providers()
            .filter(|a| self.dht.rendezvous_of(a).is_some())
            .copied()
            .collect();
        for a in &behind {
            self.search.forget_provider(a);
        }
        let cap = self.search_cap();
        if let Some(step) = self.search.find(now, content, cap) {
            self.search_step(now, content, step);
        }
    }

    pub(super) fn search_step(&mut self, now: Instant, content: Id, step: Step) {
        match step {
            Step::Offer(peers) => {
                log::debug!(
                    "download {content}: trying {} known providers first",
                    peers.len()
                );
                let addrs: Vec<SocketAddr> = peers.iter().map(|(a, _)| *a).collect();
                let ids: Vec<(SocketAddr, Id)> = peers
                    .iter()
                    .filter_map(|(a, i)| i.map(|i| (*a, i)))
                    .collect();
                let engine = &mut self.library.engine;
                engine.add_peers_with_ids(now, &content, &addrs, &ids);
            }
            Step::Lookup => match self.dht.get_providers(content, now) {
                Some(q) => {
                    self.lookups.insert(q, Lookup::Peers(content));
                }
                // Too many lookups running: the slot is free again; the engine asks later.
                None => self.search.lookup_done(now, &[]),
            },
        }
    }

    /// A download's lookup ended: the engine gets the providers it found, the search its
    /// slot back and the providers for the next downloads.
    pub(super) fn peers_found(&mut self, now: Instant, content: Id, result: &QueryResult) {
        let mut found = Vec::new();
        if let QueryResult::Providers { providers, .. } = result {
            log::debug!(
                "download {content}: the DHT knows {} providers",
                providers.len()
            );
            let ids = result.provider_ids();
            found = providers
                .iter()
                .map(|a| (*a, ids.iter().find(|(x, _)| x == a).map(|(_, i)| *i)))
                .collect();
            let (nat, mut p) = self.nat_parts();
            nat.rendezvous_learnt(&mut p, now, &content, providers);
            p.engine.add_peers_with_ids(now, &content, providers, ids);
        }
        // Only providers dialled directly are offered to later downloads: an offer is a
        // guess that costs a connection, and one behind a rendezvous would cost a punch or
        // a circuit on a relay, for a content it may not have.
        found.retain(|(a, _)| self.dht.rendezvous_of(a).is_none());
        self.search.lookup_done(now, &found);
        self.search_dirty = true;
    }

    /// A download's lookup, still running, found `providers`: they are dialled now, not
    /// when the lookup ends (its QueryDone names them again: the engine skips those).
    pub(super) fn providers_found_early(
        &mut self,
        now: Instant,
        id: QueryId,
        providers: &[SocketAddr],
        node_ids: &[(SocketAddr, Id)],
    ) {
        let Some(Lookup::Peers(content)) = self.lookups.get(&id) else {
            return;
        };
        let content = *content;
        let (nat, mut p) = self.nat_parts();
        nat.rendezvous_learnt(&mut p, now, &content, providers);
        p.engine
            .add_peers_with_ids(now, &content, providers, node_ids);
    }

    /// Runs the provider search's due decisions and fills its free lookup slots.
    pub(super) fn search_pump(&mut self, now: Instant) {
        let mut ids = self.search.open_offers();
        ids.extend(self.search.waiting().copied());
        if ids.is_empty() {
            return;
        }
        let prospects = self.library.engine.download_prospects(&ids);
        let cap = self.search_cap();
        for (content, step) in self.search.pump(now, cap, &prospects) {
            self.search_step(now, content, step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }
    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], p))
    }

    #[test]
    fn lookups_beyond_the_cap_wait_then_get_the_providers_found() {
        let t = Instant::now();
        let mut s = PeerSearch::default();
        for n in 0..3 {
            assert_eq!(
                s.find(t, id(n), 2),
                if n < 2 { Some(Step::Lookup) } else { None }
            );
        }
        assert_eq!(s.running(), 2);
        // The first lookup finds a provider: the waiting download is offered it, no lookup.
        s.lookup_done(t, &[(addr(1), Some(id(99)))]);
        let steps = s.pump(t, 2, &[(id(2), 0, 0)]);
        assert_eq!(
            steps,
            vec![(id(2), Step::Offer(vec![(addr(1), Some(id(99)))]))]
        );
        // A new download is offered it at once.
        assert_eq!(
            s.find(t, id(3), 2),
            Some(Step::Offer(vec![(addr(1), Some(id(99)))]))
        );
        assert_eq!(s.stats().lookups, 2);
        assert_eq!(s.stats().offered, 2);
    }

    #[test]
    fn an_offer_that_serves_skips_the_lookup_and_one_that_fails_starts_it_at_once() {
        let t = Instant::now();
        let mut s = PeerSearch::default();
        assert_eq!(s.find(t, id(0), 8), Some(Step::Lookup));
        s.lookup_done(t, &[(addr(1), None)]);
        assert!(matches!(s.find(t, id(1), 8), Some(Step::Offer(_))));
        assert!(matches!(s.find(t, id(2), 8), Some(Step::Offer(_))));
        // Asked again while its offer is open: nothing.
        assert_eq!(s.find(t, id(1), 8), None);
        assert_eq!(s.poll_timeout(), Some(t + SEARCH_DELAY));
        // id(1) is still dialling; id(2)'s dial failed (no peer, nothing pending).
        let steps = s.pump(t, 8, &[(id(1), 0, 1), (id(2), 0, 0)]);
        assert_eq!(steps, vec![(id(2), Step::Lookup)]);
        // At the delay id(1) has a peer: no lookup.
        let steps = s.pump(t + SEARCH_DELAY, 8, &[(id(1), 1, 0)]);
        assert!(steps.is_empty());
        assert_eq!(s.poll_timeout(), None);
        assert!(s.open_offers().is_empty());
        assert_eq!(s.stats().skipped, 1);
        // Later searches of id(1) (it wants more peers) go to the DHT.
        assert_eq!(s.find(t + SEARCH_DELAY, id(1), 8), Some(Step::Lookup));
    }

    #[test]
    fn a_waiting_download_that_got_a_peer_or_ended_runs_no_lookup() {
        let t = Instant::now();
        let mut s = PeerSearch::default();
        assert_eq!(s.find(t, id(0), 1), Some(Step::Lookup));
        assert_eq!(s.find(t, id(1), 1), None);
        assert_eq!(s.find(t, id(2), 1), None);
        assert_eq!(s.find(t, id(3), 1), None);
        // Asked twice while waiting: in line once.
        assert_eq!(s.find(t, id(3), 1), None);
        s.lookup_done(t, &[]);
        // id(1) has a peer (from a PEERS message, say), id(2) ended, id(3) runs.
        let steps = s.pump(t, 1, &[(id(1), 1, 0), (id(3), 0, 0)]);
        assert_eq!(steps, vec![(id(3), Step::Lookup)]);
        assert_eq!(s.stats().skipped, 2);
        assert_eq!(s.waiting().count(), 0);
    }

    #[test]
    fn providers_are_bounded_newest_first_and_forgotten_after_a_while() {
        let t = Instant::now();
        let mut s = PeerSearch::default();
        let many: Vec<_> = (0..20).map(|p| (addr(p), None)).collect();
        s.running = 1;
        s.lookup_done(t, &many);
        let Some(Step::Offer(got)) = s.find(t, id(1), 8) else {
            panic!("expected an offer");
        };
        assert_eq!(got.len(), RECENT_MAX);
        assert_eq!(got[0].0, addr(0));
        s.forget_provider(&addr(0));
        let Some(Step::Offer(got)) = s.find(t, id(2), 8) else {
            panic!("expected an offer");
        };
        assert!(!got.iter().any(|(a, _)| *a == addr(0)));
        assert_eq!(s.find(t + RECENT_FOR, id(3), 8), Some(Step::Lookup));
    }
}
