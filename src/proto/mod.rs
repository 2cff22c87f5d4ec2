//! Wire formats. Pure codecs: no sockets, no clocks, no threads.

pub mod codec;
pub mod dht;
mod dht_parts;
pub mod wire;
