//! `content_tree`: what a content holds, from its manifest alone. A folder's paths and sizes
//! can be listed before anything is downloaded: when this node does not have the manifest,
//! the engine fetches just that from peers ([`Engine::peek`](crate::transfer::engine::Engine::peek))
//! and no partial file is made.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Value};

use super::{obj, Entry, Library, Reply, NO_PEER_TIMEOUT};
use crate::api::reply;
use crate::api::ReplyTo;
use crate::content::tree::EntryKind;
use crate::content::ContentManifest;
use crate::id::Id;

/// A `content_tree` request waiting for a manifest from peers.
#[derive(Debug)]
pub(super) struct PeekWait {
    content: Id,
    to: ReplyTo,
    offset: usize,
    limit: usize,
    started: Instant,
}

impl Library {
    /// `content_tree`: `Some(reply)` when the manifest is here; `None` when `to` is answered
    /// once a peer gave it (or after [`NO_PEER_TIMEOUT`] without one).
    pub fn content_tree(
        &mut self,
        now: Instant,
        id: Id,
        (offset, limit): (usize, usize),
        peers: &[SocketAddr],
        to: ReplyTo,
    ) -> Option<Vec<u8>> {
        if let Some((m, name)) = self.known_manifest(&id) {
            return Some(listing(&id, name.as_deref(), &m, offset, limit));
        }
        self.peeks.push(PeekWait {
            content: id,
            to,
            offset,
            limit,
            started: now,
        });
        // A download without its manifest yet fetches it anyway: wait for that.
        self.engine.peek(now, id);
        if !peers.is_empty() {
            self.engine.add_peers(now, &id, peers);
        }
        None
    }

    /// The engine verified a manifest it was asked to peek at: answer who waits for it, and
    /// stop fetching unless a download wants the content.
    pub fn manifest_fetched(&mut self, content: Id) {
        self.answer_peeks(content);
        if !matches!(self.entries.get(&content), Some(Entry::Downloading(_))) {
            self.engine.cancel(&content);
        }
    }

    /// Answers the `content_tree` requests for `content` whose manifest is known by now.
    pub(super) fn answer_peeks(&mut self, content: Id) {
        let Some((m, name)) = self.known_manifest(&content) else {
            return;
        };
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.peeks)
            .into_iter()
            .partition(|p| p.content == content);
        self.peeks = waiting;
        for p in done {
            self.replies.push(Reply {
                to: p.to,
                bytes: listing(&content, name.as_deref(), &m, p.offset, p.limit),
            });
        }
    }

    /// Answers `content_tree` requests that waited [`NO_PEER_TIMEOUT`] for a manifest, and
    /// answers those whose manifest came with a download meanwhile.
    pub(super) fn expire_peeks(&mut self, now: Instant) {
        let ids: Vec<Id> = self.peeks.iter().map(|p| p.content).collect();
        for id in ids {
            self.answer_peeks(id);
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.peeks)
            .into_iter()
            .partition(|p| now.saturating_duration_since(p.started) >= NO_PEER_TIMEOUT);
        self.peeks = waiting;
        for p in expired {
            if !self.peeks.iter().any(|w| w.content == p.content)
                && !matches!(self.entries.get(&p.content), Some(Entry::Downloading(_)))
            {
                self.engine.cancel(&p.content);
            }
            self.replies.push(Reply {
                to: p.to,
                bytes: reply::error(&format!(
                    "no peer provides content {} (searched the DHT for {} s)",
                    p.content.to_hex(),
                    NO_PEER_TIMEOUT.as_secs()
                )),
            });
        }
    }

    /// The manifest of `id` and its name, if this node has them (shared, downloading, or
    /// just fetched for a peek).
    fn known_manifest(&self, id: &Id) -> Option<(std::sync::Arc<ContentManifest>, Option<String>)> {
        match self.entries.get(id) {
            Some(Entry::Shared { info, .. }) => {
                Some((info.manifest.clone(), Some(info.name().into_owned())))
            }
            Some(Entry::Downloading(d)) => d
                .manifest
                .clone()
                .or_else(|| self.engine.manifest(id))
                .map(|m| (m, d.name.clone())),
            None => self
                .engine
                .manifest(id)
                .map(|m| (m, self.engine.progress(id).and_then(|p| p.name))),
        }
    }
}

/// The `content_tree` reply (api.md section 5.20).
fn listing(
    id: &Id,
    name: Option<&str>,
    m: &ContentManifest,
    offset: usize,
    limit: usize,
) -> Vec<u8> {
    let (kind, entries, total): (&str, Vec<Value>, usize) = match m {
        ContentManifest::File(f) => (
            "file",
            (offset == 0 && limit > 0)
                .then(|| json!({ "path": name.unwrap_or(""), "size": f.file_size() }))
                .into_iter()
                .collect(),
            1,
        ),
        ContentManifest::Tree(t) => (
            "folder",
            t.entries()
                .iter()
                .skip(offset)
                .take(limit)
                .map(|e| match e.kind {
                    EntryKind::File(f) => {
                        json!({ "path": e.path.as_str(), "size": f.lengths.total() })
                    }
                    EntryKind::EmptyFolder => json!({ "path": e.path.as_str(), "folder": true }),
                })
                .collect(),
            t.entries().len(),
        ),
    };
    reply::success(obj(json!({
        "content_hash": id.to_hex(),
        "kind": kind,
        "name": name,
        "size": m.total_size(),
        "num_files": m.file_count(),
        "num_chunks": m.chunk_count(),
        "total_entries": total,
        "offset": offset,
        "entries": entries,
    })))
}
