//! The share index's durable state: one SQLite database, `<data_dir>/shares.db` (STATE.md
//! section 2). Every change is one transaction, committed durably (WAL, `synchronous=FULL`:
//! the WAL is fsynced before `commit` returns), so an add costs a few page writes whatever
//! the library's size, and a crash at any moment leaves the last committed state.
//!
//! Schema (`user_version` 1):
//!
//! ```sql
//! shares(id BLOB UNIQUE, path BLOB UNIQUE, name TEXT, size INTEGER,
//!        stamp BLOB,      -- 40 bytes: size, mtime_ns, ctime_ns, inode, dev (big-endian)
//!        manifest BLOB,   -- the binary manifest (content.md)
//!        stamps BLOB)     -- a folder's files' stamps (folder_share.rs); NULL for a file
//! files(sha256 BLOB, size INTEGER, id BLOB, rel BLOB, file_no INTEGER)
//!        -- every file shared (alone: rel NULL; in a folder: its path in it and its number),
//!        -- by whole-file SHA-256, for reusing local files in downloads (`storage/reuse.rs`)
//! unflushed(id BLOB PRIMARY KEY)
//!        -- a downloaded folder placed before its bytes were known to be on disk: set in
//!        -- the share's own transaction, cleared once the file system is synced
//!        -- (`storage/flusher.rs`); a share still marked at start is re-hashed first
//! ```
//!
//! `unflushed` is created at every open if missing (`IF NOT EXISTS`), so a store made before
//! it gains it without a new format number; a program that predates it ignores it.
//!
//! Paths are stored as their raw bytes (Unix paths are bytes; none may be lost).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::SharedEntry;
use crate::content::manifest::HASH_LEN;
use crate::content::{ContentError, FileStamp};
use crate::id::Id;

/// The store's file name in the data dir.
pub const STORE_FILE: &str = "shares.db";
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE shares (
    id BLOB NOT NULL UNIQUE,
    path BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    stamp BLOB NOT NULL,
    manifest BLOB NOT NULL,
    stamps BLOB
);
CREATE TABLE files (
    sha256 BLOB NOT NULL,
    size INTEGER NOT NULL,
    id BLOB NOT NULL,
    rel BLOB,
    file_no INTEGER NOT NULL
);
CREATE INDEX files_by_hash ON files (sha256, size);
CREATE INDEX files_by_share ON files (id);
PRAGMA user_version = 1;
";
const UNFLUSHED: &str = "CREATE TABLE IF NOT EXISTS unflushed (id BLOB NOT NULL PRIMARY KEY);";

/// One share as stored: the entry, its manifest's bytes, a folder's stamps blob.
pub struct Row {
    /// The entry.
    pub entry: SharedEntry,
    /// The manifest, encoded.
    pub manifest: Vec<u8>,
    /// A folder's stamps (`encode_stamps`); `None` for a file.
    pub stamps: Option<Vec<u8>>,
}

/// A file of a share, for the `files` table: whole-file SHA-256, size, its path inside a
/// folder (`None`: the share is this file), its number among the folder's files.
pub type FileRow = ([u8; HASH_LEN], u64, Option<String>, usize);

/// A shared file found by its SHA-256: the share, its path in the folder, its number.
pub struct FoundFile {
    /// The share holding it.
    pub id: Id,
    /// The share's path.
    pub share_path: PathBuf,
    /// The share's stamp (the file's own, for a file shared alone).
    pub stamp: FileStamp,
    /// Its path inside the folder; `None` for a file shared alone.
    pub rel: Option<String>,
    /// Its number among the folder's files.
    pub file_no: usize,
}

