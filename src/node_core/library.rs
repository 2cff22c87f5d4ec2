//! The node's library: every content it knows, in one map from content ID to what it is
//! here ([`Entry`]: shared, downloading, or downloaded), plus the transfer engine that moves
//! it. This is the one owner of a download's bookkeeping: its name, its folder, who waits
//! for it and since when. Its chunks are the engine's (the scheduler's bits are the only
//! in-memory record of what is verified), and its bytes are the storage's.
//!
//! No I/O here: file work leaves as [`StorageJob`]s ([`Library::poll_job`]) and comes back
//! as [`StorageDone`]s ([`Library::on_storage_done`]); API replies leave as [`Reply`]s
//! ([`Library::take_replies`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::reply;
use crate::api::ReplyTo;
use crate::content::names::safe_file_name_or_fallback;
use crate::id::Id;
use crate::storage::job::{
    DownloadRecord, FinishError, Inventory, ShareInfo, StorageDone, StorageJob, StoreOutcome,
};
use crate::transfer::engine::{Engine, EngineConfig};

/// How long a `local_request_file` waits on a download that has no peer and makes no
/// progress before it is answered with an error (the download itself goes on).
pub const STALLED_REPLY: Duration = Duration::from_secs(60);

/// How long a `local_request_file` waits for the first peer before answering that nobody
/// provides the content.
pub const NO_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply for a waiting API request.
#[derive(Debug)]
pub struct Reply {
    /// Who.
    pub to: ReplyTo,
    /// The reply bytes.
    pub bytes: Vec<u8>,
}

/// What a content is to this node.
#[derive(Debug)]
enum Entry {
    /// A complete file, served to others: added here, or downloaded (then `downloaded`).
    Shared { info: ShareInfo, downloaded: bool },
    /// Being downloaded.
    Downloading(Download),
}

/// A download's bookkeeping (its chunks are the engine's).
#[derive(Debug)]
struct Download {
    /// The publisher's file name, once known.
    name: Option<String>,
    /// Where it goes.
    output_dir: PathBuf,
    /// API requests waiting for it.
    waiters: Vec<ReplyTo>,
    /// When it was asked for (None: resumed at start; no "nobody has it" deadline).
    started: Option<Instant>,
    /// With waiters: verified bytes at the last check, and since when unchanged.
    last_progress: Option<(u64, Instant)>,
}

/// The node's contents (see the module docs).
pub struct Library {
    /// The protocol engine (connections, chunks, scheduling).
    pub engine: Engine,
    entries: BTreeMap<Id, Entry>,
    download_dir: PathBuf,
    jobs: VecDeque<StorageJob>,
    /// Replies produced by commands and results.
    replies: Vec<Reply>,
    /// Contents no longer shared or downloaded (the node stops announcing them).
    withdrawn: Vec<Id>,
    /// `cancel_transfer` requests, answered once the partial data is deleted: who asked
    /// and how many verified bytes were thrown away.
    cancelling: Vec<(Id, ReplyTo, u64)>,
}

