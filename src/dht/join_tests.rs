//! Joining under loss (issue 21) and the counting of answers to requests sent in several
//! copies (issue 18): one `Dht` driven by hand, every datagram built in the test.

use super::routing::K;
use super::*;

fn dht(now: Instant) -> Dht {
    let mut rng = StdRng::seed_from_u64(21);
    Dht::new(
        Identity::from_secret(&rng.gen()),
        DhtConfig::default(),
        7,
        now,
    )
}

/// `n` contacts in bucket `b` of `local`'s table, each at its own global address.
fn contacts_in_bucket(local: &Id, b: usize, n: usize) -> Vec<Contact> {
    let mut rng = StdRng::seed_from_u64(b as u64);
    (0..n)
        .map(|i| Contact {
            id: local.random_in_bucket(b, &mut rng),
            addr: SocketAddr::from(([203, 0, i as u8, 1], 4000)),
        })
        .collect()
}

/// Everything `d` sent, decoded, with its destination.
fn sent(d: &mut Dht) -> Vec<(SocketAddr, Datagram)> {
    let mut out = Vec::new();
    while let Some(t) = d.poll_transmit() {
        if let Ok(dg) = Datagram::decode(&t.payload) {
            out.push((t.dest, dg));
        }
    }
    out
}

/// The answer `from` gives to request `req`: NODES with no contact, or PONG.
fn answer(from: &Contact, req: &Datagram) -> Vec<u8> {
    let msg = match req.msg {
        Message::Ping => Message::Pong {
            observed: from.addr,
        },
        _ => Message::Nodes {
            contacts: Vec::new(),
        },
    };
    Datagram {
        flags: 0,
        txid: req.txid,
        sender: from.id,
        msg,
    }
    .encode()
}

/// [`answer`], but a NODES answer names `named` (if given).
fn answer_naming(from: &Contact, req: &Datagram, named: Option<Contact>) -> Vec<u8> {
    if !matches!(req.msg, Message::FindNode { .. }) {
        return answer(from, req);
    }
    Datagram {
        flags: 0,
        txid: req.txid,
        sender: from.id,
        msg: Message::Nodes {
            contacts: named.into_iter().collect(),
        },
    }
    .encode()
}

/// A node told to bootstrap from a global address, and the bootstrap PING it sent there.
fn bootstrapping(t0: Instant) -> (Dht, SocketAddr, Datagram) {
    let mut d = dht(t0);
    let boot = SocketAddr::from(([203, 0, 113, 1], 4000));
    d.bootstrap_from(boot, t0);
    let (_, ping) = sent(&mut d)
        .into_iter()
        .find(|(to, dg)| *to == boot && dg.msg == Message::Ping)
        .expect("a bootstrap PING");
    (d, boot, ping)
}

/// A node whose bootstrap node (the returned contact) has answered its PING.
fn bootstrap_answered(t0: Instant) -> (Dht, Contact) {
    let (mut d, boot, ping) = bootstrapping(t0);
    let boot_node = Contact {
        id: Identity::from_secret(&[9; 32]).node_id(),
        addr: boot,
    };
    d.handle_datagram(t0, boot, &answer(&boot_node, &ping));
    (d, boot_node)
}

fn is_self_lookup(d: &Dht, dg: &Datagram) -> bool {
    matches!(dg.msg, Message::FindNode { target } if target == d.id())
}

