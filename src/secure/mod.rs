//! The secure session every wire connection runs before its first frame (spec:
//! `protocol-spec/secure.md`): a Noise XX handshake in which each side proves the identity key
//! its node ID is derived from, then AEAD records.
//!
//! Sans-IO, like the protocol cores: [`Handshake`] is fed the bytes that arrived and returns
//! the bytes to send; [`Transport`] seals and opens records in caller buffers. The reactor
//! (`crate::net::secure_io`) only moves bytes. Randomness (the ephemeral keys) comes from
//! `snow`'s resolver; tests and vectors fix it.
//!
//! Cryptography is `snow`'s (a vetted Noise implementation) over vetted primitives
//! (curve25519-dalek, sha2, ring; `primitives.rs` hands them to snow so that every key is
//! wiped when dropped) and ed25519-dalek's; this module only chooses the pattern and checks
//! the identity proof.

mod handshake;
mod primitives;
mod record;

pub use handshake::{Handshake, Outcome, Peer, Session};
pub use primitives::{AeadKey, Wiped};
pub use record::{
    keylog_line, parse_keylog_line, record_len, Cipher, KeyLogEntry, RecordOpener, Transport,
};

use crate::id::Id;
use crate::identity::{self, Identity, PUBLIC_LEN, SIGNATURE_LEN};

/// The Noise protocol name of the handshake. Its own AEAD (ChaCha20-Poly1305: constant-time
/// on any CPU) only seals the two identity proofs; the records after it use the cipher both
/// sides' proofs agree on ([`Cipher`], secure.md section 3).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Mixed into the handshake hash by both sides: a peer speaking anything else fails the
/// handshake instead of agreeing on a different protocol.
pub const PROLOGUE: &[u8] = b"PeerShare PSWP 3";
/// The wire protocol version this session carries.
pub const VERSION: u8 = 3;
/// Identity proof flag: this side seals and opens AES-256-GCM in hardware (secure.md
/// section 2). Records use AES-256-GCM only when both sides set it.
pub const FLAG_AES_GCM: u8 = 0x01;
/// The first handshake message's payload: the protocol's name and version, in clear (nothing
/// is secret before the first DH), so that a capture or a dissector can tell what it sees.
pub const HELLO: [u8; 5] = [b'P', b'S', b'W', b'P', VERSION];
/// Bytes of the length prefix of every handshake message and record.
pub const LEN_PREFIX: usize = 2;
/// The AEAD tag.
pub const TAG_LEN: usize = 16;
/// Largest Noise message, so largest record body (ciphertext and tag).
pub const MAX_RECORD: usize = 65535;
/// Largest plaintext a record carries.
pub const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;
/// The identity payload: version (1), flags (1), Ed25519 public key (32), signature (64).
pub const PAYLOAD_LEN: usize = 2 + PUBLIC_LEN + SIGNATURE_LEN;
/// Where the identity key starts in the payload.
const KEY_AT: usize = 2;
/// What the identity key signs: this context, then the Noise static public key. The context
/// keeps the signature from meaning anything anywhere else (libp2p's noise spec does the same).
pub const SIG_CONTEXT: &[u8] = b"peershare-noise-static-key:";
/// The Noise messages' exact sizes (without the length prefix): e + HELLO; e, encrypted s and
/// payload; encrypted s and payload.
pub const MSG1_LEN: usize = 32 + HELLO.len();
/// See [`MSG1_LEN`].
pub const MSG2_LEN: usize = 32 + (32 + TAG_LEN) + (PAYLOAD_LEN + TAG_LEN);
/// See [`MSG1_LEN`].
pub const MSG3_LEN: usize = (32 + TAG_LEN) + (PAYLOAD_LEN + TAG_LEN);

