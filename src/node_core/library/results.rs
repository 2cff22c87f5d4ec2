//! The library's inputs from its engine and its storage: jobs the engine asks for, a
//! download's last chunk, and every storage result (chunks stored, partial files opened,
//! downloads finished or discarded, files added).

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::pause::Paused;
use super::{obj, Completed, Entry, Library, Reply, Share};
use crate::api::reply;
use crate::content::names::safe_file_name_or_fallback;
use crate::id::Id;
use crate::storage::job::{
    FinishError, ShareInfo, StorageDone, StorageError, StorageJob, StoreOutcome,
};

impl Library {
    /// Queues a file job of the engine's (`engine::Action::Storage`) for the storage.
    pub fn queue_job(&mut self, job: StorageJob) {
        self.jobs.push_back(job);
    }

    /// Every chunk of `content` is verified (`engine::Action::Finish`): the file gets its folder
    /// and its (safe) name here, and the storage finishes it.
    pub fn finish(&mut self, content: Id) {
        let (dir, name) = match self.entries.get(&content) {
            Some(Entry::Downloading(d)) => (d.output_dir.clone(), d.name.clone()),
            _ => (self.download_dir.clone(), None),
        };
        let name = self
            .engine
            .progress(&content)
            .and_then(|p| p.name)
            .or(name)
            .unwrap_or_default();
        let name = safe_file_name_or_fallback(&name, &content);
        self.jobs
            .push_back(StorageJob::Finish { content, dir, name });
    }

    /// Applies a storage result.
    pub fn on_storage_done(&mut self, now: Instant, done: StorageDone) {
        match done {
            StorageDone::ChunkRead {
                conn,
                content,
                chunk,
                data,
                changed,
            } => {
                self.engine.chunk_read(now, conn, chunk, data);
                if changed {
                    self.withdraw(&content);
                }
            }
            StorageDone::SharesChecked { changed, next } => {
                for id in changed {
                    self.withdraw(&id);
                }
                if next.is_some() {
                    self.jobs.push_back(StorageJob::CheckShares { after: next });
                }
            }
            StorageDone::ChunkStored {
                content,
                chunk,
                from,
                outcome,
            } => {
                let result = match outcome {
                    StoreOutcome::Stored => Some(true),
                    StoreOutcome::BadHash => Some(false),
                    StoreOutcome::Failed(_) => None,
                    StoreOutcome::NoSpace { dir } => {
                        self.pause(
                            content,
                            Paused::DiskFull(format!("no space left in {}", dir.display())),
                        );
                        return;
                    }
                };
                self.engine.chunk_stored(now, content, chunk, from, result);
            }
            StorageDone::ChunkChecked { content, from, ok } => {
                self.engine.chunk_checked(now, content, from, ok)
            }
            StorageDone::PartialOpened { content, result } => {
                if !matches!(self.entries.get(&content), Some(Entry::Downloading(_))) {
                    // Cancelled while the file was being opened.
                    if result.is_ok() {
                        self.jobs.push_back(StorageJob::Discard { content });
                    }
                    return;
                }
                match result {
                    Err(StorageError::NoSpace { dir }) => {
                        let manifest = self.engine.manifest(&content);
                        let size = manifest.as_ref().map_or(0, |m| m.total_size());
                        if let Some(Entry::Downloading(d)) = self.entries.get_mut(&content) {
                            d.manifest = manifest;
                        }
                        let why = Paused::DiskFull(format!(
                            "no space left in {} for its {size} bytes",
                            dir.display()
                        ));
                        // `pause` tells the engine to let it go (it had not opened it yet).
                        self.pause(content, why);
                    }
                    Ok(have) => {
                        // Remember the name now that the manifest is in: a resumed download
                        // finishes under the right name.
                        let name = self.engine.progress(&content).and_then(|p| p.name);
                        let manifest = self.engine.manifest(&content);
                        if let Some(Entry::Downloading(d)) = self.entries.get_mut(&content) {
                            if name.is_some() {
                                d.name = name;
                            }
                            d.manifest = manifest;
                            d.opened = true;
                        }
                        self.save_downloads();
                        self.engine.partial_opened(now, content, Some(have));
                    }
                    Err(e @ StorageError::Other(_)) => {
                        log::error!("download {content}: {e}");
                        // The engine forgets it; so does the library (asking again retries).
                        self.engine.partial_opened(now, content, None);
                        if let Some(Entry::Downloading(d)) = self.entries.remove(&content) {
                            for w in d.waiters {
                                self.replies.push(Reply {
                                    to: w,
                                    bytes: reply::error(&format!("download failed: {e}")),
                                });
                            }
                        }
                        self.save_downloads();
                    }
                }
            }
            StorageDone::Finished { content, result } => self.finished(now, content, result),
            StorageDone::Discarded { content } => {
                let (done, rest) = std::mem::take(&mut self.cancelling)
                    .into_iter()
                    .partition(|(id, _, _)| *id == content);
                self.cancelling = rest;
                for (_, to, discarded) in done {
                    self.replies.push(Reply {
                        to,
                        bytes: reply::success(obj(json!({
                            "message": "Download cancelled",
                            "content_hash": content.to_hex(),
                            "discarded_bytes": discarded,
                        }))),
                    });
                }
            }
            StorageDone::CopiedOut {
                content,
                from,
                reply,
                result,
            } => self.copied_out(content, &from, reply, result),
            // The node's settings, not the library's (`NodeCore::handle_storage`).
            StorageDone::Config { .. } => {}
            StorageDone::Added { reply: to, result } => {
                let bytes = match result {
                    Ok(info) => {
                        let m = info.manifest.clone();
                        let id = m.content_id();
                        self.engine.share(m.clone(), Some(info.name.clone()));
                        let mut fields = json!({
                            "message": "File added",
                            "file_hash": id.to_hex(),
                            "filename": info.name,
                            "size": info.size,
                            "num_chunks": m.chunk_count(),
                        });
                        if let Some(t) = m.as_tree() {
                            // api.md 5.2: a folder says how many files it shares and what
                            // it left out, so nothing is skipped silently.
                            fields["message"] = json!("Folder added");
                            fields["num_files"] = json!(t.file_count());
                            fields["skipped"] = json!(info.skipped);
                        }
                        let bytes = reply::success(obj(fields));
                        self.entries.insert(
                            id,
                            Entry::Shared {
                                info: Share::new(info),
                                downloaded: false,
                            },
                        );
                        self.added.push((id, Reply { to, bytes }));
                        return;
                    }
                    Err(e) => reply::error(&format!("cannot add file: {e}")),
                };
                self.replies.push(Reply { to, bytes });
            }
        }
    }

