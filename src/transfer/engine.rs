//! The transfer engine: every peer connection of every shared or downloading content, as a
//! sans-IO state machine (spec: `protocol-spec/wire.md`).
//!
//! The reactor owns the TCP sockets and the files; the engine owns the protocol. Inputs:
//! [`Engine::share`], [`Engine::download`], [`Engine::add_peers`], connection events
//! ([`Engine::connected`], [`Engine::accepted`], [`Engine::frame`], [`Engine::closed`],
//! [`Engine::piece_sent`]), worker results ([`Engine::chunk_read`], [`Engine::chunk_stored`],
//! [`Engine::partial_opened`], [`Engine::finished`]) and [`Engine::handle_timeout`]. Outputs:
//! [`Engine::poll_action`] and [`Engine::poll_timeout`]. Drain the actions after every input.
//!
//! Per connection: HANDSHAKE both ways (the connecting side first), METADATA, then — once
//! the sender holds the verified manifest — BITFIELD. A downloader without the manifest asks
//! a peer that sent a BITFIELD for it in pieces and verifies its hash against the content ID
//! before anything else. Downloads are scheduled by [`Scheduler`]; uploads go to at most
//! `upload_slots` unchoked peers, rotated for fairness, and each connection has at most
//! `max_pieces_pending` chunks read or queued for sending, so memory stays bounded.
//!
//! A node sharing a complete file super-seeds by default ([`EngineConfig::super_seed`],
//! `seeding.rs`): it sends an empty BITFIELD and offers a few chunks at a time with HAVE,
//! those with the fewest copies in the swarm first, so its upload is not spent twice on a
//! chunk while others are missing from the swarm.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::content::manifest::Manifest;
use crate::id::Id;
use crate::proto::wire::{self, error_code, reject_reason, Bitfield, Handshake, Message};

use super::scheduler::{Action as SchedAction, PieceVerdict, Scheduler, SchedulerConfig};
use super::seeding::SuperSeed;
use crate::bitset::BitSet;
use crate::storage::job::StorageJob;

pub use crate::conn::ConnId;

/// Tunables.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Connections per content we open or accept at most.
    pub max_peers_per_content: usize,
    /// Peers we upload to at once.
    pub upload_slots: usize,
    /// Chunks being read or waiting to be sent, per connection.
    pub max_pieces_pending: usize,
    /// Requests we queue from one peer before answering BUSY.
    pub max_queued_requests: usize,
    /// A HANDSHAKE must arrive this soon after connecting.
    pub handshake_timeout: Duration,
    /// Send KEEPALIVE after this much silence.
    pub keepalive: Duration,
    /// Close after this much silence from the peer.
    pub idle_timeout: Duration,
    /// How often unchoked slots rotate when peers are waiting.
    pub unchoke_rotation: Duration,
    /// An unchoked peer that has asked for nothing for this long loses its slot to a
    /// waiting one. Being interested only says we have something it lacks; it may be
    /// fetching all of that elsewhere, and its slot would stand idle (the swarm simulator
    /// found half the slots idle while twenty peers waited).
    pub idle_slot_timeout: Duration,
    /// How often to ask for more peers while a download lacks them. The first retries come
    /// sooner (1 s, doubling up to this), since content announced a moment ago may not be
    /// stored in the DHT yet.
    pub peer_query_interval: Duration,
    /// The download scheduler's tunables.
    pub scheduler: SchedulerConfig,
    /// Super-seeding (`seeding.rs`): a node sharing a complete file sends each peer an empty
    /// BITFIELD and offers chunks with HAVE, fewest copies in the swarm first, instead of
    /// announcing them all. Off: a full BITFIELD, and peers ask for what they like.
    pub super_seed: bool,
    /// Super-seeding: offers an unchoked peer holds that it has not requested yet (a choked
    /// one holds one, enough to stay interested). Each request is answered with a new offer,
    /// so this bounds the choice, not the pipeline.
    pub super_seed_offers: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_peers_per_content: 40,
            upload_slots: 8,
            max_pieces_pending: 4,
            max_queued_requests: 128,
            handshake_timeout: Duration::from_secs(10),
            keepalive: wire::KEEPALIVE_INTERVAL,
            idle_timeout: wire::IDLE_TIMEOUT,
            unchoke_rotation: Duration::from_secs(10),
            idle_slot_timeout: Duration::from_secs(3),
            peer_query_interval: Duration::from_secs(15),
            scheduler: SchedulerConfig::default(),
            super_seed: true,
            super_seed_offers: 4,
        }
    }
}

