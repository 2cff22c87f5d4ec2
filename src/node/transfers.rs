//! The node's file side of transfers: the share index, open files, partial downloads and the
//! worker jobs that read, verify, store and finish chunks for the sans-IO
//! [`Engine`](crate::transfer::engine::Engine).
//!
//! Everything here runs on the event-loop thread except the jobs, which run on workers and
//! report back as [`TransferDone`] through the loop's completion channel. Locks: the share
//! index and each partial file sit behind their own `parking_lot::Mutex`; a job takes at most
//! one of them at a time, hashes outside the lock, and never holds a lock across a channel
//! send.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::content::index::{prepare_share, ChunkReader, ShareIndex, SharedEntry};
use crate::content::manifest::Manifest;
use crate::content::names::safe_file_name_or_fallback;
use crate::content::partial::{resumable_downloads, PartialFile, PartialReader};
use crate::id::Id;
use crate::transfer::bitset::BitSet;
use crate::transfer::engine::{Action, ConnId, Engine, EngineConfig};

/// How often a download's resume record is made durable while it runs. Chunks written since
/// the last record are not lost on a crash: they are re-hashed from the partial file when the
/// download resumes. So this only bounds the re-hashing, and the fsyncs stay rare.
pub const RECORD_EVERY: Duration = Duration::from_secs(10);

/// How long a `local_request_file` waits on a download that has no peer and makes no
/// progress before it is answered with an error (the download itself goes on).
pub const STALLED_REPLY: Duration = Duration::from_secs(60);

/// How long a `local_request_file` waits for the first peer before answering that nobody
/// provides the content.
pub const NO_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// A partial download and when its resume record was last made durable.
pub struct PartialSlot {
    file: PartialFile,
    last_record: Instant,
}

/// An opened partial download: the file (behind its lock), a lock-free reader for serving,
/// and which chunks are already verified on disk.
pub type OpenedPartial = (Arc<Mutex<PartialSlot>>, PartialReader, Vec<bool>);

/// Results of transfer jobs, handled back on the loop by [`Transfers::on_done`].
pub enum TransferDone {
    /// A chunk read for upload (None: the file changed or could not be read).
    ChunkRead {
        /// Connection.
        conn: ConnId,
        /// Chunk.
        chunk: u32,
        /// Its bytes.
        data: Option<Arc<Vec<u8>>>,
        /// Set when the shared file changed or disappeared: the share is withdrawn.
        withdrawn: Option<Id>,
    },
    /// A downloaded chunk was verified and stored (Some(true)), failed its hash
    /// (Some(false)) or could not be written (None).
    ChunkStored {
        /// Content.
        content: Id,
        /// Chunk.
        chunk: u32,
        /// The sender.
        from: ConnId,
        /// Outcome.
        result: Option<bool>,
    },
    /// A copy of a chunk that was not needed was checked.
    ChunkChecked {
        /// Content.
        content: Id,
        /// The sender.
        from: ConnId,
        /// Whether its hash matched.
        ok: bool,
    },
    /// A partial file was opened (or recovered after a crash).
    PartialOpened {
        /// Content.
        content: Id,
        /// The file, its reader and the verified chunks, or why it failed.
        result: Result<OpenedPartial, String>,
    },
    /// A finished download was checked and moved to its final name.
    Finished {
        /// Content.
        content: Id,
        /// The final path, or why it failed.
        result: Result<PathBuf, String>,
    },
    /// `local_add_file` hashed and indexed a file.
    Added {
        /// Who asked.
        waiter: Waiter,
        /// The entry and its manifest, or why it failed.
        result: Result<(SharedEntry, Arc<Manifest>), String>,
    },
}

/// An API request waiting for a transfer: its connection token and reply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The API connection.
    pub token: mio::Token,
    /// The reply's place in that connection's order.
    pub seq: u64,
}

/// A reply for a waiting API request.
pub struct Reply {
    /// Who.
    pub waiter: Waiter,
    /// The reply bytes.
    pub bytes: Vec<u8>,
}

