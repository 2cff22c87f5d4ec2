//! The Kademlia DHT as a sans-IO state machine (spec: `protocol-spec/dht.md`).
//!
//! [`Dht`] owns no socket and never reads a clock or a thread-local RNG. The caller (the mio
//! reactor in production, the simulator in tests) drives it:
//!
//! - **inputs**: [`Dht::handle_datagram`]`(now, from, bytes)`, [`Dht::handle_timeout`]`(now)`;
//! - **commands**: [`Dht::bootstrap_from`], [`Dht::add_contact`] (persisted contacts),
//!   [`Dht::add_claimed_contact`] (LAN announcements: proven first), [`Dht::find_node`],
//!   [`Dht::get_providers`], [`Dht::announce`], [`Dht::stop_providing`];
//! - **outputs**: [`Dht::poll_transmit`], [`Dht::poll_event`], [`Dht::poll_timeout`].
//!
//! The rule (from str0m): after every input or command, drain `poll_transmit` and
//! `poll_event` until they return `None`, then sleep until `poll_timeout` (or the next
//! datagram) and call `handle_timeout` when it passes.
//!
//! Every request the node sends is recorded by transaction ID with a deadline; answers are
//! accepted only from the address the request went to and only with a matching type, and a
//! missing answer becomes a failure for the lookup and for the routing table. Only such
//! answers insert contacts into the routing table, and only once they have proven their keys
//! (`proof.rs`): a node that sent us a request is asked for its proof first (`serve.rs`). The routing table and the provider store hold at most a quota of
//! entries per source address and network ([`diversity`], spec section 13.2).
//!
//! This file holds [`Dht`] and its public calls; the rest of `impl Dht` is split by concept:
//! the requests we send and their answers (`requests.rs`), lookups and announces
//! (`queries.rs`), housekeeping and republishing (`maintenance.rs`), and the requests we
//! answer (`serve.rs`). [`DhtConfig`] is in `config.rs`, and what the caller gets back
//! ([`Transmit`], [`DhtEvent`], [`DhtStats`]) in `outputs.rs`.

mod backoff;
mod config;
pub mod diversity;
pub mod lookup;
mod maintenance;
mod outputs;
mod pace;
mod proof;
pub mod providers;
mod queries;
pub mod ratelimit;
mod requests;
pub mod routing;
mod rtt;
mod serve;
mod sweep;
pub mod token;
pub mod trace;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::id::Id;
use crate::identity::Identity;
use crate::proto::codec::canonical_addr;
use crate::proto::dht::{msg_type, Contact, Datagram, Message};
pub use config::DhtConfig;
use maintenance::{Provided, ANNOUNCE_RETRY};
pub use outputs::{BootstrapAddr, DhtEvent, DhtStats, QueryId, QueryResult, QueryStats, Transmit};
pub use proof::ProofScheme;
use providers::{ProviderStore, StoreLimits};
use queries::{Deferred, Query, QueryKind};
use ratelimit::SourceLimiter;
use requests::{Outstanding, Purpose, RequestTable};
use routing::RoutingTable;
pub use sweep::SweepStats;
use token::TokenIssuer;

