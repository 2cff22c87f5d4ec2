//! `peershare decode` against every vector of `protocol-spec/vectors/`, through the real
//! binary with `--json`, plus a few checks of the human-readable table and of the exit codes.
//!
//! - Valid vectors: exit 0, the right kind and message name, and the leaf fields cover every
//!   byte exactly once (no gap, no overlap).
//! - Invalid vectors: exit 1, the error kind and message are the real decoder's, its offset
//!   lies in the input, and the fields still cover every byte.
//! - Property tests (in-process): random and mutated input never panics `explain` or
//!   `summarize`, and the layout always agrees with the decoder.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::vectors::{data_lines, load_invalid, load_valid, parse_hex, prefix, read_spec_file};
use peershare::content::manifest::Manifest;
use peershare::content::tree::TreeManifest;
use peershare::explain::{self, Kind};
use peershare::proto::codec::DecodeError;
use peershare::proto::dht::Datagram;
use peershare::proto::wire::decode_frame;
use proptest::prelude::*;
use serde_json::Value;

const ALL_KINDS: [&str; 9] = DecodeError::KINDS;

/// Runs `peershare decode ARGS`, feeding `stdin`; returns the exit code and stdout.
fn run(args: &[&str], stdin: &[u8]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peershare"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peershare");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).expect("write stdin");
    }
    let out = child.wait_with_output().expect("run peershare");
    let code = out.status.code().expect("exit code");
    (code, String::from_utf8(out.stdout).expect("UTF-8 output"))
}

/// `peershare decode --json HEX [--as KIND]`: the exit code and the parsed explanation.
fn run_json(bytes: &[u8], kind: Option<&str>) -> (i32, Value) {
    let hex = hex::encode(bytes);
    let mut args = vec!["--json", hex.as_str()];
    if let Some(k) = kind {
        args.extend(["--as", k]);
    }
    let (code, out) = run(&args, b"");
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    (code, v)
}

/// (offset, length) of every leaf field, in order.
fn leaves(fields: &Value, out: &mut Vec<(u64, u64)>) {
    for f in fields.as_array().expect("fields array") {
        match f.get("children") {
            Some(c) => leaves(c, out),
            None => out.push((f["offset"].as_u64().unwrap(), f["length"].as_u64().unwrap())),
        }
    }
}

/// The leaves of all messages cover `0..len` exactly once, in order.
fn assert_covers(what: &str, v: &Value, len: usize) {
    let mut l = Vec::new();
    for m in v["messages"].as_array().expect("messages") {
        leaves(&m["fields"], &mut l);
    }
    let mut at = 0;
    for (off, n) in l {
        assert_eq!(off, at, "{what}: gap or overlap at byte {at}: {v:#}");
        at += n;
    }
    assert_eq!(at, len as u64, "{what}: fields cover {at} of {len} bytes");
}

fn assert_valid(what: &str, v: &Value, code: i32, bytes: &[u8], kind: &str, names: &[&str]) {
    assert_eq!(code, 0, "{what}: exit code");
    assert_eq!(v["valid"], true, "{what}: {v:#}");
    assert_eq!(v["kind"], kind, "{what}: kind");
    assert_eq!(v["layout_agrees"], true, "{what}");
    assert_eq!(v["error"], Value::Null, "{what}");
    let got: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names, "{what}: message names");
    assert_covers(what, v, bytes.len());
}

