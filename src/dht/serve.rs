//! The requests this node answers (spec: `protocol-spec/dht.md`, sections 6, 8, 10 and 13):
//! the per-source rate limit, the verification of unknown requesters, and the answers.
//!
//! A request proves nothing about its sender: its source address may be forged and its
//! node ID made up. So a requester the routing table does not know is not inserted; if the
//! table would take it ([`RoutingTable::wants`](super::routing::RoutingTable::wants): room
//! in its bucket, its source and network within their quotas), it gets a PING of ours at the
//! address it claims, and enters the table only when the PONG comes back from that address
//! with that ID (the normal path for answers to our requests). At most one verification per
//! address and [`MAX_VERIFYING`] in all are in flight, so a flood of requests costs at most
//! that many PINGs and cannot turn this node into a reflector.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::providers::Stored;
use super::{is_nat_type, plausible, Dht, DhtEvent, Purpose};
use crate::id::Id;
use crate::proto::dht::{
    error_code, Contact, Datagram, Message, RendezvousRecord, FLAG_NOT_REACHABLE, MAX_DATAGRAM,
    MAX_PROVIDERS, MAX_RENDEZVOUS, TOKEN_LEN,
};

/// Most verification PINGs in flight at once.
pub const MAX_VERIFYING: usize = 256;

impl Dht {
    pub(super) fn handle_request(&mut self, now: Instant, from: SocketAddr, dg: Datagram) {
        if !self.limiter.allow(from, now) {
            self.stats.rate_limited += 1;
            return;
        }
        if dg.flags & FLAG_NOT_REACHABLE == 0 {
            let c = Contact {
                id: dg.sender,
                addr: from,
            };
            self.note_requester(now, c);
        }
        if is_nat_type(dg.msg.type_byte()) {
            self.events.push_back(DhtEvent::Nat { from, datagram: dg });
            return;
        }
        let reply = match dg.msg {
            Message::Ping => Message::Pong { observed: from },
            Message::FindNode { target } => Message::Nodes {
                contacts: self
                    .routing
                    .closest(&target, self.config.k, Some(&dg.sender)),
            },
            Message::GetProviders { key } => self.answer_get_providers(now, from, dg.sender, key),
            Message::Announce {
                key,
                token,
                port,
                rendezvous,
            } => {
                if !self.tokens.verify(&from, &token) {
                    self.stats.bad_tokens += 1;
                    error(
                        error_code::BAD_TOKEN,
                        "token invalid or expired for this address",
                    )
                } else {
                    let port = if port == 0 { from.port() } else { port };
                    let via = rendezvous.filter(plausible).map(|rv| (dg.sender, rv));
                    let addr = SocketAddr::new(from.ip(), port);
                    match self.store.add_via(key, addr, via, from, now) {
                        Ok(Stored::Added | Stored::Refreshed) => Message::Ack,
                        Ok(Stored::Replaced { .. }) => {
                            self.stats.records_evicted += 1;
                            Message::Ack
                        }
                        Err(e) => {
                            self.stats.records_refused += 1;
                            error(error_code::STORE_FULL, &e.to_string())
                        }
                    }
                }
            }
            // Responses never reach here (is_request was checked).
            _ => return,
        };
        self.send(from, dg.txid, reply);
    }

    /// A request came from `c`. A contact the table holds at that address is refreshed;
    /// an unknown one the table would take is asked to prove its address (module docs).
    fn note_requester(&mut self, now: Instant, c: Contact) {
        if let Some(e) = self.routing.get(&c.id) {
            if e.contact.addr == c.addr {
                let _ = self.routing.insert(c, now);
            }
            return;
        }
        if self.verifying.contains(&c.addr)
            || self.verifying.len() >= MAX_VERIFYING
            || !self.routing.wants(&c)
        {
            return;
        }
        self.verifying.insert(c.addr);
        self.stats.verifications += 1;
        self.send_request(now, c.addr, Some(c.id), Message::Ping, Purpose::Verify);
    }

    fn answer_get_providers(
        &mut self,
        now: Instant,
        from: SocketAddr,
        requester: Id,
        key: Id,
    ) -> Message {
        // "Me, at the address this answer comes from" (spec section 4.6).
        let me = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let mut providers = self.store.get(&key, now, MAX_PROVIDERS);
        if let Some(p) = self.provided.get(&key) {
            // We provide it ourselves: say so even before our announce has landed anywhere
            // (port 0: the UDP source port).
            providers.truncate(MAX_PROVIDERS - 1);
            providers.insert(0, me(p.port));
        }
        let mut via: Vec<RendezvousRecord> = self
            .store
            .get_via(&key, now, MAX_RENDEZVOUS)
            .into_iter()
            .map(|(provider, node, rendezvous)| RendezvousRecord {
                provider,
                node,
                rendezvous,
            })
            .collect();
        if let (Some(p), Some(rv)) = (self.provided.get(&key), self.rendezvous) {
            via.truncate(MAX_RENDEZVOUS - 1);
            via.insert(
                0,
                RendezvousRecord {
                    provider: me(p.port),
                    node: self.id,
                    rendezvous: rv,
                },
            );
        }
        let closer = self.routing.closest(&key, self.config.k, Some(&requester));
        let token = self.tokens.issue(&from);
        fit_providers(token, providers, closer, via, self.id, self.flags())
    }
}

fn error(code: u16, text: &str) -> Message {
    Message::Error {
        code,
        text: text.to_owned(),
    }
}

/// A PROVIDERS answer trimmed to [`MAX_DATAGRAM`]: closer contacts are dropped first, then
/// rendezvous records; the providers always fit.
pub(super) fn fit_providers(
    token: [u8; TOKEN_LEN],
    providers: Vec<SocketAddr>,
    mut closer: Vec<Contact>,
    mut via: Vec<RendezvousRecord>,
    sender: Id,
    flags: u8,
) -> Message {
    loop {
        let msg = Message::Providers {
            token,
            providers: providers.clone(),
            closer: closer.clone(),
            rendezvous: (!via.is_empty()).then(|| via.clone()),
        };
        let len = Datagram {
            flags,
            txid: 0,
            sender,
            msg: msg.clone(),
        }
        .encoded_len();
        if len <= MAX_DATAGRAM || (closer.is_empty() && via.is_empty()) {
            return msg;
        }
        if closer.pop().is_none() {
            via.pop();
        }
    }
}
