//! A shared content as the library keeps it ([`Share`]): one per share, so a library of
//! 100,000 holds only what nothing else holds (issue 21). Its size and chunks are its
//! manifest's, its name is its path's last component (kept only when it differs), what of
//! it is here is the engine's, and what a folder left out was told once, in the `add` reply.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use crate::content::ContentManifest;
use crate::storage::job::ShareInfo;

/// A shared content (module docs).
#[derive(Debug)]
pub(super) struct Share {
    /// Its manifest (the same `Arc` the engine serves from).
    pub manifest: Arc<ContentManifest>,
    /// Where it is (canonical).
    pub path: Box<Path>,
    /// Its name when it is not the path's last component (rare: `None` almost always).
    other_name: Option<Box<str>>,
    /// For part of a folder, how many of its files are here.
    pub files_here: Option<usize>,
}

impl Share {
    /// The share `info` describes (its `have` and `skipped` are not kept: see module docs).
    pub fn new(info: ShareInfo) -> Share {
        let other_name = (info.name != name_of(&info.path)).then(|| info.name.into());
        Share {
            manifest: info.manifest,
            path: info.path.into_boxed_path(),
            other_name,
            files_here: info.files_here,
        }
    }

    /// Its name (the file's or folder's).
    pub fn name(&self) -> Cow<'_, str> {
        match &self.other_name {
            Some(n) => Cow::Borrowed(n),
            None => name_of(&self.path),
        }
    }

    /// Its size in bytes (of every file of a folder).
    pub fn size(&self) -> u64 {
        self.manifest.total_size()
    }
}

/// A path's last component, as the share index names a share (`content::index`).
fn name_of(path: &Path) -> Cow<'_, str> {
    path.file_name()
        .map_or(Cow::Borrowed(""), |n| n.to_string_lossy())
}
