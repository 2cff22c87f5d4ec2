//! The primitives of every session, handed to `snow` through its resolver interface so that
//! each secret is wiped from memory when it is dropped (snow 0.9 and ring wipe nothing):
//! the static and ephemeral X25519 keys, the handshake's chaining key, hash state and AEAD
//! keys, and the records' two AEAD keys.
//!
//! Nothing cryptographic is written here: X25519 is curve25519-dalek's (what snow's own
//! resolver calls), SHA-256 RustCrypto's `sha2`, ChaCha20-Poly1305 and AES-256-GCM ring's.
//! This module only holds their state in [`Wiped`] and lays out Noise's nonces (secure.md
//! section 3); tests check every primitive against snow's own resolvers byte for byte.
//!
//! What is not covered: copies a primitive makes in its own stack frames while it runs
//! (no Rust library wipes those), and the kernel's socket buffers.

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, DerefMut};

use curve25519_dalek::montgomery::MontgomeryPoint;
use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use sha2::{Digest, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, RingResolver};
use snow::types::{Cipher as NoiseCipher, Dh, Hash, Random};
use zeroize::{Zeroize, Zeroizing};

use super::record::Cipher;
use super::TAG_LEN;

/// A value whose bytes are overwritten with zeros after it is dropped.
///
/// For types with no wipe of their own whose secrets live inline (ring's AEAD keys, sha2's
/// hash state, snow's handshake state with its chaining key): the value's own `Drop` runs
/// first (heap parts it owns are freed by it; put secrets there only in types that wipe
/// themselves), then every byte it occupied is zeroed. A move copies the bytes and leaves
/// the old place unwiped, so secrets that live long are boxed once and never moved.
pub struct Wiped<T>(ManuallyDrop<T>);

impl<T> Wiped<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Wiped<T> {
        Wiped(ManuallyDrop::new(value))
    }
}

impl<T> Deref for Wiped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Wiped<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> Drop for Wiped<T> {
    fn drop(&mut self) {
        // SAFETY: the inner value is dropped exactly once, here, and never used again. Its
        // bytes stay owned by `self` until this function returns; viewed as `MaybeUninit<u8>`
        // (valid for any content, padding included) they may be overwritten.
        unsafe {
            ManuallyDrop::drop(&mut self.0);
            let at = (&mut self.0 as *mut ManuallyDrop<T>).cast::<MaybeUninit<u8>>();
            std::slice::from_raw_parts_mut(at, std::mem::size_of::<T>()).zeroize();
        }
    }
}

/// snow's resolver for this node's sessions: the primitives below, and ring's system random
/// number generator for ephemeral keys (it holds no secret).
pub struct WipingResolver;

impl CryptoResolver for WipingResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        RingResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::SHA256 => Some(Box::new(Sha256Hash(Wiped::new(Sha256::new())))),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn NoiseCipher>> {
        let cipher = match choice {
            CipherChoice::ChaChaPoly => Cipher::ChaChaPoly,
            CipherChoice::AESGCM => Cipher::AesGcm,
        };
        Some(Box::new(AeadKey::new(cipher)))
    }
}

/// Noise's `25519`: an X25519 key pair whose secret is zeroized on drop.
#[derive(Default)]
struct X25519 {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl X25519 {
    fn derive_public(&mut self) {
        self.public = MontgomeryPoint::mul_base_clamped(*self.secret).to_bytes();
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow hands exactly `priv_len` bytes (it checks the key's length at build time).
        let n = privkey.len().min(32);
        self.secret.fill(0);
        self.secret[..n].copy_from_slice(&privkey[..n]);
        self.derive_public();
    }

    fn generate(&mut self, rng: &mut dyn Random) {
        rng.fill_bytes(&mut self.secret[..]);
        self.derive_public();
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.secret[..]
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let (Some(theirs), Some(out)) = (pubkey.get(..32), out.get_mut(..32)) else {
            return Err(snow::Error::Dh);
        };
        let mut point = [0u8; 32];
        point.copy_from_slice(theirs);
        let shared = Zeroizing::new(MontgomeryPoint(point).mul_clamped(*self.secret).to_bytes());
        out.copy_from_slice(&shared[..]);
        Ok(())
    }
}

/// Noise's `SHA256`, its running state wiped on drop. (HMAC and HKDF are snow's, built on it.)
struct Sha256Hash(Wiped<Sha256>);

impl Hash for Sha256Hash {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        Digest::reset(&mut *self.0);
    }

    fn input(&mut self, data: &[u8]) {
        Digest::update(&mut *self.0, data);
    }

