//! `peershare decode`: explains a DHT datagram, a stream of wire frames, a bare wire HANDSHAKE
//! body, a manifest or a tree manifest (a shared folder) field by field (offset, length, name,
//! value, meaning), and says exactly what is wrong with malformed input. Spec:
//! `protocol-spec/` (overview.md, dht.md, wire.md, content.md).
//!
//! # The real decoder decides, the layout only explains
//!
//! Whether input is valid is always decided by the reference decoders ([`Datagram::decode`],
//! [`decode_frame`] and [`frame_len_hint`], [`Manifest::decode`], [`TreeManifest::decode`]),
//! never here. On top of their
//! verdict, a *layout walk* reads the same bytes in the same order as the decoder (with the
//! codec's own [`Reader`](super::codec::Reader)) and records one [`Field`] per field. On
//! malformed input the walk stops where the decoder stops, which is how an explanation names
//! the byte offset and the field of the decoder's own error. [`Explanation::layout_agrees`] says whether the walk
//! reached the decoder's verdict; the tests check that it always does, and if it ever did not,
//! the verdict reported would still be the decoder's.
//!
//! The leaf fields of an explanation cover every byte of the input exactly once, valid or not:
//! bytes the decoder never reached (after an error) form one `(not decoded)` field. Long lists
//! (contacts, providers, peers, entries, chunk hashes) show their first [`SHOW_ITEMS`] items,
//! then one row for the rest (and, between the folded rows, an item an error is about).
//!
//! # Use
//!
//! [`explain`] detects the kind from the first bytes ([`detect`]); [`explain_as`] forces it.
//! The [`fmt::Display`] of an [`Explanation`] is the table `peershare decode` prints; its
//! serde form is the `--json` output. [`summarize`] gives one line for logs without building
//! fields. Pure: no I/O, no clock; the CLI (`src/cli.rs`) reads the input and prints.
//!
//! # Files
//!
//! This file holds the public types, the entry points, how a verdict and a walk are combined
//! (`finish_message`) and the table. `walk.rs` is the walker and the value forms; `dht_walk.rs`,
//! `wire_walk.rs`, `manifest_walk.rs` and `tree_walk.rs` mirror one decoder each; `line.rs` is
//! the one-line forms.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::content::manifest::{self, Manifest};
use crate::content::tree::{TreeManifest, TREE_MAGIC};
use crate::proto::codec::DecodeError;
use crate::proto::dht::{self, Datagram};
use crate::proto::wire::{self, decode_frame, frame_len_hint, FRAME_HEADER_LEN, MAX_FRAME_LEN};

mod decrypted;
mod dht_walk;
mod line;
mod manifest_walk;
mod sessions;
mod sessions_text;
mod tree_walk;
mod walk;
mod wire_walk;

#[cfg(test)]
mod tree_tests;

pub use decrypted::write_decrypted;
pub use sessions::{
    explain_capture, explain_reassembled, read_keylog, CaptureReport, DirectionReport,
    HandshakeMessage, Keys, RecordInfo, SessionKind, SessionReport,
};

use dht_walk::explain_dht;
use line::{dht_line, manifest_line, tree_line, wire_line};
use manifest_walk::explain_manifest;
use tree_walk::explain_tree;
use walk::{be, error_field, Walk, Walker};
use wire_walk::{decode_bare_handshake, explain_handshake, explain_wire};

/// What the input is taken to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One DHT datagram (UDP payload), starting with "PS" and the version (dht.md, section 2).
    Dht,
    /// Wire frames back to back, as read from a TCP connection (wire.md, section 2).
    Wire,
    /// A bare HANDSHAKE body without its frame header, starting with "PSWP" (wire.md, 4.2).
    Handshake,
    /// A manifest, starting with "PSMF" (content.md, section 2).
    Manifest,
    /// A tree manifest (a shared folder), starting with "PSTR" (content.md, section 10).
    Tree,
}

impl Kind {
    /// How the kind is named in output.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Dht => "DHT datagram",
            Kind::Wire => "wire frames",
            Kind::Handshake => "wire HANDSHAKE body",
            Kind::Manifest => "manifest",
            Kind::Tree => "tree manifest",
        }
    }
}

