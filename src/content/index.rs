//! The share index: which local files this node shares, in place, under which content IDs.
//!
//! Layout in the node's data dir:
//! - `shares.json`: one entry per content ID (path, display name, size, [`FileStamp`]),
//!   rewritten atomically on every change;
//! - `manifests/<content_id>.manifest`: each share's manifest in its binary encoding, written
//!   atomically *before* `shares.json` refers to it. A manifest is trusted on load only if its
//!   bytes hash to its file name (and its entry's ID); otherwise it is deleted and the entry
//!   dropped, so a damaged manifest can never be served.
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

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod folder_share;

pub use folder_share::{decode_stamps, encode_stamps, LocalFiles, SharedReader, TreeReader};

use super::content_manifest::ContentManifest;
use super::folder::{hash_folder, scan_folder, Skipped};
use super::hasher::hash_file_stamped;
use super::manifest::{ChunkIndex, Lengths, MAX_MANIFEST_LEN};
use super::tree::EntryKind;
use super::{remove_if_exists, sync_dir, write_atomic, ContentError, FileStamp};
use crate::id::Id;

const SHARES_FILE: &str = "shares.json";
const MANIFEST_DIR: &str = "manifests";
const MANIFEST_EXT: &str = ".manifest";
const STAMPS_EXT: &str = ".stamps";
const FORMAT_VERSION: u32 = 1;

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

/// The shares of this node, loaded from and saved to its data dir. Not internally
/// synchronized: the node wraps it in its own lock, and hashes with [`prepare_share`] outside
/// that lock.
#[derive(Debug)]
pub struct ShareIndex {
    data_dir: PathBuf,
    entries: HashMap<Id, SharedEntry>,
    manifests: HashMap<Id, Arc<ContentManifest>>,
    /// A shared folder's files' stamps, in entry order.
    stamps: HashMap<Id, Arc<[FileStamp]>>,
    by_path: HashMap<PathBuf, Id>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    shares: Vec<EntryOnDisk>,
}

#[derive(Serialize, Deserialize)]
struct EntryOnDisk {
    content_id: String,
    /// The path when it is valid UTF-8 (the usual case, readable in the JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// Otherwise its raw bytes in hex: Unix paths are bytes, and none may be lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    name: String,
    size: u64,
    stamp: FileStamp,
}

impl EntryOnDisk {
    fn from_entry(e: &SharedEntry) -> EntryOnDisk {
        let (path, path_hex) = match e.path.to_str() {
            Some(s) => (Some(s.to_owned()), None),
            None => (None, Some(hex::encode(e.path.as_os_str().as_bytes()))),
        };
        EntryOnDisk {
            content_id: e.id.to_hex(),
            path,
            path_hex,
            name: e.name.clone(),
            size: e.size,
            stamp: e.stamp,
        }
    }

    fn to_entry(&self) -> Option<SharedEntry> {
        let id = Id::from_hex(&self.content_id).ok()?;
        let path = match (&self.path, &self.path_hex) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(h)) => PathBuf::from(OsString::from_vec(hex::decode(h).ok()?)),
            (None, None) => return None,
        };
        path.is_absolute().then(|| SharedEntry {
            id,
            path,
            name: self.name.clone(),
            size: self.size,
            stamp: self.stamp,
        })
    }
}

