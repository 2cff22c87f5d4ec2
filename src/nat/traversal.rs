//! Traversal (downloader side): reaching a provider behind a rendezvous, introduced then a
//! simultaneous TCP open, and a relayed circuit if that does not connect in time (nat.md,
//! sections 5 and 6).

use std::net::SocketAddr;
use std::time::Instant;

use super::{Action, Nat, Strategy};
use crate::conn::ConnId;
use crate::id::Id;
use crate::proto::dht::{call_mode, Datagram, Message};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Introducing,
    Punching,
    Relaying,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Attempt {
    pub(super) provider: SocketAddr,
    pub(super) node: Id,
    pub(super) rendezvous: SocketAddr,
    pub(super) started: Instant,
    pub(super) phase: Phase,
    pub(super) deadline: Instant,
    pub(super) txid: u64,
    /// Our public address as peers agree on it, if known.
    pub(super) ours: Option<SocketAddr>,
}

impl Nat {
    /// Downloader: reach `provider` (node `node`) through `rendezvous`. The result comes as
    /// actions: PunchConnect, then RelayOpen if the punch does not connect in time, or
    /// Failed. A punch that cannot work is skipped: RelayOpen at once (nat.md, section 6).
    pub fn connect_via(
        &mut self,
        now: Instant,
        conn: ConnId,
        provider: SocketAddr,
        node: Id,
        rendezvous: SocketAddr,
        ours: Option<SocketAddr>,
    ) {
        let txid = self.next_rand();
        let port = self.wire_port;
        self.attempts.insert(
            conn,
            Attempt {
                provider,
                node,
                rendezvous,
                started: now,
                phase: Phase::Introducing,
                deadline: now + self.cfg.introduce_timeout,
                txid,
                ours,
            },
        );
        if self.punch_cannot_work(false) {
            // Our NAT changes ports and nobody can reach us: no introduction helps.
            self.skip_punch(now, conn);
            return;
        }
        // We may be the provider's rendezvous ourselves (a datagram to ourselves would be
        // dropped): then we introduce ourselves, as a rendezvous would.
        match (self.clients.get(&node).copied(), ours) {
            (Some(c), Some(ours)) if c.expires > now => {
                let call = Message::Call {
                    mode: call_mode::PUNCH,
                    nonce: 0,
                    peer: Id([0; 32]),
                    addr: ours,
                    port,
                };
                let call_txid = self.next_rand();
                self.send(c.addr, call_txid, call);
                let msg = Message::Introduced {
                    addr: c.addr,
                    port: c.port,
                };
                let dg = Datagram {
                    flags: c.introduced_flags(),
                    txid,
                    sender: node,
                    msg,
                };
                self.handle_datagram(now, rendezvous, dg);
            }
            _ => self.send(rendezvous, txid, Message::Introduce { target: node, port }),
        }
    }

    /// The rendezvous introduced us: punch (a PING for the provider's UDP, a TCP connect for
    /// its SYN), unless the punch cannot work (`theirs_vary`: the provider's NAT gives each
    /// destination another port): then relay at once.
    pub(super) fn on_introduced(
        &mut self,
        now: Instant,
        from: SocketAddr,
        txid: u64,
        addr: SocketAddr,
        port: u16,
        theirs_vary: bool,
    ) {
        let found = self
            .attempts
            .iter()
            .find(|(_, a)| a.txid == txid && a.phase == Phase::Introducing)
            .map(|(c, a)| (*c, *a));
        let Some((conn, a)) = found else {
            self.counters.unexpected += 1;
            return;
        };
        if from != a.rendezvous {
            self.counters.unexpected += 1;
            return;
        }
        if self.punch_cannot_work(theirs_vary) {
            self.skip_punch(now, conn);
            return;
        }
        // Open our NAT for the provider's datagrams (the UDP punch) and its SYN.
        let txid = self.next_rand();
        self.send(addr, txid, Message::Ping);
        let tcp = SocketAddr::new(addr.ip(), if port == 0 { addr.port() } else { port });
        self.actions
            .push_back(Action::PunchConnect { conn, addr: tcp });
        // Behind our own router the punch works only if the router hairpins: a short try.
        let same_router = a.ours.is_some_and(|o| o.ip() == addr.ip());
        let wait = if same_router {
            log::debug!(
                "nat: {} is behind our own router: a short punch",
                a.provider
            );
            self.cfg.same_router_punch_timeout
        } else {
            self.cfg.punch_timeout
        };
        if let Some(a) = self.attempts.get_mut(&conn) {
            a.phase = Phase::Punching;
            a.deadline = now + wait;
        }
    }

