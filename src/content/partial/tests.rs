use std::fs::{self, OpenOptions};
use std::sync::atomic::Ordering;

use super::page_cache::{KEEP_CACHED_BEHIND, RELEASE_STEP};
use super::record::{bit_at, read_record};
use super::*;
use crate::content::names::fallback_name;
use crate::content::Manifest;

/// A file's manifest as the partial download takes it.
fn file(m: Manifest) -> Arc<ContentManifest> {
    Arc::new(ContentManifest::File(m))
}

const CS: u32 = 16 << 10;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i % 251) as u8).wrapping_add(seed).wrapping_mul(7))
        .collect()
}

/// Content of `chunks` 16 KiB chunks, the last one short.
fn content(chunks: usize) -> (Vec<u8>, Arc<ContentManifest>) {
    let d = pattern(chunks * CS as usize - 100, 3);
    let m = file(Manifest::for_data_with_chunk_size(&d, CS).unwrap());
    (d, m)
}

fn chunk<'a>(d: &'a [u8], m: &ContentManifest, c: ChunkIndex) -> &'a [u8] {
    let r = m.layout().chunk_range(c);
    &d[r.start as usize..r.end as usize]
}

fn idx(m: &ContentManifest, i: u32) -> ChunkIndex {
    m.validate(i).unwrap()
}

fn verified(m: &ContentManifest, d: &[u8], i: u32) -> VerifiedChunk {
    let c = idx(m, i);
    VerifiedChunk::check(m, i, chunk(d, m, c).to_vec())
        .ok()
        .unwrap()
}

/// Stores chunk `i` as a download does; with `!mark`, only writes its bytes into the
/// `.part` (as a crash between the write and the record would leave them).
fn store(pf: &mut PartialFile, d: &[u8], i: u32, mark: bool) {
    let m = Arc::clone(pf.manifest());
    if mark {
        assert!(pf.store(&verified(&m, d, i)).unwrap());
    } else {
        let c = idx(&m, i);
        part_file(pf)
            .write_all_at(chunk(d, &m, c), m.layout().chunk_offset(c))
            .unwrap();
    }
}

/// The single file's `.part`, to write behind the download's back.
fn part_file(pf: &PartialFile) -> &std::fs::File {
    pf.data.as_file().unwrap().1
}

fn verified_set(v: &[bool]) -> Vec<u32> {
    v.iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| i as u32)
        .collect()
}

#[test]
fn fresh_download_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(5);
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert!(rep.created);
    assert_eq!(rep.missing, 5);
    let part = tmp
        .path()
        .join("downloads")
        .join(format!("{}.part", m.content_id().to_hex()));
    assert_eq!(fs::metadata(&part).unwrap().len(), d.len() as u64);
    for i in [4, 0, 2, 1, 3] {
        store(&mut pf, &d, i, true);
    }
    assert!(pf.is_complete());
    pf.flush_record().unwrap();
    let out = tmp.path().join("out");
    let p = pf.finish(&out, "song.wav").unwrap();
    assert_eq!(p, out.join("song.wav"));
    assert_eq!(fs::read(&p).unwrap(), d);
    assert_eq!(pf.finished_path(), Some(p.as_path()));
    // Nothing left in downloads/.
    assert_eq!(
        fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
        0
    );
    assert!(matches!(
        pf.store(&verified(&m, &d, 0)),
        Err(ContentError::Closed { .. })
    ));
}

/// The verified prefix follows the chunks verified from the start of the file, out-of-order
/// arrivals included, and goes back when a chunk of it is dropped.
#[test]
fn the_verified_prefix_follows_the_chunks_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(6);
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    let step = |pf: &mut PartialFile, i: u32| {
        store(pf, &d, i, true);
        pf.prefix
    };
    assert_eq!(step(&mut pf, 2), 0, "chunk 0 missing");
    assert_eq!(step(&mut pf, 0), 1, "stops before missing chunk 1");
    assert_eq!(step(&mut pf, 1), 3, "1 and 2");
    assert_eq!(step(&mut pf, 4), 3, "3 missing");
    assert_eq!(step(&mut pf, 3), 5);
    pf.unset_verified(idx(&m, 1));
    assert_eq!(pf.prefix, 1);
    assert_eq!(step(&mut pf, 1), 5);
    assert_eq!(step(&mut pf, 5), 6);
    let out = tmp.path().join("out");
    assert_eq!(fs::read(pf.finish(&out, "a").unwrap()).unwrap(), d);
}

