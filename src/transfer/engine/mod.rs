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
//!
//! The engine's state is defined here ([`Engine`], one `Content` per shared or downloading
//! content); what it does is split by concept:
//!
//! - `config.rs`: the tunables ([`EngineConfig`]);
//! - `action.rs`: the outputs ([`Action`], [`WireAction`]);
//! - `connection.rs`: each connection's state, opening, sending, closing, banning;
//! - `handshake.rs`: HANDSHAKE, then METADATA and BITFIELD;
//! - `pex.rs`: peer exchange, the PEERS sent and received (each peer with its node ID);
//! - `manifest.rs`: the manifest exchange;
//! - `download.rs`: the download side, the glue to the [`Scheduler`];
//! - `rules.rs`: the connection rules every incoming frame is checked against first;
//! - `upload.rs`: requests, choking and upload slots;
//! - `offers.rs`: super-seeding's offers (HAVE);
//! - `timers.rs`: [`Engine::handle_timeout`] and [`Engine::poll_timeout`];
//! - `view.rs`: read-only views ([`Progress`]).
//!
//! Here: the commands (share, download, cancel), the connection events and the frame
//! dispatch, and [`Engine::poll_action`].

mod action;
mod bans;
mod config;
mod connection;
mod download;
mod handshake;
mod manifest;
mod offers;
mod pex;
mod rules;
mod timers;
mod upload;
mod view;

#[cfg(test)]
mod pex_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scheduler::Scheduler;
use super::seeding::SuperSeed;
use crate::bitset::BitSet;
use crate::content::tree::Selection;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::proto::wire::{self, error_code, reject_reason, Handshake, Message};
use crate::storage::job::StorageJob;
use action::Actions;
use connection::{Conn, ConnState};
use manifest::ManifestAssembly;

pub use crate::conn::ConnId;
pub use action::{Action, WireAction};
pub use config::EngineConfig;
pub use view::{PeerView, Progress};

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
    manifest: Option<Arc<ContentManifest>>,
    /// The manifest encoded, as peers fetch it; made at the first MANIFEST_REQUEST (a
    /// library of 100,000 shares mostly never asked for keeps none).
    manifest_bytes: Option<Arc<Vec<u8>>>,
    // Boxed, like the scheduler and the super-seeding below: a content without them (most
    // of a large library) pays a pointer for each, not their size (issue 21).
    assembly: Option<Box<ManifestAssembly>>,
    /// Download state once the partial file is open.
    scheduler: Option<Box<Scheduler>>,
    /// What we offered to whom, while we share the complete file and super-seed. Made when
    /// the first peer is sent our BITFIELD (`super_seed_due` until then).
    super_seed: Option<Box<SuperSeed>>,
    /// Super-seeding starts with the first BITFIELD sent (`Engine::start_super_seed`).
    super_seed_due: bool,
    opening: bool,
    have: BitSet,
    conns: BTreeSet<ConnId>,
    /// Whom to dial and when to search for more: a download's, made when first needed
    /// (`Content::dials`); a share has none (boxed: most of a large library are shares).
    dials: Option<Box<Dials>>,
    announced: bool,
    finishing: bool,
    complete: bool,
    /// Only the manifest is wanted (`Engine::peek`): once it is verified the engine says so
    /// ([`Action::ManifestFetched`]) and opens no partial file.
    peek: bool,
    /// Only these entries of a folder are wanted ([`Engine::download_only`]).
    only: Option<Arc<Selection>>,
    /// Their chunks, once the manifest is known (`None`: every chunk).
    wanted: Option<Box<BitSet>>,
}

/// A download's peers to come: whom it dials next, when it searches for more, and which
/// peer named it.
#[derive(Debug)]
struct Dials {
    /// The connection whose METADATA gave the content's name (a name from a peer later
    /// banned for lying is forgotten, and the next peer's is taken).
    name_from: Option<ConnId>,
    candidates: VecDeque<SocketAddr>,
    /// The node ID a PEERS entry named for a queued candidate (wire.md section 4.16): its
    /// dial expects it, unless a DHT record named one (`Engine::expected_ids`). Only queued
    /// addresses have one, so it is bounded by [`MAX_CANDIDATES`].
    pex_ids: HashMap<SocketAddr, Id>,
    /// A second ID named for a queued candidate by a later PEERS entry: if the dial proves
    /// the first wrong and the node there proves this one, it is dialled again at once
    /// (`pex.rs`). Bounded like `pex_ids`.
    pex_alt: HashMap<SocketAddr, Id>,
    /// Addresses a PEERS-named dial found another node at, with the ID that node proved:
    /// only an entry naming that ID queues the address again (`pex.rs`). Bounded by
    /// [`MAX_TRIED`] and forgotten with `tried`.
    proven: HashMap<SocketAddr, Id>,
    /// Addresses dialled since the last provider search (cleared then), bounded by
    /// [`MAX_TRIED`]: a peer feeding endless PEERS entries keeps the queue from ever running
    /// empty, so without the bound it would grow for as long as the download runs.
    tried: HashSet<SocketAddr>,
    next_peer_query: Option<Instant>,
    peer_query_backoff: Duration,
}

