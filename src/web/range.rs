//! Streaming a content's bytes over HTTP (http.md section 6): which byte ranges a `Range`
//! header asks for, the type a file's name implies, and the response as a head and a list
//! of body pieces, some of them byte ranges of the file still to read. Pure; the reading is
//! the storage's, piece by piece as the client takes them (memory stays bounded whatever
//! the file's size).

// Lists of byte ranges that hold one range are meant: a request asks for one or several.
#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range;

use super::response;

/// Most ranges in one request; more are refused (416), so a request cannot make the node
/// read a file many times over.
pub const MAX_RANGES: usize = 64;
/// A piece of a response's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// These bytes.
    Bytes(Vec<u8>),
    /// These bytes of the file, read when their turn comes.
    File(Range<u64>),
}

/// What a request asks of a content of `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No (usable) `Range`: the whole content, `200`.
    Whole,
    /// These ranges, in the request's order, each within the content: `206`.
    Ranges(Vec<Range<u64>>),
    /// None of the ranges is within the content, or too many: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header against `size`. A header that is not `bytes=` ranges is ignored
/// (RFC 9110 section 14.2: a server may ignore Range); ranges past the end are dropped,
/// and if none is left the answer is [`Wanted::Unsatisfiable`].
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    let mut out = Vec::new();
    for (i, part) in spec.split(',').enumerate() {
        if i >= MAX_RANGES {
            return Wanted::Unsatisfiable;
        }
        let Some((a, b)) = part.trim().split_once('-') else {
            return Wanted::Whole;
        };
        let r = match (a.parse::<u64>(), b.parse::<u64>()) {
            // `-N`: the last N bytes.
            (Err(_), Ok(n)) if a.is_empty() => size.saturating_sub(n)..size,
            // `A-`: from A to the end.
            (Ok(a), Err(_)) if b.is_empty() => a..size,
            (Ok(a), Ok(b)) if a <= b => a..b.saturating_add(1).min(size),
            _ => return Wanted::Whole,
        };
        if r.start < r.end {
            out.push(r);
        }
    }
    if out.is_empty() {
        Wanted::Unsatisfiable
    } else {
        Wanted::Ranges(out)
    }
}

/// The ranges to read for `w`: `None` when the answer is `416`.
pub fn to_read(w: &Wanted, size: u64) -> Option<Vec<Range<u64>>> {
    match w {
        Wanted::Whole => Some(vec![0..size]),
        Wanted::Ranges(rs) => Some(rs.clone()),
        Wanted::Unsatisfiable => None,
    }
}

/// The media type a file's name implies.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "m4a" => "audio/mp4",
        "aif" | "aiff" => "audio/aiff",
        "mid" | "midi" => "audio/midi",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "txt" | "md" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The response's head and body pieces: `served` are the ranges to send ([`to_read`]'s, a
/// single one possibly cut short where the verified bytes end).
pub fn plan(w: &Wanted, size: u64, name: &str, served: &[Range<u64>]) -> (Vec<u8>, Vec<Piece>) {
    let ctype = content_type(name);
    let last = |r: &Range<u64>| r.end.saturating_sub(1);
    let len = |r: &Range<u64>| r.end.saturating_sub(r.start);
    match (w, served) {
        (Wanted::Whole, [r]) if r.start == 0 && r.end == size => (
            response::head(200, ctype, "Accept-Ranges: bytes\r\n", size),
            vec![Piece::File(r.clone())],
        ),
        (_, [r]) => {
            let extra = format!(
                "Accept-Ranges: bytes\r\nContent-Range: bytes {}-{}/{size}\r\n",
                r.start,
                last(r)
            );
            (
                response::head(206, ctype, &extra, len(r)),
                vec![Piece::File(r.clone())],
            )
        }
        _ => {
            // A boundary that cannot occur in the parts' headers; bytes may contain anything,
            // which multipart allows (the boundary is only looked for after CRLF).
            let boundary = "PEERSHARE_BYTERANGES_7d1f0c";
            let mut pieces = Vec::with_capacity(2 * served.len() + 1);
            let mut total = 0u64;
            let mut text = |pieces: &mut Vec<Piece>, t: String| {
                total += t.len() as u64;
                pieces.push(Piece::Bytes(t.into_bytes()));
            };
            for (i, r) in served.iter().enumerate() {
                let before = if i == 0 { "" } else { "\r\n" };
                text(
                    &mut pieces,
                    format!(
                        "{before}--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                        r.start,
                        last(r)
                    ),
                );
                pieces.push(Piece::File(r.clone()));
            }
            text(&mut pieces, format!("\r\n--{boundary}--\r\n"));
            let body: u64 = total + served.iter().map(len).sum::<u64>();
            let head = response::head(
                206,
                &format!("multipart/byteranges; boundary={boundary}"),
                "Accept-Ranges: bytes\r\n",
                body,
            );
            (head, pieces)
        }
    }
}