impl Library {
    /// The library of what `inv` lists: shares are served and announced, downloads with a
    /// stored manifest resume.
    pub fn new(
        inv: Inventory,
        download_dir: PathBuf,
        node_id: Id,
        listen_port: u16,
        engine_cfg: EngineConfig,
        seed: u64,
        now: Instant,
    ) -> Library {
        let mut lib = Library {
            engine: Engine::new(node_id, listen_port, engine_cfg, seed),
            entries: BTreeMap::new(),
            download_dir,
            jobs: VecDeque::new(),
            replies: Vec::new(),
            withdrawn: Vec::new(),
            cancelling: Vec::new(),
        };
        for info in inv.shares {
            lib.engine
                .share(info.manifest.clone(), Some(info.name.clone()));
            lib.entries.insert(
                info.manifest.content_id(),
                Entry::Shared {
                    info,
                    downloaded: false,
                },
            );
        }
        let mut records: HashMap<Id, DownloadRecord> = HashMap::new();
        for r in inv.downloads {
            if let Ok(id) = Id::from_hex(&r.content_id) {
                records.insert(id, r);
            }
        }
        // Resume what was downloading when the node stopped (or was killed).
        for m in inv.resumable {
            let id = m.content_id();
            if lib.entries.contains_key(&id) {
                continue;
            }
            let record = records.remove(&id);
            let name = record.as_ref().and_then(|r| r.name.clone());
            let output_dir = record.map_or_else(|| lib.download_dir.clone(), |r| r.output_dir);
            log::info!("resuming download {id}");
            lib.entries.insert(
                id,
                Entry::Downloading(Download {
                    name: name.clone(),
                    output_dir,
                    waiters: Vec::new(),
                    started: None,
                    last_progress: None,
                }),
            );
            lib.engine.download(now, id, Some(m), name);
        }
        // Downloads that never got their manifest are not resumed (nothing to verify
        // against yet); asking again starts them anew.
        lib.save_downloads();
        lib
    }

    // ----- queries ------------------------------------------------------------------

    /// Content IDs this node shares (added or downloaded).
    pub fn shared_ids(&self) -> Vec<Id> {
        self.shares().map(|(id, _)| *id).collect()
    }

    fn shares(&self) -> impl Iterator<Item = (&Id, &ShareInfo)> {
        self.entries.iter().filter_map(|(id, e)| match e {
            Entry::Shared { info, .. } => Some((id, info)),
            Entry::Downloading(_) => None,
        })
    }

    /// Whether this node has the content: it shares it, or downloaded and verified it (the
    /// ledger registers only such content).
    pub fn knows(&self, id: &Id) -> bool {
        matches!(self.entries.get(id), Some(Entry::Shared { .. }))
    }

    /// `{content_id, filename, size, num_chunks}` for every shared file.
    pub fn shared_summaries(&self) -> Vec<(Id, String, u64, u32)> {
        self.shares()
            .map(|(id, i)| {
                (
                    *id,
                    i.name.clone(),
                    i.size,
                    i.manifest.lengths().chunk_count(),
                )
            })
            .collect()
    }

    // ----- API commands -------------------------------------------------------------

    /// `local_add_file`: hashed by the storage, then shared and announced.
    pub fn add_file(&mut self, path: PathBuf, reply: ReplyTo) {
        self.jobs.push_back(StorageJob::AddFile { path, reply });
    }

    /// `local_request_file`: `Some(reply)` when the file is already here; `None` when `to`
    /// will be answered once the download completes. `output_dir` is absolute and exists
    /// (the API edge made it so); `None` is the node's download folder.
    pub fn request_file(
        &mut self,
        now: Instant,
        id: Id,
        output_dir: Option<PathBuf>,
        peers: &[std::net::SocketAddr],
        to: ReplyTo,
    ) -> Option<Vec<u8>> {
        match self.entries.get_mut(&id) {
            Some(Entry::Shared { info, .. }) => {
                return Some(reply::success(obj(json!({
                    "message": "File already available locally",
                    "filename": info.name,
                    "file_path": info.path.display().to_string(),
                    "content_hash": id.to_hex(),
                }))));
            }
            Some(Entry::Downloading(d)) => {
                d.waiters.push(to);
                if self.engine.progress(&id).is_none() {
                    self.engine.download(now, id, None, None);
                }
            }
            None => {
                let output_dir = output_dir.unwrap_or_else(|| self.download_dir.clone());
                self.entries.insert(
                    id,
                    Entry::Downloading(Download {
                        name: None,
                        output_dir,
                        waiters: vec![to],
                        started: Some(now),
                        last_progress: None,
                    }),
                );
                self.save_downloads();
                self.engine.download(now, id, None, None);
            }
        }
        if !peers.is_empty() {
            self.engine.add_peers(now, &id, peers);
        }
        None
    }

