//! What the DHT hands its caller: datagrams to send ([`Transmit`]), events ([`DhtEvent`],
//! among them the result of a lookup: [`QueryId`], [`QueryResult`], [`QueryStats`]), and
//! its counters ([`DhtStats`]). Re-exported by the `dht` module, where they are used as
//! `crate::dht::DhtEvent` and so on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::id::Id;
use crate::proto::dht::{Contact, Datagram};

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
    /// Providers lookups: time from start to the first answer that named a provider (a
    /// downloader could dial it from then on; the lookup goes on for more). Announces: time
    /// to the first ACK (the record is findable from then on).
    pub first_provider: Option<Duration>,
    /// Its requests one by one (whom it asked, when, what came back).
    pub trace: super::trace::LookupTrace,
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
        /// The node ID each provider was announced with, where the answers said (dht.md
        /// section 4.6): a downloader dials it expecting that ID (secure.md).
        node_ids: Vec<(SocketAddr, Id)>,
    },
    /// An announce finished.
    Announced {
        /// How many of the closest nodes acknowledged the record.
        stored_at: usize,
        /// How many were asked.
        asked: usize,
    },
}

impl QueryResult {
    /// The node IDs a provider lookup's answers named for its providers (empty otherwise).
    pub fn provider_ids(&self) -> &[(SocketAddr, Id)] {
        match self {
            QueryResult::Providers { node_ids, .. } => node_ids,
            _ => &[],
        }
    }
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
    /// A provider lookup (`get_providers`) still running learnt providers it had not named
    /// yet: a download can dial them now rather than when the lookup ends, which waits for
    /// the k closest nodes to answer (at 5% loss about twice as long as the first provider,
    /// dht.md section 7). The [`DhtEvent::QueryDone`] that ends the lookup names them again.
    ProvidersFound {
        /// Which lookup.
        id: QueryId,
        /// The providers this answer added.
        providers: Vec<SocketAddr>,
        /// The node IDs their records named, where an answer said.
        node_ids: Vec<(SocketAddr, Id)>,
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
    /// Of those, the ones answered ERROR RETRY_LATER (at most one per source a second).
    pub retry_later_sent: u64,
    /// ERROR RETRY_LATER answers to our own requests: their address was left alone for a
    /// while (dht.md section 13.1).
    pub backed_off: u64,
    /// Requests that waited before they were sent: for the end of such a back-off, or
    /// (of these) `requests_paced`.
    pub requests_held: u64,
    /// Requests that waited for their turn in our pace to their address (dht.md section
    /// 13.1).
    pub requests_paced: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// ANNOUNCEs refused for a bad token.
    pub bad_tokens: u64,
    /// PROVEs sent to a contact before it may enter the routing table (dht.md section 6.1):
    /// it must answer at its address and prove the key of its ID.
    pub verifications: u64,
    /// PROOFs that did not verify (wrong key for the ID, or a bad signature).
    pub bad_proofs: u64,
    /// ANNOUNCEs refused (STORE_FULL): a quota of the announcing address, or a full key or
    /// store in which the announcer was already among the most represented.
    pub records_refused: u64,
    /// Records dropped to make room for a less represented announcer.
    pub records_evicted: u64,
    /// Announces of our own keys not started because too many lookups ran
    /// ([`DhtConfig::max_queries`](super::DhtConfig::max_queries)): each such key stayed due
    /// and was announced at a later housekeeping round (issue 21).
    pub announces_postponed: u64,
}

/// A bootstrap address and how it has answered so far (for `status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapAddr {
    /// The address given to [`Dht::bootstrap_from`](super::Dht::bootstrap_from).
    pub addr: SocketAddr,
    /// Whether it ever answered a request.
    pub answered: bool,
    /// Requests to it that got no answer in time.
    pub unanswered: u32,
    /// The node ID it last answered with: not proven (the routing table takes it only
    /// after a PROOF), but enough for a sparse table's lookups to ask it.
    pub node: Option<Id>,
}
