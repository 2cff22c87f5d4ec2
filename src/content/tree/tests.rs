use super::*;
use proptest::prelude::*;

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

fn file(path: &str, data: &[u8]) -> (TreePath, Manifest) {
    (p(path), Manifest::for_data(data).unwrap())
}

/// A small pack: two kicks, a nested snare bigger than one chunk, an empty file and an
/// empty folder.
fn pack() -> TreeManifest {
    TreeManifest::build(
        vec![
            file("Kicks/kick 2.wav", &[2; 50_000]),
            file("Snares/Tight/snare.wav", &[3; 300_000]),
            file("Kicks/kick 1.wav", &[1; 50_000]),
            file("README.txt", b""),
        ],
        vec![p("Loops")],
    )
    .unwrap()
}

#[test]
fn a_tree_round_trips_and_its_id_is_the_hash_of_its_encoding() {
    let t = pack();
    let bytes = t.encode();
    assert_eq!(bytes.len(), t.encoded_len());
    assert_eq!(t.content_id(), Id::hash_of(&bytes));
    let back = TreeManifest::decode(&bytes).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.encode(), bytes);
    assert_eq!(
        tree_manifest_len_from_header(&bytes[..TREE_HEADER_LEN]),
        Ok(bytes.len())
    );
    assert_eq!(t.file_count(), 4);
    assert_eq!(t.entries().len(), 5);
    assert_eq!(t.total_size(), 400_000);
    // 1 + 1 + 0 + 2 chunks (the snare is 300,000 bytes: two chunks of 256 KiB at most).
    assert_eq!(t.chunk_count(), 4);
}

#[test]
fn the_same_tree_listed_in_any_order_has_one_id() {
    let a = pack();
    let b = TreeManifest::build(
        vec![
            file("README.txt", b""),
            file("Kicks/kick 1.wav", &[1; 50_000]),
            file("Snares/Tight/snare.wav", &[3; 300_000]),
            file("Kicks/kick 2.wav", &[2; 50_000]),
        ],
        vec![p("Loops")],
    )
    .unwrap();
    assert_eq!(a.content_id(), b.content_id());
    let paths: Vec<&str> = a.entries().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Kicks/kick 1.wav",
            "Kicks/kick 2.wav",
            "Loops",
            "README.txt",
            "Snares/Tight/snare.wav"
        ]
    );
}

#[test]
fn chunks_are_placed_in_their_files_and_verify() {
    let t = pack();
    let snare = vec![3u8; 300_000];
    // Chunk order: kick 1, kick 2, (Loops, README: none), snare 0, snare 1.
    let place = |i| t.chunk_place(i).unwrap();
    assert_eq!(
        (place(0).entry, place(0).offset, place(0).len),
        (0, 0, 50_000)
    );
    assert_eq!((place(1).entry, place(1).len), (1, 50_000));
    assert_eq!(
        (place(2).entry, place(2).chunk_in_file, place(2).len),
        (4, 0, 262_144)
    );
    assert_eq!(
        (place(3).entry, place(3).offset, place(3).len),
        (4, 262_144, 37_856)
    );
    assert_eq!(t.chunk_place(4), None);
    assert!(t.verify_chunk(0, &[1; 50_000]));
    assert!(!t.verify_chunk(0, &[2; 50_000]));
    assert!(t.verify_chunk(3, &snare[262_144..]));
    assert!(!t.verify_chunk(3, &snare[262_143..]));
    assert_eq!(t.file_chunks(4), 2..4);
    assert_eq!(t.file_chunks(3), 2..2);
    assert_eq!(t.file_chunks(2), 0..0);
}

#[test]
fn a_file_in_a_tree_has_the_id_it_has_alone() {
    let t = pack();
    let alone = Manifest::for_data(&[3; 300_000]).unwrap();
    assert_eq!(t.file_manifest(4).unwrap().content_id(), alone.content_id());
    assert_eq!(
        t.file_manifest(0).unwrap().content_id(),
        Manifest::for_data(&[1; 50_000]).unwrap().content_id()
    );
    assert!(t.file_manifest(2).is_none(), "a folder has no manifest");
}

