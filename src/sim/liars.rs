//! Lying nodes (issue 17: "provider lookups still succeed when 20% of the network answers
//! with junk or lies"). A liar runs the same DHT as everyone (so it joins, proves its key and
//! is asked like any contact), but every NODES or PROVIDERS answer it sends is replaced on the
//! way out by the most damaging lie it can tell without grinding keys:
//!
//! - **contacts** made up right next to what was asked for (the target with its last 64 bits
//!   random: closer than any real node), at addresses where nobody lives, so a lookup that
//!   believes them fills its closest set with nodes that never answer;
//! - **providers** that do not exist, and none of the real ones it stores.
//!
//! The liar learns what was asked from the request it received (matched by sender and
//! transaction ID). Its PONGs and ACKs stay true: a liar that answered nothing would just be
//! a dead node, which `dead_fraction` covers.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::id::Id;
use crate::proto::dht::{Contact, Datagram, Message, MAX_CONTACTS};

/// Addresses of made-up contacts: `10.250.x.y`, far above any node index, so the simulator
/// drops what is sent there (nobody answers).
const NOWHERE: u8 = 250;

/// The liars of one shard (`sim::shard`) and what they were asked. Each liar has its own
/// generator and memory, so a lie does not depend on what other liars did before it.
#[derive(Debug, Default)]
pub(super) struct Liars {
    set: BTreeMap<usize, Liar>,
    pub(super) lies: u64,
}

#[derive(Debug)]
struct Liar {
    /// What each request asked for, by `(asker, transaction ID)`.
    asked: HashMap<(usize, u64), Id>,
    rng: StdRng,
}

impl Liars {
    pub(super) fn add(&mut self, i: usize, seed: u64) {
        self.set.entry(i).or_insert_with(|| Liar {
            asked: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        });
    }

    pub(super) fn is_liar(&self, i: usize) -> bool {
        self.set.contains_key(&i)
    }

    pub(super) fn on_delivered(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let Some(liar) = self.set.get_mut(&to) else {
            return;
        };
        let Ok(d) = Datagram::decode(bytes) else {
            return;
        };
        let target = match d.msg {
            Message::FindNode { target } => target,
            Message::GetProviders { key } => key,
            _ => return,
        };
        // A bound on the memory of requests never answered.
        if liar.asked.len() > 10_000 {
            liar.asked.clear();
        }
        liar.asked.insert((from, d.txid), target);
    }

    pub(super) fn rewrite(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> Vec<u8> {
        let Some(liar) = self.set.get_mut(&from) else {
            return bytes;
        };
        let Ok(mut d) = Datagram::decode(&bytes) else {
            return bytes;
        };
        let Some(target) = liar.asked.remove(&(to, d.txid)) else {
            return bytes;
        };
        match &mut d.msg {
            Message::Nodes { contacts } => *contacts = liar.fakes(target),
            Message::Providers {
                providers, closer, ..
            } => {
                let n = providers.len().max(1);
                *providers = (0..n).map(|_| liar.nowhere()).collect();
                *closer = liar.fakes(target);
            }
            _ => return bytes,
        }
        self.lies += 1;
        d.encode()
    }
}

impl Liar {
    fn fakes(&mut self, target: Id) -> Vec<Contact> {
        (0..MAX_CONTACTS)
            .map(|_| {
                let mut id = target;
                let tail: [u8; 8] = self.rng.gen();
                if let Some(t) = id.0.get_mut(24..32) {
                    t.copy_from_slice(&tail);
                }
                Contact {
                    id,
                    addr: self.nowhere(),
                }
            })
            .collect()
    }

    fn nowhere(&mut self) -> SocketAddr {
        let [x, y]: [u8; 2] = self.rng.gen();
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(10, NOWHERE, x, y),
            super::net::PORT,
        ))
    }
}
