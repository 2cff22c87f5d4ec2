//! Checks the manifest test vectors of `protocol-spec/vectors/manifest.txt` against the
//! content code, and the hex examples printed in `protocol-spec/content.md` against them.
//!
//! For each vector (`NAME CONTENT_ID_HEX MANIFEST_HEX`):
//! - the manifest decodes and re-encodes byte for byte;
//! - its SHA-256 is the listed content ID (and `Manifest::content_id` agrees);
//! - the file it describes, regenerated from the rule below, hashed by
//!   `content::hasher` into a file on disk, gives exactly that manifest.
//!
//! The files (the same rules are stated in the comments of manifest.txt):
//! - `empty`: no bytes.
//! - `one-byte-a`: the single byte 0x61 ("a").
//! - every other vector: `size` bytes where byte `i` is `i mod 251`, sizes below.
//!
//! Also: invalid manifests made from the vectors fail with the right `DecodeError`.
//! A missing or empty vector file is a failure, not a pass.

mod common;

use common::vectors::{example_hex, read_spec_file};
use std::collections::BTreeSet;

use peershare::content::hasher::{hash_file, hash_file_stamped};
use peershare::content::manifest::{self, Manifest};
use peershare::id::Id;

/// How to regenerate the file behind each vector: (name, content, chunk size if not the
/// policy's).
fn files() -> Vec<(&'static str, Vec<u8>, Option<u32>)> {
    let mod251 = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    vec![
        ("empty", Vec::new(), None),
        ("one-byte-a", b"a".to_vec(), None),
        ("one-chunk-exact", mod251(262_144), None),
        ("chunk-plus-one", mod251(262_145), None),
        ("three-chunks", mod251(600_000), None),
        ("chunk-size-16k", mod251(40_000), Some(16_384)),
    ]
}

struct Vector {
    name: String,
    id: Id,
    bytes: Vec<u8>,
}

fn parse_hex(file: &str, line_no: usize, hex: &str) -> Vec<u8> {
    assert!(
        !hex.bytes().any(|b| b.is_ascii_uppercase()),
        "{file}:{line_no}: hex must be lower-case"
    );
    hex::decode(hex).unwrap_or_else(|e| panic!("{file}:{line_no}: bad hex: {e}"))
}

fn load() -> Vec<Vector> {
    load_file("vectors/manifest.txt")
}

/// The vectors of one file (`NAME CONTENT_ID_HEX MANIFEST_HEX` lines).
fn load_file(file: &str) -> Vec<Vector> {
    let text = read_spec_file(file);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            f.len(),
            3,
            "{file}:{n}: expected `NAME CONTENT_ID_HEX MANIFEST_HEX`"
        );
        assert!(
            seen.insert(f[0].to_owned()),
            "{file}:{n}: duplicate {}",
            f[0]
        );
        let id = parse_hex(file, n, f[1]);
        assert_eq!(id.len(), 32, "{file}:{n}: content ID must be 32 bytes");
        out.push(Vector {
            name: f[0].to_owned(),
            id: Id(id.try_into().unwrap()),
            bytes: parse_hex(file, n, f[2]),
        });
    }
    assert!(!out.is_empty(), "{file} holds no vectors");
    out
}

#[test]
fn vectors_decode_reencode_and_hash_to_their_id() {
    for v in load() {
        let m = Manifest::decode(&v.bytes)
            .unwrap_or_else(|e| panic!("vector {}: decode failed: {e}", v.name));
        assert_eq!(
            m.encode(),
            v.bytes,
            "vector {}: re-encoding differs",
            v.name
        );
        assert_eq!(Id::hash_of(&v.bytes), v.id, "vector {}: SHA-256", v.name);
        assert_eq!(m.content_id(), v.id, "vector {}: content_id()", v.name);
        assert_eq!(
            Manifest::decode_for(&v.id, &v.bytes).unwrap(),
            m,
            "vector {}",
            v.name
        );
        assert_eq!(
            manifest::manifest_len_from_header(&v.bytes[..21]),
            Ok(v.bytes.len()),
            "vector {}: length from header",
            v.name
        );
    }
}

