//! The scheduler's invariants (`src/transfer/STATE.md`), checked by the tests after every
//! step.

use super::{ChunkState, Scheduler};

impl Scheduler {
    /// Checks the invariants documented in STATE.md; used by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, st) in self.state.iter().enumerate() {
            let asked = self.peers.values().filter(|p| p.asked(i as u32)).count();
            if asked != self.requested_by[i] as usize {
                return Err(format!(
                    "chunk {i}: requested_by {} but {asked} peers asked",
                    self.requested_by[i]
                ));
            }
            match st {
                ChunkState::Have if !self.have.contains(i) => {
                    return Err(format!("chunk {i}: Have but not in have"))
                }
                ChunkState::Requested if asked == 0 => {
                    return Err(format!("chunk {i}: Requested from nobody"))
                }
                ChunkState::Missing if asked != 0 => {
                    return Err(format!("chunk {i}: Missing but asked"))
                }
                _ => {}
            }
            let avail = self.peers.values().filter(|p| p.has.contains(i)).count();
            if avail != self.availability[i] as usize {
                return Err(format!(
                    "chunk {i}: availability {} but {avail} peers have it",
                    self.availability[i]
                ));
            }
        }
        let verifying = self
            .state
            .iter()
            .filter(|s| **s == ChunkState::Verifying)
            .count();
        if verifying != self.verifying {
            return Err(format!(
                "verifying counter {} but {verifying} chunks verifying",
                self.verifying
            ));
        }
        let missing: std::collections::BTreeSet<(u16, usize, usize)> = (0..self.state.len())
            .filter(|&i| self.state[i] == ChunkState::Missing)
            .map(|i| (self.availability[i], self.order.rank(i), i))
            .collect();
        if &missing != self.rarity.entries() {
            return Err(format!(
                "rarity index has {} entries, {} chunks are missing (or keys differ)",
                self.rarity.entries().len(),
                missing.len()
            ));
        }
        for (k, p) in &self.peers {
            let useful = p
                .has
                .iter()
                .filter(|&i| super::wanted::needed(&self.state, i))
                .count();
            if useful != p.useful {
                return Err(format!("peer {k}: useful {} but {useful}", p.useful));
            }
            if p.in_flight.len() > self.cfg.max_pipeline {
                return Err(format!("peer {k}: {} in flight", p.in_flight.len()));
            }
        }
        Ok(())
    }
}
