//! Finishing a folder's download ([`PartialFile::finish`] for a tree manifest). Its files
//! were written in place under `downloads/<id>.tree/` (`data.rs`): files no chunk was ever
//! written to (empty ones, all-zero ones) and empty folders are made, and the staging folder
//! is renamed to its final name, which never replaces anything. Until that rename nothing
//! exists under the final name. Before this, [`PartialFile::finish`] has re-hashed the chunks
//! trusted from the resume record, as for a file; every other chunk was hashed on arrival.
//!
//! The file system is **not** synced here: a pack of 500 MB took 0.4-0.5 s to sync on this
//! machine's disk, as long as libtorrent's whole download of it, and a killed process loses
//! nothing the page cache holds. The caller shares the folder marked unflushed and syncs the
//! file system right after, off the download's path (`storage/flusher.rs`); a share still
//! marked at the next start is re-hashed before it is served (`content/index/recheck.rs`,
//! `STATE.md` section 1).
//!
//! When the output folder is on another file system than the data dir, the files are copied
//! into a hidden staging folder beside the final name (`.<id>.peershare-folder`) and that is
//! renamed instead; an interrupted finish leaves only that hidden folder, which the next
//! attempt deletes and rebuilds.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::data::TreeFiles;
use super::finish::{all_names_taken, MAX_NUMBERED};
use super::PartialFile;
use crate::content::names::{numbered_name, safe_file_name};
use crate::content::tree::{EntryKind, TreeManifest};
use crate::content::ContentError;

impl PartialFile {
    /// See the module docs. `tree` is this download's manifest.
    pub(super) fn finish_tree(
        &mut self,
        tree: &TreeManifest,
        final_dir: &Path,
        name: &str,
    ) -> Result<PathBuf, ContentError> {
        let t0 = Instant::now();
        let Some(t) = self.data.as_tree().map(Arc::clone) else {
            return Err(ContentError::io(
                "finish",
                &self.dir,
                io::Error::other("a folder's download without its staging folder"),
            ));
        };
        fs::create_dir_all(final_dir).map_err(|e| ContentError::io("create", final_dir, e))?;
        self.complete_tree(tree, &t)?;
        self.tree_writer.close_all();
        let t1 = Instant::now();
        let hex = self.id.to_hex();
        let short = hex.get(..16).unwrap_or(&hex);
        let base = safe_file_name(name).unwrap_or_else(|_| short.to_owned());
        let final_path = match rename_no_clobber(&t.root, final_dir, &base) {
            Ok(p) => p,
            Err(ContentError::Io { source, .. }) if source.raw_os_error() == Some(libc::EXDEV) => {
                self.copy_tree_across(tree, &t, final_dir, &base)?
            }
            Err(e) => return Err(e),
        };

        self.placed(&final_path);
        log::debug!(
            "download {}: {} files completed and checked in {:?}, placed in {:?} (not synced: \
             the caller syncs the file system)",
            self.id,
            tree.file_count(),
            t1 - t0,
            t1.elapsed()
        );
        Ok(final_path)
    }

    /// Makes the files no chunk was written to and the empty folders, and removes the files
    /// a partial download (`--only`) does not want.
    fn complete_tree(&mut self, tree: &TreeManifest, t: &TreeFiles) -> Result<(), ContentError> {
        let wanted = self.wanted_entries().map(<[bool]>::to_vec);
        for (k, entry) in tree.entries().iter().enumerate() {
            let path = t.root.join(entry.path.as_str());
            if wanted
                .as_ref()
                .is_some_and(|w| !w.get(k).copied().unwrap_or(false))
            {
                // Not asked for (`--only`): a file written for an earlier, wider selection, or
                // made at open for its all-zero chunk, is not part of the result.
                remove_unwanted(&t.root, &path)?;
                continue;
            }
            match entry.kind {
                EntryKind::EmptyFolder => {
                    fs::create_dir_all(&path).map_err(|e| ContentError::io("create", &path, e))?;
                }
                EntryKind::File(_) => self.tree_writer.ensure_file(t, k)?,
            }
        }
        Ok(())
    }

    /// The output folder is on another file system: copy every file into a hidden staging
    /// folder beside the final name and rename that into place (synced by the caller after).
    fn copy_tree_across(
        &mut self,
        tree: &TreeManifest,
        t: &TreeFiles,
        final_dir: &Path,
        base: &str,
    ) -> Result<PathBuf, ContentError> {
        let hex = self.id.to_hex();
        let short = hex.get(..16).unwrap_or(&hex);
        let staging = final_dir.join(format!(".{short}.peershare-folder"));
        // Left by a finish that was interrupted: it is ours (hidden, named by the content),
        // and rebuilt now. `remove_dir_all` removes a link, never follows it.
        match fs::symlink_metadata(&staging) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&staging),
            Ok(_) => fs::remove_file(&staging),
            Err(_) => Ok(()),
        }
        .map_err(|e| ContentError::io("remove", &staging, e))?;
        fs::create_dir(&staging).map_err(|e| ContentError::io("create", &staging, e))?;
        if let Err(e) = copy_entries(tree, self.wanted_entries(), &t.root, &staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        rename_no_clobber(&staging, final_dir, base)
    }
}

/// Removes a file left out of a partial download, and the folders it leaves empty (up to,
/// not including, `root`).
fn remove_unwanted(root: &Path, path: &Path) -> Result<(), ContentError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(path).map_err(|e| ContentError::io("remove", path, e))?,
        Err(_) => return Ok(()),
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| *d != root && d.starts_with(root)) {
        if fs::remove_dir(d).is_err() {
            break; // not empty: something wanted is in it
        }
        dir = d.parent();
    }
    Ok(())
}

/// Copies every file and empty folder of `tree` from `from` to `to` (each file created new).
fn copy_entries(
    tree: &TreeManifest,
    wanted: Option<&[bool]>,
    from: &Path,
    to: &Path,
) -> Result<(), ContentError> {
    for (k, entry) in tree.entries().iter().enumerate() {
        if wanted.is_some_and(|w| !w.get(k).copied().unwrap_or(false)) {
            continue;
        }
        let dest = to.join(entry.path.as_str());
        match entry.kind {
            EntryKind::EmptyFolder => {
                fs::create_dir_all(&dest).map_err(|e| ContentError::io("create", &dest, e))?;
            }
            EntryKind::File(_) => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| ContentError::io("create", parent, e))?;
                }
                let src = from.join(entry.path.as_str());
                let mut input = File::open(&src).map_err(|e| ContentError::io("open", &src, e))?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(|e| ContentError::io("create", &dest, e))?;
                io::copy(&mut input, &mut out)
                    .map_err(|e| ContentError::io("copy into", &dest, e))?;
            }
        }
    }
    Ok(())
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
