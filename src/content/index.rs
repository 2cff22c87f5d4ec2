//! The share index: which local files this node shares, in place, under which content IDs.
//!
//! Its state lives in one embedded transactional store, `<data_dir>/shares.db` (SQLite,
//! `index/store.rs`): per share its path, display name, size, [`FileStamp`], manifest and (a
//! folder's) files' stamps. Each add or removal is one durable transaction of a few pages,
//! whatever the library's size; nothing of the library is held in memory here (a lookup is
//! an indexed query), so a node can share 100,000 files. A data dir of the earlier format
//! (`shares.json` + `manifests/`) is imported once at open (`index/import.rs`).
//!
//! **One path per content ID.** Adding the same content from a second path *replaces* the
//! first: the latest `add` says where the user keeps the file now, and serving stays simple
//! (one path, one stamp to check). The replaced path is logged. Re-adding a path whose stamp is
//! unchanged is idempotent and costs one `stat`; re-adding a changed file re-hashes it and, if
//! its content changed, the old content ID stops being shared.
//!
//! **Never serve a changed file.** [`ShareIndex::check`] compares the file's current stamp with
//! the one recorded when it was hashed, and [`ChunkReader::read_chunk`] does so before and after
//! every read. Why that is enough, and what the downloader's per-chunk hash adds: `STATE.md`.
//!
//! Hashing is slow and the index is shared, so adding is split in two: [`prepare_share`]
//! (hash, no index access: run it on a worker without holding any lock) and
//! [`ShareIndex::commit`] (record it: quick). [`ShareIndex::add`] does both.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod folder_share;
mod import;
mod recheck;
mod store;

pub use folder_share::{decode_stamps, encode_stamps, LocalFiles, SharedReader, TreeReader};
pub use import::{encode_entries, parse_entries};
pub use recheck::Rechecked;
pub use store::STORE_FILE;

use super::content_manifest::ContentManifest;
use super::folder::{hash_folder, scan_folder, Skipped};
use super::hasher::hash_file_stamped;
use super::manifest::{ChunkIndex, Lengths};
use super::tree::EntryKind;
use super::{ContentError, FileStamp};
use crate::bitset::BitSet;
use crate::id::Id;
use store::{FileRow, Store};

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedEntry {
    /// The content ID (SHA-256 of the manifest).
    pub id: Id,
    /// Absolute, canonical path of the file (symlinks resolved).
    pub path: PathBuf,
    /// Display name: the file name, for listings and as the name offered to downloaders.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The file's stamp when it was hashed; the file is served only while it still matches.
    pub stamp: FileStamp,
}

/// A file or folder hashed by [`prepare_share`], ready for [`ShareIndex::commit`].
#[derive(Clone, Debug)]
pub struct PreparedShare {
    /// Canonical path.
    pub path: PathBuf,
    /// Display name.
    pub name: String,
    /// Its manifest.
    pub manifest: Arc<ContentManifest>,
    /// Its stamp while it was hashed (a folder's own: it moves when an entry of the folder
    /// itself is added, removed or renamed).
    pub stamp: FileStamp,
    /// A folder's files' stamps while they were hashed, in entry order; empty for a file.
    pub file_stamps: Vec<FileStamp>,
    /// What a folder holds that is not shared (links, devices, unportable names), to tell
    /// the user; empty for a file.
    pub skipped: Vec<Skipped>,
}

/// Hashes the file or folder at `path` for sharing (a folder: spec `content.md` section 10,
/// every file hashed, links and special files left out and listed in
/// [`PreparedShare::skipped`]). Touches no index: safe to run on a worker thread while other
/// threads use the index. `progress` gets the bytes hashed so far.
pub fn prepare_share(path: &Path, progress: &dyn Fn(u64)) -> Result<PreparedShare, ContentError> {
    let path = canonical(path)?;
    let meta = fs::metadata(&path).map_err(|e| ContentError::io("inspect", &path, e))?;
    if meta.is_dir() {
        // Taken first: a change to the folder's own entries while it is read shows at commit.
        let stamp = FileStamp::of(&meta);
        let scan = scan_folder(&path)?;
        let hashed = hash_folder(&path, &scan, progress)?;
        return Ok(PreparedShare {
            name: display_name(&path),
            manifest: Arc::new(ContentManifest::Tree(hashed.manifest)),
            stamp,
            file_stamps: hashed.files.into_iter().map(|(_, st)| st).collect(),
            skipped: scan.skipped,
            path,
        });
    }
    let hashed = hash_file_stamped(&path, None, progress)?;
    Ok(PreparedShare {
        name: display_name(&path),
        path,
        manifest: Arc::new(ContentManifest::File(hashed.manifest)),
        stamp: hashed.stamp,
        file_stamps: Vec::new(),
        skipped: Vec::new(),
    })
}

