//! The requests this node sends and the answers it waits for: each outstanding request
//! ([`Outstanding`]) is recorded by transaction ID with a deadline and the reason it was
//! sent ([`Purpose`]); an answer counts only from the address the request went to, with
//! the matching type and node ID, and a missing one becomes a failure for the lookup and
//! for the routing table. Answers are where contacts enter the routing table, and PONGs
//! where the node learns the address it is seen at.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use super::backoff::Held;
use super::routing::InsertResult;
use super::{is_nat_type, Dht, DhtEvent, QueryId, Transmit};
use crate::id::Id;
use crate::proto::dht::{
    error_code, msg_type, Contact, Datagram, Message, FLAG_NOT_REACHABLE, FLAG_PROVIDER_IDS,
};

/// Copies of a lookup request sent to the closest candidate before it stops holding up the
/// end of the lookup (dht.md section 7, step 5): in a node lookup it is usually the node
/// looked for, and losing its answer loses the lookup. At 10% loss a request and its answer
/// both arrive 81% of the time, so two copies fail 3.6% of the time and four 0.13%.
pub(super) const CLOSEST_COPIES: u8 = 4;

/// Answered multi-copy requests remembered at once (see `Dht::note_answered_copies`).
const MAX_ANSWERED_COPIES: usize = 1024;

/// Hashes the table of outstanding requests by their transaction IDs as they are: the IDs
/// are drawn from the node's seeded RNG, so already uniform, and a peer cannot choose which
/// are inserted (an answer with a made-up ID only looks one up). Every datagram in or out
/// looks the table up two to four times; SipHash was 4.7% of a 10,000-node simulation's
/// CPU (`perf`), this table's share and the address-keyed maps' together.
#[derive(Default)]
pub(super) struct TxidHasher(u64);

impl std::hash::Hasher for TxidHasher {
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Only `u64` keys use this hasher; any other input is folded in, FNV-1a style.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The outstanding requests by transaction ID ([`TxidHasher`]).
pub(super) type RequestTable =
    std::collections::HashMap<u64, Outstanding, std::hash::BuildHasherDefault<TxidHasher>>;

/// Why a request was sent: what its answer, or its failure, goes to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Purpose {
    /// Part of a lookup.
    Lookup(QueryId),
    /// An ANNOUNCE sent by a finished announce lookup.
    Announce(QueryId),
    /// An ANNOUNCE_MANY of a reprovide sweep (`sweep.rs`).
    Batch,
    /// An ANNOUNCE of one key of a batch whose node never answered it (a node that does not
    /// know ANNOUNCE_MANY drops it: dht.md section 4.9a).
    BatchKey,
    /// Checking whether the oldest contact of a full bucket is alive.
    EvictionPing,
    /// Reaching a bootstrap address whose node ID we do not know yet.
    Bootstrap,
    /// Asking a peer which address it sees us at.
    AddressPing,
    /// Asking a contact to prove its key at its address before it enters the table
    /// (PROVE, `proof.rs`).
    Prove,
}

/// A request sent and not yet answered, by transaction ID in [`Dht`]'s `requests`.
#[derive(Clone, Debug)]
pub(super) struct Outstanding {
    pub(super) to: SocketAddr,
    /// The ID we expect to answer (None when we only know an address).
    pub(super) node: Option<Id>,
    pub(super) req_type: u8,
    pub(super) purpose: Purpose,
    /// The request, kept for the one retry a lookup request gets.
    pub(super) msg: Message,
    /// 0 for the first try, 1 for the retry.
    pub(super) attempt: u8,
    /// Copies of the request sent so far (the first included): one more at each soft
    /// timeout, up to 2, or [`CLOSEST_COPIES`] while it goes to the closest candidate.
    pub(super) copies: u8,
    /// When it was sent (the first copy).
    pub(super) sent_at: Instant,
}

impl Dht {
    /// Gives back the memory of a burst of requests (a join's bucket refreshes reach a few
    /// hundred at once) once it has passed: each map keeps its largest size otherwise.
    pub(super) fn shrink_request_maps(&mut self) {
        super::shrink_sparse_map(&mut self.requests);
        super::shrink_sparse_map(&mut self.queries);
        if self.verifying.capacity() > 4 * self.verifying.len() {
            self.verifying.shrink_to(2 * self.verifying.len());
        }
        for heap in [&mut self.deadlines, &mut self.soft_deadlines] {
            if heap.capacity() > 4 * heap.len().max(16) {
                heap.shrink_to(2 * heap.len());
            }
        }
    }

    /// Drops deadlines of requests already answered from the top of the heaps, so that
    /// `poll_timeout` does not wake the caller for nothing.
    pub(super) fn clean_deadlines(&mut self) {
        for heap in [&mut self.deadlines, &mut self.soft_deadlines] {
            while let Some(Reverse((_, txid))) = heap.peek() {
                if self.requests.contains_key(txid) {
                    break;
                }
                heap.pop();
            }
        }
    }