/// Issue 21, the cause of the islands: a joining node's lookup of its own ID went
/// unanswered (its one request, to its bootstrap node, lost twice), while a refresh of its
/// far bucket filled that bucket with k contacts. With k contacts the node counted as
/// joined and never looked itself up again for 15 minutes, so no node near it ever heard
/// of it, and the far nodes it had asked had no room for it: 30 of 10,000 nodes at 5% loss.
/// Now a node keeps looking itself up until one such lookup is answered, however full its
/// table.
#[test]
fn a_node_keeps_joining_until_a_lookup_of_its_own_id_is_answered() {
    let t0 = super::tests::start();
    let mut d = dht(t0);
    let far = contacts_in_bucket(&d.id(), 0, K);
    for c in &far {
        d.add_contact(*c, t0);
    }
    assert_eq!(d.routing_table().len(), K, "a full far bucket");
    let _ = sent(&mut d);
    // The first housekeeping round: the table is full enough, but nobody near has heard of
    // us yet, so we look ourselves up.
    let t1 = t0 + d.config.maintenance_interval;
    d.handle_timeout(t1);
    let out = sent(&mut d);
    let own: Vec<&(SocketAddr, Datagram)> = out
        .iter()
        .filter(|(_, dg)| is_self_lookup(&d, dg))
        .collect();
    assert!(!own.is_empty(), "no lookup of our own ID: {out:?}");
    // Everyone answers, naming a node but nobody closer: the lookup is answered, the join
    // done.
    let mut pending = out;
    while !pending.is_empty() {
        for (to, dg) in std::mem::take(&mut pending) {
            if let Some(c) = far.iter().find(|c| c.addr == to) {
                let other = far.iter().find(|o| o.id != c.id).copied();
                d.handle_datagram(t1, to, &answer_naming(c, &dg, other));
            }
        }
        pending = sent(&mut d);
    }
    assert!(d.joined);
    // From now on housekeeping does not look us up again (until the 15-minute self-lookup).
    for round in 2..6 {
        let t = t0 + d.config.maintenance_interval * round;
        d.handle_timeout(t);
        let out = sent(&mut d);
        assert!(
            !out.iter().any(|(_, dg)| is_self_lookup(&d, dg)),
            "round {round}: {out:?}"
        );
    }
}

/// Issue 21, the islands left at 10% loss (3 of 10,000 nodes, seed 1): each had joined
/// through a node that had joined a moment before and whose table was still empty (its own
/// bootstrap node's PROOF was lost), so the lookup of its own ID got one answer, an empty
/// NODES, and counted as the join. A refresh of its far bucket then filled that bucket with
/// k contacts, whose buckets for it were full: no node took it in, and with k contacts and
/// a join done it did not look itself up again for 15 minutes. An answer that names nobody
/// is no join: the node looks itself up again at the next housekeeping round.
#[test]
fn a_join_answered_only_with_empty_lists_is_no_join() {
    let t0 = super::tests::start();
    let (mut d, boot, ping) = bootstrapping(t0);
    let key = Identity::from_secret(&[9; 32]);
    let boot_node = Contact {
        id: key.node_id(),
        addr: boot,
    };
    d.handle_datagram(t0, boot, &answer(&boot_node, &ping));
    // The bootstrap node proves its key and answers the join lookup with nobody.
    for (to, dg) in sent(&mut d) {
        if to != boot {
            continue;
        }
        let reply = match dg.msg {
            Message::Prove { .. } => Datagram {
                flags: 0,
                txid: dg.txid,
                sender: key.node_id(),
                msg: super::tests::proof_of(&key, &d.id(), &dg.msg),
            }
            .encode(),
            _ => answer(&boot_node, &dg),
        };
        d.handle_datagram(t0, boot, &reply);
    }
    assert_eq!(d.routing_table().len(), 1, "the bootstrap node is in");
    assert!(
        !d.joined,
        "an own-ID lookup answered with nobody is no join"
    );
    // A refresh fills the far bucket (here: contacts saved by hand).
    let me = d.id();
    for c in contacts_in_bucket(&me, 0, K) {
        d.add_contact(c, t0);
    }
    assert!(d.routing_table().len() >= K);
    let _ = sent(&mut d);
    // Housekeeping looks us up again, however full the table (until such a lookup is
    // answered with somebody).
    let mut looked_up = false;
    for round in 1..4 {
        d.handle_timeout(t0 + d.config.maintenance_interval * round);
        looked_up |= sent(&mut d).iter().any(|(_, dg)| is_self_lookup(&d, dg));
    }
    assert!(looked_up, "no lookup of our own ID after an empty join");
}

