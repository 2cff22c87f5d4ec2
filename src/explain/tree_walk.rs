//! The layout of a tree manifest, a shared folder (spec: `protocol-spec/content.md`,
//! section 10), in the order of [`TreeManifest::decode`].
//!
//! The header and each entry are walked field by field, as the decoder reads them. The checks
//! that span entries (order, structure, sums, the files' SHA-256) are the decoder's own
//! functions ([`check_entries`], [`check_file_hashes`]), run on the entries the decoder's
//! [`decode_entries`] gives; they say which entry is at fault, so the walk points at its field
//! and keeps that entry visible among the folded ones.

use std::mem;

use super::line::{line, tree_line};
use super::manifest_walk::{explain_content, hashes_present, magic_version, size_value};
use super::walk::{at_most, hex_preview, invalid, quote, stop, Stop, Walk, Walker};
use super::{Explanation, SHOW_ITEMS};
use crate::content::manifest::{Lengths, HASH_LEN, MAX_CHUNKS, MAX_FILE_SIZE};
use crate::content::tree::{
    check_entries, check_file_hashes, chunk_place_in, decode_entries, max_entries_len,
    EntriesFault, EntryKind, TreeEntry, TreeManifest, TreePath, KIND_EMPTY_FOLDER, KIND_FILE,
    MAX_ENTRIES, TREE_MAGIC, TREE_VERSION, UNSORTED,
};
use crate::proto::codec::DecodeError;

/// Explains a tree manifest: the decoder's verdict, its content ID, and the layout.
pub(super) fn explain_tree(input: &[u8], ex: &mut Explanation) {
    let verdict = TreeManifest::decode(input);
    let done = |t: &TreeManifest| (line(|s| tree_line(s, t)), t.content_id());
    explain_content(
        input,
        ex,
        ("TREE", "tree manifest"),
        verdict,
        walk_tree,
        done,
    );
}

/// The header's fields: their values, and the offsets of those an error can be about.
struct Header {
    entry_count: u32,
    total_size: u64,
    chunk_count: u32,
    entries_len: usize,
    total_size_at: usize,
    chunk_count_at: usize,
    entries_len_at: usize,
}

/// Offsets of the fields of the entry an error is about.
#[derive(Clone, Copy, Default)]
struct EntryAt {
    path: usize,
    file_size: usize,
    sha256: usize,
}

/// The layout of [`TreeManifest::decode`], in the order of content.md, section 10.4.
fn walk_tree(w: &mut Walker<'_>) -> Walk<()> {
    let h = walk_header(w)?;
    let at = w.r.position();
    let Some(region) = w.region.get(at..).and_then(|r| r.get(..h.entries_len)) else {
        // Fewer bytes than `entries_len`: the reader's own `UnexpectedEnd` for `entries`.
        return w.take(h.entries_len, "entries", "entries").map(drop);
    };
    // The decoder's own entries and checks, first: where they fail says which entry to show.
    let decoded = decode_entries(region, h.entry_count);
    let checked = match &decoded {
        Ok(es) => Some((es, check_entries(es, h.total_size, h.chunk_count))),
        Err(_) => None,
    };
    let fault = match &checked {
        Some((_, Err(f))) => Some(f.clone()),
        Some((es, Ok(files))) => hash_fault(w, &h, es, files),
        None => None,
    };
    let focus = fault.as_ref().and_then(|f| f.entry);
    let order = matches!(&fault, Some(f) if error_reason(&f.error) == UNSORTED);
    let keep = |i: usize| focus == Some(i) || (order && focus == Some(i + 1));
    let focus_at = walk_entries(w, &h, region, keep, focus)?;
    let Some((es, checked)) = checked else {
        // Unreachable: the walk of the entries fails wherever `decode_entries` does.
        return Ok(());
    };
    let files = match checked {
        Ok(files) => files,
        Err(f) => return Err(locate(f, &h, es, focus_at)),
    };
    let count = usize::try_from(h.chunk_count).unwrap_or(usize::MAX);
    hashes_present(w, count)?;
    // The chunk of a file whose SHA-256 contradicts it.
    let keep = fault.as_ref().and_then(|f| f.entry).and_then(|e| {
        let &(_, first) = files.iter().find(|(i, _)| *i == e)?;
        let has_one = matches!(es.get(e)?.kind, EntryKind::File(f) if f.lengths.chunk_count() == 1);
        has_one.then_some(first)
    });
    let hashes_at = w.pos();
    walk_hashes(w, es, &files, h.chunk_count, keep)?;
    w.finish()?;
    let Some(f) = fault else { return Ok(()) };
    let mut s = locate(f, &h, es, focus_at);
    // A one-chunk file's SHA-256 should be its chunk's hash: say which, and what it is.
    let at = keep.and_then(|c| hashes_at.checked_add((c as usize).checked_mul(HASH_LEN)?));
    let hash = at.and_then(|a| w.region.get(a..)?.get(..HASH_LEN));
    if let Some((c, hash)) = keep.zip(hash) {
        let hash = hex::encode(hash);
        s.expected = format!("the hash of its one chunk (chunk {c}): {hash}");
    }
    Err(s)
}

