//! The iterative lookup: which peer to ask next, and when a lookup is done
//! (spec: `protocol-spec/dht.md`, "Lookups").
//!
//! A [`Lookup`] keeps every candidate it has heard of in a map ordered by distance to the
//! target. Each candidate is `NotContacted`, `Waiting` (a request is out), `Succeeded` or
//! `Failed`. The caller repeatedly asks [`Lookup::next_step`] whom to query; feeds answers in
//! with [`Lookup::on_success`] and timeouts or errors with [`Lookup::on_failure`]; and stops
//! when `next_step` says [`Step::Finished`]. What finishes it depends on its [`Goal`]: a
//! lookup that picks nodes to store at is finished when the `k` closest candidates that did
//! not fail have all answered; one that finds something (a node, providers) when the
//! `beta` closest have; either when there is nobody left to ask.
//! A candidate that has not answered within the caller's soft timeout is marked
//! `Unresponsive` ([`Lookup::on_unresponsive`]): it no longer occupies one of the `alpha`
//! slots and no longer holds up the end of the lookup, but a late answer still counts.
//! A candidate is asked while fewer than `alpha` requests are waiting on candidates closer
//! than it, and, in a lookup that finds, fewer than `2 alpha` (at most k) in all: a request
//! to a seed that is dead or slow does not keep the lookup from asking the closer
//! candidates a live seed named (issue 21: with 30% of the nodes dead, the first round of
//! three held at least one dead seed in 65% of the lookups, and each cost the next round a
//! slot for a soft timeout). A lookup that picks the k closest (joins, refreshes,
//! announces), which nobody waits on, keeps to `alpha` in all and so to fewer requests.
//! When the lookup has stalled (`alpha` answers in a row that brought nobody closer than
//! the closest known candidate) it asks all remaining candidates among the k closest at
//! once (the Kademlia paper's final round; libp2p calls this state "stalled"). An answer
//! that makes progress returns it to `alpha`. The lookup does no I/O and never reads a
//! clock: request deadlines belong to the caller, which reports them as failures.

use std::collections::BTreeMap;

use crate::id::{Distance, Id};
use crate::proto::dht::Contact;

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Known, not asked yet.
    NotContacted,
    /// Asked; the answer is pending.
    Waiting,
    /// Asked, and slower than the soft timeout (the request was sent again): the lookup goes
    /// on without it, but a late answer is still taken. The closest candidate in this state
    /// still holds up the end of the lookup.
    Unresponsive,
    /// Unresponsive for a second soft timeout: holds up nothing, a late answer still counts.
    Late,
    /// Answered.
    Succeeded,
    /// Timed out or answered with an error.
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    state: PeerState,
    /// Number of answers on the chain that led to this candidate: 0 for the seeds taken from
    /// our own table.
    hop: u32,
}

/// What a lookup is for, and so when it ends (dht.md section 7, step 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// It picks the k closest live nodes (to store records at, or to be known by): it ends
    /// when the `k` closest candidates not failed, unresponsive or late have all answered.
    Closest,
    /// It finds something held by the nodes closest to the target (the node itself, provider
    /// records stored at the k closest): it ends when the `beta` closest such candidates have
    /// all answered, so one lost answer among the rest of the k closest does not hold it up
    /// (S/Kademlia, libp2p's resiliency). Requests still out to the others are left to run.
    Find {
        /// The closest candidates that must have answered (at least 1, at most k).
        beta: usize,
    },
}

/// What the caller should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send a request to this contact (it is now `Waiting`).
    Query(Contact),
    /// Nothing to send until an answer or a failure arrives.
    Waiting,
    /// The lookup is complete.
    Finished,
}

/// One iterative lookup.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: Id,
    k: usize,
    alpha: usize,
    /// How many of the closest candidates must have answered before it ends.
    end_width: usize,
    /// Whether requests to farther candidates may be out beside alpha closer ones (2 alpha
    /// in all): for lookups that find, whose latency is the user's; a lookup that picks
    /// the k closest (a join, a refresh, an announce) keeps to alpha and spends fewer
    /// requests.
    wide: bool,
    candidates: BTreeMap<Distance, Candidate>,
    in_flight: usize,
    finished: bool,
    /// Answers in a row that found nobody closer than the closest candidate known.
    no_progress: usize,
    /// Successful answers so far.
    answers: u32,
    /// Failures so far.
    failures: u32,
}

