//! Peer exchange with node IDs (wire.md section 4.16, issue 17): what a node lists, and what
//! a dial to an address learnt from PEERS expects. One engine, driven by hand: the frames it
//! would receive are given to it directly, its actions read back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::content::{ContentManifest, Manifest};
use crate::proto::wire::PexPeer;

const ME: Id = Id([7; 32]);

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, i], 4000))
}

fn entry(i: u8, id: u8) -> PexPeer {
    PexPeer {
        addr: addr(i),
        node_id: Id([id; 32]),
    }
}

/// The dials among `e`'s pending actions, with the ID each expects; the rest is dropped.
fn dials(e: &mut Engine) -> Vec<(SocketAddr, Option<Id>)> {
    dial_conns(e).into_iter().map(|(_, a, x)| (a, x)).collect()
}

/// The dials among `e`'s pending actions, with their connection.
fn dial_conns(e: &mut Engine) -> Vec<(ConnId, SocketAddr, Option<Id>)> {
    std::iter::from_fn(|| e.poll_action())
        .filter_map(|a| match a {
            Action::Wire(WireAction::Connect { conn, addr, expect }) => Some((conn, addr, expect)),
            _ => None,
        })
        .collect()
}

/// An engine downloading `content` with one handshaken connection, to node `1 x 32` at
/// `addr(1)`: the peer whose PEERS the tests feed in.
fn downloading(cfg: EngineConfig) -> (Engine, Id, ConnId, Instant) {
    let now = super::tests::start();
    let mut e = Engine::new(ME, 4000, cfg, 1);
    let content = Id([9; 32]);
    e.download(now, content, None, None);
    e.add_peers(now, &content, &[addr(1)]);
    let conn = std::iter::from_fn(|| e.poll_action())
        .find_map(|a| match a {
            Action::Wire(WireAction::Connect { conn, .. }) => Some(conn),
            _ => None,
        })
        .expect("a dial to the first peer");
    e.connected(now, conn);
    let hs = Handshake::new(Id([1; 32]), content, 4000);
    e.frame(now, conn, Message::Handshake(hs));
    while e.poll_action().is_some() {}
    (e, content, conn, now)
}

/// A dial to an address learnt from PEERS expects the ID listed with it; an entry naming
/// our own ID, a banned one, or the node already connected is not dialled; one address
/// listed under two IDs is dialled once, expecting the first; an ID a DHT record named for
/// the address comes before the PEERS entry's.
#[test]
fn a_dial_to_a_pex_learnt_address_expects_the_listed_id() {
    let (mut e, content, conn, now) = downloading(EngineConfig::default());
    e.bans.nodes.insert(Id([0x44; 32]));
    // A DHT answer named 0x66 at addr(6) (IDs only: the address is not queued by it).
    e.add_peers_with_ids(now, &content, &[], &[(addr(6), Id([0x66; 32]))]);
    assert!(dials(&mut e).is_empty());
    let peers = vec![
        entry(2, 0x22),
        entry(3, 7),    // us, somewhere we do not know as ours
        entry(4, 0x44), // banned
        entry(5, 0x55),
        entry(5, 0x56), // the same address again: the first ID is kept
        entry(6, 0x67), // the DHT's 0x66 comes first
        entry(7, 1),    // the node we are connected to already
    ];
    e.frame(now, conn, Message::Peers(peers));
    let got = dials(&mut e);
    let want = vec![
        (addr(2), Some(Id([0x22; 32]))),
        (addr(5), Some(Id([0x55; 32]))),
        (addr(6), Some(Id([0x66; 32]))),
    ];
    assert_eq!(got, want);
    // Each was dialled once: listed again (under any ID), none is dialled again.
    e.frame(
        now,
        conn,
        Message::Peers(vec![entry(2, 0x99), entry(5, 0x55)]),
    );
    assert_eq!(dials(&mut e), vec![]);
    assert!(
        e.contents[&content]
            .dials
            .as_ref()
            .is_none_or(|d| d.pex_ids.is_empty()),
        "kept after the dial"
    );
}

