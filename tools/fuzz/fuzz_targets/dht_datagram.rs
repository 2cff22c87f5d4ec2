//! One DHT datagram (UDP payload from any host): `Datagram::decode` (src/proto/dht.rs).
//! Invariants: never a panic; a decoded datagram re-encodes to exactly the input (the spec
//! gives every message one encoding), `encoded_len` is that length, and it decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::proto::dht::Datagram;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(d) = Datagram::decode(data) else {
        return;
    };
    let bytes = d.encode();
    assert_eq!(
        d.encoded_len(),
        bytes.len(),
        "encoded_len disagrees with encode"
    );
    assert_eq!(
        bytes, data,
        "a decoded datagram does not re-encode byte for byte"
    );
    assert_eq!(Datagram::decode(&bytes).as_ref(), Ok(&d));
});