/// Finish re-hashes exactly the chunks trusted from the resume record: chunks stored since
/// the open were hashed on arrival (content.md section 5, rule 3).
#[test]
fn finish_rehashes_only_the_chunks_trusted_from_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(6);
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in [0, 2, 3] {
            store(&mut pf, &d, i, true);
        }
        pf.flush_record().unwrap();
    }
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(rep.from_record, 3);
    assert_eq!(pf.unhashed.iter().collect::<Vec<_>>(), [0, 2, 3]);
    for i in [1, 4, 5] {
        store(&mut pf, &d, i, true);
    }
    assert_eq!(pf.rehash_trusted().unwrap(), 3);
    assert_eq!(pf.unhashed.count(), 0, "each is re-hashed once");
    assert_eq!(pf.rehash_trusted().unwrap(), 0);
    let out = tmp.path().join("out");
    assert_eq!(fs::read(pf.finish(&out, "a").unwrap()).unwrap(), d);
}

/// How many of the pages of `range` of `path` are in the page cache (mincore).
fn resident_pages(path: &Path, range: std::ops::Range<usize>) -> usize {
    let f = std::fs::File::open(path).unwrap();
    let page = 4096;
    let len = range.end - range.start;
    // SAFETY: a private read-only mapping of an open file, unmapped below; mincore
    // writes one byte per page into `vec`, which has room for every page.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            range.start as libc::off_t,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(page)];
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
        libc::munmap(p, len);
        vec.iter().filter(|b| **b & 1 == 1).count()
    }
}

/// Pages far enough behind the verified prefix are written to disk and dropped from the page
/// cache as the prefix advances; what was dropped still reads back right (and is dropped
/// again after the read), and the download finishes with identical bytes.
#[test]
fn pages_behind_the_verified_prefix_are_released() {
    let tmp = tempfile::tempdir().unwrap();
    let cs = 1u32 << 20;
    let mib = 1u64 << 20;
    let keep = (KEEP_CACHED_BEHIND / mib) as usize;
    let step = (RELEASE_STEP / mib) as usize;
    // Enough chunks for one release and a bit more, the last chunk 3 bytes short.
    let n = keep + step + step / 2;
    let d = pattern(n * cs as usize - 3, 9);
    let m = file(Manifest::for_data_with_chunk_size(&d, cs).unwrap());
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    let part = pf.data.as_file().unwrap().0.to_path_buf();
    let mut buf = Vec::new();
    let mut released = Vec::new();
    for i in 0..n as u32 {
        store(&mut pf, &d, i, true);
        if let Some(r) = pf.take_cache_release() {
            assert!(
                pf.take_cache_release().is_none(),
                "a region is handed out once"
            );
            r.run();
        }
        released.push(pf.released.load(Ordering::Relaxed));
    }
    // Nothing until KEEP (kept back) + STEP (one step) are hashed, then one step.
    assert_eq!(released[keep + step - 2], 0);
    assert_eq!(
        released[keep + step - 1],
        RELEASE_STEP,
        "first step released"
    );
    assert_eq!(
        released[n - 1],
        RELEASE_STEP,
        "less than a second step since"
    );
    assert!(released.windows(2).all(|w| w[0] <= w[1]));
    // Dropped from the page cache, unless this file system keeps them (tmpfs does).
    let dropped = resident_pages(&part, 0..RELEASE_STEP as usize);
    let kept = resident_pages(&part, (n - step) << 20..n << 20);
    if kept == 0 {
        eprintln!("page cache residency not observable here (nothing cached): skipped");
    }
    let observable = kept > 0 && fs_drops_pages(&part);
    if observable {
        assert_eq!(dropped, 0, "released pages still cached");
    }
    // Serving a released chunk reads it from disk and drops it again.
    let c0 = idx(&m, 0);
    pf.read_chunk(c0, &mut buf).unwrap();
    assert_eq!(buf, chunk(&d, &m, c0));
    if observable {
        assert_eq!(
            resident_pages(&part, 0..cs as usize),
            0,
            "served chunk kept cached"
        );
    }
    let out = tmp.path().join("out");
    assert_eq!(fs::read(pf.finish(&out, "big").unwrap()).unwrap(), d);
}

