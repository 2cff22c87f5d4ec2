//! Part of a folder (`--only`): chunks that are not wanted are [`ChunkState::Skipped`],
//! never asked for, and do not count towards completion. And streaming's urgent chunks.

use super::{ChunkState, Scheduler};
use crate::bitset::BitSet;

impl Scheduler {
    /// Fetches only the chunks in `wanted` (part of a folder): the others are never asked
    /// for, and the download is complete when the wanted ones are verified.
    pub fn with_wanted(mut self, wanted: &BitSet) -> Self {
        for (i, st) in self.state.iter_mut().enumerate() {
            if *st == ChunkState::Missing && !wanted.contains(i) {
                self.rarity.remove(
                    &self.order,
                    self.availability.get(i).copied().unwrap_or(0),
                    i,
                );
                *st = ChunkState::Skipped;
                self.missing = self.missing.saturating_sub(1);
            }
        }
        for p in self.peers.values_mut() {
            p.useful = p.has.iter().filter(|&i| needed(&self.state, i)).count();
        }
        self.check_complete();
        self
    }
}

impl Scheduler {
    /// Streaming (http.md section 6): chunks `urgent` are asked for before any other, as
    /// pipelines free up (requests in flight are not cancelled). Replaces the last urgent
    /// range: one stream's position at a time.
    pub fn set_urgent(&mut self, now: std::time::Instant, urgent: std::ops::Range<u32>) {
        self.urgent = urgent;
        self.try_request_all(now);
    }
}

/// Whether chunk `i` is still to be fetched: wanted and not verified.
pub(super) fn needed(state: &[ChunkState], i: usize) -> bool {
    matches!(
        state.get(i),
        Some(ChunkState::Missing | ChunkState::Requested | ChunkState::Verifying)
    )
}
