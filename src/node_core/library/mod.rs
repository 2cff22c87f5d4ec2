//! The node's library: every content it knows, in one map from content ID to what it is
//! here ([`Entry`]: shared, downloading, or downloaded), plus the transfer engine that moves
//! it. This is the one owner of a download's bookkeeping: its name, its folder, who waits
//! for it and since when. Its chunks are the engine's (the scheduler's bits are the only
//! in-memory record of what is verified), and its bytes are the storage's.
//!
//! No I/O here: file work leaves as [`StorageJob`]s ([`Library::poll_job`]) and comes back
//! as [`StorageDone`]s ([`Library::on_storage_done`]); API replies leave as [`Reply`]s
//! ([`Library::take_replies`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::reply;
use crate::api::ReplyTo;
use crate::content::names::safe_file_name_or_fallback;
use crate::content::tree::Selection;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::storage::job::{DownloadRecord, Inventory, Snapshot, StorageJob};
use crate::transfer::engine::{Engine, EngineConfig};
pub use counts::Counts;
use share::Share;

mod counts;
mod entries;
mod pause;
mod peek;
mod results;
mod share;
mod status;
mod waits;
pub use pause::{paused_by_user, Paused};
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

/// A download that completed: its file is in place and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The content.
    pub content: Id,
    /// The file.
    pub path: PathBuf,
    /// Its file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A shared content, as `all_available_content` lists it (borrowed from the library: the
/// listing is written share by share, nothing of it is collected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSummary<'a> {
    /// Its content ID.
    pub id: Id,
    /// The file's or folder's name.
    pub name: std::borrow::Cow<'a, str>,
    /// Bytes (of every file of a folder).
    pub size: u64,
    /// Chunks.
    pub chunks: u32,
    /// A folder, not a file.
    pub folder: bool,
    /// Files (1 for a file).
    pub files: usize,
    /// Of a partial copy of a folder (`--only`): the files this node has.
    pub files_here: Option<usize>,
}

/// What a content is to this node.
#[derive(Debug)]
enum Entry {
    /// A complete file, served to others: added here, or downloaded (then `downloaded`).
    Shared { info: Share, downloaded: bool },
    /// Being downloaded (boxed: a library is mostly shares, and an entry is as big as its
    /// largest variant).
    Downloading(Box<Download>),
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
    manifest: Option<Arc<ContentManifest>>,
    /// Why it is paused, if it is: the engine has forgotten it (`pause.rs`).
    paused: Option<Paused>,
    /// Verified bytes on disk as far as the library knows without the engine: the resume
    /// record's at start, the engine's count when paused. Shown until the partial file is
    /// open again.
    known_bytes: u64,
    /// The partial file is open (the engine's count is the truth from then on).
    opened: bool,
    /// Only the entries of a folder these globs select (`--only`); `None`: all of it.
    only: Option<Arc<Selection>>,
}

impl Download {
    fn new(name: Option<String>, output_dir: PathBuf, started: Option<Instant>) -> Box<Download> {
        Box::new(Download {
            name,
            output_dir,
            waiters: Vec::new(),
            started,
            last_progress: None,
            manifest: None,
            paused: None,
            known_bytes: 0,
            opened: false,
            only: None,
        })
    }
}

