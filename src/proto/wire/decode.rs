//! Decoding, incremental and total: [`frame_len_hint`] and [`decode_frame`] (the contract
//! with the reactor is in the module docs of [`super`]).

use super::bitfield::{bitfield_bytes, to_usize};
use super::codes::msg_type;
use super::{Bitfield, Handshake, Message, LENGTH_PREFIX_LEN, MAGIC, MAX_CHUNKS, MAX_CHUNK_SIZE};
use super::{PexPeer, MAX_MANIFEST_PIECE, MAX_NAME_LEN, MAX_PEERS, VERSION};
use super::{MAX_ERROR_TEXT, MAX_FRAME_LEN, MAX_HANDSHAKE_BODY, MAX_MANIFEST_LEN};
use crate::id::ID_LEN;
use crate::proto::codec::{DecodeError, Reader};

/// Largest PEERS entry: an address of family 6 (1 + 16 + 2 bytes) and a node ID.
const MAX_PEER_ENTRY_LEN: usize = 19 + ID_LEN;
/// Smallest PEERS entry: an address of family 4 (1 + 4 + 2 bytes) and a node ID.
const MIN_PEER_ENTRY_LEN: usize = 7 + ID_LEN;

/// How long a type's body may be.
#[derive(Clone, Copy, Debug)]
pub(super) enum BodyLayout {
    /// Exactly this many bytes.
    Exact(usize),
    /// Any size up to this many bytes (the body's own fields say how much is used).
    AtMost(usize),
}

/// The body layout of each defined type; `None` for an undefined type.
pub(super) fn body_layout(t: u8) -> Option<BodyLayout> {
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
        msg_type::PEERS => AtMost(1 + MAX_PEERS * MAX_PEER_ENTRY_LEN),
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
            // Each entry is at least 39 bytes (an IPv4 address and an ID): a count that cannot
            // fit is refused before the vector is sized by it.
            let need = n * MIN_PEER_ENTRY_LEN;
            if need > r.remaining() {
                return Err(DecodeError::UnexpectedEnd {
                    field: "peer_count",
                    needed: need - r.remaining(),
                });
            }
            let mut peers = Vec::with_capacity(n);
            for _ in 0..n {
                let addr = r.socket_addr("peer")?;
                let node_id = r.id("peer_id")?;
                peers.push(PexPeer { addr, node_id });
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