/// Checks a malformed input's explanation against the real decoder's error.
fn assert_malformed(what: &str, v: &Value, code: i32, bytes: &[u8], real: &DecodeError) {
    assert_eq!(code, 1, "{what}: exit code");
    assert_eq!(v["valid"], false, "{what}");
    assert_eq!(v["layout_agrees"], true, "{what}: {v:#}");
    let e = &v["error"];
    assert_eq!(e["kind"], real.kind(), "{what}: {e:#}");
    assert_eq!(e["message"], real.to_string(), "{what}");
    let off = e["offset"].as_u64().expect("error offset") as usize;
    // A field that should start exactly where the input ends is at offset len.
    assert!(
        off < bytes.len() || (off == bytes.len() && real.kind() == "UnexpectedEnd"),
        "{what}: offset {off} of {}",
        bytes.len()
    );
    for k in ["field", "expected", "found"] {
        assert!(
            e[k].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: no {k}: {e:#}"
        );
    }
    assert_covers(what, v, bytes.len());
}

#[test]
fn valid_dht_vectors_are_explained_fully() {
    let vectors = load_valid("vectors/dht.txt");
    for v in &vectors {
        let (code, out) = run_json(&v.bytes, None);
        let name = prefix(&v.name).to_uppercase();
        assert_valid(&v.name, &out, code, &v.bytes, "dht", &[&name]);
    }
}

#[test]
fn valid_wire_vectors_are_explained_fully() {
    for v in &load_valid("vectors/wire.txt") {
        let (code, out) = run_json(&v.bytes, None);
        let name = prefix(&v.name).to_uppercase();
        assert_valid(&v.name, &out, code, &v.bytes, "wire", &[&name]);
    }
}

/// Every vector of `vectors/FILE` (lines `NAME ID HEX`) is valid as `kind`, one message
/// `name` with the content ID in a note, detected and forced alike.
fn assert_content_vectors(file: &str, kind: &str, name: &str) {
    let text = read_spec_file(&format!("vectors/{file}"));
    let mut n = 0;
    for (line, l) in data_lines(&text) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let bytes = parse_hex(file, line, f[2]);
        for forced in [None, Some(kind)] {
            let (code, out) = run_json(&bytes, forced);
            assert_valid(f[0], &out, code, &bytes, kind, &[name]);
            let note = out["messages"][0]["notes"][0].as_str().unwrap();
            assert!(note.ends_with(f[1]), "{}: {note}", f[0]);
        }
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn valid_manifests_are_explained_with_their_content_id() {
    assert_content_vectors("manifest.txt", "manifest", "MANIFEST");
}

#[test]
fn invalid_dht_vectors_are_located() {
    let mut vectors = load_invalid("vectors/dht-invalid.txt", &ALL_KINDS);
    // TooLarge needs a 1233-byte datagram, which the vector file does not spell out.
    let big = load_valid("vectors/dht.txt")
        .into_iter()
        .find(|v| v.name == "providers-exactly-1232-bytes");
    let mut big = big.expect("the 1232-byte vector").bytes;
    big.push(0);
    vectors.push(common::vectors::Invalid {
        name: "too-large".into(),
        error: "TooLarge".into(),
        bytes: big,
    });
    for v in &vectors {
        let real = Datagram::decode(&v.bytes).expect_err(&v.name);
        assert_eq!(real.kind(), v.error, "{}", v.name);
        let (code, out) = run_json(&v.bytes, Some("dht"));
        assert_malformed(&v.name, &out, code, &v.bytes, &real);
    }
}

#[test]
fn invalid_wire_vectors_are_located() {
    for v in &load_invalid("vectors/wire-invalid.txt", &ALL_KINDS) {
        let real = decode_frame(&v.bytes).expect_err(&v.name);
        assert_eq!(real.kind(), v.error, "{}", v.name);
        // Detected as wire frames (none starts with "PS"), and the same forced.
        let (code, out) = run_json(&v.bytes, None);
        assert_eq!(out["kind"], "wire", "{}", v.name);
        assert_malformed(&v.name, &out, code, &v.bytes, &real);
    }
}

/// The bytes of the vector `name` of `vectors/FILE` (lines `NAME ID HEX`).
fn vector(file: &str, name: &str) -> Vec<u8> {
    let text = read_spec_file(&format!("vectors/{file}"));
    let (line, l) = data_lines(&text)
        .find(|(_, l)| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no vector {name} in {file}"));
    parse_hex(file, line, l.split_whitespace().nth(2).unwrap())
}

#[test]
fn invalid_manifests_are_located() {
    let good = vector("manifest.txt", "three-chunks");
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let cases = [
        edit(&|b| b[4] = 2),
        edit(&|b| b[13..17].copy_from_slice(&300_000u32.to_be_bytes())),
        edit(&|b| b[17..21].copy_from_slice(&2u32.to_be_bytes())),
        edit(&|b| b[17..21].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes())),
        edit(&|b| b[5..13].copy_from_slice(&800_000u64.to_be_bytes())),
        edit(&|b| b.truncate(b.len() - 1)),
        edit(&|b| b.truncate(20)),
        edit(&|b| b.push(0)),
    ];
    for bytes in cases {
        let real = Manifest::decode(&bytes).expect_err("a broken manifest");
        let (code, out) = run_json(&bytes, None);
        assert_eq!(out["kind"], "manifest");
        assert_malformed(&format!("{real}"), &out, code, &bytes, &real);
    }
    // A wrong magic is only a manifest when the caller says so.
    let bad = edit(&|b| b[0] = b'X');
    let (code, out) = run_json(&bad, Some("manifest"));
    assert_malformed(
        "bad magic",
        &out,
        code,
        &bad,
        &Manifest::decode(&bad).unwrap_err(),
    );
}

#[test]
fn valid_trees_are_explained_with_their_content_id() {
    assert_content_vectors("tree.txt", "tree", "TREE");
}

/// A tree manifest of `entries` (kind, path, file_size, sha256; files of 1 MiB chunks)
/// with the header's totals given, then `hashes`.
fn raw_tree(
    entries: &[(u8, &str, u64, [u8; 32])],
    total: u64,
    chunks: u32,
    hashes: &[u8],
) -> Vec<u8> {
    let mut e = Vec::new();
    for (kind, path, size, sha) in entries {
        e.push(*kind);
        e.extend((path.len() as u16).to_be_bytes());
        e.extend(path.as_bytes());
        if *kind == 0 {
            e.extend(size.to_be_bytes());
            e.extend((1u32 << 20).to_be_bytes());
            e.extend(sha);
        }
    }
    let mut b = b"PSTR\x01".to_vec();
    b.extend((entries.len() as u32).to_be_bytes());
    b.extend(total.to_be_bytes());
    b.extend(chunks.to_be_bytes());
    b.extend((e.len() as u32).to_be_bytes());
    b.extend(e);
    b.extend(hashes);
    b
}

/// SHA-256 of no bytes.
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn invalid_trees_are_located() {
    // Loops at 25 (path at 28); Samples/empty.wav at 33 (path 36, file_size 53, chunk_size
    // 61, sha256 65); Samples/kick.wav at 97; a.txt at 160 (sha256 180); hashes at 212..276.
    let good = vector("tree.txt", "small-pack");
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let be32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let empty: [u8; 32] = hex::decode(EMPTY).unwrap().try_into().unwrap();
    let tib = 1u64 << 40;
    // Each check of content.md 10.4, in its order: (bytes, field, offset).
    let cases: Vec<(Vec<u8>, &str, usize)> = vec![
        (edit(&|b| b[4] = 2), "version", 4),
        (edit(&|b| be32(b, 5, (1 << 18) + 1)), "entry_count", 5),
        (
            edit(&|b| b[9..17].copy_from_slice(&(tib + 1).to_be_bytes())),
            "total_size",
            9,
        ),
        (edit(&|b| be32(b, 17, (1 << 20) + 1)), "chunk_count", 17),
        (edit(&|b| be32(b, 21, u32::MAX)), "entries_len", 21),
        (edit(&|b| b.truncate(100)), "entries", 25),
        (edit(&|b| b[25] = 2), "kind", 25),
        (edit(&|b| b[30] = b'\\'), "path", 28),
        (edit(&|b| b[30] = 0xff), "path", 28),
        (edit(&|b| be32(b, 61, 1000)), "chunk_size", 61),
        (
            edit(&|b| {
                be32(b, 21, 188);
                b.insert(212, 0);
            }),
            "entries_len",
            21,
        ),
        (edit(&|b| b[28] = b'Z'), "path", 36),
        (
            edit(&|b| b[36..53].copy_from_slice(b"Loops/empty.wav00")),
            "path",
            36,
        ),
        (
            raw_tree(
                &[(0, "Kick.wav", 0, empty), (0, "kick.wav", 0, empty)],
                0,
                0,
                &[],
            ),
            "path",
            83,
        ),
        (
            raw_tree(&[(0, "a", tib, empty), (0, "b", tib, empty)], tib, 0, &[]),
            "file_size",
            77,
        ),
        (edit(&|b| b[16] = 5), "total_size", 9),
        (edit(&|b| be32(b, 17, 3)), "chunk_count", 17),
        (edit(&|b| b.truncate(260)), "chunk_hashes", 212),
        (edit(&|b| b.push(0)), "(trailing bytes)", 276),
        (edit(&|b| b[180] ^= 1), "sha256", 180),
        (edit(&|b| b[65] ^= 1), "sha256", 65),
    ];
    for (bytes, field, offset) in &cases {
        let real = TreeManifest::decode(bytes).expect_err("a broken tree");
        let what = format!("{field} at {offset}: {real}");
        let (code, out) = run_json(bytes, None);
        assert_eq!(out["kind"], "tree", "{what}");
        assert_malformed(&what, &out, code, bytes, &real);
        assert_eq!(out["error"]["field"], *field, "{what}: {:#}", out["error"]);
        assert_eq!(
            out["error"]["offset"], *offset,
            "{what}: {:#}",
            out["error"]
        );
    }
    // A wrong magic is only a tree manifest when the caller says so.
    let bad = edit(&|b| b[3] = b'X');
    let (code, out) = run_json(&bad, Some("tree"));
    let real = TreeManifest::decode(&bad).unwrap_err();
    assert_malformed("bad magic", &out, code, &bad, &real);
    assert_eq!(
        (&out["error"]["field"], &out["error"]["offset"]),
        (&Value::from("magic"), &Value::from(0))
    );
}

#[test]
fn a_capture_of_every_wire_vector_decodes_in_order() {
    let vectors = load_valid("vectors/wire.txt");
    let stream: Vec<u8> = vectors.iter().flat_map(|v| v.bytes.clone()).collect();
    let names: Vec<String> = vectors
        .iter()
        .map(|v| prefix(&v.name).to_uppercase())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (code, out) = run_json(&stream, None);
    assert_valid("capture", &out, code, &stream, "wire", &names);
    // The same capture cut 3 bytes short: every frame but the last, which needs 3 more.
    let cut = &stream[..stream.len() - 3];
    let (code, out) = run_json(cut, None);
    assert_eq!(code, 1);
    assert_eq!(out["error"], Value::Null);
    assert_eq!(out["incomplete"]["needed"], 3);
    assert_eq!(out["messages"].as_array().unwrap().len(), vectors.len());
    assert_covers("cut capture", &out, cut.len());
}

#[test]
fn the_table_reads_like_the_spec() {
    let ping = "5053 0101 00 0102030405060708 ".to_owned() + &"11".repeat(32);
    let (code, out) = run(&[&ping], b"");
    assert_eq!(code, 0);
    assert!(out.starts_with("DHT datagram, 45 bytes: valid\n"), "{out}");
    assert!(out.contains("PING tx=0102… from=1111…"), "{out}");
    for row in [
        "offset  len  field      value",
        "     0    2  magic      \"PS\"",
        "     3    1  type       0x01 PING (request)",
        "    13   32  sender_id  1111",
    ] {
        assert!(out.contains(row), "missing `{row}`:\n{out}");
    }
    // A truncated PONG (dht-invalid.txt, pong-without-port).
    let pong = format!(
        "5053010200{}{}04c6336407",
        "0102030405060708",
        "ee".repeat(32)
    );
    let (code, out) = run(&[&pong], b"");
    assert_eq!(code, 1);
    assert!(
        out.contains("MALFORMED at offset 50, field `observed`: UnexpectedEnd"),
        "{out}"
    );
    assert!(
        out.contains("expected: 2 byte(s) for the port of `observed`"),
        "{out}"
    );
    // A HAVE frame cut after its length, read from stdin as hex.
    let (code, out) = run(&["-"], b"00 00 00 05 06 00\n");
    assert_eq!(code, 1);
    assert!(
        out.contains("incomplete: the frame at offset 0 needs 3 more byte(s) (6 present)"),
        "{out}"
    );
}

#[test]
fn files_stdin_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ack.bin");
    let ack = load_valid("vectors/dht.txt")
        .into_iter()
        .find(|v| v.name == "ack")
        .unwrap()
        .bytes;
    std::fs::write(&path, &ack).unwrap();
    let (code, out) = run(&[path.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ACK tx=0102… from=eeee…"), "{out}");
    let (code, out) = run(&["-", "--as", "dht"], &ack);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(kind chosen with --as)"), "{out}");
    assert_eq!(run(&["not-hex-nor-a-file"], b"").0, 2);
    assert_eq!(run(&["505"], b"").0, 2);
    assert_eq!(run(&["-"], b"").0, 2);
    assert_eq!(run(&["--as", "smtp", "00"], b"").0, 2);
    let (code, out) = run(&["--as", "tree", "505354"], b"");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("tree manifest, 3 bytes: MALFORMED (kind chosen with --as)"),
        "{out}"
    );
}

/// Every vector's bytes, valid and invalid.
fn all_vector_bytes() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(load_all_vector_bytes)
}

fn load_all_vector_bytes() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for f in ["vectors/dht.txt", "vectors/wire.txt"] {
        out.extend(load_valid(f).into_iter().map(|v| v.bytes));
    }
    for f in ["vectors/dht-invalid.txt", "vectors/wire-invalid.txt"] {
        out.extend(load_invalid(f, &ALL_KINDS).into_iter().map(|v| v.bytes));
    }
    for f in ["manifest.txt", "tree.txt"] {
        let text = read_spec_file(&format!("vectors/{f}"));
        for (line, l) in data_lines(&text) {
            out.push(parse_hex(f, line, l.split_whitespace().nth(2).unwrap()));
        }
    }
    out
}