/// The DHT of one node. See the module docs for the call order.
#[derive(Debug)]
pub struct Dht {
    config: DhtConfig,
    id: Id,
    /// The node's identity key: signs PROOFs (`proof.rs`).
    signer: proof::Signer,
    /// Proven (ID, address) pairs beyond the routing table (`proof.rs`).
    proofs: proof::ProofCache,
    rng: StdRng,
    routing: RoutingTable,
    store: ProviderStore,
    tokens: TokenIssuer,
    limiter: SourceLimiter,
    /// The pace of our requests per destination (dht.md section 13.1).
    pacer: pace::Pacer,
    /// Addresses that told us to retry later, and our requests waiting for them.
    backoff: backoff::Backoff,
    requests: RequestTable,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Soft deadlines of lookup requests (see [`DhtConfig::soft_timeout`]).
    soft_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Addresses given to [`Dht::bootstrap_from`], retried while the table is empty, with
    /// how they answered.
    bootstrap: Vec<BootstrapAddr>,
    /// Whether the node has warned that no bootstrap address answers (once per run).
    bootstrap_warned: bool,
    /// When to look up our own ID again.
    next_self_lookup: Instant,
    /// While the table holds fewer than k contacts the node keeps joining: when next, how
    /// long to wait after that, and the table size at the last attempt.
    next_sparse_join: Instant,
    sparse_backoff: Duration,
    sparse_len: usize,
    /// Whether a lookup of our own ID has been answered: until then the node keeps joining
    /// whatever its table holds (dht.md section 11).
    joined: bool,
    /// Until when a node that has not joined answers with its way in only, and looks itself
    /// up through its bootstrap nodes only: [`JOIN_GRACE`] after a bootstrap address first
    /// answered (dht.md section 11).
    join_grace_until: Option<Instant>,
    queries: HashMap<QueryId, Query>,
    /// Lookups started before the first contact, waiting for the join (bounded with
    /// `queries` by `max_queries`).
    deferred: Vec<Deferred>,
    next_query: u64,
    provided: HashMap<Id, Provided>,
    /// Keys removed from `provided` so far ([`Dht::provided_generation`]).
    provided_removed: u64,
    /// The reprovide sweep running, if any (`sweep.rs`).
    sweep: Option<sweep::Sweep>,
    sweep_stats: SweepStats,
    /// Keys a download began to provide, waiting to be announced together, and when they
    /// go (`sweep.rs`, [`Dht::provide_soon`]).
    fresh: std::collections::BTreeMap<Id, u16>,
    fresh_due: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhtEvent>,
    next_maintenance: Instant,
    /// Addresses peers reported seeing us at, oldest first, one per peer.
    observed: VecDeque<(Id, SocketAddr)>,
    external: Option<SocketAddr>,
    /// Our rendezvous while we cannot be reached directly (spec: `nat.md`): announced with
    /// every provider record.
    rendezvous: Option<SocketAddr>,
    /// Providers behind a rendezvous seen in lookups: provider address -> (node, rendezvous).
    /// Bounded by [`MAX_SEEN_RENDEZVOUS`].
    seen_rendezvous: HashMap<SocketAddr, (Id, SocketAddr)>,
    /// Addresses a PROVE is out to (bounded by [`serve::MAX_VERIFYING`]).
    verifying: HashSet<SocketAddr>,
    /// Requests sent in several copies (same txid) that were answered, until their request
    /// timeout: a second answer is a duplicate, not an unexpected response.
    answered_copies: VecDeque<(Instant, u64)>,
    /// Round trips of answered requests: the lookups' soft timeout follows them.
    rtt: rtt::RttEstimate,
    stats: DhtStats,
}

/// Shrinks `map` when it holds under a quarter of its capacity (an empty one gives back
/// all): maps sized by a burst keep their largest size otherwise. Called every maintenance
/// tick, so a map that fills again reallocates at most that often. Iteration order is no
/// part of any result (maps iterated for a decision are sorted first, see `maintenance.rs`).
fn shrink_sparse_map<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, V, S>,
) {
    if map.capacity() > 4 * map.len() {
        map.shrink_to(2 * map.len());
    }
}

/// Most providers-behind-a-rendezvous remembered from lookups.
const MAX_SEEN_RENDEZVOUS: usize = 4096;

