//! The embedded ledger backend: an append-only, hash-chained log of signed records
//! (`protocol-spec/ledger.md`, sections 7 and 8).
//!
//! Two files in `<data dir>/ledger/`:
//! - `ledger.jsonl`: one record per line ([`Record::to_line`]), record `n` on line `n`.
//! - `head.json`: `{"records":N,"last_hash":"<hex>"}`, the length and last hash the log had
//!   after the last completed append, replaced atomically (temp file, fsync, rename, fsync of
//!   the directory). It is what makes the loss of whole records at the end detectable.
//!
//! An append writes the line and fsyncs the log, then replaces the head. So after a crash:
//! - a last line without its `\n` is an append that stopped half-way: dropped (read-write
//!   mode truncates it, with a warning);
//! - exactly one valid, chained record beyond the head is an append whose head update did
//!   not happen: the head is rolled forward;
//! - anything else that does not match (log shorter than the head, more than one record
//!   beyond it, a last hash that differs) is damage, reported and never repaired silently.
//!
//! Verification is cached: before every answer the files' size, times and inode are compared
//! with those seen at the last verification, and the whole log is verified again if either
//! file changed.
//!
//! Locking: one mutex per ledger serialises appends. Unlike the node's other locks it is held
//! across the append's write and fsyncs, by design (two appends must not interleave); it is
//! the innermost lock and nothing else is taken while it is held. A node's data dir lock
//! makes the node the only writer of its ledger; do not open two read-write `LogLedger`s on
//! one directory in one process.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::content::FileStamp;
use crate::id::Id;
use crate::ledger::keys::{Address, OwnerKey};
use crate::ledger::record::{Record, MAX_LINE_BYTES};
use crate::ledger::{
    ChainReport, Claim, Damage, History, Ledger, LedgerError, Metadata, OwnerClaim, Receipt,
    Registration, Verification,
};

/// The log file's name in the ledger directory.
pub const LOG_FILE: &str = "ledger.jsonl";
/// The head file's name in the ledger directory.
pub const HEAD_FILE: &str = "head.json";
const HEAD_TMP: &str = "head.json.tmp";
/// Longest head file accepted.
const MAX_HEAD_BYTES: u64 = 4096;

/// Whether a ledger may repair what a crash left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The node's own ledger: repairs crash leftovers and appends.
    ReadWrite,
    /// An inspector (`peershare ledger ... --data-dir`): never writes; crash leftovers are
    /// reported as notes, and registering is refused.
    ReadOnly,
}

/// The embedded ledger (see the module docs).
pub struct LogLedger {
    dir: PathBuf,
    access: Access,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
}

struct Cached {
    stamps: Stamps,
    result: Result<Chain, Damage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamps {
    log: Option<FileStamp>,
    head: Option<FileStamp>,
}

/// A verified ledger in memory.
#[derive(Default)]
struct Chain {
    records: Vec<Record>,
    /// Record indexes per content, in order.
    by_file: HashMap<Id, Vec<usize>>,
    /// Bytes of the log that hold `records`.
    len: u64,
    notes: Vec<String>,
    /// Whether loading repaired a file (so the stamps must be read again).
    repaired: bool,
}

impl Chain {
    fn push(&mut self, r: Record, line_len: u64) {
        self.by_file
            .entry(r.file_hash)
            .or_default()
            .push(self.records.len());
        self.records.push(r);
        self.len += line_len;
    }

    fn last_hash(&self) -> [u8; 32] {
        self.records.last().map_or([0; 32], |r| r.hash)
    }

