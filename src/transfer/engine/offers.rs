//! Super-seeding on the wire: which chunks each peer is offered with HAVE, and when. The
//! bookkeeping (who holds which offer, how many copies each chunk has) is
//! [`SuperSeed`].

use std::time::Instant;

use super::connection::ConnState;
use super::{ConnId, Engine};
use crate::bitset::BitSet;
use crate::id::Id;
use crate::proto::wire::Message;
use crate::transfer::seeding::SuperSeed;

impl Engine {
    /// Starts super-seeding `content` if it is due (`Content::super_seed_due`): peers that
    /// saw our BITFIELD already (we were downloading it) are only counted.
    pub(super) fn start_super_seed(&mut self, content: &Id) {
        let Some(c) = self.contents.get_mut(content) else {
            return;
        };
        if !std::mem::take(&mut c.super_seed_due) || c.super_seed.is_some() {
            return;
        }
        let seed = self.seed ^ u64::from_be_bytes(content.0[..8].try_into().unwrap_or([0; 8]));
        let mut ss = SuperSeed::new(c.have.len(), seed);
        for k in &c.conns {
            if let Some(conn) = self.conns.get(k) {
                if conn.sent_bitfield {
                    ss.add_peer(*k, false);
                    if let Some(b) = &conn.peer_bits {
                        ss.peer_bitfield(*k, b);
                    }
                }
            }
        }
        c.super_seed = Some(Box::new(ss));
    }

    pub(super) fn super_seed(&mut self, content: &Id) -> Option<&mut SuperSeed> {
        self.contents
            .get_mut(content)
            .and_then(|c| c.super_seed.as_deref_mut())
    }

    /// Super-seeding: tops up the chunks offered to `conn` (HAVE) so that it holds
    /// `super_seed_offers` it has not requested yet (one while it is choked).
    pub(super) fn offer(&mut self, now: Instant, conn: ConnId) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        let Some(content) = k.content else {
            return;
        };
        if k.state != ConnState::Active || !k.sent_bitfield {
            return;
        }
        for chunk in self.offers_for(conn, &content) {
            self.send(conn, now, Message::Have(chunk));
        }
    }

    /// Super-seeding: the chunks to offer `conn` now: every one not offered yet to a peer
    /// alone in wanting `content`, else a top-up to its target.
    pub(super) fn offers_for(&mut self, conn: ConnId, content: &Id) -> Vec<u32> {
        let target = self.offer_target(conn);
        let lone = self.lone_downloader(conn);
        let Some(ss) = self.super_seed(content) else {
            return Vec::new();
        };
        if lone {
            ss.offer_all(conn)
        } else {
            ss.top_up(conn, target)
        }
    }

    /// Super-seeding: tells the bookkeeping whether `conn` may request now, and when it may
    /// no longer, gives the chunks its offers held to peers that were starved of offers.
    pub(super) fn set_unchoked(&mut self, now: Instant, conn: ConnId, unchoked: bool) {
        let Some(content) = self.conns.get(&conn).and_then(|k| k.content) else {
            return;
        };
        if let Some(ss) = self.super_seed(&content) {
            ss.set_unchoked(conn, unchoked);
        }
        if !unchoked {
            self.offer_starved(now, content);
        }
    }

    /// Super-seeding: tops up the peers whose last top-up found every fresh chunk reserved.
    pub(super) fn offer_starved(&mut self, now: Instant, content: Id) {
        let starved = match self.super_seed(&content) {
            Some(ss) => ss.take_starved(),
            None => return,
        };
        for k in starved {
            self.offer(now, k);
        }
    }

    pub(super) fn offer_target(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            Some(k) if !k.am_choking => self.cfg.super_seed_offers.max(1),
            _ => 1,
        }
    }

    /// Super-seeding: whether `conn` is the only peer of its content that lacks any chunk.
    /// Super-seeding shares the seed's upload among peers; with one peer there is nobody to
    /// share with, and a few offers at a time only narrow its choice (four seeds each
    /// offering a few chunks to one downloader reached 57-74% of their summed upload, against
    /// 99.7% with everything announced). Choked or not: a choked peer gets one offer, and a
    /// downloader of part of a folder (`--only`) that wants none of what it was offered never
    /// became interested, so was never unchoked, and waited for ever
    /// (`tests/folders.rs`, `only_part_of_a_folder_is_fetched_and_served_on`).
    fn lone_downloader(&self, conn: ConnId) -> bool {
        let Some(k) = self.conns.get(&conn) else {
            return false;
        };
        let Some(c) = k.content.and_then(|id| self.contents.get(&id)) else {
            return false;
        };
        c.conns
            .iter()
            .filter_map(|o| self.conns.get(o))
            .filter(|o| {
                o.state == ConnState::Active && !o.peer_bits.as_ref().is_some_and(BitSet::is_full)
            })
            .count()
            <= 1
    }
}