/// One field of the input, or a group of fields (an address, a contact, a list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Offset of the first byte, from the start of the input.
    pub offset: usize,
    /// Number of bytes.
    #[serde(rename = "length")]
    pub len: usize,
    /// The field's name, as in the spec's diagrams.
    pub name: Cow<'static, str>,
    /// The value in human form: numbers in decimal, IDs in full hex, addresses as ip:port,
    /// flags and codes with their names, text quoted with control characters escaped.
    pub value: String,
    /// What the field means, in one short sentence from the spec.
    pub meaning: Cow<'static, str>,
    /// The fields of a group, which cover exactly its bytes; empty for a plain field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Field>,
    /// True for the field the error is about, and the groups around it.
    #[serde(skip_serializing_if = "is_false")]
    pub error: bool,
}

/// How far one message got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The decoder accepted it.
    Valid,
    /// The decoder rejected it: see [`Explanation::error`].
    Malformed,
    /// A wire frame the input ends inside of: see [`Explanation::incomplete`].
    Incomplete,
}

/// One message of the input: the datagram, one wire frame, the handshake body or the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExplainedMessage {
    /// Offset of its first byte in the input.
    pub offset: usize,
    /// Bytes its fields cover (for the last message of bad input: up to the end).
    #[serde(rename = "length")]
    pub len: usize,
    /// The message name (`PING`, `HANDSHAKE`, `MANIFEST`, `TREE`), or `?` when not known.
    pub name: Cow<'static, str>,
    /// Whether the decoder accepted it.
    pub status: Status,
    /// One line, as [`summarize`] gives it.
    pub summary: String,
    /// Facts that are not a field: what answers a request, a manifest's content ID.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The fields, in order.
    pub fields: Vec<Field>,
}

/// Why input was rejected, located in the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExplainError {
    /// Offset of the field the error is about. At most the input length: equal to it when
    /// the input ends exactly where a field should begin.
    pub offset: usize,
    /// The field, named as the decoder names it.
    pub field: Cow<'static, str>,
    /// The decoder's error kind (`UnexpectedEnd`, `BadMagic`, ...: overview.md, section 9).
    pub kind: &'static str,
    /// What the decoder expected there.
    pub expected: String,
    /// What it found.
    pub found: String,
    /// The decoder's own message.
    pub message: String,
    /// The decoder's error itself.
    #[serde(skip)]
    pub decode_error: DecodeError,
}

/// A wire frame the input ends inside of: on a TCP stream not an error, just unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    /// Offset of the frame's first byte.
    pub offset: usize,
    /// Bytes of it present.
    pub have: usize,
    /// Bytes still needed.
    pub needed: usize,
    /// True when `needed` is only a lower bound (the 4-byte length is not all there).
    pub at_least: bool,
}

/// Everything `peershare decode` says about some input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// What the input was taken to be.
    pub kind: Kind,
    /// True when the caller chose the kind ([`explain_as`]) rather than [`detect`].
    pub forced: bool,
    /// Input length in bytes.
    #[serde(rename = "length")]
    pub input_len: usize,
    /// True when the decoder accepted all of the input.
    pub valid: bool,
    /// How many messages the input holds: for wire frames, every frame (whole, malformed or
    /// cut short), those folded into one row past [`MAX_FRAMES_SHOWN`] included; otherwise 1.
    pub frames: usize,
    /// The messages, in input order.
    pub messages: Vec<ExplainedMessage>,
    /// Set when the input is malformed.
    pub error: Option<ExplainError>,
    /// Set when the input ends inside a wire frame.
    pub incomplete: Option<Incomplete>,
    /// True when the layout walk reached the decoder's verdict at the same place. Always
    /// true unless this module has a bug; the verdict reported is the decoder's either way.
    pub layout_agrees: bool,
}

impl Explanation {
    /// True when the decoder accepted all of the input.
    pub fn is_valid(&self) -> bool {
        self.valid
    }
}

/// Items of a list shown one by one before the rest are folded into one row.
pub const SHOW_ITEMS: usize = 3;

/// Wire frames explained one by one. The valid frames after them become one row (they are
/// still decoded, in order), so a long capture of small frames cannot take gigabytes of
/// fields; a malformed or cut-short last frame is always explained in full.
pub const MAX_FRAMES_SHOWN: usize = 10_000;

/// The kind the first bytes announce: "PSMF" a manifest, "PSTR" a tree manifest, "PSWP" a
/// bare handshake body, "PS" a DHT datagram, anything else wire frames (a frame's 4-byte
/// length can never start with "PS": that would be over 1 GB, far above `MAX_FRAME_LEN`).
pub fn detect(bytes: &[u8]) -> Kind {
    if bytes.starts_with(&manifest::MAGIC) {
        Kind::Manifest
    } else if bytes.starts_with(&TREE_MAGIC) {
        Kind::Tree
    } else if bytes.starts_with(&wire::MAGIC) {
        Kind::Handshake
    } else if bytes.starts_with(&dht::MAGIC) {
        Kind::Dht
    } else {
        Kind::Wire
    }
}

