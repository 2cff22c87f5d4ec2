//! walkthrough.bytes read back: every message rebuilt from its line (stand-ins included) and
//! explained by today's decoder. Datagrams and frames go through `explain_as`; the handshake
//! messages and records of each TCP connection are put back into their two byte streams and
//! go through `explain_reassembled`, the decoder of `peershare decode --pcap`, with the
//! connection's key log line, which must open every record into exactly the frames listed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use peershare::capture::{Connection, Direction, Mark, Reassembled};
use peershare::explain::{explain_as, explain_reassembled, Keys, Kind, SessionKind};
use peershare::secure::{parse_keylog_line, Cipher, KeyLogEntry, TAG_LEN};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fmt::{file_content, noise_explanation, record_explanation};

/// What a line of walkthrough.bytes is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// One UDP datagram.
    Dht,
    /// One Noise handshake message, with its length.
    Noise,
    /// One record as on the wire.
    Record,
    /// One wire frame opened from the records.
    Wire,
}

impl Msg {
    /// How the page's packet line names where the message travels (formats.py's LABEL).
    pub fn label(self) -> &'static str {
        match self {
            Msg::Dht => "UDP",
            Msg::Noise | Msg::Record => "TCP",
            Msg::Wire => "decrypted",
        }
    }
}

/// One message of walkthrough.bytes.
pub struct Captured {
    pub n: usize,
    pub kind: Msg,
    /// TCP messages: the connection, and 0 from its initiator, 1 from its responder.
    pub conn: usize,
    pub dir: usize,
    /// Records: the number the line gives.
    pub number: u64,
    pub bytes: Vec<u8>,
    /// What the decoder says now: one message as `peershare decode --json` gives it (name,
    /// summary, notes, fields); for a handshake message or a record, the explanation of
    /// formats.py made from the capture decoder's report.
    pub json: Value,
}

impl Captured {
    pub fn name(&self) -> &str {
        self.json["name"].as_str().unwrap_or("?")
    }
    pub fn summary(&self) -> &str {
        self.json["summary"].as_str().unwrap_or("?")
    }
}

/// A TCP connection of walkthrough.bytes: its ends and its key log line.
pub struct Session {
    pub initiator: SocketAddr,
    pub responder: SocketAddr,
    pub keys: KeyLogEntry,
}

/// Everything walkthrough.bytes holds.
pub struct Loaded {
    pub msgs: Vec<Captured>,
    pub sessions: BTreeMap<usize, Session>,
}

/// A record whose bytes are a stand-in: `[sealed:OFFSET:LENGTH] sha256:HEX`.
struct Sealed {
    index: usize,
    at: usize,
    size: usize,
    sha: String,
}

fn hex_with_files(hex: &str, file: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut rest = hex;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[file:") {
            let end = r.find(']').ok_or("unclosed [file:")?;
            let (off, len) = r[..end].split_once(':').ok_or("bad [file:OFFSET:LENGTH]")?;
            let off: usize = off.parse().map_err(|_| "bad file offset")?;
            let len: usize = len.parse().map_err(|_| "bad file length")?;
            let part = off
                .checked_add(len)
                .and_then(|e| file.get(off..e))
                .ok_or("[file:...] beyond the file")?;
            bytes.extend_from_slice(part);
            rest = &r[end + 1..];
        } else {
            let end = rest.find('[').unwrap_or(rest.len());
            bytes.extend(hex::decode(&rest[..end]).map_err(|e| format!("bad hex: {e}"))?);
            rest = &rest[end..];
        }
    }
    Ok(bytes)
}

fn check_sha(bytes: &[u8], col: Option<&&str>) -> Result<(), String> {
    let Some(col) = col else { return Ok(()) };
    let want = col.strip_prefix("sha256:").ok_or("bad sha256: column")?;
    let got = hex::encode(Sha256::digest(bytes));
    if got != want {
        return Err(format!(
            "the rebuilt bytes have SHA-256 {got}, the captured ones {want}"
        ));
    }
    Ok(())
}

fn dir_of(s: &str) -> Result<usize, String> {
    match s {
        "i" => Ok(0),
        "r" => Ok(1),
        other => Err(format!("direction {other:?} is not i or r")),
    }
}

