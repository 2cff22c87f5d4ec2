use super::*;
use proptest::prelude::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn chunk_size_policy() {
    assert_eq!(chunk_size_for(0), 256 << 10);
    assert_eq!(chunk_size_for(50_000), 256 << 10);
    assert_eq!(chunk_size_for(2 * GIB), 256 << 10);
    // Just above 2 GiB: 8192 chunks would need 256 KiB + a bit, so 512 KiB.
    assert_eq!(chunk_size_for(2 * GIB + 1), 512 << 10);
    assert_eq!(chunk_size_for(4 * GIB), 512 << 10);
    assert_eq!(chunk_size_for(4 * GIB + 1), 1 << 20);
    assert_eq!(chunk_size_for(8 * GIB), 1 << 20);
    assert_eq!(chunk_size_for(100 * GIB), 1 << 20);
    assert_eq!(chunk_size_for(u64::MAX), 1 << 20);
    // Up to 8 GiB a file has at most 8192 chunks; beyond, more.
    for size in [1, 2 * GIB, 2 * GIB + 1, 3 * GIB, 4 * GIB + 1, 8 * GIB] {
        let l = Lengths::for_file_size(size).unwrap();
        assert!(l.chunk_count() <= 8192, "{size}: {}", l.chunk_count());
    }
    assert_eq!(
        Lengths::for_file_size(16 * GIB).unwrap().chunk_count(),
        16384
    );
    assert!(Lengths::for_file_size(MAX_FILE_SIZE).is_ok());
    assert!(matches!(
        Lengths::for_file_size(MAX_FILE_SIZE + 1),
        Err(LengthsError::TooManyChunks { .. })
    ));
}

#[test]
fn lengths_boundaries() {
    let cs = 256 * KIB;
    let empty = Lengths::new(0, cs as u32).unwrap();
    assert_eq!(empty.chunk_count(), 0);
    assert_eq!(empty.last_chunk(), None);
    assert_eq!(empty.last_chunk_len(), 0);
    assert_eq!(empty.validate(0), None);
    assert_eq!(empty.chunks().count(), 0);
    assert_eq!(empty.chunk_at_offset(0), None);

    let one = Lengths::new(1, cs as u32).unwrap();
    assert_eq!(one.chunk_count(), 1);
    let c0 = one.validate(0).unwrap();
    assert_eq!(one.chunk_len(c0), 1);
    assert_eq!(one.chunk_range(c0), 0..1);

    let exact = Lengths::new(cs, cs as u32).unwrap();
    assert_eq!(exact.chunk_count(), 1);
    assert_eq!(exact.last_chunk_len(), cs as u32);

    let plus = Lengths::new(cs + 1, cs as u32).unwrap();
    assert_eq!(plus.chunk_count(), 2);
    let last = plus.last_chunk().unwrap();
    assert_eq!(last.get(), 1);
    assert_eq!(plus.chunk_offset(last), cs);
    assert_eq!(plus.chunk_len(last), 1);
    assert_eq!(plus.validate(2), None);
    assert_eq!(plus.chunk_at_offset(cs), Some(last));
    assert_eq!(plus.chunk_at_offset(cs + 1), None);

    let minus = Lengths::new(cs - 1, cs as u32).unwrap();
    assert_eq!(minus.chunk_count(), 1);
    assert_eq!(minus.last_chunk_len(), cs as u32 - 1);

    // An index from a bigger file used on a smaller one: total, no panic.
    let big = Lengths::new(10 * cs, cs as u32).unwrap();
    let far = big.validate(9).unwrap();
    assert_eq!(plus.chunk_len(far), 0);
    assert!(plus.chunk_range(far).is_empty());
}

#[test]
fn lengths_of_huge_files_without_building_them() {
    // 5 GiB + 3 bytes: 1 MiB chunks, a 3-byte last chunk, offsets beyond 4 GiB.
    let size = 5 * GIB + 3;
    let l = Lengths::for_file_size(size).unwrap();
    assert_eq!(l.chunk_size(), 1 << 20);
    assert_eq!(l.chunk_count(), 5 * 1024 + 1);
    let last = l.last_chunk().unwrap();
    assert_eq!(l.chunk_offset(last), 5 * GIB);
    assert_eq!(l.chunk_len(last), 3);
    let sum: u64 = l.chunks().map(|c| u64::from(l.chunk_len(c))).sum();
    assert_eq!(sum, size);
    // The largest file: 2^20 chunks of 1 MiB, last offset 1 TiB - 1 MiB.
    let max = Lengths::new(MAX_FILE_SIZE, MAX_CHUNK_SIZE).unwrap();
    assert_eq!(max.chunk_count(), MAX_CHUNKS);
    let last = max.last_chunk().unwrap();
    assert_eq!(max.chunk_offset(last), MAX_FILE_SIZE - MIB);
    assert_eq!(max.chunk_len(last), MAX_CHUNK_SIZE);
    assert_eq!(max.validate(MAX_CHUNKS), None);
    assert_eq!(
        max.chunk_at_offset(MAX_FILE_SIZE - 1),
        Some(last),
        "offsets above 4 GiB map to the right chunk"
    );
    // u64::MAX bytes cannot be chunked at all, and that is an error, not an overflow.
    assert!(Lengths::new(u64::MAX, MAX_CHUNK_SIZE).is_err());
}

