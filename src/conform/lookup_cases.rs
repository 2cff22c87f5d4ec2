//! Lookup cases (dht.md section 7): the suite runs a small network of its own, a chain of
//! nodes each closer to a key than the last, introduces the first to the peer, and asks the
//! peer (through `--api`) who provides the key. Only the closest node of the chain knows: the
//! peer must walk the chain hop by hop, asking each node what it knows, and come back with
//! that node's provider.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{fail, Case, Ctx, Outcome};
use crate::id::Id;
use crate::identity::Identity;
use crate::proto::dht::{proof_message, Contact, Datagram, Message, TOKEN_LEN};

/// Nodes in the chain.
const CHAIN: usize = 12;
/// How long the suite's nodes take to answer: long enough that requests overlap (the peer
/// sends them in parallel), well under any soft timeout (100 ms at least, dht.md section 7).
const ANSWER_DELAY: Duration = Duration::from_millis(20);
/// How long after a stall the suite does not count requests against alpha.
const STALL_GRACE: Duration = Duration::from_millis(50);
/// How long the lookup may take (the peer's table may also hold dead contacts from earlier
/// cases, each costing it a timeout).
const LOOKUP_WAIT: Duration = Duration::from_secs(30);

/// The lookup cases.
pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "dht-lookup-walks-a-chain",
        "dht.md §7 steps 1-3 and 7, §4.5, §4.6, §13.3",
        walks_a_chain,
    )]
}

/// One node of the suite's network.
struct Fake {
    id: Id,
    sock: UdpSocket,
    /// Node 0's identity key: it introduces itself and must prove its ID to enter the
    /// peer's table (dht.md section 6.1). The other nodes' IDs are made to form the chain
    /// and are only lookup candidates, which need no proof.
    key: Option<Identity>,
}

/// What the suite's network saw.
#[derive(Default)]
struct Seen {
    /// (node index, request kind, key or target) of every request from the peer.
    requests: Vec<(usize, &'static str, Option<Id>)>,
    /// The most requests of the lookup under test the peer had waiting on the suite's nodes
    /// at once.
    max_waiting: usize,
}

/// Node `j`'s ID: the key with one bit flipped, further down for later nodes, so node `j + 1`
/// is closer to the key than node `j` (XOR distance, dht.md section 6).
fn chain_id(key: &Id, j: usize) -> Id {
    let mut id = *key;
    let bit = 8 + 14 * j;
    if let Some(b) = id.0.get_mut(bit / 8) {
        *b ^= 0x80 >> (bit % 8);
    }
    id
}

fn walks_a_chain(ctx: &mut Ctx) -> Result<(), Outcome> {
    let Some(api) = ctx.opts.api else {
        return Err(Outcome::Skip(
            "needs --api (the peer is asked to look a key up)".into(),
        ));
    };
    // Node 0 has a real key; the key looked up is chosen so that node 0 sits where the
    // chain starts (chain_id flips one bit, so it is its own inverse).
    let first = Identity::generate();
    let key = chain_id(&first.node_id(), 0);
    let mut first = Some(first);
    let provider: SocketAddr = ([192, 0, 2, 77], 4242).into();
    let bind: SocketAddr = if ctx.opts.target.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let mut nodes = Vec::new();
    for j in 0..CHAIN {
        let sock = UdpSocket::bind(bind).map_err(|e| fail(format!("UDP socket: {e}")))?;
        sock.set_nonblocking(true)
            .map_err(|e| fail(format!("UDP socket: {e}")))?;
        let key_of_node = first.take();
        nodes.push(Fake {
            id: key_of_node
                .as_ref()
                .map_or_else(|| chain_id(&key, j), Identity::node_id),
            sock,
            key: key_of_node,
        });
    }
    let contacts: Vec<Contact> = nodes
        .iter()
        .map(|n| Contact {
            id: n.id,
            addr: n.sock.local_addr().unwrap_or(bind),
        })
        .collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let target = ctx.opts.target;
    let net = {
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || serve(&nodes, &contacts, key, provider, target, &seen, &stop))
    };

    // The first node introduces itself with a PING (the network thread sends it): the peer
    // checks it with a PING of its own (section 13.3), which the network answers, and takes
    // it into its table.
    std::thread::sleep(Duration::from_millis(1500));

    let req = crate::api::client::request(
        "local_request_content_info",
        json!({ "content_hash": key.to_hex() }),
    );
    let reply = crate::api::client::call(api, &req, Some(LOOKUP_WAIT));
    // Late requests of the same lookup still count; then the network stops.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = net.join();
    let reply = reply.map_err(|e| fail(format!("local_request_content_info: {e}")))?;
    let seen = seen
        .lock()
        .map_err(|_| fail("the suite's network thread panicked"))?;
    check(&reply, &seen, &key, provider)
}

