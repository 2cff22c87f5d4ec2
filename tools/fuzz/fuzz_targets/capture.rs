//! A capture file (src/capture/, `peershare decode --pcap`): read as pcap or pcapng, its TCP
//! connections reassembled, its sessions explained with the spec's key log line (secure.md
//! section 6, so records made with the test keys open), printed, and written decrypted.
//! Invariants: never a panic, no allocation sized by a length read from the input, and the
//! decrypted capture written always reads back with as many connections opened in clear.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::capture::{read_capture, reassemble};
use peershare::explain::{explain_reassembled, read_keylog, write_decrypted};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

/// The key log line of protocol-spec/vectors/secure.txt (vector `keylog`).
const KEYLOG: &str = concat!(
    "PSWP3 7d34a4815fa6b982535e60af3bd9b49556816080f1641ff81d2b7c8ae8268a44 ",
    "54e49f18a0b0570d8470f6c7ae2c779f35e5fa16d92688068fc216bb1883a15c ",
    "d23066decf8be12adfac50909c287e6ac6db74b4b878f945357351a605656205 ChaChaPoly"
);

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = read_capture(data) else {
        return;
    };
    let keys = read_keylog(KEYLOG);
    let r = reassemble(&packets);
    let report = explain_reassembled(&r, Some(&keys));
    let _ = report.to_string();
    let (out, _) = write_decrypted(&packets, &r, &report);
    assert!(read_capture(&out).is_ok(), "the decrypted capture does not read back");
});