    /// `cancel_transfer`: stops the download of `id`, deletes its partial data and answers
    /// the requests waiting for it. The node stops announcing it. `to` is answered once the
    /// data is deleted. Fails if no download of `id` is in progress.
    pub fn cancel(&mut self, id: &Id, to: ReplyTo) -> Result<(), String> {
        // A download whose last chunk is in is being finished: too late to cancel.
        let finishing = self.engine.progress(id).is_some_and(|p| p.complete);
        if !matches!(self.entries.get(id), Some(Entry::Downloading(_))) || finishing {
            return Err(format!("no download of {} in progress", id.to_hex()));
        }
        let have = self.engine.progress(id).map_or(0, |p| p.have_bytes);
        self.engine.cancel(id);
        if let Some(Entry::Downloading(d)) = self.entries.remove(id) {
            for w in d.waiters {
                self.replies.push(Reply {
                    to: w,
                    bytes: reply::error(&format!("download of {} cancelled", id.to_hex())),
                });
            }
        }
        self.save_downloads();
        self.jobs.push_back(StorageJob::Discard { content: *id });
        self.cancelling.push((*id, to, have));
        self.withdrawn.push(*id);
        log::info!("download {id} cancelled ({have} bytes verified were discarded)");
        Ok(())
    }

    /// Progress of one transfer, or all, as JSON for `transfer_status`.
    pub fn status_json(&self, only: Option<Id>) -> Value {
        let ids: Vec<Id> = match only {
            Some(id) => vec![id],
            None => self.engine.contents().copied().collect(),
        };
        let list: Vec<Value> = ids
            .iter()
            .filter_map(|id| {
                let p = self.engine.progress(id)?;
                let entry = self.entries.get(id);
                let downloading = matches!(entry, Some(Entry::Downloading(_)));
                let file_path = match entry {
                    Some(Entry::Shared {
                        info,
                        downloaded: true,
                    }) => Some(info.path.display().to_string()),
                    _ => None,
                };
                Some(json!({
                    "content_hash": id.to_hex(),
                    "name": p.name,
                    "size": p.size,
                    "have_bytes": p.have_bytes,
                    "chunks_have": p.chunks_have,
                    "chunks_total": p.chunks_total,
                    "peers": p.peers,
                    "has_manifest": p.has_manifest,
                    "complete": p.complete,
                    "downloading": downloading && !p.complete,
                    "file_path": file_path,
                }))
            })
            .collect();
        json!({ "transfers": list })
    }

    // ----- time ---------------------------------------------------------------------

    /// Answers requests waiting on downloads that stalled, and drops downloads nobody
    /// provided in time (their requests are answered with an error).
    pub fn expire_waits(&mut self, now: Instant) {
        let mut unfound = Vec::new();
        for (id, e) in self.entries.iter_mut() {
            let Entry::Downloading(d) = e else {
                continue;
            };
            let Some(p) = self.engine.progress(id) else {
                continue;
            };
            if !p.has_manifest {
                if d.started
                    .is_some_and(|t| now.saturating_duration_since(t) >= NO_PEER_TIMEOUT)
                {
                    unfound.push(*id);
                }
                continue;
            }
            // Requests waiting on a download that has its manifest but made no progress
            // for a while with nobody connected are answered (the download goes on in the
            // background; asking again reattaches to it).
            if d.waiters.is_empty() || p.complete {
                d.last_progress = None;
                continue;
            }
            let last = d.last_progress.get_or_insert((p.have_bytes, now));
            if p.have_bytes != last.0 || p.peers > 0 {
                *last = (p.have_bytes, now);
                continue;
            }
            if now.saturating_duration_since(last.1) >= STALLED_REPLY {
                d.last_progress = None;
                for w in d.waiters.drain(..) {
                    self.replies.push(Reply {
                        to: w,
                        bytes: reply::error(&format!(
                            "download of {} stalled at {} of {} bytes: no peer currently serves the missing chunks (it continues in the background; ask again to wait for it)",
                            id.to_hex(),
                            p.have_bytes,
                            p.size
                        )),
                    });
                }
            }
        }
        for id in unfound {
            self.engine.cancel(&id);
            if let Some(Entry::Downloading(d)) = self.entries.remove(&id) {
                for w in d.waiters {
                    self.replies.push(Reply {
                        to: w,
                        bytes: reply::error(&format!(
                            "no peer provides content {} (searched the DHT for {} s)",
                            id.to_hex(),
                            NO_PEER_TIMEOUT.as_secs()
                        )),
                    });
                }
            }
            self.save_downloads();
        }
    }

