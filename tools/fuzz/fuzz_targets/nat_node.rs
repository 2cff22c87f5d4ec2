//! The NAT traversal layer (src/nat/mod.rs): the DHT hands it every DIALBACK, REGISTER,
//! INTRODUCE, CALL and their answers from the network (`Nat::handle_datagram`). A script
//! chosen by the fuzzer sends decoded datagrams from a handful of addresses, answers to
//! the layer's own requests (the fuzzer's datagram with the request's txid, from where it
//! went), dial-backs arriving, time passing, and the node's own commands (reachability
//! checks, what the DHT learnt of our NAT's ports, connections through a rendezvous, relays,
//! and their outcomes).
//! Invariants: never a panic; what it sends is a valid datagram that fits in MAX_DATAGRAM;
//! registered clients stay within `max_clients`.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peershare::conn::ConnId;
use peershare::id::Id;
use peershare::nat::{Action, Nat, NatConfig};
use peershare::proto::dht::{Contact, Datagram, Message, MAX_DATAGRAM};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

use peershare_fuzz::Script;

/// An ID of one repeated script byte (few IDs, so the layer sees the same ones again).
fn id(s: &mut Script<'_>) -> Id {
    Id([s.u8(); 32])
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let cfg = NatConfig::default();
    let max_clients = cfg.max_clients;
    let mut nat = Nat::new(4001, cfg, 7);
    let mut now = Instant::now();
    // The layer's last request (txid, where it went) and the last dial-back nonce it asked for.
    let mut last_sent: Option<(u64, SocketAddr)> = None;
    let mut last_nonce = 0u64;
    let mut conn = 0u64;
    while !s.is_empty() {
        match s.u8() % 10 {
            0 => {
                let from = s.peer();
                if let Ok(dg) = Datagram::decode(&s.datagram()) {
                    nat.handle_datagram(now, from, dg);
                }
            }
            1 => {
                let mut bytes = s.datagram();
                if let (Some((txid, to)), Some(t)) = (last_sent, bytes.get_mut(5..13)) {
                    t.copy_from_slice(&txid.to_be_bytes());
                    if let Ok(dg) = Datagram::decode(&bytes) {
                        nat.handle_datagram(now, to, dg);
                    }
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(s.u8()) * 100);
                nat.handle_timeout(now);
            }
            3 => {
                if let Some(t) = nat.poll_timeout() {
                    now = now.max(t);
                }
                nat.handle_timeout(now);
            }
            4 => {
                let n = s.u8() % 4;
                let peers = (0..n)
                    .map(|_| Contact {
                        id: id(&mut s),
                        addr: s.peer(),
                    })
                    .collect();
                nat.external_address(now, peers);
            }
            5 => match s.u8() % 4 {
                0 | 1 => nat.set_mapped(now, s.u8() % 2 == 0),
                // What the DHT learnt of our NAT's ports (nat.md section 3).
                _ => nat.set_ports_vary(s.u8() % 2 == 0),
            },
            6 => {
                let nonce = if s.u8() % 2 == 0 { last_nonce } else { s.u64() };
                let _ = nat.probe_received(now, nonce);
            }
            7 => {
                conn += 1;
                let (provider, node, rendezvous) = (s.peer(), id(&mut s), s.peer());
                let ours = (s.u8() % 2 == 0).then(|| "192.0.2.99:4001".parse().expect("addr"));
                nat.connect_via(now, ConnId::new(conn), provider, node, rendezvous, ours);
            }
            8 => {
                let (node, nonce, opener) = (id(&mut s), s.u64(), s.peer());
                let _ = nat.relay_open(now, &node, nonce, opener);
            }
            _ => {
                let c = ConnId::new(u64::from(s.u8() % 4) + conn.saturating_sub(3));
                match s.u8() % 6 {
                    0 => nat.punch_connected(c, now),
                    1 => nat.relay_ready(c, now),
                    2 => nat.attempt_failed(c),
                    3 => nat.forget(c),
                    4 => nat.circuit_closed(),
                    _ => nat.dialback_done(),
                }
            }
        }
        while let Some(a) = nat.poll_action() {
            if let Action::Send {
                to,
                txid,
                msg,
                flags,
            } = a
            {
                if let Message::Dialback { nonce, .. } = msg {
                    last_nonce = nonce;
                }
                let dg = Datagram {
                    flags,
                    txid,
                    sender: Id([0x11; 32]),
                    msg,
                };
                let bytes = dg.encode();
                assert!(
                    bytes.len() <= MAX_DATAGRAM,
                    "a NAT datagram over MAX_DATAGRAM"
                );
                assert_eq!(
                    Datagram::decode(&bytes),
                    Ok(dg),
                    "the NAT layer sent garbage"
                );
                last_sent = Some((txid, to));
            }
        }
        assert!(
            nat.clients() <= max_clients,
            "more clients than max_clients"
        );
    }
});
