//! The layout of wire frames (spec: `protocol-spec/wire.md`): a stream of frames as the
//! reactor reads them, each as [`frame_len_hint`] and `decode_body` check it, and a bare
//! HANDSHAKE body.

use super::line::{line, wire_line};
use super::walk::{
    ascii_or_hex, at_most, be, bits_value, data_value, invalid, stop, Stop, Walk, Walker,
};
use super::{
    finish_message, message, not_decoded, Explanation, Field, Incomplete, Status, MAX_FRAMES_SHOWN,
};
use crate::content::manifest;
use crate::id::ID_LEN;
use crate::proto::codec::DecodeError;
use crate::proto::wire::{self, decode_frame, frame_len_hint, FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Explains a stream of frames, in order, as the reactor's loop reads them: up to the end, an
/// error (after which nothing can be framed), or a frame the input ends inside of.
pub(super) fn explain_wire(input: &[u8], ex: &mut Explanation) {
    let mut pos = 0;
    // Valid frames past MAX_FRAMES_SHOWN: where they start, how many.
    let mut folded: Option<(usize, usize)> = None;
    loop {
        let rest = input.get(pos..).unwrap_or_default();
        let verdict = decode_frame(rest);
        ex.frames += 1;
        if ex.messages.len() >= MAX_FRAMES_SHOWN {
            if let Ok(Some((_, n))) = verdict {
                folded.get_or_insert((pos, 0)).1 += 1;
                pos += n;
                if pos >= input.len() {
                    return push_folded(ex, folded, pos);
                }
                continue;
            }
            // The last frame, malformed or cut short, is explained in full.
            push_folded(ex, folded.take(), pos);
        }
        let FrameWalk { w, t, stop } = walk_frame(rest, pos);
        let name = match t.map(wire::type_name) {
            None | Some("UNKNOWN") => "?",
            Some(name) => name,
        };
        match verdict {
            Ok(Some((msg, n))) => {
                ex.layout_agrees &= stop.is_none() && w.pos() == pos + n;
                let summary = line(|s| wire_line(s, &msg));
                let mut m = message(name, Status::Valid, summary, Vec::new(), n);
                (m.offset, m.fields) = (pos, w.fields);
                ex.messages.push(m);
                pos += n;
                if pos >= input.len() {
                    return;
                }
            }
            Ok(None) => {
                // Not an error on a stream: the rest of the frame has not arrived yet.
                let (needed, at_least) = match frame_len_hint(rest) {
                    Ok(Some(total)) => (total.saturating_sub(rest.len()), false),
                    _ => (wire::LENGTH_PREFIX_LEN.saturating_sub(rest.len()), true),
                };
                let (offset, have) = (pos, rest.len());
                ex.incomplete = Some(Incomplete {
                    offset,
                    have,
                    needed,
                    at_least,
                });
                let more = if at_least { "at least " } else { "" };
                let summary = format!("incomplete: needs {more}{needed} more byte(s)");
                let mut m = message(name, Status::Incomplete, summary, Vec::new(), have);
                let end = w.pos();
                (m.offset, m.fields) = (pos, w.fields);
                if end < input.len() {
                    // The walk met a bad value the decoder has not judged yet (it waits
                    // for the whole frame): the bytes after it are not interpreted.
                    not_decoded(&mut m.fields, end, input.len());
                }
                ex.messages.push(m);
                return;
            }
            Err(e) => {
                let mut notes = Vec::new();
                // Another protocol on the port (an HTTP "GET ") fails at the length: say so.
                let head = rest.get(..wire::LENGTH_PREFIX_LEN).unwrap_or_default();
                if head.len() == 4 && head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                    let text = String::from_utf8_lossy(head);
                    notes.push(format!(
                        "the length bytes read as text, {text:?}: another protocol?"
                    ));
                }
                let summary = format!("malformed: {e}");
                let mut m = message(name, Status::Malformed, summary, notes, rest.len());
                m.offset = pos;
                finish_message(ex, Err(e), stop.map_or(Ok(()), Err), w, m);
                return;
            }
        }
    }
}

