//! Tests of the NAT layer's state machines, driven by events on a virtual clock (as
//! `src/dht/tests.rs` does for the DHT): reachability, rendezvous registration and renewal,
//! introductions, punch and relay timeouts, relay and dial-back limits, and the NAT-PMP
//! client against a fake gateway that speaks RFC 6886.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::pmp::{self, Body, PmpClient, PmpConfig, PmpEvent, PmpState, Proto, Response};
use super::*;
use crate::proto::dht::{call_mode, error_code, Contact, Datagram, Message};

const WIRE_PORT: u16 = 4001;

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, last], port))
}

fn id(b: u8) -> Id {
    Id([b; 32])
}

fn contact(b: u8) -> Contact {
    Contact {
        id: id(b),
        addr: addr(b, 4001),
    }
}

fn dg(sender: Id, txid: u64, msg: Message) -> Datagram {
    Datagram {
        flags: 0,
        txid,
        sender,
        msg,
    }
}

fn nat(cfg: NatConfig) -> Nat {
    Nat::new(WIRE_PORT, cfg, 7)
}

fn drain(n: &mut Nat) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

/// The datagrams among `actions`: (to, txid, message).
fn sends(actions: &[Action]) -> Vec<(SocketAddr, u64, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, txid, msg, .. } => Some((*to, *txid, msg.clone())),
            _ => None,
        })
        .collect()
}

/// A node that has asked `contacts` for a dial-back; returns the nonce. Still without a
/// rendezvous, it has registered with the first contact at the same time (nat.md section 4).
fn probing(n: &mut Nat, now: Instant, contacts: Vec<Contact>) -> u64 {
    let first = contacts.first().map(|c| c.addr);
    let had_registration = n.rendezvous().is_some();
    n.external_address(now, contacts);
    let mut out = sends(&drain(n));
    let registers: Vec<_> = out
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Register { .. }))
        .map(|(to, _, _)| Some(*to))
        .collect();
    if had_registration || n.reachability() != Reachability::Unknown {
        assert!(registers.is_empty(), "no second registration: {out:?}");
    } else {
        assert_eq!(
            registers,
            [first],
            "registered at once with the first: {out:?}"
        );
    }
    out.retain(|(_, _, m)| !matches!(m, Message::Register { .. }));
    assert_eq!(out.len(), 2, "two contacts are asked: {out:?}");
    let mut nonces = out.iter().map(|(_, _, m)| match m {
        Message::Dialback { nonce, port } => {
            assert_eq!(*port, WIRE_PORT);
            *nonce
        }
        other => panic!("expected DIALBACK, got {other:?}"),
    });
    let nonce = nonces.next().expect("a nonce");
    assert!(nonces.all(|x| x == nonce), "one nonce for the whole test");
    nonce
}

/// A node found unreachable: it has sent REGISTER to its first candidate.
fn unreachable(n: &mut Nat, now: Instant) -> (Instant, u64) {
    probing(n, now, vec![contact(2), contact(3), contact(4)]);
    n.handle_datagram(now, addr(2, 4001), dg(id(2), 1, Message::DialbackAck));
    let t = now + NatConfig::default().probe_wait;
    // The registration made with the test is renewed (unanswered) before the verdict.
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(2)));
    n.handle_timeout(t);
    let acts = drain(n);
    assert!(acts.contains(&Action::Reachability(Reachability::Unreachable)));
    let out = sends(&acts);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(2, 4001));
    assert_eq!(out[0].2, Message::Register { port: WIRE_PORT });
    (t, out[0].1)
}

// ----- reachability -------------------------------------------------------------------

#[test]
fn a_probe_that_arrives_makes_the_node_public_and_it_is_retested_later() {
    let mut n = nat(NatConfig::default());
    let t0 = Instant::now();
    let nonce = probing(&mut n, t0, vec![contact(2), contact(3)]);
    assert!(
        !n.probe_received(t0, nonce ^ 1),
        "a wrong nonce proves nothing"
    );
    assert!(n.probe_received(t0, nonce));
    assert_eq!(drain(&mut n), [Action::Reachability(Reachability::Public)]);
    assert_eq!(n.reachability(), Reachability::Public);
    // Re-tested after `recheck_every`, with the same contacts.
    let again = t0 + NatConfig::default().recheck_every;
    assert_eq!(n.poll_timeout(), Some(again));
    n.handle_timeout(again - Duration::from_millis(1));
    assert!(drain(&mut n).is_empty());
    n.handle_timeout(again);
    let out = sends(&drain(&mut n));
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0].2, Message::Dialback { .. }));
}

/// Issue 20: a node registers with a rendezvous as its test starts, so that records it
/// announces while the test runs already say how to reach it if it turns out unreachable;
/// a PROBE that gets through drops the registration (and the records say so again).
#[test]
fn a_test_under_way_registers_and_a_probe_drops_the_registration() {
    let mut n = nat(NatConfig::default());
    let t0 = Instant::now();
    n.external_address(t0, vec![contact(2), contact(3)]);
    let out = sends(&drain(&mut n));
    let (to, txid, msg) = out[2].clone();
    assert_eq!(
        (to, msg),
        (addr(2, 4001), Message::Register { port: WIRE_PORT })
    );
    let nonce = match out[0].2 {
        Message::Dialback { nonce, .. } => nonce,
        ref other => panic!("expected DIALBACK, got {other:?}"),
    };
    let ok = dg(id(2), txid, Message::Registered { lifetime: 90 });
    n.handle_datagram(t0, to, ok);
    assert_eq!(drain(&mut n), [Action::Rendezvous(Some(to))]);
    assert_eq!(n.reachability(), Reachability::Unknown);
    assert!(n.probe_received(t0, nonce));
    assert_eq!(
        drain(&mut n),
        [
            Action::Reachability(Reachability::Public),
            Action::Rendezvous(None)
        ]
    );
    assert_eq!(n.rendezvous(), None);
    // Reachable, it registers with nobody, not even at its next test.
    let again = t0 + NatConfig::default().recheck_every;
    n.handle_timeout(again);
    let out = sends(&drain(&mut n));
    assert!(
        out.iter()
            .all(|(_, _, m)| matches!(m, Message::Dialback { .. })),
        "{out:?}"
    );
}

