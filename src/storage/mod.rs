//! The node's file side: the share index, the open shared files, the partial downloads, and
//! the executor of [`StorageJob`]s on the real disk ([`DiskStorage`]).
//!
//! The protocol side (the node core) never touches a file: it emits jobs
//! ([`job::StorageJob`]) and takes their results ([`job::StorageDone`]). The reactor runs
//! each job on the worker pool with [`DiskStorage::run`]; the whole-network simulator runs
//! the same jobs against memory. What the two share is the rule that matters: a chunk
//! reaches a partial download only as a [`VerifiedChunk`], made by hashing it against the
//! manifest on the worker.
//!
//! # Locks
//! Four maps, each behind its own `parking_lot::Mutex`, held only to look up or replace an
//! entry (never across file I/O other than the share index's own store, never two at
//! once): the share index, the readers of the partial downloads this node serves, the
//! readers of the shares served lately ([`open_shares`]), and the partial downloads. A partial download's own mutex
//! (its [`PartialSlot`]) is held across its writes; releasing its page cache, which waits
//! for the disk, is taken out of it and done without the lock
//! (`content::partial::CacheRelease`).

pub mod config;
mod flusher;
pub mod job;
pub mod open_shares;
pub mod reuse;
pub mod state;
pub mod stream;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bitset::BitSet;
use crate::content::index::{prepare_share, ShareIndex};
use crate::content::partial::{
    recorded_bytes, remove_closed_download, resumable_downloads, PartialFile, PartialReader,
};
use crate::content::tree::Selection;
use crate::content::verified::VerifiedChunk;
use crate::content::ContentError;
use crate::content::ContentManifest;
use crate::id::Id;
use flusher::Flusher;
pub use job::{
    DownloadRecord, FinishError, Inventory, NodeState, Resumable, ShareInfo, Snapshot, StorageDone,
    StorageError, StorageJob, StoreOutcome,
};
use open_shares::{OpenShare, OpenShares};

/// How often a download's resume record is made durable while it runs. Chunks written since
/// the last record are not lost on a crash: they are re-hashed from the partial file when the
/// download resumes. So this only bounds the re-hashing, and the fsyncs stay rare.
pub const RECORD_EVERY: Duration = Duration::from_secs(10);

/// The file listing downloads in progress (names and folders), in the data dir.
const DOWNLOADS_FILE: &str = "transfers.json";

/// How many shares one [`StorageJob::CheckShares`] step checks (one `stat` each: a few ms).
pub const CHECK_SHARES_STEP: usize = 1000;

/// A partial download and when its resume record was last made durable.
struct PartialSlot {
    file: PartialFile,
    last_record: Instant,
}

/// Where the chunks of a content this node serves come from.
#[derive(Clone)]
enum Source {
    /// A complete file or folder (added, or downloaded and finished): see [`open_shares`].
    Shared {
        reader: Arc<crate::content::index::SharedReader>,
        manifest: Arc<ContentManifest>,
    },
    /// A download in progress: its verified chunks.
    Partial {
        reader: PartialReader,
        manifest: Arc<ContentManifest>,
    },
}

impl Source {
    fn manifest(&self) -> &Arc<ContentManifest> {
        match self {
            Source::Shared { manifest, .. } | Source::Partial { manifest, .. } => manifest,
        }
    }
}

/// The files of one node (see the module docs). Shared by the worker threads.
pub struct DiskStorage {
    data_dir: PathBuf,
    index: Arc<Mutex<ShareIndex>>,
    /// Syncs placed folders to disk and clears their unflushed marks.
    flusher: Flusher,
    /// Downloads in progress, served from their verified chunks.
    sources: Mutex<HashMap<Id, Source>>,
    /// Shares served lately (the others are opened again from the index when asked for).
    open_shares: Mutex<OpenShares>,
    partials: Mutex<HashMap<Id, Arc<Mutex<PartialSlot>>>>,
    /// The newest snapshot written of each saved file; held while writing, so two saves
    /// never share the temporary file and an older one never replaces a newer one.
    saved: Mutex<Saved>,
}

/// Generations of the last snapshots written (see [`job::Snapshot`]).
#[derive(Default)]
struct Saved {
    downloads: Option<u64>,
    state: Option<u64>,
}