/// One row for the valid frames folded past [`MAX_FRAMES_SHOWN`], ending at `end`.
fn push_folded(ex: &mut Explanation, folded: Option<(usize, usize)>, end: usize) {
    let Some((start, n)) = folded else { return };
    let summary = format!("{n} more valid frames, not shown one by one");
    let mut m = message("…", Status::Valid, summary, Vec::new(), end - start);
    m.offset = start;
    m.fields.push(Field {
        offset: start,
        len: end - start,
        name: "(frames not shown)".into(),
        value: format!("{n} frames"),
        meaning: format!("decoded and valid; only the first {MAX_FRAMES_SHOWN} are shown").into(),
        children: Vec::new(),
        error: false,
    });
    ex.messages.push(m);
}

/// The layout of one frame at the start of `rest` (offset `base` in the input): a walker
/// holding its fields, header included, and where it stopped.
struct FrameWalk<'a> {
    w: Walker<'a>,
    t: Option<u8>,
    stop: Option<Stop>,
}

fn walk_frame(rest: &[u8], base: usize) -> FrameWalk<'_> {
    let mut h = Walker::new(rest, base, "input");
    let header = (|| -> Walk<(u64, u8)> {
        let (_, length) = h.num(4, "length", "bytes that follow: the type byte and the body")?;
        let (toff, t) = h.take(1, "type", "type")?;
        let t = t.first().copied().unwrap_or(0);
        h.push(toff, 1, "type", wire_type_value(t), wire_type_meaning(t));
        Ok((length, t))
    })();
    let t = rest.get(wire::LENGTH_PREFIX_LEN).copied();
    let stop = match (frame_len_hint(rest), header) {
        // The header checks are the codec's own (`frame_len_hint`); they are located here.
        (Err(e), _) => Some(header_error(e, rest, base)),
        // Fewer than 5 bytes: the frame is incomplete (and the decoder says so).
        (Ok(_), Err(s)) => Some(s),
        (Ok(_), Ok((length, t))) => {
            let total = usize::try_from(length)
                .unwrap_or(usize::MAX)
                .saturating_add(4);
            let body = rest
                .get(FRAME_HEADER_LEN..total.min(rest.len()))
                .unwrap_or_default();
            // In an incomplete frame it is the input that ends early, not the frame.
            let unit = if rest.len() >= total {
                "frame"
            } else {
                "input"
            };
            let mut w = Walker::new(body, base + FRAME_HEADER_LEN, unit);
            w.fields = std::mem::take(&mut h.fields);
            let stop = walk_body(&mut w, t, length).err();
            return FrameWalk {
                w,
                t: Some(t),
                stop,
            };
        }
    };
    // Nothing of the body was read: the header's walker is the frame's.
    FrameWalk { w: h, t, stop }
}

/// Locates an error of [`frame_len_hint`]: the length field, or the type byte.
fn header_error(e: DecodeError, rest: &[u8], base: usize) -> Stop {
    let length = rest.get(..4).map_or(0, be);
    let t = rest.get(4).map_or("this type", |&t| wire::type_name(t));
    let (offset, field, expected, found) = match &e {
        DecodeError::UnknownMessageType(t) => (
            base + 4,
            "type",
            "a defined type, 0x00 to 0x10".into(),
            format!("0x{t:02x}"),
        ),
        DecodeError::TooLarge { max, .. } if *max == MAX_FRAME_LEN => {
            let exp = format!("a length of at most {MAX_FRAME_LEN} (MAX_FRAME_LEN)");
            (base, "length", exp, length.to_string())
        }
        DecodeError::TooLarge { max, .. } => (
            base,
            "length",
            format!("a length of at most {max} for {t}"),
            length.to_string(),
        ),
        DecodeError::TrailingBytes(n) => {
            let exact = length.saturating_sub(u64::try_from(*n).unwrap_or(u64::MAX));
            let exp = format!("a length of exactly {exact} for {t} (a fixed layout)");
            (base, "length", exp, format!("{length}: {n} byte(s) more"))
        }
        _ => (
            base,
            "length",
            format!("1 to {MAX_FRAME_LEN}: a frame holds at least its type"),
            length.to_string(),
        ),
    };
    Stop {
        err: e,
        offset,
        field: field.into(),
        expected,
        found,
    }
}

