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
use std::net::SocketAddr;
use std::time::Instant;

use hashbrown::HashTable;
use hmac::Mac;
use zeroize::Zeroizing;

use rand::Rng;

use super::requests::{Outstanding, Purpose};
use super::serve::MAX_VERIFYING;
use super::token::{self, HmacSha256};
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

/// A proven (ID, address) pair as the cache keeps it: the first 16 bytes of its
/// HMAC-SHA256 under the node's cache key ([`ProofCache::digest`]).
type PairDigest = [u8; 16];

/// Proven (ID, address) pairs, oldest first out.
///
/// Each pair is kept as a 128-bit keyed digest, once, in `order`; `index` holds the serial
/// number of each (its position plus the serials evicted before it, wrapping: only
/// [`MAX_PROOFS`] are alive at once), hashed by the digest's first bytes. About 22 bytes a
/// pair where the pair itself took 75: the cache was a fifth of a simulated node's memory
/// (valgrind's massif, 5,000 nodes), and a node of a 100,000-node network holds hundreds.
///
/// A digest stands for its pair safely because the key is secret: a peer that would pass
/// as proven must give an (ID, address) whose digest equals one in the cache, without
/// seeing any digest or knowing the key; two honest pairs share a digest with a
/// probability near 2^-105 at the cache's size.
pub(super) struct ProofCache {
    /// HMAC-SHA256 under the cache's key, the key's pads already absorbed: cloned for each
    /// digest.
    mac: HmacSha256,
    order: VecDeque<PairDigest>,
    /// Serial number of `order[0]`.
    first: u32,
    index: HashTable<u32>,
}

impl std::fmt::Debug for ProofCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofCache")
            .field("len", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl ProofCache {
    /// An empty cache whose key is derived from `secret` (the node's first token secret,
    /// drawn from its RNG): HMAC-SHA256 of a label under it, so the two uses of the secret
    /// never MAC the same message.
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        let mut derive = token::keyed(secret);
        derive.update(b"peershare dht proof cache key");
        // Wiped once the MAC has absorbed it.
        let key = Zeroizing::new(<[u8; 32]>::from(derive.finalize().into_bytes()));
        ProofCache {
            mac: token::keyed(key.as_slice()),
            order: VecDeque::new(),
            first: 0,
            index: HashTable::new(),
        }
    }

    /// The digest of `c`'s pair: its ID, then its address (family, IP, port and, for IPv6,
    /// scope), 55 bytes at most, so one SHA-256 block for the inner hash.
    fn digest(&self, c: &Contact) -> PairDigest {
        let mut mac = self.mac.clone();
        mac.update(&c.id.0);
        match c.addr {
            SocketAddr::V4(a) => {
                mac.update(&[4]);
                mac.update(&a.ip().octets());
                mac.update(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                mac.update(&[6]);
                mac.update(&a.ip().octets());
                mac.update(&a.port().to_be_bytes());
                mac.update(&a.scope_id().to_be_bytes());
            }
        }
        let tag = mac.finalize().into_bytes();
        let mut d = [0u8; 16];
        d.copy_from_slice(&tag[..16]);
        d
    }

    /// The table hash of a digest: its first 8 bytes, uniform under the secret key.
    fn hash(d: &PairDigest) -> u64 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&d[..8]);
        u64::from_le_bytes(h)
    }

    /// The digest of serial `serial` (one of `order`'s: `index` holds no other).
    fn at(order: &VecDeque<PairDigest>, first: u32, serial: u32) -> &PairDigest {
        &order[serial.wrapping_sub(first) as usize]
    }

    fn find(&self, d: &PairDigest) -> bool {
        self.index
            .find(Self::hash(d), |&s| {
                Self::at(&self.order, self.first, s) == d
            })
            .is_some()
    }

    pub(super) fn contains(&self, c: &Contact) -> bool {
        self.find(&self.digest(c))
    }

    pub(super) fn insert(&mut self, c: &Contact) {
        let d = self.digest(c);
        if self.find(&d) {
            return;
        }
        let ProofCache {
            order,
            first,
            index,
            ..
        } = self;
        let serial = first.wrapping_add(order.len() as u32);
        if order.len() == order.capacity() {
            // By a quarter, not double: the queue only grows (up to MAX_PROOFS).
            order.reserve_exact((order.len() / 4).max(16));
        }
        order.push_back(d);
        index.insert_unique(Self::hash(&d), serial, |&s| {
            Self::hash(Self::at(order, *first, s))
        });
        while order.len() > MAX_PROOFS {
            let Some(old) = order.pop_front() else {
                break;
            };
            let gone = *first;
            *first = first.wrapping_add(1);
            if let Ok(e) = index.find_entry(Self::hash(&old), |&s| s == gone) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn contact(i: u32) -> Contact {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        Contact {
            id: Id(id),
            addr: SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 4000)),
        }
    }

    /// A pair is proven at its address only: the same ID elsewhere, or another ID there, is
    /// not; and two caches (two nodes' keys) give different digests of one pair.
    #[test]
    fn a_pair_is_proven_at_its_address_only() {
        let mut cache = ProofCache::new(&[7; 32]);
        let c = contact(1);
        cache.insert(&c);
        assert!(cache.contains(&c));
        let moved = Contact {
            addr: SocketAddr::from((Ipv4Addr::from(0x0a00_0001), 4001)),
            ..c
        };
        assert!(!cache.contains(&moved));
        assert!(!cache.contains(&contact(2)));
        let v6 = |scope| Contact {
            id: c.id,
            addr: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 4000, 0, scope)),
        };
        cache.insert(&v6(1));
        assert!(cache.contains(&v6(1)));
        assert!(
            !cache.contains(&v6(2)),
            "the scope is part of an IPv6 address"
        );
        assert_ne!(cache.digest(&c), ProofCache::new(&[8; 32]).digest(&c));
        cache.insert(&c);
        assert_eq!(cache.order.len(), 2, "a pair is kept once");
    }

    /// Past MAX_PROOFS the oldest pairs go first, also when the serial numbers wrap.
    #[test]
    fn the_oldest_pairs_go_first_across_the_serials_wrap() {
        let mut cache = ProofCache::new(&[7; 32]);
        cache.first = u32::MAX - 10;
        let extra = 900;
        let n = MAX_PROOFS as u32 + extra;
        for i in 0..n {
            cache.insert(&contact(i));
        }
        assert_eq!(cache.order.len(), MAX_PROOFS);
        assert_eq!(cache.index.len(), MAX_PROOFS);
        assert!((0..extra).all(|i| !cache.contains(&contact(i))));
        assert!((extra..n).all(|i| cache.contains(&contact(i))));
        // An evicted pair proven again comes back as the newest.
        cache.insert(&contact(0));
        assert!(cache.contains(&contact(0)));
        assert!(!cache.contains(&contact(extra)));
    }
}