#[test]
fn hashing_the_described_files_gives_the_vectors() {
    let vectors = load();
    let files = files();
    let names: BTreeSet<&str> = vectors.iter().map(|v| v.name.as_str()).collect();
    let described: BTreeSet<&str> = files.iter().map(|f| f.0).collect();
    assert_eq!(
        names, described,
        "every vector has a file rule and vice versa"
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, data, chunk_size) in files {
        let v = vectors.iter().find(|v| v.name == name).unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, &data).unwrap();
        let m = match chunk_size {
            None => hash_file(&p, &|_| {}).unwrap(),
            Some(cs) => hash_file_stamped(&p, Some(cs), &|_| {}).unwrap().manifest,
        };
        assert_eq!(
            hex::encode(m.encode()),
            hex::encode(&v.bytes),
            "vector {name}: hashing the file gives another manifest"
        );
        assert_eq!(m.file_size(), data.len() as u64);
        // And each chunk of the file verifies against the vector's manifest.
        let l = m.lengths();
        for c in l.chunks() {
            let r = l.chunk_range(c);
            assert!(m.verify_chunk(c, &data[r.start as usize..r.end as usize]));
        }
    }
}

#[test]
fn invalid_manifests_are_refused() {
    let vectors = load();
    let base = &vectors
        .iter()
        .find(|v| v.name == "three-chunks")
        .expect("three-chunks vector")
        .bytes;
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad magic", edit(&|b| b[0] = b'X'), "InvalidValue"),
        (
            "DHT magic, not a manifest",
            edit(&|b| b[2] = 0x01),
            "InvalidValue",
        ),
        ("version 2", edit(&|b| b[4] = 2), "UnsupportedVersion"),
        (
            "chunk size not a power of two",
            edit(&|b| b[13..17].copy_from_slice(&300_000u32.to_be_bytes())),
            "InvalidValue",
        ),
        (
            "chunk size below 16 KiB",
            edit(&|b| b[13..17].copy_from_slice(&8192u32.to_be_bytes())),
            "InvalidValue",
        ),
        (
            "chunk size above 1 MiB",
            edit(&|b| b[13..17].copy_from_slice(&(2u32 << 20).to_be_bytes())),
            "InvalidValue",
        ),
        (
            "wrong chunk count",
            edit(&|b| b[17..21].copy_from_slice(&2u32.to_be_bytes())),
            "InvalidValue",
        ),
        (
            "count too large",
            edit(&|b| b[17..21].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes())),
            "LengthTooLarge",
        ),
        (
            "file size needing more chunks than hashes",
            edit(&|b| b[5..13].copy_from_slice(&800_000u64.to_be_bytes())),
            "InvalidValue",
        ),
        (
            "truncated in a hash",
            edit(&|b| b.truncate(b.len() - 1)),
            "UnexpectedEnd",
        ),
        (
            "truncated in the header",
            edit(&|b| b.truncate(20)),
            "UnexpectedEnd",
        ),
        ("nothing at all", Vec::new(), "UnexpectedEnd"),
        ("one byte too many", edit(&|b| b.push(0)), "TrailingBytes"),
    ];
    for (what, bytes, want) in cases {
        match Manifest::decode(&bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert_eq!(e.kind(), want, "{what}: got `{e}`"),
        }
    }
    // The right bytes under the wrong ID are refused before decoding.
    let other = &vectors[0];
    assert!(Manifest::decode_for(&other.id, base).is_err());
}

