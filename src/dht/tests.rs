//! Whole-DHT tests: several [`Dht`]s wired together by an in-memory network with a virtual
//! clock that jumps to the next wake-up (quinn's `Pair` idea, for n nodes).

use super::queries::resolve_self_provider;
use super::serve::fit_providers;
use super::*;
use crate::proto::dht::{error_code, FLAG_NOT_REACHABLE, MAX_DATAGRAM, MAX_PROVIDERS};
use std::collections::BTreeMap;

struct Net {
    now: Instant,
    nodes: BTreeMap<SocketAddr, Dht>,
    /// Addresses whose datagrams vanish.
    dead: Vec<SocketAddr>,
    /// Datagrams of a type to an address that vanish (a node that does not know the type).
    deaf: Vec<(SocketAddr, u8)>,
    events: Vec<(SocketAddr, DhtEvent)>,
}

/// The start of a test's virtual clock (the only reading of the real clock a test makes;
/// other test modules of the DHT take theirs from here, since only `tests.rs` files may).
pub(super) fn start() -> Instant {
    Instant::now()
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
            let identity = Identity::from_secret(&rng.gen());
            nodes.insert(
                addr(i),
                Dht::new(identity, DhtConfig::default(), i as u64, now),
            );
        }
        Net {
            now,
            nodes,
            dead: Vec::new(),
            deaf: Vec::new(),
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
                    let kind = Datagram::decode(&t.payload).map(|d| d.msg.type_byte());
                    if kind.is_ok_and(|k| self.deaf.contains(&(t.dest, k))) {
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

/// Issue 21 (dht.md section 7, step 7): a provider lookup ends once 2 whole answers named
/// the same provider, without hearing from all k closest; an announce in the same network
/// still reaches the k closest.
#[test]
fn a_provider_lookup_ends_on_agreeing_answers_and_an_announce_on_the_k_closest() {
    let mut net = Net::new(80);
    net.join_all();
    let key = Id::hash_of(b"loop.wav");
    let now = net.now;
    let q = net.node(9).announce(key, 4001, now).unwrap();
    net.drain();
    match net.take_done(9, q).0 {
        QueryResult::Announced { asked, .. } => assert_eq!(asked, 20, "the k closest"),
        other => panic!("{other:?}"),
    }
    let provider = SocketAddr::new(addr(9).ip(), 4001);
    let now = net.now;
    let holds = |net: &mut Net, i: usize| !net.node(i).store.get(&key, now, 50).is_empty();
    let asker = (0..80)
        .find(|&i| i != 9 && !holds(&mut net, i))
        .expect("one without it");
    let q = net.node(asker).get_providers(key, now).unwrap();
    net.drain();
    let (result, stats) = net.take_done(asker, q);
    match result {
        QueryResult::Providers { providers, .. } => assert_eq!(providers, [provider]),
        other => panic!("{other:?}"),
    }
    assert!(stats.answers < 20, "ended early: {} answers", stats.answers);
}

/// A provider lookup says which providers it found as they come (a download dials them at
/// once), before the lookup ends, and names each only once.
#[test]
fn a_provider_lookup_reports_providers_before_it_ends() {
    let mut net = Net::new(60);
    net.join_all();
    let key = Id::hash_of(b"kick.wav");
    let now = net.now;
    let q = net.node(7).announce(key, 4001, now).unwrap();
    net.drain();
    net.take_done(7, q);
    let provider = SocketAddr::new(addr(7).ip(), 4001);
    // Asked by a node that does not hold the record itself (the answers of others name it),
    // and by one that does (it is known at the start).
    let now = net.now;
    let holds = |net: &mut Net, i: usize| !net.node(i).store.get(&key, now, 50).is_empty();
    let far = (0..60).find(|&i| i != 7 && !holds(&mut net, i));
    let near = (0..60).find(|&i| i != 7 && holds(&mut net, i));
    for asker in [
        far.expect("a node without it"),
        near.expect("a node with it"),
    ] {
        net.events.clear();
        let now = net.now;
        let q = net.node(asker).get_providers(key, now).unwrap();
        net.drain();
        let mine: Vec<&DhtEvent> = net
            .events
            .iter()
            .filter(|(a, _)| *a == addr(asker))
            .map(|(_, e)| e)
            .collect();
        let found: Vec<SocketAddr> = mine
            .iter()
            .filter_map(|e| match e {
                DhtEvent::ProvidersFound { id, providers, .. } if *id == q => {
                    Some(providers.clone())
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(found, [provider], "named once, as found: {mine:?}");
        let first = mine
            .iter()
            .position(|e| matches!(e, DhtEvent::ProvidersFound { id, .. } if *id == q));
        let done = mine
            .iter()
            .position(|e| matches!(e, DhtEvent::QueryDone { id, .. } if *id == q));
        assert!(
            first < done && done.is_some(),
            "found before the end: {mine:?}"
        );
    }
    // Lookups that are not provider lookups report nothing early.
    net.events.clear();
    let now = net.now;
    let q = net.node(3).find_node(key, now).unwrap();
    net.drain();
    assert!(!net
        .events
        .iter()
        .any(|(_, e)| matches!(e, DhtEvent::ProvidersFound { id, .. } if *id == q)));
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

/// The README's quickstart, in miniature: b and c are started at once with a as bootstrap;
/// b announces and c looks up before either has heard back from a. Neither lookup may end
/// empty just because the join was still under way: both wait for their first contact.
#[test]
fn lookups_started_while_joining_wait_for_the_first_contact() {
    let mut net = Net::new(3);
    let key = Id::hash_of(b"song.wav");
    let now = net.now;
    net.node(1).bootstrap_from(addr(0), now);
    net.node(2).bootstrap_from(addr(0), now);
    // Before any datagram moves: both tables are empty.
    let a = net.node(1).announce(key, 4002, now).unwrap();
    let q = net.node(2).get_providers(key, now).unwrap();
    assert!(net.events.is_empty(), "{:?}", net.events);
    // Deliver b's traffic first (its PONG, then its announce), then c's.
    net.drain();
    match net.take_done(1, a).0 {
        QueryResult::Announced { stored_at, .. } => assert!(stored_at >= 1, "stored nowhere"),
        other => panic!("{other:?}"),
    }
    match net.take_done(2, q).0 {
        QueryResult::Providers { providers, .. } => {
            assert_eq!(providers, vec![SocketAddr::from(([127, 0, 0, 1], 4002))])
        }
        other => panic!("{other:?}"),
    }
}

/// A lookup waits for the join only so long: with the bootstrap node silent it ends (with
/// nothing) after `JOIN_WAIT`, and once the node has warned that no bootstrap answers, new
/// lookups no longer wait at all.
#[test]
fn a_lookup_waits_for_a_silent_bootstrap_only_so_long() {
    let mut net = Net::new(2);
    net.dead.push(addr(1));
    let key = Id::hash_of(b"nobody");
    let now = net.now;
    net.node(0).bootstrap_from(addr(1), now);
    let q = net.node(0).get_providers(key, now).unwrap();
    net.advance(queries::JOIN_WAIT - Duration::from_millis(100));
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, DhtEvent::QueryDone { .. })),
        "ended before its wait was over"
    );
    net.advance(Duration::from_millis(200));
    match net.take_done(0, q).0 {
        QueryResult::Providers { providers, .. } => assert!(providers.is_empty()),
        other => panic!("{other:?}"),
    }
    net.advance(Duration::from_secs(30));
    assert!(net.node(0).bootstrap_warned);
    let now = net.now;
    let q = net.node(0).get_providers(key, now).unwrap();
    net.drain();
    let _ = net.take_done(0, q);
}

/// An announce that stores the record nowhere (its contacts' answers all lost) is tried
/// again within seconds, not at the next republish half an hour later.
#[test]
fn an_announce_that_stored_nothing_is_retried_soon() {
    let mut net = Net::new(30);
    net.join_all();
    let key = Id::hash_of(b"unlucky");
    for i in 1..30 {
        net.dead.push(addr(i));
    }
    let now = net.now;
    let q = net.node(0).announce(key, 0, now).unwrap();
    net.advance(Duration::from_secs(5));
    assert!(
        matches!(
            net.take_done(0, q).0,
            QueryResult::Announced { stored_at: 0, .. }
        ),
        "every answer was lost"
    );
    net.dead.clear();
    net.advance(Duration::from_secs(30));
    let holders = (1..30)
        .filter(|i| net.nodes[&addr(*i)].known_keys().contains(&key))
        .count();
    assert!(
        holders >= 10,
        "the record reached {holders} nodes within 30 s"
    );
}

/// A node that announced into a young network (a few contacts) announces again once its
/// table has grown: the nodes closest to the key are not the ones it knew then.
#[test]
fn a_provider_announces_again_as_its_table_grows() {
    let mut net = Net::new(30);
    // Nodes 0..3 form the network; node 1 announces with a table of 2.
    for i in 1..3 {
        let now = net.now;
        net.node(i).bootstrap_from(addr(0), now);
        net.drain();
    }
    let key = Id::hash_of(b"early");
    let now = net.now;
    let _ = net.node(1).announce(key, 0, now);
    net.drain();
    let early: usize = (0..30)
        .filter(|i| net.nodes[&addr(*i)].known_keys().contains(&key))
        .count();
    // The others join: node 1 hears of them, its table grows, and it announces again.
    for i in 3..30 {
        let now = net.now;
        net.node(i).bootstrap_from(addr(0), now);
        net.drain();
    }
    net.advance(Duration::from_secs(120));
    let held: usize = (0..30)
        .filter(|i| *i != 1 && net.nodes[&addr(*i)].known_keys().contains(&key))
        .count();
    assert!(
        held > early,
        "the record reached {held} nodes after the table grew (was {early})"
    );
}

/// `n` joined nodes, node 1 providing `key`, and the nodes of `dead` silent from then on.
fn announced_then_dead(n: usize, key: Id, dead: impl Iterator<Item = usize>) -> Net {
    let mut net = Net::new(n);
    net.join_all();
    let now = net.now;
    let _ = net.node(1).announce(key, 0, now);
    net.drain();
    net.dead.extend(dead.map(addr));
    net
}

#[test]
fn lookups_survive_dead_nodes() {
    let key = Id::hash_of(b"x");
    // A third die silently.
    let mut net = announced_then_dead(60, key, (40..60).chain([2, 3]));
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

/// Each lookup's trace lists its requests as they went: answers from live nodes with their
/// round trip and the contacts named, timeouts (or no answer by the end) from the dead ones,
/// and as many answers as the lookup counted.
#[test]
fn a_lookup_traces_its_requests_hop_by_hop() {
    use super::trace::HopOutcome;
    let key = Id::hash_of(b"traced");
    let mut net = announced_then_dead(40, key, 25..40);
    let (mut timeouts, mut answered) = (0, 0);
    for i in 4..25 {
        let now = net.now;
        let q = net.node(i).get_providers(key, now).unwrap();
        net.advance(Duration::from_secs(20));
        let (_, stats) = net.take_done(i, q);
        let t = &stats.trace;
        assert_eq!(t.target, Some(key));
        assert!(!t.hops.is_empty(), "node {i}: no requests traced");
        let mut answers = 0;
        for h in &t.hops {
            let dead = net.dead.contains(&h.addr);
            match h.outcome {
                HopOutcome::Answered { closer, new, .. } => {
                    assert!(!dead, "node {i}: an answer from dead {}", h.addr);
                    assert!(new <= closer);
                    answers += 1;
                }
                HopOutcome::Failed { timeout, .. } => {
                    assert!(dead && timeout, "node {i}: {h:?}");
                    timeouts += 1;
                }
                // The lookup ended first (a dead node's soft timeout freed its slot).
                HopOutcome::Waiting if dead => timeouts += 1,
                HopOutcome::Waiting => {}
            }
            assert_eq!(h.bits, super::trace::common_bits(&h.node, &key));
        }
        if t.untraced == 0 {
            assert_eq!(answers, stats.answers, "node {i}: {t:?}");
        }
        answered += answers;
    }
    assert!(
        answered > 0 && timeouts > 0,
        "{answered} answers, {timeouts} unanswered"
    );
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
fn a_silent_bootstrap_address_is_retried_reported_and_then_joined() {
    let mut net = Net::new(2);
    net.dead.push(addr(1));
    let now = net.now;
    net.node(0).bootstrap_from(addr(1), now);
    net.advance(Duration::from_secs(30));
    let b = net.node(0).bootstrap_status().to_vec();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].addr, addr(1));
    assert!(!b[0].answered, "{b:?}");
    assert!(b[0].unanswered >= 2, "retried: {b:?}");
    assert!(net.node(0).bootstrap_warned);
    // Once the address answers, a retry gets through and the node joins.
    net.dead.clear();
    net.advance(Duration::from_secs(30));
    assert!(net.node(0).bootstrap_status()[0].answered);
    assert_eq!(net.node(0).routing_table().len(), 1);
}

#[test]
fn an_answering_bootstrap_address_is_marked_answered() {
    let mut net = Net::new(2);
    let now = net.now;
    net.node(0).bootstrap_from(addr(1), now);
    net.advance(Duration::from_secs(1));
    let b = net.node(0).bootstrap_status().to_vec();
    assert!(b[0].answered && b[0].unanswered == 0, "{b:?}");
    assert!(!net.node(0).bootstrap_warned);
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
    // What node 0 sent: PONGs, PROVEs, RETRY_LATERs.
    fn sent(net: &mut Net) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        while let Some(t) = net.node(0).poll_transmit() {
            match Datagram::decode(&t.payload).unwrap().msg {
                Message::Pong { .. } => n.0 += 1,
                Message::Prove { .. } => n.1 += 1,
                Message::Error { code, text }
                    if code == error_code::RETRY_LATER && text.is_empty() =>
                {
                    n.2 += 1
                }
                other => panic!("{other:?}"),
            }
        }
        n
    }
    let (answered, proves, told) = sent(&mut net);
    assert_eq!(answered, DhtConfig::default().rate_burst as usize);
    assert_eq!(net.node(0).stats().rate_limited, 1000 - answered as u64);
    // One PROVE to check the unknown sender, not one per request.
    assert_eq!(proves, 1);
    // Told once to back off, not once per refused request (issue 21).
    assert_eq!(told, 1);
    assert_eq!(net.node(0).stats().retry_later_sent, 1);
    // Half a second later, still flooding: the 50 refilled are answered, no second
    // RETRY_LATER; a second after the first, one more.
    for (at, more_told) in [(500, 0), (1000, 1)] {
        let later = now + Duration::from_millis(at);
        for _ in 0..1000 {
            net.node(0).handle_datagram(later, addr(9), &ping);
        }
        assert_eq!(sent(&mut net), (50, 0, more_told), "at {at} ms");
    }
}

#[test]
fn a_requester_told_to_retry_later_waits_and_loses_no_lookup() {
    // Issue 21: node 0 serves 5 requests a second per source, in bursts of 5, and provides
    // 20 keys; node 1 looks all of them up at once. The requests beyond the burst are
    // answered RETRY_LATER (once a second) or dropped; node 1 holds its requests to node 0
    // for a second each time and sends them again: every lookup finds node 0.
    let mut net = Net::new(2);
    let now = net.now;
    let cfg = DhtConfig {
        rate_limit_per_source: 5.0,
        rate_burst: 5.0,
        ..DhtConfig::default()
    };
    let identity = Identity::from_secret(&[7; 32]);
    net.nodes.insert(addr(0), Dht::new(identity, cfg, 0, now));
    net.join_all();
    net.advance(Duration::from_secs(6));
    let keys: Vec<Id> = (0..20u8).map(|i| Id::hash_of(&[i])).collect();
    for k in &keys {
        let now = net.now;
        net.node(0).announce(*k, 4001, now);
    }
    net.advance(Duration::from_secs(6));
    net.events.clear();
    let t0 = net.node(1).stats().clone();
    let now = net.now;
    let qs: Vec<QueryId> = keys
        .iter()
        .map(|k| net.node(1).get_providers(*k, now).unwrap())
        .collect();
    net.advance(Duration::from_secs(30));
    let provider = SocketAddr::new(addr(0).ip(), 4001);
    for (q, k) in qs.into_iter().zip(&keys) {
        match net.take_done(1, q).0 {
            QueryResult::Providers { providers, .. } => {
                assert!(providers.contains(&provider), "{k}: {providers:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    let s1 = net.node(1).stats().clone();
    assert!(s1.backed_off > t0.backed_off, "{s1:?}");
    assert!(s1.requests_held > t0.requests_held, "{s1:?}");
    assert!(net.node(0).stats().retry_later_sent >= 1);
    // Node 0 is still in node 1's table: backing off is no routing failure.
    assert_eq!(net.node(1).routing_table().len(), 1);
}

#[test]
fn a_republish_of_every_key_to_one_peer_is_paced_not_dropped() {
    // The CI failure of `tests/many_downloads.rs`: node 1 provides 150 keys, then gets a
    // rendezvous, so every key is announced again at once, one announce lookup each (two
    // requests), all to node 0, the only other node. Paced, none meets node 0's limit
    // (100 a second, bursts of 200), and every record is stored.
    let mut net = Net::new(2);
    net.join_all();
    net.advance(Duration::from_secs(6));
    // One lookup per key, as a node without sweeps still republishes (a node behind a
    // rendezvous sweeps now, a_republish_behind_a_rendezvous_goes_in_batches_that_carry_it).
    net.node(1).config.reprovide_sweep = false;
    let keys: Vec<Id> = (0..150u8).map(|i| Id::hash_of(&[i])).collect();
    for k in &keys {
        let now = net.now;
        net.node(1).provide_soon(*k, 4001, now);
    }
    net.advance(Duration::from_secs(6));
    let limited = net.node(0).stats().rate_limited;
    let paced = net.node(1).stats().requests_paced;
    let now = net.now;
    net.node(1).set_rendezvous(Some(addr(0)), now);
    net.advance(Duration::from_secs(1));
    let s1 = net.node(1).stats().clone();
    assert!(s1.requests_paced > paced, "nothing waited: {s1:?}");
    net.advance(Duration::from_secs(10));
    assert_eq!(
        net.node(0).stats().rate_limited,
        limited,
        "requests dropped"
    );
    assert_eq!(net.node(1).stats().backed_off, 0);
    let now = net.now;
    let provider = SocketAddr::new(addr(1).ip(), 4001);
    for k in &keys {
        assert!(net.node(0).holds_record(k, &provider, now), "{k}");
    }
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
    let msg = fit_providers(
        [0; 16],
        (providers, None),
        closer,
        Vec::new(),
        Id([0; 32]),
        0,
    );
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
            retry: ANNOUNCE_RETRY,
            table_len: usize::MAX,
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

/// The PROOF `key` gives to a PROVE `msg` of `verifier` (what an honest node answers).
pub(super) fn proof_of(key: &Identity, verifier: &Id, msg: &Message) -> Message {
    let Message::Prove { nonce, addr } = msg else {
        panic!("not a PROVE: {msg:?}");
    };
    let signed = crate::proto::dht::proof_message(nonce, &key.node_id(), verifier, addr);
    Message::Proof {
        public: key.public(),
        signature: key.sign(&signed),
    }
}

/// Drains `node`'s transmits; answers each PROVE addressed to `from` with a valid PROOF
/// from `from` by `key` (an attacker that holds the keys of all its IDs). Returns the
/// number of PROVEs answered.
fn pass_verifications(node: &mut Dht, now: Instant, from: SocketAddr, key: &Identity) -> usize {
    let mut proves = Vec::new();
    while let Some(t) = node.poll_transmit() {
        let d = Datagram::decode(&t.payload).unwrap();
        if t.dest == from && matches!(d.msg, Message::Prove { .. }) {
            proves.push(d);
        }
    }
    for d in &proves {
        let proof = Datagram {
            flags: 0,
            txid: d.txid,
            sender: key.node_id(),
            msg: proof_of(key, &node.id(), &d.msg),
        };
        node.handle_datagram(now, from, &proof.encode());
    }
    proves.len()
}

#[test]
fn a_requester_enters_the_table_only_after_proving_its_key() {
    let mut net = Net::new(1);
    let now = net.now;
    let key = Identity::from_secret(&[3; 32]);
    let x = key.node_id();
    let ping = |txid| Datagram {
        flags: 0,
        txid,
        sender: x,
        msg: Message::Ping,
    };
    net.node(0).handle_datagram(now, addr(9), &ping(1).encode());
    assert!(
        net.node(0).routing_table().is_empty(),
        "inserted unverified"
    );
    let mut sent = Vec::new();
    while let Some(t) = net.node(0).poll_transmit() {
        sent.push((t.dest, Datagram::decode(&t.payload).unwrap()));
    }
    // The answer, and a PROVE of ours to the address the request came from.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent
        .iter()
        .any(|(_, d)| matches!(d.msg, Message::Pong { .. })));
    let (dest, check) = sent
        .iter()
        .find(|(_, d)| matches!(d.msg, Message::Prove { .. }))
        .expect("a PROVE");
    assert_eq!(*dest, addr(9));
    assert_eq!(
        check.msg,
        Message::Prove {
            nonce: match check.msg {
                Message::Prove { nonce, .. } => nonce,
                _ => unreachable!(),
            },
            addr: addr(9)
        }
    );
    assert_eq!(net.node(0).stats().verifications, 1);
    // More requests while the check is out do not send more PROVEs.
    net.node(0).handle_datagram(now, addr(9), &ping(2).encode());
    assert_eq!(net.node(0).stats().verifications, 1);
    let me = net.node(0).id();
    let answer = |sender: Id, msg: Message| {
        Datagram {
            flags: 0,
            txid: check.txid,
            sender,
            msg,
        }
        .encode()
    };
    let good = proof_of(&key, &me, &check.msg);
    // A PROOF from another address does not count (not an answer to our request).
    net.node(0)
        .handle_datagram(now, addr(8), &answer(x, good.clone()));
    assert!(net.node(0).routing_table().is_empty());
    // A PONG is no answer to a PROVE (ignored); a PROOF signed by another key, or for
    // another verifier, or over another nonce and address proves nothing: the pair stays
    // out, and each counts as a bad proof.
    net.node(0).handle_datagram(
        now,
        addr(9),
        &answer(x, Message::Pong { observed: addr(9) }),
    );
    assert!(net.node(0).routing_table().is_empty());
    let other = Identity::from_secret(&[4; 32]);
    let elsewhere = Message::Prove {
        nonce: [0; 32],
        addr: addr(7),
    };
    let mut prove = check.clone();
    for i in 0..3u64 {
        let m = match i {
            0 => proof_of(&other, &me, &prove.msg),
            1 => proof_of(&key, &other.node_id(), &prove.msg),
            _ => proof_of(&key, &me, &elsewhere),
        };
        let dg = Datagram {
            flags: 0,
            txid: prove.txid,
            sender: x,
            msg: m,
        };
        net.node(0).handle_datagram(now, addr(9), &dg.encode());
        assert!(
            net.node(0).routing_table().is_empty(),
            "bad proof {i} let it in"
        );
        // The next request is checked again.
        net.node(0)
            .handle_datagram(now, addr(9), &ping(10 + i).encode());
        let mut next = None;
        while let Some(t) = net.node(0).poll_transmit() {
            let d = Datagram::decode(&t.payload).unwrap();
            if matches!(d.msg, Message::Prove { .. }) {
                next = Some(d);
            }
        }
        prove = next.expect("a new PROVE");
    }
    assert_eq!(net.node(0).stats().bad_proofs, 3);
    // A good PROOF lets it in.
    let dg = Datagram {
        flags: 0,
        txid: prove.txid,
        sender: x,
        msg: proof_of(&key, &me, &prove.msg),
    };
    net.node(0).handle_datagram(now, addr(9), &dg.encode());
    assert_eq!(
        net.node(0).routing_table().get(&x).unwrap().contact.addr,
        addr(9)
    );
}

#[test]
fn a_requester_that_does_not_answer_never_enters() {
    let mut net = Net::new(1);
    let ping = Datagram {
        flags: 0,
        txid: 1,
        sender: Id([3; 32]),
        msg: Message::Ping,
    };
    let now = net.now;
    net.node(0).handle_datagram(now, addr(9), &ping.encode());
    // The check and its one retry go unanswered (addr(9) is no node of this network).
    net.advance(Duration::from_secs(10));
    assert!(net.node(0).routing_table().is_empty());
    assert_eq!(net.node(0).stats().timeouts, 2);
    assert_eq!(net.node(0).outstanding_requests(), 0);
    // Its address may be checked again later.
    let now = net.now;
    net.node(0).handle_datagram(now, addr(9), &ping.encode());
    assert_eq!(net.node(0).stats().verifications, 2);
}

/// 1,000 identities (each with its key) from one IP, then from one /24, each passing its
/// proof: the table keeps the quota and no more.
#[test]
fn made_up_ids_from_one_address_are_bounded_by_its_quota() {
    let mut net = Net::new(1);
    let me = net.node(0).id();
    let mut rng = StdRng::seed_from_u64(13);
    let limits = DhtConfig::default().diversity;
    let mut now = net.now;
    let attacker = |i: u32, one_ip: bool| -> SocketAddr {
        if one_ip {
            // One IP, many ports (one IP and port holds one contact at all: section 6).
            SocketAddr::from(([198, 51, 100, 7], 4000 + (i % 500) as u16))
        } else {
            SocketAddr::from(([198, 51, 100, (i % 254) as u8 + 1], 4000))
        }
    };
    let _ = me;
    for one_ip in [true, false] {
        for i in 0..1000u32 {
            let from = attacker(i, one_ip);
            let key = Identity::from_secret(&rng.gen());
            let id = key.node_id();
            let msg = if i % 2 == 0 {
                Message::Ping
            } else {
                Message::FindNode {
                    target: Id::random(&mut rng),
                }
            };
            let req = Datagram {
                flags: 0,
                txid: u64::from(i),
                sender: id,
                msg,
            };
            // Within the per-source rate limit, so every request is served.
            now += Duration::from_millis(11);
            net.node(0).handle_datagram(now, from, &req.encode());
            pass_verifications(net.node(0), now, from, &key);
        }
        let junk = net.node(0).routing_table().len();
        let bound = if one_ip {
            limits.source.contacts_per_table
        } else {
            limits.network.contacts_per_table
        };
        assert_eq!(junk, bound, "one_ip {one_ip}");
        net.node(0).routing_table().check_quotas().unwrap();
    }
}

/// What `node` answers to an ANNOUNCE of `key` from `from`, with a token got the proper way.
fn announce_from(node: &mut Dht, now: Instant, from: SocketAddr, key: Id) -> Message {
    let sender = Id::hash_of(from.to_string().as_bytes());
    let ask = |txid, msg| {
        Datagram {
            flags: FLAG_NOT_REACHABLE,
            txid,
            sender,
            msg,
        }
        .encode()
    };
    node.handle_datagram(now, from, &ask(1, Message::GetProviders { key }));
    let Some(Message::Providers { token, .. }) = node
        .poll_transmit()
        .map(|t| Datagram::decode(&t.payload).unwrap().msg)
    else {
        panic!("no PROVIDERS");
    };
    let msg = Message::Announce {
        key,
        token,
        port: 0,
        rendezvous: None,
    };
    node.handle_datagram(now, from, &ask(2, msg));
    let answer = node.poll_transmit().expect("an answer to ANNOUNCE");
    Datagram::decode(&answer.payload).unwrap().msg
}

#[test]
fn announces_are_held_within_the_quotas_of_their_address() {
    let mut net = Net::new(1);
    let now = net.now;
    let key = Id::hash_of(b"one real key");
    let acked = |m: &Message| *m == Message::Ack;
    // 70 ports of one IP: two records, the rest refused with STORE_FULL.
    let mut ok = 0;
    for port in 0..70 {
        let m = announce_from(
            net.node(0),
            now,
            SocketAddr::from(([198, 51, 100, 7], port + 1)),
            key,
        );
        match &m {
            Message::Ack => ok += 1,
            Message::Error { code, .. } => assert_eq!(*code, error_code::STORE_FULL),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(net.node(0).stats().records_refused, 68);
    // 32 IPs of 16 /24s, two ports each, fill the key (64 records) ...
    for net24 in 0..16u8 {
        for host in 1..=2u8 {
            for port in 1..=2 {
                let from = SocketAddr::from(([203, 0, net24, host], port));
                let _ = announce_from(net.node(0), now, from, key);
            }
        }
    }
    assert_eq!(net.node(0).provider_records(), 64);
    // ... and an honest provider still gets in, in place of a newest record of a /24 that
    // holds more, and is in the first round of the answers (one record per network).
    let evicted = net.node(0).stats().records_evicted;
    let honest = SocketAddr::from(([192, 0, 2, 1], 4001));
    assert!(acked(&announce_from(net.node(0), now, honest, key)));
    assert_eq!(net.node(0).stats().records_evicted, evicted + 1);
    assert_eq!(net.node(0).provider_records(), 64);
    assert!(net.node(0).store.get(&key, now, 18).contains(&honest));
}

/// A node that restarts at the same address with a new ID replaces its old contact in
/// others' tables at once: the first answer from that address in the new name removes the
/// old name (spec section 6, rule 5), so the dead ID is no longer handed out. Before, both
/// stayed, and the old one was given to lookups until three failures removed it.
#[test]
fn a_node_restarted_with_a_new_id_replaces_its_old_contact() {
    let mut net = Net::new(20);
    net.join_all();
    let old_id = net.node(7).id();
    let holders: Vec<usize> = (0..20)
        .filter(|&i| i != 7 && net.node(i).routing_table().get(&old_id).is_some())
        .collect();
    assert!(holders.len() >= 5, "old ID known by {holders:?}");
    // Node 7 restarts with a new ID at the same address and joins again through node 0.
    let new_key = Identity::from_secret(&[0x77; 32]);
    let new_id = new_key.node_id();
    let now = net.now;
    net.nodes
        .insert(addr(7), Dht::new(new_key, DhtConfig::default(), 99, now));
    net.node(7).bootstrap_from(addr(0), now);
    net.drain();
    // Every node looks up the old ID: whoever asks node 7's address in the old name gets
    // an answer in the new one.
    for &i in &holders {
        let now = net.now;
        net.node(i).find_node(old_id, now);
    }
    net.advance(Duration::from_secs(5));
    for i in (0..20).filter(|&i| i != 7) {
        let rt = net.node(i).routing_table();
        let at7: Vec<Id> = rt
            .iter()
            .filter(|e| e.contact.addr == addr(7))
            .map(|e| e.contact.id)
            .collect();
        assert!(
            at7.len() <= 1,
            "node {i} holds {} IDs at one address",
            at7.len()
        );
        assert!(rt.get(&old_id).is_none(), "node {i} still holds the old ID");
    }
    let knows_new = (0..20)
        .filter(|&i| i != 7 && net.node(i).routing_table().get(&new_id).is_some())
        .count();
    assert!(knows_new >= 5, "new ID known by {knows_new} nodes");
}

/// The routing table keeps one node per address: a contact proven at an address takes the
/// place of another ID held there.
#[test]
fn one_address_holds_one_contact() {
    let me = Id([1; 32]);
    let mut rt = routing::RoutingTable::new(me, diversity::DiversityLimits::default());
    let now = Instant::now();
    let a = addr(3);
    let first = Contact {
        id: Id([0x80; 32]),
        addr: a,
    };
    let second = Contact {
        id: Id([0x40; 32]),
        addr: a,
    };
    assert!(matches!(
        rt.insert(first, now),
        routing::InsertResult::Inserted
    ));
    assert!(matches!(
        rt.insert(second, now),
        routing::InsertResult::Inserted
    ));
    assert!(rt.get(&first.id).is_none());
    assert_eq!(rt.len(), 1);
}

/// ANNOUNCE_MANY (dht.md 4.9a): with a valid token every key is stored as an ANNOUNCE
/// would store it and STORED counts them; a bad token stores nothing.
#[test]
fn announce_many_stores_each_key_and_counts_them() {
    let mut net = Net::new(1);
    let now = net.now;
    let from = SocketAddr::from(([198, 51, 100, 9], 4001));
    let sender = Id::hash_of(b"a provider of many keys");
    let keys: Vec<Id> = (0..36u8).map(|i| Id::hash_of(&[i])).collect();
    let ask = |txid, msg| {
        Datagram {
            flags: 0,
            txid,
            sender,
            msg,
        }
        .encode()
    };
    let node = net.node(0);
    node.handle_datagram(now, from, &ask(1, Message::GetProviders { key: keys[0] }));
    let token = std::iter::from_fn(|| node.poll_transmit())
        .filter_map(|t| Datagram::decode(&t.payload).ok())
        .find_map(|d| match d.msg {
            Message::Providers { token, .. } => Some(token),
            _ => None,
        })
        .expect("PROVIDERS");
    let reply = |node: &mut Dht, txid| {
        std::iter::from_fn(|| node.poll_transmit())
            .filter_map(|t| Datagram::decode(&t.payload).ok())
            .find(|d| d.txid == txid)
            .map(|d| d.msg)
    };
    // A bad token: nothing stored.
    let bad = Message::AnnounceMany {
        token: [0; 16],
        port: 0,
        keys: keys.clone(),
        rendezvous: None,
    };
    node.handle_datagram(now, from, &ask(2, bad));
    assert!(matches!(
        reply(node, 2),
        Some(Message::Error {
            code: error_code::BAD_TOKEN,
            ..
        })
    ));
    assert_eq!(node.provider_records(), 0);
    // The token of one PROVIDERS answer serves every key.
    let good = Message::AnnounceMany {
        token,
        port: 0,
        keys: keys.clone(),
        rendezvous: None,
    };
    node.handle_datagram(now, from, &ask(3, good.clone()));
    assert_eq!(reply(node, 3), Some(Message::Stored { stored: 36 }));
    for k in &keys {
        assert!(node.holds_record(k, &from, now), "{k:?}");
    }
    // Again: refreshed, still counted.
    node.handle_datagram(now, from, &ask(4, good));
    assert_eq!(reply(node, 4), Some(Message::Stored { stored: 36 }));
    assert_eq!(node.provider_records(), 36);
    // With a rendezvous (nat.md section 5): each record carries it, as an ANNOUNCE's would.
    let rv = SocketAddr::from(([203, 0, 113, 5], 7000));
    let with_rv = Message::AnnounceMany {
        token,
        port: 0,
        keys: keys[..35].to_vec(),
        rendezvous: Some(rv),
    };
    node.handle_datagram(now, from, &ask(5, with_rv));
    assert_eq!(reply(node, 5), Some(Message::Stored { stored: 35 }));
    for k in &keys[..35] {
        assert_eq!(
            node.store.get_via(k, now, 10),
            vec![(from, sender, rv)],
            "{k}"
        );
    }
    assert!(node.store.get_via(&keys[35], now, 10).is_empty());
    assert_eq!(node.provider_records(), 36);
}

/// Issue 17: a LAN announcement can name any ID. The contact it claims enters the table
/// only with a PROOF from that address; one that never proves (or proves another key)
/// stays out. LAN contacts used to be inserted as soon as they were heard.
#[test]
fn a_claimed_contact_enters_the_table_only_with_its_proof() {
    let mut net = Net::new(1);
    let now = net.now;
    let key = Identity::from_secret(&[4; 32]);
    let liar = Identity::from_secret(&[5; 32]);
    // A claim that nobody proves, and one whose PROOF is made with another key.
    net.node(0).add_claimed_contact(
        Contact {
            id: Id([0x42; 32]),
            addr: addr(7),
        },
        now,
    );
    assert_eq!(pass_verifications(net.node(0), now, addr(7), &liar), 1);
    assert!(net.node(0).routing_table().is_empty(), "taken unproven");
    // An honest claim: in with its proof.
    let honest = Contact {
        id: key.node_id(),
        addr: addr(8),
    };
    net.node(0).add_claimed_contact(honest, now);
    assert!(net.node(0).routing_table().is_empty());
    assert_eq!(pass_verifications(net.node(0), now, addr(8), &key), 1);
    assert_eq!(net.node(0).routing_table().len(), 1);
    assert!(net.node(0).routing_table().get(&key.node_id()).is_some());
    // Claimed again once proven: no second PROVE.
    net.node(0).add_claimed_contact(honest, now);
    assert_eq!(pass_verifications(net.node(0), now, addr(8), &key), 0);
}

/// A node that does not know ANNOUNCE_MANY drops it (dht.md 4.9a): after a batch and its
/// retry go unanswered, its keys go to that node one ANNOUNCE each, and it holds them all.
/// Also behind a rendezvous: the ANNOUNCEs carry it (as a node older than ANNOUNCE_MANY's
/// rendezvous form, which drops such a batch for its trailing bytes, gets them).
#[test]
fn keys_of_a_batch_never_answered_are_announced_one_by_one() {
    let rv = SocketAddr::from(([203, 0, 113, 5], 7000));
    for rendezvous in [None, Some(rv)] {
        let mut net = Net::new(2);
        net.join_all();
        net.deaf
            .push((addr(0), crate::proto::dht::msg_type::ANNOUNCE_MANY));
        let now = net.now;
        net.node(1).set_rendezvous(rendezvous, now);
        let keys: Vec<Id> = (0..100u32).map(|i| Id::hash_of(&i.to_be_bytes())).collect();
        for k in &keys {
            let now = net.now;
            net.node(1).provide_soon(*k, 0, now);
        }
        net.advance(sweep::FRESH_DELAY + Duration::from_secs(10));
        let now = net.now;
        let id1 = net.node(1).id();
        for k in &keys {
            assert!(net.node(0).holds_record(k, &addr(1), now), "{k} not stored");
            let via: Vec<_> = net.node(0).store.get_via(k, now, 10);
            let want: Vec<_> = rendezvous.map(|r| (addr(1), id1, r)).into_iter().collect();
            assert_eq!(via, want, "{k}");
        }
        let s = net.node(1).sweep_stats().clone();
        assert_eq!(s.batch_answers, 0, "{s:?}");
        assert_eq!((s.fallback_announces, s.fallback_acks), (100, 100), "{s:?}");
        assert_eq!(s.records_stored, 100, "{s:?}");
        assert_eq!(
            s.started, 1,
            "the unanswered batches cost node 0 its place: {s:?}"
        );
        assert_eq!(net.node(1).routing_table().len(), 1, "node 0 dropped");
    }
}

#[test]
fn first_announces_of_downloads_go_together_and_land_in_a_network_smaller_than_k() {
    // Issue 21: two nodes; node 1's downloads begin to provide 100 keys at once. They go out
    // after the delay as one sweep: one region lookup, and every key placed on node 0 (the
    // whole network) in ANNOUNCE_MANY batches of 36, not 100 announce lookups.
    let mut net = Net::new(2);
    net.join_all();
    let keys: Vec<Id> = (0..100u32).map(|i| Id::hash_of(&i.to_be_bytes())).collect();
    let out0 = net.node(1).stats().datagrams_out;
    for k in &keys {
        let now = net.now;
        net.node(1).provide_soon(*k, 0, now);
    }
    net.drain();
    assert_eq!(
        net.node(1).stats().datagrams_out,
        out0,
        "sent before the delay"
    );
    net.advance(sweep::FRESH_DELAY + Duration::from_millis(100));
    let now = net.now;
    for k in &keys {
        assert!(net.node(0).holds_record(k, &addr(1), now), "{k} not stored");
    }
    let s = net.node(1).sweep_stats().clone();
    assert_eq!(
        (s.regions, s.batches, s.records_stored),
        (1, 3, 100),
        "{s:?}"
    );
    assert!(net.node(1).provided_keys().len() >= 100);
    // One key alone gets its own announce (no sweep).
    let now = net.now;
    net.node(1).provide_soon(Id::hash_of(b"alone"), 0, now);
    net.advance(sweep::FRESH_DELAY + Duration::from_millis(100));
    let now = net.now;
    assert!(net
        .node(0)
        .holds_record(&Id::hash_of(b"alone"), &addr(1), now));
    assert_eq!(net.node(1).sweep_stats().started, 1);
}

/// Node `at`'s provider records of `key` from `provider`, by what they say of a rendezvous:
/// (with `rv`, without any).
fn records_with(net: &mut Net, key: &Id, provider: SocketAddr, rv: SocketAddr) -> (usize, usize) {
    let now = net.now;
    let (mut with, mut without) = (0, 0);
    for n in net.nodes.values() {
        if n.holds_record(key, &provider, now) {
            if n.store
                .get_via(key, now, usize::MAX)
                .iter()
                .any(|(a, _, r)| *a == provider && *r == rv)
            {
                with += 1;
            } else {
                without += 1;
            }
        }
    }
    (with, without)
}

/// Issue 21: a node behind a rendezvous republishes its keys in a reprovide sweep whose
/// ANNOUNCE_MANY batches carry the rendezvous (dht.md 4.9a), not one announce lookup per key,
/// and every record stored says how to reach it. Run again without sweeps (what a node
/// with a rendezvous did before) for the datagram count it saves.
#[test]
fn a_republish_behind_a_rendezvous_goes_in_batches_that_carry_it() {
    const KEYS: u32 = 1000;
    // More than 2k nodes: a region lookup (2k wide) places the keys around its own.
    const NODES: usize = 60;
    let keys: Vec<Id> = (0..KEYS).map(|i| Id::hash_of(&i.to_be_bytes())).collect();
    let rv = SocketAddr::from(([203, 0, 113, 5], 7000));
    let mut sent = Vec::new();
    for sweep in [true, false] {
        let mut net = Net::new(NODES);
        net.join_all();
        net.advance(Duration::from_secs(60));
        net.node(1).config.reprovide_sweep = sweep;
        let now = net.now;
        net.node(1).provide_many(&keys, 4001, now);
        net.advance(Duration::from_secs(120));
        let before = net.node(1).stats().datagrams_out;
        let sw = net.node(1).sweep_stats().clone();
        let now = net.now;
        net.node(1).set_rendezvous(Some(rv), now);
        net.advance(Duration::from_secs(120));
        let out = net.node(1).stats().datagrams_out - before;
        let s = net.node(1).sweep_stats().clone();
        let provider = SocketAddr::new(addr(1).ip(), 4001);
        let (mut least, mut stale) = (usize::MAX, 0);
        for k in &keys {
            let (with, without) = records_with(&mut net, k, provider, rv);
            stale += without;
            least = least.min(with);
        }
        if sweep {
            // Every key stored with the rendezvous on its k = 20 closest nodes.
            assert!(least >= 20, "a key on only {least} nodes");
            // The sweep reaches the nodes of the first one: no record is left without it.
            assert_eq!(stale, 0, "records without the rendezvous");
            assert_eq!(s.started, sw.started + 1, "{s:?}");
            assert!(s.batches > sw.batches, "{s:?}");
            assert_eq!(s.fallback_announces, 0, "{s:?}");
        }
        eprintln!(
            "{KEYS} keys behind a rendezvous, {NODES} nodes, sweep {sweep}: {out} datagrams \
             sent; {stale} records of before without it, least {least} with it; this sweep: \
             {} regions, {} ANNOUNCE_MANY, {} records stored; postponed {}",
            s.regions - sw.regions,
            s.batches - sw.batches,
            s.records_stored - sw.records_stored,
            net.node(1).stats().announces_postponed
        );
        sent.push(out);
    }
    assert!(
        sent[0] * 5 < sent[1],
        "sweep {} vs per key {}",
        sent[0],
        sent[1]
    );
}

/// Defect of issue 21: announces that cannot start (more keys due than lookups allowed)
/// are not lost for a republish interval: counted, they stay due and go out later.
#[test]
fn keys_due_beyond_the_lookup_limit_are_announced_later_not_lost() {
    let mut net = Net::new(2);
    net.join_all();
    net.advance(Duration::from_secs(6));
    net.node(1).config.max_queries = 8;
    net.node(1).config.reprovide_sweep = false;
    let keys: Vec<Id> = (0..60u32).map(|i| Id::hash_of(&i.to_be_bytes())).collect();
    // Straight through `announce`: the lookups past the limit are refused.
    let now = net.now;
    let started = keys[..30]
        .iter()
        .filter(|k| net.node(1).announce(**k, 0, now).is_some())
        .count();
    assert!(started <= 8, "{started}");
    assert!(net.node(1).stats().announces_postponed >= 22);
    // Through the housekeeping: a round starts what the limit leaves room for.
    let now = net.now;
    net.node(1).provide_many(&keys[30..], 0, now);
    net.advance(Duration::from_secs(60));
    let now = net.now;
    for k in &keys {
        assert!(net.node(0).holds_record(k, &addr(1), now), "{k} lost");
    }
    assert!(net.node(1).stats().announces_postponed >= 22 + 24);
}
