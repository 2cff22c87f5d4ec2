//! A lookup's requests one by one, for learners (the dashboard's learners' page, http.md
//! section 7): whom it asked, in which round, when, how long the answer took or that none
//! came, and what the answer held. Kept by each running lookup and handed out with its
//! [`QueryStats`](super::QueryStats) when it ends. Bounded: at most [`MAX_TRACED`] requests
//! per lookup are kept (a lookup rarely sends more; the rest are only counted).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::QueryId;
use crate::id::Id;

/// Most requests kept per lookup.
pub const MAX_TRACED: usize = 32;

/// What became of one request of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopOutcome {
    /// No answer yet (the lookup ended before it came, or it is still running).
    Waiting,
    /// Answered.
    Answered {
        /// From sending to the answer.
        rtt: Duration,
        /// Contacts the answer named (closer to the target, by the answerer's table).
        closer: u16,
        /// Of those, how many the lookup did not know yet.
        new: u16,
        /// Providers the answer named (GET_PROVIDERS lookups).
        providers: u16,
        /// Leading bits the closest contact named shares with the target (progress: each
        /// hop should raise it).
        best_bits: Option<u16>,
    },
    /// No answer within the request timeout, or an ERROR answer.
    Failed {
        /// From sending to the failure.
        after: Duration,
        /// True for a timeout, false for an ERROR answer.
        timeout: bool,
    },
}

/// One request of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The round: 0 for contacts from this node's own table, n+1 for contacts named by an
    /// answer of round n.
    pub round: u32,
    /// The contact asked.
    pub node: Id,
    /// Its address.
    pub addr: SocketAddr,
    /// Leading bits its ID shares with the target.
    pub bits: u16,
    /// When it was sent, from the lookup's start.
    pub sent: Duration,
    /// Sent again after a soft timeout (copies beyond the first).
    pub resent: u8,
    /// What came of it.
    pub outcome: HopOutcome,
}

/// The requests of one lookup, in the order they were sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupTrace {
    /// The ID looked up.
    pub target: Option<Id>,
    /// The first [`MAX_TRACED`] requests.
    pub hops: Vec<Hop>,
    /// Requests beyond those.
    pub untraced: u32,
}

/// A lookup still running, with its requests so far ([`super::Dht::running_lookups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningLookup {
    /// The lookup.
    pub query: QueryId,
    /// What it is for, as the DHT knows it: `find_node`, `get_providers`, `announce`,
    /// `maintenance` (joining, refreshing a bucket) or `sweep` (a reprovide sweep's region).
    /// The node names its own lookups more precisely (`api`, `providers`, ...).
    pub kind: &'static str,
    /// When it started.
    pub started: Instant,
    /// Its requests so far; those not answered yet are [`HopOutcome::Waiting`].
    pub trace: LookupTrace,
}

/// Leading bits `a` shares with `b`, as a small number.
pub fn common_bits(a: &Id, b: &Id) -> u16 {
    u16::try_from(a.distance(b).leading_zeros()).unwrap_or(u16::MAX)
}

impl LookupTrace {
    /// A trace of a lookup for `target`.
    pub fn new(target: Id) -> Self {
        LookupTrace {
            target: Some(target),
            hops: Vec::new(),
            untraced: 0,
        }
    }

    /// A request went to `node` at `addr` (round `round`), `sent` after the start.
    pub fn sent(&mut self, node: Id, addr: SocketAddr, round: u32, sent: Duration) {
        if self.hops.len() >= MAX_TRACED {
            self.untraced = self.untraced.saturating_add(1);
            return;
        }
        let bits = self.target.map_or(0, |t| common_bits(&node, &t));
        self.hops.push(Hop {
            round,
            node,
            addr,
            bits,
            sent,
            resent: 0,
            outcome: HopOutcome::Waiting,
        });
    }

    /// The request still waiting for `node`'s answer.
    fn waiting(&mut self, node: &Id) -> Option<&mut Hop> {
        self.hops
            .iter_mut()
            .rev()
            .find(|h| h.node == *node && h.outcome == HopOutcome::Waiting)
    }

    /// The request to `node` was sent again.
    pub fn resent(&mut self, node: &Id) {
        if let Some(h) = self.waiting(node) {
            h.resent = h.resent.saturating_add(1);
        }
    }

    /// `node` answered at `at` (from the start), naming `closer` contacts (`new` of them
    /// unknown to the lookup) and `providers` providers.
    pub fn answered(
        &mut self,
        node: &Id,
        at: Duration,
        closer: &[Id],
        new: usize,
        providers: usize,
    ) {
        let target = self.target;
        let Some(h) = self.waiting(node) else {
            return;
        };
        let best_bits = target.and_then(|t| closer.iter().map(|c| common_bits(c, &t)).max());
        let small = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        h.outcome = HopOutcome::Answered {
            rtt: at.saturating_sub(h.sent),
            closer: small(closer.len()),
            new: small(new),
            providers: small(providers),
            best_bits,
        };
    }

    /// The request to `node` failed at `at` (from the start): a timeout, or an ERROR answer.
    pub fn failed(&mut self, node: &Id, at: Duration, timeout: bool) {
        if let Some(h) = self.waiting(node) {
            h.outcome = HopOutcome::Failed {
                after: at.saturating_sub(h.sent),
                timeout,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8) -> Id {
        let mut b = [0u8; 32];
        b[0] = first;
        Id(b)
    }

    #[test]
    fn a_trace_follows_each_request_and_stays_bounded() {
        let addr: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let mut t = LookupTrace::new(id(0));
        t.sent(id(0x80), addr, 0, Duration::ZERO);
        t.sent(id(0x40), addr, 0, Duration::from_millis(1));
        t.resent(&id(0x40));
        t.answered(
            &id(0x80),
            Duration::from_millis(30),
            &[id(0x10), id(0x01)],
            1,
            0,
        );
        t.failed(&id(0x40), Duration::from_millis(2001), true);
        // An answer nobody waits for changes nothing.
        t.answered(&id(0x80), Duration::from_millis(40), &[], 0, 0);
        assert_eq!(t.hops[0].bits, 0);
        assert_eq!(t.hops[1].bits, 1);
        assert_eq!(
            t.hops[0].outcome,
            HopOutcome::Answered {
                rtt: Duration::from_millis(30),
                closer: 2,
                new: 1,
                providers: 0,
                best_bits: Some(7),
            }
        );
        assert_eq!(t.hops[1].resent, 1);
        assert_eq!(
            t.hops[1].outcome,
            HopOutcome::Failed {
                after: Duration::from_millis(2000),
                timeout: true
            }
        );
        for _ in 0..100 {
            t.sent(id(1), addr, 1, Duration::ZERO);
        }
        assert_eq!(t.hops.len(), MAX_TRACED);
        assert_eq!(t.untraced, 100 - (MAX_TRACED as u32 - 2));
    }
}