#[test]
fn an_acknowledged_dialback_without_probe_means_unreachable() {
    let mut n = nat(NatConfig::default());
    let (t, _) = unreachable(&mut n, Instant::now());
    assert_eq!(n.reachability(), Reachability::Unreachable);
    // Re-test scheduled as well as the registration's first renewal.
    assert!(n.poll_timeout().is_some_and(|w| w > t));
}

#[test]
fn unanswered_dialbacks_are_retried_and_decide_nothing() {
    let mut n = nat(NatConfig::default());
    let t0 = Instant::now();
    probing(&mut n, t0, vec![contact(2), contact(3)]);
    let dialbacks = |acts: Vec<Action>| {
        // The registration made with the test goes on (renewals, the next candidate).
        let mut out = sends(&acts);
        out.retain(|(_, _, m)| !matches!(m, Message::Register { .. }));
        assert!(
            acts.iter().all(|a| matches!(a, Action::Send { .. })),
            "no verdict: {acts:?}"
        );
        out
    };
    let t1 = t0 + NatConfig::default().probe_wait;
    n.handle_timeout(t1);
    assert!(dialbacks(drain(&mut n)).is_empty(), "nobody acknowledged");
    assert_eq!(n.reachability(), Reachability::Unknown);
    let t2 = t1 + Duration::from_secs(10);
    let mut now = t1;
    while now < t2 {
        now = n.poll_timeout().expect("the retest is due");
        n.handle_timeout(now);
        let out = dialbacks(drain(&mut n));
        assert!(
            now == t2 || out.is_empty(),
            "asked before the pause: {out:?}"
        );
        if now == t2 {
            assert_eq!(out.len(), 2, "asked again: {out:?}");
        }
    }
    assert_eq!(now, t2);
}

#[test]
fn a_retest_that_confirms_unreachable_keeps_the_rendezvous() {
    let mut n = nat(NatConfig::default());
    let (t, txid) = unreachable(&mut n, Instant::now());
    n.handle_datagram(
        t,
        addr(2, 4001),
        dg(id(2), txid, Message::Registered { lifetime: 90 }),
    );
    assert_eq!(
        drain(&mut n),
        [Action::Rendezvous(Some(addr(2, 4001)))],
        "REGISTERED confirms the rendezvous"
    );
    // Ten minutes of renewals (answered), then the re-test.
    let recheck = t + NatConfig::default().recheck_every;
    let mut now = t;
    while let Some(w) = n.poll_timeout().filter(|w| *w < recheck) {
        now = w;
        n.handle_timeout(now);
        for (to, txid, msg) in sends(&drain(&mut n)) {
            assert_eq!(msg, Message::Register { port: WIRE_PORT });
            let ok = dg(id(2), txid, Message::Registered { lifetime: 90 });
            n.handle_datagram(now, to, ok);
            assert!(drain(&mut n).is_empty());
        }
    }
    assert!(now < recheck);
    n.handle_timeout(recheck);
    let out = sends(&drain(&mut n));
    assert!(out
        .iter()
        .all(|(_, _, m)| matches!(m, Message::Dialback { .. })));
    n.handle_datagram(recheck, addr(3, 4001), dg(id(3), 9, Message::DialbackAck));
    let end = recheck + NatConfig::default().probe_wait;
    n.handle_timeout(end);
    let acts = drain(&mut n);
    // Still unreachable with the same rendezvous: at most a renewal that fell due.
    assert!(
        acts.iter().all(|a| matches!(
            a,
            Action::Send { to, msg: Message::Register { .. }, .. } if *to == addr(2, 4001)
        )),
        "{acts:?}"
    );
    assert_eq!(n.rendezvous(), Some(addr(2, 4001)));
}

#[test]
fn a_mapping_makes_the_node_reachable_and_losing_it_retests() {
    let mut n = nat(NatConfig::default());
    let t0 = Instant::now();
    let (t, txid) = unreachable(&mut n, t0);
    n.handle_datagram(
        t,
        addr(2, 4001),
        dg(id(2), txid, Message::Registered { lifetime: 90 }),
    );
    drain(&mut n);
    n.set_mapped(t, true);
    assert_eq!(
        drain(&mut n),
        [
            Action::Reachability(Reachability::Mapped),
            Action::Rendezvous(None)
        ]
    );
    assert_eq!(
        n.poll_timeout(),
        None,
        "no renewals, no probes while mapped"
    );
    n.external_address(t, vec![contact(5), contact(6)]);
    assert!(drain(&mut n).is_empty(), "no dial-back while mapped");
    n.set_mapped(t, false);
    assert_eq!(drain(&mut n), [Action::Reachability(Reachability::Unknown)]);
    assert_eq!(n.poll_timeout(), Some(t));
    n.handle_timeout(t);
    let out = sends(&drain(&mut n));
    assert_eq!(
        out.len(),
        3,
        "tested again at once, and registered: {out:?}"
    );
    assert_eq!(out[2].2, Message::Register { port: WIRE_PORT });
}

