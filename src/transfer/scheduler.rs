//! The download scheduler: which chunk to ask which peer for, as a sans-IO state machine
//! (spec: `protocol-spec/wire.md`, "Behaviour"; invariants in `src/transfer/STATE.md`).
//!
//! The driver (the reactor in production, a simulator in tests) tells it what happened:
//! a peer joined ([`Scheduler::add_peer`]), announced chunks ([`Scheduler::peer_bitfield`],
//! [`Scheduler::peer_have`]), choked or unchoked us, rejected a request, sent a piece
//! ([`Scheduler::piece_received`]), a worker verified a chunk ([`Scheduler::chunk_verified`]),
//! a peer left, time passed ([`Scheduler::handle_timeout`]). It answers with [`Action`]s
//! through [`Scheduler::poll_action`]: send REQUEST / CANCEL / INTERESTED / NOT_INTERESTED,
//! broadcast HAVE, drop or ban a peer, the download is complete. Like the DHT, drain
//! `poll_action` after every input.
//!
//! Policy:
//! - **Rarest first, random start.** A peer with free pipeline slots gets the missing chunks
//!   it has that the fewest connected peers have; ties go in [`TieOrder`]: file order by
//!   windows of 64 chunks, each rotated from a random start, so downloaders that start
//!   together spread over different chunks while the verified prefix keeps up.
//! - **Pipelining, sized by rate.** A peer starts with `min_pipeline` requests outstanding
//!   and gains one per piece it delivers (slow start), up to about `pipeline_window` worth of
//!   its measured rate (never more than `pipeline_bytes` or `max_pipeline` chunks). A fast
//!   peer soon has enough in flight to keep its link busy across the round trip; a slow one
//!   (a seeder with little upload) gets only a few requests, so the other chunks stay free
//!   for faster peers to deliver. A REJECT halves the allowance.
//! - **Endgame.** Once every missing chunk is requested, a peer may also request a chunk
//!   already requested elsewhere (at most `endgame_duplicates` peers per chunk), but only
//!   when it would deliver it in less than half the time the holder still needs (the rule
//!   and its reasons: `scheduler/endgame.rs`); when one copy arrives the others are cancelled. The
//!   last chunks then don't wait on a slow or silent peer, and equal peers don't send each
//!   other's chunks twice.
//! - **Verification.** A chunk counts only after a worker checked its SHA-256. A chunk that
//!   fails gets its sender banned and goes back to missing.
//! - **Stalls.** A peer with requests outstanding that sends nothing for `stall_timeout` is
//!   dropped and its requests go to others. A CHOKE cancels everything asked of that peer.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::tie_order::TieOrder;
use crate::bitset::BitSet;

mod endgame;
mod invariants;
mod rarity;
mod wanted;

use rarity::{change_availability, Rarity};
use wanted::needed;

/// The driver's handle for a peer connection.
pub type PeerKey = crate::conn::ConnId;

/// Tunables.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most bytes of requests outstanding per peer.
    pub pipeline_bytes: u64,
    /// How much of a peer's measured rate to keep requested.
    pub pipeline_window: Duration,
    /// Fewest requests a peer may have outstanding.
    pub min_pipeline: usize,
    /// Most requests a peer may have outstanding.
    pub max_pipeline: usize,
    /// A peer that owes us data and sends nothing for this long is dropped.
    pub stall_timeout: Duration,
    /// In endgame, most peers asked for the same chunk.
    pub endgame_duplicates: u8,
    /// Most bytes requested or received but not yet verified, over all peers: received
    /// pieces wait for a worker to hash and store them, and this keeps that queue (and the
    /// downloader's memory) bounded when the network is faster than the disk or the hashing.
    pub max_unverified_bytes: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            pipeline_bytes: 4 << 20,
            pipeline_window: Duration::from_secs(1),
            min_pipeline: 2,
            max_pipeline: 64,
            stall_timeout: Duration::from_secs(15),
            endgame_duplicates: 2,
            max_unverified_bytes: 24 << 20,
        }
    }
}

