//! The lookups this node runs ([`Query`]): FIND_NODE and GET_PROVIDERS lookups started by
//! a command, announces (a GET_PROVIDERS lookup for tokens, then ANNOUNCEs to the closest
//! nodes that gave one), and the internal lookups of bootstrap and refresh. The iterative
//! part (which candidate to ask next) is [`Lookup`]'s; this module feeds it answers and
//! failures, sends what it asks for, and turns a finished lookup into a
//! [`DhtEvent::QueryDone`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::lookup::{Goal, Lookup, PeerState, Step};
use super::requests::Purpose;
use super::trace::{LookupTrace, RunningLookup};
use super::{plausible, Dht, DhtEvent, QueryId, QueryResult, QueryStats, MAX_SEEN_RENDEZVOUS};
use crate::id::Id;
use crate::proto::dht::{
    Contact, Datagram, Message, MAX_PROVIDERS, MAX_PROVIDERS_WITH_IDS, MAX_RENDEZVOUS, TOKEN_LEN,
};

/// What a lookup is for, and so what it asks and what it ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryKind {
    FindNode,
    GetProviders,
    Announce {
        port: u16,
    },
    /// Internal lookups (bootstrap, refresh): no event.
    Maintenance,
    /// A reprovide sweep's region (`sweep.rs`): a GET_PROVIDERS lookup 2k wide, for the
    /// tokens of the nodes around a key; no event.
    Region,
}

impl QueryKind {
    /// Its name for learners ([`RunningLookup::kind`]).
    fn name(self) -> &'static str {
        match self {
            QueryKind::FindNode => "find_node",
            QueryKind::GetProviders => "get_providers",
            QueryKind::Announce { .. } => "announce",
            QueryKind::Maintenance => "maintenance",
            QueryKind::Region => "sweep",
        }
    }

    /// When its lookup ends (dht.md section 7, step 7).
    pub(super) fn goal(self, beta: usize) -> Goal {
        match self {
            // Finding: the node, or the records, are at the closest nodes.
            QueryKind::FindNode | QueryKind::GetProviders => Goal::Find { beta },
            // Storing at, or being known by, the true k closest: all of them must answer.
            QueryKind::Announce { .. } | QueryKind::Region | QueryKind::Maintenance => {
                Goal::Closest
            }
        }
    }
}

/// How long a lookup started before the node has any contact waits for the bootstrap node's
/// answer (a bootstrap PING times out after 2 s and is retried; past this the lookup runs
/// on what the table holds, which may be nothing).
pub(super) const JOIN_WAIT: Duration = Duration::from_secs(5);

/// A lookup started while the node was still joining, waiting for its first contact.
#[derive(Debug)]
pub(super) struct Deferred {
    qid: QueryId,
    kind: QueryKind,
    target: Id,
    /// When it runs anyway.
    until: Instant,
}

/// A running lookup, by [`QueryId`] in [`Dht`]'s `queries`.
#[derive(Debug)]
pub(super) struct Query {
    kind: QueryKind,
    pub(super) lookup: Lookup,
    started: Instant,
    providers: Vec<SocketAddr>,
    /// The node ID each provider was announced with, where an answer said (dht.md 4.6).
    provider_ids: HashMap<SocketAddr, Id>,
    first_provider_hop: Option<u32>,
    /// How many whole answers named each provider (this node's own store counts as one): a
    /// provider lookup ends once `provider_quorum` agree on one (dht.md section 7, step 7).
    named_by: HashMap<SocketAddr, usize>,
    /// When the first provider arrived (for [`QueryStats::first_provider`]).
    first_provider_at: Option<Instant>,
    /// Tokens from PROVIDERS answers, for the announce phase.
    tokens: HashMap<Id, [u8; TOKEN_LEN]>,
    /// In the announce phase: ANNOUNCEs still unanswered, and acknowledgements.
    announcing: Option<(usize, usize, usize)>,
    /// Whether an answer named a node (other than us): a lookup of our own ID answered
    /// only with empty lists reached nobody who knows anyone, so it is no join (dht.md
    /// section 11).
    named_nodes: bool,
    /// Its requests one by one (for learners).
    pub(super) trace: LookupTrace,
}

