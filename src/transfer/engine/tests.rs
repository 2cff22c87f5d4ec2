//! Engine tests: several engines wired by in-memory connections. Every frame goes through
//! the real codec (encode, then incremental decode), and the driver's worker duties
//! (reading, verifying and storing chunks) are done synchronously on in-memory files.

use super::*;
use crate::bitset::BitSet;
use crate::content::{ContentManifest, Manifest};
use crate::id::Id;
use crate::proto::wire::{self, Message};
use crate::storage::job::StorageJob;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Unlimited upload per tick.
const UNLIMITED: u64 = u64::MAX;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Honest,
    /// Serves garbage instead of chunk data.
    Corrupt,
}

struct Node {
    engine: Engine,
    addr: SocketAddr,
    kind: Kind,
    /// content -> chunks stored (verified)
    store: HashMap<Id, BTreeMap<u32, Vec<u8>>>,
    /// content -> complete file data when seeding
    files: HashMap<Id, Arc<Vec<u8>>>,
    finished: Vec<Id>,
    uploaded: u64,
    banned: Vec<SocketAddr>,
    announced: Vec<Id>,
    /// Contents whose manifest a peek fetched (`Action::ManifestFetched`).
    peeked: Vec<Id>,
    /// Bytes of PIECE data this node may send per tick; pieces wait in `outq` beyond that.
    budget: u64,
    outq: VecDeque<(ConnId, u32, Vec<u8>)>,
    /// The chunks of every PIECE this node sent, in order.
    sent: Vec<u32>,
}

struct World {
    now: Instant,
    nodes: Vec<Node>,
    /// (node, conn) -> (peer node, peer conn)
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// bytes in flight per direction: (to node, to conn) -> bytes
    wires: BTreeMap<(usize, ConnId), Vec<u8>>,
    manifests: HashMap<Id, Arc<ContentManifest>>,
}

/// The start of a test's clock (the other test files of the engine take it from here: the
/// sans-IO check reads only files named `tests.rs` as tests).
pub(super) fn start() -> Instant {
    Instant::now()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1 + i as u8], 4000))
}

impl World {
    /// Nodes 1..=`leechers` download `id`, shared by node 0: they first learn of each other,
    /// then of the seeder; runs in 100 ms ticks until all finished (`what` names the case
    /// in the failure message).
    fn run_swarm(&mut self, id: Id, leechers: usize, what: &str) {
        let now = self.now;
        let all = 1..=leechers;
        for i in all.clone() {
            self.nodes[i].engine.download(now, id, None, None);
        }
        for i in all.clone() {
            let others: Vec<SocketAddr> = all.clone().filter(|j| *j != i).map(addr).collect();
            self.nodes[i].engine.add_peers(now, &id, &others);
        }
        self.settle();
        for i in all.clone() {
            self.nodes[i].engine.add_peers(now, &id, &[addr(0)]);
        }
        let mut ticks = 0;
        while all.clone().any(|i| self.nodes[i].finished.is_empty()) {
            ticks += 1;
            assert!(ticks < 5_000, "swarm did not finish {what}");
            self.tick(Duration::from_millis(100));
        }
    }

    fn new(kinds: &[Kind]) -> World {
        World::with_config(kinds, &EngineConfig::default())
    }

