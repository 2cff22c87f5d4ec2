//! The library driven by hand: resumed progress, pauses by a full disk and by the user.

use super::*;
use crate::bitset::BitSet;
use crate::content::{ContentManifest, Manifest};
use crate::storage::job::{Resumable, StorageDone, StorageError};

fn manifest(len: usize) -> Arc<ContentManifest> {
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    Arc::new(ContentManifest::File(
        Manifest::for_data_with_chunk_size(&data, 16 << 10).unwrap(),
    ))
}

fn library(inv: Inventory, now: Instant) -> Library {
    Library::new(
        inv,
        PathBuf::from("/files"),
        Id([1; 32]),
        4000,
        EngineConfig::default(),
        1,
        now,
    )
}

fn status(lib: &Library, id: &Id) -> Value {
    lib.status_json(Some(*id), &Default::default())["transfers"][0].clone()
}

/// Right after a restart, a resumed download shows what its resume record says is on
/// disk, not 0, until its partial file is open again; then the engine's count.
#[test]
fn a_resumed_download_shows_its_recorded_progress_at_once() {
    let now = Instant::now();
    let m = manifest(100_000);
    let id = m.content_id();
    let inv = Inventory {
        resumable: vec![Resumable {
            manifest: m.clone(),
            recorded_bytes: 48 << 10,
        }],
        ..Inventory::default()
    };
    let mut lib = library(inv, now);
    assert_eq!(status(&lib, &id)["have_bytes"], 48 << 10);
    let mut have = BitSet::new(m.layout().chunk_count() as usize);
    for i in 0..4 {
        have.insert(i);
    }
    lib.on_storage_done(
        now,
        StorageDone::PartialOpened {
            content: id,
            result: Ok(have),
        },
    );
    assert_eq!(status(&lib, &id)["have_bytes"], 64 << 10);
}

/// A full disk pauses a download: the request is told why, the partial file is closed
/// (its lock released), nothing is forgotten; asking again resumes it.
#[test]
fn a_full_disk_pauses_and_asking_again_resumes() {
    let now = Instant::now();
    let m = manifest(100_000);
    let id = m.content_id();
    let mut lib = library(Inventory::default(), now);
    let to = ReplyTo { conn: 1, seq: 0 };
    assert!(lib.request_file(now, id, None, &[], None, to).is_none());
    while lib.poll_job().is_some() {}
    lib.on_storage_done(
        now,
        StorageDone::PartialOpened {
            content: id,
            result: Err(StorageError::NoSpace {
                dir: PathBuf::from("/data/downloads"),
            }),
        },
    );
    let replies = lib.take_replies();
    assert_eq!(replies.len(), 1);
    let text = String::from_utf8(replies[0].bytes.clone()).unwrap();
    assert!(
        text.contains("disk full") && text.contains("/data/downloads"),
        "{text}"
    );
    let jobs: Vec<StorageJob> = std::iter::from_fn(|| lib.poll_job()).collect();
    assert!(
        jobs.iter()
            .any(|j| matches!(j, StorageJob::Close { content } if *content == id)),
        "{jobs:?}"
    );
    let t = status(&lib, &id);
    assert!(t["paused"].as_str().unwrap().contains("disk full"), "{t}");
    assert_eq!(t["downloading"], false);
    // Asked again: the engine takes it up anew (the manifest is kept: it opens at once).
    let to = ReplyTo { conn: 1, seq: 1 };
    assert!(lib.request_file(now, id, None, &[], None, to).is_none());
    assert!(status(&lib, &id).get("paused").is_none());
    assert!(lib.engine.progress(&id).is_some());
    // And a paused download can be cancelled.
    assert!(lib.cancel(&id, ReplyTo { conn: 1, seq: 2 }).is_ok());
}

/// The last download list the library asked to save.
fn saved_list(lib: &mut Library) -> Vec<DownloadRecord> {
    std::iter::from_fn(|| lib.poll_job())
        .filter_map(|j| match j {
            StorageJob::SaveDownloads(s) => Some(s.value),
            _ => None,
        })
        .last()
        .expect("a download list was saved")
}