impl Query {
    /// Time since the lookup started.
    pub(super) fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

impl Dht {
    /// The lookups running now, the most recently started first (at most `max`), each with
    /// its requests so far: the learners' page shows them as they go.
    pub fn running_lookups(&self, max: usize) -> Vec<RunningLookup> {
        let mut all: Vec<RunningLookup> = self
            .queries
            .iter()
            .map(|(id, q)| RunningLookup {
                query: *id,
                kind: q.kind.name(),
                started: q.started,
                trace: q.trace.clone(),
            })
            .collect();
        all.sort_unstable_by_key(|r| std::cmp::Reverse((r.started, r.query)));
        all.truncate(max);
        all
    }

    pub(super) fn start_query(
        &mut self,
        kind: QueryKind,
        target: Id,
        now: Instant,
    ) -> Option<QueryId> {
        if self.queries.len() + self.deferred.len() >= self.config.max_queries {
            log::warn!(
                "dht: refusing a lookup: {} already running",
                self.queries.len() + self.deferred.len()
            );
            return None;
        }
        let qid = QueryId(self.next_query);
        self.next_query += 1;
        if kind != QueryKind::Maintenance && self.joining() {
            // Nobody to ask yet, but a bootstrap node is being asked: a lookup now would end
            // at once with nothing (a node started a moment ago would say "not found", and
            // an announce would reach nobody). Wait for the first contact, a little while.
            self.deferred.push(Deferred {
                qid,
                kind,
                target,
                until: now + JOIN_WAIT,
            });
            return Some(qid);
        }
        self.launch(qid, kind, target, now);
        Some(qid)
    }

    /// True while the table is empty and the node is still waiting for a bootstrap node to
    /// answer (until it warned that none does).
    fn joining(&self) -> bool {
        self.routing.is_empty() && !self.bootstrap.is_empty() && !self.bootstrap_warned
    }

    /// Starts the lookups that waited for the join: all of them once the table has a
    /// contact, or those whose wait is over. Returns the keys of announces started.
    pub(super) fn release_deferred(&mut self, now: Instant) -> Vec<Id> {
        if self.deferred.is_empty() {
            return Vec::new();
        }
        let joined = !self.joining();
        let (go, wait): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| joined || d.until <= now);
        self.deferred = wait;
        let mut announced = Vec::new();
        for d in go {
            if matches!(d.kind, QueryKind::Announce { .. }) {
                announced.push(d.target);
            }
            self.launch(d.qid, d.kind, d.target, now);
        }
        announced
    }

    /// When the first deferred lookup stops waiting for the join.
    pub(super) fn deferred_deadline(&self) -> Option<Instant> {
        self.deferred.iter().map(|d| d.until).min()
    }

    fn launch(&mut self, qid: QueryId, kind: QueryKind, target: Id, now: Instant) {
        self.routing.touch_bucket(&target, now);
        let width = if kind == QueryKind::Region {
            2 * self.config.k
        } else {
            self.config.k
        };
        let own_join = kind == QueryKind::Maintenance && target == self.id;
        let mut seeds = if own_join && self.joining_through_bootstrap(now) {
            // Not joined yet: through the bootstrap nodes only. The table holds the nodes
            // that joined through us, which know nothing else (dht.md section 11).
            Vec::new()
        } else {
            self.routing.closest(&target, width, None)
        };
        if seeds.len() < width {
            // A sparse table (a join whose PROOFs were lost, issue 21's islands) also asks
            // the bootstrap nodes that answered, proven or not: a lookup only asks them, and
            // every node that answers it is asked to prove its key and may enter the table.
            let way_in: Vec<Contact> = self.way_in().collect();
            seeds.extend(way_in);
        }
        let goal = kind.goal(self.config.beta);
        let lookup = Lookup::new(target, width, self.config.alpha, goal, seeds);
        // This node is part of the DHT: records it holds itself are answers too (in a small
        // network it may hold the only copy).
        let held = if kind == QueryKind::GetProviders {
            self.store.get_with_ids(&target, now, MAX_PROVIDERS)
        } else {
            Vec::new()
        };
        let providers: Vec<SocketAddr> = held.iter().map(|(a, _)| *a).collect();
        let provider_ids: HashMap<SocketAddr, Id> = held
            .into_iter()
            .filter_map(|(a, id)| id.map(|id| (a, id)))
            .collect();
        // Our own store counts as one holder's answer, if all of it was read.
        let named_by = providers
            .iter()
            .filter(|_| providers.len() < MAX_PROVIDERS)
            .map(|p| (*p, 1))
            .collect();
        let found_here = !providers.is_empty();
        if found_here {
            self.events.push_back(DhtEvent::ProvidersFound {
                id: qid,
                providers: providers.clone(),
                node_ids: providers
                    .iter()
                    .filter_map(|a| provider_ids.get(a).map(|id| (*a, *id)))
                    .collect(),
            });
        }
        self.queries.insert(
            qid,
            Query {
                kind,
                lookup,
                started: now,
                providers,
                named_by,
                provider_ids,
                first_provider_hop: None,
                first_provider_at: found_here.then_some(now),
                tokens: HashMap::new(),
                announcing: None,
                named_nodes: false,
                trace: LookupTrace::new(target),
            },
        );
        self.drive(qid, now);
    }

