//! PeerShare: a peer-to-peer file sharing node.
//!
//! Map of the crate (one module per concept):
//! - [`api`]: the local JSON-over-TCP API (EchoChain compatible): framing, requests, replies, client.
//! - [`id`]: 256-bit IDs and the XOR metric.
//! - [`proto`]: wire codecs (sans-IO), normative spec in `protocol-spec/`.

pub mod api;
pub mod dht;
pub mod id;
pub mod proto;