/// Magic through `entries_len`, with the decoder's checks (`read_header`).
fn walk_header(w: &mut Walker<'_>) -> Walk<Header> {
    let not_ours = "not \"PSTR\" (50 53 54 52): not a PeerShare tree manifest";
    let meanings = [
        "\"PSTR\": a PeerShare tree manifest (a shared folder)",
        "tree manifest format version: 1",
    ];
    magic_version(w, TREE_MAGIC, TREE_VERSION, meanings, not_ours)?;
    let m = "files and empty folders listed: at most 262144";
    let (off, n) = w.num(4, "entry_count", m)?;
    at_most("entry_count", off, n, MAX_ENTRIES as usize)?;
    let m = "the sum of the files' sizes in bytes: at most 1 TiB";
    let (total_size_at, total) = w.int(8, "total_size", "total_size", m, size_value)?;
    if total > MAX_FILE_SIZE {
        let exp = format!("at most {MAX_FILE_SIZE} (1 TiB)");
        return Err(invalid(
            "total_size",
            "more than 1 TiB",
            total_size_at,
            &exp,
            total.to_string(),
        ));
    }
    let m = "the sum of the files' chunk counts; one hash each follows the entries";
    let (chunk_count_at, chunks) = w.num(4, "chunk_count", m)?;
    at_most("chunk_count", chunk_count_at, chunks, MAX_CHUNKS as usize)?;
    let chunk_count = u32::try_from(chunks).unwrap_or(u32::MAX);
    let m = "length in bytes of the entries that follow";
    let (entries_len_at, len) = w.num(4, "entries_len", m)?;
    let max = max_entries_len(chunk_count);
    let entries_len = at_most("entries_len", entries_len_at, len, max)?;
    Ok(Header {
        entry_count: u32::try_from(n).unwrap_or(u32::MAX),
        total_size: total,
        chunk_count,
        entries_len,
        total_size_at,
        chunk_count_at,
        entries_len_at,
    })
}

/// The entries, in a walker of their own (so its messages say "the entries end at"), then
/// the check that they fill `entries_len` exactly. Returns the offsets of entry `focus`.
fn walk_entries(
    w: &mut Walker<'_>,
    h: &Header,
    region: &[u8],
    keep: impl Fn(usize) -> bool,
    focus: Option<usize>,
) -> Walk<EntryAt> {
    let mut ew = Walker::new(region, w.pos(), "entries");
    ew.fields = mem::take(&mut w.fields);
    let mut focus_at = EntryAt::default();
    let n = h.entry_count as usize;
    let m = "every file and empty folder, in ascending byte order of their paths";
    let walked = ew
        .list_keeping(n, "entries", m, ["entry", "entries"], keep, |w, i| {
            let at = walk_entry(w, i)?;
            if focus == Some(i) {
                focus_at = at;
            }
            Ok(())
        })
        .and_then(|()| left_in_entries(&mut ew, h));
    // The outer walker goes on where the entries' stopped.
    let used = ew.r.position();
    w.fields = mem::take(&mut ew.fields);
    let _ = w.r.take(used, "entries");
    walked.map(|()| focus_at)
}

