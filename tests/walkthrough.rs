//! `protocol-spec/walkthrough.md` is current: the session it walks through is real bytes of
//! today's protocol, and what it says about them is what the decoder says today.
//!
//! The page and `protocol-spec/walkthrough.bytes` (every captured message, exactly, and the
//! key log line of the wire session) are written by `tools/walkthrough/generate.py` from a
//! live capture. This test needs no capture:
//!
//! - every DHT datagram and wire frame of walkthrough.bytes decodes, valid, as one message;
//!   stand-ins for the shared file and for records sealed from their frames are rebuilt and
//!   checked against the captured SHA-256 (tests/walkthrough/captured.rs);
//! - the handshake messages and records of the TCP connection, put back into its two byte
//!   streams, are read by the capture decoder (`peershare decode --pcap`'s) as a secure
//!   session of today's protocol: msg1, msg2, msg3 where the lines put them, every record
//!   opened with the key log line, into exactly the frames listed, each frame listed right
//!   after the record that completes it;
//! - the identities are real: every PROOF's key hashes to its sender's ID and its signature
//!   verifies over the PROVE it answers; provider records name the ID of the node at that
//!   address; the HANDSHAKE frames name the IDs of the nodes at their ends;
//! - every packet shown in full on the page has exactly the hex dump, the one-line summary,
//!   the decoder notes and the table that the decoder gives for its bytes now (for handshake
//!   messages and records, the capture decoder's fields and record info, in the formats of
//!   tools/walkthrough/formats.py), and so has the manifest; every packet listed in one line
//!   has the decoder's summary;
//! - the timeline lists every message once, links only to packets shown in full, the session
//!   covers every message type of a join, an announce, a lookup, a secure session and a
//!   download, and the page names no wire protocol version but the current one.
//!
//! When the protocol or the decoder changes, this test fails: `make walkthrough` captures a
//! new session and rewrites both files.

#[path = "walkthrough/captured.rs"]
mod captured;
#[path = "walkthrough/fmt.rs"]
mod fmt;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use captured::{Captured, Loaded, Msg};
use fmt::{code, dump_rows, line_tail, table_rows, text_cell, TABLE_HEAD};
use peershare::explain::{explain_as, Kind};
use peershare::id::Id;
use peershare::proto::dht::{proof_message, Datagram, Message};
use serde_json::Value;

const REGENERATE: &str = "protocol-spec/walkthrough.md no longer matches what the decoder says \
about its packets. Run `make walkthrough` to capture a new session and regenerate it (it needs \
root, or the right to capture on lo, and dumpcap); then review and commit walkthrough.md and \
walkthrough.bytes.";

/// Every type a join, an announce, a lookup, a secure session and a download must show.
const REQUIRED: [&str; 24] = [
    "PING",
    "PONG",
    "PROVE",
    "PROOF",
    "FIND_NODE",
    "NODES",
    "ANNOUNCE",
    "ACK",
    "GET_PROVIDERS",
    "PROVIDERS",
    "msg1",
    "msg2",
    "msg3",
    "RECORD",
    "HANDSHAKE",
    "METADATA",
    "MANIFEST_REQUEST",
    "MANIFEST_DATA",
    "BITFIELD",
    "INTERESTED",
    "UNCHOKE",
    "REQUEST",
    "PIECE",
    "HAVE",
];

fn spec_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("protocol-spec")
        .join(name)
}

fn read_spec(name: &str) -> String {
    let path = spec_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}\n{REGENERATE}", path.display()))
}

/// The manifest the MANIFEST_DATA frames carry, in order of their offsets.
fn assemble_manifest(msgs: &[Captured]) -> Option<Vec<u8>> {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let mut parts = BTreeMap::new();
    let mut total = None;
    for m in msgs {
        let b = &m.bytes;
        if m.kind == Msg::Wire && b.len() > 13 && b[4] == 0x04 {
            total = Some(be(&b[5..9]));
            parts.insert(be(&b[9..13]), b[13..].to_vec());
        }
    }
    let mut out = Vec::new();
    while out.len() < total? {
        out.extend(parts.get(&out.len())?);
    }
    Some(out)
}

// ----- the page --------------------------------------------------------------------------------