    fn with_config(kinds: &[Kind], cfg: &EngineConfig) -> World {
        let now = Instant::now();
        let nodes = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| Node {
                engine: Engine::new(Id([i as u8 + 1; 32]), 4000, cfg.clone(), i as u64),
                addr: addr(i),
                kind: *k,
                store: HashMap::new(),
                files: HashMap::new(),
                finished: vec![],
                uploaded: 0,
                banned: vec![],
                announced: vec![],
                peeked: vec![],
                budget: UNLIMITED,
                outq: VecDeque::new(),
                sent: Vec::new(),
            })
            .collect();
        World {
            now,
            nodes,
            links: HashMap::new(),
            wires: BTreeMap::new(),
            manifests: HashMap::new(),
        }
    }

    fn share(&mut self, node: usize, data: &[u8]) -> Id {
        let m = Arc::new(ContentManifest::File(
            Manifest::for_data_with_chunk_size(data, 16 << 10).unwrap(),
        ));
        let id = m.content_id();
        self.manifests.insert(id, m.clone());
        self.nodes[node].files.insert(id, Arc::new(data.to_vec()));
        self.nodes[node].engine.share(m, Some("sample.wav".into()));
        id
    }

    fn node_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a)
    }

    /// Runs every node's actions and delivers bytes until nothing moves.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].engine.poll_action() {
                    moved = true;
                    self.act(i, a);
                }
            }
            // Deliver all bytes in flight, frame by frame, through the real decoder.
            let wires: Vec<((usize, ConnId), Vec<u8>)> =
                std::mem::take(&mut self.wires).into_iter().collect();
            for ((to, conn), bytes) in wires {
                moved = true;
                let mut buf = &bytes[..];
                while let Some((msg, used)) = wire::decode_frame(buf).expect("valid frames") {
                    buf = &buf[used..];
                    let now = self.now;
                    self.nodes[to].engine.frame(now, conn, msg);
                }
                assert!(buf.is_empty(), "partial frame left");
            }
            for (i, n) in self.nodes.iter().enumerate() {
                if let Err(e) = n.engine.check_invariants() {
                    panic!("node {i}: {e}");
                }
            }
            if !moved {
                return;
            }
        }
        panic!("world does not settle");
    }

    fn write(&mut self, from: usize, conn: ConnId, bytes: &[u8]) {
        if let Some(&(to, tconn)) = self.links.get(&(from, conn)) {
            self.wires
                .entry((to, tconn))
                .or_default()
                .extend_from_slice(bytes);
        }
    }

    fn act(&mut self, i: usize, a: Action) {
        let now = self.now;
        match a {
            Action::Wire(WireAction::Connect { conn, addr, .. }) => match self.node_of(addr) {
                Some(j) => {
                    let from = self.nodes[i].addr;
                    let jconn = self.nodes[j].engine.accepted(now, from);
                    self.links.insert((i, conn), (j, jconn));
                    self.links.insert((j, jconn), (i, conn));
                    self.nodes[i].engine.connected(now, conn);
                }
                None => self.nodes[i].engine.closed(now, conn),
            },
            Action::Wire(WireAction::Send { conn, msg }) => {
                let mut out = Vec::new();
                msg.encode(&mut out);
                self.write(i, conn, &out);
            }
            Action::Wire(WireAction::SendPiece { conn, chunk, data }) => {
                let mut out = wire::piece_header(chunk, data.len()).to_vec();
                out.extend_from_slice(&data);
                if self.nodes[i].budget == UNLIMITED {
                    self.nodes[i].uploaded += data.len() as u64;
                    self.nodes[i].sent.push(chunk);
                    self.write(i, conn, &out);
                    self.nodes[i].engine.piece_sent(now, conn);
                } else {
                    self.nodes[i].outq.push_back((conn, chunk, out));
                }
            }
            Action::Wire(WireAction::Close { conn }) => {
                if let Some((j, jconn)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, jconn));
                    // Bytes already written still arrive (the ERROR before a close).
                    let pending = self.wires.remove(&(j, jconn)).unwrap_or_default();
                    let mut buf = &pending[..];
                    while let Ok(Some((msg, used))) = wire::decode_frame(buf) {
                        buf = &buf[used..];
                        self.nodes[j].engine.frame(now, jconn, msg);
                    }
                    self.nodes[j].engine.closed(now, jconn);
                }
            }
            Action::Storage(StorageJob::ReadChunk {
                conn,
                content,
                chunk,
            }) => {
                let m = self.manifests[&content].clone();
                let l = m.layout();
                let data = if let Some(f) = self.nodes[i].files.get(&content) {
                    let c = l.validate(chunk).unwrap();
                    let r = l.chunk_range(c);
                    let mut d = f[r.start as usize..r.end as usize].to_vec();
                    if self.nodes[i].kind == Kind::Corrupt {
                        d.iter_mut().for_each(|b| *b ^= 0x5a);
                    }
                    Some(d)
                } else {
                    self.nodes[i]
                        .store
                        .get(&content)
                        .and_then(|s| s.get(&chunk))
                        .cloned()
                };
                self.nodes[i]
                    .engine
                    .chunk_read(now, conn, chunk, data.map(Arc::new));
            }
            Action::Storage(StorageJob::StoreChunk {
                content,
                chunk,
                from,
                data,
            }) => {
                let m = self.manifests[&content].clone();
                let ok = m
                    .layout()
                    .validate(chunk)
                    .is_some_and(|c| m.verify_chunk(c, &data));
                if ok {
                    self.nodes[i]
                        .store
                        .entry(content)
                        .or_default()
                        .insert(chunk, data);
                }
                self.nodes[i]
                    .engine
                    .chunk_stored(now, content, chunk, from, Some(ok));
            }
            Action::Storage(StorageJob::OpenPartial {
                content, manifest, ..
            }) => {
                let n = manifest.layout().chunk_count() as usize;
                let mut have = BitSet::new(n);
                for c in self.nodes[i]
                    .store
                    .get(&content)
                    .map(|s| s.keys().copied().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    have.insert(c as usize);
                }
                self.nodes[i]
                    .engine
                    .partial_opened(now, content, Some(have));
            }
            Action::Finish { content } => {
                let m = self.manifests[&content].clone();
                let data: Vec<u8> = self.nodes[i]
                    .store
                    .get(&content)
                    .map(|s| s.values().flatten().copied().collect())
                    .unwrap_or_default();
                let ok = Manifest::for_data_with_chunk_size(
                    &data,
                    m.as_file().unwrap().lengths().chunk_size(),
                )
                .unwrap()
                .content_id()
                    == content;
                if ok {
                    self.nodes[i].finished.push(content);
                }
                self.nodes[i].engine.finished(now, content, ok);
            }
            Action::Storage(StorageJob::CheckChunk {
                content,
                chunk,
                from,
                data,
            }) => {
                let m = self.manifests[&content].clone();
                let ok = m
                    .layout()
                    .validate(chunk)
                    .is_some_and(|c| m.verify_chunk(c, &data));
                self.nodes[i].engine.chunk_checked(now, content, from, ok);
            }
            // Not engine jobs: the node core's.
            Action::Storage(
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
                | StorageJob::FlushAll,
            ) => {}
            Action::FindPeers { .. } => {}
            Action::Announce { content } => self.nodes[i].announced.push(content),
            Action::ManifestFetched { content } => self.nodes[i].peeked.push(content),
            Action::Banned { addr, .. } => self.nodes[i].banned.push(addr),
        }
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for n in &mut self.nodes {
            n.engine.handle_timeout(now);
        }
        // Rate-limited nodes send what their budget allows this tick.
        for i in 0..self.nodes.len() {
            let mut left = self.nodes[i].budget;
            while left != UNLIMITED && left > 0 {
                let Some((conn, chunk, frame)) = self.nodes[i].outq.pop_front() else {
                    break;
                };
                left = left.saturating_sub(frame.len() as u64);
                self.nodes[i].uploaded += frame.len() as u64 - 9;
                self.nodes[i].sent.push(chunk);
                self.write(i, conn, &frame);
                self.nodes[i].engine.piece_sent(now, conn);
            }
        }
        self.settle();
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn one_seeder_one_leecher_gets_the_exact_bytes_and_the_name() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let file = data(200_000);
    let id = w.share(0, &file);
    let now = w.now;
    w.nodes[1].engine.download(now, id, None, None);
    w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].finished, vec![id]);
    let got: Vec<u8> = w.nodes[1].store[&id].values().flatten().copied().collect();
    assert_eq!(got, file);
    let p = w.nodes[1].engine.progress(&id).unwrap();
    assert!(p.complete);
    assert_eq!(
        p.name.as_deref(),
        Some("sample.wav"),
        "METADATA carried the name"
    );
    assert_eq!(p.have_bytes, file.len() as u64);
    assert_eq!(
        w.nodes[1].announced,
        vec![id],
        "a downloader announces itself once it has chunks"
    );
}

