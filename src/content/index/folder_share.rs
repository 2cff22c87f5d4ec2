//! A shared folder in the share index: the stamps of its files (the `stamps` column of the
//! store, `store.rs`),
//! and [`TreeReader`], which serves a folder's chunks from its files in place, refusing any
//! file that changed since it was hashed, as [`ChunkReader`] does for a single file.
//!
//! The stamps blob (a local format, not a protocol; big-endian):
//!
//! ```text
//! offset  size    field
//! 0       4       magic "PSST"
//! 4       1       version 1
//! 5       4       n: number of files (the tree's file count)
//! 9       40*n    per file, in the manifest's entry order: size, mtime_ns, ctime_ns,
//!                 inode, dev (8 bytes each)
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ChunkReader, ShareIndex};
use crate::content::content_manifest::ContentManifest;
use crate::content::manifest::ChunkIndex;
use crate::content::manifest::HASH_LEN;
use crate::content::tree::TreeManifest;
use crate::content::{ContentError, FileStamp};
use crate::id::Id;

const STAMPS_MAGIC: [u8; 4] = *b"PSST";
const STAMPS_VERSION: u8 = 1;
const STAMP_LEN: usize = 40;

/// The stamps file of a folder share (module docs).
pub fn encode_stamps(stamps: &[FileStamp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + STAMP_LEN * stamps.len());
    out.extend_from_slice(&STAMPS_MAGIC);
    out.push(STAMPS_VERSION);
    out.extend_from_slice(&(stamps.len() as u32).to_be_bytes());
    for s in stamps {
        out.extend_from_slice(&s.size.to_be_bytes());
        out.extend_from_slice(&s.mtime_ns.to_be_bytes());
        out.extend_from_slice(&s.ctime_ns.to_be_bytes());
        out.extend_from_slice(&s.inode.to_be_bytes());
        out.extend_from_slice(&s.dev.to_be_bytes());
    }
    out
}

/// Decodes a stamps file written for a tree of `files` files; `None` if it is anything else.
pub fn decode_stamps(bytes: &[u8], files: usize) -> Option<Vec<FileStamp>> {
    let (head, rest) = bytes.split_at_checked(9)?;
    let count = u32::from_be_bytes(head.get(5..9)?.try_into().ok()?) as usize;
    if head.get(..4)? != STAMPS_MAGIC
        || head.get(4) != Some(&STAMPS_VERSION)
        || count != files
        || rest.len() != count.checked_mul(STAMP_LEN)?
    {
        return None;
    }
    let u = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    rest.chunks_exact(STAMP_LEN)
        .map(|b| {
            Some(FileStamp {
                size: u(b, 0)?,
                mtime_ns: u(b, 1)? as i64,
                ctime_ns: u(b, 2)? as i64,
                inode: u(b, 3)?,
                dev: u(b, 4)?,
            })
        })
        .collect()
}

/// Serves the chunks of a shared folder from its files in place (module docs). Each read
/// opens the file, compares its stamp with the one taken when it was hashed, reads, and
/// compares again: a folder of 10,000 samples holds no 10,000 open files.
#[derive(Debug)]
pub struct TreeReader {
    root: PathBuf,
    manifest: Arc<ContentManifest>,
    /// One per file, in entry order.
    stamps: Arc<[FileStamp]>,
}

impl TreeReader {
    /// A reader of the folder at `root` whose files had `stamps` when `manifest` was made.
    pub fn new(
        root: &Path,
        manifest: Arc<ContentManifest>,
        stamps: Arc<[FileStamp]>,
    ) -> Result<TreeReader, ContentError> {
        let files = manifest.as_tree().map_or(0, TreeManifest::file_count);
        if manifest.as_tree().is_none() || stamps.len() != files {
            return Err(ContentError::io(
                "serve",
                root,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the stamps given are not those of this folder",
                ),
            ));
        }
        let meta = std::fs::metadata(root).map_err(|e| missing_or(root, e))?;
        if !meta.is_dir() {
            return Err(ContentError::Changed {
                path: root.to_path_buf(),
                what: "it is no longer a folder".to_owned(),
            });
        }
        Ok(TreeReader {
            root: root.to_path_buf(),
            manifest,
            stamps,
        })
    }

    /// Reads chunk `c` into `buf`; fails with [`ContentError::Changed`] or
    /// [`ContentError::Missing`] if its file is not what was hashed.
    pub fn read_chunk(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        let r = self.try_read(c, buf);
        if r.is_err() {
            buf.clear();
        }
        r
    }

    fn try_read(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        let Some(tree) = self.manifest.as_tree() else {
            return Err(ContentError::NotShared {
                id: self.manifest.content_id(),
            });
        };
        let place = tree
            .chunk_place(c.get())
            .ok_or(ContentError::ChunkOutOfRange {
                id: tree.content_id(),
                chunk: c.get(),
                count: tree.chunk_count(),
            })?;
        let (Some(entry), Some(stamp)) = (
            tree.entries().get(place.entry),
            tree.file_number(place.entry)
                .and_then(|k| self.stamps.get(k)),
        ) else {
            return Err(ContentError::NotShared {
                id: tree.content_id(),
            });
        };
        if stamp.is_absent() {
            // Left out of a partial copy: not here, and not a change of the folder.
            return Err(ContentError::ChunkNotVerified {
                id: tree.content_id(),
                chunk: c.get(),
            });
        }
        let path = self.root.join(entry.path.as_str());
        let file = File::open(&path).map_err(|e| missing_or(&path, e))?;
        check(&file, &path, stamp)?;
        buf.resize(place.len as usize, 0);
        file.read_exact_at(buf, place.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ContentError::Changed {
                    path: path.clone(),
                    what: "it is shorter than when it was hashed".to_owned(),
                }
            } else {
                ContentError::io("read", &path, e)
            }
        })?;
        check(&file, &path, stamp)
    }
}

