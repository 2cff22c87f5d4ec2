//! Cases where the peer dials the suite: through a PeerShare API (`--api`) the peer is asked
//! to download a content with the suite as its only peer hint, so the suite sees the dialing
//! side of the HANDSHAKE, a node that lacks the manifest, a downloader fed bad data, and one
//! told of other peers (with their node IDs) by PEERS.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::json;

use super::link::{fresh_keys, Got, WireLink};
use super::session::{expect_violation, unexpected};
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT, SILENCE_WAIT};
use crate::api::client;
use crate::content::manifest::Manifest;
use crate::id::Id;
use crate::proto::wire::{error_code, Bitfield, Message, PexPeer};

/// The cases that need `--api`.
pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "dial-request-to-a-node-without-the-manifest",
            "wire.md §3 rules 1 and 4",
            request_without_manifest,
        ),
        Case::new("dial-bad-manifest-banned", "wire.md §5, §7", bad_manifest),
        Case::new("dial-bad-chunk-banned", "wire.md §6, §7", bad_chunk),
        Case::new(
            "dial-bitfield-not-final",
            "wire.md §3 rule 4, §4.7",
            not_final,
        ),
        Case::new(
            "dial-pex-node-id-checked",
            "wire.md §4.16, secure.md §3",
            pex_node_ids,
        ),
    ]
}

/// Asks the peer to download `content` from us, waits for its connection and its HANDSHAKE
/// (the dialing side's, first, naming `content`), answers with ours and a BITFIELD of
/// `chunks` (all set if `full`, else empty), runs `then`, and cancels the download.
fn dialed(
    ctx: &mut Ctx,
    content: Id,
    chunks: u32,
    full: bool,
    then: impl FnOnce(&mut WireLink, &TcpListener) -> Result<(), Outcome>,
) -> Result<(), Outcome> {
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
    let result = accept(ctx, &listener, content).and_then(|mut link| {
        let hs = link.handshake(content);
        let mut all = Bitfield::new(chunks);
        (0..chunks).filter(|_| full).for_each(|i| all.set(i));
        link.send_all(&[hs, Message::Bitfield(all)]).map_err(fail)?;
        then(&mut link, &listener)
    });
    let cancel = client::request(
        "cancel_transfer",
        json!({ "content_hash": content.to_hex() }),
    );
    let _ = client::call(api, &cancel, Some(ANSWER_WAIT));
    result
}

fn accept(ctx: &Ctx, listener: &TcpListener, content: Id) -> Result<WireLink, Outcome> {
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
    let mut link = WireLink::accepted(stream, ANSWER_WAIT, &ctx.log).map_err(fail)?;
    match link.recv(ANSWER_WAIT) {
        Got::Frame(Message::Handshake(h)) if h.content_id == content => Ok(link),
        other => Err(unexpected(
            "the dialing side's HANDSHAKE for the content",
            &other,
        )),
    }
}

/// A node without the manifest has sent no BITFIELD: a REQUEST to it is a violation, which
/// it answers with ERROR PROTOCOL_VIOLATION, never a REJECT before its BITFIELD.
fn request_without_manifest(ctx: &mut Ctx) -> Result<(), Outcome> {
    let content = Id::random(&mut rand::thread_rng());
    dialed(ctx, content, 1, true, |link, _| {
        link.send(&Message::Request(0)).map_err(fail)?;
        expect_violation(link, "REQUEST to a node that has sent no BITFIELD")
    })
}

/// Serves content to the downloading peer, answering MANIFEST_REQUEST with `manifest` bytes,
/// INTERESTED with UNCHOKE and REQUEST with `piece(chunk)`, until the peer sends ERROR `code`
/// and closes.
fn serve_until_error(
    link: &mut WireLink,
    manifest: &[u8],
    piece: impl Fn(u32) -> Vec<u8>,
    what: &str,
) -> Result<(), Outcome> {
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Frame(Message::ManifestRequest { offset, length }) => {
                let start = (offset as usize).min(manifest.len());
                let end = start.saturating_add(length as usize).min(manifest.len());
                let data = manifest.get(start..end).unwrap_or_default().to_vec();
                let total_len = manifest.len() as u32;
                let m = Message::ManifestData {
                    total_len,
                    offset,
                    data,
                };
                if let Err(e) = link.send(&m) {
                    return banned_before(link, what, e);
                }
            }
            Got::Frame(Message::Interested) => {
                if let Err(e) = link.send(&Message::Unchoke) {
                    return banned_before(link, what, e);
                }
            }
            Got::Frame(Message::Request(chunk)) => {
                let data = piece(chunk);
                if let Err(e) = link.send(&Message::Piece { chunk, data }) {
                    return banned_before(link, what, e);
                }
            }
            Got::Frame(Message::Error { code, .. }) if code == error_code::BANNED => {
                return match link.recv(ANSWER_WAIT) {
                    Got::Closed => Ok(()),
                    other => Err(unexpected(&format!("{what}: a close after ERROR"), &other)),
                };
            }
            Got::Frame(m @ Message::Error { .. }) => {
                return Err(unexpected(&format!("{what}: ERROR BANNED"), &Got::Frame(m)))
            }
            Got::Frame(_) => {}
            other => return Err(unexpected(&format!("{what}: ERROR BANNED"), &other)),
        }
    }
}

