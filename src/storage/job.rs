//! The storage vocabulary: what the node's protocol side asks of the file side
//! ([`StorageJob`]) and what comes back ([`StorageDone`]). Plain data, no I/O: the node core
//! emits jobs, and either the disk executor ([`super::DiskStorage`], on the worker pool) or
//! the whole-network simulator's in-memory storage carries them out.
//!
//! Every job that has a result gets exactly one [`StorageDone`]; jobs without one (saving
//! state, forgetting a share) report failures in the log. Each job names what it is for
//! (content, chunk, connection), so its result needs no lookup table on the way back.

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::ReplyTo;
use crate::bitset::BitSet;
use crate::conn::ConnId;
use crate::content::tree::Selection;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::limits::Limits;
use crate::proto::dht::Contact;
use crate::settings::{Key, Settings};

/// What the file side is asked to do.
#[derive(Debug)]
pub enum StorageJob {
    /// Read verified chunk `chunk` of `content` (from the shared file or the partial
    /// download) to send it on `conn`.
    ReadChunk {
        /// The connection that asked for it.
        conn: ConnId,
        /// The content.
        content: Id,
        /// The chunk.
        chunk: u32,
    },
    /// Verify `data` against chunk `chunk` of `content`'s manifest and, if it matches, store
    /// it in the partial download. `data` is a pooled buffer (`crate::bufpool`).
    StoreChunk {
        /// The content.
        content: Id,
        /// The chunk.
        chunk: u32,
        /// The connection it came from (banned if the hash fails).
        from: ConnId,
        /// The bytes received.
        data: Vec<u8>,
    },
    /// Verify `data` but do not store it: a copy of a chunk already here or no longer
    /// needed. A sender whose copy is bad is banned all the same.
    CheckChunk {
        /// The content.
        content: Id,
        /// The chunk.
        chunk: u32,
        /// The connection it came from.
        from: ConnId,
        /// The bytes received.
        data: Vec<u8>,
    },
    /// Check up to [`super::CHECK_SHARES_STEP`] shared files after `after` (content ID
    /// order; `None`: from the first) against their recorded stamps: the sweep over the
    /// library after start, one step per job so no step holds a worker long.
    CheckShares {
        /// Where the previous step ended.
        after: Option<Id>,
    },
    /// Open (or recover after a crash) the partial download of `manifest`'s content.
    OpenPartial {
        /// The content.
        content: Id,
        /// Its verified manifest.
        manifest: Arc<ContentManifest>,
        /// Only these entries of a folder (`--only`); `None`: all of it.
        only: Option<Arc<Selection>>,
    },
    /// Every chunk is verified: re-hash the chunks trusted from the resume record (spec
    /// `content.md` section 5, rule 3), give the file its final name
    /// `name` in `dir` (never replacing a file), share it.
    Finish {
        /// The content.
        content: Id,
        /// The folder.
        dir: PathBuf,
        /// The file name, already made safe.
        name: String,
    },
    /// Close a paused download's partial file (its progress made durable, its lock
    /// released), keeping its data for when it resumes.
    Close {
        /// The content.
        content: Id,
    },
    /// Delete a cancelled download's partial data; answered with [`StorageDone::Discarded`].
    Discard {
        /// The content.
        content: Id,
    },
    /// Stop sharing `content` (its file changed or disappeared): forget its reader and
    /// remove it from the share index.
    Unshare {
        /// The content.
        content: Id,
    },
    /// `local_add_file`: hash the file at `path` and share it in place.
    AddFile {
        /// The file.
        path: PathBuf,
        /// Who asked.
        reply: ReplyTo,
    },
    /// `local_request_file` for content that is here, into a folder it is not in: put a
    /// verified copy of `from` in `dir` (`crate::content::copy_out::copy_into`).
    CopyOut {
        /// The content.
        content: Id,
        /// The local file or folder.
        from: PathBuf,
        /// Its manifest (the copy is checked against it).
        manifest: Arc<ContentManifest>,
        /// The folder asked for.
        dir: PathBuf,
        /// The file name (safe).
        name: String,
        /// Who asked.
        reply: ReplyTo,
    },
    /// Persist the list of downloads in progress (what each will be called, and where).
    SaveDownloads(Snapshot<Vec<DownloadRecord>>),
    /// Make every partial download's resume record durable (the node is stopping).
    FlushAll,
    /// Persist the node's identity, routing table contacts and provided keys.
    SaveState(Snapshot<NodeState>),
    /// Read the config file as it is now and apply `edits` to it (`get_config`,
    /// `set_config`, `set_limits`); answered with [`StorageDone::Config`]. The core has one
    /// in flight at a time, so edits never race.
    Config {
        /// Keys to set (`Some`, a value already checked) or remove (`None`); none: only read.
        edits: Vec<(Key, Option<String>)>,
        /// The request it answers, if any (`set_limits` saves its limits without one).
        reply: Option<ReplyTo>,
    },
}

