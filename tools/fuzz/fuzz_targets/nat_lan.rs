//! LAN discovery (src/nat/lan/, protocol-spec/nat.md section 11): anyone on the link may send
//! anything to the group. The fuzzer's bytes are a script of datagrams (raw, or well-formed
//! with fuzzer-chosen fields) from fuzzer-chosen sources, timeouts and commands.
//! Invariants: never a panic; a decoded datagram re-encodes to exactly its bytes; the peer
//! table stays within its limits; everything the machine sends is a well-formed datagram of
//! our own ID.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peershare::id::Id;
use peershare::nat::lan::{Body, Datagram, Lan, LanConfig};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

const ME: Id = Id([7; 32]);

fuzz_target!(|data: &[u8]| {
    let cfg = LanConfig::default();
    let t0 = Instant::now();
    let mut now = t0;
    let mut lan = Lan::new(cfg.clone(), ME, 4001, now);
    lan.start(now);
    let mut s = data;
    let mut take = |n: usize| {
        let (a, b) = s.split_at(n.min(s.len()));
        s = b;
        a.to_vec()
    };
    loop {
        let op = take(1);
        let Some(&op) = op.first() else { break };
        let src = take(2);
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                192,
                168,
                src.first().copied().unwrap_or(0) % 4,
                src.get(1).copied().unwrap_or(0),
            )),
            50000,
        );
        match op % 6 {
            0 => {
                let n = usize::from(take(1).first().copied().unwrap_or(0) % 80);
                let d = take(n);
                if let Ok(x) = Datagram::decode(&d) {
                    assert_eq!(x.encode(), d, "a datagram does not re-encode byte for byte");
                }
                lan.handle_datagram(now, from, &d);
            }
            1 => {
                let f = take(4);
                let mut node = [0u8; 32];
                node[..f.len()].copy_from_slice(&f);
                let body = match f.first().copied().unwrap_or(0) % 4 {
                    0 => Body::Hello,
                    1 => Body::Announce,
                    2 => Body::Want(Id([1; 32])),
                    _ => Body::Have(Id([1; 32])),
                };
                let d = Datagram {
                    node: Id(node),
                    port: 4001,
                    body,
                };
                lan.handle_datagram(now, from, &d.encode());
            }
            2 => {
                if let Some(t) = lan.poll_timeout() {
                    now = now.max(t);
                }
                lan.handle_timeout(now);
            }
            3 => {
                let ms = take(2);
                now += Duration::from_millis(
                    u64::from(u16::from_be_bytes([
                        ms.first().copied().unwrap_or(0),
                        ms.get(1).copied().unwrap_or(0),
                    ])) * 100,
                );
                lan.handle_timeout(now);
            }
            4 => lan.want(Id([2; 32])),
            _ => lan.have(now, Id([2; 32]), from),
        }
        while let Some(t) = lan.poll_transmit() {
            let d = Datagram::decode(&t.bytes).expect("we send well-formed datagrams");
            assert_eq!(d.node, ME);
        }
        while lan.poll_event().is_some() {}
        assert!(lan.peers().count() <= cfg.max_peers);
    }
});
