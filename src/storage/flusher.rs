//! Syncing placed folders to disk off the download's path.
//!
//! A folder's download is renamed into place and shared, marked unflushed, as soon as every
//! chunk is verified (`content/partial/finish_tree.rs` says why it is not synced first). This
//! thread then syncs the file systems holding it and the data dir (`syncfs`: its files, their
//! folders, the rename, and the removal of the download's own files) and clears the mark.
//! Folders placed while a sync runs share the next one. A sync that fails leaves the mark:
//! the next start re-hashes that share before serving it (`content/index/recheck.rs`).
//! Dropping the flusher finishes every sync asked for, so a clean stop leaves no mark.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::content::index::ShareIndex;
use crate::content::partial::sync_fs;
use crate::id::Id;

/// One placed folder to make durable: its content and the folders whose file systems hold
/// its bytes and its download's bookkeeping.
type Request = (Id, Vec<PathBuf>);

/// The flusher thread and the way to it (module docs).
pub(super) struct Flusher {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread; it clears marks in `index`.
    pub(super) fn start(index: Arc<Mutex<ShareIndex>>) -> Flusher {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || run(&rx, &index));
        match thread {
            Ok(t) => Flusher {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                log::error!("cannot start the flusher thread: {e}");
                Flusher::none()
            }
        }
    }

    /// A flusher without a thread: placed folders keep their marks and are re-hashed at the
    /// next start (slower, never wrong). What is left when the thread cannot start.
    pub(super) fn none() -> Flusher {
        Flusher {
            tx: None,
            thread: None,
        }
    }

    /// Makes content `id`, placed under `dirs`, durable soon (module docs).
    pub(super) fn flush(&self, id: Id, dirs: Vec<PathBuf>) {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((id, dirs)).is_ok());
        if !sent {
            log::warn!("content {id}: no flusher; it is re-hashed at the next start");
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has done every request.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the flusher thread panicked");
            }
        }
    }
}

fn run(rx: &Receiver<Request>, index: &Mutex<ShareIndex>) {
    while let Ok(first) = rx.recv() {
        // Everything asked for meanwhile shares this round's syncs.
        let batch: Vec<Request> = std::iter::once(first).chain(rx.try_iter()).collect();
        let mut devices = HashSet::new();
        let mut failed = false;
        for dir in batch.iter().flat_map(|(_, dirs)| dirs) {
            // One sync per file system: a second on the same one would find nothing to do.
            let dev = std::fs::metadata(dir).map(|m| m.dev()).ok();
            if dev.is_some_and(|d| !devices.insert(d)) {
                continue;
            }
            if let Err(e) = sync_fs(dir) {
                log::warn!("syncing a downloaded folder to disk: {e}");
                failed = true;
            }
        }
        if failed {
            // The marks stay: the next start re-hashes these shares.
            continue;
        }
        let mut index = index.lock();
        for (id, _) in &batch {
            if let Err(e) = index.flushed(id) {
                log::warn!("content {id}: clearing its unflushed mark: {e}");
            }
        }
    }
}