/// A peek fetches and verifies the manifest and nothing else; a download of the same
/// content afterwards takes over from it and completes.
#[test]
fn a_peek_fetches_only_the_manifest_and_a_download_takes_over() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let file = data(300_000);
    let id = w.share(0, &file);
    let now = w.now;
    w.nodes[1].engine.peek(now, id);
    w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].peeked, vec![id]);
    let m = w.nodes[1]
        .engine
        .manifest(&id)
        .expect("the manifest is kept");
    assert_eq!(m.content_id(), id);
    assert!(!w.nodes[1].store.contains_key(&id), "no chunk was fetched");
    assert_eq!(w.nodes[0].uploaded, 0);
    assert!(w.nodes[1].finished.is_empty());

    w.nodes[1].engine.download(now, id, None, None);
    w.settle();
    assert_eq!(w.nodes[1].finished, vec![id]);
    let got: Vec<u8> = w.nodes[1].store[&id].values().flatten().copied().collect();
    assert_eq!(got, file);
}

#[test]
fn empty_and_tiny_files() {
    for len in [0usize, 1, (16 << 10) - 1, 16 << 10, (16 << 10) + 1] {
        let mut w = World::new(&[Kind::Honest, Kind::Honest]);
        let file = data(len);
        let id = w.share(0, &file);
        let now = w.now;
        w.nodes[1].engine.download(now, id, None, None);
        w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
        w.settle();
        assert_eq!(w.nodes[1].finished, vec![id], "len {len}");
        let got: Vec<u8> = w.nodes[1]
            .store
            .get(&id)
            .map(|s| s.values().flatten().copied().collect())
            .unwrap_or_default();
        assert_eq!(got, file, "len {len}");
    }
}

