//! The tree manifest: what a shared folder's content ID is the hash of (spec:
//! `protocol-spec/content.md`, section 10).
//!
//! A folder is a sorted list of entries (files with their size, chunk size and SHA-256, and
//! empty folders), then the chunk hashes of every file, file after file. Chunks never cross
//! a file boundary: each file is chunked exactly as if it were shared alone (section 3 of
//! the spec), so
//! - a file of up to 256 KiB, the typical sample, is one chunk whose hash is the file's
//!   SHA-256: verified on arrival, on its own, without its neighbours;
//! - a file inside a folder has the same chunk hashes, and so the same single-file content
//!   ID ([`TreeManifest::file_manifest`]), as the file shared alone: a node that already has
//!   it anywhere can copy it instead of fetching it;
//! - a subset of the folder is the chunks of its files, nothing more.
//!
//! Small files still travel together: the folder is one content ID, one DHT record, one
//! connection per peer and one pipeline of requests, whatever the number of files.
//!
//! Every structural rule (sorted unique paths, nothing under a file or an empty folder, no two
//! paths that a case-insensitive system would merge) is checked by [`check_structure`] for a
//! tree built here and for one decoded from the network alike.

pub mod path;
pub mod select;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::manifest::{
    at_most, read_magic_version, Lengths, Manifest, HASH_LEN, MAX_CHUNKS, MAX_FILE_SIZE,
    MAX_MANIFEST_LEN,
};
use crate::id::Id;
use crate::proto::codec::{DecodeError, Reader};
pub use path::{PathError, TreePath};
pub use select::{GlobError, Selection};

/// The magic bytes of a tree manifest: "PSTR" (PeerShare TRee).
pub const TREE_MAGIC: [u8; 4] = *b"PSTR";
/// The tree manifest version this code writes and reads.
pub const TREE_VERSION: u8 = 1;
/// Length of the fixed header (magic through `entries_len`).
pub const TREE_HEADER_LEN: usize = 25;
/// Most entries (files and empty folders) in one tree.
pub const MAX_ENTRIES: u32 = 1 << 18;
/// Entry kind byte of a file.
pub const KIND_FILE: u8 = 0;
/// Entry kind byte of an empty folder.
pub const KIND_EMPTY_FOLDER: u8 = 1;

/// SHA-256 of no bytes: the `sha256` of every empty file.
const EMPTY_SHA256: [u8; HASH_LEN] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// One file of a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Its size and chunking.
    pub lengths: Lengths,
    /// SHA-256 of the whole file.
    pub sha256: [u8; HASH_LEN],
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A file.
    File(FileEntry),
    /// A folder with nothing in it (folders with something in them are implied by the paths).
    EmptyFolder,
}

/// One entry of a tree: a path and what is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Where, relative to the folder.
    pub path: TreePath,
    /// What.
    pub kind: EntryKind,
}

/// Where a chunk of the tree lives: which entry, at which offset of that file, how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Index in [`TreeManifest::entries`].
    pub entry: usize,
    /// The chunk's index within its file.
    pub chunk_in_file: u32,
    /// Byte offset within the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Why a tree cannot be built or was refused (a structural rule of section 10.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeError {
    /// The path the rule broke at.
    pub path: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for TreeError {}

/// A folder's manifest (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct TreeManifest {
    entries: Vec<TreeEntry>,
    chunk_hashes: Vec<[u8; HASH_LEN]>,
    /// For each file, in order: its entry index and its first chunk.
    files: Vec<(usize, u32)>,
    total_size: u64,
    entries_len: usize,
    id: Id,
    /// Where each chunk starts when the files lie one after another (`content/layout.rs`), and the total size last: computed once, shared by every
    /// [`crate::content::Layout`] of this tree.
    starts: Arc<[u64]>,
}

impl fmt::Debug for TreeManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeManifest")
            .field("id", &self.id)
            .field("entries", &self.entries.len())
            .field("files", &self.files.len())
            .field("total_size", &self.total_size)
            .field("chunks", &self.chunk_hashes.len())
            .finish_non_exhaustive()
    }
}