/// What the driver must do, grouped by who does it.
#[derive(Debug)]
pub enum Action {
    /// Socket work (the reactor).
    Wire(WireAction),
    /// File work (the storage executor); report its [`StorageDone`](crate::storage::job::StorageDone)
    /// through [`Engine::chunk_read`], [`Engine::chunk_stored`], [`Engine::chunk_checked`]
    /// or [`Engine::partial_opened`]. Only `ReadChunk`, `StoreChunk`, `CheckChunk` and
    /// `OpenPartial` come from the engine.
    Storage(StorageJob),
    /// Every chunk is verified: the node decides the final name and folder and finishes the
    /// file ([`StorageJob::Finish`]); report [`Engine::finished`].
    Finish {
        /// Which content.
        content: Id,
    },
    /// A download wants more peers: look the content up in the DHT and call
    /// [`Engine::add_peers`].
    FindPeers {
        /// Which content.
        content: Id,
    },
    /// This node now holds verified chunks of `content`: announce it as a provider.
    Announce {
        /// Which content.
        content: Id,
    },
    /// A peer sent a chunk that failed verification (for logs and the ban list).
    Banned {
        /// Its address.
        addr: SocketAddr,
        /// Its node ID.
        node: Option<Id>,
    },
}

/// Socket work for one wire connection.
#[derive(Clone, Debug)]
pub enum WireAction {
    /// Open a TCP connection to `addr`; report [`Engine::connected`] or [`Engine::closed`].
    Connect {
        /// The handle to use for it.
        conn: ConnId,
        /// Where.
        addr: SocketAddr,
    },
    /// Send a frame.
    Send {
        /// On which connection.
        conn: ConnId,
        /// What.
        msg: Message,
    },
    /// Send a PIECE frame: `piece_header(chunk, data.len())` then `data`. Report
    /// [`Engine::piece_sent`] once it is written to the socket.
    SendPiece {
        /// On which connection.
        conn: ConnId,
        /// Which chunk.
        chunk: u32,
        /// Its bytes.
        data: Arc<Vec<u8>>,
    },
    /// Close the connection once what is queued on it is written.
    Close {
        /// Which.
        conn: ConnId,
    },
}

impl From<WireAction> for Action {
    fn from(a: WireAction) -> Action {
        Action::Wire(a)
    }
}

impl From<StorageJob> for Action {
    fn from(j: StorageJob) -> Action {
        Action::Storage(j)
    }
}

/// The engine's outputs, in order (pushes take any group of [`Action`]).
#[derive(Debug, Default)]
struct Actions(VecDeque<Action>);

impl Actions {
    fn push_back(&mut self, a: impl Into<Action>) {
        self.0.push_back(a.into());
    }
}

/// How a download is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Total size in bytes (0 until the manifest is known).
    pub size: u64,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Chunks verified / total.
    pub chunks_have: u32,
    /// Chunk count.
    pub chunks_total: u32,
    /// Connected peers that finished the handshake.
    pub peers: usize,
    /// The manifest is known.
    pub has_manifest: bool,
    /// All chunks verified.
    pub complete: bool,
    /// The file name, if known.
    pub name: Option<String>,
}

#[derive(Debug)]
enum Source {
    /// We share a complete file.
    Seed,
    /// We are downloading it (or finished downloading it).
    Download,
}

#[derive(Debug)]
struct Content {
    source: Source,
    name: Option<String>,
    manifest: Option<Arc<Manifest>>,
    manifest_bytes: Option<Arc<Vec<u8>>>,
    assembly: Option<ManifestAssembly>,
    /// Download state once the partial file is open.
    scheduler: Option<Scheduler>,
    /// What we offered to whom, while we share the complete file and super-seed.
    super_seed: Option<SuperSeed>,
    opening: bool,
    have: BitSet,
    conns: BTreeSet<ConnId>,
    candidates: VecDeque<SocketAddr>,
    tried: HashSet<SocketAddr>,
    next_peer_query: Option<Instant>,
    peer_query_backoff: Duration,
    announced: bool,
    finishing: bool,
    complete: bool,
}

#[derive(Debug)]
struct ManifestAssembly {
    from: ConnId,
    total: usize,
    data: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum ConnState {
    Connecting,
    /// Waiting for the peer's HANDSHAKE.
    Handshaking,
    Active,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    outgoing: bool,
    content: Option<Id>,
    state: ConnState,
    remote: Option<Handshake>,
    /// The peer's BITFIELD arrived (it holds the manifest).
    peer_has_manifest: bool,
    peer_bits: Option<BitSet>,
    sent_bitfield: bool,
    am_choking: bool,
    peer_interested: bool,
    unchoked_at: Option<Instant>,
    /// When we last choked it (or it connected): the longest waiting is unchoked first.
    choked_since: Instant,
    /// When it last sent a request we queued, or when we unchoked it.
    last_request: Instant,
    requests: VecDeque<u32>,
    pieces_pending: usize,
    opened: Instant,
    last_rx: Instant,
    last_tx: Instant,
}

/// All transfers of one node.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    node_id: Id,
    listen_port: u16,
    contents: BTreeMap<Id, Content>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    banned_nodes: HashSet<Id>,
    banned_addrs: HashSet<SocketAddr>,
    actions: Actions,
    next_rotation: Option<Instant>,
    seed: u64,
}

