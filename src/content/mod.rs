//! Content: manifests and content IDs, hashing files, the share index, and crash-safe
//! partial downloads. This is the storage layer under the transfer code: the scheduler and
//! the wire protocol call it; it does no networking. Spec: `protocol-spec/content.md`.
//! Invariants, crash points and the thread-safety contract: `STATE.md` beside this file.
//!
//! # The life of a file
//!
//! **Sharing** (files are shared in place, never copied):
//! 1. [`index::ShareIndex::add`] canonicalizes the path and [`hasher::hash_file_stamped`]
//!    streams it once, computing every chunk's SHA-256 and the whole file's SHA-256 into a
//!    [`Manifest`]. The file's [`FileStamp`] (size, mtime, ctime, inode, device) is taken
//!    before and after; if it moved, the file changed while being read and the add fails.
//! 2. The manifest and the entry (path, name, size, stamp) are stored together in one
//!    durable transaction of the share index's store, `shares.db` (SQLite). The content ID
//!    is the SHA-256 of the manifest's encoding.
//! 3. Serving: [`index::ChunkReader`] reads chunk `i` with a positional read and compares the
//!    file's stamp before and after, so a file edited since it was added is reported
//!    ([`ContentError::Changed`]) and never served as if it were the shared content.
//!
//! **Downloading**:
//! 1. The downloader fetches the manifest and checks it against the content ID
//!    ([`Manifest::decode_for`]) before asking for any chunk.
//! 2. [`partial::PartialFile::open_or_create`] preallocates `downloads/<id>.part` (for a
//!    folder: makes the staging folder `downloads/<id>.tree/` its files are written into), or
//!    after a crash reopens it: chunks in the resume record are trusted, the others are
//!    re-hashed from disk so chunks written just before the crash are not fetched again.
//! 3. Each chunk is checked against its hash on arrival ([`verified::VerifiedChunk::check`],
//!    on a worker): only a [`verified::VerifiedChunk`] can be stored
//!    ([`partial::PartialFile::store`]), and from then on it can be served to other
//!    downloaders ([`partial::PartialReader`]). The verified set is persisted
//!    about once a second ([`partial::PartialFile::flush_record`]), always after the data it
//!    claims is on disk.
//! 4. [`partial::PartialFile::finish`] re-hashes the chunks it trusted from the resume record
//!    after a restart (every other chunk was hashed on arrival), syncs, and only then
//!    gives the file its final name in the download folder (a name from the network, cleaned
//!    by [`names::safe_file_name`], never overwriting an existing file).

pub mod content_manifest;
pub mod copy_out;
pub mod folder;
pub mod hasher;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod names;
pub mod partial;
pub mod tree;
pub mod verified;

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::proto::codec::DecodeError;

pub use content_manifest::ContentManifest;
pub use layout::Layout;
pub use manifest::{ChunkIndex, Lengths, LengthsError, Manifest, ManifestCheckError};