/// Something to persist, numbered in the order the core took it. Two workers may run two
/// saves of the same file at once and finish in either order; storage writes a snapshot
/// only if it is newer than the last one written, so the file never goes back in time.
#[derive(Debug, Clone)]
pub struct Snapshot<T> {
    /// Taken after every snapshot with a smaller number (per kind of file).
    pub generation: u64,
    /// What to write.
    pub value: T,
}

impl<T> Snapshot<T> {
    /// Whether this snapshot is newer than the last one written, `last` (which it then
    /// becomes).
    pub fn newer_than(&self, last: &mut Option<u64>) -> bool {
        if last.is_some_and(|l| l >= self.generation) {
            return false;
        }
        *last = Some(self.generation);
        true
    }
}

/// The result of a [`StorageJob`].
#[derive(Debug)]
pub enum StorageDone {
    /// [`StorageJob::ReadChunk`]: the bytes, or `None` if the chunk could not be read.
    ChunkRead {
        /// The connection it is for.
        conn: ConnId,
        /// The content.
        content: Id,
        /// The chunk.
        chunk: u32,
        /// The bytes (a pooled buffer, given back once written to the socket).
        data: Option<Arc<Vec<u8>>>,
        /// The shared file changed or disappeared: it must no longer be shared.
        changed: bool,
    },
    /// [`StorageJob::StoreChunk`].
    ChunkStored {
        /// The content.
        content: Id,
        /// The chunk.
        chunk: u32,
        /// The sender.
        from: ConnId,
        /// What happened.
        outcome: StoreOutcome,
    },
    /// [`StorageJob::CheckShares`]: the shares whose file changed or is gone (no longer
    /// served: the node stops sharing them), and where the next step starts (`None`: done).
    SharesChecked {
        /// Shares that failed the check.
        changed: Vec<Id>,
        /// The next step's `after`.
        next: Option<Id>,
    },
    /// [`StorageJob::CheckChunk`]: whether the copy matched its hash.
    ChunkChecked {
        /// The content.
        content: Id,
        /// The sender.
        from: ConnId,
        /// Whether it matched.
        ok: bool,
    },
    /// [`StorageJob::OpenPartial`]: the chunks already verified on disk, or why the file
    /// could not be opened.
    PartialOpened {
        /// The content.
        content: Id,
        /// Verified chunks, or the error.
        result: Result<BitSet, StorageError>,
    },
    /// [`StorageJob::Finish`]: the final path, or why finishing failed.
    Finished {
        /// The content.
        content: Id,
        /// The path, or the failure.
        result: Result<PathBuf, FinishError>,
    },
    /// [`StorageJob::Discard`]: the partial data is gone.
    Discarded {
        /// The content.
        content: Id,
    },
    /// [`StorageJob::AddFile`]: the share, or why the file cannot be shared.
    Added {
        /// Who asked.
        reply: ReplyTo,
        /// The share, or the error.
        result: Result<ShareInfo, String>,
    },
    /// [`StorageJob::Config`]: the file after the edits, or why it could not be read or
    /// written (a mistake in it is named by line).
    Config {
        /// The edits asked for.
        edits: Vec<(Key, Option<String>)>,
        /// The request it answers, if any.
        reply: Option<ReplyTo>,
        /// Where the file is, and what it sets after the edits; or the error.
        result: Result<(PathBuf, Settings), String>,
    },
    /// [`StorageJob::CopyOut`]: the copy's path, or why there is none.
    CopiedOut {
        /// The content.
        content: Id,
        /// The local file it was copied from.
        from: PathBuf,
        /// Who asked.
        reply: ReplyTo,
        /// The copy, or the error.
        result: Result<PathBuf, String>,
    },
}

