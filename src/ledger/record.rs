//! One ledger record: its canonical signed body, its signature and hash, and its on-disk
//! line (`protocol-spec/ledger.md`, sections 5 and 6). No I/O here.
//!
//! - The **body** is binary and unambiguous: a domain tag, then fixed-size big-endian
//!   fields, then the metadata's canonical JSON with a length prefix. The owner signs it.
//! - The **record hash** is SHA-256(body ‖ signature); the next record names it as `prev`.
//! - The **line** is the record as one canonical JSON object (fixed field order, no
//!   whitespace) so the ledger file is readable. [`Record::from_line`] accepts a line only if
//!   re-encoding the parsed record gives back exactly the same bytes, so changing any byte of
//!   a line is detected, even a change that would not alter the meaning.

use std::fmt;
use std::fmt::Write as _;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::id::Id;
use crate::ledger::keys::{Address, OwnerKey};

/// Largest metadata accepted, in bytes of its canonical JSON encoding.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The domain tag that starts every signed body (so a signature over a body can never be
/// mistaken for a signature over anything else).
pub const BODY_TAG: &[u8] = b"peershare-ledger-record-v1";
/// Longest possible line (without its `\n`): the metadata plus under 700 bytes of fields.
pub const MAX_LINE_BYTES: usize = MAX_METADATA_BYTES + 1024;

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// It is not a JSON object.
    NotAnObject {
        /// What it is instead ("a string", "an array", ...).
        got: &'static str,
    },
    /// Its canonical encoding is larger than [`MAX_METADATA_BYTES`].
    TooLarge {
        /// Its encoded size in bytes.
        len: usize,
    },
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::NotAnObject { got } => write!(
                f,
                "metadata must be a JSON object (use {{}} for none), got {got}"
            ),
            MetadataError::TooLarge { len } => write!(
                f,
                "metadata is {len} bytes encoded; at most {MAX_METADATA_BYTES} are accepted"
            ),
        }
    }
}

impl std::error::Error for MetadataError {}

/// A record's metadata: a JSON object and its canonical encoding (at most
/// [`MAX_METADATA_BYTES`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata {
    map: Map<String, Value>,
    canonical: String,
}

impl Metadata {
    /// Checks a JSON value: it must be an object of bounded size.
    pub fn from_value(v: &Value) -> Result<Metadata, MetadataError> {
        match v {
            Value::Object(m) => Metadata::from_map(m.clone()),
            other => Err(MetadataError::NotAnObject {
                got: json_kind(other),
            }),
        }
    }

    /// Checks an object's size.
    pub fn from_map(map: Map<String, Value>) -> Result<Metadata, MetadataError> {
        let mut canonical = String::new();
        write_canonical_object(&map, &mut canonical);
        if canonical.len() > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge {
                len: canonical.len(),
            });
        }
        Ok(Metadata { map, canonical })
    }

    /// No metadata: `{}`.
    pub fn empty() -> Metadata {
        Metadata {
            map: Map::new(),
            canonical: "{}".to_owned(),
        }
    }

    /// The object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The canonical encoding (what is signed).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metadata({})", self.canonical)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends the canonical JSON encoding of `v`: no whitespace, object keys sorted by their
/// UTF-8 bytes, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
/// control characters as `\u00xx`; everything else as UTF-8), numbers as serde_json prints
/// them (integers in decimal, others in the shortest form that reads back the same).
pub fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => write_canonical_object(m, out),
    }
}

