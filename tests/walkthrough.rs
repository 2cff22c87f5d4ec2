//! `protocol-spec/walkthrough.md` is current: the session it walks through is real bytes, and
//! what it says about them is what the decoder says today.
//!
//! The page and `protocol-spec/walkthrough.bytes` (every captured message, exactly) are
//! written by `tools/walkthrough/generate.py` from a live capture. This test needs no capture:
//!
//! - every message of walkthrough.bytes decodes, valid, as one message; PIECE data stored as
//!   a stand-in for the shared file is rebuilt and checked against the captured SHA-256;
//! - every packet shown in full on the page has exactly the hex dump, the one-line summary,
//!   the decoder notes and the table (offset, length, field, value, meaning) that
//!   `peershare decode --json` gives for its bytes now, and so has the manifest assembled from
//!   the MANIFEST_DATA frames; every packet listed in one line has the decoder's summary;
//! - the timeline lists every message once, links only to packets shown in full, and the
//!   session covers every message type of a join, an announce, a lookup and a download.
//!
//! When the protocol or the decoder changes, this test fails: `make walkthrough` captures a
//! new session and rewrites both files. The formats below are those of
//! `tools/walkthrough/render.py`; a change to one must be made in both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use peershare::explain::{explain_as, Kind};
use serde_json::Value;
use sha2::{Digest, Sha256};

const REGENERATE: &str = "protocol-spec/walkthrough.md no longer matches what the decoder says \
about its packets. Run `make walkthrough` to capture a new session and regenerate it (it needs \
root, or the right to capture on lo, and dumpcap); then review and commit walkthrough.md and \
walkthrough.bytes.";

/// Every type a join, an announce, a lookup and a download must show.
const REQUIRED: [&str; 18] = [
    "PING",
    "PONG",
    "FIND_NODE",
    "NODES",
    "ANNOUNCE",
    "ACK",
    "GET_PROVIDERS",
    "PROVIDERS",
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

// ----- the formats of render.py ------------------------------------------------------------

const DUMP_ROW: usize = 16;
const ELIDE_OVER: usize = 512;
const ELIDE_HEAD: usize = 64;
const ELIDE_TAIL: usize = 32;
const TABLE_HEAD: [&str; 2] = [
    "| offset | len | field | value | meaning |",
    "| ---: | ---: | --- | --- | --- |",
];

/// The shared file: block i (32 bytes) = SHA-256(FILE_SEED || i as u64 big-endian).
const FILE_SEED: &[u8] = b"peershare walkthrough";
const FILE_LEN: usize = 300_000;

fn file_content() -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_LEN + 32);
    let mut i: u64 = 0;
    while out.len() < FILE_LEN {
        let mut h = Sha256::new();
        h.update(FILE_SEED);
        h.update(i.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(FILE_LEN);
    out
}

fn text_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;")
}

