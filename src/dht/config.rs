//! The DHT's tunables, [`DhtConfig`], with the defaults of `protocol-spec/dht.md`.

use std::time::Duration;

use super::diversity::DiversityLimits;
use super::routing;

/// Tunables of the DHT. The defaults are the values in `protocol-spec/dht.md`.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bucket size and replication factor.
    pub k: usize,
    /// Requests in flight per lookup.
    pub alpha: usize,
    /// A lookup that finds something (a node, providers) ends once this many of the closest
    /// candidates have answered, not all k (dht.md section 7, step 7); lookups that pick
    /// nodes to store at still wait for the k closest.
    pub beta: usize,
    /// How long to wait for an answer before the request counts as failed. A lookup
    /// request gets one retry after this, so a lost datagram is not a lost candidate.
    pub request_timeout: Duration,
    /// The longest a lookup waits for a candidate's answer before it sends the request again
    /// and goes on without it (freeing its slot; a late answer still counts). The soft
    /// timeout in use is `srtt + 4 rttvar` of the measured round trips (`rtt.rs`), at least
    /// 100 ms, at most this.
    pub soft_timeout: Duration,
    /// How long a provider record lives without being refreshed.
    pub provider_ttl: Duration,
    /// How often this node re-announces what it provides.
    pub republish_interval: Duration,
    /// A bucket with no lookup for this long is refreshed.
    pub refresh_interval: Duration,
    /// How often the token secret rotates.
    pub token_rotation: Duration,
    /// Most provider records held for others.
    pub max_provider_records: usize,
    /// Most providers held for one key.
    pub max_providers_per_key: usize,
    /// How many routing contacts and provider records one source address and one network
    /// may hold (spec section 13.2; the defaults are in [`DiversityLimits`]'s docs).
    pub diversity: DiversityLimits,
    /// A providers lookup stops once it has this many providers.
    pub providers_wanted: usize,
    /// A providers lookup also stops once this many whole answers named the same provider
    /// (dht.md section 7, step 7): copies of the set from that many of the nodes holding it.
    pub provider_quorum: usize,
    /// Most lookups running at once (commands beyond it fail at once).
    pub max_queries: usize,
    /// Requests per second accepted from one source address.
    pub rate_limit_per_source: f64,
    /// Burst allowed from one source address.
    pub rate_burst: f64,
    /// Requests per second this node sends to one address, at most (dht.md section 13.1):
    /// below a peer's default limit, so that a burst of ours (every key republished at
    /// once, many downloads' lookups in a two-node network) waits its turn here instead of
    /// being dropped there; the rest of the peer's budget is left to our NAT requests.
    pub pace_per_destination: f64,
    /// Requests sent to one address at once before the pace applies.
    pub pace_burst: f64,
    /// Distinct peers that must report the same address before we believe it is ours.
    pub external_addr_quorum: usize,
    /// Sets the NOT_REACHABLE flag on every datagram (the node is behind a NAT).
    pub not_reachable: bool,
    /// How often housekeeping runs (expiry, republish, refresh).
    pub maintenance_interval: Duration,
    /// Republish keys due together in a reprovide sweep (region lookups and ANNOUNCE_MANY
    /// batches, dht.md section 10.1) rather than one announce lookup each.
    pub reprovide_sweep: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            k: routing::K,
            alpha: 3,
            beta: 3,
            request_timeout: Duration::from_secs(2),
            soft_timeout: Duration::from_millis(600),
            provider_ttl: Duration::from_secs(2 * 3600),
            republish_interval: Duration::from_secs(30 * 60),
            refresh_interval: Duration::from_secs(15 * 60),
            token_rotation: Duration::from_secs(5 * 60),
            max_provider_records: 100_000,
            max_providers_per_key: 64,
            diversity: DiversityLimits::default(),
            providers_wanted: 50,
            provider_quorum: 2,
            max_queries: 1024,
            rate_limit_per_source: 100.0,
            rate_burst: 200.0,
            pace_per_destination: 80.0,
            pace_burst: 160.0,
            external_addr_quorum: 2,
            not_reachable: false,
            maintenance_interval: Duration::from_secs(5),
            reprovide_sweep: true,
        }
    }
}