    fn claims_of<'a>(&'a self, file: &Id) -> impl Iterator<Item = &'a Record> + 'a {
        self.by_file
            .get(file)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.records.get(i))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadOnDisk {
    records: u64,
    last_hash: String,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn damage(record: Option<u64>, what: impl Into<String>) -> LedgerError {
    LedgerError::Damaged(Damage {
        record,
        what: what.into(),
    })
}

fn claim(r: &Record) -> Claim {
    Claim {
        record: r.seq,
        record_hash: hex::encode(r.hash),
        file_hash: r.file_hash,
        owner_address: r.owner.to_string(),
        registered_at: r.time,
        metadata: r.metadata.clone(),
    }
}

impl LogLedger {
    /// The ledger in `dir` (normally `<data dir>/ledger`). Nothing is read or created yet:
    /// the files are verified on first use, and created by the first registration.
    pub fn new(dir: PathBuf, access: Access) -> LogLedger {
        LogLedger {
            dir,
            access,
            state: Mutex::new(State::default()),
        }
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers with an already derived key (the trait's `register` derives it from the
    /// mnemonic first, outside the lock).
    pub fn register_with_key(
        &self,
        file_hash: Id,
        key: &OwnerKey,
        metadata: &Metadata,
        unix_time: u64,
    ) -> Result<Receipt, LedgerError> {
        if self.access == Access::ReadOnly {
            return Err(LedgerError::Io {
                what: "register in",
                path: self.dir.clone(),
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "this ledger was opened read-only",
                ),
            });
        }
        let mut st = self.state.lock();
        let chain = self.fresh(&mut st)?;
        if let Some(r) = chain
            .claims_of(&file_hash)
            .filter(|r| &r.owner == key.address())
            .last()
        {
            if &r.metadata == metadata {
                return Ok(receipt(r, true));
            }
        }
        let prev_time = chain.records.last().map_or(0, |r| r.time);
        let record = Record::sign(
            chain.records.len() as u64 + 1,
            chain.last_hash(),
            // Times never go backwards along the chain, even if the clock does.
            unix_time.max(prev_time),
            file_hash,
            key,
            metadata.clone(),
        );
        let expected_len = chain.len;
        match self.append(&record, expected_len) {
            Ok(line_len) => {
                chain.push(record.clone(), line_len);
                let stamps = self.stamps();
                match (stamps, st.cached.as_mut()) {
                    (Ok(s), Some(c)) => c.stamps = s,
                    // Unknown state: verify again next time.
                    _ => st.cached = None,
                }
                Ok(receipt(&record, false))
            }
            Err(e) => {
                st.cached = None;
                Err(e)
            }
        }
    }

    /// Appends one line and moves the head; on failure, undoes the append so that a record
    /// the caller was told failed is never rolled forward later. Returns the line's length.
    fn append(&self, record: &Record, expected_len: u64) -> Result<u64, LedgerError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create ledger directory", &self.dir))?;
        let path = self.dir.join(LOG_FILE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let before = f.metadata().map_err(io_err("inspect", &path))?.len();
        if before != expected_len {
            return Err(LedgerError::Io {
                what: "append to",
                path,
                source: io::Error::other(format!(
                    "the file changed during the registration ({before} bytes, {expected_len} expected); try again"
                )),
            });
        }
        let mut line = record.to_line().into_bytes();
        line.push(b'\n');
        let line_len = line.len() as u64;
        let written = f.write_all(&line).and_then(|()| f.sync_data());
        if let Err(e) = written {
            undo(&f, before, &path);
            return Err(io_err("append a record to", &path)(e));
        }
        if before == 0 {
            // A new file: make its directory entry durable too.
            sync_dir(&self.dir);
        }
        if let Err(e) = write_head(&self.dir, record.seq, &record.hash) {
            undo(&f, before, &path);
            return Err(e);
        }
        Ok(line_len)
    }

    fn stamps(&self) -> Result<Stamps, LedgerError> {
        Ok(Stamps {
            log: stamp(&self.dir.join(LOG_FILE))?,
            head: stamp(&self.dir.join(HEAD_FILE))?,
        })
    }

    /// The verified chain, verified again first if a file changed since the last time.
    fn fresh<'a>(&self, st: &'a mut State) -> Result<&'a mut Chain, LedgerError> {
        let before = self.stamps()?;
        if !st.cached.as_ref().is_some_and(|c| c.stamps == before) {
            let result = match load(&self.dir, self.access) {
                Ok(c) => Ok(c),
                Err(LedgerError::Damaged(d)) => {
                    log::error!("ledger in {} is damaged: {d}", self.dir.display());
                    Err(d)
                }
                Err(e) => {
                    st.cached = None;
                    return Err(e);
                }
            };
            // Stamps from before loading, so a change made while it ran is seen next time;
            // after a repair, the repaired files' stamps.
            let stamps = match &result {
                Ok(c) if c.repaired => self.stamps()?,
                _ => before,
            };
            st.cached = Some(Cached { stamps, result });
        }
        match st.cached.as_mut().map(|c| &mut c.result) {
            Some(Ok(chain)) => Ok(chain),
            Some(Err(d)) => Err(LedgerError::Damaged(d.clone())),
            None => Err(damage(None, "the ledger could not be loaded")),
        }
    }
}

fn receipt(r: &Record, already_registered: bool) -> Receipt {
    Receipt {
        file_hash: r.file_hash,
        record: r.seq,
        record_hash: hex::encode(r.hash),
        owner_address: r.owner.to_string(),
        registered_at: r.time,
        already_registered,
    }
}

fn undo(f: &File, len: u64, path: &Path) {
    if let Err(e) = f.set_len(len).and_then(|()| f.sync_data()) {
        log::error!(
            "ledger {}: could not undo a failed append ({e}); it will be checked when next used",
            path.display()
        );
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn stamp(path: &Path) -> Result<Option<FileStamp>, LedgerError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileStamp::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// Replaces the head file atomically.
fn write_head(dir: &Path, records: u64, last_hash: &[u8; 32]) -> Result<(), LedgerError> {
    let head = HeadOnDisk {
        records,
        last_hash: hex::encode(last_hash),
    };
    let mut bytes = serde_json::to_vec(&head).map_err(|e| LedgerError::Io {
        what: "encode",
        path: dir.join(HEAD_FILE),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    let tmp = dir.join(HEAD_TMP);
    let dst = dir.join(HEAD_FILE);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(&bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(io_err("rename into place", &dst))?;
    sync_dir(dir);
    Ok(())
}

/// The head file: `None` when there is none.
fn read_head(dir: &Path) -> Result<Option<(u64, [u8; 32])>, LedgerError> {
    let path = dir.join(HEAD_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_HEAD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", &path))?;
    let bad = |why: String| {
        damage(
            None,
            format!("the head file {} is unreadable: {why}", path.display()),
        )
    };
    if bytes.len() as u64 > MAX_HEAD_BYTES {
        return Err(bad("it is too large".to_owned()));
    }
    let h: HeadOnDisk = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&h.last_hash, &mut hash)
        .map_err(|_| bad("last_hash is not 64 hex digits".to_owned()))?;
    Ok(Some((h.records, hash)))
}

/// Reads and verifies the whole ledger, repairing crash leftovers in read-write mode.
fn load(dir: &Path, access: Access) -> Result<Chain, LedgerError> {
    let head = read_head(dir)?;
    let log_path = dir.join(LOG_FILE);
    let mut chain = Chain::default();
    // Bytes after the last complete line: an unfinished append.
    let mut torn: u64 = 0;
    match File::open(&log_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("open", &log_path)(e)),
        Ok(f) => {
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let limit = MAX_LINE_BYTES as u64 + 2;
                let n = (&mut reader)
                    .take(limit)
                    .read_until(b'\n', &mut line)
                    .map_err(io_err("read", &log_path))?;
                if n == 0 {
                    break;
                }
                let seq = chain.records.len() as u64 + 1;
                if line.last() != Some(&b'\n') {
                    if n as u64 == limit {
                        return Err(damage(
                            Some(seq),
                            format!("its line is longer than any record can be ({MAX_LINE_BYTES} bytes)"),
                        ));
                    }
                    // No newline before the end of the file.
                    torn = n as u64;
                    break;
                }
                line.pop();
                let record = Record::from_line(&line).map_err(|e| {
                    damage(
                        Some(seq),
                        format!("{e} (line {seq} of {})", log_path.display()),
                    )
                })?;
                check_link(&chain, &record, seq)?;
                chain.push(record, n as u64);
            }
        }
    }

    let n = chain.records.len() as u64;
    let (head_n, head_hash) = head.unwrap_or((0, [0; 32]));
    if n < head_n {
        return Err(damage(
            Some(n + 1),
            format!(
                "the ledger was truncated: the head file records {head_n} records, but the log \
                 holds only {n} complete ones{}",
                if torn > 0 {
                    format!(" and {torn} bytes of an unfinished line")
                } else {
                    String::new()
                }
            ),
        ));
    }
    if n > head_n + 1 {
        return Err(if head.is_none() {
            damage(
                None,
                format!("the head file {HEAD_FILE} is missing while the log holds {n} records (was it deleted?)"),
            )
        } else {
            damage(
                Some(head_n + 2),
                format!(
                    "the log holds {n} records but the head file only {head_n}: records were added \
                     outside the node, or the head file was replaced by an older copy"
                ),
            )
        });
    }
    let hash_at = |k: u64| -> [u8; 32] {
        k.checked_sub(1)
            .and_then(|i| chain.records.get(i as usize))
            .map_or([0; 32], |r| r.hash)
    };
    if hash_at(head_n) != head_hash {
        return Err(damage(
            (head_n > 0).then_some(head_n),
            if head_n > 0 {
                "its hash differs from the last hash in the head file: the record was replaced, or the \
                 head file altered"
                    .to_owned()
            } else {
                "the head file names a last hash for an empty ledger".to_owned()
            },
        ));
    }

    if torn > 0 {
        match access {
            Access::ReadWrite => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .map_err(io_err("open", &log_path))?;
                f.set_len(chain.len)
                    .and_then(|()| f.sync_data())
                    .map_err(io_err("truncate the unfinished line of", &log_path))?;
                log::warn!(
                    "ledger {}: dropped {torn} bytes of an append that a crash interrupted",
                    log_path.display()
                );
                chain.notes.push(format!(
                    "dropped {torn} bytes of an append that a crash interrupted"
                ));
                chain.repaired = true;
            }
            Access::ReadOnly => chain.notes.push(format!(
                "{torn} bytes of an unfinished append follow record {n}; the node drops them when it next opens the ledger"
            )),
        }
    }
    if n == head_n + 1 {
        match access {
            Access::ReadWrite => {
                write_head(dir, n, &hash_at(n))?;
                log::warn!(
                    "ledger {}: record {n} was appended but the head file not updated (a crash); head rolled forward",
                    dir.display()
                );
                chain.notes.push(format!(
                    "record {n} was appended just before a crash; the head file was rolled forward"
                ));
                chain.repaired = true;
            }
            Access::ReadOnly => chain.notes.push(format!(
                "record {n} is not yet in the head file (a crash just after appending it); the node completes it when it next opens the ledger"
            )),
        }
    }
    Ok(chain)
}

/// Checks that `r` continues the chain as record `seq`.
fn check_link(chain: &Chain, r: &Record, seq: u64) -> Result<(), LedgerError> {
    if r.seq != seq {
        return Err(damage(
            Some(seq),
            format!(
                "its sequence number is {}, expected {seq}: records were reordered, removed or inserted",
                r.seq
            ),
        ));
    }
    if r.prev != chain.last_hash() {
        return Err(damage(
            Some(seq),
            format!(
                "its previous-record hash does not match record {}'s hash: the chain is broken \
                 (a record before it was changed, removed or reordered)",
                seq - 1
            ),
        ));
    }
    if let Some(p) = chain.records.last() {
        if r.time < p.time {
            return Err(damage(
                Some(seq),
                format!(
                    "its time ({}) is earlier than record {}'s ({})",
                    r.time, p.seq, p.time
                ),
            ));
        }
    }
    Ok(())
}

impl Ledger for LogLedger {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn register(&self, reg: Registration<'_>) -> Result<Receipt, LedgerError> {
        // About 2048 SHA-512 rounds: done before taking the lock.
        let key = reg.mnemonic.derive();
        self.register_with_key(reg.file_hash, &key, reg.metadata, reg.unix_time)
    }

    fn verify(&self, file_hash: &Id, owner: Option<&str>) -> Result<Verification, LedgerError> {
        let owner = owner
            .map(Address::parse)
            .transpose()
            .map_err(LedgerError::Address)?;
        let mut st = self.state.lock();
        let chain = self.fresh(&mut st)?;
        let mut owners: Vec<OwnerClaim> = Vec::new();
        let mut slot: HashMap<&Address, usize> = HashMap::new();
        for r in chain.claims_of(file_hash) {
            if owner.as_ref().is_some_and(|o| o != &r.owner) {
                continue;
            }
            match slot.get(&r.owner) {
                Some(&i) => {
                    if let Some(c) = owners.get_mut(i) {
                        c.latest = claim(r);
                        c.registrations += 1;
                    }
                }
                None => {
                    slot.insert(&r.owner, owners.len());
                    owners.push(OwnerClaim {
                        latest: claim(r),
                        first_registered_at: r.time,
                        registrations: 1,
                    });
                }
            }
        }
        Ok(Verification {
            file_hash: *file_hash,
            owner: owner.map(|a| a.to_string()),
            owners,
        })
    }

    fn history(&self, file_hash: Option<&Id>, limit: usize) -> Result<History, LedgerError> {
        let mut st = self.state.lock();
        let chain = self.fresh(&mut st)?;
        let all: Vec<&Record> = match file_hash {
            Some(id) => chain.claims_of(id).collect(),
            None => chain.records.iter().collect(),
        };
        let skip = all.len().saturating_sub(limit);
        Ok(History {
            claims: all.iter().skip(skip).map(|r| claim(r)).collect(),
            total: all.len(),
        })
    }

    fn check(&self) -> Result<ChainReport, LedgerError> {
        let mut st = self.state.lock();
        let chain = self.fresh(&mut st)?;
        let owners: std::collections::HashSet<&Address> =
            chain.records.iter().map(|r| &r.owner).collect();
        Ok(ChainReport {
            records: chain.records.len() as u64,
            head_hash: hex::encode(chain.last_hash()),
            files: chain.by_file.len(),
            owners: owners.len(),
            notes: chain.notes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::keys::Mnemonic;
    use serde_json::json;
    use std::sync::Arc;

    fn key(phrase: &str) -> OwnerKey {
        Mnemonic::new(phrase).unwrap().derive()
    }

    fn meta(v: serde_json::Value) -> Metadata {
        Metadata::from_value(&v).unwrap()
    }

    fn rw(dir: &Path) -> LogLedger {
        LogLedger::new(dir.to_path_buf(), Access::ReadWrite)
    }

    fn file(n: u8) -> Id {
        Id([n; 32])
    }

    /// A ledger with `n` records by alternating owners over two files.
    fn build(dir: &Path, n: u64) -> (LogLedger, OwnerKey, OwnerKey) {
        let (a, b) = (key("alice words"), key("bob words"));
        let l = rw(dir);
        for i in 0..n {
            let k = if i % 2 == 0 { &a } else { &b };
            l.register_with_key(
                file(1 + (i % 2) as u8),
                k,
                &meta(json!({ "i": i })),
                100 + i,
            )
            .unwrap();
        }
        (l, a, b)
    }

    fn damaged(r: Result<ChainReport, LedgerError>) -> Damage {
        match r {
            Err(LedgerError::Damaged(d)) => d,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    fn log_bytes(dir: &Path) -> Vec<u8> {
        fs::read(dir.join(LOG_FILE)).unwrap()
    }

    #[test]
    fn empty_ledger_creates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let l = rw(&d.path().join("ledger"));
        let r = l.check().unwrap();
        assert_eq!((r.records, r.files, r.owners), (0, 0, 0));
        assert_eq!(r.head_hash, "0".repeat(64));
        assert!(!l.verify(&file(1), None).unwrap().verified());
        assert_eq!(l.history(None, 10).unwrap().total, 0);
        assert!(!d.path().join("ledger").exists());
    }

    #[test]
    fn register_verify_history_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (key("alice words"), key("bob words"));
        let l = rw(d.path());
        let r1 = l
            .register_with_key(file(1), &a, &meta(json!({"title": "kick"})), 1000)
            .unwrap();
        assert_eq!((r1.record, r1.already_registered), (1, false));
        assert_eq!(r1.owner_address, a.address().as_str());
        // A second owner's claim on the same content is kept beside the first.
        let r2 = l
            .register_with_key(file(1), &b, &meta(json!({"title": "mine"})), 1001)
            .unwrap();
        assert_eq!(r2.record, 2);
        // Same owner, new metadata: a new record; same metadata again: nothing appended.
        let r3 = l
            .register_with_key(file(1), &a, &meta(json!({"title": "kick v2"})), 1002)
            .unwrap();
        assert_eq!(r3.record, 3);
        let again = l
            .register_with_key(file(1), &a, &meta(json!({"title": "kick v2"})), 1003)
            .unwrap();
        assert_eq!(
            again,
            Receipt {
                already_registered: true,
                ..r3.clone()
            }
        );
        // The clock going backwards does not make times go backwards.
        let r4 = l
            .register_with_key(file(2), &b, &Metadata::empty(), 5)
            .unwrap();
        assert_eq!(r4.registered_at, 1002);

        for ledger in [&l, &rw(d.path())] {
            let v = ledger.verify(&file(1), None).unwrap();
            assert!(v.verified());
            assert_eq!(v.owners.len(), 2);
            assert_eq!(v.owners[0].latest.owner_address, a.address().as_str());
            assert_eq!(v.owners[0].latest.record, 3);
            assert_eq!(
                v.owners[0].latest.metadata,
                meta(json!({"title": "kick v2"}))
            );
            assert_eq!(v.owners[0].first_registered_at, 1000);
            assert_eq!(v.owners[0].registrations, 2);
            assert_eq!(v.owners[1].latest.owner_address, b.address().as_str());

            let only_b = ledger.verify(&file(1), Some(b.address().as_str())).unwrap();
            assert_eq!(only_b.owners.len(), 1);
            assert_eq!(only_b.owners[0].latest.record, 2);
            let c = key("carol words");
            assert!(!ledger
                .verify(&file(1), Some(c.address().as_str()))
                .unwrap()
                .verified());
            assert!(!ledger.verify(&file(3), None).unwrap().verified());
            assert!(matches!(
                ledger.verify(&file(1), Some("ps00")),
                Err(LedgerError::Address(_))
            ));

            let h = ledger.history(Some(&file(1)), 100).unwrap();
            assert_eq!(h.total, 3);
            assert_eq!(
                h.claims.iter().map(|c| c.record).collect::<Vec<_>>(),
                [1, 2, 3]
            );
            let h = ledger.history(None, 2).unwrap();
            assert_eq!((h.total, h.claims.len(), h.claims[0].record), (4, 2, 3));
            let rep = ledger.check().unwrap();
            assert_eq!((rep.records, rep.files, rep.owners), (4, 2, 2));
            assert_eq!(rep.head_hash, r4.record_hash);
            assert!(rep.notes.is_empty());
        }
        // The trait's register derives the key from the mnemonic.
        let m = Mnemonic::new("alice   words").unwrap();
        let r = Ledger::register(
            &l,
            Registration {
                file_hash: file(2),
                mnemonic: &m,
                metadata: &Metadata::empty(),
                unix_time: 2000,
            },
        )
        .unwrap();
        assert_eq!(r.owner_address, a.address().as_str());
        assert_eq!(r.record, 5);
    }

    #[test]
    fn every_changed_byte_of_either_file_is_detected() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), 3);
        for name in [LOG_FILE, HEAD_FILE] {
            let path = d.path().join(name);
            let good = fs::read(&path).unwrap();
            for i in 0..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0x01;
                fs::write(&path, &bad).unwrap();
                let r = rw(d.path()).check();
                assert!(
                    matches!(r, Err(LedgerError::Damaged(_))),
                    "{name} byte {i}: {r:?}"
                );
                // Damage is reported, never repaired away.
                assert_eq!(
                    fs::read(&path).unwrap(),
                    bad,
                    "{name} byte {i} was modified"
                );
            }
            fs::write(&path, &good).unwrap();
        }
        assert_eq!(rw(d.path()).check().unwrap().records, 3);
    }

    #[test]
    fn reordered_removed_and_truncated_records_are_detected() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), 4);
        let good = log_bytes(d.path());
        let lines: Vec<&[u8]> = good.split_inclusive(|&b| b == b'\n').collect();
        let write = |ls: &[&[u8]]| fs::write(d.path().join(LOG_FILE), ls.concat()).unwrap();

