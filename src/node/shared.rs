//! State the event loop shares with worker threads: a view of the node (routing table size,
//! records, counters) that the loop republishes twice a second and whenever it changes.
//! Workers answer read-only API commands (`status`, `local_list_content`, `routing_table`,
//! which lists every contact: the routing table itself is what is shared) from it without a
//! round trip through the loop. Guarded by a parking_lot `RwLock`; the loop holds the write
//! lock only to swap in a new `Arc`, never across I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::dht::DhtStats;
use crate::id::Id;
use crate::proto::dht::Contact;

/// A consistent picture of the node at one moment.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// The node ID.
    pub node_id: Id,
    /// The DHT/wire address.
    pub listen: SocketAddr,
    /// The address peers see us at, once they agree.
    pub external: Option<SocketAddr>,
    /// The routing table's contacts with the bucket each is in and how long ago it was heard
    /// from, in seconds.
    pub routing_table: Vec<(Contact, usize, u64)>,
    /// Provider records held for others.
    pub provider_records: usize,
    /// Keys this node announces.
    pub provided: Vec<Id>,
    /// Keys this node knows of (held records and its own).
    pub known_keys: Vec<Id>,
    /// DHT counters.
    pub stats: DhtStats,
    /// Datagrams dropped by the emulated loss.
    pub emulated_drops: u64,
    /// API connections open.
    pub api_connections: usize,
    /// API connections refused: input that is not a request (HTTP, garbage), or too slow.
    pub api_refused: u64,
    /// DHT lookups running.
    pub running_queries: usize,
    /// Wire-protocol bandwidth: limits, totals and rates.
    pub bandwidth: BandwidthView,
    /// NAT traversal: reachability, rendezvous, connection set-ups (nat.md).
    pub nat: serde_json::Value,
}

/// The shared view plus fixed facts about the node.
pub struct Shared {
    view: RwLock<Arc<StatusView>>,
    /// When the node started.
    pub started: Instant,
    /// The API address.
    pub api_addr: SocketAddr,
    /// Wire bytes sent and received since start, kept live (not only at view updates) so
    /// that `status` samples are exact to the moment.
    pub wire_totals: [std::sync::atomic::AtomicU64; 2],
}

impl Shared {
    /// Shared state starting from `view`.
    pub fn new(view: StatusView, api_addr: SocketAddr) -> Self {
        Shared {
            view: RwLock::new(Arc::new(view)),
            started: Instant::now(),
            api_addr,
            wire_totals: Default::default(),
        }
    }

    /// The latest view (cheap: clones an `Arc`).
    pub fn view(&self) -> (Arc<StatusView>, &Shared) {
        (self.view.read().clone(), self)
    }

    /// Replaces the view.
    pub fn publish(&self, v: StatusView) {
        *self.view.write() = Arc::new(v);
    }
}

/// Bandwidth figures for `status`.
#[derive(Clone, Debug, Default)]
pub struct BandwidthView {
    /// The limits in force.
    pub limits: crate::net::bandwidth::Limits,
    /// Bytes per second sent, over about the last second.
    pub up_rate: u64,
    /// Bytes per second received, over about the last second.
    pub down_rate: u64,
}