impl TreeManifest {
    /// A tree from its files (each with the manifest it was hashed into, chunked by the
    /// policy or not) and its empty folders, in any order.
    pub fn build(
        files: Vec<(TreePath, Manifest)>,
        empty_folders: Vec<TreePath>,
    ) -> Result<TreeManifest, TreeError> {
        let mut items: Vec<(TreeEntry, Vec<[u8; HASH_LEN]>)> = files
            .into_iter()
            .map(|(path, m)| {
                let kind = EntryKind::File(FileEntry {
                    lengths: m.lengths(),
                    sha256: *m.file_sha256(),
                });
                (TreeEntry { path, kind }, m.chunk_hashes().to_vec())
            })
            .chain(empty_folders.into_iter().map(|path| {
                let kind = EntryKind::EmptyFolder;
                (TreeEntry { path, kind }, Vec::new())
            }))
            .collect();
        items.sort_by(|a, b| {
            a.0.path
                .as_str()
                .as_bytes()
                .cmp(b.0.path.as_str().as_bytes())
        });
        let too_big = |reason| TreeError {
            path: String::new(),
            reason,
        };
        if items.len() > MAX_ENTRIES as usize {
            return Err(too_big("more than 262144 files and empty folders"));
        }
        let mut entries = Vec::with_capacity(items.len());
        let mut chunk_hashes = Vec::new();
        for (e, hashes) in items {
            chunk_hashes.extend(hashes);
            entries.push(e);
        }
        check_structure(&entries)?;
        let (files, total_size, chunks) = layout(&entries).map_err(|(_, r)| too_big(r))?;
        if chunks as usize != chunk_hashes.len() {
            return Err(too_big("chunk hashes do not match the files"));
        }
        let entries_len = entries.iter().map(entry_len).sum();
        let mut t = TreeManifest {
            starts: chunk_starts(&entries),
            entries,
            chunk_hashes,
            files,
            total_size,
            entries_len,
            id: Id::ZERO,
        };
        if t.encoded_len() > MAX_MANIFEST_LEN {
            return Err(too_big("the tree manifest would exceed 32 MiB"));
        }
        t.id = Id::hash_of(&t.encode());
        Ok(t)
    }

