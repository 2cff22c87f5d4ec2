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
//! After a crash (even SIGKILL or power loss), [`PartialFile::open_or_create`] trusts the
//! chunks in the record if the `.part` still has the right size, and re-hashes every other
//! chunk from the `.part`: a chunk that was fully written before the crash is recovered
//! without fetching it again, a torn or unwritten one fails its hash and is simply missing.
//! Nothing is ever taken as verified without its hash having matched.
//!
//! When every chunk is verified, [`PartialFile::finish`] checks the whole-file SHA-256 of the
//! bytes in the `.part` (most of it already hashed while the download ran, see
//! [`PrefixWork`]), syncs, and links the file into the download folder under a safe name, never
//! replacing an existing file. Until then nothing exists under the final name.
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::manifest::{ChunkIndex, Lengths, Manifest, HASH_LEN};
use super::names::{numbered_name, safe_file_name_or_fallback};
use super::{remove_if_exists, sync_dir, write_atomic, ContentError};
use crate::id::Id;

const DOWNLOADS: &str = "downloads";
const RECORD_MAGIC: [u8; 4] = *b"PSRS";
const RECORD_VERSION: u8 = 1;
/// magic 4 + version 1 + content id 32 + chunk count 4.
const RECORD_HEADER: usize = 41;
/// Most "name (n).ext" alternatives tried before giving up.
const MAX_NUMBERED: u32 = 10_000;

/// The verified set, shared between a [`PartialFile`] and its [`PartialReader`]s.
#[derive(Debug)]
struct VerifiedBits {
    words: Box<[AtomicU64]>,
    len: u32,
}

impl VerifiedBits {
    fn new(len: u32) -> VerifiedBits {
        let n = (len as usize).div_ceil(64);
        VerifiedBits {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    fn word(&self, i: u32) -> Option<(&AtomicU64, u64)> {
        if i >= self.len {
            return None;
        }
        let w = self.words.get((i / 64) as usize)?;
        Some((w, 1u64 << (i % 64)))
    }

    fn get(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, bit)| w.load(Ordering::Acquire) & bit != 0)
    }

    /// Sets bit `i` (release: the chunk's data was written before); true if it was clear.
    fn set(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, bit)| w.fetch_or(bit, Ordering::Release) & bit == 0)
    }

    fn clear(&self, i: u32) {
        if let Some((w, bit)) = self.word(i) {
            w.fetch_and(!bit, Ordering::AcqRel);
        }
    }

    fn clear_all(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::Release);
        }
    }

    fn to_vec(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// The bitfield as the resume record stores it: chunk 0 is the most significant bit of
    /// byte 0, spare bits of the last byte are 0.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; (self.len as usize).div_ceil(8)];
        for i in 0..self.len {
            if self.get(i) {
                if let Some(b) = out.get_mut((i / 8) as usize) {
                    *b |= 0x80 >> (i % 8);
                }
            }
        }
        out
    }
}

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
    manifest: Arc<Manifest>,
    lengths: Lengths,
    dir: PathBuf,
    part_path: PathBuf,
    file: Arc<File>,
    verified: Arc<VerifiedBits>,
    /// Bytes `0..released` are on disk and were dropped from the page cache
    /// ([`PrefixWork::release_behind`]); shared with the readers.
    released: Arc<AtomicU64>,
    verified_count: u32,
    /// Chunks whose bytes were written to the `.part` (by this session or found valid on
    /// open). Only these may be marked verified.
    written: Vec<bool>,
    /// The verified set changed since the last resume record.
    dirty: bool,
    state: State,
    /// The whole-file SHA-256 over the verified prefix of the `.part`, advanced while the
    /// download runs (see [`PrefixWork`]); `None` while a worker holds it.
    prefix: Option<PrefixHash>,
    /// Bumped when the prefix hash is restarted, so a stale [`PrefixWork`] is not put back.
    prefix_gen: u64,
    /// Bytes written since write-back was last started ([`PartialFile::write_chunk`]).
    unsynced: u64,
}

/// How many written bytes accumulate before [`PartialFile::write_chunk`] asks the kernel to
/// start writing them back. Without it, a download smaller than the dirty-page threshold
/// (10% of RAM by default) stays entirely in memory and the `fsync` at the end has to write
/// all of it at once; with it, the disk works while the network does.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// How far behind the running whole-file hash the `.part`'s cached pages are kept. Chunks
/// verified this recently are the ones other downloaders ask for next (they have just been
/// announced), so serving them should not go to disk. Measured, 100 MiB to 8 leechers at
/// once: 32 and 64 MiB alike (1.08-1.11 s medians over 5 rounds each, in one hour); single
/// runs of 3-7 rounds of any setting spread from 1.07 to 2.1 s with this VM's fresh-page
/// faults. 1 GiB to one leecher gains the same ~1 s with 32 or 64 MiB. The larger value
/// sends fewer old-chunk requests to disk.
const KEEP_CACHED_BEHIND: u64 = 64 << 20;

/// The smallest span [`PrefixWork::advance`] releases from the page cache at once (one
/// `sync_file_range` and one `fadvise` per span).
const RELEASE_STEP: u64 = 8 << 20;

/// A running SHA-256 over chunks `0..next` of a download, in file order.
#[derive(Clone)]
struct PrefixHash {
    sha: Sha256,
    next: u32,
}

impl std::fmt::Debug for PrefixHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixHash")
            .field("next", &self.next)
            .finish()
    }
}

impl PrefixHash {
    fn new() -> Self {
        PrefixHash {
            sha: Sha256::new(),
            next: 0,
        }
    }
}