impl ShareIndex {
    /// Loads the index from `data_dir` (created if needed). A missing index is empty. A
    /// corrupt `shares.json` is set aside as `shares.json.corrupt` (like `node::state`) and the
    /// index starts empty; entries whose manifest is missing, does not hash to its name or does
    /// not decode are dropped, and their manifest files deleted. Nothing is re-hashed here:
    /// changed files are caught by the stamp checks when they are served.
    pub fn open(data_dir: &Path) -> Result<ShareIndex, ContentError> {
        let mdir = data_dir.join(MANIFEST_DIR);
        fs::create_dir_all(&mdir).map_err(|e| ContentError::io("create", &mdir, e))?;
        let mut idx = ShareIndex {
            data_dir: data_dir.to_path_buf(),
            entries: HashMap::new(),
            manifests: HashMap::new(),
            stamps: HashMap::new(),
            by_path: HashMap::new(),
        };
        let listed = load_entries(data_dir)?;
        let listed_count = listed.len();
        for e in listed {
            if idx.entries.contains_key(&e.id) || idx.by_path.contains_key(&e.path) {
                log::warn!("{SHARES_FILE}: duplicate entry for {} dropped", e.id);
                continue;
            }
            let loaded = load_manifest(&mdir, &e.id).and_then(|m| {
                let stamps = match m.as_tree() {
                    Some(t) => Some(load_stamps(&mdir, &e.id, t.file_count())?),
                    None => None,
                };
                Ok((m, stamps))
            });
            match loaded {
                Ok((m, stamps)) if m.total_size() == e.size => {
                    idx.by_path.insert(e.path.clone(), e.id);
                    idx.manifests.insert(e.id, Arc::new(m));
                    if let Some(st) = stamps {
                        idx.stamps.insert(e.id, st.into());
                    }
                    idx.entries.insert(e.id, e);
                }
                Ok(_) => log::warn!(
                    "share {} ({}): manifest size disagrees with the index; dropped",
                    e.id,
                    e.path.display()
                ),
                Err(why) => log::warn!(
                    "share {} ({}): {why}; dropped, add the file again to share it",
                    e.id,
                    e.path.display()
                ),
            }
        }
        idx.remove_unreferenced_manifests();
        if idx.entries.len() != listed_count {
            // Make the file agree with what was kept, so the warnings are not repeated.
            idx.save(&idx.entries)?;
        }
        Ok(idx)
    }

    /// Shares the file at `path`: canonicalizes it, hashes it, records it. Idempotent and
    /// cheap (one `stat`) when the same path is added again unchanged. Content already shared
    /// from another path is now shared from this one (module docs).
    pub fn add(&mut self, path: &Path) -> Result<SharedEntry, ContentError> {
        let path = canonical(path)?;
        if let Some(e) = self.find_unchanged(&path) {
            return Ok(e.clone());
        }
        let prepared = prepare_share(&path, &|_| {})?;
        self.commit(prepared)
    }

    /// Whether a share is recorded at `canonical_path` (its file may be gone since).
    pub fn has_path(&self, canonical_path: &Path) -> bool {
        self.by_path.contains_key(canonical_path)
    }

    /// The entry for `canonical_path` if it is shared and its stamp is unchanged: then adding
    /// it again would change nothing, and the caller can skip hashing.
    pub fn find_unchanged(&self, canonical_path: &Path) -> Option<&SharedEntry> {
        let e = self.entries.get(self.by_path.get(canonical_path)?)?;
        // A folder's own stamp does not move when a file deeper in it changes: hash again.
        if self.stamps.contains_key(&e.id) {
            return None;
        }
        let now = FileStamp::read(canonical_path).ok()?;
        (now == e.stamp).then_some(e)
    }

    /// Records a file hashed by [`prepare_share`]. Fails with [`ContentError::Changed`] if the
    /// file changed since it was hashed (its stamp is checked again here).
    pub fn commit(&mut self, p: PreparedShare) -> Result<SharedEntry, ContentError> {
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

        // The manifest first: shares.json must never name a manifest that is not on disk.
        let mdir = self.data_dir.join(MANIFEST_DIR);
        let mname = manifest_file_name(&id);
        if !mdir.join(&mname).exists() {
            write_atomic(&mdir, &mname, &p.manifest.encode())?;
        }
        // A folder's stamps, before the index refers to it (a crash leaves an orphan file).
        let stamps: Option<Arc<[FileStamp]>> = match p.manifest.as_tree() {
            Some(_) => {
                write_atomic(
                    &mdir,
                    &stamps_file_name(&id),
                    &encode_stamps(&p.file_stamps),
                )?;
                Some(p.file_stamps.into())
            }
            None => None,
        };

        let mut next = self.entries.clone();
        // This path held other content before: that content is no longer shared from here.
        let old_at_path = self.by_path.get(&entry.path).copied().filter(|o| *o != id);
        if let Some(old) = old_at_path {
            next.remove(&old);
        }
        if let Some(prev) = next.get(&id) {
            if prev.path != entry.path {
                log::info!(
                    "content {id} is now shared from {} instead of {}",
                    entry.path.display(),
                    prev.path.display()
                );
            }
        }
        next.insert(id, entry.clone());
        self.save(&next)?;

        // Saved: update memory, then delete what is no longer referenced.
        self.entries = next;
        self.by_path.retain(|_, v| *v != id);
        if let Some(old) = old_at_path {
            self.by_path.retain(|_, v| *v != old);
            self.manifests.remove(&old);
            self.stamps.remove(&old);
            let _ = remove_if_exists(&mdir.join(manifest_file_name(&old)));
            let _ = remove_if_exists(&mdir.join(stamps_file_name(&old)));
        }
        self.by_path.insert(entry.path.clone(), id);
        self.manifests.insert(id, p.manifest);
        match stamps {
            Some(st) => self.stamps.insert(id, st),
            None => self.stamps.remove(&id),
        };
        Ok(entry)
    }