impl Dht {
    /// A node with the identity `identity` (its node ID is the SHA-256 of the public key;
    /// the key signs the node's PROOFs, dht.md section 6.1). `seed` feeds the node's own RNG
    /// (txids, nonces, token secrets, refresh targets): give a random seed in production
    /// and a fixed one in simulation.
    pub fn new(identity: Identity, config: DhtConfig, seed: u64, now: Instant) -> Self {
        let id = identity.node_id();
        let mut rng = StdRng::seed_from_u64(seed);
        // Wiped when `new` returns; the token issuer and the proof cache keep their own.
        let secret = zeroize::Zeroizing::new(rng.gen::<[u8; 32]>());
        Dht {
            routing: RoutingTable::new(id, config.diversity),
            store: ProviderStore::new(StoreLimits {
                max_total: config.max_provider_records,
                max_per_key: config.max_providers_per_key,
                ttl: config.provider_ttl,
                diversity: config.diversity,
            }),
            tokens: TokenIssuer::new(*secret, now, config.token_rotation),
            limiter: SourceLimiter::new(config.rate_limit_per_source, config.rate_burst, 4096),
            pacer: pace::Pacer::new(config.pace_per_destination, config.pace_burst),
            next_maintenance: now + config.maintenance_interval,
            next_self_lookup: now + config.refresh_interval,
            next_sparse_join: now + config.maintenance_interval,
            sparse_backoff: config.maintenance_interval,
            sparse_len: 0,
            joined: false,
            join_grace_until: None,
            config,
            id,
            signer: proof::Signer::new(identity),
            proofs: proof::ProofCache::new(&secret),
            rng,
            backoff: Default::default(),
            requests: RequestTable::default(),
            deadlines: BinaryHeap::new(),
            soft_deadlines: BinaryHeap::new(),
            bootstrap: Vec::new(),
            bootstrap_warned: false,
            queries: HashMap::new(),
            deferred: Vec::new(),
            next_query: 1,
            provided: HashMap::new(),
            provided_removed: 0,
            sweep: None,
            sweep_stats: SweepStats::default(),
            fresh: Default::default(),
            fresh_due: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            observed: VecDeque::new(),
            external: None,
            rendezvous: None,
            seen_rendezvous: HashMap::new(),
            verifying: HashSet::new(),
            answered_copies: VecDeque::new(),
            rtt: rtt::RttEstimate::default(),
            stats: DhtStats::default(),
        }
    }

    // ----- inputs -------------------------------------------------------------------