fn check(
    reply: &serde_json::Value,
    seen: &Seen,
    key: &Id,
    provider: SocketAddr,
) -> Result<(), Outcome> {
    let peers: Vec<&str> = reply["peers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    // Requests about other keys (the peer announcing what it shares, refreshing its table)
    // are its own business.
    let asked: Vec<usize> = seen
        .requests
        .iter()
        .filter(|(j, kind, k)| *j < CHAIN && *kind == "GET_PROVIDERS" && k.as_ref() == Some(key))
        .map(|(j, _, _)| *j)
        .collect();
    let deepest = asked.iter().max().copied();
    if !peers.contains(&provider.to_string().as_str()) {
        return Err(fail(format!(
            "the reply does not list the provider {provider} that only the closest node of \
             the chain knows; the peer asked chain nodes {asked:?} (deepest {deepest:?} of \
             {}); reply: {reply}",
            CHAIN - 1
        )));
    }
    // Each node at most twice: the request and one retry (section 7 step 6).
    for j in 0..CHAIN {
        let n = asked.iter().filter(|&&a| a == j).count();
        if n > 2 {
            return Err(fail(format!("node {j} of the chain was asked {n} times")));
        }
    }
    if seen.max_waiting > 3 {
        return Err(fail(format!(
            "{} requests were waiting at once on the chain, more than alpha = 3 while every \
             answer made progress; chain nodes asked, in order: {asked:?}",
            seen.max_waiting
        )));
    }
    Ok(())
}

/// The suite's network: answers the peer's PINGs, and its FIND_NODE and GET_PROVIDERS with the
/// next two nodes of the chain (the last node: with the provider), after [`ANSWER_DELAY`].
fn serve(
    nodes: &[Fake],
    contacts: &[Contact],
    key: Id,
    provider: SocketAddr,
    target: SocketAddr,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) {
    // The introduction: node 0 pings the peer.
    if let Some(first) = nodes.first() {
        let d = Datagram {
            flags: 0,
            txid: rand::random(),
            sender: first.id,
            msg: Message::Ping,
        };
        let _ = first.sock.send_to(&d.encode(), target);
    }
    // (when, from which node, to whom, the answer, whether it answers a lookup request).
    let mut pending: Vec<(Instant, usize, SocketAddr, Vec<u8>, bool)> = Vec::new();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    // The closest chain node named so far (node 0 is known from the start), the answers in
    // a row without progress, and when that streak last reached alpha.
    let mut closest_named = 0usize;
    let mut streak = 0usize;
    let mut last_stall: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < LOOKUP_WAIT * 2 {
        let now = Instant::now();
        for (j, n) in nodes.iter().enumerate() {
            while let Ok((len, from)) = n.sock.recv_from(&mut buf) {
                let Ok(d) = Datagram::decode(buf.get(..len).unwrap_or_default()) else {
                    continue;
                };
                if !d.msg.is_request() {
                    continue;
                }
                // Only a lookup of the key is shown the chain: the peer's other lookups
                // (announcing what it shares, refreshing its table) learn nothing from the
                // suite's nodes, so the lookup under test starts from node 0 alone.
                let (kind, subject, answer) = match d.msg {
                    Message::Ping => ("PING", None, Message::Pong { observed: from }),
                    Message::FindNode { target } => (
                        "FIND_NODE",
                        Some(target),
                        Message::Nodes {
                            contacts: Vec::new(),
                        },
                    ),
                    Message::GetProviders { key: k } => {
                        let ours = k == key;
                        let last = j + 1 == nodes.len();
                        let answer = Message::Providers {
                            token: [j as u8; TOKEN_LEN],
                            providers: if ours && last {
                                vec![provider]
                            } else {
                                Vec::new()
                            },
                            closer: if ours {
                                next_nodes(contacts, j)
                            } else {
                                Vec::new()
                            },
                            rendezvous: None,
                            provider_ids: None,
                        };
                        ("GET_PROVIDERS", Some(k), answer)
                    }
                    Message::Prove { nonce, addr } => {
                        let Some(k) = &n.key else { continue };
                        let signed = proof_message(&nonce, &n.id, &d.sender, &addr);
                        let proof = Message::Proof {
                            public: k.public(),
                            signature: k.sign(&signed),
                        };
                        ("PROVE", None, proof)
                    }
                    _ => continue,
                };
                let reply = Datagram {
                    flags: 0,
                    txid: d.txid,
                    sender: n.id,
                    msg: answer,
                };
                let lookup = kind == "GET_PROVIDERS" && subject == Some(key);
                if let Ok(mut s) = seen.lock() {
                    s.requests.push((j, kind, subject));
                    // Alpha bounds the requests waiting while answers make progress; after
                    // alpha answers in a row without progress the peer may ask every
                    // remaining candidate at once (section 7 step 4), so those moments (and
                    // a little after, for requests already on their way) are not judged.
                    let stalled = streak >= 3
                        || last_stall.is_some_and(|t| now.duration_since(t) < STALL_GRACE);
                    if lookup && !stalled {
                        let waiting = 1 + pending.iter().filter(|p| p.4).count();
                        s.max_waiting = s.max_waiting.max(waiting);
                    }
                }
                pending.push((now + ANSWER_DELAY, j, from, reply.encode(), lookup));
            }
        }
        pending.retain(|(at, j, to, bytes, lookup)| {
            if *at > now {
                return true;
            }
            if let Some(n) = nodes.get(*j) {
                let _ = n.sock.send_to(bytes, to);
            }
            if *lookup {
                // Progress: the answer names a node closer than any named before.
                let names = (*j + 2).min(CHAIN - 1);
                if *j + 1 < CHAIN && names > closest_named {
                    closest_named = names;
                    streak = 0;
                } else {
                    streak += 1;
                    if streak >= 3 {
                        last_stall = Some(now);
                    }
                }
            }
            false
        });
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What node `j` tells of the key: the next two nodes of the chain (none for the last).
fn next_nodes(contacts: &[Contact], j: usize) -> Vec<Contact> {
    contacts.iter().skip(j + 1).take(2).cloned().collect()
}