/// What identifies one version of a file on disk: if any of these changed, the file may
/// hold different bytes than when it was hashed. `mtime` and `ctime` move on every write
/// (and `ctime` also when `mtime` is set back by hand), `inode`/`dev` change when the file is
/// replaced by another (editors often save by writing a new file and renaming it over).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number of the file system.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of a folder's file that is not here: a download of part of a folder
    /// (`--only`) leaves the other files out, and serves only the chunks of those it has.
    /// No real file has inode 0.
    pub const ABSENT: FileStamp = FileStamp {
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        dev: 0,
    };

    /// Whether this is [`FileStamp::ABSENT`].
    pub fn is_absent(&self) -> bool {
        *self == FileStamp::ABSENT
    }

    /// The stamp of already-fetched metadata.
    pub fn of(meta: &Metadata) -> FileStamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileStamp {
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// The current stamp of the file at `path` (symlinks followed). A missing file is
    /// [`ContentError::Missing`].
    pub fn read(path: &Path) -> Result<FileStamp, ContentError> {
        match fs::metadata(path) {
            Ok(m) => Ok(FileStamp::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::Missing {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(ContentError::io("inspect", path, e)),
        }
    }

    /// What differs between `self` (now) and `before`, in words; `None` when identical.
    pub fn changes_since(&self, before: &FileStamp) -> Option<String> {
        if self.dev != before.dev || self.inode != before.inode {
            Some("it was replaced by another file".to_owned())
        } else if self.size != before.size {
            Some(format!(
                "its size went from {} to {} bytes",
                before.size, self.size
            ))
        } else if self.mtime_ns != before.mtime_ns {
            Some("it was modified (modification time changed)".to_owned())
        } else if self.ctime_ns != before.ctime_ns {
            Some("its status changed (ctime moved: written, or its times reset)".to_owned())
        } else {
            None
        }
    }
}

/// Errors of the content layer. Every variant names the file, content or chunk concerned,
/// and the message says what to do about it.
#[derive(Debug)]
pub enum ContentError {
    /// An I/O operation failed.
    Io {
        /// What was being done ("read", "create", "sync", ...).
        what: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The disk holding `dir` is full: `needed` more bytes do not fit.
    NoSpace {
        /// The folder that could not take the bytes.
        dir: PathBuf,
        /// How many bytes were asked for (0 when unknown).
        needed: u64,
    },
    /// The file is gone: it was there when it was shared (or hashing began) and is not now.
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The path given to share does not exist (a typo, or a file that never was there).
    NoSuchFile {
        /// The path, absolute.
        path: PathBuf,
    },
    /// The file is not what was hashed any more: modified, truncated, replaced, or it changed
    /// while it was being read.
    Changed {
        /// The path.
        path: PathBuf,
        /// What changed, in words.
        what: String,
    },
    /// The path is a directory or a special file, not a regular file.
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A folder cannot be shared as it is (too many entries, names that would collide on
    /// another system, more than 1 TiB in all).
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why, in words.
        why: String,
    },
    /// The file is too large to be described by one manifest (more than 1 TiB).
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// No share with this content ID.
    NotShared {
        /// The content ID.
        id: Id,
    },
    /// A stored manifest is unreadable.
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The share index's store (`index/store.rs`) could not be opened, read or written.
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed, in SQLite's words.
        why: String,
        /// It is not a database or it is corrupt: never replaced or emptied by the node.
        damaged: bool,
    },
    /// A chunk verified for another content was given to this download (a caller bug).
    ChunkOfOtherContent {
        /// The download.
        id: Id,
        /// The chunk.
        chunk: u32,
        /// The content it was verified for.
        other: Id,
    },
    /// A chunk index that is not in this download (an index validated against another
    /// file's [`Lengths`]: a caller bug).
    ChunkOutOfRange {
        /// The download.
        id: Id,
        /// The chunk.
        chunk: u32,
        /// The download's chunk count.
        count: u32,
    },
    /// A chunk of a download was asked for but is not verified yet.
    ChunkNotVerified {
        /// The download.
        id: Id,
        /// The chunk.
        chunk: u32,
    },
    /// [`partial::PartialFile::finish`] before every chunk is verified.
    Incomplete {
        /// The download.
        id: Id,
        /// How many chunks are still missing.
        missing: u32,
    },
    /// [`partial::PartialFile::finish`] re-hashed the chunks it had trusted from the resume
    /// record, and some no longer match: they were damaged on disk since they were recorded,
    /// are missing again and must be fetched again.
    DamagedOnDisk {
        /// The download.
        id: Id,
        /// Chunks found damaged (now missing again).
        bad_chunks: u32,
    },
    /// Another `PartialFile` (in this or another process) has this download open.
    Busy {
        /// The download.
        id: Id,
        /// Its `.part` file (a folder's: its staging folder).
        path: PathBuf,
    },
    /// The download was already finished or discarded.
    Closed {
        /// The download.
        id: Id,
    },
}

impl ContentError {
    pub(crate) fn io(what: &'static str, path: &Path, source: io::Error) -> ContentError {
        if is_no_space(&source) {
            return ContentError::NoSpace {
                dir: path.parent().unwrap_or(path).to_path_buf(),
                needed: 0,
            };
        }
        ContentError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The folder whose disk is full, if that is what went wrong.
    pub fn no_space_in(&self) -> Option<&Path> {
        match self {
            ContentError::NoSpace { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(libc::ENOSPC)
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            ContentError::Missing { path } => write!(
                f,
                "{} no longer exists (moved or deleted?); add it again from its new location",
                path.display()
            ),
            ContentError::NoSuchFile { path } => write!(f, "no such file: {}", path.display()),
            ContentError::Changed { path, what } => write!(
                f,
                "{} changed since it was hashed ({what}); add it again to share the new content",
                path.display()
            ),
            ContentError::NotAFile { path } => write!(
                f,
                "{} is neither a regular file nor a folder (devices, FIFOs and sockets cannot be shared)",
                path.display()
            ),
            ContentError::Folder { path, why } => {
                write!(f, "cannot share the folder {}: {why}", path.display())
            }
            ContentError::TooLarge { path, size } => write!(
                f,
                "{} is {size} bytes, more than the largest shareable file ({} bytes)",
                path.display(),
                manifest::MAX_FILE_SIZE
            ),
            ContentError::NotShared { id } => write!(f, "content {id} is not shared by this node"),
            ContentError::BadManifest { path, source } => write!(
                f,
                "stored manifest {} is corrupt ({source}); remove it and add the file again",
                path.display()
            ),
            ContentError::Store {
                path,
                why,
                damaged: true,
            } => write!(
                f,
                "the share index {} is damaged ({why}). The shared files themselves are \
                 untouched. Move it away (with its -wal and -shm files) to start with no shares \
                 and add them again, or put back a copy from a backup",
                path.display()
            ),
            ContentError::Store { path, why, .. } => {
                write!(f, "the share index {}: {why}", path.display())
            }
            ContentError::ChunkOfOtherContent { id, chunk, other } => write!(
                f,
                "chunk {chunk} was verified for {other}, not for {id}; it was not stored"
            ),
            ContentError::ChunkOutOfRange { id, chunk, count } => write!(
                f,
                "chunk {chunk} is not part of {id}, which has {count} chunk(s)"
            ),
            ContentError::ChunkNotVerified { id, chunk } => {
                write!(
                    f,
                    "chunk {chunk} of {id} is not downloaded and verified yet"
                )
            }
            ContentError::Incomplete { id, missing } => write!(
                f,
                "download {id} is not complete: {missing} chunk(s) still missing"
            ),
            ContentError::DamagedOnDisk { id, bad_chunks } => write!(
                f,
                "download {id}: {bad_chunks} chunk(s) recorded as verified were found damaged \
                 on disk and will be fetched again"
            ),
            ContentError::NoSpace { dir, needed } => {
                write!(f, "disk full: no space left in {}", dir.display())?;
                if *needed > 0 {
                    write!(f, " for {needed} more bytes")?;
                }
                Ok(())
            }
            ContentError::Busy { id, path } => write!(
                f,
                "download {id} ({}) is already open elsewhere (another download of the same \
                 content, or another node on this data dir)",
                path.display()
            ),
            ContentError::Closed { id } => {
                write!(f, "download {id} was already finished or discarded")
            }
        }
    }
}

impl std::error::Error for ContentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ContentError::Io { source, .. } => Some(source),
            ContentError::BadManifest { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes `bytes` to `dir/name` atomically and durably, like `node::state`: a temp file in the
/// same directory, fsync, rename over the target, fsync the directory. A crash at any point
/// leaves either the old file or the new one, never a mix.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ContentError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| ContentError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| ContentError::io("write", &tmp, e))?;
    f.sync_all()
        .map_err(|e| ContentError::io("sync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| ContentError::io("rename into place", &dst, e))?;
    sync_dir(dir)
}

/// Makes renames, creations and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ContentError::io("sync directory", dir, e))
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), ContentError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContentError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_are_described() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc").unwrap();
        let a = FileStamp::read(&p).unwrap();
        assert_eq!(a.changes_since(&a), None);
        let mut b = a;
        b.size = 4;
        assert!(b.changes_since(&a).unwrap().contains("size"));
        let mut b = a;
        b.inode += 1;
        assert!(b.changes_since(&a).unwrap().contains("replaced"));
        let mut b = a;
        b.mtime_ns += 1;
        assert!(b.changes_since(&a).unwrap().contains("modified"));
        let mut b = a;
        b.ctime_ns += 1;
        assert!(b.changes_since(&a).unwrap().contains("ctime"));
        assert!(matches!(
            FileStamp::read(&dir.path().join("nope")),
            Err(ContentError::Missing { .. })
        ));
    }

    #[test]
    fn errors_have_sources_and_messages() {
        use std::error::Error as _;
        let e = ContentError::io("read", Path::new("/x"), io::Error::other("boom"));
        assert!(e.source().is_some());
        assert_eq!(e.to_string(), "cannot read /x: boom");
        let e = ContentError::DamagedOnDisk {
            id: Id::ZERO,
            bad_chunks: 2,
        };
        assert!(e.to_string().contains("2 chunk(s) recorded as verified"));
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "x", b"one").unwrap();
        write_atomic(dir.path(), "x", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"two");
        assert!(!dir.path().join("x.tmp").exists());
    }
}