fn missing_or(path: &Path, e: io::Error) -> ContentError {
    if e.kind() == io::ErrorKind::NotFound {
        ContentError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        ContentError::io("open", path, e)
    }
}

/// The open file is still the one hashed: linked, and its stamp unchanged.
fn check(file: &File, path: &Path, stamp: &FileStamp) -> Result<(), ContentError> {
    let meta = file
        .metadata()
        .map_err(|e| ContentError::io("inspect", path, e))?;
    if meta.nlink() == 0 {
        return Err(ContentError::Missing {
            path: path.to_path_buf(),
        });
    }
    match FileStamp::of(&meta).changes_since(stamp) {
        None => Ok(()),
        Some(what) => Err(ContentError::Changed {
            path: path.to_path_buf(),
            what,
        }),
    }
}

/// What serves a shared content: a file's reader or a folder's.
#[derive(Debug)]
pub enum SharedReader {
    /// A single file.
    File(ChunkReader),
    /// A folder.
    Tree(TreeReader),
}

impl SharedReader {
    /// Reads chunk `c` into `buf` (see [`ChunkReader::read_chunk`], [`TreeReader::read_chunk`]).
    pub fn read_chunk(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        match self {
            SharedReader::File(r) => r.read_chunk(c, buf),
            SharedReader::Tree(r) => r.read_chunk(c, buf),
        }
    }
}

/// Where each file this node shares can be read, by its whole-file SHA-256 and size: the
/// files shared alone and every file of every shared folder, each with the stamp it had
/// when it was hashed. A download looks its files up here to copy them instead of fetching
/// them (`storage/reuse.rs`).
#[derive(Debug, Default)]
pub struct LocalFiles(HashMap<FileKey, Vec<(PathBuf, FileStamp)>>);

/// A file's whole-file SHA-256 and size.
type FileKey = ([u8; HASH_LEN], u64);

impl LocalFiles {
    /// The local files with this SHA-256 and size (usually none or one).
    pub fn get(&self, sha256: &[u8; HASH_LEN], size: u64) -> &[(PathBuf, FileStamp)] {
        self.0.get(&(*sha256, size)).map_or(&[], Vec::as_slice)
    }

    /// How many distinct files are listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no file is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ShareIndex {
    /// The files this index shares (alone, or in a folder, with the stamp each had when it
    /// was hashed) that have the SHA-256 and size of a file of `manifest`: what a download
    /// of it can copy instead of fetching (see [`LocalFiles`]). Indexed lookups, one per
    /// file of `manifest`, whatever the library's size.
    pub fn local_files_for(&self, manifest: &ContentManifest) -> LocalFiles {
        self.store.reading(|| self.local_files_in(manifest))
    }

    fn local_files_in(&self, manifest: &ContentManifest) -> LocalFiles {
        let mut map: HashMap<FileKey, Vec<(PathBuf, FileStamp)>> = HashMap::new();
        // A folder's stamps, read once per folder.
        let mut folder_stamps: HashMap<Id, Option<Vec<FileStamp>>> = HashMap::new();
        for span in manifest.file_spans() {
            if span.size == 0 || map.contains_key(&(span.sha256, span.size)) {
                continue;
            }
            let found = match self.store.files_with(&span.sha256, span.size) {
                Ok(f) => f,
                Err(e) => {
                    log::error!("{e}");
                    return LocalFiles::default();
                }
            };
            for f in found {
                let located = match &f.rel {
                    None => Some((f.share_path.clone(), f.stamp)),
                    Some(rel) => folder_stamps
                        .entry(f.id)
                        .or_insert_with(|| self.folder_stamps(&f.id))
                        .as_ref()
                        .and_then(|st| st.get(f.file_no))
                        .filter(|st| !st.is_absent())
                        .map(|st| (f.share_path.join(rel), *st)),
                };
                if let Some(l) = located {
                    map.entry((span.sha256, span.size)).or_default().push(l);
                }
            }
        }
        LocalFiles(map)
    }

    fn folder_stamps(&self, id: &Id) -> Option<Vec<FileStamp>> {
        let (_, stamps) = self.store.manifest(id).ok()??;
        let b = stamps?;
        let n = b.len().checked_sub(9)? / STAMP_LEN;
        decode_stamps(&b, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_refuse_anything_else() {
        let s = vec![
            FileStamp {
                size: 1,
                mtime_ns: -5,
                ctime_ns: 7,
                inode: 9,
                dev: 11,
            };
            3
        ];
        let b = encode_stamps(&s);
        assert_eq!(decode_stamps(&b, 3), Some(s));
        assert_eq!(decode_stamps(&b, 2), None);
        assert_eq!(decode_stamps(&b[..b.len() - 1], 3), None);
        for i in 0..9 {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_stamps(&bad, 3), None, "byte {i}");
        }
        assert_eq!(decode_stamps(&[], 0), None);
    }
}
