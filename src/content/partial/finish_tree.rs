//! Finishing a folder's download ([`PartialFile::finish`] for a tree manifest): every file
//! is cut out of the `.part` into a hidden staging folder beside the final name, each file
//! of more than one chunk is checked against its whole-file SHA-256 as it is copied, the
//! file system is synced, and the staging folder is renamed to its final name, which never
//! replaces anything. Until that rename nothing exists under the final name; an interrupted
//! finish leaves only the hidden staging folder, which the next attempt deletes and rebuilds.
//!
//! A file of one chunk is not hashed again: its chunk hash *is* its whole-file SHA-256 (the
//! decoder refuses a tree where it is not, spec `content.md` section 10.4), and that chunk
//! was verified when it arrived.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::finish::{all_names_taken, MAX_NUMBERED};
use super::PartialFile;
use crate::content::names::{numbered_name, safe_file_name};
use crate::content::tree::{EntryKind, TreeManifest};
use crate::content::{sync_dir, ContentError};

/// The copy buffer for files that are hashed while copied.
const COPY_BUF: usize = 1 << 20;

impl PartialFile {
    /// See the module docs. `tree` is this download's manifest.
    pub(super) fn finish_tree(
        &mut self,
        tree: &TreeManifest,
        final_dir: &Path,
        name: &str,
    ) -> Result<PathBuf, ContentError> {
        let t0 = Instant::now();
        fs::create_dir_all(final_dir).map_err(|e| ContentError::io("create", final_dir, e))?;
        let hex = self.id.to_hex();
        let short = hex.get(..16).unwrap_or(&hex);
        let staging = final_dir.join(format!(".{short}.peershare-folder"));
        // Left by a finish that was interrupted: it is ours (hidden, named by the content),
        // and rebuilt from the `.part` now. `remove_dir_all` removes a link, never follows it.
        match fs::symlink_metadata(&staging) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&staging),
            Ok(_) => fs::remove_file(&staging),
            Err(_) => Ok(()),
        }
        .map_err(|e| ContentError::io("remove", &staging, e))?;
        fs::create_dir(&staging).map_err(|e| ContentError::io("create", &staging, e))?;

        if let Err(e) = self.cut_files(tree, &staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let t1 = Instant::now();
        // One sync for the whole file system instead of one per file (thousands of them):
        // every file written above and its directory entry are durable after it.
        sync_fs(&staging)?;
        let t2 = Instant::now();
        let base = safe_file_name(name).unwrap_or_else(|_| short.to_owned());
        let final_path = rename_no_clobber(&staging, final_dir, &base)?;
        sync_dir(final_dir)?;

        self.placed(&final_path);
        log::debug!(
            "download {}: {} files cut out of the .part in {:?}, sync {:?}, placing {:?}",
            self.id,
            tree.file_count(),
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        Ok(final_path)
    }

    /// Writes every file and empty folder of `tree` under `staging`. A file of more than one
    /// chunk whose copy does not hash to its SHA-256 makes its damaged chunks missing again
    /// and fails with [`ContentError::FileHashMismatch`].
    fn cut_files(&mut self, tree: &TreeManifest, staging: &Path) -> Result<(), ContentError> {
        let mut at = 0u64;
        let mut buf = Vec::new();
        for entry in tree.entries() {
            let dest = staging.join(entry.path.as_str());
            let f = match entry.kind {
                EntryKind::EmptyFolder => {
                    fs::create_dir_all(&dest).map_err(|e| ContentError::io("create", &dest, e))?;
                    continue;
                }
                EntryKind::File(f) => f,
            };
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| ContentError::io("create", parent, e))?;
            }
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dest)
                .map_err(|e| ContentError::io("create", &dest, e))?;
            let size = f.lengths.total();
            let copied = if f.lengths.chunk_count() > 1 {
                self.copy_hashed(at, size, &mut out, &mut buf)
                    .map_err(|e| ContentError::io("copy into", &dest, e))?
                    == f.sha256
            } else {
                self.copy_plain(at, size, &mut out)
                    .map_err(|e| ContentError::io("copy into", &dest, e))?;
                true
            };
            if !copied {
                let bad = self.drop_damaged_chunks()?;
                return Err(ContentError::FileHashMismatch {
                    id: self.id,
                    bad_chunks: bad,
                });
            }
            at += size;
        }
        Ok(())
    }

    /// Copies `len` bytes at `offset` of the `.part` into `out`, in the kernel where it can
    /// (`copy_file_range`).
    fn copy_plain(&self, offset: u64, len: u64, out: &mut File) -> io::Result<()> {
        let mut src: &File = &self.file;
        // The shared handle's cursor is used by nobody else: readers use positional reads.
        src.seek(SeekFrom::Start(offset))?;
        let n = io::copy(&mut src.take(len), out)?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the partial file is shorter than the folder",
            ));
        }
        Ok(())
    }

    /// Copies like [`PartialFile::copy_plain`] through `buf`, returning the bytes' SHA-256.
    fn copy_hashed(
        &self,
        offset: u64,
        len: u64,
        out: &mut File,
        buf: &mut Vec<u8>,
    ) -> io::Result<[u8; 32]> {
        use std::os::unix::fs::FileExt;
        buf.resize(COPY_BUF, 0);
        let mut sha = Sha256::new();
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).map_or(COPY_BUF, |l| l.min(COPY_BUF));
            let part = buf.get_mut(..n).unwrap_or_default();
            self.file.read_exact_at(part, offset + done)?;
            sha.update(&*part);
            out.write_all(part)?;
            done += n as u64;
        }
        Ok(sha.finalize().into())
    }
}

/// `syncfs(2)` on the file system holding `dir`.
pub(crate) fn sync_fs(dir: &Path) -> Result<(), ContentError> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(|e| ContentError::io("open", dir, e))?;
    // SAFETY: syncfs on an open descriptor; it touches no memory of ours.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(ContentError::io("sync", dir, io::Error::last_os_error()));
    }
    Ok(())
}

/// Renames folder `src` to the first free name among `base`, `base (1)`, ... in `dir`,
/// never replacing anything (`renameat2` with `RENAME_NOREPLACE`; where the file system
/// lacks it, the name is checked free first).
pub(crate) fn rename_no_clobber(
    src: &Path,
    dir: &Path,
    base: &str,
) -> Result<PathBuf, ContentError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| ContentError::io("name", p, io::Error::other("a NUL byte in the path")))
    };
    let from = c(src)?;
    for n in 0..=MAX_NUMBERED {
        let candidate = dir.join(numbered_name(base, n));
        let to = c(&candidate)?;
        // SAFETY: two NUL-terminated paths that live across the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(candidate);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => continue,
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                if fs::symlink_metadata(&candidate).is_ok() {
                    continue;
                }
                return fs::rename(src, &candidate)
                    .map(|()| candidate.clone())
                    .map_err(|e| ContentError::io("move into place", &candidate, e));
            }
            _ => return Err(ContentError::io("move into place", &candidate, e)),
        }
    }
    Err(all_names_taken(dir, base))
}