    /// Downloader: the punched connection for `conn` is up.
    pub fn punch_connected(&mut self, conn: ConnId, now: Instant) {
        if let Some(a) = self.attempts.remove(&conn) {
            let took = now.saturating_duration_since(a.started);
            self.record_setup(a.provider, Strategy::Punched, took);
        }
    }

    /// Downloader: the relayed circuit for `conn` is up.
    pub fn relay_ready(&mut self, conn: ConnId, now: Instant) {
        if let Some(a) = self.attempts.remove(&conn) {
            let took = now.saturating_duration_since(a.started);
            self.record_setup(a.provider, Strategy::Relayed, took);
        }
    }

    /// Downloader: the relay for `conn` failed (the punch failing is only final at its
    /// deadline: the other side's SYN may still come).
    pub fn attempt_failed(&mut self, conn: ConnId) {
        if self
            .attempts
            .get(&conn)
            .is_some_and(|a| a.phase == Phase::Relaying)
        {
            self.fail(conn);
        }
    }

    /// Downloader: the engine gave up on `conn` (timeout, closed): forget it.
    pub fn forget(&mut self, conn: ConnId) {
        self.attempts.remove(&conn);
    }

    /// True while a connection to node `node` is being set up by NAT traversal (its records
    /// may name it at several addresses: one attempt is enough, and a second punch from our
    /// wire port to the same provider could not even bind).
    pub fn is_reaching(&self, node: &Id) -> bool {
        self.attempts.values().any(|a| a.node == *node)
    }

    /// True while `conn` is being set up by NAT traversal.
    pub fn is_attempting(&self, conn: ConnId) -> bool {
        self.attempts.contains_key(&conn)
    }

    /// Attempts past their deadline: an introduction or a relay fails, a punch falls back to
    /// a relay.
    pub(super) fn attempts_timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            let Some(a) = self.attempts.get(&conn).copied() else {
                continue;
            };
            match a.phase {
                Phase::Introducing | Phase::Relaying => self.fail(conn),
                Phase::Punching => {
                    log::debug!("nat: punch to {} timed out: relaying", a.provider);
                    self.relay(now, conn);
                }
            }
        }
    }

    /// A punch that cannot work (`punch_cannot_work`): the relay at once.
    fn skip_punch(&mut self, now: Instant, conn: ConnId) {
        if let Some(a) = self.attempts.get(&conn) {
            log::info!(
                "nat: a punch to {} cannot work (our NAT {}, we are not reachable): relaying at once",
                a.provider,
                if self.ports_vary { "changes ports" } else { "keeps ports, theirs changes them" }
            );
            self.counters.punches_skipped += 1;
            self.relay(now, conn);
        }
    }

    /// Asks the rendezvous of `conn`'s attempt for a relayed circuit.
    fn relay(&mut self, now: Instant, conn: ConnId) {
        let nonce = self.next_rand();
        let Some(a) = self.attempts.get_mut(&conn) else {
            return;
        };
        a.phase = Phase::Relaying;
        a.deadline = now + self.cfg.relay_timeout;
        let (rendezvous, node) = (a.rendezvous, a.node);
        self.actions.push_back(Action::RelayOpen {
            conn,
            rendezvous,
            node,
            nonce,
        });
    }

    pub(super) fn fail(&mut self, conn: ConnId) {
        if self.attempts.remove(&conn).is_some() {
            self.counters.failures += 1;
            self.actions.push_back(Action::Failed { conn });
        }
    }
}
