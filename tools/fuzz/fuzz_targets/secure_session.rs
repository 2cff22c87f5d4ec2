//! The secure session (src/secure/, protocol-spec/secure.md) fed arbitrary bytes: as the
//! accepting side's handshake and as a dialer's awaiting msg2, in fuzzer-chosen pieces; then
//! as records to an established session. Invariants: never a panic; never more bytes used
//! than given; nothing after an error or the end of the handshake; bytes the peer did not
//! seal never open as a record.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peershare::identity::Identity;
use peershare::secure::{record_len, Handshake, LocalKeys, Outcome, LEN_PREFIX};
use peershare_fuzz::Steps;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

/// Two sides with fixed keys (made once: key generation is not what is fuzzed).
fn sides() -> &'static (LocalKeys, LocalKeys) {
    static K: OnceLock<(LocalKeys, LocalKeys)> = OnceLock::new();
    K.get_or_init(|| {
        let side = |n: u8| LocalKeys::new(Identity::from_secret(&[n; 32]), [n + 0x10; 32]);
        (side(1).expect("keys"), side(2).expect("keys"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let (a, b) = sides();
    for dialer in [false, true] {
        let mut sizes = Steps::new(seed);
        let mut h = if dialer {
            Handshake::initiator(a, None)
        } else {
            Handshake::responder(b)
        }
        .expect("handshake");
        let _ = h.take_output();
        let mut rest = input;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(sizes.step().min(rest.len()));
            rest = tail;
            match h.handle_input(piece) {
                Ok(n) => {
                    assert!(n <= piece.len(), "used more than given");
                    if h.outcome() != Outcome::InProgress {
                        break;
                    }
                    assert_eq!(n, piece.len(), "stopped early while in progress");
                }
                Err(_) => break,
            }
        }
    }
    // An established session given the input as records: none opens.
    let mut i = Handshake::initiator(a, None).expect("handshake");
    let mut r = Handshake::responder(b).expect("handshake");
    r.handle_input(&i.take_output()).expect("msg1");
    i.handle_input(&r.take_output()).expect("msg2");
    r.handle_input(&i.take_output()).expect("msg3");
    let mut s = r.into_session().expect("session");
    let mut out = vec![0u8; 65535];
    if let Ok(Some(n)) = record_len(input) {
        if let Some(body) = input.get(LEN_PREFIX..n) {
            assert!(s.transport.open(body, &mut out).is_err(), "a forged record opened");
        }
    }
});
