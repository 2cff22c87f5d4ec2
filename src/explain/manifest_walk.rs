//! The layout of a manifest (spec: `protocol-spec/content.md`), in the order of
//! [`Manifest::decode`], with the decoder's own size arithmetic ([`Lengths`]).

use super::line::{line, manifest_line};
use super::walk::{ascii_or_hex, at_most, hex_preview, invalid, stop, Walk, Walker};
use super::{finish_message, message, Explanation, Status, SHOW_ITEMS};
use crate::content::manifest::{self, Lengths, LengthsError, Manifest};
use crate::id::Id;
use crate::proto::codec::DecodeError;

/// Explains a manifest: the decoder's verdict, its content ID, and the layout.
pub(super) fn explain_manifest(input: &[u8], ex: &mut Explanation) {
    let verdict = Manifest::decode(input);
    let done = |m: &Manifest| (line(|s| manifest_line(s, m)), m.content_id());
    explain_content(
        input,
        ex,
        ("MANIFEST", "manifest"),
        verdict,
        walk_manifest,
        done,
    );
}

/// Explains a manifest of either kind (`names`: the message's name, what ends where the
/// input ends) from the decoder's `verdict` and a layout `walk`; `done` gives a decoded
/// one's line and content ID, which becomes a note.
pub(super) fn explain_content<T>(
    input: &[u8],
    ex: &mut Explanation,
    names: (&'static str, &'static str),
    verdict: Result<T, DecodeError>,
    walk: impl FnOnce(&mut Walker<'_>) -> Walk<()>,
    done: impl FnOnce(&T) -> (String, Id),
) {
    let mut w = Walker::new(input, 0, names.1);
    let walked = walk(&mut w);
    let (status, summary, notes) = match &verdict {
        Ok(m) => {
            let (summary, id) = done(m);
            let (n, id) = (input.len(), id.to_hex());
            let note = format!("content ID (SHA-256 of these {n} bytes): {id}");
            (Status::Valid, summary, vec![note])
        }
        Err(e) => (Status::Malformed, format!("malformed: {e}"), Vec::new()),
    };
    let m = message(names.0, status, summary, notes, input.len());
    finish_message(ex, verdict.map(drop), walked, w, m);
}

/// The layout of [`Manifest::decode`], in the order of content.md, section 4.
fn walk_manifest(w: &mut Walker<'_>) -> Walk<()> {
    let not_ours = "not \"PSMF\" (50 53 4d 46): not a PeerShare manifest";
    let meanings = [
        "\"PSMF\": a PeerShare manifest",
        "manifest format version: 1",
    ];
    magic_version(w, manifest::MAGIC, manifest::VERSION, meanings, not_ours)?;
    let (foff, file_size) = w.num(8, "file_size", "the file's size in bytes")?;
    let m = "bytes per chunk (the last may be shorter): a power of two, 16 KiB to 1 MiB";
    let (soff, chunk_size) = w.int(4, "chunk_size", "chunk_size", m, size_value)?;
    let m = "ceil(file_size / chunk_size); one hash each follows";
    let (coff, count) = w.num(4, "chunk_count", m)?;
    let max = usize::try_from(manifest::MAX_CHUNKS).unwrap_or(usize::MAX);
    at_most("chunk_count", coff, count, max)?;
    // The same size arithmetic as the decoder's (`Lengths::new`).
    let chunk_size = u32::try_from(chunk_size).unwrap_or(u32::MAX);
    let lengths = match Lengths::new(file_size, chunk_size) {
        Ok(l) => l,
        Err(LengthsError::BadChunkSize(_)) => {
            let reason = "not a power of two between 16384 and 1048576";
            let exp = "a power of two from 16384 to 1048576";
            return Err(invalid(
                "chunk_size",
                reason,
                soff,
                exp,
                chunk_size.to_string(),
            ));
        }
        Err(_) => {
            let reason = "needs more than 2^20 chunks of this chunk size";
            let exp = format!("at most 2^20 chunks of {chunk_size} bytes");
            let n = file_size.div_ceil(u64::from(chunk_size.max(1)));
            return Err(invalid(
                "file_size",
                reason,
                foff,
                &exp,
                format!("{n} chunks"),
            ));
        }
    };
    if u64::from(lengths.chunk_count()) != count {
        let reason = "not equal to ceil(file_size / chunk_size)";
        let exp = format!(
            "ceil({file_size} / {chunk_size}) = {}",
            lengths.chunk_count()
        );
        return Err(invalid(
            "chunk_count",
            reason,
            coff,
            &exp,
            count.to_string(),
        ));
    }
    w.id(
        "file_sha256",
        "SHA-256 of the whole file (what sha256sum prints; the chunk hashes are what a downloader checks)",
    )?;
    let count = usize::try_from(lengths.chunk_count()).unwrap_or(usize::MAX);
    hashes_present(w, count)?;
    if count > 0 {
        let shown = if count > SHOW_ITEMS + 1 {
            SHOW_ITEMS
        } else {
            count
        };
        w.group(
            "chunk_hashes",
            "SHA-256 of each chunk, in chunk order",
            |w| {
                for (i, c) in lengths.chunks().take(shown).enumerate() {
                    let (off, b) = w.take(manifest::HASH_LEN, "chunk_hashes", "chunk hash")?;
                    let r = lengths.chunk_range(c);
                    let m = format!(
                        "SHA-256 of file bytes {} to {}",
                        r.start,
                        r.end.saturating_sub(1)
                    );
                    w.push(
                        off,
                        manifest::HASH_LEN,
                        format!("chunk {i}"),
                        hex::encode(b),
                        m,
                    );
                }
                if shown < count {
                    let more = (count - shown) * manifest::HASH_LEN;
                    let (off, _) = w.take(more, "chunk_hashes", "chunk hashes")?;
                    let name = format!("chunks {shown}-{}", count - 1);
                    let value = format!("{} more hashes", count - shown);
                    w.push(off, more, name, value, "not shown one by one");
                }
                Ok((
                    (),
                    format!("{count} hash{}", if count == 1 { "" } else { "es" }),
                ))
            },
        )?;
    }
    w.finish()
}

/// The magic and the version, checked as `read_magic_version` does. `meanings`: what the
/// magic announces, what the version is; `not_ours`: the decoder's reason for a wrong magic.
pub(super) fn magic_version(
    w: &mut Walker<'_>,
    magic: [u8; 4],
    version: u8,
    meanings: [&'static str; 2],
    not_ours: &'static str,
) -> Walk<()> {
    let (_, got) = w.take(4, "magic", "magic")?;
    w.push(0, 4, "magic", ascii_or_hex(got), meanings[0]);
    if got != magic {
        let spaced: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
        let exp = format!("{} ({})", spaced.join(" "), ascii_or_hex(&magic));
        return Err(invalid("magic", not_ours, 0, &exp, hex::encode(got)));
    }
    let (voff, v) = w.num(1, "version", meanings[1])?;
    if v != u64::from(version) {
        let v = u8::try_from(v).unwrap_or(u8::MAX);
        let err = DecodeError::UnsupportedVersion(v);
        return Err(stop(err, voff, version.to_string(), v));
    }
    Ok(())
}

/// The check that `count` chunk hashes are all there, made before reading (or allocating)
/// any: when they are not, the bytes left become one "cut short" field.
pub(super) fn hashes_present(w: &mut Walker<'_>, count: usize) -> Walk<()> {
    let (need, rem) = (count.saturating_mul(manifest::HASH_LEN), w.r.remaining());
    if need <= rem {
        return Ok(());
    }
    let off = w.pos();
    let b = w.r.take(rem, "chunk_hashes").unwrap_or_default();
    if rem > 0 {
        let v = format!("{} ({rem} of {need} bytes)", hex_preview(b));
        let unit = w.unit;
        let meaning = format!("cut short: the {unit} ends inside them");
        w.push(off, rem, "chunk_hashes", v, meaning);
    }
    let err = DecodeError::UnexpectedEnd {
        field: "chunk_hashes",
        needed: need - rem,
    };
    let exp = format!("{count} hashes of 32 bytes: {need} bytes");
    let found = format!("{rem} byte(s): the {} ends at offset {}", w.unit, w.end());
    Err(stop(err, off, exp, found))
}

/// A size in bytes, with its KiB or MiB when it is a whole number of them.
pub(super) fn size_value(s: u64) -> String {
    match s {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{s} ({} MiB)", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{s} ({} KiB)", s >> 10),
        s => s.to_string(),
    }
}