impl DiskStorage {
    /// Opens the share index of `data_dir` and lists what is shared and what can resume.
    /// No shared file is opened here (a library may hold 100,000): the node checks them
    /// afterwards in steps on the workers ([`StorageJob::CheckShares`]), and every read
    /// checks its file again.
    pub fn open(data_dir: &Path) -> Result<(DiskStorage, Inventory), String> {
        let mut index = ShareIndex::open(data_dir).map_err(|e| e.to_string())?;
        // Folders placed just before the node stopped, not yet known to be on disk, are
        // hashed again before anything is served (`content/index/recheck.rs`).
        index.recheck_unflushed().map_err(|e| e.to_string())?;
        let shares = index
            .load_all()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| ShareInfo {
                manifest: s.manifest,
                name: s.entry.name,
                path: s.entry.path,
                size: s.entry.size,
                have: s.have,
                files_here: s.files_here,
                skipped: Vec::new(),
            })
            .collect();
        let mut inv = Inventory {
            shares,
            ..Inventory::default()
        };
        inv.downloads = fs::read(data_dir.join(DOWNLOADS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // Folders as requests name them (resolved), also in records written before they were:
        // a request for the same folder must be seen to be the same (`Library::request_file`).
        for r in &mut inv.downloads {
            if let Ok(dir) = fs::canonicalize(&r.output_dir) {
                r.output_dir = dir;
            }
        }
        match resumable_downloads(data_dir) {
            Ok(ms) => {
                inv.resumable = ms
                    .into_iter()
                    .map(|m| Resumable {
                        recorded_bytes: recorded_bytes(data_dir, &m),
                        manifest: m,
                    })
                    .collect()
            }
            Err(e) => log::warn!("cannot list unfinished downloads: {e}"),
        }
        let index = Arc::new(Mutex::new(index));
        let storage = DiskStorage {
            data_dir: data_dir.to_path_buf(),
            flusher: Flusher::start(Arc::clone(&index)),
            index,
            sources: Mutex::new(HashMap::new()),
            open_shares: Mutex::new(OpenShares::default()),
            partials: Mutex::new(HashMap::new()),
            saved: Mutex::new(Saved::default()),
        };
        Ok((storage, inv))
    }

    /// Carries out `job` (on a worker thread: it reads, hashes and writes files).
    #[must_use]
    pub fn run(&self, job: StorageJob) -> Option<StorageDone> {
        match job {
            StorageJob::ReadChunk {
                conn,
                content,
                chunk,
            } => {
                let (data, changed) = self.read_chunk(content, chunk);
                Some(StorageDone::ChunkRead {
                    conn,
                    content,
                    chunk,
                    data,
                    changed,
                })
            }
            StorageJob::StoreChunk {
                content,
                chunk,
                from,
                data,
            } => Some(StorageDone::ChunkStored {
                content,
                chunk,
                from,
                outcome: self.store_chunk(content, chunk, data),
            }),
            StorageJob::CheckChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let manifest = self.manifest_of(&content);
                // Nothing to check against (the download was cancelled): not the sender's fault.
                let ok = match manifest {
                    Some(m) => match VerifiedChunk::check(&m, chunk, data) {
                        Ok(v) => {
                            crate::bufpool::give(v.into_data());
                            true
                        }
                        Err(e) => {
                            crate::bufpool::give(e.data);
                            false
                        }
                    },
                    None => {
                        crate::bufpool::give(data);
                        true
                    }
                };
                Some(StorageDone::ChunkChecked { content, from, ok })
            }
            StorageJob::OpenPartial {
                content,
                manifest,
                only,
            } => Some(StorageDone::PartialOpened {
                content,
                result: self.open_partial(content, manifest, only.as_deref()),
            }),
            StorageJob::Finish { content, dir, name } => Some(StorageDone::Finished {
                content,
                result: self.finish(content, &dir, &name),
            }),
            StorageJob::Close { content } => {
                self.close(content);
                None
            }
            StorageJob::Discard { content } => {
                self.discard(content);
                Some(StorageDone::Discarded { content })
            }
            StorageJob::Unshare { content } => {
                self.sources.lock().remove(&content);
                self.open_shares.lock().remove(&content);
                if let Err(e) = self.index.lock().remove(&content) {
                    log::warn!("content {content}: removing it from the share index: {e}");
                }
                None
            }
            StorageJob::CheckShares { after } => {
                let (changed, next) = self.check_shares(after);
                Some(StorageDone::SharesChecked { changed, next })
            }
            StorageJob::AddFile { path, reply } => Some(StorageDone::Added {
                reply,
                result: self.add_file(&path),
            }),
            StorageJob::CopyOut {
                content,
                from,
                manifest,
                dir,
                name,
                reply,
            } => {
                let result = match &*manifest {
                    ContentManifest::File(m) => crate::content::copy_out::copy_into(
                        &from,
                        &content,
                        m.file_sha256(),
                        &dir,
                        &name,
                    ),
                    ContentManifest::Tree(t) => {
                        crate::content::copy_out::copy_folder_into(&from, t, &dir, &name)
                    }
                }
                .map_err(|e| format!("cannot copy {} into {}: {e}", from.display(), dir.display()));
                Some(StorageDone::CopiedOut {
                    content,
                    from,
                    reply,
                    result,
                })
            }
            StorageJob::SaveDownloads(list) => {
                let mut saved = self.saved.lock();
                if list.newer_than(&mut saved.downloads) {
                    self.save_downloads(&list.value);
                }
                None
            }
            StorageJob::FlushAll => {
                self.flush_all();
                None
            }
            StorageJob::SaveState(st) => {
                let mut saved = self.saved.lock();
                if st.newer_than(&mut saved.state) {
                    if let Err(e) = state::save(&self.data_dir, &st.value) {
                        log::error!("saving node state: {e}");
                    }
                }
                None
            }
            StorageJob::Config { edits, reply } => {
                let result = config::edit(&self.data_dir, &edits)
                    .map(|f| (config::path(&self.data_dir), f.settings()));
                Some(StorageDone::Config {
                    edits,
                    reply,
                    result,
                })
            }
        }
    }

