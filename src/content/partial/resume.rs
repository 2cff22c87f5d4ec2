//! Resuming downloads: opening a `.part` (the resume record trusted if the size is right,
//! every other chunk re-hashed from disk, so chunks written before a crash are kept), and
//! listing the downloads a restart resumes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::data::{is_absent, PartData, TreeFiles, TreeWriter};
use super::record::{bit_at, read_record, VerifiedBits};
use super::{downloads_dir, OpenReport, PartialFile, State};
use crate::bitset::BitSet;
use crate::content::content_manifest::ContentManifest;
use crate::content::layout::Layout;
use crate::content::manifest::{ChunkIndex, HASH_LEN, MAX_MANIFEST_LEN};
use crate::content::{remove_if_exists, sync_dir, write_atomic, ContentError};
use crate::id::Id;

impl PartialFile {
    /// Opens the download of `manifest`'s content, creating it if new. On reopen after a crash
    /// the resume record is trusted only if the `.part` has the right size; every chunk it does
    /// not claim is re-hashed from disk (reading a never-written, sparse region is cheap). The
    /// `.part` is locked for the life of the `PartialFile`: a second open of the same download
    /// (here or in another process) fails with [`ContentError::Busy`].
    pub fn open_or_create(
        data_dir: &Path,
        manifest: Arc<ContentManifest>,
    ) -> Result<(PartialFile, OpenReport), ContentError> {
        let id = manifest.content_id();
        let layout = manifest.layout();
        let dir = downloads_dir(data_dir);
        fs::create_dir_all(&dir).map_err(|e| ContentError::io("create", &dir, e))?;
        let hex = id.to_hex();
        let mname = format!("{hex}.manifest");
        let new_manifest = !dir.join(&mname).exists();
        if new_manifest {
            write_atomic(&dir, &mname, &manifest.encode())?;
        }

        if manifest.as_tree().is_some() {
            return Self::open_tree(dir, manifest, new_manifest);
        }
        let part_path = dir.join(format!("{hex}.part"));
        let (file, created) = match open_part(&part_path) {
            Ok(x) => x,
            Err(e) => {
                if new_manifest {
                    let _ = remove_if_exists(&dir.join(&mname));
                }
                return Err(e);
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ContentError::Busy {
                    id,
                    path: part_path,
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(ContentError::io("lock", &part_path, e)),
        }
        let len = file
            .metadata()
            .map_err(|e| ContentError::io("inspect", &part_path, e))?
            .len();
        let size_ok = len == layout.total();
        if !size_ok {
            // Set or repair the size. Regions past the old end read as zeros, so nothing
            // there can pass for a written chunk unless it is one of zeros.
            file.set_len(layout.total())
                .map_err(|e| ContentError::io("preallocate", &part_path, e))?;
        }
        // Reserve the whole file's blocks now, so a full disk is found before the first
        // chunk instead of half-way (and, with delayed allocation, after chunks were counted
        // as written). A download that does not fit leaves nothing behind.
        if let Err(e) = reserve(&file, layout.total()) {
            let err = if crate::content::is_no_space(&e) {
                ContentError::NoSpace {
                    dir: dir.clone(),
                    needed: layout.total().saturating_sub(allocated(&file)),
                }
            } else {
                ContentError::io("reserve space for", &part_path, e)
            };
            if created {
                drop(file);
                let _ = remove_if_exists(&part_path);
                if new_manifest {
                    let _ = remove_if_exists(&dir.join(&mname));
                }
                let _ = sync_dir(&dir);
            }
            return Err(err);
        }

        let record_path = dir.join(format!("{hex}.resume"));
        let record = if size_ok && !created {
            read_record(&record_path, &id, layout.chunk_count())
        } else {
            None
        };
        if record.is_none() {
            // A record we do not trust must not be trusted later either, once the size is
            // right again: remove it now. Re-hashing below decides what is on disk.
            if record_path.exists() {
                log::warn!(
                    "download {id}: resume record not usable (file size or record damaged); \
                     re-checking every chunk on disk"
                );
                remove_if_exists(&record_path)?;
                sync_dir(&dir)?;
            }
        }

        let data = PartData::File {
            path: part_path,
            file: Arc::new(file),
        };
        let mut pf = PartialFile::new(dir, manifest, data);
        let from_record = pf.trust_record(record.as_deref(), |_| true);
        pf.recover(created, from_record)
    }

    /// [`PartialFile::open_or_create`] for a folder: its files are written in place under
    /// `<id>.tree/` (`data.rs`). The record is trusted for a chunk only if its file is there
    /// at its full size; every other chunk is re-hashed from its file, if it has one.
    fn open_tree(
        dir: PathBuf,
        manifest: Arc<ContentManifest>,
        new_manifest: bool,
    ) -> Result<(PartialFile, OpenReport), ContentError> {
        let id = manifest.content_id();
        let hex = id.to_hex();
        let root = dir.join(format!("{hex}.tree"));
        let created = match fs::create_dir(&root) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                if new_manifest {
                    let _ = remove_if_exists(&dir.join(format!("{hex}.manifest")));
                }
                return Err(ContentError::io("create", &root, e));
            }
        };
        let lock = File::open(&root).map_err(|e| ContentError::io("open", &root, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ContentError::Busy { id, path: root }),
            Err(fs::TryLockError::Error(e)) => return Err(ContentError::io("lock", &root, e)),
        }
        if created {
            // The folder's files are not reserved one by one (thousands of them): a disk
            // without room for the whole folder is found now, as for a single file.
            let needed = manifest.layout().total();
            if let Some(free) = free_space(&dir).filter(|&free| free < needed) {
                drop(lock);
                let _ = fs::remove_dir(&root);
                if new_manifest {
                    let _ = remove_if_exists(&dir.join(format!("{hex}.manifest")));
                }
                let _ = sync_dir(&dir);
                return Err(ContentError::NoSpace {
                    dir,
                    needed: needed - free,
                });
            }
        }
        let layout = manifest.layout();
        let record_path = dir.join(format!("{hex}.resume"));
        let record = if created {
            None
        } else {
            read_record(&record_path, &id, layout.chunk_count())
        };
        let t = Arc::new(TreeFiles::new(root, Arc::clone(&manifest), lock));
        let sizes_ok = file_sizes_ok(&t);
        let mut pf = PartialFile::new(dir, manifest, PartData::Tree(Arc::clone(&t)));
        let from_record = pf.trust_record(record.as_deref(), |c| {
            t.tree()
                .and_then(|tr| tr.chunk_place(c.get()))
                .is_some_and(|p| sizes_ok.get(p.entry).copied().unwrap_or(false))
        });
        pf.recover(created, from_record)
    }

