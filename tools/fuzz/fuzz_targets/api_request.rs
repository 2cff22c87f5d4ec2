//! One API request's bytes, as a client sent them: `parse_request` (src/api/request.rs,
//! with the ID, path, peer list, bandwidth rate, mnemonic and metadata checks it calls) and
//! the token check (src/api/auth.rs). The framer passes only bracket-balanced objects; this
//! target also reaches the parser with anything at all.
//! The owner address of a verify request is parsed as the ledger parses it
//! (`Address::parse`), and the input's first 32 bytes, as a public key, make an address that
//! must parse back, in upper case too.
//! Invariants: never a panic; a parsed request names a known command; the error reply built
//! from a rejection is one JSON object on one line; addresses round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::api::request::{parse_request, ApiRequest};
use peershare::api::{auth, reply};
use peershare::ledger::Address;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = auth::check(data, "secret");
    if let Some(key) = data.first_chunk::<32>() {
        let a = Address::from_public_key(key);
        assert!(
            Address::parse(a.as_str()) == Ok(a.clone()),
            "an address does not parse back"
        );
        let upper = a.as_str().to_ascii_uppercase();
        assert!(
            Address::parse(&upper) == Ok(a),
            "an upper-case address does not parse"
        );
    }
    match parse_request(data) {
        Ok(ApiRequest::VerifyOnChain {
            owner_address: Some(owner),
            ..
        }) => {
            if let Ok(a) = Address::parse(&owner) {
                assert!(Address::parse(a.as_str()) == Ok(a.clone()));
            }
        }
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
