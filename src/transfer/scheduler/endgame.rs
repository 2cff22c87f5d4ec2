//! Endgame: whether a chunk already asked of one peer is worth asking of another too.
//!
//! Once every missing chunk is requested somewhere, a peer with room in its pipeline could
//! ask for chunks that are on their way from others. Asking blindly (the scheduler did until
//! it was measured) downloads a big share of a small file twice: two fast seeders both send
//! the chunks at the head of each other's queue, since a CANCEL cannot stop a piece the
//! sender has already read and queued. libtorrent asks for a busy block only when the peer
//! is idle and the block has been outstanding long enough; here the same idea is made
//! quantitative. A chunk is asked of peer B as well only when B would deliver it in less
//! than half the time its holder A still needs:
//!
//! - A's time left for the chunk: with A's measured rate `r_A`, it delivers the `q`-th of
//!   its outstanding requests `(q + 1) * chunk / r_A` after its last piece. Once that moment
//!   has passed, A is late: its time left is its whole queue again plus how late it is
//!   (growing while it stays silent). Without a rate (A never delivered), the time the chunk
//!   has waited so far.
//! - B's time: its own queue plus this chunk, `(m + 1) * chunk / r_B`; without a rate, a
//!   pessimistic [`UNKNOWN_CHUNK_TIME`] per chunk.
//! - And never before the chunk has waited [`MIN_WAIT`].
//!
//! The chunks that gain most are asked first: those at the tail of a long queue, which the
//! holder has usually not started reading yet, so the CANCEL that follows the first copy
//! removes them before they are sent. A silent peer's chunks are rescued as soon as the
//! wait exceeds twice what a working peer needs, long before the stall timeout. When a
//! chunk is declined, [`judge`] says when the answer could change, so the scheduler wakes
//! up then instead of polling.

use std::time::{Duration, Instant};

use super::{ChunkState, PeerKey, Scheduler};

/// A chunk is never asked twice before it has waited this long.
pub const MIN_WAIT: Duration = Duration::from_millis(50);

/// Per chunk, what a peer with no measured rate is assumed to need.
pub const UNKNOWN_CHUNK_TIME: Duration = Duration::from_millis(500);

/// How much faster the second peer must be (its time, times this, below the holder's).
const MARGIN: f64 = 2.0;

/// What is known of one peer's delivery.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Measured bytes per second, if it delivered anything.
    pub rate: Option<f64>,
    /// When it last sent a piece (or began owing us one).
    pub last_progress: Instant,
}

/// A request outstanding at its holder.
#[derive(Clone, Copy, Debug)]
pub struct Outstanding {
    /// When it was sent.
    pub asked_at: Instant,
    /// Requests before it in the holder's queue.
    pub ahead: usize,
    /// The holder.
    pub holder: Pace,
}

/// The answer for one chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Ask it of the second peer now. The figure is the holder's expected time left, in
    /// seconds (candidates with more to gain go first).
    Now(f64),
    /// Not now; nothing changes before this instant unless a peer's state does.
    Later(Instant),
}