    /// Sends whatever the lookup wants sent; finishes it when it is done.
    pub(super) fn drive(&mut self, qid: QueryId, now: Instant) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.announcing.is_some() {
                return;
            }
            // Records live at the k closest nodes, each holding every provider announced
            // there: once `provider_quorum` of them named the same provider in whole
            // answers, the lookup has the set from that many holders, and a lost answer
            // among the rest need not be waited for. Agreement, not answers with any
            // providers: liars make providers up.
            let enough_providers = q.kind == QueryKind::GetProviders
                && (q.providers.len() >= self.config.providers_wanted
                    || q.named_by
                        .values()
                        .any(|&n| n >= self.config.provider_quorum));
            // A node lookup that reached the node itself has its answer: the node is there
            // and answers. Waiting for the rest of the k closest (or a lost answer among
            // them, a soft timeout) would only delay it (dht.md section 7, step 7).
            let target_found = q.kind == QueryKind::FindNode
                && q.lookup.state_of(&q.lookup.target()) == Some(PeerState::Succeeded);
            let step = if enough_providers || target_found {
                Step::Finished
            } else {
                q.lookup.next_step()
            };
            let target = q.lookup.target();
            let req = match q.kind {
                QueryKind::FindNode | QueryKind::Maintenance => Message::FindNode { target },
                QueryKind::GetProviders | QueryKind::Announce { .. } | QueryKind::Region => {
                    Message::GetProviders { key: target }
                }
            };
            match step {
                Step::Query(c) => {
                    let round = q.lookup.hop_of(&c.id).unwrap_or(0);
                    let at = q.elapsed(now);
                    q.trace.sent(c.id, c.addr, round, at);
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
            QueryKind::Maintenance => {
                if key == self.id && q.named_nodes {
                    // Our neighbourhood has heard of us: the join is done (dht.md section 11).
                    // Not when every answer was empty: a bootstrap node that is joining
                    // itself answers with an empty table and takes nobody in, and a node
                    // that counted that as its join was left with a far bucket filled by a
                    // refresh, unknown to any node near it (issue 21's islands at 10% loss).
                    self.joined = true;
                }
                self.finish(qid, now, None)
            }
            QueryKind::FindNode => self.finish(qid, now, Some(QueryResult::Nodes(closest))),
            QueryKind::Region => {
                let answered: Vec<(Contact, [u8; TOKEN_LEN])> = closest
                    .iter()
                    .filter_map(|c| q.tokens.get(&c.id).map(|t| (*c, *t)))
                    .collect();
                let (req, ans) = (
                    u64::from(q.lookup.answers() + q.lookup.failures()),
                    u64::from(q.lookup.answers()),
                );
                self.finish(qid, now, None);
                self.sweep_region_done(qid, key, answered, req, ans, now);
            }
            QueryKind::GetProviders => {
                let providers = q.providers.clone();
                let node_ids = providers
                    .iter()
                    .filter_map(|p| q.provider_ids.get(p).map(|id| (*p, *id)))
                    .collect();
                self.finish(
                    qid,
                    now,
                    Some(QueryResult::Providers {
                        providers,
                        closest,
                        node_ids,
                    }),
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
            first_provider: q
                .first_provider_at
                .map(|t| t.saturating_duration_since(q.started)),
            trace: q.trace,
        };
        self.events.push_back(DhtEvent::QueryDone {
            id: qid,
            result,
            stats,
        });
    }

    // ----- answers ------------------------------------------------------------------

    pub(super) fn on_lookup_answer(
        &mut self,
        now: Instant,
        qid: QueryId,
        from: SocketAddr,
        dg: Datagram,
    ) {
        let me = self.id;
        // While we join through our bootstrap nodes, what they name is not the join: one
        // that has not joined itself names only its own way in (dht.md section 11), and the
        // join counts once a node they named answers.
        let from_way_in =
            self.joining_through_bootstrap(now) && self.way_in().any(|c| c.id == dg.sender);
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let mut named = 0;
        let before = q.providers.len();
        let closer: Vec<Contact> = match dg.msg {
            Message::Nodes { contacts } => contacts,
            Message::Providers {
                token,
                providers,
                closer,
                rendezvous,
                provider_ids,
            } => {
                named = providers.len() + rendezvous.as_ref().map_or(0, Vec::len);
                // An answer as long as an answer may be (section 4.6) may have left records
                // out: it is no copy of its node's whole set, and does not count towards the
                // agreement that ends the lookup.
                let cap = if provider_ids.is_some() {
                    MAX_PROVIDERS_WITH_IDS
                } else {
                    MAX_PROVIDERS
                };
                let whole = providers.len() < cap
                    && rendezvous.as_ref().map_or(0, Vec::len) < MAX_RENDEZVOUS;
                let ids = provider_ids.unwrap_or_default();
                let mut named_here = Vec::with_capacity(named);
                for r in rendezvous.unwrap_or_default() {
                    let p = resolve_self_provider(r.provider, from);
                    if !plausible(&p) || !plausible(&r.rendezvous) {
                        continue;
                    }
                    named_here.push(p);
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
                if !providers.is_empty() && q.first_provider_at.is_none() {
                    q.first_provider_at = Some(now);
                }
                for (i, p) in providers.into_iter().enumerate() {
                    let p = resolve_self_provider(p, from);
                    if !plausible(&p) {
                        continue;
                    }
                    named_here.push(p);
                    // The first answer that names a provider's ID is kept: a liar can
                    // only make a downloader hang up on that address (wire dial with the
                    // expected ID, secure.md), not redirect it.
                    if let Some(id) = ids.get(i).filter(|id| id.0 != [0; 32]) {
                        if q.provider_ids.len() < 4 * MAX_PROVIDERS {
                            q.provider_ids.entry(p).or_insert(*id);
                        }
                    }
                    if !q.providers.contains(&p) && q.providers.len() < 4 * MAX_PROVIDERS {
                        q.providers.push(p);
                    }
                }
                // Each answer counts once per provider it names (at most its own length).
                named_here.sort_unstable();
                named_here.dedup();
                for p in named_here.into_iter().filter(|_| whole) {
                    if let Some(n) = q.named_by.get_mut(&p) {
                        *n += 1;
                    } else if q.named_by.len() < 4 * MAX_PROVIDERS {
                        q.named_by.insert(p, 1);
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
        q.named_nodes |= !closer.is_empty() && !from_way_in;
        let known = q.lookup.known();
        q.lookup.on_success(&dg.sender, &closer);
        let ids: Vec<Id> = closer.iter().map(|c| c.id).collect();
        let new = q.lookup.known().saturating_sub(known);
        let at = q.elapsed(now);
        q.trace.answered(&dg.sender, at, &ids, new, named);
        if matches!(q.kind, QueryKind::GetProviders) && q.providers.len() > before {
            let providers = q.providers[before..].to_vec();
            let node_ids = providers
                .iter()
                .filter_map(|p| q.provider_ids.get(p).map(|id| (*p, *id)))
                .collect();
            self.events.push_back(DhtEvent::ProvidersFound {
                id: qid,
                providers,
                node_ids,
            });
        }
        self.drive(qid, now);
    }

    pub(super) fn on_announce_answer(&mut self, now: Instant, qid: QueryId, ok: bool) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if ok && q.first_provider_at.is_none() {
            // The record is stored somewhere: findable from now on.
            q.first_provider_at = Some(now);
        }
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
}

/// A provider entry with an unspecified IP stands for the responder itself: its IP is the
/// answer's source IP, and port 0 is the answer's source port.
pub(super) fn resolve_self_provider(p: SocketAddr, responder: SocketAddr) -> SocketAddr {
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
