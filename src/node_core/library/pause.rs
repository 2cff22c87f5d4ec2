//! Paused downloads: why a download is paused ([`Paused`]), pausing it (a full disk, or its
//! owner's `pause_transfer`) and resuming it.
//!
//! A paused download is let go by the engine (its connections close, its chunk states are
//! forgotten) and its partial file is closed with every verified chunk kept (`Close` makes
//! its resume record durable). The library keeps its entry: name, folder, manifest and the
//! verified bytes last counted, so it shows in `transfer_status` and resumes from where it
//! was, without the network if its manifest is known.
//!
//! The two reasons differ in who may resume: a download paused for a full disk resumes when
//! anyone asks for it again (`local_request_file`, i.e. `peershare get`), since that is how
//! a user says "I freed some space"; a download its owner paused resumes only with
//! `resume_transfer`, and that pause is kept across restarts (`DownloadRecord::paused`).

use std::time::Instant;

use serde_json::json;

use super::{obj, Entry, Library, Reply};
use crate::api::reply;
use crate::id::Id;
use crate::storage::job::StorageJob;

/// Why a download is paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paused {
    /// Its owner asked (`pause_transfer`): only `resume_transfer` resumes it, and it stays
    /// paused across restarts.
    User,
    /// The disk is full; the text says where (`no space left in DIR ...`). Asking for the
    /// download again resumes it.
    DiskFull(String),
}

impl Paused {
    /// For people and `transfer_status`'s `paused`: `paused by the user ...` or
    /// `disk full: no space left in DIR ...`.
    pub fn describe(&self) -> String {
        match self {
            Paused::User => "paused by the user (resume_transfer resumes it)".into(),
            Paused::DiskFull(where_) => format!("disk full: {where_}"),
        }
    }

    /// `transfer_status`'s `paused_reason`: `user` or `disk_full`.
    pub fn reason(&self) -> &'static str {
        match self {
            Paused::User => "user",
            Paused::DiskFull(_) => "disk_full",
        }
    }
}

/// The error a `local_request_file` gets for a download its owner paused (api.md 5.5).
pub fn paused_by_user(id: &Id) -> String {
    format!(
        "download of {} is paused (pause_transfer); resume it with resume_transfer, then ask again",
        id.to_hex()
    )
}

impl Library {
    /// `pause_transfer`: pauses the download of `id` until `resume_transfer`, also across
    /// restarts. Requests waiting for it are told. A download paused for a full disk becomes
    /// paused by the user (asking for it no longer resumes it). Returns the reply.
    pub fn pause_by_user(&mut self, id: &Id) -> Result<Vec<u8>, String> {
        let finishing = self.engine.progress(id).is_some_and(|p| p.complete);
        let Some(Entry::Downloading(d)) = self.entries.get_mut(id) else {
            return Err(format!("no download of {} in progress", id.to_hex()));
        };
        if finishing {
            return Err(format!(
                "the download of {} is complete (being verified and moved into place): too late to pause it",
                id.to_hex()
            ));
        }
        let message = match &d.paused {
            Some(Paused::User) => "already paused",
            Some(Paused::DiskFull(_)) => {
                // The engine has let it go already: only the reason changes.
                d.paused = Some(Paused::User);
                log::info!("download {id}: paused by the user (it was paused: disk full)");
                self.save_downloads();
                "paused"
            }
            None => {
                self.pause(*id, Paused::User);
                // Nobody serves from a closed partial file: stop announcing it (the engine
                // announces it again once it has chunks after resuming).
                self.withdrawn.push(*id);
                "paused"
            }
        };
        Ok(reply::success(obj(json!({
            "message": format!(
                "download of {} {message}; resume_transfer resumes it (nothing verified is lost)",
                id.to_hex()
            ),
            "content_hash": id.to_hex(),
            "have_bytes": self.known_bytes(id),
        }))))
    }

    /// `resume_transfer`: takes a paused download up again, from the chunks it has (whatever
    /// paused it). Returns the reply.
    pub fn resume(&mut self, now: Instant, id: &Id) -> Result<Vec<u8>, String> {
        let Some(Entry::Downloading(d)) = self.entries.get(id) else {
            return Err(format!("no download of {} in progress", id.to_hex()));
        };
        if d.paused.is_none() {
            return Err(format!("the download of {} is not paused", id.to_hex()));
        }
        self.unpause(now, *id);
        Ok(reply::success(obj(json!({
            "message": format!("download of {} resumed", id.to_hex()),
            "content_hash": id.to_hex(),
            "have_bytes": self.known_bytes(id),
        }))))
    }

    /// Takes a paused download up again (the engine reopens its partial file, or searches
    /// for its manifest anew). Does nothing to one that is not paused.
    pub(super) fn unpause(&mut self, now: Instant, id: Id) {
        let Some(Entry::Downloading(d)) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(why) = d.paused.take() else {
            return;
        };
        log::info!("download {id}: resuming (it was {})", why.describe());
        d.opened = false;
        if d.manifest.is_none() {
            // Nothing to verify against yet: as good as asked for now (no peer in 30 s and
            // it is dropped, as a new request would be).
            d.started = Some(now);
        }
        if self.engine.progress(&id).is_none() {
            let (m, name, only) = (d.manifest.clone(), d.name.clone(), d.only.clone());
            self.engine.download_only(now, id, m, name, only);
        }
        self.save_downloads();
    }

    /// Verified bytes of a download as far as the library knows: the engine's count once
    /// its partial file is open, the last count before (paused, or resuming).
    fn known_bytes(&self, id: &Id) -> u64 {
        let engine = self.engine.progress(id).map_or(0, |p| p.have_bytes);
        match self.entries.get(id) {
            Some(Entry::Downloading(d)) if !d.opened => engine.max(d.known_bytes),
            _ => engine,
        }
    }

    /// Pauses a download: the engine lets it go (its connections close), its partial file is
    /// closed with its data kept, and the requests waiting for it are told why and what to
    /// do. A full disk: asking for it again resumes it; the user: `resume_transfer` does.
    pub(super) fn pause(&mut self, id: Id, why: Paused) {
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
        let text = why.describe();
        match why {
            Paused::User => log::info!("download {id} paused: {text}"),
            Paused::DiskFull(_) => log::warn!("download {id} paused: {text}"),
        }
        self.engine.cancel(&id);
        let told = match &why {
            Paused::User => format!(
                "download of {} paused by the user (pause_transfer); resume_transfer resumes it \
                 (nothing verified is lost)",
                id.to_hex()
            ),
            Paused::DiskFull(_) => format!(
                "download of {} paused: {text}; free some space, then ask for it again \
                 (nothing verified is lost)",
                id.to_hex()
            ),
        };
        d.paused = Some(why);
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
                bytes: reply::error(&told),
            });
        }
        self.jobs.push_back(StorageJob::Close { content: id });
        self.save_downloads();
    }
}