/// The layout of `decode_body` in `src/proto/wire/decode.rs`; `length` is the frame's length field
/// (the walker holds less of the body when the frame is incomplete).
fn walk_body(w: &mut Walker<'_>, t: u8, length: u64) -> Walk<()> {
    use wire::msg_type::*;
    let frame = w.base.saturating_sub(FRAME_HEADER_LEN);
    match t {
        KEEPALIVE | CHOKE | UNCHOKE | INTERESTED | NOT_INTERESTED => {}
        HANDSHAKE => walk_handshake(w)?,
        METADATA => {
            let m = "the file name as the sharer called it: a hint, sanitized before use";
            let (off, len) = w.text("name_len", "name", wire::MAX_NAME_LEN, m)?;
            if len == 0 {
                let reason = "empty: a file name has at least one byte";
                return Err(invalid(
                    "name",
                    reason,
                    off,
                    "1 to 255 bytes",
                    "name_len 0".into(),
                ));
            }
        }
        MANIFEST_REQUEST => {
            w.num(4, "offset", "first byte of the manifest wanted")?;
            let (off, len) = w.num(4, "length", "bytes of the manifest wanted, 1 to 262144")?;
            if len == 0 {
                let reason = "0: a manifest request asks for at least one byte";
                return Err(invalid("length", reason, off, "1 to 262144", "0".into()));
            }
            at_most("length", off, len, wire::MAX_MANIFEST_PIECE)?;
        }
        MANIFEST_DATA => {
            let (toff, total) = w.num(4, "total_len", "size of the whole manifest in bytes")?;
            let total = at_most("total_len", toff, total, wire::MAX_MANIFEST_LEN)?;
            let (ooff, offset) = w.num(4, "offset", "position of the data in the manifest")?;
            let (doff, data) = w.take(w.r.remaining(), "data", "data")?;
            if data.is_empty() {
                let reason = "empty: manifest data carries at least one byte";
                let found = format!("length {length}: no data");
                return Err(invalid(
                    "data",
                    reason,
                    frame,
                    "a length of 10 or more",
                    found,
                ));
            }
            let m = if offset == 0 && data.starts_with(&manifest::MAGIC) {
                "the first manifest bytes (a whole manifest decodes with --as manifest)"
            } else {
                "manifest bytes [offset, offset + n): the rest of the frame"
            };
            w.push(doff, data.len(), "data", data_value(data), m);
            let end = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(data.len()));
            if end.is_none_or(|end| end > total) {
                let reason = "offset + data length is beyond total_len";
                let exp = format!("offset + {} data bytes <= total_len {total}", data.len());
                let found = format!("{offset} + {}", data.len());
                return Err(invalid("offset", reason, ooff, &exp, found));
            }
        }
        BITFIELD => {
            let m = "chunks of the content; one bit each follows";
            let (coff, count) = w.num(4, "chunk_count", m)?;
            let count = at_most("chunk_count", coff, count, wire::MAX_CHUNKS)?;
            let (boff, bits) = w.take(count.div_ceil(8), "bits", "bits")?;
            let m = "bit i = chunk i, from the top bit of byte 0; set = the sender has it";
            if !bits.is_empty() {
                w.push(boff, bits.len(), "bits", bits_value(bits, count), m);
            }
            let used = u32::try_from(count % 8).unwrap_or(0);
            let spare = 0xffu8.checked_shr(used).unwrap_or(0);
            let last = bits.last().copied().unwrap_or(0);
            if used != 0 && last & spare != 0 {
                let reason = "a spare bit after the last chunk is set";
                let exp = format!(
                    "the {} spare bit(s) after chunk {} to be 0",
                    8 - used,
                    count - 1
                );
                let off = boff + bits.len() - 1;
                return Err(invalid(
                    "bits",
                    reason,
                    off,
                    &exp,
                    format!("last byte 0x{last:02x}"),
                ));
            }
        }
        HAVE => chunk(w, "a chunk the sender has just verified")?,
        REQUEST => chunk(w, "the chunk wanted, whole")?,
        CANCEL => chunk(w, "a chunk requested earlier that is no longer wanted")?,
        PIECE => {
            chunk(w, "the chunk's index")?;
            let (doff, data) = w.take(w.r.remaining(), "data", "data")?;
            if data.is_empty() {
                let reason = "empty: every chunk has at least one byte";
                let found = format!("length {length}: no data");
                return Err(invalid(
                    "data",
                    reason,
                    frame,
                    "a length of 6 or more",
                    found,
                ));
            }
            let m = "the whole chunk, checked against its SHA-256 in the manifest";
            w.push(doff, data.len(), "data", data_value(data), m);
        }
        REJECT => {
            chunk(w, "the chunk requested")?;
            w.int(1, "reason", "reason", "why the request is refused", |r| {
                format!(
                    "{r} {}",
                    wire::reject_reason_name(u8::try_from(r).unwrap_or(0))
                )
            })?;
        }
        PEERS => {
            let count = "number of peers (address and node ID) that follow (at most 50)";
            let n = w.count("peer_count", wire::MAX_PEERS, 7 + ID_LEN, count)?;
            let m = "other peers of this content the sender has handshaken with";
            w.list(n, "peers", m, "peer", |w, i| {
                let m = "a peer's address and the node ID its secure session proved";
                w.group(format!("peer {}", i + 1), m, |w| {
                    let a = w.address("peer", "address", "the peer's IP and listen port")?;
                    let (off, b) = w.take(ID_LEN, "peer_id", "peer_id")?;
                    let id = hex::encode(b);
                    let value = format!("{a}, node {}…", id.get(..8).unwrap_or_default());
                    let m = "the node ID a dial to that address expects (secure.md)";
                    w.push(off, ID_LEN, "peer_id", id, m);
                    Ok(((), value))
                })
            })?;
        }
        ERROR => {
            w.int(
                2,
                "error_code",
                "error_code",
                "why the sender closes the connection",
                |c| {
                    format!(
                        "{c} {}",
                        wire::error_code_name(u16::try_from(c).unwrap_or(0))
                    )
                },
            )?;
            let m = "for people (logs): programs act on the code";
            w.text("text_len", "text", wire::MAX_ERROR_TEXT, m)?;
        }
        PROBE => {
            let m = "the nonce of the DIALBACK this connection answers (nat.md)";
            w.int(8, "nonce", "nonce", m, |x| format!("0x{x:016x}"))?;
        }
        RELAY => {
            w.id(
                "node_id",
                "opening: the node to relay to; joining: the sender itself",
            )?;
            let m = "the circuit's number, chosen by the downloader";
            w.int(8, "nonce", "nonce", m, |x| format!("0x{x:016x}"))?;
        }
        RELAY_OK => {}
        other => {
            let found = format!("0x{other:02x}");
            return Err(stop(
                DecodeError::UnknownMessageType(other),
                frame + 4,
                "a type",
                found,
            ));
        }
    }
    w.finish()
}