/// `path` resolved. A path that does not resolve is [`ContentError::NoSuchFile`]: the caller
/// is sharing it now, so it was not there to begin with.
fn canonical(path: &Path) -> Result<PathBuf, ContentError> {
    fs::canonicalize(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            ContentError::NoSuchFile {
                path: crate::paths::absolute(path),
            }
        } else {
            ContentError::io("resolve", path, e)
        }
    })
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A share as loaded at start: its entry, its manifest, and what of it is here.
#[derive(Clone, Debug)]
pub struct LoadedShare {
    /// The entry.
    pub entry: SharedEntry,
    /// Its manifest.
    pub manifest: Arc<ContentManifest>,
    /// For part of a folder (`--only`), the chunks it holds; `None`: every chunk.
    pub have: Option<BitSet>,
    /// For part of a folder, how many of its files are here.
    pub files_here: Option<usize>,
}

/// The shares of this node, kept in its data dir's store (module docs). Not internally
/// synchronized: the node wraps it in its own lock, and hashes with [`prepare_share`] outside
/// that lock.
#[derive(Debug)]
pub struct ShareIndex {
    store: Store,
}

impl ShareIndex {
    /// Opens the index of `data_dir` (created if needed), importing an earlier
    /// `shares.json` + `manifests/` once. A store that is damaged (not a database, or
    /// corrupt) is an error, [`ContentError::Store`]: the node does not start with an empty
    /// library as if nothing had been shared; the user decides (move it away, or put back a
    /// backup). Nothing is re-hashed here: changed files are caught by the stamp checks.
    pub fn open(data_dir: &Path) -> Result<ShareIndex, ContentError> {
        fs::create_dir_all(data_dir).map_err(|e| ContentError::io("create", data_dir, e))?;
        let mut store = Store::open(data_dir)?;
        import::import_old(data_dir, &mut store)?;
        Ok(ShareIndex { store })
    }

