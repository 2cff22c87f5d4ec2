//! A manifest (from a peer in MANIFEST_DATA, or a stored `.manifest` file):
//! `Manifest::decode`, `decode_for` and `manifest_len_from_header`
//! (src/content/manifest.rs).
//! Invariants: never a panic; a decoded manifest re-encodes to exactly the input and its
//! content ID is the input's SHA-256; the header alone gives the input's length, or the
//! error the whole decode gives; the chunk arithmetic covers the file exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::content::manifest::manifest_len_from_header;
use peershare::content::Manifest;
use peershare::id::Id;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let decoded = Manifest::decode(data);
    let from_header = manifest_len_from_header(data);
    if let Err(e) = &from_header {
        assert_eq!(
            decoded.as_ref().err(),
            Some(e),
            "header and decode disagree"
        );
    }
    let Ok(m) = decoded else {
        return;
    };
    assert_eq!(from_header, Ok(data.len()));
    assert_eq!(
        m.encode(),
        data,
        "a decoded manifest does not re-encode byte for byte"
    );
    assert_eq!(m.encoded_len(), data.len());
    let id = Id::hash_of(data);
    assert_eq!(m.content_id(), id);
    assert_eq!(Manifest::decode_for(&id, data).as_ref(), Ok(&m));

    let l = m.lengths();
    assert_eq!(l.chunk_count() as usize, m.chunk_hashes().len());
    let mut offset = 0u64;
    for c in l.chunks() {
        assert_eq!(l.chunk_offset(c), offset);
        let len = l.chunk_len(c);
        assert!(len >= 1 && len <= l.chunk_size());
        assert_eq!(l.chunk_at_offset(offset), Some(c));
        offset += u64::from(len);
    }
    assert_eq!(
        offset,
        l.total(),
        "the chunks do not cover the file exactly"
    );
    assert_eq!(l.chunk_at_offset(l.total()), None);
});