enum Source {
    Shared(Arc<ChunkReader>),
    Partial(PartialReader),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DownloadMeta {
    content_id: String,
    name: Option<String>,
    output_dir: PathBuf,
}

/// A worker-pool handle: how jobs are run.
pub trait Spawner {
    /// Runs `job` on a worker; false if the pool is saturated.
    fn spawn(&self, job: Box<dyn FnOnce() -> TransferDone + Send>) -> bool;
}

/// The node's transfers.
pub struct Transfers {
    /// The protocol engine.
    pub engine: Engine,
    index: Arc<Mutex<ShareIndex>>,
    data_dir: PathBuf,
    download_dir: PathBuf,
    sources: HashMap<Id, Source>,
    partials: HashMap<Id, Arc<Mutex<PartialSlot>>>,
    downloads: HashMap<Id, DownloadMeta>,
    waiters: HashMap<Id, Vec<Waiter>>,
    started: HashMap<Id, Instant>,
    completed: HashMap<Id, PathBuf>,
    withdrawn: Vec<Id>,
    /// Replies produced outside job completions (see [`Transfers::take_replies`]).
    replies: Vec<Reply>,
    /// Per download with waiting requests: bytes verified at the last check, and since when.
    last_progress: HashMap<Id, (u64, Instant)>,
}

impl Transfers {
    /// Opens the share index, shares what it lists, and resumes unfinished downloads.
    pub fn open(
        data_dir: &Path,
        download_dir: PathBuf,
        node_id: Id,
        listen_port: u16,
        engine_cfg: EngineConfig,
        now: Instant,
    ) -> Result<Transfers, String> {
        let index = ShareIndex::open(data_dir).map_err(|e| format!("share index: {e}"))?;
        let mut engine = Engine::new(node_id, listen_port, engine_cfg, rand::random());
        let mut sources = HashMap::new();
        for e in index.list() {
            let Some(m) = index.manifest(&e.id) else {
                continue;
            };
            match ChunkReader::open(e, m.lengths()) {
                Ok(r) => {
                    sources.insert(e.id, Source::Shared(Arc::new(r)));
                    engine.share(m, Some(e.name.clone()));
                }
                Err(err) => log::warn!("not sharing {}: {err}", e.path.display()),
            }
        }
        let metas: Vec<DownloadMeta> = fs::read(data_dir.join(META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut downloads = HashMap::new();
        for m in metas {
            if let Ok(id) = Id::from_hex(&m.content_id) {
                downloads.insert(id, m);
            }
        }
        let mut t = Transfers {
            engine,
            index: Arc::new(Mutex::new(index)),
            data_dir: data_dir.to_path_buf(),
            download_dir,
            sources,
            partials: HashMap::new(),
            downloads,
            waiters: HashMap::new(),
            started: HashMap::new(),
            completed: HashMap::new(),
            withdrawn: Vec::new(),
            replies: Vec::new(),
            last_progress: HashMap::new(),
        };
        // Resume what was downloading when the node stopped (or was killed).
        match resumable_downloads(data_dir) {
            Ok(ms) => {
                for m in ms {
                    let id = m.content_id();
                    if t.index.lock().get(&id).is_some() {
                        continue;
                    }
                    let name = t.downloads.get(&id).and_then(|d| d.name.clone());
                    log::info!("resuming download {id}");
                    t.engine.download(now, id, Some(m), name);
                }
            }
            Err(e) => log::warn!("cannot list unfinished downloads: {e}"),
        }
        Ok(t)
    }

    /// Content IDs this node shares or has completed.
    pub fn shared_ids(&self) -> Vec<Id> {
        self.index.lock().list().iter().map(|e| e.id).collect()
    }

    /// Whether this node has the content: it shares it, or downloaded and verified it (the
    /// ledger registers only such content).
    pub fn knows(&self, id: &Id) -> bool {
        self.completed.contains_key(id) || self.index.lock().get(id).is_some()
    }

    /// `{content_id, filename, size, num_chunks}` for every shared file.
    pub fn shared_summaries(&self) -> Vec<(Id, String, u64, u32)> {
        let idx = self.index.lock();
        idx.list()
            .iter()
            .map(|e| {
                let chunks = idx.manifest(&e.id).map_or(0, |m| m.lengths().chunk_count());
                (e.id, e.name.clone(), e.size, chunks)
            })
            .collect()
    }

    // ----- API commands -------------------------------------------------------------

    /// `local_add_file`: hash on a worker, then index, share and announce.
    pub fn add_file(&self, path: PathBuf, waiter: Waiter, spawner: &dyn Spawner) -> bool {
        let index = self.index.clone();
        spawner.spawn(Box::new(move || {
            let result = prepare_share(&path, &|_| {})
                .and_then(|p| {
                    let m = p.manifest.clone();
                    index.lock().commit(p).map(|e| (e, m))
                })
                .map_err(|e| e.to_string());
            TransferDone::Added { waiter, result }
        }))
    }

    /// `local_request_file`: `Ok(Some(reply))` when the file is already here; `Ok(None)`
    /// when the waiter will be answered once the download completes.
    pub fn request_file(
        &mut self,
        now: Instant,
        id: Id,
        output_dir: Option<PathBuf>,
        peers: &[std::net::SocketAddr],
        waiter: Waiter,
    ) -> Result<Option<Vec<u8>>, String> {
        if let Some(e) = self.index.lock().get(&id) {
            return Ok(Some(crate::api::reply::success(obj(serde_json::json!({
                "message": "File already available locally",
                "filename": e.name,
                "file_path": e.path.display().to_string(),
                "content_hash": id.to_hex(),
            })))));
        }
        let out = match output_dir {
            Some(d) => d,
            None => self.download_dir.clone(),
        };
        fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create output folder {}: {e}", out.display()))?;
        if !out.is_dir() {
            return Err(format!(
                "output folder {} is not a directory",
                out.display()
            ));
        }
        // Kept absolute: a relative folder would be resolved against the node's working
        // directory again at every restart, and the reply's `file_path` would be relative.
        let out = fs::canonicalize(&out)
            .map_err(|e| format!("cannot resolve output folder {}: {e}", out.display()))?;
        self.waiters.entry(id).or_default().push(waiter);
        if self.engine.progress(&id).is_none() {
            self.downloads.insert(
                id,
                DownloadMeta {
                    content_id: id.to_hex(),
                    name: None,
                    output_dir: out,
                },
            );
            self.save_meta();
            self.started.insert(id, now);
            self.engine.download(now, id, None, None);
        }
        if !peers.is_empty() {
            self.engine.add_peers(now, &id, peers);
        }
        Ok(None)
    }

    /// Waiters of downloads that found no peer in time: answered with an error and the
    /// download dropped.
    pub fn expire_unfound(&mut self, now: Instant) -> Vec<Reply> {
        let mut out = Vec::new();
        // Requests waiting on a download that has its manifest but made no progress for a
        // while with nobody connected: answer them (the download goes on in the background;
        // asking again reattaches to it).
        let waiting: Vec<Id> = self.waiters.keys().copied().collect();
        for id in waiting {
            let Some(p) = self.engine.progress(&id) else {
                continue;
            };
            if !p.has_manifest || p.complete {
                self.last_progress.remove(&id);
                continue;
            }
            let entry = self.last_progress.entry(id).or_insert((p.have_bytes, now));
            if p.have_bytes != entry.0 || p.peers > 0 {
                *entry = (p.have_bytes, now);
                continue;
            }
            if now.saturating_duration_since(entry.1) >= STALLED_REPLY {
                self.last_progress.remove(&id);
                for w in self.waiters.remove(&id).unwrap_or_default() {
                    out.push(Reply {
                        waiter: w,
                        bytes: crate::api::reply::error(&format!(
                            "download of {} stalled at {} of {} bytes: no peer currently serves the missing chunks (it continues in the background; ask again to wait for it)",
                            id.to_hex(),
                            p.have_bytes,
                            p.size
                        )),
                    });
                }
            }
        }
        let expired: Vec<Id> = self
            .started
            .iter()
            .filter(|(id, t)| {
                now.saturating_duration_since(**t) >= NO_PEER_TIMEOUT
                    && self.engine.progress(id).is_some_and(|p| !p.has_manifest)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.started.remove(&id);
            self.engine.cancel(&id);
            self.downloads.remove(&id);
            self.save_meta();
            for w in self.waiters.remove(&id).unwrap_or_default() {
                out.push(Reply {
                    waiter: w,
                    bytes: crate::api::reply::error(&format!(
                        "no peer provides content {} (searched the DHT for {} s)",
                        id.to_hex(),
                        NO_PEER_TIMEOUT.as_secs()
                    )),
                });
            }
        }
        out
    }

    // ----- engine actions that need files ------------------------------------------

    /// Runs a file action of the engine on a worker. Returns false for actions that are
    /// not file work (the reactor handles those).
    pub fn spawn_file_action(&mut self, a: Action, spawner: &dyn Spawner) -> bool {
        match a {
            Action::ReadChunk {
                conn,
                content,
                chunk,
            } => {
                let src = match self.sources.get(&content) {
                    Some(Source::Shared(r)) => Either::Shared(r.clone()),
                    Some(Source::Partial(r)) => Either::Partial(r.clone()),
                    None => Either::None,
                };
                let lengths = self.engine.manifest(&content).map(|m| m.lengths());
                let ok = spawner.spawn(Box::new(move || {
                    let mut withdrawn = None;
                    let data = lengths.and_then(|l| l.validate(chunk).map(|c| (l, c)));
                    let data = data.and_then(|(l, c)| {
                        // Pooled: the reactor gives it back once the PIECE is written.
                        let mut buf = crate::bufpool::take(l.chunk_len(c) as usize);
                        let r = match &src {
                            Either::Shared(r) => r.read_chunk(c, &mut buf),
                            Either::Partial(r) => r.read_chunk(c, &mut buf),
                            Either::None => return None,
                        };
                        match r {
                            Ok(()) => Some(Arc::new(buf)),
                            Err(e) => {
                                log::warn!("cannot serve chunk {chunk}: {e}");
                                if matches!(
                                    e,
                                    crate::content::ContentError::Changed { .. }
                                        | crate::content::ContentError::Missing { .. }
                                ) && matches!(src, Either::Shared(_))
                                {
                                    withdrawn = Some(content);
                                }
                                crate::bufpool::give(buf);
                                None
                            }
                        }
                    });
                    TransferDone::ChunkRead {
                        conn,
                        chunk,
                        data,
                        withdrawn,
                    }
                }));
                if !ok {
                    log::warn!("workers saturated: dropping a chunk read");
                }
                true
            }
            Action::StoreChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let partial = self.partials.get(&content).cloned();
                let manifest = self.engine.manifest(&content);
                spawner.spawn(Box::new(move || {
                    let result = match (partial, manifest) {
                        (Some(p), Some(m)) => store_chunk(&p, &m, chunk, &data),
                        _ => None,
                    };
                    // Hashed and written: the buffer can take the next PIECE.
                    crate::bufpool::give(data);
                    TransferDone::ChunkStored {
                        content,
                        chunk,
                        from,
                        result,
                    }
                }));
                true
            }
            Action::CheckChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let manifest = self.engine.manifest(&content);
                spawner.spawn(Box::new(move || {
                    let ok = manifest
                        .as_ref()
                        .and_then(|m| {
                            m.lengths()
                                .validate(chunk)
                                .map(|c| m.verify_chunk(c, &data))
                        })
                        .unwrap_or(true);
                    crate::bufpool::give(data);
                    TransferDone::ChunkChecked { content, from, ok }
                }));
                true
            }
            Action::OpenPartial { content, manifest } => {
                let dir = self.data_dir.clone();
                spawner.spawn(Box::new(move || {
                    let result = PartialFile::open_or_create(&dir, manifest)
                        .map(|(p, report)| {
                            if report.from_record + report.recovered > 0 {
                                log::info!(
                                    "download {content}: {} chunks verified on disk ({} recovered after a crash), {} to fetch",
                                    report.from_record + report.recovered,
                                    report.recovered,
                                    report.missing
                                );
                            }
                            let reader = p.reader();
                            let slot = PartialSlot {
                                file: p,
                                last_record: Instant::now(),
                            };
                            (Arc::new(Mutex::new(slot)), reader, report.verified)
                        })
                        .map_err(|e| e.to_string());
                    TransferDone::PartialOpened { content, result }
                }));
                true
            }
            Action::Finish { content } => {
                let Some(p) = self.partials.get(&content).cloned() else {
                    return true;
                };
                let meta = self.downloads.get(&content).cloned();
                let progress_name = self.engine.progress(&content).and_then(|p| p.name);
                let out = meta
                    .as_ref()
                    .map_or(self.download_dir.clone(), |m| m.output_dir.clone());
                let name = progress_name
                    .or(meta.and_then(|m| m.name))
                    .unwrap_or_default();
                let name = safe_file_name_or_fallback(&name, &content);
                let index = self.index.clone();
                spawner.spawn(Box::new(move || {
                    let result = (|| {
                        let mut slot = p.lock();
                        let _ = fs::create_dir_all(&out);
                        let path = slot.file.finish(&out, &name).map_err(|e| e.to_string())?;
                        let m = slot.file.manifest().clone();
                        drop(slot);
                        if let Err(e) = index.lock().add_downloaded(&path, m) {
                            log::warn!("downloaded {} but cannot share it: {e}", path.display());
                        }
                        Ok(path)
                    })();
                    TransferDone::Finished { content, result }
                }));
                true
            }
            _ => false,
        }
    }

    /// Applies a job's result; returns replies for waiting API requests.
    pub fn on_done(&mut self, now: Instant, done: TransferDone) -> Vec<Reply> {
        let mut replies = Vec::new();
        match done {
            TransferDone::ChunkRead {
                conn,
                chunk,
                data,
                withdrawn,
            } => {
                self.engine.chunk_read(now, conn, chunk, data);
                if let Some(id) = withdrawn {
                    self.withdraw(&id);
                }
            }
            TransferDone::ChunkStored {
                content,
                chunk,
                from,
                result,
            } => self.engine.chunk_stored(now, content, chunk, from, result),
            TransferDone::ChunkChecked { content, from, ok } => {
                self.engine.chunk_checked(now, content, from, ok)
            }
            TransferDone::PartialOpened { content, result } => match result {
                // Cancelled while the file was being opened.
                Ok((p, _, _)) if self.engine.progress(&content).is_none() => {
                    if let Err(e) = p.lock().file.discard_in_place() {
                        log::warn!("cancelled download {content}: deleting its partial data: {e}");
                    }
                }
                Ok((p, reader, verified)) => {
                    let mut have = BitSet::new(verified.len());
                    for (i, v) in verified.iter().enumerate() {
                        if *v {
                            have.insert(i);
                        }
                    }
                    self.partials.insert(content, p);
                    self.sources.insert(content, Source::Partial(reader));
                    // Remember the name now that the manifest is in: a resumed download
                    // finishes under the right name.
                    if let Some(name) = self.engine.progress(&content).and_then(|p| p.name) {
                        if let Some(m) = self.downloads.get_mut(&content) {
                            m.name = Some(name);
                        }
                    }
                    self.save_meta();
                    self.engine.partial_opened(now, content, Some(have));
                }
                Err(e) => {
                    log::error!("download {content}: {e}");
                    self.engine.partial_opened(now, content, None);
                    for w in self.waiters.remove(&content).unwrap_or_default() {
                        replies.push(Reply {
                            waiter: w,
                            bytes: crate::api::reply::error(&format!("download failed: {e}")),
                        });
                    }
                }
            },
            TransferDone::Finished { content, result } => {
                self.started.remove(&content);
                match result {
                    Ok(path) => {
                        log::info!("download {content} complete: {}", path.display());
                        self.engine.finished(now, content, true);
                        self.partials.remove(&content);
                        let entry = self.index.lock().get(&content).cloned();
                        if let (Some(e), Some(m)) = (entry, self.engine.manifest(&content)) {
                            if let Ok(r) = ChunkReader::open(&e, m.lengths()) {
                                self.sources.insert(content, Source::Shared(Arc::new(r)));
                            }
                        }
                        self.downloads.remove(&content);
                        self.save_meta();
                        self.completed.insert(content, path.clone());
                        let filename = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        for w in self.waiters.remove(&content).unwrap_or_default() {
                            replies.push(Reply {
                                waiter: w,
                                bytes: crate::api::reply::success(obj(serde_json::json!({
                                    "message": "File downloaded successfully",
                                    "file_path": path.display().to_string(),
                                    "filename": filename,
                                    "content_hash": content.to_hex(),
                                }))),
                            });
                        }
                    }
                    Err(e) => {
                        log::error!("download {content}: finishing failed: {e}");
                        self.engine.finished(now, content, false);
                    }
                }
            }
            TransferDone::Added { waiter, result } => {
                let bytes = match result {
                    Ok((e, m)) => {
                        match ChunkReader::open(&e, m.lengths()) {
                            Ok(r) => {
                                self.sources.insert(e.id, Source::Shared(Arc::new(r)));
                            }
                            Err(err) => log::warn!("{}: {err}", e.path.display()),
                        }
                        self.engine.share(m.clone(), Some(e.name.clone()));
                        crate::api::reply::success(obj(serde_json::json!({
                            "message": "File added",
                            "file_hash": e.id.to_hex(),
                            "filename": e.name,
                            "size": e.size,
                            "num_chunks": m.lengths().chunk_count(),
                        })))
                    }
                    Err(e) => crate::api::reply::error(&format!("cannot add file: {e}")),
                };
                replies.push(Reply { waiter, bytes });
            }
        }
        replies
    }

    /// Stops sharing content whose file changed or disappeared: its connections close, it
    /// leaves the index (so it is no longer listed), and [`Transfers::take_withdrawn`] tells
    /// the node to stop announcing it. Adding the file again shares it anew.
    pub fn withdraw(&mut self, id: &Id) {
        if !matches!(self.sources.get(id), Some(Source::Shared(_))) {
            return;
        }
        log::warn!("content {id}: its file changed or disappeared; no longer sharing it");
        self.sources.remove(id);
        // A finished download is known through `completed` too: forget it there as well.
        self.completed.remove(id);
        self.engine.unshare(id);
        if let Err(e) = self.index.lock().remove(id) {
            log::warn!("content {id}: removing it from the share index: {e}");
        }
        self.withdrawn.push(*id);
    }

    /// `cancel_transfer`: stops the download of `id`, deletes its partial data and answers
    /// the requests waiting for it (their replies are in [`Transfers::take_replies`]). The
    /// node stops announcing it. Fails if no download of `id` is in progress.
    pub fn cancel(&mut self, id: &Id) -> Result<u64, String> {
        let downloading = !matches!(self.sources.get(id), Some(Source::Shared(_)))
            && self.engine.progress(id).is_some_and(|p| !p.complete);
        if !downloading {
            return Err(format!("no download of {} in progress", id.to_hex()));
        }
        let have = self.engine.progress(id).map_or(0, |p| p.have_bytes);
        self.engine.cancel(id);
        self.sources.remove(id);
        self.started.remove(id);
        self.last_progress.remove(id);
        if self.downloads.remove(id).is_some() {
            self.save_meta();
        }
        if let Some(p) = self.partials.remove(id) {
            // Quick (three unlinks and two directory syncs); jobs still holding the slot
            // find it discarded.
            if let Err(e) = p.lock().file.discard_in_place() {
                log::warn!("cancelling {id}: deleting its partial data: {e}");
            }
        }
        for w in self.waiters.remove(id).unwrap_or_default() {
            self.replies.push(Reply {
                waiter: w,
                bytes: crate::api::reply::error(&format!("download of {} cancelled", id.to_hex())),
            });
        }
        self.withdrawn.push(*id);
        log::info!("download {id} cancelled ({have} bytes verified were discarded)");
        Ok(have)
    }

    /// Replies for waiting requests produced by commands ([`Transfers::cancel`]).
    pub fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.replies)
    }

