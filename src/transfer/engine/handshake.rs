//! The opening of a connection: the HANDSHAKE (banned peers, full contents, duplicate
//! connections), then METADATA, BITFIELD once we hold the verified manifest, and PEERS
//! (`pex.rs`).

use std::time::Instant;

use super::action::WireAction;
use super::connection::ConnState;
use super::{ConnId, Engine};
use crate::proto::wire::{error_code, Bitfield, Handshake, Message};

impl Engine {
    pub(super) fn on_handshake(&mut self, now: Instant, conn: ConnId, h: Handshake) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        let (outgoing, addr) = (k.outgoing, k.addr);
        if h.node_id == self.node_id {
            // Connected to ourselves (our own address came back from the DHT).
            self.drop_conn(now, conn);
            self.actions.push_back(WireAction::Close { conn });
            return;
        }
        if self.bans.nodes.contains(&h.node_id) || self.bans.addrs.contains(&addr) {
            self.close_with(
                conn,
                error_code::BANNED,
                "banned: sent data that failed verification",
            );
            return;
        }
        if outgoing {
            if k.content != Some(h.content_id) {
                self.close_with(
                    conn,
                    error_code::PROTOCOL_VIOLATION,
                    "handshake for another content",
                );
                return;
            }
        } else {
            let Some(c) = self.contents.get(&h.content_id) else {
                self.close_with(
                    conn,
                    error_code::UNKNOWN_CONTENT,
                    "this node does not have that content",
                );
                return;
            };
            if c.conns.len() >= self.cfg.max_peers_per_content {
                // Full: make room by dropping the connection that does nothing for anyone
                // (not interested in our chunks, nothing we need), silent longest. Otherwise
                // idle connections could lock real downloaders out.
                let have = c.have.clone();
                let victim = c
                    .conns
                    .iter()
                    .filter_map(|id| self.conns.get(id).map(|k| (*id, k)))
                    .filter(|(_, k)| {
                        !k.peer_interested
                            && !k
                                .peer_bits
                                .as_ref()
                                .is_some_and(|b| b.iter().any(|i| !have.contains(i)))
                    })
                    .min_by_key(|(_, k)| k.last_rx)
                    .map(|(id, _)| id);
                match victim {
                    Some(v) => {
                        log::debug!(
                            "content {}: evicting idle connection {v} for a newcomer",
                            h.content_id
                        );
                        self.close_with(
                            v,
                            error_code::TOO_MANY_CONNECTIONS,
                            "making room: this connection was idle",
                        );
                    }
                    None => {
                        self.close_with(
                            conn,
                            error_code::TOO_MANY_CONNECTIONS,
                            "too many peers for this content",
                        );
                        return;
                    }
                }
            }
        }
        let content = h.content_id;
        // One connection per peer and content (wire.md, section 3): when two peers dialled
        // each other, both keep the connection opened by the one with the lower node ID, a
        // rule each side applies alone and reaches the same answer; a second connection
        // opened the same way as the first replaces it (a reconnect: the first is stale).
        let duplicate = self
            .conns
            .iter()
            .find(|(id, k)| {
                **id != conn
                    && k.state == ConnState::Active
                    && k.content == Some(content)
                    && k.remote.as_ref().is_some_and(|r| r.node_id == h.node_id)
            })
            .map(|(id, _)| *id);
        if let Some(other) = duplicate {
            let other_outgoing = self.conns.get(&other).is_some_and(|k| k.outgoing);
            let keep_outgoing = self.node_id < h.node_id;
            // Opened the same way as the one we have: the peer (or we) reconnected, and the
            // older connection is the stale one. Otherwise both dialled: the ID rule.
            let (drop, keep_this) = if other_outgoing == outgoing || outgoing == keep_outgoing {
                (other, true)
            } else {
                (conn, false)
            };
            log::debug!("content {content}: closing duplicate connection {drop} to the same peer");
            self.drop_conn(now, drop);
            self.actions.push_back(WireAction::Close { conn: drop });
            if !keep_this {
                return;
            }
        }
        if let Some(k) = self.conns.get_mut(&conn) {
            k.state = ConnState::Active;
            k.content = Some(content);
            k.remote = Some(h);
        }
        if let Some(c) = self.contents.get_mut(&content) {
            c.conns.insert(conn);
        }
        if !outgoing {
            self.send(
                conn,
                now,
                Message::Handshake(Handshake::new(self.node_id, content, self.listen_port)),
            );
        }
        let name = self.contents.get(&content).and_then(|c| c.name.clone());
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            self.send(conn, now, Message::Metadata { name });
        }
        self.send_bitfield(conn);
        self.send_peer_list(now, conn, content);
    }

    pub(super) fn send_bitfield(&mut self, conn: ConnId) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        if k.sent_bitfield || k.state != ConnState::Active {
            return;
        }
        let Some(content) = k.content else {
            return;
        };
        let peer_bits = k.peer_bits.clone();
        self.start_super_seed(&content);
        let Some(c) = self.contents.get(&content) else {
            return;
        };
        // A BITFIELD says "I hold the verified manifest": not before then, and for a
        // download not before the partial file (and so `have`) is known.
        if c.manifest.is_none() || c.opening {
            return;
        }
        let mut b = Bitfield::new(c.have.len() as u32);
        let offering = c.super_seed.is_some();
        if !offering {
            for i in c.have.iter() {
                b.set(i as u32);
            }
        }
        if let Some(k) = self.conns.get_mut(&conn) {
            k.sent_bitfield = true;
        }
        self.actions.push_back(WireAction::Send {
            conn,
            msg: Message::Bitfield(b),
        });
        if offering {
            // Super-seeding: an empty BITFIELD; chunks are offered with HAVE once the peer's
            // BITFIELD shows what it lacks (at once if it came first).
            if let Some(ss) = self.super_seed(&content) {
                ss.add_peer(conn, true);
                if let Some(bits) = &peer_bits {
                    ss.peer_bitfield(conn, bits);
                }
            }
            if peer_bits.is_some() {
                for chunk in self.offers_for(conn, &content) {
                    self.actions.push_back(WireAction::Send {
                        conn,
                        msg: Message::Have(chunk),
                    });
                }
            }
        }
    }
}