/// Whether a peer with `queue` requests outstanding and pace `asker` should also ask for
/// the chunk `o` describes (chunks of `chunk_size` bytes), at `now`.
pub fn judge(
    o: &Outstanding,
    asker: Option<f64>,
    queue: usize,
    chunk_size: u32,
    now: Instant,
) -> Verdict {
    let chunk = f64::from(chunk_size.max(1));
    let per_chunk = |rate: Option<f64>| match rate {
        Some(r) if r > 0.0 => chunk / r,
        _ => UNKNOWN_CHUNK_TIME.as_secs_f64(),
    };
    // What the asker would need, with the margin: the holder must need more than this.
    let need = MARGIN * (queue as f64 + 1.0) * per_chunk(asker);
    let waited = now.saturating_duration_since(o.asked_at).as_secs_f64();
    let floor = MIN_WAIT.as_secs_f64();
    // The holder's time left, and from when on (seconds from now) it would exceed `need`.
    let (left, eligible_in) = match o.holder.rate {
        Some(r) if r > 0.0 => {
            let own = (o.ahead as f64 + 1.0) * chunk / r;
            let due = now
                .saturating_duration_since(o.holder.last_progress)
                .as_secs_f64();
            let late = due - own; // > 0: past the moment it should have delivered
            if late < 0.0 {
                // On time: `-late` seconds left, shrinking; it only becomes worth it once
                // late by `need - own`.
                (-late, -late + (need - own).max(0.0))
            } else {
                (own + late, (need - own - late).max(0.0))
            }
        }
        // Never delivered: as long again as it has waited so far.
        _ => (waited, (need - waited).max(0.0)),
    };
    if left > need && waited >= floor {
        return Verdict::Now(left);
    }
    let wait = if left > need {
        floor - waited
    } else {
        eligible_in.max(floor - waited)
    };
    let wait = Duration::try_from_secs_f64(wait.max(0.001)).unwrap_or(Duration::from_secs(3600));
    Verdict::Later(
        now.checked_add(wait)
            .unwrap_or(now + Duration::from_secs(3600)),
    )
}