/// False on file systems whose pages cannot be dropped (tmpfs: page cache is the data).
fn fs_drops_pages(path: &Path) -> bool {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as libc::c_long;
    if magic == TMPFS_MAGIC {
        eprintln!(
            "{} is on tmpfs: pages cannot be dropped, not checked",
            path.display()
        );
        return false;
    }
    true
}

#[test]
fn crash_recovers_exactly_the_written_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(8);
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        // 0 and 1: verified and flushed. 2: verified, not flushed. 3: written, not even
        // marked. 5: written then damaged on disk (a torn write). Others: never written.
        store(&mut pf, &d, 0, true);
        store(&mut pf, &d, 1, true);
        pf.flush_record().unwrap();
        store(&mut pf, &d, 2, true);
        store(&mut pf, &d, 3, false);
        store(&mut pf, &d, 5, false);
        let c5 = idx(&m, 5);
        part_file(&pf)
            .write_all_at(b"torn", m.layout().chunk_offset(c5) + 10)
            .unwrap();
        // Dropped without flush: the kill -9.
    }
    let (pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert!(!rep.created);
    assert_eq!(rep.from_record, 2);
    assert_eq!(rep.recovered, 2, "chunks 2 and 3 recovered by hashing");
    assert_eq!(verified_set(&rep.verified), [0, 1, 2, 3]);
    assert_eq!(rep.missing, 4);
    assert!(!pf.needs_flush(), "recovered chunks were recorded at once");
    drop(pf);
    // The recovery was persisted: the next open trusts all four from the record.
    let (_, rep) = PartialFile::open_or_create(tmp.path(), m).unwrap();
    assert_eq!((rep.from_record, rep.recovered), (4, 0));
}

#[test]
fn a_damaged_recorded_chunk_is_caught_at_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(4);
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..4 {
            store(&mut pf, &d, i, true);
        }
        pf.flush_record().unwrap();
    }
    // Bit rot (or tampering) inside a recorded chunk: the record is trusted on open...
    let part = tmp
        .path()
        .join("downloads")
        .join(format!("{}.part", m.content_id().to_hex()));
    let f = OpenOptions::new().write(true).open(&part).unwrap();
    f.write_all_at(b"X", u64::from(CS) + 5).unwrap();
    drop(f);
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(rep.from_record, 4);
    // ...but never reaches the final name: finish re-checks, drops chunk 1, and says so.
    let out = tmp.path().join("out");
    match pf.finish(&out, "f.bin") {
        Err(ContentError::DamagedOnDisk { bad_chunks: 1, .. }) => {}
        r => panic!("{r:?}"),
    }
    assert!(!out.join("f.bin").exists());
    assert_eq!(verified_set(&pf.verified()), [0, 2, 3]);
    assert!(matches!(
        pf.read_chunk(idx(&m, 1), &mut Vec::new()),
        Err(ContentError::ChunkNotVerified { .. })
    ));
    // Refetch it and finish.
    store(&mut pf, &d, 1, true);
    let p = pf.finish(&out, "f.bin").unwrap();
    assert_eq!(fs::read(p).unwrap(), d);
}

/// A downloader does not check `file_sha256` (content.md section 5): a manifest whose chunk
/// hashes are those of one content and whose whole-file hash is another's finishes with
/// exactly the bytes its chunk hashes, and so its content ID, commit to.
#[test]
fn a_manifest_with_a_wrong_file_sha256_finishes_with_the_committed_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = pattern(40_000, 1);
    let good = Manifest::for_data_with_chunk_size(&d, CS).unwrap();
    let m = file(Manifest::new(good.lengths(), [7; 32], good.chunk_hashes().to_vec()).unwrap());
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    for i in 0..3 {
        store(&mut pf, &d, i, true);
    }
    let out = tmp.path().join("out");
    assert_eq!(fs::read(pf.finish(&out, "x").unwrap()).unwrap(), d);
}

