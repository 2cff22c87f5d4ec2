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
//! [`DecodeError`], never a panic, and it never allocates more than the frame it decodes.
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

use std::net::SocketAddr;
use std::time::Duration;

use super::codec::{put_socket_addr, socket_addr_len, DecodeError, Reader};
use crate::id::{Id, ID_LEN};

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
/// Most addresses in one PEERS message.
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

/// Largest encoded address (family 6): 1 + 16 + 2 bytes.
const MAX_ADDR_LEN: usize = 19;
/// Smallest encoded address (family 4): 1 + 4 + 2 bytes.
const MIN_ADDR_LEN: usize = 7;

// The largest PIECE must fit in a frame, or a full-size chunk could never be sent.
const _: () = assert!(1 + 4 + MAX_CHUNK_SIZE <= MAX_FRAME_LEN);
// Every other message's largest body fits too.
const _: () = assert!(1 + 8 + MAX_MANIFEST_PIECE <= MAX_FRAME_LEN);
const _: () = assert!(1 + 4 + MAX_CHUNKS / 8 <= MAX_FRAME_LEN);
const _: () = assert!(HANDSHAKE_BODY_LEN <= MAX_HANDSHAKE_BODY);
// Counts travel as a u8.
const _: () = assert!(MAX_PEERS <= 255 && MAX_NAME_LEN <= 255 && MAX_ERROR_TEXT <= 255);

/// Message type bytes.
pub mod msg_type {
    /// KEEPALIVE: nothing to say, the connection is alive.
    pub const KEEPALIVE: u8 = 0x00;
    /// HANDSHAKE: who I am and which content this connection is about.
    pub const HANDSHAKE: u8 = 0x01;
    /// METADATA: the file name.
    pub const METADATA: u8 = 0x02;
    /// MANIFEST_REQUEST: send me part of the manifest.
    pub const MANIFEST_REQUEST: u8 = 0x03;
    /// MANIFEST_DATA: part of the manifest.
    pub const MANIFEST_DATA: u8 = 0x04;
    /// BITFIELD: the chunks I have.
    pub const BITFIELD: u8 = 0x05;
    /// HAVE: I have just verified this chunk.
    pub const HAVE: u8 = 0x06;
    /// REQUEST: send me this chunk.
    pub const REQUEST: u8 = 0x07;
    /// PIECE: a whole chunk.
    pub const PIECE: u8 = 0x08;
    /// CANCEL: I no longer want this chunk.
    pub const CANCEL: u8 = 0x09;
    /// REJECT: I will not send this chunk.
    pub const REJECT: u8 = 0x0a;
    /// CHOKE: I will not serve your requests.
    pub const CHOKE: u8 = 0x0b;
    /// UNCHOKE: I will serve your requests.
    pub const UNCHOKE: u8 = 0x0c;
    /// INTERESTED: you have chunks I want.
    pub const INTERESTED: u8 = 0x0d;
    /// NOT_INTERESTED: you have nothing I want.
    pub const NOT_INTERESTED: u8 = 0x0e;
    /// PEERS: other peers of this content.
    pub const PEERS: u8 = 0x0f;
    /// ERROR: why I am closing the connection.
    pub const ERROR: u8 = 0x10;
    /// PROBE: the answer to a DIALBACK (spec: `nat.md`): you are reachable.
    pub const PROBE: u8 = 0x11;
    /// RELAY: open or join a relayed circuit at a rendezvous (spec: `nat.md`).
    pub const RELAY: u8 = 0x12;
    /// RELAY_OK: the circuit is up; what follows comes from the other end.
    pub const RELAY_OK: u8 = 0x13;
}

/// REJECT reason codes (spec: `protocol-spec/wire.md`, "REJECT"). A decoder accepts every
/// value, so a newer peer's reasons reach the application as a raw number.
pub mod reject_reason {
    /// I do not have that chunk.
    pub const NOT_AVAILABLE: u8 = 1;
    /// You are choked: I serve no requests from you now.
    pub const CHOKED: u8 = 2;
    /// Too many of your requests are queued already.
    pub const BUSY: u8 = 3;
    /// My copy of the file changed; I no longer serve this content.
    pub const CONTENT_CHANGED: u8 = 4;
}

/// ERROR codes (spec: `protocol-spec/wire.md`, "ERROR"). A decoder accepts every value.
pub mod error_code {
    /// I do not serve the content ID of your HANDSHAKE.
    pub const UNKNOWN_CONTENT: u16 = 1;
    /// You broke the protocol (undecodable frame, message out of order, index out of range).
    pub const PROTOCOL_VIOLATION: u16 = 2;
    /// You sent a chunk that failed verification; I will not talk to you again.
    pub const BANNED: u16 = 3;
    /// I have as many connections as I accept.
    pub const TOO_MANY_CONNECTIONS: u16 = 4;
    /// I am shutting down.
    pub const SHUTTING_DOWN: u16 = 5;
    /// We both have the whole content: this connection has nothing left to carry.
    pub const COMPLETE: u16 = 6;
}

/// The spec's name for a type byte ("UNKNOWN" if undefined).
pub fn type_name(t: u8) -> &'static str {
    match t {
        msg_type::KEEPALIVE => "KEEPALIVE",
        msg_type::HANDSHAKE => "HANDSHAKE",
        msg_type::METADATA => "METADATA",
        msg_type::MANIFEST_REQUEST => "MANIFEST_REQUEST",
        msg_type::MANIFEST_DATA => "MANIFEST_DATA",
        msg_type::BITFIELD => "BITFIELD",
        msg_type::HAVE => "HAVE",
        msg_type::REQUEST => "REQUEST",
        msg_type::PIECE => "PIECE",
        msg_type::CANCEL => "CANCEL",
        msg_type::REJECT => "REJECT",
        msg_type::CHOKE => "CHOKE",
        msg_type::UNCHOKE => "UNCHOKE",
        msg_type::INTERESTED => "INTERESTED",
        msg_type::NOT_INTERESTED => "NOT_INTERESTED",
        msg_type::PEERS => "PEERS",
        msg_type::ERROR => "ERROR",
        msg_type::PROBE => "PROBE",
        msg_type::RELAY => "RELAY",
        msg_type::RELAY_OK => "RELAY_OK",
        _ => "UNKNOWN",
    }
}

/// The spec's name for a REJECT reason ("UNKNOWN" if undefined).
pub fn reject_reason_name(reason: u8) -> &'static str {
    match reason {
        reject_reason::NOT_AVAILABLE => "NOT_AVAILABLE",
        reject_reason::CHOKED => "CHOKED",
        reject_reason::BUSY => "BUSY",
        reject_reason::CONTENT_CHANGED => "CONTENT_CHANGED",
        _ => "UNKNOWN",
    }
}

