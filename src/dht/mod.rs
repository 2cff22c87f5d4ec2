//! The Kademlia DHT as a sans-IO state machine (spec: `protocol-spec/dht.md`).
//!
//! [`Dht`] owns no socket and never reads a clock or a thread-local RNG. The caller (the mio
//! reactor in production, the simulator in tests) drives it:
//!
//! - **inputs**: [`Dht::handle_datagram`]`(now, from, bytes)`, [`Dht::handle_timeout`]`(now)`;
//! - **commands**: [`Dht::bootstrap_from`], [`Dht::add_contact`], [`Dht::find_node`],
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
//! answers insert contacts into the routing table: a node that sent us a request is PINGed
//! first (`serve.rs`). The routing table and the provider store hold at most a quota of
//! entries per source address and network ([`diversity`], spec section 13.2).

pub mod diversity;
pub mod lookup;
pub mod providers;
pub mod ratelimit;
pub mod routing;
mod serve;
pub mod token;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::id::Id;
use crate::proto::codec::canonical_addr;
use crate::proto::dht::{
    msg_type, Contact, Datagram, Message, FLAG_NOT_REACHABLE, MAX_PROVIDERS, TOKEN_LEN,
};
use diversity::DiversityLimits;
use lookup::{Lookup, Step};
use providers::{ProviderStore, StoreLimits};
use ratelimit::SourceLimiter;
use routing::{InsertResult, RoutingTable};
use token::TokenIssuer;

/// Tunables of the DHT. The defaults are the values in `protocol-spec/dht.md`.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bucket size and replication factor.
    pub k: usize,
    /// Requests in flight per lookup.
    pub alpha: usize,
    /// How long to wait for an answer before the request counts as failed. A lookup
    /// request gets one retry after this, so a lost datagram is not a lost candidate.
    pub request_timeout: Duration,
    /// After this long without an answer a lookup stops waiting for a candidate (it frees
    /// its slot and no longer holds up the end of the lookup); a late answer still counts.
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
    /// Most lookups running at once (commands beyond it fail at once).
    pub max_queries: usize,
    /// Requests per second accepted from one source address.
    pub rate_limit_per_source: f64,
    /// Burst allowed from one source address.
    pub rate_burst: f64,
    /// Distinct peers that must report the same address before we believe it is ours.
    pub external_addr_quorum: usize,
    /// Sets the NOT_REACHABLE flag on every datagram (the node is behind a NAT).
    pub not_reachable: bool,
    /// How often housekeeping runs (expiry, republish, refresh).
    pub maintenance_interval: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            k: routing::K,
            alpha: 3,
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
            max_queries: 1024,
            rate_limit_per_source: 100.0,
            rate_burst: 200.0,
            external_addr_quorum: 2,
            not_reachable: false,
            maintenance_interval: Duration::from_secs(5),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddr,
    /// The encoded datagram.
    pub payload: Vec<u8>,
}

/// Identifies a lookup started by a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// How a finished lookup went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Time from start to finish.
    pub duration: Duration,
    /// Requests that were answered.
    pub answers: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Sequential hops to the answer: for providers, to the first peer that returned a
    /// provider; for nodes, to the closest node found.
    pub hops: Option<u32>,
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryResult {
    /// The k closest live nodes to the target, closest first.
    Nodes(Vec<Contact>),
    /// The providers found and the closest nodes asked.
    Providers {
        /// Provider addresses (deduplicated).
        providers: Vec<SocketAddr>,
        /// The closest nodes that answered.
        closest: Vec<Contact>,
    },
    /// An announce finished.
    Announced {
        /// How many of the closest nodes acknowledged the record.
        stored_at: usize,
        /// How many were asked.
        asked: usize,
    },
}

/// Something the caller may want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtEvent {
    /// A lookup started by a command finished.
    QueryDone {
        /// Which one.
        id: QueryId,
        /// Its result.
        result: QueryResult,
        /// How it went.
        stats: QueryStats,
    },
    /// Enough peers agree on the address they see us at.
    ExternalAddress(SocketAddr),
    /// A NAT-traversal datagram (spec: `nat.md`) for the NAT layer: a request of one of the
    /// NAT types (already rate-limited), or a response that answers none of the DHT's own
    /// requests (the NAT layer's transactions, including PONGs to its punching PINGs).
    Nat {
        /// Source address.
        from: SocketAddr,
        /// The datagram.
        datagram: Datagram,
    },
}