#[test]
fn corrupt_seeder_is_banned_and_honest_ones_finish_the_job() {
    let mut w = World::new(&[Kind::Honest, Kind::Corrupt, Kind::Honest, Kind::Honest]);
    let file = data(300_000);
    let id = w.share(0, &file);
    w.nodes[1].files.insert(id, Arc::new(file.clone()));
    let m = w.manifests[&id].clone();
    w.nodes[1].engine.share(m.clone(), None);
    w.nodes[2].files.insert(id, Arc::new(file.clone()));
    w.nodes[2].engine.share(m, None);
    let now = w.now;
    w.nodes[3].engine.download(now, id, None, None);
    w.nodes[3]
        .engine
        .add_peers(now, &id, &[addr(1), addr(0), addr(2)]);
    w.settle();
    assert_eq!(w.nodes[3].finished, vec![id]);
    assert_eq!(w.nodes[3].banned, vec![addr(1)]);
    let got: Vec<u8> = w.nodes[3].store[&id].values().flatten().copied().collect();
    assert_eq!(got, file);
}

/// The file name a peer banned for lying gave (METADATA) is not kept: the next honest
/// peer names the file.
#[test]
fn a_banned_liars_file_name_is_forgotten() {
    let mut w = World::new(&[Kind::Honest, Kind::Corrupt, Kind::Honest]);
    let file = data(300_000);
    let id = w.share(0, &file);
    let m = w.manifests[&id].clone();
    w.nodes[0].engine.unshare(&id);
    w.nodes[0].engine.share(m.clone(), Some("song.wav".into()));
    w.nodes[1].files.insert(id, Arc::new(file.clone()));
    w.nodes[1].engine.share(m, Some("evil.exe".into()));
    let now = w.now;
    // Only the liar first: it names the file, then sends a bad chunk and is banned.
    w.nodes[2].engine.download(now, id, None, None);
    w.nodes[2].engine.add_peers(now, &id, &[addr(1)]);
    w.settle();
    assert_eq!(w.nodes[2].banned, vec![addr(1)]);
    assert_eq!(w.nodes[2].engine.progress(&id).unwrap().name, None);
    let now = w.now;
    w.nodes[2].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[2].finished, vec![id]);
    assert_eq!(
        w.nodes[2].engine.progress(&id).unwrap().name.as_deref(),
        Some("song.wav")
    );
}

#[test]
fn leechers_serve_each_other() {
    // One seeder, three leechers that also know each other: the leechers must get a share of
    // the bytes from each other, not only from the seeder.
    let mut w = World::new(&[Kind::Honest, Kind::Honest, Kind::Honest, Kind::Honest]);
    let file = data(2_000_000);
    let id = w.share(0, &file);
    // The seeder's upload is the scarce resource: two chunks per tick.
    w.nodes[0].budget = 2 * (16 << 10);
    w.run_swarm(id, 3, "");
    let from_leechers: u64 = (1..4).map(|i| w.nodes[i].uploaded).sum();
    let from_seeder = w.nodes[0].uploaded;
    // 3 copies of the file were delivered; a star would have the seeder send all of them.
    assert!(
        from_leechers as f64 > 0.5 * (3 * file.len()) as f64,
        "leechers sent {from_leechers} bytes, the seeder {from_seeder}: a star, not a swarm"
    );
    assert!(
        from_seeder < 2 * file.len() as u64,
        "seeder sent {from_seeder}"
    );
}

#[test]
fn unknown_content_is_refused() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let _ = w.share(0, &data(100));
    let other = Id([0xab; 32]);
    let now = w.now;
    w.nodes[1].engine.download(now, other, None, None);
    w.nodes[1].engine.add_peers(now, &other, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].engine.connection_count(), 0);
    assert_eq!(w.nodes[0].engine.connection_count(), 0);
    assert!(!w.nodes[1].engine.progress(&other).unwrap().has_manifest);
}

