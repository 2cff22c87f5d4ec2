//! The wiping primitives give the same bytes as snow's own resolvers (so sessions and the
//! spec's vectors are unchanged), and a [`Wiped`] value leaves zeros behind.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::rc::Rc;

use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};

use super::*;

struct Secret {
    bytes: [u8; 48],
    drops: Rc<Cell<u32>>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

#[test]
fn a_wiped_value_is_dropped_once_then_its_bytes_are_zero() {
    let drops = Rc::new(Cell::new(0));
    let mut slot = MaybeUninit::<Wiped<Secret>>::uninit();
    slot.write(Wiped::new(Secret {
        bytes: [0xA5; 48],
        drops: drops.clone(),
    }));
    // SAFETY: the slot was written just above and is dropped once; afterwards its bytes
    // are initialised (zeros written by the drop), so reading them as bytes is sound.
    let after = unsafe {
        assert_eq!(slot.assume_init_ref().bytes, [0xA5; 48]);
        slot.assume_init_drop();
        std::slice::from_raw_parts(
            slot.as_ptr().cast::<u8>(),
            std::mem::size_of::<Wiped<Secret>>(),
        )
        .to_vec()
    };
    assert_eq!(drops.get(), 1, "the inner value's own drop ran once");
    assert!(after.iter().all(|&b| b == 0), "bytes left: {after:?}");
}

fn theirs_cipher(c: Cipher) -> Box<dyn NoiseCipher> {
    let choice = match c {
        Cipher::ChaChaPoly => CipherChoice::ChaChaPoly,
        Cipher::AesGcm => CipherChoice::AESGCM,
    };
    RingResolver.resolve_cipher(&choice).unwrap()
}

#[test]
fn the_aeads_seal_and_open_as_snows_ring_ciphers_do() {
    let mut rng = StdRng::seed_from_u64(7);
    for cipher in [Cipher::ChaChaPoly, Cipher::AesGcm] {
        for len in [0usize, 1, 15, 16, 100, 4096, 65519] {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let nonce = match len % 3 {
                0 => 0,
                1 => rng.gen::<u64>() >> 1,
                _ => u64::MAX - 1,
            };
            let ad: Vec<u8> = (0..len % 40).map(|_| rng.gen()).collect();
            let plain: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let ours = AeadKey::keyed(cipher, &key);
            let mut theirs = theirs_cipher(cipher);
            theirs.set(&key);
            assert_eq!(ours.name(), theirs.name());

            let mut a = vec![0u8; len + TAG_LEN];
            let mut b = vec![0u8; len + TAG_LEN];
            assert_eq!(ours.encrypt(nonce, &ad, &plain, &mut a), len + TAG_LEN);
            assert_eq!(theirs.encrypt(nonce, &ad, &plain, &mut b), len + TAG_LEN);
            assert_eq!(a, b, "{cipher:?} sealed {len} bytes differently");

            // Ours opens into exactly the plaintext's room.
            let mut out = vec![0u8; len];
            assert_eq!(ours.open(nonce, &ad, &b, &mut out), Some(len));
            assert_eq!(out, plain);
            let mut out = vec![0u8; len + TAG_LEN];
            assert_eq!(theirs.decrypt(nonce, &ad, &a, &mut out).unwrap(), len);
            assert_eq!(out[..len], plain[..]);

            // Any flipped bit, another nonce or other associated data: refused, no plaintext.
            let mut bad = a.clone();
            let at = rng.gen_range(0..bad.len());
            bad[at] ^= 1 << rng.gen_range(0..8);
            let mut out = vec![0u8; len];
            assert_eq!(ours.open(nonce, &ad, &bad, &mut out), None);
            assert!(out.iter().all(|&b| b == 0));
            assert!(ours.decrypt(nonce ^ 1, &ad, &a, &mut out).is_err());
            assert!(ours.decrypt(nonce, b"other", &a, &mut out).is_err());
        }
        // Too short to hold a tag, or no room for the plaintext: refused.
        let ours = AeadKey::keyed(cipher, &[1; 32]);
        assert_eq!(ours.open(0, &[], &[0; TAG_LEN - 1], &mut [0; 64]), None);
        let mut sealed = [0u8; 10 + TAG_LEN];
        ours.encrypt(0, &[], &[9; 10], &mut sealed);
        assert_eq!(ours.open(0, &[], &sealed, &mut [0; 9]), None);
        // No key yet: nothing sealed, nothing opened.
        let unkeyed = AeadKey::new(cipher);
        assert_eq!(unkeyed.encrypt(0, &[], b"x", &mut [0; 17]), 0);
        assert_eq!(unkeyed.open(0, &[], &sealed, &mut [0; 10]), None);
    }
}

#[test]
fn x25519_agrees_with_snows_own() {
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let (mut a_key, mut b_key) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut a_key);
        rng.fill_bytes(&mut b_key);
        let mut ours = WipingResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        let mut theirs = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        let mut peer = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        ours.set(&a_key);
        theirs.set(&a_key);
        peer.set(&b_key);
        assert_eq!(ours.pubkey(), theirs.pubkey());
        assert_eq!(ours.privkey(), &a_key[..]);
        let (mut x, mut y, mut z) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        ours.dh(peer.pubkey(), &mut x).unwrap();
        theirs.dh(peer.pubkey(), &mut y).unwrap();
        peer.dh(ours.pubkey(), &mut z).unwrap();
        assert_eq!(x, y);
        assert_eq!(x, z);
    }
    let ours = WipingResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
    assert!(ours.dh(&[0; 31], &mut [0; 32]).is_err());
    assert!(ours.dh(&[9; 32], &mut [0; 31]).is_err());
}

#[test]
fn sha256_hmac_and_hkdf_agree_with_snows_ring_hash() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut ours = WipingResolver.resolve_hash(&HashChoice::SHA256).unwrap();
    let mut theirs = RingResolver.resolve_hash(&HashChoice::SHA256).unwrap();
    assert_eq!(
        (ours.name(), ours.block_len(), ours.hash_len()),
        (theirs.name(), theirs.block_len(), theirs.hash_len())
    );
    for len in [0usize, 1, 55, 56, 64, 1000] {
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        ours.reset();
        ours.input(&data);
        ours.result(&mut a);
        theirs.reset();
        theirs.input(&data);
        theirs.result(&mut b);
        assert_eq!(a, b);

        let mut ck = [0u8; 32];
        rng.fill_bytes(&mut ck);
        let mut outs = [[0u8; 64]; 6];
        let [o1, o2, o3, t1, t2, t3] = &mut outs;
        ours.hkdf(&ck, &data, 3, o1, o2, o3);
        theirs.hkdf(&ck, &data, 3, t1, t2, t3);
        assert_eq!(outs[..3], outs[3..]);
    }
}

#[test]
fn the_resolver_offers_only_what_sessions_use() {
    assert!(WipingResolver.resolve_dh(&DHChoice::Ed448).is_none());
    assert!(WipingResolver.resolve_hash(&HashChoice::Blake2s).is_none());
    assert!(WipingResolver.resolve_rng().is_some());
}
