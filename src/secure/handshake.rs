//! The Noise XX handshake as a state machine fed bytes (secure.md section 2).
//!
//! ```text
//!  initiator (dials)                               responder (accepts)
//!  -> e, HELLO "PSWP" 3                 (msg1, 37 bytes)
//!  <- e, ee, s, es, identity payload    (msg2, 194 bytes)
//!  -> s, se, identity payload           (msg3, 162 bytes)
//! ```
//!
//! The identity payloads also carry each side's flags; the records' cipher is the one both
//! offer ([`Cipher`]).
//!
//! Each message travels behind a 2-byte big-endian length. The machine consumes exactly the
//! handshake's bytes, so what follows msg3 in the same read (the first records) is left to
//! the caller.

use snow::HandshakeState;
use zeroize::Zeroize;

use super::primitives::Wiped;
use super::record::{Cipher, KeyLogEntry, Transport};
use super::{
    builder, check_payload, LocalKeys, SecureError, FLAG_AES_GCM, HELLO, LEN_PREFIX, MSG1_LEN,
    MSG2_LEN, MSG3_LEN, PAYLOAD_LEN,
};
use crate::id::Id;
use crate::identity::PUBLIC_LEN;

/// The peer a handshake proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node ID: SHA-256 of `identity_key`.
    pub node_id: Id,
    /// Its Ed25519 identity public key.
    pub identity_key: [u8; PUBLIC_LEN],
}

/// Where a handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting for bytes (or for its output to be sent).
    InProgress,
    /// Done: [`Handshake::into_session`] gives the session.
    Finished,
    /// (Responder only.) The peer opened with a plaintext PROBE or RELAY frame, the two
    /// frames allowed before a session (secure.md section 5): the connection is not a
    /// session; [`Handshake::take_buffered`] gives back the bytes read.
    Plaintext,
}

/// A finished handshake.
pub struct Session {
    /// Who the peer proved to be.
    pub peer: Peer,
    /// The record layer.
    pub transport: Transport,
    /// The session keys, for `PEERSHARE_KEYLOG`.
    pub keys: KeyLogEntry,
}

/// One side of a handshake.
pub struct Handshake {
    /// snow's state, boxed once and never moved: it holds the chaining key inline, which
    /// [`Wiped`] zeroes when the handshake ends or fails.
    noise: Option<Box<Wiped<HandshakeState>>>,
    initiator: bool,
    expect: Option<Id>,
    payload: [u8; PAYLOAD_LEN],
    /// The message being received, its length prefix included.
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Handshake messages written or read so far (0 to 3).
    step: u8,
    peer: Option<Peer>,
    /// The flags of the peer's identity payload, once read.
    peer_flags: u8,
    outcome: Outcome,
    /// The initiator's ephemeral public key: the key log's session name.
    ephemeral: [u8; 32],
}

/// Type bytes of the plaintext frames a responder accepts before a session (wire.md 4.18).
const PROBE: u8 = 0x11;
const RELAY: u8 = 0x12;
/// The type byte of a PSWP v1 HANDSHAKE frame.
const V1_HANDSHAKE: u8 = 0x01;

impl Handshake {
    /// The dialing side; `expect`, when known, is the node ID it means to reach: any other
    /// peer is hung up on.
    pub fn initiator(local: &LocalKeys, expect: Option<Id>) -> Result<Handshake, SecureError> {
        Handshake::start(local, true, expect, None)
    }

    /// The accepting side.
    pub fn responder(local: &LocalKeys) -> Result<Handshake, SecureError> {
        Handshake::start(local, false, None, None)
    }

    /// A side with a fixed ephemeral secret: test vectors only (a fixed ephemeral key makes
    /// every session of that side decryptable by whoever knows it).
    pub fn with_fixed_ephemeral(
        local: &LocalKeys,
        initiator: bool,
        expect: Option<Id>,
        ephemeral: &[u8; 32],
    ) -> Result<Handshake, SecureError> {
        Handshake::start(local, initiator, expect, Some(ephemeral))
    }

