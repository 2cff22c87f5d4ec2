//! A chunk whose bytes matched their manifest hash: the only thing a partial download
//! accepts ([`PartialFile::store`](super::partial::PartialFile::store)).
//!
//! "Only verified chunks reach the disk" is a rule of the type system, not of the callers: a
//! [`VerifiedChunk`] can only be made by [`VerifiedChunk::check`], which hashes the bytes
//! against the manifest, in release builds as in debug builds. It remembers which content
//! and which chunk it was checked for, so it cannot be written into another download or at
//! another offset either.

use std::fmt;

use super::content_manifest::ContentManifest;
use super::manifest::ChunkIndex;
use crate::id::Id;

/// Bytes that matched the hash of chunk `index` of content `content`.
pub struct VerifiedChunk {
    content: Id,
    index: ChunkIndex,
    data: Vec<u8>,
}

/// Why bytes could not become a [`VerifiedChunk`]; the bytes are handed back (they are a
/// pooled buffer, see `crate::bufpool`).
pub struct NotVerified {
    /// The bytes that were checked.
    pub data: Vec<u8>,
    /// What was wrong.
    pub reason: NotVerifiedReason,
}

/// What was wrong with a chunk that failed [`VerifiedChunk::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotVerifiedReason {
    /// The manifest has no chunk of that number.
    NoSuchChunk {
        /// The number asked for.
        chunk: u32,
        /// How many chunks the content has.
        count: u32,
    },
    /// The bytes have the wrong length or hash: the sender lied or the data was damaged.
    HashMismatch {
        /// The chunk.
        chunk: u32,
    },
}

impl fmt::Display for NotVerifiedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotVerifiedReason::NoSuchChunk { chunk, count } => {
                write!(f, "chunk {chunk} does not exist (the content has {count})")
            }
            NotVerifiedReason::HashMismatch { chunk } => {
                write!(f, "chunk {chunk} does not match its hash in the manifest")
            }
        }
    }
}

impl VerifiedChunk {
    /// Hashes `data` against chunk `chunk` of `manifest` (SHA-256, length included).
    pub fn check(
        manifest: &ContentManifest,
        chunk: u32,
        data: Vec<u8>,
    ) -> Result<Self, NotVerified> {
        let Some(index) = manifest.validate(chunk) else {
            return Err(NotVerified {
                data,
                reason: NotVerifiedReason::NoSuchChunk {
                    chunk,
                    count: manifest.chunk_count(),
                },
            });
        };
        if !manifest.verify_chunk(index, &data) {
            return Err(NotVerified {
                data,
                reason: NotVerifiedReason::HashMismatch { chunk },
            });
        }
        Ok(VerifiedChunk {
            content: manifest.content_id(),
            index,
            data,
        })
    }

    /// The content it belongs to.
    pub fn content(&self) -> Id {
        self.content
    }

    /// Which chunk it is.
    pub fn index(&self) -> ChunkIndex {
        self.index
    }

    /// Its bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Gives the buffer back (to return it to the pool once stored).
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

impl fmt::Debug for VerifiedChunk {
    // Not the bytes: a chunk is up to megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChunk")
            .field("content", &self.content)
            .field("chunk", &self.index.get())
            .field("len", &self.data.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Manifest;

    #[test]
    fn only_matching_bytes_verify() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let f = Manifest::for_data_with_chunk_size(&data, 1 << 17).unwrap();
        let l = f.lengths();
        let m = ContentManifest::from(f);
        assert!(l.chunk_count() >= 2);
        let c0 = l.validate(0).unwrap();
        let first = data[..l.chunk_len(c0) as usize].to_vec();
        let v = VerifiedChunk::check(&m, 0, first.clone()).ok().unwrap();
        assert_eq!((v.content(), v.index().get()), (m.content_id(), 0));
        assert_eq!(v.data(), &first[..]);

        let mut bad = first.clone();
        bad[7] ^= 1;
        let e = VerifiedChunk::check(&m, 0, bad.clone()).err().unwrap();
        assert_eq!(e.reason, NotVerifiedReason::HashMismatch { chunk: 0 });
        assert_eq!(e.data, bad, "the buffer comes back");
        // Right bytes, wrong place.
        let e = VerifiedChunk::check(&m, 1, first.clone()).err().unwrap();
        assert_eq!(e.reason, NotVerifiedReason::HashMismatch { chunk: 1 });
        let e = VerifiedChunk::check(&m, l.chunk_count(), first)
            .err()
            .unwrap();
        assert!(matches!(e.reason, NotVerifiedReason::NoSuchChunk { .. }));
    }
}