fn code(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let s = s.replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

fn table_rows(fields: &[Value], depth: usize, out: &mut Vec<String>) {
    for f in fields {
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        out.push(format!(
            "| {} | {} | {}{} | {} | {} |",
            f["offset"],
            f["length"],
            "· ".repeat(depth),
            code(&s("name")),
            code(&s("value")),
            text_cell(&s("meaning")),
        ));
        if let Some(children) = f["children"].as_array() {
            table_rows(children, depth + 1, out);
        }
    }
}

fn dump_row(data: &[u8], off: usize) -> String {
    let chunk = &data[off..(off + DUMP_ROW).min(data.len())];
    let hexes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
    let mut hx = hexes[..chunk.len().min(8)].join(" ");
    if chunk.len() > 8 {
        hx.push_str("  ");
        hx.push_str(&hexes[8..].join(" "));
    }
    let asc: String = chunk
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{off:>7}  {hx:<48}  |{asc}|")
}

fn dump_rows(data: &[u8]) -> Vec<String> {
    if data.len() <= ELIDE_OVER {
        return (0..data.len())
            .step_by(DUMP_ROW)
            .map(|o| dump_row(data, o))
            .collect();
    }
    let tail = (data.len() - ELIDE_TAIL) / DUMP_ROW * DUMP_ROW;
    let mut rows: Vec<String> = (0..ELIDE_HEAD)
        .step_by(DUMP_ROW)
        .map(|o| dump_row(data, o))
        .collect();
    rows.push(format!(
        "      … {} bytes not shown: offsets {ELIDE_HEAD} to {} …",
        tail - ELIDE_HEAD,
        tail - 1
    ));
    rows.extend(
        (tail..data.len())
            .step_by(DUMP_ROW)
            .map(|o| dump_row(data, o)),
    );
    rows
}

// ----- the captured messages -----------------------------------------------------------------

struct Captured {
    kind: Kind,
    bytes: Vec<u8>,
    /// What the decoder says now, as `peershare decode --json` prints it.
    json: Value,
}

impl Captured {
    fn message(&self) -> &Value {
        &self.json["messages"][0]
    }
    fn name(&self) -> &str {
        self.message()["name"].as_str().unwrap_or("?")
    }
    fn summary(&self) -> &str {
        self.message()["summary"].as_str().unwrap_or("?")
    }
}

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

/// One line of walkthrough.bytes, `N KIND HEX[ sha256:HEX]`, where HEX may hold one
/// `[file:OFFSET:LENGTH]`: the message's bytes.
fn parse_bytes_line(line: &str, file: &[u8]) -> Result<(usize, Kind, Vec<u8>), String> {
    let cols: Vec<&str> = line.split(' ').collect();
    let (n, kind, hex) = match cols.as_slice() {
        [n, k, h] | [n, k, h, _] => (n, k, h),
        _ => return Err("not `N KIND HEX[ sha256:HEX]`".into()),
    };
    let n: usize = n.parse().map_err(|_| format!("bad number {n:?}"))?;
    let kind = match *kind {
        "dht" => Kind::Dht,
        "wire" => Kind::Wire,
        other => return Err(format!("unknown kind {other:?}")),
    };
    let mut bytes = Vec::new();
    let mut rest = *hex;
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
    if let [_, _, _, sha] = cols.as_slice() {
        let want = sha.strip_prefix("sha256:").ok_or("bad sha256: column")?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != want {
            return Err(format!(
                "the rebuilt bytes have SHA-256 {got}, the captured ones {want}"
            ));
        }
    }
    Ok((n, kind, bytes))
}

fn load_captured(fail: &mut Vec<String>) -> Vec<Captured> {
    let file = file_content();
    let mut out = Vec::new();
    let text = read_spec("walkthrough.bytes");
    let mut expected = 0;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        expected += 1;
        match parse_bytes_line(line, &file) {
            Ok((n, kind, bytes)) => {
                if n != expected {
                    fail.push(format!(
                        "walkthrough.bytes line {}: message {n}, expected {expected}",
                        i + 1,
                    ));
                }
                let ex = explain_as(&bytes, kind);
                let json = serde_json::to_value(&ex).expect("explanation as JSON");
                if !ex.is_valid() || !ex.layout_agrees || ex.messages.len() != 1 {
                    fail.push(format!(
                        "message {n} no longer decodes as one valid message:\n{ex}"
                    ));
                }
                out.push(Captured { kind, bytes, json });
            }
            Err(e) => {
                fail.push(format!("walkthrough.bytes line {}: {e}", i + 1));
                // A stand-in keeps the numbers of the messages after it.
                out.push(Captured {
                    kind: Kind::Wire,
                    bytes: Vec::new(),
                    json: Value::Null,
                });
            }
        }
    }
    if out.is_empty() {
        fail.push("walkthrough.bytes holds no message".into());
    }
    out
}

