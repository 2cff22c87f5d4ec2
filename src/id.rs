//! 256-bit identifiers and the XOR metric (spec: `protocol-spec/overview.md`, "IDs and distance").
//!
//! Node IDs and content IDs live in the same space, the SHA-256 output space, so
//! "the nodes closest to a content ID" is well defined. Distance is the bitwise XOR of
//! two IDs read as a big-endian unsigned integer; comparing distances is comparing
//! byte arrays lexicographically.

use std::fmt;

/// Length of an ID in bytes.
pub const ID_LEN: usize = 32;

/// A 256-bit identifier: a node ID or a content ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; ID_LEN]);

/// The XOR distance between two IDs. Ordered as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; ID_LEN]);

impl Id {
    /// The all-zero ID.
    pub const ZERO: Id = Id([0; ID_LEN]);

    /// A uniformly random ID from the given RNG.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Id {
        let mut b = [0u8; ID_LEN];
        rng.fill_bytes(&mut b);
        Id(b)
    }

    /// The SHA-256 of `data`, as an ID.
    pub fn hash_of(data: &[u8]) -> Id {
        use sha2::{Digest, Sha256};
        Id(Sha256::digest(data).into())
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &Id) -> Distance {
        let mut d = [0u8; ID_LEN];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Id, IdParseError> {
        if s.len() != ID_LEN * 2 {
            return Err(IdParseError::Length(s.len()));
        }
        let mut b = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut b).map_err(|_| IdParseError::NotHex)?;
        Ok(Id(b))
    }

    /// Lower-case hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A random ID whose distance to `self` has exactly `leading_zeros` leading zero bits,
    /// that is an ID that falls in bucket `leading_zeros` of a table centred on `self`.
    /// Used by bucket refresh. `leading_zeros` must be below 256.
    pub fn random_in_bucket<R: rand::Rng + ?Sized>(&self, leading_zeros: usize, rng: &mut R) -> Id {
        let lz = leading_zeros.min(ID_LEN * 8 - 1);
        let mut d = [0u8; ID_LEN];
        rng.fill_bytes(&mut d);
        let byte = lz / 8;
        let bit = 7 - (lz % 8);
        for b in d.iter_mut().take(byte) {
            *b = 0;
        }
        // Clear the bits above `bit` in the boundary byte, set `bit` itself.
        let keep_below = (1u16 << bit) as u8 - 1;
        d[byte] = (d[byte] & keep_below) | (1u8 << bit);
        let mut out = [0u8; ID_LEN];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.0[i] ^ d[i];
        }
        Id(out)
    }
}

impl Distance {
    /// Number of leading zero bits: 256 for the zero distance. The routing table puts a
    /// contact at distance `d` into bucket `d.leading_zeros()`; the zero distance (our own
    /// ID) belongs to no bucket.
    pub fn leading_zeros(&self) -> usize {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                n += b.leading_zeros() as usize;
                break;
            }
        }
        n
    }
}

/// Why a string is not an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdParseError {
    /// Not 64 characters long (the length found).
    Length(usize),
    /// Contains a character that is not a hex digit.
    NotHex,
}

impl fmt::Display for IdParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdParseError::Length(n) => write!(f, "an ID is 64 hex characters, got {n}"),
            IdParseError::NotHex => write!(f, "an ID must contain only hex digits 0-9a-f"),
        }
    }
}

impl std::error::Error for IdParseError {}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distance_is_xor_and_symmetric() {
        let a = Id([0xff; 32]);
        let mut bb = [0u8; 32];
        bb[0] = 0x0f;
        let b = Id(bb);
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&b).0[0], 0xf0);
        assert_eq!(a.distance(&a), Distance([0; 32]));
        assert_eq!(a.distance(&a).leading_zeros(), 256);
    }

    #[test]
    fn leading_zeros_counts_bits() {
        let mut d = [0u8; 32];
        d[0] = 0x80;
        assert_eq!(Distance(d).leading_zeros(), 0);
        d[0] = 0x01;
        assert_eq!(Distance(d).leading_zeros(), 7);
        d[0] = 0;
        d[3] = 0x10;
        assert_eq!(Distance(d).leading_zeros(), 27);
    }

    #[test]
    fn random_in_bucket_lands_in_bucket() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let me = Id::random(&mut rng);
        for lz in [0, 1, 7, 8, 9, 100, 254, 255] {
            for _ in 0..20 {
                let id = me.random_in_bucket(lz, &mut rng);
                assert_eq!(me.distance(&id).leading_zeros(), lz, "bucket {lz}");
            }
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = Id::hash_of(b"abc");
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(Id::from_hex(&id.to_hex().to_uppercase()).unwrap(), id);
        assert_eq!(Id::from_hex("abc"), Err(IdParseError::Length(3)));
        assert_eq!(Id::from_hex(&"g".repeat(64)), Err(IdParseError::NotHex));
        // Multi-byte UTF-8 of the right byte length must not panic.
        assert!(Id::from_hex(&"é".repeat(32)).is_err());
    }
}
