//! What the node core asks its driver to do ([`Output`]), grouped by who carries it out.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::api::request::ApiRequest;
use crate::api::ReplyTo;
use crate::conn::ConnId;
use crate::dht::Transmit;
use crate::id::Id;
use crate::limits::Limits;
use crate::storage::job::StorageJob;
use crate::transfer::engine::WireAction;

/// One thing for the driver to do. Drain them with `NodeCore::poll_output` after every
/// input (see the crate docs of `node_core`).
#[derive(Debug)]
pub enum Output {
    /// Send a DHT datagram (the DHT's own, and NAT signalling, which rides on it).
    Datagram(Transmit),
    /// Socket work on a wire connection: connect, send a frame or a PIECE, close.
    Wire(WireAction),
    /// Socket work of NAT traversal (dial-backs, hole punches, relays, port mapping).
    Nat(NatIo),
    /// A LAN discovery datagram: to the multicast groups, or to one node (nat.md section 11).
    Lan(crate::nat::lan::LanTransmit),
    /// File work.
    Storage(StorageJob),
    /// An API reply.
    Reply {
        /// Where it goes.
        to: ReplyTo,
        /// The reply (one JSON object and `\n`).
        bytes: Vec<u8>,
    },
    /// `local_register_file_on_chain`: append to the ledger (disk I/O and an fsync) and
    /// reply to `to`.
    Ledger {
        /// Where the reply goes.
        to: ReplyTo,
        /// The request.
        req: ApiRequest,
        /// Whether this node has the content (only such content may be registered).
        known: bool,
    },
    /// The bandwidth limits changed (`set_limits`, `set_config`): enforce these from now on.
    Limits(Limits),
    /// A download completed and the owner's config names a hook: run it (a process the
    /// driver spawns, never waits for in its loop, reaps and logs).
    RunHook(HookRun),
    /// Something users see in `status` changed: republish the view.
    ViewChanged,
}

/// The owner's completion hook for one download (`on_complete` in the config file). The
/// command comes from the local config only; the values, some of them a peer's words (the
/// name), go in environment variables, never into the command's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// The command, for `sh -c`.
    pub command: String,
    /// `PEERSHARE_ID`.
    pub content: Id,
    /// `PEERSHARE_PATH` (and `$1`): the complete, verified file.
    pub path: PathBuf,
    /// `PEERSHARE_NAME`: its file name.
    pub name: String,
    /// `PEERSHARE_SIZE`: its size in bytes.
    pub size: u64,
}

/// NAT traversal's socket work (spec: `protocol-spec/nat.md`). Results come back through
/// the `NodeCore::handle_*` methods named on each variant.
#[derive(Debug, PartialEq, Eq)]
pub enum NatIo {
    /// Connect to `addr` (a prober's wire port), write `hello` (a PROBE frame), close.
    /// Report `handle_dial_back_done`, whether it connected or not.
    DialBack {
        /// The prober's wire address.
        addr: SocketAddr,
        /// The encoded PROBE frame.
        hello: Vec<u8>,
    },
    /// Downloader: connect from our own wire port to `addr` (a simultaneous open) for
    /// `conn`. Report `handle_punch_connected` if it connects; failures need no report (the
    /// core moves on to a relay at its deadline).
    PunchConnect {
        /// The engine's connection.
        conn: ConnId,
        /// The provider's wire address.
        addr: SocketAddr,
    },
    /// Provider: connect from our own wire port to a downloader at `addr`; once connected
    /// it is an incoming connection (report `handle_wire_accepted`).
    PunchAccept {
        /// The downloader's wire address.
        addr: SocketAddr,
    },
    /// Give up the punch sockets of `conn` (it connected another way, or failed).
    DropPunches {
        /// The engine's connection.
        conn: ConnId,
    },
    /// Downloader: connect to the rendezvous's wire port, write `hello` (RELAY), and read
    /// exactly a RELAY_OK back; then the socket is `conn`'s. Report `handle_relay_ready` or
    /// `handle_relay_failed`.
    RelayOpen {
        /// The engine's connection.
        conn: ConnId,
        /// The rendezvous's wire address.
        rendezvous: SocketAddr,
        /// The encoded RELAY frame.
        hello: Vec<u8>,
    },
    /// Provider: connect to the rendezvous's wire port and write `hello` (RELAY); once
    /// written the socket is an incoming connection from `peer` (report
    /// `handle_wire_accepted` with `peer`).
    RelayJoin {
        /// The rendezvous's wire address.
        rendezvous: SocketAddr,
        /// The encoded RELAY frame.
        hello: Vec<u8>,
        /// The downloader, as the rendezvous saw it.
        peer: SocketAddr,
    },
    /// As a rendezvous: keep the socket of `conn` (which sent RELAY) out of the wire
    /// protocol, waiting for the other end of its circuit. Report `handle_relay_gone` if it
    /// closes first.
    HoldForRelay {
        /// The opener's connection.
        conn: ConnId,
    },
    /// As a rendezvous: both ends are here. Write RELAY_OK to `opener`, then copy bytes
    /// between the two sockets (within the circuit limits). Report `handle_circuit_closed`
    /// when it ends.
    StartCircuit {
        /// The downloader's end (held since its RELAY).
        opener: ConnId,
        /// The provider's end.
        joiner: ConnId,
    },
    /// Close a held socket (its circuit never came, or the RELAY was for someone else).
    DropHeld {
        /// The connection.
        conn: ConnId,
    },
    /// Send a NAT-PMP request to the gateway (from a UDP socket connected to it: port 5351).
    /// Report answers with `handle_pmp_datagram`, ICMP errors with `handle_pmp_unreachable`,
    /// and a socket that cannot be opened with `handle_pmp_failed`.
    PmpSend {
        /// The gateway's NAT-PMP address.
        gateway: SocketAddr,
        /// The request.
        bytes: Vec<u8>,
    },
    /// Send an SSDP search to 239.255.255.250:1900 from the UPnP socket; report answers with
    /// `handle_upnp_ssdp`.
    UpnpSearch {
        /// The M-SEARCH.
        bytes: Vec<u8>,
    },
    /// An HTTP exchange with a UPnP router: connect to `to`, write `request`, read to the
    /// end; report `handle_upnp_http` with `id` and the response (or none on failure).
    UpnpHttp {
        /// Matches the answer to the request.
        id: u64,
        /// The router's HTTP server.
        to: SocketAddr,
        /// The request.
        request: Vec<u8>,
    },
}