impl Default for Dials {
    fn default() -> Self {
        Dials {
            name_from: None,
            candidates: VecDeque::new(),
            pex_ids: HashMap::new(),
            pex_alt: HashMap::new(),
            proven: HashMap::new(),
            tried: HashSet::new(),
            next_peer_query: None,
            peer_query_backoff: Duration::from_secs(1),
        }
    }
}

/// All transfers of one node.
#[derive(Debug)]
pub struct Engine {
    /// Chunks received and checked against the manifest: `[verified, failed]` (`/metrics`).
    pub chunk_checks: [u64; 2],
    cfg: EngineConfig,
    node_id: Id,
    listen_port: u16,
    contents: BTreeMap<Id, Content>,
    /// The contents whose timers the engine looks at (its scheduler, peer queries, dials):
    /// every content with a scheduler or an unfinished download is here, so that
    /// `poll_timeout` and `handle_timeout` cost the downloads running, not the library's
    /// size (100,000 shares, issue 21). Others leave at the next `handle_timeout`.
    timed: BTreeSet<Id>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    /// Peers that sent data failing verification (`bans.rs`).
    bans: bans::Bans,
    /// The node ID the DHT's provider records name at an address (dht.md section 4.6): a
    /// dial there expects it in the secure handshake. Bounded by [`MAX_EXPECTED_IDS`].
    expected_ids: HashMap<SocketAddr, Id>,
    /// Where this node is reached ([`Engine::set_own_addrs`]): never dialled.
    own_addrs: Vec<SocketAddr>,
    /// PIECE bytes received that were not needed: a copy of a chunk already in, or one
    /// cancelled (endgame asks the last chunks of two peers).
    duplicate_bytes: u64,
    actions: Actions,
    next_rotation: Option<Instant>,
    seed: u64,
}

/// Most provider node IDs remembered at once (the map is cleared when full: it only
/// sharpens dials, and the next lookup fills it again).
const MAX_EXPECTED_IDS: usize = 4096;

/// Most candidate addresses queued for one content (from the DHT and peer exchange).
const MAX_CANDIDATES: usize = 1000;
/// Most addresses remembered as tried per content; beyond, the memory starts afresh (an
/// address tried again costs one dial).
const MAX_TRIED: usize = 4096;

impl Engine {
    /// An engine for the node `node_id` accepting connections on `listen_port`.
    pub fn new(node_id: Id, listen_port: u16, cfg: EngineConfig, seed: u64) -> Self {
        Engine {
            chunk_checks: [0; 2],
            cfg,
            node_id,
            listen_port,
            contents: BTreeMap::new(),
            timed: BTreeSet::new(),
            conns: BTreeMap::new(),
            next_conn: ConnId::new(ConnId::FIRST),
            bans: bans::Bans::new(),
            expected_ids: HashMap::new(),
            own_addrs: Vec::new(),
            duplicate_bytes: 0,
            actions: Actions::default(),
            next_rotation: None,
            seed,
        }
    }

    // ----- commands -----------------------------------------------------------------

    /// Serves a complete file whose manifest is `manifest`, and asks for it to be announced.
    pub fn share(&mut self, manifest: Arc<ContentManifest>, name: Option<String>) {
        self.share_part(manifest, name, None);
    }

    /// [`Engine::share`] for content of which this node holds only the chunks in `have`
    /// (part of a folder, `--only`; `None`: all of it). Such a copy is never super-seeded: it
    /// offers what it has, as a download does.
    pub fn share_part(
        &mut self,
        manifest: Arc<ContentManifest>,
        name: Option<String>,
        have: Option<BitSet>,
    ) {
        let id = manifest.content_id();
        self.serve(manifest, name, have);
        self.actions.push_back(Action::Announce { content: id });
    }