    // ----- answers to our requests ---------------------------------------------------

    /// The sender of a valid answer from `from` is alive there: it enters or refreshes the
    /// routing table (spec section 6, rule 4), unless it says it is not reachable; one that
    /// has not proven its key at that address is asked to first (section 6.1), if the
    /// table would take it.
    fn learn_answerer(&mut self, now: Instant, from: SocketAddr, dg: &Datagram) {
        if dg.flags & FLAG_NOT_REACHABLE != 0 {
            return;
        }
        let c = Contact {
            id: dg.sender,
            addr: from,
        };
        if !self.is_proven(&c) {
            if self.routing.would_take(&c, now) {
                self.send_prove(now, c);
            }
            return;
        }
        self.insert_proven(now, c);
    }

    /// Inserts `c`, proven at its address: at once if its bucket has room, else after an
    /// eviction PING of the bucket's oldest contact goes unanswered.
    pub(super) fn insert_proven(&mut self, now: Instant, c: Contact) {
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

    pub(super) fn handle_response(&mut self, now: Instant, from: SocketAddr, dg: Datagram) {
        let Some(out) = self.requests.get(&dg.txid) else {
            if self.answered_copies.iter().any(|&(_, t)| t == dg.txid) {
                // The answer to another copy of a request sent again at its soft timeout:
                // expected, and already used (issue 18: counted as unexpected before).
                return;
            }
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
            msg_type::ANNOUNCE_MANY => msg_type::STORED,
            msg_type::PROVE => msg_type::PROOF,
            _ => msg_type::ACK,
        };
        let t = dg.msg.type_byte();
        let answers = out.to == from && (t == expected || t == msg_type::ERROR);
        if answers && out.node.is_some_and(|n| n != dg.sender) {
            // Another node answers at that address with our txid: the one we asked for is
            // no longer there (it restarted with a new ID). It leaves the table now rather
            // than after three failures, and the answerer, proven at that address, may take
            // its place (spec section 6, rule 5). The request failed for its purpose.
            let Some(out) = self.requests.remove(&dg.txid) else {
                return;
            };
            let old = out.node;
            // As if it had not answered (an eviction PING then lets the newcomer in) ...
            self.on_request_failed(now, out, true);
            // ... but gone at once, not after three failures.
            if let Some(old) = old {
                log::debug!("dht: {from} now answers as {}, not {old}", dg.sender);
                self.routing.remove(&old);
            }
            self.learn_answerer(now, from, &dg);
            return;
        }
        if !answers || out.node.is_some_and(|n| n != dg.sender) {
            // Wrong source or wrong type: not an answer to our request. The request will
            // time out normally.
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
        if out.attempt == 0 && out.copies == 1 {
            // Only a request sent once times a round trip (Karn): an answer to a copy sent
            // again could be the answer to either.
            self.rtt.sample(now.saturating_duration_since(out.sent_at));
        }
        if out.copies > 1 {
            self.note_answered_copies(now, dg.txid);
        }
        self.on_bootstrap_result(now, out.to, Some(dg.sender));
        if let Purpose::Prove = out.purpose {
            self.verifying.remove(&out.to);
            if !self.accept_proof(&out, &dg) {
                // No proof (an ERROR, or a PROOF that does not verify): it stays out, and
                // is not asked again at once.
                return;
            }
        }
        self.learn_answerer(now, from, &dg);
        if let Message::Error {
            code: error_code::RETRY_LATER,
            ..
        } = &dg.msg
        {
            self.on_retry_later(now, out);
            return;
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
            // Proven at the address we asked: inserted above like any answer.
            Purpose::Prove => {}
            Purpose::Lookup(qid) => self.on_lookup_answer(now, qid, from, dg),
            Purpose::Announce(qid) => self.on_announce_answer(now, qid, true),
            Purpose::Batch => {
                let stored = match dg.msg {
                    Message::Stored { stored } => stored,
                    _ => 0,
                };
                self.on_batch_answer(Some(stored), now);
            }
            Purpose::BatchKey => {
                self.sweep_stats.fallback_acks += 1;
                self.sweep_stats.records_stored += 1;
            }
        }
    }

    pub(super) fn on_request_failed(&mut self, now: Instant, out: Outstanding, unresponsive: bool) {
        if unresponsive {
            self.on_bootstrap_result(now, out.to, None);
        }
        if let Purpose::Prove = out.purpose {
            self.verifying.remove(&out.to);
        }
        if let Some(id) = out.node {
            match out.purpose {
                // An ERROR answer still proves the old contact alive.
                Purpose::EvictionPing => self.routing.on_ping_result(&id, !unresponsive, now),
                // It may only not know ANNOUNCE_MANY: its fallback ANNOUNCEs decide.
                Purpose::Batch => {}
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
                    let at = q.elapsed(now);
                    q.trace.failed(&id, at, unresponsive);
                }
                self.drive(qid, now);
            }
            Purpose::Announce(qid) => self.on_announce_answer(now, qid, false),
            Purpose::Batch => {
                if unresponsive {
                    self.batch_fallback(now, &out);
                }
                self.on_batch_answer(None, now);
            }
            _ => {}
        }
    }

    /// `out` was answered RETRY_LATER: nothing goes to its address for a while (dht.md
    /// section 13.1). A lookup, announce or batch request sent for the first time waits and
    /// goes again then, still counted in flight by its lookup; anything else fails as on
    /// any ERROR (its contact answered: no routing failure).
    fn on_retry_later(&mut self, now: Instant, out: Outstanding) {
        self.stats.backed_off += 1;
        let until = self.backoff.back_off(out.to, now);
        let again = matches!(
            out.purpose,
            Purpose::Lookup(_) | Purpose::Announce(_) | Purpose::Batch
        );
        if let (Some(at), true, 0) = (until, again, out.attempt) {
            let held = Held {
                to: out.to,
                node: out.node,
                msg: out.msg.clone(),
                purpose: out.purpose,
                attempt: 1,
                paced: false,
            };
            if self.backoff.hold(at, held).is_ok() {
                self.stats.requests_held += 1;
                return;
            }
        }
        self.on_request_failed(now, out, false);
    }

    /// Remembers that `txid`, sent in several copies, was answered: the other copies'
    /// answers may follow until the request timeout. Bounded: entries leave when their
    /// request timeout has passed, and the oldest first beyond [`MAX_ANSWERED_COPIES`].
    fn note_answered_copies(&mut self, now: Instant, txid: u64) {
        let keep = self.config.request_timeout;
        while self
            .answered_copies
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) >= keep)
            || self.answered_copies.len() >= MAX_ANSWERED_COPIES
        {
            self.answered_copies.pop_front();
        }
        self.answered_copies.push_back((now, txid));
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