/// The open database (module docs).
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `<data_dir>/shares.db`. A file that is not a readable database
    /// of ours is an error ([`ContentError::Store`] with `damaged`): it is never replaced.
    pub fn open(data_dir: &Path) -> Result<Store, ContentError> {
        let path = data_dir.join(STORE_FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| store_error(&path, "open", e))?;
        let s = Store { conn, path };
        s.setup()?;
        Ok(s)
    }

    fn setup(&self) -> Result<(), ContentError> {
        let err = |e| store_error(&self.path, "open", e);
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(err)?;
        // WAL: a commit appends the changed pages and fsyncs them (FULL), readers never see
        // a half-written transaction, and a crash leaves the last committed state.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("{}: journal mode {mode}, not WAL", self.path.display());
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        match version {
            0 => {
                let tx = self.conn.unchecked_transaction().map_err(err)?;
                tx.execute_batch(SCHEMA).map_err(err)?;
                tx.commit().map_err(err)?;
            }
            SCHEMA_VERSION => {}
            v => {
                return Err(ContentError::Store {
                    path: self.path.clone(),
                    why: format!("format {v} is newer than this program's ({SCHEMA_VERSION})"),
                    damaged: false,
                })
            }
        }
        self.conn.execute_batch(UNFLUSHED).map_err(err)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f`, whose reads then share one read transaction (one snapshot, one lock of
    /// the WAL index) instead of one each: a folder's 10,000 file lookups took 10,000.
    /// Without a transaction (it could not begin), the reads take their own as before.
    pub fn reading<T>(&self, f: impl FnOnce() -> T) -> T {
        let tx = self.conn.unchecked_transaction();
        if let Err(e) = &tx {
            log::debug!("{}: no read transaction: {e}", self.path.display());
        }
        let out = f();
        // Read only: ending it by rollback (on drop) keeps nothing and fails nothing.
        drop(tx);
        out
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> ContentError + '_ {
        let what = what.to_owned();
        move |e| store_error(&self.path, &what, e)
    }

    /// The share with this content ID.
    pub fn get(&self, id: &Id) -> Result<Option<SharedEntry>, ContentError> {
        self.conn
            .prepare_cached("SELECT path, name, size, stamp FROM shares WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row(params![&id.0[..]], |r| {
                    entry_of(*id, r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)
                })
                .optional()
            })
            .map_err(self.err("read"))
    }

    /// The content ID shared from `path`.
    pub fn id_at(&self, path: &Path) -> Result<Option<Id>, ContentError> {
        self.conn
            .prepare_cached("SELECT id FROM shares WHERE path = ?1")
            .and_then(|mut st| {
                st.query_row(params![path.as_os_str().as_bytes()], |r| {
                    id_of(r.get::<_, Vec<u8>>(0)?)
                })
                .optional()
            })
            .map_err(self.err("read"))
    }

    /// A share's manifest bytes and (a folder's) stamps blob.
    #[allow(clippy::type_complexity)]
    pub fn manifest(&self, id: &Id) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, ContentError> {
        self.conn
            .prepare_cached("SELECT manifest, stamps FROM shares WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row(params![&id.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(self.err("read"))
    }

    /// How many shares.
    pub fn count(&self) -> Result<usize, ContentError> {
        self.conn
            .query_row("SELECT count(*) FROM shares", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.err("read"))
    }

    /// Calls `f` with every share, in content ID order.
    pub fn for_each(&self, mut f: impl FnMut(Row)) -> Result<(), ContentError> {
        let mut st = self
            .conn
            .prepare("SELECT id, path, name, size, stamp, manifest, stamps FROM shares ORDER BY id")
            .map_err(self.err("read"))?;
        let rows = st
            .query_map([], |r| {
                let id = id_of(r.get(0)?)?;
                Ok(Row {
                    entry: entry_of(id, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)?,
                    manifest: r.get(5)?,
                    stamps: r.get(6)?,
                })
            })
            .map_err(self.err("read"))?;
        for row in rows {
            f(row.map_err(self.err("read"))?);
        }
        Ok(())
    }

    /// Up to `limit` shares whose ID is greater than `after` (all when `None`), in ID
    /// order: entry, and whether it is a folder. For sweeps over the library in steps.
    pub fn batch_after(
        &self,
        after: Option<&Id>,
        limit: usize,
    ) -> Result<Vec<(SharedEntry, bool)>, ContentError> {
        let after: &[u8] = after.map_or(&[], |a| &a.0[..]);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, path, name, size, stamp, stamps IS NOT NULL FROM shares
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(self.err("read"))?;
        let rows = st
            .query_map(params![after, limit as i64], |r| {
                let id = id_of(r.get(0)?)?;
                Ok((
                    entry_of(id, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)?,
                    r.get(5)?,
                ))
            })
            .map_err(self.err("read"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("read"))
    }

    /// Records a share in one durable transaction: the share in `replaced` (another
    /// content at this path) leaves, and any earlier row of this content is replaced.
    /// `unflushed`: the share's bytes may not be on disk yet (module docs).
    pub fn put(
        &mut self,
        entry: &SharedEntry,
        manifest: &[u8],
        stamps: Option<&[u8]>,
        files: &[FileRow],
        replaced: Option<&Id>,
        unflushed: bool,
    ) -> Result<(), ContentError> {
        let path = self.path.clone();
        let err = |e| store_error(&path, "write", e);
        let tx = self.conn.transaction().map_err(err)?;
        if let Some(old) = replaced {
            delete(&tx, old).map_err(err)?;
        }
        insert(&tx, entry, manifest, stamps, files).map_err(err)?;
        if unflushed {
            tx.prepare_cached("INSERT OR REPLACE INTO unflushed (id) VALUES (?1)")
                .and_then(|mut st| st.execute(params![&entry.id.0[..]]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The share's bytes are on disk now: its mark (module docs) goes. Whether it was marked.
    pub fn flushed(&mut self, id: &Id) -> Result<bool, ContentError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM unflushed WHERE id = ?1")
            .and_then(|mut st| st.execute(params![&id.0[..]]))
            .map_err(self.err("write"))?;
        Ok(n > 0)
    }

    /// The shares still marked unflushed (module docs).
    pub fn unflushed(&self) -> Result<Vec<Id>, ContentError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM unflushed")
            .map_err(self.err("read"))?;
        let rows = st
            .query_map([], |r| id_of(r.get(0)?))
            .map_err(self.err("read"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("read"))
    }

    /// Records many shares in one durable transaction (each replaces any earlier row of its
    /// content or path): the import of the earlier format.
    pub fn put_all<'a>(
        &mut self,
        rows: impl Iterator<Item = (&'a SharedEntry, &'a [u8], Option<&'a [u8]>, &'a [FileRow])>,
    ) -> Result<(), ContentError> {
        let path = self.path.clone();
        let err = |e| store_error(&path, "write", e);
        let tx = self.conn.transaction().map_err(err)?;
        for (entry, manifest, stamps, files) in rows {
            if let Some(old) = id_at_path(&tx, &entry.path).map_err(err)? {
                delete(&tx, &old).map_err(err)?;
            }
            insert(&tx, entry, manifest, stamps, files).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Removes a share in one durable transaction; whether it was there.
    pub fn remove(&mut self, id: &Id) -> Result<bool, ContentError> {
        let path = self.path.clone();
        let err = |e| store_error(&path, "write", e);
        let tx = self.conn.transaction().map_err(err)?;
        let n = delete(&tx, id).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n > 0)
    }

    /// Every shared file with this SHA-256 and size.
    pub fn files_with(
        &self,
        sha256: &[u8; HASH_LEN],
        size: u64,
    ) -> Result<Vec<FoundFile>, ContentError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.id, s.path, s.stamp, f.rel, f.file_no FROM files f
                 JOIN shares s ON s.id = f.id WHERE f.sha256 = ?1 AND f.size = ?2",
            )
            .map_err(self.err("read"))?;
        let rows = st
            .query_map(params![&sha256[..], size as i64], |r| {
                let path: Vec<u8> = r.get(1)?;
                let stamp: Vec<u8> = r.get(2)?;
                Ok(FoundFile {
                    id: id_of(r.get(0)?)?,
                    share_path: PathBuf::from(OsString::from_vec(path)),
                    stamp: decode_stamp(&stamp).ok_or_else(|| bad_value("stamp"))?,
                    rel: r.get(3)?,
                    file_no: r.get::<_, i64>(4)? as usize,
                })
            })
            .map_err(self.err("read"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("read"))
    }
}

/// Inserts a share (any earlier row of its content is deleted first).
fn insert(
    tx: &rusqlite::Transaction<'_>,
    entry: &SharedEntry,
    manifest: &[u8],
    stamps: Option<&[u8]>,
    files: &[FileRow],
) -> rusqlite::Result<()> {
    delete(tx, &entry.id)?;
    tx.prepare_cached(
        "INSERT INTO shares (id, path, name, size, stamp, manifest, stamps)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &entry.id.0[..],
        entry.path.as_os_str().as_bytes(),
        entry.name,
        entry.size as i64,
        &encode_stamp(&entry.stamp)[..],
        manifest,
        stamps,
    ])?;
    let mut st = tx.prepare_cached(
        "INSERT INTO files (sha256, size, id, rel, file_no) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (sha, size, rel, no) in files {
        st.execute(params![
            &sha[..],
            *size as i64,
            &entry.id.0[..],
            rel.as_deref(),
            *no as i64
        ])?;
    }
    Ok(())
}

fn id_at_path(tx: &rusqlite::Transaction<'_>, path: &Path) -> rusqlite::Result<Option<Id>> {
    tx.prepare_cached("SELECT id FROM shares WHERE path = ?1")?
        .query_row(params![path.as_os_str().as_bytes()], |r| id_of(r.get(0)?))
        .optional()
}

fn delete(tx: &rusqlite::Transaction<'_>, id: &Id) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute(params![&id.0[..]])?;
    tx.prepare_cached("DELETE FROM unflushed WHERE id = ?1")?
        .execute(params![&id.0[..]])?;
    tx.prepare_cached("DELETE FROM shares WHERE id = ?1")?
        .execute(params![&id.0[..]])
}

fn bad_value(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        format!("malformed {what}").into(),
    )
}

fn id_of(bytes: Vec<u8>) -> rusqlite::Result<Id> {
    let b: [u8; 32] = bytes.try_into().map_err(|_| bad_value("content ID"))?;
    Ok(Id(b))
}

fn entry_of(
    id: Id,
    path: Vec<u8>,
    name: String,
    size: i64,
    stamp: Vec<u8>,
) -> rusqlite::Result<SharedEntry> {
    let path = PathBuf::from(OsString::from_vec(path));
    if !path.is_absolute() {
        return Err(bad_value("path"));
    }
    Ok(SharedEntry {
        id,
        path,
        name,
        size: size as u64,
        stamp: decode_stamp(&stamp).ok_or_else(|| bad_value("stamp"))?,
    })
}

/// A stamp's 40 bytes (the layout of one file in a stamps blob, `folder_share.rs`).
pub fn encode_stamp(s: &FileStamp) -> [u8; 40] {
    let mut out = [0u8; 40];
    for (k, v) in [s.size, s.mtime_ns as u64, s.ctime_ns as u64, s.inode, s.dev]
        .iter()
        .enumerate()
    {
        out[k * 8..k * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// The stamp in 40 bytes; `None` for any other length.
pub fn decode_stamp(b: &[u8]) -> Option<FileStamp> {
    if b.len() != 40 {
        return None;
    }
    let u = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some(FileStamp {
        size: u(0)?,
        mtime_ns: u(1)? as i64,
        ctime_ns: u(2)? as i64,
        inode: u(3)?,
        dev: u(4)?,
    })
}

/// An SQLite error as a [`ContentError::Store`]; `damaged` when SQLite says the file is
/// not a database or is corrupt.
fn store_error(path: &Path, what: &str, e: rusqlite::Error) -> ContentError {
    let damaged = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    ) || matches!(e, rusqlite::Error::FromSqlConversionFailure(..));
    ContentError::Store {
        path: path.to_path_buf(),
        why: format!("{what}: {e}"),
        damaged,
    }
}