#[test]
fn an_empty_folder_shares_as_an_empty_tree() {
    let t = TreeManifest::build(Vec::new(), Vec::new()).unwrap();
    assert_eq!(t.encoded_len(), TREE_HEADER_LEN);
    assert_eq!(TreeManifest::decode(&t.encode()).unwrap(), t);
}

#[test]
fn structural_rules_refuse_ambiguous_trees() {
    type Case = (Vec<(TreePath, Manifest)>, Vec<TreePath>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![file("a", b"1"), file("a", b"2")],
            vec![],
            "listed twice",
        ),
        (
            vec![file("a", b"1"), file("a/b", b"2")],
            vec![],
            "inside a file",
        ),
        (
            vec![file("e/x", b"1")],
            vec![p("e")],
            "inside a folder listed as empty",
        ),
        (
            vec![file("Kick.wav", b"1"), file("kick.wav", b"2")],
            vec![],
            "case",
        ),
        (
            vec![file("Kicks/a", b"1"), file("kicks/b", b"2")],
            vec![],
            "case",
        ),
        (
            vec![file("caf\u{e9}", b"1"), file("cafe\u{301}", b"2")],
            vec![],
            "normalization",
        ),
        (vec![file("x", b"1")], vec![p("x")], "listed twice"),
    ];
    for (files, folders, why) in cases {
        let e = TreeManifest::build(files, folders).unwrap_err();
        assert!(e.reason.contains(why), "{e} (wanted {why})");
    }
    // The same names in different folders are fine.
    assert!(TreeManifest::build(vec![file("a/kick", b"1"), file("b/Kick", b"2")], vec![]).is_ok());
}

/// An entry written by hand: kind, path, size, chunk size, SHA-256.
type RawEntry<'a> = (u8, &'a [u8], u64, u32, [u8; 32]);

/// Encodes entries by hand, for trees the builder would refuse.
fn raw(entries: &[RawEntry<'_>], hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut total = 0u64;
    for (kind, path, size, cs, sha) in entries {
        body.push(*kind);
        body.extend_from_slice(&(path.len() as u16).to_be_bytes());
        body.extend_from_slice(path);
        if *kind == KIND_FILE {
            body.extend_from_slice(&size.to_be_bytes());
            body.extend_from_slice(&cs.to_be_bytes());
            body.extend_from_slice(sha);
            total += size;
        }
    }
    let mut b = b"PSTR\x01".to_vec();
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&(hashes.len() as u32).to_be_bytes());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(&body);
    for h in hashes {
        b.extend_from_slice(h);
    }
    b
}

