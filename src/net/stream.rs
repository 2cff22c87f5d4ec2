//! Streaming over HTTP, on a worker (http.md section 6): the file named, the ranges asked
//! for, their verified bytes read from storage, and the whole response made.

use crate::id::Id;
use crate::storage::stream::StreamError;
use crate::storage::DiskStorage;
use crate::web::range;
use crate::web::response;

/// The response to `GET /content/<content>/<path>` with `range` (its `Range` header).
pub fn response(storage: &DiskStorage, content: Id, path: &str, range: Option<&str>) -> Vec<u8> {
    let file = match storage.stream_file(content, path) {
        Ok(f) => f,
        Err(e) => return refusal(content, &e),
    };
    let size = file.lengths.total();
    let wanted = range::wanted(range, size);
    let Some(ranges) = range::to_read(&wanted, size) else {
        return range::unsatisfiable(size);
    };
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        match storage.read_range(content, &file, r.clone()) {
            Ok(bytes) => parts.push((r, bytes)),
            Err(e) => return refusal(content, &e),
        }
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    range::respond(&wanted, size, name, &parts)
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
        // Not verified yet: the client asks again (media elements retry).
        StreamError::NotHere { chunk } => response::with(
            503,
            "text/plain; charset=utf-8",
            "Retry-After: 1\r\n",
            format!("chunk {chunk} of {content} is not here yet; try again\n").as_bytes(),
        ),
    }
}