/// The node's contents (see the module docs).
pub struct Library {
    /// The protocol engine (connections, chunks, scheduling).
    pub engine: Engine,
    entries: entries::Entries,
    download_dir: PathBuf,
    jobs: VecDeque<StorageJob>,
    /// Replies produced by commands and results.
    replies: Vec<Reply>,
    /// `local_add_file` replies for contents just shared: the node core sends each once the
    /// content's first announce is done, so that what `add` prints can be found at once.
    added: Vec<(Id, Reply)>,
    /// Contents no longer shared or downloaded (the node stops announcing them).
    withdrawn: Vec<Id>,
    /// Downloads completed since the last [`Library::take_completed`].
    completed: Vec<Completed>,
    /// `cancel_transfer` requests, answered once the partial data is deleted: who asked
    /// and how many verified bytes were thrown away.
    cancelling: Vec<(Id, ReplyTo, u64)>,
    /// `content_tree` requests waiting for a manifest from peers (`peek.rs`).
    peeks: Vec<peek::PeekWait>,
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
            entries: entries::Entries::default(),
            download_dir,
            jobs: VecDeque::new(),
            replies: Vec::new(),
            added: Vec::new(),
            withdrawn: Vec::new(),
            completed: Vec::new(),
            cancelling: Vec::new(),
            peeks: Vec::new(),
            download_lists: 0,
        };
        let mut shared = Vec::with_capacity(inv.shares.len());
        // Provided in one sweep by the node core (`NodeCore::new`), not announced each.
        lib.engine.serve_all(inv.shares.into_iter().map(|mut info| {
            let served = (
                info.manifest.clone(),
                Some(info.name.clone()),
                info.have.take(),
            );
            let id = info.manifest.content_id();
            let info = Share::new(info);
            shared.push((
                id,
                Entry::Shared {
                    info,
                    downloaded: false,
                },
            ));
            served
        }));
        // Built in one pass, its nodes full (as `Engine::serve_all` builds its own).
        lib.entries = entries::Entries::from_pairs(shared);
        // The shared files are checked against their stamps in steps on the workers (the
        // storage opened none of them): a file changed while the node was down stops being
        // shared once its step finds it, and no read ever serves it meanwhile.
        if lib.entries.len() > 0 {
            lib.jobs.push_back(StorageJob::CheckShares { after: None });
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
            if lib.entries.get(&id).is_some() {
                continue;
            }
            let record = records.remove(&id);
            let name = record.as_ref().and_then(|r| r.name.clone());
            let paused = record.as_ref().is_some_and(|r| r.paused);
            let only = record
                .as_ref()
                .and_then(|r| selection_of(&id, r.only.as_deref()));
            let output_dir = record.map_or_else(|| lib.download_dir.clone(), |r| r.output_dir);
            let mut d = Download::new(name.clone(), output_dir, None);
            d.manifest = Some(m.clone());
            d.only = only.clone();
            d.known_bytes = r.recorded_bytes;
            if paused {
                // Its owner paused it: it stays paused (`resume_transfer` resumes it).
                log::info!("download {id} stays paused (resume_transfer resumes it)");
                d.paused = Some(Paused::User);
                lib.entries.insert(id, Entry::Downloading(d));
                lib.withdrawn.push(id);
                continue;
            }
            log::info!("resuming download {id}");
            lib.entries.insert(id, Entry::Downloading(d));
            lib.engine.download_only(now, id, Some(m), name, only);
        }
        // Downloads that never got their manifest are not resumed (nothing to verify
        // against yet); asking again starts them anew. Those paused by the user stay listed,
        // paused, until resumed.
        for (id, r) in records {
            if r.paused && lib.entries.get(&id).is_none() {
                let mut d = Download::new(r.name, r.output_dir, None);
                d.paused = Some(Paused::User);
                lib.entries.insert(id, Entry::Downloading(d));
            }
        }
        lib.save_downloads();
        lib
    }

    // ----- queries ------------------------------------------------------------------

    /// Content IDs this node shares (added or downloaded).
    pub fn shared_ids(&self) -> Vec<Id> {
        self.shares().map(|(id, _)| *id).collect()
    }

    /// Content IDs this node shares, in order, without collecting them.
    /// Changes whenever a content is added or removed or changes kind (`entries.rs`).
    pub fn generation(&self) -> u64 {
        self.entries.generation()
    }

    pub fn shared_id_iter(&self) -> impl Iterator<Item = &Id> {
        self.shares().map(|(id, _)| id)
    }

    fn shares(&self) -> impl Iterator<Item = (&Id, &Share)> {
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

    /// Whether a download of `id` is under way (its manifest may not have arrived yet).
    pub fn is_downloading(&self, id: &Id) -> bool {
        matches!(self.entries.get(id), Some(Entry::Downloading(_)))
    }

    /// What `all_available_content` says of every shared file and folder.
    pub fn shared_summaries(&self) -> impl Iterator<Item = ShareSummary<'_>> {
        self.shares().map(|(id, i)| ShareSummary {
            id: *id,
            name: i.name(),
            size: i.size(),
            chunks: i.manifest.chunk_count(),
            folder: i.manifest.as_tree().is_some(),
            files: i.manifest.file_count(),
            files_here: i.files_here,
        })
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
        only: Option<Arc<Selection>>,
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
                    from: info.path.to_path_buf(),
                    manifest: info.manifest.clone(),
                    dir: output_dir.unwrap_or_default(),
                    name: safe_file_name_or_fallback(&info.name(), &id),
                    reply: to,
                });
                return None;
            }
            Some(Entry::Shared { info, .. }) => {
                return Some(reply::success(obj(json!({
                    "message": "File already available locally",
                    "filename": info.name(),
                    "file_path": info.path.display().to_string(),
                    "content_hash": id.to_hex(),
                }))));
            }
            Some(Entry::Downloading(d)) => {
                if d.paused == Some(Paused::User) {
                    // Only its owner's `resume_transfer` resumes it (`pause.rs`).
                    return Some(reply::error(&paused_by_user(&id)));
                }
                if let Some(dir) = output_dir.filter(|o| *o != d.output_dir) {
                    log::debug!("download {id}: refused a second folder {}", dir.display());
                    return Some(reply::error(&already_downloading(&id, &d.output_dir)));
                }
                if only != d.only {
                    return Some(reply::error(&format!(
                        "content {id} is already being downloaded with {}; cancel it to \
                         choose again",
                        describe_only(d.only.as_deref())
                    )));
                }
                d.waiters.push(to);
                // Paused for a full disk: asking again is how a user says space was freed.
                self.unpause(now, id);
                if self.engine.progress(&id).is_none() {
                    if let Some(Entry::Downloading(d)) = self.entries.get(&id) {
                        let (m, name, only) = (d.manifest.clone(), d.name.clone(), d.only.clone());
                        self.engine.download_only(now, id, m, name, only);
                    }
                }
            }
            None => {
                let output_dir = output_dir.unwrap_or_else(|| self.download_dir.clone());
                let mut d = Download::new(None, output_dir, Some(now));
                d.waiters.push(to);
                d.only = only.clone();
                self.entries.insert(id, Entry::Downloading(d));
                self.save_downloads();
                self.engine.download_only(now, id, None, None, only);
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

    /// Stops sharing `id` because its owner asks (the `unshare` command), as for a file that
    /// disappeared, but the file is untouched and its path is returned. A download
    /// in progress is not shared yet: `cancel_transfer` stops that.
    pub fn unshare(&mut self, id: &Id) -> Result<PathBuf, String> {
        match self.entries.get(id) {
            Some(Entry::Shared { info, .. }) => {
                let path = info.path.to_path_buf();
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

    /// Downloads completed since the last call (for the completion hook).
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.completed)
    }

    /// The folder downloads go to when a request names none.
    pub fn download_dir(&self) -> &std::path::Path {
        &self.download_dir
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
                    paused: d.paused == Some(Paused::User),
                    only: d.only.as_ref().map(|s| s.globs()),
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

/// The selection a download record kept (`None`: all of it). Globs that no longer parse (a
/// record edited by hand) fetch the whole folder rather than nothing, and say so.
fn selection_of(id: &Id, globs: Option<&[String]>) -> Option<Arc<Selection>> {
    match Selection::parse(globs?) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            log::warn!("download {id}: its saved selection is unusable ({e}); fetching all of it");
            None
        }
    }
}

/// "the whole content" or "only GLOB, GLOB", for messages.
fn describe_only(only: Option<&Selection>) -> String {
    match only {
        None => "the whole content".to_owned(),
        Some(s) => format!("only {}", s.globs().join(", ")),
    }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests;
