//! The secure session (secure.md): each rule of the handshake and the record layer broken
//! once, on purpose, and the peer's answer checked. These cases drive the handshake and seal
//! records themselves, with the crate's Noise side, so that they can send what a correct
//! side never would: a message of the wrong length, another version, a proof of someone
//! else's key, a record altered or replayed, a HANDSHAKE frame naming another node.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::session::content;
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT};
use crate::id::Id;
use crate::identity::Identity;
use crate::proto::wire::{Handshake as HandshakeFrame, Message};
use crate::secure::{Handshake, LocalKeys, Outcome as HsOutcome, Session, MSG1_LEN};

/// The secure-session cases.
pub fn cases() -> Vec<Case> {
    let c = Case::new;
    vec![
        c(
            "secure-msg1-wrong-length",
            "secure.md §2",
            msg1_wrong_length,
        ),
        c(
            "secure-hello-other-version",
            "secure.md §2, §4",
            other_version,
        ),
        c("secure-version-1-dialer", "secure.md §4", version_1_dialer),
        c("secure-claimed-identity", "secure.md §2", claimed_identity),
        c("secure-record-tampered", "secure.md §3", tampered_record),
        c("secure-record-replayed", "secure.md §3", replayed_record),
        c(
            "secure-handshake-frame-names-proven-id",
            "secure.md §3",
            frame_names_another_id,
        ),
    ]
}

fn keys() -> Result<LocalKeys, Outcome> {
    LocalKeys::generate(Identity::generate()).map_err(|e| fail(format!("keys: {e}")))
}

fn dial(ctx: &Ctx) -> Result<TcpStream, Outcome> {
    let s = TcpStream::connect_timeout(&ctx.opts.target, ANSWER_WAIT)
        .map_err(|e| fail(format!("cannot connect to {} (TCP): {e}", ctx.opts.target)))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn send(ctx: &Ctx, s: &mut TcpStream, bytes: &[u8]) -> Result<(), Outcome> {
    ctx.log.borrow_mut().push((true, bytes.to_vec()));
    s.write_all(bytes)
        .map_err(|e| fail(format!("send {} bytes: {e}", bytes.len())))
}

/// Reads until the peer closes (true) or `wait` passes (false); what came is logged.
fn until_close(ctx: &Ctx, s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is a close too.
            Err(_) => break true,
        }
    };
    if !got.is_empty() {
        ctx.log.borrow_mut().push((false, got.clone()));
    }
    (got, closed)
}

/// The peer must close without answering a single byte (no msg2: the first message failed).
fn expect_closed_silently(ctx: &Ctx, s: &mut TcpStream, what: &str) -> Result<(), Outcome> {
    match until_close(ctx, s, ANSWER_WAIT) {
        (got, true) if got.is_empty() => Ok(()),
        (got, true) => Err(fail(format!(
            "{what}: the peer answered {} bytes before closing (expected a close without msg2)",
            got.len()
        ))),
        (_, false) => Err(fail(format!(
            "{what}: the connection stayed open {ANSWER_WAIT:?} (expected it closed at once)"
        ))),
    }
}

/// The peer must close; it may first send records (they cannot be a frame answering the
/// bad input, which it must not have accepted: the case checks that by their count).
fn expect_closed(ctx: &Ctx, s: &mut TcpStream, what: &str) -> Result<Vec<u8>, Outcome> {
    match until_close(ctx, s, ANSWER_WAIT) {
        (got, true) => Ok(got),
        (_, false) => Err(fail(format!(
            "{what}: the connection stayed open {ANSWER_WAIT:?} (expected it closed)"
        ))),
    }
}

/// The peer must close after the handshake without a single record in answer.
fn expect_closed_unanswered(ctx: &Ctx, s: &mut TcpStream, what: &str) -> Result<(), Outcome> {
    let got = expect_closed(ctx, s, what)?;
    if got.is_empty() {
        Ok(())
    } else {
        Err(fail(format!(
            "{what}: the peer answered {} bytes before closing (expected none)",
            got.len()
        )))
    }
}

/// Runs the handshake as the dialer over `s`; the session, or why it failed.
fn handshake(ctx: &Ctx, s: &mut TcpStream, keys: &LocalKeys) -> Result<Session, Outcome> {
    let mut hs = Handshake::initiator(keys, None).map_err(|e| fail(e.to_string()))?;
    let mut inbox = Vec::new();
    let end = Instant::now() + ANSWER_WAIT;
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            send(ctx, s, &out)?;
        }
        if hs.outcome() == HsOutcome::Finished {
            return hs
                .into_session()
                .map_err(|e| fail(format!("the peer's handshake (secure.md §2): {e}")));
        }
        if Instant::now() > end {
            return Err(fail("the peer did not complete the handshake in time"));
        }
        let mut buf = [0u8; 1024];
        let _ = s.set_read_timeout(Some(ANSWER_WAIT));
        let n = s
            .read(&mut buf)
            .map_err(|e| fail(format!("reading the handshake: {e}")))?;
        if n == 0 {
            return Err(fail("the peer closed during the handshake"));
        }
        ctx.log
            .borrow_mut()
            .push((false, buf.get(..n).unwrap_or_default().to_vec()));
        inbox.extend_from_slice(buf.get(..n).unwrap_or_default());
        let used = hs
            .handle_input(&inbox)
            .map_err(|e| fail(format!("the peer's handshake (secure.md §2): {e}")))?;
        inbox.drain(..used.min(inbox.len()));
    }
}

