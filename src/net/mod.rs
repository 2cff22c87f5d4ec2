//! Everything that touches sockets or the real clock: the mio reactor that drives the node
//! core, and its helpers. The protocol cores (`dht`, `proto`, `transfer`, `nat`,
//! `node_core`) never do I/O themselves.
//!
//! - [`reactor`]: the event loop; carries out the core's outputs.
//! - [`api_server`]: the local API's sockets (framing, reply order, polite closes).
//! - [`wire_io`]: the wire protocol's sockets; [`wire_conn`]: their buffers.
//! - [`nat_io`]: NAT traversal's sockets (dial-backs, punches, relays, NAT-PMP).
//! - [`relay`]: relayed circuits as a rendezvous.
//! - [`bandwidth`]: token buckets and the fair scheduler of reads and writes; [`meters`]:
//!   rates of the node, each transfer and each connection.
//! - [`jobs`]: work for the worker pool, and its backlog.
//! - [`shared`]: the view workers answer read-only commands from.
//! - [`tokens`], [`socket`], [`emulate`], [`trace`]: tokens, binding, send-path emulation,
//!   `--trace`.

pub mod api_server;
pub mod bandwidth;
pub mod edge_stream;
pub mod emulate;
pub mod hooks;
pub mod http_server;
pub mod jobs;
pub mod lan_io;
pub mod meters;
pub mod nat_io;
pub mod reactor;
pub mod relay;
pub mod secure_io;
pub mod shared;
pub mod socket;
pub mod stream;
pub mod tokens;
pub mod trace;
pub mod upnp_io;
pub mod view_pace;
pub mod wire_conn;
pub mod wire_io;
