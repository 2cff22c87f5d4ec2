//! The manifest: what a content ID is the hash of (spec: `protocol-spec/content.md`).
//!
//! A manifest lists a file's size, its chunk size, the SHA-256 of the whole file and the
//! SHA-256 of every chunk. Its canonical encoding (section 2 of the spec) is hashed to give
//! the content ID, so a downloader who knows only the ID can check a manifest received from
//! any peer, and then every chunk against the manifest.
//!
//! All size arithmetic lives in [`Lengths`]: how many chunks, where chunk `i` starts, how long
//! it is (the last one may be short). A [`ChunkIndex`] can only be made by
//! [`Lengths::validate`] or [`Lengths::chunks`], so an index that came from the network has
//! been checked against the file before anything uses it.

use std::fmt;
use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::id::Id;
use crate::proto::codec::{DecodeError, Reader};

/// The four magic bytes that open every manifest: "PSMF" (PeerShare ManiFest).
pub const MAGIC: [u8; 4] = *b"PSMF";
/// The manifest format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of a SHA-256 hash in bytes.
pub const HASH_LEN: usize = 32;
/// Length of the fixed part of a manifest, before the chunk hashes.
pub const HEADER_LEN: usize = 53;
/// Smallest chunk size a manifest may declare (16 KiB).
pub const MIN_CHUNK_SIZE: u32 = 16 << 10;
/// Largest chunk size a manifest may declare (1 MiB).
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// The chunk size for files up to [`LARGE_FILE`] bytes (256 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 << 10;
/// Files larger than this get bigger chunks, so their manifests stay small (2 GiB).
pub const LARGE_FILE: u64 = 2 << 30;
/// Above [`LARGE_FILE`], the chunk size is chosen to keep about this many chunks.
pub const TARGET_CHUNKS: u64 = 8192;
/// Most chunks a manifest may list (2^20). With 1 MiB chunks that is files up to 1 TiB, and
/// it bounds a manifest to [`MAX_MANIFEST_LEN`] bytes.
pub const MAX_CHUNKS: u32 = 1 << 20;
/// Largest possible manifest encoding: 53 + 32 * 2^20 bytes (32 MiB + 53).
pub const MAX_MANIFEST_LEN: usize = HEADER_LEN + HASH_LEN * MAX_CHUNKS as usize;
/// Largest file that can have a manifest: [`MAX_CHUNKS`] chunks of [`MAX_CHUNK_SIZE`] (1 TiB).
pub const MAX_FILE_SIZE: u64 = MAX_CHUNKS as u64 * MAX_CHUNK_SIZE as u64;

/// The chunk size policy (spec section 3): 256 KiB for files up to 2 GiB; above that the
/// smallest power of two that keeps the file within 8192 chunks, capped at 1 MiB.
///
/// Why: a 50 KB drum sample is then a single chunk (one request, one hash), a 2 GiB file has
/// 8192 chunks and a 256 KiB manifest, and a multi-GB file keeps its manifest small instead
/// of growing it by 32 bytes per 256 KiB. Beyond 8 GiB the chunk size stays at 1 MiB (larger
/// chunks hurt pipelining and re-fetch cost) and the chunk count grows instead.
pub fn chunk_size_for(file_size: u64) -> u32 {
    if file_size <= LARGE_FILE {
        return DEFAULT_CHUNK_SIZE;
    }
    let wanted = file_size.div_ceil(TARGET_CHUNKS);
    match wanted.checked_next_power_of_two() {
        Some(p) if p <= u64::from(MAX_CHUNK_SIZE) => {
            u32::try_from(p).map_or(MAX_CHUNK_SIZE, |p| p.max(DEFAULT_CHUNK_SIZE))
        }
        _ => MAX_CHUNK_SIZE,
    }
}

/// Why a (file size, chunk size, chunk count) combination is not a valid layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LengthsError {
    /// The chunk size is not a power of two in 16 KiB ..= 1 MiB.
    BadChunkSize(u32),
    /// The file needs more than [`MAX_CHUNKS`] chunks of this size.
    TooManyChunks {
        /// The file size.
        file_size: u64,
        /// The chunk size.
        chunk_size: u32,
    },
    /// A chunk count (or a number of chunk hashes) that does not match the file size.
    CountMismatch {
        /// `ceil(file_size / chunk_size)`.
        expected: u64,
        /// The count found.
        found: u64,
    },
}

