//! The storage's own tests (with real files in temp dirs).

use super::*;
use crate::conn::ConnId;

fn list(generation: u64) -> StorageJob {
    StorageJob::SaveDownloads(Snapshot {
        generation,
        value: vec![DownloadRecord {
            content_id: Id([generation as u8; 32]).to_hex(),
            name: Some(format!("file {generation}")),
            output_dir: PathBuf::from("/downloads"),
            paused: false,
            only: None,
        }],
    })
}

#[test]
fn an_older_download_list_never_replaces_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _) = DiskStorage::open(dir.path()).unwrap();
    assert!(st.run(list(2)).is_none(), "saving has no result");
    assert!(st.run(list(1)).is_none(), "saving has no result");
    let (_, inv) = DiskStorage::open(dir.path()).unwrap();
    assert_eq!(inv.downloads.len(), 1);
    assert_eq!(inv.downloads[0].name.as_deref(), Some("file 2"));
}

/// Downloads the folder `src` into storage `st` (chunks read from a share of it in
/// `seed_dir`) and finishes it into `out`: where it was placed.
fn download_folder(st: &DiskStorage, seed_dir: &Path, src: &Path, out: &Path) -> PathBuf {
    let mut seed = ShareIndex::open(seed_dir).unwrap();
    let id = seed.add(src).unwrap().id;
    let manifest = seed.manifest(&id).unwrap();
    let reader = seed.reader(&id).unwrap();
    let opened = st.run(StorageJob::OpenPartial {
        content: id,
        manifest: Arc::clone(&manifest),
        only: None,
    });
    assert!(matches!(
        opened,
        Some(StorageDone::PartialOpened { result: Ok(_), .. })
    ));
    for i in 0..manifest.chunk_count() {
        let mut data = Vec::new();
        reader
            .read_chunk(manifest.validate(i).unwrap(), &mut data)
            .unwrap();
        let stored = st.run(StorageJob::StoreChunk {
            content: id,
            chunk: i,
            from: ConnId::new(ConnId::FIRST),
            data,
        });
        assert!(matches!(
            stored,
            Some(StorageDone::ChunkStored {
                outcome: StoreOutcome::Stored,
                ..
            })
        ));
    }
    match st.run(StorageJob::Finish {
        content: id,
        dir: out.to_path_buf(),
        name: "Pack".into(),
    }) {
        Some(StorageDone::Finished {
            result: Ok(path), ..
        }) => path,
        _ => panic!("the folder's download did not finish"),
    }
}

fn small_pack(dir: &Path) -> PathBuf {
    let src = dir.join("Pack");
    fs::create_dir_all(src.join("Kicks")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    for k in 0..5u8 {
        fs::write(
            src.join(format!("Kicks/k{k}.wav")),
            vec![k; 40_000 + k as usize],
        )
        .unwrap();
    }
    src
}

/// A small pack downloaded into a fresh storage: the temp dir, the data dir, where the
/// folder was placed, and the storage (still open).
fn downloaded_pack() -> (tempfile::TempDir, PathBuf, PathBuf, DiskStorage) {
    let dir = tempfile::tempdir().unwrap();
    let src = small_pack(dir.path());
    let data = dir.path().join("data");
    let (st, _) = DiskStorage::open(&data).unwrap();
    let placed = download_folder(&st, &dir.path().join("seed"), &src, &dir.path().join("out"));
    (dir, data, placed, st)
}

/// The shares the store of data dir `data` holds marked unflushed.
fn marked(data: &Path) -> Vec<Id> {
    ShareIndex::open(data).unwrap().unflushed().unwrap()
}

#[test]
fn a_placed_folder_is_synced_and_unmarked_by_the_flusher() {
    let (_dir, data, placed, st) = downloaded_pack();
    assert_eq!(
        fs::read(placed.join("Kicks/k3.wav")).unwrap(),
        vec![3; 40_003]
    );
    assert!(placed.join("empty").is_dir());
    // Dropping the storage waits for the flusher: a clean stop leaves no mark.
    drop(st);
    assert!(marked(&data).is_empty());
    assert_eq!(ShareIndex::open(&data).unwrap().len(), 1);
}

#[test]
fn a_placed_folder_is_marked_unflushed_until_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let src = small_pack(dir.path());
    let data = dir.path().join("data");
    let (mut st, _) = DiskStorage::open(&data).unwrap();
    // No sync is ever made (as when the flusher thread cannot start): the mark the finish
    // set is what the store keeps.
    st.flusher = flusher::Flusher::none();
    download_folder(&st, &dir.path().join("seed"), &src, &dir.path().join("out"));
    let id = st.index.lock().list()[0].id;
    assert_eq!(st.index.lock().unflushed().unwrap(), vec![id]);
    drop(st);
    assert_eq!(marked(&data), vec![id]);
    // The next start re-hashes it, keeps it and clears the mark.
    let (_, inv) = DiskStorage::open(&data).unwrap();
    assert_eq!(inv.shares.len(), 1);
    assert!(marked(&data).is_empty());
}

#[test]
fn a_folder_placed_but_not_synced_before_a_stop_is_rehashed_at_the_start() {
    let (_dir, data, placed, st) = downloaded_pack();
    drop(st);
    let id = ShareIndex::open(&data).unwrap().list()[0].id;
    // As if the node had stopped before its flusher's sync: the mark is back.
    let mark = |idx: &mut ShareIndex| {
        let (e, m) = (idx.get(&id).unwrap(), idx.manifest(&id).unwrap());
        idx.add_downloaded(&e.path, m, None, true).unwrap();
    };
    mark(&mut ShareIndex::open(&data).unwrap());
    // Whole (a killed process: the page cache kept it): kept, served, unmarked.
    let (_, inv) = DiskStorage::open(&data).unwrap();
    assert_eq!(inv.shares.len(), 1);
    assert!(marked(&data).is_empty());
    // Damaged (a power cut): never listed, and so never served as valid.
    let mut idx = ShareIndex::open(&data).unwrap();
    fs::write(placed.join("Kicks/k1.wav"), vec![0; 40_001]).unwrap();
    mark(&mut idx);
    drop(idx);
    let (_, inv) = DiskStorage::open(&data).unwrap();
    assert!(inv.shares.is_empty());
    assert!(ShareIndex::open(&data).unwrap().is_empty());
}

#[test]
fn saves_running_at_once_leave_the_newest_list() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _) = DiskStorage::open(dir.path()).unwrap();
    let st = Arc::new(st);
    let workers: Vec<_> = (1..=16u64)
        .map(|g| {
            let st = st.clone();
            std::thread::spawn(move || {
                assert!(st.run(list(g)).is_none());
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (_, inv) = DiskStorage::open(dir.path()).unwrap();
    assert_eq!(inv.downloads.len(), 1);
    assert_eq!(inv.downloads[0].name.as_deref(), Some("file 16"));
    assert!(!dir.path().join(format!("{DOWNLOADS_FILE}.tmp")).exists());
}