/// Why a peer is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// It owed us data and went silent.
    Stalled,
    /// It broke the protocol (e.g. a piece we never asked for, a chunk index out of range).
    ProtocolViolation,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send REQUEST for `chunk` to `peer`.
    Request {
        /// To whom.
        peer: PeerKey,
        /// Which chunk.
        chunk: u32,
    },
    /// Send CANCEL for `chunk` to `peer`.
    Cancel {
        /// To whom.
        peer: PeerKey,
        /// Which chunk.
        chunk: u32,
    },
    /// Send INTERESTED to `peer`.
    Interested(PeerKey),
    /// Send NOT_INTERESTED to `peer`.
    NotInterested(PeerKey),
    /// Send HAVE for `chunk` to every peer.
    Have(u32),
    /// Close the connection to `peer`.
    Drop(PeerKey, DropReason),
    /// `peer` sent a chunk that failed verification: close, and never take data from it again.
    Ban(PeerKey),
    /// Every chunk is verified.
    Complete,
}

/// One peer as the scheduler sees it ([`Scheduler::peer_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// It chokes us.
    pub choking_us: bool,
    /// We are interested in it (it has chunks we lack).
    pub interested: bool,
    /// Our requests outstanding at it.
    pub in_flight: usize,
}

/// What to do with a PIECE that arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceVerdict {
    /// Hash it; report the result with [`Scheduler::chunk_verified`].
    Verify,
    /// Another copy is already verified or being verified: discard.
    Duplicate,
    /// We cancelled this request; the piece crossed the CANCEL on the wire: discard.
    Cancelled,
    /// Never requested from this peer: a protocol violation (a `Drop` action follows).
    Unrequested,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Missing,
    /// Requested from at least one peer (`requested_by` counts them).
    Requested,
    /// A copy arrived and is being hashed.
    Verifying,
    Have,
    /// Not wanted (part of a folder, [`Scheduler::with_wanted`]): never asked for.
    Skipped,
}

/// A request outstanding at a peer.
#[derive(Clone, Copy, Debug)]
struct Ask {
    chunk: u32,
    at: Instant,
}

#[derive(Debug)]
struct Peer {
    has: BitSet,
    /// Chunks it has that we don't: interest is `useful > 0`.
    useful: usize,
    choking_us: bool,
    we_are_interested: bool,
    /// Requests outstanding, in the order they were sent (the order it answers them).
    in_flight: Vec<Ask>,
    /// Chunks we cancelled whose pieces may still arrive (bounded by what we cancelled).
    cancelled: Vec<u32>,
    /// When it last sent a piece, or when its current run of requests began.
    last_progress: Instant,
    /// Pipeline allowance in chunks.
    allowance: usize,
    bytes: u64,
    /// Measured delivery rate, bytes per second (0 until measured).
    rate: f64,
    window_start: Instant,
    window_bytes: u64,
    /// When we first asked it for anything (the provisional rate counts from there).
    first_ask: Option<Instant>,
}

impl Peer {
    fn position(&self, chunk: u32) -> Option<usize> {
        self.in_flight.iter().position(|a| a.chunk == chunk)
    }

    fn asked(&self, chunk: u32) -> bool {
        self.position(chunk).is_some()
    }

    /// Its delivery rate: the measured one, or before the first measurement window closes,
    /// what it delivered since we first asked (on a fast link a whole download can end
    /// within that first window).
    fn pace(&self) -> Option<f64> {
        if self.rate > 0.0 {
            return Some(self.rate);
        }
        let span = self
            .last_progress
            .saturating_duration_since(self.first_ask?)
            .as_secs_f64();
        (self.bytes > 0 && span >= 0.001).then(|| self.bytes as f64 / span)
    }
}