impl fmt::Display for LengthsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthsError::BadChunkSize(c) => write!(
                f,
                "chunk size {c} is not a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
            ),
            LengthsError::TooManyChunks {
                file_size,
                chunk_size,
            } => write!(
                f,
                "a {file_size}-byte file in {chunk_size}-byte chunks needs more than {MAX_CHUNKS} chunks \
                 (the largest shareable file is {MAX_FILE_SIZE} bytes)"
            ),
            LengthsError::CountMismatch { expected, found } => {
                write!(f, "{found} chunks listed, the file size needs {expected}")
            }
        }
    }
}

impl std::error::Error for LengthsError {}

/// A chunk number checked against one file's [`Lengths`]: `0 <= i < chunk_count`.
///
/// Only [`Lengths::validate`] and [`Lengths::chunks`] make one, so code that holds a
/// `ChunkIndex` never needs to bounds-check it again. Using an index with the `Lengths` of a
/// *different* file is a logic error; the methods stay total even then (they return 0 or an
/// empty range rather than panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex(u32);

impl ChunkIndex {
    /// The chunk number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// A chunk number already checked against its content's chunk count (for
    /// [`super::layout::Layout`], the other maker of checked indexes).
    pub(super) fn checked(i: u32) -> ChunkIndex {
        ChunkIndex(i)
    }

    /// The chunk number as a `usize`, for indexing per-chunk tables.
    pub fn as_usize(self) -> usize {
        // u32 always fits in usize on the 32- and 64-bit targets we build for.
        self.0 as usize
    }
}

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The size arithmetic of one file: total size, chunk size, chunk count. All checked at
/// construction, so every method is total and panic-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lengths {
    total: u64,
    chunk_size: u32,
    chunk_count: u32,
}

impl Lengths {
    /// The layout of a `total`-byte file in chunks of `chunk_size` bytes. The chunk size must
    /// be a power of two in 16 KiB ..= 1 MiB and the file must fit in [`MAX_CHUNKS`] chunks.
    pub fn new(total: u64, chunk_size: u32) -> Result<Lengths, LengthsError> {
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        {
            return Err(LengthsError::BadChunkSize(chunk_size));
        }
        let count = total.div_ceil(u64::from(chunk_size));
        if count > u64::from(MAX_CHUNKS) {
            return Err(LengthsError::TooManyChunks {
                file_size: total,
                chunk_size,
            });
        }
        Ok(Lengths {
            total,
            chunk_size,
            // count <= MAX_CHUNKS, which fits in u32.
            chunk_count: u32::try_from(count).unwrap_or(MAX_CHUNKS),
        })
    }

    /// The layout the chunk size policy ([`chunk_size_for`]) gives a `total`-byte file.
    pub fn for_file_size(total: u64) -> Result<Lengths, LengthsError> {
        Lengths::new(total, chunk_size_for(total))
    }

    /// The file size in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The chunk size in bytes (every chunk but the last is exactly this long).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks: `ceil(total / chunk_size)`, 0 for an empty file.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// The only way to turn a chunk number from the network into a [`ChunkIndex`]: `None`
    /// unless `i < chunk_count`.
    pub fn validate(&self, i: u32) -> Option<ChunkIndex> {
        (i < self.chunk_count).then_some(ChunkIndex(i))
    }

