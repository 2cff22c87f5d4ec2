//! Wire cases (wire.md): the handshake, the manifest, requests and pieces, keep-alive and
//! timeouts, and malformed frames (each hand-made, not from the encoder).

use std::time::{Duration, Instant};

use super::link::Got;
use super::session::{
    connect, content, expect_alive, expect_error, expect_quiet_close, expect_violation,
    fetch_manifest, open, unexpected,
};
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT};
use crate::content::manifest::Manifest;
use crate::id::Id;
use crate::proto::wire::{error_code, reject_reason, Message};

/// The wire cases.
pub fn cases() -> Vec<Case> {
    let c = Case::new;
    let slow = Case::slow;
    vec![
        c(
            "wire-handshake",
            "wire.md §3 rules 1 and 4, §4.2, §4.6",
            handshake,
        ),
        c(
            "wire-unknown-content",
            "wire.md §3 rule 1, §4.17",
            unknown_content,
        ),
        c(
            "wire-manifest-fetch",
            "wire.md §5, §4.4, §4.5",
            manifest_fetch,
        ),
        c("wire-bitfield-chunk-count", "wire.md §4.6", bitfield_count),
        c(
            "wire-manifest-request-past-end",
            "wire.md §4.4",
            manifest_past_end,
        ),
        c(
            "wire-request-piece",
            "wire.md §4.8, §4.9, §7, §8",
            request_piece,
        ),
        c("wire-last-chunk", "wire.md §4.9, §6", last_chunk),
        c(
            "wire-cancel-unrequested-ignored",
            "wire.md §4.10",
            cancel_ignored,
        ),
        c(
            "wire-reject-unrequested-ignored",
            "wire.md §4.11",
            reject_ignored,
        ),
        c(
            "wire-piece-unrequested",
            "wire.md §4.9, §8",
            piece_unrequested,
        ),
        c("wire-keepalive", "wire.md §4.1, §9", keepalive),
        c("wire-length-0", "wire.md §2", length_0),
        c("wire-length-over-max", "wire.md §2", length_over_max),
        c("wire-unknown-type", "wire.md §1, §2", unknown_type),
        c("wire-have-trailing-bytes", "wire.md §2, §13", have_trailing),
        c("wire-bitfield-spare-bit", "wire.md §4.6", spare_bit),
        c("wire-handshake-version-2", "wire.md §4.2", version_2),
        c("wire-handshake-bad-magic", "wire.md §4.2", bad_magic),
        c("wire-http-request", "wire.md §2", http),
        slow("wire-handshake-timeout", "wire.md §9", handshake_timeout),
        slow("wire-keepalive-sent", "wire.md §4.1, §9", keepalive_sent),
        slow("wire-idle-timeout", "wire.md §9, §10", idle_timeout),
    ]
}

fn handshake(ctx: &mut Ctx) -> Result<(), Outcome> {
    open(ctx).map(|_| ())
}

fn unknown_content(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = connect(ctx)?;
    let hs = l.handshake(Id::random(&mut rand::thread_rng()));
    l.send(&hs).map_err(fail)?;
    expect_error(
        &mut l,
        error_code::UNKNOWN_CONTENT,
        "a HANDSHAKE for unknown content",
    )
}

fn manifest_fetch(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let data = fetch_manifest(&mut s)?;
    let m = Manifest::decode(&data).map_err(|e| fail(format!("the manifest: {e}")))?;
    ctx.manifest = Some(m);
    Ok(())
}

fn manifest(ctx: &Ctx) -> Result<&Manifest, Outcome> {
    ctx.manifest
        .as_ref()
        .ok_or_else(|| Outcome::Skip("needs the manifest (wire-manifest-fetch)".into()))
}

fn bitfield_count(ctx: &mut Ctx) -> Result<(), Outcome> {
    let n = manifest(ctx)?.lengths().chunk_count();
    let s = open(ctx)?;
    if s.chunks() != n {
        return Err(fail(format!(
            "BITFIELD chunk_count {}, the manifest has {n}",
            s.chunks()
        )));
    }
    Ok(())
}

