//! One API request's bytes, as a client sent them: `parse_request` (src/api/request.rs,
//! with the ID, path, peer list, bandwidth rate, mnemonic and metadata checks it calls) and
//! the token check (src/api/auth.rs). The framer passes only bracket-balanced objects; this
//! target also reaches the parser with anything at all.
//! Invariants: never a panic; a parsed request names a known command; the error reply built
//! from a rejection is one JSON object on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::api::request::parse_request;
use peershare::api::{auth, reply};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = auth::check(data, "secret");
    match parse_request(data) {
        Ok(req) => assert!(!req.command().is_empty()),
        Err(e) => {
            let r = reply::error(&e.message);
            let (line, end) = r.split_at(r.len() - 1);
            assert_eq!(end, b"\n");
            assert!(!line.contains(&b'\n'));
            let v: serde_json::Value = serde_json::from_slice(line).expect("a reply is JSON");
            assert_eq!(v["status"], "error");
        }
    }
});