/// The whole-file hash of a download, taken out of its [`PartialFile`] so that a worker can
/// extend it over newly verified chunks without holding the download's lock
/// ([`PartialFile::take_prefix_work`], [`PrefixWork::advance`],
/// [`PartialFile::return_prefix_work`]). Hashing the verified prefix while the download runs
/// means that, when the last chunk arrives, usually little of the file is left to read back,
/// so the whole-file check no longer adds a full pass over the file after the download.
///
/// The bytes hashed are read back from the `.part`, not taken from the network buffers: the
/// check is about what is on disk, which is what gets its final name.
pub struct PrefixWork {
    hash: PrefixHash,
    gen: u64,
    reader: PartialReader,
}

impl PrefixWork {
    /// Extends the hash over at most `max` further chunks that are verified, in file order,
    /// reading them from the `.part` into `buf`. Returns how many it hashed; stops at the
    /// first chunk not verified yet.
    pub fn advance(&mut self, max: u32, buf: &mut Vec<u8>) -> Result<u32, ContentError> {
        let count = self.reader.lengths.chunk_count();
        let mut done = 0;
        while done < max && self.hash.next < count {
            let Some(c) = self.reader.lengths.validate(self.hash.next) else {
                break;
            };
            if !self.reader.verified.get(c.get()) {
                break;
            }
            let len = self.reader.lengths.chunk_len(c) as usize;
            // Grow only: the bytes are overwritten by the read, so no need to zero them again.
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let dst = buf.get_mut(..len).unwrap_or_default();
            self.reader
                .file
                .read_exact_at(dst, self.reader.lengths.chunk_offset(c))
                .map_err(|e| ContentError::io("read", &self.reader.part_path, e))?;
            self.hash.sha.update(&*dst);
            self.hash.next += 1;
            done += 1;
        }
        if done > 0 {
            self.release_behind();
        }
        Ok(done)
    }

    /// Drops the `.part`'s pages well behind the hash from the page cache, once they are on
    /// disk. Nothing reads them again during the download except a peer asking for an old
    /// chunk (then the read goes to disk), and keeping a whole download cached costs twice:
    /// it pushes out the user's other cached files, and each page the kernel hands out for
    /// the next write is a fresh one. On virtual machines whose hypervisor takes back free
    /// guest memory (free page reporting), a fresh page costs a host fault: this machine's
    /// kernel copy into the page cache ran 5x slower, ~1.5 s of CPU per GiB. Pages released
    /// here are reused by the next writes at once. Best effort: an error only leaves pages
    /// cached.
    fn release_behind(&mut self) {
        let lengths = &self.reader.lengths;
        let hashed = self
            .hash
            .next
            .checked_sub(1)
            .and_then(|last| lengths.validate(last))
            .map_or(0, |c| lengths.chunk_range(c).end);
        let end = hashed.saturating_sub(KEEP_CACHED_BEHIND);
        let start = self.reader.released.load(Ordering::Relaxed);
        if end >= start.saturating_add(RELEASE_STEP)
            && release_cached(&self.reader.file, start, end - start)
        {
            self.reader.released.fetch_max(end, Ordering::Relaxed);
        }
    }

    /// True when the hash covers the whole file.
    pub fn is_complete(&self) -> bool {
        self.hash.next == self.reader.lengths.chunk_count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Finished(PathBuf),
    Discarded,
}

/// Reads verified chunks of a download, concurrently with its owner (`Clone + Send + Sync`).
#[derive(Clone, Debug)]
pub struct PartialReader {
    id: Id,
    part_path: PathBuf,
    lengths: Lengths,
    file: Arc<File>,
    verified: Arc<VerifiedBits>,
    released: Arc<AtomicU64>,
}

impl PartialReader {
    /// True when chunk `c` is verified and can be served.
    pub fn is_verified(&self, c: ChunkIndex) -> bool {
        self.verified.get(c.get())
    }

    /// Reads verified chunk `c` into `buf` (replacing its contents). Fails with
    /// [`ContentError::ChunkNotVerified`] for a chunk not verified yet: unverified bytes are
    /// never served. On error `buf` is left empty.
    pub fn read_chunk(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        if !self.verified.get(c.get()) {
            buf.clear();
            return Err(ContentError::ChunkNotVerified {
                id: self.id,
                chunk: c.get(),
            });
        }
        // A no-op for a buffer of the right length already (`crate::bufpool`): the read
        // overwrites all of it.
        buf.resize(self.lengths.chunk_len(c) as usize, 0);
        let offset = self.lengths.chunk_offset(c);
        if let Err(e) = self.file.read_exact_at(buf, offset) {
            buf.clear();
            return Err(ContentError::io("read", &self.part_path, e));
        }
        // A chunk from a region already released came from disk: drop its pages again, so
        // serving old chunks does not fill the page cache with fresh pages either.
        let len = buf.len() as u64;
        if offset + len <= self.released.load(Ordering::Relaxed) {
            drop_cached(&self.file, offset, len);
        }
        Ok(())
    }
}

/// Asks the kernel to start writing `file`'s dirty pages to disk, without waiting for it, so
/// the `fsync` before the final rename finds little left to do. Best effort: on failure the
/// `fsync` simply does all the work.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a descriptor and plain integers and touches no memory of
    // ours; `file` keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        log::debug!("sync_file_range: {}", io::Error::last_os_error());
    }
}

