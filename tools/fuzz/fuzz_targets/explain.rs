//! `peershare decode` (src/explain.rs): explains bytes a user pastes or captures, as a DHT
//! datagram, wire frames, a bare HANDSHAKE body, a manifest or a tree manifest; and reads hex
//! as people paste it (`parse_hex`). The first byte picks the kind (mod 6: dht, wire,
//! handshake, manifest, tree, detected).
//! Invariants: never a panic (table, JSON and one-line forms included); the layout walk
//! agrees with the decoder (`layout_agrees`); the verdict and the error are the reference
//! decoder's; the leaf fields cover every byte of the input exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::content::tree::TreeManifest;
use peershare::content::Manifest;
use peershare::explain::{explain, explain_as, parse_hex, summarize_as, Field, Kind};
use peershare::proto::codec::DecodeError;
use peershare::proto::dht::Datagram;
use peershare::proto::wire::decode_frame;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

/// The reference verdict for wire frames back to back: the first error, or whether the
/// input ends inside a frame.
fn wire_verdict(mut rest: &[u8]) -> (Option<DecodeError>, bool) {
    loop {
        match decode_frame(rest) {
            Ok(Some((_, n))) => rest = &rest[n..],
            Ok(None) => return (None, !rest.is_empty()),
            Err(e) => return (Some(e), false),
        }
    }
}

fn leaves<'a>(fields: &'a [Field], out: &mut Vec<&'a Field>) {
    for f in fields {
        if f.children.is_empty() {
            out.push(f);
        } else {
            leaves(&f.children, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    // `peershare decode` refuses empty input before explaining it (and an empty wire
    // stream is explained as a frame still to come).
    if input.is_empty() {
        return;
    }
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(bytes) = parse_hex(text) {
            assert!(bytes.len() * 2 <= text.len(), "more bytes than hex digits");
        }
    }
    let ex = match pick % 6 {
        0 => explain_as(input, Kind::Dht),
        1 => explain_as(input, Kind::Wire),
        2 => explain_as(input, Kind::Handshake),
        3 => explain_as(input, Kind::Manifest),
        4 => explain_as(input, Kind::Tree),
        _ => explain(input),
    };
    assert!(ex.layout_agrees, "the layout walk and the decoder disagree");
    assert_eq!(ex.input_len, input.len());
    assert_eq!(ex.valid, ex.error.is_none() && ex.incomplete.is_none());

    let error = ex.error.as_ref().map(|e| &e.decode_error);
    match ex.kind {
        Kind::Dht => assert_eq!(error, Datagram::decode(input).err().as_ref()),
        Kind::Manifest => assert_eq!(error, Manifest::decode(input).err().as_ref()),
        Kind::Tree => assert_eq!(error, TreeManifest::decode(input).err().as_ref()),
        Kind::Wire => {
            let (err, cut) = wire_verdict(input);
            assert_eq!(error, err.as_ref());
            assert_eq!(ex.incomplete.is_some(), cut);
        }
        Kind::Handshake => {}
    }
    if let Some(e) = &ex.error {
        assert!(e.offset <= input.len(), "error offset past the input");
    }

    let mut all = Vec::new();
    for m in &ex.messages {
        leaves(&m.fields, &mut all);
    }
    all.sort_by_key(|f| f.offset);
    let mut at = 0;
    for f in all.iter().filter(|f| f.len > 0) {
        assert_eq!(
            f.offset, at,
            "field {:?} does not start where the last one ended",
            f.name
        );
        at += f.len;
    }
    assert_eq!(at, input.len(), "the leaf fields do not cover the input");

    let _ = ex.to_string();
    let _ = serde_json::to_string(&ex).expect("an explanation always serialises");
    let _ = summarize_as(input, ex.kind);
});