#[test]
fn bad_chunk_sizes() {
    for cs in [
        0,
        1,
        8192,
        16383,
        16385,
        3 << 14,
        (1 << 20) + 1,
        1 << 21,
        u32::MAX,
    ] {
        assert_eq!(Lengths::new(1, cs), Err(LengthsError::BadChunkSize(cs)));
    }
    for cs in [1 << 14, 1 << 15, 1 << 18, 1 << 20] {
        assert!(Lengths::new(1, cs).is_ok());
    }
}

#[test]
fn encoding_layout() {
    let m = Manifest::for_data(b"a").unwrap();
    let b = m.encode();
    assert_eq!(b.len(), 85);
    assert_eq!(&b[..5], b"PSMF\x01");
    assert_eq!(&b[5..13], &1u64.to_be_bytes());
    assert_eq!(&b[13..17], &(256u32 << 10).to_be_bytes());
    assert_eq!(&b[17..21], &1u32.to_be_bytes());
    assert_eq!(&b[21..53], Sha256::digest(b"a").as_slice());
    assert_eq!(&b[53..85], Sha256::digest(b"a").as_slice());
    assert_eq!(m.content_id(), Id::hash_of(&b));
    assert_eq!(manifest_len_from_header(&b[..21]), Ok(85));
}

#[test]
fn a_one_chunk_manifest_keeps_its_chunk_hash_whatever_it_is() {
    // Made here, the chunk hash is the file hash and is not stored twice; decoded from a
    // peer whose chunk hash differs, it is kept as sent: either way the manifest encodes,
    // verifies and names the same content as its bytes.
    let m = Manifest::for_data(b"abc").unwrap();
    assert_eq!(m.chunk_hashes(), &[*m.file_sha256()]);
    let c0 = m.lengths().validate(0).unwrap();
    assert!(m.verify_chunk(c0, b"abc") && !m.verify_chunk(c0, b"abd"));
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    let mut odd = m.encode();
    odd[53] ^= 1;
    let d = Manifest::decode(&odd).unwrap();
    assert_eq!(d.encode(), odd);
    assert_eq!(d.content_id(), Id::hash_of(&odd));
    assert_ne!(d.chunk_hash(c0), m.file_sha256());
    assert!(!d.verify_chunk(c0, b"abc"));
    // An empty file has no chunk at all.
    let e = Manifest::for_data(b"").unwrap();
    assert!(e.chunk_hashes().is_empty());
    assert_eq!(Manifest::decode(&e.encode()).unwrap(), e);
}

#[test]
fn verify_chunk_checks_length_and_hash() {
    let d = data(40_000);
    let m = Manifest::for_data_with_chunk_size(&d, 16 << 10).unwrap();
    let l = m.lengths();
    assert_eq!(l.chunk_count(), 3);
    for c in l.chunks() {
        let r = l.chunk_range(c);
        let chunk = &d[r.start as usize..r.end as usize];
        assert!(m.verify_chunk(c, chunk));
        let mut bad = chunk.to_vec();
        bad[0] ^= 1;
        assert!(!m.verify_chunk(c, &bad));
        assert!(!m.verify_chunk(c, &chunk[1..]));
    }
    // The right bytes for another chunk do not verify.
    let c1 = l.validate(1).unwrap();
    assert!(!m.verify_chunk(c1, &d[..16 << 10]));
    // An index from another file is never valid.
    let other = Lengths::new(10 << 20, 16 << 10)
        .unwrap()
        .validate(100)
        .unwrap();
    assert!(!m.verify_chunk(other, &[]));
    assert_eq!(m.chunk_hash(other), &[0u8; 32]);
}

