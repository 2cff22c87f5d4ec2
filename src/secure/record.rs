//! Records: after the handshake, the byte stream is a sequence of records, each a 2-byte
//! big-endian length and that many bytes of AEAD ciphertext with its 16-byte tag (secure.md
//! section 3). Each direction numbers its records from 0 (the AEAD nonce), so a record
//! tampered with, replayed, dropped or moved fails authentication.

use zeroize::Zeroizing;

use super::primitives::AeadKey;
use super::{SecureError, LEN_PREFIX, MAX_PLAIN, MAX_RECORD, TAG_LEN};

/// The AEAD of a session's records, which the two identity proofs agreed on (secure.md
/// section 3): AES-256-GCM when both sides have it in hardware, else ChaCha20-Poly1305.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305 (RFC 8439), Noise's `ChaChaPoly` nonce (4 zero bytes, the record
    /// number as a little-endian u64).
    ChaChaPoly,
    /// AES-256-GCM, Noise's `AESGCM` nonce (4 zero bytes, the record number as a big-endian
    /// u64).
    AesGcm,
}

impl Cipher {
    /// The name the key log and the spec use (Noise's cipher names).
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AESGCM",
        }
    }

    fn from_name(name: &str) -> Option<Cipher> {
        [Cipher::ChaChaPoly, Cipher::AesGcm]
            .into_iter()
            .find(|c| c.name() == name)
    }

    /// One direction's AEAD keyed with `key` (ring's, wiped on drop: [`AeadKey`]). Its
    /// nonce is the record number, in Noise's encoding for this cipher.
    pub fn keyed(self, key: &[u8; 32]) -> AeadKey {
        AeadKey::keyed(self, key)
    }
}

/// The last record number a direction may use: Noise reserves 2^64 - 1, and a session that
/// got there (2^64 records) ends rather than reuse a nonce.
const LAST_NONCE: u64 = u64::MAX - 1;

/// One session's record layer: seals what this side sends, opens what the peer sent.
pub struct Transport {
    cipher: Cipher,
    send: AeadKey,
    recv: AeadKey,
    sent: u64,
    received: u64,
}

impl Transport {
    /// A record layer with the session's two keys: `send` for this side's records, `recv`
    /// for the peer's.
    pub(super) fn new(cipher: Cipher, send: &[u8; 32], recv: &[u8; 32]) -> Transport {
        Transport {
            cipher,
            send: cipher.keyed(send),
            recv: cipher.keyed(recv),
            sent: 0,
            received: 0,
        }
    }

    /// The records' AEAD.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Appends to `out` the records carrying `plain` (one per [`MAX_PLAIN`] bytes).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        for part in plain.chunks(MAX_PLAIN) {
            if self.sent > LAST_NONCE {
                return Err(SecureError::Noise("the session sent its last record"));
            }
            let at = out.len();
            let len = part.len() + TAG_LEN;
            // Written once each (no zeroed room first): prefix, plaintext sealed in place, tag.
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(part);
            let body = out.get_mut(at + LEN_PREFIX..).unwrap_or_default();
            let Some(tag) = self.send.seal_in_place(self.sent, &[], body) else {
                out.truncate(at);
                return Err(SecureError::Noise("cannot seal a record"));
            };
            out.extend_from_slice(&tag);
            self.sent += 1;
        }
        Ok(())
    }

    /// Opens the body of one record (ciphertext and tag, without the length prefix) into
    /// `out`, which must have room for `body.len() - TAG_LEN` bytes. Returns the plaintext's
    /// length. Any failure means the stream was altered: close the connection.
    pub fn open(&mut self, body: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        if body.len() < TAG_LEN || out.len() < body.len() - TAG_LEN || self.received > LAST_NONCE {
            return Err(SecureError::BadRecord);
        }
        let n = self
            .recv
            .open(self.received, &[], body, out)
            .ok_or(SecureError::Tampered)?;
        self.received += 1;
        Ok(n)
    }

    /// Opens the next record whose ciphertext is already in `body` (read there from the
    /// socket), its tag given apart: [`Transport::open`] without the copy. Returns the
    /// plaintext's length (all of `body`).
    pub fn open_in_place(
        &mut self,
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<usize, SecureError> {
        if self.received > LAST_NONCE {
            return Err(SecureError::BadRecord);
        }
        let n = self
            .recv
            .open_in_place(self.received, &[], body, tag)
            .ok_or(SecureError::Tampered)?;
        self.received += 1;
        Ok(n)
    }
}

