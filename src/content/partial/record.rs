//! The verified set: in memory ([`VerifiedBits`], shared by a
//! [`PartialFile`](super::PartialFile) and its readers) and on disk (the resume record,
//! `<id>.resume`; layout in `STATE.md`).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::content::manifest::HASH_LEN;
use crate::id::Id;

const RECORD_MAGIC: [u8; 4] = *b"PSRS";
const RECORD_VERSION: u8 = 1;
/// magic 4 + version 1 + content id 32 + chunk count 4.
const RECORD_HEADER: usize = 41;

/// The verified set, shared between a [`PartialFile`](super::PartialFile) and its
/// [`PartialReader`](super::PartialReader)s.
#[derive(Debug)]
pub(super) struct VerifiedBits {
    words: Box<[AtomicU64]>,
    len: u32,
}

impl VerifiedBits {
    pub(super) fn new(len: u32) -> VerifiedBits {
        let n = (len as usize).div_ceil(64);
        VerifiedBits {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    fn word(&self, i: u32) -> Option<(&AtomicU64, u64)> {
        if i >= self.len {
            return None;
        }
        let w = self.words.get((i / 64) as usize)?;
        Some((w, 1u64 << (i % 64)))
    }

    pub(super) fn get(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, bit)| w.load(Ordering::Acquire) & bit != 0)
    }

    /// Sets bit `i` (release: the chunk's data was written before); true if it was clear.
    pub(super) fn set(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, bit)| w.fetch_or(bit, Ordering::Release) & bit == 0)
    }

    pub(super) fn clear(&self, i: u32) {
        if let Some((w, bit)) = self.word(i) {
            w.fetch_and(!bit, Ordering::AcqRel);
        }
    }

    pub(super) fn clear_all(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::Release);
        }
    }

    pub(super) fn to_vec(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// The bitfield as the resume record stores it: chunk 0 is the most significant bit of
    /// byte 0, spare bits of the last byte are 0.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; (self.len as usize).div_ceil(8)];
        for i in 0..self.len {
            if self.get(i) {
                if let Some(b) = out.get_mut((i / 8) as usize) {
                    *b |= 0x80 >> (i % 8);
                }
            }
        }
        out
    }
}

/// The resume record (local, not a protocol format; layout in `STATE.md`).
pub fn encode_record(id: &Id, count: u32, bits: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + bits.len() + HASH_LEN);
    out.extend_from_slice(&RECORD_MAGIC);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(bits);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads a resume record for `id`; `None` if absent or not exactly a valid record for this
/// download (see [`decode_record`]). A file of the wrong size is not even read.
pub(super) fn read_record(path: &Path, id: &Id, count: u32) -> Option<Vec<u8>> {
    let expected_len = RECORD_HEADER + (count as usize).div_ceil(8) + HASH_LEN;
    let read = fs::metadata(path)
        .and_then(|m| {
            if m.len() == expected_len as u64 {
                fs::read(path).map(Some)
            } else {
                Ok(None)
            }
        })
        .transpose()?;
    match read {
        Ok(b) => decode_record(&b, id, count),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("cannot read {}: {e}", path.display());
            None
        }
    }
}

/// The verified-chunk bits of a resume record's `bytes` for download `id` of `count` chunks;
/// `None` unless they are exactly a valid record for it (wrong magic, version, ID, count,
/// length, checksum, or spare bits set). Total: any bytes give `Some` or `None`.
pub fn decode_record(bytes: &[u8], id: &Id, count: u32) -> Option<Vec<u8>> {
    let nbytes = (count as usize).div_ceil(8);
    let expected_len = RECORD_HEADER + nbytes + HASH_LEN;
    if bytes.len() != expected_len {
        return None;
    }
    let (body, sum) = bytes.split_at(expected_len - HASH_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let (header, bits) = body.split_at(RECORD_HEADER);
    let mut want = Vec::with_capacity(RECORD_HEADER);
    want.extend_from_slice(&RECORD_MAGIC);
    want.push(RECORD_VERSION);
    want.extend_from_slice(&id.0);
    want.extend_from_slice(&count.to_be_bytes());
    if header != want.as_slice() {
        return None;
    }
    // Bits past the last chunk must be zero: one set there means the record is not ours.
    // 0 to 7 spare bits, computed in usize so no count can overflow it.
    let spare = (nbytes * 8).saturating_sub(count as usize);
    if (1..8).contains(&spare) {
        let last = bits.last().copied().unwrap_or(0);
        if last & ((1u8 << spare) - 1) != 0 {
            return None;
        }
    }
    Some(bits.to_vec())
}

pub(super) fn bit_at(bits: &[u8], i: u32) -> bool {
    bits.get((i / 8) as usize)
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}