/// Seals `plain` as record `nonce` of a direction whose key is `key`: its length, the
/// ciphertext and tag (secure.md section 3), with the session's cipher as the node's
/// implementation (ring's, through `AeadKey`) seals it.
fn seal(suite: Cipher, key: &[u8; 32], nonce: u64, plain: &[u8]) -> Vec<u8> {
    let cipher = suite.keyed(key);
    let mut out = vec![0u8; plain.len() + TAG_LEN];
    let n = cipher
        .seal(nonce, &[], plain, &mut out)
        .expect("a record with room to seal");
    let mut rec = u16::try_from(n)
        .expect("record length")
        .to_be_bytes()
        .to_vec();
    rec.extend_from_slice(&out[..n]);
    rec
}

/// Reads walkthrough.bytes; problems go to `fail`. A line that cannot be read still gets a
/// message (empty, explained as nothing), so that the numbers after it stay right.
pub fn load(text: &str, fail: &mut Vec<String>) -> Loaded {
    let file = file_content();
    let mut msgs: Vec<Captured> = Vec::new();
    let mut sessions = BTreeMap::new();
    let mut sealed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(' ').collect();
        if cols[0] == "session" {
            match parse_session(&cols) {
                Ok((c, s)) => {
                    sessions.insert(c, s);
                }
                Err(e) => fail.push(format!("walkthrough.bytes line {}: {e}", i + 1)),
            }
            continue;
        }
        let expected = msgs.len() + 1;
        let mut m = Captured {
            n: expected,
            kind: Msg::Wire,
            conn: 0,
            dir: 0,
            number: 0,
            bytes: Vec::new(),
            json: Value::Null,
        };
        if let Err(e) = parse_message(&cols, &file, &mut m, &mut sealed, msgs.len()) {
            fail.push(format!("walkthrough.bytes line {}: {e}", i + 1));
        }
        if m.n != expected {
            fail.push(format!(
                "walkthrough.bytes line {}: message {}, expected {expected}",
                i + 1,
                m.n
            ));
            m.n = expected;
        }
        msgs.push(m);
    }
    if msgs.is_empty() {
        fail.push("walkthrough.bytes holds no message".into());
    }
    // The sealed records, from the frames of their direction.
    for s in sealed {
        let (conn, dir, number) = (msgs[s.index].conn, msgs[s.index].dir, msgs[s.index].number);
        let plain = plaintext(&msgs, conn, dir);
        let Some(sess) = sessions.get(&conn) else {
            fail.push(format!(
                "message {}: no session line for connection {conn}",
                s.index + 1
            ));
            continue;
        };
        let key = if dir == 0 {
            &*sess.keys.initiator_to_responder
        } else {
            &*sess.keys.responder_to_initiator
        };
        let Some(part) = plain.get(s.at..s.at + s.size) else {
            fail.push(format!(
                "message {}: [sealed:...] beyond its direction's frames",
                s.index + 1
            ));
            continue;
        };
        let rec = seal(sess.keys.cipher, key, number, part);
        if let Err(e) = check_sha(&rec, Some(&format!("sha256:{}", s.sha).as_str())) {
            fail.push(format!("message {}: {e}", s.index + 1));
        }
        msgs[s.index].bytes = rec;
    }
    for m in msgs.iter_mut() {
        match m.kind {
            Msg::Dht | Msg::Wire => {
                let kind = if m.kind == Msg::Dht {
                    Kind::Dht
                } else {
                    Kind::Wire
                };
                let ex = explain_as(&m.bytes, kind);
                if !ex.is_valid() || !ex.layout_agrees || ex.messages.len() != 1 {
                    fail.push(format!(
                        "message {} no longer decodes as one valid message:\n{ex}",
                        m.n
                    ));
                }
                let v = serde_json::to_value(&ex).expect("explanation as JSON");
                m.json = v["messages"][0].clone();
            }
            Msg::Noise | Msg::Record => {}
        }
    }
    for (c, s) in &sessions {
        explain_session(&mut msgs, *c, s, fail);
    }
    if let Some(m) = msgs.iter().find(|m| m.json.is_null()) {
        fail.push(format!(
            "message {} ({:?}) was not explained: no session line for its connection?",
            m.n, m.kind
        ));
    }
    Loaded { msgs, sessions }
}

fn parse_session(cols: &[&str]) -> Result<(usize, Session), String> {
    let [_, c, i, r, keylog @ ..] = cols else {
        return Err("not `session CONN INITIATOR RESPONDER KEYLOG`".into());
    };
    let c: usize = c.parse().map_err(|_| format!("bad connection {c:?}"))?;
    let initiator = i.parse().map_err(|_| format!("bad address {i:?}"))?;
    let responder = r.parse().map_err(|_| format!("bad address {r:?}"))?;
    let keys = parse_keylog_line(&keylog.join(" ")).ok_or("not a key log line")?;
    Ok((
        c,
        Session {
            initiator,
            responder,
            keys,
        },
    ))
}

