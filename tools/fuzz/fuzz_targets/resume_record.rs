//! A download's resume record, read from disk when a download restarts:
//! `decode_record` (src/content/partial.rs). The record ends in a SHA-256 of the rest, so
//! half the inputs get a correct checksum appended by the harness, and the ID and count
//! asked for are those the input's own header names: otherwise the fuzzer would stop at the
//! checksum or the header comparison and never reach the bit checks.
//! Invariants: never a panic, no allocation sized by the count before the length is
//! checked; accepted bits are exactly the record's, with no bit set past the last chunk,
//! and re-encode to the same record; any bits we encode decode back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::content::partial::{decode_record, encode_record};
use peershare::id::Id;
use sha2::{Digest, Sha256};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fn clear_spare(bits: &mut [u8], count: u32) {
    let spare = bits.len() * 8 - count as usize;
    if let Some(last) = bits.last_mut() {
        *last &= 0xffu8.checked_shl(spare as u32).unwrap_or(0);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut record = rest.to_vec();
    if mode & 1 == 1 {
        record.extend_from_slice(&Sha256::digest(rest));
    }
    let mut id = Id([0; 32]);
    if let Some(b) = record.get(5..37) {
        id.0.copy_from_slice(b);
    }
    let count = match record.get(37..41) {
        Some(&[a, b, c, d]) if mode & 2 == 0 => u32::from_be_bytes([a, b, c, d]),
        _ => u32::from(mode >> 2),
    };
    if let Some(bits) = decode_record(&record, &id, count) {
        assert_eq!(bits.len(), (count as usize).div_ceil(8));
        let mut cleared = bits.clone();
        clear_spare(&mut cleared, count);
        assert_eq!(cleared, bits, "a bit past the last chunk was accepted");
        assert_eq!(encode_record(&id, count, &bits), record);
    }

    // Round trip: the input's bytes as the verified bits of a download of `count` chunks.
    let count = u32::try_from(rest.len() * 8)
        .unwrap_or(u32::MAX)
        .saturating_sub(u32::from(mode % 8));
    let mut bits = rest.to_vec();
    bits.truncate((count as usize).div_ceil(8));
    clear_spare(&mut bits, count);
    let enc = encode_record(&id, count, &bits);
    assert_eq!(decode_record(&enc, &id, count), Some(bits));
});
