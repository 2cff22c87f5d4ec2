//! Time: handshake and idle timeouts, keep-alives, the schedulers' stalls, upload slot
//! rotation and peer queries ([`Engine::handle_timeout`], [`Engine::poll_timeout`]).

use std::time::Instant;

use super::action::{Action, WireAction};
use super::connection::{Conn, ConnState};
use super::{Content, Engine, Source};
use crate::id::Id;
use crate::proto::wire::Message;

impl Engine {
    /// Timers: handshake and idle timeouts, keep-alives, stalls, slot rotation, peer queries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut close = Vec::new();
        let mut ping = Vec::new();
        for (id, k) in &self.conns {
            let limit = if k.state == ConnState::Active {
                self.cfg.idle_timeout
            } else {
                self.cfg.handshake_timeout
            };
            let since = if k.state == ConnState::Active {
                k.last_rx
            } else {
                k.opened
            };
            if now.saturating_duration_since(since) >= limit {
                close.push(*id);
            } else if k.state == ConnState::Active
                && now.saturating_duration_since(k.last_tx) >= self.cfg.keepalive
            {
                ping.push(*id);
            }
        }
        for id in close {
            log::debug!("wire: closing idle or silent connection {id}");
            self.drop_conn(now, id);
            self.actions.push_back(WireAction::Close { conn: id });
        }
        for id in ping {
            self.send(id, now, Message::KeepAlive);
        }
        let contents: Vec<Id> = self.timed.iter().copied().collect();
        for id in contents {
            if let Some(s) = self.scheduler(&id) {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
            self.pump(now, id);
            let want_peers = self.contents.get(&id).is_some_and(|c| {
                matches!(c.source, Source::Download)
                    && !c.complete
                    && c.conns.len() < self.cfg.max_peers_per_content
                    && c.dials.as_ref().is_some_and(|d| {
                        d.candidates.is_empty() && d.next_peer_query.is_some_and(|t| t <= now)
                    })
            });
            if want_peers {
                if let Some(c) = self.contents.get_mut(&id) {
                    let d = c.dials();
                    d.next_peer_query = Some(now + d.peer_query_backoff);
                    d.peer_query_backoff =
                        (d.peer_query_backoff * 2).min(self.cfg.peer_query_interval);
                    // Addresses tried before may be worth another go later.
                    d.tried.clear();
                    d.proven.clear();
                }
                self.actions.push_back(Action::FindPeers { content: id });
            } else if let Some(d) = self.contents.get_mut(&id).and_then(|c| c.dials.as_mut()) {
                // Due but not wanted now (enough peers, or candidates still to try): look
                // again later. Left in the past, this deadline made `poll_timeout` return
                // a past instant until the download lost a peer, and the driver spin (the
                // swarm simulator caught it as a livelock).
                if d.next_peer_query.is_some_and(|t| t <= now) {
                    d.next_peer_query = Some(now + d.peer_query_backoff);
                }
            }
            self.connect_more(now, id);
        }
        // Finished, cancelled or turned into seeds: no timers of theirs any more.
        let contents = &self.contents;
        self.timed
            .retain(|id| contents.get(id).is_some_and(Content::has_timers));
        if self.next_rotation.is_some_and(|t| t <= now) {
            self.rotate_unchoked(now);
        }
        self.reclaim_idle_slots(now);
    }

    /// When [`Engine::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.next_rotation;
        let mut min = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if self.conns.values().any(Conn::waiting) {
            for k in self.conns.values().filter(|k| k.idle_slot()) {
                min(k.last_request + self.cfg.idle_slot_timeout);
            }
        }
        for k in self.conns.values() {
            if k.state == ConnState::Active {
                min(k.last_rx + self.cfg.idle_timeout);
                min(k.last_tx + self.cfg.keepalive);
            } else {
                min(k.opened + self.cfg.handshake_timeout);
            }
        }
        for c in self.timed.iter().filter_map(|id| self.contents.get(id)) {
            if let Some(s) = &c.scheduler {
                if let Some(x) = s.poll_timeout() {
                    min(x);
                }
            }
            if matches!(c.source, Source::Download) && !c.complete {
                if let Some(x) = c.dials.as_ref().and_then(|d| d.next_peer_query) {
                    min(x);
                }
            }
        }
        t
    }
}
