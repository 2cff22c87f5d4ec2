//! Finishing a download: the re-check of the chunks trusted from the resume record, then the
//! final name in the download folder, never replacing an existing file
//! ([`PartialFile::finish`]).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::data::is_absent;
use super::{PartialFile, State};
use crate::bitset::BitSet;
use crate::content::manifest::ChunkIndex;
use crate::content::names::{numbered_name, safe_file_name_or_fallback};
use crate::content::{remove_if_exists, sync_dir, ContentError};

/// Most "name (n).ext" alternatives tried before giving up.
pub(super) const MAX_NUMBERED: u32 = 10_000;

impl PartialFile {
    /// Completes the download: re-hashes the chunks trusted from the resume record
    /// ([`PartialFile::rehash_trusted`]), syncs the `.part`, and gives it its final name in
    /// `final_dir` (created if needed): `name` cleaned by
    /// [`crate::content::names::safe_file_name`] (or `<id prefix>.bin`), and if that is taken
    /// `name (1).ext`, `name (2).ext`, ... An existing file is never replaced: the file is
    /// hard-linked into place, which fails rather than overwrite; across file systems it is
    /// first copied to a hidden temp name in `final_dir` and synced. Then the `.part`, the
    /// record and the stored manifest are removed. Returns the final path. A download resumed
    /// after a restart reads back what it had before (about 0.6 s per GiB): call it on a
    /// worker thread.
    ///
    /// A folder is placed without a sync of its files: the caller makes it durable after
    /// (`finish_tree.rs` says why).
    ///
    /// If a re-hashed chunk does not match, nothing appears under the final name: the damaged
    /// chunks become missing again (the record is updated), and the error says how many; the
    /// download stays open to fetch them.
    pub fn finish(&mut self, final_dir: &Path, name: &str) -> Result<PathBuf, ContentError> {
        self.ensure_open()?;
        if !self.is_complete() {
            return Err(ContentError::Incomplete {
                id: self.id,
                missing: self.missing_count(),
            });
        }
        let t0 = Instant::now();
        let rehashed = self.rehash_trusted()?;
        let manifest = self.manifest.clone();
        if let Some(tree) = manifest.as_tree() {
            return self.finish_tree(tree, final_dir, name);
        }
        let t1 = Instant::now();
        let part_path = self.part_path()?.to_path_buf();
        self.data.sync()?;
        let t2 = Instant::now();

        fs::create_dir_all(final_dir).map_err(|e| ContentError::io("create", final_dir, e))?;
        let base = safe_file_name_or_fallback(name, &self.id);
        let final_path = match link_no_clobber(&part_path, final_dir, &base)? {
            Placed::At(p) => p,
            Placed::CrossDevice => self.copy_across(final_dir, &base)?,
        };
        sync_dir(final_dir)?;

        self.placed(&final_path);
        // Where the time between the last chunk and the final name goes.
        log::debug!(
            "download {}: finish re-hashed {rehashed} of {} chunks (trusted from the resume \
             record) in {:?}, fsync {:?}, placing and cleaning up {:?}",
            self.id,
            self.layout.chunk_count(),
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        Ok(final_path)
    }

    /// The content is complete and verified under its final name `at` (a file also durable;
    /// a folder is synced by the caller: `finish_tree.rs`): the download has succeeded
    /// whatever happens next. Forgetting it is best effort; leftovers are
    /// orphans that `resumable_downloads` deletes.
    pub(super) fn placed(&mut self, at: &Path) {
        self.dirty = false;
        self.state = State::Finished(at.to_path_buf());
        if let Err(e) = self.remove_download_files() {
            log::warn!("download {} finished, but cleaning up failed: {e}", self.id);
        }
    }

    /// Whether [`PartialFile::finish`] leaves the bytes to be synced by the caller (a folder:
    /// `finish_tree.rs` says why) rather than syncing them before it returns (a file).
    pub fn finish_leaves_sync(&self) -> bool {
        self.data.as_tree().is_some()
    }

    /// The single file's `.part` (a folder has none: an error).
    fn part_path(&self) -> Result<&Path, ContentError> {
        match self.data.as_file() {
            Some((path, _)) => Ok(path),
            None => Err(ContentError::io(
                "hash",
                &self.dir,
                io::Error::other("a folder's download has no single .part"),
            )),
        }
    }

    /// Spec `content.md` section 5, rule 3: re-hashes, as stored, every verified chunk taken
    /// from the resume record without hashing at the open (chunks verified since the open were
    /// hashed on arrival and written from those very bytes). A chunk damaged on disk since it
    /// was recorded (bit rot, an edited `.part`, a folder's file removed by hand) becomes
    /// missing again and the record is updated: the error says how many. Returns how many
    /// chunks it re-hashed.
    pub(super) fn rehash_trusted(&mut self) -> Result<u32, ContentError> {
        let trusted: Vec<ChunkIndex> = self
            .unhashed
            .iter()
            .filter_map(|i| self.layout.validate(u32::try_from(i).ok()?))
            .filter(|c| self.verified.get(c.get()))
            .collect();
        let mut buf = Vec::new();
        let mut bad = Vec::new();
        for &c in &trusted {
            buf.resize(self.layout.chunk_len(c) as usize, 0);
            let ok = match self.data.read_chunk(&self.layout, c, &mut buf) {
                Ok(()) => self.manifest.verify_chunk(c, &buf),
                // A folder's file that is gone (removed by hand): its chunks are missing.
                Err(e) if is_absent(&e) && self.data.as_tree().is_some() => false,
                Err(e) => return Err(e),
            };
            if !ok {
                bad.push(c);
            }
        }
        self.unhashed = BitSet::new(self.layout.chunk_count() as usize);
        if bad.is_empty() {
            return Ok(u32::try_from(trusted.len()).unwrap_or(u32::MAX));
        }
        for &c in &bad {
            self.unset_verified(c);
        }
        log::warn!(
            "download {}: {} chunk(s) recorded as verified were damaged on disk; they will be \
             fetched again",
            self.id,
            bad.len()
        );
        self.dirty = true;
        self.flush_record()?;
        Err(ContentError::DamagedOnDisk {
            id: self.id,
            bad_chunks: u32::try_from(bad.len()).unwrap_or(u32::MAX),
        })
    }

    /// The cross-file-system case: copy into a hidden temp file inside `final_dir`, sync it,
    /// then link it into place like the same-file-system case.
    fn copy_across(&self, final_dir: &Path, base: &str) -> Result<PathBuf, ContentError> {
        let hex = self.id.to_hex();
        let tmp = final_dir.join(format!(".{}.peershare-part", hex.get(..16).unwrap_or(&hex)));
        fs::copy(self.part_path()?, &tmp).map_err(|e| ContentError::io("copy", &tmp, e))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| ContentError::io("sync", &tmp, e))?;
        match link_no_clobber(&tmp, final_dir, base)? {
            Placed::At(p) => {
                remove_if_exists(&tmp)?;
                Ok(p)
            }
            Placed::CrossDevice => Err(ContentError::io(
                "link",
                &tmp,
                io::Error::other("temp file and final name on different file systems"),
            )),
        }
    }
}