/// The spec's name for an ERROR code ("UNKNOWN" if undefined).
pub fn error_code_name(code: u16) -> &'static str {
    match code {
        error_code::UNKNOWN_CONTENT => "UNKNOWN_CONTENT",
        error_code::PROTOCOL_VIOLATION => "PROTOCOL_VIOLATION",
        error_code::BANNED => "BANNED",
        error_code::TOO_MANY_CONNECTIONS => "TOO_MANY_CONNECTIONS",
        error_code::SHUTTING_DOWN => "SHUTTING_DOWN",
        error_code::COMPLETE => "COMPLETE",
        _ => "UNKNOWN",
    }
}

/// The first message on a connection, in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Reserved: sent as 0, ignored on receipt (kept here so a frame re-encodes byte-exact).
    pub flags: u8,
    /// The sender's node ID (the same ID it uses in the DHT).
    pub node_id: Id,
    /// The content this connection is about: the SHA-256 of its manifest.
    pub content_id: Id,
    /// The TCP port the sender accepts connections on, so the receiver can pass its address
    /// on in PEERS; 0 means it accepts none.
    pub listen_port: u16,
}

impl Handshake {
    /// A handshake with the reserved flags at 0.
    pub fn new(node_id: Id, content_id: Id, listen_port: u16) -> Handshake {
        Handshake {
            flags: 0,
            node_id,
            content_id,
            listen_port,
        }
    }
}

/// Which chunks a peer has: bit `i` is chunk `i`, the most significant bit of byte 0 being
/// chunk 0. The spare bits of the last byte are always 0, and `len` is at most
/// [`MAX_CHUNKS`]; every constructor keeps both invariants, so every `Bitfield` encodes to a
/// valid BITFIELD. No method panics, whatever the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    len: u32,
    bits: Vec<u8>,
}

/// The largest chunk count, as the `u32` the wire carries.
const MAX_CHUNKS_U32: u32 = MAX_CHUNKS as u32;

/// Bytes needed for `len` bits.
fn bitfield_bytes(len: u32) -> usize {
    to_usize(len).div_ceil(8)
}

/// A `u32` read from the wire as a `usize`. Lossless on every platform Rust supports with
/// `usize` of 32 bits or more; saturates otherwise, so a huge value stays huge.
fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Bitfield {
    /// An all-zero bitfield over `len` chunks. A `len` above [`MAX_CHUNKS`] is clamped to it:
    /// no valid manifest has more chunks, and the clamp keeps the allocation bounded.
    pub fn new(len: u32) -> Bitfield {
        let len = len.min(MAX_CHUNKS_U32);
        Bitfield {
            len,
            bits: vec![0; bitfield_bytes(len)],
        }
    }

    /// A bitfield over `len` chunks from its wire bytes. Fails if `len` exceeds
    /// [`MAX_CHUNKS`] (`LengthTooLarge`), if `bits` is not exactly `ceil(len / 8)` bytes
    /// (`UnexpectedEnd` or `TrailingBytes`), or if a spare bit after the last chunk is set
    /// (`InvalidValue`).
    pub fn from_bytes(len: u32, bits: Vec<u8>) -> Result<Bitfield, DecodeError> {
        if len > MAX_CHUNKS_U32 {
            return Err(DecodeError::LengthTooLarge {
                field: "chunk_count",
                len: to_usize(len),
                max: MAX_CHUNKS,
            });
        }
        let need = bitfield_bytes(len);
        if bits.len() < need {
            return Err(DecodeError::UnexpectedEnd {
                field: "bits",
                needed: need - bits.len(),
            });
        }
        if bits.len() > need {
            return Err(DecodeError::TrailingBytes(bits.len() - need));
        }
        // Spare bits must be 0: otherwise one bitfield would have many encodings, and a
        // careless receiver might count chunks that do not exist.
        let used = len % 8;
        if used != 0 {
            let spare_mask = 0xffu8 >> used;
            if bits.last().is_some_and(|b| b & spare_mask != 0) {
                return Err(DecodeError::InvalidValue {
                    field: "bits",
                    reason: "a spare bit after the last chunk is set",
                });
            }
        }
        Ok(Bitfield { len, bits })
    }

    /// Number of chunks the bitfield covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when it covers no chunk (the content is an empty file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether chunk `i` is present; false for any `i` out of range.
    pub fn get(&self, i: u32) -> bool {
        i < self.len
            && self
                .bits
                .get(to_usize(i / 8))
                .is_some_and(|b| b & (0x80u8 >> (i % 8)) != 0)
    }

    /// Marks chunk `i` present; does nothing if `i` is out of range.
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            if let Some(b) = self.bits.get_mut(to_usize(i / 8)) {
                *b |= 0x80u8 >> (i % 8);
            }
        }
    }

    /// Number of chunks present.
    pub fn count_ones(&self) -> u32 {
        // Spare bits are always 0, so counting whole bytes counts chunks only.
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// True when every chunk is present (also true for an empty bitfield).
    pub fn is_full(&self) -> bool {
        self.count_ones() == self.len
    }

    /// The wire bytes: `ceil(len / 8)` bytes, chunk 0 in the top bit of byte 0.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// The indices of the chunks present, in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        // `(0u32..)` numbers the bytes without a cast; there are at most 2^17 of them.
        (0u32..)
            .zip(self.bits.iter())
            .filter(|(_, b)| **b != 0)
            .flat_map(|(byte_index, &b)| {
                (0u32..8)
                    .filter(move |bit| b & (0x80u8 >> bit) != 0)
                    .map(move |bit| byte_index * 8 + bit)
            })
    }
}

