//! Scheduler tests: simulated peers answer its requests; invariants are checked after every
//! step, and every run must finish with all chunks verified.

use crate::conn::ConnId;

const P0: ConnId = ConnId::new(0);
const P1: ConnId = ConnId::new(1);
use super::scheduler::*;
use crate::bitset::BitSet;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Sends garbage for every chunk.
    Corrupt,
    /// Accepts requests and never answers.
    Silent,
    /// Rejects every other request as busy.
    Flaky,
    /// Answers one request every fourth step.
    Slow,
}

struct SimPeer {
    has: BitSet,
    behaviour: Behaviour,
    queue: VecDeque<u32>,
    gone: bool,
    toggle: bool,
    /// The first this many queued requests are already read for sending: a CANCEL does not
    /// stop them (a real seeder reads ahead and its socket buffer holds what it wrote).
    committed: usize,
    steps: u64,
}

struct Harness {
    s: Scheduler,
    now: Instant,
    peers: Vec<SimPeer>,
    banned: Vec<PeerKey>,
    dropped: Vec<(PeerKey, DropReason)>,
    max_dup: u8,
    requests: usize,
    complete: bool,
    verify_queue: VecDeque<(u32, PeerKey, bool)>,
    /// Pieces that arrived and were not needed (a second copy, or cancelled on the way).
    wasted: usize,
    steps: usize,
}

impl Harness {
    fn new(n: usize, have: BitSet, peers: Vec<(BitSet, Behaviour)>, seed: u64) -> Harness {
        let now = Instant::now();
        let s = Scheduler::new(n, 256 * 1024, have, SchedulerConfig::default(), seed);
        let mut h = Harness {
            s,
            now,
            peers: peers
                .into_iter()
                .map(|(has, behaviour)| SimPeer {
                    has,
                    behaviour,
                    queue: VecDeque::new(),
                    gone: false,
                    toggle: false,
                    committed: 0,
                    steps: 0,
                })
                .collect(),
            banned: vec![],
            dropped: vec![],
            max_dup: 0,
            requests: 0,
            complete: false,
            verify_queue: VecDeque::new(),
            wasted: 0,
            steps: 0,
        };
        for k in 0..h.peers.len() {
            let key = ConnId::new(k as u64);
            h.s.add_peer(now, key);
            let bits = h.peers[k].has.clone();
            h.s.peer_bitfield(now, key, &bits);
            h.s.peer_unchoked(now, key);
        }
        h.pump();
        h
    }