    /// Every chunk, in order.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkIndex> + Clone {
        (0..self.chunk_count).map(ChunkIndex)
    }

    /// The last chunk, `None` for an empty file.
    pub fn last_chunk(&self) -> Option<ChunkIndex> {
        self.chunk_count.checked_sub(1).map(ChunkIndex)
    }

    /// Byte offset of the chunk's first byte in the file.
    pub fn chunk_offset(&self, c: ChunkIndex) -> u64 {
        // At most (2^32 - 1) * 2^20 < 2^52: cannot overflow.
        u64::from(c.0) * u64::from(self.chunk_size)
    }

    /// Length of the chunk in bytes: `chunk_size`, except the last chunk which holds what
    /// remains (1 ..= chunk_size bytes). 0 for an index that is not in this file.
    pub fn chunk_len(&self, c: ChunkIndex) -> u32 {
        if c.0 >= self.chunk_count {
            return 0;
        }
        let rest = self.total.saturating_sub(self.chunk_offset(c));
        // rest >= 1 here, and min(chunk_size) fits in u32.
        u32::try_from(rest.min(u64::from(self.chunk_size))).unwrap_or(self.chunk_size)
    }

    /// The chunk's byte range in the file (empty for an index that is not in this file).
    pub fn chunk_range(&self, c: ChunkIndex) -> Range<u64> {
        let start = self.chunk_offset(c);
        start..start + u64::from(self.chunk_len(c))
    }

    /// Length of the last chunk, 0 for an empty file.
    pub fn last_chunk_len(&self) -> u32 {
        self.last_chunk().map_or(0, |c| self.chunk_len(c))
    }

    /// The chunk holding byte `offset`, `None` past the end.
    pub fn chunk_at_offset(&self, offset: u64) -> Option<ChunkIndex> {
        if offset >= self.total {
            return None;
        }
        u32::try_from(offset / u64::from(self.chunk_size))
            .ok()
            .and_then(|i| self.validate(i))
    }
}

/// A file's manifest: its [`Lengths`], whole-file SHA-256 and per-chunk SHA-256s. The fields
/// are private and checked at construction, so a `Manifest` is always consistent, and its
/// content ID (the SHA-256 of [`Manifest::encode`]) is computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    lengths: Lengths,
    file_sha256: [u8; HASH_LEN],
    /// Empty for a file of one chunk whose chunk hash is the file's hash (always so for a
    /// manifest made here): most of a library of small samples, each of which then keeps no
    /// allocation for it (issue 21). [`Manifest::chunk_hashes`] gives them all either way.
    chunk_hashes: Box<[[u8; HASH_LEN]]>,
    id: Id,
}

/// `hashes` as a manifest keeps them (see [`Manifest`]'s `chunk_hashes`).
fn kept_hashes(file_sha256: &[u8; HASH_LEN], hashes: Vec<[u8; HASH_LEN]>) -> Box<[[u8; HASH_LEN]]> {
    if hashes.len() == 1 && hashes[0] == *file_sha256 {
        Box::default()
    } else {
        hashes.into_boxed_slice()
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The chunk hashes can be 32 MiB: show the shape, not the contents.
        f.debug_struct("Manifest")
            .field("id", &self.id)
            .field("lengths", &self.lengths)
            .field("file_sha256", &hex::encode(self.file_sha256))
            .finish_non_exhaustive()
    }
}

/// Returned by [`Manifest::chunk_hash`] for an index that belongs to another file. No chunk
/// hashes to all zeros, so nothing verifies against it.
static NO_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

impl Manifest {
    /// A manifest from its parts; fails if the number of chunk hashes is not the chunk count.
    pub fn new(
        lengths: Lengths,
        file_sha256: [u8; HASH_LEN],
        chunk_hashes: Vec<[u8; HASH_LEN]>,
    ) -> Result<Manifest, LengthsError> {
        if chunk_hashes.len() as u64 != u64::from(lengths.chunk_count) {
            return Err(LengthsError::CountMismatch {
                expected: u64::from(lengths.chunk_count),
                found: chunk_hashes.len() as u64,
            });
        }
        let mut m = Manifest {
            lengths,
            chunk_hashes: kept_hashes(&file_sha256, chunk_hashes),
            file_sha256,
            id: Id::ZERO,
        };
        m.id = Id::hash_of(&m.encode());
        Ok(m)
    }

    /// The manifest of in-memory `data`, chunked by the policy. For tests, tools and small
    /// content; files are hashed by streaming with [`crate::content::hasher::hash_file`].
    pub fn for_data(data: &[u8]) -> Result<Manifest, LengthsError> {
        Manifest::for_data_with_chunk_size(data, chunk_size_for(data.len() as u64))
    }