/// Issue 21: a node whose bootstrap PING was lost, and that others joined through meanwhile,
/// grew a separate network around itself (100 nodes of 300 at 20% loss, or 26% of node
/// lookups failing in 1,000 nodes at 10% loss). Until it has joined, a node answers
/// requests but takes no requester in; once its bootstrap node answers, it does.
#[test]
fn a_node_that_has_not_joined_takes_no_requester_in() {
    let t0 = super::tests::start();
    let (mut d, boot, boot_ping) = bootstrapping(t0);
    // A newcomer asks us: it gets its answer, but no verification PING.
    let newcomer = contacts_in_bucket(&d.id(), 3, 1)[0];
    let ping = Datagram {
        flags: 0,
        txid: 9,
        sender: newcomer.id,
        msg: Message::Ping,
    };
    d.handle_datagram(t0, newcomer.addr, &ping.encode());
    let out = sent(&mut d);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(out[0].1.msg, Message::Pong { .. }));
    assert_eq!(d.stats().verifications, 0);
    // Our bootstrap node answers: we have joined, and the newcomer's next request is
    // verified as usual.
    let boot_key = Identity::from_secret(&[9; 32]);
    let boot_node = Contact {
        id: boot_key.node_id(),
        addr: boot,
    };
    d.handle_datagram(t0, boot, &answer(&boot_node, &boot_ping));
    // It proves its key (dht.md section 6.1) and enters the table.
    let (_, prove) = sent(&mut d)
        .into_iter()
        .find(|(to, dg)| *to == boot && matches!(dg.msg, Message::Prove { .. }))
        .expect("a PROVE to the bootstrap node");
    let proof = Datagram {
        flags: 0,
        txid: prove.txid,
        sender: boot_node.id,
        msg: super::tests::proof_of(&boot_key, &d.id(), &prove.msg),
    };
    d.handle_datagram(t0, boot, &proof.encode());
    assert_eq!(d.routing_table().len(), 1);
    let _ = sent(&mut d);
    d.handle_datagram(t0, newcomer.addr, &ping.encode());
    assert_eq!(d.stats().verifications, 2);
}

/// A node with a key of its own, for tests that need its PROOFs.
struct Peer {
    key: Identity,
    contact: Contact,
}

fn peer(secret: u8, addr: [u8; 4]) -> Peer {
    let key = Identity::from_secret(&[secret; 32]);
    let contact = Contact {
        id: key.node_id(),
        addr: SocketAddr::from((addr, 4000)),
    };
    Peer { key, contact }
}

/// `from` sends `d` a FIND_NODE for its own ID (a join through `d`); every PROVE `d` sends
/// `from` is answered. Returns the contacts `d` answered with.
fn join_through(d: &mut Dht, from: &Peer, now: Instant) -> Vec<Contact> {
    let req = Datagram {
        flags: 0,
        txid: 0x5100 + u64::from(from.contact.id.0[0]),
        sender: from.contact.id,
        msg: Message::FindNode {
            target: from.contact.id,
        },
    };
    d.handle_datagram(now, from.contact.addr, &req.encode());
    let mut named = Vec::new();
    for (to, dg) in sent(d) {
        if to != from.contact.addr {
            continue;
        }
        match dg.msg {
            Message::Nodes { contacts } => named = contacts,
            Message::Prove { .. } => {
                let proof = Datagram {
                    flags: 0,
                    txid: dg.txid,
                    sender: from.contact.id,
                    msg: super::tests::proof_of(&from.key, &d.id(), &dg.msg),
                };
                d.handle_datagram(now, to, &proof.encode());
            }
            _ => {}
        }
    }
    named
}

