//! The ledger files read at start (src/ledger/log.rs): `ledger.jsonl` and `head.json`,
//! written from the input into a scratch directory and opened read-only (`peershare ledger`)
//! or read-write (the node, which repairs what a crash left).
//! Invariants: never a panic; a read-only open changes no file; after a read-write open
//! that succeeded, opening again succeeds with the same records and nothing left to repair.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peershare::ledger::log::{Access, LogLedger, HEAD_FILE, LOG_FILE};
use peershare::ledger::Ledger;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fn dir() -> &'static PathBuf {
    // One scratch directory per process, in RAM when /dev/shm exists.
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let d = base.join(format!("peershare-fuzz-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Low bits: head file length (63: no head file); top bit: read-write.
    let head_len = usize::from(mode & 0x3f) * 2;
    let (head, log) = rest.split_at(head_len.min(rest.len()));
    let d = dir();
    let head_path = d.join(HEAD_FILE);
    let log_path = d.join(LOG_FILE);
    if mode & 0x3f == 0x3f {
        let _ = std::fs::remove_file(&head_path);
    } else {
        std::fs::write(&head_path, head).expect("write head");
    }
    std::fs::write(&log_path, log).expect("write log");

    if mode & 0x80 == 0 {
        let report = LogLedger::new(d.clone(), Access::ReadOnly).check();
        assert_eq!(std::fs::read(&log_path).ok().as_deref(), Some(log));
        if mode & 0x3f != 0x3f {
            assert_eq!(std::fs::read(&head_path).ok().as_deref(), Some(head));
        } else {
            assert!(!head_path.exists(), "a read-only open wrote a head file");
        }
        drop(report);
        return;
    }
    let Ok(first) = LogLedger::new(d.clone(), Access::ReadWrite).check() else {
        return;
    };
    let second = LogLedger::new(d.clone(), Access::ReadWrite)
        .check()
        .expect("a repaired ledger opens again");
    assert_eq!(second.records, first.records);
    assert_eq!(second.head_hash, first.head_hash);
    assert!(
        second.notes.is_empty(),
        "still repairing: {:?}",
        second.notes
    );
});