/// A download with its partial file open (as after `PartialOpened` with 3 chunks verified).
fn opened_download(lib: &mut Library, m: &Arc<ContentManifest>, now: Instant) -> Id {
    let id = m.content_id();
    let inv_have = {
        let mut have = BitSet::new(m.layout().chunk_count() as usize);
        for i in 0..3 {
            have.insert(i);
        }
        have
    };
    lib.engine
        .download(now, id, Some(m.clone()), Some("kick.wav".into()));
    lib.entries.insert(
        id,
        Entry::Downloading(Download::new(None, PathBuf::from("/files"), Some(now))),
    );
    lib.on_storage_done(
        now,
        StorageDone::PartialOpened {
            content: id,
            result: Ok(inv_have),
        },
    );
    id
}

/// The user pauses: waiting requests are told, the partial file is closed, the pause is in
/// the saved list; asking for the download does not resume it (the reply says how), only
/// `resume_transfer` does; a restart keeps it paused, from its recorded progress.
#[test]
fn a_user_pause_holds_until_resumed_and_across_restarts() {
    let now = Instant::now();
    let m = manifest(100_000);
    let mut lib = library(Inventory::default(), now);
    let id = opened_download(&mut lib, &m, now);
    let waiting = ReplyTo { conn: 1, seq: 0 };
    assert!(lib
        .request_file(now, id, None, &[], None, waiting)
        .is_none());
    while lib.poll_job().is_some() {}

    let r: Value = serde_json::from_slice(&lib.pause_by_user(&id).unwrap()).unwrap();
    assert_eq!(r["have_bytes"], 48 << 10, "{r}");
    let told = lib.take_replies();
    assert_eq!(told.len(), 1);
    let text = String::from_utf8_lossy(&told[0].bytes).into_owned();
    assert!(
        text.contains("paused by the user") && text.contains("resume_transfer"),
        "{text}"
    );
    assert_eq!(
        lib.take_withdrawn(),
        [id],
        "no longer announced while paused"
    );
    let jobs: Vec<StorageJob> = std::iter::from_fn(|| lib.poll_job()).collect();
    assert!(jobs
        .iter()
        .any(|j| matches!(j, StorageJob::Close { content } if *content == id)));
    let saved = jobs
        .into_iter()
        .filter_map(|j| match j {
            StorageJob::SaveDownloads(s) => Some(s.value),
            _ => None,
        })
        .last()
        .unwrap();
    assert!(saved[0].paused, "{saved:?}");
    let t = status(&lib, &id);
    assert_eq!(
        (t["paused_reason"].clone(), t["downloading"].clone()),
        (json!("user"), json!(false))
    );
    assert_eq!(t["have_bytes"], 48 << 10);
    // Pausing again is fine; asking for it is refused with how to resume it.
    assert!(lib.pause_by_user(&id).is_ok());
    let refused = lib.request_file(now, id, None, &[], None, ReplyTo { conn: 2, seq: 0 });
    let refused = String::from_utf8(refused.expect("answered at once")).unwrap();
    assert!(refused.contains("resume_transfer"), "{refused}");
    assert!(lib.engine.progress(&id).is_none(), "still paused");

    // A restart: the record says paused, so it is not resumed.
    let inv = Inventory {
        resumable: vec![Resumable {
            manifest: m.clone(),
            recorded_bytes: 48 << 10,
        }],
        downloads: saved,
        ..Inventory::default()
    };
    let mut lib = library(inv, now);
    assert!(lib.engine.progress(&id).is_none(), "not resumed at start");
    assert_eq!(status(&lib, &id)["paused_reason"], "user");
    assert!(saved_list(&mut lib)[0].paused, "still paused in the list");
    // resume_transfer takes it up from its manifest; it is no longer paused.
    assert!(lib.resume(now, &id).is_ok());
    assert!(lib.engine.progress(&id).is_some());
    assert!(status(&lib, &id).get("paused").is_none());
    assert!(!saved_list(&mut lib)[0].paused);
    assert!(lib.resume(now, &id).unwrap_err().contains("not paused"));
    assert!(lib
        .pause_by_user(&Id([9; 32]))
        .unwrap_err()
        .contains("no download"));
}