/// Issue 21, the islands left at 20% loss (57 of 300 nodes with seed 38 of the simulator,
/// 70 with seed 36 before the simulator ran in shards): a node's bootstrap node had joined
/// a moment before and knew nobody, so it answered the join with an empty NODES, and the
/// node's PROVE to it and the retry were lost. Its bootstrap node had answered, so the node
/// took in the nodes that joined through it, and told each of them of the others; a lookup
/// of its own ID through them then named nodes, and it counted as joined: a second network
/// grew from it that knew no node of the first. Until it has joined, a node now names only
/// its bootstrap nodes in its answers, and looks itself up through them alone; their own
/// answers do not count as the join (one that has not joined names only its own way in:
/// nodes that counted that were left with their farthest bucket alone), the answer of a
/// node they named does.
#[test]
fn a_node_that_has_not_joined_names_only_its_way_in() {
    let t0 = super::tests::start();
    let (mut d, boot_node) = bootstrap_answered(t0);
    let boot = boot_node.addr;
    // The join lookup is answered with nobody; the PROVE to the bootstrap node is lost.
    for (to, dg) in sent(&mut d) {
        if to == boot && is_self_lookup(&d, &dg) {
            d.handle_datagram(t0, boot, &answer(&boot_node, &dg));
        }
    }
    assert!(!d.joined);
    // Nodes join through us: we take them in, but name only our bootstrap node to them.
    let newcomers: Vec<Peer> = (0..4)
        .map(|i| peer(40 + i, [198, 51, 100 + i, 1]))
        .collect();
    for n in &newcomers {
        let named = join_through(&mut d, n, t0);
        assert_eq!(
            named,
            vec![boot_node],
            "what we tell a node joining through us"
        );
    }
    assert_eq!(
        d.routing_table().len(),
        newcomers.len(),
        "the newcomers are in"
    );
    // Our next lookup of our own ID asks the bootstrap node alone: the newcomers would
    // name each other, and the join would count.
    let t1 = t0 + d.config.maintenance_interval;
    d.handle_timeout(t1);
    let own: Vec<SocketAddr> = sent(&mut d)
        .into_iter()
        .filter(|(_, dg)| is_self_lookup(&d, dg))
        .map(|(to, _)| to)
        .collect();
    assert!(
        !own.is_empty() && own.iter().all(|to| *to == boot),
        "{own:?}"
    );
    assert!(!d.joined);
    // The bootstrap node names somebody: the lookup goes on through it. Until that node
    // answers, the join does not count (a bootstrap node that has not joined names only its
    // own way in); once it does, it counts, and we answer as usual again.
    let main = peer(60, [192, 0, 2, 1]);
    let mut t2 = t1;
    for main_answers in [false, true] {
        // A later lookup of our own ID (as housekeeping starts them).
        t2 += d.config.maintenance_interval;
        d.handle_timeout(t2);
        let _ = sent(&mut d);
        d.rejoin(t2);
        let mut pending = sent(&mut d);
        for _ in 0..4 {
            for (to, dg) in std::mem::take(&mut pending) {
                if !is_self_lookup(&d, &dg) {
                    continue;
                }
                if to == boot {
                    let named = Some(main.contact);
                    d.handle_datagram(t2, boot, &answer_naming(&boot_node, &dg, named));
                } else if to == main.contact.addr && main_answers {
                    let named = Some(boot_node);
                    d.handle_datagram(t2, to, &answer_naming(&main.contact, &dg, named));
                }
            }
            pending = sent(&mut d);
        }
        // Whatever is still out times out.
        for _ in 0..2 {
            t2 += d.config.request_timeout * 2;
            d.handle_timeout(t2);
            let _ = sent(&mut d);
        }
        assert_eq!(
            d.joined, main_answers,
            "joined once a node the bootstrap node named answered"
        );
    }
    let later = [peer(70, [192, 0, 2, 70]), peer(71, [192, 0, 2, 71])];
    let _ = join_through(&mut d, &later[0], t2);
    let named = join_through(&mut d, &later[1], t2);
    assert!(
        named.contains(&later[0].contact),
        "a joined node names what its table holds: {named:?}"
    );
}

/// Issue 18: a lookup request slower than the soft timeout is sent again with the same
/// txid, and both copies may be answered. The second answer was counted as an unexpected
/// response (so `status` showed them on nodes where nothing unexpected happened); it is a
/// duplicate, and ignored.
#[test]
fn the_answer_to_a_second_copy_is_not_unexpected() {
    let t0 = super::tests::start();
    let mut d = dht(t0);
    let c = contacts_in_bucket(&d.id(), 2, 1)[0];
    d.add_contact(c, t0);
    let _ = sent(&mut d);
    let _ = d.find_node(Id([0x42; 32]), t0);
    let out = sent(&mut d);
    let (_, req) = out
        .iter()
        .find(|(to, dg)| *to == c.addr && matches!(dg.msg, Message::FindNode { .. }))
        .cloned()
        .expect("a FIND_NODE");
    // No answer within the soft timeout: the same request goes out again.
    let t1 = t0 + d.soft_timeout();
    d.handle_timeout(t1);
    let again = sent(&mut d);
    assert!(
        again
            .iter()
            .any(|(to, dg)| *to == c.addr && dg.txid == req.txid),
        "{again:?}"
    );
    // Both copies are answered.
    d.handle_datagram(t1, c.addr, &answer(&c, &req));
    d.handle_datagram(t1, c.addr, &answer(&c, &req));
    assert_eq!(d.stats().unexpected_responses, 0);
    assert!(
        !std::iter::from_fn(|| d.poll_event()).any(|e| matches!(e, DhtEvent::Nat { .. })),
        "a duplicate is not the NAT layer's either"
    );
    // An answer nobody asked for still counts.
    let stray = Datagram {
        txid: req.txid ^ 1,
        ..Datagram::decode(&answer(&c, &req)).unwrap()
    };
    d.handle_datagram(t1, c.addr, &stray.encode());
    assert_eq!(d.stats().unexpected_responses, 1);
}

