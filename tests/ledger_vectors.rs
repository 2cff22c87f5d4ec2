//! Checks the test vector of `protocol-spec/ledger.md` (section 14) against the ledger code,
//! and against the published standards the spec names, computed here directly:
//!
//! - the mnemonic's BIP-39 seed, SLIP-0010 secret key, Ed25519 public key and address;
//! - the record's body (also the annotated example of section 5), signature and hash;
//! - the two-record ledger printed in the spec verifies as a ledger, and answers as the
//!   spec says; changing any byte of it is detected.
//!
//! A vector missing from the spec is a failure, not a pass.

mod common;

use std::collections::BTreeMap;

use common::vectors::{example_hex, read_spec_file};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use peershare::id::Id;
use peershare::ledger::keys::{slip10_master_secret, Address, Mnemonic};
use peershare::ledger::log::{Access, LogLedger, HEAD_FILE, LOG_FILE};
use peershare::ledger::record::Record;
use peershare::ledger::{Ledger, LedgerError, Metadata};

const DOC: &str = "ledger.md";

/// The lines of the first code block after the first line that starts with `marker`.
fn block_after(lines: &[&str], marker: &str) -> Vec<String> {
    let start = lines
        .iter()
        .position(|l| l.starts_with(marker))
        .unwrap_or_else(|| panic!("{DOC}: no line starting with {marker:?}"));
    let open = (start + 1..lines.len())
        .find(|&i| lines[i].trim_start().starts_with("```"))
        .unwrap_or_else(|| panic!("{DOC}: no code block after {marker:?}"));
    let mut out = Vec::new();
    for l in &lines[open + 1..] {
        if l.trim_start().starts_with("```") {
            return out;
        }
        out.push((*l).to_owned());
    }
    panic!("{DOC}: unclosed code block after {marker:?}");
}

/// The `key value` lines of the vector block.
fn vector() -> BTreeMap<String, String> {
    let text = read_spec_file(DOC);
    let lines: Vec<&str> = text.lines().collect();
    let mut v = BTreeMap::new();
    for l in block_after(&lines, "## 14. Test vector `ledger-1`") {
        let (k, rest) = l
            .split_once(' ')
            .unwrap_or_else(|| panic!("{DOC}: vector line without a value: {l}"));
        assert!(
            v.insert(k.to_owned(), rest.trim().to_owned()).is_none(),
            "duplicate {k}"
        );
    }
    for k in [
        "mnemonic",
        "seed",
        "secret_key",
        "public_key",
        "address",
        "seq",
        "time",
        "file_hash",
        "metadata",
        "body",
        "signature",
        "record_hash",
    ] {
        assert!(v.contains_key(k), "{DOC}: vector `ledger-1` has no {k}");
    }
    v
}

fn unhex(v: &BTreeMap<String, String>, k: &str) -> Vec<u8> {
    let s = &v[k];
    assert!(
        !s.bytes().any(|b| b.is_ascii_uppercase()),
        "{k}: lower-case hex"
    );
    hex::decode(s).unwrap_or_else(|e| panic!("{k}: {e}"))
}

#[test]
fn keys_follow_bip39_and_slip10() {
    let v = vector();
    let m = Mnemonic::new(&v["mnemonic"]).unwrap();

    // BIP-39, computed here from its definition.
    let mut seed = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(v["mnemonic"].as_bytes(), b"mnemonic", 2048, &mut seed);
    assert_eq!(seed.to_vec(), unhex(&v, "seed"));
    assert_eq!(m.seed().to_vec(), unhex(&v, "seed"));

    // SLIP-0010 master key for ed25519.
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(b"ed25519 seed").unwrap();
    mac.update(&seed);
    let i = mac.finalize().into_bytes();
    assert_eq!(i[..32].to_vec(), unhex(&v, "secret_key"));
    assert_eq!(
        slip10_master_secret(&seed).to_vec(),
        unhex(&v, "secret_key")
    );

    // RFC 8032 public key.
    let secret: [u8; 32] = i[..32].try_into().unwrap();
    let public = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
    assert_eq!(public.to_vec(), unhex(&v, "public_key"));
    let key = m.derive();
    assert_eq!(key.public_key(), public);

    // The address: "ps" + hex(public key ‖ first 4 bytes of SHA-256(tag ‖ public key)).
    let sum = Sha256::new()
        .chain_update(b"peershare-address")
        .chain_update(public)
        .finalize();
    let expected = format!("ps{}{}", hex::encode(public), hex::encode(&sum[..4]));
    assert_eq!(expected, v["address"]);
    assert_eq!(key.address().as_str(), v["address"]);
    assert_eq!(Address::parse(&v["address"]).unwrap(), *key.address());
}

