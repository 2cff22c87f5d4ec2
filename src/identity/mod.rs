//! A node's long-term identity (spec: `protocol-spec/secure.md`, "Identity"): an Ed25519 key
//! pair whose public key's SHA-256 is the node ID. Nobody can use an ID without its key,
//! because every wire session proves the key (`crate::secure`).
//!
//! This module is pure (no files): [`keyfile`] keeps the key in the data dir.

pub mod keyfile;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::id::Id;

/// Length of an Ed25519 public key, secret seed and signature.
pub const PUBLIC_LEN: usize = 32;
/// Length of the secret seed.
pub const SECRET_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// A node's identity key pair. The secret is zeroized when this is dropped (`SigningKey`
/// does it: ed25519-dalek's `zeroize` feature, on by default).
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Identity {
        let mut seed = zeroize::Zeroizing::new([0u8; SECRET_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        Identity::from_secret(&seed)
    }

    /// The identity of a 32-byte secret seed (fixed test keys, or the key file's).
    pub fn from_secret(seed: &[u8; SECRET_LEN]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for the key file only.
    pub fn secret(&self) -> zeroize::Zeroizing<[u8; SECRET_LEN]> {
        zeroize::Zeroizing::new(self.key.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        self.key.verifying_key().to_bytes()
    }

    /// The node ID: SHA-256 of the public key.
    pub fn node_id(&self) -> Id {
        node_id_of(&self.public())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(msg).to_bytes()
    }
}

/// The node ID of an Ed25519 public key: its SHA-256. Why a hash and not the key itself: the
/// ID space must be uniform for Kademlia's XOR metric, and a hash is, whatever the key's
/// encoding (Syncthing's device ID is likewise the hash of its certificate).
pub fn node_id_of(public: &[u8; PUBLIC_LEN]) -> Id {
    Id::hash_of(public)
}

/// Whether `sig` is `public`'s signature of `msg`. A key that is not a valid curve point, or
/// a weak key, fails (strict verification: no signature malleability).
pub fn verify(public: &[u8; PUBLIC_LEN], msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_the_hash_of_the_public_key_and_signatures_verify() {
        let a = Identity::from_secret(&[1; 32]);
        assert_eq!(a.node_id(), Id::hash_of(&a.public()));
        let sig = a.sign(b"hello");
        assert!(verify(&a.public(), b"hello", &sig));
        assert!(!verify(&a.public(), b"hellO", &sig));
        let b = Identity::from_secret(&[2; 32]);
        assert!(!verify(&b.public(), b"hello", &sig));
        assert_ne!(a.node_id(), b.node_id());
        assert_eq!(*Identity::from_secret(&a.secret()).secret(), *a.secret());
    }
}