    /// Contents withdrawn since the last call (the node stops announcing them).
    pub fn take_withdrawn(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.withdrawn)
    }

    /// Progress of one transfer, or all, as JSON for `transfer_status`.
    pub fn status_json(&self, only: Option<Id>) -> serde_json::Value {
        let ids: Vec<Id> = match only {
            Some(id) => vec![id],
            None => self.engine.contents().copied().collect(),
        };
        let list: Vec<serde_json::Value> = ids
            .iter()
            .filter_map(|id| {
                let p = self.engine.progress(id)?;
                let downloading = self.downloads.contains_key(id) || self.partials.contains_key(id);
                Some(serde_json::json!({
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
                    "file_path": self.completed.get(id).map(|p| p.display().to_string()),
                }))
            })
            .collect();
        serde_json::json!({ "transfers": list })
    }

    /// Flushes every partial download's resume record (shutdown).
    pub fn flush_all(&self) {
        for (id, p) in &self.partials {
            if let Err(e) = p.lock().file.flush_record() {
                log::warn!("download {id}: saving progress: {e}");
            }
        }
    }

    fn save_meta(&self) {
        let list: Vec<&DownloadMeta> = self.downloads.values().collect();
        let Ok(bytes) = serde_json::to_vec_pretty(&list) else {
            return;
        };
        let tmp = self.data_dir.join(format!("{META_FILE}.tmp"));
        let ok =
            fs::write(&tmp, bytes).and_then(|_| fs::rename(&tmp, self.data_dir.join(META_FILE)));
        if let Err(e) = ok {
            log::warn!("saving download list: {e}");
        }
    }
}