fn chunk(w: &mut Walker<'_>, meaning: &'static str) -> Walk<()> {
    w.num(4, "chunk", meaning).map(drop)
}

/// The HANDSHAKE body (wire.md, section 4.2), as `read_handshake` reads it.
fn walk_handshake(w: &mut Walker<'_>) -> Walk<()> {
    let (off, magic) = w.take(4, "magic", "magic")?;
    w.push(
        off,
        4,
        "magic",
        ascii_or_hex(magic),
        "\"PSWP\": PeerShare Wire Protocol",
    );
    if magic != wire::MAGIC {
        let reason = "not \"PSWP\" (50 53 57 50)";
        return Err(invalid(
            "magic",
            reason,
            off,
            "50 53 57 50 (\"PSWP\")",
            hex::encode(magic),
        ));
    }
    let (voff, v) = w.num(
        1,
        "version",
        "the HANDSHAKE frame's layout: 1, the only one defined (the protocol's version is the secure session's HELLO: secure.md section 4)",
    )?;
    if v != u64::from(wire::VERSION) {
        let v = u8::try_from(v).unwrap_or(u8::MAX);
        return Err(stop(DecodeError::UnsupportedVersion(v), voff, "1", v));
    }
    w.int(
        1,
        "flags",
        "flags",
        "reserved: sent as 0, ignored",
        |f| match f {
            0 => "0x00".into(),
            f => format!("0x{f:02x} (reserved bits set: ignored)"),
        },
    )?;
    w.id(
        "node_id",
        "the sender's node ID (its DHT ID): the one its secure session's handshake proved",
    )?;
    w.id(
        "content_id",
        "the content this connection is about: SHA-256 of its manifest",
    )?;
    let m = "the TCP port the sender accepts connections on; 0 = none";
    w.int(2, "listen_port", "listen_port", m, |p| match p {
        0 => "0 (accepts no connections)".into(),
        p => p.to_string(),
    })?;
    Ok(())
}

