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
//!
//! The DHT simulator may swap Ed25519 for [`ProofScheme::SimHash`] (a hash in place of the
//! signature): signing and strict verification were 57% of the CPU of a 1,500-node
//! simulation, and the simulator's nodes never forge a proof. Everything else stays: the same
//! PROVE and PROOF datagrams (same fields, same lengths), the same checks of the key against
//! the ID and of the nonce, IDs and address the "signature" covers.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
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

/// How PROOFs are signed and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProofScheme {
    /// Ed25519, as dht.md section 6.1 specifies: what every real node runs.
    #[default]
    Ed25519,
    /// Simulation only: the "signature" is a hash of a context, the public key and the
    /// signed message (`sim_hash`), which anyone who knows the public key can compute. It
    /// binds the proof to the nonce, the IDs and the address as the signature does, at a
    /// small fraction of the cost, and is no protection against a forger: the simulator has
    /// none.
    SimHash,
}

/// The node's signing key, wrapped so that `Dht` can be `Debug` without printing it, and the
/// scheme its PROOFs use.
pub(super) struct Signer {
    pub(super) identity: Identity,
    pub(super) scheme: ProofScheme,
}

impl Signer {
    pub(super) fn new(identity: Identity) -> Self {
        Signer {
            identity,
            scheme: ProofScheme::Ed25519,
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {:?})", self.identity.node_id(), self.scheme)
    }
}

/// The [`ProofScheme::SimHash`] "signature" of `msg` under `public`: two SipHash-1-3
/// digests (std's `DefaultHasher` with its fixed keys, two contexts) of the public key and
/// the message, spread over 64 bytes by SplitMix64. Deterministic within one build, which
/// is all a simulation needs (every node of it runs in one process); cheaper than the
/// SHA-512 it replaced (4 to 5% of a 10,000-node simulation's CPU), and as good at telling
/// two messages apart for a simulator that forges nothing.
fn sim_hash(public: &[u8; identity::PUBLIC_LEN], msg: &[u8]) -> [u8; identity::SIGNATURE_LEN] {
    use std::hash::{DefaultHasher, Hasher};
    let digest = |context: &[u8]| {
        let mut h = DefaultHasher::new();
        h.write(context);
        h.write(public);
        h.write(msg);
        h.finish()
    };
    let mut state = [
        digest(b"peershare-sim-proof:0"),
        digest(b"peershare-sim-proof:1"),
    ];
    let mut out = [0u8; identity::SIGNATURE_LEN];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let s = &mut state[i % 2];
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Proven (ID, address) pairs, oldest first out.
///
/// Each pair is stored once, in `order`; `index` holds the serial number of each (its
/// position plus the serials evicted before it), hashed by its pair: about 75 bytes a pair
/// where a set beside the queue took about 185 (a simulated node of a 100,000-node network
/// holds hundreds of them).
#[derive(Default)]
pub(super) struct ProofCache {
    order: VecDeque<(Id, SocketAddr)>,
    /// Serial number of `order[0]`.
    first: u64,
    index: HashTable<u64>,
    hasher: RandomState,
}

impl std::fmt::Debug for ProofCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofCache")
            .field("len", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl ProofCache {
    fn hash(hasher: &RandomState, pair: &(Id, SocketAddr)) -> u64 {
        hasher.hash_one(pair)
    }

    /// The pair of serial `serial` (one of `order`'s: `index` holds no other).
    fn pair(order: &VecDeque<(Id, SocketAddr)>, first: u64, serial: u64) -> &(Id, SocketAddr) {
        &order[(serial - first) as usize]
    }

    pub(super) fn contains(&self, c: &Contact) -> bool {
        let pair = (c.id, c.addr);
        let h = Self::hash(&self.hasher, &pair);
        self.index
            .find(h, |&s| *Self::pair(&self.order, self.first, s) == pair)
            .is_some()
    }

    pub(super) fn insert(&mut self, c: &Contact) {
        if self.contains(c) {
            return;
        }
        let pair = (c.id, c.addr);
        let ProofCache {
            order,
            first,
            index,
            hasher,
        } = self;
        let serial = *first + order.len() as u64;
        if order.len() == order.capacity() {
            // By a quarter, not double: the queue only grows (up to MAX_PROOFS).
            order.reserve_exact((order.len() / 4).max(16));
        }
        order.push_back(pair);
        index.insert_unique(Self::hash(hasher, &pair), serial, |&s| {
            Self::hash(hasher, Self::pair(order, *first, s))
        });
        while order.len() > MAX_PROOFS {
            let Some(old) = order.pop_front() else {
                break;
            };
            let gone = *first;
            *first += 1;
            if let Ok(e) = index.find_entry(Self::hash(hasher, &old), |&s| s == gone) {
                e.remove();
            }
        }
    }
}

impl Dht {
    /// Signs and checks PROOFs with `scheme` from now on (the simulator's choice; every node
    /// of one network must use the same).
    pub(crate) fn set_proof_scheme(&mut self, scheme: ProofScheme) {
        self.signer.scheme = scheme;
    }

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
        let public = self.signer.identity.public();
        let signature = match self.signer.scheme {
            ProofScheme::Ed25519 => self.signer.identity.sign(&signed),
            ProofScheme::SimHash => sim_hash(&public, &signed),
        };
        Message::Proof { public, signature }
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
        let ok = identity::node_id_of(public) == expected && {
            let signed = proof_message(nonce, &expected, &self.id, addr);
            match self.signer.scheme {
                ProofScheme::Ed25519 => identity::verify(public, &signed, signature),
                ProofScheme::SimHash => sim_hash(public, &signed) == *signature,
            }
        };
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