// ----- the rendezvous client ----------------------------------------------------------

#[test]
fn registrations_are_renewed_and_a_silent_rendezvous_is_replaced() {
    let mut n = nat(NatConfig::default());
    let (t, txid) = unreachable(&mut n, Instant::now());
    let a = addr(2, 4001);
    // A REGISTERED from elsewhere confirms nothing.
    n.handle_datagram(
        t,
        addr(9, 4001),
        dg(id(9), txid, Message::Registered { lifetime: 90 }),
    );
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.counters().unexpected, 1);
    n.handle_datagram(t, a, dg(id(2), txid, Message::Registered { lifetime: 90 }));
    assert_eq!(drain(&mut n), [Action::Rendezvous(Some(a))]);
    // First renewal 2 s after the REGISTER, then every 20 s; two unanswered and it moves on.
    let mut renewals = Vec::new();
    let now = loop {
        let now = n.poll_timeout().expect("a renewal is due");
        n.handle_timeout(now);
        let acts = drain(&mut n);
        if acts.contains(&Action::Rendezvous(None)) {
            let out = sends(&acts);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, addr(3, 4001), "the next candidate");
            assert_eq!(out[0].2, Message::Register { port: WIRE_PORT });
            break now;
        }
        let out = sends(&acts);
        assert_eq!(out.len(), 1, "{acts:?}");
        assert_eq!(out[0].0, a);
        renewals.push(now - t);
        assert!(renewals.len() < 10, "never gave up: {renewals:?}");
    };
    assert_eq!(
        renewals,
        [Duration::from_secs(2), Duration::from_secs(22)],
        "renewed at 2 s, then 20 s later"
    );
    assert_eq!(now - t, Duration::from_secs(42));
    assert_eq!(n.rendezvous(), None);
}

