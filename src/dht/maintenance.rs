//! Housekeeping, run every `maintenance_interval`: token rotation, record expiry, the
//! republishing of what this node provides ([`Provided`]), rejoining while the routing
//! table is sparse, bucket refresh, asking peers for our external address, and retrying
//! the bootstrap while the table is empty (and warning when no bootstrap address answers).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::queries::QueryKind;
use super::requests::Purpose;
use super::sweep::SWEEP_MIN_KEYS;
use super::{Dht, QueryId};
use crate::id::Id;
use crate::proto::dht::{Contact, Message};

/// A key this node provides itself, by key in [`Dht`]'s `provided`: when to announce it again.
#[derive(Clone, Copy, Debug)]
pub(super) struct Provided {
    pub(super) port: u16,
    pub(super) next_republish: Instant,
    /// How soon to announce again after an announce that stored the record nowhere
    /// (doubling up to the republish interval).
    pub(super) retry: Duration,
    /// The routing table's size at the last announce. A young network fills up after a
    /// node announced into it, and the k closest nodes to a key change with it: a table
    /// that has since doubled means announce again (until it is large).
    pub(super) table_len: usize,
}

/// Unanswered PINGs to every bootstrap address before the node warns: the first PING and its
/// retry (about 4 s with the defaults: 2 s timeout each), so a single lost datagram does not
/// raise a false alarm.
const BOOTSTRAP_TRIES_BEFORE_WARNING: u32 = 2;

/// The first retry of an announce that stored the record nowhere.
pub(super) const ANNOUNCE_RETRY: Duration = Duration::from_secs(5);

/// Past this routing-table size (times k), a growing table no longer prompts announces.
const GROWTH_ANNOUNCES_UP_TO: usize = 8;

/// How long after its first bootstrap answer a node that has not joined keeps answering
/// with its way in only and looking itself up through its bootstrap nodes only (dht.md
/// section 11); past it, a bootstrap node that answered once and then went away, or a join
/// that never completes, leaves the node answering and joining as before.
pub(super) const JOIN_GRACE: Duration = Duration::from_secs(120);