        write(&[lines[0], lines[2], lines[1], lines[3]]);
        let e = damaged(rw(d.path()).check());
        assert_eq!(e.record, Some(2));
        assert!(e.what.contains("sequence number is 3, expected 2"), "{e}");

        write(&[lines[0], lines[2], lines[3]]);
        assert_eq!(damaged(rw(d.path()).check()).record, Some(2));

        // Whole records cut from the end: only the head file can tell.
        write(&[lines[0], lines[1], lines[2]]);
        let e = damaged(rw(d.path()).check());
        assert!(e.what.contains("truncated"), "{e}");
        assert_eq!(e.record, Some(4));
        write(&[]);
        assert!(damaged(rw(d.path()).check()).what.contains("truncated"));
        fs::remove_file(d.path().join(LOG_FILE)).unwrap();
        assert!(damaged(rw(d.path()).check()).what.contains("truncated"));

        // A record replaced by a valid one re-signed by its owner: the chain breaks after it,
        // or (for the last one) the head file's hash differs.
        write(&lines);
        let (_, a, _) = (0, key("alice words"), 0);
        let prev = Record::from_line(&lines[2][..lines[2].len() - 1]).unwrap();
        let forged = Record::sign(4, prev.hash, 200, file(9), &a, Metadata::empty());
        let forged_line = format!("{}\n", forged.to_line());
        write(&[lines[0], lines[1], lines[2], forged_line.as_bytes()]);
        let e = damaged(rw(d.path()).check());
        assert_eq!(e.record, Some(4));
        assert!(e.what.contains("head file"), "{e}");