/// One wire protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Nothing to say: sent after [`KEEPALIVE_INTERVAL`] of silence so the peer (and any NAT
    /// on the way) sees the connection is alive.
    KeepAlive,
    /// The first message in each direction.
    Handshake(Handshake),
    /// The file name as the sharer called it. Not part of the content identity; receivers
    /// must sanitize it before using it as a path (spec: "METADATA").
    Metadata {
        /// 1 to [`MAX_NAME_LEN`] bytes of UTF-8 (longer names are cut on encoding).
        name: String,
    },
    /// Send me `length` bytes of the manifest starting at `offset`.
    ManifestRequest {
        /// First byte wanted.
        offset: u32,
        /// Bytes wanted, 1 to [`MAX_MANIFEST_PIECE`].
        length: u32,
    },
    /// Part of the manifest.
    ManifestData {
        /// Size of the whole manifest, at most [`MAX_MANIFEST_LEN`].
        total_len: u32,
        /// Position of `data` in the manifest; `offset + data.len() <= total_len`.
        offset: u32,
        /// 1 to [`MAX_MANIFEST_PIECE`] bytes of manifest.
        data: Vec<u8>,
    },
    /// The chunks the sender has; sent once, as soon as the sender knows the manifest.
    Bitfield(Bitfield),
    /// The sender has just verified this chunk.
    Have(u32),
    /// Please send this whole chunk.
    Request(u32),
    /// A whole chunk.
    Piece {
        /// Its index.
        chunk: u32,
        /// Its bytes: 1 to [`MAX_CHUNK_SIZE`].
        data: Vec<u8>,
    },
    /// Withdraws a REQUEST (endgame).
    Cancel(u32),
    /// The sender will not send this chunk.
    Reject {
        /// The chunk requested.
        chunk: u32,
        /// One of [`reject_reason`]; unknown values are kept as they are.
        reason: u8,
    },
    /// The sender will not serve the receiver's requests.
    Choke,
    /// The sender will serve the receiver's requests.
    Unchoke,
    /// The sender wants chunks the receiver has.
    Interested,
    /// The sender wants nothing the receiver has.
    NotInterested,
    /// Other peers of the same content (peer exchange), at most [`MAX_PEERS`].
    Peers(Vec<SocketAddr>),
    /// Why the sender is closing the connection.
    Error {
        /// One of [`error_code`]; unknown values are kept as they are.
        code: u16,
        /// For people, not programs: UTF-8, at most [`MAX_ERROR_TEXT`] bytes.
        text: String,
    },
    /// The only frame of a dial-back connection: the nonce of the DIALBACK it answers.
    Probe(u64),
    /// The first frame of a relayed connection at a rendezvous: open a circuit to node
    /// `node` (downloader), or join circuit `nonce` as `node` (the called client).
    Relay {
        /// The node at the other end (opening) or the sender itself (joining).
        node: Id,
        /// The circuit's number, chosen by the opener.
        nonce: u64,
    },
    /// From the rendezvous to the opener: both ends are joined.
    RelayOk,
}

impl Message {
    /// The type byte of this message.
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::KeepAlive => msg_type::KEEPALIVE,
            Message::Handshake(_) => msg_type::HANDSHAKE,
            Message::Metadata { .. } => msg_type::METADATA,
            Message::ManifestRequest { .. } => msg_type::MANIFEST_REQUEST,
            Message::ManifestData { .. } => msg_type::MANIFEST_DATA,
            Message::Bitfield(_) => msg_type::BITFIELD,
            Message::Have(_) => msg_type::HAVE,
            Message::Request(_) => msg_type::REQUEST,
            Message::Piece { .. } => msg_type::PIECE,
            Message::Cancel(_) => msg_type::CANCEL,
            Message::Reject { .. } => msg_type::REJECT,
            Message::Choke => msg_type::CHOKE,
            Message::Unchoke => msg_type::UNCHOKE,
            Message::Interested => msg_type::INTERESTED,
            Message::NotInterested => msg_type::NOT_INTERESTED,
            Message::Peers(_) => msg_type::PEERS,
            Message::Error { .. } => msg_type::ERROR,
            Message::Probe(_) => msg_type::PROBE,
            Message::Relay { .. } => msg_type::RELAY,
            Message::RelayOk => msg_type::RELAY_OK,
        }
    }

    /// A short upper-case name, as in the spec.
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }

    /// True for the frames of NAT traversal (PROBE, RELAY, RELAY_OK: nat.md), which open a
    /// connection and end its framed part: whatever follows on the connection (the bytes of
    /// a relayed circuit) is not wire frames, and must not be decoded as such.
    pub fn ends_framing(&self) -> bool {
        matches!(
            self,
            Message::Probe(_) | Message::Relay { .. } | Message::RelayOk
        )
    }

    /// Appends this message as one complete frame.
    ///
    /// Encoding cannot fail and cuts only where documented: a METADATA name to
    /// [`MAX_NAME_LEN`] bytes and an ERROR text to [`MAX_ERROR_TEXT`] bytes (both on a char
    /// boundary), a PEERS list to its first [`MAX_PEERS`] addresses. IPv4-mapped IPv6
    /// addresses are written as IPv4. Everything else is written as given, even when a
    /// receiver will reject it (an empty METADATA name, a PIECE over [`MAX_CHUNK_SIZE`],
    /// MANIFEST_DATA whose range exceeds `total_len`): a sender bug then shows up as a loud
    /// decode error at the peer instead of as silently altered data.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body_len = self.body_len();
        out.reserve(FRAME_HEADER_LEN.saturating_add(body_len));
        out.extend_from_slice(&length_field(body_len).to_be_bytes());
        out.push(self.type_byte());
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested => {}
            Message::Handshake(h) => {
                out.extend_from_slice(&MAGIC);
                out.push(VERSION);
                out.push(h.flags);
                out.extend_from_slice(&h.node_id.0);
                out.extend_from_slice(&h.content_id.0);
                out.extend_from_slice(&h.listen_port.to_be_bytes());
            }
            Message::Metadata { name } => put_text(out, truncate_utf8(name, MAX_NAME_LEN)),
            Message::ManifestRequest { offset, length } => {
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&length.to_be_bytes());
            }
            Message::ManifestData {
                total_len,
                offset,
                data,
            } => {
                out.extend_from_slice(&total_len.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Bitfield(b) => {
                out.extend_from_slice(&b.len.to_be_bytes());
                out.extend_from_slice(&b.bits);
            }
            Message::Have(chunk) | Message::Request(chunk) | Message::Cancel(chunk) => {
                out.extend_from_slice(&chunk.to_be_bytes());
            }
            Message::Piece { chunk, data } => {
                out.extend_from_slice(&chunk.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Reject { chunk, reason } => {
                out.extend_from_slice(&chunk.to_be_bytes());
                out.push(*reason);
            }
            Message::Peers(peers) => {
                let peers = peers.get(..MAX_PEERS).unwrap_or(peers);
                // At most MAX_PEERS (50) addresses, so the count fits in its byte.
                out.push(u8::try_from(peers.len()).unwrap_or(u8::MAX));
                for p in peers {
                    put_socket_addr(out, p);
                }
            }
            Message::Error { code, text } => {
                out.extend_from_slice(&code.to_be_bytes());
                put_text(out, truncate_utf8(text, MAX_ERROR_TEXT));
            }
            Message::Probe(nonce) => out.extend_from_slice(&nonce.to_be_bytes()),
            Message::Relay { node, nonce } => {
                out.extend_from_slice(&node.0);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::RelayOk => {}
        }
    }

    /// The exact number of bytes [`Message::encode`] appends (header included).
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN.saturating_add(self.body_len())
    }

    /// Bytes of the body, after the type byte.
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::RelayOk => 0,
            Message::Probe(_) => 8,
            Message::Relay { .. } => 32 + 8,
            Message::Handshake(_) => HANDSHAKE_BODY_LEN,
            Message::Metadata { name } => 1 + truncate_utf8(name, MAX_NAME_LEN).len(),
            Message::ManifestRequest { .. } => 8,
            Message::ManifestData { data, .. } => data.len().saturating_add(8),
            Message::Bitfield(b) => 4 + b.bits.len(),
            Message::Have(_) | Message::Request(_) | Message::Cancel(_) => 4,
            Message::Piece { data, .. } => data.len().saturating_add(4),
            Message::Reject { .. } => 5,
            Message::Peers(peers) => {
                let peers = peers.get(..MAX_PEERS).unwrap_or(peers);
                1 + peers.iter().map(socket_addr_len).sum::<usize>()
            }
            Message::Error { text, .. } => 3 + truncate_utf8(text, MAX_ERROR_TEXT).len(),
        }
    }
}

