//! `peershare decode --pcap`: the TCP sessions of a capture explained (secure.md): each
//! session's three Noise handshake messages field by field, then its records; with a key log
//! (`PEERSHARE_KEYLOG`, secure.md section 6) every record opened and the wire frames they
//! carry explained as `peershare decode` explains frames. Without the session's keys the
//! records are shown for what they are: ciphertext.
//!
//! Pure: the capture's bytes and the key log's text in, a [`CaptureReport`] out (its Display
//! is the text `decode` prints, its serde form the `--json` output). `decrypted.rs` writes the
//! decrypted capture from it.

use std::borrow::Cow;
use std::net::SocketAddr;

use serde::Serialize;

use super::{explain_as, Explanation, Field, Kind};
use crate::capture::{reassemble, Connection, Direction, Packet, Reassembled};
use crate::secure::{
    parse_keylog_line, Cipher, KeyLogEntry, RecordOpener, HELLO, LEN_PREFIX, MSG1_LEN, MSG2_LEN,
    MSG3_LEN, PAYLOAD_LEN, TAG_LEN,
};

/// What a capture holds, session by session.
#[derive(Debug, Serialize)]
pub struct CaptureReport {
    /// Packets in the capture.
    pub packets: usize,
    /// UDP datagrams (the DHT's: not encrypted, `peershare decode HEX` explains each).
    pub udp_datagrams: usize,
    /// Packets neither TCP nor UDP: (reason, first packet, count).
    pub skipped: Vec<(String, usize, usize)>,
    /// Key log lines read; None when no key log was given.
    pub keylog_entries: Option<usize>,
    /// The TCP connections, in capture order.
    pub sessions: Vec<SessionReport>,
}

/// What a TCP connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A secure session: msg1 from the dialer (secure.md section 2).
    Secure,
    /// Frames in clear before any session: PROBE or RELAY (secure.md section 5), or version 1.
    Plaintext,
    /// Neither (or no payload at all).
    Other,
}

/// Whether the session's keys were there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keys {
    /// Found in the key log by the initiator's ephemeral key.
    Found,
    /// A key log was given, without this session.
    NotInKeyLog,
    /// No key log given.
    NoKeyLog,
    /// Not a secure session, or no msg1 captured: nothing to look up.
    NotApplicable,
}

/// One TCP connection explained.
#[derive(Debug, Serialize)]
pub struct SessionReport {
    /// The connection's number in the capture (from 1).
    pub connection: usize,
    /// The dialer (the initiator of a secure session).
    pub initiator: SocketAddr,
    /// The acceptor.
    pub responder: SocketAddr,
    /// What it carries.
    pub kind: SessionKind,
    /// Whether its records could be opened.
    pub keys: Keys,
    /// The initiator's ephemeral public key (the key log's name for the session), in hex.
    pub ephemeral: Option<String>,
    /// The records' cipher, as the key log names it (a capture alone cannot tell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<&'static str>,
    /// The handshake messages, in the order sent.
    pub handshake: Vec<HandshakeMessage>,
    /// Initiator to responder, then responder to initiator.
    pub directions: Vec<DirectionReport>,
}

/// One Noise handshake message.
#[derive(Debug, Serialize)]
pub struct HandshakeMessage {
    /// `msg1`, `msg2` or `msg3`.
    pub name: &'static str,
    /// Sender.
    pub from: SocketAddr,
    /// The packet that completed it.
    pub packet: usize,
    /// The message's bytes (length prefix included), in hex.
    pub hex: String,
    /// Its fields (offsets in the sender's byte stream).
    pub fields: Vec<Field>,
}