    fn manifest_of(&self, content: &Id) -> Option<Arc<ContentManifest>> {
        if let Some(s) = self.sources.lock().get(content) {
            return Some(s.manifest().clone());
        }
        if let Some(s) = self.open_shares.lock().get(content) {
            return Some(s.manifest);
        }
        self.index.lock().manifest(content)
    }

    /// What serves `content`: its download in progress, or its share (opened from the
    /// index if it is not open). `Err`: neither, or the shared file changed or is gone.
    fn source(&self, content: &Id) -> Result<Source, ContentError> {
        if let Some(s) = self.sources.lock().get(content).cloned() {
            return Ok(s);
        }
        self.open_share(content).map(|s| Source::Shared {
            reader: s.reader,
            manifest: s.manifest,
        })
    }

    /// The open share of `content`, opened from the index if it is not open (`Err`: it is
    /// not shared, or its file changed or is gone).
    fn open_share(&self, content: &Id) -> Result<OpenShare, ContentError> {
        if let Some(s) = self.open_shares.lock().get(content) {
            return Ok(s);
        }
        let opened = {
            let index = self.index.lock();
            index.reader(content).and_then(|r| {
                let m = index
                    .manifest(content)
                    .ok_or(ContentError::NotShared { id: *content })?;
                Ok(OpenShare {
                    reader: Arc::new(r),
                    manifest: m,
                })
            })
        }?;
        self.open_shares.lock().insert(*content, opened.clone());
        Ok(opened)
    }

    /// One step of the sweep over the library after start (see [`ShareIndex::check_batch`]).
    fn check_shares(&self, after: Option<Id>) -> (Vec<Id>, Option<Id>) {
        match self
            .index
            .lock()
            .check_batch(after.as_ref(), CHECK_SHARES_STEP)
        {
            Ok(r) => r,
            Err(e) => {
                log::error!("checking the shared files: {e}");
                (Vec::new(), None)
            }
        }
    }

    /// Reads a chunk to serve; `(None, true)` when the shared file changed or disappeared.
    fn read_chunk(&self, content: Id, chunk: u32) -> (Option<Arc<Vec<u8>>>, bool) {
        let src = match self.source(&content) {
            Ok(s) => s,
            Err(e) => {
                let changed = gone_or_changed(&e);
                if changed {
                    log::warn!("cannot serve {content}: {e}");
                }
                return (None, changed);
            }
        };
        let m = src.manifest();
        let Some(c) = m.validate(chunk) else {
            return (None, false);
        };
        // Pooled: the reactor gives it back once the PIECE is written.
        let mut buf = crate::bufpool::take(m.chunk_len(c) as usize);
        let r = match &src {
            Source::Shared { reader, .. } => reader.read_chunk(c, &mut buf),
            Source::Partial { reader, .. } => reader.read_chunk(c, &mut buf),
        };
        match r {
            Ok(()) => (Some(Arc::new(buf)), false),
            Err(e) => {
                log::warn!("cannot serve chunk {chunk} of {content}: {e}");
                crate::bufpool::give(buf);
                let changed = matches!(src, Source::Shared { .. }) && gone_or_changed(&e);
                if changed {
                    self.open_shares.lock().remove(&content);
                }
                (None, changed)
            }
        }
    }