#[test]
fn hostile_frames_close_the_connection_and_the_node_keeps_serving() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let id = w.share(0, &data(50_000));
    let now = w.now;
    // A raw peer: connects, handshakes, then sends a piece nobody asked for.
    let c = w.nodes[0].engine.accepted(now, addr(9));
    w.nodes[0].engine.frame(now, c, Message::Request(0));
    w.settle();
    assert_eq!(
        w.nodes[0].engine.connection_count(),
        0,
        "frames before HANDSHAKE close the connection"
    );
    let c = w.nodes[0].engine.accepted(now, addr(9));
    w.nodes[0].engine.frame(
        now,
        c,
        Message::Handshake(wire::Handshake::new(Id([9; 32]), id, 1)),
    );
    w.nodes[0].engine.frame(
        now,
        c,
        Message::ManifestRequest {
            offset: 1 << 30,
            length: 10,
        },
    );
    w.settle();
    assert_eq!(
        w.nodes[0].engine.connection_count(),
        0,
        "out-of-range manifest request"
    );
    // The seeder still serves an honest downloader.
    w.nodes[1].engine.download(now, id, None, None);
    w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].finished, vec![id]);
}

#[test]
fn resumed_download_fetches_only_missing_chunks() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let file = data(160_000); // 10 chunks of 16 KiB
    let id = w.share(0, &file);
    let m = w.manifests[&id].clone();
    let l = m.layout();
    let mut pre = BTreeMap::new();
    for c in 0..6u32 {
        let r = l.chunk_range(l.validate(c).unwrap());
        pre.insert(c, file[r.start as usize..r.end as usize].to_vec());
    }
    w.nodes[1].store.insert(id, pre);
    let now = w.now;
    w.nodes[1].engine.download(now, id, Some(m), None);
    w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].finished, vec![id]);
    let total = file.len() as u64;
    assert!(
        w.nodes[0].uploaded < total / 2,
        "uploaded {} of {total}: refetched verified chunks",
        w.nodes[0].uploaded
    );
}

/// One seeder whose upload is scarce (one chunk per tick) and four leechers that know each
/// other. Returns the chunks the seeder sent, in order, after checking every leecher got the
/// exact file.
fn scarce_seeder_swarm(super_seed: bool) -> (Vec<u32>, u32) {
    let cfg = EngineConfig {
        super_seed,
        ..EngineConfig::default()
    };
    let mut w = World::with_config(&[Kind::Honest; 5], &cfg);
    let chunks = 64u32;
    let file = data(chunks as usize * (16 << 10));
    let id = w.share(0, &file);
    w.nodes[0].budget = 16 << 10;
    w.run_swarm(id, 4, &format!("super_seed {super_seed}"));
    for i in 1..5 {
        let got: Vec<u8> = w.nodes[i].store[&id].values().flatten().copied().collect();
        assert!(got == file, "leecher {i} got other bytes");
    }
    (w.nodes[0].sent.clone(), chunks)
}

/// How many PIECEs the seeder sent before every chunk had gone out once, and how many of
/// those were repeats.
fn first_round(sent: &[u32], chunks: u32) -> (usize, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeats = 0;
    for (n, c) in sent.iter().enumerate() {
        if !seen.insert(*c) {
            repeats += 1;
        }
        if seen.len() == chunks as usize {
            return (n + 1, repeats);
        }
    }
    (sent.len(), repeats)
}

#[test]
fn super_seeder_sends_every_chunk_once_before_any_twice() {
    let (sent, chunks) = scarce_seeder_swarm(true);
    let (round, repeats) = first_round(&sent, chunks);
    assert_eq!(
        (round, repeats),
        (chunks as usize, 0),
        "the seeder repeated chunks before sending them all: {sent:?}"
    );
    // And it did not have to send much more: the leechers had the rest from each other.
    assert!(
        sent.len() <= chunks as usize * 5 / 4,
        "the seeder sent {} pieces of a {chunks}-chunk file: {sent:?}",
        sent.len()
    );
    // Without super-seeding the same swarm makes the seeder repeat itself.
    let (plain, _) = scarce_seeder_swarm(false);
    let (plain_round, plain_repeats) = first_round(&plain, chunks);
    assert!(
        plain_repeats > 0 && plain.len() > sent.len(),
        "plain rarest-first: {plain_round} pieces for a first round with {plain_repeats} repeats, \
         {} in all; super-seeding: {}",
        plain.len(),
        sent.len()
    );
}

