use super::*;
use crate::content::Manifest;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Timestamps move in coarse ticks (a few ms); wait past one so a change is visible.
fn tick() {
    std::thread::sleep(Duration::from_millis(15));
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data_dir: PathBuf,
    files: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let files = tmp.path().join("files");
    fs::create_dir_all(&files).unwrap();
    Fixture {
        _tmp: tmp,
        data_dir,
        files,
    }
}

#[test]
fn add_get_list_and_reopen() {
    let f = fixture();
    let a = f.files.join("a.wav");
    let b = f.files.join("b.bin");
    fs::write(&a, pattern(300_000, 1)).unwrap();
    fs::write(&b, pattern(10, 2)).unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    assert!(idx.is_empty());
    let ea = idx.add(&a).unwrap();
    let eb = idx.add(&b).unwrap();
    assert_eq!(ea.name, "a.wav");
    assert_eq!(ea.size, 300_000);
    assert!(ea.path.is_absolute());
    assert_eq!(
        ea.id,
        Manifest::for_data(&pattern(300_000, 1))
            .unwrap()
            .content_id()
    );
    assert_eq!(idx.len(), 2);
    assert_eq!(
        idx.list()
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["a.wav", "b.bin"]
    );
    assert_eq!(idx.manifest(&ea.id).unwrap().content_id(), ea.id);
    idx.check(&ea.id).unwrap();
    drop(idx);

    let idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.get(&ea.id), Some(ea.clone()));
    assert_eq!(idx.get(&eb.id), Some(eb.clone()));
    assert_eq!(idx.manifest(&eb.id).unwrap().total_size(), 10);
}

#[test]
fn re_adding_is_idempotent_and_cheap() {
    let f = fixture();
    let a = f.files.join("a");
    fs::write(&a, pattern(1000, 0)).unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e1 = idx.add(&a).unwrap();
    // Through a different spelling of the same path.
    let e2 = idx.add(&f.files.join(".").join("a")).unwrap();
    assert_eq!(e1, e2);
    assert_eq!(idx.len(), 1);
    assert!(idx.find_unchanged(&e1.path).is_some());
}

#[test]
fn same_content_from_another_path_replaces() {
    let f = fixture();
    let a = f.files.join("a");
    let b = f.files.join("b");
    fs::write(&a, pattern(5000, 3)).unwrap();
    fs::write(&b, pattern(5000, 3)).unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let ea = idx.add(&a).unwrap();
    let eb = idx.add(&b).unwrap();
    assert_eq!(ea.id, eb.id);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx.get(&ea.id).unwrap().path, eb.path);
    // The old path is no longer an index key: adding it again switches back.
    assert!(idx.find_unchanged(&ea.path).is_none());
    assert_eq!(idx.add(&a).unwrap().path, ea.path);
}

#[test]
fn a_path_whose_content_changed_gets_the_new_id() {
    let f = fixture();
    let a = f.files.join("a");
    fs::write(&a, b"one").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let old = idx.add(&a).unwrap();
    tick();
    fs::write(&a, b"two").unwrap();
    let new = idx.add(&a).unwrap();
    assert_ne!(old.id, new.id);
    assert_eq!(idx.len(), 1);
    assert!(idx.get(&old.id).is_none());
    assert!(idx.manifest(&old.id).is_none());
    assert!(idx.local_files_for(&idx.manifest(&new.id).unwrap()).len() == 1);
}

#[test]
fn remove_and_errors() {
    let f = fixture();
    let a = f.files.join("a");
    fs::write(&a, b"x").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e = idx.add(&a).unwrap();
    assert_eq!(idx.remove(&e.id).unwrap(), Some(e.clone()));
    assert_eq!(idx.remove(&e.id).unwrap(), None);
    assert!(matches!(
        idx.check(&e.id),
        Err(ContentError::NotShared { .. })
    ));
    assert!(a.exists(), "unsharing never touches the file");
    // A path that was never there is named as such, absolute.
    match idx.add(&f.files.join("nope")) {
        Err(ContentError::NoSuchFile { path }) => assert_eq!(path, f.files.join("nope")),
        other => panic!("{other:?}"),
    }
    // A FIFO is neither a file nor a folder.
    let fifo = f.files.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path; the result is checked.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(idx.add(&fifo), Err(ContentError::NotAFile { .. })));
    drop(idx);
    assert!(ShareIndex::open(&f.data_dir).unwrap().is_empty());
}

