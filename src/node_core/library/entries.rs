//! The library's contents by ID ([`Entries`]), with its downloads indexed apart: the work
//! done every few hundred milliseconds (expired waits, names heard, counts for `/metrics`)
//! visits the downloads only, not a library of 100,000 shares, and a generation number tells
//! the status view when the set of contents changed, so that it rebuilds its lists of keys
//! only then (issue 21: an idle node with 100,000 shares spent 9% of a core on them).

use std::collections::{BTreeMap, BTreeSet};

use super::{Download, Entry};
use crate::id::Id;

/// The contents (module docs). Every change of an entry's kind goes through
/// [`Entries::insert`] or [`Entries::remove`], which keep the index and the generation.
#[derive(Debug, Default)]
pub(super) struct Entries {
    map: BTreeMap<Id, Entry>,
    downloading: BTreeSet<Id>,
    /// Finished downloads among the shares.
    downloaded: usize,
    gen: u64,
}

fn is_downloaded(e: &Entry) -> bool {
    matches!(
        e,
        Entry::Shared {
            downloaded: true,
            ..
        }
    )
}

impl Entries {
    /// Entries built in one pass from `(id, entry)` pairs (the library loaded at start).
    pub fn from_pairs(pairs: Vec<(Id, Entry)>) -> Entries {
        let downloading = pairs
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Downloading(_)))
            .map(|(id, _)| *id)
            .collect();
        Entries {
            downloaded: pairs.iter().filter(|(_, e)| is_downloaded(e)).count(),
            map: pairs.into_iter().collect(),
            downloading,
            gen: 1,
        }
    }

    /// Sets the entry of `id`, returning the one it replaces.
    pub fn insert(&mut self, id: Id, e: Entry) -> Option<Entry> {
        self.gen += 1;
        if matches!(e, Entry::Downloading(_)) {
            self.downloading.insert(id);
        } else {
            self.downloading.remove(&id);
        }
        self.downloaded += usize::from(is_downloaded(&e));
        let old = self.map.insert(id, e);
        self.downloaded -= old.as_ref().map_or(0, |o| usize::from(is_downloaded(o)));
        old
    }

    /// Removes the entry of `id`.
    pub fn remove(&mut self, id: &Id) -> Option<Entry> {
        let e = self.map.remove(id)?;
        self.gen += 1;
        self.downloading.remove(id);
        self.downloaded -= usize::from(is_downloaded(&e));
        Some(e)
    }

    /// The entry of `id`.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.map.get(id)
    }

    /// The entry of `id`, to change what it holds; its kind changes only through
    /// [`Entries::insert`] (the index would be wrong otherwise).
    pub fn get_mut(&mut self, id: &Id) -> Option<&mut Entry> {
        self.map.get_mut(id)
    }

    /// Every entry, in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Entry)> {
        self.map.iter()
    }

    /// The downloads, in ID order.
    pub fn downloads(&self) -> impl Iterator<Item = (&Id, &Download)> {
        self.downloading
            .iter()
            .filter_map(|id| match self.map.get(id) {
                Some(Entry::Downloading(d)) => Some((id, &**d)),
                _ => None,
            })
    }

    /// The IDs of the downloads, in order (to change them one by one with
    /// [`Entries::get_mut`]).
    pub fn download_ids(&self) -> Vec<Id> {
        self.downloading.iter().copied().collect()
    }

    /// How many downloads there are.
    pub fn download_count(&self) -> usize {
        self.downloading.len()
    }

    /// How many finished downloads are shared.
    pub fn downloaded_count(&self) -> usize {
        self.downloaded
    }

    /// How many contents there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Changes with every added or removed content (or change of its kind).
    pub fn generation(&self) -> u64 {
        self.gen
    }
}
