//! [`ContentManifest`]: what a content ID is the hash of, a file's manifest (`PSMF`, spec
//! `content.md` section 2) or a folder's tree manifest (`PSTR`, section 10). The transfer
//! engine, the storage and the node handle content through this type; only what differs
//! (where a chunk's bytes live on disk, how a finished download is put in place) looks
//! inside.

use std::fmt;

use super::layout::Layout;
use super::manifest::{
    check_content_id, ChunkIndex, Manifest, ManifestCheckError, HASH_LEN, MAGIC,
};
use super::tree::{EntryKind, TreeManifest, TREE_MAGIC};
use crate::id::Id;
use crate::proto::codec::DecodeError;

/// A file's or a folder's manifest (module docs).
#[derive(Clone, PartialEq, Eq)]
pub enum ContentManifest {
    /// A single file.
    File(Manifest),
    /// A folder.
    Tree(TreeManifest),
}

impl fmt::Debug for ContentManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentManifest::File(m) => m.fmt(f),
            ContentManifest::Tree(t) => t.fmt(f),
        }
    }
}

impl From<Manifest> for ContentManifest {
    fn from(m: Manifest) -> ContentManifest {
        ContentManifest::File(m)
    }
}

impl From<TreeManifest> for ContentManifest {
    fn from(t: TreeManifest) -> ContentManifest {
        ContentManifest::Tree(t)
    }
}

/// One file of a content, for finding a local copy of it ([`ContentManifest::file_spans`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// SHA-256 of the whole file.
    pub sha256: [u8; HASH_LEN],
    /// Its size.
    pub size: u64,
    /// Its chunks in the content.
    pub chunks: std::ops::Range<u32>,
}

/// Which kind of manifest `bytes` start with, by their magic; `None` for neither.
pub fn kind_of(bytes: &[u8]) -> Option<ManifestKind> {
    match bytes.get(..4) {
        Some(m) if m == MAGIC => Some(ManifestKind::File),
        Some(m) if m == TREE_MAGIC => Some(ManifestKind::Tree),
        _ => None,
    }
}

/// The two kinds of manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// `PSMF`: a file.
    File,
    /// `PSTR`: a folder.
    Tree,
}

impl ContentManifest {
    /// Decodes either kind, strictly (the magic says which). Input too short for a magic, or
    /// with another magic, is decoded as a file manifest, whose decoder names the fault.
    pub fn decode(bytes: &[u8]) -> Result<ContentManifest, DecodeError> {
        match kind_of(bytes) {
            Some(ManifestKind::Tree) => TreeManifest::decode(bytes).map(ContentManifest::Tree),
            _ => Manifest::decode(bytes).map(ContentManifest::File),
        }
    }

