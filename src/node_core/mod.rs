//! The node as one sans-IO state machine: [`NodeCore`] owns the DHT, the library of
//! contents (with the transfer engine inside) and NAT traversal, and joins them. Every
//! protocol decision of a node is made here; the driver (the mio reactor in `net`, or the
//! whole-network simulator in `sim::node_net`) only moves bytes, runs file jobs and keeps
//! time. Like str0m's `Rtc` and quinn's `Connection`, it never touches a socket, a file, a
//! thread or the clock: time comes in as `now`, randomness as seeds.
//!
//! # The run loop
//! ```text
//! loop {
//!     wait for I/O or until core.poll_timeout()
//!     feed what happened:   core.handle_datagram(now, from, bytes)
//!                           core.handle_wire_accepted(now, peer) -> ConnId
//!                           core.handle_wire_connected / _frame / _error / _closed / piece_sent
//!                           core.handle_storage(now, done)        (a file job finished)
//!                           core.handle_api(now, to, request)     (a parsed API request;
//!                           _measured with the rates the driver's meters give)
//!                           core.handle_dial_back_done / _punch_connected / _relay_* / _pmp_*
//!     if core.poll_timeout() <= now { core.handle_timeout(now) }
//!     while let Some(o) = core.poll_output() { carry it out }   // after EVERY input
//! }
//! ```
//! The drain rule (str0m's): after every input, take outputs until `poll_output` says
//! `None`, then sleep until `poll_timeout`. Carrying out an output may produce inputs (a
//! connect that fails at once); feed them, then drain again.
//!
//! # Inputs, commands, outputs
//! - Inputs are the `handle_*` methods, each with the instant it happened.
//! - Getters: [`NodeCore::conn_addr`], [`NodeCore::conn_content`], [`NodeCore::status_view`],
//!   [`NodeCore::node_id`].
//! - Outputs: [`NodeCore::poll_output`] ([`Output`], grouped by who carries it out: datagrams,
//!   wire sockets, NAT sockets, storage, API replies, the ledger, limits) and
//!   [`NodeCore::poll_timeout`].
//!
//! # Who owns what
//! - [`Dht`]: the routing table, provider records, lookups.
//! - [`Library`]: one entry per content (shared, downloading) and the engine, whose
//!   scheduler holds the only in-memory record of a download's verified chunks.
//! - [`NatGlue`]: reachability, rendezvous, punches, relays, port mapping.
//! - Here: the lookups started for API requests and for downloads' peers, the limits.

pub mod api;
pub mod lan;
pub mod library;
mod listing;
pub mod lookup_log;
mod mapping;
pub mod nat;
pub mod output;
pub mod peers_view;
pub mod search;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod view;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::request::ApiRequest;
use crate::api::ReplyTo;
use crate::conn::ConnId;
use crate::dht::{Dht, DhtEvent, QueryId, QueryResult};
use crate::id::Id;
use crate::limits::Limits;
use crate::proto::codec::DecodeError;
use crate::proto::wire::{self, Message};
use crate::storage::job::{NodeState, Snapshot, StorageDone, StorageJob};
use crate::transfer::engine::{Action as EngineAction, WireAction};
pub use library::Library;
pub use nat::NatGlue;
pub use output::{HookRun, NatIo, Output};
pub use settings::NodeSettings;
pub use view::{BandwidthView, Flow, IoStatus, Live, Rates, StatusView};

/// How often the node state (routing table, provided keys) is saved.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// How often waiting API requests are checked for stalled or unfound downloads.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// A DHT lookup someone waits for.
enum Lookup {
    /// An API request (`local_announce_content`, `local_request_content_info`).
    Api(api::Pending),
    /// A download's search for providers.
    Peers(Id),
    /// An announce of a content the library shares, with the `local_add_file` replies that
    /// wait for it (the file's ID is printed once others can find it).
    Announce {
        content: Id,
        replies: Vec<library::Reply>,
    },
}

