//! PeerShare: a peer-to-peer file sharing node.
//!
//! Map of the crate (one module per concept):
//! - [`id`]: 256-bit IDs and the XOR metric.
//! - [`proto`]: wire codecs (sans-IO), normative spec in `protocol-spec/`.

pub mod id;
pub mod proto;
