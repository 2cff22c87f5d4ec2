//! Reading a content's verified bytes by byte range, for streaming over HTTP (http.md
//! section 6). Only verified chunks are read: from a shared file, or a download's verified
//! chunks; a byte not verified yet is an error naming its chunk.

use std::ops::Range;

use super::{DiskStorage, Source};
use crate::content::content_manifest::ContentManifest;
use crate::content::manifest::Lengths;
use crate::content::tree::EntryKind;
use crate::id::Id;

/// One file of a content: where its chunks start in the content, and its lengths.
#[derive(Clone, Debug)]
pub struct StreamFile {
    /// The content's chunk number of the file's first chunk.
    pub first_chunk: u32,
    /// The file's size and chunk size.
    pub lengths: Lengths,
}

/// Why bytes cannot be streamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The node neither shares nor downloads the content, or has no manifest for it yet.
    Unknown,
    /// The content is a folder and `path` names none of its files (or none was named).
    NoSuchFile(String),
    /// Chunk `chunk` (of the content) is not verified here yet.
    NotHere {
        /// The chunk.
        chunk: u32,
        /// The chunk after the last one the range needs.
        until: u32,
    },
}

impl DiskStorage {
    /// The file `path` of `content` (a folder's entry path; ignored for a single file).
    pub fn stream_file(&self, content: Id, path: &str) -> Result<StreamFile, StreamError> {
        let src = self.source(&content).ok();
        let manifest = src.ok_or(StreamError::Unknown)?.manifest().clone();
        match &*manifest {
            ContentManifest::File(m) => Ok(StreamFile {
                first_chunk: 0,
                lengths: m.lengths(),
            }),
            ContentManifest::Tree(t) => t
                .entries()
                .iter()
                .enumerate()
                .find_map(|(k, e)| match &e.kind {
                    EntryKind::File(f) if e.path.as_str() == path => Some(StreamFile {
                        first_chunk: t.file_chunks(k).start,
                        lengths: f.lengths,
                    }),
                    _ => None,
                })
                .ok_or_else(|| StreamError::NoSuchFile(path.to_string())),
        }
    }

    /// Where the verified bytes of `range` of `file` (within the file) that start at its
    /// start end: `range.end` when all are here. Reads nothing. [`StreamError::NotHere`]
    /// when the first chunk is missing (its `until`: the chunk after the range's last).
    pub fn verified_end(
        &self,
        content: Id,
        file: &StreamFile,
        range: Range<u64>,
    ) -> Result<u64, StreamError> {
        let l = &file.lengths;
        let src = self.source(&content).ok();
        let src = src.ok_or(StreamError::Unknown)?;
        let mut at = range.start;
        while at < range.end {
            let Some(c) = l.chunk_at_offset(at) else {
                break;
            };
            let chunk = file.first_chunk.saturating_add(c.get());
            let here = match &src {
                Source::Shared { .. } => true,
                Source::Partial { reader, .. } => src
                    .manifest()
                    .validate(chunk)
                    .is_some_and(|c| reader.is_verified(c)),
            };
            if !here && at == range.start {
                let last = l
                    .chunk_at_offset(range.end - 1)
                    .map_or(c.get(), |c| c.get());
                return Err(StreamError::NotHere {
                    chunk,
                    until: file.first_chunk.saturating_add(last).saturating_add(1),
                });
            }
            if !here {
                break;
            }
            let next = l.chunk_offset(c) + u64::from(l.chunk_len(c));
            if next <= at {
                break; // an empty chunk: nothing further
            }
            at = next.min(range.end);
        }
        Ok(at)
    }

    /// Bytes `range` of `file` of `content` (the range within the file), verified ones only.
    /// With `short`, a range whose first bytes are here but not all is cut before the first
    /// chunk missing (a stream plays what is here while the rest comes).
    pub fn read_range(
        &self,
        content: Id,
        file: &StreamFile,
        range: Range<u64>,
        short: bool,
    ) -> Result<Vec<u8>, StreamError> {
        let l = &file.lengths;
        // Read here, not with `read_chunk`: a chunk not here yet is normal for a stream
        // (the caller waits for it), not worth the warning a peer's request for one gets.
        let src = self.source(&content).ok();
        let src = src.ok_or(StreamError::Unknown)?;
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut at = range.start;
        while at < range.end {
            let Some(c) = l.chunk_at_offset(at) else {
                break;
            };
            let chunk = file.first_chunk.saturating_add(c.get());
            let read = src.manifest().validate(chunk).and_then(|c| {
                let r = match &src {
                    Source::Shared { reader, .. } => reader.read_chunk(c, &mut buf),
                    Source::Partial { reader, .. } => reader.read_chunk(c, &mut buf),
                };
                r.ok()
            });
            if read.is_none() && short && !out.is_empty() {
                break;
            }
            read.ok_or_else(|| {
                let last = l
                    .chunk_at_offset(range.end - 1)
                    .map_or(c.get(), |c| c.get());
                StreamError::NotHere {
                    chunk,
                    until: file.first_chunk.saturating_add(last).saturating_add(1),
                }
            })?;
            let start = l.chunk_offset(c);
            let from = (at - start) as usize;
            let to = (range.end.min(start + buf.len() as u64) - start) as usize;
            if to <= from {
                break; // a short chunk: nothing more to take from it
            }
            out.extend_from_slice(buf.get(from..to).unwrap_or(&[]));
            at = start + to as u64;
        }
        Ok(out)
    }
}
