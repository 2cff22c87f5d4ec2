//! [`Bitfield`]: which chunks a peer has, as BITFIELD carries it.

use super::MAX_CHUNKS;
use crate::proto::codec::DecodeError;

/// Which chunks a peer has: bit `i` is chunk `i`, the most significant bit of byte 0 being
/// chunk 0. The spare bits of the last byte are always 0, and `len` is at most
/// [`MAX_CHUNKS`]; every constructor keeps both invariants, so every `Bitfield` encodes to a
/// valid BITFIELD. No method panics, whatever the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    pub(super) len: u32,
    pub(super) bits: Vec<u8>,
}

/// The largest chunk count, as the `u32` the wire carries.
const MAX_CHUNKS_U32: u32 = MAX_CHUNKS as u32;

/// Bytes needed for `len` bits.
pub(super) fn bitfield_bytes(len: u32) -> usize {
    to_usize(len).div_ceil(8)
}

/// A `u32` read from the wire as a `usize`. Lossless on every platform Rust supports with
/// `usize` of 32 bits or more; saturates otherwise, so a huge value stays huge.
pub(super) fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Bitfield {
    /// An all-zero bitfield over `len` chunks. A `len` above [`MAX_CHUNKS`] is clamped to it:
    /// no valid manifest has more chunks, and the clamp keeps the allocation bounded.
    pub fn new(len: u32) -> Bitfield {
        let len = len.min(MAX_CHUNKS_U32);
        Bitfield {
            len,
            bits: vec![0; bitfield_bytes(len)],
        }
    }

    /// A bitfield over `len` chunks from its wire bytes. Fails if `len` exceeds
    /// [`MAX_CHUNKS`] (`LengthTooLarge`), if `bits` is not exactly `ceil(len / 8)` bytes
    /// (`UnexpectedEnd` or `TrailingBytes`), or if a spare bit after the last chunk is set
    /// (`InvalidValue`).
    pub fn from_bytes(len: u32, bits: Vec<u8>) -> Result<Bitfield, DecodeError> {
        if len > MAX_CHUNKS_U32 {
            return Err(DecodeError::LengthTooLarge {
                field: "chunk_count",
                len: to_usize(len),
                max: MAX_CHUNKS,
            });
        }
        let need = bitfield_bytes(len);
        if bits.len() < need {
            return Err(DecodeError::UnexpectedEnd {
                field: "bits",
                needed: need - bits.len(),
            });
        }
        if bits.len() > need {
            return Err(DecodeError::TrailingBytes(bits.len() - need));
        }
        // Spare bits must be 0: otherwise one bitfield would have many encodings, and a
        // careless receiver might count chunks that do not exist.
        let used = len % 8;
        if used != 0 {
            let spare_mask = 0xffu8 >> used;
            if bits.last().is_some_and(|b| b & spare_mask != 0) {
                return Err(DecodeError::InvalidValue {
                    field: "bits",
                    reason: "a spare bit after the last chunk is set",
                });
            }
        }
        Ok(Bitfield { len, bits })
    }

    /// Number of chunks the bitfield covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when it covers no chunk (the content is an empty file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether chunk `i` is present; false for any `i` out of range.
    pub fn get(&self, i: u32) -> bool {
        i < self.len
            && self
                .bits
                .get(to_usize(i / 8))
                .is_some_and(|b| b & (0x80u8 >> (i % 8)) != 0)
    }

    /// Marks chunk `i` present; does nothing if `i` is out of range.
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            if let Some(b) = self.bits.get_mut(to_usize(i / 8)) {
                *b |= 0x80u8 >> (i % 8);
            }
        }
    }

    /// Number of chunks present.
    pub fn count_ones(&self) -> u32 {
        // Spare bits are always 0, so counting whole bytes counts chunks only.
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// True when every chunk is present (also true for an empty bitfield).
    pub fn is_full(&self) -> bool {
        self.count_ones() == self.len
    }

    /// The wire bytes: `ceil(len / 8)` bytes, chunk 0 in the top bit of byte 0.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// The indices of the chunks present, in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        // `(0u32..)` numbers the bytes without a cast; there are at most 2^17 of them.
        (0u32..)
            .zip(self.bits.iter())
            .filter(|(_, b)| **b != 0)
            .flat_map(|(byte_index, &b)| {
                (0u32..8)
                    .filter(move |bit| b & (0x80u8 >> bit) != 0)
                    .map(move |bit| byte_index * 8 + bit)
            })
    }
}
