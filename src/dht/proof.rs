//! Proofs of identity (spec: `protocol-spec/dht.md`, section 6.1): a contact enters the
//! routing table only after it has signed a fresh challenge of ours with the key whose
//! SHA-256 is its node ID.
//!
//! The node sends PROVE (a random 32-byte nonce and the address it sends to) to a contact it
//! would insert and has not proven; the PROOF answer carries the contact's Ed25519 public key
//! and its signature of [`proof_message`]. It is checked strictly (ed25519-dalek's
//! `verify_strict`) against the nonce we sent, the ID we expected, our own ID and the
//! address we asked at. A proven (ID, address) pair is remembered in a bounded cache, so a
//! contact that leaves the table and comes back (or a long-lived one) does not pay again,
//! and a contact in the table is proven by being there.
//!
//! No I/O here: the signing key is the node's [`Identity`], given to [`Dht::new`], and the
//! nonce comes from the node's seeded RNG.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use super::requests::{Outstanding, Purpose};
use super::serve::MAX_VERIFYING;
use super::Dht;
use crate::id::Id;
use crate::identity::{self, Identity};
use crate::proto::dht::{proof_message, Contact, Datagram, Message, NONCE_LEN};

/// Proven (node ID, address) pairs remembered beyond the routing table.
pub const MAX_PROOFS: usize = 4096;

/// The node's signing key, wrapped so that `Dht` can be `Debug` without printing it.
pub(super) struct Signer(pub(super) Identity);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.0.node_id())
    }
}

/// Proven (ID, address) pairs, oldest first out.
#[derive(Debug, Default)]
pub(super) struct ProofCache {
    set: HashSet<(Id, SocketAddr)>,
    order: VecDeque<(Id, SocketAddr)>,
}

impl ProofCache {
    pub(super) fn contains(&self, c: &Contact) -> bool {
        self.set.contains(&(c.id, c.addr))
    }

    pub(super) fn insert(&mut self, c: &Contact) {
        if self.set.insert((c.id, c.addr)) {
            self.order.push_back((c.id, c.addr));
            while self.order.len() > MAX_PROOFS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl Dht {
    /// Whether `c` has proven its key at its address: it is in the table at that address
    /// (it got there by a proof, or from our own saved state), or in the proof cache.
    pub(super) fn is_proven(&self, c: &Contact) -> bool {
        self.routing
            .get(&c.id)
            .is_some_and(|e| e.contact.addr == c.addr)
            || self.proofs.contains(c)
    }

    /// A contact somebody claims exists (a LAN announcement, which anyone on the link can
    /// send with any ID): it enters the table as an answerer does, once it has proven at
    /// that address that it holds the key of its ID (at once if it already has).
    pub fn add_claimed_contact(&mut self, c: Contact, now: Instant) {
        if self.is_proven(&c) {
            self.insert_proven(now, c);
        } else if self.routing.would_take(&c, now) {
            self.send_prove(now, c);
        }
    }

    /// Sends `c` a PROVE, unless one is already out to its address or [`MAX_VERIFYING`]
    /// are out in all. The PROOF inserts it like any answer (section 6, rule 4).
    pub(super) fn send_prove(&mut self, now: Instant, c: Contact) {
        if self.verifying.contains(&c.addr) || self.verifying.len() >= MAX_VERIFYING {
            return;
        }
        let nonce: [u8; NONCE_LEN] = self.rng.gen();
        self.verifying.insert(c.addr);
        self.stats.verifications += 1;
        let msg = Message::Prove {
            nonce,
            addr: c.addr,
        };
        self.send_request(now, c.addr, Some(c.id), msg, Purpose::Prove);
    }

    /// The PROOF answering a PROVE of `verifier` (who sent it to `addr`).
    pub(super) fn answer_prove(
        &self,
        verifier: &Id,
        nonce: &[u8; NONCE_LEN],
        addr: &SocketAddr,
    ) -> Message {
        let signed = proof_message(nonce, &self.id, verifier, addr);
        Message::Proof {
            public: self.signer.0.public(),
            signature: self.signer.0.sign(&signed),
        }
    }

    /// Checks the answer `dg` to our PROVE `out`: a PROOF whose key hashes to the ID we
    /// asked for and whose signature covers our nonce, that ID, our ID and the address we
    /// asked at. On success the pair is remembered as proven.
    pub(super) fn accept_proof(&mut self, out: &Outstanding, dg: &Datagram) -> bool {
        let (Message::Prove { nonce, addr }, Message::Proof { public, signature }) =
            (&out.msg, &dg.msg)
        else {
            return false;
        };
        let Some(expected) = out.node else {
            return false;
        };
        let ok = identity::node_id_of(public) == expected
            && identity::verify(
                public,
                &proof_message(nonce, &expected, &self.id, addr),
                signature,
            );
        if ok {
            self.proofs.insert(&Contact {
                id: expected,
                addr: out.to,
            });
        } else {
            self.stats.bad_proofs += 1;
            log::debug!("dht: bad PROOF from {} in the name of {expected}", out.to);
        }
        ok
    }
}
