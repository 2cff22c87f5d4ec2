//! Connections: the state of each ([`Conn`]), opening new ones to candidate peers, sending,
//! and closing them (with an ERROR, or after a ban), handing their work to others.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::action::{Action, WireAction};
use super::{ConnId, Engine, Source, MAX_TRIED};
use crate::bitset::BitSet;
use crate::id::Id;
use crate::proto::wire::{error_code, Handshake, Message};

#[derive(Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    Connecting,
    /// Waiting for the peer's HANDSHAKE.
    Handshaking,
    Active,
}

/// What a dial to a PEERS-named address keeps of the entries (`pex.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct PexDial {
    /// A second ID another entry named for the address.
    pub(super) alt: Option<Id>,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) addr: SocketAddr,
    pub(super) outgoing: bool,
    pub(super) content: Option<Id>,
    pub(super) state: ConnState,
    pub(super) remote: Option<Handshake>,
    /// For a dial: the node ID the peer must prove (its DHT record's or PEERS entry's).
    pub(super) expect: Option<Id>,
    /// For a dial whose `expect` only a PEERS entry named (no DHT record).
    pub(super) pex: Option<PexDial>,
    /// The peer's BITFIELD arrived (it holds the manifest).
    pub(super) peer_has_manifest: bool,
    pub(super) peer_bits: Option<BitSet>,
    pub(super) sent_bitfield: bool,
    /// The peer sent its METADATA (once at most, rule 6).
    pub(super) got_metadata: bool,
    pub(super) am_choking: bool,
    pub(super) peer_interested: bool,
    pub(super) unchoked_at: Option<Instant>,
    /// When we last choked it (or it connected): the longest waiting is unchoked first.
    pub(super) choked_since: Instant,
    /// When it last sent a request we queued, or when we unchoked it.
    pub(super) last_request: Instant,
    pub(super) requests: VecDeque<u32>,
    pub(super) pieces_pending: usize,
    pub(super) opened: Instant,
    pub(super) last_rx: Instant,
    pub(super) last_tx: Instant,
}

impl Conn {
    /// Interested in our chunks and choked: it would use an upload slot. Never before our
    /// BITFIELD: UNCHOKE may not precede it (wire.md section 3, rule 4).
    pub(super) fn waiting(&self) -> bool {
        self.am_choking
            && self.peer_interested
            && self.state == ConnState::Active
            && self.sent_bitfield
    }

    /// Unchoked with nothing queued or being sent to it.
    pub(super) fn idle_slot(&self) -> bool {
        !self.am_choking && self.requests.is_empty() && self.pieces_pending == 0
    }

    pub(super) fn new(
        addr: SocketAddr,
        outgoing: bool,
        content: Option<Id>,
        now: Instant,
        state: ConnState,
    ) -> Self {
        Conn {
            addr,
            outgoing,
            content,
            state,
            remote: None,
            expect: None,
            pex: None,
            peer_has_manifest: false,
            peer_bits: None,
            sent_bitfield: false,
            got_metadata: false,
            am_choking: true,
            peer_interested: false,
            unchoked_at: None,
            choked_since: now,
            last_request: now,
            requests: VecDeque::new(),
            pieces_pending: 0,
            opened: now,
            last_rx: now,
            last_tx: now,
        }
    }
}

