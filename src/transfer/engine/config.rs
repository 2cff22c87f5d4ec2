//! The engine's tunables ([`EngineConfig`]).

use std::time::Duration;

use crate::proto::wire;
use crate::transfer::scheduler::SchedulerConfig;

/// Tunables.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Connections per content we open or accept at most.
    pub max_peers_per_content: usize,
    /// Peers we upload to at once.
    pub upload_slots: usize,
    /// Chunks being read or waiting to be sent, per connection.
    pub max_pieces_pending: usize,
    /// Requests we queue from one peer before answering BUSY.
    pub max_queued_requests: usize,
    /// A HANDSHAKE must arrive this soon after connecting.
    pub handshake_timeout: Duration,
    /// Send KEEPALIVE after this much silence.
    pub keepalive: Duration,
    /// Close after this much silence from the peer.
    pub idle_timeout: Duration,
    /// How often unchoked slots rotate when peers are waiting.
    pub unchoke_rotation: Duration,
    /// An unchoked peer that has asked for nothing for this long loses its slot to a
    /// waiting one. Being interested only says we have something it lacks; it may be
    /// fetching all of that elsewhere, and its slot would stand idle (the swarm simulator
    /// found half the slots idle while twenty peers waited).
    pub idle_slot_timeout: Duration,
    /// How often to ask for more peers while a download lacks them. The first retries come
    /// sooner (1 s, doubling up to this), since content announced a moment ago may not be
    /// stored in the DHT yet.
    pub peer_query_interval: Duration,
    /// The download scheduler's tunables.
    pub scheduler: SchedulerConfig,
    /// Super-seeding (`seeding.rs`): a node sharing a complete file sends each peer an empty
    /// BITFIELD and offers chunks with HAVE, fewest copies in the swarm first, instead of
    /// announcing them all. Off: a full BITFIELD, and peers ask for what they like.
    pub super_seed: bool,
    /// Super-seeding: offers an unchoked peer holds that it has not requested yet (a choked
    /// one holds one, enough to stay interested). Each request is answered with a new offer,
    /// so this bounds the choice, not the pipeline.
    pub super_seed_offers: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_peers_per_content: 40,
            upload_slots: 8,
            max_pieces_pending: 4,
            max_queued_requests: 128,
            handshake_timeout: Duration::from_secs(10),
            keepalive: wire::KEEPALIVE_INTERVAL,
            idle_timeout: wire::IDLE_TIMEOUT,
            unchoke_rotation: Duration::from_secs(10),
            idle_slot_timeout: Duration::from_secs(3),
            peer_query_interval: Duration::from_secs(15),
            scheduler: SchedulerConfig::default(),
            super_seed: true,
            super_seed_offers: 4,
        }
    }
}
