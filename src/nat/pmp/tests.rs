//! PCP (and its fall back to NAT-PMP) against fake gateways: the client speaks PCP first,
//! maps both ports with MAP, learns the external address from the MAP answers; a NAT-PMP
//! server's "unsupported version" makes it ask again in NAT-PMP.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::pcp;
use super::*;

const PORT: u16 = 4001;
const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 58);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 27);
const NONCE: [u8; 12] = [9; 12];

fn client() -> PmpClient {
    PmpClient::new(PmpConfig {
        port: PORT,
        lifetime: Duration::from_secs(7200),
        pcp: Some((ME, NONCE)),
        ..PmpConfig::default()
    })
}

/// A PCP server as miniupnpd answers (epoch 1; lifetimes capped at 3600 s).
fn pcp_answer(req: &[u8]) -> Vec<u8> {
    assert_eq!(req.first(), Some(&2), "not PCP: {req:02x?}");
    assert_eq!(&req[8..24], &ME.to_ipv6_mapped().octets(), "client address");
    let op = req[1];
    let mut v = vec![2, 0x80 | op, 0, 0];
    let asked = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
    v.extend_from_slice(&asked.min(3600).to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&[0; 12]);
    if op == pcp::OP_MAP {
        let mut m = req[24..60].to_vec();
        let ext = if asked == 0 {
            Ipv4Addr::UNSPECIFIED
        } else {
            EXTERNAL
        };
        m[20..36].copy_from_slice(&ext.to_ipv6_mapped().octets());
        v.extend_from_slice(&m);
    }
    v
}

/// A NAT-PMP-only server: version 2 gets "unsupported version"; version 0 is served.
fn pmp_only_answer(req: &[u8]) -> Vec<u8> {
    match req {
        [2, op, ..] => {
            let mut v = vec![0, 0x80 | (op & 0x7f), 0, 1];
            v.extend_from_slice(&1u32.to_be_bytes());
            v
        }
        [0, 0] => Response {
            result: 0,
            epoch: 1,
            body: Body::ExternalAddress(EXTERNAL),
        }
        .encode(),
        [0, op, 0, 0, i0, i1, e0, e1, l0, l1, l2, l3] => Response {
            result: 0,
            epoch: 1,
            body: Body::Map {
                proto: if *op == 1 { Proto::Udp } else { Proto::Tcp },
                internal: u16::from_be_bytes([*i0, *i1]),
                external: u16::from_be_bytes([*e0, *e1]),
                lifetime: u32::from_be_bytes([*l0, *l1, *l2, *l3]).min(3600),
            },
        }
        .encode(),
        other => panic!("not a request: {other:02x?}"),
    }
}

fn converse(c: &mut PmpClient, now: Instant, gw: fn(&[u8]) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    while let Some(req) = c.poll_transmit() {
        let resp = gw(&req);
        seen.push(req);
        c.handle_datagram(now, &resp).expect("a valid answer");
        assert!(seen.len() < 20, "the client keeps asking");
    }
    seen
}

#[test]
fn pcp_maps_both_ports_and_learns_the_address_from_map() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let seen = converse(&mut c, t0, pcp_answer);
    // ANNOUNCE (the epoch), then MAP UDP and MAP TCP.
    let ops: Vec<(u8, u8)> = seen
        .iter()
        .map(|r| (r[1], r.get(36).copied().unwrap_or(0)))
        .collect();
    assert_eq!(ops, [(0, 0), (1, 17), (1, 6)]);
    assert_eq!(c.version(), Version::Pcp);
    assert_eq!(c.state(), PmpState::Mapped);
    assert_eq!(
        std::iter::from_fn(|| c.poll_event()).collect::<Vec<_>>(),
        [PmpEvent::Mapped {
            external: EXTERNAL,
            port: PORT,
            lifetime: Duration::from_secs(3600)
        }]
    );
    // Renewed at half-life, again with PCP; the address is kept.
    let renew = t0 + Duration::from_secs(1800);
    c.handle_timeout(renew);
    assert_eq!(converse(&mut c, renew, pcp_answer).len(), 2);
    assert_eq!(c.counters().renewals, 1);
    assert_eq!(c.external(), Some(EXTERNAL));
    // Removal: MAP with lifetime 0.
    assert!(c.shutdown(renew));
    let seen = converse(&mut c, renew, pcp_answer);
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r[4..8] == [0, 0, 0, 0]));
    assert!(c.is_done());
}

#[test]
fn a_nat_pmp_server_makes_the_client_fall_back() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let seen = converse(&mut c, t0, pmp_only_answer);
    assert_eq!(seen[0][0], 2, "PCP first");
    assert_eq!(seen[1], [0, 0], "then the same request in NAT-PMP");
    assert!(
        seen[1..].iter().all(|r| r[0] == 0),
        "and NAT-PMP from then on"
    );
    assert_eq!(c.version(), Version::NatPmp);
    assert_eq!(c.state(), PmpState::Mapped);
    assert_eq!(c.external(), Some(EXTERNAL));
}

#[test]
fn hostile_pcp_answers_are_ignored_and_counted() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let req = c.poll_transmit().expect("ANNOUNCE");
    let ok = pcp_answer(&req);
    // Cut short, a request echoed back, garbage: typed errors, nothing changes.
    assert!(c.handle_datagram(t0, &ok[..10]).is_err());
    assert!(c.handle_datagram(t0, &req).is_err());
    assert!(c.handle_datagram(t0, &[0xff; 60]).is_err());
    assert_eq!(c.counters().ignored, 3);
    assert_eq!(c.state(), PmpState::Mapping);
    // A MAP answer with another nonce is not ours.
    c.handle_datagram(t0, &ok).expect("ANNOUNCE answered");
    let map = c.poll_transmit().expect("MAP UDP");
    let mut forged = pcp_answer(&map);
    forged[24] ^= 0xff;
    assert_eq!(
        c.handle_datagram(t0, &forged),
        Err(AnswerError::Pcp(pcp::PcpError::WrongNonce))
    );
    assert_eq!(c.state(), PmpState::Mapping);
}
