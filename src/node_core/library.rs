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
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::reply;
use crate::api::ReplyTo;
use crate::content::manifest::Manifest;
use crate::content::names::safe_file_name_or_fallback;
use crate::id::Id;
use crate::storage::job::{
    DownloadRecord, FinishError, Inventory, ShareInfo, Snapshot, StorageDone, StorageError,
    StorageJob, StoreOutcome,
};
use crate::transfer::engine::{Engine, EngineConfig};

mod status;
pub use status::already_downloading;

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
    /// Its manifest, once known (kept so a paused download resumes without the network).
    manifest: Option<Arc<Manifest>>,
    /// Why it is paused (a full disk), if it is: the engine has forgotten it; asking for it
    /// again resumes it.
    paused: Option<String>,
    /// Verified bytes on disk as far as the library knows without the engine: the resume
    /// record's at start, the engine's count when paused. Shown until the partial file is
    /// open again.
    known_bytes: u64,
    /// The partial file is open (the engine's count is the truth from then on).
    opened: bool,
}

impl Download {
    fn new(name: Option<String>, output_dir: PathBuf, started: Option<Instant>) -> Download {
        Download {
            name,
            output_dir,
            waiters: Vec::new(),
            started,
            last_progress: None,
            manifest: None,
            paused: None,
            known_bytes: 0,
            opened: false,
        }
    }
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
    /// `local_add_file` replies for contents just shared: the node core sends each once the
    /// content's first announce is done, so that what `add` prints can be found at once.
    added: Vec<(Id, Reply)>,
    /// Contents no longer shared or downloaded (the node stops announcing them).
    withdrawn: Vec<Id>,
    /// `cancel_transfer` requests, answered once the partial data is deleted: who asked
    /// and how many verified bytes were thrown away.
    cancelling: Vec<(Id, ReplyTo, u64)>,
    /// Snapshots of the download list taken so far (numbers the next one).
    download_lists: u64,
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
            added: Vec::new(),
            withdrawn: Vec::new(),
            cancelling: Vec::new(),
            download_lists: 0,
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
        for r in inv.resumable {
            let m = r.manifest;
            let id = m.content_id();
            if lib.entries.contains_key(&id) {
                continue;
            }
            let record = records.remove(&id);
            let name = record.as_ref().and_then(|r| r.name.clone());
            let output_dir = record.map_or_else(|| lib.download_dir.clone(), |r| r.output_dir);
            log::info!("resuming download {id}");
            let mut d = Download::new(name.clone(), output_dir, None);
            d.manifest = Some(m.clone());
            d.known_bytes = r.recorded_bytes;
            lib.entries.insert(id, Entry::Downloading(d));
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
            // Here, but asked for in another folder: a verified copy goes there (api.md 5.5).
            Some(Entry::Shared { info, .. })
                if output_dir
                    .as_deref()
                    .is_some_and(|d| info.path.parent() != Some(d)) =>
            {
                self.jobs.push_back(StorageJob::CopyOut {
                    content: id,
                    from: info.path.clone(),
                    sha256: *info.manifest.file_sha256(),
                    dir: output_dir.unwrap_or_default(),
                    name: safe_file_name_or_fallback(&info.name, &id),
                    reply: to,
                });
                return None;
            }
            Some(Entry::Shared { info, .. }) => {
                return Some(reply::success(obj(json!({
                    "message": "File already available locally",
                    "filename": info.name,
                    "file_path": info.path.display().to_string(),
                    "content_hash": id.to_hex(),
                }))));
            }
            Some(Entry::Downloading(d)) => {
                if let Some(dir) = output_dir.filter(|o| *o != d.output_dir) {
                    log::debug!("download {id}: refused a second folder {}", dir.display());
                    return Some(reply::error(&already_downloading(&id, &d.output_dir)));
                }
                d.waiters.push(to);
                let resumed = d.paused.take();
                if let Some(why) = &resumed {
                    log::info!("download {id}: resuming (it was paused: {why})");
                    d.opened = false;
                }
                if self.engine.progress(&id).is_none() {
                    let (m, name) = (d.manifest.clone(), d.name.clone());
                    self.engine.download(now, id, m, name);
                }
                if resumed.is_some() {
                    self.save_downloads();
                }
            }
            None => {
                let output_dir = output_dir.unwrap_or_else(|| self.download_dir.clone());
                let mut d = Download::new(None, output_dir, Some(now));
                d.waiters.push(to);
                self.entries.insert(id, Entry::Downloading(d));
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

    // ----- time ---------------------------------------------------------------------

    /// Answers requests waiting on downloads that stalled, and drops downloads nobody
    /// provided in time (their requests are answered with an error).
    pub fn expire_waits(&mut self, now: Instant) {
        self.remember_names();
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

    /// Keeps each download's name as soon as a peer told it, so a restart finishes it under
    /// that name (not only once its partial file opened).
    fn remember_names(&mut self) {
        let mut changed = false;
        for (id, e) in self.entries.iter_mut() {
            if let Entry::Downloading(d) = e {
                let name = self.engine.progress(id).and_then(|p| p.name);
                if name.is_some() && name != d.name {
                    d.name = name;
                    changed = true;
                }
            }
        }
        if changed {
            self.save_downloads();
        }
    }

    /// Pauses a download whose disk is full: the engine lets it go (its connections close),
    /// its partial file is closed with its data kept, and the requests waiting for it are
    /// told why and what to do. Asking for it again resumes it.
    fn pause(&mut self, id: Id, why: String) {
        let progress = self.engine.progress(&id);
        let have = progress.as_ref().map(|p| p.have_bytes);
        let name = progress.and_then(|p| p.name);
        let manifest = self.engine.manifest(&id);
        let Some(Entry::Downloading(d)) = self.entries.get_mut(&id) else {
            return;
        };
        if d.paused.is_some() {
            return;
        }
        log::warn!("download {id} paused: {why}");
        self.engine.cancel(&id);
        d.paused = Some(why.clone());
        d.opened = false;
        if let Some(h) = have {
            d.known_bytes = h;
        }
        if manifest.is_some() {
            d.manifest = manifest;
        }
        if name.is_some() {
            d.name = name;
        }
        for w in d.waiters.drain(..) {
            self.replies.push(Reply {
                to: w,
                bytes: reply::error(&format!(
                    "download of {} paused: {why}; free some space, then ask for it again \
                     (nothing verified is lost)",
                    id.to_hex()
                )),
            });
        }
        self.jobs.push_back(StorageJob::Close { content: id });
        self.save_downloads();
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
                    StoreOutcome::NoSpace { dir } => {
                        self.pause(
                            content,
                            format!("disk full: no space left in {}", dir.display()),
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
                        let size = manifest.as_ref().map_or(0, |m| m.file_size());
                        if let Some(Entry::Downloading(d)) = self.entries.get_mut(&content) {
                            d.manifest = manifest;
                        }
                        let why = format!(
                            "disk full: no space left in {} for its {size} bytes",
                            dir.display()
                        );
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
            Err(FinishError::NoSpace { dir }) => {
                // Every chunk is verified and kept: only the final copy did not fit.
                let why = format!(
                    "disk full: no space left in {} for the finished file",
                    dir.display()
                );
                self.pause(content, why);
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

    /// Stops sharing `id` because its owner asks (the `unshare` command), as for a file that
    /// disappeared, but the file is untouched and its path is returned. A download
    /// in progress is not shared yet: `cancel_transfer` stops that.
    pub fn unshare(&mut self, id: &Id) -> Result<PathBuf, String> {
        match self.entries.get(id) {
            Some(Entry::Shared { info, .. }) => {
                let path = info.path.clone();
                log::info!(
                    "content {id}: no longer sharing it (asked); {} stays",
                    path.display()
                );
                self.stop_sharing(id);
                Ok(path)
            }
            Some(Entry::Downloading(_)) => Err(format!(
                "{} is being downloaded, not shared yet: cancel_transfer stops the download",
                id.to_hex()
            )),
            None => Err(format!("this node does not share {}", id.to_hex())),
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
        self.stop_sharing(id);
    }

    /// A share ends: its connections close, it leaves the share index, and the node stops
    /// announcing it.
    fn stop_sharing(&mut self, id: &Id) {
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

    /// Successful `local_add_file` replies since the last call, with the content each is
    /// for (see `added`).
    pub fn take_added(&mut self) -> Vec<(Id, Reply)> {
        std::mem::take(&mut self.added)
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
        self.download_lists += 1;
        self.jobs.push_back(StorageJob::SaveDownloads(Snapshot {
            generation: self.download_lists,
            value: list,
        }));
    }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitset::BitSet;
    use crate::storage::job::Resumable;

    fn manifest(len: usize) -> Arc<Manifest> {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        Arc::new(Manifest::for_data_with_chunk_size(&data, 16 << 10).unwrap())
    }

    fn library(inv: Inventory, now: Instant) -> Library {
        Library::new(
            inv,
            PathBuf::from("/files"),
            Id([1; 32]),
            4000,
            EngineConfig::default(),
            1,
            now,
        )
    }

    fn status(lib: &Library, id: &Id) -> Value {
        lib.status_json(Some(*id), &Default::default())["transfers"][0].clone()
    }

    /// Right after a restart, a resumed download shows what its resume record says is on
    /// disk, not 0, until its partial file is open again; then the engine's count.
    #[test]
    fn a_resumed_download_shows_its_recorded_progress_at_once() {
        let now = Instant::now();
        let m = manifest(100_000);
        let id = m.content_id();
        let inv = Inventory {
            resumable: vec![Resumable {
                manifest: m.clone(),
                recorded_bytes: 48 << 10,
            }],
            ..Inventory::default()
        };
        let mut lib = library(inv, now);
        assert_eq!(status(&lib, &id)["have_bytes"], 48 << 10);
        let mut have = BitSet::new(m.lengths().chunk_count() as usize);
        for i in 0..4 {
            have.insert(i);
        }
        lib.on_storage_done(
            now,
            StorageDone::PartialOpened {
                content: id,
                result: Ok(have),
            },
        );
        assert_eq!(status(&lib, &id)["have_bytes"], 64 << 10);
    }

    /// A full disk pauses a download: the request is told why, the partial file is closed
    /// (its lock released), nothing is forgotten; asking again resumes it.
    #[test]
    fn a_full_disk_pauses_and_asking_again_resumes() {
        let now = Instant::now();
        let m = manifest(100_000);
        let id = m.content_id();
        let mut lib = library(Inventory::default(), now);
        let to = ReplyTo { conn: 1, seq: 0 };
        assert!(lib.request_file(now, id, None, &[], to).is_none());
        while lib.poll_job().is_some() {}
        lib.on_storage_done(
            now,
            StorageDone::PartialOpened {
                content: id,
                result: Err(StorageError::NoSpace {
                    dir: PathBuf::from("/data/downloads"),
                }),
            },
        );
        let replies = lib.take_replies();
        assert_eq!(replies.len(), 1);
        let text = String::from_utf8(replies[0].bytes.clone()).unwrap();
        assert!(
            text.contains("disk full") && text.contains("/data/downloads"),
            "{text}"
        );
        let jobs: Vec<StorageJob> = std::iter::from_fn(|| lib.poll_job()).collect();
        assert!(
            jobs.iter()
                .any(|j| matches!(j, StorageJob::Close { content } if *content == id)),
            "{jobs:?}"
        );
        let t = status(&lib, &id);
        assert!(t["paused"].as_str().unwrap().contains("disk full"), "{t}");
        assert_eq!(t["downloading"], false);
        // Asked again: the engine takes it up anew (the manifest is kept: it opens at once).
        let to = ReplyTo { conn: 1, seq: 1 };
        assert!(lib.request_file(now, id, None, &[], to).is_none());
        assert!(status(&lib, &id).get("paused").is_none());
        assert!(lib.engine.progress(&id).is_some());
        // And a paused download can be cancelled.
        assert!(lib.cancel(&id, ReplyTo { conn: 1, seq: 2 }).is_ok());
    }
}