impl Lookup {
    /// A lookup for `target` seeded with contacts from the local table.
    pub fn new(
        target: Id,
        k: usize,
        alpha: usize,
        goal: Goal,
        seeds: impl IntoIterator<Item = Contact>,
    ) -> Self {
        let k = k.max(1);
        let end_width = match goal {
            Goal::Closest => k,
            Goal::Find { beta } => beta.clamp(1, k),
        };
        let mut l = Lookup {
            target,
            k,
            alpha: alpha.max(1),
            end_width,
            wide: matches!(goal, Goal::Find { .. }),
            candidates: BTreeMap::new(),
            in_flight: 0,
            finished: false,
            no_progress: 0,
            answers: 0,
            failures: 0,
        };
        for c in seeds {
            l.add_candidate(c, 0);
        }
        l
    }

    /// The ID searched for.
    pub fn target(&self) -> Id {
        self.target
    }

    fn add_candidate(&mut self, contact: Contact, hop: u32) {
        let d = contact.id.distance(&self.target);
        self.candidates.entry(d).or_insert(Candidate {
            contact,
            state: PeerState::NotContacted,
            hop,
        });
    }

    /// `from` answered; `closer` are the contacts it returned. Candidates it names that we
    /// do not know yet join the lookup. Answers from peers we did not ask are ignored.
    pub fn on_success(&mut self, from: &Id, closer: &[Contact]) {
        let d = from.distance(&self.target);
        let hop = match self.candidates.get_mut(&d) {
            Some(c)
                if matches!(
                    c.state,
                    PeerState::Waiting | PeerState::Unresponsive | PeerState::Late
                ) =>
            {
                if c.state == PeerState::Waiting {
                    self.in_flight -= 1;
                }
                c.state = PeerState::Succeeded;
                c.hop
            }
            _ => return,
        };
        self.answers += 1;
        if self.finished {
            return;
        }
        let best_before = self.closest_live_distance();
        for c in closer {
            self.add_candidate(*c, hop + 1);
        }
        if self.closest_live_distance() < best_before {
            self.no_progress = 0;
        } else {
            self.no_progress += 1;
        }
    }

    /// Distance of the closest candidate that has not failed (all-ones when none).
    fn closest_live_distance(&self) -> Distance {
        self.candidates
            .iter()
            .find(|(_, c)| {
                !matches!(
                    c.state,
                    PeerState::Failed | PeerState::Unresponsive | PeerState::Late
                )
            })
            .map_or(Distance([0xff; 32]), |(d, _)| *d)
    }

    /// True when the lookup has stalled and asks all k closest at once.
    pub fn is_stalled(&self) -> bool {
        self.no_progress >= self.alpha
    }

    /// How many requests may be waiting on candidates closer than the next one asked.
    fn parallelism(&self) -> usize {
        if self.is_stalled() {
            self.k.max(self.alpha)
        } else {
            self.alpha
        }
    }

    /// How many requests may be in flight in all: for a find lookup `2 alpha` while not
    /// stalled (`alpha` of them to farther candidates, asked before closer ones were
    /// known), for one that picks the k closest `alpha`; never beyond what a stalled lookup
    /// may send (`max(alpha, k)`).
    fn max_in_flight(&self) -> usize {
        if self.is_stalled() {
            self.parallelism()
        } else if self.wide {
            (2 * self.alpha).min(self.k).max(self.alpha)
        } else {
            self.alpha
        }
    }

    /// The request to `from` timed out or failed.
    pub fn on_failure(&mut self, from: &Id) {
        let d = from.distance(&self.target);
        if let Some(c) = self.candidates.get_mut(&d) {
            match c.state {
                PeerState::Waiting => {
                    self.in_flight -= 1;
                    self.failures += 1;
                    c.state = PeerState::Failed;
                }
                PeerState::Unresponsive | PeerState::Late => {
                    self.failures += 1;
                    c.state = PeerState::Failed;
                }
                _ => {}
            }
        }
    }

    /// The request to `from` is slower than the soft timeout: stop waiting for it (its slot
    /// goes to the next candidate), but keep listening for its answer. A later call marks it
    /// [`PeerState::Late`] unless the caller sent the request again (`resent`).
    pub fn on_unresponsive(&mut self, from: &Id, resent: bool) {
        let d = from.distance(&self.target);
        if let Some(c) = self.candidates.get_mut(&d) {
            match c.state {
                PeerState::Waiting => {
                    c.state = PeerState::Unresponsive;
                    self.in_flight -= 1;
                }
                PeerState::Unresponsive if !resent => c.state = PeerState::Late,
                _ => {}
            }
        }
    }