    /// Shares a file this node just downloaded and verified ([`super::partial::PartialFile::finish`]),
    /// without hashing it again. Call it right after `finish`: the stamp is taken now, and a
    /// change between `finish` and this call would go unnoticed here (downloaders still verify
    /// every chunk against its hash).
    ///
    /// `present`: for part of a folder (`--only`), which entries were downloaded (one flag
    /// per entry); the others are recorded as [`FileStamp::ABSENT`] and never served.
    pub fn add_downloaded(
        &mut self,
        path: &Path,
        manifest: Arc<ContentManifest>,
        present: Option<&[bool]>,
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
        self.commit(PreparedShare {
            name: display_name(&path),
            path,
            manifest,
            stamp,
            file_stamps,
            skipped: Vec::new(),
        })
    }

    /// The share with this content ID.
    pub fn get(&self, id: &Id) -> Option<&SharedEntry> {
        self.entries.get(id)
    }

    /// The manifest of a share (cheap: shared, not copied).
    pub fn manifest(&self, id: &Id) -> Option<Arc<ContentManifest>> {
        self.manifests.get(id).cloned()
    }

    /// Every share, sorted by name then content ID (stable output for listings).
    pub fn list(&self) -> Vec<&SharedEntry> {
        let mut v: Vec<&SharedEntry> = self.entries.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Number of shares.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stops sharing a content ID (the file itself is untouched). Returns the removed entry,
    /// `None` if it was not shared.
    pub fn remove(&mut self, id: &Id) -> Result<Option<SharedEntry>, ContentError> {
        if !self.entries.contains_key(id) {
            return Ok(None);
        }
        let mut next = self.entries.clone();
        let removed = next.remove(id);
        // The index first, then the manifest: a crash in between leaves an unreferenced
        // manifest, which the next open deletes.
        self.save(&next)?;
        self.entries = next;
        self.by_path.retain(|_, v| v != id);
        self.manifests.remove(id);
        self.stamps.remove(id);
        let mdir = self.data_dir.join(MANIFEST_DIR);
        remove_if_exists(&mdir.join(manifest_file_name(id)))?;
        remove_if_exists(&mdir.join(stamps_file_name(id)))?;
        Ok(removed)
    }

    /// Checks that a share's file is still exactly what was hashed: `Missing` if it is gone,
    /// `Changed` if its stamp moved (modified, appended, truncated, replaced, times reset).
    pub fn check(&self, id: &Id) -> Result<(), ContentError> {
        let e = self
            .entries
            .get(id)
            .ok_or(ContentError::NotShared { id: *id })?;
        let now = FileStamp::read(&e.path)?;
        match now.changes_since(&e.stamp) {
            None => Ok(()),
            Some(what) => Err(ContentError::Changed {
                path: e.path.clone(),
                what,
            }),
        }
    }

    /// A reader to serve the chunks of a share (checks the file on open).
    pub fn reader(&self, id: &Id) -> Result<SharedReader, ContentError> {
        let e = self
            .entries
            .get(id)
            .ok_or(ContentError::NotShared { id: *id })?;
        let m = self
            .manifests
            .get(id)
            .ok_or(ContentError::NotShared { id: *id })?;
        match (m.as_file(), self.stamps.get(id)) {
            (Some(f), _) => ChunkReader::open(e, f.lengths()).map(SharedReader::File),
            (None, Some(st)) => {
                TreeReader::new(&e.path, m.clone(), st.clone()).map(SharedReader::Tree)
            }
            (None, None) => Err(ContentError::NotShared { id: *id }),
        }
    }

    fn save(&self, entries: &HashMap<Id, SharedEntry>) -> Result<(), ContentError> {
        let bytes = encode_entries(entries.values()).map_err(|e| {
            ContentError::io(
                "encode",
                &self.data_dir.join(SHARES_FILE),
                io::Error::other(e),
            )
        })?;
        write_atomic(&self.data_dir, SHARES_FILE, &bytes)
    }

    fn remove_unreferenced_manifests(&self) {
        let mdir = self.data_dir.join(MANIFEST_DIR);
        let Ok(rd) = fs::read_dir(&mdir) else { return };
        let mut removed = false;
        for de in rd.flatten() {
            let name = de.file_name();
            let name = name.to_string_lossy();
            let keep = name
                .strip_suffix(MANIFEST_EXT)
                .or_else(|| name.strip_suffix(STAMPS_EXT))
                .and_then(|h| Id::from_hex(h).ok())
                .is_some_and(|id| self.entries.contains_key(&id));
            // Leftover temp files and manifests no entry refers to (a crash between writing a
            // manifest and the index, or between the index and deleting one).
            let ours = name.ends_with(MANIFEST_EXT)
                || name.ends_with(STAMPS_EXT)
                || name.ends_with(".tmp");
            if !keep && ours {
                removed |= fs::remove_file(de.path()).is_ok();
            }
        }
        if removed {
            let _ = sync_dir(&mdir);
        }
    }
}

fn manifest_file_name(id: &Id) -> String {
    format!("{}{MANIFEST_EXT}", id.to_hex())
}

fn stamps_file_name(id: &Id) -> String {
    format!("{}{STAMPS_EXT}", id.to_hex())
}

/// A folder share's file stamps (`folder_share.rs`); a missing or damaged file drops the
/// share (it cannot be served safely without them) and is deleted.
fn load_stamps(mdir: &Path, id: &Id, files: usize) -> Result<Vec<FileStamp>, String> {
    let p = mdir.join(stamps_file_name(id));
    let bytes = fs::read(&p).map_err(|e| format!("stamps {}: {e}", p.display()))?;
    decode_stamps(&bytes, files).ok_or_else(|| {
        let _ = fs::remove_file(&p);
        format!("stamps {} are damaged", p.display())
    })
}

/// The text of `shares.json` for `entries` (sorted by content ID, so the file is stable).
pub fn encode_entries<'a>(
    entries: impl Iterator<Item = &'a SharedEntry>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut shares: Vec<EntryOnDisk> = entries.map(EntryOnDisk::from_entry).collect();
    shares.sort_by(|a, b| a.content_id.cmp(&b.content_id));
    let d = OnDisk {
        version: FORMAT_VERSION,
        shares,
    };
    serde_json::to_vec_pretty(&d)
}

