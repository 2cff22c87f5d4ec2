//! Moving content between peers: the download scheduler (sans-IO) and its bookkeeping.
//! Invariants and transitions: `STATE.md` beside this file.

pub mod bitset;
pub mod scheduler;

#[cfg(test)]
mod tests;