    // ----- engine outputs and storage results ---------------------------------------

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
                    Ok(have) => {
                        // Remember the name now that the manifest is in: a resumed download
                        // finishes under the right name.
                        let name = self.engine.progress(&content).and_then(|p| p.name);
                        if let Some(Entry::Downloading(d)) = self.entries.get_mut(&content) {
                            if name.is_some() {
                                d.name = name;
                            }
                        }
                        self.save_downloads();
                        self.engine.partial_opened(now, content, Some(have));
                    }
                    Err(e) => {
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
            StorageDone::Added { reply: to, result } => {
                let bytes = match result {
                    Ok(info) => {
                        let m = info.manifest.clone();
                        let id = m.content_id();
                        self.engine.share(m.clone(), Some(info.name.clone()));
                        let bytes = reply::success(obj(json!({
                            "message": "File added",
                            "file_hash": id.to_hex(),
                            "filename": info.name,
                            "size": info.size,
                            "num_chunks": m.lengths().chunk_count(),
                        })));
                        self.entries.insert(
                            id,
                            Entry::Shared {
                                info,
                                downloaded: false,
                            },
                        );
                        bytes
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
                let waiters = match self.entries.remove(&content) {
                    Some(Entry::Downloading(d)) => d.waiters,
                    _ => Vec::new(),
                };
                self.save_downloads();
                let filename = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(m) = self.engine.manifest(&content) {
                    let info = ShareInfo {
                        size: m.file_size(),
                        manifest: m,
                        name: filename.clone(),
                        path: path.clone(),
                    };
                    self.entries.insert(
                        content,
                        Entry::Shared {
                            info,
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
            Err(FinishError::HashMismatch) => {
                log::error!("download {content}: whole-file hash mismatch after every chunk verified; starting over");
                self.engine.finished(now, content, false);
            }
            Err(FinishError::Io(e)) => {
                log::error!("download {content}: finishing failed: {e}");
                self.engine.finished(now, content, false);
            }
        }
    }

    /// Stops sharing content whose file changed or disappeared: its connections close, it
    /// leaves the share index (so it is no longer listed), and the node stops announcing
    /// it. Adding the file again shares it anew.
    fn withdraw(&mut self, id: &Id) {
        if !matches!(self.entries.get(id), Some(Entry::Shared { .. })) {
            return;
        }
        log::warn!("content {id}: its file changed or disappeared; no longer sharing it");
        self.entries.remove(id);
        self.engine.unshare(id);
        self.jobs.push_back(StorageJob::Unshare { content: *id });
        self.withdrawn.push(*id);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next storage job.
    #[must_use]
    pub fn poll_job(&mut self) -> Option<StorageJob> {
        self.jobs.pop_front()
    }

    /// Replies for waiting requests.
    pub fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.replies)
    }

    /// Contents withdrawn since the last call (the node stops announcing them).
    pub fn take_withdrawn(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.withdrawn)
    }

    fn save_downloads(&mut self) {
        let list: Vec<DownloadRecord> = self
            .entries
            .iter()
            .filter_map(|(id, e)| match e {
                Entry::Downloading(d) => Some(DownloadRecord {
                    content_id: id.to_hex(),
                    name: d.name.clone(),
                    output_dir: d.output_dir.clone(),
                }),
                Entry::Shared { .. } => None,
            })
            .collect();
        self.jobs.push_back(StorageJob::SaveDownloads(list));
    }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