/// Parses the text of `shares.json`: the error says why the whole file is unreadable; an
/// entry that is unreadable on its own is skipped (and logged).
pub fn parse_entries(text: &str) -> Result<Vec<SharedEntry>, String> {
    let d = serde_json::from_str::<OnDisk>(text).map_err(|e| e.to_string())?;
    if d.version != FORMAT_VERSION {
        return Err(format!("unknown version {}", d.version));
    }
    Ok(d.shares
        .iter()
        .filter_map(|e| {
            let r = e.to_entry();
            if r.is_none() {
                log::warn!("{SHARES_FILE}: unreadable entry {} skipped", e.content_id);
            }
            r
        })
        .collect())
}

/// Reads `shares.json`; a corrupt file is set aside and the index starts empty.
fn load_entries(data_dir: &Path) -> Result<Vec<SharedEntry>, ContentError> {
    let p = data_dir.join(SHARES_FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ContentError::io("read", &p, e)),
    };
    match parse_entries(&text) {
        Ok(entries) => Ok(entries),
        Err(why) => {
            let aside = data_dir.join("shares.json.corrupt");
            log::warn!(
                "{} is unreadable ({why}); keeping it as {} and starting with no shares",
                p.display(),
                aside.display()
            );
            fs::rename(&p, &aside).map_err(|e| ContentError::io("set aside", &p, e))?;
            Ok(Vec::new())
        }
    }
}

/// Loads and checks one stored manifest; a bad one is deleted.
fn load_manifest(mdir: &Path, id: &Id) -> Result<ContentManifest, String> {
    let p = mdir.join(manifest_file_name(id));
    let len = fs::metadata(&p).map_err(|e| format!("manifest {}: {e}", p.display()))?;
    if len.len() > MAX_MANIFEST_LEN as u64 {
        let _ = fs::remove_file(&p);
        return Err(format!("manifest {} is too large", p.display()));
    }
    let bytes = fs::read(&p).map_err(|e| format!("manifest {}: {e}", p.display()))?;
    match ContentManifest::decode_for(id, &bytes) {
        Ok(m) => Ok(m),
        Err(e) => {
            let _ = fs::remove_file(&p);
            Err(format!("manifest {} is damaged ({e})", p.display()))
        }
    }
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