    /// Decodes `bytes` received for content `expected`, checking first that they hash to it
    /// (spec section 5: before any chunk is asked for).
    pub fn decode_for(expected: &Id, bytes: &[u8]) -> Result<ContentManifest, ManifestCheckError> {
        check_content_id(expected, bytes)?;
        ContentManifest::decode(bytes).map_err(ManifestCheckError::Decode)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ContentManifest::File(m) => m.encode(),
            ContentManifest::Tree(t) => t.encode(),
        }
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            ContentManifest::File(m) => m.encoded_len(),
            ContentManifest::Tree(t) => t.encoded_len(),
        }
    }

    /// The content ID: SHA-256 of the encoding.
    pub fn content_id(&self) -> Id {
        match self {
            ContentManifest::File(m) => m.content_id(),
            ContentManifest::Tree(t) => t.content_id(),
        }
    }

    /// Where each chunk lies in a download's `.part`.
    pub fn layout(&self) -> Layout {
        match self {
            ContentManifest::File(m) => Layout::File(m.lengths()),
            ContentManifest::Tree(t) => Layout::of_tree(t),
        }
    }

    /// Size in bytes (of every file of a folder together).
    pub fn total_size(&self) -> u64 {
        match self {
            ContentManifest::File(m) => m.file_size(),
            ContentManifest::Tree(t) => t.total_size(),
        }
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        match self {
            ContentManifest::File(m) => m.lengths().chunk_count(),
            ContentManifest::Tree(t) => t.chunk_count(),
        }
    }

    /// The chunk size a scheduler plans its pipeline with: a file's chunk size; a folder's
    /// mean chunk length (its chunks have the sizes of its files: 50 KB samples are 50 KB
    /// chunks).
    pub fn typical_chunk_len(&self) -> u32 {
        match self {
            ContentManifest::File(m) => m.lengths().chunk_size(),
            ContentManifest::Tree(t) => {
                let mean = t.total_size() / u64::from(t.chunk_count().max(1));
                u32::try_from(mean).unwrap_or(u32::MAX).max(1)
            }
        }
    }

    /// Number of files: 1 for a file.
    pub fn file_count(&self) -> usize {
        match self {
            ContentManifest::File(_) => 1,
            ContentManifest::Tree(t) => t.file_count(),
        }
    }

    /// The only way to turn a chunk number from the network into a [`ChunkIndex`] of this
    /// content: `None` unless `i < chunk_count`.
    pub fn validate(&self, i: u32) -> Option<ChunkIndex> {
        match self {
            ContentManifest::File(m) => m.lengths().validate(i),
            ContentManifest::Tree(t) => (i < t.chunk_count()).then(|| ChunkIndex::checked(i)),
        }
    }

    /// Length of chunk `c` in bytes (0 for an index not of this content). For many chunks
    /// at once, take the [`Layout`] once instead.
    pub fn chunk_len(&self, c: ChunkIndex) -> u32 {
        match self {
            ContentManifest::File(m) => m.lengths().chunk_len(c),
            ContentManifest::Tree(t) => t.chunk_place(c.get()).map_or(0, |p| p.len),
        }
    }

    /// The hash of chunk `c`; all zeros (which nothing matches) for an index not of this
    /// content.
    pub fn chunk_hash(&self, c: ChunkIndex) -> &[u8; HASH_LEN] {
        static NONE: [u8; HASH_LEN] = [0; HASH_LEN];
        match self {
            ContentManifest::File(m) => m.chunk_hash(c),
            ContentManifest::Tree(t) => t.chunk_hash(c.get()).unwrap_or(&NONE),
        }
    }

    /// True when `data` is exactly chunk `c`: its length, then its SHA-256.
    pub fn verify_chunk(&self, c: ChunkIndex, data: &[u8]) -> bool {
        match self {
            ContentManifest::File(m) => m.verify_chunk(c, data),
            ContentManifest::Tree(t) => t.verify_chunk(c.get(), data),
        }
    }

    /// Each file with content, as a download sees it: its whole-file SHA-256, its size and
    /// its chunks (a file's own; a folder's files in entry order, empty files left out).
    pub fn file_spans(&self) -> Vec<FileSpan> {
        match self {
            ContentManifest::File(m) => vec![FileSpan {
                sha256: *m.file_sha256(),
                size: m.file_size(),
                chunks: 0..m.lengths().chunk_count(),
            }],
            ContentManifest::Tree(t) => t
                .entries()
                .iter()
                .enumerate()
                .filter_map(|(k, e)| match e.kind {
                    EntryKind::File(f) if f.lengths.total() > 0 => Some(FileSpan {
                        sha256: f.sha256,
                        size: f.lengths.total(),
                        chunks: t.file_chunks(k),
                    }),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Where chunk `c` starts within its own file (for a file: its offset).
    pub fn offset_in_file(&self, c: ChunkIndex) -> u64 {
        match self {
            ContentManifest::File(m) => m.lengths().chunk_offset(c),
            ContentManifest::Tree(t) => t.chunk_place(c.get()).map_or(0, |p| p.offset),
        }
    }

    /// The file's manifest, `None` for a folder.
    pub fn as_file(&self) -> Option<&Manifest> {
        match self {
            ContentManifest::File(m) => Some(m),
            ContentManifest::Tree(_) => None,
        }
    }

    /// The folder's manifest, `None` for a file.
    pub fn as_tree(&self) -> Option<&TreeManifest> {
        match self {
            ContentManifest::File(_) => None,
            ContentManifest::Tree(t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::tree::TreePath;

    #[test]
    fn both_kinds_decode_by_their_magic_and_check_their_id() {
        let f = Manifest::for_data(b"hello").unwrap();
        let t = TreeManifest::build(vec![(TreePath::new("x/hello").unwrap(), f.clone())], vec![])
            .unwrap();
        for m in [ContentManifest::from(f), ContentManifest::from(t)] {
            let bytes = m.encode();
            assert_eq!(bytes.len(), m.encoded_len());
            let back = ContentManifest::decode_for(&m.content_id(), &bytes).unwrap();
            assert_eq!(back, m);
            assert!(ContentManifest::decode_for(&Id::ZERO, &bytes).is_err());
            let c = m.layout().validate(0).unwrap();
            assert!(m.verify_chunk(c, b"hello"));
            assert!(!m.verify_chunk(c, b"hellO"));
        }
        assert!(ContentManifest::decode(b"PS").is_err());
        assert!(ContentManifest::decode(b"PSTR").is_err());
    }
}