/// Issue 20's lab: nodes not yet known to be reachable refuse REGISTER, and a client whose
/// every candidate refused used to retry the first one at once, about 100 REGISTERs a
/// second. Now each candidate is asked once (refusals from elsewhere do not count), then all
/// of them again after a pause.
#[test]
fn when_every_candidate_refuses_the_client_pauses_before_asking_again() {
    let mut n = nat(NatConfig::default());
    let (t, mut txid) = unreachable(&mut n, Instant::now());
    let refuse = |txid| {
        dg(
            id(0),
            txid,
            Message::Error {
                code: error_code::BAD_REQUEST,
                text: "not reachable".into(),
            },
        )
    };
    // A refusal from another address is not our rendezvous's.
    n.handle_datagram(t, addr(9, 4001), refuse(txid));
    assert!(sends(&drain(&mut n)).is_empty());
    let mut asked = vec![addr(2, 4001)];
    loop {
        let to = *asked.last().expect("asked");
        n.handle_datagram(t, to, refuse(txid));
        let out = sends(&drain(&mut n));
        match out.as_slice() {
            [] => break,
            [(next, x, Message::Register { .. })] => {
                asked.push(*next);
                txid = *x;
                assert!(asked.len() < 10, "asked again at once: {asked:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(asked, [addr(2, 4001), addr(3, 4001), addr(4, 4001)]);
    let again = t + Duration::from_secs(2);
    assert_eq!(n.poll_timeout(), Some(again));
    n.handle_timeout(again);
    let out = sends(&drain(&mut n));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(2, 4001), "all of them again, from the first");
}

// ----- the rendezvous ------------------------------------------------------------------

/// A NAT core that knows it can be reached (here: its port is mapped), as a rendezvous must.
fn reachable(cfg: NatConfig, now: Instant) -> Nat {
    let mut n = nat(cfg);
    n.set_mapped(now, true);
    drain(&mut n);
    n
}

/// A node that cannot be reached, or has not found out yet, refuses to be a rendezvous: it
/// could not introduce anyone to its clients.
#[test]
fn only_a_reachable_node_is_a_rendezvous() {
    let t = Instant::now();
    let register = |n: &mut Nat| {
        n.handle_datagram(
            t,
            addr(10, 5000),
            dg(id(10), 1, Message::Register { port: 4001 }),
        );
        sends(&drain(n))[0].2.clone()
    };
    let mut untested = nat(NatConfig::default());
    assert!(matches!(
        register(&mut untested),
        Message::Error { code, .. } if code == error_code::BAD_REQUEST
    ));
    assert_eq!(untested.clients(), 0);
    let mut mapped = reachable(NatConfig::default(), t);
    assert_eq!(register(&mut mapped), Message::Registered { lifetime: 90 });
    assert_eq!(mapped.clients(), 1);
}

#[test]
fn a_rendezvous_serves_at_most_max_clients_and_forgets_expired_ones() {
    let cfg = NatConfig {
        max_clients: 2,
        ..NatConfig::default()
    };
    let t = Instant::now();
    let mut r = reachable(cfg, t);
    for c in [10u8, 11] {
        r.handle_datagram(
            t,
            addr(c, 5000),
            dg(id(c), 1, Message::Register { port: 4001 }),
        );
        let out = sends(&drain(&mut r));
        assert_eq!(out[0].2, Message::Registered { lifetime: 90 });
    }
    r.handle_datagram(
        t,
        addr(12, 5000),
        dg(id(12), 2, Message::Register { port: 4001 }),
    );
    let out = sends(&drain(&mut r));
    assert!(
        matches!(out[0].2, Message::Error { code, .. } if code == error_code::STORE_FULL),
        "{out:?}"
    );
    // A known client renews even when full.
    r.handle_datagram(
        t,
        addr(10, 5000),
        dg(id(10), 3, Message::Register { port: 4001 }),
    );
    assert!(matches!(
        sends(&drain(&mut r))[0].2,
        Message::Registered { .. }
    ));
    assert_eq!(r.clients(), 2);
    // 90 s later client 11 has expired: an introduction to it fails, a newcomer fits.
    let later = t + Duration::from_secs(91);
    let intro = Message::Introduce {
        target: id(11),
        port: 4001,
    };
    r.handle_datagram(later, addr(20, 4001), dg(id(20), 4, intro));
    assert!(matches!(
        sends(&drain(&mut r))[0].2,
        Message::Error { code, .. } if code == error_code::UNKNOWN_PEER
    ));
    r.handle_datagram(
        later,
        addr(12, 5000),
        dg(id(12), 5, Message::Register { port: 4001 }),
    );
    assert!(matches!(
        sends(&drain(&mut r))[0].2,
        Message::Registered { .. }
    ));
}

#[test]
fn dialbacks_in_progress_are_limited() {
    let cfg = NatConfig {
        max_dialbacks: 1,
        ..NatConfig::default()
    };
    let mut n = nat(cfg);
    let t = Instant::now();
    let ask = |nonce, port| Message::Dialback { nonce, port };
    n.handle_datagram(t, addr(30, 6000), dg(id(30), 1, ask(77, 4001)));
    let acts = drain(&mut n);
    assert_eq!(sends(&acts)[0].2, Message::DialbackAck);
    assert!(acts.contains(&Action::DialBack {
        addr: addr(30, 4001),
        nonce: 77
    }));
    n.handle_datagram(t, addr(31, 6000), dg(id(31), 2, ask(78, 4001)));
    assert!(matches!(
        sends(&drain(&mut n))[0].2,
        Message::Error { code, .. } if code == error_code::RATE_LIMITED
    ));
    n.dialback_done();
    n.handle_datagram(t, addr(31, 6000), dg(id(31), 3, ask(78, 0)));
    assert!(
        matches!(sends(&drain(&mut n))[0].2, Message::Error { .. }),
        "port 0 is refused"
    );
    n.handle_datagram(t, addr(31, 6000), dg(id(31), 4, ask(78, 4002)));
    assert_eq!(sends(&drain(&mut n))[0].2, Message::DialbackAck);
}

#[test]
fn relayed_circuits_are_limited_per_rendezvous() {
    let cfg = NatConfig {
        max_circuits: 2,
        ..NatConfig::default()
    };
    let t = Instant::now();
    let mut r = reachable(cfg, t);
    r.handle_datagram(
        t,
        addr(10, 5000),
        dg(id(10), 1, Message::Register { port: 4001 }),
    );
    drain(&mut r);
    let opener = addr(20, 4001);
    assert!(!r.relay_open(t, &id(99), 1, opener), "not a client here");
    assert!(r.relay_open(t, &id(10), 1, opener));
    let out = sends(&drain(&mut r));
    assert_eq!(
        out[0].0,
        addr(10, 5000),
        "CALL goes to the client's mapping"
    );
    assert!(matches!(
        out[0].2,
        Message::Call { mode, nonce: 1, .. } if mode == call_mode::RELAY
    ));
    assert!(r.relay_open(t, &id(10), 2, opener));
    assert!(!r.relay_open(t, &id(10), 3, opener), "two circuits at most");
    r.circuit_closed();
    assert!(r.relay_open(t, &id(10), 3, opener));
    assert_eq!(r.counters().circuits, 3);
    let expired = t + Duration::from_secs(91);
    r.circuit_closed();
    assert!(
        !r.relay_open(expired, &id(10), 4, opener),
        "an expired registration relays nothing"
    );
}

// ----- introductions, punches and relays: three nodes on a virtual network -------------

/// Downloader, rendezvous and provider, with instant delivery between them.
struct Trio {
    now: Instant,
    nodes: [Nat; 3],
    /// Non-datagram actions each node produced, in order.
    actions: [Vec<Action>; 3],
}

const D: usize = 0;
const R: usize = 1;
const P: usize = 2;

fn trio_addr(i: usize) -> SocketAddr {
    addr(100 + i as u8, 4001)
}

impl Trio {
    /// The provider registered with the rendezvous.
    fn new() -> Trio {
        Trio::with_provider_ports_varying(false)
    }

    /// The provider registered with the rendezvous; `vary`: its NAT gives each destination
    /// another port (its REGISTER says so).
    fn with_provider_ports_varying(vary: bool) -> Trio {
        let now = Instant::now();
        let mut t = Trio {
            now,
            nodes: [
                nat(NatConfig::default()),
                nat(NatConfig::default()),
                nat(NatConfig::default()),
            ],
            actions: [Vec::new(), Vec::new(), Vec::new()],
        };
        // The rendezvous knows it can be reached (its port is mapped).
        t.nodes[R] = reachable(NatConfig::default(), now);
        let rv = Contact {
            id: id(101),
            addr: trio_addr(R),
        };
        t.nodes[P].set_ports_vary(vary);
        t.nodes[P].external_address(now, vec![rv, contact(50)]);
        t.deliver();
        // The rendezvous acknowledged (it is also asked to dial back); no PROBE came.
        t.advance(NatConfig::default().probe_wait);
        assert_eq!(t.nodes[P].rendezvous(), Some(trio_addr(R)));
        t.actions = [Vec::new(), Vec::new(), Vec::new()];
        t
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for n in &mut self.nodes {
            if n.poll_timeout().is_some_and(|w| w <= self.now) {
                n.handle_timeout(self.now);
            }
        }
        self.deliver();
    }

    /// Delivers datagrams between the three until quiet (others vanish).
    fn deliver(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..3 {
                for a in drain(&mut self.nodes[i]) {
                    match a {
                        Action::Send {
                            to,
                            txid,
                            msg,
                            flags,
                        } => {
                            moved = true;
                            if let Some(j) = (0..3).find(|&j| trio_addr(j) == to) {
                                let mut d = dg(id(100 + i as u8), txid, msg);
                                d.flags = flags;
                                self.nodes[j].handle_datagram(self.now, trio_addr(i), d);
                            }
                        }
                        other => self.actions[i].push(other),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the three nodes never went quiet");
    }

    /// The downloader found unreachable (its dial-back acknowledged, no PROBE).
    fn downloader_unreachable(&mut self) {
        let (t, _) = unreachable(&mut self.nodes[D], self.now);
        self.now = t;
        self.actions[D].clear();
    }

    fn connect(&mut self, conn: ConnId) {
        let now = self.now;
        self.nodes[D].connect_via(now, conn, trio_addr(P), id(102), trio_addr(R), None);
        self.deliver();
    }
}

#[test]
fn an_introduction_makes_both_sides_open_tcp_and_a_punch_is_recorded() {
    let mut t = Trio::new();
    t.connect(ConnId::new(7));
    assert!(
        t.actions[D].contains(&Action::PunchConnect {
            conn: ConnId::new(7),
            addr: trio_addr(P)
        }),
        "{:?}",
        t.actions[D]
    );
    assert!(t.actions[P].contains(&Action::PunchAccept {
        addr: SocketAddr::new(trio_addr(D).ip(), WIRE_PORT)
    }));
    assert_eq!(t.nodes[R].counters().introductions, 1);
    t.now += Duration::from_millis(40);
    t.nodes[D].punch_connected(ConnId::new(7), t.now);
    let s: Vec<&Setup> = t.nodes[D].setups().collect();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].strategy, Strategy::Punched);
    assert_eq!(s[0].setup, Duration::from_millis(40));
    assert!(!t.nodes[D].is_attempting(ConnId::new(7)));
}

#[test]
fn a_punch_that_does_not_connect_falls_back_to_the_relay_then_fails() {
    let mut t = Trio::new();
    t.connect(ConnId::new(8));
    t.advance(NatConfig::default().punch_timeout);
    let relay = t.actions[D].iter().find_map(|a| match a {
        Action::RelayOpen {
            conn,
            rendezvous,
            node,
            nonce,
        } => Some((*conn, *rendezvous, *node, *nonce)),
        _ => None,
    });
    let (conn, rv, node, nonce) = relay.expect("a relay after the punch timeout");
    assert_eq!((conn, rv, node), (ConnId::new(8), trio_addr(R), id(102)));
    // The rendezvous calls the provider, which joins the circuit.
    let now = t.now;
    assert!(t.nodes[R].relay_open(now, &node, nonce, trio_addr(D)));
    t.deliver();
    assert!(t.actions[P].contains(&Action::RelayJoin {
        rendezvous: trio_addr(R),
        nonce,
        peer: trio_addr(D)
    }));
    // The circuit never comes up: the downloader gives up after relay_timeout.
    t.advance(NatConfig::default().relay_timeout);
    assert!(t.actions[D].contains(&Action::Failed {
        conn: ConnId::new(8)
    }));
    assert_eq!(t.nodes[D].counters().failures, 1);
}

#[test]
fn a_relay_that_comes_up_is_recorded_as_relayed() {
    let mut t = Trio::new();
    t.connect(ConnId::new(9));
    t.advance(NatConfig::default().punch_timeout);
    t.now += Duration::from_millis(5);
    t.nodes[D].relay_ready(ConnId::new(9), t.now);
    let s: Vec<&Setup> = t.nodes[D].setups().collect();
    assert_eq!(s[0].strategy, Strategy::Relayed);
    assert_eq!(s[0].setup, Duration::from_millis(3005));
}

/// Connects `conn` and checks what the downloader did: a punch, or the relay at once.
fn connect_expecting(t: &mut Trio, conn: ConnId, punch: bool) {
    t.connect(conn);
    let punched = t.actions[D]
        .iter()
        .any(|a| matches!(a, Action::PunchConnect { conn: c, .. } if *c == conn));
    let relayed = t.actions[D]
        .iter()
        .any(|a| matches!(a, Action::RelayOpen { conn: c, .. } if *c == conn));
    assert_eq!((punched, relayed), (punch, !punch), "{:?}", t.actions[D]);
}

/// Issue 20: a port-restricted downloader and a symmetric provider (or the reverse) never
/// punched, and waited the 3 s punch timeout before the relay. The provider's REGISTER says
/// its ports vary, the rendezvous passes it on in INTRODUCED, and an unreachable downloader
/// relays at once.
#[test]
fn a_punch_to_a_provider_whose_ports_vary_is_skipped_by_an_unreachable_downloader() {
    let mut t = Trio::with_provider_ports_varying(true);
    t.downloader_unreachable();
    let conn = ConnId::new(11);
    connect_expecting(&mut t, conn, false);
    assert_eq!(t.nodes[R].counters().introductions, 1);
    assert_eq!(t.nodes[D].counters().punches_skipped, 1);
    t.now += Duration::from_millis(5);
    t.nodes[D].relay_ready(conn, t.now);
    let s: Vec<&Setup> = t.nodes[D].setups().collect();
    assert_eq!(s[0].strategy, Strategy::Relayed);
    assert_eq!(s[0].setup, Duration::from_millis(5), "no punch wait");
}

/// The same provider is punched by a downloader that may be reachable (its SYN can reach
/// our listener): untested, it tries.
#[test]
fn a_downloader_not_known_unreachable_still_punches_a_provider_whose_ports_vary() {
    let mut t = Trio::with_provider_ports_varying(true);
    let conn = ConnId::new(12);
    connect_expecting(&mut t, conn, true);
    assert_eq!(t.nodes[D].counters().punches_skipped, 0);
}

/// A provider behind our own router (its public IP is ours) is punched only briefly: the
/// punch needs the router to hairpin (the office lab's router, like most, does not).
#[test]
fn a_provider_behind_our_own_router_gets_a_short_punch() {
    let mut t = Trio::new();
    let conn = ConnId::new(15);
    let ours = SocketAddr::new(trio_addr(P).ip(), 5555);
    let now = t.now;
    t.nodes[D].connect_via(now, conn, trio_addr(P), id(102), trio_addr(R), Some(ours));
    t.deliver();
    assert!(t.actions[D]
        .iter()
        .any(|a| matches!(a, Action::PunchConnect { .. })));
    let wait = NatConfig::default().same_router_punch_timeout;
    assert_eq!(t.nodes[D].poll_timeout(), Some(now + wait));
    t.advance(wait);
    assert!(t.actions[D]
        .iter()
        .any(|a| matches!(a, Action::RelayOpen { conn: c, .. } if *c == conn)));
}

/// An unreachable downloader behind a symmetric NAT relays at once, without asking for an
/// introduction; with ports kept on both sides an unreachable downloader punches.
#[test]
fn an_unreachable_downloader_whose_ports_vary_relays_without_an_introduction() {
    let mut t = Trio::new();
    t.downloader_unreachable();
    t.nodes[D].set_ports_vary(true);
    let conn = ConnId::new(13);
    connect_expecting(&mut t, conn, false);
    assert_eq!(t.nodes[R].counters().introductions, 0);

    let mut t = Trio::new();
    t.downloader_unreachable();
    let conn = ConnId::new(14);
    connect_expecting(&mut t, conn, true);
}

#[test]
fn an_unanswered_or_refused_introduction_fails_the_connection() {
    // No answer at all: the rendezvous is gone.
    let mut n = nat(NatConfig::default());
    let t0 = Instant::now();
    n.connect_via(
        t0,
        ConnId::new(1),
        addr(60, 4001),
        id(60),
        addr(61, 4001),
        None,
    );
    let out = sends(&drain(&mut n));
    assert!(matches!(out[0].2, Message::Introduce { target, port: WIRE_PORT } if target == id(60)));
    n.handle_timeout(t0 + NatConfig::default().introduce_timeout);
    assert_eq!(
        drain(&mut n),
        [Action::Failed {
            conn: ConnId::new(1)
        }]
    );
    // ERROR UNKNOWN_PEER: the provider left the rendezvous.
    n.connect_via(
        t0,
        ConnId::new(2),
        addr(60, 4001),
        id(60),
        addr(61, 4001),
        None,
    );
    let txid = sends(&drain(&mut n))[0].1;
    let err = Message::Error {
        code: error_code::UNKNOWN_PEER,
        text: "no such client here".into(),
    };
    n.handle_datagram(t0, addr(61, 4001), dg(id(61), txid, err));
    assert_eq!(
        drain(&mut n),
        [Action::Failed {
            conn: ConnId::new(2)
        }]
    );
    // INTRODUCED from another address than the rendezvous is not believed.
    n.connect_via(
        t0,
        ConnId::new(3),
        addr(60, 4001),
        id(60),
        addr(61, 4001),
        None,
    );
    let txid = sends(&drain(&mut n))[0].1;
    let fake = Message::Introduced {
        addr: addr(66, 4001),
        port: 4001,
    };
    n.handle_datagram(t0, addr(66, 4001), dg(id(66), txid, fake));
    assert!(drain(&mut n).is_empty());
    assert!(n.is_attempting(ConnId::new(3)));
}

#[test]
fn a_call_from_anyone_but_our_rendezvous_is_ignored() {
    let mut n = nat(NatConfig::default());
    let call = Message::Call {
        mode: call_mode::PUNCH,
        nonce: 0,
        peer: id(70),
        addr: addr(70, 4001),
        port: 4001,
    };
    n.handle_datagram(Instant::now(), addr(71, 4001), dg(id(71), 1, call));
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.counters().unexpected, 1);
}

// ----- NAT-PMP against a fake gateway --------------------------------------------------

const GW_EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 27);

/// A gateway that answers NAT-PMP requests the way RFC 6886 says (and miniupnpd does).
struct Gateway {
    /// Epoch at `booted`.
    booted: Instant,
    result: u16,
    /// The external port it grants instead of the suggested one, if any.
    other_port: Option<u16>,
    /// Longest lifetime it grants.
    max_lifetime: u32,
}

impl Gateway {
    fn new(now: Instant) -> Gateway {
        Gateway {
            booted: now,
            result: 0,
            other_port: None,
            max_lifetime: 3600,
        }
    }

    fn answer(&self, now: Instant, req: &[u8]) -> Vec<u8> {
        let epoch = u32::try_from(now.duration_since(self.booted).as_secs()).unwrap_or(0);
        let body = match req {
            [0, 0] => Body::ExternalAddress(GW_EXTERNAL),
            [0, op @ (1 | 2), 0, 0, i0, i1, e0, e1, l0, l1, l2, l3] => {
                let proto = if *op == 1 { Proto::Udp } else { Proto::Tcp };
                let internal = u16::from_be_bytes([*i0, *i1]);
                let asked = u32::from_be_bytes([*l0, *l1, *l2, *l3]);
                let (external, lifetime) = if asked == 0 {
                    (0, 0)
                } else {
                    let suggested = u16::from_be_bytes([*e0, *e1]);
                    (
                        self.other_port.unwrap_or(suggested),
                        asked.min(self.max_lifetime),
                    )
                };
                Body::Map {
                    proto,
                    internal,
                    external,
                    lifetime,
                }
            }
            other => panic!("not a NAT-PMP request: {other:02x?}"),
        };
        Response {
            result: self.result,
            epoch,
            body,
        }
        .encode()
    }
}

fn pmp_client(lifetime: u64) -> PmpClient {
    PmpClient::new(PmpConfig {
        port: WIRE_PORT,
        lifetime: Duration::from_secs(lifetime),
        ..PmpConfig::default()
    })
}

/// Answers every request the client sends until it has nothing in flight; returns the
/// requests seen.
fn converse(c: &mut PmpClient, gw: &Gateway, now: Instant) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    while let Some(req) = c.poll_transmit() {
        let resp = gw.answer(now, &req);
        seen.push(req);
        c.handle_datagram(now, &resp).expect("a valid response");
        assert!(seen.len() < 20, "the client keeps asking");
    }
    seen
}

fn events(c: &mut PmpClient) -> Vec<PmpEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn pmp_maps_udp_and_tcp_and_renews_at_half_life() {
    let t0 = Instant::now();
    let mut gw = Gateway::new(t0);
    gw.max_lifetime = 600;
    let mut c = pmp_client(7200);
    c.start(t0);
    let seen = converse(&mut c, &gw, t0);
    assert_eq!(
        seen,
        [
            vec![0, 0],
            vec![0, 1, 0, 0, 0x0f, 0xa1, 0x0f, 0xa1, 0, 0, 0x1c, 0x20],
            vec![0, 2, 0, 0, 0x0f, 0xa1, 0x0f, 0xa1, 0, 0, 0x1c, 0x20],
        ],
        "address, then UDP 4001 -> 4001 for 7200 s, then TCP"
    );
    assert_eq!(
        events(&mut c),
        [PmpEvent::Mapped {
            external: GW_EXTERNAL,
            port: WIRE_PORT,
            lifetime: Duration::from_secs(600)
        }],
        "the gateway granted 600 s"
    );
    assert_eq!(c.state(), PmpState::Mapped);
    let renew = t0 + Duration::from_secs(300);
    assert_eq!(c.poll_timeout(), Some(renew));
    c.handle_timeout(renew);
    let seen = converse(&mut c, &gw, renew);
    assert_eq!(seen.len(), 2, "both mappings renewed");
    assert!(events(&mut c).is_empty(), "a renewal changes nothing");
    assert_eq!(c.counters().renewals, 1);
    assert_eq!(c.poll_timeout(), Some(renew + Duration::from_secs(300)));
}

#[test]
fn pmp_retransmits_from_250_ms_doubling_nine_times_then_gives_up() {
    let t0 = Instant::now();
    let mut c = pmp_client(7200);
    c.start(t0);
    let mut sent_at = Vec::new();
    let mut now = t0;
    loop {
        while c.poll_transmit().is_some() {
            sent_at.push(now - t0);
        }
        let evs = events(&mut c);
        if !evs.is_empty() {
            assert!(
                matches!(&evs[..], [PmpEvent::Unavailable { reason }] if reason.contains("no answer"))
            );
            break;
        }
        now = c.poll_timeout().expect("a retransmission is due");
        c.handle_timeout(now);
    }
    let ms: Vec<u128> = sent_at.iter().map(Duration::as_millis).collect();
    assert_eq!(
        ms,
        [0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750],
        "250 ms, doubling, 9 tries"
    );
    assert_eq!(now - t0, Duration::from_millis(127_750));
    assert_eq!(c.state(), PmpState::Unavailable);
    // Asked again later.
    let retry = now + PmpConfig::default().retry_after;
    assert_eq!(c.poll_timeout(), Some(retry));
    c.handle_timeout(retry);
    assert_eq!(c.poll_transmit(), Some(vec![0, 0]));
}

#[test]
fn pmp_gives_up_at_once_without_a_server_or_when_refused() {
    let t0 = Instant::now();
    let mut c = pmp_client(7200);
    c.start(t0);
    let _ = c.poll_transmit();
    c.handle_unreachable(t0);
    assert!(matches!(
        &events(&mut c)[..],
        [PmpEvent::Unavailable { .. }]
    ));
    assert_eq!(c.state(), PmpState::Unavailable);

    let mut gw = Gateway::new(t0);
    gw.result = pmp::result_code::NOT_AUTHORIZED;
    let mut c = pmp_client(7200);
    c.start(t0);
    converse(&mut c, &gw, t0);
    let evs = events(&mut c);
    assert!(
        matches!(&evs[..], [PmpEvent::Unavailable { reason }] if reason.contains("not authorized")),
        "{evs:?}"
    );
    assert!(!c.shutdown(t0), "nothing was granted: nothing to remove");
    assert!(c.is_done());
}

#[test]
fn pmp_removes_a_mapping_to_another_port() {
    let t0 = Instant::now();
    let mut gw = Gateway::new(t0);
    gw.other_port = Some(40_001);
    let mut c = pmp_client(7200);
    c.start(t0);
    let seen = converse(&mut c, &gw, t0);
    assert_eq!(
        seen.last().map(|r| r.as_slice()),
        Some(&[0u8, 1, 0, 0, 0x0f, 0xa1, 0, 0, 0, 0, 0, 0][..]),
        "the UDP mapping to 40001 is removed: {seen:?}"
    );
    let evs = events(&mut c);
    assert!(
        matches!(&evs[..], [PmpEvent::Unavailable { reason }] if reason.contains("40001")),
        "{evs:?}"
    );
}

#[test]
fn pmp_shutdown_removes_both_mappings() {
    let t0 = Instant::now();
    let gw = Gateway::new(t0);
    let mut c = pmp_client(10);
    c.start(t0);
    converse(&mut c, &gw, t0);
    events(&mut c);
    let t1 = t0 + Duration::from_secs(1);
    assert!(c.shutdown(t1));
    assert_eq!(c.state(), PmpState::Removing);
    let seen = converse(&mut c, &gw, t1);
    assert_eq!(
        seen,
        [
            vec![0, 1, 0, 0, 0x0f, 0xa1, 0, 0, 0, 0, 0, 0],
            vec![0, 2, 0, 0, 0x0f, 0xa1, 0, 0, 0, 0, 0, 0],
        ]
    );
    assert_eq!(events(&mut c), [PmpEvent::Removed]);
    assert!(c.is_done());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn pmp_shutdown_is_immediate_when_the_gateway_never_answered() {
    let t0 = Instant::now();
    let mut c = pmp_client(7200);
    c.start(t0);
    assert_eq!(c.poll_transmit(), Some(vec![0, 0]));
    assert!(!c.shutdown(t0 + Duration::from_millis(100)));
    assert!(c.is_done());
    assert_eq!(c.poll_transmit(), None);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn pmp_shutdown_gives_up_on_a_silent_gateway() {
    let t0 = Instant::now();
    let gw = Gateway::new(t0);
    let mut c = pmp_client(7200);
    c.start(t0);
    converse(&mut c, &gw, t0);
    assert!(c.shutdown(t0));
    while !c.is_done() {
        while c.poll_transmit().is_some() {}
        let now = c.poll_timeout().expect("a retransmission");
        c.handle_timeout(now);
    }
    assert!(events(&mut c).ends_with(&[PmpEvent::Removed]));
}

#[test]
fn pmp_renews_at_once_when_the_gateway_epoch_goes_back() {
    let t0 = Instant::now();
    let mut gw = Gateway::new(t0 - Duration::from_secs(1000));
    let mut c = pmp_client(7200);
    c.start(t0);
    converse(&mut c, &gw, t0);
    events(&mut c);
    // Every 10 minutes the client checks the gateway's epoch; nothing else happens.
    let t1 = t0 + PmpConfig::default().retry_after;
    assert_eq!(c.poll_timeout(), Some(t1));
    c.handle_timeout(t1);
    assert_eq!(converse(&mut c, &gw, t1), [vec![0u8, 0]]);
    // The gateway reboots: its epoch restarts, far below what 10 more minutes should add.
    let t2 = t1 + PmpConfig::default().retry_after;
    gw.booted = t2 - Duration::from_secs(30);
    c.handle_timeout(t2);
    let seen = converse(&mut c, &gw, t2);
    assert_eq!(
        seen.len(),
        3,
        "the check, then both mappings again: {seen:?}"
    );
    assert_eq!(seen[0], [0u8, 0]);
    assert!(events(&mut c).is_empty(), "still mapped throughout");
    assert_eq!(c.state(), PmpState::Mapped);
}

#[test]
fn pmp_ignores_what_answers_nothing() {
    let t0 = Instant::now();
    let gw = Gateway::new(t0);
    let mut c = pmp_client(7200);
    // Before anything was asked.
    let stray = gw.answer(t0, &[0, 0]);
    assert_eq!(c.handle_datagram(t0, &stray), Ok(()));
    c.start(t0);
    let _ = c.poll_transmit();
    // A TCP answer while the address request is in flight.
    let wrong = gw.answer(t0, &[0, 2, 0, 0, 0x0f, 0xa1, 0x0f, 0xa1, 0, 0, 0, 10]);
    assert_eq!(c.handle_datagram(t0, &wrong), Ok(()));
    // Garbage.
    assert!(c.handle_datagram(t0, &[1, 2, 3]).is_err());
    assert_eq!(c.counters().ignored, 3);
    assert_eq!(c.state(), PmpState::Mapping);
    assert!(events(&mut c).is_empty());
}