/// The scheduler of one download.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    chunk_size: u32,
    state: Vec<ChunkState>,
    requested_by: Vec<u8>,
    have: BitSet,
    missing: usize,
    availability: Vec<u16>,
    /// The missing chunks, rarest first (`rarity.rs`).
    rarity: Rarity,
    peers: BTreeMap<PeerKey, Peer>,
    /// Chunks in `Verifying`.
    verifying: usize,
    /// How ties between equally rare chunks are broken.
    order: TieOrder,
    actions: VecDeque<Action>,
    complete_sent: bool,
    /// In endgame, when a chunk declined for a second copy may become worth one.
    endgame_wake: Option<Instant>,
    /// Chunks a stream waits for: picked before all others ([`Scheduler::set_urgent`]).
    urgent: std::ops::Range<u32>,
}

impl Scheduler {
    /// A scheduler for `chunk_count` chunks of `chunk_size` bytes, of which `have` are
    /// already verified (resumed download). `seed` picks the random start of the tie order.
    pub fn new(
        chunk_count: usize,
        chunk_size: u32,
        have: BitSet,
        cfg: SchedulerConfig,
        seed: u64,
    ) -> Self {
        let have = if have.len() == chunk_count {
            have
        } else {
            BitSet::new(chunk_count)
        };
        let state: Vec<ChunkState> = (0..chunk_count)
            .map(|i| {
                if have.contains(i) {
                    ChunkState::Have
                } else {
                    ChunkState::Missing
                }
            })
            .collect();
        let missing = chunk_count - have.count();
        let order = TieOrder::new(seed);
        let mut s = Scheduler {
            cfg,
            chunk_size: chunk_size.max(1),
            state,
            requested_by: vec![0; chunk_count],
            have,
            missing,
            availability: vec![0; chunk_count],
            rarity: Rarity::default(),
            peers: BTreeMap::new(),
            verifying: 0,
            order,
            actions: VecDeque::new(),
            complete_sent: false,
            endgame_wake: None,
            urgent: 0..0,
        };
        for i in 0..chunk_count {
            if s.state[i] == ChunkState::Missing {
                s.rarity.insert(&s.order, 0, i);
            }
        }
        s.check_complete();
        s
    }

    // ----- inputs -------------------------------------------------------------------

    /// A peer finished its handshake. It has nothing until it says otherwise, and chokes us.
    pub fn add_peer(&mut self, now: Instant, key: PeerKey) {
        let allowance = self.cfg.min_pipeline.max(1);
        self.peers.entry(key).or_insert(Peer {
            has: BitSet::new(self.state.len()),
            useful: 0,
            choking_us: true,
            we_are_interested: false,
            in_flight: Vec::new(),
            cancelled: Vec::new(),
            last_progress: now,
            allowance,
            bytes: 0,
            rate: 0.0,
            window_start: now,
            window_bytes: 0,
            first_ask: None,
        });
    }

    /// The peer's BITFIELD. A bitfield of the wrong size is a protocol violation.
    pub fn peer_bitfield(&mut self, now: Instant, key: PeerKey, bits: &BitSet) {
        if bits.len() != self.state.len() {
            self.violation(key);
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        for i in p.has.iter() {
            let (a, r) = (&mut self.availability, &mut self.rarity);
            change_availability(a, r, &self.state, &self.order, i, false);
        }
        p.has = bits.clone();
        p.useful = 0;
        for i in p.has.iter() {
            let (a, r) = (&mut self.availability, &mut self.rarity);
            change_availability(a, r, &self.state, &self.order, i, true);
            if needed(&self.state, i) {
                p.useful += 1;
            }
        }
        self.update_interest(key);
        self.try_request(now, key);
    }

    /// The peer's HAVE. An index out of range is a protocol violation.
    pub fn peer_have(&mut self, now: Instant, key: PeerKey, chunk: u32) {
        let i = chunk as usize;
        if i >= self.state.len() {
            self.violation(key);
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.has.insert(i) {
            let (a, r) = (&mut self.availability, &mut self.rarity);
            change_availability(a, r, &self.state, &self.order, i, true);
            if needed(&self.state, i) {
                p.useful += 1;
                self.update_interest(key);
                self.try_request(now, key);
            }
        }
    }

    /// The peer choked us: it will not answer what we asked, so those chunks go elsewhere.
    pub fn peer_choked(&mut self, now: Instant, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.choking_us = true;
        }
        self.release_all(key);
        self.try_request_all(now);
    }

    /// The peer unchoked us.
    pub fn peer_unchoked(&mut self, now: Instant, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.choking_us = false;
            p.last_progress = now;
        }
        self.try_request(now, key);
    }

