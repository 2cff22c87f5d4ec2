//! Tree manifests explained: the vectors of `protocol-spec/vectors/tree.txt`, folding, the
//! entry an error is about kept in view, and random trees against the decoder. Every
//! check of content.md 10.4 through the binary, with its field and offset: `tests/decode.rs`.

use super::tests::{assert_covers, check};
use super::*;
use crate::content::tree::{TreeManifest, TreePath};
use proptest::prelude::*;

/// The vectors of tree.txt: (name, content ID, bytes).
fn vectors() -> Vec<(String, String, Vec<u8>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/protocol-spec/vectors/tree.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned(), hex::decode(f[2]).unwrap())
        })
        .collect()
}

fn small_pack() -> Vec<u8> {
    let v = vectors();
    v.into_iter().find(|v| v.0 == "small-pack").unwrap().2
}

/// A tree of `n` one-chunk files `f00` .. and one two-chunk file `z.bin`.
fn pack(n: usize) -> TreeManifest {
    let mut files: Vec<(TreePath, Manifest)> = (0..n)
        .map(|i| {
            let p = TreePath::new(&format!("f{i:02}")).unwrap();
            (p, Manifest::for_data(&[i as u8; 100]).unwrap())
        })
        .collect();
    let big = Manifest::for_data(&[9; 300_000]).unwrap();
    files.push((TreePath::new("z.bin").unwrap(), big));
    TreeManifest::build(files, Vec::new()).unwrap()
}

/// The names of a group's rows.
fn rows(group: &Field) -> Vec<&str> {
    group.children.iter().map(|c| &*c.name).collect()
}

fn find<'a>(fields: &'a [Field], name: &str) -> &'a Field {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[test]
fn the_vectors_are_explained_with_their_content_id() {
    for (name, id, bytes) in vectors() {
        let e = explain(&bytes);
        assert_eq!(e.kind, Kind::Tree, "{name}");
        assert!(e.is_valid() && e.layout_agrees, "{name}:\n{e}");
        assert_covers(&e);
        let m = &e.messages[0];
        assert_eq!(m.name, "TREE");
        assert!(m.notes[0].ends_with(&id), "{name}: {:?}", m.notes);
        let t = TreeManifest::decode(&bytes).unwrap();
        let line = format!(
            "TREE entries={} files={} size={} chunks={} id={}…",
            t.entries().len(),
            t.file_count(),
            t.total_size(),
            t.chunk_count(),
            &id[..4]
        );
        assert_eq!(summarize(&bytes), line);
        assert_eq!(m.summary, line);
    }
}

#[test]
fn the_small_pack_reads_like_the_spec() {
    let b = small_pack();
    let e = explain(&b);
    let f = &e.messages[0].fields;
    let names: Vec<&str> = f.iter().map(|f| &*f.name).collect();
    let header = [
        "magic",
        "version",
        "entry_count",
        "total_size",
        "chunk_count",
    ];
    assert_eq!(names[..5], header);
    assert_eq!(names[5..], ["entries_len", "entries", "chunk_hashes"]);
    let entries = find(f, "entries");
    assert_eq!((entries.offset, entries.len), (25, 187));
    let folder = &entries.children[0];
    assert_eq!(folder.value, "empty folder \"Loops\"");
    let kick = &entries.children[2];
    let file = [
        "kind",
        "path_len",
        "path",
        "file_size",
        "chunk_size",
        "sha256",
    ];
    assert_eq!(rows(kick), file);
    assert_eq!(kick.value, "file \"Samples/kick.wav\", 3 bytes, 1 chunk");
    assert_eq!(kick.children[4].value, "262144 (256 KiB)");
    let hashes = find(f, "chunk_hashes");
    let c1 = &hashes.children[1];
    assert_eq!((&*c1.name, c1.offset), ("chunk 1", 244));
    assert!(
        c1.meaning.starts_with("\"a.txt\" chunk 0 of 1"),
        "{}",
        c1.meaning
    );
    let table = e.to_string();
    assert!(
        table.starts_with("tree manifest, 276 bytes: valid\n"),
        "{table}"
    );
}

