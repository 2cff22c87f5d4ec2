//! [`PartialReader`]: serving verified chunks of a download from other threads, without its
//! owner's lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::data::PartData;
use super::page_cache::drop_cached;
use super::record::VerifiedBits;
use crate::content::layout::Layout;
use crate::content::manifest::ChunkIndex;
use crate::content::ContentError;
use crate::id::Id;

/// Reads verified chunks of a download, concurrently with its owner (`Clone + Send + Sync`).
#[derive(Clone, Debug)]
pub struct PartialReader {
    pub(super) id: Id,
    pub(super) layout: Layout,
    pub(super) data: PartData,
    pub(super) verified: Arc<VerifiedBits>,
    pub(super) released: Arc<AtomicU64>,
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
        buf.resize(self.layout.chunk_len(c) as usize, 0);
        if let Err(e) = self.data.read_chunk(&self.layout, c, buf) {
            buf.clear();
            return Err(e);
        }
        // A chunk from a region already released came from disk: drop its pages again, so
        // serving old chunks does not fill the page cache with fresh pages either.
        let offset = self.layout.chunk_offset(c);
        let len = buf.len() as u64;
        if let Some((_, file)) = self.data.as_file() {
            if offset + len <= self.released.load(Ordering::Relaxed) {
                drop_cached(file, offset, len);
            }
        }
        Ok(())
    }
}