/// The manifest the MANIFEST_DATA frames carry, in order of their offsets.
fn assemble_manifest(msgs: &[Captured]) -> Option<Vec<u8>> {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let mut parts = BTreeMap::new();
    let mut total = None;
    for m in msgs {
        let b = &m.bytes;
        if m.kind == Kind::Wire && b.len() > 13 && b[4] == 0x04 {
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

/// The node names of the cast table, by node ID.
fn cast(lines: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in lines {
        let cells: Vec<&str> = l.split(" | ").collect();
        if let [first, _, id, _] = cells.as_slice() {
            let name = first.trim_start_matches("| ");
            let id = id.trim_matches('`');
            if ["A", "B", "C"].contains(&name) && id.len() == 64 {
                out.insert(id.to_string(), name.to_string());
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

#[test]
fn walkthrough_is_current() {
    let mut fail = Vec::new();
    let msgs = load_captured(&mut fail);
    let page = read_spec("walkthrough.md");
    let lines: Vec<&str> = page.lines().collect();
    let ids = cast(&lines);
    if ids.len() != 3 {
        fail.push(format!("the cast names {} node IDs, not 3", ids.len()));
    }
    let get = |n: usize| msgs.get(n.wrapping_sub(1));

    // Packets shown in full.
    let mut full = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(n) = l.strip_prefix("#### Packet ") else {
            continue;
        };
        let what = format!("packet {n}");
        let Some(m) = n.parse().ok().and_then(|n: usize| get(n).map(|m| (n, m))) else {
            fail.push(format!("{what}: no such message in walkthrough.bytes"));
            continue;
        };
        let (n, m) = m;
        if !full.insert(n) {
            fail.push(format!("{what} is shown twice"));
        }
        let body = block(&lines, i);
        let proto = if m.kind == Kind::Dht { "UDP" } else { "TCP" };
        let tail = format!(" ({proto}, {} bytes): {}", m.bytes.len(), code(m.summary()));
        match body.iter().find(|l| l.contains(" → ")) {
            Some(line) if line.ends_with(&tail) => {
                // A DHT datagram's sender is named in its header.
                if m.kind == Kind::Dht {
                    let sender = hex::encode(m.bytes.get(13..45).unwrap_or_default());
                    let from = line.split(" → ").next().unwrap_or_default();
                    if ids.get(&sender).map(String::as_str) != Some(from) {
                        fail.push(format!(
                            "{what}: sent by {from}, but its sender ID is {sender}"
                        ));
                    }
                }
            }
            Some(line) => fail.push(format!(
                "{what}: the summary line\n  page: {line}\n  now:  X → Y{tail}"
            )),
            None => fail.push(format!("{what}: no `X → Y (...): summary` line")),
        }
        check_block(&what, body, &m.bytes, m.message(), &mut fail);
    }

    // The manifest, decoded.
    match (
        lines.iter().position(|l| *l == "#### The manifest"),
        assemble_manifest(&msgs),
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
        if !l.contains(&format!(" | {} |", code(m.summary()))) {
            fail.push(format!(
                "packet {n}'s row\n  page: {l}\n  now:  ... | {} | ...",
                code(m.summary())
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

    if !fail.is_empty() {
        let n = fail.len();
        fail.truncate(20);
        panic!("{REGENERATE}\n\n{n} problem(s):\n- {}", fail.join("\n- "));
    }
}

/// The tables above are `peershare decode --json`'s: the binary prints exactly the
/// explanation the library gives (checked on one message of each kind).
#[test]
fn decode_json_is_the_library_explanation() {
    let mut fail = Vec::new();
    let msgs = load_captured(&mut fail);
    assert!(fail.is_empty(), "{REGENERATE}\n{}", fail.join("\n"));
    for kind in [Kind::Dht, Kind::Wire] {
        let Some(m) = msgs.iter().find(|m| m.kind == kind && m.bytes.len() < 1000) else {
            panic!("walkthrough.bytes has no {kind:?} message\n{REGENERATE}");
        };
        let as_ = if kind == Kind::Dht { "dht" } else { "wire" };
        let out = Command::new(env!("CARGO_BIN_EXE_peershare"))
            .args(["decode", "--json", "--as", as_, &hex::encode(&m.bytes)])
            .output()
            .expect("run peershare decode");
        assert!(out.status.success(), "peershare decode: {out:?}");
        let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON from peershare decode");
        assert_eq!(
            cli, m.json,
            "peershare decode --json and the library differ"
        );
    }
}
