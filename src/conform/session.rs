//! A wire session with the peer about the test content, and the checks cases share: "the
//! peer hung up with ERROR PROTOCOL_VIOLATION", "the connection is still alive", "it closed
//! without a word".

use std::collections::BTreeSet;

use super::link::{Got, WireLink};
use super::{fail, Ctx, Outcome, ANSWER_WAIT, SILENCE_WAIT};
use crate::id::Id;
use crate::proto::wire::{error_code, error_code_name, Bitfield, Message};

/// An open connection, both HANDSHAKEs exchanged and the peer's BITFIELD received.
pub struct Session {
    /// The connection.
    pub link: WireLink,
    /// The content.
    pub content: Id,
    /// The peer's BITFIELD.
    pub bits: Bitfield,
    /// Chunks the peer announced so far (BITFIELD and HAVE).
    pub offered: BTreeSet<u32>,
}

impl Session {
    /// The content's chunk count, as the peer's BITFIELD says.
    pub fn chunks(&self) -> u32 {
        self.bits.len()
    }

    /// Sends our BITFIELD (we have nothing): the session can now carry every frame.
    pub fn ready(&mut self) -> Result<(), Outcome> {
        let b = Bitfield::new(self.chunks());
        self.link.send(&Message::Bitfield(b)).map_err(fail)
    }

    /// Sends INTERESTED and waits for UNCHOKE, noting HAVEs on the way.
    pub fn unchoked(&mut self) -> Result<(), Outcome> {
        self.link.send(&Message::Interested).map_err(fail)?;
        loop {
            match self.link.recv(ANSWER_WAIT) {
                Got::Frame(Message::Unchoke) => return Ok(()),
                Got::Frame(Message::Have(i)) => {
                    self.offered.insert(i);
                }
                Got::Frame(Message::Peers(_) | Message::KeepAlive) => {}
                other => return Err(unexpected("UNCHOKE after INTERESTED", &other)),
            }
        }
    }

    /// A chunk the peer announced, waiting a little for an offer (HAVE) if it has announced
    /// none yet (a super-seeding peer offers chunks one by one).
    pub fn some_offered(&mut self) -> Result<u32, Outcome> {
        while self.offered.is_empty() {
            match self.link.recv(ANSWER_WAIT) {
                Got::Frame(Message::Have(i)) => {
                    self.offered.insert(i);
                }
                Got::Frame(Message::Peers(_) | Message::KeepAlive | Message::Unchoke) => {}
                other => return Err(unexpected("a BITFIELD bit or HAVE to request", &other)),
            }
        }
        self.offered
            .iter()
            .next()
            .copied()
            .ok_or_else(|| fail("no chunk offered"))
    }
}

/// The content to test with, or a skip.
pub fn content(ctx: &Ctx) -> Result<Id, Outcome> {
    ctx.content
        .ok_or_else(|| Outcome::Skip("no content: give --content ID or --api PORT".into()))
}

/// Connects and sends `first` (usually our HANDSHAKE), nothing else.
pub fn connect(ctx: &Ctx) -> Result<WireLink, Outcome> {
    WireLink::connect(ctx.opts.target, ANSWER_WAIT, &ctx.log).map_err(fail)
}

/// Connects, exchanges HANDSHAKEs for the test content and reads the peer's frames up to
/// its BITFIELD (wire.md section 3, rules 1 and 4: a node holding the manifest sends it at
/// once).
pub fn open(ctx: &mut Ctx) -> Result<Session, Outcome> {
    let content = content(ctx)?;
    open_for(ctx, content)
}

/// [`open`] for another content than the test file (the test folder).
pub fn open_for(ctx: &mut Ctx, content: Id) -> Result<Session, Outcome> {
    let mut link = connect(ctx)?;
    let hs = link.handshake(content);
    link.send(&hs).map_err(fail)?;
    match link.recv(ANSWER_WAIT) {
        Got::Frame(Message::Handshake(h)) => {
            if h.content_id != content {
                return Err(fail(format!(
                    "the peer's HANDSHAKE names content {}, not {}",
                    h.content_id, content
                )));
            }
            ctx.peer_id = Some(h.node_id);
        }
        other => return Err(unexpected("the peer's HANDSHAKE", &other)),
    }
    let mut metadata = false;
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Frame(Message::Metadata { .. }) if !metadata => metadata = true,
            Got::Frame(Message::Peers(_) | Message::KeepAlive) => {}
            Got::Frame(Message::Bitfield(bits)) => {
                let offered = bits.iter_ones().collect();
                return Ok(Session {
                    link,
                    content,
                    bits,
                    offered,
                });
            }
            other => {
                return Err(unexpected(
                    "METADATA or BITFIELD after the HANDSHAKE",
                    &other,
                ))
            }
        }
    }
}