/// Bytes of `entries_len` after the last entry: shown, and the decoder's error.
fn left_in_entries(ew: &mut Walker<'_>, h: &Header) -> Walk<()> {
    let n = ew.r.remaining();
    if n == 0 {
        return Ok(());
    }
    let off = ew.pos();
    let b = ew.r.take(n, "entries").unwrap_or_default();
    let meaning = "inside entries_len, after the last entry";
    let value = hex_preview(b);
    ew.push(off, n, "(left in entries)", value, meaning);
    let (count, len) = (h.entry_count, h.entries_len);
    let exp = format!("{count} entries filling entries_len = {len} bytes exactly");
    let found = format!("{n} byte(s) left after the last entry, at offset {off}");
    let reason = "bytes remain after the last entry";
    Err(invalid(
        "entries_len",
        reason,
        h.entries_len_at,
        &exp,
        found,
    ))
}

/// One entry (`read_entry`): kind, path_len, path and, for a file, file_size, chunk_size,
/// sha256; the chunk size is checked after the SHA-256 is read, as the decoder does.
fn walk_entry(w: &mut Walker<'_>, i: usize) -> Walk<EntryAt> {
    let m = "a file (kind, path, size, chunk size, SHA-256) or an empty folder (kind, path)";
    w.group(format!("entry {}", i + 1), m, |w| {
        let mut at = EntryAt::default();
        let m = "0 = a file, 1 = an empty folder";
        let (koff, kind) = w.int(1, "kind", "kind", m, kind_value)?;
        if kind != u64::from(KIND_FILE) && kind != u64::from(KIND_EMPTY_FOLDER) {
            let reason = "neither 0 (file) nor 1 (empty folder)";
            let (exp, found) = ("0 (a file) or 1 (an empty folder)", kind.to_string());
            return Err(invalid("kind", reason, koff, exp, found));
        }
        let m = "length of the path in bytes: 1 to 1024";
        let (_, len) = w.num(2, "path_len", m)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let (poff, b) = w.take(len, "path", "path")?;
        at.path = poff;
        let m = "relative, components separated by \"/\" (content.md, 10.2)";
        let text = match std::str::from_utf8(b) {
            Ok(t) => t,
            Err(e) => {
                let v = format!("{} (not UTF-8)", hex_preview(b));
                w.push(poff, len, "path", v, m);
                let found = format!(
                    "a byte that is not UTF-8 at offset {}",
                    poff + e.valid_up_to()
                );
                return Err(invalid("path", "not UTF-8", poff, "UTF-8 text", found));
            }
        };
        if len > 0 {
            w.push(poff, len, "path", quote(text, usize::MAX), m);
        }
        if let Err(e) = TreePath::new(text) {
            let exp = "a relative path that follows the rules of content.md, 10.2";
            let found = format!("{}: {}", quote(text, 60), e.reason);
            return Err(invalid("path", e.reason, poff, exp, found));
        }
        let shown = quote(text, 48);
        if kind == u64::from(KIND_EMPTY_FOLDER) {
            return Ok((at, format!("empty folder {shown}")));
        }
        let m = "the file's size in bytes";
        let (foff, size) = w.int(8, "file_size", "file_size", m, size_value)?;
        at.file_size = foff;
        let m = "bytes per chunk of this file: a power of two, 16 KiB to 1 MiB";
        let (coff, cs) = w.int(4, "chunk_size", "chunk_size", m, size_value)?;
        let (soff, sha) = w.take(HASH_LEN, "sha256", "sha256")?;
        at.sha256 = soff;
        let m = "SHA-256 of the whole file";
        w.push(soff, HASH_LEN, "sha256", hex::encode(sha), m);
        let chunk_size = u32::try_from(cs).unwrap_or(u32::MAX);
        let Ok(l) = Lengths::new(size, chunk_size) else {
            let reason = "not a power of two between 16384 and 1048576, or too many chunks";
            let exp = "a power of two from 16384 to 1048576, at most 2^20 chunks of the file";
            let n = size.div_ceil(u64::from(chunk_size.max(1)));
            let found = format!("{chunk_size} ({n} chunks of a {size}-byte file)");
            return Err(invalid("chunk_size", reason, coff, exp, found));
        };
        let n = l.chunk_count();
        let bytes = if size == 1 { "byte" } else { "bytes" };
        let value = format!("file {shown}, {size} {bytes}, {n} chunk{}", plural(n));
        Ok((at, value))
    })
}

