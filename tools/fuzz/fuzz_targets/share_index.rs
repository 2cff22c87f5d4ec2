//! The share index of earlier versions, `shares.json`, read once at start to import it into
//! the store (src/content/index/import.rs): `parse_entries`.
//! Invariants: never a panic; every entry loaded has an absolute path; what is loaded
//! saves (`encode_entries`) and loads back to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::content::index::{encode_entries, parse_entries};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut entries) = parse_entries(text) else {
        return;
    };
    for e in &entries {
        assert!(
            e.path.is_absolute(),
            "a relative path was loaded: {:?}",
            e.path
        );
    }
    let bytes = encode_entries(entries.iter()).expect("entries always encode");
    let back = parse_entries(std::str::from_utf8(&bytes).expect("JSON is UTF-8"))
        .expect("a saved index loads");
    // Saving sorts by content ID.
    entries.sort_by_key(|e| e.id.to_hex());
    assert_eq!(back, entries, "entries change through save and load");
});
