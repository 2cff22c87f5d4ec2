//! Checks the wire protocol test vectors of `protocol-spec/vectors/` against the codec, and
//! the hex examples printed in `protocol-spec/wire.md` against those vectors.
//!
//! - `wire.txt` (`NAME HEX`): every vector is one whole frame that decodes consuming all its
//!   bytes, has the message type its name starts with, and re-encodes to the same bytes; every
//!   strict prefix of it is an incomplete frame (`Ok(None)`), never an error.
//! - `wire-invalid.txt` (`NAME ERROR HEX`): decoding fails with the named `DecodeError` kind,
//!   and no prefix of the vector gives a different answer than "incomplete" or that error.
//!
//! A missing or empty file is a failure, not a pass: a test that cannot fail checks nothing.

mod common;

use common::vectors::{example_hex, load_invalid, load_valid, prefix, read_spec_file, Valid};
use std::collections::{BTreeMap, BTreeSet};

use peershare::proto::wire::{
    self, decode_frame, frame_len_hint, msg_type, Message, MAX_CHUNK_SIZE, MAX_FRAME_LEN,
};

/// Every `DecodeError` kind the wire decoder can report. `BadMagic` is missing on purpose: it
/// holds the DHT's two-byte magic, so a wrong HANDSHAKE magic is an `InvalidValue`.
const WIRE_ERROR_KINDS: [&str; 8] = [
    "UnexpectedEnd",
    "UnsupportedVersion",
    "UnknownMessageType",
    "LengthTooLarge",
    "BadAddressFamily",
    "InvalidValue",
    "TrailingBytes",
    "TooLarge",
];