    /// Every share with its manifest (for the node's start). A share whose manifest does not
    /// hash to its ID or does not decode (the disk damaged it) is dropped from the store and
    /// logged: it is never served.
    pub fn load_all(&mut self) -> Result<Vec<LoadedShare>, ContentError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        self.store.for_each(|row| {
            let id = row.entry.id;
            match decode_row(&row.entry, &row.manifest, row.stamps.as_deref()) {
                Ok((m, stamps)) => {
                    let (have, files_here) = match (m.as_tree(), &stamps) {
                        (Some(t), Some(st)) => (partial_chunks(t, st), files_here(st)),
                        _ => (None, None),
                    };
                    out.push(LoadedShare {
                        entry: row.entry,
                        manifest: m,
                        have,
                        files_here,
                    });
                }
                Err(why) => {
                    log::warn!(
                        "share {id} ({}): {why}; dropped, add it again to share it",
                        row.entry.path.display()
                    );
                    bad.push(id);
                }
            }
        })?;
        for id in bad {
            self.store.remove(&id)?;
        }
        Ok(out)
    }

    /// Shares the file at `path`: canonicalizes it, hashes it, records it. Idempotent and
    /// cheap (one `stat`) when the same path is added again unchanged. Content already shared
    /// from another path is now shared from this one (module docs).
    pub fn add(&mut self, path: &Path) -> Result<SharedEntry, ContentError> {
        let path = canonical(path)?;
        if let Some(e) = self.find_unchanged(&path) {
            return Ok(e);
        }
        let prepared = prepare_share(&path, &|_| {})?;
        self.commit(prepared)
    }

    /// Whether a share is recorded at `canonical_path` (its file may be gone since).
    pub fn has_path(&self, canonical_path: &Path) -> bool {
        matches!(self.store.id_at(canonical_path), Ok(Some(_)))
    }

    /// The entry for `canonical_path` if it is shared and its stamp is unchanged: then adding
    /// it again would change nothing, and the caller can skip hashing.
    pub fn find_unchanged(&self, canonical_path: &Path) -> Option<SharedEntry> {
        let id = self.store.id_at(canonical_path).ok()??;
        let e = self.get(&id)?;
        // A folder's own stamp does not move when a file deeper in it changes: hash again.
        if fs::metadata(canonical_path).ok()?.is_dir() {
            return None;
        }
        let now = FileStamp::read(canonical_path).ok()?;
        (now == e.stamp).then_some(e)
    }

    /// Records a file hashed by [`prepare_share`]. Fails with [`ContentError::Changed`] if the
    /// file changed since it was hashed (its stamp is checked again here). One durable
    /// transaction: the manifest, the entry and (a folder's) stamps together.
    pub fn commit(&mut self, p: PreparedShare) -> Result<SharedEntry, ContentError> {
        self.commit_marked(p, false)
    }

    /// [`ShareIndex::commit`], with the share marked unflushed if `unflushed` (its bytes may
    /// not be on disk yet: [`ShareIndex::flushed`]).
    fn commit_marked(
        &mut self,
        p: PreparedShare,
        unflushed: bool,
    ) -> Result<SharedEntry, ContentError> {
        let now = FileStamp::read(&p.path)?;
        if let Some(what) = now.changes_since(&p.stamp) {
            return Err(ContentError::Changed { path: p.path, what });
        }
        let id = p.manifest.content_id();
        let entry = SharedEntry {
            id,
            path: p.path,
            name: p.name,
            size: p.manifest.total_size(),
            stamp: p.stamp,
        };
        // This path held other content before: that content is no longer shared from here.
        let old_at_path = self.store.id_at(&entry.path)?.filter(|o| *o != id);
        if let Some(prev) = self.store.get(&id)? {
            if prev.path != entry.path {
                log::info!(
                    "content {id} is now shared from {} instead of {}",
                    entry.path.display(),
                    prev.path.display()
                );
            }
        }
        let is_tree = p.manifest.as_tree().is_some();
        let stamps = is_tree.then(|| encode_stamps(&p.file_stamps));
        let files = file_rows(&p.manifest, is_tree.then_some(&p.file_stamps[..]));
        self.store.put(
            &entry,
            &p.manifest.encode(),
            stamps.as_deref(),
            &files,
            old_at_path.as_ref(),
            unflushed,
        )?;
        Ok(entry)
    }

    /// Shares a file this node just downloaded and verified ([`super::partial::PartialFile::finish`]),
    /// without hashing it again. Call it right after `finish`: the stamp is taken now, and a
    /// change between `finish` and this call would go unnoticed here (downloaders still verify
    /// every chunk against its hash).
    ///
    /// `present`: for part of a folder (`--only`), which entries were downloaded (one flag
    /// per entry); the others are recorded as [`FileStamp::ABSENT`] and never served.
    /// `unflushed`: the download was placed before its bytes were synced to disk; the share
    /// is marked so in the same transaction, until [`ShareIndex::flushed`].
    pub fn add_downloaded(
        &mut self,
        path: &Path,
        manifest: Arc<ContentManifest>,
        present: Option<&[bool]>,
        unflushed: bool,
    ) -> Result<SharedEntry, ContentError> {
        let path = canonical(path)?;
        let stamp = FileStamp::read(&path)?;
        let mut file_stamps = Vec::new();
        let sizes: Vec<(Option<PathBuf>, u64)> = match manifest.as_tree() {
            None => vec![(Some(path.clone()), manifest.total_size())],
            Some(t) => t
                .entries()
                .iter()
                .enumerate()
                .filter_map(|(k, e)| match e.kind {
                    EntryKind::File(f) => {
                        let here = present.is_none_or(|p| p.get(k).copied().unwrap_or(false));
                        Some((here.then(|| path.join(e.path.as_str())), f.lengths.total()))
                    }
                    EntryKind::EmptyFolder => None,
                })
                .collect(),
        };
        for (p, size) in sizes {
            let Some(p) = p else {
                file_stamps.push(FileStamp::ABSENT);
                continue;
            };
            let st = FileStamp::read(&p)?;
            if st.size != size {
                return Err(ContentError::Changed {
                    path: p,
                    what: format!("it is {} bytes, the download was {size}", st.size),
                });
            }
            if manifest.as_tree().is_some() {
                file_stamps.push(st);
            }
        }
        self.commit_marked(
            PreparedShare {
                name: display_name(&path),
                path,
                manifest,
                stamp,
                file_stamps,
                skipped: Vec::new(),
            },
            unflushed,
        )
    }

    /// The bytes of share `id` are on disk now (the file system was synced after its
    /// download was placed): its unflushed mark goes.
    pub fn flushed(&mut self, id: &Id) -> Result<(), ContentError> {
        self.store.flushed(id).map(|_| ())
    }

    /// The shares whose downloads were placed but not known to be on disk when the node
    /// stopped (see `STATE.md` section 1): [`ShareIndex::recheck_unflushed`] hashes them.
    pub fn unflushed(&self) -> Result<Vec<Id>, ContentError> {
        self.store.unflushed()
    }

    /// The share with this content ID (a store that cannot be read is logged, and counts as
    /// not shared).
    pub fn get(&self, id: &Id) -> Option<SharedEntry> {
        self.store.get(id).unwrap_or_else(|e| {
            log::error!("{e}");
            None
        })
    }

    /// The manifest of a share, read from the store and checked against its ID.
    pub fn manifest(&self, id: &Id) -> Option<Arc<ContentManifest>> {
        self.load(id).map(|(_, m, _)| m)
    }

    /// A share's entry, manifest and (a folder's) stamps, checked.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        id: &Id,
    ) -> Option<(SharedEntry, Arc<ContentManifest>, Option<Arc<[FileStamp]>>)> {
        let e = self.get(id)?;
        let (bytes, stamps) = match self.store.manifest(id) {
            Ok(v) => v?,
            Err(err) => {
                log::error!("{err}");
                return None;
            }
        };
        match decode_row(&e, &bytes, stamps.as_deref()) {
            Ok((m, st)) => Some((e, m, st.map(Into::into))),
            Err(why) => {
                log::warn!("share {id} ({}): {why}; not served", e.path.display());
                None
            }
        }
    }

    /// Every share, sorted by name then content ID (stable output for listings). Reads the
    /// whole store: for tools and tests, not for every request.
    pub fn list(&self) -> Vec<SharedEntry> {
        let mut v = Vec::new();
        if let Err(e) = self.store.for_each(|r| v.push(r.entry)) {
            log::error!("{e}");
        }
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Number of shares.
    pub fn len(&self) -> usize {
        self.store.count().unwrap_or_else(|e| {
            log::error!("{e}");
            0
        })
    }

    /// True when nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops sharing a content ID (the file itself is untouched). Returns the removed entry,
    /// `None` if it was not shared.
    pub fn remove(&mut self, id: &Id) -> Result<Option<SharedEntry>, ContentError> {
        let Some(e) = self.store.get(id)? else {
            return Ok(None);
        };
        self.store.remove(id)?;
        Ok(Some(e))
    }

    /// Checks that a share's file is still exactly what was hashed: `Missing` if it is gone,
    /// `Changed` if its stamp moved (modified, appended, truncated, replaced, times reset).
    pub fn check(&self, id: &Id) -> Result<(), ContentError> {
        let e = self
            .store
            .get(id)?
            .ok_or(ContentError::NotShared { id: *id })?;
        check_entry(&e, false)
    }

    /// One step of a sweep over the library: checks up to `limit` shares after `after` (in
    /// content ID order; `None`: from the start) as the start of the node did when it
    /// opened every shared file: a file's stamp, a folder still being a folder (its files
    /// are checked on every read). Returns the shares that failed and where to go on
    /// (`None`: the sweep is done). Costs one `stat` per share: run it on a worker.
    pub fn check_batch(
        &self,
        after: Option<&Id>,
        limit: usize,
    ) -> Result<(Vec<Id>, Option<Id>), ContentError> {
        let batch = self.store.batch_after(after, limit)?;
        let next = (batch.len() == limit)
            .then(|| batch.last().map(|(e, _)| e.id))
            .flatten();
        let failed = batch
            .iter()
            .filter_map(|(e, is_tree)| match check_entry(e, *is_tree) {
                Ok(()) => None,
                Err(err) => {
                    log::warn!("not sharing {}: {err}", e.path.display());
                    Some(e.id)
                }
            })
            .collect();
        Ok((failed, next))
    }

    /// A reader to serve the chunks of a share (checks the file on open).
    pub fn reader(&self, id: &Id) -> Result<SharedReader, ContentError> {
        let (e, m, stamps) = self.load(id).ok_or(ContentError::NotShared { id: *id })?;
        reader_of(&e, &m, stamps)
    }
}