/// One direction of a session after the handshake.
#[derive(Debug, Serialize)]
pub struct DirectionReport {
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// Bytes of this direction in the capture (handshake included).
    pub stream_len: usize,
    /// The records whole in the capture.
    pub records: Vec<RecordInfo>,
    /// The plaintext of the opened records (the wire stream), in hex in JSON.
    #[serde(serialize_with = "as_hex")]
    pub plaintext: Vec<u8>,
    /// The plaintext explained as wire frames (wire.md); None when nothing was opened.
    pub frames: Option<Explanation>,
    /// Why the direction's bytes stop being followed, if they do before its end.
    pub stopped: Option<String>,
}

/// One record (secure.md section 3).
#[derive(Clone, Debug, Serialize)]
pub struct RecordInfo {
    /// Its number in its direction: its nonce.
    pub number: u64,
    /// The packet that completed it.
    pub packet: usize,
    /// Offset of its length prefix in the direction's byte stream.
    pub offset: usize,
    /// Its length on the wire, prefix and tag included.
    pub len: usize,
    /// Where its plaintext starts in the opened stream, and how long it is (None: not opened).
    pub plain: Option<(usize, usize)>,
}

fn as_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// The key log entries of a key log file's text (other lines ignored, as secure.md says).
pub fn read_keylog(text: &str) -> Vec<KeyLogEntry> {
    text.lines().filter_map(parse_keylog_line).collect()
}