/// The node (see the module docs).
pub struct NodeCore {
    dht: Dht,
    library: Library,
    /// The status view's sorted key lists, kept while the keys are the same (`view.rs`):
    /// rebuilt twice a second, a library of 100,000 cost an idle node 9% of a core.
    key_lists: std::cell::RefCell<Option<view::KeyLists>>,
    nat: NatGlue,
    lan: lan::LanGlue,
    lookups: HashMap<QueryId, Lookup>,
    /// How downloads find peers: known providers first, lookups coalesced (`search.rs`).
    search: search::PeerSearch,
    /// Something the search decides on changed (a lookup ended, a connection closed, a
    /// decision fell due): it runs again at the end of `settle`.
    search_dirty: bool,
    /// Lookups that ended (`/metrics`, the learners' page).
    lookup_log: lookup_log::LookupLog,
    limits: Limits,
    /// The settings in force and the config jobs waiting.
    settings: NodeSettings,
    local: SocketAddr,
    /// What this node calls itself in API replies until peers agree on its public address.
    advertised: SocketAddr,
    out: VecDeque<Output>,
    view_dirty: bool,
    next_expire: Instant,
    next_save: Instant,
    /// Snapshots of the node state taken so far (numbers the next one).
    state_saves: u64,
}

impl NodeCore {
    /// A node from its parts: the DHT (with its contacts and bootstrap addresses already
    /// given), the library (shares and resumed downloads), NAT traversal, the address it
    /// listens at and the one it gives API clients, and its bandwidth limits.
    pub fn new(
        dht: Dht,
        library: Library,
        nat: NatGlue,
        local: SocketAddr,
        advertised: SocketAddr,
        limits: Limits,
        now: Instant,
    ) -> NodeCore {
        let (mut library, mut dht) = (library, dht);
        library.engine.set_own_addrs(vec![local, advertised]);
        // The library loaded at start: republished together by the first housekeeping
        // round's reprovide sweep (dht.md section 10.1), as one announce lookup per share
        // would cost 100,000 lookups (and their results' memory) for a large library.
        dht.provide_many(&library.shared_ids(), 0, now);
        let settings = NodeSettings::new(
            crate::settings::Settings::default(),
            crate::settings::Settings::default(),
            (
                library.download_dir().to_path_buf(),
                crate::settings::Source::Default,
            ),
        );
        NodeCore {
            settings,
            dht,
            library,
            key_lists: Default::default(),
            nat,
            lan: lan::LanGlue::default(),
            lookups: HashMap::new(),
            search: Default::default(),
            search_dirty: false,
            lookup_log: Default::default(),
            limits,
            local,
            advertised,
            out: VecDeque::new(),
            view_dirty: true,
            next_expire: now,
            next_save: now + SAVE_EVERY,
            state_saves: 0,
        }
    }

    /// The settings in force and where they come from (`node::run` gives them; the default
    /// is no flags, an empty config file, the library's download folder).
    pub fn set_settings(&mut self, settings: NodeSettings) {
        self.settings = settings;
    }

    /// Starts what runs on its own: port mapping with the default `gateway` (if any), the
    /// first announces and lookups.
    pub fn start(&mut self, now: Instant, gateway: Option<crate::nat::pmp::Gateway>) {
        let (nat, mut p) = self.nat_parts();
        nat.start_mapping(&mut p, now, gateway);
        self.lan_start(now);
        self.settle(now);
    }

    // ----- inputs: network ----------------------------------------------------------