    fn pump(&mut self) {
        while let Some(a) = self.s.poll_action() {
            match a {
                Action::Request { peer, chunk } => {
                    self.requests += 1;
                    let p = &mut self.peers[peer.get() as usize];
                    assert!(
                        p.has.contains(chunk as usize),
                        "requested chunk {chunk} from a peer without it"
                    );
                    assert!(!self.banned.contains(&peer), "request to a banned peer");
                    p.queue.push_back(chunk);
                }
                Action::Cancel { peer, chunk } => {
                    let p = &mut self.peers[peer.get() as usize];
                    let committed = p.committed;
                    let mut pos = 0;
                    p.queue.retain(|c| {
                        pos += 1;
                        pos <= committed || *c != chunk
                    });
                }
                Action::Ban(k) => {
                    self.banned.push(k);
                    self.peers[k.get() as usize].gone = true;
                }
                Action::Drop(k, why) => {
                    self.dropped.push((k, why));
                    self.peers[k.get() as usize].gone = true;
                }
                Action::Complete => self.complete = true,
                Action::Interested(_) | Action::NotInterested(_) | Action::Have(_) => {}
            }
        }
        if let Err(e) = self.s.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    /// One round: every peer answers the head of its queue; verifications complete.
    fn step(&mut self) {
        self.now += Duration::from_millis(10);
        self.steps += 1;
        let now = self.now;
        for k in 0..self.peers.len() {
            let key = ConnId::new(k as u64);
            if self.peers[k].gone {
                continue;
            }
            self.peers[k].steps += 1;
            if self.peers[k].behaviour == Behaviour::Slow && !self.peers[k].steps.is_multiple_of(4)
            {
                continue;
            }
            let Some(chunk) = self.peers[k].queue.pop_front() else {
                continue;
            };
            match self.peers[k].behaviour {
                Behaviour::Silent => {
                    self.peers[k].queue.push_front(chunk);
                    continue;
                }
                Behaviour::Flaky => {
                    self.peers[k].toggle = !self.peers[k].toggle;
                    if self.peers[k].toggle {
                        self.s.peer_rejected(now, key, chunk, false);
                        self.pump();
                        continue;
                    }
                }
                _ => {}
            }
            let good = self.peers[k].behaviour != Behaviour::Corrupt;
            match self.s.piece_received(now, key, chunk, 256 * 1024) {
                PieceVerdict::Verify => self.verify_queue.push_back((chunk, key, good)),
                PieceVerdict::Duplicate | PieceVerdict::Cancelled => self.wasted += 1,
                PieceVerdict::Unrequested => {}
            }
            self.pump();
        }
        while let Some((chunk, from, ok)) = self.verify_queue.pop_front() {
            self.s.chunk_verified(now, chunk, from, ok);
            self.pump();
        }
        self.s.handle_timeout(now);
        self.pump();
        self.max_dup = self.max_dup.max(self.dup_now());
    }

    fn dup_now(&self) -> u8 {
        let mut counts = std::collections::HashMap::new();
        for p in self.peers.iter().filter(|p| !p.gone) {
            for c in &p.queue {
                *counts.entry(*c).or_insert(0u8) += 1;
            }
        }
        counts.values().copied().max().unwrap_or(0)
    }

    /// After completion: lets the peers send what they already committed to (a real
    /// seeder's read-ahead and socket buffer arrive even after the download completed).
    fn drain(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.peers.iter().all(|p| p.gone || p.queue.is_empty()) {
                return;
            }
            self.step();
        }
    }

    fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.complete {
                return;
            }
            self.step();
        }
        panic!(
            "download did not complete; have {}/{}",
            self.s.have().count(),
            self.s.have().len()
        );
    }
}

#[test]
fn one_seeder_completes() {
    let mut h = Harness::new(
        100,
        BitSet::new(100),
        vec![(BitSet::full(100), Behaviour::Honest)],
        1,
    );
    h.run(10_000);
    assert!(h.s.is_complete());
    assert_eq!(
        h.requests, 100,
        "no chunk requested twice from a lone honest seeder"
    );
}

#[test]
fn resumed_download_only_fetches_what_is_missing() {
    let mut have = BitSet::new(50);
    for i in 0..40 {
        have.insert(i);
    }
    let mut h = Harness::new(50, have, vec![(BitSet::full(50), Behaviour::Honest)], 2);
    h.run(10_000);
    assert_eq!(h.requests, 10);
}

#[test]
fn nothing_to_do_is_complete_at_once() {
    let mut h = Harness::new(0, BitSet::new(0), vec![], 3);
    h.pump();
    assert!(h.complete, "an empty file is complete without any peer");
}

#[test]
fn corrupt_peer_is_banned_and_the_download_completes() {
    let peers = vec![
        (BitSet::full(64), Behaviour::Honest),
        (BitSet::full(64), Behaviour::Corrupt),
        (BitSet::full(64), Behaviour::Honest),
    ];
    let mut h = Harness::new(64, BitSet::new(64), peers, 4);
    h.run(10_000);
    assert_eq!(h.banned, vec![ConnId::new(1)]);
}

#[test]
fn endgame_rescues_chunks_asked_of_a_silent_peer() {
    let peers = vec![
        (BitSet::full(40), Behaviour::Silent),
        (BitSet::full(40), Behaviour::Honest),
    ];
    let mut h = Harness::new(40, BitSet::new(40), peers, 5);
    h.run(1_000);
    // Completed through endgame duplicates long before the stall timeout.
    assert!(h.dropped.is_empty(), "{:?}", h.dropped);
    assert!(
        h.peers[0].queue.is_empty(),
        "the silent peer's requests were cancelled"
    );
}