/// `offset` and `len` as the kernel's signed file offsets (None past `i64::MAX`).
fn file_range(offset: u64, len: u64) -> Option<(libc::off64_t, libc::off64_t)> {
    Some((offset.try_into().ok()?, len.try_into().ok()?))
}

/// Writes bytes `offset..offset + len` of `file` to disk, waiting for them, then drops them
/// from the page cache ([`PrefixWork::release_behind`] says why). Returns false if either
/// step failed (the pages then stay cached; nothing is lost).
fn release_cached(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Some((off, n)) = file_range(offset, len) else {
        return false;
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: takes a descriptor and plain integers and touches no memory of ours; `file`
    // keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, flags) };
    if r != 0 {
        log::debug!("sync_file_range (release): {}", io::Error::last_os_error());
        return false;
    }
    drop_cached(file, offset, len)
}

/// Drops the clean cached pages of bytes `offset..offset + len` of `file` (dirty ones stay).
/// Returns false if the kernel refused.
fn drop_cached(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Some((off, n)) = file_range(offset, len) else {
        return false;
    };
    // SAFETY: takes a descriptor and plain integers and touches no memory of ours; `file`
    // keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, n, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        log::debug!("posix_fadvise: {}", io::Error::from_raw_os_error(r));
        return false;
    }
    true
}

fn downloads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DOWNLOADS)
}