/// What became of a chunk given to [`StorageJob::StoreChunk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Verified and written.
    Stored,
    /// The bytes do not match the chunk's hash: the sender lied.
    BadHash,
    /// The disk is full.
    NoSpace {
        /// The folder whose disk is full.
        dir: PathBuf,
    },
    /// It could not be written (the partial file is gone, or another disk error).
    Failed(String),
}

/// Why a file could not be opened or finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The disk holding `dir` is full.
    NoSpace {
        /// The folder.
        dir: PathBuf,
    },
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NoSpace { dir } => {
                write!(f, "disk full: no space left in {}", dir.display())
            }
            StorageError::Other(e) => f.write_str(e),
        }
    }
}

impl From<crate::content::ContentError> for StorageError {
    fn from(e: crate::content::ContentError) -> StorageError {
        match e.no_space_in() {
            Some(dir) => StorageError::NoSpace {
                dir: dir.to_path_buf(),
            },
            None => StorageError::Other(e.to_string()),
        }
    }
}

/// Why [`StorageJob::Finish`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishError {
    /// Chunks trusted from the resume record were damaged on disk: they are missing again
    /// and the download must fetch them (the rest is kept).
    DamagedOnDisk {
        /// How many.
        bad_chunks: u32,
    },
    /// The disk holding the final folder is full.
    NoSpace {
        /// The folder.
        dir: PathBuf,
    },
    /// Anything else (disk error, no partial file).
    Io(String),
}

/// A file this node shares: what the protocol side needs to know about it.
#[derive(Clone, Debug)]
pub struct ShareInfo {
    /// Its manifest.
    pub manifest: Arc<ContentManifest>,
    /// Its name (the last component of its path).
    pub name: String,
    /// Where it is (canonical).
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// For part of a folder (`--only`), the chunks it holds; `None`: every chunk.
    pub have: Option<BitSet>,
    /// For part of a folder, how many of its files it holds.
    pub files_here: Option<usize>,
    /// For a folder just added: what in it is not shared, and why ("path: reason").
    pub skipped: Vec<String>,
}

/// A download in progress, as it is kept across restarts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DownloadRecord {
    /// The content ID, in hex.
    pub content_id: String,
    /// Its name, once a peer told it.
    pub name: Option<String>,
    /// The folder it goes to.
    pub output_dir: PathBuf,
    /// Paused by the user (`pause_transfer`): not resumed at start. Absent in lists written
    /// before pauses were kept (read as false), and left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Only the entries of a folder these globs select (`--only`); absent: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
}

/// What a node keeps across restarts (`state.json`, see `storage::state`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The node's ID.
    pub node_id: Option<Id>,
    /// Contacts from the routing table.
    pub contacts: Vec<Contact>,
    /// Keys this node announces.
    pub provided: Vec<Id>,
    /// The bandwidth limits in force (None in a state file from before they were kept).
    pub limits: Option<Limits>,
}

/// What the data dir holds at start: the shares, and the downloads to resume.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Files shared (added, or downloaded earlier), each openable now.
    pub shares: Vec<ShareInfo>,
    /// Downloads with a stored manifest (their partial file is reopened by
    /// [`StorageJob::OpenPartial`]).
    pub resumable: Vec<Resumable>,
    /// Names and folders of the downloads in progress.
    pub downloads: Vec<DownloadRecord>,
}

/// A download a restarted node resumes.
#[derive(Clone, Debug)]
pub struct Resumable {
    /// Its manifest (verified against its content ID).
    pub manifest: Arc<ContentManifest>,
    /// Bytes its resume record says are verified on disk (progress to show until the
    /// partial file is reopened).
    pub recorded_bytes: u64,
}
