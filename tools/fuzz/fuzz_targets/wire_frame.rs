//! One wire frame (TCP, from any peer, the HANDSHAKE included): `decode_frame` and
//! `frame_len_hint` (src/proto/wire.rs).
//! Invariants: never a panic; the hint agrees with the decoder (same error, same frame
//! length); a prefix of the input gives "need more" or exactly the whole input's error (the
//! module's promise that the outcome never depends on how TCP split the stream); a decoded
//! frame re-encodes to exactly its bytes, and `encoded_len` is that length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::proto::wire::{decode_frame, frame_len_hint};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where to cut for the prefix check; the rest is the stream.
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = decode_frame(data);
    let hint = frame_len_hint(data);
    match (&whole, &hint) {
        (Err(e), Err(h)) => assert_eq!(e, h, "hint and decoder report different errors"),
        (Err(_), Ok(Some(n))) => assert!(*n <= data.len(), "an error before the frame is whole"),
        (Err(_), Ok(None)) => panic!("decoder failed where the hint needs more bytes"),
        (Ok(Some((_, used))), Ok(Some(n))) => assert_eq!(used, n),
        (Ok(Some(_)), _) => panic!("a frame decoded, but the hint disagrees: {hint:?}"),
        (Ok(None), Err(e)) => panic!("hint failed ({e}) where the decoder needs more"),
        (Ok(None), Ok(n)) => assert!(n.is_none_or(|n| n > data.len())),
    }

    let k = usize::from(cut) % (data.len() + 1);
    let part = decode_frame(&data[..k]);
    if k < data.len() || whole.is_err() {
        match (&part, &whole) {
            (Ok(None), _) => {}
            (Err(p), Err(w)) => assert_eq!(p, w, "a prefix fails differently from the whole"),
            (Ok(Some((_, used))), Ok(Some((_, whole_used)))) => assert_eq!(used, whole_used),
            _ => panic!("prefix of {k} bytes: {part:?}, whole: {whole:?}"),
        }
    }

    if let Ok(Some((msg, used))) = whole {
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(
            msg.encoded_len(),
            out.len(),
            "encoded_len disagrees with encode"
        );
        assert_eq!(
            out,
            data[..used],
            "a decoded frame does not re-encode byte for byte"
        );
    }
});
