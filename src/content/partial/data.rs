//! [`PartData`]: where a download's bytes live while it runs.
//!
//! A single file's download is one `.part` file, preallocated to its size, each chunk at its
//! offset. A folder's download writes each chunk straight into its own file, under a hidden
//! folder `downloads/<id>.tree/` that has the tree's shape: a file is created (sparse, at its
//! full size) when its first chunk arrives, so a pack of thousands of small samples is never
//! copied a second time, and finishing is a rename of that folder to its final name
//! (`finish_tree.rs`). Both shapes are durable the same way: [`PartData::sync`] before the
//! resume record claims a chunk.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::finish_tree::sync_fs;
use super::page_cache::WRITEBACK_EVERY;
use crate::bitset::BitSet;
use crate::content::content_manifest::ContentManifest;
use crate::content::layout::Layout;
use crate::content::manifest::ChunkIndex;
use crate::content::tree::{ChunkPlace, EntryKind, TreeManifest};
use crate::content::ContentError;

/// Files a folder's download keeps open for writing at once (chunks of one big file tend to
/// arrive close together; a small file is one chunk, written once).
const OPEN_FOR_WRITE: usize = 16;

/// The bytes of one download (module docs). Cheap to clone: readers share it.
#[derive(Clone, Debug)]
pub(super) enum PartData {
    /// A single file's `.part`.
    File { path: PathBuf, file: Arc<File> },
    /// A folder's files, in place under `root`.
    Tree(Arc<TreeFiles>),
}

/// A folder's download in place: the staging folder and the manifest that says where each
/// chunk goes.
#[derive(Debug)]
pub(super) struct TreeFiles {
    /// `downloads/<id>.tree`.
    pub(super) root: PathBuf,
    manifest: Arc<ContentManifest>,
    /// The staging folder itself, opened and locked (`flock`) for the life of the download,
    /// as a single file's `.part` is: held, never read.
    _lock: File,
}

impl TreeFiles {
    pub(super) fn new(root: PathBuf, manifest: Arc<ContentManifest>, lock: File) -> Self {
        TreeFiles {
            root,
            manifest,
            _lock: lock,
        }
    }

    pub(super) fn tree(&self) -> Option<&TreeManifest> {
        self.manifest.as_tree()
    }

    /// Where chunk `c` lives: its file's path and its place in that file.
    fn place(&self, c: ChunkIndex) -> Option<(PathBuf, ChunkPlace)> {
        let tree = self.tree()?;
        let place = tree.chunk_place(c.get())?;
        let entry = tree.entries().get(place.entry)?;
        Some((self.root.join(entry.path.as_str()), place))
    }

    /// The size of file entry `entry` (`None` if it is not a file).
    pub(super) fn file_size(&self, entry: usize) -> Option<u64> {
        match self.tree()?.entries().get(entry)?.kind {
            EntryKind::File(f) => Some(f.lengths.total()),
            EntryKind::EmptyFolder => None,
        }
    }

    /// The path of file entry `entry`.
    pub(super) fn entry_path(&self, entry: usize) -> Option<PathBuf> {
        let e = self.tree()?.entries().get(entry)?;
        Some(self.root.join(e.path.as_str()))
    }
}

impl PartData {
    /// Reads chunk `c` (whose length `buf` already has) from disk. A folder's file that was
    /// never created, or is too short, reads as an error [`is_absent`] recognizes.
    pub(super) fn read_chunk(
        &self,
        layout: &Layout,
        c: ChunkIndex,
        buf: &mut [u8],
    ) -> Result<(), ContentError> {
        match self {
            PartData::File { path, file } => file
                .read_exact_at(buf, layout.chunk_offset(c))
                .map_err(|e| ContentError::io("read", path, e)),
            PartData::Tree(t) => {
                let (path, place) = t.place(c).ok_or_else(|| not_in_tree(&t.root, c))?;
                File::open(&path)
                    .and_then(|f| f.read_exact_at(buf, place.offset))
                    .map_err(|e| ContentError::io("read", &path, e))
            }
        }
    }

    /// The single file's `.part` (`None` for a folder).
    pub(super) fn as_file(&self) -> Option<(&Path, &Arc<File>)> {
        match self {
            PartData::File { path, file } => Some((path, file)),
            PartData::Tree(_) => None,
        }
    }

    /// The folder's files (`None` for a single file).
    pub(super) fn as_tree(&self) -> Option<&Arc<TreeFiles>> {
        match self {
            PartData::File { .. } => None,
            PartData::Tree(t) => Some(t),
        }
    }

    /// Makes every byte written so far durable: `fdatasync` of the `.part`, or for a folder
    /// one `syncfs` (its files, their directory entries and the folders made for them; one
    /// call instead of one per file written since the last sync, which can be thousands).
    pub(super) fn sync(&self) -> Result<(), ContentError> {
        match self {
            PartData::File { path, file } => file
                .sync_data()
                .map_err(|e| ContentError::io("sync", path, e)),
            PartData::Tree(t) => sync_fs(&t.root),
        }
    }
}

fn not_in_tree(root: &Path, c: ChunkIndex) -> ContentError {
    ContentError::io(
        "place chunk in",
        root,
        io::Error::other(format!("chunk {} is not in the folder's manifest", c.get())),
    )
}

