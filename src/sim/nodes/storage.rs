//! A simulated node's disk: the same [`StorageJob`]s the real node's `DiskStorage` runs,
//! carried out in memory. The rule that matters is the real one: a chunk is stored only as
//! a [`VerifiedChunk`] (hashed against the manifest), so a finished file holds only verified
//! bytes. What survives a crash (a node killed and restarted by
//! the churn) is what a disk would keep: shares, verified chunks of downloads, the list of
//! downloads, the saved node state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::bitset::BitSet;
use crate::content::verified::VerifiedChunk;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::storage::job::{
    DownloadRecord, FinishError, Inventory, NodeState, Resumable, ShareInfo, StorageDone,
    StorageJob, StoreOutcome,
};

/// A download's chunks as stored so far (only verified ones).
struct Partial {
    manifest: Arc<ContentManifest>,
    chunks: BTreeMap<u32, Arc<Vec<u8>>>,
}

/// A complete file this node serves.
struct Share {
    info: ShareInfo,
    chunks: Vec<Arc<Vec<u8>>>,
}

/// One node's storage (see the module docs).
#[derive(Default)]
pub struct MemStorage {
    shares: BTreeMap<Id, Share>,
    partials: BTreeMap<Id, Partial>,
    downloads: Vec<DownloadRecord>,
    state: Option<NodeState>,
    /// Files finished here: content, and the bytes as assembled from the stored chunks.
    finished: Vec<(Id, Arc<Vec<u8>>)>,
}

impl MemStorage {
    /// Shares `data` (whose manifest is `manifest`), as `local_add_file` would have.
    pub fn share(&mut self, manifest: Arc<ContentManifest>, data: &[u8], name: &str) {
        let l = manifest.layout();
        let chunks = l
            .chunks()
            .map(|c| {
                let r = l.chunk_range(c);
                let bytes = data
                    .get(r.start as usize..r.end as usize)
                    .unwrap_or_default()
                    .to_vec();
                Arc::new(bytes)
            })
            .collect();
        let info = ShareInfo {
            have: None,
            files_here: None,
            size: manifest.total_size(),
            name: name.to_owned(),
            path: PathBuf::from(format!("/sim/shared/{name}")),
            manifest,
            skipped: Vec::new(),
        };
        self.shares
            .insert(info.manifest.content_id(), Share { info, chunks });
    }

    /// What a restarted node finds on its disk.
    pub fn inventory(&self) -> Inventory {
        Inventory {
            shares: self.shares.values().map(|s| s.info.clone()).collect(),
            resumable: self
                .partials
                .values()
                .map(|p| Resumable {
                    manifest: p.manifest.clone(),
                    recorded_bytes: p.chunks.values().map(|c| c.len() as u64).sum(),
                })
                .collect(),
            downloads: self.downloads.clone(),
        }
    }

    /// The node state saved last (contacts, ID), if any.
    pub fn saved_state(&self) -> Option<&NodeState> {
        self.state.as_ref()
    }

    /// Files finished since the last call, with their bytes.
    pub fn take_finished(&mut self) -> Vec<(Id, Arc<Vec<u8>>)> {
        std::mem::take(&mut self.finished)
    }

