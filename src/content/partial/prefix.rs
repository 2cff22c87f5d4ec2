//! The running whole-file hash: SHA-256 over the verified prefix of the `.part`, advanced
//! by a worker while the download runs ([`PrefixWork`]), so that little is left to hash
//! when the last chunk arrives.

use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::page_cache::{release_cached, KEEP_CACHED_BEHIND, RELEASE_STEP};
use super::{PartialFile, PartialReader, State};
use crate::content::ContentError;

/// A running SHA-256 over chunks `0..next` of a download, in file order.
#[derive(Clone)]
pub(super) struct PrefixHash {
    pub(super) sha: Sha256,
    pub(super) next: u32,
}

impl std::fmt::Debug for PrefixHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixHash")
            .field("next", &self.next)
            .finish()
    }
}

impl PrefixHash {
    pub(super) fn new() -> Self {
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
    pub(super) hash: PrefixHash,
    pub(super) gen: u64,
    pub(super) reader: PartialReader,
}

impl PrefixWork {
    /// Extends the hash over at most `max` further chunks that are verified, in file order,
    /// reading them from the `.part` into `buf`. Returns how many it hashed; stops at the
    /// first chunk not verified yet.
    pub fn advance(&mut self, max: u32, buf: &mut Vec<u8>) -> Result<u32, ContentError> {
        let count = self.reader.layout.chunk_count();
        let mut done = 0;
        while done < max && self.hash.next < count {
            let Some(c) = self.reader.layout.validate(self.hash.next) else {
                break;
            };
            if !self.reader.verified.get(c.get()) {
                break;
            }
            let len = self.reader.layout.chunk_len(c) as usize;
            // Grow only: the bytes are overwritten by the read, so no need to zero them again.
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let dst = buf.get_mut(..len).unwrap_or_default();
            self.reader.data.read_chunk(&self.reader.layout, c, dst)?;
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
        let layout = &self.reader.layout;
        let hashed = self
            .hash
            .next
            .checked_sub(1)
            .and_then(|last| layout.validate(last))
            .map_or(0, |c| layout.chunk_range(c).end);
        let end = hashed.saturating_sub(KEEP_CACHED_BEHIND);
        let start = self.reader.released.load(Ordering::Relaxed);
        let Some((_, file)) = self.reader.data.as_file() else {
            // A folder has no running whole-content hash (its files are checked one by one).
            return;
        };
        if end >= start.saturating_add(RELEASE_STEP) && release_cached(file, start, end - start) {
            self.reader.released.fetch_max(end, Ordering::Relaxed);
        }
    }

    /// True when the hash covers the whole file.
    pub fn is_complete(&self) -> bool {
        self.hash.next == self.reader.layout.chunk_count()
    }
}

impl PartialFile {
    /// Takes the whole-file hash out to extend it without this download's lock, if the next
    /// chunk it needs is verified. Give it back with [`PartialFile::return_prefix_work`].
    pub fn take_prefix_work(&mut self) -> Option<PrefixWork> {
        let next = self.prefix.as_ref()?.next;
        let c = self.layout.validate(next)?;
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
}