    /// Verifies and stores one chunk: the hash is checked outside the partial file's lock,
    /// and the resume record is made durable at most every [`RECORD_EVERY`].
    fn store_chunk(&self, content: Id, chunk: u32, data: Vec<u8>) -> StoreOutcome {
        let Some(p) = self.partials.lock().get(&content).cloned() else {
            crate::bufpool::give(data);
            return StoreOutcome::Failed(format!("download {content} is not open"));
        };
        let manifest = p.lock().file.manifest().clone();
        let verified = match VerifiedChunk::check(&manifest, chunk, data) {
            Ok(v) => v,
            Err(e) => {
                crate::bufpool::give(e.data);
                return StoreOutcome::BadHash;
            }
        };
        let mut slot = p.lock();
        let stored = slot.file.store(&verified);
        // Hashed and written: the buffer can take the next PIECE.
        crate::bufpool::give(verified.into_data());
        if let Err(e) = stored {
            log::error!("storing chunk {chunk} of {content}: {e}");
            return match e.no_space_in() {
                Some(dir) => StoreOutcome::NoSpace {
                    dir: dir.to_path_buf(),
                },
                None => StoreOutcome::Failed(e.to_string()),
            };
        }
        if slot.file.needs_flush() && slot.last_record.elapsed() >= RECORD_EVERY {
            slot.last_record = Instant::now();
            if let Err(e) = slot.file.flush_record() {
                log::warn!("saving download progress of {content}: {e}");
            }
        }
        // Write back and drop from the page cache what the download is done with, outside the
        // lock: it waits for the disk.
        let release = slot.file.take_cache_release();
        drop(slot);
        if let Some(release) = release {
            release.run();
        }
        StoreOutcome::Stored
    }

    fn open_partial(
        &self,
        content: Id,
        manifest: Arc<ContentManifest>,
        only: Option<&Selection>,
    ) -> Result<BitSet, StorageError> {
        let (mut p, report) = PartialFile::open_or_create(&self.data_dir, manifest.clone())?;
        if let Some(sel) = only {
            p.select(sel);
        }
        // Files already here (in any share) are copied, not fetched (`reuse.rs`).
        if !p.is_complete() {
            let local = self.index.lock().local_files_for(&manifest);
            let reused = reuse::reuse_local_files(&local, &mut p);
            if reused.bytes > 0 {
                log::info!(
                    "download {content}: {} files ({} bytes) copied from files already here",
                    reused.files,
                    reused.bytes
                );
                // Not made durable here (a sync of all it copied: 475 MB of a pack's v2 took
                // longer than fetching the whole pack over loopback). The record claims them
                // at its next periodic flush; a crash before that re-hashes them from their
                // files at the next open, and fetches none of them.
            }
        }
        if report.from_record + report.recovered > 0 {
            log::info!(
                "download {content}: {} chunks verified on disk ({} recovered after a crash), {} to fetch",
                report.from_record + report.recovered,
                report.recovered,
                report.missing
            );
        }
        let reader = p.reader();
        let verified = p.verified();
        let slot = Arc::new(Mutex::new(PartialSlot {
            file: p,
            last_record: Instant::now(),
        }));
        self.partials.lock().insert(content, slot);
        self.sources
            .lock()
            .insert(content, Source::Partial { reader, manifest });
        let mut have = BitSet::new(verified.len());
        for (i, v) in verified.iter().enumerate() {
            if *v {
                have.insert(i);
            }
        }
        Ok(have)
    }