/// Counters for status pages and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams that did not decode (bad input), counted and dropped.
    pub decode_errors: u64,
    /// Answers that matched no request, came from the wrong address or had the wrong type.
    pub unexpected_responses: u64,
    /// Requests refused by the per-source rate limit.
    pub rate_limited: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// ANNOUNCEs refused for a bad token.
    pub bad_tokens: u64,
    /// PINGs sent to verify the address of an unknown requester before it may enter the
    /// routing table.
    pub verifications: u64,
    /// ANNOUNCEs refused (STORE_FULL): a quota of the announcing address, or a full key or
    /// store in which the announcer was already among the most represented.
    pub records_refused: u64,
    /// Records dropped to make room for a less represented announcer.
    pub records_evicted: u64,
}

#[derive(Clone, Copy, Debug)]
enum Purpose {
    /// Part of a lookup.
    Lookup(QueryId),
    /// An ANNOUNCE sent by a finished announce lookup.
    Announce(QueryId),
    /// Checking whether the oldest contact of a full bucket is alive.
    EvictionPing,
    /// Reaching a bootstrap address whose node ID we do not know yet.
    Bootstrap,
    /// Asking a peer which address it sees us at.
    AddressPing,
    /// Checking that a node that sent us a request answers at the address it claims.
    Verify,
}

