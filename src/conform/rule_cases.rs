//! The connection rules of wire.md section 3 and the choices of sections 4.17, 4.18 and 8:
//! each rule broken once, on purpose, and the peer's answer checked.

use super::link::Got;
use super::session::{
    connect, content, expect_alive, expect_quiet_close, expect_silence, expect_violation, open,
    unexpected, Session,
};
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT};
use crate::proto::wire::{error_code, reject_reason, Bitfield, Message};

/// The rule cases.
pub fn cases() -> Vec<Case> {
    let c = Case::new;
    vec![
        c(
            "rule-frame-before-handshake",
            "wire.md §3 rule 1",
            before_handshake,
        ),
        c(
            "rule-second-handshake",
            "wire.md §3 rule 1",
            second_handshake,
        ),
        c("rule-self-connection", "wire.md §3 rule 2", self_connection),
        c("rule-duplicate-connection", "wire.md §3 rule 2", duplicate),
        c(
            "rule-request-before-bitfield",
            "wire.md §3 rule 4",
            request_early,
        ),
        c(
            "rule-interested-before-bitfield",
            "wire.md §3 rule 4",
            interested_early,
        ),
        c("rule-have-before-bitfield", "wire.md §3 rule 4", have_early),
        c("rule-second-bitfield", "wire.md §3 rule 4", second_bitfield),
        c(
            "rule-bitfield-wrong-count",
            "wire.md §3 rule 4",
            bitfield_count,
        ),
        c(
            "rule-metadata-after-bitfield",
            "wire.md §3 rule 6, §4.3",
            late_metadata,
        ),
        c(
            "rule-second-metadata",
            "wire.md §3 rule 6, §4.3",
            second_metadata,
        ),
        c("rule-have-out-of-range", "wire.md §3 rule 5", have_range),
        c(
            "rule-request-out-of-range",
            "wire.md §3 rule 5",
            request_range,
        ),
        c(
            "rule-cancel-out-of-range",
            "wire.md §3 rule 5",
            cancel_range,
        ),
        c(
            "rule-reject-out-of-range",
            "wire.md §3 rule 5",
            reject_range,
        ),
        c("rule-request-while-choked", "wire.md §8", request_choked),
        c("rule-probe-after-handshake", "wire.md §4.18", probe),
        c("rule-relay-ok-after-handshake", "wire.md §4.18", relay_ok),
        c(
            "rule-nothing-after-error",
            "wire.md §4.17, §10",
            nothing_after_error,
        ),
    ]
}

fn before_handshake(ctx: &mut Ctx) -> Result<(), Outcome> {
    content(ctx)?;
    let mut l = connect(ctx)?;
    l.send(&Message::Interested).map_err(fail)?;
    expect_violation(&mut l, "INTERESTED before any HANDSHAKE")
}

fn second_handshake(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let hs = s.link.handshake(s.content);
    s.link.send(&hs).map_err(fail)?;
    expect_violation(&mut s.link, "a second HANDSHAKE")
}

fn self_connection(ctx: &mut Ctx) -> Result<(), Outcome> {
    let content = content(ctx)?;
    let Some(peer) = ctx.peer_id else {
        return Err(Outcome::Skip("the peer's node ID is not known yet".into()));
    };
    let mut l = connect(ctx)?;
    l.node_id = peer;
    let hs = l.handshake(content);
    l.send(&hs).map_err(fail)?;
    // "Connected to itself": it closes; an ERROR is tolerated, a HANDSHAKE is not. (A v2
    // peer already refuses the HANDSHAKE for naming an ID this side did not prove,
    // secure.md section 3: the same quiet close.)
    expect_quiet_close(&mut l, "a HANDSHAKE with the peer's own node ID", |m| {
        matches!(m, Message::Error { .. })
    })
}

fn duplicate(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut first = open(ctx)?;
    // The same node again: the same identity (secure.md), so the same proven node ID.
    let mut second = first
        .link
        .again(ctx.opts.target, ANSWER_WAIT)
        .map_err(fail)?;
    let hs = second.handshake(first.content);
    second.send(&hs).map_err(fail)?;
    match second.recv(ANSWER_WAIT) {
        Got::Frame(Message::Handshake(_)) => {}
        other => return Err(unexpected("the second connection answered", &other)),
    }
    // The second replaces the first, which closes without ERROR (METADATA, BITFIELD, HAVE
    // and PEERS of the first may still arrive before the close).
    expect_quiet_close(&mut first.link, "the first connection", |m| {
        !matches!(m, Message::Error { .. })
    })
}