    // ----- sending ------------------------------------------------------------------

    pub(super) fn flags(&self) -> u8 {
        if self.config.not_reachable {
            FLAG_NOT_REACHABLE
        } else {
            0
        }
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: Option<Id>,
        msg: Message,
        purpose: Purpose,
    ) {
        self.send_request_attempt(now, to, node, msg, purpose, 0);
    }

    pub(super) fn send_request_attempt(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: Option<Id>,
        msg: Message,
        purpose: Purpose,
        attempt: u8,
    ) {
        let req = Held {
            to,
            node,
            msg,
            purpose,
            attempt,
            paced: false,
        };
        self.send_or_hold(now, req);
    }

    /// Sends `req` now, or holds it: while its address told us to retry later (dht.md
    /// section 13.1), and past our pace to that address (`pace.rs`). If too many requests
    /// are held already, it goes now and may be dropped.
    pub(super) fn send_or_hold(&mut self, now: Instant, mut req: Held) {
        let wait = match self.backoff.busy(&req.to, now) {
            Some(at) => Some(at),
            None if req.paced => None,
            None => {
                req.paced = true;
                let slot = self.pacer.slot(req.to, now);
                if slot.is_some() {
                    self.stats.requests_paced += 1;
                }
                slot
            }
        };
        if let Some(at) = wait {
            match self.backoff.hold(at, req) {
                Ok(()) => {
                    self.stats.requests_held += 1;
                    return;
                }
                Err(h) => req = *h,
            }
        }
        self.send_request_now(now, req);
    }

    fn send_request_now(&mut self, now: Instant, req: Held) {
        let Held {
            to,
            node,
            msg,
            purpose,
            attempt,
            paced: _,
        } = req;
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
                copies: 1,
                sent_at: now,
            },
        );
        self.deadlines
            .push(Reverse((now + self.config.request_timeout, txid)));
        if attempt == 0 && matches!(purpose, Purpose::Lookup(_)) {
            self.soft_deadlines
                .push(Reverse((now + self.soft_timeout(), txid)));
        }
        self.send(to, txid, msg);
    }

    pub(super) fn send(&mut self, to: SocketAddr, txid: u64, msg: Message) {
        self.send_flagged(to, txid, msg, 0);
    }

    /// [`Dht::send`] with `extra` flags besides our own.
    pub(super) fn send_flagged(&mut self, to: SocketAddr, txid: u64, msg: Message, extra: u8) {
        // A GET_PROVIDERS asks for the providers' node IDs (dht.md section 4.6).
        let ids = match msg {
            Message::GetProviders { .. } => FLAG_PROVIDER_IDS,
            _ => 0,
        };
        let dg = Datagram {
            flags: self.flags() | ids | extra,
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