fn write_canonical_object(m: &Map<String, Value>, out: &mut String) {
    // Sorted here rather than trusting the map's order: serde_json keeps insertion order
    // when any crate in the build enables its `preserve_order` feature.
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_canonical(v, out);
    }
    out.push('}');
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a line is not a valid record. (Whether it fits the chain — its sequence number and
/// `prev` — is the log's check, not this one's.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Longer than [`MAX_LINE_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not a JSON object with exactly the record's fields.
    NotJson(String),
    /// A field has the wrong form.
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The metadata is not acceptable.
    Metadata(MetadataError),
    /// The owner address is not the address of the public key.
    AddressMismatch,
    /// The public key is not a valid Ed25519 point.
    BadPublicKey,
    /// Re-encoding the record does not give the line's bytes.
    NotCanonical,
    /// The signature does not verify.
    BadSignature,
    /// The stored hash is not SHA-256(body ‖ signature).
    HashMismatch,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLong { len } => write!(
                f,
                "the line is {len} bytes, longer than any record can be ({MAX_LINE_BYTES})"
            ),
            RecordError::NotJson(e) => write!(f, "not a valid record ({e})"),
            RecordError::BadField { field, why } => write!(f, "field `{field}` {why}"),
            RecordError::Metadata(e) => write!(f, "{e}"),
            RecordError::AddressMismatch => {
                f.write_str("its owner address does not belong to its public key")
            }
            RecordError::BadPublicKey => f.write_str("its public key is not a valid Ed25519 key"),
            RecordError::NotCanonical => f.write_str(
                "its bytes are not in canonical form (the line was edited by hand or damaged)",
            ),
            RecordError::BadSignature => f.write_str(
                "its signature does not verify (the record was altered, or signed by another key)",
            ),
            RecordError::HashMismatch => f.write_str("its record hash does not match its contents"),
        }
    }
}

impl std::error::Error for RecordError {}

/// A signed, hashed ledger record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// Hash of the previous record; 32 zero bytes for record 1.
    pub prev: [u8; 32],
    /// When it was registered, in Unix seconds.
    pub time: u64,
    /// The content ID registered.
    pub file_hash: Id,
    /// The owner's address (a function of `public_key`; stored for readers).
    pub owner: Address,
    /// The owner's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The owner's metadata.
    pub metadata: Metadata,
    /// Ed25519 signature of [`Record::body`] by `public_key`.
    pub signature: [u8; 64],
    /// SHA-256(body ‖ signature).
    pub hash: [u8; 32],
}

/// The on-disk line, as parsed before any check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    prev: String,
    time: u64,
    file_hash: String,
    owner: String,
    public_key: String,
    metadata: Map<String, Value>,
    signature: String,
    hash: String,
}

/// The signed bytes of a record (see `protocol-spec/ledger.md`, section 5).
pub fn body_bytes(
    seq: u64,
    prev: &[u8; 32],
    time: u64,
    file_hash: &Id,
    public_key: &[u8; 32],
    metadata: &Metadata,
) -> Vec<u8> {
    let m = metadata.canonical().as_bytes();
    let mut b = Vec::with_capacity(BODY_TAG.len() + 116 + m.len());
    b.extend_from_slice(BODY_TAG);
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(prev);
    b.extend_from_slice(&time.to_be_bytes());
    b.extend_from_slice(&file_hash.0);
    b.extend_from_slice(public_key);
    // Metadata is bounded to 16 KiB, so its length always fits in a u32.
    b.extend_from_slice(&u32::try_from(m.len()).unwrap_or(u32::MAX).to_be_bytes());
    b.extend_from_slice(m);
    b
}

/// SHA-256(body ‖ signature).
pub fn record_hash(body: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    Sha256::new()
        .chain_update(body)
        .chain_update(signature)
        .finalize()
        .into()
}

impl Record {
    /// Builds and signs a record.
    pub fn sign(
        seq: u64,
        prev: [u8; 32],
        time: u64,
        file_hash: Id,
        key: &OwnerKey,
        metadata: Metadata,
    ) -> Record {
        let public_key = key.public_key();
        let body = body_bytes(seq, &prev, time, &file_hash, &public_key, &metadata);
        let signature = key.signing_key().sign(&body).to_bytes();
        let hash = record_hash(&body, &signature);
        Record {
            seq,
            prev,
            time,
            file_hash,
            owner: key.address().clone(),
            public_key,
            metadata,
            signature,
            hash,
        }
    }