#[derive(Clone, Debug)]
struct Outstanding {
    to: SocketAddr,
    /// The ID we expect to answer (None when we only know an address).
    node: Option<Id>,
    req_type: u8,
    purpose: Purpose,
    /// The request, kept for the one retry a lookup request gets.
    msg: Message,
    /// 0 for the first try, 1 for the retry.
    attempt: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueryKind {
    FindNode,
    GetProviders,
    Announce {
        port: u16,
    },
    /// Internal lookups (bootstrap, refresh): no event.
    Maintenance,
}

#[derive(Debug)]
struct Query {
    kind: QueryKind,
    lookup: Lookup,
    started: Instant,
    providers: Vec<SocketAddr>,
    first_provider_hop: Option<u32>,
    /// Tokens from PROVIDERS answers, for the announce phase.
    tokens: HashMap<Id, [u8; TOKEN_LEN]>,
    /// In the announce phase: ANNOUNCEs still unanswered, and acknowledgements.
    announcing: Option<(usize, usize, usize)>,
}

#[derive(Clone, Copy, Debug)]
struct Provided {
    port: u16,
    next_republish: Instant,
    /// How soon to announce again after an announce that stored the record nowhere
    /// (doubling up to the republish interval).
    retry: Duration,
    /// The routing table's size at the last announce. A young network fills up after a
    /// node announced into it, and the k closest nodes to a key change with it: a table
    /// that has since doubled means announce again (until it is large).
    table_len: usize,
}

/// The first retry of an announce that stored the record nowhere.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(5);

/// Past this routing-table size (times k), a growing table no longer prompts announces.
const GROWTH_ANNOUNCES_UP_TO: usize = 8;

/// The DHT of one node. See the module docs for the call order.
#[derive(Debug)]
pub struct Dht {
    config: DhtConfig,
    id: Id,
    rng: StdRng,
    routing: RoutingTable,
    store: ProviderStore,
    tokens: TokenIssuer,
    limiter: SourceLimiter,
    requests: HashMap<u64, Outstanding>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Soft deadlines of lookup requests (see [`DhtConfig::soft_timeout`]).
    soft_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Addresses given to [`Dht::bootstrap_from`], retried while the table is empty.
    bootstrap_addrs: Vec<SocketAddr>,
    /// When to look up our own ID again.
    next_self_lookup: Instant,
    /// While the table holds fewer than k contacts the node keeps joining: when next, how
    /// long to wait after that, and the table size at the last attempt.
    next_sparse_join: Instant,
    sparse_backoff: Duration,
    sparse_len: usize,
    queries: HashMap<QueryId, Query>,
    next_query: u64,
    provided: HashMap<Id, Provided>,
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
    /// Addresses a verification PING is out to (bounded by [`serve::MAX_VERIFYING`]).
    verifying: HashSet<SocketAddr>,
    stats: DhtStats,
}

/// Most providers-behind-a-rendezvous remembered from lookups.
const MAX_SEEN_RENDEZVOUS: usize = 4096;

impl Dht {
    /// A node with ID `id`. `seed` feeds the node's own RNG (txids, token secrets, refresh
    /// targets): give a random seed in production and a fixed one in simulation.
    pub fn new(id: Id, config: DhtConfig, seed: u64, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let secret: [u8; 32] = rng.gen();
        Dht {
            routing: RoutingTable::new(id, config.diversity),
            store: ProviderStore::new(StoreLimits {
                max_total: config.max_provider_records,
                max_per_key: config.max_providers_per_key,
                ttl: config.provider_ttl,
                diversity: config.diversity,
            }),
            tokens: TokenIssuer::new(secret, now, config.token_rotation),
            limiter: SourceLimiter::new(config.rate_limit_per_source, config.rate_burst, 4096),
            next_maintenance: now + config.maintenance_interval,
            next_self_lookup: now + config.refresh_interval,
            next_sparse_join: now + config.maintenance_interval,
            sparse_backoff: config.maintenance_interval,
            sparse_len: 0,
            config,
            id,
            rng,
            requests: HashMap::new(),
            deadlines: BinaryHeap::new(),
            soft_deadlines: BinaryHeap::new(),
            bootstrap_addrs: Vec::new(),
            queries: HashMap::new(),
            next_query: 1,
            provided: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            observed: VecDeque::new(),
            external: None,
            rendezvous: None,
            seen_rendezvous: HashMap::new(),
            verifying: HashSet::new(),
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

    /// Drops deadlines of requests already answered from the top of the heaps, so that
    /// `poll_timeout` does not wake the caller for nothing.
    fn clean_deadlines(&mut self) {
        for heap in [&mut self.deadlines, &mut self.soft_deadlines] {
            while let Some(Reverse((_, txid))) = heap.peek() {
                if self.requests.contains_key(txid) {
                    break;
                }
                heap.pop();
            }
        }
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
                ..
            }) = self.requests.get(&txid)
            {
                let (qid, id) = (*qid, *id);
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.lookup.on_unresponsive(&id);
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
                        // A lost PING or PONG should not keep a new node out of the table.
                        Purpose::Verify => true,
                        _ => false,
                    };
                if retry {
                    // Once more: a single lost datagram should not cost the lookup a node.
                    self.send_request_attempt(now, out.to, out.node, out.msg, out.purpose, 1);
                } else {
                    self.on_request_failed(now, out, true);
                }
            }
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
        if !self.bootstrap_addrs.contains(&addr) && self.bootstrap_addrs.len() < 64 {
            self.bootstrap_addrs.push(addr);
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
        self.start_query(QueryKind::Announce { port }, key, now)
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

    /// Sends a datagram built by the NAT layer with our ID and flags (it keeps its own
    /// transactions: its answers come back as [`DhtEvent::Nat`]).
    pub fn send_nat(&mut self, to: SocketAddr, txid: u64, msg: Message) {
        self.send(to, txid, msg);
    }

    /// Stops republishing `key`. Records already stored elsewhere expire with their TTL.
    pub fn stop_providing(&mut self, key: &Id) {
        self.provided.remove(key);
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

    /// When [`Dht::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hard = self.deadlines.peek().map(|Reverse((d, _))| *d);
        let soft = self.soft_deadlines.peek().map(|Reverse((d, _))| *d);
        [hard, soft, Some(self.next_maintenance)]
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

    // ----- answers to our requests ---------------------------------------------------

    fn handle_response(&mut self, now: Instant, from: SocketAddr, dg: Datagram) {
        let Some(out) = self.requests.get(&dg.txid) else {
            // Not ours: maybe the NAT layer's (its own transactions), which checks it.
            if !is_nat_type(dg.msg.type_byte()) {
                self.stats.unexpected_responses += 1;
            }
            self.events.push_back(DhtEvent::Nat { from, datagram: dg });
            return;
        };
        let expected = match out.req_type {
            msg_type::PING => msg_type::PONG,
            msg_type::FIND_NODE => msg_type::NODES,
            msg_type::GET_PROVIDERS => msg_type::PROVIDERS,
            _ => msg_type::ACK,
        };
        let t = dg.msg.type_byte();
        if out.to != from
            || (t != expected && t != msg_type::ERROR)
            || out.node.is_some_and(|n| n != dg.sender)
        {
            // Wrong source, wrong type, or another node now answers at that address: not
            // an answer to our request. The request will time out normally.
            self.stats.unexpected_responses += 1;
            log::debug!(
                "dht: ignored {} from {from}: does not match request {:016x}",
                dg.msg.name(),
                dg.txid
            );
            return;
        }
        let Some(out) = self.requests.remove(&dg.txid) else {
            return;
        };
        if let Purpose::Verify = out.purpose {
            self.verifying.remove(&out.to);
        }
        if dg.flags & FLAG_NOT_REACHABLE == 0 {
            let c = Contact {
                id: dg.sender,
                addr: from,
            };
            match self.routing.insert(c, now) {
                InsertResult::Inserted => self.on_contact_added(now),
                InsertResult::PingOldest { ping } => self.send_request(
                    now,
                    ping.addr,
                    Some(ping.id),
                    Message::Ping,
                    Purpose::EvictionPing,
                ),
                _ => {}
            }
        }
        if let Message::Error { code, text } = &dg.msg {
            log::debug!(
                "dht: {from} answered {} with error {code}: {text}",
                crate::proto::dht::type_name(out.req_type)
            );
            // The contact is alive (it answered): a failure for the lookup or announce,
            // not for the routing table.
            self.on_request_failed(now, out, false);
            return;
        }
        match out.purpose {
            Purpose::EvictionPing => {
                if let Some(id) = out.node {
                    self.routing.on_ping_result(&id, true, now);
                }
            }
            Purpose::Bootstrap => {
                self.note_observed(dg.sender, &dg.msg);
                self.rejoin(now);
            }
            Purpose::AddressPing => self.note_observed(dg.sender, &dg.msg),
            // Answered from the address it claimed: inserted above like any answer.
            Purpose::Verify => {}
            Purpose::Lookup(qid) => self.on_lookup_answer(now, qid, from, dg),
            Purpose::Announce(qid) => self.on_announce_answer(now, qid, true),
        }
    }

    fn on_request_failed(&mut self, now: Instant, out: Outstanding, unresponsive: bool) {
        if let Purpose::Verify = out.purpose {
            self.verifying.remove(&out.to);
        }
        if let Some(id) = out.node {
            match out.purpose {
                // An ERROR answer still proves the old contact alive.
                Purpose::EvictionPing => self.routing.on_ping_result(&id, !unresponsive, now),
                _ if unresponsive => {
                    self.routing.on_failure(&id, now);
                }
                _ => {}
            }
        }
        match out.purpose {
            Purpose::Lookup(qid) => {
                if let (Some(q), Some(id)) = (self.queries.get_mut(&qid), out.node) {
                    q.lookup.on_failure(&id);
                }
                self.drive(qid, now);
            }
            Purpose::Announce(qid) => self.on_announce_answer(now, qid, false),
            _ => {}
        }
    }

    fn note_observed(&mut self, sender: Id, msg: &Message) {
        let Message::Pong { observed } = msg else {
            return;
        };
        // One report per peer, the most recent; bounded, oldest reports go first.
        self.observed.retain(|(id, _)| *id != sender);
        self.observed.push_back((sender, *observed));
        while self.observed.len() > 64 {
            self.observed.pop_front();
        }
        let votes = self.observed.iter().filter(|(_, a)| a == observed).count();
        if votes >= self.config.external_addr_quorum && self.external != Some(*observed) {
            self.external = Some(*observed);
            self.events.push_back(DhtEvent::ExternalAddress(*observed));
        }
    }

    fn on_lookup_answer(&mut self, now: Instant, qid: QueryId, from: SocketAddr, dg: Datagram) {
        let me = self.id;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let closer: Vec<Contact> = match dg.msg {
            Message::Nodes { contacts } => contacts,
            Message::Providers {
                token,
                providers,
                closer,
                rendezvous,
            } => {
                for r in rendezvous.unwrap_or_default() {
                    let p = resolve_self_provider(r.provider, from);
                    if !plausible(&p) || !plausible(&r.rendezvous) {
                        continue;
                    }
                    if self.seen_rendezvous.len() >= MAX_SEEN_RENDEZVOUS {
                        self.seen_rendezvous.clear();
                    }
                    self.seen_rendezvous.insert(p, (r.node, r.rendezvous));
                    if !q.providers.contains(&p) && q.providers.len() < 4 * MAX_PROVIDERS {
                        q.providers.push(p);
                    }
                }
                if !providers.is_empty() && q.first_provider_hop.is_none() {
                    q.first_provider_hop = q.lookup.hop_of(&dg.sender).map(|h| h + 1);
                }
                for p in providers {
                    let p = resolve_self_provider(p, from);
                    if !plausible(&p) {
                        continue;
                    }
                    if !q.providers.contains(&p) && q.providers.len() < 4 * MAX_PROVIDERS {
                        q.providers.push(p);
                    }
                }
                if q.tokens.len() < 4 * self.config.k {
                    q.tokens.insert(dg.sender, token);
                }
                closer
            }
            _ => Vec::new(),
        };
        let closer: Vec<Contact> = closer
            .into_iter()
            .filter(|c| c.id != me && plausible(&c.addr))
            .collect();
        q.lookup.on_success(&dg.sender, &closer);
        self.drive(qid, now);
    }

    fn on_announce_answer(&mut self, now: Instant, qid: QueryId, ok: bool) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if let Some((pending, acked, asked)) = q.announcing.as_mut() {
            *pending = pending.saturating_sub(1);
            if ok {
                *acked += 1;
            }
            if *pending == 0 {
                let (acked, asked) = (*acked, *asked);
                self.finish(
                    qid,
                    now,
                    Some(QueryResult::Announced {
                        stored_at: acked,
                        asked,
                    }),
                );
            }
        }
    }

    // ----- lookups ------------------------------------------------------------------

    fn start_query(&mut self, kind: QueryKind, target: Id, now: Instant) -> Option<QueryId> {
        if self.queries.len() >= self.config.max_queries {
            log::warn!(
                "dht: refusing a lookup: {} already running",
                self.queries.len()
            );
            return None;
        }
        let qid = QueryId(self.next_query);
        self.next_query += 1;
        self.routing.touch_bucket(&target, now);
        let seeds = self.routing.closest(&target, self.config.k, None);
        let lookup = Lookup::new(target, self.config.k, self.config.alpha, seeds);
        // This node is part of the DHT: records it holds itself are answers too (in a small
        // network it may hold the only copy).
        let providers = if kind == QueryKind::GetProviders {
            self.store.get(&target, now, MAX_PROVIDERS)
        } else {
            Vec::new()
        };
        self.queries.insert(
            qid,
            Query {
                kind,
                lookup,
                started: now,
                providers,
                first_provider_hop: None,
                tokens: HashMap::new(),
                announcing: None,
            },
        );
        self.drive(qid, now);
        Some(qid)
    }

    /// Sends whatever the lookup wants sent; finishes it when it is done.
    fn drive(&mut self, qid: QueryId, now: Instant) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.announcing.is_some() {
                return;
            }
            let enough_providers = q.kind == QueryKind::GetProviders
                && q.providers.len() >= self.config.providers_wanted;
            let step = if enough_providers {
                Step::Finished
            } else {
                q.lookup.next_step()
            };
            let target = q.lookup.target();
            let req = match q.kind {
                QueryKind::FindNode | QueryKind::Maintenance => Message::FindNode { target },
                QueryKind::GetProviders | QueryKind::Announce { .. } => {
                    Message::GetProviders { key: target }
                }
            };
            match step {
                Step::Query(c) => {
                    self.send_request(now, c.addr, Some(c.id), req, Purpose::Lookup(qid))
                }
                Step::Waiting => return,
                Step::Finished => {
                    self.lookup_finished(qid, now);
                    return;
                }
            }
        }
    }