/// The demo's case (issue 15): two equally fast seeders of a small file (12 chunks) that
/// read every request at once, as seeders on a fast link do, so that a CANCEL stops
/// nothing. Endgame used to fill every free pipeline slot with chunks already asked of the
/// other peer, and about a third of the file arrived twice. Now a chunk is asked twice only
/// where that gains time.
#[test]
fn endgame_does_not_fetch_an_equal_peers_chunks_twice() {
    for seed in 0..20 {
        let peers = vec![(BitSet::full(12), Behaviour::Honest); 2];
        let mut h = Harness::new(12, BitSet::new(12), peers, seed);
        for p in &mut h.peers {
            p.committed = usize::MAX;
        }
        h.run(1_000);
        let steps = h.steps;
        h.drain(100);
        assert!(h.wasted <= 1, "seed {seed}: {} pieces came twice", h.wasted);
        assert!(steps <= 8, "seed {seed}: {steps} steps for 12 chunks");
    }
}

/// A seeder four times slower than the other: its last chunks are fetched again from the
/// fast one rather than waited for, and the download takes about as long as the fast one
/// alone would need (80 chunks, one per step), with few pieces received twice.
#[test]
fn endgame_does_not_wait_for_a_slow_peer() {
    let peers = vec![
        (BitSet::full(80), Behaviour::Slow),
        (BitSet::full(80), Behaviour::Honest),
    ];
    let mut h = Harness::new(80, BitSet::new(80), peers, 8);
    for p in &mut h.peers {
        p.committed = 2;
    }
    h.run(1_000);
    let steps = h.steps;
    h.drain(100);
    assert!(steps <= 72, "{steps} steps");
    assert!(h.wasted <= 4, "{} pieces came twice", h.wasted);
}

#[test]
fn silent_peer_is_dropped_as_stalled_and_its_chunks_released() {
    let now = Instant::now();
    let cfg = SchedulerConfig::default();
    let mut s = Scheduler::new(10, 1 << 20, BitSet::new(10), cfg.clone(), 1);
    s.add_peer(now, ConnId::new(0));
    s.peer_bitfield(now, ConnId::new(0), &BitSet::full(10));
    s.peer_unchoked(now, ConnId::new(0));
    while s.poll_action().is_some() {}
    assert_eq!(s.requests_in_flight(), cfg.min_pipeline);
    assert_eq!(s.poll_timeout(), Some(now + cfg.stall_timeout));
    s.handle_timeout(now + cfg.stall_timeout - Duration::from_millis(1));
    assert_eq!(s.poll_action(), None, "not yet");
    s.handle_timeout(now + cfg.stall_timeout);
    assert_eq!(
        s.poll_action(),
        Some(Action::Drop(ConnId::new(0), DropReason::Stalled))
    );
    assert_eq!(s.requests_in_flight(), 0);
    s.check_invariants().unwrap();
    // A newcomer gets the released chunks.
    s.add_peer(now, ConnId::new(1));
    s.peer_bitfield(now, ConnId::new(1), &BitSet::full(10));
    s.peer_unchoked(now, ConnId::new(1));
    let reqs = std::iter::from_fn(|| s.poll_action())
        .filter(|a| matches!(a, Action::Request { peer: P1, .. }))
        .count();
    assert_eq!(reqs, cfg.min_pipeline);
}

#[test]
fn flaky_peer_backs_off_but_download_completes() {
    let peers = vec![(BitSet::full(40), Behaviour::Flaky)];
    let mut h = Harness::new(40, BitSet::new(40), peers, 6);
    h.run(100_000);
}

/// Peer 0 has all 10 chunks; peers 1 and 2 have chunks 0..5. Adds them to `s` and returns
/// the chunks asked of peer 0 once it unchokes us.
fn asked_of_the_full_peer(s: &mut Scheduler, now: Instant) -> Vec<u32> {
    let mut common = BitSet::new(10);
    for i in 0..5 {
        common.insert(i);
    }
    for k in [1, 2] {
        s.add_peer(now, ConnId::new(k));
        s.peer_bitfield(now, ConnId::new(k), &common);
    }
    s.add_peer(now, ConnId::new(0));
    s.peer_bitfield(now, ConnId::new(0), &BitSet::full(10));
    s.peer_unchoked(now, ConnId::new(0));
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Request { peer: P0, chunk } => Some(chunk),
            _ => None,
        })
        .collect()
}

