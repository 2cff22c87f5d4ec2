//! Hashing a file into its [`Manifest`] in one streaming pass.
//!
//! Memory is bounded (a few 1 MiB buffers, whatever the file size). The whole-file SHA-256
//! is inherently sequential, and so is each chunk's, so for files above a few MiB the two
//! run on two threads fed with the same read buffers: the calling thread reads into a
//! buffer, wraps it in an `Arc` and hands it to both hashers through small bounded channels;
//! the hasher that drops the last reference returns the buffer to the reader. Total work is
//! two SHA-256 passes, but on two cores the wall time is about one (`sha2` uses the SHA
//! extensions of the CPU when present).
//!
//! The file must not change while it is read: its [`FileStamp`] is taken from the open file
//! before the first read, and after the last read both from the open file and from the path
//! (which catches a replacement by rename). Any difference fails with
//! [`ContentError::Changed`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use sha2::{Digest, Sha256};

use super::manifest::{chunk_size_for, Lengths, LengthsError, Manifest, HASH_LEN};
use super::{ContentError, FileStamp};

/// Size of one read buffer. A multiple of every allowed chunk size (all are powers of two up
/// to 1 MiB), large enough that per-read overhead is negligible.
pub const READ_BUF: usize = 1 << 20;
/// Buffers in flight between the reader and the two hashers (bounds memory to 4 MiB).
const POOL: usize = 4;
/// Files smaller than this are hashed on the calling thread: starting two threads costs
/// more than it saves (a 50 KB sample hashes in ~30 µs).
const PARALLEL_MIN: u64 = 4 << 20;

/// A manifest together with the stamp of the file it was computed from. The stamp was the
/// same before and after the read.
#[derive(Clone, Debug)]
pub struct Hashed {
    /// The file's manifest.
    pub manifest: Manifest,
    /// The file's stamp while it was hashed.
    pub stamp: FileStamp,
}

/// Hashes the file at `path` into its manifest, with the chunk size policy
/// ([`chunk_size_for`]). `progress` is called on this thread with the number of bytes read so
/// far, after every buffer (at most every 1 MiB).
pub fn hash_file(path: &Path, progress: &dyn Fn(u64)) -> Result<Manifest, ContentError> {
    hash_file_stamped(path, None, progress).map(|h| h.manifest)
}