    fn start(
        local: &LocalKeys,
        initiator: bool,
        expect: Option<Id>,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<Handshake, SecureError> {
        let mut b = builder()?.local_private_key(&local.static_secret[..]);
        if let Some(e) = ephemeral {
            b = b.fixed_ephemeral_key_for_testing_only(e);
        }
        let noise = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(|_| SecureError::Noise("cannot set up the handshake"))?;
        let mut h = Handshake {
            noise: Some(Box::new(Wiped::new(noise))),
            initiator,
            expect,
            payload: *local.payload(),
            inbuf: Vec::new(),
            out: Vec::new(),
            step: 0,
            peer: None,
            peer_flags: 0,
            outcome: Outcome::InProgress,
            ephemeral: [0; 32],
        };
        if initiator {
            let msg = h.write(&HELLO, MSG1_LEN)?;
            h.ephemeral
                .copy_from_slice(msg.get(..32).unwrap_or(&[0; 32]));
        }
        Ok(h)
    }

    /// Where it stands.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The bytes to send now (empty when none).
    #[must_use]
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether bytes wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// After [`Outcome::Plaintext`]: the bytes consumed so far, which belong to the frame.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inbuf)
    }

    /// The size of the message expected next, or None when it is this side's turn or done.
    fn expected_len(&self) -> Option<usize> {
        match (self.initiator, self.step) {
            (false, 0) => Some(MSG1_LEN),
            (true, 1) => Some(MSG2_LEN),
            (false, 2) => Some(MSG3_LEN),
            _ => None,
        }
    }