    /// [`Engine::share_part`] without asking for an announce: for the library loaded at
    /// start, which the DHT provides in one reprovide sweep (`Dht::provide_many`) rather
    /// than one announce lookup per share.
    pub fn serve(
        &mut self,
        manifest: Arc<ContentManifest>,
        name: Option<String>,
        have: Option<BitSet>,
    ) {
        let id = manifest.content_id();
        let c = self
            .contents
            .entry(id)
            .or_insert_with(|| Content::new(Source::Seed));
        c.become_seed(manifest, name, have, self.cfg.super_seed);
        let conns: Vec<ConnId> = c.conns.iter().copied().collect();
        if !conns.is_empty() {
            self.start_super_seed(&id);
        }
        for k in conns {
            self.send_bitfield(k);
        }
    }

    /// [`Engine::serve`] for each of `shares` (the library loaded at start), the new ones
    /// added to the map in one pass, its nodes full: filled one key at a time in order,
    /// they stay about half empty, some 20 MB at 100,000 shares (issue 21).
    pub fn serve_all(
        &mut self,
        shares: impl IntoIterator<Item = (Arc<ContentManifest>, Option<String>, Option<BitSet>)>,
    ) {
        let mut fresh = Vec::new();
        for (manifest, name, have) in shares {
            let id = manifest.content_id();
            if self.contents.contains_key(&id) {
                self.serve(manifest, name, have);
                continue;
            }
            let mut c = Content::new(Source::Seed);
            c.become_seed(manifest, name, have, self.cfg.super_seed);
            fresh.push((id, c));
        }
        let mut fresh: BTreeMap<Id, Content> = fresh.into_iter().collect();
        self.contents.append(&mut fresh);
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
        // Our own connections for it that have not finished their handshake are not in the
        // content's set yet: left open, they would count as "connected already" to their
        // peer if the content came back (a paused download resumed), and none would be made.
        let opening: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, k)| k.content == Some(*content))
            .map(|(id, _)| *id)
            .collect();
        for k in opening {
            self.conns.remove(&k);
            self.actions.push_back(WireAction::Close { conn: k });
        }
    }

    /// Starts downloading `content`. `manifest` is known when resuming; otherwise it is
    /// fetched from the first peer that has it.
    pub fn download(
        &mut self,
        now: Instant,
        content: Id,
        manifest: Option<Arc<ContentManifest>>,
        name: Option<String>,
    ) {
        self.download_only(now, content, manifest, name, None);
    }

    /// [`Engine::download`] of only the entries of a folder that `only` selects (`None`:
    /// all of it). Only their chunks are asked for; the download completes when they are
    /// verified. A single file ignores it.
    pub fn download_only(
        &mut self,
        now: Instant,
        content: Id,
        manifest: Option<Arc<ContentManifest>>,
        name: Option<String>,
        only: Option<Arc<Selection>>,
    ) {
        if let Some(c) = self.contents.get_mut(&content) {
            if c.peek {
                c.only = only;
            }
            // Only its manifest was wanted so far: now the whole content is.
            if std::mem::take(&mut c.peek) {
                if let Some(m) = c.manifest.clone() {
                    c.opening = true;
                    c.have = BitSet::new(m.chunk_count() as usize);
                    self.actions.push_back(StorageJob::OpenPartial {
                        content,
                        manifest: m,
                        only: c.only.clone(),
                    });
                }
            }
            return;
        }
        let mut c = Content::new(Source::Download);
        c.name = name;
        c.only = only;
        // The first query goes out now (below); the next after the first backoff step.
        let d = c.dials();
        d.next_peer_query = Some(now + d.peer_query_backoff);
        if let Some(m) = manifest {
            c.manifest_bytes = Some(Arc::new(m.encode()));
            c.manifest = Some(m.clone());
            c.opening = true;
            self.actions.push_back(StorageJob::OpenPartial {
                content,
                manifest: m,
                only: c.only.clone(),
            });
        }
        self.contents.insert(content, c);
        self.timed.insert(content);
        self.actions.push_back(Action::FindPeers { content });
    }

    /// Fetches only the manifest of `content` (to list a folder before downloading it):
    /// peers are found and asked as for a download, and once the manifest is verified the
    /// engine emits [`Action::ManifestFetched`]; no partial file is opened and no chunk is
    /// asked for. [`Engine::cancel`] ends it; [`Engine::download`] turns it into a download.
    pub fn peek(&mut self, now: Instant, content: Id) {
        if self.contents.contains_key(&content) {
            return;
        }
        let mut c = Content::new(Source::Download);
        c.peek = true;
        let d = c.dials();
        d.next_peer_query = Some(now + d.peer_query_backoff);
        self.contents.insert(content, c);
        self.timed.insert(content);
        self.actions.push_back(Action::FindPeers { content });
    }

    /// The addresses this node is reached at: the one it listens on (an unspecified IP there
    /// stands for every local address, loopback included), the one it advertises and the
    /// one peers see it at. The engine never dials them: our own provider record comes back
    /// from the DHT (a downloader announces what it has), and peers pass our address on.
    pub fn set_own_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.own_addrs = addrs;
    }

    /// Bytes of chunk data received that were not needed (see `duplicate_bytes`): part of
    /// the wire's download total, not of any file.
    pub fn duplicate_bytes(&self) -> u64 {
        self.duplicate_bytes
    }

    /// Whether `a` is this node (see [`Engine::set_own_addrs`]).
    pub fn is_own_addr(&self, a: &SocketAddr) -> bool {
        let ip = a.ip().to_canonical();
        self.own_addrs.iter().any(|m| {
            let mine = m.ip().to_canonical();
            m.port() == a.port() && (mine == ip || (mine.is_unspecified() && ip.is_loopback()))
        })
    }

    /// Candidate peers for `content` (from the DHT, or given by the user); our own
    /// addresses are left out. Peer exchange names an ID with each (`pex.rs`).
    pub fn add_peers(&mut self, now: Instant, content: &Id, addrs: &[SocketAddr]) {
        for a in addrs {
            self.add_candidate(content, *a, None);
        }
        self.connect_more(now, *content);
    }

    /// Queues `addr` as a candidate for `content`, unless it is ours, banned, tried or queued
    /// already, or the queue is full. `pex_id`, the ID a PEERS entry names there, is kept for
    /// the dial unless one is expected there already: the first named is kept, a DHT record's
    /// before any PEERS entry's (wire.md section 4.16).
    fn add_candidate(&mut self, content: &Id, addr: SocketAddr, pex_id: Option<Id>) {
        if self.is_own_addr(&addr) || self.bans.addrs.contains(&addr) {
            return;
        }
        let dht_named = self.expected_ids.contains_key(&addr);
        let Some(c) = self.contents.get_mut(content) else {
            return;
        };
        let d = c.dials();
        if d.tried.contains(&addr) && !d.retry_proven(addr, pex_id) {
            return;
        }
        if !d.candidates.contains(&addr) {
            if d.candidates.len() >= MAX_CANDIDATES {
                return;
            }
            d.candidates.push_back(addr);
        }
        if let Some(id) = pex_id.filter(|_| !dht_named) {
            let first = *d.pex_ids.entry(addr).or_insert(id);
            if first != id {
                d.pex_alt.entry(addr).or_insert(id);
            }
        }
    }

    /// Candidate peers for `content` from DHT provider records that name each provider's
    /// node ID: like [`Engine::add_peers`], and a dial to one of these addresses expects
    /// that ID (a peer proving another is hung up on, secure.md); a known banned ID is not
    /// dialled at all.
    pub fn add_peers_with_ids(
        &mut self,
        now: Instant,
        content: &Id,
        addrs: &[SocketAddr],
        ids: &[(SocketAddr, Id)],
    ) {
        for (a, id) in ids {
            if self.expected_ids.len() >= MAX_EXPECTED_IDS {
                self.expected_ids.clear();
            }
            self.expected_ids.insert(*a, *id);
        }
        self.add_peers(now, content, addrs);
    }

    /// The node ID a dial to `addr` must find there, if a provider record named one.
    pub fn expected_id(&self, addr: &SocketAddr) -> Option<Id> {
        self.expected_ids.get(addr).copied()
    }

    /// A provider of `content` on our own link (LAN discovery): tried before every other
    /// candidate, even one tried already under this address (a LAN connection is the
    /// cheapest there is). Ignored if `content` is not being downloaded.
    pub fn add_preferred_peer(&mut self, now: Instant, content: &Id, addr: SocketAddr) {
        self.dial_first(now, content, addr);
    }

    /// Dials `addr` for `content` again, before every other candidate: the caller gave up a
    /// connect to it because it learnt a better way there (a provider record naming its
    /// rendezvous, nat.md section 6). Ignored if `content` is not being downloaded.
    pub fn dial_again(&mut self, now: Instant, content: &Id, addr: SocketAddr) {
        self.dial_first(now, content, addr);
    }

    fn dial_first(&mut self, now: Instant, content: &Id, addr: SocketAddr) {
        if self.is_own_addr(&addr) || self.bans.addrs.contains(&addr) {
            return;
        }
        let Some(c) = self.contents.get_mut(content) else {
            return;
        };
        let d = c.dials();
        d.candidates.retain(|a| *a != addr);
        d.tried.remove(&addr);
        d.candidates.push_front(addr);
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
        if let Some(why) = k.rule_broken(&msg) {
            self.close_with(conn, error_code::PROTOCOL_VIOLATION, why);
            return;
        }
        match msg {
            Message::KeepAlive => {}
            Message::Handshake(_) => {
                self.close_with(conn, error_code::PROTOCOL_VIOLATION, "second HANDSHAKE")
            }
            Message::Metadata { name } => {
                if let Some(k) = self.conns.get_mut(&conn) {
                    k.got_metadata = true;
                }
                if let Some(c) = self.contents.get_mut(&content) {
                    if c.name.is_none() {
                        c.name = Some(name);
                        c.dials().name_from = Some(conn);
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
            Message::Peers(peers) => self.on_peers(now, content, peers),
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

    /// Gives up on a dial whose TCP connect has not completed (the caller decided it waited
    /// long enough): the connection is dropped and the driver told to close its socket.
    /// False if `conn` is not a dial still connecting.
    pub fn abandon_connect(&mut self, now: Instant, conn: ConnId) -> bool {
        let connecting = self
            .conns
            .get(&conn)
            .is_some_and(|k| k.state == ConnState::Connecting);
        if connecting {
            self.drop_conn(now, conn);
            self.actions.push_back(WireAction::Close { conn });
        }
        connecting
    }

    /// A PIECE finished writing to the socket.
    pub fn piece_sent(&mut self, now: Instant, conn: ConnId) {
        if let Some(k) = self.conns.get_mut(&conn) {
            k.pieces_pending = k.pieces_pending.saturating_sub(1);
        }
        self.serve_requests(now, conn);
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
}

impl Content {
    /// Its scheduler, peer queries or dials have deadlines (`Engine::timed`).
    fn has_timers(&self) -> bool {
        self.scheduler.is_some() || (matches!(self.source, Source::Download) && !self.complete)
    }

    /// Still being downloaded (its name is not settled yet).
    fn source_is_download(&self) -> bool {
        matches!(self.source, Source::Download) && !self.complete && !self.finishing
    }

    /// Makes it a complete share of `manifest` (of the chunks in `have` only, if given),
    /// as [`Engine::serve`] does before telling its peers.
    fn become_seed(
        &mut self,
        manifest: Arc<ContentManifest>,
        name: Option<String>,
        have: Option<BitSet>,
        super_seed: bool,
    ) {
        let n = manifest.chunk_count() as usize;
        let have = have.filter(|h| h.len() == n);
        // Super-seeding starts with the first peer (`Engine::start_super_seed`); a partial
        // copy never super-seeds.
        self.super_seed_due = super_seed && self.super_seed.is_none() && have.is_none();
        self.source = Source::Seed;
        self.have = have.unwrap_or_else(|| BitSet::full(n));
        self.manifest = Some(manifest);
        self.scheduler = None;
        self.dials = None;
        self.complete = true;
        if self.name.is_none() {
            self.name = name;
        }
        // The DHT is told (`share_part`, or the start's reprovide sweep).
        self.announced = true;
    }

    /// Its dials, made now if it had none.
    fn dials(&mut self) -> &mut Dials {
        self.dials.get_or_insert_with(Default::default)
    }

    fn new(source: Source) -> Self {
        Content {
            source,
            name: None,
            manifest: None,
            manifest_bytes: None,
            assembly: None,
            scheduler: None,
            super_seed: None,
            super_seed_due: false,
            opening: false,
            have: BitSet::new(0),
            conns: BTreeSet::new(),
            dials: None,
            announced: false,
            finishing: false,
            complete: false,
            peek: false,
            only: None,
            wanted: None,
        }
    }
}