    /// The manifest of in-memory `data` in chunks of `chunk_size` bytes.
    pub fn for_data_with_chunk_size(
        data: &[u8],
        chunk_size: u32,
    ) -> Result<Manifest, LengthsError> {
        let lengths = Lengths::new(data.len() as u64, chunk_size)?;
        // chunk_size <= 1 MiB fits in usize.
        let hashes = data
            .chunks(chunk_size as usize)
            .map(|c| Sha256::digest(c).into())
            .collect();
        Manifest::new(lengths, Sha256::digest(data).into(), hashes)
    }

    /// Decodes a manifest, strictly (spec section 4): magic, version, a valid chunk size, a
    /// chunk count that matches the file size, exactly `count` hashes and nothing after them.
    /// Total: never panics, and allocates only after checking that the hashes are present.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
        let mut r = Reader::new(bytes);
        let lengths = read_header(&mut r)?;
        let file_sha256 = r.array::<HASH_LEN>("file_sha256")?;
        // Check the hashes are all there before allocating anything sized by the count.
        let count = lengths.chunk_count as usize;
        let need = count.saturating_mul(HASH_LEN);
        if need > r.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                field: "chunk_hashes",
                needed: need - r.remaining(),
            });
        }
        let mut chunk_hashes = Vec::with_capacity(count);
        for _ in 0..count {
            chunk_hashes.push(r.array::<HASH_LEN>("chunk_hashes")?);
        }
        r.finish()?;
        Ok(Manifest {
            lengths,
            chunk_hashes: kept_hashes(&file_sha256, chunk_hashes),
            file_sha256,
            // Strict decoding means `bytes` is the canonical encoding: hash it directly.
            id: Id::hash_of(bytes),
        })
    }

    /// Decodes `bytes` received for content `expected`, checking first that they hash to it.
    /// This is the check a downloader makes before its first chunk request (spec section 5).
    pub fn decode_for(expected: &Id, bytes: &[u8]) -> Result<Manifest, ManifestCheckError> {
        check_content_id(expected, bytes)?;
        Manifest::decode(bytes).map_err(ManifestCheckError::Decode)
    }

    /// The canonical encoding (spec section 2). Cannot fail.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.lengths.total.to_be_bytes());
        out.extend_from_slice(&self.lengths.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.lengths.chunk_count.to_be_bytes());
        out.extend_from_slice(&self.file_sha256);
        for h in self.chunk_hashes() {
            out.extend_from_slice(h);
        }
        out
    }

    /// Length of [`Manifest::encode`]'s output: `53 + 32 * chunk_count`.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + HASH_LEN * self.chunk_hashes().len()
    }

    /// The content ID: SHA-256 of the canonical encoding.
    pub fn content_id(&self) -> Id {
        self.id
    }

    /// The size arithmetic of the file.
    pub fn lengths(&self) -> Lengths {
        self.lengths
    }

    /// The file size in bytes.
    pub fn file_size(&self) -> u64 {
        self.lengths.total
    }

    /// SHA-256 of the whole file.
    pub fn file_sha256(&self) -> &[u8; HASH_LEN] {
        &self.file_sha256
    }

    /// The chunk hashes, in order.
    pub fn chunk_hashes(&self) -> &[[u8; HASH_LEN]] {
        if self.chunk_hashes.is_empty() && self.lengths.chunk_count == 1 {
            std::slice::from_ref(&self.file_sha256)
        } else {
            &self.chunk_hashes
        }
    }

    /// SHA-256 of chunk `c`. An index from another file's [`Lengths`] that is out of range
    /// here gives all zeros, which no chunk matches.
    pub fn chunk_hash(&self, c: ChunkIndex) -> &[u8; HASH_LEN] {
        self.chunk_hashes().get(c.as_usize()).unwrap_or(&NO_HASH)
    }

    /// True when `data` is exactly chunk `c`: the right length, then the right SHA-256.
    pub fn verify_chunk(&self, c: ChunkIndex, data: &[u8]) -> bool {
        let Some(expected) = self.chunk_hashes().get(c.as_usize()) else {
            return false;
        };
        data.len() as u64 == u64::from(self.lengths.chunk_len(c))
            && Sha256::digest(data).as_slice() == expected.as_slice()
    }
}

