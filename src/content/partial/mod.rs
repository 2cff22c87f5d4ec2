//! Crash-safe partial downloads (state machine and crash points: `STATE.md` beside this file).
//!
//! A download of content `<id>` lives in `<data_dir>/downloads/`:
//! - `<id>.part`: the file's bytes, preallocated to the full size (sparse) and filled in
//!   chunk by chunk at the chunks' offsets;
//! - `<id>.resume`: the *resume record*, the set of verified chunks, rewritten atomically by
//!   [`PartialFile::flush_record`], always after an `fdatasync` of the `.part`, so it never
//!   claims a chunk whose bytes are not durable;
//! - `<id>.manifest`: the manifest, so [`resumable_downloads`] can list what to resume after
//!   a restart.
//!
//! A folder's download has `<id>.tree/` instead of the `.part`: the folder's own files,
//! written in place chunk by chunk (`data.rs`), and renamed to the final name at the end.
//!
//! After a crash (even SIGKILL or power loss), [`PartialFile::open_or_create`] trusts the
//! chunks in the record if the `.part` still has the right size, and re-hashes every other
//! chunk from the `.part`: a chunk that was fully written before the crash is recovered
//! without fetching it again, a torn or unwritten one fails its hash and is simply missing.
//! Nothing is ever taken as verified without its hash having matched.
//!
//! When every chunk is verified, [`PartialFile::finish`] re-hashes, as stored, the chunks it
//! trusted from the resume record without hashing them (chunks verified since the open were
//! hashed on arrival and written from those bytes: spec `content.md` section 5, rule 3),
//! syncs, and links the file into the download folder under a safe name, never replacing an
//! existing file. Until then nothing exists under the final name.
//!
//! # Thread safety
//!
//! A `PartialFile` belongs to one owner at a time (it is `Send`, methods that change it take
//! `&mut self`): the caller serializes writes, marks, flushes and `finish` per download, for
//! instance by keeping it on one thread or behind a `Mutex`. Serving verified chunks to other
//! peers needs no lock: [`PartialFile::reader`] hands out a [`PartialReader`] (`Clone + Send +
//! Sync`) that shares the open file and the verified set (atomics) and reads with `pread`, so
//! any number of workers read concurrently with the owner's writes. A reader only ever sees
//! chunks that were verified before it looked (the verified bit is set with release ordering
//! after the write returned); [`PartialFile::discard`] and a failed [`PartialFile::finish`]
//! clear bits, after which readers refuse those chunks.
//!
//! The modules: `data.rs` is where the bytes live (a `.part`, or a folder's files),
//! `resume.rs` opens a download and lists those to resume, `record.rs` holds
//! the verified set and its resume record, `page_cache.rs` the write-back and page-cache
//! release, `reader.rs` the [`PartialReader`], `finish.rs` the re-check of trusted chunks and
//! the final name (`finish_tree.rs` for a folder). Here: the [`PartialFile`] itself, storing
//! chunks, flushing the record, discarding.

mod data;
mod finish;
mod finish_tree;
mod page_cache;
mod reader;
mod record;
mod resume;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::content_manifest::ContentManifest;
use super::layout::Layout;
use super::manifest::ChunkIndex;
use super::tree::select::{chunks_of, Selection};
use super::verified::VerifiedChunk;
use super::{remove_if_exists, sync_dir, write_atomic, ContentError};
use crate::bitset::BitSet;
use crate::id::Id;
use data::{PartData, TreeWriter};
use page_cache::{start_writeback, KEEP_CACHED_BEHIND, RELEASE_STEP, WRITEBACK_EVERY};
use record::VerifiedBits;

pub(crate) use finish::{link_no_clobber, Placed};
pub(crate) use finish_tree::{rename_no_clobber, sync_fs};
pub use page_cache::CacheRelease;
pub use reader::PartialReader;
pub use record::{decode_record, encode_record};
pub use resume::{recorded_bytes, resumable_downloads};

const DOWNLOADS: &str = "downloads";