#[test]
fn wrong_size_or_damaged_record_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(4);
    let dl = tmp.path().join("downloads");
    let hex = m.content_id().to_hex();
    {
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..3 {
            store(&mut pf, &d, i, true);
        }
        pf.flush_record().unwrap();
    }
    // Damaged record: ignored, but the chunks are still found by hashing.
    let rec = dl.join(format!("{hex}.resume"));
    let mut b = fs::read(&rec).unwrap();
    b[45] ^= 0xff;
    fs::write(&rec, b).unwrap();
    {
        let (_, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        assert_eq!((rep.from_record, rep.recovered), (0, 3));
    }
    // Truncated .part: the record (valid again) is not trusted; what survived in the
    // remaining bytes is re-hashed.
    let part = dl.join(format!("{hex}.part"));
    OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(u64::from(CS) + 1)
        .unwrap();
    let (_, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(rep.from_record, 0);
    assert_eq!(verified_set(&rep.verified), [0]);
    assert_eq!(fs::metadata(&part).unwrap().len(), d.len() as u64);
}

#[test]
fn zero_chunks_need_no_download() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = vec![0u8; 3 * CS as usize + 10];
    d[CS as usize + 1] = 1; // chunk 1 is not all zeros
    let m = file(Manifest::for_data_with_chunk_size(&d, CS).unwrap());
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    assert_eq!(verified_set(&rep.verified), [0, 2, 3]);
    store(&mut pf, &d, 1, true);
    let p = pf.finish(&tmp.path().join("out"), "sparse.img").unwrap();
    assert_eq!(fs::read(p).unwrap(), d);
}

#[test]
fn precondition_and_range_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(3);
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    // A chunk verified for other content goes nowhere.
    let (d2, m2) = content(2);
    let _ = d;
    assert!(matches!(
        pf.store(&verified(&m2, &d2, 0)),
        Err(ContentError::ChunkOfOtherContent { .. })
    ));
    assert!(matches!(
        pf.finish(tmp.path(), "x"),
        Err(ContentError::Incomplete { missing: 3, .. })
    ));
    // A second open of the same download is refused while this one lives.
    assert!(matches!(
        PartialFile::open_or_create(tmp.path(), Arc::clone(&m)),
        Err(ContentError::Busy { .. })
    ));
    drop(pf);
    assert!(PartialFile::open_or_create(tmp.path(), m).is_ok());
}

#[test]
fn names_collide_and_hostile_names_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("song.wav"), b"the user's own file").unwrap();
    let cases = [
        ("song.wav", "song (1).wav"),
        ("song.wav", "song (2).wav"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/abs", "_abs"),
        ("a/b", "a_b"),
        ("\0x", "x"),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let d = pattern(1000 + i, i as u8);
        let m = file(Manifest::for_data(&d).unwrap());
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), m.clone()).unwrap();
        store(&mut pf, &d, 0, true);
        let p = pf.finish(&out, name).unwrap();
        assert_eq!(p, out.join(want), "{name:?}");
        assert_eq!(fs::read(&p).unwrap(), d);
    }
    // Unusable names fall back to the content ID.
    let d = pattern(10, 99);
    let m = file(Manifest::for_data(&d).unwrap());
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), m.clone()).unwrap();
    store(&mut pf, &d, 0, true);
    let p = pf.finish(&out, "..").unwrap();
    assert_eq!(p, out.join(fallback_name(&m.content_id())));
    assert_eq!(
        fs::read(out.join("song.wav")).unwrap(),
        b"the user's own file",
        "never overwritten"
    );
    // Everything landed directly inside `out`.
    for e in fs::read_dir(&out).unwrap() {
        assert!(e.unwrap().file_type().unwrap().is_file());
    }
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "downloads/ and out/ only"
    );
}

#[test]
fn empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = file(Manifest::for_data(b"").unwrap());
    let (mut pf, rep) = PartialFile::open_or_create(tmp.path(), m).unwrap();
    assert!(rep.verified.is_empty() && pf.is_complete());
    let p = pf.finish(tmp.path(), "empty.txt").unwrap();
    assert_eq!(fs::read(p).unwrap(), b"");
}