fn wire_type_value(t: u8) -> String {
    match wire::type_name(t) {
        "UNKNOWN" => format!("0x{t:02x} (undefined)"),
        name => format!("0x{t:02x} {name}"),
    }
}

fn wire_type_meaning(t: u8) -> &'static str {
    use wire::msg_type::*;
    match t {
        KEEPALIVE => "nothing to say; the connection is alive",
        HANDSHAKE => "who I am, which content this connection is about",
        METADATA => "the file name",
        MANIFEST_REQUEST => "send me part of the manifest",
        MANIFEST_DATA => "part of the manifest",
        BITFIELD => "the chunks I have",
        HAVE => "I have just verified this chunk",
        REQUEST => "send me this chunk",
        PIECE => "a whole chunk",
        CANCEL => "I no longer want this chunk",
        REJECT => "I will not send you this chunk, and why",
        CHOKE => "I will not serve your requests",
        UNCHOKE => "I will serve your requests",
        INTERESTED => "you have chunks I want",
        NOT_INTERESTED => "you have nothing I want",
        PEERS => "other peers of this content",
        ERROR => "why I am closing the connection",
        PROBE => "you asked me to dial back: you are reachable (nat.md)",
        RELAY => "open or join a relayed circuit at this rendezvous (nat.md)",
        RELAY_OK => "the circuit is up: what follows comes from the other end",
        _ => "not a defined message type",
    }
}

// ---------------------------------------------------------------------------------------
// A bare HANDSHAKE body.

/// Decodes a HANDSHAKE body with the real frame decoder, by putting a frame header on it.
pub(super) fn decode_bare_handshake(body: &[u8]) -> Result<wire::Message, DecodeError> {
    let len = body.len().saturating_add(1);
    let too_large = DecodeError::TooLarge {
        len,
        max: wire::MAX_HANDSHAKE_BODY + 1,
    };
    // What `decode_frame` says from the header alone, without building a frame that big.
    let length = match u32::try_from(len) {
        Ok(l) if body.len() <= wire::MAX_HANDSHAKE_BODY => l,
        _ => return Err(too_large),
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.push(wire::msg_type::HANDSHAKE);
    frame.extend_from_slice(body);
    decode_frame(&frame)?.map(|(m, _)| m).ok_or(too_large)
}

/// Explains a bare HANDSHAKE body (one that starts with "PSWP").
pub(super) fn explain_handshake(input: &[u8], ex: &mut Explanation) {
    let verdict = decode_bare_handshake(input);
    let mut w = Walker::new(input, 0, "body");
    let walk = if input.len() > wire::MAX_HANDSHAKE_BODY {
        let (len, max) = (input.len() + 1, wire::MAX_HANDSHAKE_BODY + 1);
        let exp = format!("a body of at most {} bytes (72 in version 1)", max - 1);
        let mut s = stop(DecodeError::TooLarge { len, max }, 0, exp, input.len());
        s.field = "(whole body)".into();
        Err(s)
    } else {
        walk_handshake(&mut w).and_then(|()| w.finish())
    };
    let (status, summary) = match &verdict {
        Ok(m) => (Status::Valid, line(|s| wire_line(s, m))),
        Err(e) => (Status::Malformed, format!("malformed: {e}")),
    };
    let notes = vec!["a HANDSHAKE body without its 5-byte frame header (length, type 0x01)".into()];
    let m = message("HANDSHAKE", status, summary, notes, input.len());
    finish_message(ex, verdict.map(drop), walk, w, m);
}
