//! Whole-DHT tests: several [`Dht`]s wired together by an in-memory network with a virtual
//! clock that jumps to the next wake-up (quinn's `Pair` idea, for n nodes).

use super::*;
use std::collections::BTreeMap;

struct Net {
    now: Instant,
    nodes: BTreeMap<SocketAddr, Dht>,
    /// Addresses whose datagrams vanish.
    dead: Vec<SocketAddr>,
    events: Vec<(SocketAddr, DhtEvent)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

impl Net {
    fn new(n: usize) -> Net {
        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        let mut rng = StdRng::seed_from_u64(42);
        for i in 0..n {
            let id = Id::random(&mut rng);
            nodes.insert(addr(i), Dht::new(id, DhtConfig::default(), i as u64, now));
        }
        Net {
            now,
            nodes,
            dead: Vec::new(),
            events: Vec::new(),
        }
    }

    fn node(&mut self, i: usize) -> &mut Dht {
        self.nodes.get_mut(&addr(i)).unwrap()
    }

    /// Delivers every queued datagram (instantly) until the network is quiet.
    fn drain(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
            for a in addrs {
                let mut out = Vec::new();
                let node = self.nodes.get_mut(&a).unwrap();
                while let Some(t) = node.poll_transmit() {
                    out.push(t);
                }
                while let Some(e) = node.poll_event() {
                    self.events.push((a, e));
                }
                for t in out {
                    moved = true;
                    if self.dead.contains(&t.dest) || self.dead.contains(&a) {
                        continue;
                    }
                    let now = self.now;
                    if let Some(dst) = self.nodes.get_mut(&t.dest) {
                        dst.handle_datagram(now, a, &t.payload);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network does not go quiet (livelock)");
    }

    /// Advances the clock by `d` in steps of the nodes' own wake-ups.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.drain();
        loop {
            let next = self
                .nodes
                .values()
                .filter_map(|n| n.poll_timeout())
                .min()
                .unwrap_or(end);
            if next > end {
                self.now = end;
                break;
            }
            self.now = next.max(self.now);
            let now = self.now;
            for n in self.nodes.values_mut() {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            self.drain();
        }
        let now = self.now;
        for n in self.nodes.values_mut() {
            n.handle_timeout(now);
        }
        self.drain();
    }

    fn take_done(&mut self, at: usize, q: QueryId) -> (QueryResult, QueryStats) {
        let pos = self
            .events
            .iter()
            .position(|(a, e)| {
                *a == addr(at) && matches!(e, DhtEvent::QueryDone { id, .. } if *id == q)
            })
            .expect("query finished");
        match self.events.remove(pos).1 {
            DhtEvent::QueryDone { result, stats, .. } => (result, stats),
            _ => unreachable!(),
        }
    }

    /// Boots node 1.. from node 0, one after another.
    fn join_all(&mut self) {
        let n = self.nodes.len();
        for i in 1..n {
            let now = self.now;
            self.node(i).bootstrap_from(addr(0), now);
            self.drain();
        }
        self.advance(Duration::from_secs(1));
    }
}

#[test]
fn nodes_join_and_find_each_other() {
    let mut net = Net::new(40);
    net.join_all();
    for i in 0..40 {
        assert!(
            net.node(i).routing_table().len() >= 10,
            "node {i} table too small"
        );
    }
    let target = net.node(33).id();
    let now = net.now;
    let q = net.node(7).find_node(target, now).unwrap();
    net.drain();
    let (res, stats) = net.take_done(7, q);
    match res {
        QueryResult::Nodes(c) => assert_eq!(c[0].id, target),
        other => panic!("{other:?}"),
    }
    assert!(stats.hops.unwrap() >= 1);
}

#[test]
fn announce_then_everyone_finds_the_provider() {
    let mut net = Net::new(30);
    net.join_all();
    let key = Id::hash_of(b"song.wav");
    let now = net.now;
    let q = net.node(5).announce(key, 4001, now).unwrap();
    net.drain();
    match net.take_done(5, q).0 {
        QueryResult::Announced { stored_at, asked } => {
            assert_eq!(stored_at, asked);
            assert!(stored_at >= 15, "stored at {stored_at}");
        }
        other => panic!("{other:?}"),
    }
    for i in 0..30 {
        let now = net.now;
        let q = net.node(i).get_providers(key, now).unwrap();
        net.drain();
        match net.take_done(i, q).0 {
            QueryResult::Providers { providers, .. } => {
                assert!(
                    providers.contains(&SocketAddr::new(addr(5).ip(), 4001)),
                    "node {i}: {providers:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn first_node_republishes_when_somebody_joins() {
    let mut net = Net::new(3);
    let key = Id::hash_of(b"alone");
    let now = net.now;
    let q = net.node(0).announce(key, 0, now).unwrap();
    net.drain();
    assert_eq!(
        net.take_done(0, q).0,
        QueryResult::Announced {
            stored_at: 0,
            asked: 0
        }
    );
    net.join_all();
    net.advance(Duration::from_secs(10));
    let now = net.now;
    let q = net.node(2).get_providers(key, now).unwrap();
    net.drain();
    match net.take_done(2, q).0 {
        QueryResult::Providers { providers, .. } => assert_eq!(providers, vec![addr(0)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lookups_survive_dead_nodes() {
    let mut net = Net::new(60);
    net.join_all();
    let key = Id::hash_of(b"x");
    let now = net.now;
    let _ = net.node(1).announce(key, 0, now);
    net.drain();
    // A third die silently.
    for i in (40..60).chain([2, 3]) {
        net.dead.push(addr(i));
    }
    for i in 4..40 {
        let now = net.now;
        let q = net.node(i).get_providers(key, now).unwrap();
        net.advance(Duration::from_secs(20));
        match net.take_done(i, q).0 {
            QueryResult::Providers { providers, .. } => {
                assert!(providers.contains(&addr(1)), "node {i}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn announce_with_forged_token_is_refused() {
    let mut net = Net::new(2);
    net.join_all();
    let key = Id([9; 32]);
    let sender = net.node(1).id();
    let now = net.now;
    let forged = Datagram {
        flags: 0,
        txid: 77,
        sender,
        msg: Message::Announce {
            key,
            token: [0; 16],
            port: 1,
            rendezvous: None,
        },
    };
    net.node(0).handle_datagram(now, addr(1), &forged.encode());
    let t = net.node(0).poll_transmit().unwrap();
    match Datagram::decode(&t.payload).unwrap().msg {
        Message::Error { code, .. } => assert_eq!(code, error_code::BAD_TOKEN),
        other => panic!("{other:?}"),
    }
    assert_eq!(net.node(0).provider_records(), 0);
    assert_eq!(net.node(0).stats().bad_tokens, 1);
    // A token issued to another address does not work either.
    let tok = net.node(0).tokens.issue(&addr(5));
    let stolen = Datagram {
        msg: Message::Announce {
            key,
            token: tok,
            port: 1,
            rendezvous: None,
        },
        ..forged
    };
    net.node(0).handle_datagram(now, addr(1), &stolen.encode());
    assert_eq!(net.node(0).provider_records(), 0);
}

#[test]
fn garbage_is_counted_and_ignored() {
    let mut net = Net::new(1);
    let now = net.now;
    for bad in [
        &b""[..],
        b"PS",
        b"hello world",
        &[0x50, 0x53, 1, 0x01, 0][..],
    ] {
        net.node(0).handle_datagram(now, addr(9), bad);
    }
    assert_eq!(net.node(0).stats().decode_errors, 4);
    assert!(net.node(0).poll_transmit().is_none());
}

#[test]
fn answers_from_the_wrong_address_are_ignored() {
    let mut net = Net::new(2);
    let now = net.now;
    net.node(0).bootstrap_from(addr(1), now);
    let ping = net.node(0).poll_transmit().unwrap();
    let txid = Datagram::decode(&ping.payload).unwrap().txid;
    let pong = Datagram {
        flags: 0,
        txid,
        sender: Id([3; 32]),
        msg: Message::Pong { observed: addr(0) },
    };
    net.node(0).handle_datagram(now, addr(7), &pong.encode());
    assert_eq!(net.node(0).stats().unexpected_responses, 1);
    assert!(net.node(0).routing_table().is_empty());
}

#[test]
fn rate_limit_stops_a_flood() {
    let mut net = Net::new(1);
    let now = net.now;
    let ping = Datagram {
        flags: 0,
        txid: 1,
        sender: Id([3; 32]),
        msg: Message::Ping,
    }
    .encode();
    for _ in 0..1000 {
        net.node(0).handle_datagram(now, addr(9), &ping);
    }
    let mut answered = 0;
    while net.node(0).poll_transmit().is_some() {
        answered += 1;
    }
    assert_eq!(answered, DhtConfig::default().rate_burst as usize);
    assert_eq!(net.node(0).stats().rate_limited, 1000 - answered as u64);
}

#[test]
fn external_address_needs_a_quorum() {
    let mut net = Net::new(4);
    net.join_all();
    net.advance(Duration::from_secs(30));
    for i in 0..4 {
        assert_eq!(net.node(i).external_addr(), Some(addr(i)), "node {i}");
    }
}

#[test]
fn providers_answer_fits_in_a_datagram() {
    let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
    let closer = vec![
        Contact {
            id: Id([1; 32]),
            addr: v6
        };
        20
    ];
    let providers = vec![v6; MAX_PROVIDERS];
    let msg = fit_providers([0; 16], providers, closer, Vec::new(), Id([0; 32]), 0);
    let len = Datagram {
        flags: 0,
        txid: 0,
        sender: Id([0; 32]),
        msg,
    }
    .encoded_len();
    assert!(len <= MAX_DATAGRAM, "{len}");
}

#[test]
fn error_answers_reach_the_requester_and_end_the_request() {
    // Regression: ERROR (0x7f) is odd like a request type; it must be handled as a response.
    let mut net = Net::new(2);
    net.join_all();
    let now = net.now;
    let q = net.node(0).get_providers(Id([4; 32]), now).unwrap();
    let t = net.node(0).poll_transmit().unwrap();
    let req = Datagram::decode(&t.payload).unwrap();
    let sender = net.node(1).id();
    let err = Datagram {
        flags: 0,
        txid: req.txid,
        sender,
        msg: Message::Error {
            code: error_code::RATE_LIMITED,
            text: "slow down".into(),
        },
    };
    net.node(0).handle_datagram(now, addr(1), &err.encode());
    assert_eq!(
        net.node(0).outstanding_requests(),
        0,
        "the ERROR answered the request"
    );
    net.drain();
    // The lookup finished without waiting for a timeout, and the contact was not penalised.
    let (res, stats) = net.take_done(0, q);
    assert!(matches!(res, QueryResult::Providers { .. }));
    assert_eq!(stats.failures, 1);
    assert_eq!(
        net.node(0).routing_table().get(&sender).unwrap().failures,
        0
    );
}

#[test]
fn a_lookup_finds_records_held_by_the_asking_node_itself() {
    // Two nodes: A announces, so B holds the only record. B's own lookup must find it.
    let mut net = Net::new(2);
    net.join_all();
    let key = Id::hash_of(b"only copy");
    let now = net.now;
    let _ = net.node(0).announce(key, 0, now);
    net.drain();
    assert_eq!(net.node(1).provider_records(), 1);
    let now = net.now;
    let q = net.node(1).get_providers(key, now).unwrap();
    net.drain();
    match net.take_done(1, q).0 {
        QueryResult::Providers { providers, .. } => assert_eq!(providers, vec![addr(0)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_provider_names_itself_before_its_announce_lands() {
    let mut net = Net::new(3);
    net.join_all();
    let key = Id::hash_of(b"fresh");
    let now = net.now;
    // Node 0 announces, but every ANNOUNCE is lost: no record is stored anywhere.
    net.node(0).provided.insert(
        key,
        Provided {
            port: 4242,
            next_republish: now + Duration::from_secs(3600),
        },
    );
    let q = net.node(2).get_providers(key, now).unwrap();
    net.drain();
    match net.take_done(2, q).0 {
        QueryResult::Providers { providers, .. } => {
            assert_eq!(providers, vec![SocketAddr::new(addr(0).ip(), 4242)]);
        }
        other => panic!("{other:?}"),
    }
    // Port 0 means the responder's own UDP port.
    net.node(0).provided.get_mut(&key).unwrap().port = 0;
    let now = net.now;
    let q = net.node(2).get_providers(key, now).unwrap();
    net.drain();
    match net.take_done(2, q).0 {
        QueryResult::Providers { providers, .. } => assert_eq!(providers, vec![addr(0)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn self_provider_entries_resolve_to_the_responder() {
    let r: SocketAddr = "192.0.2.9:4000".parse().unwrap();
    assert_eq!(resolve_self_provider("0.0.0.0:0".parse().unwrap(), r), r);
    assert_eq!(
        resolve_self_provider("0.0.0.0:81".parse().unwrap(), r),
        "192.0.2.9:81".parse().unwrap()
    );
    assert_eq!(resolve_self_provider("[::]:0".parse().unwrap(), r), r);
    let other: SocketAddr = "198.51.100.1:5".parse().unwrap();
    assert_eq!(resolve_self_provider(other, r), other);
}