impl Dht {
    /// An announce of `key` finished, stored at `stored_at` nodes. Stored nowhere (no
    /// contact answered with a token yet, every answer lost), it is tried again soon rather
    /// than at the next republish; stored somewhere, retries start over.
    pub(super) fn announced(&mut self, key: Id, stored_at: usize, now: Instant) {
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

    /// Starts the announce lookup of provided `key`. Refused (as many lookups running as
    /// `max_queries` allows), the key is due again after [`ANNOUNCE_RETRY`] instead of a
    /// whole republish interval later, and counted (`announces_postponed`).
    pub(super) fn start_announce(&mut self, key: Id, port: u16, now: Instant) -> Option<QueryId> {
        let q = self.start_query(QueryKind::Announce { port }, key, now);
        if q.is_none() {
            self.stats.announces_postponed += 1;
            if let Some(p) = self.provided.get_mut(&key) {
                p.next_republish = now + ANNOUNCE_RETRY;
            }
        }
        q
    }

    /// One announce lookup per key of `due`, as many as leave a quarter of `max_queries`
    /// for other lookups (a download's must not be refused because we republish); the
    /// others stay due for the next round, counted and logged once, never dropped.
    fn announce_due(&mut self, due: Vec<(Id, u16)>, now: Instant) {
        let cap = self.config.max_queries - self.config.max_queries / 4;
        let room = cap.saturating_sub(self.queries.len() + self.deferred.len());
        let later = due.len().saturating_sub(room);
        if later > 0 {
            self.stats.announces_postponed += later as u64;
            log::info!(
                "dht: {later} of {} keys due wait for the next round: {} lookups running",
                due.len(),
                self.queries.len() + self.deferred.len()
            );
        }
        for (key, port) in due.into_iter().take(room) {
            let _ = self.announce(key, port, now);
        }
    }

    // ----- housekeeping -------------------------------------------------------------

    pub(super) fn maintenance(&mut self, now: Instant) {
        let rng = &mut self.rng;
        self.tokens.maybe_rotate(now, || rng.gen());
        self.store.expire(now);
        self.limiter.sweep(now);
        self.pacer.sweep(now);
        self.shrink_request_maps();
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
        // Behind a rendezvous too: the batches carry it (dht.md section 4.9a).
        let sweep = self.config.reprovide_sweep && due.len() >= SWEEP_MIN_KEYS;
        if sweep {
            // With an empty table the keys stay due: the first contact brings the next round
            // at once (`on_contact_added`). One announce each would start more lookups than
            // a node runs at once (a library of 100,000 keys).
            if !self.sweeping() && !self.routing.is_empty() {
                // Many keys at once: one sweep over the keyspace (sweep.rs). Keys that fall
                // due while a sweep runs wait for it to end.
                let next = now + self.config.republish_interval;
                for (key, _) in &due {
                    if let Some(p) = self.provided.get_mut(key) {
                        p.next_republish = next;
                        p.table_len = table;
                    }
                }
                self.start_sweep(due, now);
            }
        } else {
            self.announce_due(due, now);
        }
        let len = self.routing.len();
        // A node whose table holds only nodes that joined through it (they verified it, so
        // its table is not empty) while its own bootstrap node never answered is the root
        // of a separate network: it keeps asking its bootstrap node (issue 21).
        let unbootstrapped =
            !self.bootstrap.is_empty() && !self.bootstrap.iter().any(|b| b.answered);
        let sparse = len < self.config.k || !self.joined || unbootstrapped;
        if len > 0 && sparse && now >= self.next_sparse_join {
            // A sparse table means the join did not get far (lost datagrams, or we joined a
            // small part of the network): look ourselves up again, and ask the bootstrap
            // nodes again, backing off while it brings nothing new. So does a lookup of our
            // own ID that nobody answered, however full the table: bucket refreshes can fill
            // the far buckets with k contacts while no node near us has heard of us, and
            // far nodes, whose buckets for us are full, never take us in (the islands of
            // issue 21).
            self.sparse_backoff = if len > self.sparse_len {
                self.config.maintenance_interval
            } else {
                (self.sparse_backoff * 2).min(self.config.refresh_interval)
            };
            self.sparse_len = len;
            self.next_sparse_join = now + self.sparse_backoff;
            self.rejoin(now);
            // A bootstrap address that never answered gets a bootstrap PING: its answer
            // starts a join through it.
            let bootstrapping = self
                .requests
                .values()
                .any(|o| matches!(o.purpose, Purpose::Bootstrap));
            for b in self.bootstrap.clone() {
                let purpose = if b.answered {
                    Purpose::AddressPing
                } else if !bootstrapping {
                    Purpose::Bootstrap
                } else {
                    continue;
                };
                self.send_request(now, b.addr, None, Message::Ping, purpose);
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
            for addr in self.bootstrap_addrs() {
                self.send_request(now, addr, None, Message::Ping, Purpose::Bootstrap);
            }
        }
    }

    /// True while the node joins through its bootstrap nodes: one of them answered less
    /// than [`JOIN_GRACE`] ago and no lookup of our own ID has been answered with a contact
    /// yet. Meanwhile the lookups of our own ID start from the bootstrap nodes that answered
    /// only, and our answers name only them (dht.md section 11): what the table holds is
    /// nodes that joined through us, and a network grown from them alone is an island.
    pub(super) fn joining_through_bootstrap(&self, now: Instant) -> bool {
        !self.joined && self.join_grace_until.is_some_and(|t| now < t)
    }

    /// The bootstrap nodes that answered, under the IDs they answered with: the way into
    /// the network of a node that has not joined.
    pub(super) fn way_in(&self) -> impl Iterator<Item = Contact> + '_ {
        let me = self.id;
        self.bootstrap.iter().filter_map(move |b| {
            b.node
                .filter(|id| *id != me)
                .map(|id| Contact { id, addr: b.addr })
        })
    }

    fn bootstrap_addrs(&self) -> Vec<SocketAddr> {
        self.bootstrap.iter().map(|b| b.addr).collect()
    }

    /// A request to `to` was answered (`answered`) or timed out. If `to` is a bootstrap
    /// address, notes it; once every bootstrap address has failed twice with none ever
    /// answering, warns (once): a mistyped or dead address must not go unnoticed while the
    /// node keeps retrying it.
    pub(super) fn on_bootstrap_result(
        &mut self,
        now: Instant,
        to: SocketAddr,
        answered_by: Option<Id>,
    ) {
        let Some(b) = self.bootstrap.iter_mut().find(|b| b.addr == to) else {
            return;
        };
        if let Some(id) = answered_by {
            b.answered = true;
            b.node = Some(id);
            if self.join_grace_until.is_none() {
                self.join_grace_until = Some(now + JOIN_GRACE);
            }
            return;
        }
        b.unanswered = b.unanswered.saturating_add(1);
        let silent = self
            .bootstrap
            .iter()
            .all(|b| !b.answered && b.unanswered >= BOOTSTRAP_TRIES_BEFORE_WARNING);
        if silent && !self.bootstrap_warned {
            self.bootstrap_warned = true;
            let addrs: Vec<String> = self.bootstrap.iter().map(|b| b.addr.to_string()).collect();
            let then = if self.routing.is_empty() {
                "this node knows no other node yet and keeps trying"
            } else {
                "this node joined through the contacts it saved"
            };
            log::warn!(
                "bootstrap: no answer from {} after {BOOTSTRAP_TRIES_BEFORE_WARNING} tries; {then}. \
                 Is a node running there, with that --port, and does UDP reach it? \
                 (`peershare status` shows whether it ever answers)",
                addrs.join(", ")
            );
        }
    }

    /// The table just gained a contact. If it was empty, what we provide was announced to
    /// nobody: republish it now that there is somebody to tell.
    /// Lookups that waited for this first contact start now (an announce among them needs
    /// no second, immediate republish).
    pub(super) fn on_contact_added(&mut self, now: Instant) {
        if self.routing.len() == 1 {
            let started = self.release_deferred(now);
            for (key, p) in self.provided.iter_mut() {
                if !started.contains(key) {
                    p.next_republish = now;
                }
            }
            self.next_maintenance = now;
        }
    }
}
