//! The readers of the shares served lately: at most [`OPEN_SHARES`] of them, the least
//! recently used one dropped first. A node of 100,000 shares cannot hold a reader (an open
//! file) for each: the process may open 20,000 files at most here, and most shares are
//! asked for rarely. A share not here is looked up in the index and opened again, which
//! checks its stamp, as every read does.

use std::collections::HashMap;
use std::sync::Arc;

use crate::content::index::SharedReader;
use crate::content::ContentManifest;
use crate::id::Id;

/// How many shared contents keep a reader open.
pub const OPEN_SHARES: usize = 256;

/// An open share: its reader and manifest.
#[derive(Clone)]
pub struct OpenShare {
    /// Serves its chunks.
    pub reader: Arc<SharedReader>,
    /// Its manifest.
    pub manifest: Arc<ContentManifest>,
}

/// The cache (module docs).
#[derive(Default)]
pub struct OpenShares {
    map: HashMap<Id, (OpenShare, u64)>,
    tick: u64,
}

impl OpenShares {
    /// The open share of `id`, marked as just used.
    pub fn get(&mut self, id: &Id) -> Option<OpenShare> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(id).map(|(s, used)| {
            *used = tick;
            s.clone()
        })
    }

    /// Keeps `share` open for `id` (replacing any other), dropping the least recently used
    /// one when full.
    pub fn insert(&mut self, id: Id, share: OpenShare) {
        self.tick += 1;
        if self.map.len() >= OPEN_SHARES && !self.map.contains_key(&id) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(id, (share, self.tick));
    }

    /// Forgets `id` (unshared, changed, or replaced by a download's finish).
    pub fn remove(&mut self, id: &Id) {
        self.map.remove(id);
    }
}