#[test]
fn rarest_chunk_is_requested_first() {
    // The rare chunks (5..10, only at peer 0) must be the first ones asked of peer 0.
    let now = Instant::now();
    let mut s = Scheduler::new(10, 4 << 20, BitSet::new(10), SchedulerConfig::default(), 9);
    let asked = asked_of_the_full_peer(&mut s, now);
    // A new peer starts with min_pipeline = 2 requests: both must be rare ones.
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|c| *c >= 5), "{asked:?}");
}

#[test]
fn urgent_chunks_come_before_rare_ones() {
    // As above, but a stream waits for chunks 1..3 (common ones): they go first.
    let now = Instant::now();
    let mut s = Scheduler::new(10, 4 << 20, BitSet::new(10), SchedulerConfig::default(), 9);
    s.set_urgent(now, 1..3);
    let mut asked = asked_of_the_full_peer(&mut s, now);
    asked.sort_unstable();
    assert_eq!(asked, [1, 2]);
}

#[test]
fn choke_releases_requests_to_other_peers() {
    let now = Instant::now();
    let mut s = Scheduler::new(8, 1 << 20, BitSet::new(8), SchedulerConfig::default(), 1);
    for k in [0, 1] {
        s.add_peer(now, ConnId::new(k));
        s.peer_bitfield(now, ConnId::new(k), &BitSet::full(8));
    }
    s.peer_unchoked(now, ConnId::new(0));
    while s.poll_action().is_some() {}
    // Slow start: a new peer gets min_pipeline requests.
    assert_eq!(
        s.requests_in_flight(),
        SchedulerConfig::default().min_pipeline
    );
    s.peer_unchoked(now, ConnId::new(1));
    s.peer_choked(now, ConnId::new(0));
    let reqs: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(reqs
        .iter()
        .all(|a| !matches!(a, Action::Request { peer: P0, .. })));
    s.check_invariants().unwrap();
    // A piece that crossed the CHOKE on the wire is tolerated, not a violation.
    let stale = 0..8u32;
    let mut saw_cancelled = false;
    for c in stale {
        if s.piece_received(now, ConnId::new(0), c, 1) == PieceVerdict::Cancelled {
            saw_cancelled = true;
            break;
        }
    }
    assert!(saw_cancelled);
}

#[test]
fn unrequested_piece_and_bad_indices_are_violations() {
    let now = Instant::now();
    let mut s = Scheduler::new(4, 1 << 20, BitSet::new(4), SchedulerConfig::default(), 1);
    s.add_peer(now, ConnId::new(7));
    assert_eq!(
        s.piece_received(now, ConnId::new(7), 2, 10),
        PieceVerdict::Unrequested
    );
    assert_eq!(
        s.poll_action(),
        Some(Action::Drop(ConnId::new(7), DropReason::ProtocolViolation))
    );
    s.add_peer(now, ConnId::new(8));
    s.peer_have(now, ConnId::new(8), 4);
    assert_eq!(
        s.poll_action(),
        Some(Action::Drop(ConnId::new(8), DropReason::ProtocolViolation))
    );
    s.add_peer(now, ConnId::new(9));
    s.peer_bitfield(now, ConnId::new(9), &BitSet::full(5));
    assert_eq!(
        s.poll_action(),
        Some(Action::Drop(ConnId::new(9), DropReason::ProtocolViolation))
    );
    assert_eq!(s.peer_count(), 0);
    s.check_invariants().unwrap();
}