    fn finished(&mut self, now: Instant, content: Id, result: Result<PathBuf, FinishError>) {
        match result {
            Ok(path) => {
                log::info!("download {content} complete: {}", path.display());
                self.engine.finished(now, content, true);
                let (waiters, only) = match self.entries.remove(&content) {
                    Some(Entry::Downloading(d)) => (d.waiters, d.only),
                    _ => (Vec::new(), None),
                };
                self.save_downloads();
                let filename = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.completed.push(Completed {
                    content,
                    path: path.clone(),
                    name: filename.clone(),
                    size: self.engine.manifest(&content).map_or(0, |m| m.total_size()),
                });
                if let Some(m) = self.engine.manifest(&content) {
                    let info = ShareInfo {
                        size: m.total_size(),
                        have: self.engine.held_chunks(&content),
                        // Part of a folder: the files selected (empty ones included).
                        files_here: only.as_ref().zip(m.as_tree()).map(|(sel, t)| {
                            sel.entries(t)
                                .iter()
                                .enumerate()
                                .filter(|&(k, w)| *w && t.file_number(k).is_some())
                                .count()
                        }),
                        manifest: m,
                        name: filename.clone(),
                        path: path.clone(),
                        skipped: Vec::new(),
                    };
                    self.entries.insert(
                        content,
                        Entry::Shared {
                            info: Share::new(info),
                            downloaded: true,
                        },
                    );
                }
                for w in waiters {
                    self.replies.push(Reply {
                        to: w,
                        bytes: reply::success(obj(json!({
                            "message": "File downloaded successfully",
                            "file_path": path.display().to_string(),
                            "filename": filename,
                            "content_hash": content.to_hex(),
                        }))),
                    });
                }
            }
            Err(FinishError::NoSpace { dir }) => {
                // Every chunk is verified and kept: only the final copy did not fit.
                let why = Paused::DiskFull(format!(
                    "no space left in {} for the finished file",
                    dir.display()
                ));
                self.pause(content, why);
            }
            Err(FinishError::DamagedOnDisk { bad_chunks }) => {
                log::error!(
                    "download {content}: {bad_chunks} chunk(s) recorded as verified were \
                     damaged on disk; reopening it to fetch them again"
                );
                self.engine.finished(now, content, false);
            }
            Err(FinishError::Io(e)) => {
                log::error!("download {content}: finishing failed: {e}");
                self.engine.finished(now, content, false);
            }
        }
    }
}