    /// The signed bytes.
    pub fn body(&self) -> Vec<u8> {
        body_bytes(
            self.seq,
            &self.prev,
            self.time,
            &self.file_hash,
            &self.public_key,
            &self.metadata,
        )
    }

    /// The canonical line (without its `\n`).
    pub fn to_line(&self) -> String {
        format!(
            "{{\"seq\":{},\"prev\":\"{}\",\"time\":{},\"file_hash\":\"{}\",\"owner\":\"{}\",\"public_key\":\"{}\",\"metadata\":{},\"signature\":\"{}\",\"hash\":\"{}\"}}",
            self.seq,
            hex::encode(self.prev),
            self.time,
            self.file_hash.to_hex(),
            self.owner,
            hex::encode(self.public_key),
            self.metadata.canonical(),
            hex::encode(self.signature),
            hex::encode(self.hash),
        )
    }

    /// Parses one line (without its `\n`) and checks everything a record can check alone:
    /// its form, that it is canonical, its address, signature and hash.
    pub fn from_line(line: &[u8]) -> Result<Record, RecordError> {
        if line.len() > MAX_LINE_BYTES {
            return Err(RecordError::TooLong { len: line.len() });
        }
        let l: Line =
            serde_json::from_slice(line).map_err(|e| RecordError::NotJson(e.to_string()))?;
        let prev = hex_array::<32>("prev", &l.prev)?;
        let file_hash = Id::from_hex(&l.file_hash).map_err(|e| RecordError::BadField {
            field: "file_hash",
            why: e.to_string(),
        })?;
        let public_key = hex_array::<32>("public_key", &l.public_key)?;
        let signature = hex_array::<64>("signature", &l.signature)?;
        let hash = hex_array::<32>("hash", &l.hash)?;
        let owner = Address::from_public_key(&public_key);
        if !l.owner.eq_ignore_ascii_case(owner.as_str()) {
            return Err(RecordError::AddressMismatch);
        }
        let metadata = Metadata::from_map(l.metadata).map_err(RecordError::Metadata)?;
        let record = Record {
            seq: l.seq,
            prev,
            time: l.time,
            file_hash,
            owner,
            public_key,
            metadata,
            signature,
            hash,
        };
        if record.to_line().as_bytes() != line {
            return Err(RecordError::NotCanonical);
        }
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| RecordError::BadPublicKey)?;
        let body = record.body();
        key.verify_strict(&body, &Signature::from_bytes(&signature))
            .map_err(|_| RecordError::BadSignature)?;
        if record_hash(&body, &signature) != hash {
            return Err(RecordError::HashMismatch);
        }
        Ok(record)
    }
}

