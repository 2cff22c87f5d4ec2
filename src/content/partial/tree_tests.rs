//! A folder's download: stored chunk by chunk into its own files in a staging folder,
//! resumed after a crash, renamed to its final name at finish, never replacing anything.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::content::tree::{TreeManifest, TreePath};
use crate::content::verified::VerifiedChunk;
use crate::content::Manifest;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i % 241) as u8).wrapping_add(seed).wrapping_mul(13))
        .collect()
}

/// A pack: small files (one chunk each), a file of several chunks, an empty file, an empty
/// folder; returns each file's bytes by path and the manifest.
fn pack() -> (BTreeMap<String, Vec<u8>>, Arc<ContentManifest>) {
    let mut files = BTreeMap::new();
    files.insert("Kicks/kick 1.wav".to_owned(), pattern(50_000, 1));
    files.insert("Kicks/kick 2.wav".to_owned(), pattern(49_999, 2));
    files.insert("Loops/long.wav".to_owned(), pattern(700_000, 3));
    files.insert("README".to_owned(), b"a pack".to_vec());
    files.insert("silence.raw".to_owned(), vec![0; 30_000]);
    files.insert("empty.txt".to_owned(), Vec::new());
    let entries = files
        .iter()
        .map(|(p, d)| (TreePath::new(p).unwrap(), Manifest::for_data(d).unwrap()))
        .collect();
    let t = TreeManifest::build(entries, vec![TreePath::new("Empty/Folder").unwrap()]).unwrap();
    (files, Arc::new(ContentManifest::Tree(t)))
}

/// The bytes of tree chunk `i`.
fn chunk_bytes(files: &BTreeMap<String, Vec<u8>>, m: &ContentManifest, i: u32) -> Vec<u8> {
    let t = m.as_tree().unwrap();
    let p = t.chunk_place(i).unwrap();
    let path = t.entries()[p.entry].path.as_str();
    let d = &files[path];
    d[p.offset as usize..p.offset as usize + p.len as usize].to_vec()
}

fn store(pf: &mut PartialFile, files: &BTreeMap<String, Vec<u8>>, i: u32) {
    let m = Arc::clone(pf.manifest());
    let v = VerifiedChunk::check(&m, i, chunk_bytes(files, &m, i))
        .ok()
        .unwrap();
    pf.store(&v).unwrap();
}

fn assert_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (p, d) in files {
        assert_eq!(&fs::read(root.join(p)).unwrap(), d, "{p}");
    }
    assert!(root.join("Empty/Folder").is_dir());
    let mut n = 0;
    for e in walk(root) {
        if e.is_file() {
            n += 1;
        }
    }
    assert_eq!(n, files.len(), "nothing else in the tree");
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_folder_downloads_into_its_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let count = m.chunk_count();
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    // The all-zero file needs no fetching.
    assert_eq!(rep.recovered, 1, "{rep:?}");
    for i in (0..count).rev() {
        store(&mut pf, &files, i);
    }
    assert!(pf.is_complete());
    let out = tmp.path().join("out");
    let p = pf.finish(&out, "My Pack").unwrap();
    assert_eq!(p, out.join("My Pack"));
    assert_tree(&p, &files);
    // Only the final folder: no staging left, nothing in downloads/.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    assert_eq!(
        fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
        0
    );

    // The same content again into the same folder: a numbered name, nothing replaced.
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    for i in 0..count {
        store(&mut pf, &files, i);
    }
    fs::write(p.join("README"), b"the user's edit").unwrap();
    let p2 = pf.finish(&out, "My Pack").unwrap();
    assert_eq!(p2, out.join("My Pack (1)"));
    assert_tree(&p2, &files);
    assert_eq!(fs::read(p.join("README")).unwrap(), b"the user's edit");
}

#[test]
fn a_folder_download_resumes_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let count = m.chunk_count();
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..count / 2 {
            store(&mut pf, &files, i);
        }
        pf.flush_record().unwrap();
        // Written but never recorded (the process died before the next record); the last
        // chunk is the all-zero file's, verified from the start.
        store(&mut pf, &files, count - 2);
        // dropped: like a kill -9, no flush
    }
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert!(!rep.created);
    assert_eq!(rep.from_record, count / 2 + 1, "{rep:?}");
    assert_eq!(
        rep.recovered, 1,
        "the unrecorded chunk is re-hashed: {rep:?}"
    );
    for i in 0..count {
        if !pf.is_verified(pf.layout().validate(i).unwrap()) {
            store(&mut pf, &files, i);
        }
    }
    let out = tmp.path().join("out");
    let p = pf.finish(&out, "pack").unwrap();
    assert_tree(&p, &files);
    assert_eq!(
        fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
        0
    );
}

/// The staging folder of download `m` in data dir `data`.
fn staging(data: &Path, m: &ContentManifest) -> std::path::PathBuf {
    data.join("downloads")
        .join(format!("{}.tree", m.content_id().to_hex()))
}

#[test]
fn a_file_lost_from_the_staging_folder_is_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let count = m.chunk_count();
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..count {
            store(&mut pf, &files, i);
        }
        pf.flush_record().unwrap();
    }
    let st = staging(tmp.path(), &m);
    fs::remove_file(st.join("Kicks/kick 2.wav")).unwrap();
    // Shortened by hand: not trusted, re-hashed (the bytes that are left do not match).
    let f = fs::OpenOptions::new()
        .write(true)
        .open(st.join("README"))
        .unwrap();
    f.set_len(2).unwrap();
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(rep.missing, 2, "{rep:?}");
    assert_eq!(rep.from_record, count - 2, "{rep:?}");
    for i in 0..count {
        if !pf.is_verified(pf.layout().validate(i).unwrap()) {
            store(&mut pf, &files, i);
        }
    }
    let p = pf.finish(&tmp.path().join("out"), "pack").unwrap();
    assert_tree(&p, &files);
}