/// Every way a shared file can change is caught by `check` and by both readers.
#[test]
fn change_detection() {
    let size = 100_000;
    type Mutate = fn(&Path);
    let cases: [(&str, Mutate, bool); 6] = [
        (
            "modify a byte",
            |p| {
                let f = fs::OpenOptions::new().write(true).open(p).unwrap();
                f.write_all_at(b"\xff", 5).unwrap();
            },
            false,
        ),
        (
            "append",
            |p| {
                let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(b"tail").unwrap();
            },
            false,
        ),
        (
            "truncate",
            |p| {
                let f = fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(10).unwrap();
            },
            false,
        ),
        (
            "replace by rename",
            |p| {
                let tmp = p.with_extension("new");
                fs::write(&tmp, pattern(100_000, 9)).unwrap();
                fs::rename(&tmp, p).unwrap();
            },
            false,
        ),
        (
            "same bytes rewritten",
            |p| {
                let d = fs::read(p).unwrap();
                fs::write(p, d).unwrap();
            },
            false,
        ),
        (
            "delete",
            |p| {
                fs::remove_file(p).unwrap();
            },
            true,
        ),
    ];
    for (what, mutate, missing) in cases {
        let f = fixture();
        let p = f.files.join("f");
        fs::write(&p, pattern(size, 4)).unwrap();
        let mut idx = ShareIndex::open(&f.data_dir).unwrap();
        let e = idx.add(&p).unwrap();
        let lengths = idx.manifest(&e.id).unwrap().as_file().unwrap().lengths();
        let c0 = lengths.validate(0).unwrap();
        let reader = idx.reader(&e.id).unwrap();
        let mut buf = Vec::new();
        reader.read_chunk(c0, &mut buf).unwrap();
        assert_eq!(buf.len(), size);

        tick();
        mutate(&p);

        let check = idx.check(&e.id);
        let one_shot = read_chunk(&e, &lengths, c0, &mut buf);
        let cached = reader.read_chunk(c0, &mut buf);
        assert!(buf.is_empty(), "{what}: no data returned on error");
        for (who, r) in [("check", check), ("read_chunk", one_shot)] {
            match (missing, r) {
                (true, Err(ContentError::Missing { .. })) => {}
                (false, Err(ContentError::Changed { .. })) => {}
                (_, r) => panic!("{what}: {who} gave {r:?}"),
            }
        }
        match (what, cached) {
            // The open handle still holds the old inode, whose bytes did not change; but
            // the rename over it removed its last name, so it reads as deleted.
            ("replace by rename", Err(ContentError::Missing { .. })) => {}
            (_, Err(ContentError::Missing { .. })) if missing => {}
            (_, Err(ContentError::Changed { .. })) if !missing => {}
            (_, r) => panic!("{what}: cached reader gave {r:?}"),
        }
    }
}

/// Runs `sql` on the store of `data_dir` directly (to damage it as a disk could).
fn poke(data_dir: &Path, sql: &str, blob: &[u8], id: &Id) {
    let c = rusqlite::Connection::open(data_dir.join(STORE_FILE)).unwrap();
    c.execute(sql, rusqlite::params![blob, &id.0[..]]).unwrap();
}

#[test]
fn a_damaged_manifest_in_the_store_is_dropped_never_served() {
    let f = fixture();
    let a = f.files.join("a");
    let b = f.files.join("b");
    fs::write(&a, b"aaa").unwrap();
    fs::write(&b, b"bbb").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let ea = idx.add(&a).unwrap();
    let eb = idx.add(&b).unwrap();
    let mut bytes = idx.manifest(&ea.id).unwrap().encode();
    drop(idx);
    // Damage a's manifest: it no longer hashes to its ID.
    bytes[30] ^= 1;
    poke(
        &f.data_dir,
        "UPDATE shares SET manifest = ?1 WHERE id = ?2",
        &bytes,
        &ea.id,
    );
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    assert!(idx.manifest(&ea.id).is_none(), "never loaded for serving");
    assert!(matches!(
        idx.reader(&ea.id),
        Err(ContentError::NotShared { .. })
    ));
    let loaded = idx.load_all().unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].entry, eb);
    assert!(idx.get(&ea.id).is_none(), "dropped from the store");
    assert_eq!(idx.len(), 1);
}