/// What [`PartialFile::open_or_create`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The `.part` did not exist: a new download.
    pub created: bool,
    /// Chunk `i` is verified on disk: `verified[i]`. Feed this to the scheduler.
    pub verified: Vec<bool>,
    /// Chunks taken from the resume record.
    pub from_record: u32,
    /// Chunks not in the record whose data on disk matched their hash (written before a
    /// crash, or all-zero chunks of a sparse file that need no writing at all).
    pub recovered: u32,
    /// Chunks still to fetch.
    pub missing: u32,
}

/// A download in progress (module docs; state and crash points in `STATE.md`).
#[derive(Debug)]
pub struct PartialFile {
    id: Id,
    manifest: Arc<ContentManifest>,
    layout: Layout,
    dir: PathBuf,
    /// Where the bytes go: the `.part`, or a folder's files in place (`data.rs`).
    data: PartData,
    /// The files a folder's download has open for writing (unused for a single file).
    tree_writer: TreeWriter,
    verified: Arc<VerifiedBits>,
    /// Chunks taken as verified from the resume record without being hashed at the open;
    /// [`PartialFile::finish`] re-hashes them as stored (`finish.rs`).
    unhashed: BitSet,
    /// Chunks `0..prefix` are all verified (the verified prefix, in file order).
    prefix: u32,
    /// Bytes `0..released` are on disk and were dropped from the page cache
    /// ([`CacheRelease`]); shared with the readers.
    released: Arc<AtomicU64>,
    /// Bytes `0..release_claimed` were handed out to be released
    /// ([`PartialFile::take_cache_release`]), so no two workers release the same region.
    release_claimed: u64,
    verified_count: u32,
    /// For part of a folder ([`PartialFile::select`]): which entries are wanted, and their
    /// chunks. `None`: all of it.
    wanted: Option<(Vec<bool>, BitSet)>,
    /// Wanted chunks not verified yet.
    missing: u32,
    /// The verified set changed since the last resume record.
    dirty: bool,
    state: State,
    /// Bytes written since write-back was last started ([`PartialFile::store`]).
    unsynced: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Finished(PathBuf),
    Discarded,
}

fn downloads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DOWNLOADS)
}

/// Deletes the files of a download that is not open (paused, then cancelled): its stored
/// manifest first, so that a crash halfway leaves an orphan, never a download to resume.
pub fn remove_closed_download(data_dir: &Path, id: &Id) -> Result<(), ContentError> {
    remove_files_in(&downloads_dir(data_dir), id)
}

/// The manifest, then the record and the `.part` (or a folder's staging folder) of download
/// `id` in `dir` (see [`PartialFile::discard`]).
fn remove_files_in(dir: &Path, id: &Id) -> Result<(), ContentError> {
    if !dir.exists() {
        // No download ever opened here: nothing to remove.
        return Ok(());
    }
    let hex = id.to_hex();
    remove_if_exists(&dir.join(format!("{hex}.manifest")))?;
    sync_dir(dir)?;
    remove_if_exists(&dir.join(format!("{hex}.resume")))?;
    remove_if_exists(&dir.join(format!("{hex}.part")))?;
    remove_tree_if_exists(&dir.join(format!("{hex}.tree")))?;
    sync_dir(dir)
}

/// Removes a folder's staging folder and everything in it, if it is there.
fn remove_tree_if_exists(path: &Path) -> Result<(), ContentError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContentError::io("remove", path, e)),
    }
}

impl PartialFile {
    /// The content ID of this download.
    pub fn content_id(&self) -> Id {
        self.id
    }

    /// The manifest.
    pub fn manifest(&self) -> &Arc<ContentManifest> {
        &self.manifest
    }

    /// Where each chunk lies in the `.part`.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A handle that serves verified chunks concurrently with this owner (module docs).
    pub fn reader(&self) -> PartialReader {
        PartialReader {
            id: self.id,
            layout: self.layout.clone(),
            data: self.data.clone(),
            verified: Arc::clone(&self.verified),
            released: Arc::clone(&self.released),
        }
    }

    /// True when chunk `c` is verified on disk.
    pub fn is_verified(&self, c: ChunkIndex) -> bool {
        self.verified.get(c.get())
    }

