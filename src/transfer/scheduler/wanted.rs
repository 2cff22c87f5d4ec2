//! Part of a folder (`--only`): chunks that are not wanted are [`ChunkState::Skipped`],
//! never asked for, and do not count towards completion.

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

/// Whether chunk `i` is still to be fetched: wanted and not verified.
pub(super) fn needed(state: &[ChunkState], i: usize) -> bool {
    matches!(
        state.get(i),
        Some(ChunkState::Missing | ChunkState::Requested | ChunkState::Verifying)
    )
}