    fn finish(&self, content: Id, dir: &Path, name: &str) -> Result<PathBuf, FinishError> {
        let Some(p) = self.partials.lock().get(&content).cloned() else {
            return Err(FinishError::Io(format!("download {content} is not open")));
        };
        let mut slot = p.lock();
        let path = slot.file.finish(dir, name).map_err(|e| match e {
            ContentError::DamagedOnDisk { bad_chunks, .. } => {
                FinishError::DamagedOnDisk { bad_chunks }
            }
            ContentError::NoSpace { dir, .. } => FinishError::NoSpace { dir },
            e => FinishError::Io(e.to_string()),
        })?;
        let m = slot.file.manifest().clone();
        // Placed without a sync (a folder): shared marked unflushed, and the flusher syncs it
        // and clears the mark.
        let unflushed = slot.file.finish_leaves_sync();
        let present = slot.file.wanted_entries().map(<[bool]>::to_vec);
        drop(slot);
        self.partials.lock().remove(&content);
        self.sources.lock().remove(&content);
        self.open_shares.lock().remove(&content);
        let shared = self
            .index
            .lock()
            .add_downloaded(&path, m, present.as_deref(), unflushed);
        if unflushed {
            self.flusher
                .flush(content, vec![path.clone(), self.data_dir.clone()]);
        }
        match shared {
            Ok(e) => {
                if let Err(err) = self.open_share(&e.id) {
                    log::warn!("downloaded {} but cannot serve it: {err}", path.display());
                }
            }
            Err(e) => log::warn!("downloaded {} but cannot share it: {e}", path.display()),
        }
        Ok(path)
    }

    /// Closes a paused download: its progress made durable (best effort: the disk may be
    /// full), the file and its lock released, its data kept.
    fn close(&self, content: Id) {
        self.sources.lock().remove(&content);
        if let Some(p) = self.partials.lock().remove(&content) {
            if let Err(e) = p.lock().file.flush_record() {
                log::warn!("download {content}: saving progress before pausing: {e}");
            }
        }
    }

    fn discard(&self, content: Id) {
        self.sources.lock().remove(&content);
        let slot = self.partials.lock().remove(&content);
        match slot {
            Some(p) => {
                // Jobs still holding the slot find it discarded.
                if let Err(e) = p.lock().file.discard_in_place() {
                    log::warn!("download {content}: deleting its partial data: {e}");
                }
            }
            None => {
                // Paused (its file closed), cancelled before its partial file was opened, or
                // opened by a job still running (whose `PartialOpened` then asks for another
                // `Discard`): its files, if any, are deleted by name.
                if let Err(e) = remove_closed_download(&self.data_dir, &content) {
                    log::warn!("download {content}: deleting its partial data: {e}");
                }
            }
        }
    }

    fn add_file(&self, path: &Path) -> Result<ShareInfo, String> {
        let prepared = prepare_share(path, &|_| {}).map_err(|e| match e {
            // Shared before and gone since (the node has not noticed yet): say so, rather
            // than "no such file" as for a path that never existed.
            ContentError::NoSuchFile { path } if self.index.lock().has_path(&path) => {
                ContentError::Missing { path }.to_string()
            }
            e => e.to_string(),
        })?;
        let manifest = prepared.manifest.clone();
        let skipped = prepared
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.why))
            .collect();
        let entry = self
            .index
            .lock()
            .commit(prepared)
            .map_err(|e| e.to_string())?;
        // Opened now (and kept among the recent ones): it is about to be asked for.
        self.open_shares.lock().remove(&entry.id);
        if let Err(err) = self.open_share(&entry.id) {
            log::warn!("{}: {err}", entry.path.display());
        }
        Ok(ShareInfo {
            manifest,
            name: entry.name,
            path: entry.path,
            size: entry.size,
            have: None,
            files_here: None,
            skipped,
        })
    }

    fn save_downloads(&self, list: &[DownloadRecord]) {
        let Ok(bytes) = serde_json::to_vec_pretty(list) else {
            return;
        };
        let tmp = self.data_dir.join(format!("{DOWNLOADS_FILE}.tmp"));
        let ok = fs::write(&tmp, bytes)
            .and_then(|_| fs::rename(&tmp, self.data_dir.join(DOWNLOADS_FILE)));
        if let Err(e) = ok {
            log::warn!("saving the list of downloads: {e}");
        }
    }

    /// Makes every partial download's resume record durable (at shutdown).
    pub fn flush_all(&self) {
        let slots: Vec<(Id, Arc<Mutex<PartialSlot>>)> = self
            .partials
            .lock()
            .iter()
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        for (id, p) in slots {
            if let Err(e) = p.lock().file.flush_record() {
                log::warn!("download {id}: saving progress: {e}");
            }
        }
    }
}

/// A share whose file changed or disappeared: it must no longer be shared.
fn gone_or_changed(e: &ContentError) -> bool {
    matches!(
        e,
        ContentError::Changed { .. } | ContentError::Missing { .. }
    )
}

#[cfg(test)]
mod tests;