/// A store that is not a database (or is corrupt) stops the open with an error that says
/// what to do; it is neither emptied nor replaced, so nothing the user shared is lost.
#[test]
fn a_corrupt_store_is_a_clear_error_not_an_empty_library() {
    let f = fixture();
    let a = f.files.join("a");
    fs::write(&a, b"aaa").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    idx.add(&a).unwrap();
    drop(idx);
    let db = f.data_dir.join(STORE_FILE);
    let _ = fs::remove_file(f.data_dir.join(format!("{STORE_FILE}-wal")));
    let _ = fs::remove_file(f.data_dir.join(format!("{STORE_FILE}-shm")));
    let mut bytes = fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(100) {
        *b ^= 0x5a;
    }
    fs::write(&db, &bytes).unwrap();
    let err = ShareIndex::open(&f.data_dir).unwrap_err();
    assert!(
        matches!(err, ContentError::Store { damaged: true, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("is damaged") && msg.contains("shares.db"),
        "{msg}"
    );
    assert!(msg.contains("Move it away"), "{msg}");
    assert_eq!(
        fs::read(&db).unwrap(),
        bytes,
        "left as it was, for the user"
    );

    // Corrupt pages deeper in a valid file: also an error when the shares are loaded.
    let f = fixture();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    for i in 0..300 {
        let p = f.files.join(format!("f{i}"));
        fs::write(&p, format!("file {i}")).unwrap();
        idx.add(&p).unwrap();
    }
    drop(idx);
    let c = rusqlite::Connection::open(f.data_dir.join(STORE_FILE)).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(c);
    let mut bytes = fs::read(f.data_dir.join(STORE_FILE)).unwrap();
    assert!(bytes.len() > 5 * 4096);
    for b in &mut bytes[4096..4 * 4096] {
        *b = 0xff;
    }
    fs::write(f.data_dir.join(STORE_FILE), &bytes).unwrap();
    let r = ShareIndex::open(&f.data_dir).and_then(|mut idx| idx.load_all());
    match r {
        Err(e @ ContentError::Store { damaged: true, .. }) => {
            assert!(e.to_string().contains("is damaged"))
        }
        other => panic!("a corrupt store must be an error: {other:?}"),
    }
}

/// A data dir of the earlier format (`shares.json` + `manifests/`, a folder's `.stamps`) is
/// imported once: every good share, served as before; the old files set aside and deleted;
/// a damaged manifest dropped as the earlier open dropped it.
#[test]
fn the_earlier_format_is_imported_once() {
    let f = fixture();
    let a = f.files.join("a.wav");
    let b = f.files.join("b.wav");
    let bad = f.files.join("bad.wav");
    fs::write(&a, pattern(300_000, 1)).unwrap();
    fs::write(&b, pattern(10, 2)).unwrap();
    fs::write(&bad, pattern(20, 3)).unwrap();
    let root = f.files.join("pack");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("k.wav"), pattern(5000, 4)).unwrap();
    // Written as the earlier index wrote them.
    let mdir = f.data_dir.join("manifests");
    fs::create_dir_all(&mdir).unwrap();
    let mut entries = Vec::new();
    for p in [&a, &b, &bad, &root] {
        let prep = prepare_share(p, &|_| {}).unwrap();
        let id = prep.manifest.content_id();
        let mut bytes = prep.manifest.encode();
        if p == &bad {
            bytes[20] ^= 1;
        }
        fs::write(mdir.join(import::manifest_file_name(&id)), bytes).unwrap();
        if prep.manifest.as_tree().is_some() {
            fs::write(
                mdir.join(import::stamps_file_name(&id)),
                encode_stamps(&prep.file_stamps),
            )
            .unwrap();
        }
        entries.push(SharedEntry {
            id,
            name: prep.name,
            size: prep.manifest.total_size(),
            stamp: prep.stamp,
            path: prep.path,
        });
    }
    fs::write(
        f.data_dir.join("shares.json"),
        encode_entries(entries.iter()).unwrap(),
    )
    .unwrap();

    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(idx.len(), 3, "the damaged one is dropped");
    for e in [&entries[0], &entries[1], &entries[3]] {
        assert_eq!(idx.get(&e.id).as_ref(), Some(e));
        let r = idx.reader(&e.id).unwrap();
        let m = idx.manifest(&e.id).unwrap();
        let mut buf = Vec::new();
        r.read_chunk(m.validate(0).unwrap(), &mut buf).unwrap();
        assert!(m.verify_chunk(m.validate(0).unwrap(), &buf));
    }
    assert!(idx.get(&entries[2].id).is_none());
    assert!(!f.data_dir.join("shares.json").exists());
    assert!(f.data_dir.join("shares.json.imported").exists());
    assert!(!mdir.exists(), "the manifests folder is gone");
    assert_eq!(idx.load_all().unwrap().len(), 3);
    drop(idx);
    // Once: the next open finds the store only.
    let idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(idx.len(), 3);

    // A corrupt shares.json of the earlier format is set aside, as before.
    let g = fixture();
    fs::create_dir_all(&g.data_dir).unwrap();
    fs::write(g.data_dir.join("shares.json"), b"{broken").unwrap();
    let idx = ShareIndex::open(&g.data_dir).unwrap();
    assert!(idx.is_empty());
    assert!(g.data_dir.join("shares.json.corrupt").exists());
}

/// The sweep over the library finds, step by step, every share whose file changed or
/// disappeared, and only those.
#[test]
fn the_check_sweep_finds_changed_files_in_steps() {
    let f = fixture();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        let p = f.files.join(format!("f{i}"));
        fs::write(&p, format!("file {i}")).unwrap();
        ids.push((idx.add(&p).unwrap().id, p));
    }
    tick();
    fs::write(&ids[3].1, b"changed").unwrap();
    fs::remove_file(&ids[17].1).unwrap();
    let mut failed = Vec::new();
    let mut after = None;
    let mut steps = 0;
    loop {
        let (bad, next) = idx.check_batch(after.as_ref(), 10).unwrap();
        failed.extend(bad);
        steps += 1;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(steps, 3);
    failed.sort();
    let mut want = vec![ids[3].0, ids[17].0];
    want.sort();
    assert_eq!(failed, want);
}

#[test]
fn commit_refuses_a_file_changed_after_hashing() {
    let f = fixture();
    let a = f.files.join("a");
    fs::write(&a, b"first").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let prepared = prepare_share(&a, &|_| {}).unwrap();
    tick();
    fs::write(&a, b"other").unwrap();
    assert!(matches!(
        idx.commit(prepared),
        Err(ContentError::Changed { .. })
    ));
    assert!(idx.is_empty());
}

#[test]
fn add_downloaded_skips_hashing() {
    let f = fixture();
    let d = pattern(70_000, 5);
    let a = f.files.join("dl.bin");
    fs::write(&a, &d).unwrap();
    let m = Arc::new(ContentManifest::File(Manifest::for_data(&d).unwrap()));
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e = idx.add_downloaded(&a, Arc::clone(&m), None, false).unwrap();
    assert_eq!(e.id, m.content_id());
    let other = Arc::new(ContentManifest::File(Manifest::for_data(b"short").unwrap()));
    assert!(idx.add_downloaded(&a, other, None, false).is_err());
    assert!(idx.unflushed().unwrap().is_empty());
}

/// A folder as a download leaves it: three files in two folders, shared marked unflushed.
fn downloaded_folder(f: &Fixture) -> (PathBuf, Id) {
    downloaded_folder_then(f, |_| {})
}

/// [`downloaded_folder`], with `before` run on the folder after its manifest is made and
/// before it is shared (so the stamps recorded are those of what `before` left).
fn downloaded_folder_then(f: &Fixture, before: impl Fn(&Path)) -> (PathBuf, Id) {
    let dir = f.files.join("Pack");
    fs::create_dir_all(dir.join("Kicks")).unwrap();
    fs::write(dir.join("Kicks/k1.wav"), pattern(70_000, 1)).unwrap();
    fs::write(dir.join("Kicks/k2.wav"), pattern(3_000, 2)).unwrap();
    fs::write(dir.join("readme.txt"), b"a pack").unwrap();
    let m = prepare_share(&dir, &|_| {}).unwrap().manifest;
    before(&dir);
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e = idx.add_downloaded(&dir, m, None, true).unwrap();
    assert_eq!(idx.unflushed().unwrap(), vec![e.id]);
    (dir, e.id)
}

#[test]
fn an_unflushed_mark_lasts_until_flushed_or_removed() {
    let f = fixture();
    let (_, id) = downloaded_folder(&f);
    // Durable with the share: a reopen (a node killed before its sync) still sees it.
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(idx.unflushed().unwrap(), vec![id]);
    idx.flushed(&id).unwrap();
    assert!(idx.unflushed().unwrap().is_empty());
    assert!(idx.get(&id).is_some());
    drop(idx);
    let (_, id) = downloaded_folder(&f);
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    idx.remove(&id).unwrap();
    assert!(idx.unflushed().unwrap().is_empty());
}

#[test]
fn an_unflushed_folder_whose_bytes_are_whole_is_kept_at_the_recheck() {
    let f = fixture();
    let (_, id) = downloaded_folder(&f);
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let r = idx.recheck_unflushed().unwrap();
    assert_eq!(r.kept, vec![id]);
    assert!(r.dropped.is_empty());
    assert!(idx.unflushed().unwrap().is_empty());
    idx.check(&id).unwrap();
    // Nothing marked: the next start has nothing to re-hash.
    assert_eq!(idx.recheck_unflushed().unwrap(), Rechecked::default());
}

#[test]
fn an_unflushed_partial_folder_is_rechecked_on_the_files_it_holds() {
    // A download of part of a folder (`--only`): readme.txt was not fetched, so it is not
    // there; the recheck reads only the files that are.
    let f = fixture();
    let dir = f.files.join("Pack");
    fs::create_dir_all(dir.join("Kicks")).unwrap();
    fs::write(dir.join("Kicks/k1.wav"), pattern(70_000, 1)).unwrap();
    fs::write(dir.join("readme.txt"), b"a pack").unwrap();
    let m = prepare_share(&dir, &|_| {}).unwrap().manifest;
    fs::remove_file(dir.join("readme.txt")).unwrap();
    let present: Vec<bool> = m
        .as_tree()
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.path.as_str() != "readme.txt")
        .collect();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let id = idx
        .add_downloaded(&dir, m, Some(&present), true)
        .unwrap()
        .id;
    let r = idx.recheck_unflushed().unwrap();
    assert_eq!((r.kept, r.dropped), (vec![id], vec![]));
    // And a file it holds that lost its bytes still fails it.
    let m = idx.manifest(&id).unwrap();
    fs::write(dir.join("Kicks/k1.wav"), vec![0u8; 70_000]).unwrap();
    idx.add_downloaded(&dir, m, Some(&present), true).unwrap();
    let r = idx.recheck_unflushed().unwrap();
    assert_eq!((r.kept, r.dropped), (vec![], vec![id]));
}