impl PartialFile {
    /// Opens the download of `manifest`'s content, creating it if new. On reopen after a crash
    /// the resume record is trusted only if the `.part` has the right size; every chunk it does
    /// not claim is re-hashed from disk (reading a never-written, sparse region is cheap). The
    /// `.part` is locked for the life of the `PartialFile`: a second open of the same download
    /// (here or in another process) fails with [`ContentError::Busy`].
    pub fn open_or_create(
        data_dir: &Path,
        manifest: Arc<Manifest>,
    ) -> Result<(PartialFile, OpenReport), ContentError> {
        let id = manifest.content_id();
        let lengths = manifest.lengths();
        let dir = downloads_dir(data_dir);
        fs::create_dir_all(&dir).map_err(|e| ContentError::io("create", &dir, e))?;
        let hex = id.to_hex();
        let mname = format!("{hex}.manifest");
        if !dir.join(&mname).exists() {
            write_atomic(&dir, &mname, &manifest.encode())?;
        }

        let part_path = dir.join(format!("{hex}.part"));
        let (file, created) = open_part(&part_path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ContentError::Busy {
                    id,
                    path: part_path,
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(ContentError::io("lock", &part_path, e)),
        }
        let len = file
            .metadata()
            .map_err(|e| ContentError::io("inspect", &part_path, e))?
            .len();
        let size_ok = len == lengths.total();
        if !size_ok {
            // Preallocate (sparse) or repair the size. Regions past the old end read as
            // zeros, so nothing there can pass for a written chunk unless it is one of zeros.
            file.set_len(lengths.total())
                .map_err(|e| ContentError::io("preallocate", &part_path, e))?;
        }

        let record_path = dir.join(format!("{hex}.resume"));
        let record = if size_ok && !created {
            read_record(&record_path, &id, lengths.chunk_count())
        } else {
            None
        };
        if record.is_none() {
            // A record we do not trust must not be trusted later either, once the size is
            // right again: remove it now. Re-hashing below decides what is on disk.
            if record_path.exists() {
                log::warn!(
                    "download {id}: resume record not usable (file size or record damaged); \
                     re-checking every chunk on disk"
                );
                remove_if_exists(&record_path)?;
                sync_dir(&dir)?;
            }
        }

        let mut pf = PartialFile {
            id,
            lengths,
            dir,
            part_path,
            file: Arc::new(file),
            verified: Arc::new(VerifiedBits::new(lengths.chunk_count())),
            released: Arc::new(AtomicU64::new(0)),
            verified_count: 0,
            written: vec![false; lengths.chunk_count() as usize],
            dirty: false,
            state: State::Open,
            manifest,
            prefix: Some(PrefixHash::new()),
            prefix_gen: 0,
            unsynced: 0,
        };
        let mut from_record = 0;
        if let Some(bits) = &record {
            for c in lengths.chunks() {
                if bit_at(bits, c.get()) {
                    pf.set_verified(c);
                    from_record += 1;
                }
            }
        }
        let recovered = if created {
            pf.recover_zero_chunks()
        } else {
            pf.recover_from_disk()?
        };
        if recovered > 0 {
            pf.dirty = true;
            // Record them now: the data may be only in the page cache (the process died, the
            // machine did not), and flush syncs it before the record claims it.
            pf.flush_record()?;
        }
        let report = OpenReport {
            created,
            verified: pf.verified.to_vec(),
            from_record,
            recovered,
            missing: pf.missing_count(),
        };
        Ok((pf, report))
    }

    /// The content ID of this download.
    pub fn content_id(&self) -> Id {
        self.id
    }

    /// The manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The file's size arithmetic.
    pub fn lengths(&self) -> Lengths {
        self.lengths
    }

    /// A handle that serves verified chunks concurrently with this owner (module docs).
    pub fn reader(&self) -> PartialReader {
        PartialReader {
            id: self.id,
            part_path: self.part_path.clone(),
            lengths: self.lengths,
            file: Arc::clone(&self.file),
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

    /// Number of chunks still missing.
    pub fn missing_count(&self) -> u32 {
        self.lengths
            .chunk_count()
            .saturating_sub(self.verified_count)
    }

    /// True when every chunk is verified (always true for an empty file).
    pub fn is_complete(&self) -> bool {
        self.verified_count == self.lengths.chunk_count()
    }

    /// True when chunks were verified since the last [`PartialFile::flush_record`].
    pub fn needs_flush(&self) -> bool {
        self.dirty
    }

    /// Writes chunk `c` at its place in the `.part`.
    ///
    /// **Precondition:** the caller has already checked `data` against the manifest
    /// ([`Manifest::verify_chunk`], on a worker). Debug builds check again and refuse a
    /// mismatch with [`ContentError::ChunkHashMismatch`]; release builds do not hash twice.
    /// The length is always checked. Writing a chunk that is already verified does nothing
    /// (its bytes may be being served at this moment). The chunk counts only once
    /// [`PartialFile::mark_verified`] is called.
    pub fn write_chunk(&mut self, c: ChunkIndex, data: &[u8]) -> Result<(), ContentError> {
        self.ensure_open()?;
        self.ensure_in_range(c)?;
        let expected = self.lengths.chunk_len(c);
        if data.len() != expected as usize {
            return Err(ContentError::WrongChunkLength {
                id: self.id,
                chunk: c.get(),
                expected,
                got: data.len(),
            });
        }
        if self.verified.get(c.get()) {
            return Ok(());
        }
        if cfg!(debug_assertions) && !self.manifest.verify_chunk(c, data) {
            return Err(ContentError::ChunkHashMismatch {
                id: self.id,
                chunk: c.get(),
            });
        }
        self.file
            .write_all_at(data, self.lengths.chunk_offset(c))
            .map_err(|e| ContentError::io("write", &self.part_path, e))?;
        if let Some(w) = self.written.get_mut(c.as_usize()) {
            *w = true;
        }
        self.unsynced += data.len() as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
            start_writeback(&self.file);
        }
        Ok(())
    }

    /// Takes the whole-file hash out to extend it without this download's lock, if the next
    /// chunk it needs is verified. Give it back with [`PartialFile::return_prefix_work`].
    pub fn take_prefix_work(&mut self) -> Option<PrefixWork> {
        let next = self.prefix.as_ref()?.next;
        let c = self.lengths.validate(next)?;
        if self.state != State::Open || !self.verified.get(c.get()) {
            return None;
        }
        Some(PrefixWork {
            hash: self.prefix.take()?,
            gen: self.prefix_gen,
            reader: self.reader(),
        })
    }

    /// Puts back the hash taken by [`PartialFile::take_prefix_work`] (ignored if the hash was
    /// restarted meanwhile).
    pub fn return_prefix_work(&mut self, work: PrefixWork) {
        if work.gen == self.prefix_gen && self.prefix.is_none() {
            self.prefix = Some(work.hash);
        }
    }

    /// How many chunks, from the start of the file, the running whole-file hash covers
    /// (`None` while a worker holds it).
    pub fn prefix_hashed(&self) -> Option<u32> {
        self.prefix.as_ref().map(|p| p.next)
    }

    /// Marks a written chunk verified: from now on it is served to other peers and counted.
    /// Returns true if it was not verified before. Fails for a chunk that was not written.
    /// Durable only after the next [`PartialFile::flush_record`].
    pub fn mark_verified(&mut self, c: ChunkIndex) -> Result<bool, ContentError> {
        self.ensure_open()?;
        self.ensure_in_range(c)?;
        if self.verified.get(c.get()) {
            return Ok(false);
        }
        if !self.written.get(c.as_usize()).copied().unwrap_or(false) {
            return Err(ContentError::ChunkNotWritten {
                id: self.id,
                chunk: c.get(),
            });
        }
        self.set_verified(c);
        self.dirty = true;
        Ok(true)
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
        self.file
            .sync_data()
            .map_err(|e| ContentError::io("sync", &self.part_path, e))?;
        let name = format!("{}.resume", self.id.to_hex());
        write_atomic(
            &self.dir,
            &name,
            &encode_record(&self.id, self.lengths.chunk_count(), &bits),
        )?;
        self.dirty = false;
        Ok(())
    }

    /// Completes the download: checks the whole-file SHA-256 by reading the `.part`, syncs it,
    /// and gives it its final name in `final_dir` (created if needed): `name` cleaned by
    /// [`super::names::safe_file_name`] (or `<id prefix>.bin`), and if that is taken
    /// `name (1).ext`, `name (2).ext`, ... An existing file is never replaced: the file is
    /// hard-linked into place, which fails rather than overwrite; across file systems it is
    /// first copied to a hidden temp name in `final_dir` and synced. Then the `.part`, the
    /// record and the stored manifest are removed. Returns the final path. It reads back and
    /// hashes whatever part of the file the running whole-file hash ([`PrefixWork`]) has not
    /// covered yet (all of it, about 0.6 s per GiB, in the worst case): call it on a worker
    /// thread.
    ///
    /// If the whole-file hash does not match, nothing appears under the final name: every
    /// chunk is re-hashed, damaged ones become missing again (the record is updated), and the
    /// error says how many; the download stays open to fetch them.
    pub fn finish(&mut self, final_dir: &Path, name: &str) -> Result<PathBuf, ContentError> {
        self.ensure_open()?;
        if !self.is_complete() {
            return Err(ContentError::Incomplete {
                id: self.id,
                missing: self.missing_count(),
            });
        }
        let t0 = Instant::now();
        let left_to_hash = self
            .prefix
            .as_ref()
            .map_or(self.lengths.chunk_count(), |p| {
                self.lengths.chunk_count().saturating_sub(p.next)
            });
        if self.whole_file_hash()? != *self.manifest.file_sha256() {
            self.prefix_gen += 1;
            self.prefix = Some(PrefixHash::new());
            let bad = self.drop_damaged_chunks()?;
            return Err(ContentError::FileHashMismatch {
                id: self.id,
                bad_chunks: bad,
            });
        }
        let t1 = Instant::now();
        self.file
            .sync_all()
            .map_err(|e| ContentError::io("sync", &self.part_path, e))?;
        let t2 = Instant::now();

        fs::create_dir_all(final_dir).map_err(|e| ContentError::io("create", final_dir, e))?;
        let base = safe_file_name_or_fallback(name, &self.id);
        let final_path = match link_no_clobber(&self.part_path, final_dir, &base)? {
            Placed::At(p) => p,
            Placed::CrossDevice => self.copy_across(final_dir, &base)?,
        };
        sync_dir(final_dir)?;

        // The file is complete, verified and durable under its final name: the download has
        // succeeded whatever happens next. Forgetting it is best effort; leftovers are
        // orphans that `resumable_downloads` deletes.
        self.dirty = false;
        self.state = State::Finished(final_path.clone());
        if let Err(e) = self.remove_download_files() {
            log::warn!("download {} finished, but cleaning up failed: {e}", self.id);
        }
        // Where the time between the last chunk and the final name goes.
        log::debug!(
            "download {}: finish hashed the last {left_to_hash} of {} chunks in {:?}, \
             fsync {:?}, placing and cleaning up {:?}",
            self.id,
            self.lengths.chunk_count(),
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        Ok(final_path)
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
        self.verified.clear_all();
        self.verified_count = 0;
        self.state = State::Discarded;
        self.prefix = None;
        self.remove_download_files()
    }

    /// Removes the stored manifest first, then the record and the `.part`: after a crash in
    /// between, what remains has no manifest, so it is an orphan (deleted by
    /// [`resumable_downloads`]) rather than a download that would be resumed and fetched again.
    fn remove_download_files(&self) -> Result<(), ContentError> {
        let hex = self.id.to_hex();
        remove_if_exists(&self.dir.join(format!("{hex}.manifest")))?;
        sync_dir(&self.dir)?;
        remove_if_exists(&self.dir.join(format!("{hex}.resume")))?;
        remove_if_exists(&self.part_path)?;
        sync_dir(&self.dir)
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
        if c.get() < self.lengths.chunk_count() {
            Ok(())
        } else {
            Err(ContentError::ChunkOutOfRange {
                id: self.id,
                chunk: c.get(),
                count: self.lengths.chunk_count(),
            })
        }
    }

    fn set_verified(&mut self, c: ChunkIndex) {
        if let Some(w) = self.written.get_mut(c.as_usize()) {
            *w = true;
        }
        if self.verified.set(c.get()) {
            self.verified_count += 1;
        }
    }

    fn unset_verified(&mut self, c: ChunkIndex) {
        if self.verified.get(c.get()) {
            self.verified.clear(c.get());
            self.verified_count = self.verified_count.saturating_sub(1);
        }
        if let Some(w) = self.written.get_mut(c.as_usize()) {
            *w = false;
        }
    }

    /// A new `.part` is all zeros (sparse): chunks whose content *is* zeros are already there.
    fn recover_zero_chunks(&mut self) -> u32 {
        let mut zero = ZeroHashes::default();
        let mut n = 0;
        for c in self.lengths.chunks() {
            let len = self.lengths.chunk_len(c);
            if self.manifest.chunk_hash(c) == zero.of_len(len) {
                self.set_verified(c);
                n += 1;
            }
        }
        n
    }

    /// Re-hashes every chunk not yet verified from the `.part`; returns how many matched.
    fn recover_from_disk(&mut self) -> Result<u32, ContentError> {
        let mut zero = ZeroHashes::default();
        let mut buf = Vec::new();
        let mut n = 0;
        for c in self.lengths.chunks() {
            if self.verified.get(c.get()) {
                continue;
            }
            let len = self.lengths.chunk_len(c);
            buf.resize(len as usize, 0);
            self.file
                .read_exact_at(&mut buf, self.lengths.chunk_offset(c))
                .map_err(|e| ContentError::io("read", &self.part_path, e))?;
            // Never-written regions are holes that read as zeros: compare against the hash of
            // zeros (computed once per length) instead of hashing them.
            let ok = if buf.iter().all(|&b| b == 0) {
                self.manifest.chunk_hash(c) == zero.of_len(len)
            } else {
                self.manifest.verify_chunk(c, &buf)
            };
            if ok {
                self.set_verified(c);
                n += 1;
            }
        }
        Ok(n)
    }

    /// The whole-file SHA-256 of the `.part`: the running prefix hash finished over the
    /// chunks it has not covered yet, or (if a worker holds it, which the node never lets
    /// happen at `finish`) a full read.
    fn whole_file_hash(&mut self) -> Result<[u8; HASH_LEN], ContentError> {
        if let Some(hash) = self.prefix.take() {
            let mut work = PrefixWork {
                hash,
                gen: self.prefix_gen,
                reader: self.reader(),
            };
            let mut buf = Vec::new();
            work.advance(u32::MAX, &mut buf)?;
            if work.is_complete() {
                return Ok(work.hash.sha.finalize().into());
            }
            // Not every chunk is verified: cannot happen after the completeness check.
            self.return_prefix_work(work);
        }
        self.whole_file_hash_from_disk()
    }

    fn whole_file_hash_from_disk(&self) -> Result<[u8; HASH_LEN], ContentError> {
        let mut h = Sha256::new();
        let mut f = File::open(&self.part_path)
            .map_err(|e| ContentError::io("open", &self.part_path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = self.lengths.total();
        while left > 0 {
            let n = f
                .read(&mut buf)
                .map_err(|e| ContentError::io("read", &self.part_path, e))?;
            if n == 0 {
                break;
            }
            let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            h.update(buf.get(..n).unwrap_or(&[]));
            left -= n as u64;
        }
        Ok(h.finalize().into())
    }

    /// After a whole-file mismatch: re-hash each chunk, make damaged ones missing again and
    /// persist that. Returns how many were damaged.
    fn drop_damaged_chunks(&mut self) -> Result<u32, ContentError> {
        let mut buf = Vec::new();
        let mut bad = Vec::new();
        for c in self.lengths.chunks() {
            buf.resize(self.lengths.chunk_len(c) as usize, 0);
            self.file
                .read_exact_at(&mut buf, self.lengths.chunk_offset(c))
                .map_err(|e| ContentError::io("read", &self.part_path, e))?;
            if !self.manifest.verify_chunk(c, &buf) {
                bad.push(c);
            }
        }
        for &c in &bad {
            self.unset_verified(c);
        }
        log::warn!(
            "download {}: whole-file hash mismatch; {} damaged chunk(s) will be fetched again",
            self.id,
            bad.len()
        );
        self.dirty = true;
        self.flush_record()?;
        Ok(u32::try_from(bad.len()).unwrap_or(u32::MAX))
    }

    /// The cross-file-system case: copy into a hidden temp file inside `final_dir`, sync it,
    /// then link it into place like the same-file-system case.
    fn copy_across(&self, final_dir: &Path, base: &str) -> Result<PathBuf, ContentError> {
        let hex = self.id.to_hex();
        let tmp = final_dir.join(format!(".{}.peershare-part", hex.get(..16).unwrap_or(&hex)));
        fs::copy(&self.part_path, &tmp).map_err(|e| ContentError::io("copy", &tmp, e))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| ContentError::io("sync", &tmp, e))?;
        match link_no_clobber(&tmp, final_dir, base)? {
            Placed::At(p) => {
                remove_if_exists(&tmp)?;
                Ok(p)
            }
            Placed::CrossDevice => Err(ContentError::io(
                "link",
                &tmp,
                io::Error::other("temp file and final name on different file systems"),
            )),
        }
    }
}

/// Opens the `.part`, creating it if absent; says whether it was created.
fn open_part(path: &Path) -> Result<(File, bool), ContentError> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    match o.clone().create_new(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => o
            .open(path)
            .map(|f| (f, false))
            .map_err(|e| ContentError::io("open", path, e)),
        Err(e) => Err(ContentError::io("create", path, e)),
    }
}

/// SHA-256 of `len` zero bytes, for the (at most two) chunk lengths of a file.
#[derive(Default)]
struct ZeroHashes(Vec<(u32, [u8; HASH_LEN])>);

impl ZeroHashes {
    fn of_len(&mut self, len: u32) -> &[u8; HASH_LEN] {
        let i = match self.0.iter().position(|(l, _)| *l == len) {
            Some(i) => i,
            None => {
                let h = Sha256::digest(vec![0u8; len as usize]).into();
                self.0.push((len, h));
                self.0.len() - 1
            }
        };
        self.0.get(i).map_or(&[0; HASH_LEN], |(_, h)| h)
    }
}

enum Placed {
    At(PathBuf),
    CrossDevice,
}

/// Gives `src` the first free name among `base`, `base (1)`, ... in `dir`, without ever
/// replacing an existing file: `link(2)` fails with EEXIST instead of overwriting. On file
/// systems without hard links, falls back to rename after checking the name is free (the
/// only case where a file created in that instant by someone else could be replaced).
fn link_no_clobber(src: &Path, dir: &Path, base: &str) -> Result<Placed, ContentError> {
    for n in 0..=MAX_NUMBERED {
        let candidate = dir.join(numbered_name(base, n));
        match fs::hard_link(src, &candidate) {
            Ok(()) => return Ok(Placed::At(candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(Placed::CrossDevice),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                if fs::symlink_metadata(&candidate).is_ok() {
                    continue;
                }
                return match fs::rename(src, &candidate) {
                    Ok(()) => Ok(Placed::At(candidate)),
                    Err(e) if e.kind() == io::ErrorKind::CrossesDevices => Ok(Placed::CrossDevice),
                    Err(e) => Err(ContentError::io("move into place", &candidate, e)),
                };
            }
            Err(e) => return Err(ContentError::io("link into place", &candidate, e)),
        }
    }
    Err(ContentError::io(
        "name",
        &dir.join(base),
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{MAX_NUMBERED} numbered variants of the name are already taken"),
        ),
    ))
}

/// The resume record (local, not a protocol format; layout in `STATE.md`).
pub fn encode_record(id: &Id, count: u32, bits: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + bits.len() + HASH_LEN);
    out.extend_from_slice(&RECORD_MAGIC);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(bits);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads a resume record for `id`; `None` if absent or not exactly a valid record for this
/// download (see [`decode_record`]).
fn read_record(path: &Path, id: &Id, count: u32) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(b) => decode_record(&b, id, count),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("cannot read {}: {e}", path.display());
            None
        }
    }
}

