//! The DHT state machine (src/dht/) fed datagrams from the network: `Dht::handle_datagram`
//! is where every UDP payload from any host goes after the reactor reads it. A script
//! chosen by the fuzzer sends raw datagrams from a handful of addresses, answers to the
//! node's own requests (the fuzzer's bytes with the request's txid, from the address it
//! was sent to, so they are taken as answers), lets time pass, and starts lookups.
//! Invariants: never a panic; every datagram the node sends decodes and fits in
//! MAX_DATAGRAM; its routing table, provider store, requests and queries stay bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peershare::dht::{Dht, DhtConfig};
use peershare::id::Id;
use peershare::proto::dht::{Contact, Datagram, MAX_DATAGRAM};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

use peershare_fuzz::{peer, Script};

/// A full 32-byte ID from the script.
fn id(s: &mut Script<'_>) -> Id {
    let mut id = Id([0; 32]);
    let b = s.bytes(32);
    id.0[..b.len()].copy_from_slice(b);
    id
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let config = DhtConfig::default();
    let (k, max_records, max_queries) = (config.k, config.max_provider_records, config.max_queries);
    let mut now = Instant::now();
    let identity = peershare::identity::Identity::from_secret(&[0x11; 32]);
    let mut dht = Dht::new(identity, config, 1, now);
    dht.bootstrap_from(peer(0), now);
    // The node's recent requests: (txid, where they went).
    let mut sent: Vec<(u64, SocketAddr)> = Vec::new();
    while !s.is_empty() {
        match s.u8() % 7 {
            0 => {
                let from = peer(s.u8());
                let n = s.datagram_len();
                let d = s.bytes(n).to_vec();
                dht.handle_datagram(now, from, &d);
            }
            1 => {
                // An answer: the fuzzer's datagram with the txid of a request we sent.
                let pick = usize::from(s.u8());
                let n = s.datagram_len();
                let mut d = s.bytes(n).to_vec();
                if let Some(&(txid, to)) = sent.get(pick % sent.len().max(1)) {
                    if let Some(t) = d.get_mut(5..13) {
                        t.copy_from_slice(&txid.to_be_bytes());
                    }
                    dht.handle_datagram(now, to, &d);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(s.u8()) * 50);
                dht.handle_timeout(now);
            }
            3 => {
                if let Some(t) = dht.poll_timeout() {
                    now = now.max(t);
                }
                dht.handle_timeout(now);
            }
            4 => {
                let key = id(&mut s);
                let _ = match s.u8() % 3 {
                    0 => dht.find_node(key, now),
                    1 => dht.get_providers(key, now),
                    _ => dht.announce(key, 4001, now),
                };
            }
            5 => {
                let id = id(&mut s);
                let addr = peer(s.u8());
                dht.add_contact(Contact { id, addr }, now);
            }
            _ => dht.set_reachable(s.u8() % 2 == 0),
        }
        while let Some(t) = dht.poll_transmit() {
            assert!(
                t.payload.len() <= MAX_DATAGRAM,
                "a datagram over MAX_DATAGRAM"
            );
            let d = Datagram::decode(&t.payload).expect("the node sends only valid datagrams");
            if d.msg.is_request() {
                if sent.len() == 32 {
                    sent.remove(0);
                }
                sent.push((d.txid, t.dest));
            }
        }
        while dht.poll_event().is_some() {}
        assert!(
            dht.routing_table().len() <= 256 * k,
            "routing table over 256 * k"
        );
        assert!(
            dht.provider_records() <= max_records,
            "provider store over its limit"
        );
        assert!(
            dht.running_queries() <= max_queries,
            "more queries than max_queries"
        );
    }
});
