//! NAT-PMP (src/nat/pmp.rs): a gateway's responses (`Response::decode`, and PCP's
//! `pcp::decode`), the sans-IO
//! client driven by a fuzzer-chosen script of datagrams (raw, or well-formed answers to the
//! request in flight with fuzzer-chosen fields), timeouts, ICMP unreachable, start and
//! shutdown; and `default_gateway`, the parser of `/proc/net/route`.
//! Invariants: never a panic; a decoded response re-encodes to exactly its bytes; every
//! datagram the client sends is a well-formed request for our port; a client that is done
//! sends nothing more and wants no timeout.
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peershare::nat::pmp::{
    default_gateway, pcp, Body, PmpClient, PmpConfig, PmpState, Proto, Response,
};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

const PORT: u16 = 4001;

/// The fuzzer's script, read a byte at a time (zeros once it runs out).
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Checks a request the client sent and returns it (what a gateway would be answering).
fn check_request(d: &[u8]) -> Vec<u8> {
    match d {
        [0, 0] => {}
        [0, op, 0, 0, internal @ .., _, _, _, _, _, _] => {
            assert!(*op == 1 || *op == 2, "unknown opcode {op}");
            assert_eq!(internal, PORT.to_be_bytes(), "a mapping for another port");
        }
        _ => panic!("malformed request {d:02x?}"),
    }
    d.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = PmpClient::new(PmpConfig {
        port: PORT,
        ..PmpConfig::default()
    });
    let mut last_request: Option<Vec<u8>> = None;
    while !s.0.is_empty() {
        match s.u8() % 10 {
            0 => {
                let n = usize::from(s.u8() % 24);
                let d = s.bytes(n).to_vec();
                let _ = c.handle_datagram(now, &d);
            }
            1 => {
                // A gateway's well-formed answer to what was asked last.
                let Some(req) = &last_request else { continue };
                let result = u16::from(s.u8() % 8);
                let epoch = s.u32();
                let body = match req.get(1) {
                    Some(&op @ (1 | 2)) => Body::Map {
                        proto: if op == 1 { Proto::Udp } else { Proto::Tcp },
                        internal: PORT,
                        external: if s.u8() % 4 == 0 { s.u16() } else { PORT },
                        lifetime: s.u32(),
                    },
                    _ => Body::ExternalAddress(Ipv4Addr::from(s.u32())),
                };
                let r = Response {
                    result,
                    epoch,
                    body,
                };
                let bytes = r.encode();
                assert_eq!(Response::decode(&bytes), Ok(r));
                let _ = c.handle_datagram(now, &bytes);
            }
            2 => {
                if let Some(t) = c.poll_timeout() {
                    now = now.max(t);
                }
                c.handle_timeout(now);
            }
            3 => {
                now += Duration::from_millis(u64::from(s.u16()) * 100);
                c.handle_timeout(now);
            }
            4 => c.handle_unreachable(now),
            5 => {
                let _ = c.shutdown(now);
            }
            6 => c.start(now),
            7 => {
                let n = usize::from(s.u8() % 24);
                let d = s.bytes(n);
                if let Ok(r) = Response::decode(d) {
                    assert_eq!(r.encode(), d, "a response does not re-encode byte for byte");
                }
            }
            8 => {
                let n = usize::from(s.u8());
                let text = String::from_utf8_lossy(s.bytes(n)).into_owned();
                let _ = default_gateway(&text);
            }
            _ => {
                // A PCP answer (or anything) to a PCP client: typed error or an answer.
                let n = usize::from(s.u8() % 72);
                let d = s.bytes(n);
                let _ = pcp::decode(d, &[0; 12]);
            }
        }
        while let Some(d) = c.poll_transmit() {
            last_request = Some(check_request(&d));
        }
        while c.poll_event().is_some() {}
        if c.state() == PmpState::Done {
            assert!(
                c.poll_timeout().is_none(),
                "a finished client still wants a timeout"
            );
        }
    }
});
