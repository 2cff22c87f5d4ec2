//! Super-seeding: which chunks a seed offers to which peer, so that its upload goes to the
//! chunks the swarm lacks (spec: `protocol-spec/wire.md`, section 11; measured in
//! `src/transfer/STATE.md`, "Swarm efficiency").
//!
//! Why: when a seed's upload is the scarce resource, every byte it sends of a chunk the swarm
//! already holds is a byte the leechers could have had from each other. With plain
//! rarest-first, a seed's peers each ask for what is rare *in their own neighbourhood*, and
//! two peers that do not know each other (or do not yet see each other's pieces in flight)
//! often ask the seed for the same chunk: each waits for the seed's copy of a chunk it has
//! requested rather than take it from the other.
//!
//! How, within the REQUEST-driven protocol (no new message): a seed in this mode sends each
//! peer an **empty BITFIELD**, then **offers** chunks one HAVE at a time. A peer only requests
//! chunks it was told about, so the seed decides what it can be asked for.
//!
//! - **How many.** Each peer holds `target` open offers it has not requested (one while it is
//!   choked: enough to be interested). An offer is open until we send the chunk or the peer
//!   announces it. A request is answered with a new offer at once, so a fast peer keeps as
//!   many requests in flight as its pipeline wants and the seed's link never waits for one.
//! - **Which, first round.** While some chunk is *fresh* (we never sent it and no peer
//!   announced it), only fresh chunks are offered, and only those not *reserved*: requested
//!   by a peer, or on offer at an unchoked peer. A chunk nobody has is thus sent once before
//!   any chunk is sent twice. A peer with nothing left to offer is *starved*; the engine asks
//!   again ([`SuperSeed::take_starved`]) after each PIECE, choke or departure.
//! - **Which, afterwards.** The chunk with the fewest known copies, `max(PIECEs we sent,
//!   peers that announced it) + offers still open`.
//! - Ties go in [`TieOrder`]: windows of 64 chunks in file order, each rotated from a
//!   seeded random start (so a lone downloader's verified prefix keeps up, while seeds that
//!   start together offer different chunks first).
//!
//! - **A lone peer** (the only one of the content that lacks chunks) is announced every
//!   chunk at once ([`SuperSeed::offer_all`]): with nobody to share the seed's upload with,
//!   a few offers at a time would only narrow its choice (and several seeds serving one
//!   downloader would each offer it the same few chunks).
//!
//! An offer is never withdrawn: a HAVE is true (the seed has the chunk), and a peer may
//! request an offered chunk later, for instance after a CHOKE. Any client interoperates: it
//! sees a peer that announces chunks over time.
//!
//! Call order: the engine feeds [`SuperSeed::add_peer`], `peer_bitfield`, `peer_have`,
//! `requested`, `unrequested`, `sent`, `set_unchoked` and `remove_peer` as they happen, and
//! asks [`SuperSeed::top_up`] what to offer a peer after each of them.

use std::collections::{BTreeMap, BTreeSet};

use super::tie_order::TieOrder;
use crate::bitset::BitSet;

/// The engine's handle for a connection.
pub type PeerKey = crate::conn::ConnId;

#[derive(Debug)]
struct PeerView {
    /// What the peer announced (BITFIELD, HAVE).
    has: BitSet,
    /// We told it we have these (our BITFIELD and HAVEs): never offered twice.
    offered: BitSet,
    /// Offered, and neither sent by us nor announced by the peer.
    open: BTreeSet<u32>,
    /// Members of `open` the peer requested and we have not sent yet.
    asked: BTreeSet<u32>,
    /// We sent it an empty BITFIELD and offer chunks (else it saw a full one).
    offering: bool,
    /// Its BITFIELD arrived: no offers before, they could be chunks it has.
    known: bool,
    /// We unchoked it: its open offers reserve their chunks.
    unchoked: bool,
}

/// Super-seeding bookkeeping of one content a seed shares.
#[derive(Debug)]
pub struct SuperSeed {
    /// PIECEs of each chunk we sent.
    sent: Vec<u32>,
    /// Connected peers that announced each chunk.
    announced: Vec<u16>,
    /// Open offers of each chunk, over all peers.
    open: Vec<u16>,
    /// Open offers of each chunk that reserve it: requested, or held by an unchoked peer.
    reserved: Vec<u16>,
    /// Chunks nobody is known to have (`sent` and `announced` both 0).
    fresh: usize,
    /// How ties are broken.
    order: TieOrder,
    peers: BTreeMap<PeerKey, PeerView>,
    /// Peers whose last top-up found fewer chunks than wanted.
    starved: BTreeSet<PeerKey>,
}

