//! Encoding: [`Message::encode`] appends one complete frame; [`piece_header`] is the header
//! of a PIECE whose data is written from the sender's own buffer.

use super::codes::msg_type;
use super::{Message, FRAME_HEADER_LEN, HANDSHAKE_BODY_LEN, LENGTH_PREFIX_LEN, MAGIC};
use super::{MAX_ERROR_TEXT, MAX_NAME_LEN, MAX_PEERS, PIECE_HEADER_LEN, VERSION};
use crate::id::ID_LEN;
use crate::proto::codec::{put_socket_addr, socket_addr_len};

impl Message {
    /// Appends this message as one complete frame.
    ///
    /// Encoding cannot fail and cuts only where documented: a METADATA name to [`MAX_NAME_LEN`]
    /// bytes and an ERROR text to [`MAX_ERROR_TEXT`] bytes (both on a char boundary), a PEERS
    /// list to its first [`MAX_PEERS`] entries. IPv4-mapped IPv6 addresses are written as
    /// IPv4. Everything else is written as given, even when a receiver will reject it (an empty
    /// METADATA name, a PIECE over [`MAX_CHUNK_SIZE`](super::MAX_CHUNK_SIZE), MANIFEST_DATA
    /// whose range exceeds `total_len`): a sender bug then shows up as a loud decode error at
    /// the peer instead of as silently altered data.
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
                // At most MAX_PEERS (50) entries, so the count fits in its byte.
                out.push(u8::try_from(peers.len()).unwrap_or(u8::MAX));
                for p in peers {
                    put_socket_addr(out, &p.addr);
                    out.extend_from_slice(&p.node_id.0);
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
                1 + peers
                    .iter()
                    .map(|p| socket_addr_len(&p.addr) + ID_LEN)
                    .sum::<usize>()
            }
            Message::Error { text, .. } => 3 + truncate_utf8(text, MAX_ERROR_TEXT).len(),
        }
    }
}

/// The first [`PIECE_HEADER_LEN`] (9) bytes of a PIECE frame carrying `data_len` bytes of chunk
/// `chunk`: `length`, type, chunk index. A sender writes this header and then the chunk data
/// from its own buffer (a vectored write), without copying the chunk into a frame. `data_len`
/// must be 1 to [`MAX_CHUNK_SIZE`](super::MAX_CHUNK_SIZE); for a larger value the header
/// announces a frame every receiver rejects (never a wrapped-around length).
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
