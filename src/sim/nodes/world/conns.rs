//! Connections between simulated nodes: connecting (through NAT filters), the two sockets
//! and pipes of a connection, and what arrives at a socket.

use std::net::SocketAddr;

use super::{Connect, Event, NatKind, Purpose, Sock, SockKind, World, SYN_TIMEOUT};
use crate::conn::ConnId;
use crate::node_core::NodeCore;
use crate::proto::wire::Message;
use crate::sim::net::node_index;
use crate::sim::nodes::links::{Item, SockId};
use crate::transfer::engine::WireAction;

impl World {
    // ----- wire connections ---------------------------------------------------------

    pub(super) fn wire(&mut self, i: usize, w: WireAction) {
        match w {
            WireAction::Connect { conn, addr, .. } => {
                self.start_connect(i, addr, Purpose::Wire(conn), None)
            }
            WireAction::Send { conn, msg } => self.send_on(i, conn, Item::Frame(msg)),
            WireAction::SendPiece { conn, chunk, data } => {
                self.nodes[i].uploaded += data.len() as u64;
                self.send_on(i, conn, Item::Piece { chunk, data })
            }
            WireAction::Close { conn } => {
                if let Some(s) = self.nodes[i].socks.remove(&conn) {
                    self.close_sock(s);
                }
            }
        }
    }

    pub(super) fn send_on(&mut self, i: usize, conn: ConnId, item: Item) {
        let Some(s) = self.nodes[i].socks.get(&conn).copied() else {
            return;
        };
        if let Some(out) = self.socks.get(&s).map(|s| s.out) {
            self.links.push(out, item);
        }
    }

    /// Closes socket `s` politely: a FIN after what is queued; it is forgotten here once
    /// the FIN has left.
    pub(super) fn close_sock(&mut self, s: SockId) {
        if let Some(out) = self.socks.get(&s).map(|s| s.out) {
            self.links.push(out, Item::Fin);
        }
    }

    /// Whether `to` lets a connection from `from` in (dead nodes and NAT filters do not).
    pub(super) fn admits_tcp(&self, from: usize, to: usize) -> bool {
        let n = &self.nodes[to];
        n.core.is_some()
            && (n.spec.nat == NatKind::Public
                || n.tcp_out
                    .get(&self.nodes[from].addr)
                    .is_some_and(|t| *t >= self.now))
    }

    pub(super) fn start_connect(
        &mut self,
        i: usize,
        addr: SocketAddr,
        purpose: Purpose,
        hello: Option<Message>,
    ) {
        let now = self.now;
        // A plain connect leaves from an ephemeral port: it opens the NAT for replies to
        // that port only, never for connections to the node's wire port (only a punch,
        // bound to the wire port, does that).
        let to = node_index(&addr).filter(|j| *j < self.nodes.len());
        let c = Connect {
            from: i,
            from_life: self.nodes[i].life,
            to: to.unwrap_or(usize::MAX),
            purpose,
            hello,
        };
        let at = match to {
            Some(j) if self.admits_tcp(i, j) => now + self.latency(i, j) * 2,
            Some(j) if self.nodes[j].core.is_some() => now + SYN_TIMEOUT,
            // Refused (nobody there): a reset comes back after a round trip.
            Some(j) => now + self.latency(i, j) * 2,
            None => now + SYN_TIMEOUT,
        };
        self.schedule(at, Event::Connect(c));
    }

    pub(super) fn connect_done(&mut self, c: Connect) {
        let now = self.now;
        if self.nodes[c.from].life != c.from_life || self.nodes[c.from].core.is_none() {
            return;
        }
        let ok = c.to < self.nodes.len() && self.admits_tcp(c.from, c.to);
        if !ok {
            self.tally.refused += 1;
            let i = c.from;
            if let Some(core) = self.nodes[i].core.as_mut() {
                match c.purpose {
                    Purpose::Wire(conn) => core.handle_wire_closed(now, conn),
                    Purpose::DialBack => core.handle_dial_back_done(now),
                    Purpose::RelayOpen(conn) => core.handle_relay_failed(now, conn),
                    Purpose::RelayJoin(_) => {}
                }
            }
            self.settle(i);
            return;
        }
        self.tally.connects += 1;
        let (a, b) = (c.from, c.to);
        // The accepting side first: its core numbers the connection.
        let from_addr = self.nodes[a].addr;
        let Some(cb) = self.accept_at(b, from_addr) else {
            return;
        };
        let kind_a = match c.purpose {
            Purpose::Wire(conn) => SockKind::Wire(conn),
            Purpose::DialBack => SockKind::Dial,
            Purpose::RelayOpen(conn) => SockKind::Opener(conn),
            Purpose::RelayJoin(peer) => {
                let conn = self.accept_at(a, peer);
                match conn {
                    Some(conn) => SockKind::Wire(conn),
                    None => return,
                }
            }
        };
        let (sa, _sb) = self.pair(a, kind_a, b, SockKind::Wire(cb));
        if let Some(hello) = c.hello {
            let out = self.socks[&sa].out;
            self.links.push(out, Item::Frame(hello));
        }
        match c.purpose {
            Purpose::Wire(conn) => {
                if let Some(core) = self.nodes[a].core.as_mut() {
                    core.handle_wire_connected(now, conn);
                }
            }
            Purpose::DialBack => {
                let out = self.socks[&sa].out;
                self.links.push(out, Item::Fin);
                if let Some(core) = self.nodes[a].core.as_mut() {
                    core.handle_dial_back_done(now);
                }
            }
            Purpose::RelayOpen(_) | Purpose::RelayJoin(_) => {}
        }
        self.settle(a);
        self.settle(b);
    }