#[test]
fn record_body_signature_and_hash() {
    let v = vector();
    let key = Mnemonic::new(&v["mnemonic"]).unwrap().derive();
    let meta_value: serde_json::Value = serde_json::from_str(&v["metadata"]).unwrap();
    let metadata = Metadata::from_value(&meta_value).unwrap();
    assert_eq!(
        metadata.canonical(),
        v["metadata"],
        "metadata must be canonical"
    );
    let seq: u64 = v["seq"].parse().unwrap();
    let time: u64 = v["time"].parse().unwrap();
    let file_hash = Id::from_hex(&v["file_hash"]).unwrap();

    // The body, field by field as section 5 lays it out.
    let body = unhex(&v, "body");
    assert_eq!(&body[..26], b"peershare-ledger-record-v1");
    assert_eq!(body[26..34], seq.to_be_bytes());
    assert_eq!(body[34..66], [0u8; 32]);
    assert_eq!(body[66..74], time.to_be_bytes());
    assert_eq!(body[74..106], file_hash.0);
    assert_eq!(body[106..138], key.public_key());
    let n = u32::from_be_bytes(body[138..142].try_into().unwrap()) as usize;
    assert_eq!(&body[142..], v["metadata"].as_bytes());
    assert_eq!(body.len(), 142 + n);

    // The annotated example in section 5 is the same body.
    let text = read_spec_file(DOC);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Example (vector `ledger-1`"))
        .expect("ledger.md: no body example");
    let (example, _) = example_hex(DOC, &lines, at, "ledger-1");
    assert_eq!(example, v["body"]);

    // Signature (deterministic Ed25519) and record hash.
    let sig: [u8; 64] = unhex(&v, "signature").try_into().unwrap();
    let vk = VerifyingKey::from_bytes(&key.public_key()).unwrap();
    vk.verify_strict(&body, &Signature::from_bytes(&sig))
        .expect("the vector's signature verifies");
    let hash = Sha256::new()
        .chain_update(&body)
        .chain_update(sig)
        .finalize();
    assert_eq!(hash.to_vec(), unhex(&v, "record_hash"));

    // The ledger code produces exactly these bytes.
    let r = Record::sign(seq, [0; 32], time, file_hash, &key, metadata);
    assert_eq!(r.body(), body);
    assert_eq!(r.signature, sig);
    assert_eq!(r.hash.to_vec(), unhex(&v, "record_hash"));
}

/// The ledger files printed in section 14.
fn spec_ledger() -> (Vec<u8>, Vec<u8>) {
    let text = read_spec_file(DOC);
    let lines: Vec<&str> = text.lines().collect();
    let mut log = block_after(&lines, "`ledger/ledger.jsonl`:").join("\n");
    log.push('\n');
    let mut head = block_after(&lines, "`ledger/head.json`:").join("\n");
    head.push('\n');
    (log.into_bytes(), head.into_bytes())
}

#[test]
fn the_spec_ledger_verifies_and_answers() {
    let v = vector();
    let (log, head) = spec_ledger();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(LOG_FILE), &log).unwrap();
    std::fs::write(d.path().join(HEAD_FILE), &head).unwrap();
    let l = LogLedger::new(d.path().to_path_buf(), Access::ReadOnly);
    let report = l.check().unwrap();
    assert_eq!(report.records, 2);
    assert!(report.notes.is_empty());

    // Line 1 is the vector's record.
    let first = log.split(|&b| b == b'\n').next().unwrap();
    let r = Record::from_line(first).unwrap();
    assert_eq!(r.hash.to_vec(), unhex(&v, "record_hash"));
    assert_eq!(r.owner.as_str(), v["address"]);

    let file_hash = Id::from_hex(&v["file_hash"]).unwrap();
    let answer = l.verify(&file_hash, Some(&v["address"])).unwrap();
    assert_eq!(answer.owners.len(), 1);
    let o = &answer.owners[0];
    assert_eq!(o.latest.record, 2);
    assert_eq!(o.latest.registered_at, 1_700_000_060);
    assert_eq!(o.first_registered_at, 1_700_000_000);
    assert_eq!(
        o.latest.metadata.canonical(),
        r#"{"title":"Kick (remaster)"}"#
    );
    assert_eq!(report.head_hash, o.latest.record_hash);

    // Any changed byte of the log is detected.
    for i in 0..log.len() {
        let mut bad = log.clone();
        bad[i] ^= 0x01;
        std::fs::write(d.path().join(LOG_FILE), &bad).unwrap();
        let r = LogLedger::new(d.path().to_path_buf(), Access::ReadOnly).check();
        assert!(matches!(r, Err(LedgerError::Damaged(_))), "byte {i}: {r:?}");
    }
}