/// Decodes a vector that must be exactly one valid frame.
fn decode_whole(v: &Valid) -> Message {
    match decode_frame(&v.bytes) {
        Ok(Some((msg, consumed))) => {
            assert_eq!(
                consumed,
                v.bytes.len(),
                "vector {}: the frame is {consumed} bytes but the vector {}",
                v.name,
                v.bytes.len()
            );
            msg
        }
        Ok(None) => panic!("vector {}: incomplete frame", v.name),
        Err(e) => panic!("vector {}: decode failed: {e}", v.name),
    }
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

#[test]
fn valid_vectors_decode_and_reencode_byte_exact() {
    let vectors = load_valid("vectors/wire.txt");
    for v in &vectors {
        let msg = decode_whole(v);
        assert_eq!(
            msg.name().to_lowercase(),
            prefix(&v.name),
            "vector {}: decoded as {}",
            v.name,
            msg.name()
        );
        assert_eq!(
            hex::encode(encode(&msg)),
            hex::encode(&v.bytes),
            "vector {}: re-encoding differs",
            v.name
        );
        assert_eq!(
            msg.encoded_len(),
            v.bytes.len(),
            "vector {}: encoded_len",
            v.name
        );
        assert_eq!(
            frame_len_hint(&v.bytes),
            Ok(Some(v.bytes.len())),
            "vector {}: frame_len_hint",
            v.name
        );
        if let Message::Piece { chunk, data } = &msg {
            assert_eq!(
                wire::piece_header(*chunk, data.len())[..],
                v.bytes[..wire::PIECE_HEADER_LEN],
                "vector {}: piece_header",
                v.name
            );
        }
    }
    println!("{} valid wire vectors checked", vectors.len());
}

/// The reactor's view: a frame that has only partly arrived is "not yet", never an error.
#[test]
fn every_prefix_of_a_valid_vector_is_incomplete() {
    for v in &load_valid("vectors/wire.txt") {
        for k in 0..v.bytes.len() {
            let part = &v.bytes[..k];
            assert_eq!(
                decode_frame(part),
                Ok(None),
                "vector {}: prefix of {k} bytes",
                v.name
            );
            let hint = frame_len_hint(part);
            let want = if k < wire::LENGTH_PREFIX_LEN {
                None
            } else {
                Some(v.bytes.len())
            };
            assert_eq!(hint, Ok(want), "vector {}: hint for {k} bytes", v.name);
        }
    }
}

/// All valid vectors back to back, as one TCP stream, cut into reads of various sizes and fed
/// to a reactor-style buffer: the same messages come out, in order, whatever the cuts.
#[test]
fn all_valid_vectors_as_one_stream_decode_incrementally() {
    let vectors = load_valid("vectors/wire.txt");
    let want: Vec<Message> = vectors.iter().map(decode_whole).collect();
    let stream: Vec<u8> = vectors.iter().flat_map(|v| v.bytes.clone()).collect();
    for read_size in [1, 2, 3, 5, 7, 64, 1000, stream.len()] {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for read in stream.chunks(read_size) {
            buf.extend_from_slice(read);
            while let Some((msg, consumed)) = decode_frame(&buf)
                .unwrap_or_else(|e| panic!("reads of {read_size} bytes: error {e}"))
            {
                got.push(msg);
                buf.drain(..consumed);
            }
        }
        assert!(buf.is_empty(), "reads of {read_size}: bytes left over");
        assert_eq!(got, want, "reads of {read_size} bytes");
    }
}

#[test]
fn invalid_vectors_fail_with_the_named_error() {
    let vectors = load_invalid("vectors/wire-invalid.txt", &WIRE_ERROR_KINDS);
    for v in &vectors {
        let whole = match decode_frame(&v.bytes) {
            Ok(Some((msg, _))) => {
                panic!(
                    "vector {}: decoded as {msg:?}, expected {}",
                    v.name, v.error
                )
            }
            Ok(None) => panic!(
                "vector {}: incomplete, expected {} (incomplete frames are not invalid vectors)",
                v.name, v.error
            ),
            Err(e) => e,
        };
        assert_eq!(whole.kind(), v.error, "vector {}: got `{whole}`", v.name);
        // `frame_len_hint` agrees wherever it has something to say.
        if let Err(e) = frame_len_hint(&v.bytes) {
            assert_eq!(e, whole, "vector {}: frame_len_hint", v.name);
        }
        // One vector, one frame: either a bare header (refused from 4 or 5 bytes) or a
        // frame whose length field covers exactly the rest of the vector.
        if v.bytes.len() > wire::FRAME_HEADER_LEN {
            let length = u32::from_be_bytes(v.bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(
                length + 4,
                v.bytes.len(),
                "vector {}: not exactly one frame",
                v.name
            );
        }
        // Whatever TCP delivered so far, the answer is "not yet" or this same error.
        for k in 0..v.bytes.len() {
            match decode_frame(&v.bytes[..k]) {
                Ok(None) => {}
                Err(e) => assert_eq!(e, whole, "vector {}: prefix of {k} bytes", v.name),
                Ok(Some(_)) => panic!("vector {}: prefix of {k} bytes decoded", v.name),
            }
        }
    }
    println!("{} invalid wire vectors checked", vectors.len());
}

#[test]
fn every_wire_error_kind_has_an_invalid_vector() {
    let vectors = load_invalid("vectors/wire-invalid.txt", &WIRE_ERROR_KINDS);
    let covered: BTreeSet<&str> = vectors.iter().map(|v| v.error.as_str()).collect();
    for k in WIRE_ERROR_KINDS {
        assert!(
            covered.contains(k),
            "no vector in wire-invalid.txt expects {k}"
        );
    }
}

/// The largest frames are too long for a vector line; they are built here from the valid
/// `piece` vector's layout.
#[test]
fn largest_piece_is_accepted_and_one_byte_more_is_too_large() {
    let piece = Message::Piece {
        chunk: 3,
        data: vec![0x5a; MAX_CHUNK_SIZE],
    };
    let bytes = encode(&piece);
    assert_eq!(bytes.len(), 4 + 1 + 4 + MAX_CHUNK_SIZE);
    assert!(bytes.len() - 4 <= MAX_FRAME_LEN);
    assert_eq!(
        decode_frame(&bytes).expect("1 MiB piece refused"),
        Some((piece, bytes.len()))
    );
    // One byte more: refused from the header alone, and the same for the whole frame.
    let mut over = bytes;
    over.push(0x5a);
    let length = u32::try_from(over.len() - 4).unwrap();
    over[..4].copy_from_slice(&length.to_be_bytes());
    for input in [&over[..5], &over[..]] {
        let e = decode_frame(input).expect_err("oversized piece accepted");
        assert_eq!(e.kind(), "TooLarge", "got `{e}`");
    }
}

#[test]
fn every_message_type_has_a_valid_vector() {
    let all: Vec<u8> = vec![
        msg_type::KEEPALIVE,
        msg_type::HANDSHAKE,
        msg_type::METADATA,
        msg_type::MANIFEST_REQUEST,
        msg_type::MANIFEST_DATA,
        msg_type::BITFIELD,
        msg_type::HAVE,
        msg_type::REQUEST,
        msg_type::PIECE,
        msg_type::CANCEL,
        msg_type::REJECT,
        msg_type::CHOKE,
        msg_type::UNCHOKE,
        msg_type::INTERESTED,
        msg_type::NOT_INTERESTED,
        msg_type::PEERS,
        msg_type::ERROR,
        // NAT traversal (nat.md)
        msg_type::PROBE,
        msg_type::RELAY,
        msg_type::RELAY_OK,
    ];
    // The list above must be every type the codec names; a type added to the codec (and to
    // `type_name`) without a vector fails here.
    let named: BTreeSet<u8> = (0..=255u8)
        .filter(|&t| wire::type_name(t) != "UNKNOWN")
        .collect();
    assert_eq!(named, all.iter().copied().collect::<BTreeSet<u8>>());

    let mut by_type: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
    let vectors = load_valid("vectors/wire.txt");
    for v in &vectors {
        by_type
            .entry(decode_whole(v).type_byte())
            .or_default()
            .push(v.name.as_str());
    }
    for t in all {
        assert!(
            by_type.contains_key(&t),
            "no valid vector for {} (0x{t:02x})",
            wire::type_name(t)
        );
    }
}

/// The annotated examples in `wire.md`: after a line starting "Example (vector `NAME`", a fenced
/// block whose lines each start with a run of hex digits (the bytes) followed by a comment.
/// The bytes of the block, concatenated, must equal vector NAME.
#[test]
fn examples_in_wire_md_match_the_vectors() {
    let vectors = load_valid("vectors/wire.txt");
    let doc = read_spec_file("wire.md");
    let lines: Vec<&str> = doc.lines().collect();
    let mut checked = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        // Only lines that open an example: prose may mention vectors freely.
        let Some(rest) = lines[i].strip_prefix("Example (vector `") else {
            i += 1;
            continue;
        };
        let name = rest.split('`').next().unwrap_or("");
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("wire.md:{}: no vector named `{name}`", i + 1));
        // "(vector `NAME`, 77 bytes)": the size printed must be the vector's.
        let after = rest.split('`').nth(1).unwrap_or("");
        if let Some(size) = after
            .strip_prefix(", ")
            .and_then(|s| s.split(" bytes").next())
            .and_then(|s| s.parse::<usize>().ok())
        {
            assert_eq!(
                size,
                v.bytes.len(),
                "wire.md:{}: vector `{name}` is not {size} bytes",
                i + 1
            );
        }
        let (hex, end) = example_hex("wire.md", &lines, i, name);
        i = end;
        assert_eq!(
            hex,
            hex::encode(&v.bytes),
            "wire.md: example for vector `{name}` differs from wire.txt"
        );
        checked.insert(name.to_owned());
        i += 1;
    }
    assert!(!checked.is_empty(), "wire.md has no checked examples");
    // Every message type has an example in the chapter.
    let types: BTreeSet<&str> = checked.iter().map(|n| prefix(n)).collect();
    for t in (0..=255u8).map(wire::type_name).filter(|n| *n != "UNKNOWN") {
        let t = t.to_lowercase();
        assert!(types.contains(t.as_str()), "wire.md has no example for {t}");
    }
}