/// Like [`hash_file`], and also returns the file's stamp. `chunk_size` overrides the policy
/// (tests and tools; shares made by [`super::index::ShareIndex`] always use the policy, so the
/// same bytes get the same content ID on every node).
pub fn hash_file_stamped(
    path: &Path,
    chunk_size: Option<u32>,
    progress: &dyn Fn(u64),
) -> Result<Hashed, ContentError> {
    // Refuse directories, FIFOs and devices before opening: opening a FIFO would block.
    let meta = fs::metadata(path).map_err(|e| not_found_or(path, "inspect", e))?;
    if !meta.is_file() {
        return Err(ContentError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut file = File::open(path).map_err(|e| not_found_or(path, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| ContentError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(ContentError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let before = FileStamp::of(&meta);
    let size = before.size;
    let lengths = Lengths::new(size, chunk_size.unwrap_or_else(|| chunk_size_for(size))).map_err(
        |e| match e {
            LengthsError::TooManyChunks { .. } => ContentError::TooLarge {
                path: path.to_path_buf(),
                size,
            },
            other => ContentError::io(
                "hash",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, other),
            ),
        },
    )?;

    let (file_hash, chunk_hashes) = if size < PARALLEL_MIN {
        hash_serial(&mut file, path, lengths, progress)?
    } else {
        hash_parallel(&mut file, path, lengths, progress)?
    };

    // The file must be exactly what it was when we started: check the open file (writes,
    // truncation) and the path (replaced by another file since we opened it).
    let after_fd = file
        .metadata()
        .map(|m| FileStamp::of(&m))
        .map_err(|e| ContentError::io("inspect", path, e))?;
    let after_path = FileStamp::read(path)?;
    for after in [after_fd, after_path] {
        if let Some(what) = after.changes_since(&before) {
            return Err(changed_while_hashing(path, &what));
        }
    }
    let manifest = Manifest::new(lengths, file_hash, chunk_hashes).map_err(|e| {
        // The reader checked the byte count, so the chunk count always matches; report it
        // as a change rather than panic if it somehow does not.
        changed_while_hashing(path, &e.to_string())
    })?;
    Ok(Hashed {
        manifest,
        stamp: before,
    })
}

fn not_found_or(path: &Path, what: &'static str, e: io::Error) -> ContentError {
    if e.kind() == io::ErrorKind::NotFound {
        ContentError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        ContentError::io(what, path, e)
    }
}

fn changed_while_hashing(path: &Path, what: &str) -> ContentError {
    ContentError::Changed {
        path: path.to_path_buf(),
        what: format!("{what}, while it was being hashed; try again once nothing is writing it"),
    }
}

/// Splits a byte stream at chunk boundaries and hashes each chunk.
struct ChunkHasher {
    chunk_size: u64,
    in_chunk: u64,
    current: Sha256,
    done: Vec<[u8; HASH_LEN]>,
}

impl ChunkHasher {
    fn new(lengths: Lengths) -> ChunkHasher {
        ChunkHasher {
            chunk_size: u64::from(lengths.chunk_size()),
            in_chunk: 0,
            current: Sha256::new(),
            // chunk_count <= 2^20: a bounded, known size.
            done: Vec::with_capacity(lengths.chunk_count() as usize),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.chunk_size - self.in_chunk;
            let take = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
            let (head, rest) = data.split_at(take);
            self.current.update(head);
            self.in_chunk += take as u64;
            if self.in_chunk == self.chunk_size {
                self.done.push(self.current.finalize_reset().into());
                self.in_chunk = 0;
            }
            data = rest;
        }
    }

    fn finish(mut self) -> Vec<[u8; HASH_LEN]> {
        // The last chunk may be short; an empty file has no chunks at all.
        if self.in_chunk > 0 {
            self.done.push(self.current.finalize_reset().into());
        }
        self.done
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn fill(file: &mut File, path: &Path, buf: &mut [u8]) -> Result<usize, ContentError> {
    let mut n = 0;
    while n < buf.len() {
        let Some(dst) = buf.get_mut(n..) else { break };
        match file.read(dst) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ContentError::io("read", path, e)),
        }
    }
    Ok(n)
}

/// Keeps count of bytes read and fails if the file is longer or shorter than its size.
struct Progress<'a> {
    path: &'a Path,
    expected: u64,
    read: u64,
    callback: &'a dyn Fn(u64),
}

impl Progress<'_> {
    /// Accounts for `n` more bytes; `Ok(false)` at the end of the file.
    fn add(&mut self, n: usize) -> Result<bool, ContentError> {
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.expected {
            return Err(changed_while_hashing(self.path, "it grew"));
        }
        if n == 0 {
            if self.read < self.expected {
                return Err(changed_while_hashing(self.path, "it shrank"));
            }
            return Ok(false);
        }
        (self.callback)(self.read);
        Ok(true)
    }
}

type Hashes = ([u8; HASH_LEN], Vec<[u8; HASH_LEN]>);

fn hash_serial(
    file: &mut File,
    path: &Path,
    lengths: Lengths,
    progress: &dyn Fn(u64),
) -> Result<Hashes, ContentError> {
    let mut whole = Sha256::new();
    let mut chunks = ChunkHasher::new(lengths);
    // One chunk-sized buffer at most: small files get small buffers.
    let cap = usize::try_from(lengths.total().clamp(1, READ_BUF as u64)).unwrap_or(READ_BUF);
    let mut buf = vec![0u8; cap];
    let mut p = Progress {
        path,
        expected: lengths.total(),
        read: 0,
        callback: progress,
    };
    loop {
        let n = fill(file, path, &mut buf)?;
        if !p.add(n)? {
            break;
        }
        let data = buf.get(..n).unwrap_or(&[]);
        whole.update(data);
        chunks.update(data);
    }
    Ok((whole.finalize().into(), chunks.finish()))
}

/// One read buffer and how much of it holds data.
struct Block {
    data: Vec<u8>,
    len: usize,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or(&[])
    }
}

/// Drops this thread's reference to `block`; the last holder sends the buffer back for reuse.
fn release(block: Arc<Block>, free: &Sender<Vec<u8>>) {
    if let Some(b) = Arc::into_inner(block) {
        // Never blocks: at most POOL buffers exist and the channel holds POOL. If the reader
        // is gone the buffer is simply freed.
        let _ = free.try_send(b.data);
    }
}

fn hash_parallel(
    file: &mut File,
    path: &Path,
    lengths: Lengths,
    progress: &dyn Fn(u64),
) -> Result<Hashes, ContentError> {
    let (to_whole, whole_rx) = bounded::<Arc<Block>>(POOL);
    let (to_chunks, chunks_rx) = bounded::<Arc<Block>>(POOL);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(POOL);

    std::thread::scope(|s| {
        let free_a = free_tx.clone();
        let whole_thread = s.spawn(move || {
            let mut h = Sha256::new();
            for b in whole_rx {
                h.update(b.bytes());
                release(b, &free_a);
            }
            <[u8; HASH_LEN]>::from(h.finalize())
        });
        let free_b = free_tx;
        let chunk_thread = s.spawn(move || {
            let mut h = ChunkHasher::new(lengths);
            for b in chunks_rx {
                h.update(b.bytes());
                release(b, &free_b);
            }
            h.finish()
        });

        let threads_alive = || !whole_thread.is_finished() && !chunk_thread.is_finished();
        let read_result = read_loop(
            file,
            path,
            lengths.total(),
            progress,
            &free_rx,
            threads_alive,
            [&to_whole, &to_chunks],
        );
        // Closing the channels ends both hashers, whether the read succeeded or not.
        drop(to_whole);
        drop(to_chunks);
        let whole = whole_thread.join();
        let chunks = chunk_thread.join();
        read_result?;
        match (whole, chunks) {
            (Ok(w), Ok(c)) => Ok((w, c)),
            _ => Err(ContentError::io(
                "hash",
                path,
                io::Error::other("a hashing thread panicked"),
            )),
        }
    })
}

fn read_loop(
    file: &mut File,
    path: &Path,
    expected: u64,
    progress: &dyn Fn(u64),
    free: &Receiver<Vec<u8>>,
    threads_alive: impl Fn() -> bool,
    outputs: [&Sender<Arc<Block>>; 2],
) -> Result<(), ContentError> {
    let hasher_died =
        || ContentError::io("hash", path, io::Error::other("a hashing thread stopped"));
    let mut allocated = 0;
    let mut p = Progress {
        path,
        expected,
        read: 0,
        callback: progress,
    };
    loop {
        let mut data = match free.try_recv() {
            Ok(b) => b,
            Err(_) if allocated < POOL => {
                allocated += 1;
                vec![0u8; READ_BUF]
            }
            // Wait for a hasher to hand a buffer back, but never forever: if a hasher died
            // holding buffers, give up instead of hanging.
            Err(_) => loop {
                match free.recv_timeout(Duration::from_millis(100)) {
                    Ok(b) => break b,
                    Err(RecvTimeoutError::Timeout) if threads_alive() => {}
                    Err(_) => return Err(hasher_died()),
                }
            },
        };
        let n = fill(file, path, &mut data)?;
        if !p.add(n)? {
            return Ok(());
        }
        let block = Arc::new(Block { data, len: n });
        // The reader must keep no reference of its own: the buffer goes back to the pool only
        // from `release`, when the last hasher lets go. Were the reader's own copy dropped
        // last (after both hashers were done with it), the buffer would be freed instead of
        // recycled, and after POOL such losses the reader would wait forever.
        let [first, last] = outputs;
        first.send(Arc::clone(&block)).map_err(|_| hasher_died())?;
        last.send(block).map_err(|_| hasher_died())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;

    fn write_file(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
    }

    #[test]
    fn equals_the_in_memory_reference() {
        let dir = tempfile::tempdir().unwrap();
        let cs = 256 << 10;
        // Serial and parallel paths, chunk boundaries, buffer boundaries.
        for n in [
            0,
            1,
            cs - 1,
            cs,
            cs + 1,
            READ_BUF - 1,
            READ_BUF,
            READ_BUF + 1,
            PARALLEL_MIN as usize - 1,
            PARALLEL_MIN as usize,
            PARALLEL_MIN as usize + 3 * cs + 5,
        ] {
            let d = pattern(n);
            let p = write_file(dir.path(), "f", &d);
            let got = hash_file(&p, &|_| {}).unwrap();
            let want = Manifest::for_data(&d).unwrap();
            assert_eq!(got, want, "size {n}");
            assert_eq!(got.content_id(), want.content_id());
        }
    }

    #[test]
    fn explicit_chunk_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let d = pattern(5 << 20 | 12345);
        let p = write_file(dir.path(), "f", &d);
        for cs in [16 << 10, 64 << 10, 1 << 20] {
            let h = hash_file_stamped(&p, Some(cs), &|_| {}).unwrap();
            assert_eq!(
                h.manifest,
                Manifest::for_data_with_chunk_size(&d, cs).unwrap()
            );
            assert_eq!(h.stamp, FileStamp::read(&p).unwrap());
        }
        assert!(hash_file_stamped(&p, Some(1000), &|_| {}).is_err());
    }

    #[test]
    fn progress_reaches_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let d = pattern(6 << 20);
        let p = write_file(dir.path(), "f", &d);
        let last = Cell::new(0u64);
        let calls = Cell::new(0u32);
        hash_file(&p, &|n| {
            assert!(n >= last.get());
            last.set(n);
            calls.set(calls.get() + 1);
        })
        .unwrap();
        assert_eq!(last.get(), d.len() as u64);
        assert_eq!(calls.get(), 6);
    }

    #[test]
    fn refuses_what_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            hash_file(dir.path(), &|_| {}),
            Err(ContentError::NotAFile { .. })
        ));
        assert!(matches!(
            hash_file(&dir.path().join("missing"), &|_| {}),
            Err(ContentError::Missing { .. })
        ));
    }

    #[test]
    fn a_file_written_during_hashing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = pattern(8 << 20);
        let p = write_file(dir.path(), "f", &d);
        // Append from the progress callback, i.e. while the file is being read.
        let appended = Cell::new(false);
        let r = hash_file(&p, &|n| {
            if n >= 2 << 20 && !appended.get() {
                appended.set(true);
                let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(b"more").unwrap();
            }
        });
        assert!(matches!(r, Err(ContentError::Changed { .. })), "{r:?}");

        // Overwrite in place (same size): mtime/ctime move.
        let p2 = write_file(dir.path(), "g", &d);
        let done = Cell::new(false);
        let r = hash_file(&p2, &|n| {
            if n >= 1 << 20 && !done.get() {
                done.set(true);
                std::thread::sleep(Duration::from_millis(20));
                let f = fs::OpenOptions::new().write(true).open(&p2).unwrap();
                use std::os::unix::fs::FileExt;
                f.write_all_at(b"x", 100).unwrap();
            }
        });
        assert!(matches!(r, Err(ContentError::Changed { .. })), "{r:?}");

        // Replaced by rename while open: the path now names another inode.
        let p3 = write_file(dir.path(), "h", &d);
        let other = write_file(dir.path(), "other", &d);
        let done = Cell::new(false);
        let r = hash_file(&p3, &|_| {
            if !done.get() {
                done.set(true);
                fs::rename(&other, &p3).unwrap();
            }
        });
        assert!(matches!(r, Err(ContentError::Changed { .. })), "{r:?}");
    }

    /// Throughput on a 1 GiB file (page-cached). Run in release:
    /// `cargo test --release --lib content::hasher::tests::throughput_1gib -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput_1gib() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        {
            let mut f = File::create(&p).unwrap();
            let block = pattern(READ_BUF);
            for _ in 0..1024 {
                f.write_all(&block).unwrap();
            }
        }
        // Warm the page cache so the figure is hashing, not the disk.
        let mut f = File::open(&p).unwrap();
        let mut buf = vec![0u8; READ_BUF];
        while f.read(&mut buf).unwrap() > 0 {}

        let mut one = Sha256::new();
        let t = std::time::Instant::now();
        let mut f = File::open(&p).unwrap();
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            one.update(&buf[..n]);
        }
        let _ = one.finalize();
        let single = t.elapsed();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let m = hash_file(&p, &|_| {}).unwrap();
            let el = t.elapsed();
            println!(
                "hash_file 1 GiB: {:.3} s = {:.2} GB/s ({} chunks); one plain SHA-256 pass: {:.3} s = {:.2} GB/s",
                el.as_secs_f64(),
                (1u64 << 30) as f64 / el.as_secs_f64() / 1e9,
                m.lengths().chunk_count(),
                single.as_secs_f64(),
                (1u64 << 30) as f64 / single.as_secs_f64() / 1e9,
            );
        }
    }
}