/// Where [`link_no_clobber`] put a file.
pub(crate) enum Placed {
    /// Under this name.
    At(PathBuf),
    /// Nowhere: the source is on another file system (copy it across first).
    CrossDevice,
}

/// Gives `src` the first free name among `base`, `base (1)`, ... in `dir`, without ever
/// replacing an existing file: `link(2)` fails with EEXIST instead of overwriting. On file
/// systems without hard links, falls back to rename after checking the name is free (the
/// only case where a file created in that instant by someone else could be replaced).
pub(crate) fn link_no_clobber(src: &Path, dir: &Path, base: &str) -> Result<Placed, ContentError> {
    for n in 0..=MAX_NUMBERED {
        let candidate = dir.join(numbered_name(base, n));
        match fs::hard_link(src, &candidate) {
            Ok(()) => return Ok(Placed::At(candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(Placed::CrossDevice),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                if fs::symlink_metadata(&candidate).is_ok() {
                    continue;
                }
                return match fs::rename(src, &candidate) {
                    Ok(()) => Ok(Placed::At(candidate)),
                    Err(e) if e.kind() == io::ErrorKind::CrossesDevices => Ok(Placed::CrossDevice),
                    Err(e) => Err(ContentError::io("move into place", &candidate, e)),
                };
            }
            Err(e) => return Err(ContentError::io("link into place", &candidate, e)),
        }
    }
    Err(all_names_taken(dir, base))
}

/// Every numbered variant of `base` in `dir` is taken.
pub(super) fn all_names_taken(dir: &Path, base: &str) -> ContentError {
    ContentError::io(
        "name",
        &dir.join(base),
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{MAX_NUMBERED} numbered variants of the name are already taken"),
        ),
    )
}
