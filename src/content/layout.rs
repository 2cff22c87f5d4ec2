//! [`Layout`]: where each chunk of a content lies in its download's `.part`, for a single
//! file and for a folder alike.
//!
//! A file's chunks are all one size but the last ([`Lengths`]). A folder's chunks never
//! cross files (spec `content.md`, section 10), so its chunks have the sizes of each file's
//! own chunking: a 50 KB sample is one 50 KB chunk. Chunk `i`'s offset is the sum of the
//! lengths of the chunks before it, as if the files lay one after another: the running
//! position that progress, the resume record and the scheduler count in. (A folder's download
//! writes each chunk into its own file, `partial/data.rs`.)

use std::ops::Range;
use std::sync::Arc;

use super::manifest::{ChunkIndex, Lengths};
use super::tree::TreeManifest;

/// The chunk geometry of one content (module docs). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A single file.
    File(Lengths),
    /// A folder: `starts[i]` is where chunk `i` begins with the files one after another, and
    /// `starts[chunk_count]` is the total size.
    Tree(Arc<[u64]>),
}

impl Layout {
    /// The layout of a folder's chunks, one file after another in entry order (computed
    /// when the tree was built or decoded: cheap).
    pub fn of_tree(tree: &TreeManifest) -> Layout {
        Layout::Tree(tree.chunk_starts().clone())
    }

    /// Total size in bytes (every file of a folder together).
    pub fn total(&self) -> u64 {
        match self {
            Layout::File(l) => l.total(),
            Layout::Tree(s) => s.last().copied().unwrap_or(0),
        }
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        match self {
            Layout::File(l) => l.chunk_count(),
            // At most 2^20 chunks (checked when the tree was built or decoded).
            Layout::Tree(s) => u32::try_from(s.len().saturating_sub(1)).unwrap_or(u32::MAX),
        }
    }

    /// The only way to turn a chunk number from the network into a [`ChunkIndex`] of this
    /// content: `None` unless `i < chunk_count`.
    pub fn validate(&self, i: u32) -> Option<ChunkIndex> {
        match self {
            Layout::File(l) => l.validate(i),
            Layout::Tree(_) => (i < self.chunk_count()).then(|| ChunkIndex::checked(i)),
        }
    }

    /// Every chunk, in order.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkIndex> + Clone {
        (0..self.chunk_count()).map(ChunkIndex::checked)
    }

    /// Byte offset of the chunk in the content (0 for an index not of this content).
    pub fn chunk_offset(&self, c: ChunkIndex) -> u64 {
        match self {
            Layout::File(l) => l.chunk_offset(c),
            Layout::Tree(s) => s.get(c.as_usize()).copied().unwrap_or(0),
        }
    }

    /// Bytes in chunks `range` together (the part of the range past the last chunk counts
    /// nothing): one subtraction, whatever the number of chunks.
    pub fn bytes_in(&self, range: Range<usize>) -> u64 {
        let at = |i: usize| -> u64 {
            match self {
                Layout::File(l) => (i as u64)
                    .saturating_mul(u64::from(l.chunk_size()))
                    .min(l.total()),
                Layout::Tree(s) => s.get(i).or(s.last()).copied().unwrap_or(0),
            }
        };
        at(range.end).saturating_sub(at(range.start))
    }

    /// Length of the chunk in bytes (0 for an index not of this content).
    pub fn chunk_len(&self, c: ChunkIndex) -> u32 {
        match self {
            Layout::File(l) => l.chunk_len(c),
            Layout::Tree(s) => match (s.get(c.as_usize()), s.get(c.as_usize() + 1)) {
                // A chunk is at most 1 MiB.
                (Some(a), Some(b)) => u32::try_from(b - a).unwrap_or(0),
                _ => 0,
            },
        }
    }

    /// The chunk's byte range in the content.
    pub fn chunk_range(&self, c: ChunkIndex) -> Range<u64> {
        let start = self.chunk_offset(c);
        start..start + u64::from(self.chunk_len(c))
    }

    /// The single file's lengths (`None` for a folder).
    pub fn as_file(&self) -> Option<Lengths> {
        match self {
            Layout::File(l) => Some(*l),
            Layout::Tree(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::manifest::Manifest;
    use crate::content::tree::TreePath;

    fn path(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }

    #[test]
    fn a_folder_chunks_follow_each_file_s_own_chunking() {
        let big = vec![7u8; 300 * 1024]; // more than one chunk under the policy
        let files = vec![
            (path("b/big.bin"), Manifest::for_data(&big).unwrap()),
            (path("a.txt"), Manifest::for_data(b"abc").unwrap()),
            (path("empty"), Manifest::for_data(b"").unwrap()),
        ];
        let t = TreeManifest::build(files, vec![]).unwrap();
        let l = Layout::of_tree(&t);
        assert_eq!(l.total(), 3 + 300 * 1024);
        // a.txt (1 chunk), b/big.bin (its policy's chunks), empty (none).
        let big_chunks = Manifest::for_data(&big).unwrap().lengths();
        assert_eq!(l.chunk_count(), 1 + big_chunks.chunk_count());
        let c0 = l.validate(0).unwrap();
        assert_eq!((l.chunk_offset(c0), l.chunk_len(c0)), (0, 3));
        let mut at = 3;
        for (k, c) in big_chunks.chunks().enumerate() {
            let tc = l.validate(1 + k as u32).unwrap();
            assert_eq!(l.chunk_offset(tc), at);
            assert_eq!(l.chunk_len(tc), big_chunks.chunk_len(c));
            at += u64::from(big_chunks.chunk_len(c));
        }
        assert_eq!(l.validate(l.chunk_count()), None);
        assert_eq!(l.chunks().count() as u32, l.chunk_count());
    }

    #[test]
    fn a_file_layout_is_its_lengths() {
        let m = Manifest::for_data(&[1u8; 100_000]).unwrap();
        let l = Layout::File(m.lengths());
        assert_eq!(l.total(), 100_000);
        assert_eq!(l.chunk_count(), m.lengths().chunk_count());
        let c = l.validate(0).unwrap();
        assert_eq!(l.chunk_range(c), m.lengths().chunk_range(c));
    }
}