/// A reader for a share already loaded (entry, manifest, a folder's stamps).
fn reader_of(
    e: &SharedEntry,
    m: &Arc<ContentManifest>,
    stamps: Option<Arc<[FileStamp]>>,
) -> Result<SharedReader, ContentError> {
    match (m.as_file(), stamps) {
        (Some(f), _) => ChunkReader::open(e, f.lengths()).map(SharedReader::File),
        (None, Some(st)) => TreeReader::new(&e.path, m.clone(), st).map(SharedReader::Tree),
        (None, None) => Err(ContentError::NotShared { id: e.id }),
    }
}

/// A share's file is what was hashed (a folder: still a folder; its files are checked
/// when read).
fn check_entry(e: &SharedEntry, is_tree: bool) -> Result<(), ContentError> {
    if is_tree {
        let meta = fs::metadata(&e.path).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                ContentError::Missing {
                    path: e.path.clone(),
                }
            } else {
                ContentError::io("inspect", &e.path, err)
            }
        })?;
        return match meta.is_dir() {
            true => Ok(()),
            false => Err(ContentError::Changed {
                path: e.path.clone(),
                what: "it is no longer a folder".to_owned(),
            }),
        };
    }
    let now = FileStamp::read(&e.path)?;
    match now.changes_since(&e.stamp) {
        None => Ok(()),
        Some(what) => Err(ContentError::Changed {
            path: e.path.clone(),
            what,
        }),
    }
}