/// The annotated examples in `content.md`: after a line containing "(vector `NAME`", a
/// fenced block whose lines each start with hex bytes followed by a comment. The bytes of the
/// block, concatenated, must equal vector NAME, and the content ID printed on the line
/// "content ID: <hex>" right after the block must be the vector's.
#[test]
fn examples_in_content_md_match_the_vectors() {
    let mut vectors = load();
    vectors.extend(load_file("vectors/tree.txt"));
    let doc = read_spec_file("content.md");
    let lines: Vec<&str> = doc.lines().collect();
    let mut checked = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(start) = lines[i].find("(vector `") else {
            i += 1;
            continue;
        };
        let name = lines[i][start + "(vector `".len()..]
            .split('`')
            .next()
            .unwrap_or("");
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("content.md:{}: no vector named `{name}`", i + 1));
        let (hex, end) = example_hex("content.md", &lines, i, name);
        i = end;
        assert_eq!(
            hex,
            hex::encode(&v.bytes),
            "content.md: example for `{name}` differs from its vector"
        );
        // The content ID line follows the block.
        let id_line = lines[i + 1..]
            .iter()
            .take(4)
            .find(|l| l.contains("content ID: "))
            .unwrap_or_else(|| panic!("content.md: no `content ID: ` line after `{name}`"));
        let printed = id_line
            .split("content ID: ")
            .nth(1)
            .unwrap()
            .trim_matches(|c: char| !c.is_ascii_hexdigit());
        assert_eq!(printed, v.id.to_hex(), "content.md: content ID of `{name}`");
        checked.insert(name.to_owned());
        i += 1;
    }
    assert!(
        checked.len() >= 3,
        "content.md has too few checked examples: {checked:?}"
    );
}

/// Prints the vector lines from the file rules (used to write manifest.txt):
/// `cargo test --test content_vectors -- --ignored --nocapture print_vectors`
#[test]
#[ignore]
fn print_vectors() {
    for (name, data, chunk_size) in files() {
        let m = match chunk_size {
            None => Manifest::for_data(&data).unwrap(),
            Some(cs) => Manifest::for_data_with_chunk_size(&data, cs).unwrap(),
        };
        println!(
            "{name} {} {}",
            m.content_id().to_hex(),
            hex::encode(m.encode())
        );
    }
}

/// The folder vectors of `protocol-spec/vectors/tree.txt` (content.md, section 10): each
/// decodes and re-encodes byte for byte, hashes to its content ID, and the folder it
/// describes, written to disk and shared by `content::folder`, gives exactly that manifest.
#[test]
fn tree_vectors_decode_reencode_and_match_their_folders() {
    use peershare::content::folder::{hash_folder, scan_folder};
    use peershare::content::tree::TreeManifest;
    let mod251 = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    // (name, files (path, bytes), empty folders): the rules in tree.txt's comments.
    type Folder = (
        &'static str,
        Vec<(&'static str, Vec<u8>)>,
        Vec<&'static str>,
    );
    let folders: Vec<Folder> = vec![
        ("empty-tree", vec![], vec![]),
        (
            "small-pack",
            vec![
                ("a.txt", b"a".to_vec()),
                ("Samples/empty.wav", Vec::new()),
                ("Samples/kick.wav", b"abc".to_vec()),
            ],
            vec!["Loops"],
        ),
        (
            "two-chunk-file",
            vec![("big/pattern.bin", mod251(262_145))],
            vec![],
        ),
    ];
    let vectors = load_file("vectors/tree.txt");
    assert_eq!(vectors.len(), folders.len(), "one folder rule per vector");
    for v in &vectors {
        let t = TreeManifest::decode(&v.bytes)
            .unwrap_or_else(|e| panic!("tree vector {} does not decode: {e}", v.name));
        assert_eq!(t.encode(), v.bytes, "{}: re-encoding differs", v.name);
        assert_eq!(Id::hash_of(&v.bytes), v.id, "{}: content ID", v.name);
        assert_eq!(t.content_id(), v.id, "{}", v.name);
        let (_, files, empty) = folders
            .iter()
            .find(|(n, _, _)| *n == v.name)
            .unwrap_or_else(|| panic!("no folder rule for tree vector {}", v.name));
        let dir = tempfile::tempdir().unwrap();
        for (path, data) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        for e in empty {
            std::fs::create_dir_all(dir.path().join(e)).unwrap();
        }
        let scan = scan_folder(dir.path()).unwrap();
        let shared = hash_folder(dir.path(), &scan, &|_| {}).unwrap();
        assert_eq!(
            shared.manifest.encode(),
            v.bytes,
            "{}: sharing the folder",
            v.name
        );
    }
}