/// The whole length (prefix included) of the record at the start of `buf`, once its prefix
/// is there. A length below the tag's is an error: no record is that short.
pub fn record_len(buf: &[u8]) -> Result<Option<usize>, SecureError> {
    let Some(&[a, b]) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([a, b]) as usize;
    if len < TAG_LEN {
        return Err(SecureError::BadRecord);
    }
    debug_assert!(len <= MAX_RECORD);
    Ok(Some(LEN_PREFIX + len))
}

/// A session's keys, as `PEERSHARE_KEYLOG` writes them: named by the initiator's ephemeral
/// public key (the first 32 bytes of msg1, which a capture shows), like TLS key logs are by
/// the client random. The keys are zeroized on drop.
pub struct KeyLogEntry {
    /// The initiator's ephemeral public key.
    pub ephemeral: [u8; 32],
    /// The records' AEAD (the handshake's payloads chose it; a capture cannot show it).
    pub cipher: Cipher,
    /// The key of the records the initiator sends.
    pub initiator_to_responder: Zeroizing<[u8; 32]>,
    /// The key of the records the responder sends.
    pub responder_to_initiator: Zeroizing<[u8; 32]>,
}

impl KeyLogEntry {
    pub(super) fn new(
        ephemeral: [u8; 32],
        cipher: Cipher,
        i2r: [u8; 32],
        r2i: [u8; 32],
    ) -> KeyLogEntry {
        KeyLogEntry {
            ephemeral,
            cipher,
            initiator_to_responder: Zeroizing::new(i2r),
            responder_to_initiator: Zeroizing::new(r2i),
        }
    }
}

/// The key log line of a session: `PSWP3 <ephemeral> <i2r key> <r2i key> <cipher>`, the
/// first three 64 hex digits each, the cipher `ChaChaPoly` or `AESGCM`.
pub fn keylog_line(k: &KeyLogEntry) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "PSWP3 {} {} {} {}",
        hex::encode(k.ephemeral),
        hex::encode(*k.initiator_to_responder),
        hex::encode(*k.responder_to_initiator),
        k.cipher.name()
    ))
}

/// Parses a key log line (None for anything else: comments, other programs' lines).
pub fn parse_keylog_line(line: &str) -> Option<KeyLogEntry> {
    let mut w = line.split_whitespace();
    if w.next()? != "PSWP3" {
        return None;
    }
    let mut keys = [[0u8; 32]; 3];
    for k in keys.iter_mut() {
        hex::decode_to_slice(w.next()?, k).ok()?;
    }
    let cipher = Cipher::from_name(w.next()?)?;
    if w.next().is_some() {
        return None;
    }
    Some(KeyLogEntry::new(keys[0], cipher, keys[1], keys[2]))
}

/// Opens one direction's records with a logged key: what a decoder given a key log does.
pub struct RecordOpener {
    cipher: AeadKey,
    nonce: u64,
}

impl RecordOpener {
    /// An opener for the direction whose key is `key`, from its first record.
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> RecordOpener {
        RecordOpener {
            cipher: cipher.keyed(key),
            nonce: 0,
        }
    }

    /// Opens the next record's body; the plaintext, or None when it does not authenticate.
    pub fn open(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < TAG_LEN {
            return None;
        }
        let mut out = vec![0u8; body.len() - TAG_LEN];
        let n = self.cipher.open(self.nonce, &[], body, &mut out)?;
        self.nonce += 1;
        out.truncate(n);
        Some(out)
    }
}
