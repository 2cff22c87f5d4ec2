//! DHT cases (dht.md): every request answered with its txid, tokens, ANNOUNCE and its
//! errors, and the datagrams a node must drop without a word.

use std::net::SocketAddr;

use super::link::DhtLink;
use super::{fail, Case, Ctx, Outcome, ANSWER_WAIT, SILENCE_WAIT};
use crate::id::Id;
use crate::proto::dht::{error_code, Datagram, Message, MAX_CONTACTS, TOKEN_LEN};

/// The DHT cases.
pub fn cases() -> Vec<Case> {
    let c = Case::new;
    vec![
        c("dht-ping", "dht.md §4.1, §4.2, §3", ping),
        c("dht-find-node", "dht.md §4.3, §4.4, §8", find_node),
        c(
            "dht-get-providers-token",
            "dht.md §4.5, §4.6, §9",
            get_providers,
        ),
        c(
            "dht-announce-with-token",
            "dht.md §4.7, §4.8, §10",
            announce,
        ),
        c(
            "dht-announce-port-0",
            "dht.md §4.7, §10 step 2",
            announce_port_0,
        ),
        c("dht-announce-bad-token", "dht.md §9, §10 step 1", bad_token),
        c(
            "dht-announce-token-of-another-port",
            "dht.md §9",
            other_port_token,
        ),
        c("dht-providers-of-its-content", "dht.md §4.6", own_content),
        c("dht-response-not-answered", "dht.md §3", response_ignored),
        c(
            "dht-malformed-dropped",
            "overview.md §7, §9",
            malformed_dropped,
        ),
        c("dht-version-2-dropped", "overview.md §6", version_2_dropped),
    ]
}

fn link(ctx: &Ctx) -> Result<DhtLink, Outcome> {
    DhtLink::open(ctx.opts.target, &ctx.log).map_err(fail)
}

fn random_id() -> Id {
    Id::random(&mut rand::thread_rng())
}

fn ping(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let d = l.request(Message::Ping, ANSWER_WAIT).map_err(fail)?;
    let Message::Pong { observed } = d.msg else {
        return Err(fail(format!("expected PONG, got {}", d.msg.name())));
    };
    if observed.port() != l.local_port() {
        return Err(fail(format!(
            "PONG says we are at {observed}, but our port is {}",
            l.local_port()
        )));
    }
    ctx.peer_id = Some(d.sender);
    Ok(())
}

fn find_node(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let d = l
        .request(
            Message::FindNode {
                target: random_id(),
            },
            ANSWER_WAIT,
        )
        .map_err(fail)?;
    let Message::Nodes { contacts } = d.msg else {
        return Err(fail(format!("expected NODES, got {}", d.msg.name())));
    };
    if contacts.len() > MAX_CONTACTS {
        return Err(fail("more than k contacts"));
    }
    // §8: never the requester itself.
    if contacts.iter().any(|c| c.id == l.node_id) {
        return Err(fail("NODES lists the requester"));
    }
    Ok(())
}

/// GET_PROVIDERS for `key`: the token and the providers.
fn providers(l: &mut DhtLink, key: Id) -> Result<([u8; TOKEN_LEN], Vec<SocketAddr>), Outcome> {
    let d = l
        .request(Message::GetProviders { key }, ANSWER_WAIT)
        .map_err(fail)?;
    match d.msg {
        Message::Providers {
            token, providers, ..
        } => Ok((token, providers)),
        m => Err(fail(format!("expected PROVIDERS, got {}", m.name()))),
    }
}

fn get_providers(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let (_, p) = providers(&mut l, random_id())?;
    if !p.is_empty() {
        return Err(fail("providers listed for a key nobody announced"));
    }
    Ok(())
}

/// ANNOUNCE `key` with `port` and the token the peer gave; the answer.
fn announce_with(l: &mut DhtLink, key: Id, port: u16) -> Result<Datagram, Outcome> {
    let (token, _) = providers(l, key)?;
    l.request(
        Message::Announce {
            key,
            token,
            port,
            rendezvous: None,
        },
        ANSWER_WAIT,
    )
    .map_err(fail)
}

fn announce_then_listed(ctx: &mut Ctx, port: u16) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let key = random_id();
    let d = announce_with(&mut l, key, port)?;
    if d.msg != Message::Ack {
        return Err(fail(format!("expected ACK, got {}", d.msg.name())));
    }
    let (_, p) = providers(&mut l, key)?;
    let want = if port == 0 { l.local_port() } else { port };
    if !p.iter().any(|a| a.port() == want) {
        return Err(fail(format!(
            "after ACK, PROVIDERS does not list us at port {want}: {p:?}"
        )));
    }
    Ok(())
}

fn announce(ctx: &mut Ctx) -> Result<(), Outcome> {
    announce_then_listed(ctx, 40123)
}