#[test]
fn a_folder_is_copied_into_place_across_file_systems() {
    let data = tempfile::tempdir().unwrap();
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("SKIPPED: no /dev/shm to put the output folder on another file system");
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    if dev(data.path()) == dev(other.path()) {
        eprintln!("SKIPPED: /dev/shm is on the same file system as the temp dir");
        return;
    }
    let (files, m) = pack();
    let (mut pf, _) = PartialFile::open_or_create(data.path(), Arc::clone(&m)).unwrap();
    for i in 0..m.chunk_count() {
        store(&mut pf, &files, i);
    }
    let p = pf.finish(other.path(), "pack").unwrap();
    assert_eq!(p, other.path().join("pack"));
    assert_tree(&p, &files);
    // No hidden staging folder left beside it, nothing left in downloads/.
    assert_eq!(fs::read_dir(other.path()).unwrap().count(), 1);
    assert_eq!(
        fs::read_dir(data.path().join("downloads")).unwrap().count(),
        0
    );
}

#[test]
fn a_recorded_chunk_of_a_big_file_damaged_on_disk_is_caught_at_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..m.chunk_count() {
            store(&mut pf, &files, i);
        }
        pf.flush_record().unwrap();
    }
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(rep.missing, 0);
    // Damage a chunk of Loops/long.wav (several chunks) on disk after it was recorded.
    let t = m.as_tree().unwrap();
    let entry = t
        .entries()
        .iter()
        .position(|e| e.path.as_str() == "Loops/long.wav")
        .unwrap();
    let c = t.file_chunks(entry).start + 1;
    let off = t.chunk_place(c).unwrap().offset;
    fs::OpenOptions::new()
        .write(true)
        .open(staging(tmp.path(), &m).join("Loops/long.wav"))
        .unwrap()
        .write_all_at(b"rot", off + 5)
        .unwrap();
    let out = tmp.path().join("out");
    match pf.finish(&out, "pack") {
        Err(ContentError::DamagedOnDisk { bad_chunks, .. }) => assert_eq!(bad_chunks, 1),
        other => panic!("{other:?}"),
    }
    assert!(!pf.is_verified(pf.layout().validate(c).unwrap()));
    // Nothing under the final name, no staging left.
    assert_eq!(fs::read_dir(&out).map_or(0, |d| d.count()), 0);
    store(&mut pf, &files, c);
    let p = pf.finish(&out, "pack").unwrap();
    assert_tree(&p, &files);
}

#[test]
fn a_folder_name_from_the_network_stays_inside_the_download_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let out = tmp.path().join("out");
    for (k, name) in ["../escape", "/etc", "", ".", ".."].iter().enumerate() {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..m.chunk_count() {
            store(&mut pf, &files, i);
        }
        let p = pf.finish(&out, name).unwrap();
        assert_eq!(p.parent(), Some(out.as_path()), "{name:?} -> {p:?}");
        assert_tree(&p, &files);
        assert_eq!(fs::read_dir(&out).unwrap().count(), k + 1);
    }
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn part_of_a_folder_completes_with_only_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    let sel = crate::content::tree::Selection::parse(&["Kicks"]).unwrap();
    pf.select(&sel);
    let t = m.as_tree().unwrap();
    let wanted = sel.chunks(t);
    assert_eq!(pf.missing_count() as usize, wanted.count());
    for i in wanted.iter() {
        assert!(!pf.is_complete());
        store(&mut pf, &files, i as u32);
    }
    assert!(pf.is_complete());
    let p = pf.finish(&tmp.path().join("out"), "pack").unwrap();
    let mut got: Vec<String> = walk(&p)
        .into_iter()
        .map(|x| x.strip_prefix(&p).unwrap().display().to_string())
        .collect();
    got.sort();
    // The all-zero file made at open and the empty folder are not part of the selection.
    assert_eq!(got, ["Kicks", "Kicks/kick 1.wav", "Kicks/kick 2.wav"]);
    for f in ["Kicks/kick 1.wav", "Kicks/kick 2.wav"] {
        assert_eq!(&fs::read(p.join(f)).unwrap(), &files[f]);
    }
    assert_eq!(
        fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
        0
    );
}

/// A file is at its full size from its first chunk on: a small file (one chunk) by that
/// write alone, a bigger one sized when it is made; a file a crash left empty between its
/// creation and its write is sized again.
#[test]
fn each_file_has_its_size_from_its_first_chunk_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, m) = pack();
    let t = m.as_tree().unwrap();
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    let root = staging(tmp.path(), &m);
    let left_empty = root.join("Kicks/kick 2.wav");
    fs::create_dir_all(left_empty.parent().unwrap()).unwrap();
    fs::write(&left_empty, b"").unwrap();
    let mut checked = 0;
    for i in 0..m.chunk_count() {
        let p = t.chunk_place(i).unwrap();
        let path = t.entries()[p.entry].path.as_str();
        if p.offset != 0 || pf.is_verified(pf.layout().validate(i).unwrap()) {
            continue;
        }
        store(&mut pf, &files, i);
        let len = fs::metadata(root.join(path)).unwrap().len();
        assert_eq!(
            len,
            files[path].len() as u64,
            "{path} after its first chunk"
        );
        checked += 1;
    }
    // Both kicks, the long loop (several chunks), the README.
    assert_eq!(checked, 4);
    for i in 0..m.chunk_count() {
        if !pf.is_verified(pf.layout().validate(i).unwrap()) {
            store(&mut pf, &files, i);
        }
    }
    let p = pf.finish(&tmp.path().join("out"), "pack").unwrap();
    assert_tree(&p, &files);
}