    fn new(dir: PathBuf, manifest: Arc<ContentManifest>, data: PartData) -> PartialFile {
        let layout = manifest.layout();
        let count = layout.chunk_count();
        PartialFile {
            id: manifest.content_id(),
            verified: Arc::new(VerifiedBits::new(layout.chunk_count())),
            layout,
            dir,
            data,
            tree_writer: TreeWriter::default(),
            unhashed: BitSet::new(count as usize),
            prefix: 0,
            released: Arc::new(AtomicU64::new(0)),
            release_claimed: 0,
            verified_count: 0,
            wanted: None,
            missing: count,
            dirty: false,
            state: State::Open,
            manifest,
            unsynced: 0,
        }
    }

    /// Takes the chunks the resume record claims, where `trusted(chunk)`; returns how many.
    fn trust_record(&mut self, bits: Option<&[u8]>, trusted: impl Fn(ChunkIndex) -> bool) -> u32 {
        let Some(bits) = bits else { return 0 };
        let mut n = 0;
        for c in self.layout.chunks() {
            if bit_at(bits, c.get()) && trusted(c) {
                self.set_verified(c);
                self.unhashed.insert(c.get() as usize);
                n += 1;
            }
        }
        n
    }

    /// Finds the chunks already on disk that the record did not claim, records them, and
    /// reports what the open found.
    fn recover(
        mut self,
        created: bool,
        from_record: u32,
    ) -> Result<(PartialFile, OpenReport), ContentError> {
        let pf = &mut self;
        let recovered = if created {
            pf.recover_zero_chunks()?
        } else {
            pf.recover_from_disk()?
        };
        if recovered > 0 {
            pf.dirty = true;
            // Record them now: the data may be only in the page cache (the process died, the
            // machine did not), and flush syncs it before the record claims it.
            pf.flush_record()?;
        }
        let report = OpenReport {
            created,
            verified: pf.verified.to_vec(),
            from_record,
            recovered,
            missing: pf.missing_count(),
        };
        Ok((self, report))
    }

