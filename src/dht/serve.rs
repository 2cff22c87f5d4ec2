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

use super::diversity::is_local;
use super::providers::Stored;
use super::{is_nat_type, plausible, Dht, DhtEvent};
use crate::id::Id;
use crate::proto::codec::canonical_addr;
use crate::proto::dht::{
    error_code, Contact, Datagram, Message, RendezvousRecord, FLAG_NOT_REACHABLE,
    FLAG_PROVIDER_IDS, MAX_DATAGRAM, MAX_PROVIDERS, MAX_PROVIDERS_WITH_IDS, MAX_RENDEZVOUS,
    TOKEN_LEN,
};

/// Most verification PINGs in flight at once.
pub const MAX_VERIFYING: usize = 256;

/// Unanswered bootstrap PINGs (to every address) after which a node with an empty table
/// takes requesters in anyway (see `Dht::bootstrapping`): about 14 s with the defaults.
const BOOTSTRAPPING_TRIES: u32 = 4;

impl Dht {
    pub(super) fn handle_request(&mut self, now: Instant, from: SocketAddr, dg: Datagram) {
        if !self.limiter.allow(from, now) {
            self.stats.rate_limited += 1;
            // One refused request a second is answered, so that an honest busy peer backs
            // off rather than time out and try again (dht.md section 13.1); a flooder gets
            // one datagram of 48 bytes a second, smaller than any request.
            if self.limiter.notify(from, now, super::backoff::RETRY_AFTER) {
                self.stats.retry_later_sent += 1;
                self.send(from, dg.txid, error(error_code::RETRY_LATER, ""));
            }
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
            Message::Prove { nonce, addr } => self.answer_prove(&dg.sender, &nonce, &addr),
            Message::FindNode { target } => Message::Nodes {
                contacts: self.answer_contacts(now, &target, from, &dg.sender),
            },
            Message::GetProviders { key } => {
                let ids = dg.flags & FLAG_PROVIDER_IDS != 0;
                self.answer_get_providers(now, from, dg.sender, key, ids)
            }
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
                    let via = rendezvous.filter(plausible).map(|rv| (dg.sender, rv));
                    let addr = announced_addr(from, port);
                    match self.store_record(key, addr, dg.sender, via, from, now) {
                        Ok(()) => Message::Ack,
                        Err(e) => error(error_code::STORE_FULL, &e),
                    }
                }
            }
            Message::AnnounceMany {
                token,
                port,
                keys,
                rendezvous,
            } => {
                if !self.tokens.verify(&from, &token) {
                    self.stats.bad_tokens += 1;
                    error(
                        error_code::BAD_TOKEN,
                        "token invalid or expired for this address",
                    )
                } else {
                    // Each key as if it came in its own ANNOUNCE, with the same rendezvous
                    // if any (dht.md section 4.9a); the answer counts those stored or
                    // refreshed.
                    let via = rendezvous.filter(plausible).map(|rv| (dg.sender, rv));
                    let addr = announced_addr(from, port);
                    let mut stored = 0u8;
                    for key in keys {
                        if self
                            .store_record(key, addr, dg.sender, via, from, now)
                            .is_ok()
                        {
                            stored += 1;
                        }
                    }
                    Message::Stored { stored }
                }
            }
            // Responses never reach here (is_request was checked).
            _ => return,
        };
        self.send(from, dg.txid, reply);
    }

    /// Stores one provider record of an ANNOUNCE or ANNOUNCE_MANY, counting evictions and
    /// refusals; the refusal's reason on failure.
    fn store_record(
        &mut self,
        key: Id,
        addr: SocketAddr,
        node: Id,
        via: Option<(Id, SocketAddr)>,
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), String> {
        match self.store.add_from(key, addr, Some(node), via, from, now) {
            Ok(Stored::Added | Stored::Refreshed) => Ok(()),
            Ok(Stored::Replaced { .. }) => {
                self.stats.records_evicted += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.records_refused += 1;
                Err(e.to_string())
            }
        }
    }

    /// A request came from `c`. A contact the table holds at that address is refreshed;
    /// an unknown one the table would take is asked to prove its address (module docs).
    fn note_requester(&mut self, now: Instant, c: Contact) {
        if self.routing.heard_from(&c, now) {
            return;
        }
        if self.bootstrapping() {
            // Still bootstrapping: a node that joined through us now would join us alone, and
            // the nodes that join through it after would grow a separate network around us
            // (issue 21). It gets its answer; we take it in once we are in the network.
            return;
        }
        if self.verifying.contains(&c.addr)
            || self.verifying.len() >= MAX_VERIFYING
            || !self.routing.wants(&c)
        {
            return;
        }
        self.send_prove(now, c);
    }

    /// The contacts an answer carries: the k closest to `target` of the requester's address
    /// family (the family it asked from), never the requester (spec section 8). An IPv4-only
    /// requester can do nothing with an IPv6 contact, nor an IPv6-only one with IPv4. A
    /// requester at a global address gets no contact at a local one (a LAN peer's private
    /// address): it could not reach it, and it would learn who is on our LAN.
    ///
    /// A node that is still joining through its bootstrap nodes names only them (its way
    /// in), except to one of them: its table holds the nodes that joined through it, and a
    /// node told only of those would join an island with them (dht.md section 11).
    fn answer_contacts(
        &self,
        now: Instant,
        target: &Id,
        from: SocketAddr,
        requester: &Id,
    ) -> Vec<Contact> {
        let from = canonical_addr(from);
        let v4 = from.is_ipv4();
        let global = !is_local(from.ip());
        let fits = |c: &Contact| {
            let a = canonical_addr(c.addr);
            a.is_ipv4() == v4 && !(global && is_local(a.ip()))
        };
        if self.joining_through_bootstrap(now) && !self.way_in().any(|c| c.id == *requester) {
            return self
                .way_in()
                .filter(|c| fits(c))
                .take(self.config.k)
                .collect();
        }
        self.routing
            .closest_where(target, self.config.k, Some(requester), fits)
    }

    /// True while the table is empty and no bootstrap address has answered yet, unless each
    /// has left [`BOOTSTRAPPING_TRIES`] PINGs unanswered (a dead bootstrap address must not keep a
    /// node from ever taking others in).
    fn bootstrapping(&self) -> bool {
        self.routing.is_empty()
            && !self.bootstrap.is_empty()
            && !self.bootstrap.iter().any(|b| b.answered)
            && self
                .bootstrap
                .iter()
                .any(|b| b.unanswered < BOOTSTRAPPING_TRIES)
    }

    fn answer_get_providers(
        &mut self,
        now: Instant,
        from: SocketAddr,
        requester: Id,
        key: Id,
        with_ids: bool,
    ) -> Message {
        // "Me, at the address this answer comes from" (spec section 4.6).
        let me = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        // With IDs, fewer providers fit (section 4.6).
        let max = if with_ids {
            MAX_PROVIDERS_WITH_IDS
        } else {
            MAX_PROVIDERS
        };
        let mut held = self.store.get_with_ids(&key, now, max);
        if let Some(p) = self.provided.get(&key) {
            // We provide it ourselves: say so even before our announce has landed anywhere
            // (port 0: the UDP source port).
            held.truncate(max - 1);
            held.insert(0, (me(p.port), Some(self.id)));
        }
        let providers: Vec<SocketAddr> = held.iter().map(|(a, _)| *a).collect();
        let ids = with_ids.then(|| {
            held.iter()
                .map(|(_, id)| id.unwrap_or(Id([0; 32])))
                .collect::<Vec<Id>>()
        });
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
        let closer = self.answer_contacts(now, &key, from, &requester);
        let token = self.tokens.issue(&from);
        fit_providers(token, (providers, ids), closer, via, self.id, self.flags())
    }
}