fn manifest_past_end(ctx: &mut Ctx) -> Result<(), Outcome> {
    let len = manifest(ctx)?.encoded_len() as u32;
    let mut s = open(ctx)?;
    s.link
        .send(&Message::ManifestRequest {
            offset: len,
            length: 1,
        })
        .map_err(fail)?;
    expect_violation(&mut s.link, "MANIFEST_REQUEST at the manifest's end")
}

/// Requests `chunk` (unchoked, interested) and checks the PIECE against the manifest.
fn fetch_chunk(ctx: &mut Ctx, pick_last: bool) -> Result<(), Outcome> {
    let m = manifest(ctx)?.clone();
    let mut s = open(ctx)?;
    s.ready()?;
    s.unchoked()?;
    let chunk = if pick_last {
        let last = m.lengths().chunk_count().saturating_sub(1);
        // A super-seeding peer may not offer the last chunk: wait for its offers a while.
        let deadline = Instant::now() + ANSWER_WAIT;
        while !s.offered.contains(&last) && Instant::now() < deadline {
            if let Got::Frame(Message::Have(i)) = s.link.recv(Duration::from_millis(200)) {
                s.offered.insert(i);
            }
        }
        if !s.offered.contains(&last) {
            return Err(Outcome::Skip(
                "the peer did not offer its last chunk".into(),
            ));
        }
        last
    } else {
        s.some_offered()?
    };
    s.link.send(&Message::Request(chunk)).map_err(fail)?;
    loop {
        match s.link.recv(ANSWER_WAIT) {
            Got::Frame(Message::Piece { chunk: c, data }) if c == chunk => {
                let ok = m
                    .lengths()
                    .validate(chunk)
                    .is_some_and(|i| m.verify_chunk(i, &data));
                return if ok {
                    Ok(())
                } else {
                    Err(fail(format!("PIECE {chunk} fails verification")))
                };
            }
            Got::Frame(Message::Have(_) | Message::Peers(_) | Message::KeepAlive) => {}
            other => return Err(unexpected(&format!("PIECE {chunk}"), &other)),
        }
    }
}

fn request_piece(ctx: &mut Ctx) -> Result<(), Outcome> {
    fetch_chunk(ctx, false)
}

fn last_chunk(ctx: &mut Ctx) -> Result<(), Outcome> {
    fetch_chunk(ctx, true)
}

fn cancel_ignored(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.link.send(&Message::Cancel(0)).map_err(fail)?;
    expect_alive(&mut s.link, "CANCEL of a chunk never requested")
}

fn reject_ignored(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.link
        .send(&Message::Reject {
            chunk: 0,
            reason: reject_reason::NOT_AVAILABLE,
        })
        .map_err(fail)?;
    expect_alive(&mut s.link, "REJECT of a chunk never requested")
}

fn piece_unrequested(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.link
        .send(&Message::Piece {
            chunk: 0,
            data: vec![0; 16],
        })
        .map_err(fail)?;
    expect_violation(&mut s.link, "a PIECE never requested")
}

fn keepalive(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::KeepAlive).map_err(fail)?;
    expect_alive(&mut s.link, "KEEPALIVE")
}

/// After a HANDSHAKE, `bytes` (malformed) must get ERROR PROTOCOL_VIOLATION and a hang-up.
fn malformed_after_handshake(ctx: &mut Ctx, bytes: &[u8], what: &str) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send_raw(bytes).map_err(fail)?;
    expect_violation(&mut s.link, what)
}

fn length_0(ctx: &mut Ctx) -> Result<(), Outcome> {
    malformed_after_handshake(ctx, &[0, 0, 0, 0], "length 0")
}

fn length_over_max(ctx: &mut Ctx) -> Result<(), Outcome> {
    // 1048593 = MAX_FRAME_LEN + 1, then a PIECE type byte; no body follows: the length
    // alone must be refused.
    malformed_after_handshake(ctx, &[0x00, 0x10, 0x00, 0x11, 0x08], "length 1048593")
}

