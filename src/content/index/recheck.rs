//! The start's re-check of downloads placed before their bytes were on disk.
//!
//! A folder's download is renamed into place and shared as soon as every chunk is verified;
//! the file system is synced right after, off the download's path (`storage/flusher.rs`), and
//! only then is the share's unflushed mark cleared. A share still marked at the next start
//! was placed by a node that stopped before that sync: after a kill its bytes are in the page
//! cache and read back whole; after a power cut some may never have reached the disk. So
//! every chunk it holds is hashed again before it is served: all match, the mark goes; any
//! fails (or a file is missing or changed), the share is dropped from the index and the
//! user is told to fetch it again, and it is never served as valid.

use super::{partial_chunks, reader_of, ShareIndex};
use crate::content::ContentError;
use crate::id::Id;

/// What [`ShareIndex::recheck_unflushed`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rechecked {
    /// Shares whose every chunk matched again: kept, no longer marked.
    pub kept: Vec<Id>,
    /// Shares with a chunk that did not: dropped from the index.
    pub dropped: Vec<Id>,
}

impl ShareIndex {
    /// Hashes again every chunk of each share still marked unflushed (module docs). Costs a
    /// SHA-256 pass over those shares (none after a clean stop): it runs at the start,
    /// before any share is served.
    pub fn recheck_unflushed(&mut self) -> Result<Rechecked, ContentError> {
        let mut out = Rechecked::default();
        for id in self.store.unflushed()? {
            match self.rehash_share(&id) {
                Ok(chunks) => {
                    log::info!(
                        "content {id}: placed just before the node stopped, before its bytes \
                         were known to be on disk; all {chunks} chunks checked again and good"
                    );
                    self.store.flushed(&id)?;
                    out.kept.push(id);
                }
                Err(why) => {
                    let at = self
                        .get(&id)
                        .map_or_else(String::new, |e| format!(" at {}", e.path.display()));
                    log::warn!(
                        "content {id}{at}: downloaded just before the node stopped, and not \
                         all of it reached the disk ({why}); it is no longer shared: fetch it \
                         again with `peershare get {id}`"
                    );
                    self.store.remove(&id)?;
                    out.dropped.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Reads and hashes every chunk share `id` holds (a partial folder: its files that are
    /// here). The number of chunks, or why one failed.
    fn rehash_share(&self, id: &Id) -> Result<u32, String> {
        let (entry, manifest, stamps) = self.load(id).ok_or("its stored manifest is unreadable")?;
        let have = match (manifest.as_tree(), stamps.as_deref()) {
            (Some(t), Some(st)) => partial_chunks(t, st),
            _ => None,
        };
        let reader = reader_of(&entry, &manifest, stamps).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut checked = 0;
        for i in 0..manifest.chunk_count() {
            if have.as_ref().is_some_and(|h| !h.contains(i as usize)) {
                continue;
            }
            let c = manifest
                .validate(i)
                .ok_or_else(|| format!("chunk {i} is out of range"))?;
            reader
                .read_chunk(c, &mut buf)
                .map_err(|e| format!("chunk {i}: {e}"))?;
            if !manifest.verify_chunk(c, &buf) {
                return Err(format!("chunk {i} does not match its hash"));
            }
            checked += 1;
        }
        Ok(checked)
    }
}
