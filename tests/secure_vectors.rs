//! The secure session's test vectors (`protocol-spec/vectors/secure.txt`) and the hex drawn in
//! `protocol-spec/secure.md`, regenerated from the fixed test keys and compared byte for byte.
//!
//! The keys (secure.md section 6): initiator identity seed 01 x 32, Noise static secret
//! 11 x 32, ephemeral secret 21 x 32; responder 02, 12, 22. Noise with ChaChaPoly, X25519 and
//! SHA-256 is deterministic given the keys, and so are Ed25519 signatures. The initiator
//! offers AES-256-GCM; the responder does not in the main session (its records are
//! ChaChaPoly) and does in the `-aes` one (AES-256-GCM records).
//!
//! Also: each vector, fed to a fresh responder or initiator, is accepted; one bit flipped in
//! each is refused. A missing or empty vector file is a failure.
//!
//! `PEERSHARE_WRITE_VECTORS=1 cargo test --test secure_vectors` rewrites the vector file
//! (after a deliberate change of the format; the spec's blocks are then updated by hand).

mod common;

use common::vectors::{examples, read_spec_file, spec_path};
use peershare::identity::Identity;
use peershare::secure::{
    keylog_line, record_len, Cipher, Handshake, LocalKeys, Outcome, RecordOpener, SecureError,
    Session, LEN_PREFIX,
};

/// A side's fixed keys; the initiator (1) offers AES-256-GCM, the responder (2) as told.
fn side(n: u8, aes: bool) -> LocalKeys {
    LocalKeys::new(Identity::from_secret(&[n; 32]), [0x10 + n; 32])
        .unwrap()
        .offering_aes_gcm(aes)
}

/// The three handshake messages and both sessions, the responder offering AES or not.
fn handshake(responder_aes: bool) -> ([Vec<u8>; 3], Session, Session) {
    let (a, b) = (side(1, true), side(2, responder_aes));
    let mut i = Handshake::with_fixed_ephemeral(&a, true, Some(b.node_id()), &[0x21; 32]).unwrap();
    let mut r = Handshake::with_fixed_ephemeral(&b, false, None, &[0x22; 32]).unwrap();
    let msg1 = i.take_output();
    assert_eq!(r.handle_input(&msg1).unwrap(), msg1.len());
    let msg2 = r.take_output();
    assert_eq!(i.handle_input(&msg2).unwrap(), msg2.len());
    let msg3 = i.take_output();
    assert_eq!(r.handle_input(&msg3).unwrap(), msg3.len());
    assert_eq!(
        (i.outcome(), r.outcome()),
        (Outcome::Finished, Outcome::Finished)
    );
    let si = i.into_session().unwrap();
    let sr = r.into_session().unwrap();
    assert_eq!(si.peer.node_id, b.node_id());
    assert_eq!(sr.peer.node_id, a.node_id());
    let want = if responder_aes {
        Cipher::AesGcm
    } else {
        Cipher::ChaChaPoly
    };
    assert_eq!((si.transport.cipher(), sr.transport.cipher()), (want, want));
    ([msg1, msg2, msg3], si, sr)
}

/// A KEEPALIVE frame (wire.md 4.1) sealed as the session's next record.
fn keepalive(s: &mut Session) -> Vec<u8> {
    let mut w = Vec::new();
    s.transport.seal(&[0, 0, 0, 1, 0], &mut w).unwrap();
    w
}

/// (name, bytes) of every vector, made afresh.
fn make() -> Vec<(String, Vec<u8>)> {
    let ([msg1, msg2, msg3], mut si, mut sr) = handshake(false);
    let (a, b) = (side(1, true), side(2, false));
    // The first record each way, then a second KEEPALIVE from the initiator, whose bytes
    // differ although its plaintext does not (nonce 1).
    let i0 = keepalive(&mut si);
    let i1 = keepalive(&mut si);
    let r0 = keepalive(&mut sr);
    let ([aes1, aes2, aes3], mut ai, _) = handshake(true);
    assert_eq!(aes1, msg1, "msg1 does not depend on the responder");
    let ai0 = keepalive(&mut ai);
    vec![
        ("msg1".into(), msg1),
        ("msg2".into(), msg2),
        ("msg3".into(), msg3),
        ("record-i2r-0-keepalive".into(), i0),
        ("record-i2r-1-keepalive".into(), i1),
        ("record-r2i-0-keepalive".into(), r0),
        ("keylog".into(), keylog_line(&si.keys).as_bytes().to_vec()),
        ("node-id-initiator".into(), a.node_id().0.to_vec()),
        ("node-id-responder".into(), b.node_id().0.to_vec()),
        ("msg2-aes".into(), aes2),
        ("msg3-aes".into(), aes3),
        ("record-i2r-0-keepalive-aes".into(), ai0),
        (
            "keylog-aes".into(),
            keylog_line(&ai.keys).as_bytes().to_vec(),
        ),
    ]
}

fn load() -> Vec<(String, Vec<u8>)> {
    let text = read_spec_file("vectors/secure.txt");
    let v: Vec<(String, Vec<u8>)> = common::vectors::data_lines(&text)
        .map(|(n, l)| {
            let mut f = l.split_whitespace();
            let name = f.next().unwrap().to_owned();
            let hex = f.next().unwrap_or_else(|| panic!("secure.txt:{n}: no hex"));
            (name, common::vectors::parse_hex("secure.txt", n, hex))
        })
        .collect();
    assert!(!v.is_empty(), "secure.txt holds no vectors");
    v
}