fn announce_port_0(ctx: &mut Ctx) -> Result<(), Outcome> {
    announce_then_listed(ctx, 0)
}

fn expect_bad_token(d: Datagram) -> Result<(), Outcome> {
    match d.msg {
        Message::Error { code, .. } if code == error_code::BAD_TOKEN => Ok(()),
        m => Err(fail(format!("expected ERROR BAD_TOKEN, got {}", m.name()))),
    }
}

fn bad_token(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let d = l
        .request(
            Message::Announce {
                key: random_id(),
                token: rand::random(),
                port: 40123,
                rendezvous: None,
            },
            ANSWER_WAIT,
        )
        .map_err(fail)?;
    expect_bad_token(d)
}

fn other_port_token(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut a = link(ctx)?;
    let mut b = link(ctx)?;
    let key = random_id();
    let (token, _) = providers(&mut a, key)?;
    let d = b
        .request(
            Message::Announce {
                key,
                token,
                port: 40123,
                rendezvous: None,
            },
            ANSWER_WAIT,
        )
        .map_err(fail)?;
    expect_bad_token(d)
}

/// The peer provides the test content: its PROVIDERS answer lists it, once (its own entry,
/// unspecified address rewritten as the requester must, counts as the address it answers from).
fn own_content(ctx: &mut Ctx) -> Result<(), Outcome> {
    let content = super::session::content(ctx)?;
    let mut l = link(ctx)?;
    let (_, p) = providers(&mut l, content)?;
    let peer = ctx.opts.target;
    let resolved: Vec<SocketAddr> = p
        .iter()
        .map(|a| {
            if a.ip().is_unspecified() {
                let port = if a.port() == 0 { peer.port() } else { a.port() };
                SocketAddr::new(peer.ip(), port)
            } else {
                *a
            }
        })
        .collect();
    let itself = resolved
        .iter()
        .filter(|a| a.ip() == peer.ip() && a.port() == peer.port());
    match itself.count() {
        1 => Ok(()),
        0 => Err(fail(format!("the peer does not list itself: {p:?}"))),
        n => Err(fail(format!("the peer lists itself {n} times: {p:?}"))),
    }
}

/// A response sent to the peer out of the blue is not answered (there is nothing to answer).
fn response_ignored(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    l.send(Message::Ack).map_err(fail)?;
    l.send(Message::Nodes {
        contacts: Vec::new(),
    })
    .map_err(fail)?;
    if let Some(d) = l.recv(SILENCE_WAIT, None) {
        return Err(fail(format!("a response was answered: {d:?}")));
    }
    ping_still_answered(&mut l)
}

fn ping_still_answered(l: &mut DhtLink) -> Result<(), Outcome> {
    match l.request(Message::Ping, ANSWER_WAIT) {
        Ok(d) if matches!(d.msg, Message::Pong { .. }) => Ok(()),
        Ok(d) => Err(fail(format!("expected PONG, got {}", d.msg.name()))),
        Err(e) => Err(fail(format!("a PING after that: {e}"))),
    }
}

/// Hand-made malformed datagrams (vectors of dht-invalid.txt): none is answered, and the
/// peer still answers a PING afterwards.
fn malformed_dropped(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let mut ping = Datagram {
        flags: 0,
        txid: 7,
        sender: l.node_id,
        msg: Message::Ping,
    }
    .encode();
    let mut bad: Vec<Vec<u8>> = Vec::new();
    bad.push(ping.get(..10).unwrap_or_default().to_vec()); // ends inside the txid
    let mut magic = ping.clone();
    magic[0] = b'p';
    bad.push(magic);
    let mut unknown = ping.clone();
    unknown[3] = 0x7e;
    bad.push(unknown);
    ping.push(0); // one trailing byte
    bad.push(ping);
    bad.push(b"GET / HTTP/1.0\r\n\r\n".to_vec());
    for b in &bad {
        l.send_raw(b).map_err(fail)?;
    }
    if let Some(d) = l.recv(SILENCE_WAIT, None) {
        return Err(fail(format!(
            "a malformed datagram was answered: {:?}",
            d.map(|d| d.msg.name())
        )));
    }
    ping_still_answered(&mut l)
}

fn version_2_dropped(ctx: &mut Ctx) -> Result<(), Outcome> {
    let mut l = link(ctx)?;
    let mut ping = Datagram {
        flags: 0,
        txid: 9,
        sender: l.node_id,
        msg: Message::Ping,
    }
    .encode();
    ping[2] = 2;
    l.send_raw(&ping).map_err(fail)?;
    if l.recv(SILENCE_WAIT, None).is_some() {
        return Err(fail("a version 2 datagram was answered"));
    }
    ping_still_answered(&mut l)
}
