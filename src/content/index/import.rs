//! The share index's earlier format, imported once into the store (`store.rs`): a data dir
//! with `shares.json` (pretty JSON, every entry) and `manifests/` (one file per manifest,
//! and `.stamps` files for folders). At open, such a `shares.json` is read (a corrupt one
//! is set aside as `shares.json.corrupt`, as before), every entry whose manifest hashes to
//! its ID and decodes is written into the store in one transaction, and only then is
//! `shares.json` renamed `shares.json.imported` and `manifests/` deleted. A crash before
//! the rename imports again at the next start (the same rows, replaced); after it, the
//! leftover `manifests/` is deleted.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::folder_share::{decode_stamps, encode_stamps};
use super::store::Store;
use super::{file_rows, SharedEntry};
use crate::content::content_manifest::ContentManifest;
use crate::content::manifest::MAX_MANIFEST_LEN;
use crate::content::{sync_dir, ContentError, FileStamp};
use crate::id::Id;

/// The earlier index file.
pub const SHARES_FILE: &str = "shares.json";
/// What it is renamed to once imported.
pub const IMPORTED_FILE: &str = "shares.json.imported";
/// The earlier folder of manifests.
pub const MANIFEST_DIR: &str = "manifests";
const MANIFEST_EXT: &str = ".manifest";
const STAMPS_EXT: &str = ".stamps";
const FORMAT_VERSION: u32 = 1;

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

/// The text of an earlier `shares.json` for `entries` (sorted by content ID). Kept to write
/// data dirs of the earlier format in tests, and for the fuzz target's round trip.
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

/// Parses the text of an earlier `shares.json`: the error says why the whole file is
/// unreadable; an entry that is unreadable on its own is skipped (and logged).
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

/// The file name of a manifest in the earlier `manifests/` folder.
pub fn manifest_file_name(id: &Id) -> String {
    format!("{}{MANIFEST_EXT}", id.to_hex())
}

/// The file name of a folder's stamps in the earlier `manifests/` folder.
pub fn stamps_file_name(id: &Id) -> String {
    format!("{}{STAMPS_EXT}", id.to_hex())
}

/// Imports an earlier `shares.json` and `manifests/` from `data_dir` into `store` (module
/// docs); nothing to do when there is no `shares.json` (a leftover `manifests/` of an
/// interrupted import is deleted).
pub fn import_old(data_dir: &Path, store: &mut Store) -> Result<(), ContentError> {
    let mdir = data_dir.join(MANIFEST_DIR);
    let Some(listed) = load_entries(data_dir)? else {
        if mdir.is_dir() {
            remove_old_manifests(&mdir);
        }
        return Ok(());
    };
    let total = listed.len();
    let mut rows = Vec::with_capacity(total);
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_paths = std::collections::HashSet::new();
    for e in listed {
        if !seen_ids.insert(e.id) || !seen_paths.insert(e.path.clone()) {
            log::warn!("{SHARES_FILE}: duplicate entry for {} dropped", e.id);
            continue;
        }
        let loaded = load_manifest(&mdir, &e.id).and_then(|(m, bytes)| {
            let stamps = match m.as_tree() {
                Some(t) => Some(load_stamps(&mdir, &e.id, t.file_count())?),
                None => None,
            };
            Ok((m, bytes, stamps))
        });
        match loaded {
            Ok((m, bytes, stamps)) if m.total_size() == e.size => {
                let files = file_rows(&m, stamps.as_deref());
                rows.push((e, bytes, stamps.map(|s| encode_stamps(&s)), files));
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
    let kept = rows.len();
    store.put_all(
        rows.iter()
            .map(|(e, m, st, f)| (e, &m[..], st.as_deref(), &f[..])),
    )?;
    // Imported and durable: the old files are set aside (the index) and deleted (the
    // manifests, now in the store).
    let from = data_dir.join(SHARES_FILE);
    let to = data_dir.join(IMPORTED_FILE);
    fs::rename(&from, &to).map_err(|e| ContentError::io("set aside", &from, e))?;
    sync_dir(data_dir)?;
    remove_old_manifests(&mdir);
    log::warn!(
        "share index: imported {kept} of {total} shares from {} and {}/ into {} (a one-time \
         upgrade); the old index is kept as {}, the manifests folder was deleted",
        from.display(),
        mdir.display(),
        store.path().display(),
        to.display()
    );
    Ok(())
}

fn remove_old_manifests(mdir: &Path) {
    if let Ok(rd) = fs::read_dir(mdir) {
        for de in rd.flatten() {
            let name = de.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(MANIFEST_EXT) || name.ends_with(STAMPS_EXT) || name.ends_with(".tmp")
            {
                let _ = fs::remove_file(de.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(mdir) {
        log::warn!("{}: not removed ({e})", mdir.display());
    }
}

/// Reads `shares.json`; `None` when there is none. A corrupt file is set aside and counts
/// as empty.
fn load_entries(data_dir: &Path) -> Result<Option<Vec<SharedEntry>>, ContentError> {
    let p = data_dir.join(SHARES_FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ContentError::io("read", &p, e)),
    };
    match parse_entries(&text) {
        Ok(entries) => Ok(Some(entries)),
        Err(why) => {
            let aside = data_dir.join("shares.json.corrupt");
            log::warn!(
                "{} is unreadable ({why}); keeping it as {} and importing no shares from it",
                p.display(),
                aside.display()
            );
            fs::rename(&p, &aside).map_err(|e| ContentError::io("set aside", &p, e))?;
            Ok(None)
        }
    }
}

/// Loads and checks one stored manifest (it must hash to its ID and decode).
fn load_manifest(mdir: &Path, id: &Id) -> Result<(ContentManifest, Vec<u8>), String> {
    let p = mdir.join(manifest_file_name(id));
    let len = fs::metadata(&p).map_err(|e| format!("manifest {}: {e}", p.display()))?;
    if len.len() > MAX_MANIFEST_LEN as u64 {
        return Err(format!("manifest {} is too large", p.display()));
    }
    let bytes = fs::read(&p).map_err(|e| format!("manifest {}: {e}", p.display()))?;
    match ContentManifest::decode_for(id, &bytes) {
        Ok(m) => Ok((m, bytes)),
        Err(e) => Err(format!("manifest {} is damaged ({e})", p.display())),
    }
}

/// A folder share's file stamps; missing or damaged, the share is dropped (it cannot be
/// served safely without them).
fn load_stamps(mdir: &Path, id: &Id, files: usize) -> Result<Vec<FileStamp>, String> {
    let p = mdir.join(stamps_file_name(id));
    let bytes = fs::read(&p).map_err(|e| format!("stamps {}: {e}", p.display()))?;
    decode_stamps(&bytes, files).ok_or_else(|| format!("stamps {} are damaged", p.display()))
}
