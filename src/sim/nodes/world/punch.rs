//! NAT traversal's sockets in the simulation: dial-backs, hole punches (simultaneous opens
//! through both nodes' filters), relay connections and circuits at the rendezvous.

use std::net::SocketAddr;

use super::{Event, Purpose, SockKind, World, FILTER_LIFE};
use crate::conn::ConnId;
use crate::node_core::NatIo;
use crate::proto::wire::{self, Message};
use crate::sim::net::node_index;
use crate::sim::nodes::links::{Item, SockId};

impl World {
    // ----- NAT traversal's sockets ------------------------------------------------------

    pub(super) fn nat(&mut self, i: usize, io: NatIo) {
        let now = self.now;
        match io {
            NatIo::DialBack { addr, hello } => {
                let hello = decode(&hello);
                self.start_connect(i, addr, Purpose::DialBack, hello)
            }
            NatIo::PunchConnect { conn, addr } => {
                self.nodes[i].punches.insert(conn, addr);
                self.punch(i, addr, Some(conn));
            }
            NatIo::PunchAccept { addr } => self.punch(i, addr, None),
            NatIo::DropPunches { conn } => {
                self.nodes[i].punches.remove(&conn);
            }
            NatIo::RelayOpen {
                conn,
                rendezvous,
                hello,
            } => {
                let hello = decode(&hello);
                self.start_connect(i, rendezvous, Purpose::RelayOpen(conn), hello)
            }
            NatIo::RelayJoin {
                rendezvous,
                hello,
                peer,
            } => {
                let hello = decode(&hello);
                self.start_connect(i, rendezvous, Purpose::RelayJoin(peer), hello)
            }
            NatIo::HoldForRelay { conn } => {
                if let Some(s) = self.nodes[i].socks.remove(&conn) {
                    if let Some(x) = self.socks.get_mut(&s) {
                        x.kind = SockKind::Held(conn);
                    }
                }
            }
            NatIo::StartCircuit { opener, joiner } => {
                let so = self.held_sock(i, opener);
                let sj = self.nodes[i].socks.remove(&joiner);
                match (so, sj) {
                    (Some(so), Some(sj)) => {
                        self.tally.circuits += 1;
                        if let Some(x) = self.socks.get_mut(&so) {
                            x.kind = SockKind::Circuit(sj);
                        }
                        if let Some(x) = self.socks.get_mut(&sj) {
                            x.kind = SockKind::Circuit(so);
                        }
                        if let Some(out) = self.socks.get(&so).map(|x| x.out) {
                            self.links.push(out, Item::Frame(Message::RelayOk));
                        }
                    }
                    (so, sj) => {
                        for s in [so, sj].into_iter().flatten() {
                            self.reset(s);
                        }
                        if let Some(core) = self.nodes[i].core.as_mut() {
                            core.handle_circuit_closed(now);
                        }
                    }
                }
            }
            NatIo::DropHeld { conn } => {
                if let Some(s) = self.held_sock(i, conn) {
                    self.reset(s);
                }
            }
            // No gateway in the simulated network, so the core never maps a port.
            NatIo::PmpSend { .. } | NatIo::UpnpSearch { .. } | NatIo::UpnpHttp { .. } => {}
        }
    }

    /// The socket a rendezvous holds (or ended the framing of) for its connection `conn`.
    pub(super) fn held_sock(&self, i: usize, conn: ConnId) -> Option<SockId> {
        self.socks
            .iter()
            .find(|(_, s)| {
                s.node == i && matches!(s.kind, SockKind::Held(c) | SockKind::Ended(c) if c == conn)
            })
            .map(|(id, _)| *id)
    }

    /// Node `i` punches towards `addr`: its own filter opens for the peer at once, and its
    /// SYN reaches the peer one latency later.
    pub(super) fn punch(&mut self, i: usize, addr: SocketAddr, conn: Option<ConnId>) {
        let now = self.now;
        self.nodes[i].tcp_out.insert(addr, now + FILTER_LIFE);
        let Some(to) = node_index(&addr).filter(|j| *j < self.nodes.len()) else {
            return;
        };
        let at = now + self.latency(i, to);
        let from_life = self.nodes[i].life;
        self.schedule(
            at,
            Event::PunchSyn {
                from: i,
                from_life,
                to,
                conn,
            },
        );
    }

    /// A punch SYN from `from` reaches `to`: if `to` lets it in (it punched back, or is
    /// public), the connection is made: one connection, as a simultaneous open makes.
    pub(super) fn punch_syn(
        &mut self,
        from: usize,
        from_life: u32,
        to: usize,
        conn: Option<ConnId>,
    ) {
        let now = self.now;
        if self.nodes[from].life != from_life || !self.admits_tcp(from, to) {
            return;
        }
        // A downloader whose punch was given up (connected otherwise) makes nothing.
        if let Some(c) = conn {
            if !self.nodes[from].punches.contains_key(&c) {
                return;
            }
        }
        let (to_addr, from_addr) = (self.nodes[to].addr, self.nodes[from].addr);
        // The side whose SYN got in connected its punch socket; the other side sees the SYN
        // at its listener (or at its own punch socket: the same connection).
        let (ka, kb) = match conn {
            Some(c) => {
                self.nodes[from].punches.remove(&c);
                let keep = self.nodes[from]
                    .core
                    .as_mut()
                    .is_some_and(|core| core.handle_punch_connected(now, c));
                if !keep {
                    self.settle(from);
                    return;
                }
                let Some(cb) = self.accept_at(to, from_addr) else {
                    return;
                };
                (SockKind::Wire(c), SockKind::Wire(cb))
            }
            None => {
                // A provider's SYN reached the downloader: the downloader's listener takes
                // it (its core recognises its own punch); the provider's punch socket is an
                // incoming connection.
                let Some(cb) = self.accept_at(to, from_addr) else {
                    return;
                };
                if let Some((c, _)) = self.nodes[to]
                    .punches
                    .iter()
                    .find(|(_, a)| **a == from_addr)
                    .map(|(c, a)| (*c, *a))
                {
                    self.nodes[to].punches.remove(&c);
                }
                let Some(ca) = self.accept_at(from, to_addr) else {
                    return;
                };
                (SockKind::Wire(ca), SockKind::Wire(cb))
            }
        };
        self.tally.punched += 1;
        self.pair(from, ka, to, kb);
        self.settle(from);
        self.settle(to);
    }
}

/// A frame's value from its bytes (the NAT layer's hello frames).
fn decode(bytes: &[u8]) -> Option<Message> {
    match wire::decode_frame(bytes) {
        Ok(Some((m, _))) => Some(m),
        _ => None,
    }
}