/// The verified-chunk bits of a resume record's `bytes` for download `id` of `count` chunks;
/// `None` unless they are exactly a valid record for it (wrong magic, version, ID, count,
/// length, checksum, or spare bits set).
pub fn decode_record(bytes: &[u8], id: &Id, count: u32) -> Option<Vec<u8>> {
    let nbytes = (count as usize).div_ceil(8);
    let expected_len = RECORD_HEADER + nbytes + HASH_LEN;
    if bytes.len() != expected_len {
        return None;
    }
    let (body, sum) = bytes.split_at(expected_len - HASH_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let (header, bits) = body.split_at(RECORD_HEADER);
    let mut want = Vec::with_capacity(RECORD_HEADER);
    want.extend_from_slice(&RECORD_MAGIC);
    want.push(RECORD_VERSION);
    want.extend_from_slice(&id.0);
    want.extend_from_slice(&count.to_be_bytes());
    if header != want.as_slice() {
        return None;
    }
    // Bits past the last chunk must be zero: one set there means the record is not ours.
    // 0 to 7 spare bits, computed in usize so no count can overflow it.
    let spare = (nbytes * 8).saturating_sub(count as usize);
    if (1..8).contains(&spare) {
        let last = bits.last().copied().unwrap_or(0);
        if last & ((1u8 << spare) - 1) != 0 {
            return None;
        }
    }
    Some(bits.to_vec())
}

fn bit_at(bits: &[u8], i: u32) -> bool {
    bits.get((i / 8) as usize)
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// The downloads that can be resumed: every stored manifest in `<data_dir>/downloads/` that
/// hashes to its file name. Damaged manifests are deleted (with their download, which cannot
/// be verified without them). The caller reopens each with [`PartialFile::open_or_create`];
/// the final name is the caller's to remember.
pub fn resumable_downloads(data_dir: &Path) -> Result<Vec<Arc<Manifest>>, ContentError> {
    let dir = downloads_dir(data_dir);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ContentError::io("list", &dir, e)),
    };
    let mut out = Vec::new();
    let mut orphans = Vec::new();
    for de in rd.flatten() {
        let name = de.file_name();
        let Some(name) = name.to_str() else { continue };
        // `<hex>.part`, `<hex>.resume` and temp files of a download whose manifest is gone
        // (a crash while finishing or discarding) are orphans.
        let stem = name.split('.').next().unwrap_or("");
        if !name.ends_with(".manifest") {
            if Id::from_hex(stem).is_ok() && !dir.join(format!("{stem}.manifest")).exists() {
                orphans.push(de.path());
            }
            continue;
        }
        let Some(id) = name
            .strip_suffix(".manifest")
            .and_then(|h| Id::from_hex(h).ok())
        else {
            continue;
        };
        let ok = fs::metadata(de.path())
            .ok()
            .filter(|m| m.len() <= super::manifest::MAX_MANIFEST_LEN as u64)
            .and_then(|_| fs::read(de.path()).ok())
            .and_then(|b| Manifest::decode_for(&id, &b).ok());
        match ok {
            Some(m) => out.push(Arc::new(m)),
            None => {
                log::warn!("download {id}: stored manifest is damaged; the download is dropped");
                let hex = id.to_hex();
                for ext in ["manifest", "resume", "part"] {
                    let _ = remove_if_exists(&dir.join(format!("{hex}.{ext}")));
                }
            }
        }
    }
    for p in orphans {
        log::info!("removing leftover {}", p.display());
        let _ = remove_if_exists(&p);
    }
    out.sort_by_key(|m| m.content_id());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::names::fallback_name;

    const CS: u32 = 16 << 10;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| ((i % 251) as u8).wrapping_add(seed).wrapping_mul(7))
            .collect()
    }

    /// Content of `chunks` 16 KiB chunks, the last one short.
    fn content(chunks: usize) -> (Vec<u8>, Arc<Manifest>) {
        let d = pattern(chunks * CS as usize - 100, 3);
        let m = Arc::new(Manifest::for_data_with_chunk_size(&d, CS).unwrap());
        (d, m)
    }

    fn chunk<'a>(d: &'a [u8], m: &Manifest, c: ChunkIndex) -> &'a [u8] {
        let r = m.lengths().chunk_range(c);
        &d[r.start as usize..r.end as usize]
    }

    fn idx(m: &Manifest, i: u32) -> ChunkIndex {
        m.lengths().validate(i).unwrap()
    }

    fn store(pf: &mut PartialFile, d: &[u8], i: u32, mark: bool) {
        let m = Arc::clone(pf.manifest());
        let c = idx(&m, i);
        pf.write_chunk(c, chunk(d, &m, c)).unwrap();
        if mark {
            assert!(pf.mark_verified(c).unwrap());
        }
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
            pf.write_chunk(idx(&m, 0), chunk(&d, &m, idx(&m, 0))),
            Err(ContentError::Closed { .. })
        ));
    }

    /// The running whole-file hash follows the verified prefix in file order, out-of-order
    /// arrivals included, and finish uses it; a hash held elsewhere at finish, or returned
    /// after a restart of the hash, changes nothing.
    #[test]
    fn running_whole_file_hash_follows_the_verified_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, m) = content(6);
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        let mut buf = Vec::new();
        let mut step = |pf: &mut PartialFile, i: u32| -> Option<u32> {
            store(pf, &d, i, true);
            let mut w = pf.take_prefix_work()?;
            assert_eq!(pf.prefix_hashed(), None, "held by the worker");
            w.advance(2, &mut buf).unwrap();
            pf.return_prefix_work(w);
            pf.prefix_hashed()
        };
        assert_eq!(step(&mut pf, 2), None, "chunk 0 missing: nothing to do");
        assert_eq!(pf.prefix_hashed(), Some(0));
        assert_eq!(step(&mut pf, 0), Some(1), "stops before missing chunk 1");
        assert_eq!(step(&mut pf, 1), Some(3), "1 and 2");
        assert_eq!(step(&mut pf, 4), None, "3 missing");
        assert_eq!(step(&mut pf, 3), Some(5), "at most 2 per call");
        // The last chunk: finish hashes what is left (chunk 5) and agrees.
        store(&mut pf, &d, 5, true);
        let out = tmp.path().join("out");
        assert_eq!(fs::read(pf.finish(&out, "a").unwrap()).unwrap(), d);

        // Held by a worker at finish: finish reads the whole file instead; the late return
        // is ignored.
        let tmp = tempfile::tempdir().unwrap();
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..6 {
            store(&mut pf, &d, i, true);
        }
        let w = pf.take_prefix_work().unwrap();
        let p = pf.finish(&out, "b").unwrap();
        pf.return_prefix_work(w);
        assert_eq!(fs::read(p).unwrap(), d);
    }

    /// How many of the pages of `range` of `path` are in the page cache (mincore).
    fn resident_pages(path: &Path, range: std::ops::Range<usize>) -> usize {
        let f = File::open(path).unwrap();
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

    /// Pages far enough behind the running whole-file hash are written to disk and dropped
    /// from the page cache as the hash advances; what was dropped still reads back right (and
    /// is dropped again after the read), and the download finishes with identical bytes.
    #[test]
    fn pages_behind_the_hash_are_released() {
        let tmp = tempfile::tempdir().unwrap();
        let cs = 1u32 << 20;
        let mib = 1u64 << 20;
        let keep = (KEEP_CACHED_BEHIND / mib) as usize;
        let step = (RELEASE_STEP / mib) as usize;
        // Enough chunks for one release and a bit more, the last chunk 3 bytes short.
        let n = keep + step + step / 2;
        let d = pattern(n * cs as usize - 3, 9);
        let m = Arc::new(Manifest::for_data_with_chunk_size(&d, cs).unwrap());
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        let part = pf.part_path.clone();
        let mut buf = Vec::new();
        let mut released = Vec::new();
        for i in 0..n as u32 {
            store(&mut pf, &d, i, true);
            let mut w = pf.take_prefix_work().unwrap();
            assert_eq!(w.advance(u32::MAX, &mut buf).unwrap(), 1);
            released.push(w.reader.released.load(Ordering::Relaxed));
            pf.return_prefix_work(w);
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
            pf.file
                .write_all_at(b"torn", m.lengths().chunk_offset(c5) + 10)
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
            Err(ContentError::FileHashMismatch { bad_chunks: 1, .. }) => {}
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

    #[test]
    fn inconsistent_manifest_cannot_finish() {
        // Chunk hashes of one content, whole-file hash of another: every chunk verifies, the
        // file never does.
        let tmp = tempfile::tempdir().unwrap();
        let d = pattern(40_000, 1);
        let good = Manifest::for_data_with_chunk_size(&d, CS).unwrap();
        let m =
            Arc::new(Manifest::new(good.lengths(), [7; 32], good.chunk_hashes().to_vec()).unwrap());
        let (mut pf, _) = PartialFile::open_or_create(tmp.path(), Arc::clone(&m)).unwrap();
        for i in 0..3 {
            store(&mut pf, &d, i, true);
        }
        let out = tmp.path().join("out");
        assert!(matches!(
            pf.finish(&out, "x"),
            Err(ContentError::FileHashMismatch { bad_chunks: 0, .. })
        ));
        assert!(!out.join("x").exists());
        pf.discard().unwrap();
        assert_eq!(
            fs::read_dir(tmp.path().join("downloads")).unwrap().count(),
            0
        );
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
        let m = Arc::new(Manifest::for_data_with_chunk_size(&d, CS).unwrap());
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
        let c0 = idx(&m, 0);
        assert!(matches!(
            pf.mark_verified(c0),
            Err(ContentError::ChunkNotWritten { .. })
        ));
        assert!(matches!(
            pf.write_chunk(c0, &d[..10]),
            Err(ContentError::WrongChunkLength {
                expected: CS,
                got: 10,
                ..
            })
        ));
        if cfg!(debug_assertions) {
            let wrong = vec![0u8; CS as usize];
            assert!(matches!(
                pf.write_chunk(c0, &wrong),
                Err(ContentError::ChunkHashMismatch { .. })
            ));
        }
        let other = Lengths::new(100 * u64::from(CS), CS)
            .unwrap()
            .validate(50)
            .unwrap();
        assert!(matches!(
            pf.write_chunk(other, &[]),
            Err(ContentError::ChunkOutOfRange { .. })
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
            let m = Arc::new(Manifest::for_data(&d).unwrap());
            let (mut pf, _) = PartialFile::open_or_create(tmp.path(), m.clone()).unwrap();
            store(&mut pf, &d, 0, true);
            let p = pf.finish(&out, name).unwrap();
            assert_eq!(p, out.join(want), "{name:?}");
            assert_eq!(fs::read(&p).unwrap(), d);
        }
        // Unusable names fall back to the content ID.
        let d = pattern(10, 99);
        let m = Arc::new(Manifest::for_data(&d).unwrap());
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
        let m = Arc::new(Manifest::for_data(b"").unwrap());
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
                        for c in m.lengths().chunks() {
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
        let m2 = Arc::new(Manifest::for_data(b"two").unwrap());
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
}