impl SuperSeed {
    /// Bookkeeping for a content of `chunks` chunks; `seed` picks the start of the rotated
    /// order that breaks ties.
    pub fn new(chunks: usize, seed: u64) -> Self {
        let order = TieOrder::new(seed);
        SuperSeed {
            sent: vec![0; chunks],
            announced: vec![0; chunks],
            open: vec![0; chunks],
            reserved: vec![0; chunks],
            fresh: chunks,
            order,
            peers: BTreeMap::new(),
            starved: BTreeSet::new(),
        }
    }

    // ----- inputs -------------------------------------------------------------------

    /// A connection of this content; `offering`: we sent it an empty BITFIELD and will
    /// offer chunks (otherwise it got a full one and is only counted). For a peer already
    /// known, only turns offering on (its BITFIELD came before ours).
    pub fn add_peer(&mut self, key: PeerKey, offering: bool) {
        let n = self.sent.len();
        if let Some(p) = self.peers.get_mut(&key) {
            if offering && !p.offering {
                p.offering = true;
                p.offered = BitSet::new(n);
            }
            return;
        }
        self.peers.entry(key).or_insert_with(|| PeerView {
            has: BitSet::new(n),
            offered: if offering {
                BitSet::new(n)
            } else {
                BitSet::full(n)
            },
            open: BTreeSet::new(),
            asked: BTreeSet::new(),
            offering,
            known: false,
            unchoked: false,
        });
    }