/// A stored manifest decoded and checked: it must hash to the entry's ID (the store does
/// not checksum its pages, and SHA-256 of a manifest costs about a microsecond per KiB),
/// decode, and agree with the entry's size; a folder's stamps must be one per file.
#[allow(clippy::type_complexity)]
fn decode_row(
    e: &SharedEntry,
    bytes: &[u8],
    stamps: Option<&[u8]>,
) -> Result<(Arc<ContentManifest>, Option<Vec<FileStamp>>), String> {
    let m = ContentManifest::decode_for(&e.id, bytes)
        .map_err(|err| format!("its stored manifest is damaged ({err})"))?;
    if m.total_size() != e.size {
        return Err("its manifest's size disagrees with the index".to_owned());
    }
    let stamps = match (m.as_tree(), stamps) {
        (Some(t), Some(b)) => Some(
            decode_stamps(b, t.file_count()).ok_or("its files' stamps are damaged".to_owned())?,
        ),
        (Some(_), None) => return Err("its files' stamps are missing".to_owned()),
        (None, _) => None,
    };
    Ok((Arc::new(m), stamps))
}

/// The chunks a share holds when it is part of a folder (`--only`): those of the files
/// that are here. `None`: it holds every chunk.
fn partial_chunks(tree: &super::tree::TreeManifest, stamps: &[FileStamp]) -> Option<BitSet> {
    if !stamps.iter().any(FileStamp::is_absent) {
        return None;
    }
    let present: Vec<bool> = (0..tree.entries().len())
        .map(|k| {
            tree.file_number(k)
                .and_then(|n| stamps.get(n))
                .is_some_and(|st| !st.is_absent())
        })
        .collect();
    Some(super::tree::select::chunks_of(tree, &present))
}

/// How many files of a partial copy of a folder are here (`None`: not a partial copy).
fn files_here(stamps: &[FileStamp]) -> Option<usize> {
    let absent = stamps.iter().filter(|s| s.is_absent()).count();
    (absent > 0).then(|| stamps.len() - absent)
}