/// Why a session could not be set up or went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureError {
    /// The peer speaks an earlier wire protocol: 1 (plaintext; its first bytes are a PSWP v1
    /// frame) or 2 (its HELLO names version 2).
    OldVersion(u8),
    /// A handshake message of the wrong size, or a HELLO naming another protocol or version.
    BadHandshake(&'static str),
    /// The Noise handshake failed (a bad DH value or a message that does not authenticate).
    Noise(&'static str),
    /// The identity payload is malformed or its signature does not verify.
    BadIdentity(&'static str),
    /// The peer proved a different node ID from the one dialled.
    WrongPeer {
        /// The node ID dialled.
        expected: Id,
        /// The node ID the peer proved.
        got: Id,
    },
    /// A record failed authentication: tampered, replayed, reordered or truncated.
    Tampered,
    /// A record's length prefix is impossible (shorter than a tag).
    BadRecord,
    /// The peer's HANDSHAKE frame (wire.md 4.2) names another node ID than it proved.
    ClaimedOtherId {
        /// The ID its identity proof proved.
        proven: Id,
        /// The ID its HANDSHAKE frame named.
        claimed: Id,
    },
}

impl std::fmt::Display for SecureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecureError::OldVersion(1) => write!(
                f,
                "the peer speaks wire protocol version 1 (plaintext); this node speaks version \
                 {VERSION} (encrypted, secure.md) only: the peer must be upgraded"
            ),
            SecureError::OldVersion(v) => write!(
                f,
                "the peer speaks wire protocol version {v}; this node speaks version {VERSION} \
                 only: the peer must be upgraded"
            ),
            SecureError::BadHandshake(w) => write!(f, "bad handshake: {w}"),
            SecureError::Noise(w) => write!(f, "handshake failed: {w}"),
            SecureError::BadIdentity(w) => write!(f, "bad identity proof: {w}"),
            SecureError::WrongPeer { expected, got } => write!(
                f,
                "the peer proved node ID {got}, not {expected} which was dialled: hung up"
            ),
            SecureError::Tampered => write!(
                f,
                "a record failed authentication (tampered, replayed, reordered or truncated)"
            ),
            SecureError::BadRecord => write!(f, "a record length shorter than its tag"),
            SecureError::ClaimedOtherId { proven, claimed } => write!(
                f,
                "the peer proved node ID {proven} but its HANDSHAKE frame claims {claimed}: refused"
            ),
        }
    }
}

impl std::error::Error for SecureError {}

/// This node's keys for sessions: its identity, and the Noise static key it proves with it.
pub struct LocalKeys {
    identity: Identity,
    /// X25519 secret; zeroized on drop, boxed so that moving the keys leaves no copy.
    static_secret: Box<zeroize::Zeroizing<[u8; 32]>>,
    payload: [u8; PAYLOAD_LEN],
}