/// Explains `bytes` as every kind: never a panic, always the decoder's verdict, the layout
/// always agreeing with it and covering every byte.
fn check_every_kind(bytes: &[u8]) {
    let _ = explain::summarize(bytes);
    let _ = explain::explain(bytes).to_string();
    for k in [
        Kind::Dht,
        Kind::Wire,
        Kind::Handshake,
        Kind::Manifest,
        Kind::Tree,
    ] {
        let e = explain::explain_as(bytes, k);
        let _ = explain::summarize_as(bytes, k);
        assert!(e.layout_agrees, "{k:?} {}:\n{e}", hex::encode(bytes));
        let mut at = 0;
        for m in &e.messages {
            let mut stack: Vec<&explain::Field> = m.fields.iter().rev().collect();
            while let Some(f) = stack.pop() {
                if f.children.is_empty() {
                    assert_eq!(f.offset, at, "{k:?} {}", hex::encode(bytes));
                    at += f.len;
                } else {
                    stack.extend(f.children.iter().rev());
                }
            }
        }
        assert_eq!(at, bytes.len(), "{k:?} {}", hex::encode(bytes));
        // (malformed, incomplete) as the real decoders see it.
        let verdict = match k {
            Kind::Dht => (Datagram::decode(bytes).is_err(), false),
            Kind::Manifest => (Manifest::decode(bytes).is_err(), false),
            Kind::Tree => (TreeManifest::decode(bytes).is_err(), false),
            Kind::Handshake => (handshake_body_err(bytes), false),
            Kind::Wire => wire_stream_verdict(bytes),
        };
        let got = (e.error.is_some(), e.incomplete.is_some());
        assert_eq!(got, verdict, "{k:?} {}", hex::encode(bytes));
    }
}