    /// The verified set, `verified[i]` for chunk `i`.
    pub fn verified(&self) -> Vec<bool> {
        self.verified.to_vec()
    }

    /// Number of verified chunks.
    pub fn verified_count(&self) -> u32 {
        self.verified_count
    }

    /// Number of wanted chunks still missing.
    pub fn missing_count(&self) -> u32 {
        self.missing
    }

    /// True when every wanted chunk is verified (always true for an empty file).
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Downloads only the entries of a folder that `selection` selects (`--only`): the
    /// download is complete when their chunks are, and `finish` makes only those files. A
    /// single file ignores it.
    pub fn select(&mut self, selection: &Selection) {
        let Some(tree) = self.manifest.as_tree() else {
            return;
        };
        let entries = selection.entries(tree);
        let chunks = chunks_of(tree, &entries);
        self.missing = chunks
            .iter()
            .filter(|&i| !self.verified.get(i as u32))
            .count() as u32;
        self.wanted = Some((entries, chunks));
    }

    /// Whether chunk `c` is wanted (every chunk, unless [`PartialFile::select`] chose).
    pub fn is_wanted(&self, c: ChunkIndex) -> bool {
        self.wanted
            .as_ref()
            .is_none_or(|(_, bits)| bits.contains(c.as_usize()))
    }

    /// For part of a folder, which entries are wanted (`None`: all).
    pub fn wanted_entries(&self) -> Option<&[bool]> {
        self.wanted.as_ref().map(|(e, _)| e.as_slice())
    }

    /// True when chunks were verified since the last [`PartialFile::flush_record`].
    pub fn needs_flush(&self) -> bool {
        self.dirty
    }

    /// Stores a verified chunk at its place in the `.part`: from now on it is served to
    /// other peers and counted. Returns true if it was not verified before; storing a chunk
    /// that is already verified does nothing (its bytes may be being served at this moment).
    /// Durable only after the next [`PartialFile::flush_record`].
    ///
    /// Only a [`VerifiedChunk`] is accepted, which can only be made by hashing the bytes
    /// against the manifest: nothing unverified can reach the disk, in any build. A chunk
    /// verified for another content is refused.
    pub fn store(&mut self, chunk: &VerifiedChunk) -> Result<bool, ContentError> {
        self.ensure_open()?;
        let c = chunk.index();
        if chunk.content() != self.id {
            return Err(ContentError::ChunkOfOtherContent {
                id: self.id,
                chunk: c.get(),
                other: chunk.content(),
            });
        }
        self.ensure_in_range(c)?;
        if self.verified.get(c.get()) {
            return Ok(false);
        }
        let data = chunk.data();
        match &self.data {
            PartData::File { path, file } => {
                file.write_all_at(data, self.layout.chunk_offset(c))
                    .map_err(|e| ContentError::io("write", path, e))?;
                self.unsynced += data.len() as u64;
                if self.unsynced >= WRITEBACK_EVERY {
                    self.unsynced = 0;
                    start_writeback(file);
                }
            }
            PartData::Tree(t) => self.tree_writer.write(t, c, data)?,
        }
        self.set_verified(c);
        self.dirty = true;
        Ok(true)
    }

    /// The region of the `.part` now far enough behind the verified prefix
    /// ([`KEEP_CACHED_BEHIND`]) to be written to disk and dropped from the page cache, at
    /// least [`RELEASE_STEP`] of it, if there is one; run it outside this download's lock
    /// ([`CacheRelease::run`] waits for the disk). A folder's files are not released.
    pub fn take_cache_release(&mut self) -> Option<CacheRelease> {
        if self.state != State::Open {
            return None;
        }
        let (_, file) = self.data.as_file()?;
        let prefix_end = self
            .layout
            .validate(self.prefix)
            .map_or(self.layout.total(), |c| self.layout.chunk_offset(c));
        let end = prefix_end.saturating_sub(KEEP_CACHED_BEHIND);
        let start = self.release_claimed;
        if end < start.saturating_add(RELEASE_STEP) {
            return None;
        }
        self.release_claimed = end;
        Some(CacheRelease {
            file: Arc::clone(file),
            start,
            end,
            released: Arc::clone(&self.released),
        })
    }

