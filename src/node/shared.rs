//! State the event loop shares with worker threads: a view of the node (routing table size,
//! records, counters) that the loop republishes twice a second and whenever it changes.
//! Workers answer read-only API commands (`status`, `local_list_content`) from it without a
//! round trip through the loop. Guarded by a parking_lot `RwLock`; the loop holds the write
//! lock only to swap in a new `Arc`, never across I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::dht::DhtStats;
use crate::id::Id;

/// A consistent picture of the node at one moment.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// The node ID.
    pub node_id: Id,
    /// The DHT/wire address.
    pub listen: SocketAddr,
    /// The address peers see us at, once they agree.
    pub external: Option<SocketAddr>,
    /// Contacts in the routing table.
    pub routing_table_size: usize,
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
    /// DHT lookups running.
    pub running_queries: usize,
}

/// The shared view plus fixed facts about the node.
pub struct Shared {
    view: RwLock<Arc<StatusView>>,
    /// When the node started.
    pub started: Instant,
    /// The API address.
    pub api_addr: SocketAddr,
}

impl Shared {
    /// Shared state starting from `view`.
    pub fn new(view: StatusView, api_addr: SocketAddr) -> Self {
        Shared {
            view: RwLock::new(Arc::new(view)),
            started: Instant::now(),
            api_addr,
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