    /// Carries out `job`, as `DiskStorage::run` does.
    #[must_use]
    pub fn run(&mut self, job: StorageJob) -> Option<StorageDone> {
        match job {
            StorageJob::ReadChunk {
                conn,
                content,
                chunk,
            } => {
                let data = match self.shares.get(&content) {
                    Some(s) => s.chunks.get(chunk as usize).cloned(),
                    None => self
                        .partials
                        .get(&content)
                        .and_then(|p| p.chunks.get(&chunk).cloned()),
                };
                Some(StorageDone::ChunkRead {
                    conn,
                    content,
                    chunk,
                    data,
                    changed: false,
                })
            }
            StorageJob::StoreChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let outcome = match self.partials.get_mut(&content) {
                    None => StoreOutcome::Failed(format!("download {content} is not open")),
                    Some(p) => match VerifiedChunk::check(&p.manifest, chunk, data) {
                        Ok(v) => {
                            p.chunks
                                .entry(v.index().get())
                                .or_insert_with(|| Arc::new(v.into_data()));
                            StoreOutcome::Stored
                        }
                        Err(_) => StoreOutcome::BadHash,
                    },
                };
                Some(StorageDone::ChunkStored {
                    content,
                    chunk,
                    from,
                    outcome,
                })
            }
            StorageJob::CheckChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let manifest = self
                    .partials
                    .get(&content)
                    .map(|p| p.manifest.clone())
                    .or_else(|| self.shares.get(&content).map(|s| s.info.manifest.clone()));
                let ok = manifest.is_none_or(|m| VerifiedChunk::check(&m, chunk, data).is_ok());
                Some(StorageDone::ChunkChecked { content, from, ok })
            }
            StorageJob::OpenPartial {
                content, manifest, ..
            } => {
                let n = manifest.chunk_count() as usize;
                let p = self.partials.entry(content).or_insert_with(|| Partial {
                    manifest,
                    chunks: BTreeMap::new(),
                });
                let mut have = BitSet::new(n);
                for c in p.chunks.keys() {
                    have.insert(*c as usize);
                }
                Some(StorageDone::PartialOpened {
                    content,
                    result: Ok(have),
                })
            }
            StorageJob::Finish { content, dir, name } => Some(StorageDone::Finished {
                content,
                result: self.finish(content, dir.join(name)),
            }),
            // Memory keeps everything; a paused download's chunks stay where they are.
            StorageJob::Close { .. } => None,
            StorageJob::Discard { content } => {
                self.partials.remove(&content);
                Some(StorageDone::Discarded { content })
            }
            StorageJob::Unshare { content } => {
                self.shares.remove(&content);
                None
            }
            StorageJob::AddFile { reply, .. } => Some(StorageDone::Added {
                reply,
                result: Err("the simulator shares files at start only".into()),
            }),
            StorageJob::CopyOut {
                content,
                from,
                reply,
                ..
            } => Some(StorageDone::CopiedOut {
                content,
                from,
                reply,
                result: Err("the simulator keeps no copies".into()),
            }),
            StorageJob::SaveDownloads(list) => {
                self.downloads = list.value;
                None
            }
            StorageJob::SaveState(st) => {
                self.state = Some(st.value);
                None
            }
            StorageJob::FlushAll => None,
            // Memory does not change under the simulator: every share is as it was added.
            StorageJob::CheckShares { .. } => Some(StorageDone::SharesChecked {
                changed: Vec::new(),
                next: None,
            }),
            // The simulated nodes keep no config file: edits are taken and forgotten.
            StorageJob::Config { edits, reply } => Some(StorageDone::Config {
                edits,
                reply,
                result: Ok((PathBuf::from("(simulated)"), Default::default())),
            }),
        }
    }

    /// Assembles the file from its stored chunks (each verified when it was stored, as
    /// `PartialFile::store` requires); a complete file becomes a share.
    fn finish(&mut self, content: Id, path: PathBuf) -> Result<PathBuf, FinishError> {
        let Some(p) = self.partials.get(&content) else {
            return Err(FinishError::Io(format!("download {content} is not open")));
        };
        let l = p.manifest.layout();
        if p.chunks.len() != l.chunk_count() as usize {
            return Err(FinishError::Io(format!(
                "download {content} is not complete ({} of {} chunks)",
                p.chunks.len(),
                l.chunk_count()
            )));
        }
        let mut file = Vec::with_capacity(l.total() as usize);
        for c in p.chunks.values() {
            file.extend_from_slice(c);
        }
        let Some(p) = self.partials.remove(&content) else {
            return Err(FinishError::Io(format!("download {content} is not open")));
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = ShareInfo {
            have: None,
            files_here: None,
            size: p.manifest.total_size(),
            manifest: p.manifest,
            name,
            path: path.clone(),
            skipped: Vec::new(),
        };
        let chunks = p.chunks.into_values().collect();
        self.finished.push((content, Arc::new(file)));
        self.shares.insert(content, Share { info, chunks });
        Ok(path)
    }
}