/// The lines of a block: from after its heading to the next heading.
fn block<'a>(lines: &'a [&'a str], heading: usize) -> &'a [&'a str] {
    let end = lines[heading + 1..]
        .iter()
        .position(|l| l.starts_with('#'))
        .map_or(lines.len(), |p| heading + 1 + p);
    &lines[heading + 1..end]
}

/// Checks a block's dump, decoder notes and table against the decoder's word on `bytes`.
fn check_block(what: &str, body: &[&str], bytes: &[u8], message: &Value, fail: &mut Vec<String>) {
    let mut problem = |s: String| fail.push(format!("{what}: {s}"));
    // The hex dump: the first ```text block.
    let start = body.iter().position(|l| *l == "```text");
    let dump: Vec<&str> = match start {
        Some(s) => body[s + 1..]
            .iter()
            .take_while(|l| **l != "```")
            .copied()
            .collect(),
        None => {
            problem("no hex dump".into());
            Vec::new()
        }
    };
    let want = dump_rows(bytes);
    if dump != want {
        let i = dump.iter().zip(&want).take_while(|(a, b)| *a == b).count();
        problem(format!(
            "the hex dump is not of the captured bytes ({} rows on the page, {} now); first difference:\n  page: {}\n  now:  {}",
            dump.len(),
            want.len(),
            dump.get(i).unwrap_or(&"(none)"),
            want.get(i).map_or("(none)", String::as_str)
        ));
    }
    let notes: Vec<&str> = body
        .iter()
        .filter_map(|l| l.strip_prefix("Decoder note: "))
        .collect();
    let want_notes: Vec<String> = message["notes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| text_cell(n.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if notes != want_notes {
        problem(format!(
            "decoder notes\n  page: {notes:?}\n  now:  {want_notes:?}"
        ));
    }
    let table: Vec<&str> = match body.iter().position(|l| *l == TABLE_HEAD[0]) {
        Some(s) => body[s..]
            .iter()
            .take_while(|l| l.starts_with('|'))
            .copied()
            .collect(),
        None => {
            problem("no field table".into());
            return;
        }
    };
    let mut want: Vec<String> = TABLE_HEAD.iter().map(|s| s.to_string()).collect();
    table_rows(
        message["fields"].as_array().map_or(&[][..], |v| v),
        0,
        &mut want,
    );
    if table.len() != want.len() {
        problem(format!(
            "the table has {} rows, the decoder gives {}",
            table.len(),
            want.len()
        ));
    }
    for (page, now) in table.iter().zip(&want) {
        if page != now {
            problem(format!("table row\n  page: {page}\n  now:  {now}"));
            break;
        }
    }
}

/// The cast table: node name and port, by node ID.
fn cast(lines: &[&str]) -> BTreeMap<String, (String, u16)> {
    let mut out = BTreeMap::new();
    for l in lines {
        let cells: Vec<&str> = l.split(" | ").collect();
        if let [first, _, id, port] = cells.as_slice() {
            let name = first.trim_start_matches("| ");
            let id = id.trim_matches('`');
            let port = port.trim_end_matches(" |").parse();
            if let (true, 64, Ok(port)) = (["A", "B", "C"].contains(&name), id.len(), port) {
                out.insert(id.to_string(), (name.to_string(), port));
            }
        }
    }
    out
}

/// The number in a packet list's first cell: `| 12 |` or `| [12](#packet-12) |`.
fn row_number(line: &str) -> Option<(usize, bool)> {
    let first = line.strip_prefix("| ")?.split(" | ").next()?;
    if let Some(r) = first.strip_prefix('[') {
        let (n, link) = r.split_once("](#packet-")?;
        let n: usize = n.parse().ok()?;
        (link == format!("{n})")).then_some((n, true))
    } else {
        first.parse().ok().map(|n| (n, false))
    }
}

/// The name the cast gives the sender of a TCP message (initiator 0, responder 1): the
/// responder by its port, the initiator (on an ephemeral port) by the ID in its HANDSHAKE
/// frame.
fn tcp_names(
    loaded: &Loaded,
    ids: &BTreeMap<String, (String, u16)>,
) -> BTreeMap<(usize, usize), String> {
    let mut out = BTreeMap::new();
    for (c, s) in &loaded.sessions {
        for (dir, addr) in [(0, s.initiator), (1, s.responder)] {
            let by_port = ids.values().find(|(_, p)| *p == addr.port());
            let by_frame = loaded
                .msgs
                .iter()
                .find(|m| {
                    m.conn == *c && m.dir == dir && m.kind == Msg::Wire && m.name() == "HANDSHAKE"
                })
                .and_then(|m| ids.get(&hex::encode(m.bytes.get(11..43).unwrap_or_default())));
            if let Some((name, _)) = by_port.or(by_frame) {
                out.insert((*c, dir), name.clone());
            }
        }
    }
    out
}

// ----- identities ------------------------------------------------------------------------------

/// PROOFs prove, provider records and HANDSHAKE frames name the nodes at their addresses,
/// and each msg1 says the current version.
fn check_identities(
    loaded: &Loaded,
    ids: &BTreeMap<String, (String, u16)>,
    fail: &mut Vec<String>,
) {
    let dgrams: Vec<(usize, Datagram)> = loaded
        .msgs
        .iter()
        .filter(|m| m.kind == Msg::Dht)
        .filter_map(|m| Datagram::decode(&m.bytes).ok().map(|d| (m.n, d)))
        .collect();
    let id_at = |port: u16| {
        ids.iter()
            .find(|(_, (_, p))| *p == port)
            .map(|(id, _)| id.clone())
    };
    let mut named = 0;
    for (n, d) in &dgrams {
        match &d.msg {
            Message::Proof { public, signature } => {
                let prove = dgrams
                    .iter()
                    .find(|(_, q)| q.txid == d.txid && matches!(q.msg, Message::Prove { .. }));
                let Some((
                    _,
                    Datagram {
                        sender: verifier,
                        msg: Message::Prove { nonce, addr },
                        ..
                    },
                )) = prove
                else {
                    fail.push(format!("packet {n}: a PROOF that answers no PROVE"));
                    continue;
                };
                let signed = proof_message(nonce, &d.sender, verifier, addr);
                if peershare::identity::node_id_of(public) != d.sender
                    || !peershare::identity::verify(public, &signed, signature)
                {
                    fail.push(format!(
                        "packet {n}: the PROOF does not prove its sender's ID"
                    ));
                }
            }
            Message::Providers {
                providers,
                provider_ids: Some(pids),
                ..
            } => {
                for (a, pid) in providers.iter().zip(pids) {
                    let want = if a.ip().is_unspecified() {
                        Some(hex::encode(d.sender.0))
                    } else {
                        id_at(a.port())
                    };
                    if want.as_deref() != Some(&hex::encode(pid.0)) {
                        fail.push(format!(
                            "packet {n}: provider {a} is named with another node's ID"
                        ));
                    }
                    named += 1;
                }
            }
            _ => {}
        }
    }
    if named == 0 {
        fail.push("no PROVIDERS names a provider with its node ID".into());
    }
    for (c, s) in &loaded.sessions {
        for m in loaded.msgs.iter().filter(|m| m.conn == *c) {
            if m.kind == Msg::Noise
                && m.name() == "msg1"
                && m.bytes.get(34..39) != Some(&peershare::secure::HELLO[..])
            {
                fail.push(format!(
                    "packet {}: msg1's HELLO is not today's (version {})",
                    m.n,
                    peershare::secure::VERSION
                ));
            }
            if m.kind == Msg::Wire && m.name() == "HANDSHAKE" {
                let id = hex::encode(m.bytes.get(11..43).unwrap_or_default());
                let port = m
                    .bytes
                    .get(75..77)
                    .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
                let at = if m.dir == 1 { s.responder.port() } else { port };
                if id_at(at).as_deref() != Some(id.as_str()) {
                    fail.push(format!(
                        "packet {}: the HANDSHAKE frame names {id}, not the node at port {at}",
                        m.n
                    ));
                }
            }
        }
        // The dialer expects the ID a provider record gave for the address it dials.
        let expected = Id(id_at(s.responder.port())
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]));
        let told = dgrams.iter().any(|(_, d)| matches!(&d.msg, Message::Providers { provider_ids: Some(p), .. } if p.contains(&expected)));
        if !told {
            fail.push(format!(
                "connection {c}: no provider record named the ID of the node dialed"
            ));
        }
    }
}