fn arb_bits(n: usize) -> impl Strategy<Value = BitSet> {
    proptest::collection::vec(any::<bool>(), n).prop_map(move |v| {
        let mut b = BitSet::new(n);
        for (i, x) in v.into_iter().enumerate() {
            if x {
                b.insert(i);
            }
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of peers, as long as honest peers together hold every chunk, finishes with
    /// every chunk verified; invariants hold at every step; endgame never asks more than two
    /// peers for one chunk; corrupt peers are banned exactly when they delivered a chunk.
    #[test]
    fn swarm_always_completes(
        n in 1usize..60,
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0u8..5, 1..6),
        partial in proptest::collection::vec(arb_bits(60), 6),
    ) {
        let mut peers: Vec<(BitSet, Behaviour)> = Vec::new();
        // One honest seeder guarantees completion.
        peers.push((BitSet::full(n), Behaviour::Honest));
        for (j, k) in kinds.iter().enumerate() {
            let mut bits = BitSet::new(n);
            for i in partial[j].iter().filter(|i| *i < n) {
                bits.insert(i);
            }
            let b = match k { 0 => Behaviour::Honest, 1 => Behaviour::Corrupt, 2 => Behaviour::Silent, 3 => Behaviour::Flaky, _ => Behaviour::Slow };
            peers.push((bits, b));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut have = BitSet::new(n);
        for i in 0..n {
            if rng.gen_bool(0.2) {
                have.insert(i);
            }
        }
        let mut h = Harness::new(n, have, peers, seed);
        h.run(200_000);
        prop_assert!(h.s.is_complete());
        prop_assert!(h.max_dup <= 2, "{} copies of one chunk requested", h.max_dup);
        for b in &h.banned {
            prop_assert_eq!(h.peers[b.get() as usize].behaviour, Behaviour::Corrupt);
        }
    }
}

#[test]
fn pipeline_grows_with_delivered_pieces_and_follows_the_rate() {
    let t0 = Instant::now();
    let cfg = SchedulerConfig::default();
    let chunk = 256 * 1024u32;
    let mut s = Scheduler::new(1000, chunk, BitSet::new(1000), cfg.clone(), 1);
    s.add_peer(t0, ConnId::new(0));
    s.peer_bitfield(t0, ConnId::new(0), &BitSet::full(1000));
    s.peer_unchoked(t0, ConnId::new(0));
    let mut outstanding: VecDeque<u32> = VecDeque::new();
    let drain = |s: &mut Scheduler, q: &mut VecDeque<u32>| {
        while let Some(a) = s.poll_action() {
            if let Action::Request { chunk, .. } = a {
                q.push_back(chunk);
            }
        }
    };
    drain(&mut s, &mut outstanding);
    assert_eq!(outstanding.len(), cfg.min_pipeline);
    // A fast peer: 100 MB/s, one piece every 2.6 ms. The pipeline grows to the 4 MiB cap.
    let mut now = t0;
    for _ in 0..200 {
        now += Duration::from_micros(2_600);
        let c = outstanding.pop_front().unwrap();
        assert_eq!(
            s.piece_received(now, ConnId::new(0), c, chunk as usize),
            PieceVerdict::Verify
        );
        s.chunk_verified(now, c, ConnId::new(0), true);
        drain(&mut s, &mut outstanding);
    }
    assert_eq!(
        outstanding.len(),
        (cfg.pipeline_bytes / u64::from(chunk)) as usize
    );
    // Now it slows to 512 KB/s (two pieces a second): about one second's worth stays asked.
    for _ in 0..20 {
        now += Duration::from_millis(500);
        let c = outstanding.pop_front().unwrap();
        assert_eq!(
            s.piece_received(now, ConnId::new(0), c, chunk as usize),
            PieceVerdict::Verify
        );
        s.chunk_verified(now, c, ConnId::new(0), true);
        drain(&mut s, &mut outstanding);
    }
    assert!(
        outstanding.len() <= 4,
        "{} requests at a slow peer",
        outstanding.len()
    );
    s.check_invariants().unwrap();
}

#[test]
fn unverified_data_is_bounded_when_verification_lags() {
    // The network delivers faster than workers verify: requests stop at the budget.
    let now = Instant::now();
    let cfg = SchedulerConfig::default();
    let chunk = 256 * 1024u32;
    let mut s = Scheduler::new(4096, chunk, BitSet::new(4096), cfg.clone(), 1);
    for k in 0..8 {
        s.add_peer(now, ConnId::new(k));
        s.peer_bitfield(now, ConnId::new(k), &BitSet::full(4096));
        s.peer_unchoked(now, ConnId::new(k));
    }
    let budget = (cfg.max_unverified_bytes / u64::from(chunk)) as usize;
    let mut received = 0;
    for _ in 0..10_000 {
        let reqs: Vec<(PeerKey, u32)> = std::iter::from_fn(|| s.poll_action())
            .filter_map(|a| match a {
                Action::Request { peer, chunk } => Some((peer, chunk)),
                _ => None,
            })
            .collect();
        if reqs.is_empty() {
            break;
        }
        for (p, c) in reqs {
            // Delivered, never verified.
            assert_eq!(
                s.piece_received(now, p, c, chunk as usize),
                PieceVerdict::Verify
            );
            received += 1;
        }
    }
    assert_eq!(
        received, budget,
        "requests went beyond the unverified budget"
    );
    s.check_invariants().unwrap();
}

#[test]
fn availability_follows_have_and_departures() {
    // One request at a time to peer A (which has everything), so each pick is visible.
    let cfg = SchedulerConfig {
        min_pipeline: 1,
        max_pipeline: 1,
        ..SchedulerConfig::default()
    };
    let now = Instant::now();
    let mut s = Scheduler::new(3, 256 * 1024, BitSet::new(3), cfg, 0);
    let (a, b, c) = (0, 1, 2);
    let mut b_bits = BitSet::new(3);
    b_bits.insert(0);
    for (k, bits) in [(a, BitSet::full(3)), (b, b_bits), (c, BitSet::new(3))] {
        s.add_peer(now, ConnId::new(k));
        s.peer_bitfield(now, ConnId::new(k), &bits);
    }
    // Availability [2, 1, 1]; C's HAVE makes it [2, 2, 1]: chunk 2 is the rarest.
    s.peer_have(now, ConnId::new(c), 1);
    s.check_invariants().unwrap();
    while s.poll_action().is_some() {}
    s.peer_unchoked(now, ConnId::new(a));
    let first: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(
        first.contains(&Action::Request {
            peer: ConnId::new(a),
            chunk: 2
        }),
        "{first:?}"
    );
    // B leaves: [1, 2, 1]. The next pick, right after chunk 2 arrives, is chunk 0.
    s.peer_gone(now, ConnId::new(b));
    s.check_invariants().unwrap();
    assert_eq!(
        s.piece_received(now, ConnId::new(a), 2, 256 * 1024),
        PieceVerdict::Verify
    );
    s.chunk_verified(now, 2, ConnId::new(a), true);
    let next: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(
        next.contains(&Action::Request {
            peer: ConnId::new(a),
            chunk: 0
        }),
        "{next:?}"
    );
    assert!(next.contains(&Action::Have(2)), "{next:?}");
    s.check_invariants().unwrap();
}

#[test]
fn a_partial_download_asks_only_for_wanted_chunks_and_completes_with_them() {
    let now = Instant::now();
    let mut wanted = BitSet::new(10);
    for i in [2, 3, 7] {
        wanted.insert(i);
    }
    let mut s = Scheduler::new(10, 1 << 20, BitSet::new(10), SchedulerConfig::default(), 3)
        .with_wanted(&wanted);
    let p = ConnId::new(0);
    // A peer holding only unwanted chunks is of no interest.
    let q = ConnId::new(1);
    let mut other = BitSet::new(10);
    other.insert(0);
    other.insert(9);
    s.add_peer(now, q);
    s.peer_bitfield(now, q, &other);
    s.add_peer(now, p);
    s.peer_bitfield(now, p, &BitSet::full(10));
    s.peer_unchoked(now, p);
    s.check_invariants().unwrap();
    let mut asked = Vec::new();
    let mut interested = Vec::new();
    for _ in 0..10 {
        let mut batch = Vec::new();
        while let Some(a) = s.poll_action() {
            match a {
                Action::Request { chunk, .. } => batch.push(chunk),
                Action::Interested(k) => interested.push(k),
                _ => {}
            }
        }
        for &c in &batch {
            if s.piece_received(now, p, c, 1 << 20) == PieceVerdict::Verify {
                s.chunk_verified(now, c, p, true);
            }
        }
        asked.extend(batch);
    }
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(asked, [2, 3, 7]);
    assert_eq!(interested, [p]);
    assert!(s.is_complete());
    s.check_invariants().unwrap();
}