fn request_early(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::Request(0)).map_err(fail)?;
    expect_violation(&mut s.link, "REQUEST before our BITFIELD")
}

fn interested_early(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::Interested).map_err(fail)?;
    expect_violation(&mut s.link, "INTERESTED before our BITFIELD")
}

fn have_early(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::Have(0)).map_err(fail)?;
    expect_violation(&mut s.link, "HAVE before our BITFIELD")
}

fn second_bitfield(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.ready()?;
    expect_violation(&mut s.link, "a second BITFIELD")
}

fn bitfield_count(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let b = Bitfield::new(s.chunks() + 1);
    s.link.send(&Message::Bitfield(b)).map_err(fail)?;
    expect_violation(&mut s.link, "a BITFIELD with one chunk too many")
}

fn late_metadata(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.link
        .send(&Message::Metadata {
            name: "late.bin".into(),
        })
        .map_err(fail)?;
    expect_violation(&mut s.link, "METADATA after our BITFIELD")
}

fn second_metadata(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    let m = Message::Metadata {
        name: "once.bin".into(),
    };
    s.link.send_all(&[m.clone(), m]).map_err(fail)?;
    expect_violation(&mut s.link, "a second METADATA")
}

/// A session with our BITFIELD sent, and `msg(chunk_count)` sent on it.
fn out_of_range(
    ctx: &mut Ctx,
    msg: fn(u32) -> Message,
    what: &str,
    unchoke: bool,
) -> Result<Session, Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    if unchoke {
        s.unchoked()?;
    }
    let n = s.chunks();
    s.link.send(&msg(n)).map_err(fail)?;
    expect_violation(&mut s.link, &format!("{what} {n} of a {n}-chunk content"))?;
    Ok(s)
}

fn have_range(ctx: &mut Ctx) -> Result<(), Outcome> {
    out_of_range(ctx, Message::Have, "HAVE", false).map(|_| ())
}

fn request_range(ctx: &mut Ctx) -> Result<(), Outcome> {
    out_of_range(ctx, Message::Request, "REQUEST", true).map(|_| ())
}

fn cancel_range(ctx: &mut Ctx) -> Result<(), Outcome> {
    out_of_range(ctx, Message::Cancel, "CANCEL", false).map(|_| ())
}

fn reject_range(ctx: &mut Ctx) -> Result<(), Outcome> {
    let reject = |chunk| Message::Reject {
        chunk,
        reason: reject_reason::NOT_AVAILABLE,
    };
    out_of_range(ctx, reject, "REJECT", false).map(|_| ())
}

/// Lenient and specified: a REQUEST while choked (never unchoked) is answered REJECT CHOKED
/// and the connection stays.
fn request_choked(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.link.send(&Message::Request(0)).map_err(fail)?;
    loop {
        match s.link.recv(ANSWER_WAIT) {
            Got::Frame(Message::Reject { chunk: 0, reason }) if reason == reject_reason::CHOKED => {
                break
            }
            Got::Frame(Message::Have(_) | Message::Peers(_) | Message::KeepAlive) => {}
            other => return Err(unexpected("REJECT 0 CHOKED", &other)),
        }
    }
    expect_alive(&mut s.link, "after REJECT CHOKED")
}

fn probe(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::Probe(7)).map_err(fail)?;
    expect_violation(&mut s.link, "PROBE on a content connection")
}

fn relay_ok(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.link.send(&Message::RelayOk).map_err(fail)?;
    expect_violation(&mut s.link, "RELAY_OK on a content connection")
}

/// Our NOT_INTERESTED and ERROR COMPLETE arrive together: the peer closes, without an ERROR
/// of its own. A CHOKE (or an offer) written in answer to the NOT_INTERESTED before the ERROR
/// was read may come first; nothing else may.
fn nothing_after_error(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut s = open(ctx)?;
    s.ready()?;
    s.unchoked()?;
    // Let the offers that follow the UNCHOKE arrive first.
    expect_silence(&mut s.link, "after UNCHOKE", |m| {
        matches!(m, Message::Have(_) | Message::Peers(_))
    })?;
    s.link
        .send_all(&[
            Message::NotInterested,
            Message::Error {
                code: error_code::COMPLETE,
                text: "conform: done".into(),
            },
        ])
        .map_err(fail)?;
    expect_quiet_close(&mut s.link, "our ERROR COMPLETE", |m| {
        matches!(m, Message::Choke | Message::Have(_))
    })
}