    /// A new `.part` is all zeros (sparse): chunks whose content *is* zeros are already there.
    /// A folder's file holding such a chunk is created now (sparse, so it reads as zeros),
    /// since nothing will ever be written to it.
    fn recover_zero_chunks(&mut self) -> Result<u32, ContentError> {
        let zero = ZeroHashes::of(&self.layout);
        let mut n = 0;
        for c in self.layout.chunks() {
            let len = self.layout.chunk_len(c);
            if self.manifest.chunk_hash(c) == zero.of_len(len) {
                if let PartData::Tree(t) = &self.data {
                    if let Some(p) = t.tree().and_then(|tr| tr.chunk_place(c.get())) {
                        self.tree_writer.ensure_file(t, p.entry)?;
                    }
                }
                self.set_verified(c);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-hashes every chunk not yet verified from the `.part`; returns how many matched.
    fn recover_from_disk(&mut self) -> Result<u32, ContentError> {
        let zero = ZeroHashes::of(&self.layout);
        let mut buf = Vec::new();
        let mut n = 0;
        for c in self.layout.chunks() {
            if self.verified.get(c.get()) {
                continue;
            }
            let len = self.layout.chunk_len(c);
            buf.resize(len as usize, 0);
            match self.data.read_chunk(&self.layout, c, &mut buf) {
                Ok(()) => {}
                // A folder's file never created (no chunk of it arrived): missing.
                Err(e) if is_absent(&e) && self.data.as_tree().is_some() => continue,
                Err(e) => return Err(e),
            }
            // Never-written regions are holes that read as zeros: compare against the hash of
            // zeros (computed once per length) instead of hashing them.
            let ok = if buf.iter().all(|&b| b == 0) {
                self.manifest.chunk_hash(c) == zero.of_len(len)
            } else {
                self.manifest.verify_chunk(c, &buf)
            };
            if ok {
                self.set_verified(c);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Reserves disk blocks for `len` bytes of `file` (keeping its data). File systems that
/// cannot (`EOPNOTSUPP`) keep the file sparse: the download then finds a full disk only when
/// a write fails, which the storage reports the same way.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len) else {
        return Ok(());
    };
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate(2) on an open descriptor with mode 0 and an in-range length; it
    // touches no memory of ours.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(e),
    }
}

/// Free bytes for this user on the file system holding `dir` (`None` if unknown).
fn free_space(dir: &Path) -> Option<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass; both live across the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `c` is NUL-terminated.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    st.f_bavail.checked_mul(st.f_frsize)
}

/// For each entry of a folder's download, whether its file is there at its full size (a
/// folder entry: false). The resume record is trusted only for chunks of such files.
fn file_sizes_ok(t: &TreeFiles) -> Vec<bool> {
    let Some(tree) = t.tree() else {
        return Vec::new();
    };
    (0..tree.entries().len())
        .map(|entry| match (t.file_size(entry), t.entry_path(entry)) {
            (Some(size), Some(path)) => {
                fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
            }
            _ => false,
        })
        .collect()
}

/// Bytes of disk `file` holds (for the "needs N more bytes" of a full disk).
fn allocated(file: &File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    file.metadata()
        .map_or(0, |m| m.blocks().saturating_mul(512))
}

/// Opens the `.part`, creating it if absent; says whether it was created.
fn open_part(path: &Path) -> Result<(File, bool), ContentError> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    match o.clone().create_new(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => o
            .open(path)
            .map(|f| (f, false))
            .map_err(|e| ContentError::io("open", path, e)),
        Err(e) => Err(ContentError::io("create", path, e)),
    }
}

/// SHA-256 of zero bytes for every chunk length of a content: two lengths for a file, up to
/// one per file for a folder. One pass over zeros as long as the longest chunk, finalizing a
/// copy of the running hash at each length, so thousands of lengths cost about one chunk.
struct ZeroHashes(Vec<(u32, [u8; HASH_LEN])>);

impl ZeroHashes {
    fn of(layout: &Layout) -> ZeroHashes {
        let mut lens: Vec<u32> = layout.chunks().map(|c| layout.chunk_len(c)).collect();
        lens.sort_unstable();
        lens.dedup();
        let zeros = [0u8; 64 * 1024];
        let mut sha = Sha256::new();
        let mut at = 0u32;
        let mut out = Vec::with_capacity(lens.len());
        for len in lens {
            while at < len {
                let n = (len - at).min(zeros.len() as u32);
                sha.update(zeros.get(..n as usize).unwrap_or(&[]));
                at += n;
            }
            out.push((len, sha.clone().finalize().into()));
        }
        ZeroHashes(out)
    }

    fn of_len(&self, len: u32) -> &[u8; HASH_LEN] {
        match self.0.binary_search_by_key(&len, |(l, _)| *l) {
            Ok(i) => self.0.get(i).map_or(&[0; HASH_LEN], |(_, h)| h),
            // Not a chunk length of this content: no chunk compares equal to all zeros.
            Err(_) => &[0; HASH_LEN],
        }
    }
}

/// How many bytes of `manifest`'s download its resume record says are verified on disk (0
/// without a usable record). Cheap: one small file, no hashing; for showing progress before
/// the download is reopened (which also re-checks what the record does not claim).
pub fn recorded_bytes(data_dir: &Path, manifest: &ContentManifest) -> u64 {
    let id = manifest.content_id();
    let l = manifest.layout();
    let path = downloads_dir(data_dir).join(format!("{}.resume", id.to_hex()));
    let Some(bits) = read_record(&path, &id, l.chunk_count()) else {
        return 0;
    };
    l.chunks()
        .filter(|c| bit_at(&bits, c.get()))
        .map(|c| u64::from(l.chunk_len(c)))
        .sum()
}

/// The downloads that can be resumed: every stored manifest in `<data_dir>/downloads/` that
/// hashes to its file name. Damaged manifests are deleted (with their download, which cannot
/// be verified without them). The caller reopens each with [`PartialFile::open_or_create`];
/// the final name is the caller's to remember.
pub fn resumable_downloads(data_dir: &Path) -> Result<Vec<Arc<ContentManifest>>, ContentError> {
    let dir = downloads_dir(data_dir);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ContentError::io("list", &dir, e)),
    };
    let mut out = Vec::new();
    let mut orphans = Vec::new();
    for de in rd.flatten() {
        let name = de.file_name();
        let Some(name) = name.to_str() else { continue };
        // `<hex>.part`, `<hex>.resume` and temp files of a download whose manifest is gone
        // (a crash while finishing or discarding) are orphans.
        let stem = name.split('.').next().unwrap_or("");
        if !name.ends_with(".manifest") {
            if Id::from_hex(stem).is_ok() && !dir.join(format!("{stem}.manifest")).exists() {
                orphans.push(de.path());
            }
            continue;
        }
        let Some(id) = name
            .strip_suffix(".manifest")
            .and_then(|h| Id::from_hex(h).ok())
        else {
            continue;
        };
        let ok = fs::metadata(de.path())
            .ok()
            .filter(|m| m.len() <= MAX_MANIFEST_LEN as u64)
            .and_then(|_| fs::read(de.path()).ok())
            .and_then(|b| ContentManifest::decode_for(&id, &b).ok());
        match ok {
            Some(m) => out.push(Arc::new(m)),
            None => {
                log::warn!("download {id}: stored manifest is damaged; the download is dropped");
                let hex = id.to_hex();
                for ext in ["manifest", "resume", "part"] {
                    let _ = remove_if_exists(&dir.join(format!("{hex}.{ext}")));
                }
                let _ = super::remove_tree_if_exists(&dir.join(format!("{hex}.tree")));
            }
        }
    }
    for p in orphans {
        log::info!("removing leftover {}", p.display());
        let _ = if p.is_dir() && !p.is_symlink() {
            super::remove_tree_if_exists(&p)
        } else {
            remove_if_exists(&p)
        };
    }
    out.sort_by_key(|m| m.content_id());
    Ok(out)
}