    /// Decodes a tree manifest, strictly and totally (spec section 10.4): every length is
    /// checked against the bytes present before anything is allocated by it. The checks that
    /// span entries are [`check_entries`] and [`check_file_hashes`], which `peershare
    /// decode` runs too, to point at the entry at fault.
    pub fn decode(bytes: &[u8]) -> Result<TreeManifest, DecodeError> {
        let mut r = Reader::new(bytes);
        let (entry_count, total_size, chunk_count, entries_len) = read_header(&mut r)?;
        if entries_len > r.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                field: "entries",
                needed: entries_len - r.remaining(),
            });
        }
        let entries = decode_entries(r.take(entries_len, "entries")?, entry_count)?;
        let files = check_entries(&entries, total_size, chunk_count).map_err(|f| f.error)?;
        let need = (chunk_count as usize).saturating_mul(HASH_LEN);
        if need > r.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                field: "chunk_hashes",
                needed: need - r.remaining(),
            });
        }
        let mut chunk_hashes = Vec::with_capacity(chunk_count as usize);
        for _ in 0..chunk_count {
            chunk_hashes.push(r.array::<HASH_LEN>("chunk_hashes")?);
        }
        r.finish()?;
        check_file_hashes(&entries, &files, |i| chunk_hashes.get(i as usize).copied())
            .map_err(|f| f.error)?;
        Ok(TreeManifest {
            starts: chunk_starts(&entries),
            entries,
            chunk_hashes,
            files,
            total_size,
            entries_len,
            id: Id::hash_of(bytes),
        })
    }

    /// The canonical encoding (spec section 10.1). Cannot fail.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&TREE_MAGIC);
        out.push(TREE_VERSION);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.total_size.to_be_bytes());
        out.extend_from_slice(&(self.chunk_hashes.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.entries_len as u32).to_be_bytes());
        for e in &self.entries {
            match e.kind {
                EntryKind::File(_) => out.push(KIND_FILE),
                EntryKind::EmptyFolder => out.push(KIND_EMPTY_FOLDER),
            }
            let p = e.path.as_str().as_bytes();
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
            if let EntryKind::File(f) = e.kind {
                out.extend_from_slice(&f.lengths.total().to_be_bytes());
                out.extend_from_slice(&f.lengths.chunk_size().to_be_bytes());
                out.extend_from_slice(&f.sha256);
            }
        }
        for h in &self.chunk_hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Length of [`TreeManifest::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        TREE_HEADER_LEN + self.entries_len + HASH_LEN * self.chunk_hashes.len()
    }

    /// The content ID: SHA-256 of the canonical encoding.
    pub fn content_id(&self) -> Id {
        self.id
    }

    /// Every entry, in canonical order.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// Number of files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Chunks of all files together.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_hashes.len() as u32
    }

    /// The hash of the tree's chunk `i`, if there is one.
    pub fn chunk_hash(&self, i: u32) -> Option<&[u8; HASH_LEN]> {
        self.chunk_hashes.get(i as usize)
    }

    /// Where the tree's chunk `i` lives.
    pub fn chunk_place(&self, i: u32) -> Option<ChunkPlace> {
        if i >= self.chunk_count() {
            return None;
        }
        chunk_place_in(&self.entries, &self.files, i)
    }

    /// The tree chunks of file entry `entry` (empty for an empty file or a folder).
    pub fn file_chunks(&self, entry: usize) -> std::ops::Range<u32> {
        let Ok(k) = self.files.binary_search_by_key(&entry, |&(e, _)| e) else {
            return 0..0;
        };
        let first = self.files[k].1;
        match self.entries[entry].kind {
            EntryKind::File(f) => first..first + f.lengths.chunk_count(),
            EntryKind::EmptyFolder => 0..0,
        }
    }

    /// Where each chunk starts when the files lie one after another, then the total size.
    pub fn chunk_starts(&self) -> &Arc<[u64]> {
        &self.starts
    }

    /// Which file (0-based, in entry order) entry `entry` is; `None` for a folder.
    pub fn file_number(&self, entry: usize) -> Option<usize> {
        self.files.binary_search_by_key(&entry, |&(e, _)| e).ok()
    }

    /// The single-file manifest of file entry `entry`: the manifest (and so the content ID)
    /// the same bytes have when shared alone, if its chunk size is the policy's.
    pub fn file_manifest(&self, entry: usize) -> Option<Manifest> {
        let EntryKind::File(f) = self.entries.get(entry)?.kind else {
            return None;
        };
        let chunks = self.file_chunks(entry);
        let hashes = self.chunk_hashes[chunks.start as usize..chunks.end as usize].to_vec();
        Manifest::new(f.lengths, f.sha256, hashes).ok()
    }

    /// Checks chunk `i`'s bytes against its hash.
    pub fn verify_chunk(&self, i: u32, data: &[u8]) -> bool {
        match (self.chunk_place(i), self.chunk_hash(i)) {
            (Some(p), Some(h)) => {
                data.len() == p.len as usize && Sha256::digest(data).as_slice() == h.as_slice()
            }
            _ => false,
        }
    }
}

/// See [`TreeManifest::chunk_starts`].
fn chunk_starts(entries: &[TreeEntry]) -> Arc<[u64]> {
    let mut starts = Vec::new();
    let mut at = 0u64;
    for e in entries {
        if let EntryKind::File(f) = e.kind {
            for c in f.lengths.chunks() {
                starts.push(at);
                at += u64::from(f.lengths.chunk_len(c));
            }
        }
    }
    starts.push(at);
    starts.into()
}

/// The total length of a tree manifest, from its first 25 bytes (magic through
/// `entries_len`), checked as [`TreeManifest::decode`] would.
pub fn tree_manifest_len_from_header(first_bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut r = Reader::new(first_bytes);
    let (_, _, chunk_count, entries_len) = read_header(&mut r)?;
    Ok(TREE_HEADER_LEN + entries_len + HASH_LEN * chunk_count as usize)
}

fn read_header(r: &mut Reader<'_>) -> Result<(u32, u64, u32, usize), DecodeError> {
    let not_ours = "not \"PSTR\" (50 53 54 52): not a PeerShare tree manifest";
    read_magic_version(r, TREE_MAGIC, TREE_VERSION, not_ours)?;
    let entry_count = r.u32("entry_count")?;
    at_most("entry_count", entry_count as usize, MAX_ENTRIES as usize)?;
    let total_size = r.u64("total_size")?;
    if total_size > MAX_FILE_SIZE {
        return Err(DecodeError::InvalidValue {
            field: "total_size",
            reason: "more than 1 TiB",
        });
    }
    let chunk_count = r.u32("chunk_count")?;
    at_most("chunk_count", chunk_count as usize, MAX_CHUNKS as usize)?;
    let entries_len = r.u32("entries_len")? as usize;
    at_most("entries_len", entries_len, max_entries_len(chunk_count))?;
    Ok((entry_count, total_size, chunk_count, entries_len))
}

/// The largest `entries_len` a header with `chunk_count` chunks may give: what the largest
/// manifest leaves for entries (section 10.1).
pub fn max_entries_len(chunk_count: u32) -> usize {
    let hashes = HASH_LEN.saturating_mul(chunk_count as usize);
    MAX_MANIFEST_LEN.saturating_sub(TREE_HEADER_LEN + hashes)
}

/// Decodes the entries: `entry_count` of them that fill `bytes` (the `entries_len` bytes
/// after the header) exactly. Each entry's own checks (kind, path rules, chunk size) are
/// made as it is read; bytes left after the last entry are an error of `entries_len`.
pub fn decode_entries(bytes: &[u8], entry_count: u32) -> Result<Vec<TreeEntry>, DecodeError> {
    let mut er = Reader::new(bytes);
    // Each entry takes at least 4 bytes: never reserve more than the bytes can hold.
    let mut entries = Vec::with_capacity((entry_count as usize).min(bytes.len() / 4));
    for _ in 0..entry_count {
        entries.push(read_entry(&mut er)?);
    }
    if er.remaining() > 0 {
        return Err(DecodeError::InvalidValue {
            field: "entries_len",
            reason: "bytes remain after the last entry",
        });
    }
    Ok(entries)
}

/// The reason of the `path` error for entries out of order (the other `path` errors of
/// [`check_entries`] are the structural rules).
pub const UNSORTED: &str = "entries are not in strictly ascending byte order of their paths";

/// A check that spans entries failed: the decoder's error, and the entry it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesFault {
    /// Index of the entry at fault (the second of two out of order, the one that breaks a
    /// structural rule, the file whose size or chunks overflow the sums, the file whose
    /// `sha256` is wrong); `None` when the error is about the header's totals.
    pub entry: Option<usize>,
    /// The error [`TreeManifest::decode`] returns.
    pub error: DecodeError,
}

/// The checks of section 10.4 that span the decoded entries, in the decoder's order: paths in
/// strictly ascending byte order; the structural rules ([`check_structure`]); the files'
/// sizes and chunk counts within the limits and adding up to the header's `total_size` and
/// `chunk_count`. Returns each file's entry index and first chunk, in order.
pub fn check_entries(
    entries: &[TreeEntry],
    total_size: u64,
    chunk_count: u32,
) -> Result<Vec<(usize, u32)>, EntriesFault> {
    let invalid = |entry, field, reason| EntriesFault {
        entry,
        error: DecodeError::InvalidValue { field, reason },
    };
    for (i, pair) in entries.windows(2).enumerate() {
        if pair[0].path.as_str().as_bytes() >= pair[1].path.as_str().as_bytes() {
            return Err(invalid(Some(i + 1), "path", UNSORTED));
        }
    }
    structure_fault(entries).map_err(|(i, reason)| invalid(Some(i), "path", reason))?;
    let (files, sum_size, sum_chunks) =
        layout(entries).map_err(|(i, reason)| invalid(Some(i), "file_size", reason))?;
    if sum_size != total_size {
        return Err(invalid(
            None,
            "total_size",
            "not the sum of the files' sizes",
        ));
    }
    if sum_chunks != chunk_count {
        let reason = "not the sum of the files' chunk counts";
        return Err(invalid(None, "chunk_count", reason));
    }
    Ok(files)
}

/// The last check of section 10.4: a one-chunk file's chunk hash is its SHA-256, and an empty
/// file's SHA-256 is that of no bytes; a manifest that says otherwise describes files that can
/// never complete. `files` is what [`check_entries`] returns; `chunk_hash(i)` is the tree's
/// chunk hash `i`.
pub fn check_file_hashes(
    entries: &[TreeEntry],
    files: &[(usize, u32)],
    chunk_hash: impl Fn(u32) -> Option<[u8; HASH_LEN]>,
) -> Result<(), EntriesFault> {
    for &(entry, first) in files {
        let Some(EntryKind::File(f)) = entries.get(entry).map(|e| e.kind) else {
            continue;
        };
        let bad = match f.lengths.chunk_count() {
            0 => f.sha256 != EMPTY_SHA256,
            1 => chunk_hash(first) != Some(f.sha256),
            _ => false,
        };
        if bad {
            return Err(EntriesFault {
                entry: Some(entry),
                error: DecodeError::InvalidValue {
                    field: "sha256",
                    reason:
                        "a file of one chunk (or none) whose SHA-256 contradicts its chunk hash",
                },
            });
        }
    }
    Ok(())
}

/// Where chunk `i` of a tree lives, from its entries and the files [`check_entries`]
/// returns; `None` past the last chunk.
pub fn chunk_place_in(entries: &[TreeEntry], files: &[(usize, u32)], i: u32) -> Option<ChunkPlace> {
    // The last file whose first chunk is at or before i (files with no chunk share their
    // first chunk with the next file, so take the last such file that has one).
    let n = files.partition_point(|&(_, first)| first <= i);
    let (entry, first) = *files.get(n.checked_sub(1)?)?;
    let EntryKind::File(f) = entries.get(entry)?.kind else {
        return None;
    };
    let lengths = f.lengths;
    let c = lengths.validate(i - first)?;
    Some(ChunkPlace {
        entry,
        chunk_in_file: c.get(),
        offset: lengths.chunk_offset(c),
        len: lengths.chunk_len(c),
    })
}

fn read_entry(r: &mut Reader<'_>) -> Result<TreeEntry, DecodeError> {
    let kind = r.u8("kind")?;
    if kind != KIND_FILE && kind != KIND_EMPTY_FOLDER {
        return Err(DecodeError::InvalidValue {
            field: "kind",
            reason: "neither 0 (file) nor 1 (empty folder)",
        });
    }
    let len = r.u16("path_len")? as usize;
    let bytes = r.take(len, "path")?;
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidValue {
        field: "path",
        reason: "not UTF-8",
    })?;
    let path = TreePath::new(text).map_err(|e| DecodeError::InvalidValue {
        field: "path",
        reason: e.reason,
    })?;
    if kind == KIND_EMPTY_FOLDER {
        return Ok(TreeEntry {
            path,
            kind: EntryKind::EmptyFolder,
        });
    }
    let size = r.u64("file_size")?;
    let chunk_size = r.u32("chunk_size")?;
    let sha256 = r.array::<HASH_LEN>("sha256")?;
    let lengths = Lengths::new(size, chunk_size).map_err(|_| DecodeError::InvalidValue {
        field: "chunk_size",
        reason: "not a power of two between 16384 and 1048576, or too many chunks",
    })?;
    Ok(TreeEntry {
        path,
        kind: EntryKind::File(FileEntry { lengths, sha256 }),
    })
}

fn entry_len(e: &TreeEntry) -> usize {
    let fixed = match e.kind {
        EntryKind::File(_) => 8 + 4 + HASH_LEN,
        EntryKind::EmptyFolder => 0,
    };
    1 + 2 + e.path.as_str().len() + fixed
}

/// Each file's first chunk, the total size and the total chunk count; fails past the limits
/// (at the entry that goes past them).
type Layout = (Vec<(usize, u32)>, u64, u32);

fn layout(entries: &[TreeEntry]) -> Result<Layout, (usize, &'static str)> {
    let mut files = Vec::new();
    let mut size: u64 = 0;
    let mut chunks: u32 = 0;
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::File(f) = e.kind {
            files.push((i, chunks));
            size = size
                .checked_add(f.lengths.total())
                .filter(|s| *s <= MAX_FILE_SIZE)
                .ok_or((i, "the files add up to more than 1 TiB"))?;
            chunks = chunks
                .checked_add(f.lengths.chunk_count())
                .filter(|c| *c <= MAX_CHUNKS)
                .ok_or((i, "the files add up to more than 2^20 chunks"))?;
        }
    }
    Ok((files, size, chunks))
}

/// What a node of the folder tree is, while checking it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Folder,
    EmptyFolder,
    File,
}

/// The structural rules of spec section 10.3, in one pass over the entries (linear in their
/// total path length, whatever the nesting): no path twice; nothing inside a file or inside
/// a folder listed as empty; no two names in one folder that differ only by case or Unicode
/// normalization (macOS and Windows would make them one, and one file would overwrite the
/// other).
pub fn check_structure(entries: &[TreeEntry]) -> Result<(), TreeError> {
    structure_fault(entries).map_err(|(i, reason)| TreeError {
        path: entries
            .get(i)
            .map(|e| e.path.to_string())
            .unwrap_or_default(),
        reason,
    })
}

/// [`check_structure`], saying which entry broke a rule (its index) and how.
fn structure_fault(entries: &[TreeEntry]) -> Result<(), (usize, &'static str)> {
    // (parent node, exact name) -> node; (parent node, folded name) -> exact name.
    let mut children: HashMap<(u32, &str), u32> = HashMap::new();
    let mut folded: HashMap<(u32, String), &str> = HashMap::new();
    let mut kinds: Vec<Node> = vec![Node::Folder]; // node 0: the shared folder itself
    for (i, e) in entries.iter().enumerate() {
        let fail = |reason| (i, reason);
        let mut parent = 0u32;
        let mut comps = e.path.components().peekable();
        while let Some(name) = comps.next() {
            let last = comps.peek().is_none();
            match kinds[parent as usize] {
                Node::Folder => {}
                Node::File => return Err(fail("a path goes inside a file")),
                Node::EmptyFolder => {
                    return Err(fail("a path goes inside a folder listed as empty"))
                }
            }
            if let Some(&child) = children.get(&(parent, name)) {
                if last {
                    return Err(fail("the same path is listed twice"));
                }
                parent = child;
                continue;
            }
            match folded.get(&(parent, path::folded(name))) {
                Some(other) if *other != name => {
                    return Err(fail(
                        "two names in one folder differ only by case or Unicode normalization",
                    ))
                }
                _ => {}
            }
            let node = kinds.len() as u32;
            kinds.push(match (last, e.kind) {
                (false, _) => Node::Folder,
                (true, EntryKind::File(_)) => Node::File,
                (true, EntryKind::EmptyFolder) => Node::EmptyFolder,
            });
            children.insert((parent, name), node);
            folded.insert((parent, path::folded(name)), name);
            parent = node;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