fn parse_message(
    cols: &[&str],
    file: &[u8],
    m: &mut Captured,
    sealed: &mut Vec<Sealed>,
    index: usize,
) -> Result<(), String> {
    m.n = cols[0]
        .parse()
        .map_err(|_| format!("bad number {:?}", cols[0]))?;
    let rest: &[&str] = match cols.get(1).copied() {
        Some("dht") => {
            m.kind = Msg::Dht;
            &cols[2..]
        }
        Some(k @ ("noise" | "record" | "wire")) => {
            m.kind = match k {
                "noise" => Msg::Noise,
                "record" => Msg::Record,
                _ => Msg::Wire,
            };
            if k == "wire" && cols.len() <= 4 && cols.get(2).is_some_and(|h| h.len() > 2) {
                // `N wire HEX`: a frame with no session around it, as version 1 sent them.
                m.bytes = hex_with_files(cols[2], file)?;
                check_sha(&m.bytes, cols.get(3))?;
                return Err("a wire frame outside any secure session: sent in clear".into());
            }
            let [c, d, ..] = &cols[2..] else {
                return Err(format!("`N {k} CONN DIR ...` expected"));
            };
            m.conn = c.parse().map_err(|_| format!("bad connection {c:?}"))?;
            m.dir = dir_of(d)?;
            let mut rest = &cols[4..];
            if m.kind == Msg::Record {
                let n = rest.first().ok_or("no record number")?;
                m.number = n.parse().map_err(|_| format!("bad record number {n:?}"))?;
                rest = &rest[1..];
            }
            rest
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    let (hex, sha) = match rest {
        [h] => (*h, None),
        [h, s] => (*h, Some(s)),
        _ => return Err("not `... HEX[ sha256:HEX]`".into()),
    };
    if let Some(r) = hex.strip_prefix("[sealed:") {
        if m.kind != Msg::Record {
            return Err("[sealed:...] stands only for a record".into());
        }
        let (at, size) = r
            .strip_suffix(']')
            .and_then(|r| r.split_once(':'))
            .ok_or("bad [sealed:OFFSET:LENGTH]")?;
        let sha = sha.ok_or("a sealed record needs its sha256:")?;
        sealed.push(Sealed {
            index,
            at: at.parse().map_err(|_| "bad sealed offset")?,
            size: size.parse().map_err(|_| "bad sealed length")?,
            sha: sha
                .strip_prefix("sha256:")
                .ok_or("bad sha256: column")?
                .to_string(),
        });
        return Ok(());
    }
    m.bytes = hex_with_files(hex, file)?;
    check_sha(&m.bytes, sha)
}

/// The frames of one direction, joined: what its records must open into.
fn plaintext(msgs: &[Captured], conn: usize, dir: usize) -> Vec<u8> {
    msgs.iter()
        .filter(|m| m.kind == Msg::Wire && m.conn == conn && m.dir == dir)
        .flat_map(|m| m.bytes.iter().copied())
        .collect()
}

/// Rebuilds a connection's two byte streams from its handshake messages and records, runs
/// the capture decoder on them with the key log line, and checks its word against the lines.
fn explain_session(msgs: &mut [Captured], conn: usize, s: &Session, fail: &mut Vec<String>) {
    let mut problem = |e: String| fail.push(format!("TCP connection {conn}: {e}"));
    let mut dirs = [Direction::default(), Direction::default()];
    for m in msgs.iter().filter(|m| m.conn == conn) {
        if matches!(m.kind, Msg::Noise | Msg::Record) {
            let d = &mut dirs[m.dir];
            d.bytes.extend_from_slice(&m.bytes);
            d.marks.push(Mark {
                packet: m.n,
                micros: 0,
                end: d.bytes.len(),
                flags: 0,
            });
        }
    }
    let r = Reassembled {
        connections: vec![Connection {
            number: conn,
            client: s.initiator,
            server: s.responder,
            saw_syn: true,
            dirs,
            packets: Vec::new(),
        }],
        packets: msgs.len(),
        ..Default::default()
    };
    let report = explain_reassembled(&r, Some(std::slice::from_ref(&s.keys)));
    let Some(sr) = report.sessions.first() else {
        return problem("the decoder finds no session".into());
    };
    if sr.kind != SessionKind::Secure || sr.keys != Keys::Found {
        problem(format!(
            "the decoder sees a {:?} session, keys {:?}: not a secure session the key log opens",
            sr.kind, sr.keys
        ));
    }
    // The handshake messages: msg1, msg2, msg3, each where the lines put it.
    let noise: Vec<usize> = (0..msgs.len())
        .filter(|&i| msgs[i].conn == conn && msgs[i].kind == Msg::Noise)
        .collect();
    let names: Vec<&str> = sr.handshake.iter().map(|h| h.name).collect();
    if names != ["msg1", "msg2", "msg3"] || noise.len() != 3 {
        problem(format!(
            "the decoder finds handshake messages {names:?} in {} noise lines",
            noise.len()
        ));
    }
    for (h, &i) in sr.handshake.iter().zip(&noise) {
        let m = &mut msgs[i];
        let from = if m.dir == 0 { s.initiator } else { s.responder };
        if h.packet != m.n || h.hex != hex::encode(&m.bytes) || h.from != from {
            problem(format!(
                "message {}: the decoder reads {} elsewhere",
                m.n, h.name
            ));
        }
        let fields = serde_json::to_value(&h.fields).expect("fields as JSON");
        m.json = noise_explanation(h.name, &fields);
    }
    // Each direction: every record opened, exactly the frames listed, in their place.
    for (dir, d) in sr.directions.iter().enumerate() {
        let what = if dir == 0 { "initiator" } else { "responder" };
        if let Some(why) = &d.stopped {
            problem(format!("the {what}'s records stop: {why}"));
        }
        let lines: Vec<usize> = (0..msgs.len())
            .filter(|&i| msgs[i].conn == conn && msgs[i].dir == dir)
            .filter(|&i| matches!(msgs[i].kind, Msg::Record | Msg::Wire))
            .collect();
        let records: Vec<usize> = lines
            .iter()
            .copied()
            .filter(|&i| msgs[i].kind == Msg::Record)
            .collect();
        if records.len() != d.records.len() {
            problem(format!(
                "the {what} sent {} records, the decoder finds {}",
                records.len(),
                d.records.len()
            ));
        }
        for (info, &i) in d.records.iter().zip(&records) {
            let m = &mut msgs[i];
            let ok = info.number == m.number && info.packet == m.n && info.len == m.bytes.len();
            match info.plain {
                Some((_, size)) if ok && size + 2 + TAG_LEN == m.bytes.len() => {
                    let info = serde_json::to_value(info).expect("record as JSON");
                    m.json = record_explanation(&info, &m.bytes);
                }
                _ => problem(format!(
                    "message {}: record {} is not the decoder's record {} (packet {}, {} bytes, opened: {})",
                    m.n, m.number, info.number, info.packet, info.len, info.plain.is_some()
                )),
            }
        }
        let Some(ex) = &d.frames else {
            problem(format!("the {what}'s records open into no frames"));
            continue;
        };
        if !ex.is_valid() || !ex.layout_agrees || ex.frames != ex.messages.len() {
            problem(format!(
                "the {what}'s opened records are not whole valid frames:\n{ex}"
            ));
        }
        let frames: Vec<&[u8]> = ex
            .messages
            .iter()
            .map(|f| {
                d.plaintext
                    .get(f.offset..f.offset + f.len)
                    .unwrap_or_default()
            })
            .collect();
        let listed: Vec<&[u8]> = lines
            .iter()
            .filter(|&&i| msgs[i].kind == Msg::Wire)
            .map(|&i| &msgs[i].bytes[..])
            .collect();
        if frames != listed {
            problem(format!(
                "the {what}'s records open into {} frames, not the {} wire lines",
                frames.len(),
                listed.len()
            ));
        }
        // A frame is listed right after the record that completes it.
        let (mut opened, mut before) = (0, 0);
        let mut rec = d.records.iter();
        let mut at = 0;
        for &i in &lines {
            if msgs[i].kind == Msg::Record {
                before = opened;
                opened += rec.next().and_then(|r| r.plain).map_or(0, |p| p.1);
            } else {
                at += msgs[i].bytes.len();
                if at > opened || at <= before {
                    problem(format!(
                        "message {} is not listed right after the record that completes it",
                        msgs[i].n
                    ));
                }
            }
        }
    }
    if sr.directions.len() != 2 {
        problem("the decoder does not find both directions".into());
    }
}