fn hex_array<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], RecordError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(RecordError::BadField {
            field,
            why: format!("must be {} hex digits, got {} characters", 2 * N, s.len()),
        });
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| RecordError::BadField {
        field,
        why: "must contain only hex digits".to_owned(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::keys::Mnemonic;
    use serde_json::json;

    fn key() -> OwnerKey {
        Mnemonic::new("test owner one").unwrap().derive()
    }

    fn meta(v: Value) -> Metadata {
        Metadata::from_value(&v).unwrap()
    }

    fn sample() -> Record {
        Record::sign(
            1,
            [0; 32],
            1_700_000_000,
            Id([7; 32]),
            &key(),
            meta(json!({"title": "Kick \"808\"\n", "bpm": 120, "tags": ["drum", "é"]})),
        )
    }

    #[test]
    fn canonical_json() {
        let v = json!({"b": [1, 2.5, null, true], "a": {"z": "x", "é": "\u{1}\t/"}, "A": -3});
        let mut s = String::new();
        write_canonical(&v, &mut s);
        assert_eq!(
            s,
            r#"{"A":-3,"a":{"z":"x","é":"\u0001\t/"},"b":[1,2.5,null,true]}"#
        );
        // Canonical output reads back to the same value and re-encodes identically.
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        let mut again = String::new();
        write_canonical(&back, &mut again);
        assert_eq!(again, s);
        // serde_json agrees on every string escape.
        let tricky = Value::String((0u8..0x80).map(char::from).collect::<String>() + "\u{7f}é☃");
        let mut mine = String::new();
        write_canonical(&tricky, &mut mine);
        assert_eq!(mine, serde_json::to_string(&tricky).unwrap());
    }

    #[test]
    fn metadata_checks() {
        assert_eq!(Metadata::empty(), meta(json!({})));
        assert_eq!(
            Metadata::from_value(&json!("{}")),
            Err(MetadataError::NotAnObject { got: "a string" })
        );
        assert_eq!(
            Metadata::from_value(&json!([1])),
            Err(MetadataError::NotAnObject { got: "an array" })
        );
        assert_eq!(
            Metadata::from_value(&Value::Null),
            Err(MetadataError::NotAnObject { got: "null" })
        );
        let just_fits = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 8) });
        assert_eq!(
            Metadata::from_value(&just_fits).unwrap().canonical().len(),
            MAX_METADATA_BYTES
        );
        let too_big = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 7) });
        assert_eq!(
            Metadata::from_value(&too_big),
            Err(MetadataError::TooLarge {
                len: MAX_METADATA_BYTES + 1
            })
        );
    }

    #[test]
    fn body_layout() {
        let r = sample();
        let b = r.body();
        assert_eq!(&b[..26], BODY_TAG);
        assert_eq!(&b[26..34], &1u64.to_be_bytes());
        assert_eq!(&b[34..66], &[0u8; 32]);
        assert_eq!(&b[66..74], &1_700_000_000u64.to_be_bytes());
        assert_eq!(&b[74..106], &[7u8; 32]);
        assert_eq!(&b[106..138], &r.public_key);
        let m = r.metadata.canonical().as_bytes();
        assert_eq!(&b[138..142], &(m.len() as u32).to_be_bytes());
        assert_eq!(&b[142..], m);
    }

    #[test]
    fn line_round_trip() {
        let r = sample();
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(Record::from_line(line.as_bytes()).unwrap(), r);
        // The line is valid JSON that any reader can parse.
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["owner"], r.owner.as_str());
        assert_eq!(v["metadata"]["bpm"], 120);
    }

    /// Found by fuzzing (tools/fuzz, target ledger_record): a number whose shortest form
    /// read back as a neighbouring float (serde_json's default parser is not correctly
    /// rounded), so a registration with it wrote a line that the next load called damaged.
    #[test]
    fn float_metadata_survives_a_reload() {
        let input = br#"{"hn":-0.0,"big":21e300,"s":"titl\n\u0001"}"#;
        let v: Value = serde_json::from_slice(input).unwrap();
        let m = Metadata::from_value(&v).unwrap();
        let back: Value = serde_json::from_str(m.canonical()).unwrap();
        assert_eq!(
            Metadata::from_value(&back).unwrap().canonical(),
            m.canonical()
        );
        let r = Record::sign(1, [0; 32], 1_700_000_000, Id([7; 32]), &key(), m);
        assert_eq!(Record::from_line(r.to_line().as_bytes()), Ok(r));
    }

    #[test]
    fn every_changed_byte_is_detected() {
        let line = sample().to_line().into_bytes();
        for i in 0..line.len() {
            for flip in [0x01u8, 0x20] {
                let mut t = line.clone();
                t[i] ^= flip;
                assert!(
                    Record::from_line(&t).is_err(),
                    "byte {i} ^ {flip:#x} went unnoticed: {}",
                    String::from_utf8_lossy(&t)
                );
            }
        }
    }

    fn tampered(f: impl FnOnce(&mut Value)) -> Result<Record, RecordError> {
        let mut v: Value = serde_json::from_str(&sample().to_line()).unwrap();
        f(&mut v);
        // Re-encode canonically so only the semantic change remains.
        let mut s = String::new();
        // Field order matters for canonical form: rebuild it in the record's order.
        s.push('{');
        for (i, k) in [
            "seq",
            "prev",
            "time",
            "file_hash",
            "owner",
            "public_key",
            "metadata",
            "signature",
            "hash",
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                s.push(',');
            }
            write_string(k, &mut s);
            s.push(':');
            write_canonical(&v[*k], &mut s);
        }
        s.push('}');
        Record::from_line(s.as_bytes())
    }

    #[test]
    fn each_field_is_covered() {
        let other = Mnemonic::new("someone else").unwrap().derive();
        assert!(tampered(|_| {}).is_ok());
        for (name, f, want) in [
            (
                "seq",
                Box::new(|v: &mut Value| v["seq"] = json!(2)) as Box<dyn FnOnce(&mut Value)>,
                RecordError::BadSignature,
            ),
            (
                "prev",
                Box::new(|v: &mut Value| v["prev"] = json!("11".repeat(32))),
                RecordError::BadSignature,
            ),
            (
                "time",
                Box::new(|v: &mut Value| v["time"] = json!(1_700_000_001u64)),
                RecordError::BadSignature,
            ),
            (
                "file_hash",
                Box::new(|v: &mut Value| v["file_hash"] = json!("08".repeat(32))),
                RecordError::BadSignature,
            ),
            (
                "metadata",
                Box::new(|v: &mut Value| v["metadata"]["bpm"] = json!(121)),
                RecordError::BadSignature,
            ),
            (
                "owner",
                Box::new({
                    let a = other.address().to_string();
                    move |v: &mut Value| v["owner"] = json!(a)
                }),
                RecordError::AddressMismatch,
            ),
            (
                "public_key+owner",
                Box::new({
                    let a = other.address().to_string();
                    let k = hex::encode(other.public_key());
                    move |v: &mut Value| {
                        v["owner"] = json!(a);
                        v["public_key"] = json!(k);
                    }
                }),
                RecordError::BadSignature,
            ),
            (
                "hash",
                Box::new(|v: &mut Value| v["hash"] = json!("00".repeat(32))),
                RecordError::HashMismatch,
            ),
            (
                "signature",
                Box::new(|v: &mut Value| v["signature"] = json!("00".repeat(64))),
                RecordError::BadSignature,
            ),
        ] {
            assert_eq!(tampered(f).unwrap_err(), want, "{name}");
        }
    }

    #[test]
    fn a_record_re_signed_by_another_key_is_valid_but_names_that_owner() {
        // The signature binds the record to its public key; the address shows whose it is.
        let other = Mnemonic::new("someone else").unwrap().derive();
        let r = Record::sign(1, [0; 32], 5, Id([7; 32]), &other, Metadata::empty());
        let back = Record::from_line(r.to_line().as_bytes()).unwrap();
        assert_eq!(&back.owner, other.address());
        assert_ne!(&back.owner, key().address());
    }

    #[test]
    fn malformed_lines() {
        assert!(matches!(
            Record::from_line(b"not json"),
            Err(RecordError::NotJson(_))
        ));
        assert!(matches!(
            Record::from_line(b"{}"),
            Err(RecordError::NotJson(_))
        ));
        let long = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(
            Record::from_line(&long),
            Err(RecordError::TooLong {
                len: MAX_LINE_BYTES + 1
            })
        );
        // An extra field is refused.
        let line = sample().to_line();
        let extra = line.replacen('{', "{\"x\":1,", 1);
        assert!(matches!(
            Record::from_line(extra.as_bytes()),
            Err(RecordError::NotJson(_))
        ));
        // Extra whitespace keeps the meaning but is still an edit.
        let spaced = line.replacen("\"seq\":1", "\"seq\": 1", 1);
        assert_eq!(
            Record::from_line(spaced.as_bytes()),
            Err(RecordError::NotCanonical)
        );
        // Short hex.
        let short = line.replacen(&hex::encode([0u8; 32]), "00", 1);
        assert!(matches!(
            Record::from_line(short.as_bytes()),
            Err(RecordError::BadField { field: "prev", .. })
        ));
    }
}