/// A downloader with three connected seeders, driven by hand. Returns its engine, its
/// connections, the content, its manifest, the clock and the requests it sent.
#[allow(clippy::type_complexity)]
fn leecher_with_three_peers() -> (
    Engine,
    Vec<ConnId>,
    Id,
    Arc<ContentManifest>,
    Instant,
    Vec<(ConnId, u32)>,
) {
    let file = data(8 * (16 << 10));
    let m = Arc::new(ContentManifest::File(
        Manifest::for_data_with_chunk_size(&file, 16 << 10).unwrap(),
    ));
    let id = m.content_id();
    let now = Instant::now();
    let mut e = Engine::new(Id([1; 32]), 4000, EngineConfig::default(), 1);
    e.download(now, id, Some(m.clone()), None);
    e.partial_opened(now, id, Some(BitSet::new(8)));
    let mut conns = Vec::new();
    for p in 0..3u8 {
        let c = e.accepted(now, addr(10 + p as usize));
        e.frame(
            now,
            c,
            Message::Handshake(wire::Handshake::new(Id([20 + p; 32]), id, 4000)),
        );
        let mut b = wire::Bitfield::new(8);
        for i in 0..8 {
            b.set(i);
        }
        e.frame(now, c, Message::Bitfield(b));
        e.frame(now, c, Message::Unchoke);
        conns.push(c);
    }
    let mut asked = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Wire(WireAction::Send {
            conn,
            msg: Message::Request(i),
        }) = a
        {
            asked.push((conn, i));
        }
    }
    (e, conns, id, m, now, asked)
}

#[test]
fn a_verified_chunk_is_announced_at_once_to_every_peer() {
    let (mut e, conns, id, m, now, asked) = leecher_with_three_peers();
    let file = data(8 * (16 << 10));
    let (from, chunk) = asked[0];
    let r = m.layout().chunk_range(m.layout().validate(chunk).unwrap());
    let bytes = file[r.start as usize..r.end as usize].to_vec();
    e.frame(now, from, Message::Piece { chunk, data: bytes });
    let mut stored = false;
    while let Some(a) = e.poll_action() {
        if let Action::Storage(StorageJob::StoreChunk {
            chunk: i, from: f, ..
        }) = a
        {
            assert_eq!((i, f), (chunk, from));
            stored = true;
        }
    }
    assert!(stored, "the piece went to verification");
    e.chunk_stored(now, id, chunk, from, Some(true));
    // Straight away, before any other input: HAVE to each of the three peers.
    let mut told = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Wire(WireAction::Send {
            conn,
            msg: Message::Have(i),
        }) = a
        {
            assert_eq!(i, chunk);
            told.push(conn);
        }
    }
    told.sort_unstable();
    assert_eq!(told, conns, "HAVE {chunk} went to every connected peer");
}