/// The owner's side of a folder's download: the files it has open for writing, the files
/// it has made at their size, and the folders it knows exist.
#[derive(Debug, Default)]
pub(super) struct TreeWriter {
    open: Vec<(usize, File)>,
    /// The file entries created or sized by this writer, so `ensure_file` has nothing to do
    /// for them (finishing a pack of 10,000 files would otherwise open each again). Sized
    /// by the tree's entry count at the first file made.
    made: BitSet,
    dirs: HashSet<PathBuf>,
}

impl TreeWriter {
    /// Writes a verified chunk's bytes into its file, creating the file (sparse, at its full
    /// size) and its folders first if this is its first chunk. When the chunk crosses a
    /// multiple of [`WRITEBACK_EVERY`] in its file, starts write-back of the file, as a single
    /// file's `.part` does, so a big file's bytes go to disk while the network works. Smaller
    /// files are left to the kernel and to the sync after the folder is placed: starting
    /// write-back of each 50 KB sample of a pack cost a third of the download's time on disk.
    pub(super) fn write(
        &mut self,
        t: &TreeFiles,
        c: ChunkIndex,
        data: &[u8],
    ) -> Result<(), ContentError> {
        let (path, place) = t.place(c).ok_or_else(|| not_in_tree(&t.root, c))?;
        let whole = place.offset == 0 && Some(data.len() as u64) == t.file_size(place.entry);
        let file = self.file_for(t, place.entry, &path, whole)?;
        file.write_all_at(data, place.offset)
            .map_err(|e| ContentError::io("write", &path, e))?;
        let end = place.offset.saturating_add(data.len() as u64);
        if end / WRITEBACK_EVERY != place.offset / WRITEBACK_EVERY {
            start_range_writeback(file, 0, end);
        }
        Ok(())
    }

    /// Creates file entry `entry` at its full size if it does not exist yet (a file made of
    /// zeros, or empty, that no chunk will ever be written to).
    pub(super) fn ensure_file(&mut self, t: &TreeFiles, entry: usize) -> Result<(), ContentError> {
        if self.made.contains(entry) {
            return Ok(());
        }
        let Some(path) = t.entry_path(entry) else {
            return Ok(());
        };
        self.file_for(t, entry, &path, false).map(|_| ())
    }

    /// Closes every open file (before the staging folder is renamed or removed) and forgets
    /// which files it made: after this, `ensure_file` checks each file on disk again.
    pub(super) fn close_all(&mut self) {
        self.open.clear();
        self.made = BitSet::default();
    }

    /// The open file of entry `entry`, opened (and made) first if it is not open. `whole`:
    /// the caller writes the whole file at once, so a new file need not be sized first.
    fn file_for(
        &mut self,
        t: &TreeFiles,
        entry: usize,
        path: &Path,
        whole: bool,
    ) -> Result<&File, ContentError> {
        if let Some(k) = self.open.iter().position(|(e, _)| *e == entry) {
            // Most recently used last.
            let item = self.open.remove(k);
            self.open.push(item);
        } else {
            let Some(size) = t.file_size(entry) else {
                return Err(ContentError::io(
                    "write",
                    path,
                    io::Error::other("not a file"),
                ));
            };
            let file = self.open_sized(path, size, whole)?;
            if self.made.len() <= entry {
                let entries = t.tree().map_or(0, |tree| tree.entries().len());
                self.made = BitSet::new(entries.max(entry + 1));
            }
            self.made.insert(entry);
            if self.open.len() >= OPEN_FOR_WRITE {
                self.open.remove(0);
            }
            self.open.push((entry, file));
        }
        match self.open.last() {
            Some((_, f)) => Ok(f),
            None => Err(ContentError::io(
                "open",
                path,
                io::Error::other("no open file"),
            )),
        }
    }

    /// Opens (or creates) a file of the folder and gives it its size, making its folders
    /// first. A file of another size (a crash while it was being sized, or a change by hand)
    /// is resized: its chunks are re-checked by hash anyway. A file created now that the
    /// caller writes whole (`whole`: a small sample is one chunk) gets its size from that
    /// write: two system calls fewer per file of a pack.
    fn open_sized(&mut self, path: &Path, size: u64, whole: bool) -> Result<File, ContentError> {
        if let Some(parent) = path.parent() {
            if !self.dirs.contains(parent) {
                fs::create_dir_all(parent).map_err(|e| ContentError::io("create", parent, e))?;
                self.dirs.insert(parent.to_path_buf());
            }
        }
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(file) => {
                if !whole && size > 0 {
                    file.set_len(size)
                        .map_err(|e| ContentError::io("size", path, e))?;
                }
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ContentError::io("create", path, e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ContentError::io("create", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ContentError::io("inspect", path, e))?
            .len();
        if len != size {
            file.set_len(size)
                .map_err(|e| ContentError::io("size", path, e))?;
        }
        Ok(file)
    }
}

/// Asks the kernel to start writing bytes `offset..offset + len` of `file` (best effort).
fn start_range_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: takes a descriptor and plain integers and touches no memory of ours; `file`
    // keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        log::debug!("sync_file_range: {}", io::Error::last_os_error());
    }
}

/// Whether an error reading a folder's chunk means its file was never created or is shorter
/// than its size (the chunk is simply missing; the file is resized when the chunk is written)
/// rather than a failing disk.
pub(super) fn is_absent(e: &ContentError) -> bool {
    matches!(e, ContentError::Io { source, .. }
        if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof))
}
