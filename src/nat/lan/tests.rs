//! LAN discovery's state machine on a virtual link: every multicast reaches every other
//! machine, unicasts reach their address, time jumps to the next wake-up.

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn id(b: u8) -> Id {
    Id([b; crate::id::ID_LEN])
}

/// A few machines on one link; machine `i` sends from 192.168.1.(10+i):50000.
struct Link {
    nodes: Vec<Lan>,
    now: Instant,
    /// (receiver, sender's source address, bytes)
    delivered: u64,
}

fn src(i: usize) -> SocketAddr {
    SocketAddr::new(format!("192.168.1.{}", 10 + i).parse().unwrap(), 50000)
}

impl Link {
    fn new(n: usize) -> Link {
        let now = Instant::now();
        Link {
            nodes: (0..n)
                .map(|i| Lan::new(LanConfig::default(), id(i as u8 + 1), 4001, now))
                .collect(),
            now,
            delivered: 0,
        }
    }

    /// Moves datagrams until none is left (the link is lossless and instant).
    fn deliver(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    for j in 0..self.nodes.len() {
                        let to_j = match t.dest {
                            None => j != i,
                            Some(d) => d == src(j),
                        };
                        if to_j {
                            self.delivered += 1;
                            let now = self.now;
                            self.nodes[j].handle_datagram(now, src(i), &t.bytes);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the link never went quiet");
    }

    fn run_until(&mut self, until: Instant) {
        loop {
            self.deliver();
            let next = self.nodes.iter().filter_map(Lan::poll_timeout).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        if n.poll_timeout().is_some_and(|t| t <= now) {
                            n.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
    }
}

fn events(l: &mut Lan) -> Vec<LanEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

#[test]
fn nodes_started_one_after_another_know_each_other_at_once() {
    let mut link = Link::new(3);
    let t0 = link.now;
    link.nodes[0].start(t0);
    link.deliver();
    // Alone: its HELLO reached nobody.
    assert_eq!(link.nodes[0].peers().count(), 0);
    link.now += Duration::from_millis(300);
    let now = link.now;
    link.nodes[1].start(now);
    link.deliver();
    link.now += Duration::from_millis(300);
    let now = link.now;
    link.nodes[2].start(now);
    link.deliver();
    // Within the same instant of the last start, every node knows the two others: the
    // starting node's HELLO is answered by unicast ANNOUNCEs.
    for (i, n) in link.nodes.iter_mut().enumerate() {
        let ids: Vec<Id> = n.peers().map(|p| p.node).collect();
        let others: Vec<Id> = (0..3)
            .filter(|j| *j != i)
            .map(|j| id(j as u8 + 1))
            .collect();
        assert_eq!(ids, others, "node {i}");
        let found = events(n)
            .into_iter()
            .filter(|e| matches!(e, LanEvent::PeerFound { .. }))
            .count();
        assert_eq!(found, 2, "node {i} found each peer once");
    }
    let p = link.nodes[0].peers().next().copied().unwrap();
    assert_eq!(p.addr, "192.168.1.11:4001".parse().unwrap());
}

#[test]
fn an_idle_node_sends_twelve_datagrams_an_hour() {
    let mut link = Link::new(4);
    let t0 = link.now;
    for n in &mut link.nodes {
        n.start(t0);
    }
    link.run_until(t0 + Duration::from_secs(5));
    let sent_at_start: Vec<u64> = link
        .nodes
        .iter()
        .map(|n| n.counters().sent_multicast + n.counters().sent_unicast)
        .collect();
    link.run_until(t0 + Duration::from_secs(5) + HOUR);
    for (i, n) in link.nodes.iter().enumerate() {
        let c = n.counters();
        let idle = c.sent_multicast + c.sent_unicast - sent_at_start[i];
        assert_eq!(idle, 12, "node {i}: {c:?}");
        // Nobody was forgotten: the announces keep them all.
        assert_eq!(n.peers().count(), 3);
    }
}

#[test]
fn a_silent_peer_is_forgotten() {
    let mut link = Link::new(2);
    let t0 = link.now;
    link.nodes[0].start(t0);
    link.nodes[1].start(t0);
    link.deliver();
    assert_eq!(link.nodes[0].peers().count(), 1);
    // Node 1 goes away: only node 0 keeps running.
    let mut lone = link.nodes.remove(0);
    let _ = events(&mut lone);
    let mut now = t0;
    while now < t0 + 2 * LanConfig::default().peer_ttl {
        now = lone.poll_timeout().unwrap();
        lone.handle_timeout(now);
        while lone.poll_transmit().is_some() {}
    }
    assert_eq!(lone.peers().count(), 0);
    assert_eq!(events(&mut lone), vec![LanEvent::PeerGone { node: id(2) }]);
}

#[test]
fn want_is_answered_by_have_from_the_provider() {
    let mut link = Link::new(3);
    let t0 = link.now;
    for n in &mut link.nodes {
        n.start(t0);
    }
    link.deliver();
    for n in &mut link.nodes {
        let _ = events(n);
    }
    let content = id(0xab);
    link.nodes[0].want(content);
    link.deliver();
    // Nodes 1 and 2 are asked; node 2 provides it.
    for j in [1, 2] {
        let ev = events(&mut link.nodes[j]);
        assert_eq!(
            ev,
            vec![LanEvent::Want {
                content,
                from: src(0)
            }]
        );
    }
    let now = link.now;
    link.nodes[2].have(now, content, src(0));
    link.deliver();
    assert_eq!(
        events(&mut link.nodes[0]),
        vec![LanEvent::Have {
            content,
            addr: "192.168.1.12:4001".parse().unwrap()
        }]
    );
}

#[test]
fn hostile_datagrams_are_counted_and_change_nothing() {
    let now = Instant::now();
    let mut l = Lan::new(LanConfig::default(), id(1), 4001, now);
    l.start(now);
    while l.poll_transmit().is_some() {}
    for bad in [&b""[..], b"PSLD", b"M-SEARCH * HTTP/1.1\r\n", &[0xff; 2000]] {
        l.handle_datagram(now, src(5), bad);
    }
    assert_eq!(l.counters().malformed, 4);
    assert_eq!(l.peers().count(), 0);
    assert!(l.poll_transmit().is_none());
    // Our own ID (our looped-back multicast, or a forger): not a peer.
    let own = Datagram {
        node: id(1),
        port: 4001,
        body: Body::Hello,
    };
    l.handle_datagram(now, src(5), &own.encode());
    assert_eq!(l.peers().count(), 0);
    assert!(l.poll_transmit().is_none());
}

#[test]
fn a_flood_of_invented_ids_fills_no_more_than_the_limits() {
    let now = Instant::now();
    let cfg = LanConfig::default();
    let mut l = Lan::new(cfg.clone(), id(1), 4001, now);
    l.start(now);
    // One address announcing a thousand IDs: max_per_ip of them are kept.
    for i in 0..1000u32 {
        let mut node = [0u8; 32];
        node[..4].copy_from_slice(&i.to_be_bytes());
        node[31] = 7;
        let d = Datagram {
            node: Id(node),
            port: 4001,
            body: Body::Hello,
        };
        l.handle_datagram(now, src(5), &d.encode());
    }
    assert_eq!(l.peers().count(), cfg.max_per_ip);
    // And it gets at most answers_per_sec answers this second (one per HELLO burst anyway).
    let answers = std::iter::from_fn(|| l.poll_transmit())
        .filter(|t| t.dest.is_some())
        .count();
    assert!(answers <= cfg.answers_per_sec as usize, "{answers}");
    // Many addresses: max_peers in all.
    for i in 0..1000u32 {
        let mut node = [0u8; 32];
        node[..4].copy_from_slice(&i.to_be_bytes());
        let from = SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 50000);
        let d = Datagram {
            node: Id(node),
            port: 4001,
            body: Body::Announce,
        };
        l.handle_datagram(now, from, &d.encode());
    }
    assert_eq!(l.peers().count(), cfg.max_peers);
    assert!(l.counters().refused_full > 0);
}

#[test]
fn a_node_heard_on_both_groups_keeps_its_ipv4_address() {
    let now = Instant::now();
    let mut l = Lan::new(LanConfig::default(), id(1), 4001, now);
    l.start(now);
    let hello = Datagram {
        node: id(2),
        port: 4001,
        body: Body::Announce,
    }
    .encode();
    let v6: SocketAddr = "[fe80::2%3]:50000".parse().unwrap();
    let v4: SocketAddr = "192.168.1.2:50001".parse().unwrap();
    l.handle_datagram(now, v6, &hello);
    l.handle_datagram(now, v4, &hello);
    l.handle_datagram(now, v6, &hello);
    let p = l.peers().next().copied().unwrap();
    assert_eq!(p.addr, "192.168.1.2:4001".parse().unwrap());
    let found: Vec<LanEvent> = events(&mut l);
    assert_eq!(found.len(), 2, "{found:?}");
    // The link-local address keeps its interface.
    match found[0] {
        LanEvent::PeerFound {
            addr: SocketAddr::V6(a),
            ..
        } => assert_eq!(a.scope_id(), 3),
        ref e => panic!("{e:?}"),
    }
}
