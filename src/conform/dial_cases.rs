//! Cases where the peer dials the suite: through a PeerShare API (`--api`) the peer is asked
//! to download a content nobody has, with the suite as its only peer hint, so the suite sees
//! the dialing side of the HANDSHAKE and a node that lacks the manifest.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::json;

use super::link::{Got, WireLink};
use super::session::{expect_violation, unexpected};
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT};
use crate::api::client;
use crate::id::Id;
use crate::proto::wire::{Bitfield, Message};

/// The cases that need `--api`.
pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "dial-request-to-a-node-without-the-manifest",
        "wire.md §3 rules 1 and 4",
        request_without_manifest,
    )]
}

/// The node downloads an unknown content from us: it dials, sends its HANDSHAKE first and
/// waits for ours; it holds no manifest, so it sends no BITFIELD, and a REQUEST from us is a
/// violation it answers with ERROR PROTOCOL_VIOLATION (never a REJECT before its BITFIELD).
fn request_without_manifest(ctx: &mut Ctx) -> Result<(), Outcome> {
    let Some(api) = ctx.opts.api else {
        return Err(Outcome::Skip(
            "needs --api: the peer must be asked to dial".into(),
        ));
    };
    let bind: SocketAddr = if ctx.opts.target.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let listener = TcpListener::bind(bind).map_err(|e| fail(format!("listen: {e}")))?;
    let me = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let content = Id::random(&mut rand::thread_rng());
    let dir = ctx.opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let req = client::request(
        "local_request_file",
        json!({
            "content_hash": content.to_hex(),
            "output_dir": dir.join("conform-downloads").display().to_string(),
            "peers": [me.to_string()],
        }),
    );
    // The call blocks until the download ends: the cancel below ends it.
    std::thread::spawn(move || client::call(api, &req, Some(Duration::from_secs(30))));
    let result = dialed(ctx, &listener, content);
    let cancel = client::request(
        "cancel_transfer",
        json!({ "content_hash": content.to_hex() }),
    );
    let _ = client::call(api, &cancel, Some(ANSWER_WAIT));
    result
}

fn dialed(ctx: &mut Ctx, listener: &TcpListener, content: Id) -> Result<(), Outcome> {
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + ANSWER_WAIT * 2;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(format!("the peer never dialed us: {e}"))),
        }
    };
    let _ = stream.set_nonblocking(false);
    let mut link = WireLink::accepted(stream, &ctx.log);
    match link.recv(ANSWER_WAIT) {
        Got::Frame(Message::Handshake(h)) if h.content_id == content => {}
        other => {
            return Err(unexpected(
                "the dialing side's HANDSHAKE for the content",
                &other,
            ))
        }
    }
    let hs = link.handshake(content);
    let mut have = Bitfield::new(1);
    have.set(0);
    link.send_all(&[hs, Message::Bitfield(have), Message::Request(0)])
        .map_err(fail)?;
    expect_violation(&mut link, "REQUEST to a node that has sent no BITFIELD")
}