/// The wire protocol versions the page names: after "wire protocol version", and in
/// `"PSWP", version N` (the HELLO's value), with the text around them.
fn wire_versions(page: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for pat in ["wire protocol version", "\"PSWP\", version", "PSWP version"] {
        for (i, _) in page.match_indices(pat) {
            let rest = page[i + pat.len()..].trim_start_matches([':', ' ', '`']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(v) = digits.parse() {
                let ctx: String = page[i..].chars().take(60).collect();
                out.push((v, ctx));
            }
        }
    }
    out
}

fn check_versions(page: &str, fail: &mut Vec<String>) {
    let claims = wire_versions(page);
    if claims.is_empty() {
        fail.push("the page never says which wire protocol version it shows".into());
    }
    for (v, ctx) in claims {
        if v != u64::from(peershare::secure::VERSION) {
            fail.push(format!(
                "the page names wire protocol version {v}, not today's {}: {ctx:?}",
                peershare::secure::VERSION
            ));
        }
    }
}

#[test]
fn walkthrough_is_current() {
    let mut fail = Vec::new();
    let loaded = captured::load(&read_spec("walkthrough.bytes"), &mut fail);
    let msgs = &loaded.msgs;
    let page = read_spec("walkthrough.md");
    let lines: Vec<&str> = page.lines().collect();
    let ids = cast(&lines);
    if ids.len() != 3 {
        fail.push(format!("the cast names {} node IDs, not 3", ids.len()));
    }
    let tcp = tcp_names(&loaded, &ids);
    let get = |n: usize| msgs.get(n.wrapping_sub(1));

    // Packets shown in full.
    let mut full = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(n) = l.strip_prefix("#### Packet ") else {
            continue;
        };
        let what = format!("packet {n}");
        let Some(m) = n.parse().ok().and_then(|n: usize| get(n)) else {
            fail.push(format!("{what}: no such message in walkthrough.bytes"));
            continue;
        };
        if !full.insert(m.n) {
            fail.push(format!("{what} is shown twice"));
        }
        let body = block(&lines, i);
        let tail = line_tail(m.kind.label(), m.bytes.len(), m.summary());
        match body.iter().find(|l| l.contains(" → ")) {
            Some(line) if line.ends_with(&tail) => {
                let from = line.split(" → ").next().unwrap_or_default();
                // A DHT datagram's sender is named in its header; a TCP message's by its end.
                let sender = if m.kind == Msg::Dht {
                    let id = hex::encode(m.bytes.get(13..45).unwrap_or_default());
                    ids.get(&id).map(|(name, _)| name.clone())
                } else {
                    tcp.get(&(m.conn, m.dir)).cloned()
                };
                if sender.as_deref() != Some(from) {
                    fail.push(format!(
                        "{what}: sent by {from}, but its sender is {sender:?}"
                    ));
                }
            }
            Some(line) => fail.push(format!(
                "{what}: the summary line\n  page: {line}\n  now:  X → Y{tail}"
            )),
            None => fail.push(format!("{what}: no `X → Y (...): summary` line")),
        }
        check_block(&what, body, &m.bytes, &m.json, &mut fail);
    }

    // The manifest, decoded.
    match (
        lines.iter().position(|l| *l == "#### The manifest"),
        assemble_manifest(msgs),
    ) {
        (Some(i), Some(manifest)) => {
            let ex = explain_as(&manifest, Kind::Manifest);
            let json = serde_json::to_value(&ex).expect("JSON");
            let m = &json["messages"][0];
            if !ex.is_valid() {
                fail.push(format!("the manifest no longer decodes:\n{ex}"));
            }
            let body = block(&lines, i);
            let summary = code(m["summary"].as_str().unwrap_or_default());
            if !body.iter().any(|l| l.ends_with(&format!(": {summary}"))) {
                fail.push(format!(
                    "the manifest: no line ending with its summary {summary}"
                ));
            }
            check_block("the manifest", body, &manifest, m, &mut fail);
        }
        (None, _) => fail.push("no `#### The manifest` block".into()),
        (_, None) => fail.push("the MANIFEST_DATA frames do not hold a whole manifest".into()),
    }

    // Packet lists: the timeline, and the one-line rows of the sections.
    let mut in_timeline = Vec::new();
    let mut list = None; // the header of the packet list being read
    let mut heading = "";
    for l in &lines {
        if l.starts_with("## ") {
            heading = l;
        }
        if l.starts_with("| # |") {
            list = Some(heading == "## Timeline");
            continue;
        }
        if !l.starts_with('|') {
            list = None;
            continue;
        }
        let (Some(timeline), Some((n, linked))) = (list, row_number(l)) else {
            continue;
        };
        let Some(m) = get(n) else {
            fail.push(format!(
                "a packet list names packet {n}, which does not exist"
            ));
            continue;
        };
        let summary = code(m.summary());
        if !l.contains(&format!(" | {summary} |")) && !l.contains(&format!(" | ↳ {summary} |")) {
            fail.push(format!(
                "packet {n}'s row\n  page: {l}\n  now:  ... | {summary} | ..."
            ));
        }
        if linked != full.contains(&n) {
            fail.push(format!(
                "packet {n}: linked {linked} in a list, shown in full {}",
                full.contains(&n)
            ));
        }
        if timeline {
            in_timeline.push(n);
        }
    }
    let all: Vec<usize> = (1..=msgs.len()).collect();
    if in_timeline != all {
        fail.push(format!(
            "the timeline lists packets {in_timeline:?}, not each of the {} messages once, in order",
            msgs.len()
        ));
    }
    for (i, _) in page.match_indices("](#packet-") {
        let n: String = page[i + 10..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !n.parse().is_ok_and(|n: usize| full.contains(&n)) {
            fail.push(format!("a link to #packet-{n}, which is not shown in full"));
        }
    }

    // The session covers what it should, and shows each type in full at least once.
    let names: BTreeSet<&str> = msgs.iter().map(Captured::name).collect();
    let shown: BTreeSet<&str> = full
        .iter()
        .filter_map(|&n| get(n))
        .map(Captured::name)
        .collect();
    for t in REQUIRED {
        if !names.contains(t) {
            fail.push(format!("the session has no {t}"));
        } else if !shown.contains(t) {
            fail.push(format!("no {t} is shown in full"));
        }
    }
    check_identities(&loaded, &ids, &mut fail);
    check_versions(&page, &mut fail);

    if !fail.is_empty() {
        let n = fail.len();
        // The first problems of each kind (a new protocol breaks every packet alike).
        let mut seen = BTreeMap::new();
        fail.retain(|f| {
            let kind: String = f.chars().filter(|c| !c.is_ascii_digit()).take(40).collect();
            let count = seen.entry(kind).or_insert(0);
            *count += 1;
            *count <= 2
        });
        fail.truncate(40);
        panic!("{REGENERATE}\n\n{n} problem(s):\n- {}", fail.join("\n- "));
    }
}

/// The tables above are `peershare decode --json`'s: the binary prints exactly the
/// explanation the library gives (checked on one message of each kind it decodes alone).
#[test]
fn decode_json_is_the_library_explanation() {
    let mut fail = Vec::new();
    let loaded = captured::load(&read_spec("walkthrough.bytes"), &mut fail);
    assert!(fail.is_empty(), "{REGENERATE}\n{}", fail.join("\n"));
    for (kind, as_) in [(Msg::Dht, "dht"), (Msg::Wire, "wire")] {
        let Some(m) = loaded
            .msgs
            .iter()
            .find(|m| m.kind == kind && m.bytes.len() < 1000)
        else {
            panic!("walkthrough.bytes has no {kind:?} message\n{REGENERATE}");
        };
        let out = Command::new(env!("CARGO_BIN_EXE_peershare"))
            .args(["decode", "--json", "--as", as_, &hex::encode(&m.bytes)])
            .output()
            .expect("run peershare decode");
        assert!(out.status.success(), "peershare decode: {out:?}");
        let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON from peershare decode");
        assert_eq!(
            cli["messages"][0], m.json,
            "peershare decode --json and the library differ"
        );
    }
}