impl Engine {
    pub(super) fn connect_more(&mut self, now: Instant, content: Id) {
        loop {
            let Some(c) = self.contents.get_mut(&content) else {
                return;
            };
            if c.complete || !matches!(c.source, Source::Download) {
                return;
            }
            let open = c.conns.len()
                + self
                    .conns
                    .values()
                    .filter(|k| k.content == Some(content) && k.state == ConnState::Connecting)
                    .count();
            if open >= self.cfg.max_peers_per_content {
                return;
            }
            let Some(d) = c.dials.as_deref_mut() else {
                return;
            };
            let Some(addr) = d.candidates.pop_front() else {
                return;
            };
            if d.tried.len() >= MAX_TRIED {
                d.tried.clear();
                d.proven.clear();
            }
            d.tried.insert(addr);
            // A DHT record's ID first, else a PEERS entry's (wire.md section 4.16).
            let pex_id = d.pex_ids.remove(&addr);
            let pex_alt = d.pex_alt.remove(&addr);
            let dht_id = self.expected_ids.get(&addr).copied();
            let expect = dht_id.or(pex_id);
            // Connected already: to that address, with a peer that said it accepts
            // connections there, or with the node expected there.
            let busy = self.conns.values().any(|k| {
                k.content == Some(content)
                    && (k.addr == addr
                        || k.remote.as_ref().is_some_and(|r| {
                            SocketAddr::new(k.addr.ip(), r.listen_port) == addr
                                || expect == Some(r.node_id)
                        }))
            });
            if busy
                || self.bans.addrs.contains(&addr)
                || expect.is_some_and(|id| id == self.node_id || self.bans.nodes.contains(&id))
            {
                continue;
            }
            let conn = self.alloc_conn();
            let mut k = Conn::new(addr, true, Some(content), now, ConnState::Connecting);
            k.expect = expect;
            if dht_id.is_none() && pex_id.is_some() {
                k.pex = Some(PexDial { alt: pex_alt });
            }
            self.conns.insert(conn, k);
            self.actions
                .push_back(WireAction::Connect { conn, addr, expect });
        }
    }

    pub(super) fn alloc_conn(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn = id.next();
        id
    }

    pub(super) fn send(&mut self, conn: ConnId, now: Instant, msg: Message) {
        if let Some(k) = self.conns.get_mut(&conn) {
            k.last_tx = now;
            self.actions.push_back(WireAction::Send { conn, msg });
        }
    }

    pub(super) fn close_with(&mut self, conn: ConnId, code: u16, text: &str) {
        if self.conns.contains_key(&conn) {
            self.actions.push_back(WireAction::Send {
                conn,
                msg: Message::Error {
                    code,
                    text: text.to_owned(),
                },
            });
            self.actions.push_back(WireAction::Close { conn });
        }
        let now = self.conns.get(&conn).map(|k| k.last_rx);
        if let Some(now) = now {
            self.drop_conn(now, conn);
        }
    }

    /// Forgets a connection and gives its work to others.
    pub(super) fn drop_conn(&mut self, now: Instant, conn: ConnId) {
        let Some(k) = self.conns.remove(&conn) else {
            return;
        };
        let was_unchoked = !k.am_choking;
        if let Some(content) = k.content {
            let retry_manifest = self
                .contents
                .get(&content)
                .is_some_and(|c| c.assembly.as_ref().is_some_and(|a| a.from == conn));
            if let Some(c) = self.contents.get_mut(&content) {
                c.conns.remove(&conn);
                if retry_manifest {
                    c.assembly = None;
                }
                if let Some(s) = c.scheduler.as_mut() {
                    s.peer_gone(now, conn);
                }
                if let Some(ss) = c.super_seed.as_mut() {
                    ss.remove_peer(conn);
                }
            }
            self.offer_starved(now, content);
            self.pump(now, content);
            if retry_manifest {
                self.request_manifest(now, content);
            }
            self.connect_more(now, content);
        }
        if was_unchoked {
            self.fill_upload_slots(now);
        }
    }

    /// Bans the peer on `conn`, which sent `what` ("a chunk", "a manifest") that failed
    /// verification, and tells it so.
    pub(super) fn ban(&mut self, now: Instant, conn: ConnId, what: &'static str) {
        // A liar's file name is not kept either: the next honest peer's METADATA names it.
        for c in self.contents.values_mut() {
            let download = c.source_is_download();
            let Some(d) = c.dials.as_deref_mut() else {
                continue;
            };
            if d.name_from == Some(conn) && download {
                c.name = None;
                d.name_from = None;
            }
        }
        if let Some(k) = self.conns.get(&conn) {
            let node = k.remote.as_ref().map(|h| h.node_id);
            if let Some(n) = node {
                self.bans.nodes.insert(n);
            }
            self.bans.addrs.insert(k.addr);
            self.actions.push_back(Action::Banned {
                addr: k.addr,
                node,
                what,
            });
        }
        let _ = now;
        self.close_with(
            conn,
            error_code::BANNED,
            &format!("{what} you sent failed verification"),
        );
    }
}