    /// The peer rejected a request. `not_available` means it does not have the chunk.
    pub fn peer_rejected(&mut self, now: Instant, key: PeerKey, chunk: u32, not_available: bool) {
        let i = chunk as usize;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(pos) = p.position(chunk) else {
            return; // a reject for something not outstanding: harmless, ignore
        };
        p.in_flight.remove(pos);
        // Back off: it told us it cannot take this many.
        p.allowance = (p.allowance / 2).max(1);
        if not_available && p.has.remove(i) {
            let (a, r) = (&mut self.availability, &mut self.rarity);
            change_availability(a, r, &self.state, &self.order, i, false);
            if needed(&self.state, i) {
                p.useful = p.useful.saturating_sub(1);
                self.update_interest(key);
            }
        }
        self.release(i);
        // Others may take it now; this peer waits for its next piece or the next tick.
        let others: Vec<PeerKey> = self.peers.keys().copied().filter(|k| *k != key).collect();
        for k in others {
            self.try_request(now, k);
        }
    }

    /// A PIECE for `chunk` arrived from `peer`. The answer says what to do with its data.
    pub fn piece_received(
        &mut self,
        now: Instant,
        key: PeerKey,
        chunk: u32,
        len: usize,
    ) -> PieceVerdict {
        let i = chunk as usize;
        let cap = self.pipeline_cap();
        let Some(p) = self.peers.get_mut(&key) else {
            return PieceVerdict::Cancelled;
        };
        let Some(pos) = p.position(chunk) else {
            if let Some(cpos) = p.cancelled.iter().position(|&c| c == chunk) {
                p.cancelled.swap_remove(cpos);
                p.last_progress = now;
                return PieceVerdict::Cancelled;
            }
            self.violation(key);
            return PieceVerdict::Unrequested;
        };
        p.in_flight.remove(pos);
        p.last_progress = now;
        p.bytes += len as u64;
        p.window_bytes += len as u64;
        let dt = now.saturating_duration_since(p.window_start);
        if dt >= Duration::from_millis(250) {
            let sample = p.window_bytes as f64 / dt.as_secs_f64();
            p.rate = if p.rate == 0.0 {
                sample
            } else {
                0.5 * p.rate + 0.5 * sample
            };
            p.window_start = now;
            p.window_bytes = 0;
        }
        // Slow start: one more request per piece delivered, up to what its rate justifies.
        let by_rate = if p.rate > 0.0 {
            let chunks =
                p.rate * self.cfg.pipeline_window.as_secs_f64() / f64::from(self.chunk_size);
            (chunks.ceil() as usize).saturating_add(1)
        } else {
            usize::MAX
        };
        let limit = cap.min(by_rate).max(self.cfg.min_pipeline.max(1));
        if p.allowance < limit {
            p.allowance += 1;
        } else if p.allowance > limit {
            p.allowance = limit;
        }
        if let Some(r) = self.requested_by.get_mut(i) {
            *r = r.saturating_sub(1);
        }
        let verdict = match self.state.get(i) {
            Some(ChunkState::Requested) => {
                self.set_state(i, ChunkState::Verifying);
                self.verifying += 1;
                // Endgame duplicates of this chunk are no longer needed.
                self.cancel_others(i, key);
                PieceVerdict::Verify
            }
            _ => PieceVerdict::Duplicate,
        };
        self.try_request(now, key);
        verdict
    }

