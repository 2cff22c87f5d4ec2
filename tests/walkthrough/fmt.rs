//! The formats of tools/walkthrough/formats.py: the page's dump rows, table rows, packet lines
//! and the explanations of handshake messages and records. A change to one must be made in
//! the other.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const DUMP_ROW: usize = 16;
pub const ELIDE_OVER: usize = 512;
pub const ELIDE_HEAD: usize = 64;
pub const ELIDE_TAIL: usize = 32;
pub const TABLE_HEAD: [&str; 2] = [
    "| offset | len | field | value | meaning |",
    "| ---: | ---: | --- | --- | --- |",
];
const TAG_LEN: usize = 16;

/// The shared file: block i (32 bytes) = SHA-256(FILE_SEED || i as u64 big-endian).
const FILE_SEED: &[u8] = b"peershare walkthrough";
const FILE_LEN: usize = 300_000;

pub fn file_content() -> Vec<u8> {
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

pub fn text_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;")
}

pub fn code(s: &str) -> String {
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

pub fn table_rows(fields: &[Value], depth: usize, out: &mut Vec<String>) {
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

pub fn dump_rows(data: &[u8]) -> Vec<String> {
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

/// The end of a packet's line: ` (LABEL, SIZE bytes): SUMMARY`.
pub fn line_tail(label: &str, size: usize, summary: &str) -> String {
    format!(" ({label}, {size} bytes): {}", code(summary))
}

/// A handshake message as the page shows it, from the capture decoder's fields (offsets in
/// the sender's stream, shown from the start of the message).
pub fn noise_explanation(name: &str, fields: &Value) -> Value {
    let fields = fields.as_array().cloned().unwrap_or_default();
    let start = fields
        .first()
        .and_then(|f| f["offset"].as_u64())
        .unwrap_or(0);
    let shifted: Vec<Value> = fields
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f["offset"] = json!(f["offset"].as_u64().unwrap_or(0) - start);
            f
        })
        .collect();
    let value = |n: &str| {
        fields
            .iter()
            .find(|f| f["name"] == n)
            .and_then(|f| f["value"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let e4: String = value("e").chars().take(4).collect();
    let summary = match name {
        "msg1" => format!("msg1 -> e: e={e4}…, HELLO {}", value("HELLO")),
        "msg2" => format!("msg2 <- e, ee, s, es: e={e4}…, s and identity proof encrypted"),
        _ => format!("{name} -> s, se: s and identity proof encrypted"),
    };
    json!({"name": name, "summary": summary, "notes": [], "fields": shifted})
}

/// A record as the page shows it: length, ciphertext and tag, from the capture decoder's
/// record info (its number, where its plaintext went).
pub fn record_explanation(info: &Value, data: &[u8]) -> Value {
    let n = info["number"].as_u64().unwrap_or(0);
    let at = info["plain"][0].as_u64().unwrap_or(0);
    let size = info["plain"][1].as_u64().unwrap_or(0);
    let body = data.len().saturating_sub(2);
    let sealed = body.saturating_sub(TAG_LEN);
    let mut shown = hex::encode(data.get(2..2 + sealed.min(8)).unwrap_or_default());
    if sealed > 8 {
        shown.push('…');
    }
    let place = if size > 0 {
        format!(
            "bytes {at} to {} of this direction's wire frames",
            at + size - 1
        )
    } else {
        "nothing".into()
    };
    let tag = hex::encode(
        data.get(data.len().saturating_sub(TAG_LEN)..)
            .unwrap_or_default(),
    );
    json!({
        "name": "RECORD",
        "summary": format!("record {n}: {size} bytes of frames, encrypted, and a tag"),
        "notes": [],
        "fields": [
            {"offset": 0, "length": 2, "name": "length", "value": body.to_string(),
             "meaning": "bytes that follow, ciphertext and tag (16 to 65535): in clear"},
            {"offset": 2, "length": sealed, "name": "ciphertext",
             "value": format!("{sealed} bytes: {shown}"),
             "meaning": format!("{place}, encrypted with this direction's key and nonce {n}, the record's number")},
            {"offset": 2 + sealed, "length": TAG_LEN, "name": "tag", "value": tag,
             "meaning": "Poly1305 tag: the record opens only under that key and nonce, unaltered"},
        ],
    })
}