    /// Node `i` takes an incoming connection from `peer`: its core numbers it (`None` if the
    /// node is down).
    pub(super) fn accept_at(&mut self, i: usize, peer: SocketAddr) -> Option<ConnId> {
        let now = self.now;
        self.nodes[i]
            .core
            .as_mut()
            .map(|core| core.handle_wire_accepted(now, peer))
    }

    /// Feeds node `i`'s core, if it runs.
    pub(super) fn core(&mut self, i: usize, f: impl FnOnce(&mut NodeCore)) {
        if let Some(c) = self.nodes[i].core.as_mut() {
            f(c);
        }
    }

    /// Two connected sockets and their pipes.
    pub(super) fn pair(
        &mut self,
        a: usize,
        ka: SockKind,
        b: usize,
        kb: SockKind,
    ) -> (SockId, SockId) {
        let (sa, sb) = (self.next_sock, self.next_sock + 1);
        self.next_sock += 2;
        let lat = self.latency(a, b);
        let pa = self.links.open((a, sa), (b, sb), lat);
        let pb = self.links.open((b, sb), (a, sa), lat);
        self.socks.insert(
            sa,
            Sock {
                node: a,
                kind: ka,
                out: pa,
                peer: sb,
            },
        );
        self.socks.insert(
            sb,
            Sock {
                node: b,
                kind: kb,
                out: pb,
                peer: sa,
            },
        );
        for (n, k, s) in [(a, ka, sa), (b, kb, sb)] {
            if let SockKind::Wire(conn) | SockKind::Opener(conn) = k {
                self.nodes[n].socks.insert(conn, s);
            }
        }
        (sa, sb)
    }

    /// An item arrives at socket `s`.
    pub(super) fn arrive(&mut self, s: SockId, item: Item) {
        let now = self.now;
        let Some(sock) = self.socks.get(&s) else {
            self.tally.stray += 1;
            return;
        };
        let (i, kind) = (sock.node, sock.kind);
        let fin = matches!(item, Item::Fin);
        if fin {
            // The other end is gone: so is this end, and whatever it still had to send.
            if let Some(sock) = self.socks.remove(&s) {
                self.links.drop_pipe(sock.out);
            }
        }
        if self.nodes[i].core.is_none() {
            return;
        }
        match kind {
            SockKind::Wire(conn) => match item {
                Item::Frame(m) => {
                    if m.ends_framing() {
                        if let Some(x) = self.socks.get_mut(&s) {
                            x.kind = SockKind::Ended(conn);
                        }
                    }
                    self.core(i, |c| c.handle_wire_frame(now, conn, m));
                }
                Item::Piece { chunk, data } => {
                    let m = Message::Piece {
                        chunk,
                        data: (*data).clone(),
                    };
                    self.core(i, |c| c.handle_wire_frame(now, conn, m));
                }
                Item::Fin => {
                    self.nodes[i].socks.remove(&conn);
                    self.core(i, |c| c.handle_wire_closed(now, conn));
                }
            },
            SockKind::Opener(conn) => match item {
                Item::Frame(Message::RelayOk) => {
                    if let Some(x) = self.socks.get_mut(&s) {
                        x.kind = SockKind::Wire(conn);
                    }
                    self.core(i, |c| c.handle_relay_ready(now, conn));
                }
                _ => {
                    self.nodes[i].socks.remove(&conn);
                    self.core(i, |c| c.handle_relay_failed(now, conn));
                    if !fin {
                        self.reset(s);
                    }
                }
            },
            SockKind::Held(conn) => {
                self.core(i, |c| c.handle_relay_gone(now, conn));
                if !fin {
                    self.reset(s);
                }
            }
            SockKind::Circuit(other) => {
                let out = self.socks.get(&other).map(|o| o.out);
                if let Some(out) = out {
                    self.links.push(out, item);
                }
                if fin {
                    self.socks.remove(&other);
                    self.core(i, |c| c.handle_circuit_closed(now));
                }
            }
            SockKind::Ended(_) | SockKind::Dial => {
                if !fin {
                    self.tally.stray += 1;
                }
            }
        }
        self.settle(i);
    }
}