/// A write failed while serving: the peer may have banned us and closed while we answered
/// REQUESTs it had pipelined before the bad chunk. Its ERROR BANNED is then among what it
/// sent before closing, still there to read.
fn banned_before(link: &mut WireLink, what: &str, write: String) -> Result<(), Outcome> {
    loop {
        match link.recv(ANSWER_WAIT) {
            Got::Frame(Message::Error { code, .. }) if code == error_code::BANNED => return Ok(()),
            Got::Frame(m @ Message::Error { .. }) => {
                return Err(unexpected(&format!("{what}: ERROR BANNED"), &Got::Frame(m)))
            }
            Got::Frame(_) => {}
            _ => {
                return Err(fail(format!(
                    "{what}: write failed ({write}) and no ERROR BANNED came before the close"
                )))
            }
        }
    }
}

/// Manifest bytes that do not hash to the content ID: the sender is banned (wire.md 5, 7).
fn bad_manifest(ctx: &mut Ctx) -> Result<(), Outcome> {
    let real = Manifest::for_data(b"conform: a manifest that is not the content's")
        .map_err(|e| fail(e.to_string()))?;
    let content = Id::random(&mut rand::thread_rng());
    let bytes = real.encode();
    dialed(ctx, content, 1, true, |link, listener| {
        serve_until_error(link, &bytes, |_| vec![0], "a manifest of other content")?;
        not_again(listener)
    })
}

/// A chunk whose hash is not the manifest's: the sender is banned (wire.md 6, 7).
fn bad_chunk(ctx: &mut Ctx) -> Result<(), Outcome> {
    // Fresh content every run: a peer that fetched it before would not dial again.
    let data: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
    let m = Manifest::for_data(&data).map_err(|e| fail(e.to_string()))?;
    let chunks = m.lengths().chunk_count();
    let bytes = m.encode();
    let lengths = m.lengths();
    let piece = move |chunk: u32| {
        let len = lengths.validate(chunk).map_or(1, |c| lengths.chunk_len(c));
        vec![0xee; len as usize]
    };
    dialed(ctx, m.content_id(), chunks, true, |link, listener| {
        serve_until_error(link, &bytes, piece, "a chunk that fails verification")?;
        not_again(listener)
    })
}