#[test]
fn an_unflushed_folder_with_bytes_lost_is_dropped_at_the_recheck() {
    let f = fixture();
    // What a power cut before the sync can leave: a file of the right size, its bytes zeros;
    // and a file that never reached the disk.
    for damage in ["zeros", "gone"] {
        let (dir, id) = downloaded_folder(&f);
        let k1 = dir.join("Kicks/k1.wav");
        match damage {
            "zeros" => fs::write(&k1, vec![0u8; 70_000]).unwrap(),
            _ => fs::remove_file(&k1).unwrap(),
        }
        let mut idx = ShareIndex::open(&f.data_dir).unwrap();
        let r = idx.recheck_unflushed().unwrap();
        assert_eq!(r.dropped, vec![id], "{damage}");
        assert!(r.kept.is_empty(), "{damage}");
        assert!(idx.get(&id).is_none(), "{damage}: never served as valid");
        assert!(idx.unflushed().unwrap().is_empty(), "{damage}");
        drop(idx);
        fs::remove_dir_all(&dir).unwrap();
    }
    // The stamps can be those of the damaged file (a power cut keeps the inode, and its
    // times, while its blocks were never written): the hashes still find it.
    let (dir, id) = downloaded_folder_then(&f, |dir| {
        fs::write(dir.join("Kicks/k1.wav"), vec![0u8; 70_000]).unwrap();
    });
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    idx.check(&id).unwrap();
    assert_eq!(
        idx.reader(&id).map(|_| ()).ok(),
        Some(()),
        "its stamps agree"
    );
    let r = idx.recheck_unflushed().unwrap();
    assert_eq!(r.dropped, vec![id]);
    assert!(idx.get(&id).is_none());
    drop(idx);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_utf8_paths_survive_a_reopen() {
    let f = fixture();
    let name = OsString::from_vec(b"caf\xe9.wav".to_vec());
    let p = f.files.join(&name);
    fs::write(&p, b"latin-1 name").unwrap();
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e = idx.add(&p).unwrap();
    drop(idx);
    let idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(idx.get(&e.id).unwrap().path, e.path);
    idx.check(&e.id).unwrap();
}

/// A shared folder: one entry, served from its files in place; its stamps survive a reopen;
/// a file modified, replaced or deleted since is refused, never served.
#[test]
fn a_folder_is_shared_in_place_and_never_served_changed() {
    let f = fixture();
    let root = f.files.join("pack");
    fs::create_dir_all(root.join("Kicks")).unwrap();
    fs::create_dir_all(root.join("Empty")).unwrap();
    fs::write(root.join("Kicks/a.wav"), pattern(50_000, 1)).unwrap();
    fs::write(root.join("Kicks/b.wav"), pattern(60_000, 2)).unwrap();
    fs::write(root.join("long.wav"), pattern(600_000, 3)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    let prepared = prepare_share(&root, &|_| {}).unwrap();
    assert_eq!(prepared.skipped.len(), 1, "the link is left out and said");
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    let e = idx.commit(prepared).unwrap();
    assert_eq!((e.name.as_str(), e.size), ("pack", 110_000 + 600_000));
    let m = idx.manifest(&e.id).unwrap();
    let t = m.as_tree().unwrap();
    assert_eq!(t.file_count(), 3);
    let read_all = |idx: &ShareIndex| -> Vec<Result<Vec<u8>, String>> {
        let r = idx.reader(&e.id).unwrap();
        (0..m.chunk_count())
            .map(|i| {
                let mut buf = Vec::new();
                r.read_chunk(m.validate(i).unwrap(), &mut buf)
                    .map(|()| buf)
                    .map_err(|e| e.to_string())
            })
            .collect()
    };
    let chunks = read_all(&idx);
    for (i, c) in chunks.iter().enumerate() {
        assert!(m.verify_chunk(m.validate(i as u32).unwrap(), c.as_ref().unwrap()));
    }
    drop(idx);
    // Reopened: the stamps were kept, the same chunks are served.
    let idx = ShareIndex::open(&f.data_dir).unwrap();
    assert_eq!(read_all(&idx), chunks);

    tick();
    fs::write(root.join("Kicks/b.wav"), pattern(60_000, 9)).unwrap();
    fs::remove_file(root.join("long.wav")).unwrap();
    let after = read_all(&idx);
    assert_eq!(after[0], chunks[0], "an untouched file is still served");
    assert!(
        after[1].as_ref().unwrap_err().contains("b.wav"),
        "{:?}",
        after[1]
    );
    for r in &after[2..] {
        assert!(r.as_ref().unwrap_err().contains("long.wav"), "{r:?}");
    }
    // Damaged stamps drop the share at the next load instead of serving blindly.
    drop(idx);
    poke(
        &f.data_dir,
        "UPDATE shares SET stamps = ?1 WHERE id = ?2",
        b"PSST junk",
        &e.id,
    );
    let mut idx = ShareIndex::open(&f.data_dir).unwrap();
    assert!(idx.reader(&e.id).is_err());
    assert!(idx.load_all().unwrap().is_empty());
    assert!(idx.get(&e.id).is_none());
}