/// The first [`PIECE_HEADER_LEN`] (9) bytes of a PIECE frame carrying `data_len` bytes of
/// chunk `chunk`: `length`, type, chunk index. A sender writes this header and then the chunk
/// data from its own buffer (a vectored write), without copying the chunk into a frame.
/// `data_len` must be 1 to [`MAX_CHUNK_SIZE`]; for a larger value the header announces a frame
/// every receiver rejects (never a wrapped-around length).
pub fn piece_header(chunk: u32, data_len: usize) -> [u8; PIECE_HEADER_LEN] {
    let length = length_field(data_len.saturating_add(4));
    let mut h = [0u8; PIECE_HEADER_LEN];
    let (len_bytes, rest) = h.split_at_mut(LENGTH_PREFIX_LEN);
    len_bytes.copy_from_slice(&length.to_be_bytes());
    let (type_byte, chunk_bytes) = rest.split_at_mut(1);
    type_byte.fill(msg_type::PIECE);
    chunk_bytes.copy_from_slice(&chunk.to_be_bytes());
    h
}

/// The `length` field for a body of `body_len` bytes: the type byte plus the body. Saturates
/// at `u32::MAX` (which every receiver rejects) instead of wrapping to a small, plausible value.
fn length_field(body_len: usize) -> u32 {
    u32::try_from(body_len.saturating_add(1)).unwrap_or(u32::MAX)
}

/// Appends a `u8` length and the text; the caller has already cut it to at most 255 bytes.
fn put_text(out: &mut Vec<u8>, text: &str) {
    out.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(text.as_bytes());
}

/// How long a type's body may be.
#[derive(Clone, Copy, Debug)]
enum BodyLayout {
    /// Exactly this many bytes.
    Exact(usize),
    /// Any size up to this many bytes (the body's own fields say how much is used).
    AtMost(usize),
}

/// The body layout of each defined type; `None` for an undefined type.
fn body_layout(t: u8) -> Option<BodyLayout> {
    use BodyLayout::{AtMost, Exact};
    Some(match t {
        msg_type::KEEPALIVE
        | msg_type::CHOKE
        | msg_type::UNCHOKE
        | msg_type::INTERESTED
        | msg_type::NOT_INTERESTED
        | msg_type::RELAY_OK => Exact(0),
        msg_type::PROBE => Exact(8),
        msg_type::RELAY => Exact(32 + 8),
        // Not `Exact`: a later version's longer HANDSHAKE must get as far as its version byte.
        msg_type::HANDSHAKE => AtMost(MAX_HANDSHAKE_BODY),
        msg_type::METADATA => AtMost(1 + MAX_NAME_LEN),
        msg_type::MANIFEST_REQUEST => Exact(8),
        msg_type::MANIFEST_DATA => AtMost(8 + MAX_MANIFEST_PIECE),
        msg_type::BITFIELD => AtMost(4 + MAX_CHUNKS / 8),
        msg_type::HAVE | msg_type::REQUEST | msg_type::CANCEL => Exact(4),
        msg_type::PIECE => AtMost(4 + MAX_CHUNK_SIZE),
        msg_type::REJECT => Exact(5),
        msg_type::PEERS => AtMost(1 + MAX_PEERS * MAX_ADDR_LEN),
        msg_type::ERROR => AtMost(2 + 1 + MAX_ERROR_TEXT),
        _ => return None,
    })
}

/// How many bytes the first frame in `buf` occupies in all (its 4-byte length field
/// included), so the reactor can size its read buffer; at most `MAX_FRAME_LEN + 4`.
///
/// - `Ok(None)`: fewer than [`LENGTH_PREFIX_LEN`] bytes; nothing can be said yet.
/// - `Ok(Some(n))`: the frame needs `n` bytes; `buf` may hold fewer, or more.
/// - `Err(_)`: the header is already invalid: a length of 0 or above [`MAX_FRAME_LEN`]
///   (from 4 bytes), or, once the type byte is in, an unknown type or a length longer than
///   that type's layout allows. These are exactly the errors [`decode_frame`] reports for the
///   same bytes.
pub fn frame_len_hint(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut r = Reader::new(buf);
    let Ok(length) = r.u32("length") else {
        return Ok(None);
    };
    let length = to_usize(length);
    if length == 0 {
        return Err(DecodeError::InvalidValue {
            field: "length",
            reason: "0, but every frame holds at least its type byte",
        });
    }
    if length > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge {
            len: length,
            max: MAX_FRAME_LEN,
        });
    }
    if let Ok(t) = r.u8("type") {
        let body_len = length - 1;
        match body_layout(t) {
            None => return Err(DecodeError::UnknownMessageType(t)),
            // A fixed-layout body longer than its layout: the extra bytes can only be
            // trailing bytes, and they are known to be there from the header alone.
            Some(BodyLayout::Exact(n)) if body_len > n => {
                return Err(DecodeError::TrailingBytes(body_len - n));
            }
            Some(BodyLayout::AtMost(n)) if body_len > n => {
                return Err(DecodeError::TooLarge {
                    len: length,
                    max: n + 1,
                });
            }
            Some(_) => {}
        }
    }
    Ok(Some(LENGTH_PREFIX_LEN + length))
}

/// Decodes the frame at the start of `buf` (see the module docs for the contract).
///
/// `Ok(None)` when `buf` holds less than a complete frame and no error is visible yet;
/// `Ok(Some((msg, consumed)))` for one complete frame, `consumed` being its size (bytes after
/// it are left alone); `Err` for a bad frame. Only the first frame is looked at.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    let Some(total) = frame_len_hint(buf)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    // The whole frame is here, so it holds at least the header (length >= 1), and
    // `frame_len_hint` has checked the type and the length against the type's layout.
    let mut r = Reader::new(frame);
    r.u32("length")?;
    let t = r.u8("type")?;
    let body = r.take(r.remaining(), "body")?;
    let msg = decode_body(t, body)?;
    Ok(Some((msg, total)))
}