/// Whether a bare HANDSHAKE body fails, by framing it for the real decoder.
fn handshake_body_err(body: &[u8]) -> bool {
    let Ok(len) = u32::try_from(body.len() + 1) else {
        return true;
    };
    let mut f = len.to_be_bytes().to_vec();
    f.push(1);
    f.extend_from_slice(body);
    !matches!(decode_frame(&f), Ok(Some(_)))
}

/// The reactor's loop over a capture: frames until an error, an incomplete frame, or the end.
fn wire_stream_verdict(mut b: &[u8]) -> (bool, bool) {
    loop {
        match decode_frame(b) {
            Ok(Some((_, n))) => b = &b[n..],
            Ok(None) => return (false, true),
            Err(_) => return (true, false),
        }
        if b.is_empty() {
            return (false, false);
        }
    }
}

#[test]
fn every_vector_and_its_prefixes_agree_in_process() {
    for v in all_vector_bytes() {
        for cut in 0..=v.len().min(200) {
            check_every_kind(&v[..cut]);
        }
        check_every_kind(v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        check_every_kind(&bytes);
    }

    #[test]
    fn mutated_vectors_never_panic(i in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>(), extra in proptest::collection::vec(any::<u8>(), 0..40)) {
        let all = all_vector_bytes();
        let mut b = all[i.index(all.len())].clone();
        if !b.is_empty() {
            for (at, val) in &edits {
                let p = at.index(b.len());
                b[p] = *val;
            }
        }
        check_every_kind(&b);
        check_every_kind(&b[..cut.index(b.len() + 1)]);
        b.extend_from_slice(&extra);
        check_every_kind(&b);
    }
}