/// Issue 21: node lookups failed 1 time in 50 at 5% loss because the node looked for,
/// the closest candidate, had both copies of its request (or their answers) lost and the
/// lookup ended without it. The closest candidate now gets [`requests::CLOSEST_COPIES`]
/// copies, one per soft timeout, while the others get two.
#[test]
fn the_closest_candidate_gets_more_copies() {
    let t0 = super::tests::start();
    let mut d = dht(t0);
    let cs = contacts_in_bucket(&d.id(), 1, 2);
    for c in &cs {
        d.add_contact(*c, t0);
    }
    let _ = sent(&mut d);
    // Looking for cs[0] itself: it is the closest candidate.
    let _ = d.find_node(cs[0].id, t0);
    let mut copies = [0usize; 2];
    let mut t = t0;
    for _ in 0..8 {
        for (to, dg) in sent(&mut d) {
            if matches!(dg.msg, Message::FindNode { .. }) {
                if let Some(i) = cs.iter().position(|c| c.addr == to) {
                    copies[i] += 1;
                }
            }
        }
        t += d.soft_timeout();
        if t >= t0 + d.config.request_timeout {
            break;
        }
        d.handle_timeout(t);
    }
    assert_eq!(
        copies,
        [usize::from(requests::CLOSEST_COPIES), 2],
        "copies sent to the closest candidate and to the other"
    );
}

/// A node with three contacts in bucket 1 that has just started a lookup of the first: the
/// node, the contacts, the lookup, what it sent, and its FIND_NODE to the first.
fn looking_for_the_first_of_three(
    t0: Instant,
) -> (
    Dht,
    Vec<Contact>,
    QueryId,
    Vec<(SocketAddr, Datagram)>,
    Datagram,
) {
    let mut d = dht(t0);
    let cs = contacts_in_bucket(&d.id(), 1, 3);
    for c in &cs {
        d.add_contact(*c, t0);
    }
    let _ = sent(&mut d);
    let q = d.find_node(cs[0].id, t0).expect("started");
    let out = sent(&mut d);
    let req = out
        .iter()
        .find(|(to, dg)| *to == cs[0].addr && matches!(dg.msg, Message::FindNode { .. }))
        .map(|(_, dg)| dg.clone())
        .expect("a FIND_NODE to the node looked for");
    (d, cs, q, out, req)
}

/// Issue 21, lookup latency: a node lookup that reached the node itself ended only once
/// the rest of the k closest had answered, and under loss one of their answers was nearly
/// always lost, so the lookup waited a soft timeout for nothing. It now ends when the node
/// looked for answers.
#[test]
fn a_node_lookup_ends_when_the_node_answers() {
    let t0 = super::tests::start();
    let (mut d, cs, q, _, req) = looking_for_the_first_of_three(t0);
    // Only the node looked for answers; the other two requests stay out (lost).
    d.handle_datagram(t0, cs[0].addr, &answer(&cs[0], &req));
    let done = std::iter::from_fn(|| d.poll_event()).find_map(|e| match e {
        DhtEvent::QueryDone { id, result, .. } if id == q => Some(result),
        _ => None,
    });
    match done {
        Some(QueryResult::Nodes(found)) => assert_eq!(found.first().map(|c| c.id), Some(cs[0].id)),
        other => panic!("the lookup should have ended with the node first: {other:?}"),
    }
}