    fn lookup_finished(&mut self, qid: QueryId, now: Instant) {
        let Some(q) = self.queries.get(&qid) else {
            return;
        };
        let closest = q.lookup.closest_succeeded();
        let key = q.lookup.target();
        match q.kind {
            QueryKind::Maintenance => self.finish(qid, now, None),
            QueryKind::FindNode => self.finish(qid, now, Some(QueryResult::Nodes(closest))),
            QueryKind::GetProviders => {
                let providers = q.providers.clone();
                self.finish(
                    qid,
                    now,
                    Some(QueryResult::Providers { providers, closest }),
                )
            }
            QueryKind::Announce { port } => {
                let targets: Vec<(Contact, [u8; TOKEN_LEN])> = closest
                    .iter()
                    .filter_map(|c| q.tokens.get(&c.id).map(|t| (*c, *t)))
                    .collect();
                // If we are among the k closest ourselves, hold our own record too, so a
                // lookup that reaches us finds it.
                let self_close = closest.len() < self.config.k
                    || closest
                        .last()
                        .is_some_and(|far| self.id.distance(&key) < far.id.distance(&key));
                if let (true, Some(ext)) = (self_close, self.external) {
                    let port = if port == 0 { ext.port() } else { port };
                    let via = self.rendezvous.map(|rv| (self.id, rv));
                    let _ = self
                        .store
                        .add_via(key, SocketAddr::new(ext.ip(), port), via, ext, now);
                }
                let rendezvous = self.rendezvous;
                let asked = targets.len();
                if asked == 0 {
                    self.finish(
                        qid,
                        now,
                        Some(QueryResult::Announced {
                            stored_at: 0,
                            asked: 0,
                        }),
                    );
                    return;
                }
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.announcing = Some((asked, 0, asked));
                }
                for (c, token) in targets {
                    let msg = Message::Announce {
                        key,
                        token,
                        port,
                        rendezvous,
                    };
                    self.send_request(now, c.addr, Some(c.id), msg, Purpose::Announce(qid));
                }
            }
        }
    }

    fn finish(&mut self, qid: QueryId, now: Instant, result: Option<QueryResult>) {
        let Some(q) = self.queries.remove(&qid) else {
            return;
        };
        let Some(result) = result else {
            return;
        };
        if let (QueryKind::Announce { .. }, QueryResult::Announced { stored_at, .. }) =
            (&q.kind, &result)
        {
            self.announced(q.lookup.target(), *stored_at, now);
        }
        let hops = match &result {
            QueryResult::Providers { .. } => q.first_provider_hop,
            QueryResult::Nodes(c) => c
                .first()
                .and_then(|c| q.lookup.hop_of(&c.id))
                .map(|h| h + 1),
            QueryResult::Announced { .. } => None,
        };
        let stats = QueryStats {
            duration: now.saturating_duration_since(q.started),
            answers: q.lookup.answers(),
            failures: q.lookup.failures(),
            hops,
        };
        self.events.push_back(DhtEvent::QueryDone {
            id: qid,
            result,
            stats,
        });
    }

    /// An announce of `key` finished, stored at `stored_at` nodes. Stored nowhere (no
    /// contact answered with a token yet, every answer lost), it is tried again soon rather
    /// than at the next republish; stored somewhere, retries start over.
    fn announced(&mut self, key: Id, stored_at: usize, now: Instant) {
        let interval = self.config.republish_interval;
        if let Some(p) = self.provided.get_mut(&key) {
            if stored_at == 0 {
                p.next_republish = now + p.retry;
                p.retry = (p.retry * 2).min(interval);
            } else {
                p.retry = ANNOUNCE_RETRY;
            }
        }
    }

    // ----- housekeeping -------------------------------------------------------------

    fn maintenance(&mut self, now: Instant) {
        let rng = &mut self.rng;
        self.tokens.maybe_rotate(now, || rng.gen());
        self.store.expire(now);
        self.limiter.sweep(now);
        let table = self.routing.len();
        let young = self.config.k * GROWTH_ANNOUNCES_UP_TO;
        let mut due: Vec<(Id, u16)> = self
            .provided
            .iter()
            .filter(|(_, p)| {
                p.next_republish <= now || (p.table_len < young && table >= 2 * p.table_len.max(1))
            })
            .map(|(k, p)| (*k, p.port))
            .collect();
        // HashMap order is random per process: sort so a seeded run is reproducible.
        due.sort_unstable();
        for (key, port) in due {
            let _ = self.announce(key, port, now);
        }
        let len = self.routing.len();
        if len > 0 && len < self.config.k && now >= self.next_sparse_join {
            // A sparse table means the join did not get far (lost datagrams, or we joined a
            // small part of the network): look ourselves up again, and ask the bootstrap
            // nodes again, backing off while it brings nothing new.
            self.sparse_backoff = if len > self.sparse_len {
                self.config.maintenance_interval
            } else {
                (self.sparse_backoff * 2).min(self.config.refresh_interval)
            };
            self.sparse_len = len;
            self.next_sparse_join = now + self.sparse_backoff;
            self.rejoin(now);
            for addr in self.bootstrap_addrs.clone() {
                self.send_request(now, addr, None, Message::Ping, Purpose::AddressPing);
            }
        }
        if now >= self.next_self_lookup && !self.routing.is_empty() {
            self.next_self_lookup = now + self.config.refresh_interval;
            self.rejoin(now);
        }
        let refresh = self
            .routing
            .buckets_to_refresh(now, self.config.refresh_interval);
        for b in refresh {
            let target = self.id.random_in_bucket(b, &mut self.rng);
            self.start_query(QueryKind::Maintenance, target, now);
        }
        if self.external.is_none()
            && !self.routing.is_empty()
            && self.observed.len() < self.config.external_addr_quorum
        {
            // Ask a few peers which address they see us at.
            let me = self.id;
            for c in self
                .routing
                .closest(&me, self.config.external_addr_quorum + 1, None)
            {
                self.send_request(now, c.addr, Some(c.id), Message::Ping, Purpose::AddressPing);
            }
        }
        let bootstrapping = self
            .requests
            .values()
            .any(|o| matches!(o.purpose, Purpose::Bootstrap));
        if self.routing.is_empty() && !bootstrapping {
            // Nobody answered yet (the PING or PONG was lost, or the bootstrap node was not
            // up): try again rather than stay alone for good.
            for addr in self.bootstrap_addrs.clone() {
                self.send_request(now, addr, None, Message::Ping, Purpose::Bootstrap);
            }
        }
    }

    /// The table just gained a contact. If it was empty, what we provide was announced to
    /// nobody: republish it now that there is somebody to tell.
    fn on_contact_added(&mut self, now: Instant) {
        if self.routing.len() == 1 {
            for p in self.provided.values_mut() {
                p.next_republish = now;
            }
            self.next_maintenance = now;
        }
    }

    // ----- sending ------------------------------------------------------------------

    fn flags(&self) -> u8 {
        if self.config.not_reachable {
            FLAG_NOT_REACHABLE
        } else {
            0
        }
    }

    fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: Option<Id>,
        msg: Message,
        purpose: Purpose,
    ) {
        self.send_request_attempt(now, to, node, msg, purpose, 0);
    }

    fn send_request_attempt(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: Option<Id>,
        msg: Message,
        purpose: Purpose,
        attempt: u8,
    ) {
        let mut txid: u64 = self.rng.gen();
        while self.requests.contains_key(&txid) {
            txid = self.rng.gen();
        }
        let req_type = msg.type_byte();
        self.requests.insert(
            txid,
            Outstanding {
                to,
                node,
                req_type,
                purpose,
                msg: msg.clone(),
                attempt,
            },
        );
        self.deadlines
            .push(Reverse((now + self.config.request_timeout, txid)));
        if attempt == 0 && matches!(purpose, Purpose::Lookup(_)) {
            self.soft_deadlines
                .push(Reverse((now + self.config.soft_timeout, txid)));
        }
        self.send(to, txid, msg);
    }

    fn send(&mut self, to: SocketAddr, txid: u64, msg: Message) {
        let dg = Datagram {
            flags: self.flags(),
            txid,
            sender: self.id,
            msg,
        };
        self.stats.datagrams_out += 1;
        self.transmits.push_back(Transmit {
            dest: to,
            payload: dg.encode(),
        });
    }
}

/// True for the message types of the NAT layer (nat.md), which the DHT passes on.
fn is_nat_type(t: u8) -> bool {
    (msg_type::DIALBACK..=msg_type::CALL_ACK).contains(&t)
}

/// A provider entry with an unspecified IP stands for the responder itself: its IP is the
/// answer's source IP, and port 0 is the answer's source port.
fn resolve_self_provider(p: SocketAddr, responder: SocketAddr) -> SocketAddr {
    if !p.ip().is_unspecified() {
        return p;
    }
    let port = if p.port() == 0 {
        responder.port()
    } else {
        p.port()
    };
    SocketAddr::new(responder.ip(), port)
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
mod tests;
