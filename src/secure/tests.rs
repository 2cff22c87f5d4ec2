//! Whole-handshake tests on a pair of sides fed each other's bytes, as the reactor would.

use super::*;

fn keys(seed: u8) -> LocalKeys {
    LocalKeys::new(
        Identity::from_secret(&[seed; 32]),
        [seed.wrapping_add(0x10); 32],
    )
    .unwrap()
}

/// Runs a handshake to the end, delivering bytes `step` at a time; the sessions, or the
/// first error (with which side raised it: true for the initiator).
fn run(
    mut i: Handshake,
    mut r: Handshake,
    step: usize,
) -> Result<(Session, Session), (bool, SecureError)> {
    for _ in 0..10_000 {
        let to_r = i.take_output();
        for c in to_r.chunks(step) {
            let used = r.handle_input(c).map_err(|e| (false, e))?;
            assert_eq!(used, c.len());
        }
        let to_i = r.take_output();
        for c in to_i.chunks(step) {
            let used = i.handle_input(c).map_err(|e| (true, e))?;
            assert_eq!(used, c.len());
        }
        if i.outcome() == Outcome::Finished
            && r.outcome() == Outcome::Finished
            && !i.has_output()
            && !r.has_output()
        {
            return Ok((i.into_session().unwrap(), r.into_session().unwrap()));
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn both_sides_learn_the_other_s_node_id_whatever_the_split() {
    let (a, b) = (keys(1), keys(2));
    for step in [1, 2, 3, 7, 100, 1000] {
        let i = Handshake::initiator(&a, Some(b.node_id())).unwrap();
        let r = Handshake::responder(&b).unwrap();
        let (mut si, mut sr) = run(i, r, step).unwrap();
        assert_eq!(si.peer.node_id, b.node_id());
        assert_eq!(sr.peer.node_id, a.node_id());
        assert_eq!(si.keys.ephemeral, sr.keys.ephemeral);
        // Records both ways, one of them longer than a record holds.
        let big: Vec<u8> = (0..200_000u32).map(|x| x as u8).collect();
        let mut wire = Vec::new();
        si.transport.seal(&big, &mut wire).unwrap();
        assert_eq!(wire.len(), big.len() + 4 * (LEN_PREFIX + TAG_LEN));
        let got = open_all(&mut sr.transport, &wire).unwrap();
        assert_eq!(got, big);
        let mut back = Vec::new();
        sr.transport.seal(b"pong", &mut back).unwrap();
        assert_eq!(open_all(&mut si.transport, &back).unwrap(), b"pong");
    }
}

fn open_all(t: &mut Transport, mut wire: &[u8]) -> Result<Vec<u8>, SecureError> {
    let mut out = Vec::new();
    while let Some(n) = record_len(wire)? {
        let mut buf = vec![0u8; n];
        let k = t.open(&wire[LEN_PREFIX..n], &mut buf)?;
        out.extend_from_slice(&buf[..k]);
        wire = &wire[n..];
    }
    Ok(out)
}

fn session_pair() -> (Session, Session) {
    let (a, b) = (keys(1), keys(2));
    let i = Handshake::initiator(&a, None).unwrap();
    let r = Handshake::responder(&b).unwrap();
    run(i, r, 4096).unwrap()
}

fn sealed(s: &mut Session, msg: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    s.transport.seal(msg, &mut w).unwrap();
    w
}

#[test]
fn tampering_replay_and_reordering_fail_authentication() {
    // Tampered: one bit flipped.
    let (mut si, mut sr) = session_pair();
    let mut bad = sealed(&mut si, b"first record");
    bad[LEN_PREFIX + 3] ^= 1;
    assert_eq!(
        open_all(&mut sr.transport, &bad),
        Err(SecureError::Tampered)
    );
    // Reordered: the second record first.
    let (mut si, mut sr) = session_pair();
    let _one = sealed(&mut si, b"first record");
    let two = sealed(&mut si, b"second record");
    assert_eq!(
        open_all(&mut sr.transport, &two),
        Err(SecureError::Tampered)
    );
    // Replayed.
    let (mut si, mut sr) = session_pair();
    let one = sealed(&mut si, b"first record");
    assert_eq!(open_all(&mut sr.transport, &one).unwrap(), b"first record");
    assert_eq!(
        open_all(&mut sr.transport, &one),
        Err(SecureError::Tampered)
    );
    // A record too short to hold a tag.
    assert_eq!(record_len(&[0, 15]), Err(SecureError::BadRecord));
}

#[test]
fn the_dialer_hangs_up_on_a_peer_with_another_id() {
    let (a, b, c) = (keys(1), keys(2), keys(3));
    let i = Handshake::initiator(&a, Some(c.node_id())).unwrap();
    let r = Handshake::responder(&b).unwrap();
    match run(i, r, 4096) {
        Err((true, SecureError::WrongPeer { expected, got })) => {
            assert_eq!((expected, got), (c.node_id(), b.node_id()));
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("connected to the wrong peer"),
    }
}

/// A node that knows a victim's public key but not its secret cannot prove the victim's ID:
/// its signature is over its own static key by its own identity, and a payload naming the
/// victim's key fails to verify.
#[test]
fn a_claimed_identity_without_its_key_is_refused() {
    let victim = Identity::from_secret(&[9; 32]);
    let mut forged = keys(4);
    forged.payload[1..1 + PUBLIC_LEN].copy_from_slice(&victim.public());
    let honest = keys(5);
    // The forger as responder: the dialer refuses it.
    let i = Handshake::initiator(&honest, None).unwrap();
    let r = Handshake::responder(&forged).unwrap();
    assert!(matches!(
        run(i, r, 4096),
        Err((true, SecureError::BadIdentity(_)))
    ));
    // The forger as dialer: the responder refuses it.
    let i = Handshake::initiator(&forged, None).unwrap();
    let r = Handshake::responder(&honest).unwrap();
    assert!(matches!(
        run(i, r, 4096),
        Err((false, SecureError::BadIdentity(_)))
    ));
}

#[test]
fn a_previous_version_peer_is_refused_with_a_clear_error() {
    let b = keys(2);
    // A v1 HANDSHAKE frame (wire.md 4.2 of version 1): length, type 0x01, "PSWP", 1...
    let mut v1 = vec![0, 0, 0, 73, 1, b'P', b'S', b'W', b'P', 1];
    v1.extend_from_slice(&[0; 63]);
    for step in [1, 3, 100] {
        let mut r = Handshake::responder(&b).unwrap();
        let mut err = None;
        for c in v1.chunks(step) {
            if let Err(e) = r.handle_input(c) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(SecureError::OldVersion(1)));
        assert!(SecureError::OldVersion(1).to_string().contains("version 1"));
    }
    // A v1 node answers msg1 with a plaintext ERROR frame.
    let mut i = Handshake::initiator(&keys(1), None).unwrap();
    let _ = i.take_output();
    let err_frame = [0, 0, 0, 8, 0x10, 0, 1, 0, 4, b'o', b'o', b'p'];
    assert_eq!(i.handle_input(&err_frame), Err(SecureError::OldVersion(1)));
    // A version 2 dialer: the same msg1 layout, its HELLO names version 2.
    let mut r = Handshake::responder(&b).unwrap();
    let mut m1 = Handshake::initiator(&keys(1), None).unwrap().take_output();
    let last = m1.len() - 1;
    m1[last] = 2;
    let err = r.handle_input(&m1).unwrap_err();
    assert_eq!(err, SecureError::OldVersion(2));
    assert!(err
        .to_string()
        .contains("version 2; this node speaks version 3"));
}

#[test]
fn a_plaintext_probe_is_handed_back_and_garbage_is_refused() {
    let b = keys(2);
    let probe = [0, 0, 0, 9, 0x11, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut r = Handshake::responder(&b).unwrap();
    let used = r.handle_input(&probe[..3]).unwrap();
    assert_eq!(used, 3);
    let used = r.handle_input(&probe[3..]).unwrap();
    assert_eq!(used, 2);
    assert_eq!(r.outcome(), Outcome::Plaintext);
    assert_eq!(r.take_buffered(), probe[..5].to_vec());
    // The wrong length, a HELLO of another version, random bytes: errors, no panic.
    let mut r = Handshake::responder(&b).unwrap();
    assert!(r.handle_input(&[0, 36]).is_err());
    let mut r = Handshake::responder(&b).unwrap();
    let mut i = Handshake::initiator(&keys(1), None).unwrap();
    let mut m1 = i.take_output();
    let last = m1.len() - 1;
    m1[last] = 4; // HELLO "PSWP" 4
    assert!(matches!(
        r.handle_input(&m1),
        Err(SecureError::BadHandshake(_))
    ));
}

#[test]
fn the_key_log_opens_what_the_session_sealed() {
    let (mut si, mut sr) = session_pair();
    let line = keylog_line(&si.keys);
    let parsed = parse_keylog_line(&line).unwrap();
    assert_eq!(parsed.ephemeral, sr.keys.ephemeral);
    assert_eq!(parsed.cipher, si.transport.cipher());
    let mut i2r = RecordOpener::new(parsed.cipher, &parsed.initiator_to_responder);
    let mut r2i = RecordOpener::new(parsed.cipher, &parsed.responder_to_initiator);
    for msg in [&b"one"[..], b"two", &[7u8; 5000]] {
        let mut w = Vec::new();
        si.transport.seal(msg, &mut w).unwrap();
        assert_eq!(i2r.open(&w[LEN_PREFIX..]).unwrap(), msg);
        let mut w = Vec::new();
        sr.transport.seal(msg, &mut w).unwrap();
        assert_eq!(r2i.open(&w[LEN_PREFIX..]).unwrap(), msg);
    }
    assert!(parse_keylog_line("# comment").is_none());
    assert!(parse_keylog_line("PSWP2 00").is_none());
    // A version 2 line (no cipher) or an unknown cipher: not a key of this version.
    let v2 = line.replace("PSWP3", "PSWP2");
    let v2 = v2.rsplit_once(' ').unwrap().0;
    assert!(parse_keylog_line(v2).is_none());
    let odd = format!("{} AES128", line.rsplit_once(' ').unwrap().0);
    assert!(parse_keylog_line(&odd).is_none());
}

#[test]
fn records_use_aes_gcm_only_when_both_sides_offer_it() {
    for (a_offers, b_offers) in [(true, true), (true, false), (false, true), (false, false)] {
        let a = keys(1).offering_aes_gcm(a_offers);
        let b = keys(2).offering_aes_gcm(b_offers);
        let i = Handshake::initiator(&a, Some(b.node_id())).unwrap();
        let r = Handshake::responder(&b).unwrap();
        let (mut si, mut sr) = run(i, r, 50).unwrap();
        let want = if a_offers && b_offers {
            Cipher::AesGcm
        } else {
            Cipher::ChaChaPoly
        };
        assert_eq!((si.transport.cipher(), sr.transport.cipher()), (want, want));
        assert_eq!(si.keys.cipher, want);
        // Records flow both ways, and only the agreed cipher opens them.
        let mut w = Vec::new();
        si.transport.seal(b"ping", &mut w).unwrap();
        let other = if want == Cipher::AesGcm {
            Cipher::ChaChaPoly
        } else {
            Cipher::AesGcm
        };
        let wrong =
            RecordOpener::new(other, &si.keys.initiator_to_responder).open(&w[LEN_PREFIX..]);
        assert!(wrong.is_none(), "{other:?} opened a {want:?} record");
        assert_eq!(open_all(&mut sr.transport, &w).unwrap(), b"ping");
        let mut back = Vec::new();
        sr.transport.seal(b"pong", &mut back).unwrap();
        assert_eq!(open_all(&mut si.transport, &back).unwrap(), b"pong");
    }
}

#[test]
fn a_flag_flipped_on_the_way_fails_the_handshake() {
    // msg2 carries the responder's flags inside its encrypted proof: any bit changed there
    // fails authentication, so a man in the middle cannot steer the cipher.
    let (a, b) = (keys(1), keys(2));
    let mut i = Handshake::initiator(&a, None).unwrap();
    let mut r = Handshake::responder(&b).unwrap();
    r.handle_input(&i.take_output()).unwrap();
    let mut m2 = r.take_output();
    // The proof's flags byte: after the length, e (32), the sealed s (48) and the version.
    m2[LEN_PREFIX + 32 + 48 + 1] ^= FLAG_AES_GCM;
    assert!(matches!(i.handle_input(&m2), Err(SecureError::Noise(_))));
}

proptest::proptest! {
    /// Any bytes fed to either side: an error or progress, never a panic, and never more
    /// bytes used than given.
    #[test]
    fn any_input_is_handled(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let mut r = Handshake::responder(&keys(2)).unwrap();
        if let Ok(n) = r.handle_input(&data) { proptest::prop_assert!(n <= data.len()); }
        let mut i = Handshake::initiator(&keys(1), None).unwrap();
        if let Ok(n) = i.handle_input(&data) { proptest::prop_assert!(n <= data.len()); }
    }
}