    /// A worker checked the chunk `from` sent. On success it counts and is announced; on
    /// failure `from` is banned and the chunk is fetched again elsewhere.
    pub fn chunk_verified(&mut self, now: Instant, chunk: u32, from: PeerKey, ok: bool) {
        let i = chunk as usize;
        if self.state.get(i) != Some(&ChunkState::Verifying) {
            return;
        }
        self.verifying = self.verifying.saturating_sub(1);
        if ok {
            self.state[i] = ChunkState::Have;
            self.have.insert(i);
            self.missing = self.missing.saturating_sub(1);
            let holders: Vec<PeerKey> = self
                .peers
                .iter_mut()
                .filter(|(_, p)| p.has.contains(i))
                .map(|(k, p)| {
                    p.useful = p.useful.saturating_sub(1);
                    *k
                })
                .collect();
            for k in holders {
                self.update_interest(k);
            }
            self.actions.push_back(Action::Have(chunk));
            self.check_complete();
        } else {
            self.set_state(i, ChunkState::Missing);
            self.actions.push_back(Action::Ban(from));
            self.remove_peer(from);
        }
        self.try_request_all(now);
    }

    /// The chunk could not be stored (a disk error, not the peer's fault): fetch it again.
    pub fn chunk_lost(&mut self, now: Instant, chunk: u32) {
        let i = chunk as usize;
        if self.state.get(i) == Some(&ChunkState::Verifying) {
            self.set_state(i, ChunkState::Missing);
            self.verifying = self.verifying.saturating_sub(1);
            self.try_request_all(now);
        }
    }

    /// The peer disconnected (or was dropped): its requests go to others.
    pub fn peer_gone(&mut self, now: Instant, key: PeerKey) {
        self.remove_peer(key);
        self.try_request_all(now);
    }

