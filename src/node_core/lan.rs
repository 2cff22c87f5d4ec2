//! LAN discovery inside the node (spec: `protocol-spec/nat.md`, section 11): what joins the
//! sans-IO [`Lan`] machine to the DHT and the transfer engine.
//!
//! - A node found on the link is given to the DHT as a claimed contact: it enters the
//!   routing table once it has proven its key (dht.md section 6.1), as anybody could
//!   announce any ID on the link. The first contact of an empty table starts a lookup of
//!   our own ID through it, which fills both tables: how a link with no bootstrap node
//!   forms a DHT.
//! - A download's provider lookup also asks the link (WANT); a node that provides the content
//!   answers (HAVE), and the downloader tries that LAN address before any other candidate.
//! - `status` shows the LAN peers under `nat.lan`.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Value};

use super::{NodeCore, Output};
use crate::id::Id;
use crate::nat::lan::{Lan, LanEvent};
use crate::proto::dht::Contact;

/// LAN discovery, when it runs (not with `--no-lan`, not on a loopback address).
#[derive(Default)]
pub struct LanGlue {
    pub(super) lan: Option<Lan>,
}

impl NodeCore {
    /// Turns LAN discovery on (the driver could open the multicast sockets); it starts with
    /// [`NodeCore::start`].
    pub fn enable_lan(&mut self, lan: Lan) {
        self.lan.lan = Some(lan);
    }

    /// A LAN datagram arrived from `from` (on the group's port or our sending socket).
    pub fn handle_lan_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if let Some(lan) = self.lan.lan.as_mut() {
            lan.handle_datagram(now, from, bytes);
            self.settle(now);
        }
    }

    /// Whether `addr` is the DHT/wire address of a node on our link.
    pub fn is_lan_peer(&self, addr: &SocketAddr) -> bool {
        self.lan.lan.as_ref().is_some_and(|l| l.is_peer_addr(addr))
    }

    pub(super) fn lan_start(&mut self, now: Instant) {
        if let Some(lan) = self.lan.lan.as_mut() {
            lan.start(now);
        }
    }

    pub(super) fn lan_timeout(&mut self, now: Instant) {
        if let Some(lan) = self.lan.lan.as_mut() {
            if lan.poll_timeout().is_some_and(|t| t <= now) {
                lan.handle_timeout(now);
            }
        }
    }

    pub(super) fn lan_poll_timeout(&self) -> Option<Instant> {
        self.lan.lan.as_ref().and_then(Lan::poll_timeout)
    }

    /// A download looks for providers: ask the link too.
    pub(super) fn lan_want(&mut self, content: Id) {
        if let Some(lan) = self.lan.lan.as_mut() {
            lan.want(content);
        }
    }

    /// Acts on what the LAN machine learnt and queues its datagrams; true if anything moved
    /// (part of `settle`).
    pub(super) fn lan_settle(&mut self, now: Instant) -> bool {
        let Some(lan) = self.lan.lan.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Some(ev) = lan.poll_event() {
            moved = true;
            match ev {
                LanEvent::PeerFound { node, addr } => {
                    log::info!("lan: found node {} at {addr}", &node.to_hex()[..16]);
                    self.dht
                        .add_claimed_contact(Contact { id: node, addr }, now);
                    self.view_dirty = true;
                }
                LanEvent::PeerGone { node } => {
                    log::info!("lan: node {} not heard for a while", &node.to_hex()[..16]);
                    self.view_dirty = true;
                }
                LanEvent::Want { content, from } => {
                    if self.dht.is_providing(&content) {
                        lan.have(now, content, from);
                    }
                }
                LanEvent::Have { content, addr } => {
                    log::debug!("lan: {addr} provides {content}");
                    self.library.engine.add_preferred_peer(now, &content, addr);
                }
            }
        }
        while let Some(t) = lan.poll_transmit() {
            moved = true;
            self.out.push_back(Output::Lan(t));
        }
        moved
    }

    /// `nat.lan` of `status`: null when LAN discovery is off.
    pub(super) fn lan_json(&self, now: Instant) -> Value {
        let Some(lan) = self.lan.lan.as_ref() else {
            return Value::Null;
        };
        let c = lan.counters();
        json!({
            "peers": lan.peers().map(|p| json!({
                "node_id": p.node.to_hex(),
                "addr": p.addr.to_string(),
                "first_seen_s": now.saturating_duration_since(p.first_seen).as_secs(),
                "last_seen_s": now.saturating_duration_since(p.last_seen).as_secs(),
            })).collect::<Vec<_>>(),
            "sent_multicast": c.sent_multicast,
            "sent_unicast": c.sent_unicast,
            "received": c.received,
            "malformed": c.malformed,
            "last_error": c.last_error,
            "refused_full": c.refused_full,
            "answers_limited": c.answers_limited,
        })
    }
}