/// Whether this CPU seals and opens AES-256-GCM in hardware (AES and carry-less multiply
/// instructions), where ring's AES-GCM is several times faster than ChaCha20-Poly1305.
/// Without them ring's AES is constant-time software, slower than ChaCha: then say no.
pub fn aes_gcm_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl LocalKeys {
    /// Keys from an identity and a Noise static secret (the node makes a fresh one at each
    /// start: it is only ever used under the identity's signature, which is what peers trust).
    pub fn new(identity: Identity, static_secret: [u8; 32]) -> Result<LocalKeys, SecureError> {
        let static_secret = Box::new(zeroize::Zeroizing::new(static_secret));
        let public = static_public(static_secret.as_ref())?;
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[0] = VERSION;
        payload[1] = if aes_gcm_in_hardware() {
            FLAG_AES_GCM
        } else {
            0
        };
        payload[KEY_AT..KEY_AT + PUBLIC_LEN].copy_from_slice(&identity.public());
        payload[KEY_AT + PUBLIC_LEN..].copy_from_slice(&identity.sign(&signed_message(&public)));
        Ok(LocalKeys {
            identity,
            static_secret,
            payload,
        })
    }

    /// Keys with a fresh random static key.
    pub fn generate(identity: Identity) -> Result<LocalKeys, SecureError> {
        let builder = builder()?;
        let kp = builder
            .generate_keypair()
            .map_err(|_| SecureError::Noise("cannot generate a static key"))?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(kp.private.get(..32).unwrap_or(&[0; 32]));
        let mut private = kp.private;
        zeroize::Zeroize::zeroize(&mut private);
        LocalKeys::new(identity, *secret)
    }

    /// A copy whose identity proof names another identity key (keeping this side's
    /// signature): what a node claiming someone else's ID sends. It cannot verify; for tests
    /// and the conformance suite.
    pub fn claiming_identity_key(mut self, public: [u8; PUBLIC_LEN]) -> LocalKeys {
        self.payload[KEY_AT..KEY_AT + PUBLIC_LEN].copy_from_slice(&public);
        self
    }

    /// The same keys offering AES-256-GCM for records or not, whatever the CPU has: for
    /// tests, vectors and benchmarks of either cipher (the flag is not signed: the Noise
    /// handshake authenticates the whole payload).
    pub fn offering_aes_gcm(mut self, offer: bool) -> LocalKeys {
        self.payload[1] = if offer { FLAG_AES_GCM } else { 0 };
        self
    }

    /// This node's ID.
    pub fn node_id(&self) -> Id {
        self.identity.node_id()
    }

    /// The identity payload sent in the handshake.
    pub fn payload(&self) -> &[u8; PAYLOAD_LEN] {
        &self.payload
    }
}

/// What the identity key signs for a Noise static public key.
pub fn signed_message(static_public: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_CONTEXT.len() + 32);
    m.extend_from_slice(SIG_CONTEXT);
    m.extend_from_slice(static_public);
    m
}

/// Checks an identity payload against the Noise static key the handshake authenticated, and
/// returns the peer it proves and its flags ([`FLAG_AES_GCM`]; unknown bits are ignored, so
/// that later versions can add some).
pub fn check_payload(payload: &[u8], remote_static: &[u8]) -> Result<(Peer, u8), SecureError> {
    if payload.len() != PAYLOAD_LEN {
        return Err(SecureError::BadIdentity("payload is not 98 bytes"));
    }
    if payload.first() != Some(&VERSION) {
        return Err(SecureError::BadIdentity("unknown payload version"));
    }
    let flags = payload.get(1).copied().unwrap_or(0);
    let mut key = [0u8; PUBLIC_LEN];
    key.copy_from_slice(
        payload
            .get(KEY_AT..KEY_AT + PUBLIC_LEN)
            .unwrap_or(&[0; PUBLIC_LEN]),
    );
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(
        payload
            .get(KEY_AT + PUBLIC_LEN..)
            .unwrap_or(&[0; SIGNATURE_LEN]),
    );
    let s: [u8; 32] = remote_static
        .try_into()
        .map_err(|_| SecureError::BadIdentity("no static key"))?;
    if !identity::verify(&key, &signed_message(&s), &sig) {
        return Err(SecureError::BadIdentity(
            "the signature over the Noise static key does not verify",
        ));
    }
    let peer = Peer {
        node_id: identity::node_id_of(&key),
        identity_key: key,
    };
    Ok((peer, flags))
}

fn builder() -> Result<snow::Builder<'static>, SecureError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|_| SecureError::Noise("unknown Noise parameters"))?;
    let resolver = Box::new(primitives::WipingResolver);
    Ok(snow::Builder::with_resolver(params, resolver).prologue(PROLOGUE))
}

/// The X25519 public key of a secret (RFC 7748 base-point multiplication, clamped), by the
/// curve crate snow itself uses.
fn static_public(secret: &[u8; 32]) -> Result<[u8; 32], SecureError> {
    Ok(curve25519_dalek::montgomery::MontgomeryPoint::mul_base_clamped(*secret).to_bytes())
}

#[cfg(test)]
mod tests;