    /// A datagram arrived from `from`. Malformed input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let from = canonical_addr(from);
        self.stats.datagrams_in += 1;
        let dg = match Datagram::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.stats.decode_errors += 1;
                log::debug!("dht: dropped malformed datagram from {from}: {e}");
                return;
            }
        };
        if dg.sender == self.id {
            // Our own datagram came back (we were given our own address as a peer).
            return;
        }
        if dg.msg.is_request() {
            self.handle_request(now, from, dg);
        } else {
            self.handle_response(now, from, dg);
        }
        self.clean_deadlines();
    }

    /// Time has passed: expire requests, drive lookups, run housekeeping.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((deadline, txid))) = self.soft_deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.soft_deadlines.pop();
            if let Some(Outstanding {
                purpose: Purpose::Lookup(qid),
                node: Some(id),
                to,
                msg,
                copies,
                ..
            }) = self.requests.get_mut(&txid)
            {
                let (qid, id, to) = (*qid, *id, *to);
                // A lookup that has ended waits for nothing: its requests still out get no
                // more copies (an answer that comes is still learned from).
                let Some(q) = self.queries.get(&qid) else {
                    continue;
                };
                let closest = q.lookup.is_closest(&id);
                let again = *copies < 2 || (closest && *copies < requests::CLOSEST_COPIES);
                if again {
                    // Slow, or lost: send the same request again now (an answer to any copy
                    // counts) rather than only at the hard timeout, and give it one more
                    // soft timeout to answer; the closest candidate gets a few more copies.
                    *copies += 1;
                    let msg = msg.clone();
                    self.send(to, txid, msg);
                    let soft = self.soft_timeout();
                    self.soft_deadlines.push(Reverse((now + soft, txid)));
                }
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.lookup.on_unresponsive(&id, again);
                    if again {
                        q.trace.resent(&id);
                    }
                }
                self.drive(qid, now);
            }
        }
        while let Some(Reverse((deadline, txid))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(out) = self.requests.remove(&txid) {
                self.stats.timeouts += 1;
                let retry = out.attempt == 0
                    && match out.purpose {
                        Purpose::Lookup(q) => self.queries.contains_key(&q),
                        // A lost PING or PONG should not keep a new node out of the table,
                        // nor a joining node out of the network (its first PING may have
                        // gone out before the bootstrap node had bound its port).
                        Purpose::Prove | Purpose::Bootstrap => true,
                        // A lost batch would cost up to 36 records on that node.
                        Purpose::Batch => true,
                        _ => false,
                    };
                if retry {
                    if matches!(out.purpose, Purpose::Bootstrap) {
                        // Each unanswered PING counts towards the warning.
                        self.on_bootstrap_result(now, out.to, None);
                    }
                    if matches!(out.purpose, Purpose::Batch) {
                        self.sweep_stats.batches += 1;
                    }
                    if let (Purpose::Lookup(q), Some(id)) = (out.purpose, out.node) {
                        if let Some(q) = self.queries.get_mut(&q) {
                            q.trace.resent(&id);
                        }
                    }
                    // Once more: a single lost datagram should not cost the lookup a node.
                    self.send_request_attempt(now, out.to, out.node, out.msg, out.purpose, 1);
                } else {
                    self.on_request_failed(now, out, true);
                }
            }
        }
        if self.deferred_deadline().is_some_and(|t| t <= now) {
            // The join took too long (or failed and was warned about): run them anyway.
            let _ = self.release_deferred(now);
        }
        for h in self.backoff.take_due(now) {
            self.send_or_hold(now, h);
        }
        if self.fresh_due.is_some_and(|t| t <= now) {
            self.announce_fresh(now);
        }
        if now >= self.next_maintenance {
            self.maintenance(now);
            self.next_maintenance = now + self.config.maintenance_interval;
        }
        self.clean_deadlines();
    }

    // ----- commands -----------------------------------------------------------------

    /// Contacts a node known only by address (a bootstrap node). When it answers it joins
    /// the table and a lookup of our own ID fills the table around us.
    pub fn bootstrap_from(&mut self, addr: SocketAddr, now: Instant) {
        let addr = canonical_addr(addr);
        if !self.bootstrap.iter().any(|b| b.addr == addr) && self.bootstrap.len() < 64 {
            self.bootstrap.push(BootstrapAddr {
                addr,
                answered: false,
                unanswered: 0,
                node: None,
            });
        }
        self.send_request(
            now,
            canonical_addr(addr),
            None,
            Message::Ping,
            Purpose::Bootstrap,
        );
    }

    /// Adds a contact from persisted state, unverified: if it is gone, failures remove it.
    pub fn add_contact(&mut self, contact: Contact, now: Instant) {
        let _ = self.routing.insert_if_room(contact, now);
    }

    /// Looks up our own ID through whatever contacts the table holds: how a restarted node
    /// rejoins without a bootstrap address.
    pub fn rejoin(&mut self, now: Instant) {
        let me = self.id;
        self.start_query(QueryKind::Maintenance, me, now);
    }

    /// Starts a lookup for the k closest nodes to `target`.
    pub fn find_node(&mut self, target: Id, now: Instant) -> Option<QueryId> {
        self.start_query(QueryKind::FindNode, target, now)
    }

    /// Starts a lookup for the providers of `key`.
    pub fn get_providers(&mut self, key: Id, now: Instant) -> Option<QueryId> {
        self.start_query(QueryKind::GetProviders, key, now)
    }

    /// Announces that this node provides `key` on TCP `port` (0: the DHT's UDP port), and
    /// keeps republishing it every `republish_interval` until [`Dht::stop_providing`].
    pub fn announce(&mut self, key: Id, port: u16, now: Instant) -> Option<QueryId> {
        let retry = self.provided.get(&key).map_or(ANNOUNCE_RETRY, |p| p.retry);
        self.provided.insert(
            key,
            Provided {
                port,
                next_republish: now + self.config.republish_interval,
                retry,
                table_len: self.routing.len(),
            },
        );
        self.start_announce(key, port, now)
    }

    /// Provides `keys` on TCP `port` (0: the DHT's UDP port) without announcing each now:
    /// they are due at once, and the housekeeping round that [`Dht::handle_timeout`] runs
    /// next republishes them together in a reprovide sweep (dht.md section 10.1). For a
    /// library loaded at start-up: one sweep instead of one announce lookup per key.
    pub fn provide_many(&mut self, keys: &[Id], port: u16, now: Instant) {
        if !keys.is_empty() {
            self.next_maintenance = now;
        }
        for key in keys {
            self.provided.entry(*key).or_insert(Provided {
                port,
                next_republish: now,
                retry: ANNOUNCE_RETRY,
                table_len: self.routing.len(),
            });
        }
    }

    /// What the reprovide sweeps did so far.
    pub fn sweep_stats(&self) -> &SweepStats {
        &self.sweep_stats
    }

    /// Whether this node holds a provider record of `key` for `addr` (for the simulator's
    /// checks).
    pub fn holds_record(&self, key: &Id, addr: &SocketAddr, now: Instant) -> bool {
        self.store
            .get(key, now, usize::MAX)
            .iter()
            .any(|a| a == addr)
    }

    /// The rendezvous that this node's provider record of `key` for `addr` names, if it holds
    /// one that does (for the simulator's checks of records announced behind a NAT).
    pub fn record_rendezvous(
        &self,
        key: &Id,
        addr: &SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.store
            .get_via(key, now, usize::MAX)
            .into_iter()
            .find_map(|(a, _, rv)| (a == *addr).then_some(rv))
    }

    /// Marks this node reachable or not: the NOT_REACHABLE flag of every datagram it sends
    /// (dht.md, section 2) follows.
    pub fn set_reachable(&mut self, reachable: bool) {
        self.config.not_reachable = !reachable;
    }

    /// Sets the rendezvous announced with our provider records (`None`: we are reachable).
    /// A change republishes every key at once, so the records say how to reach us.
    pub fn set_rendezvous(&mut self, rendezvous: Option<SocketAddr>, now: Instant) {
        if self.rendezvous == rendezvous {
            return;
        }
        self.rendezvous = rendezvous;
        for p in self.provided.values_mut() {
            p.next_republish = now;
        }
        self.next_maintenance = now;
    }

    /// The node ID and rendezvous of a provider address learnt from a lookup, if that
    /// provider is reached through a rendezvous.
    pub fn rendezvous_of(&self, provider: &SocketAddr) -> Option<(Id, SocketAddr)> {
        self.seen_rendezvous.get(provider).copied()
    }

    /// Forgets the rendezvous learnt for `provider`: an introduction through it failed (the
    /// provider left it, or found it can be reached and dropped it), so the next dial to
    /// `provider` is a plain one, until a provider record names a rendezvous again.
    pub fn forget_rendezvous(&mut self, provider: &SocketAddr) {
        self.seen_rendezvous.remove(provider);
    }

    /// Remembers that `provider` (node `node`) is reached through rendezvous `rv`, as a
    /// PROVIDERS answer would have told; for tests of the layers above.
    #[cfg(test)]
    pub(crate) fn note_rendezvous(&mut self, provider: SocketAddr, node: Id, rv: SocketAddr) {
        self.seen_rendezvous.insert(provider, (node, rv));
    }

    /// Sends a datagram built by the NAT layer with our ID and flags, and its own `flags`
    /// besides (it keeps its own transactions: its answers come back as [`DhtEvent::Nat`]).
    pub fn send_nat(&mut self, to: SocketAddr, txid: u64, msg: Message, flags: u8) {
        self.send_flagged(to, txid, msg, flags);
    }

    /// Stops republishing `key`. Records already stored elsewhere expire with their TTL.
    pub fn stop_providing(&mut self, key: &Id) {
        if self.provided.remove(key).is_some() {
            self.provided_removed += 1;
        }
    }

    /// Changes whenever the set of keys provided changes (a key added makes it longer, a key
    /// removed counts): the status view rebuilds its sorted list only then.
    pub fn provided_generation(&self) -> (usize, u64) {
        (self.provided.len(), self.provided_removed)
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// How long a lookup waits for a request before going on without it (and sending it
    /// again): a few measured round trips, at most [`DhtConfig::soft_timeout`].
    pub(super) fn soft_timeout(&self) -> Duration {
        self.rtt.soft_timeout(self.config.soft_timeout)
    }

    /// When [`Dht::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hard = self.deadlines.peek().map(|Reverse((d, _))| *d);
        let soft = self.soft_deadlines.peek().map(|Reverse((d, _))| *d);
        [
            hard,
            soft,
            Some(self.next_maintenance),
            self.deferred_deadline(),
            self.fresh_due,
            self.backoff.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- introspection ------------------------------------------------------------

    /// This node's ID.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The routing table (read-only).
    pub fn routing_table(&self) -> &RoutingTable {
        &self.routing
    }

    /// Provider records held for others.
    pub fn provider_records(&self) -> usize {
        self.store.len()
    }

    /// Keys this node holds provider records for, and the keys it provides itself.
    pub fn known_keys(&self) -> Vec<Id> {
        let mut v: Vec<Id> = self.store.keys().copied().collect();
        v.extend(self.provided.keys().copied());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Keys this node holds provider records for (from others).
    pub fn held_keys(&self) -> impl Iterator<Item = &Id> {
        self.store.keys()
    }

    /// Keys this node itself provides.
    pub fn provided_keys(&self) -> Vec<Id> {
        self.provided.keys().copied().collect()
    }

    /// Whether this node provides `key` itself (announced and not stopped).
    pub fn is_providing(&self, key: &Id) -> bool {
        self.provided.contains_key(key)
    }

    /// The address peers agree they see us at, if known.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    /// The nodes that saw us at the address peers agree on ([`Dht::external_addr`]): the
    /// ones to ask whether that address can be reached from outside (nat.md section 3).
    pub fn address_witnesses(&self) -> Vec<Id> {
        self.observed
            .iter()
            .filter(|(_, a)| Some(*a) == self.external)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether our NAT gives each destination another port: peers never agreed on our
    /// address, and two of them saw us at the same IP from different ports (a symmetric NAT,
    /// nat.md section 3). Peers that see us at different IPs (one on our LAN, one outside)
    /// prove nothing.
    pub fn ports_vary(&self) -> bool {
        self.external.is_none()
            && self.observed.iter().enumerate().any(|(i, (_, a))| {
                self.observed
                    .iter()
                    .skip(i + 1)
                    .any(|(_, b)| b.ip() == a.ip() && b.port() != a.port())
            })
    }

    /// The bootstrap addresses and whether they answer.
    pub fn bootstrap_status(&self) -> &[BootstrapAddr] {
        &self.bootstrap
    }

    /// Counters.
    pub fn stats(&self) -> &DhtStats {
        &self.stats
    }

    /// Lookups running.
    pub fn running_queries(&self) -> usize {
        self.queries.len()
    }

    /// Requests awaiting an answer.
    pub fn outstanding_requests(&self) -> usize {
        self.requests.len()
    }
}

/// True for the message types of the NAT layer (nat.md), which the DHT passes on.
fn is_nat_type(t: u8) -> bool {
    (msg_type::DIALBACK..=msg_type::CALL_ACK).contains(&t)
}

/// Addresses a contact list may reasonably carry: not unspecified, not port 0, not multicast.
fn plausible(addr: &SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
    };
    ip_ok && addr.port() != 0
}

#[cfg(test)]
mod join_tests;
#[cfg(test)]
mod tests;