/// The files of a share, for the store's lookup by SHA-256 (reuse in downloads): a file
/// shared alone, or each file of a folder that is here. Empty files are left out (nothing
/// to copy).
fn file_rows(m: &ContentManifest, stamps: Option<&[FileStamp]>) -> Vec<FileRow> {
    let mut rows = Vec::new();
    match m {
        ContentManifest::File(f) => rows.push((*f.file_sha256(), f.file_size(), None, 0)),
        ContentManifest::Tree(t) => {
            for (k, entry) in t.entries().iter().enumerate() {
                let EntryKind::File(f) = entry.kind else {
                    continue;
                };
                let Some(n) = t.file_number(k) else { continue };
                let here = stamps
                    .and_then(|s| s.get(n))
                    .is_some_and(|s| !s.is_absent());
                if here {
                    rows.push((
                        f.sha256,
                        f.lengths.total(),
                        Some(entry.path.as_str().to_owned()),
                        n,
                    ));
                }
            }
        }
    }
    rows.retain(|(_, size, _, _)| *size > 0);
    rows
}

/// Serves the chunks of one shared file from one open handle. Reads are positional
/// (`pread`), so `&self` suffices and any number of threads can read through one
/// `ChunkReader` at once (it is `Send + Sync`).
#[derive(Debug)]
pub struct ChunkReader {
    path: PathBuf,
    file: File,
    stamp: FileStamp,
    lengths: Lengths,
}

impl ChunkReader {
    /// Opens the entry's file and checks it still matches the recorded stamp. `lengths` must
    /// be those of the entry's manifest.
    pub fn open(entry: &SharedEntry, lengths: Lengths) -> Result<ChunkReader, ContentError> {
        if lengths.total() != entry.size {
            return Err(ContentError::io(
                "serve",
                &entry.path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the lengths given are not those of this share",
                ),
            ));
        }
        let file = File::open(&entry.path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::Missing {
                    path: entry.path.clone(),
                }
            } else {
                ContentError::io("open", &entry.path, e)
            }
        })?;
        let r = ChunkReader {
            path: entry.path.clone(),
            file,
            stamp: entry.stamp,
            lengths,
        };
        r.check_open_file()?;
        Ok(r)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads chunk `c` into `buf` (replacing its contents). The open file's stamp is checked
    /// before and after the read: a write during the read moves mtime/ctime, so the data is
    /// never returned from a file that changed. On error `buf` is left empty.
    pub fn read_chunk(&self, c: ChunkIndex, buf: &mut Vec<u8>) -> Result<(), ContentError> {
        if let Err(e) = self.check_open_file() {
            buf.clear();
            return Err(e);
        }
        // A no-op for a buffer of the right length already (`crate::bufpool`): the read
        // overwrites all of it.
        let len = self.lengths.chunk_len(c) as usize;
        buf.resize(len, 0);
        let read = self.file.read_exact_at(buf, self.lengths.chunk_offset(c));
        let after = self.check_open_file();
        if let Err(e) = read.map_err(|e| self.read_error(e)).and(after) {
            buf.clear();
            return Err(e);
        }
        Ok(())
    }

    fn read_error(&self, e: io::Error) -> ContentError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ContentError::Changed {
                path: self.path.clone(),
                what: "it is shorter than when it was hashed".to_owned(),
            }
        } else {
            ContentError::io("read", &self.path, e)
        }
    }

    /// fstat on the open handle: cheap (no path lookup). A deleted file (no links left) is
    /// reported missing even though the handle could still read it: the user unshared it.
    fn check_open_file(&self) -> Result<(), ContentError> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| ContentError::io("inspect", &self.path, e))?;
        if meta.nlink() == 0 {
            return Err(ContentError::Missing {
                path: self.path.clone(),
            });
        }
        match FileStamp::of(&meta).changes_since(&self.stamp) {
            None => Ok(()),
            Some(what) => Err(ContentError::Changed {
                path: self.path.clone(),
                what,
            }),
        }
    }
}

/// Reads chunk `c` of a shared file into `buf`, checking the file's stamp before and after
/// (a one-shot [`ChunkReader`]; keep a `ChunkReader` to serve many chunks from one handle).
pub fn read_chunk(
    entry: &SharedEntry,
    lengths: &Lengths,
    c: ChunkIndex,
    buf: &mut Vec<u8>,
) -> Result<(), ContentError> {
    buf.clear();
    ChunkReader::open(entry, *lengths)?.read_chunk(c, buf)
}

#[cfg(test)]
mod tests;