impl Engine {
    /// An engine for the node `node_id` accepting connections on `listen_port`.
    pub fn new(node_id: Id, listen_port: u16, cfg: EngineConfig, seed: u64) -> Self {
        Engine {
            cfg,
            node_id,
            listen_port,
            contents: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: ConnId::new(ConnId::FIRST),
            banned_nodes: HashSet::new(),
            banned_addrs: HashSet::new(),
            actions: Actions::default(),
            next_rotation: None,
            seed,
        }
    }

    // ----- commands -----------------------------------------------------------------

    /// Serves a complete file whose manifest is `manifest`, and asks for it to be announced.
    pub fn share(&mut self, manifest: Arc<Manifest>, name: Option<String>) {
        let id = manifest.content_id();
        let n = manifest.lengths().chunk_count() as usize;
        let bytes = Arc::new(manifest.encode());
        let c = self
            .contents
            .entry(id)
            .or_insert_with(|| Content::new(Source::Seed));
        c.source = Source::Seed;
        c.have = BitSet::full(n);
        c.manifest = Some(manifest);
        c.manifest_bytes = Some(bytes);
        c.scheduler = None;
        c.complete = true;
        if c.name.is_none() {
            c.name = name;
        }
        if self.cfg.super_seed && c.super_seed.is_none() {
            let seed = self.seed ^ u64::from_be_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
            let mut ss = SuperSeed::new(n, seed);
            // Peers that saw our BITFIELD already (we were downloading) are only counted.
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
            c.super_seed = Some(ss);
        }
        // Tell the DHT (at once, and again at every start since shares are re-loaded).
        c.announced = true;
        self.actions.push_back(Action::Announce { content: id });
        let conns: Vec<ConnId> = c.conns.iter().copied().collect();
        for k in conns {
            self.send_bitfield(k);
        }
    }

    /// Stops serving `content` (a changed or removed file): its connections close.
    pub fn unshare(&mut self, content: &Id) {
        if let Some(c) = self.contents.remove(content) {
            for k in c.conns {
                self.close_with(
                    k,
                    error_code::UNKNOWN_CONTENT,
                    "content no longer available",
                );
            }
        }
    }

    /// Starts downloading `content`. `manifest` is known when resuming; otherwise it is
    /// fetched from the first peer that has it.
    pub fn download(
        &mut self,
        now: Instant,
        content: Id,
        manifest: Option<Arc<Manifest>>,
        name: Option<String>,
    ) {
        if self.contents.contains_key(&content) {
            return;
        }
        let mut c = Content::new(Source::Download);
        c.name = name;
        // The first query goes out now (below); the next after the first backoff step.
        c.next_peer_query = Some(now + c.peer_query_backoff);
        if let Some(m) = manifest {
            c.manifest_bytes = Some(Arc::new(m.encode()));
            c.manifest = Some(m.clone());
            c.opening = true;
            self.actions.push_back(StorageJob::OpenPartial {
                content,
                manifest: m,
            });
        }
        self.contents.insert(content, c);
        self.actions.push_back(Action::FindPeers { content });
    }

    /// Candidate peers for `content` (from the DHT or peer exchange).
    pub fn add_peers(&mut self, now: Instant, content: &Id, addrs: &[SocketAddr]) {
        let Some(c) = self.contents.get_mut(content) else {
            return;
        };
        for a in addrs {
            if !c.tried.contains(a)
                && !self.banned_addrs.contains(a)
                && !c.candidates.contains(a)
                && c.candidates.len() < 1000
            {
                c.candidates.push_back(*a);
            }
        }
        self.connect_more(now, *content);
    }

    /// Forgets a download (cancelled by the user). Its connections close.
    pub fn cancel(&mut self, content: &Id) {
        self.unshare(content);
    }

    // ----- connection events --------------------------------------------------------