/// The chunk hashes: every file's, file after file, each named with its file. The first
/// [`SHOW_ITEMS`] and chunk `keep` are shown one by one; the others are folded into rows.
fn walk_hashes(
    w: &mut Walker<'_>,
    es: &[TreeEntry],
    files: &[(usize, u32)],
    count: u32,
    keep: Option<u32>,
) -> Walk<()> {
    if count == 0 {
        return Ok(());
    }
    let m = "SHA-256 of each chunk: every file's chunks, file after file, in entry order";
    w.group("chunk_hashes", m, |w| {
        let all = count as usize <= SHOW_ITEMS + 1;
        let shown = |c: u32| all || (c as usize) < SHOW_ITEMS || keep == Some(c);
        let mut c = 0;
        while c < count {
            if shown(c) {
                let (off, b) = w.take(HASH_LEN, "chunk_hashes", "chunk hash")?;
                let m = chunk_meaning(es, files, c);
                w.push(off, HASH_LEN, format!("chunk {c}"), hex::encode(b), m);
                c += 1;
                continue;
            }
            let end = (c..count).find(|&i| shown(i)).unwrap_or(count);
            let more = (end - c) as usize * HASH_LEN;
            let (off, _) = w.take(more, "chunk_hashes", "chunk hashes")?;
            let (name, value) = match end - c {
                1 => (format!("chunk {c}"), "1 more hash".to_owned()),
                k => (
                    format!("chunks {c}-{}", end - 1),
                    format!("{k} more hashes"),
                ),
            };
            w.push(off, more, name, value, "not shown one by one");
            c = end;
        }
        Ok((
            (),
            format!("{count} hash{}", if count == 1 { "" } else { "es" }),
        ))
    })
}

/// What chunk `c` is: `"Samples/kick.wav" chunk 0 of 1: file bytes 0 to 2`.
fn chunk_meaning(es: &[TreeEntry], files: &[(usize, u32)], c: u32) -> String {
    let Some(p) = chunk_place_in(es, files, c) else {
        return "a chunk of no file".into();
    };
    let Some(e) = es.get(p.entry) else {
        return "a chunk of no file".into();
    };
    let n = match e.kind {
        EntryKind::File(f) => f.lengths.chunk_count(),
        EntryKind::EmptyFolder => 0,
    };
    let last = (p.offset + u64::from(p.len)).saturating_sub(1);
    let path = quote(e.path.as_str(), 48);
    let k = p.chunk_in_file;
    format!(
        "{path} chunk {k} of {n}: SHA-256 of file bytes {} to {last}",
        p.offset
    )
}