#[test]
fn readers_serve_verified_chunks_concurrently() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, m) = content(32);
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    let reader = pf.reader();
    std::thread::scope(|s| {
        for t in 0..3 {
            let r = reader.clone();
            let (d, m) = (&d, &m);
            s.spawn(move || {
                let mut buf = Vec::new();
                let mut served = 0;
                while served < 32 {
                    served = 0;
                    for c in m.layout().chunks() {
                        match r.read_chunk(c, &mut buf) {
                            Ok(()) => {
                                // A reader never sees a chunk before its bytes.
                                assert_eq!(buf.as_slice(), chunk(d, m, c), "thread {t}");
                                served += 1;
                            }
                            Err(ContentError::ChunkNotVerified { .. }) => {
                                assert!(buf.is_empty())
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
        for i in 0..32 {
            store(&mut pf, &d, i, true);
        }
    });
    pf.finish(&tmp.path().join("out"), "x").unwrap();
    // The file was linked into place: the readers' handle still reads the same bytes.
    let mut buf = Vec::new();
    reader.read_chunk(idx(&m, 3), &mut buf).unwrap();
    assert_eq!(buf, chunk(&d, &m, idx(&m, 3)));
}

#[test]
fn resumable_downloads_lists_and_cleans() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(resumable_downloads(tmp.path()).unwrap().is_empty());
    let (_, m1) = content(2);
    let m2 = file(Manifest::for_data(b"two").unwrap());
    drop(PartialFile::open_or_create(tmp.path(), Arc::clone(&m1)).unwrap());
    drop(PartialFile::open_or_create(tmp.path(), Arc::clone(&m2)).unwrap());
    let mut want = vec![m1.content_id(), m2.content_id()];
    want.sort();
    let got: Vec<Id> = resumable_downloads(tmp.path())
        .unwrap()
        .iter()
        .map(|m| m.content_id())
        .collect();
    assert_eq!(got, want);
    // A damaged stored manifest drops that download.
    let mp = tmp
        .path()
        .join("downloads")
        .join(format!("{}.manifest", m2.content_id().to_hex()));
    fs::write(&mp, b"junk").unwrap();
    let got = resumable_downloads(tmp.path()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content_id(), m1.content_id());
    assert!(!mp.exists());
    // Leftovers of a finish interrupted after its manifest was removed are deleted.
    let dl = tmp.path().join("downloads");
    let hex1 = m1.content_id().to_hex();
    fs::remove_file(dl.join(format!("{hex1}.manifest"))).unwrap();
    fs::write(dl.join(format!("{hex1}.resume")), b"x").unwrap();
    fs::write(dl.join("unrelated.txt"), b"x").unwrap();
    assert!(resumable_downloads(tmp.path()).unwrap().is_empty());
    let left: Vec<_> = fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["unrelated.txt"]);
}

#[test]
fn finish_across_file_systems() {
    // /dev/shm is a tmpfs, a different file system from the temp dir on most Linux
    // machines; skip where it is not.
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::MetadataExt;
    if fs::metadata(other.path()).unwrap().dev() == fs::metadata(tmp.path()).unwrap().dev() {
        return;
    }
    let (d, m) = content(3);
    let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
    for i in 0..3 {
        store(&mut pf, &d, i, true);
    }
    fs::write(other.path().join("x.bin"), b"taken").unwrap();
    let p = pf.finish(other.path(), "x.bin").unwrap();
    assert_eq!(p, other.path().join("x (1).bin"));
    assert_eq!(fs::read(&p).unwrap(), d);
    // No hidden temp file left behind, nothing left in downloads/.
    assert_eq!(fs::read_dir(other.path()).unwrap().count(), 2);
    assert_eq!(
        fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
        0
    );
}

#[test]
fn record_format_round_trip() {
    let id = Id([9; 32]);
    for count in [0u32, 1, 7, 8, 9, 64, 65, 1000] {
        let bits = VerifiedBits::new(count);
        for i in (0..count).step_by(3) {
            bits.set(i);
        }
        let bytes = bits.to_bytes();
        let rec = encode_record(&id, count, &bytes);
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("r");
        fs::write(&p, &rec).unwrap();
        assert_eq!(read_record(&p, &id, count), Some(bytes.clone()));
        assert_eq!(read_record(&p, &Id([8; 32]), count), None);
        assert_eq!(read_record(&p, &id, count + 1), None);
        for i in 0..count {
            assert_eq!(bit_at(&bytes, i), i % 3 == 0);
        }
        // A bit set past the last chunk: not a record of this download.
        if count % 8 != 0 {
            let mut bad = bytes.clone();
            *bad.last_mut().unwrap() |= 1;
            fs::write(&p, encode_record(&id, count, &bad)).unwrap();
            assert_eq!(read_record(&p, &id, count), None, "count {count}");
        }
    }
}