        // The head file deleted, or replaced by an older copy.
        write(&lines);
        assert_eq!(rw(d.path()).check().unwrap().records, 4);
        let head = fs::read(d.path().join(HEAD_FILE)).unwrap();
        fs::remove_file(d.path().join(HEAD_FILE)).unwrap();
        assert!(damaged(rw(d.path()).check()).what.contains("missing"));
        let rec2 = Record::from_line(&lines[1][..lines[1].len() - 1]).unwrap();
        write_head(d.path(), 2, &rec2.hash).unwrap();
        let e = damaged(rw(d.path()).check());
        assert!(e.what.contains("older copy"), "{e}");
        fs::write(d.path().join(HEAD_FILE), head).unwrap();
        assert_eq!(rw(d.path()).check().unwrap().records, 4);
    }

    #[test]
    fn a_crash_at_any_byte_of_an_append_leaves_a_valid_ledger() {
        let d = tempfile::tempdir().unwrap();
        let (l, a, _) = build(d.path(), 2);
        let head2 = fs::read(d.path().join(HEAD_FILE)).unwrap();
        let len2 = log_bytes(d.path()).len();
        l.register_with_key(file(3), &a, &meta(json!({"x": "y"})), 500)
            .unwrap();
        let full = log_bytes(d.path());
        let head3 = fs::read(d.path().join(HEAD_FILE)).unwrap();
        drop(l);

        for cut in len2..=full.len() {
            // The crash came before the head was replaced.
            fs::write(d.path().join(LOG_FILE), &full[..cut]).unwrap();
            fs::write(d.path().join(HEAD_FILE), &head2).unwrap();
            let l = rw(d.path());
            let rep = l.check().unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let want = if cut == full.len() { 3 } else { 2 };
            assert_eq!(rep.records, want, "cut at {cut}");
            assert_eq!(
                rep.notes.is_empty(),
                cut == len2,
                "cut at {cut}: {:?}",
                rep.notes
            );
            // Repaired on disk: a torn tail is gone, a complete record is in the head.
            let expect = if want == 3 { full.len() } else { len2 };
            assert_eq!(log_bytes(d.path()).len(), expect, "cut at {cut}");
            if want == 3 {
                assert_eq!(fs::read(d.path().join(HEAD_FILE)).unwrap(), head3);
            }
            // And it goes on working.
            if cut % 97 == 0 || cut + 1 >= full.len() {
                let r = l
                    .register_with_key(file(4), &a, &Metadata::empty(), 600)
                    .unwrap();
                assert_eq!(r.record, want + 1);
                assert_eq!(rw(d.path()).check().unwrap().records, want + 1);
            }
        }

        // If the head had already moved on, a shorter log is truncation, not a crash.
        for cut in [len2, len2 + 1, full.len() - 1] {
            fs::write(d.path().join(LOG_FILE), &full[..cut]).unwrap();
            fs::write(d.path().join(HEAD_FILE), &head3).unwrap();
            let e = damaged(rw(d.path()).check());
            assert!(e.what.contains("truncated"), "cut at {cut}: {e}");
            assert_eq!(
                log_bytes(d.path()).len(),
                cut,
                "damage must not be repaired"
            );
        }
    }

    #[test]
    fn read_only_reports_crash_leftovers_without_writing() {
        let d = tempfile::tempdir().unwrap();
        let (l, a, _) = build(d.path(), 1);
        let head1 = fs::read(d.path().join(HEAD_FILE)).unwrap();
        l.register_with_key(file(3), &a, &Metadata::empty(), 500)
            .unwrap();
        let full = log_bytes(d.path());
        fs::write(d.path().join(HEAD_FILE), &head1).unwrap();
        let mut torn = full.clone();
        torn.extend_from_slice(b"{\"seq\":3,\"pr");
        fs::write(d.path().join(LOG_FILE), &torn).unwrap();

        let ro = LogLedger::new(d.path().to_path_buf(), Access::ReadOnly);
        let rep = ro.check().unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(rep.notes.len(), 2, "{:?}", rep.notes);
        assert_eq!(log_bytes(d.path()), torn);
        assert_eq!(fs::read(d.path().join(HEAD_FILE)).unwrap(), head1);
        assert!(ro
            .register_with_key(file(4), &a, &Metadata::empty(), 1)
            .is_err());
        // The node's read-write open repairs both.
        assert_eq!(rw(d.path()).check().unwrap().records, 2);
        assert_eq!(log_bytes(d.path()), full);
        assert_eq!(ro.check().unwrap().notes.len(), 0);
    }

    #[test]
    fn changes_on_disk_are_seen_before_answering() {
        let d = tempfile::tempdir().unwrap();
        let (l, a, _) = build(d.path(), 3);
        assert!(l.verify(&file(1), None).unwrap().verified());
        let good = log_bytes(d.path());
        let mut bad = good.clone();
        let i = good.len() / 2;
        bad[i] ^= 0x01;
        fs::write(d.path().join(LOG_FILE), &bad).unwrap();
        assert!(matches!(
            l.verify(&file(1), None),
            Err(LedgerError::Damaged(_))
        ));
        // Registering onto a damaged ledger is refused.
        assert!(matches!(
            l.register_with_key(file(1), &a, &Metadata::empty(), 1),
            Err(LedgerError::Damaged(_))
        ));
        assert_eq!(log_bytes(d.path()), bad);
        fs::write(d.path().join(LOG_FILE), &good).unwrap();
        assert!(l.verify(&file(1), None).unwrap().verified());
    }

    #[test]
    fn unreadable_head_file() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), 1);
        for text in ["", "{}", "{\"records\":1,\"last_hash\":\"zz\"}", "[1]"] {
            fs::write(d.path().join(HEAD_FILE), text).unwrap();
            let e = damaged(rw(d.path()).check());
            assert!(e.what.contains("head file"), "{text}: {e}");
        }
        fs::write(d.path().join(HEAD_FILE), vec![b' '; 10_000]).unwrap();
        assert!(damaged(rw(d.path()).check()).what.contains("too large"));
    }

    #[test]
    fn over_long_line_is_damage_not_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), 1);
        let mut bytes = log_bytes(d.path());
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        fs::write(d.path().join(LOG_FILE), &bytes).unwrap();
        let e = damaged(rw(d.path()).check());
        assert_eq!(e.record, Some(2));
        assert!(e.what.contains("longer"), "{e}");
    }

    #[test]
    fn concurrent_registrations_keep_the_chain_valid() {
        let d = tempfile::tempdir().unwrap();
        let l = Arc::new(rw(d.path()));
        const THREADS: usize = 8;
        const EACH: u64 = 25;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let k = key(&format!("owner number {t}"));
                    for i in 0..EACH {
                        l.register_with_key(file(t as u8), &k, &meta(json!({ "i": i })), 1000 + i)
                            .unwrap();
                    }
                    k
                })
            })
            .collect();
        let keys: Vec<OwnerKey> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let fresh = rw(d.path());
        let rep = fresh.check().unwrap();
        assert_eq!(rep.records, THREADS as u64 * EACH);
        assert_eq!((rep.files, rep.owners), (THREADS, THREADS));
        for (t, k) in keys.iter().enumerate() {
            let v = fresh
                .verify(&file(t as u8), Some(k.address().as_str()))
                .unwrap();
            assert_eq!(v.owners[0].registrations, EACH);
            assert_eq!(v.owners[0].latest.metadata, meta(json!({ "i": EACH - 1 })));
        }
    }
}