const META_FILE: &str = "transfers.json";

enum Either {
    Shared(Arc<ChunkReader>),
    Partial(PartialReader),
    None,
}

/// Verifies and stores one chunk: the hash is checked outside the partial file's lock, and
/// the resume record is made durable at most every [`RECORD_EVERY`].
fn store_chunk(p: &Mutex<PartialSlot>, m: &Manifest, chunk: u32, data: &[u8]) -> Option<bool> {
    let c = m.lengths().validate(chunk)?;
    if !m.verify_chunk(c, data) {
        return Some(false);
    }
    let mut slot = p.lock();
    let f = &mut slot.file;
    if let Err(e) = f
        .write_chunk(c, data)
        .and_then(|_| f.mark_verified(c).map(|_| ()))
    {
        log::error!("storing chunk {chunk}: {e}");
        return None;
    }
    if slot.file.needs_flush() && slot.last_record.elapsed() >= RECORD_EVERY {
        slot.last_record = Instant::now();
        if let Err(e) = slot.file.flush_record() {
            log::warn!("saving download progress: {e}");
        }
    }
    // Extend the running whole-file hash over the verified prefix, outside the lock, a few
    // chunks per job so no job is held up long; by the last chunk little is left for finish.
    let work = slot.file.take_prefix_work();
    drop(slot);
    if let Some(mut work) = work {
        let r = PREFIX_BUF.with(|b| work.advance(PREFIX_CHUNKS_PER_JOB, &mut b.borrow_mut()));
        if let Err(e) = r {
            // Harmless here: finish reads the rest of the file itself.
            log::warn!("hashing the downloaded prefix of {}: {e}", m.content_id());
        }
        p.lock().file.return_prefix_work(work);
    }
    Some(true)
}

/// How many chunks one store job adds to the running whole-file hash at most (the job has
/// just hashed one chunk, so this lets the prefix catch up several times faster than chunks
/// arrive while keeping each job short).
const PREFIX_CHUNKS_PER_JOB: u32 = 8;

thread_local! {
    /// A worker's read-back buffer for the running whole-file hash (kept: no allocation and
    /// zeroing of a chunk-sized buffer per job).
    static PREFIX_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