/// A lookup that has ended sends no more copies of its requests still out: their soft
/// timeouts resent them as if it still waited (at 10% loss, 60,000 datagrams of a
/// 10,000-node simulation's 14.6 million, and as many answers).
#[test]
fn an_ended_lookup_sends_no_more_copies() {
    let t0 = super::tests::start();
    let (mut d, cs, q, out, req) = looking_for_the_first_of_three(t0);
    // The soft timeout the requests went out with (the answer below measures a round trip).
    let soft = d.soft_timeout();
    let others: Vec<SocketAddr> = out
        .iter()
        .filter(|(to, dg)| *to != cs[0].addr && matches!(dg.msg, Message::FindNode { .. }))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(others.len(), 2, "the other two are asked too: {out:?}");
    // The node looked for answers and the lookup ends; the other two requests stay out.
    d.handle_datagram(t0, cs[0].addr, &answer(&cs[0], &req));
    assert!(
        std::iter::from_fn(|| d.poll_event())
            .any(|e| matches!(e, DhtEvent::QueryDone { id, .. } if id == q)),
        "the lookup has ended"
    );
    let _ = sent(&mut d);
    // Their soft timeouts pass, twice: nothing goes out for the ended lookup.
    let mut t = t0;
    for _ in 0..2 {
        t += soft;
        d.handle_timeout(t);
        let again = sent(&mut d);
        assert!(
            !again
                .iter()
                .any(|(to, dg)| others.contains(to) && matches!(dg.msg, Message::FindNode { .. })),
            "copies sent for an ended lookup: {again:?}"
        );
    }
}

/// Issue 21 under the proofs of section 6.1: a bootstrap node enters the table only once its
/// PROOF arrives, and the joining lookup used to start from the table alone. A node whose
/// PROVE (and its retry) was lost then joined nobody, and at 20% loss a few nodes of 300
/// stayed islands with one contact. The lookup of our own ID asks the bootstrap node that
/// answered at once, proven or not; the answers bring contacts to prove.
#[test]
fn the_join_lookup_asks_the_bootstrap_node_before_its_proof() {
    let t0 = super::tests::start();
    let (mut d, boot_node) = bootstrap_answered(t0);
    let boot = boot_node.addr;
    let out = sent(&mut d);
    assert!(
        out.iter()
            .any(|(to, dg)| *to == boot && matches!(dg.msg, Message::Prove { .. })),
        "the bootstrap node is asked for its proof: {out:?}"
    );
    assert!(
        out.iter()
            .any(|(to, dg)| *to == boot && is_self_lookup(&d, dg)),
        "the join lookup asks the unproven bootstrap node: {out:?}"
    );
    // Its PROOF has not come (lost): it is not in the table for all that.
    assert_eq!(d.routing_table().len(), 0);
}

/// Issue 20: a node behind a symmetric NAT learns it from its bootstrap nodes' PONGs (the
/// same IP seen from two ports) and says so in its REGISTER, so that downloaders skip a
/// punch that cannot work. The same IP and port from two peers is an address, not a hint;
/// two IPs (one peer on our LAN) prove nothing.
#[test]
fn peers_that_see_one_ip_from_two_ports_mean_our_ports_vary() {
    let t0 = super::tests::start();
    let seen = |ports: [(u8, u16); 2]| {
        let mut d = dht(t0);
        for (i, (ip, port)) in ports.into_iter().enumerate() {
            let boot = SocketAddr::from(([203, 0, 113, 1 + i as u8], 4000));
            d.bootstrap_from(boot, t0);
            let (_, ping) = sent(&mut d)
                .into_iter()
                .find(|(to, dg)| *to == boot && dg.msg == Message::Ping)
                .expect("a bootstrap PING");
            let pong = Datagram {
                flags: 0,
                txid: ping.txid,
                sender: Identity::from_secret(&[10 + i as u8; 32]).node_id(),
                msg: Message::Pong {
                    observed: SocketAddr::from(([198, 51, 100, ip], port)),
                },
            };
            d.handle_datagram(t0, boot, &pong.encode());
        }
        (d.ports_vary(), d.external_addr())
    };
    assert_eq!(seen([(7, 4001), (7, 61234)]), (true, None));
    let agreed = SocketAddr::from(([198, 51, 100, 7], 4001));
    assert_eq!(seen([(7, 4001), (7, 4001)]), (false, Some(agreed)));
    assert_eq!(seen([(7, 4001), (8, 61234)]), (false, None));
    assert!(!dht(t0).ports_vary(), "nobody has seen us yet");
}
