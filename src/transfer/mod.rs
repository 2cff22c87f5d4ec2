//! Moving content between peers: the download scheduler (sans-IO) and its bookkeeping.
//! Invariants and transitions: `STATE.md` beside this file.

pub mod engine;
pub mod scheduler;
pub mod seeding;
pub mod tie_order;

#[cfg(test)]
mod tests;