/// The check of the files' SHA-256 (the decoder's last), when the chunk hashes are exactly
/// there (otherwise an earlier check fails first).
fn hash_fault(
    w: &Walker<'_>,
    h: &Header,
    es: &[TreeEntry],
    files: &[(usize, u32)],
) -> Option<EntriesFault> {
    let start = w.pos().checked_add(h.entries_len)?;
    let hashes = w.region.get(start..)?;
    if hashes.len() != (h.chunk_count as usize).checked_mul(HASH_LEN)? {
        return None;
    }
    let hash = |i: u32| {
        let at = (i as usize).checked_mul(HASH_LEN)?;
        hashes.get(at..at.checked_add(HASH_LEN)?)?.try_into().ok()
    };
    check_file_hashes(es, files, hash).err()
}

/// Locates a fault of the checks that span entries: the field of the entry it is about (or
/// of the header, for the totals), with what was expected and found.
fn locate(f: EntriesFault, h: &Header, es: &[TreeEntry], at: EntryAt) -> Stop {
    let entry = f.entry.and_then(|i| es.get(i).map(|e| (i, e)));
    let reason = error_reason(&f.error);
    let (offset, exp, found) = match (&f.error, entry) {
        (DecodeError::InvalidValue { field: "path", .. }, Some((i, e))) => {
            let path = quote(e.path.as_str(), 60);
            match i.checked_sub(1).and_then(|p| es.get(p)) {
                Some(prev) if reason == UNSORTED => {
                    let prev = quote(prev.path.as_str(), 60);
                    let exp = format!("a path after {prev} (entry {i}) in byte order");
                    (at.path, exp, path)
                }
                _ => {
                    let exp = "paths that follow the structure rules of content.md, 10.3".into();
                    (at.path, exp, format!("{path}: {reason}"))
                }
            }
        }
        (
            DecodeError::InvalidValue {
                field: "file_size", ..
            },
            Some(_),
        ) => {
            let exp = "files adding up to at most 1 TiB and 2^20 chunks".into();
            (at.file_size, exp, reason.to_owned())
        }
        (
            DecodeError::InvalidValue {
                field: "sha256", ..
            },
            Some((_, e)),
        ) => {
            let (exp, found) = match e.kind {
                EntryKind::File(f) if f.lengths.chunk_count() == 0 => {
                    let exp = "the SHA-256 of no bytes (e3b0c442…), the file being empty";
                    (exp.to_owned(), hex::encode(f.sha256))
                }
                EntryKind::File(f) => {
                    let exp = "its chunk hash: a file of one chunk is hashed whole by it";
                    (exp.to_owned(), hex::encode(f.sha256))
                }
                EntryKind::EmptyFolder => (String::new(), String::new()),
            };
            (at.sha256, exp, found)
        }
        (
            DecodeError::InvalidValue {
                field: "total_size",
                ..
            },
            _,
        ) => {
            let sum: u64 = file_lengths(es).map(|l| l.total()).sum();
            let exp = format!("the sum of the files' sizes: {sum}");
            (h.total_size_at, exp, h.total_size.to_string())
        }
        (
            DecodeError::InvalidValue {
                field: "chunk_count",
                ..
            },
            _,
        ) => {
            let sum: u64 = file_lengths(es).map(|l| u64::from(l.chunk_count())).sum();
            let exp = format!("the sum of the files' chunk counts: {sum}");
            (h.chunk_count_at, exp, h.chunk_count.to_string())
        }
        _ => (
            at.path,
            "see the decoder's message".into(),
            reason.to_owned(),
        ),
    };
    stop(f.error, offset, exp, found)
}

fn file_lengths(es: &[TreeEntry]) -> impl Iterator<Item = Lengths> + '_ {
    es.iter().filter_map(|e| match e.kind {
        EntryKind::File(f) => Some(f.lengths),
        EntryKind::EmptyFolder => None,
    })
}

fn error_reason(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::InvalidValue { reason, .. } => reason,
        _ => "",
    }
}

fn kind_value(k: u64) -> String {
    match k {
        0 => "0 (file)".into(),
        1 => "1 (empty folder)".into(),
        k => format!("{k} (neither 0 nor 1)"),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
