//! A folder's tree manifest (from a peer in MANIFEST_DATA, or a stored manifest):
//! `TreeManifest::decode` and `tree_manifest_len_from_header` (src/content/tree/).
//! Invariants: never a panic and never a huge allocation (the capped allocator); a decoded
//! tree re-encodes to exactly the input and its content ID is the input's SHA-256; the header
//! alone gives the input's length; every chunk is placed in a file, inside it, and the
//! chunks of each file cover it exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::content::tree::{tree_manifest_len_from_header, EntryKind, TreeManifest};
use peershare::id::Id;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = TreeManifest::decode(data) else {
        return;
    };
    assert_eq!(tree_manifest_len_from_header(data), Ok(data.len()));
    assert_eq!(t.encode(), data, "a decoded tree does not re-encode byte for byte");
    assert_eq!(t.encoded_len(), data.len());
    assert_eq!(t.content_id(), Id::hash_of(data));
    let mut total = 0u64;
    for (i, e) in t.entries().iter().enumerate() {
        let chunks = t.file_chunks(i);
        match e.kind {
            EntryKind::EmptyFolder => assert!(chunks.is_empty()),
            EntryKind::File(f) => {
                assert_eq!(chunks.len() as u32, f.lengths.chunk_count());
                let mut offset = 0u64;
                for c in chunks {
                    let p = t.chunk_place(c).expect("a file's chunk has a place");
                    assert_eq!(p.entry, i);
                    assert_eq!(p.offset, offset);
                    offset += u64::from(p.len);
                }
                assert_eq!(offset, f.lengths.total(), "the chunks do not cover the file");
                total += offset;
                let m = t.file_manifest(i).expect("a file has its own manifest");
                assert_eq!(m.file_size(), f.lengths.total());
            }
        }
    }
    assert_eq!(total, t.total_size());
    assert!(t.chunk_place(t.chunk_count()).is_none());
});