/// Explains `bytes`, detecting the kind from its first bytes ([`detect`]).
pub fn explain(bytes: &[u8]) -> Explanation {
    let mut e = explain_as(bytes, detect(bytes));
    e.forced = false;
    e
}

/// Explains `bytes` as `kind`.
pub fn explain_as(bytes: &[u8], kind: Kind) -> Explanation {
    let mut ex = Explanation {
        kind,
        forced: true,
        input_len: bytes.len(),
        valid: false,
        frames: usize::from(kind != Kind::Wire),
        messages: Vec::new(),
        error: None,
        incomplete: None,
        layout_agrees: true,
    };
    match kind {
        Kind::Dht => explain_dht(bytes, &mut ex),
        Kind::Wire => explain_wire(bytes, &mut ex),
        Kind::Handshake => explain_handshake(bytes, &mut ex),
        Kind::Manifest => explain_manifest(bytes, &mut ex),
        Kind::Tree => explain_tree(bytes, &mut ex),
    }
    ex.valid = ex.error.is_none() && ex.incomplete.is_none();
    ex
}

/// One line about `bytes` (for a wire stream, its first frame), the kind detected as by
/// [`detect`]: `PING tx=0102… from=1111…`, `REQUEST chunk=12`, or what is wrong. IDs are cut
/// to their first 4 hex digits. Builds no fields, and does not copy a PIECE's chunk.
pub fn summarize(bytes: &[u8]) -> String {
    summarize_as(bytes, detect(bytes))
}

/// One line for an already decoded wire message (what `peershare run --trace` prints for
/// frames; a PIECE's data is not copied).
pub fn summarize_message(m: &crate::proto::wire::Message) -> String {
    let mut s = String::with_capacity(96);
    line::wire_line(&mut s, m);
    s
}

/// [`summarize`] with the kind given.
pub fn summarize_as(bytes: &[u8], kind: Kind) -> String {
    let mut s = String::with_capacity(96);
    let err = match kind {
        Kind::Dht => Datagram::decode(bytes).map(|d| dht_line(&mut s, &d)),
        Kind::Wire => return summarize_frame(s, bytes),
        Kind::Handshake => decode_bare_handshake(bytes).map(|m| wire_line(&mut s, &m)),
        Kind::Manifest => Manifest::decode(bytes).map(|m| manifest_line(&mut s, &m)),
        Kind::Tree => TreeManifest::decode(bytes).map(|t| tree_line(&mut s, &t)),
    };
    if let Err(e) = err {
        let _ = write!(s, "malformed {}: {e}", kind.describe());
    }
    s
}

fn summarize_frame(mut s: String, bytes: &[u8]) -> String {
    let total = match frame_len_hint(bytes) {
        Err(e) => return format!("malformed wire frame: {e}"),
        Ok(None) => {
            let n = wire::LENGTH_PREFIX_LEN.saturating_sub(bytes.len());
            return format!("incomplete wire frame: needs at least {n} more byte(s)");
        }
        Ok(Some(total)) => total,
    };
    let t = bytes.get(wire::LENGTH_PREFIX_LEN).copied();
    if bytes.len() < total {
        let name = t.map_or("wire", wire::type_name);
        let n = total - bytes.len();
        return format!("incomplete {name} frame: needs {n} more byte(s)");
    }
    let body = bytes.get(FRAME_HEADER_LEN..total).unwrap_or_default();
    if t == Some(wire::msg_type::PIECE) && body.len() > 4 {
        // `frame_len_hint` accepted the header, and a PIECE body with its chunk index and at
        // least one byte is valid (decode_frame checks nothing more): so the line comes from
        // the header, and up to 1 MiB of chunk is not copied.
        let chunk = body.get(..4).map_or(0, be);
        let _ = write!(s, "PIECE chunk={chunk} len={}", body.len() - 4);
    } else {
        match decode_frame(bytes) {
            Ok(Some((m, _))) => wire_line(&mut s, &m),
            Ok(None) => s.push_str("incomplete wire frame"),
            Err(e) => return format!("malformed wire frame: {e}"),
        }
    }
    if bytes.len() > total {
        let _ = write!(s, " (+{} more bytes)", bytes.len() - total);
    }
    s
}

