//! The TCP wire protocol codec: moving verified chunks between two peers (spec:
//! `protocol-spec/wire.md`).
//!
//! A connection carries a stream of **frames**. Every frame is a 4-byte big-endian `length`
//! (the number of bytes that follow), a type byte, then a body whose layout the type defines:
//!
//! ```text
//! +--------------+--------+---------------------------+
//! | length (u32) | type   | body (length - 1 bytes)   |
//! +--------------+--------+---------------------------+
//! ```
//!
//! This module is pure: it turns bytes into [`Message`]s and back, and never touches a socket
//! or a clock. Decoding is total: any input gives a message, "not enough bytes yet", or a
//! [`DecodeError`](super::codec::DecodeError), never a panic, and it never allocates more than
//! the frame it decodes.
//!
//! # Incremental decoding (the contract with the reactor)
//!
//! The reactor appends what it reads to a per-connection buffer and calls [`decode_frame`]
//! on that buffer after every read, in a loop:
//!
//! - `Ok(None)`: the buffer holds less than one complete frame, and nothing in it is wrong so
//!   far. Read more, then call again. [`frame_len_hint`] says how many bytes the first frame
//!   needs in all, once its 4-byte length has arrived, so the buffer can be sized.
//! - `Ok(Some((msg, consumed)))`: the first `consumed` bytes were one frame. Remove them and
//!   call again at once: more frames may already be buffered.
//! - `Err(e)`: the stream is broken. Framing cannot be recovered, so the connection is closed
//!   (after ERROR PROTOCOL_VIOLATION, spec: `wire.md`, section 2, "Strictness").
//!
//! Errors appear as soon as the bytes that prove them have arrived: a length of 0 or above
//! [`MAX_FRAME_LEN`] after the first 4 bytes; an unknown type, or a length longer than the
//! type ever needs, after the first 5. So a receiver never buffers more than the largest
//! legitimate frame *of the announced type*: a HAVE that claims to be a megabyte long is
//! refused before its body is read.
//!
//! The checks always run in the same order (length, type, length against the type's layout,
//! body fields in order, trailing bytes), whether the buffer holds 5 bytes or the whole frame.
//! So for any prefix of a frame, `decode_frame` returns either `Ok(None)` or exactly the error
//! the whole frame gives: the outcome never depends on how TCP split the stream.
//!
//! The limits and constants of the protocol are defined here; the rest, by concept:
//! `codes.rs` (type bytes, REJECT reasons, ERROR codes), `message.rs` ([`Message`],
//! [`Handshake`]), `bitfield.rs` ([`Bitfield`]), `encode.rs` ([`Message::encode`],
//! [`piece_header`]) and `decode.rs` ([`frame_len_hint`], [`decode_frame`]).

mod bitfield;
mod codes;
mod decode;
mod encode;
mod message;

use std::time::Duration;

use crate::id::ID_LEN;

pub use bitfield::Bitfield;
pub use codes::type_name;
pub use codes::{error_code, error_code_name, msg_type, reject_reason, reject_reason_name};
pub use decode::{decode_frame, frame_len_hint};
pub use encode::piece_header;
pub use message::{Handshake, Message, PexPeer};

/// Bytes of the `length` field that opens every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Bytes of the frame header: `length` and the type byte.
pub const FRAME_HEADER_LEN: usize = LENGTH_PREFIX_LEN + 1;
/// Largest chunk, in bytes (the manifest gives the actual chunk size; `protocol-spec/content.md`).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Largest value of a frame's `length` field: a full PIECE (type byte, 4-byte chunk index,
/// 1 MiB of data) needs 1 MiB + 5; the 11 bytes to spare leave room for a future header field
/// without moving the limit.
pub const MAX_FRAME_LEN: usize = (1 << 20) + 16;
/// Most chunks a content may have (so chunk indices fit in a `u32` with room to spare, and a
/// BITFIELD is at most 128 KiB).
pub const MAX_CHUNKS: usize = 1 << 20;
/// Largest manifest, in bytes: 32 bytes of hash for each of [`MAX_CHUNKS`] chunks plus 64
/// bytes for the manifest's fixed fields (`protocol-spec/content.md`).
pub const MAX_MANIFEST_LEN: usize = (32 << 20) + 64;
/// Largest manifest piece one MANIFEST_REQUEST may ask for and one MANIFEST_DATA may carry.
pub const MAX_MANIFEST_PIECE: usize = 256 << 10;
/// Most entries (address and node ID) in one PEERS message.
pub const MAX_PEERS: usize = 50;
/// Longest file name in METADATA, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// Longest ERROR text, in bytes of UTF-8.
pub const MAX_ERROR_TEXT: usize = 200;
/// The four bytes that open every HANDSHAKE body: "PSWP" (PeerShare Wire Protocol).
pub const MAGIC: [u8; 4] = *b"PSWP";
/// The wire protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Size of a version 1 HANDSHAKE body: magic, version, flags, node ID, content ID, listen
/// port.
pub const HANDSHAKE_BODY_LEN: usize = 4 + 1 + 1 + ID_LEN + ID_LEN + 2;
/// Largest HANDSHAKE body a receiver reads. Version 1's is exactly [`HANDSHAKE_BODY_LEN`]
/// bytes, but a later version may need a longer one; allowing it in the header check lets the
/// decoder reach the version byte and answer `UnsupportedVersion` (a clear "speak version 1")
/// instead of a length error.
pub const MAX_HANDSHAKE_BODY: usize = 1024;
/// A node that has sent nothing on a connection for this long sends a KEEPALIVE.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection on which nothing has been received for this long is closed: four keep-alive
/// intervals, so one delayed or lost keep-alive never kills a healthy connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Size of a PIECE header: `length`, type, chunk index. See [`piece_header`].
pub const PIECE_HEADER_LEN: usize = FRAME_HEADER_LEN + 4;

// The largest PIECE must fit in a frame, or a full-size chunk could never be sent.
const _: () = assert!(1 + 4 + MAX_CHUNK_SIZE <= MAX_FRAME_LEN);
// Every other message's largest body fits too.
const _: () = assert!(1 + 8 + MAX_MANIFEST_PIECE <= MAX_FRAME_LEN);
const _: () = assert!(1 + 4 + MAX_CHUNKS / 8 <= MAX_FRAME_LEN);
const _: () = assert!(HANDSHAKE_BODY_LEN <= MAX_HANDSHAKE_BODY);
// Counts travel as a u8.
const _: () = assert!(MAX_PEERS <= 255 && MAX_NAME_LEN <= 255 && MAX_ERROR_TEXT <= 255);

#[cfg(test)]
mod tests;
