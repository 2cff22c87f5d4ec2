//! The node state read at start, `state.json` (src/node/state.rs): `parse`.
//! Invariants: never a panic; at most the documented number of contacts is kept; what is
//! loaded saves (`encode`) and loads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::storage::state::{encode, parse};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = parse(text) else {
        return;
    };
    assert!(state.node_id.is_some());
    assert!(state.contacts.len() <= 256 * 20);
    let bytes = encode(&state)
        .expect("a state always encodes")
        .expect("a loaded state has a node ID");
    let back =
        parse(std::str::from_utf8(&bytes).expect("JSON is UTF-8")).expect("saved state loads");
    assert_eq!(back, state, "state changes through save and load");
});