#[test]
fn decode_errors() {
    let m = Manifest::for_data_with_chunk_size(&data(40_000), 16 << 10).unwrap();
    let good = m.encode();
    assert_eq!(Manifest::decode(&good).unwrap(), m);

    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(
        Manifest::decode(&b),
        Err(DecodeError::InvalidValue { field: "magic", .. })
    ));
    let mut b = good.clone();
    b[3] = b'X';
    assert!(matches!(
        Manifest::decode(&b),
        Err(DecodeError::InvalidValue { field: "magic", .. })
    ));
    let mut b = good.clone();
    b[4] = 2;
    assert_eq!(
        Manifest::decode(&b),
        Err(DecodeError::UnsupportedVersion(2))
    );
    let mut b = good.clone();
    b[13..17].copy_from_slice(&24576u32.to_be_bytes());
    assert!(matches!(
        Manifest::decode(&b),
        Err(DecodeError::InvalidValue {
            field: "chunk_size",
            ..
        })
    ));
    let mut b = good.clone();
    b[17..21].copy_from_slice(&4u32.to_be_bytes());
    assert!(matches!(
        Manifest::decode(&b),
        Err(DecodeError::InvalidValue {
            field: "chunk_count",
            ..
        })
    ));
    let mut b = good.clone();
    b[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Manifest::decode(&b),
        Err(DecodeError::LengthTooLarge {
            field: "chunk_count",
            ..
        })
    ));
    // A file size that needs more than 2^20 chunks, with a count to match it that is
    // still too large.
    let mut b = good.clone();
    b[5..13].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(Manifest::decode(&b).is_err());
    assert_eq!(
        Manifest::decode(&good[..good.len() - 1]),
        Err(DecodeError::UnexpectedEnd {
            field: "chunk_hashes",
            needed: 1
        })
    );
    let mut b = good.clone();
    b.push(0);
    assert_eq!(Manifest::decode(&b), Err(DecodeError::TrailingBytes(1)));
    assert!(matches!(
        Manifest::decode(&[]),
        Err(DecodeError::UnexpectedEnd { field: "magic", .. })
    ));
}

#[test]
fn decode_for_checks_the_id_first() {
    let m = Manifest::for_data(b"hello").unwrap();
    let b = m.encode();
    assert_eq!(Manifest::decode_for(&m.content_id(), &b).unwrap(), m);
    let other = Manifest::for_data(b"world").unwrap();
    assert!(matches!(
        Manifest::decode_for(&other.content_id(), &b),
        Err(ManifestCheckError::WrongId { .. })
    ));
    // Garbage that happens to be what was asked for is still refused.
    let junk = b"not a manifest";
    assert!(matches!(
        Manifest::decode_for(&Id::hash_of(junk), junk),
        Err(ManifestCheckError::Decode(_))
    ));
}

#[test]
fn a_huge_count_does_not_allocate() {
    // Header claims 2^20 chunks (1 TiB file), but only the header is present: the decoder
    // must fail on length before reserving 32 MiB.
    let mut b = Vec::new();
    b.extend_from_slice(b"PSMF\x01");
    b.extend_from_slice(&MAX_FILE_SIZE.to_be_bytes());
    b.extend_from_slice(&MAX_CHUNK_SIZE.to_be_bytes());
    b.extend_from_slice(&MAX_CHUNKS.to_be_bytes());
    b.extend_from_slice(&[0; 32]);
    assert_eq!(
        Manifest::decode(&b),
        Err(DecodeError::UnexpectedEnd {
            field: "chunk_hashes",
            needed: MAX_CHUNKS as usize * 32
        })
    );
    assert_eq!(manifest_len_from_header(&b), Ok(MAX_MANIFEST_LEN));
}

fn sizes() -> impl Strategy<Value = (usize, u32)> {
    let cs = prop_oneof![Just(16u32 << 10), Just(32 << 10), Just(256 << 10)];
    cs.prop_flat_map(|cs| {
        let c = cs as usize;
        let size = prop_oneof![
            Just(0usize),
            Just(1),
            Just(c - 1),
            Just(c),
            Just(c + 1),
            Just(3 * c),
            Just(3 * c + 7),
            0usize..(20 * c),
        ];
        (size, Just(cs))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip((size, cs) in sizes(), seed in any::<u8>()) {
        let d: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let m = Manifest::for_data_with_chunk_size(&d, cs).unwrap();
        let l = m.lengths();
        prop_assert_eq!(l.total(), size as u64);
        prop_assert_eq!(u64::from(l.chunk_count()), (size as u64).div_ceil(u64::from(cs)));
        let sum: u64 = l.chunks().map(|c| u64::from(l.chunk_len(c))).sum();
        prop_assert_eq!(sum, size as u64);
        let b = m.encode();
        prop_assert_eq!(b.len(), m.encoded_len());
        let back = Manifest::decode(&b).unwrap();
        prop_assert_eq!(back.content_id(), m.content_id());
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(), b);
    }

    #[test]
    fn decoder_is_total_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Manifest::decode(&b);
        let _ = manifest_len_from_header(&b);
    }

    #[test]
    fn decoder_is_total_on_mutated_manifests(
        (size, cs) in sizes(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let d = data(size);
        let mut b = Manifest::for_data_with_chunk_size(&d, cs).unwrap().encode();
        for (pos, val) in edits {
            let i = pos % b.len();
            b[i] = val;
        }
        let n = b.len();
        b.truncate(n - cut % (n / 4 + 1));
        if let Ok(m) = Manifest::decode(&b) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(m.encode(), b);
        }
    }
}
