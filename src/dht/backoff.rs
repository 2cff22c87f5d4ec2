//! Backing off from a node that said "too many" (dht.md sections 4.9 and 13.1): a node whose
//! per-source rate limit refuses our requests answers one of them with ERROR RETRY_LATER,
//! and we send that address nothing for [`RETRY_AFTER`]. Requests meant for it meanwhile,
//! and a lookup or announce request it refused, are held here and go out when the time is
//! up, instead of being lost to its silence (a timeout, then a retry that the limit drops
//! too: issue 21's thousand drops between two busy nodes).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::requests::Purpose;
use crate::id::Id;
use crate::proto::dht::Message;

/// How long a requester sends nothing to a node that answered ERROR RETRY_LATER, and the
/// least time between two RETRY_LATERs to one source (dht.md section 5): at 100 requests a
/// second, a limited source has a hundred again after it.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Addresses backed off from at once, at most (beyond: requests to others are not held).
const MAX_BACKED_OFF: usize = 1024;
/// Requests held at once, at most (beyond: they are sent, and may be dropped).
const MAX_HELD: usize = 4096;

/// A request waiting for its destination's back-off to end.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) to: SocketAddr,
    pub(super) node: Option<Id>,
    pub(super) msg: Message,
    pub(super) purpose: Purpose,
    pub(super) attempt: u8,
    /// Its pace slot is taken ([`Pacer`](super::pace::Pacer)): it goes when held no more.
    pub(super) paced: bool,
}

/// The addresses backed off from, and the requests held for them.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    until: HashMap<SocketAddr, Instant>,
    held: BTreeMap<(Instant, u64), Held>,
    seq: u64,
}

impl Backoff {
    /// Until when requests to `to` wait, if they do.
    pub(super) fn busy(&self, to: &SocketAddr, now: Instant) -> Option<Instant> {
        self.until.get(to).copied().filter(|t| *t > now)
    }

    /// `to` said RETRY_LATER at `now`: nothing goes to it for [`RETRY_AFTER`]. Returns when
    /// that ends (`None` if too many addresses are backed off from already).
    pub(super) fn back_off(&mut self, to: SocketAddr, now: Instant) -> Option<Instant> {
        if self.until.len() >= MAX_BACKED_OFF {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_BACKED_OFF {
                return None;
            }
        }
        let t = now + RETRY_AFTER;
        self.until.insert(to, t);
        Some(t)
    }

    /// Holds `req` until `at`; gives it back if too many are held.
    pub(super) fn hold(&mut self, at: Instant, req: Held) -> Result<(), Box<Held>> {
        if self.held.len() >= MAX_HELD {
            return Err(Box::new(req));
        }
        self.seq += 1;
        self.held.insert((at, self.seq), req);
        Ok(())
    }

    /// When the first held request is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.held.keys().next().map(|(t, _)| *t)
    }

    /// The held requests due at `now`, in the order they were due and held; back-offs that
    /// ended are forgotten.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Held> {
        let mut due = Vec::new();
        while let Some(e) = self.held.first_entry() {
            if e.key().0 > now {
                break;
            }
            due.push(e.remove());
        }
        if !due.is_empty() {
            self.until.retain(|_, t| *t > now);
        }
        due
    }

    /// Requests held now.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(to: SocketAddr) -> Held {
        Held {
            to,
            node: None,
            msg: Message::Ping,
            purpose: Purpose::AddressPing,
            attempt: 0,
            paced: false,
        }
    }

    #[test]
    fn held_requests_come_out_when_the_back_off_ends_in_order() {
        let t = super::super::tests::start();
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
        let mut bo = Backoff::default();
        assert_eq!(bo.busy(&a, t), None);
        let end = bo.back_off(a, t).unwrap();
        assert_eq!(end, t + RETRY_AFTER);
        assert_eq!(bo.busy(&a, t + RETRY_AFTER / 2), Some(end));
        assert_eq!(bo.busy(&b, t), None);
        bo.hold(end, ping(a)).unwrap();
        bo.hold(end, ping(b)).unwrap();
        assert_eq!(bo.poll_timeout(), Some(end));
        assert!(bo.take_due(end - Duration::from_millis(1)).is_empty());
        let due = bo.take_due(end);
        assert_eq!(due.iter().map(|h| h.to).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(bo.busy(&a, end), None);
        assert_eq!(bo.held(), 0);
    }

    #[test]
    fn bounded() {
        let t = super::super::tests::start();
        let mut bo = Backoff::default();
        for p in 0..MAX_BACKED_OFF as u16 {
            assert!(bo
                .back_off(SocketAddr::from(([192, 0, 2, 1], p)), t)
                .is_some());
        }
        let x: SocketAddr = "192.0.2.9:9".parse().unwrap();
        assert!(bo.back_off(x, t).is_none(), "full");
        // Once the others ended, there is room.
        assert!(bo.back_off(x, t + RETRY_AFTER).is_some());
        for _ in 0..MAX_HELD {
            bo.hold(t, ping(x)).unwrap();
        }
        assert!(bo.hold(t, ping(x)).is_err());
    }
}