    /// Reads verified chunk `c` (to serve it to another downloader at once). See
    /// [`PartialReader::read_chunk`]; use [`PartialFile::reader`] to read from other threads.
    pub fn read_chunk(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        self.reader().read_chunk(c, buf)
    }

    /// Persists the verified set, if it changed: first `fdatasync` on the `.part` (so every
    /// chunk the record is about to claim is durable), then the record is replaced atomically
    /// (temp file, fsync, rename, directory fsync). It costs two to three disk flushes: call it
    /// about once a second while downloading, and once at completion, not per chunk. Chunks
    /// verified but not yet flushed are re-hashed on the next open, not lost.
    pub fn flush_record(&mut self) -> Result<(), ContentError> {
        if !self.dirty || self.state != State::Open {
            return Ok(());
        }
        // Snapshot after the sync would be equally correct here (&mut self: nothing changes
        // meanwhile); taking it first keeps the rule "claim only what was written before the
        // sync" true even if marks ever become concurrent.
        let bits = self.verified.to_bytes();
        self.data.sync()?;
        let name = format!("{}.resume", self.id.to_hex());
        write_atomic(
            &self.dir,
            &name,
            &encode_record(&self.id, self.layout.chunk_count(), &bits),
        )?;
        self.dirty = false;
        Ok(())
    }

    /// Abandons the download: readers stop serving it, and its `.part`, record and stored
    /// manifest are deleted.
    pub fn discard(mut self) -> Result<(), ContentError> {
        self.discard_in_place()
    }

    /// [`PartialFile::discard`] for a file others may still hold (behind a lock, with jobs
    /// in flight): from now on every write, mark and finish fails with
    /// [`ContentError::Closed`].
    pub fn discard_in_place(&mut self) -> Result<(), ContentError> {
        self.tree_writer.close_all();
        self.verified.clear_all();
        self.verified_count = 0;
        self.missing = self.layout.chunk_count();
        self.state = State::Discarded;
        self.prefix = 0;
        self.unhashed = BitSet::new(self.layout.chunk_count() as usize);
        self.remove_download_files()
    }

    /// Removes the stored manifest first, then the record and the `.part`: after a crash in
    /// between, what remains has no manifest, so it is an orphan (deleted by
    /// [`resumable_downloads`]) rather than a download that would be resumed and fetched again.
    pub(super) fn remove_download_files(&self) -> Result<(), ContentError> {
        remove_files_in(&self.dir, &self.id)
    }

    /// The final path, once [`PartialFile::finish`] succeeded.
    pub fn finished_path(&self) -> Option<&Path> {
        match &self.state {
            State::Finished(p) => Some(p),
            _ => None,
        }
    }

    fn ensure_open(&self) -> Result<(), ContentError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(ContentError::Closed { id: self.id }),
        }
    }

    fn ensure_in_range(&self, c: ChunkIndex) -> Result<(), ContentError> {
        if c.get() < self.layout.chunk_count() {
            Ok(())
        } else {
            Err(ContentError::ChunkOutOfRange {
                id: self.id,
                chunk: c.get(),
                count: self.layout.chunk_count(),
            })
        }
    }

    fn set_verified(&mut self, c: ChunkIndex) {
        if self.verified.set(c.get()) {
            self.verified_count += 1;
            if self.is_wanted(c) {
                self.missing = self.missing.saturating_sub(1);
            }
        }
        // Amortized O(1): each chunk is passed once (until a chunk is unset again).
        while let Some(p) = self.layout.validate(self.prefix) {
            if !self.verified.get(p.get()) {
                break;
            }
            self.prefix += 1;
        }
    }

    fn unset_verified(&mut self, c: ChunkIndex) {
        self.unhashed.remove(c.get() as usize);
        self.prefix = self.prefix.min(c.get());
        if self.verified.get(c.get()) {
            self.verified.clear(c.get());
            self.verified_count = self.verified_count.saturating_sub(1);
            if self.is_wanted(c) {
                self.missing += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tree_tests;