#[test]
fn long_trees_fold_entries_and_hashes() {
    let t = pack(10);
    let e = explain(&t.encode());
    assert!(e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    let f = &e.messages[0].fields;
    let entries = find(f, "entries");
    assert_eq!(rows(entries).len(), 4);
    let folded = &entries.children[3];
    assert_eq!(
        (&*folded.name, &*folded.value),
        ("entries 4-11", "8 more entries")
    );
    let hashes = find(f, "chunk_hashes");
    assert_eq!(
        rows(hashes),
        ["chunk 0", "chunk 1", "chunk 2", "chunks 3-11"]
    );
    assert_eq!(hashes.children[3].value, "9 more hashes");
}

/// The encoding of `t` with file `i`'s `sha256` (a one-chunk file) changed.
fn with_bad_sha(t: &TreeManifest, i: usize) -> (Vec<u8>, usize) {
    let mut b = t.encode();
    let mut at = 25;
    for e in &t.entries()[..i] {
        at += 3 + e.path.as_str().len() + 44;
    }
    let sha = at + 3 + t.entries()[i].path.as_str().len() + 12;
    b[sha] ^= 1;
    (b, sha)
}

#[test]
fn the_entry_an_error_is_about_stays_in_view() {
    // File 7's SHA-256 contradicts its one chunk hash: the last check, after the folding.
    let t = pack(10);
    let (b, sha) = with_bad_sha(&t, 7);
    let e = explain(&b);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("InvalidValue", "sha256", sha)
    );
    assert_eq!(err.decode_error, TreeManifest::decode(&b).unwrap_err());
    assert!(e.layout_agrees);
    assert_covers(&e);
    let f = &e.messages[0].fields;
    let entries = find(f, "entries");
    assert_eq!(
        rows(entries),
        [
            "entry 1",
            "entry 2",
            "entry 3",
            "entries 4-7",
            "entry 8",
            "entries 9-11"
        ]
    );
    let bad = &entries.children[4];
    assert!(bad.error && bad.children[5].error, "{e}");
    let hashes = find(f, "chunk_hashes");
    assert_eq!(
        rows(hashes),
        [
            "chunk 0",
            "chunk 1",
            "chunk 2",
            "chunks 3-6",
            "chunk 7",
            "chunks 8-11"
        ]
    );
    assert!(e
        .to_string()
        .contains(&format!("MALFORMED at offset {sha}, field `sha256`")));
}

#[test]
fn entries_out_of_order_show_both() {
    // Swap the paths of files 5 and 6 (same length): 6 now sorts before 5.
    let t = pack(10);
    let mut b = t.encode();
    let at = |i: usize| 25 + i * (3 + 3 + 44) + 3;
    let (p5, p6) = (at(5), at(6));
    b[p5 + 2] = b'6';
    b[p6 + 2] = b'5';
    let e = explain(&b);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("InvalidValue", "path", p6)
    );
    assert_eq!(err.expected, "a path after \"f06\" (entry 6) in byte order");
    assert!(e.layout_agrees);
    assert_covers(&e);
    let entries = find(&e.messages[0].fields, "entries");
    let want = [
        "entry 1",
        "entry 2",
        "entry 3",
        "entries 4-5",
        "entry 6",
        "entry 7",
    ];
    assert_eq!(rows(entries)[..6], want);
}

#[test]
fn a_tree_is_detected_and_forced() {
    let b = small_pack();
    assert_eq!(detect(&b), Kind::Tree);
    assert_eq!(detect(b"PSTR"), Kind::Tree);
    let e = explain_as(&b, Kind::Manifest);
    assert_eq!(e.error.as_ref().map(|e| &*e.field), Some("magic"));
    let mut bad = b.clone();
    bad[3] = b'X';
    let e = explain_as(&bad, Kind::Tree);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("InvalidValue", "magic", 0)
    );
    assert_covers(&e);
    let s = summarize_as(&bad, Kind::Tree);
    assert!(
        s.starts_with("malformed tree manifest: field `magic`"),
        "{s}"
    );
}

/// A tree-shaped input: the header of a tree of `n` entries of up to 3 random bytes' worth of
/// kinds and short paths, then random chunk bytes.
fn tree_like(kinds: &[u8], paths: &[Vec<u8>], hashes: &[u8], total: u64, count: u32) -> Vec<u8> {
    let mut entries = Vec::new();
    for (k, p) in kinds.iter().zip(paths) {
        entries.push(k % 3);
        entries.extend((p.len() as u16).to_be_bytes());
        entries.extend(p);
        if k % 3 == 0 {
            entries.extend(u64::from(k / 3).to_be_bytes());
            entries.extend((1u32 << 14 << (k % 4)).to_be_bytes());
            entries.extend([k.wrapping_mul(7); 32]);
        }
    }
    let mut b = b"PSTR\x01".to_vec();
    b.extend((kinds.len().min(paths.len()) as u32).to_be_bytes());
    b.extend(total.to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend((entries.len() as u32).to_be_bytes());
    b.extend(entries);
    b.extend(hashes);
    b
}

proptest! {
    #[test]
    fn layout_agrees_on_tree_shaped_input(
        kinds in proptest::collection::vec(any::<u8>(), 0..8),
        paths in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'A'), Just(b'/'), Just(b'.'), any::<u8>()], 0..6), 0..8),
        hashes in proptest::collection::vec(any::<u8>(), 0..100),
        total in 0u64..200,
        count in 0u32..6,
    ) {
        let b = tree_like(&kinds, &paths, &hashes, total, count);
        check(&b, Kind::Tree);
        for cut in [b.len() / 2, b.len().saturating_sub(1)] {
            check(&b[..cut], Kind::Tree);
        }
    }

    #[test]
    fn layout_agrees_on_mutated_trees(n in 0usize..8, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut b = pack(n).encode();
        let i = at.index(b.len());
        b[i] = byte;
        check(&b, Kind::Tree);
    }
}
