//! The download side: the glue between the wire and the [`Scheduler`] (BITFIELD, HAVE and
//! PIECE in, REQUEST, CANCEL and interest out), and the storage results of a download
//! (chunks stored or checked, the partial file opened, the file finished).

use std::time::Instant;

use super::action::{Action, WireAction};
use super::connection::ConnState;
use super::{ConnId, Engine};
use crate::bitset::BitSet;
use crate::id::Id;
use crate::proto::wire::{error_code, Bitfield, Message};
use crate::storage::job::StorageJob;
use crate::transfer::scheduler::{Action as SchedAction, PieceVerdict, Scheduler};

impl Engine {
    /// The result of a [`StorageJob::StoreChunk`]: `Some(true)` verified and stored,
    /// `Some(false)` the hash did not match (the sender is banned), `None` a disk error.
    pub fn chunk_stored(
        &mut self,
        now: Instant,
        content: Id,
        chunk: u32,
        from: ConnId,
        result: Option<bool>,
    ) {
        if let Some(ok) = result {
            self.chunk_checks[usize::from(!ok)] += 1;
        }
        let Some(s) = self.scheduler(&content) else {
            return;
        };
        match result {
            Some(ok) => s.chunk_verified(now, chunk, from, ok),
            None => s.chunk_lost(now, chunk),
        }
        self.pump(now, content);
    }

    /// The result of a [`StorageJob::CheckChunk`]: a peer whose data failed is banned.
    pub fn chunk_checked(&mut self, now: Instant, content: Id, from: ConnId, ok: bool) {
        self.chunk_checks[usize::from(!ok)] += 1;
        if !ok && self.conns.contains_key(&from) {
            log::debug!("download {content}: connection {from} sent a bad copy of a chunk");
            if let Some(s) = self.scheduler(&content) {
                s.peer_gone(now, from);
            }
            self.ban(now, from, "a chunk");
            self.pump(now, content);
        }
    }

    /// The partial file of a download is open; `have` are the chunks already verified on
    /// disk (resumed). `None`: it could not be opened.
    pub fn partial_opened(&mut self, now: Instant, content: Id, have: Option<BitSet>) {
        let seed = self.seed ^ u64::from_be_bytes(content.0[..8].try_into().unwrap_or([0; 8]));
        let cfg = self.cfg.scheduler.clone();
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        c.opening = false;
        let Some(m) = c.manifest.clone() else {
            return;
        };
        let Some(have) = have else {
            log::error!("download {content}: cannot open the partial file; download stopped");
            self.unshare(&content);
            return;
        };
        c.have = have.clone();
        let mut s = Scheduler::new(
            m.chunk_count() as usize,
            m.typical_chunk_len(),
            have,
            cfg,
            seed,
        );
        if let (Some(sel), Some(tree)) = (&c.only, m.as_tree()) {
            let wanted = sel.chunks(tree);
            s = s.with_wanted(&wanted);
            c.wanted = Some(Box::new(wanted));
        }
        c.scheduler = Some(Box::new(s));
        self.timed.insert(content);
        let conns: Vec<ConnId> = c.conns.iter().copied().collect();
        let any = c.have.count() > 0;
        for k in conns {
            self.send_bitfield(k);
            self.register_with_scheduler(now, content, k);
        }
        if any {
            self.announce_once(content);
        }
        self.pump(now, content);
    }