    fn result(&mut self, out: &mut [u8]) {
        let mut digest = Digest::finalize_reset(&mut *self.0);
        if let Some(out) = out.get_mut(..32) {
            out.copy_from_slice(&digest);
        }
        digest.as_mut_slice().zeroize();
    }
}

/// One AEAD key (one direction of a session, or the handshake's current key), wiped on drop.
/// The key schedule is boxed so that moving the holder (a session is moved a few times
/// before it settles) copies a pointer, not the key.
pub struct AeadKey {
    cipher: Cipher,
    key: Option<Box<Wiped<LessSafeKey>>>,
}

impl AeadKey {
    /// An AEAD with no key yet (snow sets one with `set`).
    pub fn new(cipher: Cipher) -> AeadKey {
        AeadKey { cipher, key: None }
    }

    /// An AEAD keyed with `key`.
    pub fn keyed(cipher: Cipher, key: &[u8; 32]) -> AeadKey {
        let mut k = AeadKey::new(cipher);
        k.set(key);
        k
    }

    /// Noise's nonce for this cipher: 4 zero bytes, then the counter, little-endian for
    /// ChaChaPoly and big-endian for AESGCM.
    fn nonce(&self, n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&match self.cipher {
            Cipher::ChaChaPoly => n.to_le_bytes(),
            Cipher::AesGcm => n.to_be_bytes(),
        });
        Nonce::assume_unique_for_key(bytes)
    }

    /// Seals `plaintext` into `out`, which needs room for it and the tag; the bytes written
    /// (`plaintext.len() + TAG_LEN`), or None without a key or room.
    pub fn seal(&self, nonce: u64, ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> Option<usize> {
        let n = plaintext.len();
        let (body, tag_out) = out.get_mut(..n + TAG_LEN)?.split_at_mut(n);
        body.copy_from_slice(plaintext);
        let tag = self.seal_in_place(nonce, ad, body)?;
        tag_out.copy_from_slice(&tag);
        Some(n + TAG_LEN)
    }

    /// Seals the plaintext `in_out` where it lies; its tag, or None without a key.
    pub fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let key = self.key.as_ref()?;
        let tag = key
            .seal_in_place_separate_tag(self.nonce(nonce), Aad::from(ad), in_out)
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Opens `ciphertext` (with its tag) into `out`, which needs room for the plaintext only
    /// (snow's ring cipher wants room for the tag too, or copies the record to a new buffer).
    pub fn open(&self, nonce: u64, ad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Option<usize> {
        let plain = ciphertext.len().checked_sub(TAG_LEN)?;
        let (body, tag) = ciphertext.split_at(plain);
        let tag: &[u8; TAG_LEN] = tag.try_into().ok()?;
        let out = out.get_mut(..plain)?;
        out.copy_from_slice(body);
        self.open_in_place(nonce, ad, out, tag)
    }

    /// Opens the ciphertext `in_out` where it lies, its tag given apart (a record read
    /// from the socket straight into its final buffer); the plaintext's length.
    pub fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Option<usize> {
        let Some(key) = self.key.as_ref() else {
            in_out.fill(0);
            return None;
        };
        let tag = Tag::from(*tag);
        match key.open_in_place_separate_tag(self.nonce(nonce), Aad::from(ad), tag, in_out, 0..) {
            Ok(p) => Some(p.len()),
            Err(_) => {
                // Nothing unauthenticated is left for a caller to mistake for plaintext.
                in_out.fill(0);
                None
            }
        }
    }
}

impl NoiseCipher for AeadKey {
    fn name(&self) -> &'static str {
        self.cipher.name()
    }

    fn set(&mut self, key: &[u8]) {
        let algorithm = match self.cipher {
            Cipher::ChaChaPoly => &aead::CHACHA20_POLY1305,
            Cipher::AesGcm => &aead::AES_256_GCM,
        };
        // Both take exactly 32 bytes, which snow always hands; anything else leaves no key
        // and every seal and open then fails.
        self.key = UnboundKey::new(algorithm, key)
            .ok()
            .map(|k| Box::new(Wiped::new(LessSafeKey::new(k))));
    }

    fn encrypt(&self, nonce: u64, ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        // snow reads a short count as a failure (and the peer fails to open what follows).
        self.seal(nonce, ad, plaintext, out).unwrap_or(0)
    }

    fn decrypt(
        &self,
        nonce: u64,
        ad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        self.open(nonce, ad, ciphertext, out)
            .ok_or(snow::Error::Decrypt)
    }
}

#[cfg(test)]
#[path = "primitives_tests.rs"]
mod tests;