/// `416` for a content of `size` bytes.
pub fn unsatisfiable(size: u64) -> Vec<u8> {
    response::with(
        416,
        "text/plain; charset=utf-8",
        &format!("Content-Range: bytes */{size}\r\n"),
        format!("no requested range is within the {size} bytes (at most {MAX_RANGES} ranges)\n")
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let w = |h: &str| wanted(Some(h), 1000);
        assert_eq!(wanted(None, 1000), Wanted::Whole);
        assert_eq!(w("bytes=0-99"), Wanted::Ranges(vec![0..100]));
        assert_eq!(w("bytes=900-"), Wanted::Ranges(vec![900..1000]));
        assert_eq!(w("bytes=-100"), Wanted::Ranges(vec![900..1000]));
        assert_eq!(w("bytes=-5000"), Wanted::Ranges(vec![0..1000]));
        assert_eq!(w("bytes=990-2000"), Wanted::Ranges(vec![990..1000]));
        assert_eq!(w("bytes=1000-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=5000-6000"), Wanted::Unsatisfiable);
        assert_eq!(
            w("bytes=0-0, 5000-, 10-19"),
            Wanted::Ranges(vec![0..1, 10..20])
        );
        assert_eq!(w("bytes=9-3"), Wanted::Whole);
        assert_eq!(w("items=0-1"), Wanted::Whole);
        assert_eq!(w("bytes=x-y"), Wanted::Whole);
        let many: Vec<String> = (0..=MAX_RANGES).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            w(&format!("bytes={}", many.join(","))),
            Wanted::Unsatisfiable
        );
        assert_eq!(wanted(Some("bytes=-0"), 1000), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn plans() {
        let (head, pieces) = plan(&Wanted::Ranges(vec![2..4]), 10, "a.wav", &[2..4]);
        let s = String::from_utf8(head).unwrap();
        assert!(s.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{s}");
        assert!(s.contains("Content-Range: bytes 2-3/10\r\n"), "{s}");
        assert!(s.contains("Content-Type: audio/wav\r\n"), "{s}");
        assert!(s.contains("Content-Length: 2\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\n"), "{s}");
        assert_eq!(pieces, vec![Piece::File(2..4)]);
        let (head, pieces) = plan(&Wanted::Whole, 2, "x", &[0..2]);
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(pieces, vec![Piece::File(0..2)]);
        // No cap: a whole file of any size is one piece, read as it goes.
        let huge = 5u64 << 30;
        assert_eq!(to_read(&Wanted::Whole, huge), Some(vec![0..huge]));
        // Several ranges: multipart, its length counted exactly.
        let w = Wanted::Ranges(vec![0..1, 5..8]);
        let (head, pieces) = plan(&w, 10, "x", &[0..1, 5..8]);
        let mut body = Vec::new();
        for p in &pieces {
            match p {
                Piece::Bytes(b) => body.extend_from_slice(b),
                Piece::File(r) => {
                    body.extend(std::iter::repeat_n(b'#', (r.end - r.start) as usize))
                }
            }
        }
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.starts_with("--PEERSHARE_BYTERANGES_7d1f0c\r\n"),
            "{body}"
        );
        assert!(
            body.contains("Content-Range: bytes 5-7/10\r\n\r\n###\r\n--PEERSHARE"),
            "{body}"
        );
        assert!(
            body.ends_with("#\r\n--PEERSHARE_BYTERANGES_7d1f0c--\r\n"),
            "{body}"
        );
    }
}
