//! State the event loop shares with worker threads: the latest [`StatusView`] of the node,
//! which the loop republishes twice a second and whenever the core says it changed, and a
//! few live counters. Workers answer read-only API commands (`status`, `local_list_content`,
//! `routing_table`) from it without a round trip through the loop, unless the loop has
//! marked it stale: then the loop publishes a fresh one first, so that a client always reads
//! its own changes. Guarded by a
//! parking_lot `RwLock`; the loop holds the write lock only to swap in a new `Arc`, never
//! across I/O.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::node_core::view::SecureCounts;
use crate::node_core::{Live, StatusView};

/// The shared view plus fixed facts about the node.
pub struct Shared {
    view: RwLock<Arc<StatusView>>,
    /// The node changed since `view` was built (the loop knows it; the pace delays the
    /// build). A reader that must see every change its client caused asks the loop for a
    /// fresh view instead ([`Shared::is_stale`]).
    stale: AtomicBool,
    /// When the node started.
    started: Instant,
    /// The API address.
    api_addr: SocketAddr,
    /// Wire bytes sent and received since start, kept live (not only at view updates) so
    /// that `status` samples are exact to the moment.
    pub wire_totals: [AtomicU64; 2],
    /// What the wire sessions met (secure.md), counted by the loop.
    pub secure: SecureStats,
    /// API requests by command (counted by the workers that parse them) and error replies
    /// (counted by the loop as they go out).
    pub api: crate::api::counts::ApiCounters,
}

/// Counters of the wire sessions (protocol-spec/secure.md).
#[derive(Default)]
pub struct SecureStats {
    /// Sessions established.
    pub sessions: AtomicU64,
    /// Handshakes that failed (bad messages, bad identity proofs, the wrong peer).
    pub handshake_failures: AtomicU64,
    /// Peers refused for speaking the previous, plaintext version.
    pub old_version: AtomicU64,
    /// Records that failed authentication (tampered, replayed, reordered) or were malformed.
    pub records_refused: AtomicU64,
    /// Peers whose HANDSHAKE frame named another node ID than the one they proved, or
    /// that proved another node ID than the one a DHT provider record named (the dial
    /// expected it).
    pub id_mismatch: AtomicU64,
}

impl SecureStats {
    /// Counts how a session ended badly.
    pub fn count(&self, e: &crate::secure::SecureError) {
        use crate::secure::SecureError as E;
        let c = match e {
            E::OldVersion(_) => &self.old_version,
            E::Tampered | E::BadRecord => &self.records_refused,
            E::ClaimedOtherId { .. } | E::WrongPeer { .. } => &self.id_mismatch,
            E::BadHandshake(_) | E::Noise(_) | E::BadIdentity(_) => &self.handshake_failures,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SecureCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SecureCounts {
            sessions: g(&self.sessions),
            handshake_failures: g(&self.handshake_failures),
            old_version: g(&self.old_version),
            records_refused: g(&self.records_refused),
            id_mismatch: g(&self.id_mismatch),
        }
    }
}

impl Shared {
    /// Shared state starting from `view`.
    pub fn new(view: StatusView, api_addr: SocketAddr) -> Self {
        Shared {
            view: RwLock::new(Arc::new(view)),
            stale: AtomicBool::new(false),
            started: Instant::now(),
            api_addr,
            wire_totals: Default::default(),
            secure: SecureStats::default(),
            api: Default::default(),
        }
    }

    /// The latest view (cheap: clones an `Arc`).
    pub fn view(&self) -> Arc<StatusView> {
        self.view.read().clone()
    }

    /// What changes faster than the view, now.
    pub fn live(&self) -> Live {
        Live {
            api_addr: Some(self.api_addr),
            uptime_secs: self.started.elapsed().as_secs(),
            up_total: self.wire_totals[0].load(Ordering::Relaxed),
            down_total: self.wire_totals[1].load(Ordering::Relaxed),
            secure: self.secure.snapshot(),
            api: self.api.snapshot(),
        }
    }

    /// Replaces the view; it is fresh until the loop marks it stale again.
    pub fn publish(&self, v: StatusView) {
        *self.view.write() = Arc::new(v);
        self.stale.store(false, Ordering::Release);
    }

    /// The node changed after the view was built (the loop calls this as it learns of a
    /// change, before it sends the reply that the change caused).
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Whether the view misses a change the loop knows of.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }
}
