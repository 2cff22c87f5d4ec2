//! What happens at each event: a node joins, a connection comes up, a frame arrives, a DHT
//! lookup answers, a node wakes up; then the node's actions are carried out (wire work on
//! the pipes, storage work in memory, at once).

use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::index::sample;

use super::links::{Item, PipeId};
use super::{marker, Event, World};
use crate::bitset::BitSet;
use crate::proto::wire::Message;
use crate::sim::net::{node_addr, node_index};
use crate::storage::job::StorageJob;
use crate::transfer::engine::{Action, WireAction};

impl World {
    pub(super) fn handle(&mut self, ev: Event) {
        let now = self.instant();
        self.out.frames += u64::from(matches!(ev, Event::Deliver { .. }));
        match ev {
            Event::Join(i) => {
                self.nodes[i].joined = true;
                let (m, content) = (self.manifest.clone(), self.content);
                if i == 0 {
                    self.nodes[0].engine.share(m, Some("swarm.bin".into()));
                } else {
                    self.out.joined[i - 1] = self.now;
                    self.nodes[i].engine.download(now, content, None, None);
                }
                self.joined.push(i);
                self.drain(i);
            }
            Event::ConnectDone { from, conn, to } => {
                if self.nodes[from].engine.conn_addr(conn).is_none() {
                    return; // it gave up meanwhile
                }
                let accepted = self.nodes[to].engine.accepted(now, node_addr(from));
                let there = self.add_pipe(from, conn, to, accepted);
                let back = self.add_pipe(to, accepted, from, conn);
                self.nodes[from].out.insert(conn, there);
                self.nodes[to].out.insert(accepted, back);
                self.nodes[from].engine.connected(now, conn);
                self.drain(from);
                self.drain(to);
            }
            Event::Deliver { pipe, item } => self.deliver(pipe, item),
            Event::Peers(i) => {
                let mut addrs = vec![node_addr(0)];
                let others: Vec<usize> = self
                    .joined
                    .iter()
                    .copied()
                    .filter(|&j| j != i && j != 0)
                    .collect();
                let k = self.cfg.peers_per_lookup.min(others.len());
                for x in sample(&mut self.rng, others.len(), k).into_iter() {
                    addrs.push(node_addr(others[x]));
                }
                let content = self.content;
                self.nodes[i].engine.add_peers(now, &content, &addrs);
                self.drain(i);
            }
            Event::Wake(i) => {
                if self.nodes[i].wake == Some(self.now) {
                    self.nodes[i].wake = None;
                    self.nodes[i].engine.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    fn deliver(&mut self, pipe: PipeId, item: Item) {
        let now = self.instant();
        let (to, conn) = (self.pipes[pipe].to, self.pipes[pipe].to_conn);
        if !self.nodes[to].out.contains_key(&conn) {
            return; // the receiver closed its side: the bytes fall on the floor
        }
        match item {
            Item::Frame(msg) => self.nodes[to].engine.frame(now, conn, msg),
            Item::Piece { chunk, data } => self.nodes[to].engine.frame(
                now,
                conn,
                Message::Piece {
                    chunk,
                    data: data.as_ref().clone(),
                },
            ),
            Item::Fin => {
                if let Some(back) = self.nodes[to].out.remove(&conn) {
                    self.clear_pipe(back);
                }
                self.nodes[to].engine.closed(now, conn);
            }
        }
        self.drain(to);
    }

    /// Runs node `i`'s actions until it has none, then re-reads its wake-up time.
    pub(super) fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].engine.poll_action() {
            self.act(i, a);
        }
        let wake = self.nodes[i]
            .engine
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base).max(self.now));
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(at) = wake {
                self.schedule(at, Event::Wake(i));
            }
        }
    }

    fn act(&mut self, i: usize, a: Action) {
        let now = self.instant();
        match a {
            Action::Wire(w) => self.wire(i, now, w),
            Action::Storage(job) => self.storage(i, now, job),
            Action::Finish { content } => {
                let ok = self.nodes[i].have.is_full();
                if ok && self.nodes[i].finished.is_none() {
                    self.nodes[i].finished = Some(self.now);
                    self.remaining = self.remaining.saturating_sub(1);
                }
                self.nodes[i].engine.finished(now, content, ok);
            }
            Action::FindPeers { .. } => {
                let at = self.now + self.cfg.dht_delay;
                self.schedule(at, Event::Peers(i));
            }
            // Nobody in the swarm simulation peeks at manifests or uses the DHT.
            Action::Announce { .. } | Action::ManifestFetched { .. } => {}
            Action::Banned { .. } => self.out.bans += 1,
        }
    }

    fn wire(&mut self, i: usize, now: Instant, a: WireAction) {
        match a {
            WireAction::Connect { conn, addr, .. } => match self.peer_index(&addr) {
                Some(j) => {
                    let rtt = self.latency(i, j) * 2;
                    self.schedule(
                        self.now + rtt,
                        Event::ConnectDone {
                            from: i,
                            conn,
                            to: j,
                        },
                    );
                }
                None => self.nodes[i].engine.closed(now, conn),
            },
            WireAction::Send { conn, msg } => self.push(i, conn, Item::Frame(msg)),
            WireAction::SendPiece { conn, chunk, data } => {
                self.push(i, conn, Item::Piece { chunk, data })
            }
            WireAction::Close { conn } => {
                if let Some(p) = self.nodes[i].out.remove(&conn) {
                    self.push_to(p, Item::Fin);
                }
            }
        }
    }

    /// Storage in memory: the data is one shared buffer per chunk.
    fn storage(&mut self, i: usize, now: Instant, job: StorageJob) {
        match job {
            StorageJob::ReadChunk { conn, chunk, .. } => {
                let data = if self.nodes[i].have.contains(chunk as usize) || i == 0 {
                    self.chunks.get(chunk as usize).cloned()
                } else {
                    None
                };
                self.nodes[i].engine.chunk_read(now, conn, chunk, data);
            }
            StorageJob::StoreChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let ok = self.check(chunk, &data);
                if ok {
                    self.nodes[i].have.insert(chunk as usize);
                    if self.swarm_has.insert(chunk as usize) && self.swarm_has.is_full() {
                        self.out.swarm_complete_at = Some(self.now);
                    }
                } else {
                    self.out.bad_chunks += 1;
                }
                self.nodes[i]
                    .engine
                    .chunk_stored(now, content, chunk, from, Some(ok));
            }
            StorageJob::CheckChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let ok = self.check(chunk, &data);
                self.nodes[i].engine.chunk_checked(now, content, from, ok);
            }
            StorageJob::OpenPartial {
                content, manifest, ..
            } => {
                let n = manifest.chunk_count() as usize;
                self.nodes[i]
                    .engine
                    .partial_opened(now, content, Some(BitSet::new(n)));
            }
            // Not engine jobs: the node core's (finishing a file, sharing, persisting).
            StorageJob::Finish { .. }
            | StorageJob::Close { .. }
            | StorageJob::Discard { .. }
            | StorageJob::Unshare { .. }
            | StorageJob::AddFile { .. }
            | StorageJob::CopyOut { .. }
            | StorageJob::SaveDownloads(_)
            | StorageJob::SaveState(_)
            | StorageJob::Config { .. }
            | StorageJob::CheckShares { .. }
            | StorageJob::FlushAll => {}
        }
    }

    fn peer_index(&self, addr: &SocketAddr) -> Option<usize> {
        node_index(addr).filter(|j| *j < self.nodes.len())
    }

    fn check(&self, chunk: u32, data: &[u8]) -> bool {
        let Some(c) = self.manifest.validate(chunk) else {
            return false;
        };
        if self.cfg.verify {
            return self.manifest.verify_chunk(c, data);
        }
        let mark = marker(chunk);
        let n = mark.len().min(data.len());
        data.len() == self.manifest.chunk_len(c) as usize && data[..n] == mark[..n]
    }
}