    /// Feeds bytes that arrived; returns how many belong to the handshake (the rest, after
    /// the last message, are records). An error ends the connection.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, SecureError> {
        let mut used = 0;
        while self.outcome == Outcome::InProgress {
            let Some(want) = self.expected_len() else {
                break;
            };
            let rest = data.get(used..).unwrap_or(&[]);
            if rest.is_empty() {
                break;
            }
            // Up to the length prefix first, then up to the end of the message.
            let need = if self.inbuf.len() < LEN_PREFIX {
                LEN_PREFIX - self.inbuf.len()
            } else {
                LEN_PREFIX + want - self.inbuf.len()
            };
            // A PSWP v1 frame starts with 00 00 (a u32 length under 64 KiB): to tell a v1
            // HANDSHAKE from a plaintext PROBE or RELAY, its type byte (offset 4) is needed.
            let v1 = self.inbuf.get(..LEN_PREFIX) == Some(&[0, 0]);
            let need = if v1 { 5 - self.inbuf.len() } else { need };
            let take = need.min(rest.len());
            self.inbuf
                .extend_from_slice(rest.get(..take).unwrap_or(&[]));
            used += take;
            if self.inbuf.len() == LEN_PREFIX {
                let len = u16::from_be_bytes([self.inbuf[0], self.inbuf[1]]) as usize;
                if len == 0 {
                    continue; // 00 00: a v1 frame, classified once its type byte is here
                }
                if len != want {
                    return self.fail(SecureError::BadHandshake(
                        "a handshake message of the wrong size",
                    ));
                }
            }
            if v1 {
                if self.inbuf.len() < 5 {
                    continue;
                }
                let kind = self.inbuf.get(4).copied();
                if !self.initiator && self.step == 0 && matches!(kind, Some(PROBE | RELAY)) {
                    self.outcome = Outcome::Plaintext;
                    self.noise = None;
                    return Ok(used);
                }
                if !self.initiator && kind != Some(V1_HANDSHAKE) {
                    return self.fail(SecureError::BadHandshake("not a PSWP handshake"));
                }
                // A v1 HANDSHAKE, or (answering our msg1) a v1 node's ERROR frame.
                return self.fail(SecureError::OldVersion(1));
            }
            if self.inbuf.len() == LEN_PREFIX + want {
                let msg = std::mem::take(&mut self.inbuf);
                self.receive(msg.get(LEN_PREFIX..).unwrap_or(&[]))?;
            }
        }
        Ok(used)
    }

    /// Processes one complete handshake message.
    fn receive(&mut self, msg: &[u8]) -> Result<(), SecureError> {
        let mut payload = [0u8; 256];
        let Some(noise) = self.noise.as_mut() else {
            return Err(SecureError::Noise("handshake already failed"));
        };
        let n = match noise.read_message(msg, &mut payload) {
            Ok(n) => n,
            Err(_) => return self.fail(SecureError::Noise("a message did not authenticate")),
        };
        let payload = payload.get(..n).unwrap_or(&[]);
        self.step += 1;
        if self.step == 1 {
            // Responder, msg1: the peer's ephemeral key and HELLO.
            if payload != HELLO {
                return self.fail(match *payload {
                    [b'P', b'S', b'W', b'P', v] if v < super::VERSION => SecureError::OldVersion(v),
                    _ => SecureError::BadHandshake("HELLO does not name PSWP version 3"),
                });
            }
            self.ephemeral
                .copy_from_slice(msg.get(..32).unwrap_or(&[0; 32]));
            let own = self.payload;
            self.write(&own, MSG2_LEN)?;
            return Ok(());
        }
        let remote = noise.get_remote_static().unwrap_or(&[]).to_vec();
        let (peer, flags) = match check_payload(payload, &remote) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        self.peer_flags = flags;
        if let Some(expected) = self.expect {
            if expected != peer.node_id {
                return self.fail(SecureError::WrongPeer {
                    expected,
                    got: peer.node_id,
                });
            }
        }
        self.peer = Some(peer);
        if self.initiator {
            let own = self.payload;
            self.write(&own, MSG3_LEN)?;
        }
        self.outcome = Outcome::Finished;
        Ok(())
    }

    /// Writes this side's next message (`len` bytes) behind its length prefix.
    fn write(&mut self, payload: &[u8], len: usize) -> Result<Vec<u8>, SecureError> {
        // snow wants room for a tag even where the payload travels in clear (msg1).
        let mut msg = vec![0u8; len + super::TAG_LEN];
        let Some(noise) = self.noise.as_mut() else {
            return Err(SecureError::Noise("handshake already failed"));
        };
        match noise.write_message(payload, &mut msg) {
            Ok(n) if n == len => {}
            _ => return self.fail(SecureError::Noise("cannot write a handshake message")),
        }
        msg.truncate(len);
        self.step += 1;
        self.out.extend_from_slice(&(len as u16).to_be_bytes());
        self.out.extend_from_slice(&msg);
        Ok(msg)
    }

    fn fail<T>(&mut self, e: SecureError) -> Result<T, SecureError> {
        self.noise = None;
        Err(e)
    }

    /// The session, once [`Outcome::Finished`].
    pub fn into_session(mut self) -> Result<Session, SecureError> {
        let (Some(mut noise), Some(peer), Outcome::Finished) =
            (self.noise.take(), self.peer, self.outcome)
        else {
            return Err(SecureError::Noise("the handshake is not finished"));
        };
        // Both proofs were authenticated by the handshake (a man in the middle who flipped
        // a flag would have failed it), so both sides reach the same choice.
        let both = self.payload.get(1).copied().unwrap_or(0) & self.peer_flags & FLAG_AES_GCM;
        let cipher = if both != 0 {
            Cipher::AesGcm
        } else {
            Cipher::ChaChaPoly
        };
        let (mut i2r, mut r2i) = noise.dangerously_get_raw_split();
        drop(noise);
        let keys = KeyLogEntry::new(self.ephemeral, cipher, i2r, r2i);
        i2r.zeroize();
        r2i.zeroize();
        let (send, recv) = if self.initiator {
            (&keys.initiator_to_responder, &keys.responder_to_initiator)
        } else {
            (&keys.responder_to_initiator, &keys.initiator_to_responder)
        };
        let transport = Transport::new(cipher, send, recv);
        Ok(Session {
            peer,
            transport,
            keys,
        })
    }
}