/// Explains the TCP sessions of a capture's packets; `keys` is None without a key log.
pub fn explain_capture(packets: &[Packet<'_>], keys: Option<&[KeyLogEntry]>) -> CaptureReport {
    explain_reassembled(&reassemble(packets), keys)
}

/// [`explain_capture`] from packets already reassembled.
pub fn explain_reassembled(r: &Reassembled, keys: Option<&[KeyLogEntry]>) -> CaptureReport {
    CaptureReport {
        packets: r.packets,
        udp_datagrams: r.datagrams.len(),
        skipped: r
            .skipped
            .iter()
            .map(|(why, (first, n))| (why.clone(), *first, *n))
            .collect(),
        keylog_entries: keys.map(<[_]>::len),
        sessions: r
            .connections
            .iter()
            .map(|c| explain_connection(c, keys))
            .collect(),
    }
}

/// Whether `s` starts with msg1: its length, 32 bytes of key, then HELLO.
fn starts_with_msg1(s: &[u8]) -> bool {
    let hello = LEN_PREFIX + 32..LEN_PREFIX + MSG1_LEN;
    s.get(..2) == Some(&(MSG1_LEN as u16).to_be_bytes()[..]) && s.get(hello) == Some(&HELLO[..])
}

fn explain_connection(c: &Connection, keys: Option<&[KeyLogEntry]>) -> SessionReport {
    let [d0, d1] = &c.dirs;
    // The initiator sends msg1; without one, the SYN's sender is the dialer.
    let flip = !starts_with_msg1(&d0.bytes) && starts_with_msg1(&d1.bytes);
    let (init, resp) = if flip { (d1, d0) } else { (d0, d1) };
    let (initiator, responder) = if flip {
        (c.server, c.client)
    } else {
        (c.client, c.server)
    };
    let mut s = SessionReport {
        connection: c.number,
        initiator,
        responder,
        kind: SessionKind::Other,
        keys: Keys::NotApplicable,
        ephemeral: None,
        cipher: None,
        handshake: Vec::new(),
        directions: Vec::new(),
    };
    if starts_with_msg1(&init.bytes) {
        s.kind = SessionKind::Secure;
        explain_secure(&mut s, init, resp, keys);
    } else if init.bytes.starts_with(&[0, 0]) || resp.bytes.starts_with(&[0, 0]) {
        // A u32 frame length under 64 KiB: wire frames in clear.
        s.kind = SessionKind::Plaintext;
        for (d, from, to) in [(init, initiator, responder), (resp, responder, initiator)] {
            s.directions.push(plain_direction(d, from, to));
        }
    } else {
        for (d, from, to) in [(init, initiator, responder), (resp, responder, initiator)] {
            let mut r = plain_direction(d, from, to);
            r.frames = None;
            r.plaintext.clear();
            s.directions.push(r);
        }
    }
    s
}

fn plain_direction(d: &Direction, from: SocketAddr, to: SocketAddr) -> DirectionReport {
    DirectionReport {
        from,
        to,
        stream_len: d.bytes.len(),
        records: Vec::new(),
        frames: (!d.bytes.is_empty()).then(|| frames_of(&d.bytes)),
        plaintext: d.bytes.clone(),
        stopped: gap_note(d),
    }
}

fn gap_note(d: &Direction) -> Option<String> {
    d.gap.map(|g| {
        format!("the capture lost a segment at byte {g} of this direction: nothing after it")
    })
}

/// The packet that made byte `end` (exclusive) of a direction available.
pub(super) fn packet_of(d: &Direction, end: usize) -> usize {
    d.marks
        .iter()
        .find(|m| m.end >= end)
        .map_or(0, |m| m.packet)
}

fn explain_secure(
    s: &mut SessionReport,
    init: &Direction,
    resp: &Direction,
    keys: Option<&[KeyLogEntry]>,
) {
    let eph: Option<[u8; 32]> = init
        .bytes
        .get(LEN_PREFIX..LEN_PREFIX + 32)
        .and_then(|e| e.try_into().ok());
    s.ephemeral = eph.map(hex::encode);
    let entry = match (keys, eph) {
        (None, _) => {
            s.keys = Keys::NoKeyLog;
            None
        }
        (Some(ks), Some(e)) => {
            let k = ks.iter().find(|k| k.ephemeral == e);
            s.keys = if k.is_some() {
                Keys::Found
            } else {
                Keys::NotInKeyLog
            };
            k
        }
        (Some(_), None) => None,
    };
    let msg1 = LEN_PREFIX + MSG1_LEN;
    let msg2 = LEN_PREFIX + MSG2_LEN;
    let msg3 = LEN_PREFIX + MSG3_LEN;
    let parts = [
        ("msg1", init, s.initiator, 0, MSG1_LEN),
        ("msg2", resp, s.responder, 0, MSG2_LEN),
        ("msg3", init, s.initiator, msg1, MSG3_LEN),
    ];
    for (name, d, from, at, len) in parts {
        let Some(bytes) = d.bytes.get(at..at + LEN_PREFIX + len) else {
            continue;
        };
        if bytes.get(..2) != Some(&(len as u16).to_be_bytes()[..]) {
            continue;
        }
        s.handshake.push(HandshakeMessage {
            name,
            from,
            packet: packet_of(d, at + LEN_PREFIX + len),
            hex: hex::encode(bytes),
            fields: handshake_fields(name, at, bytes),
        });
    }
    s.cipher = entry.map(|k| k.cipher.name());
    let (i2r, r2i) = match entry {
        Some(k) => (
            Some((k.cipher, &*k.initiator_to_responder)),
            Some((k.cipher, &*k.responder_to_initiator)),
        ),
        None => (None, None),
    };
    s.directions
        .push(records(init, msg1 + msg3, i2r, s.initiator, s.responder));
    s.directions
        .push(records(resp, msg2, r2i, s.responder, s.initiator));
}

/// A handshake message's fields, at offset `at` of its sender's stream.
fn handshake_fields(name: &str, at: usize, bytes: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut off = at;
    let mut push = |len: usize, fname: &'static str, value: String, meaning: &'static str| {
        fields.push(Field {
            offset: off,
            len,
            name: Cow::Borrowed(fname),
            value,
            meaning: Cow::Borrowed(meaning),
            children: Vec::new(),
            error: false,
        });
        off += len;
    };
    let part = |from: usize, len: usize| bytes.get(from..from + len).unwrap_or_default();
    let len = bytes.len().saturating_sub(LEN_PREFIX);
    push(
        2,
        "length",
        len.to_string(),
        "bytes of the Noise message that follow (a fixed size per message)",
    );
    let sealed = |b: &[u8]| {
        format!(
            "{} byte(s): {}…",
            b.len(),
            hex::encode(b.get(..8).unwrap_or(b))
        )
    };
    match name {
        "msg1" => {
            push(32, "e", hex::encode(part(2, 32)),
                "the initiator's ephemeral X25519 public key, in clear; the key log names the session by it");
            push(
                5,
                "HELLO",
                format!(
                    "\"PSWP\", version {}",
                    part(38, 1).first().copied().unwrap_or(0)
                ),
                "protocol and version, in clear: a peer of another version stops here",
            );
        }
        _ => {
            let (at, s_means, proof_means) = if name == "msg2" {
                push(
                    32,
                    "e",
                    hex::encode(part(2, 32)),
                    "the responder's ephemeral public key, in clear; with the initiator's, the ee DH",
                );
                (
                    34,
                    "the responder's Noise static key and its tag, under the handshake key (ee)",
                    "version, flags (AES-GCM offered?), Ed25519 identity key and signature over s, and the tag (key after es)",
                )
            } else {
                (
                    2,
                    "the initiator's Noise static key and its tag, under the handshake key",
                    "the initiator's version, flags, identity key and signature, and the tag (key after se)",
                )
            };
            let s_len = 32 + TAG_LEN;
            push(s_len, "s (encrypted)", sealed(part(at, s_len)), s_means);
            let p_len = PAYLOAD_LEN + TAG_LEN;
            let proof = sealed(part(at + s_len, p_len));
            push(p_len, "identity proof (encrypted)", proof, proof_means);
        }
    }
    fields
}

/// The records of a direction from `start`, opened with `key` (and the cipher the key log
/// names) when there is one.
fn records(
    d: &Direction,
    start: usize,
    key: Option<(Cipher, &[u8; 32])>,
    from: SocketAddr,
    to: SocketAddr,
) -> DirectionReport {
    let mut r = DirectionReport {
        from,
        to,
        stream_len: d.bytes.len(),
        records: Vec::new(),
        plaintext: Vec::new(),
        frames: None,
        stopped: None,
    };
    let mut opener = key.map(|(cipher, k)| RecordOpener::new(cipher, k));
    let mut at = start;
    let mut number = 0u64;
    while let Some(prefix) = d.bytes.get(at..at + LEN_PREFIX) {
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let end = at + LEN_PREFIX + len;
        let Some(body) = d.bytes.get(at + LEN_PREFIX..end) else {
            r.stopped = Some(format!(
                "the capture ends inside record {number} ({} of its {} bytes)",
                d.bytes.len() - at,
                LEN_PREFIX + len
            ));
            break;
        };
        if len < TAG_LEN {
            r.stopped = Some(format!(
                "record {number} is {len} bytes long, shorter than its tag: not a record"
            ));
            break;
        }
        let mut info = RecordInfo {
            number,
            packet: packet_of(d, end),
            offset: at,
            len: LEN_PREFIX + len,
            plain: None,
        };
        if let Some(o) = opener.as_mut() {
            match o.open(body) {
                Some(p) => {
                    info.plain = Some((r.plaintext.len(), p.len()));
                    r.plaintext.extend_from_slice(&p);
                }
                None => {
                    r.stopped = Some(format!(
                        "record {number} does not open with the logged key (altered, or not this session's key): the rest stays ciphertext"
                    ));
                    opener = None;
                }
            }
        }
        r.records.push(info);
        at = end;
        number += 1;
    }
    if r.stopped.is_none() {
        r.stopped = gap_note(d);
    }
    if key.is_some() && !r.plaintext.is_empty() {
        r.frames = Some(frames_of(&r.plaintext));
    }
    r
}

/// A TCP stream explained as wire frames (the kind is known here, not chosen by a user).
fn frames_of(stream: &[u8]) -> Explanation {
    let mut ex = explain_as(stream, Kind::Wire);
    ex.forced = false;
    ex
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