    /// The file of a finished download is in its final place (`ok`), or finishing failed
    /// (chunks trusted from the resume record were damaged on disk, or the disk failed): the
    /// download is opened again and fetches what is missing.
    pub fn finished(&mut self, now: Instant, content: Id, ok: bool) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        c.finishing = false;
        if ok {
            c.complete = true;
            c.scheduler = None;
            // Part of a folder: only the selected files were kept (a chunk of another one,
            // verified at open because it is all zeros, is not in the finished folder).
            if let Some(w) = &c.wanted {
                let kept: Vec<usize> = c.have.iter().filter(|&i| w.contains(i)).collect();
                c.have = BitSet::new(c.have.len());
                for i in kept {
                    c.have.insert(i);
                }
            }
            // Peers that only wanted the data and have it all are no longer useful.
            let done: Vec<ConnId> = c.conns.iter().copied().collect();
            for k in done {
                let seeder = self
                    .conns
                    .get(&k)
                    .and_then(|k| k.peer_bits.as_ref())
                    .is_some_and(|b| b.is_full());
                if seeder {
                    self.close_with(k, error_code::COMPLETE, "download complete");
                }
            }
            // Dials for it still waiting for their connect are no use now: closed, so that
            // none goes on to a punch or a relay after a connect timeout (the NAT lab saw a
            // sym NAT's stale provider address relayed 3 s after the download). Those
            // connected already finish their handshake: what they read is still checked
            // and counted (a tampered record, tests/secure.rs). A dial joins the content's
            // connections only at its handshake, so none of these is among them.
            let opening: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, k)| k.content == Some(content) && k.state == ConnState::Connecting)
                .map(|(id, _)| *id)
                .collect();
            for k in opening {
                self.conns.remove(&k);
                self.actions.push_back(WireAction::Close { conn: k });
            }
            if let Some(d) = self
                .contents
                .get_mut(&content)
                .and_then(|c| c.dials.as_mut())
            {
                d.candidates.clear();
            }
            // Downloads are announced at their first verified chunk; an empty file has none,
            // so without this a downloaded empty file was never announced (until a restart
            // re-shared it). A no-op for every other download.
            self.announce_once(content);
        } else {
            log::info!("download {content}: not finished; reopened to fetch what is missing");
            let n = c.have.len();
            c.have = BitSet::new(n);
            if let Some(m) = c.manifest.clone() {
                c.opening = true;
                self.actions.push_back(StorageJob::OpenPartial {
                    content,
                    manifest: m,
                    only: c.only.clone(),
                });
            }
        }
        let _ = now;
    }

    pub(super) fn on_bitfield(&mut self, now: Instant, conn: ConnId, content: Id, b: Bitfield) {
        let mut bits = BitSet::new(b.len() as usize);
        for i in b.iter_ones() {
            bits.insert(i as usize);
        }
        if let Some(n) = self
            .contents
            .get(&content)
            .and_then(|c| c.manifest.as_ref())
            .map(|m| m.chunk_count())
        {
            if n != b.len() {
                self.close_with(
                    conn,
                    error_code::PROTOCOL_VIOLATION,
                    "BITFIELD size does not match the manifest",
                );
                return;
            }
        }
        if let Some(ss) = self.super_seed(&content) {
            ss.add_peer(conn, false);
            ss.peer_bitfield(conn, &bits);
        }
        if let Some(k) = self.conns.get_mut(&conn) {
            k.peer_has_manifest = true;
            k.peer_bits = Some(bits);
        }
        self.offer(now, conn);
        self.register_with_scheduler(now, content, conn);
        self.request_manifest(now, content);
        self.pump(now, content);
    }

    fn register_with_scheduler(&mut self, now: Instant, content: Id, conn: ConnId) {
        let Some(bits) = self.conns.get(&conn).and_then(|k| k.peer_bits.clone()) else {
            return;
        };
        if let Some(s) = self.scheduler(&content) {
            s.add_peer(now, conn);
            s.peer_bitfield(now, conn, &bits);
        }
    }

    pub(super) fn on_have(&mut self, now: Instant, conn: ConnId, content: Id, i: u32) {
        if let Some(b) = self.conns.get_mut(&conn).and_then(|k| k.peer_bits.as_mut()) {
            b.insert(i as usize);
        }
        if let Some(ss) = self.super_seed(&content) {
            ss.peer_have(conn, i);
            self.offer(now, conn);
        }
        if let Some(s) = self.scheduler(&content) {
            s.peer_have(now, conn, i);
        }
        self.pump(now, content);
    }

    pub(super) fn on_piece(
        &mut self,
        now: Instant,
        conn: ConnId,
        content: Id,
        chunk: u32,
        data: Vec<u8>,
    ) {
        let Some(s) = self.scheduler(&content) else {
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "PIECE that was never requested",
            );
            return;
        };
        match s.piece_received(now, conn, chunk, data.len()) {
            PieceVerdict::Verify => self.actions.push_back(StorageJob::StoreChunk {
                content,
                chunk,
                from: conn,
                data,
            }),
            // Not needed, but still checked: a peer that sends bad data is banned even when
            // an honest copy happened to arrive first (endgame, or a crossed CANCEL).
            PieceVerdict::Duplicate | PieceVerdict::Cancelled => {
                self.duplicate_bytes += data.len() as u64;
                self.actions.push_back(StorageJob::CheckChunk {
                    content,
                    chunk,
                    from: conn,
                    data,
                })
            }
            PieceVerdict::Unrequested => {}
        }
        self.pump(now, content);
    }

    /// Turns the scheduler's actions into frames and driver actions.
    pub(super) fn pump(&mut self, now: Instant, content: Id) {
        loop {
            let Some(a) = self.scheduler(&content).and_then(|s| s.poll_action()) else {
                return;
            };
            match a {
                SchedAction::Request { peer, chunk } => {
                    self.send(peer, now, Message::Request(chunk))
                }
                SchedAction::Cancel { peer, chunk } => self.send(peer, now, Message::Cancel(chunk)),
                SchedAction::Interested(p) => self.send(p, now, Message::Interested),
                SchedAction::NotInterested(p) => self.send(p, now, Message::NotInterested),
                SchedAction::Have(chunk) => {
                    let Some(c) = self.contents.get_mut(&content) else {
                        return;
                    };
                    c.have.insert(chunk as usize);
                    let conns: Vec<ConnId> = c.conns.iter().copied().collect();
                    for k in conns {
                        let sent = self.conns.get(&k).is_some_and(|k| k.sent_bitfield);
                        if sent {
                            self.send(k, now, Message::Have(chunk));
                        } else {
                            self.send_bitfield(k);
                        }
                    }
                    self.announce_once(content);
                }
                SchedAction::Drop(p, why) => {
                    log::debug!("download {content}: dropping peer {p}: {why:?}");
                    self.close_with(
                        p,
                        error_code::PROTOCOL_VIOLATION,
                        "dropped by the downloader",
                    );
                }
                SchedAction::Ban(p) => self.ban(now, p, "a chunk"),
                SchedAction::Complete => {
                    if let Some(c) = self.contents.get_mut(&content) {
                        if !c.finishing && !c.complete {
                            c.finishing = true;
                            self.actions.push_back(Action::Finish { content });
                        }
                    }
                }
            }
        }
    }

    fn announce_once(&mut self, content: Id) {
        if let Some(c) = self.contents.get_mut(&content) {
            if !c.announced {
                c.announced = true;
                self.actions.push_back(Action::Announce { content });
            }
        }
    }

    /// A stream waits for chunks `chunks` of `content` (http.md section 6): fetch them first.
    pub fn prioritize(&mut self, now: Instant, content: Id, chunks: std::ops::Range<u32>) {
        if let Some(s) = self.scheduler(&content) {
            s.set_urgent(now, chunks);
        }
        self.pump(now, content);
    }

    pub(super) fn scheduler(&mut self, content: &Id) -> Option<&mut Scheduler> {
        self.contents
            .get_mut(content)
            .and_then(|c| c.scheduler.as_deref_mut())
    }
}