/// Parses hex as people paste it: whitespace, `:` and `,` between bytes are ignored, and each
/// group may start with `0x`. Fails on any other character or an odd number of digits.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::with_capacity(text.len());
    for group in text.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
        let g = group
            .strip_prefix("0x")
            .or_else(|| group.strip_prefix("0X"));
        let g = g.unwrap_or(group);
        if let Some(bad) = g.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("`{}` is not a hex digit", bad.escape_debug()));
        }
        digits.push_str(g);
    }
    if digits.is_empty() {
        return Err("no hex digits".into());
    }
    if digits.len() % 2 == 1 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

/// For serde: `error: false` is left out of the JSON.
fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------------------
// Verdict and layout together.

/// Adds `m` with the walk's fields: combines the decoder's verdict with the layout walk,
/// locates the error, marks its field, and shows the bytes after it as not decoded.
fn finish_message(
    ex: &mut Explanation,
    verdict: Result<(), DecodeError>,
    walk: Walk<()>,
    w: Walker<'_>,
    mut m: ExplainedMessage,
) {
    let (walked_to, mut fields) = (w.pos(), w.fields);
    let input_len = ex.input_len;
    match (verdict, walk) {
        (Ok(()), walk) => ex.layout_agrees &= walk.is_ok() && walked_to == input_len,
        (Err(e), walk) => {
            let stop = walk.err().filter(|s| same_error(&e, &s.err));
            ex.layout_agrees &= stop.is_some();
            let err = match stop {
                Some(s) => {
                    let (kind, message) = (e.kind(), e.to_string());
                    let (offset, field, expected, found) = (s.offset, s.field, s.expected, s.found);
                    ExplainError {
                        offset,
                        field,
                        kind,
                        expected,
                        found,
                        message,
                        decode_error: e,
                    }
                }
                None => generic_error(e, walked_to.min(input_len)),
            };
            mark_error(&mut fields, err.offset);
            if walked_to < input_len {
                not_decoded(&mut fields, walked_to, input_len);
            }
            ex.error = Some(err);
        }
    }
    m.fields = fields;
    ex.messages.push(m);
}

/// A message of `len` bytes at offset 0, its fields still to come.
fn message(
    name: &'static str,
    status: Status,
    summary: String,
    notes: Vec<String>,
    len: usize,
) -> ExplainedMessage {
    ExplainedMessage {
        offset: 0,
        len,
        name: name.into(),
        status,
        summary,
        notes,
        fields: Vec::new(),
    }
}

/// The same error up to wording: the kind, and the field or data that locate it.
fn same_error(a: &DecodeError, b: &DecodeError) -> bool {
    use DecodeError::*;
    match (a, b) {
        (UnexpectedEnd { field: f, .. }, UnexpectedEnd { field: g, .. })
        | (LengthTooLarge { field: f, .. }, LengthTooLarge { field: g, .. })
        | (InvalidValue { field: f, .. }, InvalidValue { field: g, .. }) => f == g,
        _ => a == b,
    }
}

/// An error the layout did not locate (never expected): described from the error alone.
fn generic_error(e: DecodeError, offset: usize) -> ExplainError {
    let (kind, message) = (e.kind(), e.to_string());
    let field = error_field(&e).into();
    let (expected, found) = ("see the decoder's message".into(), String::new());
    ExplainError {
        offset,
        field,
        kind,
        expected,
        found,
        message,
        decode_error: e,
    }
}

/// Marks the deepest field holding byte `offset`, and the groups around it.
fn mark_error(fields: &mut [Field], offset: usize) {
    let hit = fields
        .iter_mut()
        .rev()
        .find(|f| f.offset <= offset && offset < f.offset + f.len);
    if let Some(f) = hit {
        f.error = true;
        mark_error(&mut f.children, offset);
    }
}

/// Shows the bytes `from..to`, which the decoder never reached, as one field.
fn not_decoded(fields: &mut Vec<Field>, from: usize, to: usize) {
    let n = to - from;
    fields.push(Field {
        offset: from,
        len: n,
        name: "(not decoded)".into(),
        value: format!("{n} byte(s)"),
        meaning: "not read: decoding stops at the first error".into(),
        children: Vec::new(),
        error: false,
    });
}

// ---------------------------------------------------------------------------------------
// The table.