/// Where an announced record points: the sender's IP at `port`, 0 meaning its UDP source
/// port (dht.md section 10 step 2).
fn announced_addr(from: SocketAddr, port: u16) -> SocketAddr {
    let port = if port == 0 { from.port() } else { port };
    SocketAddr::new(from.ip(), port)
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
    (providers, provider_ids): (Vec<SocketAddr>, Option<Vec<Id>>),
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
            provider_ids: provider_ids.clone(),
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

#[cfg(test)]
mod tests {
    use super::super::DhtConfig;
    use super::*;
    use rand::SeedableRng;

    /// Issue 18: NODES answers used to carry IPv6 contacts to IPv4-only requesters (and the
    /// other way round). Both FIND_NODE and GET_PROVIDERS answers now carry only contacts of
    /// the family the request came from (spec section 8).
    #[test]
    fn answers_carry_contacts_of_the_requesters_family() {
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let identity = crate::identity::Identity::from_secret(&[5; 32]);
        let mut dht = Dht::new(identity, DhtConfig::default(), 1, now);
        for i in 0..6u16 {
            let addr: SocketAddr = if i % 2 == 0 {
                SocketAddr::from(([203, 0, (i + 1) as u8, 1], 4000))
            } else {
                SocketAddr::from(([0x2001, 0xdb8, i + 1, 0, 0, 0, 0, 1], 4000))
            };
            dht.add_contact(
                Contact {
                    id: Id::random(&mut rng),
                    addr,
                },
                now,
            );
        }
        assert_eq!(dht.routing_table().len(), 6);
        let v4: SocketAddr = "198.51.100.9:4000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8:99::9]:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.51.100.10]:4000".parse().unwrap();
        for (from, want_v4) in [(v4, true), (v6, false), (mapped, true)] {
            for msg in [
                Message::FindNode {
                    target: Id([0; 32]),
                },
                Message::GetProviders { key: Id([0; 32]) },
            ] {
                let req = Datagram {
                    flags: 0,
                    txid: 7,
                    sender: Id::random(&mut rng),
                    msg,
                };
                dht.handle_datagram(now, from, &req.encode());
                let mut answered = false;
                while let Some(t) = dht.poll_transmit() {
                    let d = Datagram::decode(&t.payload).unwrap();
                    let contacts = match d.msg {
                        Message::Nodes { contacts } => contacts,
                        Message::Providers { closer, .. } => closer,
                        _ => continue,
                    };
                    answered = true;
                    assert_eq!(contacts.len(), 3, "{from}: {contacts:?}");
                    assert!(
                        contacts.iter().all(|c| c.addr.is_ipv4() == want_v4),
                        "{from}: {contacts:?}"
                    );
                }
                assert!(answered, "{from}");
            }
        }
    }

    /// Issue 20's shapes lab: the bootstrap nodes were handed an office host's LAN address by
    /// its LAN peer. A requester at a global address gets no contact at a local address; one
    /// on a LAN (or loopback) gets them all.
    #[test]
    fn lan_addresses_are_not_given_to_requesters_outside() {
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let identity = crate::identity::Identity::from_secret(&[6; 32]);
        let mut dht = Dht::new(identity, DhtConfig::default(), 1, now);
        let local: [SocketAddr; 3] = [
            "192.168.1.20:4000".parse().unwrap(),
            "10.1.2.3:4000".parse().unwrap(),
            "[fd00:5053::2]:4000".parse().unwrap(),
        ];
        let global: [SocketAddr; 2] = [
            "203.0.113.7:4000".parse().unwrap(),
            "[2001:db8::7]:4000".parse().unwrap(),
        ];
        for addr in local.iter().chain(&global) {
            let id = Id::random(&mut rng);
            dht.add_contact(Contact { id, addr: *addr }, now);
        }
        let asked_from = |dht: &mut Dht, from: SocketAddr| {
            let req = Datagram {
                flags: 0,
                txid: 9,
                sender: Id::random(&mut rand::rngs::StdRng::seed_from_u64(7)),
                msg: Message::FindNode {
                    target: Id([0; 32]),
                },
            };
            dht.handle_datagram(now, from, &req.encode());
            let mut got = Vec::new();
            while let Some(t) = dht.poll_transmit() {
                if let Ok(Datagram {
                    msg: Message::Nodes { contacts },
                    ..
                }) = Datagram::decode(&t.payload)
                {
                    got.extend(contacts.into_iter().map(|c| c.addr));
                }
            }
            got.sort();
            got
        };
        let v4_out = asked_from(&mut dht, "198.51.100.9:4000".parse().unwrap());
        assert_eq!(v4_out, [global[0]]);
        let v6_out = asked_from(&mut dht, "[2001:db8:99::9]:4000".parse().unwrap());
        assert_eq!(v6_out, [global[1]]);
        let v4_lan = asked_from(&mut dht, "192.168.1.30:4000".parse().unwrap());
        assert_eq!(v4_lan.len(), 3, "{v4_lan:?}");
        let v6_lan = asked_from(&mut dht, "[fd00:5053::3]:4000".parse().unwrap());
        assert_eq!(v6_lan.len(), 2, "{v6_lan:?}");
    }
}