    /// An outgoing connection is established: say hello.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        k.state = ConnState::Handshaking;
        k.last_rx = now;
        let Some(content) = k.content else {
            return;
        };
        self.send(
            conn,
            now,
            Message::Handshake(Handshake::new(self.node_id, content, self.listen_port)),
        );
    }

    /// A peer connected to us. Returns the handle to use for it.
    pub fn accepted(&mut self, now: Instant, addr: SocketAddr) -> ConnId {
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn::new(addr, false, None, now, ConnState::Handshaking),
        );
        conn
    }

    /// A frame arrived on `conn`.
    pub fn frame(&mut self, now: Instant, conn: ConnId, msg: Message) {
        let Some(k) = self.conns.get_mut(&conn) else {
            return;
        };
        k.last_rx = now;
        if k.state != ConnState::Active {
            match msg {
                Message::Handshake(h) => self.on_handshake(now, conn, h),
                _ => self.close_with(conn, error_code::PROTOCOL_VIOLATION, "expected HANDSHAKE"),
            }
            return;
        }
        let Some(content) = k.content else {
            return;
        };
        match msg {
            Message::KeepAlive => {}
            Message::Handshake(_) => {
                self.close_with(conn, error_code::PROTOCOL_VIOLATION, "second HANDSHAKE")
            }
            Message::Metadata { name } => {
                if let Some(c) = self.contents.get_mut(&content) {
                    if c.name.is_none() {
                        c.name = Some(name);
                    }
                }
            }
            Message::ManifestRequest { offset, length } => {
                self.on_manifest_request(now, conn, content, offset, length)
            }
            Message::ManifestData {
                total_len,
                offset,
                data,
            } => self.on_manifest_data(now, conn, content, total_len, offset, data),
            Message::Bitfield(b) => self.on_bitfield(now, conn, content, b),
            Message::Have(i) => self.on_have(now, conn, content, i),
            Message::Request(i) => self.on_request(now, conn, content, i),
            Message::Cancel(i) => {
                if let Some(k) = self.conns.get_mut(&conn) {
                    k.requests.retain(|c| *c != i);
                }
                if let Some(ss) = self.super_seed(&content) {
                    ss.unrequested(conn, i);
                }
            }
            Message::Piece { chunk, data } => self.on_piece(now, conn, content, chunk, data),
            Message::Reject { chunk, reason } => {
                if reason == reject_reason::CONTENT_CHANGED {
                    // The peer's copy changed: it serves none of this content any more, and
                    // the requester "stops requesting from this peer" (spec 4.11). Treated
                    // like BUSY, every rejected chunk went at once to another peer, so two
                    // such peers bounced requests between them in a tight loop (~5,000
                    // REJECTs a second, tests/transfer.rs). Hang up (no ERROR: it did
                    // nothing wrong); its requests go to the others.
                    self.drop_conn(now, conn);
                    self.actions.push_back(WireAction::Close { conn });
                    return;
                }
                // REJECT CHOKED answers requests that crossed our choke: nothing to do,
                // the CHOKE already released them.
                if reason != reject_reason::CHOKED {
                    if let Some(s) = self.scheduler(&content) {
                        s.peer_rejected(now, conn, chunk, reason == reject_reason::NOT_AVAILABLE);
                    }
                    self.pump(now, content);
                }
            }
            Message::Choke => {
                if let Some(s) = self.scheduler(&content) {
                    s.peer_choked(now, conn);
                }
                self.pump(now, content);
            }
            Message::Unchoke => {
                if let Some(s) = self.scheduler(&content) {
                    s.peer_unchoked(now, conn);
                }
                self.pump(now, content);
            }
            Message::Interested => {
                if let Some(k) = self.conns.get_mut(&conn) {
                    k.peer_interested = true;
                }
                self.fill_upload_slots(now);
            }
            Message::NotInterested => {
                self.clear_requests(conn);
                let unchoked = self.conns.get_mut(&conn).is_some_and(|k| {
                    k.peer_interested = false;
                    !k.am_choking
                });
                if unchoked {
                    self.choke(now, conn);
                }
                // Super-seeding: it has every chunk offered so far; one more keeps it coming.
                self.offer(now, conn);
                self.fill_upload_slots(now);
            }
            Message::Peers(addrs) => self.add_peers(now, &content, &addrs),
            // NAT-traversal frames (nat.md) open a connection; the reactor handles them.
            Message::Probe(_) | Message::Relay { .. } | Message::RelayOk => {
                self.close_with(conn, error_code::PROTOCOL_VIOLATION, "unexpected NAT frame")
            }
            Message::Error { code, text } => {
                log::debug!(
                    "wire: peer {} closed with {} ({code}): {text}",
                    self.conns
                        .get(&conn)
                        .map_or_else(String::new, |k| k.addr.to_string()),
                    wire::error_code_name(code)
                );
                self.drop_conn(now, conn);
                self.actions.push_back(WireAction::Close { conn });
            }
        }
    }

    /// The connection closed (by either side, or failed to connect).
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        self.drop_conn(now, conn);
    }

    /// A PIECE finished writing to the socket.
    pub fn piece_sent(&mut self, now: Instant, conn: ConnId) {
        if let Some(k) = self.conns.get_mut(&conn) {
            k.pieces_pending = k.pieces_pending.saturating_sub(1);
        }
        self.serve_requests(now, conn);
    }

    // ----- worker results -----------------------------------------------------------

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

    /// The result of a [`Action::StoreChunk`]: `Some(true)` verified and stored,
    /// `Some(false)` the hash did not match (the sender is banned), `None` a disk error.
    pub fn chunk_stored(
        &mut self,
        now: Instant,
        content: Id,
        chunk: u32,
        from: ConnId,
        result: Option<bool>,
    ) {
        let Some(s) = self.scheduler(&content) else {
            return;
        };
        match result {
            Some(ok) => s.chunk_verified(now, chunk, from, ok),
            None => s.chunk_lost(now, chunk),
        }
        self.pump(now, content);
    }

    /// The result of a [`Action::CheckChunk`]: a peer whose data failed is banned.
    pub fn chunk_checked(&mut self, now: Instant, content: Id, from: ConnId, ok: bool) {
        if !ok && self.conns.contains_key(&from) {
            log::debug!("download {content}: connection {from} sent a bad copy of a chunk");
            if let Some(s) = self.scheduler(&content) {
                s.peer_gone(now, from);
            }
            self.ban(now, from);
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
        let l = m.lengths();
        c.have = have.clone();
        c.scheduler = Some(Scheduler::new(
            l.chunk_count() as usize,
            l.chunk_size(),
            have,
            cfg,
            seed,
        ));
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
    /// (the whole-file hash did not match: every chunk is refetched).
    pub fn finished(&mut self, now: Instant, content: Id, ok: bool) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        c.finishing = false;
        if ok {
            c.complete = true;
            c.scheduler = None;
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
            // Downloads are announced at their first verified chunk; an empty file has none,
            // so without this a downloaded empty file was never announced (until a restart
            // re-shared it). A no-op for every other download.
            self.announce_once(content);
        } else {
            log::error!("download {content}: whole-file hash mismatch after every chunk verified; starting over");
            let n = c.have.len();
            c.have = BitSet::new(n);
            if let Some(m) = c.manifest.clone() {
                c.opening = true;
                self.actions.push_back(StorageJob::OpenPartial {
                    content,
                    manifest: m,
                });
            }
        }
        let _ = now;
    }

    // ----- time ---------------------------------------------------------------------

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
        let contents: Vec<Id> = self.contents.keys().copied().collect();
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
                    && c.candidates.is_empty()
                    && c.next_peer_query.is_some_and(|t| t <= now)
            });
            if want_peers {
                if let Some(c) = self.contents.get_mut(&id) {
                    c.next_peer_query = Some(now + c.peer_query_backoff);
                    c.peer_query_backoff =
                        (c.peer_query_backoff * 2).min(self.cfg.peer_query_interval);
                    // Addresses tried before may be worth another go later.
                    c.tried.clear();
                }
                self.actions.push_back(Action::FindPeers { content: id });
            } else if let Some(c) = self.contents.get_mut(&id) {
                // Due but not wanted now (enough peers, or candidates still to try): look
                // again later. Left in the past, this deadline made `poll_timeout` return
                // a past instant until the download lost a peer, and the driver spin (the
                // swarm simulator caught it as a livelock).
                if c.next_peer_query.is_some_and(|t| t <= now) {
                    c.next_peer_query = Some(now + c.peer_query_backoff);
                }
            }
            self.connect_more(now, id);
        }
        if self.next_rotation.is_some_and(|t| t <= now) {
            self.rotate_unchoked(now);
        }
        self.reclaim_idle_slots(now);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.0.pop_front()
    }

    /// True when actions wait to be polled.
    pub fn has_actions(&self) -> bool {
        !self.actions.0.is_empty()
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
        for c in self.contents.values() {
            if let Some(s) = &c.scheduler {
                if let Some(x) = s.poll_timeout() {
                    min(x);
                }
            }
            if matches!(c.source, Source::Download) && !c.complete {
                if let Some(x) = c.next_peer_query {
                    min(x);
                }
            }
        }
        t
    }

    // ----- introspection ------------------------------------------------------------

    /// Progress of `content`.
    pub fn progress(&self, content: &Id) -> Option<Progress> {
        let c = self.contents.get(content)?;
        let (size, total) = c
            .manifest
            .as_ref()
            .map_or((0, 0), |m| (m.file_size(), m.lengths().chunk_count()));
        let have_bytes = match &c.manifest {
            Some(m) => {
                let l = m.lengths();
                c.have
                    .iter()
                    .filter_map(|i| l.validate(i as u32))
                    .map(|i| u64::from(l.chunk_len(i)))
                    .sum()
            }
            None => 0,
        };
        Some(Progress {
            size,
            have_bytes,
            chunks_have: c.have.count() as u32,
            chunks_total: total,
            peers: c
                .conns
                .iter()
                .filter(|k| {
                    self.conns
                        .get(k)
                        .is_some_and(|k| k.state == ConnState::Active)
                })
                .count(),
            has_manifest: c.manifest.is_some(),
            complete: c.complete,
            name: c.name.clone(),
        })
    }

    /// The manifest of `content`, once known.
    pub fn manifest(&self, content: &Id) -> Option<Arc<Manifest>> {
        self.contents.get(content).and_then(|c| c.manifest.clone())
    }

    /// The peer address of a connection.
    pub fn conn_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(&conn).map(|k| k.addr)
    }

    /// The content a connection is about, once its handshake named it.
    pub fn conn_content(&self, conn: ConnId) -> Option<Id> {
        self.conns.get(&conn).and_then(|k| k.content)
    }

    /// Checks the schedulers' and the super-seeding bookkeeping's invariants; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (id, c) in &self.contents {
            if let Some(s) = &c.scheduler {
                s.check_invariants().map_err(|e| format!("{id}: {e}"))?;
            }
            if let Some(ss) = &c.super_seed {
                ss.check_invariants().map_err(|e| format!("{id}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Contents known (shared or downloading).
    pub fn contents(&self) -> impl Iterator<Item = &Id> {
        self.contents.keys()
    }

    // ----- handshake ----------------------------------------------------------------

    fn on_handshake(&mut self, now: Instant, conn: ConnId, h: Handshake) {
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
        if self.banned_nodes.contains(&h.node_id) || self.banned_addrs.contains(&addr) {
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
        // rule each side applies alone and reaches the same answer.
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
            let keep_outgoing = self.node_id < h.node_id;
            let (drop, keep_this) = if outgoing == keep_outgoing {
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

    fn send_bitfield(&mut self, conn: ConnId) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        if k.sent_bitfield || k.state != ConnState::Active {
            return;
        }
        let Some(content) = k.content else {
            return;
        };
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
        let peer_bits = k.peer_bits.clone();
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
            let target = self.offer_target(conn);
            if let Some(ss) = self.super_seed(&content) {
                ss.add_peer(conn, true);
                let mut picks = Vec::new();
                if let Some(bits) = &peer_bits {
                    ss.peer_bitfield(conn, bits);
                    picks = ss.top_up(conn, target);
                }
                for chunk in picks {
                    self.actions.push_back(WireAction::Send {
                        conn,
                        msg: Message::Have(chunk),
                    });
                }
            }
        }
    }

    fn send_peer_list(&mut self, now: Instant, conn: ConnId, content: Id) {
        let Some(c) = self.contents.get(&content) else {
            return;
        };
        // Only peers we completed a handshake with, at the port they said they accept on.
        let peers: Vec<SocketAddr> = c
            .conns
            .iter()
            .filter(|k| **k != conn)
            .filter_map(|k| self.conns.get(k))
            .filter_map(|k| {
                let port = k.remote.as_ref()?.listen_port;
                (port != 0).then(|| SocketAddr::new(k.addr.ip(), port))
            })
            .take(wire::MAX_PEERS)
            .collect();
        if !peers.is_empty() {
            self.send(conn, now, Message::Peers(peers));
        }
    }

    // ----- manifest -----------------------------------------------------------------

    fn on_manifest_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        content: Id,
        offset: u32,
        length: u32,
    ) {
        let Some(bytes) = self
            .contents
            .get(&content)
            .and_then(|c| c.manifest_bytes.clone())
        else {
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "MANIFEST_REQUEST before our BITFIELD",
            );
            return;
        };
        let start = offset as usize;
        let end = start.saturating_add(length as usize).min(bytes.len());
        if start >= end {
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "MANIFEST_REQUEST out of range",
            );
            return;
        }
        let data = bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.send(
            conn,
            now,
            Message::ManifestData {
                total_len: bytes.len() as u32,
                offset,
                data,
            },
        );
    }

    fn on_manifest_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        content: Id,
        total: u32,
        offset: u32,
        data: Vec<u8>,
    ) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        let Some(a) = c.assembly.as_mut().filter(|a| a.from == conn) else {
            // Unsolicited, or from a peer we stopped asking: ignore.
            return;
        };
        if total as usize != a.total && a.total != 0 || offset as usize != a.data.len() {
            c.assembly = None;
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "manifest data out of order",
            );
            self.request_manifest(now, content);
            return;
        }
        a.total = total as usize;
        a.data.extend_from_slice(&data);
        if a.data.len() < a.total {
            let next = a.data.len() as u32;
            let len = (a.total - a.data.len()).min(wire::MAX_MANIFEST_PIECE) as u32;
            self.send(
                conn,
                now,
                Message::ManifestRequest {
                    offset: next,
                    length: len,
                },
            );
            return;
        }
        let bytes = std::mem::take(&mut a.data);
        c.assembly = None;
        match Manifest::decode_for(&content, &bytes) {
            Ok(m) => {
                let m = Arc::new(m);
                c.manifest = Some(m.clone());
                c.manifest_bytes = Some(Arc::new(bytes));
                c.opening = true;
                c.have = BitSet::new(m.lengths().chunk_count() as usize);
                self.actions.push_back(StorageJob::OpenPartial {
                    content,
                    manifest: m,
                });
            }
            Err(e) => {
                log::warn!("download {content}: peer sent a manifest that does not match the content ID: {e}");
                self.ban(now, conn);
                self.request_manifest(now, content);
            }
        }
    }

    /// Asks a peer that holds the manifest for it, if nobody is being asked.
    fn request_manifest(&mut self, now: Instant, content: Id) {
        let Some(c) = self.contents.get(&content) else {
            return;
        };
        if c.manifest.is_some() || c.assembly.is_some() {
            return;
        }
        let from = c.conns.iter().copied().find(|k| {
            self.conns
                .get(k)
                .is_some_and(|k| k.peer_has_manifest && k.state == ConnState::Active)
        });
        let Some(from) = from else {
            return;
        };
        if let Some(c) = self.contents.get_mut(&content) {
            c.assembly = Some(ManifestAssembly {
                from,
                total: 0,
                data: Vec::new(),
            });
        }
        self.send(
            from,
            now,
            Message::ManifestRequest {
                offset: 0,
                length: wire::MAX_MANIFEST_PIECE as u32,
            },
        );
    }

    // ----- download side ------------------------------------------------------------

    fn on_bitfield(&mut self, now: Instant, conn: ConnId, content: Id, b: Bitfield) {
        let mut bits = BitSet::new(b.len() as usize);
        for i in b.iter_ones() {
            bits.insert(i as usize);
        }
        if let Some(n) = self
            .contents
            .get(&content)
            .and_then(|c| c.manifest.as_ref())
            .map(|m| m.lengths().chunk_count())
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

    fn on_have(&mut self, now: Instant, conn: ConnId, content: Id, i: u32) {
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

    fn on_piece(&mut self, now: Instant, conn: ConnId, content: Id, chunk: u32, data: Vec<u8>) {
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
    fn pump(&mut self, now: Instant, content: Id) {
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
                SchedAction::Ban(p) => self.ban(now, p),
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

    fn ban(&mut self, now: Instant, conn: ConnId) {
        if let Some(k) = self.conns.get(&conn) {
            let node = k.remote.as_ref().map(|h| h.node_id);
            if let Some(n) = node {
                self.banned_nodes.insert(n);
            }
            self.banned_addrs.insert(k.addr);
            self.actions
                .push_back(Action::Banned { addr: k.addr, node });
        }
        let _ = now;
        self.close_with(
            conn,
            error_code::BANNED,
            "a chunk you sent failed verification",
        );
    }

    fn scheduler(&mut self, content: &Id) -> Option<&mut Scheduler> {
        self.contents
            .get_mut(content)
            .and_then(|c| c.scheduler.as_mut())
    }

    fn super_seed(&mut self, content: &Id) -> Option<&mut SuperSeed> {
        self.contents
            .get_mut(content)
            .and_then(|c| c.super_seed.as_mut())
    }

    /// Super-seeding: tops up the chunks offered to `conn` (HAVE) so that it holds
    /// `super_seed_offers` it has not requested yet (one while it is choked).
    fn offer(&mut self, now: Instant, conn: ConnId) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        let Some(content) = k.content else {
            return;
        };
        if k.state != ConnState::Active || !k.sent_bitfield {
            return;
        }
        let target = self.offer_target(conn);
        let lone = self.lone_downloader(conn);
        let Some(ss) = self.super_seed(&content) else {
            return;
        };
        let offers = if lone {
            ss.offer_all(conn)
        } else {
            ss.top_up(conn, target)
        };
        for chunk in offers {
            self.send(conn, now, Message::Have(chunk));
        }
    }

    /// Super-seeding: tells the bookkeeping whether `conn` may request now, and when it may
    /// no longer, gives the chunks its offers held to peers that were starved of offers.
    fn set_unchoked(&mut self, now: Instant, conn: ConnId, unchoked: bool) {
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
    fn offer_starved(&mut self, now: Instant, content: Id) {
        let starved = match self.super_seed(&content) {
            Some(ss) => ss.take_starved(),
            None => return,
        };
        for k in starved {
            self.offer(now, k);
        }
    }

    fn offer_target(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            Some(k) if !k.am_choking => self.cfg.super_seed_offers.max(1),
            _ => 1,
        }
    }

    /// Super-seeding: whether `conn` is unchoked and the only peer of its content that
    /// lacks any chunk. Super-seeding shares the seed's upload among peers; with one peer
    /// there is nobody to share with, and a few offers at a time only narrow its choice
    /// (four seeds each offering a few chunks to one downloader reached 57-74% of their
    /// summed upload, against 99.7% with everything announced).
    fn lone_downloader(&self, conn: ConnId) -> bool {
        let Some(k) = self.conns.get(&conn) else {
            return false;
        };
        let Some(c) = k.content.and_then(|id| self.contents.get(&id)) else {
            return false;
        };
        !k.am_choking
            && c.conns
                .iter()
                .filter_map(|o| self.conns.get(o))
                .filter(|o| {
                    o.state == ConnState::Active
                        && !o.peer_bits.as_ref().is_some_and(BitSet::is_full)
                })
                .count()
                <= 1
    }

    /// Drops the requests queued from `conn` (we choked it, or it lost interest).
    fn clear_requests(&mut self, conn: ConnId) {
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

    fn connect_more(&mut self, now: Instant, content: Id) {
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
            let Some(addr) = c.candidates.pop_front() else {
                return;
            };
            c.tried.insert(addr);
            // Connected already, either to that address or with a peer that said it accepts
            // connections there.
            let busy = self.conns.values().any(|k| {
                k.content == Some(content)
                    && (k.addr == addr
                        || k.remote
                            .as_ref()
                            .is_some_and(|r| SocketAddr::new(k.addr.ip(), r.listen_port) == addr))
            });
            if busy || self.banned_addrs.contains(&addr) {
                continue;
            }
            let conn = self.alloc_conn();
            self.conns.insert(
                conn,
                Conn::new(addr, true, Some(content), now, ConnState::Connecting),
            );
            self.actions.push_back(WireAction::Connect { conn, addr });
        }
    }

    // ----- upload side --------------------------------------------------------------

    fn on_request(&mut self, now: Instant, conn: ConnId, content: Id, chunk: u32) {
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
    fn serve_requests(&mut self, _now: Instant, conn: ConnId) {
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
    fn fill_upload_slots(&mut self, now: Instant) {
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
    fn rotate_unchoked(&mut self, now: Instant) {
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
    fn reclaim_idle_slots(&mut self, now: Instant) {
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
    fn choke(&mut self, now: Instant, conn: ConnId) {
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

    // ----- plumbing -----------------------------------------------------------------

    fn alloc_conn(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn = id.next();
        id
    }

    fn send(&mut self, conn: ConnId, now: Instant, msg: Message) {
        if let Some(k) = self.conns.get_mut(&conn) {
            k.last_tx = now;
            self.actions.push_back(WireAction::Send { conn, msg });
        }
    }

    fn close_with(&mut self, conn: ConnId, code: u16, text: &str) {
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
    fn drop_conn(&mut self, now: Instant, conn: ConnId) {
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
}

impl Content {
    fn new(source: Source) -> Self {
        Content {
            source,
            name: None,
            manifest: None,
            manifest_bytes: None,
            assembly: None,
            scheduler: None,
            super_seed: None,
            opening: false,
            have: BitSet::new(0),
            conns: BTreeSet::new(),
            candidates: VecDeque::new(),
            tried: HashSet::new(),
            next_peer_query: None,
            peer_query_backoff: Duration::from_secs(1),
            announced: false,
            finishing: false,
            complete: false,
        }
    }
}

impl Conn {
    /// Interested in our chunks and choked: it would use an upload slot.
    fn waiting(&self) -> bool {
        self.am_choking && self.peer_interested && self.state == ConnState::Active
    }

    /// Unchoked with nothing queued or being sent to it.
    fn idle_slot(&self) -> bool {
        !self.am_choking && self.requests.is_empty() && self.pieces_pending == 0
    }

    fn new(
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
            peer_has_manifest: false,
            peer_bits: None,
            sent_bitfield: false,
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