    /// True if `id` is the closest candidate that has not failed or gone late: the one whose
    /// answer the lookup waits for longest (see [`Lookup::next_step`]).
    pub fn is_closest(&self, id: &Id) -> bool {
        self.candidates
            .values()
            .find(|c| !matches!(c.state, PeerState::Failed | PeerState::Late))
            .is_some_and(|c| c.contact.id == *id)
    }

    /// The next thing to do. Call repeatedly until it returns `Waiting` or `Finished`.
    pub fn next_step(&mut self) -> Step {
        if self.finished {
            return Step::Finished;
        }
        // Non-failed candidates seen so far, in distance order.
        let mut live = 0;
        // A candidate among the `end_width` closest has not answered yet: not the end.
        let mut waiting_in_top = false;
        let mut to_query: Option<Distance> = None;
        // A request still out to a slow candidate: an answer may yet come (its retry).
        let mut slow = false;
        // Requests waiting on candidates closer than the one looked at.
        let mut waiting_closer = 0;
        let (parallelism, max_in_flight) = (self.parallelism(), self.max_in_flight());
        for (d, c) in &self.candidates {
            match c.state {
                PeerState::Failed => continue,
                PeerState::Late => {
                    slow = true;
                    continue;
                }
                PeerState::Unresponsive => {
                    slow = true;
                    // The closest candidate is worth its retry: in a node lookup it is often
                    // the node looked for, and under loss its first answer is the one most
                    // likely lost among all it takes. Others no longer hold up the end.
                    if live == 0 {
                        waiting_in_top = true;
                    }
                    continue;
                }
                PeerState::Succeeded => {}
                PeerState::Waiting => {
                    waiting_closer += 1;
                    waiting_in_top |= live < self.end_width;
                }
                PeerState::NotContacted => {
                    // Requests out to farther candidates (asked before this one was known)
                    // do not hold it back, up to `max_in_flight` in all.
                    if to_query.is_none()
                        && waiting_closer < parallelism
                        && self.in_flight < max_in_flight
                    {
                        to_query = Some(*d);
                    }
                    waiting_in_top |= live < self.end_width;
                }
            }
            live += 1;
            if live >= self.k {
                break;
            }
        }
        // A find lookup whose closest candidates have all answered ends, even with requests
        // still out to farther ones or ones not yet asked: nobody it knows can be closer.
        if !waiting_in_top && self.answers > 0 {
            self.finished = true;
            return Step::Finished;
        }
        if let Some(d) = to_query {
            if let Some(c) = self.candidates.get_mut(&d) {
                c.state = PeerState::Waiting;
                self.in_flight += 1;
                return Step::Query(c.contact);
            }
        }
        // Nobody has answered yet, but a slow request may still be answered (it is sent
        // again at the request timeout): ending now would end with nothing. A join has one
        // seed, and a lookup that lost both copies of its only request made the joining node
        // an island (issue 21; dht.md section 7, step 7).
        if waiting_in_top || (slow && self.answers == 0) {
            return Step::Waiting;
        }
        self.finished = true;
        Step::Finished
    }

    /// True once [`Lookup::next_step`] has returned `Finished`.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The up to `k` closest contacts that answered, closest first.
    pub fn closest_succeeded(&self) -> Vec<Contact> {
        self.candidates
            .values()
            .filter(|c| c.state == PeerState::Succeeded)
            .take(self.k)
            .map(|c| c.contact)
            .collect()
    }

    /// The hop number of a candidate: 0 for seeds, n+1 for contacts learned from a hop-n peer.
    pub fn hop_of(&self, id: &Id) -> Option<u32> {
        self.candidates
            .get(&id.distance(&self.target))
            .map(|c| c.hop)
    }

    /// Candidates known so far (asked or not).
    pub fn known(&self) -> usize {
        self.candidates.len()
    }

    /// Successful answers so far.
    pub fn answers(&self) -> u32 {
        self.answers
    }

    /// Failed requests so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The state of the candidate with this ID, if known.
    pub fn state_of(&self, id: &Id) -> Option<PeerState> {
        self.candidates
            .get(&id.distance(&self.target))
            .map(|c| c.state)
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