/// A peer that banned us does not connect to us again (wire.md 7): nothing for a moment.
fn not_again(listener: &TcpListener) -> Result<(), Outcome> {
    let deadline = Instant::now() + SILENCE_WAIT;
    while Instant::now() < deadline {
        if listener.accept().is_ok() {
            return Err(fail("the peer connected again to a peer it banned"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A seed that super-seeds (wire.md 11): an empty BITFIELD, then a HAVE for every chunk. The
/// peer must not give up on it (rule 4: a BITFIELD is not final) and downloads everything;
/// its HAVE for each chunk shows it verified them.
fn not_final(ctx: &mut Ctx) -> Result<(), Outcome> {
    // Fresh content every run: a peer that fetched it before would not dial again.
    let data: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
    let m = Manifest::for_data(&data).map_err(|e| fail(e.to_string()))?;
    let chunks = m.lengths().chunk_count();
    let (bytes, lengths) = (m.encode(), m.lengths());
    dialed(ctx, m.content_id(), chunks, false, |link, _| {
        let mut offered = false;
        let mut verified = std::collections::BTreeSet::new();
        while verified.len() < chunks as usize {
            match link.recv(ANSWER_WAIT) {
                Got::Frame(Message::ManifestRequest { offset, .. }) => {
                    let total_len = bytes.len() as u32;
                    let data = bytes.get(offset as usize..).unwrap_or_default().to_vec();
                    let md = Message::ManifestData {
                        total_len,
                        offset,
                        data,
                    };
                    link.send(&md).map_err(fail)?;
                    if !offered {
                        offered = true;
                        let haves: Vec<Message> = (0..chunks).map(Message::Have).collect();
                        link.send_all(&haves).map_err(fail)?;
                    }
                }
                Got::Frame(Message::Interested) => link.send(&Message::Unchoke).map_err(fail)?,
                Got::Frame(Message::Request(chunk)) => {
                    let range = lengths.validate(chunk).map(|c| lengths.chunk_range(c));
                    let Some(r) = range else {
                        return Err(fail(format!("REQUEST for chunk {chunk}, past the end")));
                    };
                    let piece = data.get(r.start as usize..r.end as usize);
                    let data = piece.unwrap_or_default().to_vec();
                    link.send(&Message::Piece { chunk, data }).map_err(fail)?;
                }
                Got::Frame(Message::Have(i)) => {
                    verified.insert(i);
                }
                Got::Frame(Message::Error { code, .. }) if code == error_code::COMPLETE => {
                    return Ok(())
                }
                Got::Frame(m @ Message::Error { .. }) => {
                    return Err(unexpected("the download to go on", &Got::Frame(m)))
                }
                Got::Frame(_) => {}
                other => {
                    return Err(unexpected(
                        "the download to go on after an empty BITFIELD and HAVEs",
                        &other,
                    ))
                }
            }
        }
        Ok(())
    })
}

/// Peer exchange names node IDs (wire.md 4.16): the suite, as the peer's seed, lists two
/// addresses of its own in PEERS, one with the ID its listener there proves, one with an ID
/// nobody there holds. The dial to the second must end in the secure handshake, before any
/// frame (the dialer checks the ID it expects, secure.md 3); the first, which must get the
/// peer's HANDSHAKE, shows that the peer dials PEERS at all. PEERS are hints: a peer that
/// dials neither, or only the first, is SKIP, not FAIL.
fn pex_node_ids(ctx: &mut Ctx) -> Result<(), Outcome> {
    let content = Id::random(&mut rand::thread_rng());
    let log = ctx.log.clone();
    dialed(ctx, content, 1, true, |link, listener| {
        let ip = listener.local_addr().map_err(|e| fail(e.to_string()))?.ip();
        let listen = || {
            let l = TcpListener::bind((ip, 0)).map_err(|e| fail(format!("listen: {e}")))?;
            l.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
            let at = l.local_addr().map_err(|e| fail(e.to_string()))?;
            Ok::<_, Outcome>((l, at))
        };
        let ((wrong, wrong_at), (right, right_at)) = (listen()?, listen()?);
        let (keys, listed) = fresh_keys().map_err(fail)?;
        let claimed = Id::random(&mut rand::thread_rng());
        let peers = vec![
            PexPeer {
                addr: wrong_at,
                node_id: claimed,
            },
            PexPeer {
                addr: right_at,
                node_id: listed,
            },
        ];
        link.send(&Message::Peers(peers)).map_err(fail)?;
        // Each: `Some(true)` a session completed (and for the listed node, its HANDSHAKE
        // came), `Some(false)` it did not, `None` no dial yet.
        let (mut at_wrong, mut at_right) = (None, None);
        let mut keys = Some(keys);
        let deadline = Instant::now() + ANSWER_WAIT * 2;
        while (at_wrong.is_none() || at_right.is_none()) && Instant::now() < deadline {
            if let Some(s) = at_wrong.is_none().then(|| wrong.accept().ok()).flatten() {
                let _ = s.0.set_nonblocking(false);
                at_wrong = Some(WireLink::accepted(s.0, ANSWER_WAIT, &log).is_ok());
            }
            if let Some(s) = at_right.is_none().then(|| right.accept().ok()).flatten() {
                let _ = s.0.set_nonblocking(false);
                let k = keys
                    .take()
                    .ok_or_else(|| fail("the listed node's keys used twice"))?;
                let hello = |mut l: WireLink| {
                    matches!(l.recv(ANSWER_WAIT),
                        Got::Frame(Message::Handshake(h)) if h.content_id == content)
                };
                at_right = Some(WireLink::accepted_as(s.0, ANSWER_WAIT, &log, k).is_ok_and(hello));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match (at_wrong, at_right) {
            (Some(true), _) => Err(fail(
                "the peer completed a secure session at an address PEERS listed with another \
                 node ID: a dial to an address learnt from PEERS must expect the listed ID",
            )),
            (_, Some(false)) => Err(fail(
                "the node PEERS listed proved the listed ID, but the peer did not say \
                 HANDSHAKE to it",
            )),
            (Some(false), Some(true)) => Ok(()),
            (Some(false), None) => Err(Outcome::Skip(
                "the peer hung up on the node that is not the listed one but never dialled \
                 the listed one: its check cannot be told from a failed dial"
                    .into(),
            )),
            (None, Some(true)) => Err(Outcome::Skip(
                "the peer dialled only the address listed with its node's real ID".into(),
            )),
            (None, None) => Err(Outcome::Skip(
                "the peer dialled no address of PEERS (they are hints, wire.md §4.16)".into(),
            )),
        }
    })
}