/// The first check on manifest bytes received for content `expected`: they hash to it.
pub fn check_content_id(expected: &Id, bytes: &[u8]) -> Result<(), ManifestCheckError> {
    let actual = Id::hash_of(bytes);
    if actual != *expected {
        return Err(ManifestCheckError::WrongId {
            expected: *expected,
            actual,
        });
    }
    Ok(())
}

/// Reads a four-byte magic and a version byte, checking both (for file and tree manifests).
/// `BadMagic` carries the DHT's two-byte magic; like the wire HANDSHAKE's "PSWP", a wrong
/// four-byte magic is an `InvalidValue` of the field `magic`.
pub(crate) fn read_magic_version(
    r: &mut Reader<'_>,
    magic: [u8; 4],
    version: u8,
    not_ours: &'static str,
) -> Result<(), DecodeError> {
    if r.array::<4>("magic")? != magic {
        return Err(DecodeError::InvalidValue {
            field: "magic",
            reason: not_ours,
        });
    }
    let v = r.u8("version")?;
    if v != version {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    Ok(())
}

/// `LengthTooLarge` for `field` when `len` exceeds `max`.
pub(crate) fn at_most(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::LengthTooLarge { field, len, max });
    }
    Ok(())
}

/// Reads and checks the fixed header up to and including `chunk_count` (21 bytes).
fn read_header(r: &mut Reader<'_>) -> Result<Lengths, DecodeError> {
    let not_ours = "not \"PSMF\" (50 53 4d 46): not a PeerShare manifest";
    read_magic_version(r, MAGIC, VERSION, not_ours)?;
    let file_size = r.u64("file_size")?;
    let chunk_size = r.u32("chunk_size")?;
    let chunk_count = r.u32("chunk_count")?;
    at_most("chunk_count", chunk_count as usize, MAX_CHUNKS as usize)?;
    let lengths = match Lengths::new(file_size, chunk_size) {
        Ok(l) => l,
        Err(LengthsError::BadChunkSize(_)) => {
            return Err(DecodeError::InvalidValue {
                field: "chunk_size",
                reason: "not a power of two between 16384 and 1048576",
            })
        }
        Err(_) => {
            return Err(DecodeError::InvalidValue {
                field: "file_size",
                reason: "needs more than 2^20 chunks of this chunk size",
            })
        }
    };
    if lengths.chunk_count != chunk_count {
        return Err(DecodeError::InvalidValue {
            field: "chunk_count",
            reason: "not equal to ceil(file_size / chunk_size)",
        });
    }
    Ok(lengths)
}

/// The total length of a manifest, from its first 21 bytes (magic through chunk_count),
/// checking them as [`Manifest::decode`] would. A downloader fetching a large manifest in
/// pieces (MANIFEST_DATA, `protocol-spec/wire.md`) learns from the first piece how many bytes
/// to expect, at most [`MAX_MANIFEST_LEN`], and can refuse more.
pub fn manifest_len_from_header(first_bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut r = Reader::new(first_bytes);
    let lengths = read_header(&mut r)?;
    Ok(HEADER_LEN + HASH_LEN * lengths.chunk_count as usize)
}

/// Why manifest bytes received for a content ID were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestCheckError {
    /// The bytes do not hash to the content ID that was asked for: the peer sent something
    /// else (or garbage). Nothing in them can be trusted.
    WrongId {
        /// The content ID asked for.
        expected: Id,
        /// The SHA-256 of what arrived.
        actual: Id,
    },
    /// The bytes hash to the right ID but are not a valid manifest: the content was published
    /// by a broken or hostile node, and cannot be downloaded under this ID.
    Decode(DecodeError),
}

impl fmt::Display for ManifestCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestCheckError::WrongId { expected, actual } => write!(
                f,
                "manifest received for {expected} hashes to {actual}: not the content asked for"
            ),
            ManifestCheckError::Decode(e) => write!(f, "invalid manifest: {e}"),
        }
    }
}

impl std::error::Error for ManifestCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestCheckError::WrongId { .. } => None,
            ManifestCheckError::Decode(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests;