#[test]
fn a_peer_query_not_wanted_now_does_not_leave_a_past_deadline() {
    // A download with a candidate still to try is due for a peer query but does not want
    // one: its next deadline must move on, or a driver that sleeps until `poll_timeout`
    // spins.
    let cfg = EngineConfig {
        max_peers_per_content: 1,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(Id([1; 32]), 4000, cfg, 1);
    let now = Instant::now();
    let id = Id([7; 32]);
    e.download(now, id, None, None);
    e.add_peers(now, &id, &[addr(1), addr(2)]);
    while e.poll_action().is_some() {}
    let later = now + Duration::from_secs(2);
    assert!(e.poll_timeout().is_some_and(|t| t <= later));
    e.handle_timeout(later);
    while e.poll_action().is_some() {}
    let next = e.poll_timeout();
    assert!(
        next.is_some_and(|t| t > later),
        "next deadline {:?} s after the timeout",
        next.map(|t| t.saturating_duration_since(later).as_secs_f64())
    );
}

#[test]
fn an_unchoked_peer_that_asks_for_nothing_gives_its_slot_to_a_waiting_one() {
    let cfg = EngineConfig {
        upload_slots: 1,
        super_seed: false,
        ..EngineConfig::default()
    };
    let file = data(8 * (16 << 10));
    let m = Arc::new(ContentManifest::File(
        Manifest::for_data_with_chunk_size(&file, 16 << 10).unwrap(),
    ));
    let id = m.content_id();
    let t0 = Instant::now();
    let mut e = Engine::new(Id([1; 32]), 4000, cfg.clone(), 1);
    e.share(m, None);
    let mut conns = Vec::new();
    for p in 0..2u8 {
        let c = e.accepted(t0, addr(10 + p as usize));
        e.frame(
            t0,
            c,
            Message::Handshake(wire::Handshake::new(Id([20 + p; 32]), id, 4000)),
        );
        e.frame(t0, c, Message::Bitfield(wire::Bitfield::new(8)));
        e.frame(t0, c, Message::Interested);
        conns.push(c);
    }
    let chokes = |e: &mut Engine| -> Vec<(ConnId, bool)> {
        std::iter::from_fn(|| e.poll_action())
            .filter_map(|a| match a {
                Action::Wire(WireAction::Send {
                    conn,
                    msg: Message::Unchoke,
                }) => Some((conn, true)),
                Action::Wire(WireAction::Send {
                    conn,
                    msg: Message::Choke,
                }) => Some((conn, false)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        chokes(&mut e),
        vec![(conns[0], true)],
        "one slot: the first"
    );
    // The first asks for nothing: after `idle_slot_timeout` the second gets the slot.
    let idle = t0 + cfg.idle_slot_timeout;
    assert!(e.poll_timeout().is_some_and(|t| t <= idle));
    e.handle_timeout(idle);
    assert_eq!(chokes(&mut e), vec![(conns[0], false), (conns[1], true)]);
    // The second asks for a chunk and its read is still under way: it keeps the slot.
    e.frame(idle, conns[1], Message::Request(0));
    while e.poll_action().is_some() {}
    let later = idle + cfg.idle_slot_timeout * 2;
    e.handle_timeout(later);
    assert_eq!(chokes(&mut e), vec![], "a busy slot is not reclaimed");
}

/// A download cancelled (or paused) while its connection is still being set up leaves no
/// half-open connection behind: asked for again, it connects to the same peer anew.
#[test]
fn a_download_taken_up_again_connects_again() {
    let now = Instant::now();
    let mut e = Engine::new(Id([7; 32]), 4000, EngineConfig::default(), 1);
    let id = Id([9; 32]);
    let peer = addr(1);
    let connects = |e: &mut Engine| -> Vec<ConnId> {
        std::iter::from_fn(|| e.poll_action())
            .filter_map(|a| match a {
                Action::Wire(WireAction::Connect { conn, addr, .. }) if addr == peer => Some(conn),
                _ => None,
            })
            .collect()
    };
    e.download(now, id, None, None);
    e.add_peers(now, &id, &[peer]);
    let first = connects(&mut e);
    assert_eq!(first.len(), 1);
    e.cancel(&id);
    let closed: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
    assert!(
        closed
            .iter()
            .any(|a| matches!(a, Action::Wire(WireAction::Close { conn }) if *conn == first[0])),
        "{closed:?}"
    );
    assert_eq!(e.connection_count(), 0);
    e.download(now, id, None, None);
    e.add_peers(now, &id, &[peer]);
    assert_eq!(
        connects(&mut e).len(),
        1,
        "no new connection to the same peer"
    );
}

/// A peer whose manifest does not match the content ID is banned, and told that it was its
/// manifest (not "a chunk") that failed verification (issue 18).
#[test]
fn a_peer_with_a_bad_manifest_is_told_what_failed() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    let file = data(300_000);
    let id = w.share(0, &file);
    let chunks = w.manifests[&id].layout().chunk_count();
    let now = w.now;
    let e = &mut w.nodes[1].engine;
    e.download(now, id, None, None);
    // A raw peer dials the downloader, says it has everything, and sends a wrong manifest.
    let c = e.accepted(now, addr(9));
    e.frame(
        now,
        c,
        Message::Handshake(wire::Handshake::new(Id([9; 32]), id, 1)),
    );
    let mut all = wire::Bitfield::new(chunks);
    for i in 0..chunks {
        all.set(i);
    }
    e.frame(now, c, Message::Bitfield(all));
    e.frame(
        now,
        c,
        Message::ManifestData {
            total_len: 64,
            offset: 0,
            data: vec![7; 64],
        },
    );
    let mut told = None;
    let mut banned = None;
    while let Some(a) = e.poll_action() {
        match a {
            Action::Wire(WireAction::Send {
                conn,
                msg: Message::Error { code, text },
            }) if conn == c => told = Some((code, text)),
            Action::Banned { what, .. } => banned = Some(what),
            _ => {}
        }
    }
    let (code, text) = told.expect("an ERROR to the liar");
    assert_eq!(code, wire::error_code::BANNED);
    assert!(text.contains("manifest"), "{text}");
    assert_eq!(banned, Some("a manifest"));
}

/// Our own address comes back from the DHT (a downloader announces what it has) and from
/// peers: it is never dialled, under any of the forms it takes.
#[test]
fn a_node_never_dials_its_own_address() {
    let now = Instant::now();
    let mut e = Engine::new(Id([7; 32]), 4000, EngineConfig::default(), 1);
    let listen: SocketAddr = "[::]:4000".parse().unwrap();
    let advertised: SocketAddr = "192.0.2.9:4000".parse().unwrap();
    let external: SocketAddr = "198.51.100.3:61000".parse().unwrap();
    e.set_own_addrs(vec![listen, advertised, external]);
    let id = Id([9; 32]);
    let other: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let mine: Vec<SocketAddr> = [
        "127.0.0.1:4000",
        "[::1]:4000",
        "[::ffff:127.0.0.1]:4000",
        "192.0.2.9:4000",
        "198.51.100.3:61000",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    for a in &mine {
        assert!(e.is_own_addr(a), "{a}");
    }
    assert!(!e.is_own_addr(&other));
    assert!(!e.is_own_addr(&"192.0.2.10:4000".parse().unwrap()));
    e.download(now, id, None, None);
    let mut offered = mine.clone();
    offered.push(other);
    e.add_peers(now, &id, &offered);
    let dialled: Vec<SocketAddr> = std::iter::from_fn(|| e.poll_action())
        .filter_map(|a| match a {
            Action::Wire(WireAction::Connect { addr, .. }) => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, vec![other]);

    // A node bound to one address is only that address on its port.
    let mut e = Engine::new(Id([7; 32]), 4000, EngineConfig::default(), 1);
    e.set_own_addrs(vec!["127.0.0.1:4000".parse().unwrap()]);
    assert!(e.is_own_addr(&"127.0.0.1:4000".parse().unwrap()));
    assert!(!e.is_own_addr(&"127.0.0.2:4000".parse().unwrap()));
}

/// Issue 17: a dial to a provider whose DHT record named its node ID expects that ID (the
/// secure handshake hangs up on another); a dial to an address without one expects none.
#[test]
fn a_dial_to_a_provider_record_expects_its_node_id() {
    let now = Instant::now();
    let mut e = Engine::new(Id([7; 32]), 4000, EngineConfig::default(), 1);
    let content = Id([9; 32]);
    let (named, unnamed) = (addr(1), addr(2));
    e.download(now, content, None, None);
    e.add_peers_with_ids(now, &content, &[named, unnamed], &[(named, Id([5; 32]))]);
    let dials: Vec<(SocketAddr, Option<Id>)> = std::iter::from_fn(|| e.poll_action())
        .filter_map(|a| match a {
            Action::Wire(WireAction::Connect { addr, expect, .. }) => Some((addr, expect)),
            _ => None,
        })
        .collect();
    assert!(dials.contains(&(named, Some(Id([5; 32])))), "{dials:?}");
    assert!(dials.contains(&(unnamed, None)), "{dials:?}");
    assert_eq!(e.expected_id(&named), Some(Id([5; 32])));
}

/// The engine's timers cost the downloads running, not the library's size (issue 21: a
/// node with 100,000 shares walked them all at every turn of its loop): with 1,000 shares
/// and one download only the download is timed, and nothing once it has finished.
#[test]
fn only_running_downloads_are_timed() {
    let mut w = World::new(&[Kind::Honest, Kind::Honest]);
    for i in 0..1000u32 {
        w.share(1, &i.to_be_bytes());
    }
    let file = data(200_000);
    let id = w.share(0, &file);
    let now = w.now;
    w.nodes[1].engine.download(now, id, None, None);
    assert_eq!(w.nodes[1].engine.timed.len(), 1);
    assert!(
        w.nodes[1].engine.poll_timeout().is_some(),
        "its peer query is due"
    );
    w.nodes[1].engine.add_peers(now, &id, &[addr(0)]);
    w.settle();
    assert_eq!(w.nodes[1].finished, vec![id]);
    w.tick(Duration::from_secs(1));
    assert!(w.nodes[1].engine.timed.is_empty());
}
