//! Streaming over HTTP, on a worker (http.md section 6): the file named, the ranges asked
//! for and how much of them is verified, made into a response plan; then its bytes, read a
//! segment at a time as the server sends them (a file of any size in bounded memory).

use std::ops::Range;

use crate::id::Id;
use crate::storage::stream::{StreamError, StreamFile};
use crate::storage::DiskStorage;
use crate::web::range::{self, Piece};
use crate::web::response;

/// Most chunks asked for first at once for a stream (a window ahead of the one it waits for).
const URGENT_WINDOW: u32 = 8;

/// Most bytes read for a stream at once (rounded to whole chunks, at least one): what a
/// streaming connection holds in memory, plus the next segment read while this one is sent.
pub const SEGMENT: u64 = 512 * 1024;

/// What a stream request came to.
pub enum Streamed {
    /// The whole response (a refusal, or `416`).
    Done(Vec<u8>),
    /// A response whose body is read piece by piece as the client takes it.
    Plan(Box<StreamPlan>),
    /// These chunks must come first (the first of them is not here yet).
    Pending(std::ops::Range<u32>),
    /// Storage does not know the content: the `404` to send, unless the node is downloading
    /// it and storage has not opened it yet (the moment after its manifest arrived), when
    /// the request waits like a [`Streamed::Pending`] one.
    Unknown(Vec<u8>),
}

/// A response to send: its head, then its pieces, the file's read segment by segment.
#[derive(Debug)]
pub struct StreamPlan {
    /// Status line and header fields (the server adds `Connection`).
    pub head: Vec<u8>,
    /// The file the pieces' ranges are in.
    pub file: StreamFile,
    /// The body.
    pub pieces: Vec<Piece>,
}

/// The response to `GET /content/<content>/<path>` with `range` (its `Range` header), or the
/// chunks to wait for. Reads no file bytes: only which of them are verified.
pub fn respond(storage: &DiskStorage, content: Id, path: &str, range: Option<&str>) -> Streamed {
    match storage
        .stream_file(content, path)
        .map(|f| plan(storage, content, f, path, range))
    {
        Ok(Err(StreamError::NotHere { chunk, until })) => {
            Streamed::Pending(chunk..until.min(chunk.saturating_add(URGENT_WINDOW)))
        }
        Ok(Ok(s)) => s,
        Ok(Err(e @ StreamError::Unknown)) | Err(e @ StreamError::Unknown) => {
            Streamed::Unknown(refusal(content, &e))
        }
        Ok(Err(e)) | Err(e) => Streamed::Done(refusal(content, &e)),
    }
}

fn plan(
    storage: &DiskStorage,
    content: Id,
    file: StreamFile,
    path: &str,
    range: Option<&str>,
) -> Result<Streamed, StreamError> {
    let size = file.lengths.total();
    let wanted = range::wanted(range, size);
    let Some(ranges) = range::to_read(&wanted, size) else {
        return Ok(Streamed::Done(range::unsatisfiable(size)));
    };
    let served = match ranges.as_slice() {
        // One range: what is verified from its start (a player asks for the rest).
        [r] if r.is_empty() => vec![r.clone()],
        [r] => {
            let end = storage.verified_end(content, &file, r.clone())?;
            vec![Range {
                start: r.start,
                end,
            }]
        }
        // Several: all of each, or wait for the first chunk missing.
        rs => {
            for r in rs {
                let end = storage.verified_end(content, &file, r.clone())?;
                if end < r.end {
                    storage.verified_end(content, &file, end..r.end)?;
                }
            }
            ranges
        }
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let (head, pieces) = range::plan(&wanted, size, name, &served);
    Ok(Streamed::Plan(Box::new(StreamPlan { head, file, pieces })))
}

/// The next segment to read of `range` (within `file`): from its start to a chunk boundary,
/// at most [`SEGMENT`] bytes unless one chunk is longer, never past its end.
pub fn next_segment(file: &StreamFile, range: &Range<u64>) -> Range<u64> {
    let l = &file.lengths;
    let mut end = range.start;
    while end < range.end {
        let Some(c) = l.chunk_at_offset(end) else {
            break;
        };
        let next = (l.chunk_offset(c) + u64::from(l.chunk_len(c))).min(range.end);
        if next <= end || (next - range.start > SEGMENT && end > range.start) {
            break;
        }
        end = next;
    }
    range.start..end.max(range.start)
}

/// Reads `range` of `file` of `content`: a segment of a stream being sent.
pub fn read_segment(
    storage: &DiskStorage,
    content: Id,
    file: &StreamFile,
    range: Range<u64>,
) -> Result<Vec<u8>, StreamError> {
    storage.read_range(content, file, range, false)
}

/// `503` for a stream whose bytes did not come in time.
pub fn too_slow(content: Id) -> Vec<u8> {
    response::with(
        503,
        "text/plain; charset=utf-8",
        "Retry-After: 1\r\n",
        format!("the bytes asked for of {content} did not arrive in time; try again\n").as_bytes(),
    )
}

fn refusal(content: Id, e: &StreamError) -> Vec<u8> {
    match e {
        StreamError::Unknown => response::text(
            404,
            &format!("content {content} is neither shared nor downloaded here"),
        ),
        StreamError::NoSuchFile(p) if p.is_empty() => response::text(
            404,
            &format!("content {content} is a folder: name one of its files, /content/ID/PATH"),
        ),
        StreamError::NoSuchFile(p) => response::with(
            404,
            "text/plain; charset=utf-8",
            "",
            format!("folder {content} has no file {p:?}\n").as_bytes(),
        ),
        // Waited for by the caller (`respond`); never made into a response.
        StreamError::NotHere { .. } => too_slow(content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::manifest::Lengths;

    fn file(total: u64, chunk: u32) -> StreamFile {
        StreamFile {
            first_chunk: 0,
            lengths: Lengths::new(total, chunk).unwrap(),
        }
    }

    /// Segments end on chunk boundaries (no chunk read twice), hold at most `SEGMENT` bytes
    /// unless one chunk is longer, and cover the range exactly.
    #[test]
    fn segments_cover_a_range_in_whole_chunks() {
        for (total, chunk, range) in [
            (10 << 20, 256 * 1024, 100..(10 << 20) - 3),
            (10 << 20, 1 << 20, 5..(9 << 20) + 1),
            (1000, 256 * 1024, 0..1000),
            (3 << 20, 64 * 1024, (1 << 20) + 1..(1 << 20) + 2),
        ] {
            let f = file(total, chunk);
            let mut at = range.clone();
            let mut covered = range.start;
            while !at.is_empty() {
                let seg = next_segment(&f, &at);
                assert_eq!(seg.start, covered);
                assert!(seg.end > seg.start && seg.end <= range.end, "{seg:?}");
                let len = seg.end - seg.start;
                assert!(len <= SEGMENT.max(u64::from(chunk)), "{seg:?}");
                assert!(
                    seg.end == range.end || seg.end.is_multiple_of(u64::from(chunk)),
                    "{seg:?} ends inside a chunk"
                );
                covered = seg.end;
                at.start = seg.end;
            }
            assert_eq!(covered, range.end);
        }
    }
}