fn unknown_type(ctx: &mut Ctx) -> Result<(), Outcome> {
    malformed_after_handshake(ctx, &[0, 0, 0, 1, 0x14], "type 0x14")
}

fn have_trailing(ctx: &mut Ctx) -> Result<(), Outcome> {
    malformed_after_handshake(
        ctx,
        &[0, 0, 0, 6, 0x06, 0, 0, 0, 0, 0],
        "a 5-byte HAVE body",
    )
}

fn spare_bit(ctx: &mut Ctx) -> Result<(), Outcome> {
    // 11 chunks, spare bit (the last of byte 1) set; the count need not match the content:
    // the frame is refused as malformed before any rule applies.
    malformed_after_handshake(
        ctx,
        &[0, 0, 0, 7, 0x05, 0, 0, 0, 11, 0xe0, 0x41],
        "BITFIELD with a spare bit set",
    )
}

/// A HANDSHAKE body as bytes, with `magic` and `version` as given.
fn raw_handshake(ctx: &Ctx, magic: &[u8; 4], version: u8) -> Result<Vec<u8>, Outcome> {
    let content = content(ctx)?;
    let mut f = vec![0, 0, 0, 73, 0x01];
    f.extend_from_slice(magic);
    f.push(version);
    f.push(0);
    f.extend_from_slice(&Id::random(&mut rand::thread_rng()).0);
    f.extend_from_slice(&content.0);
    f.extend_from_slice(&[0, 0]);
    Ok(f)
}

fn version_2(ctx: &mut Ctx) -> Result<(), Outcome> {
    let f = raw_handshake(ctx, b"PSWP", 2)?;
    let mut l = connect(ctx)?;
    l.send_raw(&f).map_err(fail)?;
    expect_violation(&mut l, "HANDSHAKE version 2")
}

fn bad_magic(ctx: &mut Ctx) -> Result<(), Outcome> {
    let f = raw_handshake(ctx, b"pswp", 1)?;
    let mut l = connect(ctx)?;
    l.send_raw(&f).map_err(fail)?;
    expect_violation(&mut l, "HANDSHAKE magic \"pswp\"")
}

fn http(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = connect(ctx)?;
    l.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(fail)?;
    expect_violation(&mut l, "an HTTP request")
}

fn handshake_timeout(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = connect(ctx)?;
    // 10 s recommended; allow half as much again.
    match l.recv(Duration::from_secs(15)) {
        Got::Closed => Ok(()),
        Got::Frame(Message::Error { .. }) => {
            expect_quiet_close(&mut l, "after the ERROR", |_| false)
        }
        other => Err(unexpected("a close within 15 s of silence", &other)),
    }
}

/// A peer that has received nothing on a connection for 120 s closes it, without ERROR
/// (wire.md §9); allow 15 s more. Its own KEEPALIVEs do not keep the connection open, and
/// closing sooner is allowed (§10: a connection neither side needs).
fn idle_timeout(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let limit = Duration::from_secs(135);
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!(
                "the connection stayed open {} s although we sent nothing (idle timeout 120 s)",
                limit.as_secs()
            )));
        }
        match s.link.recv(left) {
            Got::Closed => return Ok(()),
            Got::Frame(m @ Message::Error { .. }) => {
                return Err(unexpected(
                    "a close without ERROR after 120 s of silence",
                    &Got::Frame(m),
                ))
            }
            Got::Frame(_) => {}
            Got::Silent => {}
            other => return Err(unexpected("a close after 120 s of silence", &other)),
        }
    }
}

/// A peer that has sent nothing for 30 s sends KEEPALIVE; allow 10 s more.
fn keepalive_sent(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        match s
            .link
            .recv(deadline.saturating_duration_since(Instant::now()))
        {
            Got::Frame(Message::KeepAlive) => return Ok(()),
            Got::Frame(_) => {}
            other => return Err(unexpected("KEEPALIVE within 40 s of silence", &other)),
        }
    }
    Err(fail("no KEEPALIVE within 40 s of silence"))
}