/// Reads until the peer sends ERROR `code` and closes; frames it sent before reading ours
/// are skipped, anything after the ERROR is a failure (wire.md section 4.17).
pub fn expect_error(link: &mut WireLink, code: u16, what: &str) -> Result<(), Outcome> {
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Frame(Message::Error { code: c, .. }) if c == code => break,
            Got::Frame(Message::Error { code: c, text }) => {
                return Err(fail(format!(
                    "{what}: expected ERROR {}, got ERROR {c} {} \"{text}\"",
                    error_code_name(code),
                    error_code_name(c)
                )))
            }
            Got::Frame(_) => {}
            Got::Closed => {
                return Err(fail(format!(
                    "{what}: the peer closed without ERROR {}",
                    error_code_name(code)
                )))
            }
            other => {
                return Err(unexpected(
                    &format!("{what}: ERROR {}", error_code_name(code)),
                    &other,
                ))
            }
        }
    }
    match link.recv(ANSWER_WAIT) {
        Got::Closed => Ok(()),
        other => Err(unexpected(
            &format!("{what}: the connection closed after the ERROR"),
            &other,
        )),
    }
}

/// [`expect_error`] with PROTOCOL_VIOLATION (wire.md section 3: a rule broken).
pub fn expect_violation(link: &mut WireLink, what: &str) -> Result<(), Outcome> {
    expect_error(link, error_code::PROTOCOL_VIOLATION, what)
}

/// Checks that the connection is alive and the peer still talks to us: asks for the first
/// byte of the manifest, which a peer that accepted our HANDSHAKE always holds, and waits
/// for the answer (other frames are skipped).
pub fn expect_alive(link: &mut WireLink, what: &str) -> Result<(), Outcome> {
    link.send(&Message::ManifestRequest {
        offset: 0,
        length: 1,
    })
    .map_err(fail)?;
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Frame(Message::ManifestData { offset: 0, .. }) => return Ok(()),
            Got::Frame(Message::Error { code, text }) => {
                return Err(fail(format!(
                    "{what}: the peer hung up with ERROR {code} {} \"{text}\"",
                    error_code_name(code)
                )))
            }
            Got::Frame(_) => {}
            other => {
                return Err(unexpected(
                    &format!("{what}: the connection to stay open (MANIFEST_DATA)"),
                    &other,
                ))
            }
        }
    }
}

/// Waits until the peer closes without sending ERROR (or anything but `allowed` frames).
pub fn expect_quiet_close(
    link: &mut WireLink,
    what: &str,
    allowed: fn(&Message) -> bool,
) -> Result<(), Outcome> {
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Closed => return Ok(()),
            Got::Frame(m) if allowed(&m) => {}
            other => {
                return Err(unexpected(
                    &format!("{what}: a close without ERROR"),
                    &other,
                ))
            }
        }
    }
}

/// Checks that nothing arrives for a moment (frames in `allowed` are skipped).
pub fn expect_silence(
    link: &mut WireLink,
    what: &str,
    allowed: fn(&Message) -> bool,
) -> Result<(), Outcome> {
    loop {
        match link.recv(SILENCE_WAIT) {
            Got::Silent => return Ok(()),
            Got::Frame(m) if allowed(&m) => {}
            other => return Err(unexpected(&format!("{what}: silence"), &other)),
        }
    }
}

/// A failure saying what was expected and what came.
pub fn unexpected(expected: &str, got: &Got) -> Outcome {
    let got = match got {
        Got::Frame(Message::Error { code, text }) => {
            format!("ERROR {code} {} \"{text}\"", error_code_name(*code))
        }
        Got::Frame(m) => m.name().to_owned(),
        Got::Closed => "the connection closed".to_owned(),
        Got::Silent => format!("nothing within {} ms", ANSWER_WAIT.as_millis()),
        Got::Garbage(e) => format!("bytes that do not decode ({e})"),
    };
    fail(format!("expected {expected}, got {got}"))
}

/// Fetches the whole manifest over the session (MANIFEST_REQUEST pieces of at most
/// `MAX_MANIFEST_PIECE`), checking each MANIFEST_DATA's offset, total and length, and that
/// the bytes hash to the content ID (content.md section 1, wire.md section 5).
pub fn fetch_manifest(s: &mut Session) -> Result<Vec<u8>, Outcome> {
    use crate::proto::wire::MAX_MANIFEST_PIECE;
    use sha2::{Digest, Sha256};
    let mut data: Vec<u8> = Vec::new();
    let mut total: Option<usize> = None;
    while total.is_none_or(|t| data.len() < t) {
        let offset = data.len() as u32;
        s.link
            .send(&Message::ManifestRequest {
                offset,
                length: MAX_MANIFEST_PIECE as u32,
            })
            .map_err(fail)?;
        loop {
            match s.link.recv(ANSWER_WAIT) {
                Got::Frame(Message::ManifestData {
                    total_len,
                    offset: o,
                    data: d,
                }) => {
                    if o != offset || total.is_some_and(|t| t != total_len as usize) {
                        return Err(fail(format!(
                            "MANIFEST_DATA offset {o} total {total_len} answers offset {offset}"
                        )));
                    }
                    let want = (total_len as usize - data.len()).min(MAX_MANIFEST_PIECE);
                    if d.len() != want {
                        return Err(fail(format!("{} bytes, expected {want}", d.len())));
                    }
                    total = Some(total_len as usize);
                    data.extend_from_slice(&d);
                    break;
                }
                Got::Frame(Message::Have(_) | Message::Peers(_) | Message::KeepAlive) => {}
                other => return Err(unexpected("MANIFEST_DATA", &other)),
            }
        }
    }
    if Id(Sha256::digest(&data).into()) != s.content {
        return Err(fail("SHA-256 of the manifest is not the content ID"));
    }
    Ok(data)
}
