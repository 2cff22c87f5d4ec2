//! Time in the library: requests waiting on downloads that stall or that nobody provides,
//! and names remembered as soon as peers tell them.

use std::time::Instant;

use super::{Entry, Library, Reply, NO_PEER_TIMEOUT, STALLED_REPLY};
use crate::api::reply;

impl Library {
    /// Answers requests waiting on downloads that stalled, and drops downloads nobody
    /// provided in time (their requests are answered with an error).
    pub fn expire_waits(&mut self, now: Instant) {
        self.remember_names();
        self.expire_peeks(now);
        let mut unfound = Vec::new();
        for id in self.entries.download_ids() {
            let Some(Entry::Downloading(d)) = self.entries.get_mut(&id) else {
                continue;
            };
            let Some(p) = self.engine.progress(&id) else {
                continue;
            };
            if !p.has_manifest {
                if d.started
                    .is_some_and(|t| now.saturating_duration_since(t) >= NO_PEER_TIMEOUT)
                {
                    unfound.push(id);
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
        for id in self.entries.download_ids() {
            if let Some(Entry::Downloading(d)) = self.entries.get_mut(&id) {
                let name = self.engine.progress(&id).and_then(|p| p.name);
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
}
