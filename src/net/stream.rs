//! Streaming over HTTP, on a worker (http.md section 6): the file named, the ranges asked
//! for, their verified bytes read from storage, and the whole response made.

use crate::id::Id;
use crate::storage::stream::StreamError;
use crate::storage::DiskStorage;
use crate::web::range;
use crate::web::response;

/// Most chunks asked for first at once for a stream (a window ahead of the one it waits for).
const URGENT_WINDOW: u32 = 8;

/// What a stream request came to.
pub enum Streamed {
    /// The whole response.
    Done(Vec<u8>),
    /// These chunks must come first (the first of them is not here yet).
    Pending(std::ops::Range<u32>),
}

/// The response to `GET /content/<content>/<path>` with `range` (its `Range` header), or the
/// chunks to wait for.
pub fn respond(storage: &DiskStorage, content: Id, path: &str, range: Option<&str>) -> Streamed {
    match storage
        .stream_file(content, path)
        .map(|f| read(storage, content, &f, path, range))
    {
        Ok(Err(StreamError::NotHere { chunk, until })) => {
            Streamed::Pending(chunk..until.min(chunk.saturating_add(URGENT_WINDOW)))
        }
        Ok(Ok(bytes)) => Streamed::Done(bytes),
        Ok(Err(e)) | Err(e) => Streamed::Done(refusal(content, &e)),
    }
}

fn read(
    storage: &DiskStorage,
    content: Id,
    file: &crate::storage::stream::StreamFile,
    path: &str,
    range: Option<&str>,
) -> Result<Vec<u8>, StreamError> {
    let size = file.lengths.total();
    let wanted = range::wanted(range, size);
    let Some(ranges) = range::to_read(&wanted, size) else {
        return Ok(range::unsatisfiable(size));
    };
    let short = ranges.len() == 1;
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        let bytes = storage.read_range(content, file, r.clone(), short)?;
        parts.push((r.start..r.start + bytes.len() as u64, bytes));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    Ok(range::respond(&wanted, size, name, &parts))
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
