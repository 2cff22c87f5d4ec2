//! What the library tells about its contents: `transfer_status`, the folders downloads go
//! to, and the reply to a copy of local content into another folder.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{obj, Entry, Library, Reply};
use crate::api::reply;
use crate::api::ReplyTo;
use crate::id::Id;
use crate::node_core::view::Rates;

impl Library {
    /// Each download in progress and the folder it goes to.
    pub fn download_dirs(&self) -> Vec<(Id, PathBuf)> {
        let dirs = self.entries.downloads();
        dirs.map(|(id, d)| (*id, d.output_dir.clone())).collect()
    }

    /// Progress of one transfer, or all, as JSON for `transfer_status`, with the `rates`
    /// the driver measured.
    pub fn status_json(&self, only: Option<Id>, rates: &Rates) -> Value {
        let mut ids: Vec<Id> = match only {
            Some(id) => vec![id],
            None => self.engine.contents().copied().collect(),
        };
        if only.is_none() {
            // Paused downloads: the engine has let them go, the library has not.
            ids.extend(
                self.entries
                    .downloads()
                    .filter(|(_, d)| d.paused.is_some())
                    .map(|(id, _)| *id),
            );
            ids.sort_unstable();
            ids.dedup();
        }
        let list: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.status_of(id, rates))
            .collect();
        json!({ "transfers": list })
    }

    fn status_of(&self, id: &Id, rates: &Rates) -> Option<Value> {
        let entry = self.entries.get(id);
        let download = match entry {
            Some(Entry::Downloading(d)) => Some(d),
            _ => None,
        };
        let p = match (self.engine.progress(id), download) {
            (Some(p), _) => p,
            (None, Some(d)) if d.paused.is_some() => {
                let m = d.manifest.as_ref();
                crate::transfer::engine::Progress {
                    size: m.map_or(0, |m| m.total_size()),
                    have_bytes: d.known_bytes,
                    chunks_total: m.map_or(0, |m| m.chunk_count()),
                    has_manifest: m.is_some(),
                    name: d.name.clone(),
                    ..Default::default()
                }
            }
            (None, _) => return None,
        };
        // Until its partial file is open again, a resumed download's progress is what its
        // resume record said (the engine counts from the reopened file).
        let have_bytes = match download {
            Some(d) if !d.opened => p.have_bytes.max(d.known_bytes),
            _ => p.have_bytes,
        };
        let file_path = match entry {
            Some(Entry::Shared {
                info,
                downloaded: true,
            }) => Some(info.path.display().to_string()),
            _ => None,
        };
        let mut v = json!({
            "content_hash": id.to_hex(),
            "name": p.name,
            "size": p.size,
            "have_bytes": have_bytes,
            "chunks_have": p.chunks_have,
            "chunks_total": p.chunks_total,
            "peers": p.peers,
            "has_manifest": p.has_manifest,
            "complete": p.complete,
            "downloading": download.is_some_and(|d| d.paused.is_none()) && !p.complete,
            "file_path": file_path,
            "down_rate": rates.transfer(id).down,
            "up_rate": rates.transfer(id).up,
        });
        // A folder says how many of its files are verified (a file's reply is unchanged).
        if let (Some((done, all)), Value::Object(m)) = (self.engine.files_progress(id), &mut v) {
            m.insert("num_files".into(), Value::from(all));
            m.insert("files_done".into(), Value::from(done));
        }
        // Only a paused download has `paused` (replies stay as they were for the others).
        if let (Some(why), Value::Object(m)) = (download.and_then(|d| d.paused.as_ref()), &mut v) {
            m.insert("paused".into(), Value::from(why.describe()));
            m.insert("paused_reason".into(), Value::from(why.reason()));
        }
        Some(v)
    }

    /// [`StorageDone::CopiedOut`](crate::storage::job::StorageDone::CopiedOut): the reply
    /// of a `local_request_file` for local content into another folder: as for content
    /// already here, with the copy's path and where it was copied from.
    pub(super) fn copied_out(
        &mut self,
        content: Id,
        from: &Path,
        to: ReplyTo,
        result: Result<PathBuf, String>,
    ) {
        let bytes = match result {
            Ok(path) => reply::success(obj(json!({
                "message": "File already available locally",
                "filename": path.file_name().map(|n| n.to_string_lossy()),
                "file_path": path.display().to_string(),
                "content_hash": content.to_hex(),
                "copied_from": from.display().to_string(),
            }))),
            Err(e) => reply::error(&e),
        };
        self.replies.push(Reply { to, bytes });
    }
}

/// Why a second `local_request_file` naming another folder is refused while `id` downloads
/// into `dir` (the file would otherwise go to `dir` only, the other folder left empty).
pub fn already_downloading(id: &Id, dir: &Path) -> String {
    format!(
        "already downloading {id} into {}; wait for it or cancel it (cancel_transfer)",
        dir.display()
    )
}
