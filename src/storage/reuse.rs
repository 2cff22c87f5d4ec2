//! Reusing what is already here: before a download fetches anything, each of its files that
//! this node already has (shared alone, or inside any shared folder: an earlier version of a
//! sample pack) is copied into the download from the local file instead of fetched.
//!
//! Nothing is trusted for being local: each chunk read from the local file is checked
//! against the download's own manifest ([`VerifiedChunk::check`]) before it is stored, like a
//! chunk from the network, and a local file whose stamp moved since it was hashed is not
//! read at all. A file found under a wrong hash, or changed, is simply fetched.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::content::index::LocalFiles;
use crate::content::partial::PartialFile;
use crate::content::verified::VerifiedChunk;
use crate::content::FileStamp;

/// What [`reuse_local_files`] copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reused {
    /// Files whose missing chunks all came from a local copy.
    pub files: u32,
    /// Bytes stored from local copies.
    pub bytes: u64,
}

/// Copies every missing chunk of `pf` whose file is in `local` (module docs). Returns what
/// it stored (verified, and claimed by the resume record at its next flush).
pub fn reuse_local_files(local: &LocalFiles, pf: &mut PartialFile) -> Reused {
    let mut reused = Reused::default();
    if local.is_empty() {
        return reused;
    }
    let manifest = pf.manifest().clone();
    let layout = pf.layout().clone();
    let mut buf = Vec::new();
    for span in manifest.file_spans() {
        let missing: Vec<_> = span
            .chunks
            .clone()
            .filter_map(|i| layout.validate(i))
            .filter(|c| !pf.is_verified(*c) && pf.is_wanted(*c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        for (path, stamp) in local.get(&span.sha256, span.size) {
            let Ok(file) = File::open(path) else {
                continue;
            };
            if file.metadata().map(|m| FileStamp::of(&m)).ok() != Some(*stamp) {
                log::debug!(
                    "not reusing {}: changed since it was shared",
                    path.display()
                );
                continue;
            }
            let mut all = true;
            for &c in &missing {
                buf.resize(layout.chunk_len(c) as usize, 0);
                if file
                    .read_exact_at(&mut buf, manifest.offset_in_file(c))
                    .is_err()
                {
                    all = false;
                    break;
                }
                match VerifiedChunk::check(&manifest, c.get(), std::mem::take(&mut buf)) {
                    Ok(v) => {
                        match pf.store(&v) {
                            Ok(true) => reused.bytes += v.data().len() as u64,
                            Ok(false) => {}
                            Err(e) => {
                                log::warn!("download {}: {e}", pf.content_id());
                                return reused;
                            }
                        }
                        buf = v.into_data();
                    }
                    Err(e) => {
                        buf = e.data;
                        all = false;
                        break;
                    }
                }
            }
            if all {
                reused.files += 1;
                break;
            }
        }
    }
    reused
}