impl Scheduler {
    /// Endgame: up to `n` chunks requested elsewhere that `key` has and was not asked for,
    /// each only if `key` would deliver it in less than half the time its holder still
    /// needs ([`judge`]), those with most to gain first; and when a declined chunk
    /// may become worth it.
    pub(super) fn pick_endgame(
        &self,
        key: PeerKey,
        n: usize,
        now: Instant,
    ) -> (Vec<usize>, Option<Instant>) {
        if !self.rarity.is_empty() {
            return (Vec::new(), None);
        }
        let Some(p) = self.peers.get(&key) else {
            return (Vec::new(), None);
        };
        // Each candidate with its best copy on the way: the holder expected to deliver first.
        let mut cands: Vec<(usize, Outstanding)> = Vec::new();
        for i in 0..self.state.len() {
            if self.state[i] != ChunkState::Requested
                || !p.has.contains(i)
                || p.asked(i as u32)
                || self.requested_by[i] >= self.cfg.endgame_duplicates
            {
                continue;
            }
            let best = self
                .peers
                .iter()
                .filter(|(k, _)| **k != key)
                .filter_map(|(_, h)| {
                    let ahead = h.position(i as u32)?;
                    let ask = h.in_flight.get(ahead)?;
                    Some(Outstanding {
                        asked_at: ask.at,
                        ahead,
                        holder: Pace {
                            rate: h.pace(),
                            last_progress: h.last_progress,
                        },
                    })
                })
                .min_by_key(|o| o.ahead);
            if let Some(o) = best {
                cands.push((i, o));
            }
        }
        let rate = p.pace();
        let mut queue = p.in_flight.len();
        let mut judged: Vec<(usize, Verdict)> = cands
            .iter()
            .map(|(i, o)| (*i, judge(o, rate, queue, self.chunk_size, now)))
            .collect();
        // Most to gain first: the tails of long queues, which a CANCEL still stops.
        judged.sort_by(|a, b| match (a.1, b.1) {
            (Verdict::Now(x), Verdict::Now(y)) => y.total_cmp(&x),
            (Verdict::Now(_), Verdict::Later(_)) => std::cmp::Ordering::Less,
            (Verdict::Later(_), Verdict::Now(_)) => std::cmp::Ordering::Greater,
            (Verdict::Later(x), Verdict::Later(y)) => x.cmp(&y),
        });
        let mut picks = Vec::new();
        let mut wake: Option<Instant> = None;
        for (i, first) in judged {
            if picks.len() == n {
                break;
            }
            // Each pick lengthens this peer's own queue: judge again with it.
            let v = match (first, cands.iter().find(|(c, _)| *c == i)) {
                (Verdict::Now(_), Some((_, o))) if queue > p.in_flight.len() => {
                    judge(o, rate, queue, self.chunk_size, now)
                }
                _ => first,
            };
            match v {
                Verdict::Now(_) => {
                    picks.push(i);
                    queue += 1;
                }
                Verdict::Later(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
            }
        }
        (picks, wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: u32 = 256 * 1024;
    const MB: f64 = 1e6;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(t0: Instant, asked: u64, ahead: usize, rate: Option<f64>, progress: u64) -> Outstanding {
        Outstanding {
            asked_at: t0 + ms(asked),
            ahead,
            holder: Pace {
                rate,
                last_progress: t0 + ms(progress),
            },
        }
    }

    /// Two equal peers: the head of the other's queue is never worth a second copy; its
    /// tail is once the asker is idle.
    #[test]
    fn only_a_long_queue_at_an_equal_peer_is_shared() {
        let t0 = Instant::now();
        let now = t0 + ms(200);
        // 26 MB/s: 10 ms per chunk.
        let r = Some(26.2 * MB);
        let head = at(t0, 0, 0, r, 195);
        assert!(matches!(judge(&head, r, 0, CHUNK, now), Verdict::Later(_)));
        let tail = at(t0, 100, 5, r, 195);
        assert!(matches!(judge(&tail, r, 0, CHUNK, now), Verdict::Now(_)));
        // The same tail for an asker with a queue of its own: not worth it.
        assert!(matches!(judge(&tail, r, 4, CHUNK, now), Verdict::Later(_)));
    }

    /// A holder that never delivered: its chunk goes to a working peer once it has waited
    /// twice that peer's time (and at least MIN_WAIT), and the verdict says when.
    #[test]
    fn a_silent_holder_is_rescued_after_a_short_wait() {
        let t0 = Instant::now();
        let o = at(t0, 0, 0, None, 0);
        let fast = Some(26.2 * MB);
        match judge(&o, fast, 0, CHUNK, t0 + ms(10)) {
            Verdict::Later(t) => assert!(t.duration_since(t0).abs_diff(MIN_WAIT) < ms(1)),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            judge(&o, fast, 0, CHUNK, t0 + MIN_WAIT),
            Verdict::Now(_)
        ));
        // An asker without a rate is trusted only after 2 x 500 ms.
        assert!(matches!(
            judge(&o, None, 0, CHUNK, t0 + ms(900)),
            Verdict::Later(_)
        ));
        assert!(matches!(
            judge(&o, None, 0, CHUNK, t0 + ms(1001)),
            Verdict::Now(_)
        ));
    }

    /// A holder that had a rate and went quiet becomes late, and its chunk moves once it is
    /// late enough; the wake-up time is exact.
    #[test]
    fn a_holder_that_stops_becomes_late() {
        let t0 = Instant::now();
        let r = Some(2.62 * MB); // 100 ms per chunk
        let o = at(t0, 0, 0, r, 0);
        let Verdict::Later(t) = judge(&o, r, 0, CHUNK, t0 + ms(50)) else {
            panic!("on time");
        };
        // Due at 100 ms; worth it once its time left (100 ms + lateness) exceeds 200 ms.
        let want = t0 + ms(200);
        assert!(t >= want - ms(1) && t <= want + ms(1), "{:?}", t - t0);
        assert!(matches!(
            judge(&o, r, 0, CHUNK, t0 + ms(150)),
            Verdict::Later(_)
        ));
        assert!(matches!(
            judge(&o, r, 0, CHUNK, t0 + ms(202)),
            Verdict::Now(_)
        ));
    }

    #[test]
    fn later_is_always_in_the_future() {
        let t0 = Instant::now();
        for asked in [0, 10, 49, 50, 400] {
            for rate in [None, Some(1.0), Some(1e9)] {
                let o = at(t0, asked, 3, rate, asked);
                let now = t0 + ms(asked);
                if let Verdict::Later(t) = judge(&o, Some(1e6), 2, CHUNK, now) {
                    assert!(t > now);
                }
            }
        }
    }
}