/// A hostile peer floods PEERS (fresh addresses, one address under 50 IDs): what the
/// receiver keeps is bounded by its candidate queue, the first ID of an address stays, and
/// the DHT's expected IDs are untouched.
#[test]
fn a_flood_of_pex_entries_is_bounded_and_keeps_the_first_id() {
    // One connection per content: the lister's, so every entry waits in the queue.
    let cfg = EngineConfig {
        max_peers_per_content: 1,
        ..EngineConfig::default()
    };
    let (mut e, content, conn, now) = downloading(cfg);
    e.add_peers_with_ids(now, &content, &[], &[(addr(200), Id([0x66; 32]))]);
    let same: Vec<PexPeer> = (0..50).map(|i| entry(250, 0x80 + i)).collect();
    e.frame(now, conn, Message::Peers(same));
    for round in 0..30u32 {
        let fresh: Vec<PexPeer> = (0..50u32)
            .map(|i| {
                let n = round * 50 + i;
                let ip = [10, (n >> 16) as u8, (n >> 8) as u8, n as u8];
                PexPeer {
                    addr: SocketAddr::from((ip, 4000)),
                    node_id: Id([n as u8; 32]),
                }
            })
            .collect();
        e.frame(now, conn, Message::Peers(fresh));
    }
    assert!(dials(&mut e).is_empty());
    let c = e.contents[&content].dials.as_deref().unwrap();
    assert_eq!(c.candidates.len(), MAX_CANDIDATES);
    assert!(c.pex_ids.len() <= c.candidates.len());
    assert!(c.pex_ids.keys().all(|a| c.candidates.contains(a)));
    assert_eq!(c.pex_ids.get(&addr(250)), Some(&Id([0x80; 32])));
    assert_eq!(e.expected_ids.len(), 1);
    assert_eq!(e.expected_id(&addr(200)), Some(Id([0x66; 32])));
}

/// A node lists the peers it completed a handshake with, each at its listen port with the node ID its
/// HANDSHAKE named (which the reactor checked against the session), each address once,
/// never the receiver, never a peer that accepts no connections.
#[test]
fn a_node_lists_its_handshaken_peers_with_their_ids() {
    let now = super::tests::start();
    let mut e = Engine::new(ME, 4000, EngineConfig::default(), 1);
    let m = Manifest::for_data_with_chunk_size(&[3u8; 40_000], 16 << 10).unwrap();
    let m = Arc::new(ContentManifest::File(m));
    let content = m.content_id();
    e.share(m, None);
    // Peers from 192.0.2.x at ephemeral ports: two listen on 5001 (one behind the same
    // NAT as the other), one on 5002 elsewhere, one accepts no connections.
    let from = |ip: u8, id: u8| SocketAddr::from(([192, 0, 2, ip], 50_000 + u16::from(id)));
    let mut hello = |ip: u8, id: u8, port: u16| {
        let conn = e.accepted(now, from(ip, id));
        e.frame(
            now,
            conn,
            Message::Handshake(Handshake::new(Id([id; 32]), content, port)),
        );
        conn
    };
    hello(1, 0x11, 5001);
    hello(1, 0x12, 5001);
    hello(2, 0x22, 5002);
    hello(3, 0x33, 0);
    while e.poll_action().is_some() {}
    let last = e.accepted(now, from(4, 0x44));
    let hs = Handshake::new(Id([0x44; 32]), content, 5004);
    e.frame(now, last, Message::Handshake(hs));
    let listed: Vec<PexPeer> = std::iter::from_fn(|| e.poll_action())
        .find_map(|a| match a {
            Action::Wire(WireAction::Send {
                conn,
                msg: Message::Peers(p),
            }) if conn == last => Some(p),
            _ => None,
        })
        .expect("a PEERS to the newcomer");
    let at = |ip: u8, port: u16| SocketAddr::from(([192, 0, 2, ip], port));
    let want = vec![
        PexPeer {
            addr: at(1, 5001),
            node_id: Id([0x11; 32]),
        },
        PexPeer {
            addr: at(2, 5002),
            node_id: Id([0x22; 32]),
        },
    ];
    assert_eq!(listed, want);
}