#[test]
fn hostile_trees_are_refused_by_the_decoder() {
    let h: [u8; 32] = Sha256::digest(b"x").into();
    let cs = 256 << 10;
    let reason = |b: &[u8]| match TreeManifest::decode(b) {
        Err(DecodeError::InvalidValue { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    // The good one first, so the others fail for their own reason.
    assert!(TreeManifest::decode(&raw(&[(0, b"x", 1, cs, h)], &[h])).is_ok());
    for (path, why) in [
        (&b"../x"[..], "`..`"),
        (b"/etc/passwd", "absolute"),
        (b"a\\b", "backslash"),
        (b"a\0b", "control"),
        (b"CON.wav", "reserved"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "empty"),
    ] {
        let r = reason(&raw(&[(0, path, 1, cs, h)], &[h]));
        assert!(r.contains(why), "{path:?}: {r}");
    }
    // Out of order, and a file that is also a folder.
    let r = reason(&raw(&[(0, b"b", 1, cs, h), (0, b"a", 1, cs, h)], &[h, h]));
    assert!(r.contains("ascending"), "{r}");
    let r = reason(&raw(&[(0, b"a", 1, cs, h), (0, b"a/b", 1, cs, h)], &[h, h]));
    assert!(r.contains("inside a file"), "{r}");
    let r = reason(&raw(&[(0, b"A", 1, cs, h), (0, b"a", 1, cs, h)], &[h, h]));
    assert!(r.contains("case"), "{r}");
    // A one-chunk file whose SHA-256 is not its chunk's hash can never complete.
    let r = reason(&raw(&[(0, b"x", 1, cs, [7; 32])], &[h]));
    assert!(r.contains("SHA-256"), "{r}");
    // An unknown kind, a bad chunk size.
    let r = reason(&raw(&[(2, b"x", 1, cs, h)], &[h]));
    assert!(r.contains("neither"), "{r}");
    let r = reason(&raw(&[(0, b"x", 1, 1000, h)], &[h]));
    assert!(r.contains("power of two"), "{r}");
}

#[test]
fn claims_of_terabytes_and_millions_fail_before_allocating() {
    let header = |entries: u32, total: u64, chunks: u32, entries_len: u32| {
        let mut b = b"PSTR\x01".to_vec();
        b.extend_from_slice(&entries.to_be_bytes());
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&chunks.to_be_bytes());
        b.extend_from_slice(&entries_len.to_be_bytes());
        b
    };
    let d = |b: Vec<u8>| TreeManifest::decode(&b).unwrap_err();
    assert!(matches!(
        d(header(1_000_000, 0, 0, 0)),
        DecodeError::LengthTooLarge {
            field: "entry_count",
            ..
        }
    ));
    assert!(matches!(
        d(header(1, 2 << 40, 0, 0)),
        DecodeError::InvalidValue {
            field: "total_size",
            ..
        }
    ));
    assert!(matches!(
        d(header(1, 0, MAX_CHUNKS + 1, 0)),
        DecodeError::LengthTooLarge {
            field: "chunk_count",
            ..
        }
    ));
    assert!(matches!(
        d(header(MAX_ENTRIES, 0, 0, 30 << 20)),
        DecodeError::UnexpectedEnd {
            field: "entries",
            ..
        }
    ));
    assert!(matches!(
        d(header(1, 0, MAX_CHUNKS, 1 << 20)),
        DecodeError::LengthTooLarge {
            field: "entries_len",
            ..
        }
    ));
    // Counts that do not add up.
    let h: [u8; 32] = Sha256::digest(b"x").into();
    let mut b = raw(&[(0, b"x", 1, 256 << 10, h)], &[h]);
    b[16] = 2; // total_size 2 instead of 1
    assert!(matches!(
        TreeManifest::decode(&b),
        Err(DecodeError::InvalidValue {
            field: "total_size",
            ..
        })
    ));
}

#[test]
fn a_deep_wide_tree_is_checked_in_linear_time() {
    // 20,000 files, each 60 folders deep: the structure check walks each path once.
    let deep: String = (0..60).map(|i| format!("d{i}/")).collect();
    let files: Vec<(TreePath, Manifest)> = (0..20_000)
        .map(|i| file(&format!("{deep}f{i}"), b""))
        .collect();
    let t = TreeManifest::build(files, Vec::new()).unwrap();
    assert_eq!(
        TreeManifest::decode(&t.encode()).unwrap().file_count(),
        20_000
    );
}

proptest! {
    /// Whatever the bytes, the decoder returns (never panics); and what decodes re-encodes
    /// to the same bytes.
    #[test]
    fn decoding_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(t) = TreeManifest::decode(&bytes) {
            prop_assert_eq!(t.encode(), bytes);
        }
    }

    /// Mutations of a valid manifest: never a panic, and a decoded mutant is canonical.
    #[test]
    fn mutated_manifests_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut b = pack().encode();
        let i = pos % b.len();
        b[i] = byte;
        b.truncate(b.len() - cut % b.len());
        if let Ok(t) = TreeManifest::decode(&b) {
            prop_assert_eq!(t.encode(), b);
        }
    }
}