    /// The peer's BITFIELD (of the right size; the engine checked it).
    pub fn peer_bitfield(&mut self, key: PeerKey, bits: &BitSet) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if bits.len() != self.sent.len() {
            return;
        }
        p.known = true;
        let old = std::mem::replace(&mut p.has, bits.clone());
        for i in old.iter() {
            self.unannounce(i);
        }
        for i in bits.iter() {
            self.announce(i);
        }
        let done: Vec<u32> = self.peers[&key]
            .open
            .iter()
            .copied()
            .filter(|c| bits.contains(*c as usize))
            .collect();
        for c in done {
            self.close_offer(key, c);
        }
    }

    /// The peer's HAVE.
    pub fn peer_have(&mut self, key: PeerKey, chunk: u32) {
        let i = chunk as usize;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if i < self.sent.len() && p.has.insert(i) {
            self.announce(i);
        }
        self.close_offer(key, chunk);
    }

    /// The peer requested `chunk` and we queued the request.
    pub fn requested(&mut self, key: PeerKey, chunk: u32) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.open.contains(&chunk) && p.asked.insert(chunk) && !p.unchoked {
            self.reserve(chunk as usize, true);
        }
    }

    /// A queued request was withdrawn (CANCEL) or voided (we choked the peer): the offer is
    /// open and unrequested again.
    pub fn unrequested(&mut self, key: PeerKey, chunk: u32) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.asked.remove(&chunk) && !p.unchoked {
            self.reserve(chunk as usize, false);
        }
    }

    /// We unchoked (`true`) or choked the peer: the offers it holds reserve their chunks
    /// only while it may request them.
    pub fn set_unchoked(&mut self, key: PeerKey, unchoked: bool) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.unchoked == unchoked {
            return;
        }
        p.unchoked = unchoked;
        let affected: Vec<u32> = p.open.difference(&p.asked).copied().collect();
        for c in affected {
            self.reserve(c as usize, unchoked);
        }
    }

    /// We sent (queued on the connection) a PIECE of `chunk` to the peer.
    pub fn sent(&mut self, key: PeerKey, chunk: u32) {
        let i = chunk as usize;
        if let Some(s) = self.sent.get_mut(i) {
            if *s == 0 && self.announced[i] == 0 {
                self.fresh -= 1;
            }
            *s = s.saturating_add(1);
        }
        self.close_offer(key, chunk);
    }

    /// The connection closed: its announcements and open offers no longer count.
    pub fn remove_peer(&mut self, key: PeerKey) {
        let open: Vec<u32> = match self.peers.get(&key) {
            Some(p) => p.open.iter().copied().collect(),
            None => return,
        };
        for c in open {
            self.close_offer(key, c);
        }
        if let Some(p) = self.peers.remove(&key) {
            for i in p.has.iter() {
                self.unannounce(i);
            }
        }
        self.starved.remove(&key);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The chunks to offer `key` now (send HAVE for each), so that it holds `target` open
    /// offers it has not requested. Empty for a peer we do not offer to, or when nothing
    /// may be offered to it now (it is then starved: see [`SuperSeed::take_starved`]).
    #[must_use]
    pub fn top_up(&mut self, key: PeerKey, target: usize) -> Vec<u32> {
        let Some(p) = self.peers.get(&key) else {
            return Vec::new();
        };
        if !p.offering || !p.known {
            return Vec::new();
        }
        let unrequested = p.open.len().saturating_sub(p.asked.len());
        let want = target.saturating_sub(unrequested);
        if want == 0 {
            self.starved.remove(&key);
            return Vec::new();
        }
        let first_round = self.fresh > 0;
        let n = self.sent.len();
        // (copies, open offers, tie rank, chunk) of the best `want` so far.
        let mut best: Vec<(u32, u16, usize, usize)> = Vec::with_capacity(want + 1);
        for i in 0..n {
            if p.has.contains(i) || p.offered.contains(i) {
                continue;
            }
            if first_round && (!self.is_fresh(i) || self.reserved[i] > 0) {
                continue;
            }
            let cand = (self.copies(i), self.open[i], self.order.rank(i), i);
            if best.len() < want {
                best.push(cand);
                best.sort_unstable();
            } else if best.last().is_some_and(|w| cand < *w) {
                best.pop();
                best.push(cand);
                best.sort_unstable();
            }
        }
        if best.len() < want && first_round {
            self.starved.insert(key);
        } else {
            self.starved.remove(&key);
        }
        let picks: Vec<u32> = best.into_iter().map(|(_, _, _, i)| i as u32).collect();
        let unchoked = p.unchoked;
        if let Some(p) = self.peers.get_mut(&key) {
            for &c in &picks {
                p.offered.insert(c as usize);
                p.open.insert(c);
            }
        }
        for &c in &picks {
            let i = c as usize;
            self.open[i] = self.open[i].saturating_add(1);
            if unchoked {
                self.reserve(i, true);
            }
        }
        picks
    }

    /// Stops offering to `key` and announces it everything it was not offered yet (send HAVE
    /// for each): from now on it is like a peer that saw a full BITFIELD, only counted. For a
    /// peer alone in wanting chunks (the engine decides): there is nobody to share the
    /// seed's upload with. Its open offers close, so they reserve nothing for later peers.
    pub fn offer_all(&mut self, key: PeerKey) -> Vec<u32> {
        let n = self.sent.len();
        let (picks, open) = match self.peers.get(&key) {
            Some(p) if p.offering && p.known => (
                (0..n)
                    .filter(|&i| !p.offered.contains(i) && !p.has.contains(i))
                    .map(|i| i as u32)
                    .collect::<Vec<u32>>(),
                p.open.iter().copied().collect::<Vec<u32>>(),
            ),
            _ => return Vec::new(),
        };
        for c in open {
            self.close_offer(key, c);
        }
        if let Some(p) = self.peers.get_mut(&key) {
            p.offering = false;
            p.offered = BitSet::full(n);
        }
        self.starved.remove(&key);
        picks
    }

    /// Peers that wanted offers and got none because every fresh chunk was reserved; the
    /// engine tops them up again after a PIECE, a choke or a departure freed some.
    pub fn take_starved(&mut self) -> Vec<PeerKey> {
        std::mem::take(&mut self.starved).into_iter().collect()
    }

    /// How many copies of `chunk` the swarm will soon hold, as far as we know: the larger of
    /// the PIECEs we sent and the peers that announced it, plus our offers still open.
    /// Used to pick offers and to order the requests we serve (fewest first).
    pub fn copies(&self, chunk: usize) -> u32 {
        match (
            self.sent.get(chunk),
            self.announced.get(chunk),
            self.open.get(chunk),
        ) {
            (Some(s), Some(a), Some(o)) => (*s).max(u32::from(*a)) + u32::from(*o),
            _ => u32::MAX,
        }
    }

    /// PIECEs of each chunk we sent.
    pub fn sent_counts(&self) -> &[u32] {
        &self.sent
    }

    /// Checks the bookkeeping against a recount; used by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut fresh = 0;
        for i in 0..self.sent.len() {
            let announced = self.peers.values().filter(|p| p.has.contains(i)).count();
            if announced != usize::from(self.announced[i]) {
                return Err(format!(
                    "chunk {i}: announced {} but {announced} peers have it",
                    self.announced[i]
                ));
            }
            let c = i as u32;
            let open = self.peers.values().filter(|p| p.open.contains(&c)).count();
            if open != usize::from(self.open[i]) {
                return Err(format!(
                    "chunk {i}: open {} but {open} peers hold an offer",
                    self.open[i]
                ));
            }
            let reserved = self
                .peers
                .values()
                .filter(|p| p.open.contains(&c) && (p.unchoked || p.asked.contains(&c)))
                .count();
            if reserved != usize::from(self.reserved[i]) {
                return Err(format!(
                    "chunk {i}: reserved {} but {reserved} offers reserve it",
                    self.reserved[i]
                ));
            }
            fresh += usize::from(self.is_fresh(i));
        }
        if fresh != self.fresh {
            return Err(format!("fresh {} but {fresh} chunks are", self.fresh));
        }
        for (k, p) in &self.peers {
            if !p.asked.is_subset(&p.open) {
                return Err(format!("peer {k}: asked offers that are not open"));
            }
            if p.open.iter().any(|c| p.has.contains(*c as usize)) {
                return Err(format!("peer {k}: open offer of a chunk it has"));
            }
        }
        Ok(())
    }

    // ----- internals ----------------------------------------------------------------

    fn is_fresh(&self, i: usize) -> bool {
        self.sent[i] == 0 && self.announced[i] == 0
    }

    fn announce(&mut self, i: usize) {
        if self.is_fresh(i) {
            self.fresh -= 1;
        }
        self.announced[i] = self.announced[i].saturating_add(1);
    }

    fn unannounce(&mut self, i: usize) {
        match self.announced.get_mut(i) {
            Some(a) if *a > 0 => *a -= 1,
            _ => return,
        }
        if self.is_fresh(i) {
            self.fresh += 1;
        }
    }

    fn reserve(&mut self, i: usize, up: bool) {
        if let Some(r) = self.reserved.get_mut(i) {
            *r = if up {
                r.saturating_add(1)
            } else {
                r.saturating_sub(1)
            };
        }
    }

    fn close_offer(&mut self, key: PeerKey, chunk: u32) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if !p.open.remove(&chunk) {
            return;
        }
        let asked = p.asked.remove(&chunk);
        let i = chunk as usize;
        if asked || p.unchoked {
            self.reserve(i, false);
        }
        if let Some(o) = self.open.get_mut(i) {
            *o = o.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnId;

    fn peers(n: usize, keys: std::ops::RangeInclusive<u64>, unchoked: bool) -> SuperSeed {
        let mut s = SuperSeed::new(n, 7);
        for k in keys.map(ConnId::new) {
            s.add_peer(k, true);
            s.peer_bitfield(k, &BitSet::new(n));
            s.set_unchoked(k, unchoked);
        }
        s
    }

    #[test]
    fn first_round_offers_each_fresh_chunk_to_one_unchoked_peer() {
        let mut s = peers(12, 1..=3, true);
        let mut all = Vec::new();
        for k in 1..=3 {
            all.extend(s.top_up(ConnId::new(k), 4));
        }
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<u32>>(), "12 distinct offers");
        s.check_invariants().unwrap();
        // Peer 1 requests one: every fresh chunk is reserved, so it gets nothing (starved)
        // rather than a chunk another peer is about to get.
        let c = *s.peers[&ConnId::new(1)].open.iter().next().unwrap();
        s.requested(ConnId::new(1), c);
        assert!(s.top_up(ConnId::new(1), 4).is_empty());
        assert_eq!(s.take_starved(), vec![ConnId::new(1)]);
        // Peer 2 is choked: its offers no longer reserve their chunks, and peer 1 may have
        // one of them.
        s.set_unchoked(ConnId::new(2), false);
        let next = s.top_up(ConnId::new(1), 4);
        assert_eq!(next.len(), 1);
        assert!(s.peers[&ConnId::new(2)].open.contains(&next[0]), "{next:?}");
        s.check_invariants().unwrap();
    }

    #[test]
    fn a_lone_peer_is_offered_everything_and_reserves_nothing() {
        let mut s = peers(10, 1..=1, true);
        let first = s.top_up(ConnId::new(1), 3);
        assert_eq!(first.len(), 3);
        s.requested(ConnId::new(1), first[0]);
        // Alone: every chunk not offered yet, once; then it is only counted.
        let rest = s.offer_all(ConnId::new(1));
        assert_eq!(rest.len(), 7);
        assert!(rest.iter().all(|c| !first.contains(c)));
        assert!(s.offer_all(ConnId::new(1)).is_empty() && s.top_up(ConnId::new(1), 4).is_empty());
        assert!(s.reserved.iter().all(|r| *r == 0));
        s.check_invariants().unwrap();
        // A second peer arrives: the chunks the first one was not sent are still fresh and
        // free, so it is offered some at once (not starved behind the first one's offers).
        s.sent(ConnId::new(1), first[0]);
        s.add_peer(ConnId::new(2), true);
        s.peer_bitfield(ConnId::new(2), &BitSet::new(10));
        s.set_unchoked(ConnId::new(2), true);
        let second = s.top_up(ConnId::new(2), 4);
        assert_eq!(second.len(), 4);
        assert!(
            !second.contains(&first[0]),
            "the chunk sent is not fresh: {second:?}"
        );
        s.check_invariants().unwrap();
    }

    #[test]
    fn after_the_first_round_the_fewest_copies_go_first() {
        let mut s = peers(4, 1..=2, true);
        let a = s.top_up(ConnId::new(1), 4);
        assert_eq!(a.len(), 4);
        for c in &a {
            s.requested(ConnId::new(1), *c);
            s.sent(ConnId::new(1), *c);
        }
        // Peer 1 announces all four: every chunk has one copy, none is fresh.
        for c in &a {
            s.peer_have(ConnId::new(1), *c);
        }
        assert_eq!(s.fresh, 0);
        // Peer 2 lacks everything; every chunk has one copy: all four are offered.
        assert_eq!(s.top_up(ConnId::new(2), 4).len(), 4);
        s.check_invariants().unwrap();
        // A third peer that has chunk 0 and 1 is offered 2 and 3 only.
        s.add_peer(ConnId::new(3), true);
        let mut bits = BitSet::new(4);
        bits.insert(0);
        bits.insert(1);
        s.peer_bitfield(ConnId::new(3), &bits);
        let mut got = s.top_up(ConnId::new(3), 4);
        got.sort_unstable();
        assert_eq!(got, vec![2, 3]);
        s.check_invariants().unwrap();
    }

    #[test]
    fn a_peer_that_gets_an_offer_elsewhere_gets_a_new_one() {
        let mut s = SuperSeed::new(8, 1);
        s.add_peer(ConnId::new(1), true);
        s.add_peer(ConnId::new(2), false);
        s.peer_bitfield(ConnId::new(1), &BitSet::new(8));
        let mut bits = BitSet::new(8);
        bits.insert(0);
        bits.insert(1);
        s.peer_bitfield(ConnId::new(2), &bits);
        let first = s.top_up(ConnId::new(1), 2);
        assert_eq!(first.len(), 2);
        assert!(
            !first.contains(&0) && !first.contains(&1),
            "chunks another peer has are not fresh: {first:?}"
        );
        s.peer_have(ConnId::new(1), first[0]);
        let again = s.top_up(ConnId::new(1), 2);
        assert_eq!(again.len(), 1);
        assert!(!first.contains(&again[0]));
        s.check_invariants().unwrap();
        s.remove_peer(ConnId::new(2));
        s.remove_peer(ConnId::new(1));
        s.check_invariants().unwrap();
        assert!(s.open.iter().all(|o| *o == 0));
        assert!(s.announced.iter().all(|a| *a == 0));
        assert!(s.reserved.iter().all(|r| *r == 0));
    }

    #[test]
    fn requests_do_not_count_as_unrequested_offers() {
        let mut s = peers(20, 1..=1, true);
        let a = s.top_up(ConnId::new(1), 3);
        for c in &a {
            s.requested(ConnId::new(1), *c);
        }
        // Three requested, none sent yet: three more offers keep its pipeline growing.
        assert_eq!(s.top_up(ConnId::new(1), 3).len(), 3);
        // A CANCEL makes one unrequested again: no new offer needed.
        s.unrequested(ConnId::new(1), a[0]);
        assert!(s.top_up(ConnId::new(1), 4).is_empty());
        s.check_invariants().unwrap();
        // A peer we do not offer to gets nothing; one whose BITFIELD we lack neither.
        s.add_peer(ConnId::new(2), false);
        s.peer_bitfield(ConnId::new(2), &BitSet::new(20));
        assert!(s.top_up(ConnId::new(2), 4).is_empty());
        s.add_peer(ConnId::new(3), true);
        assert!(s.top_up(ConnId::new(3), 4).is_empty());
        s.check_invariants().unwrap();
    }
}