    /// Time passed: drop stalled peers, refill pipelines.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endgame_wake.is_some_and(|t| t <= now) {
            self.endgame_wake = None;
        }
        let stalled: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.in_flight.is_empty()
                    && now.saturating_duration_since(p.last_progress) >= self.cfg.stall_timeout
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stalled {
            self.actions.push_back(Action::Drop(k, DropReason::Stalled));
            self.remove_peer(k);
        }
        self.try_request_all(now);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Scheduler::handle_timeout`] must next be called: the earliest stall deadline,
    /// or in endgame the moment a chunk may become worth a second copy.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| !p.in_flight.is_empty())
            .map(|p| p.last_progress + self.cfg.stall_timeout)
            .chain(self.endgame_wake)
            .min()
    }

    // ----- introspection ------------------------------------------------------------

    /// Verified chunks.
    pub fn have(&self) -> &BitSet {
        &self.have
    }

    /// True when every wanted chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
            && self
                .state
                .iter()
                .all(|s| matches!(s, ChunkState::Have | ChunkState::Skipped))
    }

    /// Connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// What the scheduler knows of peer `key`, if it is one of this download's.
    pub fn peer_state(&self, key: PeerKey) -> Option<PeerState> {
        self.peers.get(&key).map(|p| PeerState {
            choking_us: p.choking_us,
            interested: p.we_are_interested,
            in_flight: p.in_flight.len(),
        })
    }

    /// Bytes received from `key` (pieces that were requested).
    pub fn bytes_from(&self, key: PeerKey) -> u64 {
        self.peers.get(&key).map_or(0, |p| p.bytes)
    }

    /// Requests outstanding in total.
    pub fn requests_in_flight(&self) -> usize {
        self.peers.values().map(|p| p.in_flight.len()).sum()
    }

    /// True when every missing chunk is already requested somewhere (endgame).
    pub fn in_endgame(&self) -> bool {
        self.rarity.is_empty() && !self.is_complete()
    }

    // ----- internals ----------------------------------------------------------------

    fn pipeline_cap(&self) -> usize {
        let by_bytes = (self.cfg.pipeline_bytes / u64::from(self.chunk_size)) as usize;
        by_bytes.clamp(self.cfg.min_pipeline.max(1), self.cfg.max_pipeline.max(1))
    }

    fn check_complete(&mut self) {
        if !self.complete_sent && self.is_complete() {
            self.complete_sent = true;
            self.actions.push_back(Action::Complete);
        }
    }

    fn violation(&mut self, key: PeerKey) {
        if self.peers.contains_key(&key) {
            self.actions
                .push_back(Action::Drop(key, DropReason::ProtocolViolation));
            self.remove_peer(key);
        }
    }

    fn update_interest(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let want = p.useful > 0;
        if want != p.we_are_interested {
            p.we_are_interested = want;
            self.actions.push_back(if want {
                Action::Interested(key)
            } else {
                Action::NotInterested(key)
            });
        }
    }

    fn release(&mut self, i: usize) {
        if let Some(r) = self.requested_by.get_mut(i) {
            *r = r.saturating_sub(1);
            if *r == 0 && self.state.get(i) == Some(&ChunkState::Requested) {
                self.set_state(i, ChunkState::Missing);
            }
        }
    }

    fn release_all(&mut self, key: PeerKey) {
        let chunks = match self.peers.get_mut(&key) {
            Some(p) => {
                // Pieces for these may still arrive; treat them as cancelled, not violations.
                let taken: Vec<u32> = p.in_flight.drain(..).map(|a| a.chunk).collect();
                p.cancelled.extend(taken.iter().copied());
                if p.cancelled.len() > 4 * self.cfg.max_pipeline {
                    let excess = p.cancelled.len() - 4 * self.cfg.max_pipeline;
                    p.cancelled.drain(..excess);
                }
                taken
            }
            None => return,
        };
        for c in chunks {
            self.release(c as usize);
        }
    }

    fn remove_peer(&mut self, key: PeerKey) {
        self.release_all(key);
        if let Some(p) = self.peers.remove(&key) {
            for i in p.has.iter() {
                let (a, r) = (&mut self.availability, &mut self.rarity);
                change_availability(a, r, &self.state, &self.order, i, false);
            }
        }
    }

    fn cancel_others(&mut self, i: usize, except: PeerKey) {
        let chunk = i as u32;
        let mut cancelled = 0u8;
        for (k, p) in self.peers.iter_mut() {
            if *k == except {
                continue;
            }
            if let Some(pos) = p.position(chunk) {
                p.in_flight.remove(pos);
                p.cancelled.push(chunk);
                cancelled += 1;
                self.actions.push_back(Action::Cancel { peer: *k, chunk });
            }
        }
        if let Some(r) = self.requested_by.get_mut(i) {
            *r = r.saturating_sub(cancelled);
        }
    }

    fn try_request_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.try_request(now, k);
        }
    }

    /// Fills `key`'s pipeline: rarest missing chunks first, then (in endgame) duplicates.
    fn try_request(&mut self, now: Instant, key: PeerKey) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if p.choking_us || p.useful == 0 {
            return;
        }
        let per_peer = p
            .allowance
            .min(self.cfg.max_pipeline)
            .saturating_sub(p.in_flight.len());
        // The global budget: requested plus received-but-unverified chunks.
        let budget = (self.cfg.max_unverified_bytes / u64::from(self.chunk_size)).max(1) as usize;
        let outstanding = self.verifying + self.requests_in_flight();
        let free = per_peer.min(budget.saturating_sub(outstanding));
        if free == 0 {
            return;
        }
        let mut picks = self.pick_rarest(key, free);
        if picks.len() < free {
            let (more, wake) = self.pick_endgame(key, free - picks.len(), now);
            picks.extend(more);
            if let Some(w) = wake {
                self.endgame_wake = Some(self.endgame_wake.map_or(w, |t| t.min(w)));
            }
        }
        if picks.is_empty() {
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.in_flight.is_empty() {
            // The stall clock starts when it first owes us something.
            p.last_progress = now;
        }
        p.first_ask.get_or_insert(now);
        for c in picks {
            p.in_flight.push(Ask {
                chunk: c as u32,
                at: now,
            });
            self.requested_by[c] = self.requested_by[c].saturating_add(1);
            if self.state[c] == ChunkState::Missing {
                self.rarity.remove(&self.order, self.availability[c], c);
            }
            self.state[c] = ChunkState::Requested;
            self.actions.push_back(Action::Request {
                peer: key,
                chunk: c as u32,
            });
        }
    }
}
