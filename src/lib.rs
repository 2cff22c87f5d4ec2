//! PeerShare: a peer-to-peer file sharing node.
//!
//! Map of the crate (one module per concept):
//! - [`cli`]: the command line (`peershare run`, and API clients such as `status`).
//! - [`api`]: the local JSON-over-TCP API (EchoChain compatible): framing, requests, replies, client.
//! - [`id`]: 256-bit IDs and the XOR metric.
//! - [`bitset`]: a fixed-size set of chunk numbers.
//! - [`conn`]: the handle of a wire connection, one ID space for the core and the reactor.
//! - [`ledger`]: blockchain hooks: content ownership on an embedded signed, hash-chained ledger.
//! - [`content`]: manifests and content IDs, file hashing, the share index, crash-safe partial downloads.
//! - [`dht`]: the Kademlia DHT as a sans-IO state machine.
//! - [`nat`]: NAT traversal (sans-IO): reachability, rendezvous, hole punching, relaying.
//! - [`limits`]: bandwidth limits and rates as people write them.
//! - [`paths`]: paths as the node shows them: absolute, without `.` or `..`.
//! - [`settings`]: the config file's keys, values and format (`peershare config`).
//! - [`node_core`]: the node as one sans-IO state machine: DHT, transfers, NAT and the API's commands joined.
//! - [`web`]: the node's web side, sans-IO: HTTP requests, the dashboard, `/metrics`, streaming.
//! - [`net`]: the mio reactor that drives the node core: sockets, bandwidth pacing, the worker pool.
//! - [`conform`]: the black-box conformance suite for other implementations (`peershare conform`).
//! - [`node`]: a running node: configuration and start-up.
//! - [`storage`]: the file side: share index, shared files, partial downloads; storage jobs.
//! - [`sim`]: a deterministic, seeded network simulator for the DHT (`make sim`).
//! - [`transfer`]: the download scheduler (sans-IO: rarest first, pipelining, endgame, bans).
//! - [`workers`]: the worker pool and its completion channel.
//! - [`proto`]: wire codecs (sans-IO), normative spec in `protocol-spec/`.
//! - [`explain`]: any packet, frame or manifest explained field by field (`peershare decode`, `--trace`).

pub mod api;
pub mod bitset;
pub mod bufpool;
pub mod capture;
pub mod cli;
pub mod conform;
pub mod conn;
pub mod content;
pub mod dht;
pub mod explain;
pub mod id;
pub mod identity;
pub mod ledger;
pub mod limits;
pub mod nat;
pub mod net;
pub mod node;
pub mod node_core;
pub mod paths;
pub mod proto;
pub mod secure;
pub mod settings;
pub mod sim;
pub mod storage;
pub mod transfer;
pub mod web;
pub mod workers;
