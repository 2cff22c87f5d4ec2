//! One ledger line (src/ledger/record.rs): `Record::from_line` on raw bytes; and the
//! metadata a client registers (any JSON object) signed into a record whose line must load
//! back, which is what puts canonical JSON (`write_canonical`) through its paces.
//! Invariants: never a panic; an accepted line is canonical (re-encodes to exactly its
//! bytes); canonical metadata parses back to the same canonical form; a record we sign
//! always loads back, equal.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peershare::id::Id;
use peershare::ledger::{Metadata, Mnemonic, OwnerKey, Record};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fn key() -> &'static OwnerKey {
    // Derivation runs PBKDF2 (2048 rounds): once per process, not per input.
    static KEY: OnceLock<OwnerKey> = OnceLock::new();
    KEY.get_or_init(|| {
        Mnemonic::new("fuzz owner")
            .expect("a valid mnemonic")
            .derive()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(r) = Record::from_line(rest) {
            assert_eq!(
                r.to_line().as_bytes(),
                rest,
                "an accepted line is not canonical"
            );
        }
        return;
    }
    // Metadata as a client sends it in local_register_file_on_chain.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let Ok(meta) = Metadata::from_value(&v) else {
        return;
    };
    let back: serde_json::Value =
        serde_json::from_str(meta.canonical()).expect("canonical metadata is JSON");
    let again = Metadata::from_value(&back).expect("canonical metadata is accepted");
    assert_eq!(
        again.canonical(),
        meta.canonical(),
        "canonical form is not stable"
    );

    let seq = u64::from(rest.len() as u32) + 1;
    let record = Record::sign(seq, [7; 32], 1_700_000_000 + seq, Id([5; 32]), key(), meta);
    let line = record.to_line();
    assert_eq!(
        Record::from_line(line.as_bytes()),
        Ok(record),
        "a record we signed does not load back"
    );
});