#[test]
fn vectors_are_what_the_fixed_keys_give() {
    let made = make();
    if std::env::var_os("PEERSHARE_WRITE_VECTORS").is_some() {
        let mut out = String::from(
            "# PeerShare secure session test vectors (protocol-spec/secure.md section 6).\n\
             # Format: NAME HEX. Made from the fixed test keys by tests/secure_vectors.rs, which\n\
             # checks them. msg1..msg3 and record-* are exactly the bytes on the wire (the\n\
             # 2-byte length included); keylog is the initiator's key log line as ASCII.\n",
        );
        for (n, b) in &made {
            out.push_str(&format!("{n} {}\n", hex::encode(b)));
        }
        std::fs::write(spec_path("vectors/secure.txt"), out).unwrap();
    }
    let loaded = load();
    assert_eq!(loaded.len(), made.len(), "secure.txt: vector count");
    for ((ln, lb), (mn, mb)) in loaded.iter().zip(&made) {
        assert_eq!(ln, mn, "secure.txt: vector order");
        assert_eq!(
            hex::encode(lb),
            hex::encode(mb),
            "secure.txt: vector `{ln}`"
        );
    }
}

#[test]
fn the_spec_draws_the_vectors() {
    let made = make();
    let drawn = examples("secure.md");
    for (name, hex) in &drawn {
        let (_, bytes) = made
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("secure.md: no vector named `{name}`"));
        assert_eq!(*hex, hex::encode(bytes), "secure.md: example `{name}`");
    }
    assert!(
        drawn.len() >= 4,
        "secure.md draws only {} vectors",
        drawn.len()
    );
}

/// Every handshake vector is accepted by a fresh side holding the right keys, and refused
/// with one bit flipped; the records open with the logged keys and not once altered.
#[test]
fn vectors_are_accepted_and_a_flipped_bit_is_refused() {
    let v = load();
    let get = |n: &str| v.iter().find(|(m, _)| m == n).unwrap().1.clone();
    for (aes, suffix) in [(false, ""), (true, "-aes")] {
        let (msg1, msg2, msg3) = (
            get("msg1"),
            get(&format!("msg2{suffix}")),
            get(&format!("msg3{suffix}")),
        );
        check_handshake(aes, msg1, msg2, msg3);
    }
    let line = String::from_utf8(get("keylog")).unwrap();
    let keys = peershare::secure::parse_keylog_line(&line).unwrap();
    assert_eq!(keys.cipher, Cipher::ChaChaPoly);
    assert_eq!(keys.ephemeral[..], get("msg1")[LEN_PREFIX..LEN_PREFIX + 32]);
    let mut i2r = RecordOpener::new(keys.cipher, &keys.initiator_to_responder);
    for n in ["record-i2r-0-keepalive", "record-i2r-1-keepalive"] {
        let rec = get(n);
        assert_eq!(record_len(&rec), Ok(Some(rec.len())));
        let mut bad = RecordOpener::new(keys.cipher, &keys.initiator_to_responder);
        let mut flipped = rec.clone();
        flipped[LEN_PREFIX] ^= 1;
        assert!(bad.open(&flipped[LEN_PREFIX..]).is_none());
        assert_eq!(i2r.open(&rec[LEN_PREFIX..]).unwrap(), [0, 0, 0, 1, 0]);
    }
    let mut r2i = RecordOpener::new(keys.cipher, &keys.responder_to_initiator);
    let rec = get("record-r2i-0-keepalive");
    assert_eq!(r2i.open(&rec[LEN_PREFIX..]).unwrap(), [0, 0, 0, 1, 0]);
    assert_eq!(record_len(&[0, 3]), Err(SecureError::BadRecord));
    // The AES-GCM session's record opens with its logged key, and only with AES-GCM.
    let line = String::from_utf8(get("keylog-aes")).unwrap();
    let keys = peershare::secure::parse_keylog_line(&line).unwrap();
    assert_eq!(keys.cipher, Cipher::AesGcm);
    let rec = get("record-i2r-0-keepalive-aes");
    let k = &keys.initiator_to_responder;
    let chacha = RecordOpener::new(Cipher::ChaChaPoly, k).open(&rec[LEN_PREFIX..]);
    assert!(chacha.is_none());
    let mut aes = RecordOpener::new(Cipher::AesGcm, k);
    assert_eq!(aes.open(&rec[LEN_PREFIX..]).unwrap(), [0, 0, 0, 1, 0]);
}

/// The handshake vectors are accepted by sides in the right state, and each is refused with
/// one bit flipped.
fn check_handshake(responder_aes: bool, msg1: Vec<u8>, msg2: Vec<u8>, msg3: Vec<u8>) {
    let (a, b) = (side(1, true), side(2, responder_aes));
    // msg2 and msg3 are only valid after msg1: replay them to sides in the right state.
    for flip in [None, Some(0usize), Some(1), Some(2)] {
        let mut i = Handshake::with_fixed_ephemeral(&a, true, None, &[0x21; 32]).unwrap();
        let mut r = Handshake::with_fixed_ephemeral(&b, false, None, &[0x22; 32]).unwrap();
        assert_eq!(i.take_output(), msg1);
        let mut m = [msg1.clone(), msg2.clone(), msg3.clone()];
        if let Some(k) = flip {
            let last = m[k].len() - 1;
            m[k][last] ^= 1;
        }
        let results = [
            r.handle_input(&m[0]).map(|_| ()),
            i.handle_input(&m[1]).map(|_| ()),
            r.handle_input(&m[2]).map(|_| ()),
        ];
        match flip {
            None => assert!(results.iter().all(Result::is_ok)),
            Some(k) => {
                assert!(
                    results[k].is_err(),
                    "msg{} with a flipped bit accepted",
                    k + 1
                );
            }
        }
    }
}