impl fmt::Display for Explanation {
    /// The form `peershare decode` prints: a header line; per message its one-line summary,
    /// notes, and a table of offset, length, field, value and meaning; then the error (what
    /// was expected, what was found, the decoder's words) or how many bytes are missing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (&self.error, &self.incomplete) {
            (Some(_), _) => "MALFORMED",
            (None, Some(_)) => "incomplete",
            (None, None) => "valid",
        };
        let n = self.frames;
        let frames = match self.kind {
            Kind::Wire => format!(", {n} frame{}", if n == 1 { "" } else { "s" }),
            _ => String::new(),
        };
        let forced = if self.forced {
            " (kind chosen with --as)"
        } else {
            ""
        };
        let (kind, len) = (self.kind.describe(), self.input_len);
        writeln!(f, "{kind}, {len} bytes{frames}: {verdict}{forced}")?;
        let mut rows = Vec::new();
        for fl in self.messages.iter().flat_map(|m| &m.fields) {
            collect_rows(fl, 0, &mut rows);
        }
        let name_w = rows
            .iter()
            .map(|(d, fl)| d * 2 + fl.name.chars().count())
            .max();
        let name_w = name_w.unwrap_or(0).max(5);
        let value_w = rows.iter().map(|(_, fl)| fl.value.chars().count()).max();
        let value_w = value_w.unwrap_or(0).clamp(5, 66);
        let digits = |n: usize| n.to_string().len();
        let off_w = digits(self.input_len).max(6);
        let len_w = rows
            .iter()
            .map(|(_, fl)| digits(fl.len))
            .max()
            .unwrap_or(0)
            .max(3);
        // Frame numbers: the one folded row (past MAX_FRAMES_SHOWN) stands for many frames.
        let folded = (self.frames + 1).saturating_sub(self.messages.len());
        let mut frame = 1;
        for m in &self.messages {
            writeln!(f)?;
            let (off, len, sum) = (m.offset, m.len, &m.summary);
            match self.kind {
                Kind::Wire if m.name == "…" => {
                    let last = frame + folded - 1;
                    writeln!(f, "frames {frame}-{last}, offset {off}, {len} bytes: {sum}")?;
                    frame += folded;
                }
                Kind::Wire => {
                    writeln!(f, "frame {frame}, offset {off}, {len} bytes: {sum}")?;
                    frame += 1;
                }
                _ => writeln!(f, "{sum}")?,
            }
            for note in &m.notes {
                writeln!(f, "  note: {note}")?;
            }
            let (o, l, n, v) = ("offset", "len", "field", "value");
            writeln!(
                f,
                "{o:>off_w$}  {l:>len_w$}  {n:name_w$}  {v:value_w$}  meaning"
            )?;
            let mut rows = Vec::new();
            for fl in &m.fields {
                collect_rows(fl, 0, &mut rows);
            }
            for (depth, fl) in rows {
                let name = format!("{}{}", "  ".repeat(depth), fl.name);
                let mark = if fl.error && fl.children.is_empty() {
                    "  <-- error"
                } else {
                    ""
                };
                let (o, l, v, mean) = (fl.offset, fl.len, &fl.value, &fl.meaning);
                writeln!(
                    f,
                    "{o:>off_w$}  {l:>len_w$}  {name:name_w$}  {v:value_w$}  {mean}{mark}"
                )?;
            }
        }
        if let Some(e) = &self.error {
            writeln!(f)?;
            writeln!(
                f,
                "MALFORMED at offset {}, field `{}`: {}",
                e.offset, e.field, e.kind
            )?;
            writeln!(f, "  expected: {}", e.expected)?;
            writeln!(f, "  found:    {}", e.found)?;
            writeln!(f, "  decoder:  {}", e.message)?;
            // A first "length" above any frame's: maybe not wire frames at all.
            let absurd =
                matches!(e.decode_error, DecodeError::TooLarge { max, .. } if max == MAX_FRAME_LEN);
            if !self.forced && self.kind == Kind::Wire && e.offset == 0 && absurd {
                let why = "it does not start with \"PS\", \"PSWP\", \"PSMF\" or \"PSTR\"";
                writeln!(f, "  (read as wire frames because {why}; choose with --as)")?;
            }
        }
        if let Some(i) = &self.incomplete {
            let more = if i.at_least { "at least " } else { "" };
            let (off, need, have) = (i.offset, i.needed, i.have);
            writeln!(f)?;
            writeln!(f, "incomplete: the frame at offset {off} needs {more}{need} more byte(s) ({have} present)")?;
        }
        Ok(())
    }
}

fn collect_rows<'a>(fl: &'a Field, depth: usize, out: &mut Vec<(usize, &'a Field)>) {
    out.push((depth, fl));
    for c in &fl.children {
        collect_rows(c, depth + 1, out);
    }
}

#[cfg(test)]
mod tests;