/// Decodes a body whose size `frame_len_hint` has already bounded by the type's layout.
fn decode_body(t: u8, body: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(body);
    let msg = match t {
        msg_type::KEEPALIVE => Message::KeepAlive,
        msg_type::HANDSHAKE => Message::Handshake(read_handshake(&mut r)?),
        msg_type::METADATA => {
            let name = read_text(&mut r, "name_len", "name", MAX_NAME_LEN)?;
            if name.is_empty() {
                return Err(DecodeError::InvalidValue {
                    field: "name",
                    reason: "empty: a file name has at least one byte",
                });
            }
            Message::Metadata { name }
        }
        msg_type::MANIFEST_REQUEST => {
            let offset = r.u32("offset")?;
            let length = r.u32("length")?;
            if length == 0 {
                return Err(DecodeError::InvalidValue {
                    field: "length",
                    reason: "0: a manifest request asks for at least one byte",
                });
            }
            if to_usize(length) > MAX_MANIFEST_PIECE {
                return Err(DecodeError::LengthTooLarge {
                    field: "length",
                    len: to_usize(length),
                    max: MAX_MANIFEST_PIECE,
                });
            }
            Message::ManifestRequest { offset, length }
        }
        msg_type::MANIFEST_DATA => {
            let total_len = r.u32("total_len")?;
            if to_usize(total_len) > MAX_MANIFEST_LEN {
                return Err(DecodeError::LengthTooLarge {
                    field: "total_len",
                    len: to_usize(total_len),
                    max: MAX_MANIFEST_LEN,
                });
            }
            let offset = r.u32("offset")?;
            // The rest of the frame is the data; the type's layout bounds it by
            // MAX_MANIFEST_PIECE already.
            let data = r.take(r.remaining(), "data")?;
            if data.is_empty() {
                return Err(DecodeError::InvalidValue {
                    field: "data",
                    reason: "empty: manifest data carries at least one byte",
                });
            }
            // Checked: offset near u32::MAX plus the data length must not wrap around.
            let end = to_usize(offset).checked_add(data.len());
            if end.is_none_or(|end| end > to_usize(total_len)) {
                return Err(DecodeError::InvalidValue {
                    field: "offset",
                    reason: "offset + data length is beyond total_len",
                });
            }
            Message::ManifestData {
                total_len,
                offset,
                data: data.to_vec(),
            }
        }
        msg_type::BITFIELD => {
            let len = r.u32("chunk_count")?;
            if to_usize(len) > MAX_CHUNKS {
                return Err(DecodeError::LengthTooLarge {
                    field: "chunk_count",
                    len: to_usize(len),
                    max: MAX_CHUNKS,
                });
            }
            let bits = r.take(bitfield_bytes(len), "bits")?;
            Message::Bitfield(Bitfield::from_bytes(len, bits.to_vec())?)
        }
        msg_type::HAVE => Message::Have(r.u32("chunk")?),
        msg_type::REQUEST => Message::Request(r.u32("chunk")?),
        msg_type::CANCEL => Message::Cancel(r.u32("chunk")?),
        msg_type::PIECE => {
            let chunk = r.u32("chunk")?;
            let data = r.take(r.remaining(), "data")?;
            if data.is_empty() {
                return Err(DecodeError::InvalidValue {
                    field: "data",
                    reason: "empty: every chunk has at least one byte",
                });
            }
            Message::Piece {
                chunk,
                data: data.to_vec(),
            }
        }
        msg_type::REJECT => Message::Reject {
            chunk: r.u32("chunk")?,
            reason: r.u8("reason")?,
        },
        msg_type::CHOKE => Message::Choke,
        msg_type::UNCHOKE => Message::Unchoke,
        msg_type::INTERESTED => Message::Interested,
        msg_type::NOT_INTERESTED => Message::NotInterested,
        msg_type::PROBE => Message::Probe(r.u64("nonce")?),
        msg_type::RELAY => Message::Relay {
            node: r.id("node_id")?,
            nonce: r.u64("nonce")?,
        },
        msg_type::RELAY_OK => Message::RelayOk,
        msg_type::PEERS => {
            let n = usize::from(r.u8("peer_count")?);
            if n > MAX_PEERS {
                return Err(DecodeError::LengthTooLarge {
                    field: "peer_count",
                    len: n,
                    max: MAX_PEERS,
                });
            }
            // Each address is at least 7 bytes: a count that cannot fit is refused before
            // the vector is sized by it.
            let need = n * MIN_ADDR_LEN;
            if need > r.remaining() {
                return Err(DecodeError::UnexpectedEnd {
                    field: "peer_count",
                    needed: need - r.remaining(),
                });
            }
            let mut peers = Vec::with_capacity(n);
            for _ in 0..n {
                peers.push(r.socket_addr("peer")?);
            }
            Message::Peers(peers)
        }
        msg_type::ERROR => {
            let code = r.u16("error_code")?;
            let text = read_text(&mut r, "text_len", "text", MAX_ERROR_TEXT)?;
            Message::Error { code, text }
        }
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    r.finish()?;
    Ok(msg)
}

fn read_handshake(r: &mut Reader<'_>) -> Result<Handshake, DecodeError> {
    let magic = r.array::<4>("magic")?;
    if magic != MAGIC {
        // `DecodeError::BadMagic` holds the DHT's two-byte magic, so the four-byte wire
        // magic is reported as an invalid value of the field `magic`.
        return Err(DecodeError::InvalidValue {
            field: "magic",
            reason: "not \"PSWP\" (50 53 57 50)",
        });
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(Handshake {
        flags: r.u8("flags")?,
        node_id: r.id("node_id")?,
        content_id: r.id("content_id")?,
        listen_port: r.u16("listen_port")?,
    })
}

/// Reads a `u8` length (at most `max`) and that many bytes of UTF-8.
fn read_text(
    r: &mut Reader<'_>,
    len_field: &'static str,
    field: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    let len = usize::from(r.u8(len_field)?);
    if len > max {
        return Err(DecodeError::LengthTooLarge {
            field: len_field,
            len,
            max,
        });
    }
    let bytes = r.take(len, field)?;
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidValue {
        field,
        reason: "not valid UTF-8",
    })?;
    Ok(text.to_owned())
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> Id {
        Id([b; 32])
    }

    fn enc(m: &Message) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v);
        v
    }

    /// Decodes a buffer that must hold exactly one valid frame.
    fn dec(bytes: &[u8]) -> Message {
        let (m, n) = decode_frame(bytes).unwrap().expect("complete frame");
        assert_eq!(n, bytes.len());
        m
    }

    fn err(bytes: &[u8]) -> DecodeError {
        decode_frame(bytes).expect_err("must not decode")
    }

    fn frame(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len() + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        v.push(t);
        v.extend_from_slice(body);
        v
    }

    fn samples() -> Vec<Message> {
        let mut bf = Bitfield::new(11);
        bf.set(0);
        bf.set(10);
        vec![
            Message::KeepAlive,
            Message::Handshake(Handshake::new(id(0x11), id(0x55), 4001)),
            Message::Metadata {
                name: "holiday.mp4".into(),
            },
            Message::ManifestRequest {
                offset: 0,
                length: MAX_MANIFEST_PIECE as u32,
            },
            Message::ManifestData {
                total_len: 16,
                offset: 8,
                data: vec![1; 8],
            },
            Message::Bitfield(bf),
            Message::Bitfield(Bitfield::new(0)),
            Message::Have(7),
            Message::Request(7),
            Message::Piece {
                chunk: 7,
                data: b"hello".to_vec(),
            },
            Message::Cancel(7),
            Message::Reject {
                chunk: 7,
                reason: 200,
            },
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Peers(vec![
                "192.0.2.1:4001".parse().unwrap(),
                "[2001:db8::1]:4002".parse().unwrap(),
            ]),
            Message::Peers(vec![]),
            Message::Error {
                code: error_code::BANNED,
                text: "bad chunk".into(),
            },
            Message::Probe(0x0102_0304_0506_0708),
            Message::Relay {
                node: Id([0x33; 32]),
                nonce: 9,
            },
            Message::RelayOk,
        ]
    }

    #[test]
    fn every_sample_round_trips() {
        for m in samples() {
            let bytes = enc(&m);
            assert_eq!(bytes.len(), m.encoded_len(), "{m:?}");
            assert_eq!(dec(&bytes), m);
            assert_eq!(frame_len_hint(&bytes), Ok(Some(bytes.len())));
        }
    }

    #[test]
    fn every_type_is_named_and_has_a_layout() {
        let named: Vec<u8> = (0..=255u8).filter(|&t| type_name(t) != "UNKNOWN").collect();
        let laid_out: Vec<u8> = (0..=255u8).filter(|&t| body_layout(t).is_some()).collect();
        assert_eq!(named, (0..=0x13).collect::<Vec<u8>>());
        assert_eq!(named, laid_out);
        let mut sampled: Vec<u8> = samples().iter().map(Message::type_byte).collect();
        sampled.dedup();
        assert_eq!(sampled, named);
    }

    #[test]
    fn largest_piece_fits_and_one_more_byte_does_not() {
        let m = Message::Piece {
            chunk: u32::MAX,
            data: vec![0xab; MAX_CHUNK_SIZE],
        };
        let bytes = enc(&m);
        assert_eq!(frame_len_hint(&bytes[..4]), Ok(Some(bytes.len())));
        assert_eq!(dec(&bytes), m);
        let mut over = bytes.clone();
        over.push(0);
        let len = u32::try_from(over.len() - 4).unwrap();
        over[..4].copy_from_slice(&len.to_be_bytes());
        let want = DecodeError::TooLarge {
            len: MAX_CHUNK_SIZE + 6,
            max: MAX_CHUNK_SIZE + 5,
        };
        // Refused from the 5-byte header alone, and the same for the whole frame.
        assert_eq!(decode_frame(&over[..5]), Err(want.clone()));
        assert_eq!(decode_frame(&over), Err(want));
    }

    #[test]
    fn piece_header_matches_encode() {
        let m = Message::Piece {
            chunk: 0x01020304,
            data: vec![9; 1000],
        };
        let bytes = enc(&m);
        assert_eq!(
            piece_header(0x01020304, 1000)[..],
            bytes[..PIECE_HEADER_LEN]
        );
        // An impossible size gives a header every receiver rejects, never a wrapped length.
        let h = piece_header(1, usize::MAX);
        assert!(matches!(
            frame_len_hint(&h),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn header_errors_need_only_the_header() {
        assert_eq!(
            decode_frame(&[0, 0, 0, 0]),
            Err(DecodeError::InvalidValue {
                field: "length",
                reason: "0, but every frame holds at least its type byte"
            })
        );
        assert_eq!(
            decode_frame(&[0, 0x10, 0, 0x11]),
            Err(DecodeError::TooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        // "GET " from an HTTP client reads as a length of 1.2 GB.
        assert!(matches!(
            decode_frame(b"GET / HTTP/1.1"),
            Err(DecodeError::TooLarge { .. })
        ));
        // The largest allowed length is only incomplete.
        assert_eq!(decode_frame(&[0, 0x10, 0, 0x10]), Ok(None));
        assert_eq!(
            frame_len_hint(&[0, 0x10, 0, 0x10]),
            Ok(Some(MAX_FRAME_LEN + 4))
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 9, 0x14]),
            Err(DecodeError::UnknownMessageType(0x14))
        );
        // A HAVE announcing a megabyte is refused before its body arrives.
        assert_eq!(
            decode_frame(&[0, 0x10, 0, 0, msg_type::HAVE]),
            Err(DecodeError::TrailingBytes((1 << 20) - 5))
        );
        assert_eq!(frame_len_hint(&[0, 0, 0]), Ok(None));
        assert_eq!(decode_frame(&[]), Ok(None));
    }

    #[test]
    fn typed_body_errors() {
        let mut hs = enc(&Message::Handshake(Handshake::new(id(1), id(2), 0)));
        hs[5] = b'X';
        assert!(matches!(
            err(&hs),
            DecodeError::InvalidValue { field: "magic", .. }
        ));
        let mut hs = enc(&Message::Handshake(Handshake::new(id(1), id(2), 0)));
        hs[9] = 2;
        assert_eq!(err(&hs), DecodeError::UnsupportedVersion(2));
        // A later version's longer handshake still reaches the version check...
        let mut v2 = hs[5..].to_vec();
        v2.extend_from_slice(&[0; 100]);
        assert_eq!(
            err(&frame(msg_type::HANDSHAKE, &v2)),
            DecodeError::UnsupportedVersion(2)
        );
        // ... while a version 1 handshake must be exactly 72 bytes.
        v2[4] = 1;
        assert_eq!(
            err(&frame(msg_type::HANDSHAKE, &v2)),
            DecodeError::TrailingBytes(100)
        );
        // Beyond MAX_HANDSHAKE_BODY, the header alone is refused.
        let len = u32::try_from(MAX_HANDSHAKE_BODY + 2).unwrap();
        let mut h = len.to_be_bytes().to_vec();
        h.push(msg_type::HANDSHAKE);
        assert_eq!(
            decode_frame(&h),
            Err(DecodeError::TooLarge {
                len: MAX_HANDSHAKE_BODY + 2,
                max: MAX_HANDSHAKE_BODY + 1
            })
        );
        // Reserved flags are kept, not rejected.
        hs[9] = 1;
        hs[10] = 0xff;
        assert!(matches!(
            dec(&hs),
            Message::Handshake(Handshake { flags: 0xff, .. })
        ));
        // A handshake one byte short.
        let short = frame(msg_type::HANDSHAKE, &hs[5..hs.len() - 1]);
        assert_eq!(
            err(&short),
            DecodeError::UnexpectedEnd {
                field: "listen_port",
                needed: 1
            }
        );
        assert_eq!(
            err(&frame(msg_type::HAVE, &[0, 0, 1])),
            DecodeError::UnexpectedEnd {
                field: "chunk",
                needed: 1
            }
        );
        assert_eq!(
            err(&frame(msg_type::CHOKE, &[0])),
            DecodeError::TrailingBytes(1)
        );
        assert_eq!(
            err(&frame(msg_type::METADATA, &[0])),
            DecodeError::InvalidValue {
                field: "name",
                reason: "empty: a file name has at least one byte"
            }
        );
        assert!(matches!(
            err(&frame(msg_type::METADATA, &[2, 0xc3, 0x28])),
            DecodeError::InvalidValue { field: "name", .. }
        ));
        assert_eq!(
            err(&frame(msg_type::METADATA, &[1, b'a', b'b'])),
            DecodeError::TrailingBytes(1)
        );
        assert!(matches!(
            err(&frame(
                msg_type::MANIFEST_REQUEST,
                &[0, 0, 0, 0, 0, 0, 0, 0]
            )),
            DecodeError::InvalidValue {
                field: "length",
                ..
            }
        ));
        assert_eq!(
            err(&frame(
                msg_type::MANIFEST_REQUEST,
                &[0, 0, 0, 0, 0, 4, 0, 1]
            )),
            DecodeError::LengthTooLarge {
                field: "length",
                len: MAX_MANIFEST_PIECE + 1,
                max: MAX_MANIFEST_PIECE
            }
        );
        assert!(matches!(
            err(&frame(
                msg_type::MANIFEST_DATA,
                &[2, 0, 0, 0x41, 0, 0, 0, 0, 1]
            )),
            DecodeError::LengthTooLarge {
                field: "total_len",
                ..
            }
        ));
        // offset 0xffffffff + 2 bytes wraps to 1 in u32 arithmetic: must still be refused.
        assert!(matches!(
            err(&frame(
                msg_type::MANIFEST_DATA,
                &[0, 0, 0, 100, 0xff, 0xff, 0xff, 0xff, 1, 2]
            )),
            DecodeError::InvalidValue {
                field: "offset",
                ..
            }
        ));
        assert!(matches!(
            err(&frame(
                msg_type::MANIFEST_DATA,
                &[0, 0, 0, 4, 0, 0, 0, 3, 1, 2]
            )),
            DecodeError::InvalidValue {
                field: "offset",
                ..
            }
        ));
        // Exactly at the end is fine.
        assert!(matches!(
            dec(&frame(
                msg_type::MANIFEST_DATA,
                &[0, 0, 0, 4, 0, 0, 0, 2, 1, 2]
            )),
            Message::ManifestData { .. }
        ));
        assert!(matches!(
            err(&frame(msg_type::MANIFEST_DATA, &[0, 0, 0, 4, 0, 0, 0, 0])),
            DecodeError::InvalidValue { field: "data", .. }
        ));
        assert!(matches!(
            err(&frame(msg_type::PIECE, &[0, 0, 0, 1])),
            DecodeError::InvalidValue { field: "data", .. }
        ));
        assert_eq!(
            err(&frame(msg_type::BITFIELD, &[0, 0x10, 0, 1])),
            DecodeError::LengthTooLarge {
                field: "chunk_count",
                len: MAX_CHUNKS + 1,
                max: MAX_CHUNKS
            }
        );
        assert!(matches!(
            err(&frame(msg_type::BITFIELD, &[0, 0, 0, 9, 0xff, 0x40])),
            DecodeError::InvalidValue { field: "bits", .. }
        ));
        assert_eq!(
            err(&frame(msg_type::BITFIELD, &[0, 0, 0, 9, 0xff])),
            DecodeError::UnexpectedEnd {
                field: "bits",
                needed: 1
            }
        );
        assert_eq!(
            err(&frame(msg_type::BITFIELD, &[0, 0, 0, 8, 0xff, 0])),
            DecodeError::TrailingBytes(1)
        );
        assert_eq!(
            err(&frame(msg_type::PEERS, &[51])),
            DecodeError::LengthTooLarge {
                field: "peer_count",
                len: 51,
                max: MAX_PEERS
            }
        );
        assert_eq!(
            err(&frame(msg_type::PEERS, &[2, 4, 192, 0, 2, 1, 0x0f, 0xa1])),
            DecodeError::UnexpectedEnd {
                field: "peer_count",
                needed: 7
            }
        );
        assert_eq!(
            err(&frame(msg_type::PEERS, &[1, 5, 192, 0, 2, 1, 0x0f, 0xa1])),
            DecodeError::BadAddressFamily(5)
        );
        let mut mapped = vec![1, 6];
        mapped.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        mapped.extend_from_slice(&[0x0f, 0xa1]);
        assert!(matches!(
            err(&frame(msg_type::PEERS, &mapped)),
            DecodeError::InvalidValue { field: "peer", .. }
        ));
        assert_eq!(
            err(&frame(msg_type::ERROR, &[0, 1, 201])),
            DecodeError::LengthTooLarge {
                field: "text_len",
                len: 201,
                max: MAX_ERROR_TEXT
            }
        );
        assert_eq!(
            err(&frame(msg_type::ERROR, &[0, 1, 3, b'a'])),
            DecodeError::UnexpectedEnd {
                field: "text",
                needed: 2
            }
        );
        assert!(matches!(
            err(&frame(msg_type::ERROR, &[0, 1, 1, 0x80])),
            DecodeError::InvalidValue { field: "text", .. }
        ));
    }

    #[test]
    fn encoding_cuts_only_where_documented() {
        let long = "é".repeat(200); // 400 bytes
        let m = Message::Error {
            code: 2,
            text: long.clone(),
        };
        let bytes = enc(&m);
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(
            dec(&bytes),
            Message::Error {
                code: 2,
                text: "é".repeat(100)
            }
        );
        let m = Message::Metadata { name: long };
        let bytes = enc(&m);
        assert_eq!(bytes.len(), m.encoded_len());
        // 255 is odd: the cut falls inside a two-byte char and backs off to 254 bytes.
        assert_eq!(
            dec(&bytes),
            Message::Metadata {
                name: "é".repeat(127)
            }
        );
        let addr: SocketAddr = "192.0.2.9:1".parse().unwrap();
        let m = Message::Peers(vec![addr; 60]);
        let bytes = enc(&m);
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(dec(&bytes), Message::Peers(vec![addr; MAX_PEERS]));
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:1".parse().unwrap();
        assert_eq!(
            dec(&enc(&Message::Peers(vec![mapped]))),
            Message::Peers(vec![addr])
        );
        // The largest PEERS (50 IPv6 addresses) is within its type's layout.
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let m = Message::Peers(vec![v6; MAX_PEERS]);
        assert_eq!(dec(&enc(&m)), m);
    }

    #[test]
    fn bitfield_is_total() {
        let mut b = Bitfield::new(10);
        assert_eq!((b.len(), b.as_bytes().len()), (10, 2));
        assert!(!b.is_empty() && !b.is_full());
        for i in [0, 3, 9, 10, 11, u32::MAX] {
            b.set(i);
        }
        assert!(b.get(0) && b.get(3) && b.get(9));
        assert!(!b.get(1) && !b.get(10) && !b.get(u32::MAX));
        assert_eq!(b.count_ones(), 3);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 3, 9]);
        assert_eq!(b.as_bytes(), &[0b1001_0000, 0b0100_0000]);
        for i in 0..10 {
            b.set(i);
        }
        assert!(b.is_full());
        assert_eq!(Bitfield::from_bytes(10, b.as_bytes().to_vec()), Ok(b));
        let e = Bitfield::new(0);
        assert!(e.is_empty() && e.is_full() && !e.get(0));
        assert_eq!(e.iter_ones().count(), 0);
        assert_eq!(Bitfield::new(u32::MAX).len(), MAX_CHUNKS as u32);
        let full = {
            let mut f = Bitfield::new(MAX_CHUNKS as u32);
            for i in 0..MAX_CHUNKS as u32 {
                f.set(i);
            }
            f
        };
        assert!(full.is_full());
        let m = Message::Bitfield(full);
        assert_eq!(dec(&enc(&m)), m);
        assert!(matches!(
            Bitfield::from_bytes(9, vec![0, 1]),
            Err(DecodeError::InvalidValue { .. })
        ));
    }

    /// Addresses in canonical form (IPv4-mapped IPv6 becomes IPv4), as they decode.
    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::from((std::net::Ipv4Addr::from(ip), p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| {
                let v6 = std::net::Ipv6Addr::from(ip);
                crate::proto::codec::canonical_addr(SocketAddr::from((v6, p)))
            }),
        ]
    }

    fn arb_bitfield() -> impl Strategy<Value = Bitfield> {
        (0u32..300, proptest::collection::vec(any::<u32>(), 0..40)).prop_map(|(len, ones)| {
            let mut b = Bitfield::new(len);
            for i in ones {
                b.set(i % len.max(1));
            }
            b
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::KeepAlive),
            (
                any::<u8>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<u16>()
            )
                .prop_map(|(flags, n, c, listen_port)| Message::Handshake(Handshake {
                    flags,
                    node_id: Id(n),
                    content_id: Id(c),
                    listen_port
                })),
            "[a-zA-Z0-9 ._é漢-]{1,80}".prop_map(|name| Message::Metadata { name }),
            (any::<u32>(), 1..=MAX_MANIFEST_PIECE as u32)
                .prop_map(|(offset, length)| Message::ManifestRequest { offset, length }),
            (
                0..=MAX_MANIFEST_LEN as u32,
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 1..300)
            )
                .prop_map(|(total, off, data)| {
                    // Place the data somewhere inside a manifest at least as long as it.
                    let total_len = total.max(data.len() as u32);
                    let room = total_len - data.len() as u32;
                    Message::ManifestData {
                        total_len,
                        offset: off % (room + 1),
                        data,
                    }
                }),
            arb_bitfield().prop_map(Message::Bitfield),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Request),
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 1..2000)
            )
                .prop_map(|(chunk, data)| Message::Piece { chunk, data }),
            any::<u32>().prop_map(Message::Cancel),
            (any::<u32>(), any::<u8>())
                .prop_map(|(chunk, reason)| Message::Reject { chunk, reason }),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            proptest::collection::vec(arb_addr(), 0..=MAX_PEERS).prop_map(Message::Peers),
            (any::<u16>(), "[a-zA-Z0-9 é]{0,60}")
                .prop_map(|(code, text)| Message::Error { code, text }),
            any::<u64>().prop_map(Message::Probe),
            (any::<[u8; 32]>(), any::<u64>())
                .prop_map(|(n, nonce)| Message::Relay { node: Id(n), nonce }),
            Just(Message::RelayOk),
        ]
    }

    /// What the reactor does: append each read to a buffer, decode every complete frame.
    fn feed_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Message>, DecodeError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some((m, n)) = decode_frame(&buf)? {
                out.push(m);
                buf.drain(..n);
            }
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_message()) {
            let mut bytes = Vec::new();
            msg.encode(&mut bytes);
            prop_assert_eq!(bytes.len(), msg.encoded_len());
            prop_assert_eq!(frame_len_hint(&bytes), Ok(Some(bytes.len())));
            // Bytes after the frame are left alone.
            bytes.extend_from_slice(&[0, 0, 0]);
            let (back, n) = decode_frame(&bytes).unwrap().unwrap();
            prop_assert_eq!(n, msg.encoded_len());
            prop_assert_eq!(back, msg);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = frame_len_hint(&bytes);
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn random_bodies_never_panic(t in 0u8..0x16, body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_frame(&frame(t, &body));
        }

        /// A mutated or cut frame never panics, and every prefix of any input gives either
        /// "incomplete" or exactly the error (or message) the whole input gives.
        #[test]
        fn mutated_frames_are_consistent(msg in arb_message(), pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut bytes = Vec::new();
            msg.encode(&mut bytes);
            let p = pos % bytes.len();
            bytes[p] = val;
            let c = cut % (bytes.len() + 1);
            let bytes = &bytes[..c];
            let whole = decode_frame(bytes);
            for k in 0..bytes.len() {
                let part = decode_frame(&bytes[..k]);
                match (&part, &whole) {
                    (Ok(None), _) => {}
                    (Err(e), Err(w)) => prop_assert_eq!(e, w),
                    (Ok(Some((_, n))), Ok(Some((_, m)))) => prop_assert_eq!(n, m),
                    _ => prop_assert!(false, "prefix {} gave {:?}, whole gave {:?}", k, part, whole),
                }
            }
        }

        #[test]
        fn valid_prefixes_are_incomplete(msg in arb_message()) {
            let mut bytes = Vec::new();
            msg.encode(&mut bytes);
            for k in 0..bytes.len() {
                prop_assert_eq!(decode_frame(&bytes[..k]), Ok(None));
            }
        }

        #[test]
        fn stream_split_anywhere_decodes_the_same(
            msgs in proptest::collection::vec(arb_message(), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                m.encode(&mut stream);
            }
            prop_assert_eq!(feed_in_pieces(&stream, &cuts), Ok(msgs.clone()));
            // One byte at a time, the worst case for a reactor.
            let every: Vec<usize> = (0..stream.len()).collect();
            prop_assert_eq!(feed_in_pieces(&stream, &every), Ok(msgs));
        }
    }
}
