//! Checks the DHT test vectors of `protocol-spec/vectors/` against the codec, and the hex
//! examples printed in `protocol-spec/dht.md` against those vectors.
//!
//! - `dht.txt` (`NAME HEX`): every datagram decodes, its message type is the one the name
//!   starts with, and re-encoding the decoded value gives the same bytes.
//! - `dht-invalid.txt` (`NAME ERROR HEX`): decoding fails with the named `DecodeError` kind.
//!
//! A missing or empty file is a failure, not a pass: a test that cannot fail checks nothing.

mod common;

use common::vectors::{example_hex, load_invalid, load_valid, prefix, read_spec_file};
use std::collections::{BTreeMap, BTreeSet};

use peershare::proto::codec::DecodeError;
use peershare::proto::dht::{self, msg_type, Datagram, MAX_DATAGRAM};

/// Every `DecodeError` kind, as named in `dht-invalid.txt`.
const ERROR_KINDS: [&str; 9] = DecodeError::KINDS;

#[test]
fn valid_vectors_decode_and_reencode_byte_exact() {
    let vectors = load_valid("vectors/dht.txt");
    for v in &vectors {
        let d = Datagram::decode(&v.bytes)
            .unwrap_or_else(|e| panic!("vector {}: decode failed: {e}", v.name));
        assert_eq!(
            d.msg.name().to_lowercase(),
            prefix(&v.name),
            "vector {}: decoded as {}",
            v.name,
            d.msg.name()
        );
        assert_eq!(
            hex::encode(d.encode()),
            hex::encode(&v.bytes),
            "vector {}: re-encoding differs",
            v.name
        );
        assert_eq!(
            d.encoded_len(),
            v.bytes.len(),
            "vector {}: encoded_len",
            v.name
        );
    }
    println!("{} valid DHT vectors checked", vectors.len());
}

#[test]
fn invalid_vectors_fail_with_the_named_error() {
    let vectors = load_invalid("vectors/dht-invalid.txt", &ERROR_KINDS);
    for v in &vectors {
        match Datagram::decode(&v.bytes) {
            Ok(d) => panic!("vector {}: decoded as {d:?}, expected {}", v.name, v.error),
            Err(e) => assert_eq!(e.kind(), v.error, "vector {}: got `{e}`", v.name),
        }
    }
    println!("{} invalid DHT vectors checked", vectors.len());
}

#[test]
fn every_error_kind_has_an_invalid_vector() {
    let vectors = load_invalid("vectors/dht-invalid.txt", &ERROR_KINDS);
    let covered: BTreeSet<&str> = vectors.iter().map(|v| v.error.as_str()).collect();
    for k in ERROR_KINDS {
        // TooLarge needs 1233 bytes; `oversized_datagrams_are_too_large` generates it.
        if k == "TooLarge" {
            continue;
        }
        assert!(
            covered.contains(k),
            "no vector in dht-invalid.txt expects {k}"
        );
    }
}

#[test]
fn oversized_datagrams_are_too_large() {
    let vectors = load_valid("vectors/dht.txt");
    let max = vectors
        .iter()
        .find(|v| v.name == "providers-exactly-1232-bytes")
        .expect("dht.txt lacks providers-exactly-1232-bytes");
    assert_eq!(max.bytes.len(), MAX_DATAGRAM);
    // One byte more than the limit: TooLarge, not TrailingBytes, because size is checked first.
    let mut over = max.bytes.clone();
    over.push(0);
    let e = Datagram::decode(&over).expect_err("1233-byte datagram accepted");
    assert_eq!(e.kind(), "TooLarge", "got `{e}`");
    // Size is checked even before the magic.
    let e = Datagram::decode(&[0u8; MAX_DATAGRAM + 1]).expect_err("1233 zero bytes accepted");
    assert_eq!(e.kind(), "TooLarge", "got `{e}`");
}

#[test]
fn every_message_type_has_a_valid_vector() {
    let all = [
        msg_type::PING,
        msg_type::PONG,
        msg_type::FIND_NODE,
        msg_type::NODES,
        msg_type::GET_PROVIDERS,
        msg_type::PROVIDERS,
        msg_type::ANNOUNCE,
        msg_type::ACK,
        // NAT traversal (nat.md)
        msg_type::DIALBACK,
        msg_type::DIALBACK_ACK,
        msg_type::REGISTER,
        msg_type::REGISTERED,
        msg_type::INTRODUCE,
        msg_type::INTRODUCED,
        msg_type::CALL,
        msg_type::CALL_ACK,
        // reprovide sweep (dht.md 4.9a, 4.9b)
        msg_type::ANNOUNCE_MANY,
        msg_type::STORED,
        // proof of identity (dht.md 4.10, 4.11)
        msg_type::PROVE,
        msg_type::PROOF,
        msg_type::ERROR,
    ];
    // The list above must be every type the codec names; a type added to the codec (and to
    // `type_name`) without a vector fails here.
    let named: BTreeSet<u8> = (0..=255u8)
        .filter(|&t| dht::type_name(t) != "UNKNOWN")
        .collect();
    assert_eq!(named, all.iter().copied().collect::<BTreeSet<u8>>());

    let vectors = load_valid("vectors/dht.txt");
    let mut by_type: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
    for v in &vectors {
        let d = Datagram::decode(&v.bytes)
            .unwrap_or_else(|e| panic!("vector {}: decode failed: {e}", v.name));
        by_type
            .entry(d.msg.type_byte())
            .or_default()
            .push(v.name.as_str());
    }
    for t in all {
        assert!(
            by_type.contains_key(&t),
            "no valid vector for {} (0x{t:02x})",
            dht::type_name(t)
        );
    }
}

/// The annotated examples in `dht.md`: after a line containing "(vector `NAME`", a fenced
/// block whose lines each start with a run of hex digits (the bytes) followed by a comment.
/// The bytes of the block, concatenated, must equal vector NAME.
#[test]
fn examples_in_dht_md_match_the_vectors() {
    let vectors = load_valid("vectors/dht.txt");
    let doc = read_spec_file("dht.md");
    let lines: Vec<&str> = doc.lines().collect();
    let mut checked = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(start) = lines[i].find("(vector `") else {
            i += 1;
            continue;
        };
        let rest = &lines[i][start + "(vector `".len()..];
        let name = rest.split('`').next().unwrap_or("");
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("dht.md:{}: no vector named `{name}`", i + 1));
        let (hex, end) = example_hex("dht.md", &lines, i, name);
        i = end;
        assert_eq!(
            hex,
            hex::encode(&v.bytes),
            "dht.md: example for vector `{name}` differs from dht.txt"
        );
        checked.insert(name.to_owned());
        i += 1;
    }
    assert!(!checked.is_empty(), "dht.md has no checked examples");
    // Every message type has an example in the chapter.
    let types: BTreeSet<&str> = checked.iter().map(|n| prefix(n)).collect();
    for t in [
        "ping",
        "pong",
        "find_node",
        "nodes",
        "get_providers",
        "providers",
        "announce",
        "ack",
        "announce_many",
        "stored",
        "error",
    ] {
        assert!(types.contains(t), "dht.md has no example for {t}");
    }
}
