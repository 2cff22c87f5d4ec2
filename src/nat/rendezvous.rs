//! The rendezvous (server side): clients behind NATs register with a reachable node, which
//! introduces downloaders to them (a CALL to the client, INTRODUCED to the downloader) and
//! relays circuits when the punch fails (nat.md, sections 4 to 6).

use std::net::SocketAddr;
use std::time::Instant;

use super::{Nat, Reachability};
use crate::id::Id;
use crate::proto::dht::{call_mode, error_code, Message, FLAG_PORTS_VARY};

/// A client registered with us.
#[derive(Clone, Copy, Debug)]
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) port: u16,
    pub(super) expires: Instant,
    /// Its REGISTER said its NAT gives each destination another port (FLAG_PORTS_VARY).
    pub(super) ports_vary: bool,
}

impl Client {
    /// The header flags of an INTRODUCED to this client: what its REGISTER said.
    pub(super) fn introduced_flags(&self) -> u8 {
        if self.ports_vary {
            FLAG_PORTS_VARY
        } else {
            0
        }
    }
}

impl Nat {
    /// A client registers (or renews its registration) with us; `ports_vary`: its REGISTER's
    /// FLAG_PORTS_VARY, passed on to the downloaders we introduce to it.
    pub(super) fn on_register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Id,
        txid: u64,
        port: u16,
        ports_vary: bool,
    ) {
        // Only a node others can reach can introduce them to its clients: an
        // unreachable (or untested) one would only strand the client's downloaders
        // (the whole-network simulator caught NATed nodes serving as rendezvous).
        if !matches!(self.reach, Reachability::Public | Reachability::Mapped) {
            let msg = Message::Error {
                code: error_code::BAD_REQUEST,
                text: "this node is not known to be reachable: it cannot be a rendezvous".into(),
            };
            self.send(from, txid, msg);
            return;
        }
        let known = self.clients.contains_key(&sender);
        self.clients.retain(|_, c| c.expires > now);
        if !known && self.clients.len() >= self.cfg.max_clients {
            let msg = Message::Error {
                code: error_code::STORE_FULL,
                text: "rendezvous full".into(),
            };
            self.send(from, txid, msg);
            return;
        }
        let expires = now + self.cfg.registration_lifetime;
        self.clients.insert(
            sender,
            Client {
                addr: from,
                port,
                expires,
                ports_vary,
            },
        );
        let lifetime = u16::try_from(self.cfg.registration_lifetime.as_secs()).unwrap_or(u16::MAX);
        self.send(from, txid, Message::Registered { lifetime });
    }

    /// A downloader asks us to introduce it to our client `target`.
    pub(super) fn on_introduce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Id,
        txid: u64,
        target: Id,
        port: u16,
    ) {
        match self.clients.get(&target).copied() {
            Some(c) if c.expires > now => {
                self.counters.introductions += 1;
                let msg = Message::Introduced {
                    addr: c.addr,
                    port: c.port,
                };
                self.send_flagged(from, txid, msg, c.introduced_flags());
                let txid = self.next_rand();
                let call = Message::Call {
                    mode: call_mode::PUNCH,
                    nonce: 0,
                    peer: sender,
                    addr: from,
                    port,
                };
                self.send(c.addr, txid, call);
            }
            _ => {
                let msg = Message::Error {
                    code: error_code::UNKNOWN_PEER,
                    text: "no such client here".into(),
                };
                self.send(from, txid, msg);
            }
        }
    }

    /// Rendezvous: a downloader asks on a TCP connection for circuit `nonce` to `node`.
    /// On success a CALL goes to the client; the reactor holds the opener's socket until
    /// the client joins.
    pub fn relay_open(&mut self, now: Instant, node: &Id, nonce: u64, opener: SocketAddr) -> bool {
        let Some(c) = self.clients.get(node).copied() else {
            return false;
        };
        if c.expires <= now || self.circuits >= self.cfg.max_circuits {
            return false;
        }
        self.circuits += 1;
        self.counters.circuits += 1;
        let txid = self.next_rand();
        let msg = Message::Call {
            mode: call_mode::RELAY,
            nonce,
            peer: Id([0; 32]),
            addr: opener,
            port: 0,
        };
        self.send(c.addr, txid, msg);
        true
    }

    /// Rendezvous: a circuit closed or never came up.
    pub fn circuit_closed(&mut self) {
        self.circuits = self.circuits.saturating_sub(1);
    }
}
