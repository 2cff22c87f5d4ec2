//! The upload side: answering REQUESTs (reads queued per connection, at most
//! `max_pieces_pending` at once) and choking: at most `upload_slots` peers unchoked, rotated
//! for fairness, idle slots given to waiting peers.

use std::sync::Arc;
use std::time::Instant;

use super::action::WireAction;
use super::connection::Conn;
use super::{ConnId, Engine};
use crate::id::Id;
use crate::proto::wire::{reject_reason, Message};
use crate::storage::job::StorageJob;

impl Engine {
    /// A chunk read for upload finished. `None`: it could not be read (a changed file).
    pub fn chunk_read(
        &mut self,
        now: Instant,
        conn: ConnId,
        chunk: u32,
        data: Option<Arc<Vec<u8>>>,
    ) {
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        match data {
            Some(data) => {
                k.last_tx = now;
                let content = k.content;
                self.actions
                    .push_back(WireAction::SendPiece { conn, chunk, data });
                if let Some(content) = content {
                    if let Some(ss) = self.super_seed(&content) {
                        ss.sent(conn, chunk);
                    }
                    self.offer_starved(now, content);
                }
            }
            None => {
                k.pieces_pending = k.pieces_pending.saturating_sub(1);
                self.send(
                    conn,
                    now,
                    Message::Reject {
                        chunk,
                        reason: reject_reason::CONTENT_CHANGED,
                    },
                );
            }
        }
    }

    pub(super) fn on_request(&mut self, now: Instant, conn: ConnId, content: Id, chunk: u32) {
        let has = self
            .contents
            .get(&content)
            .is_some_and(|c| c.have.contains(chunk as usize));
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        let reason = if k.am_choking {
            Some(reject_reason::CHOKED)
        } else if !has {
            Some(reject_reason::NOT_AVAILABLE)
        } else if k.requests.len() >= self.cfg.max_queued_requests {
            Some(reject_reason::BUSY)
        } else {
            None
        };
        match reason {
            Some(reason) => self.send(conn, now, Message::Reject { chunk, reason }),
            None => {
                k.last_request = now;
                if !k.requests.contains(&chunk) {
                    k.requests.push_back(chunk);
                    if let Some(ss) = self.super_seed(&content) {
                        ss.requested(conn, chunk);
                    }
                }
                self.serve_requests(now, conn);
                self.offer(now, conn);
            }
        }
    }

    /// Starts reads for queued requests while the connection has room.
    pub(super) fn serve_requests(&mut self, _now: Instant, conn: ConnId) {
        let max = self.cfg.max_pieces_pending;
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(content) = k.content else {
            return;
        };
        let ss = self
            .contents
            .get(&content)
            .and_then(|c| c.super_seed.as_ref());
        while k.pieces_pending < max {
            // Super-seeding: the chunk with the fewest copies in the swarm first (the first
            // asked among equals); otherwise in the order asked.
            let next = match ss {
                Some(ss) if k.requests.len() > 1 => k
                    .requests
                    .iter()
                    .enumerate()
                    .min_by_key(|(pos, c)| (ss.copies(**c as usize), *pos))
                    .map(|(pos, _)| pos),
                _ => Some(0),
            };
            let Some(chunk) = next.and_then(|pos| k.requests.remove(pos)) else {
                break;
            };
            k.pieces_pending += 1;
            self.actions.push_back(StorageJob::ReadChunk {
                conn,
                content,
                chunk,
            });
        }
    }

    /// Unchokes waiting peers (interested, choked), longest waiting first, while slots
    /// are free.
    pub(super) fn fill_upload_slots(&mut self, now: Instant) {
        let unchoked = self.conns.values().filter(|k| !k.am_choking).count();
        let mut free = self.cfg.upload_slots.saturating_sub(unchoked);
        let mut waiting: Vec<(Instant, ConnId)> = self
            .conns
            .iter()
            .filter(|(_, k)| k.waiting())
            .map(|(id, k)| (k.choked_since, *id))
            .collect();
        waiting.sort_unstable();
        let mut left = waiting.len();
        for (_, id) in waiting {
            if free == 0 {
                break;
            }
            if let Some(k) = self.conns.get_mut(&id) {
                k.am_choking = false;
                k.unchoked_at = Some(now);
                k.last_request = now;
            }
            self.send(id, now, Message::Unchoke);
            self.set_unchoked(now, id, true);
            self.offer(now, id);
            free -= 1;
            left -= 1;
        }
        // Keep a rotation already planned: this runs at every INTERESTED, and pushing the
        // rotation back each time could postpone it for as long as interest kept changing.
        self.next_rotation = if left > 0 {
            Some(
                self.next_rotation
                    .unwrap_or(now + self.cfg.unchoke_rotation),
            )
        } else {
            None
        };
    }

    /// Chokes the peer unchoked longest so a waiting one gets a turn.
    pub(super) fn rotate_unchoked(&mut self, now: Instant) {
        self.next_rotation = None;
        if !self.conns.values().any(Conn::waiting) {
            return;
        }
        let oldest = self
            .conns
            .iter()
            .filter(|(_, k)| !k.am_choking)
            .min_by_key(|(_, k)| k.unchoked_at)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.choke(now, id);
        }
        self.fill_upload_slots(now);
    }

    /// Gives the slots of unchoked peers that asked for nothing for `idle_slot_timeout` to
    /// peers that wait.
    pub(super) fn reclaim_idle_slots(&mut self, now: Instant) {
        if !self.conns.values().any(Conn::waiting) {
            return;
        }
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, k)| {
                k.idle_slot()
                    && now.saturating_duration_since(k.last_request) >= self.cfg.idle_slot_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        if idle.is_empty() {
            return;
        }
        for id in idle {
            self.choke(now, id);
        }
        self.fill_upload_slots(now);
    }

    /// Chokes `conn`: its queued requests are dropped (spec, section 8).
    pub(super) fn choke(&mut self, now: Instant, conn: ConnId) {
        self.clear_requests(conn);
        match self.conns.get_mut(&conn) {
            Some(k) if !k.am_choking => {
                k.am_choking = true;
                k.unchoked_at = None;
                k.choked_since = now;
            }
            _ => return,
        }
        self.send(conn, now, Message::Choke);
        self.set_unchoked(now, conn, false);
    }

    /// Drops the requests queued from `conn` (we choked it, or it lost interest).
    pub(super) fn clear_requests(&mut self, conn: ConnId) {
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        let dropped: Vec<u32> = k.requests.drain(..).collect();
        let Some(content) = k.content else {
            return;
        };
        if let Some(ss) = self.super_seed(&content) {
            for c in dropped {
                ss.unrequested(conn, c);
            }
        }
    }
}