/// `frames` sealed into records by `session`.
fn seal(session: &mut Session, frames: &[Message]) -> Result<Vec<u8>, Outcome> {
    let mut plain = Vec::new();
    for f in frames {
        f.encode(&mut plain);
    }
    let mut out = Vec::new();
    session
        .transport
        .seal(&plain, &mut out)
        .map_err(|e| fail(format!("seal: {e}")))?;
    Ok(out)
}

fn hello_frame(ctx: &Ctx, node: Id) -> Result<Message, Outcome> {
    let c = content(ctx)?;
    Ok(Message::Handshake(HandshakeFrame::new(node, c, 0)))
}

/// A msg1 of 36 bytes (not 37): the peer closes without answering.
fn msg1_wrong_length(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = dial(ctx)?;
    let mut m = vec![0x00, (MSG1_LEN - 1) as u8];
    m.extend_from_slice(&[0x42; MSG1_LEN - 1]);
    send(ctx, &mut s, &m)?;
    expect_closed_silently(ctx, &mut s, "msg1 of 36 bytes")
}

/// A msg1 whose HELLO says version 2 (the previous protocol), then one saying 4 (a later
/// one): the peer closes without answering either.
fn other_version(ctx: &mut Ctx) -> Result<(), Outcome> {
    for v in [2u8, 4] {
        let mut s = dial(ctx)?;
        let mut m = vec![0x00, MSG1_LEN as u8];
        m.extend_from_slice(&[0x42; 32]);
        m.extend_from_slice(b"PSWP");
        m.push(v);
        send(ctx, &mut s, &m)?;
        expect_closed_silently(ctx, &mut s, &format!("a HELLO of version {v}"))?;
    }
    Ok(())
}

/// A version 1 dialer's plaintext HANDSHAKE frame: the peer closes (and says why in its
/// log), without a session.
fn version_1_dialer(ctx: &mut Ctx) -> Result<(), Outcome> {
    let frame = hello_frame(ctx, Id::random(&mut rand::thread_rng()))?;
    let mut s = dial(ctx)?;
    let mut m = Vec::new();
    frame.encode(&mut m);
    send(ctx, &mut s, &m)?;
    expect_closed_silently(ctx, &mut s, "a version 1 HANDSHAKE frame")
}

/// A proof naming another node's identity key: the handshake's last message fails at the
/// peer, which closes without answering any frame.
fn claimed_identity(ctx: &mut Ctx) -> Result<(), Outcome> {
    let victim = Identity::generate();
    let frame = hello_frame(ctx, victim.node_id())?;
    let liar = keys()?.claiming_identity_key(victim.public());
    let mut s = dial(ctx)?;
    let mut session = handshake(ctx, &mut s, &liar)?;
    let records = seal(&mut session, &[frame])?;
    // The peer may already have closed after msg3: a failed send is fine.
    ctx.log.borrow_mut().push((true, records.clone()));
    let _ = s.write_all(&records);
    expect_closed_unanswered(ctx, &mut s, "a proof of another node's key")
}

/// A HANDSHAKE frame whose record has one bit flipped: the record fails authentication and
/// the peer closes without answering.
fn tampered_record(ctx: &mut Ctx) -> Result<(), Outcome> {
    let k = keys()?;
    let frame = hello_frame(ctx, k.node_id())?;
    let mut s = dial(ctx)?;
    let mut session = handshake(ctx, &mut s, &k)?;
    let mut records = seal(&mut session, &[frame])?;
    if let Some(b) = records.get_mut(7) {
        *b ^= 0x01;
    }
    send(ctx, &mut s, &records)?;
    expect_closed_unanswered(ctx, &mut s, "an altered record")
}

/// The first record sent again after the peer accepted it: its nonce is stale, so it fails
/// authentication, and the peer closes.
fn replayed_record(ctx: &mut Ctx) -> Result<(), Outcome> {
    let k = keys()?;
    let frame = hello_frame(ctx, k.node_id())?;
    let mut s = dial(ctx)?;
    let mut session = handshake(ctx, &mut s, &k)?;
    let records = seal(&mut session, &[frame])?;
    send(ctx, &mut s, &records)?;
    // Its answer (HANDSHAKE, BITFIELD, ...) shows the first copy was taken.
    match until_close(ctx, &mut s, Duration::from_millis(700)) {
        (_, true) => return Err(fail("the peer closed after a valid first record")),
        (got, false) if got.is_empty() => {
            return Err(fail("the peer did not answer a valid HANDSHAKE record"))
        }
        _ => {}
    }
    send(ctx, &mut s, &records)?;
    expect_closed(ctx, &mut s, "a replayed record").map(|_| ())
}

/// A session proving one ID whose HANDSHAKE frame names another: the peer closes.
fn frame_names_another_id(ctx: &mut Ctx) -> Result<(), Outcome> {
    let frame = hello_frame(ctx, Id::random(&mut rand::thread_rng()))?;
    let k = keys()?;
    let mut s = dial(ctx)?;
    let mut session = handshake(ctx, &mut s, &k)?;
    let records = seal(&mut session, &[frame])?;
    send(ctx, &mut s, &records)?;
    expect_closed(
        ctx,
        &mut s,
        "a HANDSHAKE frame naming another node than the proven one",
    )
    .map(|_| ())
}