    /// A UDP datagram arrived (DHT or NAT signalling).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let before = self.dht.routing_table().changes();
        self.dht.handle_datagram(now, from, bytes);
        // A contact entered or left (a verified requester's PONG, say): `routes` and
        // `status` show it now, not at the next periodic refresh of the view (issue 18).
        self.view_dirty |= self.dht.routing_table().changes() != before;
        self.settle(now);
    }

    /// A peer connected to our wire port. Returns the connection's handle (the driver
    /// registers the socket under it). It may be our own outgoing connection: a provider we
    /// punch to whose SYN reached our listener.
    pub fn handle_wire_accepted(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        let peer = crate::proto::codec::canonical_addr(peer);
        let (nat, mut p) = self.nat_parts();
        let conn = match nat.accepted(&mut p, peer, now) {
            Some(conn) => {
                self.library.engine.connected(now, conn);
                conn
            }
            None => {
                let conn = p.engine.accepted(now, peer);
                nat.incoming(conn, None);
                conn
            }
        };
        self.settle(now);
        conn
    }

    /// A peer reached us through a punch or a relayed circuit it asked for (the driver's
    /// NAT sockets opened it, `via` says how). Returns the connection's handle.
    pub fn handle_nat_accepted(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        via: crate::nat::Strategy,
    ) -> ConnId {
        let conn = self.handle_wire_accepted(now, peer);
        self.nat.incoming(conn, Some(via));
        conn
    }

    /// An outgoing connection (`WireAction::Connect`) is established.
    pub fn handle_wire_connected(&mut self, now: Instant, conn: ConnId) {
        self.nat.direct_connected(conn, now);
        self.library.engine.connected(now, conn);
        self.settle(now);
    }

    /// A frame arrived on `conn`. After a frame that [`Message::ends_framing`], the driver
    /// reads no more frames from that connection: outputs say what becomes of it.
    pub fn handle_wire_frame(&mut self, now: Instant, conn: ConnId, msg: Message) {
        if let Message::Error { .. } = msg {
            // The peer closes after its ERROR and reads nothing more: what we decided to
            // send it before reading the ERROR (a CHOKE answering its NOT_INTERESTED, say)
            // and have not written yet is dropped (wire.md section 4.17).
            self.out.retain(|o| {
                !matches!(o, Output::Wire(WireAction::Send { conn: c, .. }
                    | WireAction::SendPiece { conn: c, .. }) if *c == conn)
            });
        }
        // PROBE, RELAY and RELAY_OK open connections of the NAT layer; on a connection
        // about content (one that named its content) they break its rules (wire.md 4.18),
        // and the engine says so with an ERROR.
        if msg.ends_framing() && self.library.engine.conn_content(conn).is_none() {
            let from = self.library.engine.conn_addr(conn).unwrap_or(self.local);
            // The connection leaves the transfer protocol: the NAT layer decides its fate.
            self.library.engine.closed(now, conn);
            let (nat, mut p) = self.nat_parts();
            nat.frame(&mut p, now, conn, from, msg);
        } else {
            self.library.engine.frame(now, conn, msg);
        }
        self.settle(now);
    }

    /// Bytes on `conn` could not be decoded: say why, then hang up (wire.md section 3).
    pub fn handle_wire_error(&mut self, now: Instant, conn: ConnId, error: &DecodeError) {
        log::debug!("wire: protocol error from connection {conn}: {error}");
        self.library.engine.closed(now, conn);
        self.out.push_back(Output::Wire(WireAction::Send {
            conn,
            msg: Message::Error {
                code: wire::error_code::PROTOCOL_VIOLATION,
                text: format!("cannot decode your frame: {error}"),
            },
        }));
        self.out.push_back(Output::Wire(WireAction::Close { conn }));
        self.settle(now);
    }

    /// The connection closed (by the peer, an I/O error, or a failed connect).
    pub fn handle_wire_closed(&mut self, now: Instant, conn: ConnId) {
        self.library.engine.closed(now, conn);
        self.search_dirty = true;
        // The NAT layer forgets it too: a connect that failed (refused, unreachable) left
        // its start time behind for good, one entry per failed connect.
        let (nat, mut p) = self.nat_parts();
        nat.conn_closed(&mut p, conn);
        self.settle(now);
    }

    /// A dial's peer proved `proven`, not the node ID the dial expected (secure.md section
    /// 3); the driver closes the connection next ([`NodeCore::handle_wire_closed`]).
    pub fn handle_wire_wrong_peer(&mut self, conn: ConnId, proven: Id) {
        self.library.engine.wrong_peer(conn, proven);
    }

    /// A PIECE on `conn` was written to the socket in full.
    pub fn handle_piece_sent(&mut self, now: Instant, conn: ConnId) {
        self.library.engine.piece_sent(now, conn);
        self.settle(now);
    }

    // ----- inputs: NAT sockets ------------------------------------------------------

    /// A dial-back ([`NatIo::DialBack`]) is over, connected or not.
    pub fn handle_dial_back_done(&mut self, now: Instant) {
        self.nat.dial_back_done();
        self.settle(now);
    }

    /// A punch socket of `conn` connected ([`NatIo::PunchConnect`]). Returns true if the
    /// driver keeps it as `conn`'s socket (false: close it, the attempt is over).
    pub fn handle_punch_connected(&mut self, now: Instant, conn: ConnId) -> bool {
        let (nat, mut p) = self.nat_parts();
        let keep = nat.punch_connected(&mut p, conn, now);
        if keep {
            self.library.engine.connected(now, conn);
        }
        self.settle(now);
        keep
    }

    /// The relayed circuit of `conn` is up ([`NatIo::RelayOpen`]); the socket is `conn`'s.
    pub fn handle_relay_ready(&mut self, now: Instant, conn: ConnId) {
        self.nat.relay_ready(conn, now);
        self.library.engine.connected(now, conn);
        self.settle(now);
    }

    /// The relay attempt of `conn` failed.
    pub fn handle_relay_failed(&mut self, now: Instant, conn: ConnId) {
        let (nat, mut p) = self.nat_parts();
        nat.relay_failed(&mut p, conn, now);
        self.settle(now);
    }

    /// A socket held for a circuit ([`NatIo::HoldForRelay`]) closed before the circuit came.
    pub fn handle_relay_gone(&mut self, now: Instant, conn: ConnId) {
        self.nat.relay_gone(conn);
        self.settle(now);
    }

    /// A relayed circuit ([`NatIo::StartCircuit`]) ended.
    pub fn handle_circuit_closed(&mut self, now: Instant) {
        self.nat.circuit_closed();
        self.settle(now);
    }

    // ----- inputs: storage and API --------------------------------------------------

    /// A storage job finished.
    pub fn handle_storage(&mut self, now: Instant, done: StorageDone) {
        match done {
            StorageDone::Config {
                edits,
                reply,
                result,
            } => self.config_done(edits, reply, result),
            done => self.library.on_storage_done(now, done),
        }
        self.view_dirty = true;
        self.settle(now);
    }

    /// A parsed API request; its reply leaves as [`Output::Reply`] (at once, or when what
    /// it waits for is done). Replies that show rates show none: see
    /// [`NodeCore::handle_api_measured`].
    pub fn handle_api(&mut self, now: Instant, to: ReplyTo, req: ApiRequest) {
        self.handle_api_measured(now, to, req, &Rates::default());
    }

    /// [`NodeCore::handle_api`] with the rates the driver measures where bytes cross its
    /// sockets (for `transfer_status` and `transfer_peers`: [`ApiRequest::shows_rates`]).
    /// Like `now`, they come in with the request and are not kept.
    pub fn handle_api_measured(
        &mut self,
        now: Instant,
        to: ReplyTo,
        req: ApiRequest,
        rates: &Rates,
    ) {
        let self_addr = self.dht.external_addr().unwrap_or(self.advertised);
        let ctx = api::Ctx {
            dht: &mut self.dht,
            library: &mut self.library,
            self_addr,
            limits: &mut self.limits,
            nat: &self.nat,
            rates,
        };
        match api::execute(&req, ctx, now, to) {
            api::Outcome::Reply(bytes) => self.out.push_back(Output::Reply { to, bytes }),
            api::Outcome::Wait(q, p) => {
                self.lookups.insert(q, Lookup::Api(p));
            }
            api::Outcome::Deferred => {}
            api::Outcome::Limits(bytes) => {
                self.out.push_back(Output::Limits(self.limits));
                // Saved in the config file at once: limits set live hold across a restart.
                if let ApiRequest::SetLimits { changes } = &req {
                    self.config_job(settings::limit_edits(changes), None);
                }
                self.out.push_back(Output::Reply { to, bytes });
            }
            api::Outcome::Config(edits) => self.config_job(edits, Some(to)),
            api::Outcome::Ledger { known } => self.out.push_back(Output::Ledger { to, req, known }),
            api::Outcome::View(answer) => {
                let bytes = answer(
                    &self.status_view(now, IoStatus::default()),
                    &Live::default(),
                );
                self.out.push_back(Output::Reply { to, bytes });
            }
        }
        self.view_dirty = true;
        self.settle(now);
    }

    /// A stream over HTTP waits for chunks `chunks` of `content`: they are fetched first.
    pub fn handle_stream_wanted(
        &mut self,
        now: Instant,
        content: Id,
        chunks: std::ops::Range<u32>,
    ) {
        self.library.engine.prioritize(now, content, chunks);
        self.settle(now);
    }

    /// API connection `conn` closed: lookups still running for it finish unobserved.
    pub fn handle_api_gone(&mut self, conn: u64) {
        self.lookups.retain(|_, l| match l {
            Lookup::Api(p) => p.to.conn != conn,
            Lookup::Peers(_) => true,
            Lookup::Announce { replies, .. } => {
                replies.retain(|r| r.to.conn != conn);
                true
            }
        });
    }

    // ----- time ---------------------------------------------------------------------

    /// Timers: the DHT's, the engine's, NAT traversal's, waiting API requests, saving state.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            let before = self.dht.routing_table().changes();
            self.dht.handle_timeout(now);
            self.view_dirty |= self.dht.routing_table().changes() != before;
        }
        if self.library.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.library.engine.handle_timeout(now);
        }
        let (nat, mut p) = self.nat_parts();
        nat.handle_timeout(&mut p, now);
        self.lan_timeout(now);
        if self.search.poll_timeout().is_some_and(|t| t <= now) {
            self.search_dirty = true;
        }
        if now >= self.next_expire {
            self.next_expire = now + EXPIRE_EVERY;
            self.library.expire_waits(now);
        }
        if now >= self.next_save {
            self.next_save = now + SAVE_EVERY;
            let st = self.state_snapshot();
            self.out
                .push_back(Output::Storage(StorageJob::SaveState(st)));
        }
        self.settle(now);
    }

    /// When [`NodeCore::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.dht.poll_timeout(),
            self.library.engine.poll_timeout(),
            self.nat.poll_timeout(),
            self.lan_poll_timeout(),
            self.search.poll_timeout(),
            Some(self.next_expire),
            Some(self.next_save),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- shutdown -----------------------------------------------------------------

    // (Port mappings removed as the node stops: `mapping.rs`.)

    /// The last jobs of a stopping node: every download's progress made durable, the node
    /// state saved. The driver runs them before exiting.
    pub fn final_jobs(&mut self) -> [StorageJob; 2] {
        [
            StorageJob::FlushAll,
            StorageJob::SaveState(self.state_snapshot()),
        ]
    }

    /// The node state to save, numbered after every snapshot taken before.
    fn state_snapshot(&mut self) -> Snapshot<NodeState> {
        self.state_saves += 1;
        Snapshot {
            generation: self.state_saves,
            value: self.node_state(),
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next thing to do (see the module docs for the drain rule).
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        // A change comes out ahead of the replies it caused, so that the reactor knows its
        // view is stale before a client can read it (`net::shared`).
        if std::mem::take(&mut self.view_dirty) {
            return Some(Output::ViewChanged);
        }
        self.out.pop_front()
    }

    // ----- getters ------------------------------------------------------------------

    /// The node's ID.
    pub fn node_id(&self) -> Id {
        self.dht.id()
    }

    /// The peer address of a wire connection the engine knows.
    pub fn conn_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.library.engine.conn_addr(conn)
    }

    /// Whether this node dialled a wire connection (an accepted socket can be our own punch:
    /// see [`NodeCore::handle_wire_accepted`]).
    pub fn conn_outgoing(&self, conn: ConnId) -> Option<bool> {
        self.library.engine.conn_outgoing(conn)
    }

    /// The node ID a connection this node dialled must find at its other end (secure.md
    /// section 3): the one the provider record or PEERS entry named, or, for a provider
    /// reached through a rendezvous, the one its rendezvous record names. A punched or relayed connection is
    /// handed to the driver as a socket, not as a [`WireAction::Connect`] carrying the ID:
    /// the driver asks here. None for a connection we accepted.
    pub fn conn_expected_id(&self, conn: ConnId) -> Option<Id> {
        let engine = &self.library.engine;
        if engine.conn_outgoing(conn) != Some(true) {
            return None;
        }
        engine.conn_expected_id(conn).or_else(|| {
            let addr = engine.conn_addr(conn)?;
            self.dht.rendezvous_of(&addr).map(|(node, _)| node)
        })
    }

    /// The content a wire connection is about, once its handshake named it.
    pub fn conn_content(&self, conn: ConnId) -> Option<Id> {
        self.library.engine.conn_content(conn)
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The library (contents, downloads in progress).
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// The DHT.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// What is persisted across restarts.
    pub fn node_state(&self) -> NodeState {
        NodeState {
            node_id: Some(self.dht.id()),
            contacts: self.dht.routing_table().iter().map(|e| e.contact).collect(),
            provided: self.dht.provided_keys(),
            // Kept in the config file now (`settings.rs`); read from here once, at start.
            limits: None,
        }
    }

    // ----- joining the parts --------------------------------------------------------

    /// NAT traversal and what its decisions act on, borrowed together.
    fn nat_parts(&mut self) -> (&mut NatGlue, nat::Parts<'_>) {
        (
            &mut self.nat,
            nat::Parts {
                dht: &mut self.dht,
                engine: &mut self.library.engine,
                out: &mut self.out,
                lan: self.lan.lan.as_ref(),
            },
        )
    }

    /// After an input: lets the parts act on each other until nothing moves, collecting
    /// what the driver must do in the output queue.
    fn settle(&mut self, now: Instant) {
        // Bounded: every round consumes outputs of the parts, which they only produce in
        // answer to a finite amount of input (a round that moves nothing ends the loop).
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(a) = self.library.engine.poll_action() {
                moved = true;
                self.engine_action(now, a);
            }
            while let Some(ev) = self.dht.poll_event() {
                moved = true;
                self.view_dirty = true;
                self.dht_event(now, ev);
            }
            while let Some(t) = self.dht.poll_transmit() {
                moved = true;
                self.out.push_back(Output::Datagram(t));
            }
            while let Some(job) = self.library.poll_job() {
                moved = true;
                self.out.push_back(Output::Storage(job));
            }
            for r in self.library.take_replies() {
                moved = true;
                self.out.push_back(Output::Reply {
                    to: r.to,
                    bytes: r.bytes,
                });
            }
            for (id, reply) in self.library.take_added() {
                moved = true;
                let running = self.lookups.values_mut().find_map(|l| match l {
                    Lookup::Announce { content, replies } if *content == id => Some(replies),
                    _ => None,
                });
                match running {
                    Some(replies) => replies.push(reply),
                    // Announced already (alone, nobody to tell) or refused (too many lookups):
                    // it is republished later either way.
                    None => self.out.push_back(Output::Reply {
                        to: reply.to,
                        bytes: reply.bytes,
                    }),
                }
            }
            for id in self.library.take_withdrawn() {
                moved = true;
                self.dht.stop_providing(&id);
            }
            for done in self.library.take_completed() {
                moved = true;
                // The owner's hook (config file only, never a peer's word), for every
                // completed download, whether anyone waits for it or not.
                if let Some(command) = self.settings.on_complete() {
                    self.out.push_back(Output::RunHook(HookRun {
                        command: command.to_string(),
                        content: done.content,
                        path: done.path,
                        name: done.name,
                        size: done.size,
                    }));
                }
            }
            moved |= self.lan_settle(now);
            if std::mem::take(&mut self.search_dirty) {
                moved = true;
                self.search_pump(now);
            }
            if !moved {
                break;
            }
        }
    }

    fn engine_action(&mut self, now: Instant, a: EngineAction) {
        match a {
            EngineAction::Wire(w) => {
                let (nat, mut p) = self.nat_parts();
                match w {
                    WireAction::Connect { conn, addr, expect } => {
                        // Through the provider's rendezvous, or a plain connect.
                        if !nat.connect(&mut p, now, conn, addr) {
                            let w = WireAction::Connect { conn, addr, expect };
                            self.out.push_back(Output::Wire(w));
                        }
                    }
                    WireAction::Close { conn } => {
                        nat.conn_closed(&mut p, conn);
                        self.search_dirty = true;
                        self.out.push_back(Output::Wire(WireAction::Close { conn }));
                    }
                    w @ (WireAction::Send { .. } | WireAction::SendPiece { .. }) => {
                        self.out.push_back(Output::Wire(w))
                    }
                }
            }
            EngineAction::Storage(job) => self.library.queue_job(job),
            EngineAction::Finish { content } => self.library.finish(content),
            EngineAction::ManifestFetched { content } => self.library.manifest_fetched(content),
            EngineAction::FindPeers { content } => {
                self.lan_want(content);
                self.find_peers(now, content);
            }
            // A download's first verified chunk: announced with the others that start
            // within a moment (`Dht::provide_soon`), as nobody waits for it.
            EngineAction::Announce { content } if self.library.is_downloading(&content) => {
                self.dht.provide_soon(content, 0, now);
            }
            EngineAction::Announce { content } => {
                if let Some(q) = self.dht.announce(content, 0, now) {
                    self.lookups.insert(
                        q,
                        Lookup::Announce {
                            content,
                            replies: Vec::new(),
                        },
                    );
                }
            }
            EngineAction::Banned { addr, node, what } => {
                self.search.forget_provider(&addr);
                log::warn!(
                    "banned peer {addr} ({}): it sent {what} that failed verification",
                    node.map_or_else(|| "unknown id".into(), |n| n.to_hex()[..16].to_string())
                );
            }
        }
    }

    fn dht_event(&mut self, now: Instant, ev: DhtEvent) {
        let mine = [self.local, self.advertised];
        let (nat, mut p) = self.nat_parts();
        match ev {
            DhtEvent::QueryDone { id, result, stats } => {
                log::debug!("dht: query {id:?} done in {:?}: {stats:?}", stats.duration);
                let lookup = self.lookups.remove(&id);
                let kind = match &lookup {
                    Some(Lookup::Api(_)) => 0,
                    Some(Lookup::Peers(_)) => 1,
                    Some(Lookup::Announce { .. }) => 2,
                    None => 3,
                };
                self.lookup_log.record(kind, &stats, now);
                match lookup {
                    Some(Lookup::Api(pending)) => {
                        let me = self.dht.external_addr().unwrap_or(self.advertised);
                        let bytes = api::reply_for(&pending, &result, &self.dht, me);
                        self.out.push_back(Output::Reply {
                            to: pending.to,
                            bytes,
                        });
                    }
                    Some(Lookup::Peers(content)) => self.peers_found(now, content, &result),
                    Some(Lookup::Announce { content, replies }) => {
                        if let QueryResult::Announced { stored_at, asked } = result {
                            log::debug!("{content}: announced at {stored_at}/{asked} nodes");
                        }
                        for r in replies {
                            self.out.push_back(Output::Reply {
                                to: r.to,
                                bytes: r.bytes,
                            });
                        }
                    }
                    None => {
                        if let QueryResult::Announced { stored_at, asked } = result {
                            log::debug!("dht: republished a key at {stored_at}/{asked} nodes");
                        }
                    }
                }
            }
            DhtEvent::ProvidersFound {
                id,
                providers,
                node_ids,
            } => self.providers_found_early(now, id, &providers, &node_ids),
            DhtEvent::ExternalAddress(a) => {
                log::info!("peers see this node at {a}");
                p.engine.set_own_addrs(vec![mine[0], mine[1], a]);
                nat.external(&mut p, now);
            }
            DhtEvent::Nat { from, datagram } => nat.datagram(&mut p, now, from, datagram),
        }
    }
}