/// A lister that never runs out of fresh PEERS entries keeps the candidate queue from running
/// empty, so no provider search ever clears the addresses tried: they are bounded by
/// `MAX_TRIED` all the same, and the download goes on dialling.
#[test]
fn addresses_tried_stay_bounded_under_endless_pex() {
    // Two connections per content: the lister's and one dial at a time.
    let cfg = EngineConfig {
        max_peers_per_content: 2,
        ..EngineConfig::default()
    };
    let (mut e, content, conn, now) = downloading(cfg);
    let mut dialled = 0usize;
    for round in 0..100u32 {
        let fresh: Vec<PexPeer> = (0..50u32)
            .map(|i| {
                let n = round * 50 + i;
                PexPeer {
                    addr: SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 4000)),
                    node_id: Id([9; 32]),
                }
            })
            .collect();
        e.frame(now, conn, Message::Peers(fresh));
        // Every dial fails at once; the next candidate is dialled in its place.
        loop {
            let failed: Vec<ConnId> = std::iter::from_fn(|| e.poll_action())
                .filter_map(|a| match a {
                    Action::Wire(WireAction::Connect { conn, .. }) => Some(conn),
                    _ => None,
                })
                .collect();
            if failed.is_empty() {
                break;
            }
            for k in failed {
                dialled += 1;
                e.closed(now, k);
            }
        }
    }
    assert_eq!(dialled, 5000, "every fresh address was dialled once");
    let c = e.contents[&content].dials.as_deref().unwrap();
    assert!(c.tried.len() <= MAX_TRIED, "{} tried", c.tried.len());
    assert!(c.candidates.is_empty());
}

/// A lister names a wrong ID for a real peer's address before an honest one names the
/// right one: the dial expecting the wrong ID is refused at the handshake, and the address
/// is dialled again at once, expecting the ID its node proved (wire.md section 4.16).
#[test]
fn a_wrong_pex_id_named_first_does_not_keep_the_real_node_out() {
    let cfg = EngineConfig {
        max_peers_per_content: 2,
        ..EngineConfig::default()
    };
    let (mut e, _, conn, now) = downloading(cfg);
    // One PEERS with the lie first, then the truth (as from two listers).
    e.frame(
        now,
        conn,
        Message::Peers(vec![entry(5, 0x66), entry(5, 0x55)]),
    );
    let got = dial_conns(&mut e);
    assert_eq!(got.len(), 1);
    let (dial, a, expect) = got[0];
    assert_eq!((a, expect), (addr(5), Some(Id([0x66; 32]))));
    e.connected(now, dial);
    // The handshake proves 0x55: the driver reports it, then closes the connection.
    e.wrong_peer(dial, Id([0x55; 32]));
    e.closed(now, dial);
    let again = dials(&mut e);
    assert_eq!(again, vec![(addr(5), Some(Id([0x55; 32])))]);
}

/// With no other entry, the address waits for one naming the proven ID: entries naming the
/// wrong ID again, or any third ID, are dropped; the proven one gets one more dial.
#[test]
fn a_refused_pex_address_is_dialled_again_only_for_the_id_it_proved() {
    let (mut e, content, conn, now) = downloading(EngineConfig::default());
    e.frame(now, conn, Message::Peers(vec![entry(5, 0x66)]));
    let (dial, _, _) = dial_conns(&mut e)[0];
    e.connected(now, dial);
    e.wrong_peer(dial, Id([0x55; 32]));
    e.closed(now, dial);
    assert!(dials(&mut e).is_empty());
    e.frame(
        now,
        conn,
        Message::Peers(vec![entry(5, 0x66), entry(5, 0x77)]),
    );
    assert!(dials(&mut e).is_empty(), "the lie, or another guess");
    e.frame(now, conn, Message::Peers(vec![entry(5, 0x55)]));
    let again = dials(&mut e);
    assert_eq!(again, vec![(addr(5), Some(Id([0x55; 32])))]);
    e.frame(now, conn, Message::Peers(vec![entry(5, 0x55)]));
    assert!(dials(&mut e).is_empty(), "once, not for every entry");
    assert!(e.contents[&content]
        .dials
        .as_deref()
        .unwrap()
        .proven
        .is_empty());
}

/// A DHT record's ID that the node at the address does not prove is not second-guessed by
/// PEERS: the address waits for the next provider search, as before.
#[test]
fn a_dht_named_id_refused_at_the_handshake_is_left_to_the_next_search() {
    let (mut e, content, conn, now) = downloading(EngineConfig::default());
    e.add_peers_with_ids(now, &content, &[addr(6)], &[(addr(6), Id([0x66; 32]))]);
    let (dial, _, expect) = dial_conns(&mut e)[0];
    assert_eq!(expect, Some(Id([0x66; 32])));
    e.connected(now, dial);
    e.wrong_peer(dial, Id([0x55; 32]));
    e.closed(now, dial);
    e.frame(now, conn, Message::Peers(vec![entry(6, 0x55)]));
    assert!(dials(&mut e).is_empty());
    assert!(e.contents[&content]
        .dials
        .as_deref()
        .unwrap()
        .proven
        .is_empty());
}
