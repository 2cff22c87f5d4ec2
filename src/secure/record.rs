//! Records: after the handshake, the byte stream is a sequence of records, each a 2-byte
//! big-endian length and that many bytes of AEAD ciphertext with its 16-byte tag (secure.md
//! section 3). Each direction numbers its records from 0 (the AEAD nonce), so a record
//! tampered with, replayed, dropped or moved fails authentication.

use snow::types::Cipher;
use zeroize::Zeroizing;

use super::{SecureError, LEN_PREFIX, MAX_PLAIN, MAX_RECORD, TAG_LEN};

/// One session's record layer: seals what this side sends, opens what the peer sent.
pub struct Transport {
    noise: snow::TransportState,
}

impl Transport {
    pub(super) fn new(noise: snow::TransportState) -> Transport {
        Transport { noise }
    }

    /// Appends to `out` the records carrying `plain` (one per [`MAX_PLAIN`] bytes).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        for part in plain.chunks(MAX_PLAIN) {
            let at = out.len();
            let len = part.len() + TAG_LEN;
            out.resize(at + LEN_PREFIX + len, 0);
            let (head, body) = out
                .get_mut(at..)
                .unwrap_or_default()
                .split_at_mut(LEN_PREFIX);
            head.copy_from_slice(&(len as u16).to_be_bytes());
            match self.noise.write_message(part, body) {
                Ok(n) if n == len => {}
                _ => {
                    out.truncate(at);
                    return Err(SecureError::Noise("cannot seal a record"));
                }
            }
        }
        Ok(())
    }

    /// Opens the body of one record (ciphertext and tag, without the length prefix) into
    /// `out`, which must have room for `body.len() - TAG_LEN` bytes. Returns the plaintext's
    /// length. Any failure means the stream was altered: close the connection.
    pub fn open(&mut self, body: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        if body.len() < TAG_LEN || out.len() < body.len() - TAG_LEN {
            return Err(SecureError::BadRecord);
        }
        self.noise
            .read_message(body, out)
            .map_err(|_| SecureError::Tampered)
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
    /// The key of the records the initiator sends.
    pub initiator_to_responder: Zeroizing<[u8; 32]>,
    /// The key of the records the responder sends.
    pub responder_to_initiator: Zeroizing<[u8; 32]>,
}

impl KeyLogEntry {
    pub(super) fn new(ephemeral: [u8; 32], i2r: [u8; 32], r2i: [u8; 32]) -> KeyLogEntry {
        KeyLogEntry {
            ephemeral,
            initiator_to_responder: Zeroizing::new(i2r),
            responder_to_initiator: Zeroizing::new(r2i),
        }
    }
}

/// The key log line of a session: `PSWP2 <ephemeral> <i2r key> <r2i key>`, each 64 hex digits.
pub fn keylog_line(k: &KeyLogEntry) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "PSWP2 {} {} {}",
        hex::encode(k.ephemeral),
        hex::encode(*k.initiator_to_responder),
        hex::encode(*k.responder_to_initiator)
    ))
}

/// Parses a key log line (None for anything else: comments, other programs' lines).
pub fn parse_keylog_line(line: &str) -> Option<KeyLogEntry> {
    let mut w = line.split_whitespace();
    if w.next()? != "PSWP2" {
        return None;
    }
    let mut keys = [[0u8; 32]; 3];
    for k in keys.iter_mut() {
        hex::decode_to_slice(w.next()?, k).ok()?;
    }
    if w.next().is_some() {
        return None;
    }
    Some(KeyLogEntry::new(keys[0], keys[1], keys[2]))
}

/// Opens one direction's records with a logged key: what a decoder given a key log does.
pub struct RecordOpener {
    cipher: Box<dyn Cipher>,
    nonce: u64,
}

impl RecordOpener {
    /// An opener for the direction whose key is `key`, from its first record.
    pub fn new(key: &[u8; 32]) -> Option<RecordOpener> {
        use snow::resolvers::CryptoResolver;
        // The same implementation the sessions use (ring's, as snow's Builder picks it).
        let mut cipher = snow::resolvers::RingResolver
            .resolve_cipher(&snow::params::CipherChoice::ChaChaPoly)?;
        cipher.set(key);
        Some(RecordOpener { cipher, nonce: 0 })
    }

    /// Opens the next record's body; the plaintext, or None when it does not authenticate.
    pub fn open(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < TAG_LEN {
            return None;
        }
        let mut out = vec![0u8; body.len() - TAG_LEN];
        let n = self.cipher.decrypt(self.nonce, &[], body, &mut out).ok()?;
        self.nonce += 1;
        out.truncate(n);
        Some(out)
    }
}
