//! PCP's datagrams (RFC 6887), the subset a PeerShare node speaks: ANNOUNCE (to read the
//! server's epoch) and MAP for an IPv4 port (spec: `protocol-spec/nat.md`, section 10).
//! Requests are encoded from the client's abstract [`Request`]s; responses are decoded
//! (total: a typed [`PcpError`] for any other input) into the same [`Response`] NAT-PMP's
//! decoder gives, so one state machine drives both versions.
//!
//! ```text
//! request header (24 bytes)            response header (24 bytes)
//! 0   1  version 2                     0   1  version 2
//! 1   1  R=0 | opcode (0 ANNOUNCE,     1   1  R=1 | opcode (0x80 | opcode)
//!        1 MAP)                        2   1  reserved
//! 2   2  reserved                      3   1  result code
//! 4   4  requested lifetime (s)        4   4  lifetime (s)
//! 8   16 client IP (IPv4-mapped)       8   4  epoch time (s)
//!                                      12  12 reserved
//! MAP body (36 bytes, request and response)
//! 0   12 mapping nonce
//! 12  1  protocol (6 TCP, 17 UDP)
//! 13  3  reserved
//! 16  2  internal port
//! 18  2  suggested (request) / assigned (response) external port
//! 20  16 suggested / assigned external IP (IPv4-mapped; ::ffff:0.0.0.0 = no preference)
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::codec::{Body, Proto, Request, Response};

/// PCP's version number.
pub const VERSION: u8 = 2;
/// The ANNOUNCE opcode.
pub const OP_ANNOUNCE: u8 = 0;
/// The MAP opcode.
pub const OP_MAP: u8 = 1;
/// Header size.
pub const HEADER_LEN: usize = 24;
/// MAP body size.
pub const MAP_LEN: usize = 36;

/// PCP result codes (RFC 6887, section 7.4), named for logs.
pub fn result_name(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure",
        8 => "no resources",
        9 => "unsupported protocol",
        10 => "user exceeded quota",
        11 => "cannot provide external",
        12 => "address mismatch",
        13 => "excessive remote peers",
        _ => "unknown result code",
    }
}

/// Why a datagram from the gateway is not a PCP response we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcpError {
    /// Shorter than the header or than the response its opcode needs.
    UnexpectedEnd {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        got: usize,
    },
    /// A NAT-PMP server's answer (version 0) to our version 2 request, with its result code:
    /// 1 (unsupported version) means "speak NAT-PMP" (RFC 6887, section 9).
    NatPmpAnswer(u16),
    /// Neither version 2 nor NAT-PMP's 0.
    UnsupportedVersion(u8),
    /// The R bit is clear: a request, not a response.
    NotAResponse(u8),
    /// A response opcode other than ANNOUNCE and MAP.
    UnknownOpcode(u8),
    /// A MAP response for a protocol other than UDP and TCP.
    UnknownProtocol(u8),
    /// A MAP response whose assigned address is not IPv4-mapped.
    NotIpv4(Ipv6Addr),
    /// A MAP response with another nonce: not an answer to us.
    WrongNonce,
    /// Bytes after the response (options are not used by this client).
    TrailingBytes(usize),
}

impl fmt::Display for PcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcpError::UnexpectedEnd { needed, got } => {
                write!(f, "PCP response cut short: {got} bytes, needs {needed}")
            }
            PcpError::NatPmpAnswer(r) => write!(f, "a NAT-PMP answer (result {r}) to PCP"),
            PcpError::UnsupportedVersion(v) => write!(f, "PCP version {v}, expected 2"),
            PcpError::NotAResponse(op) => write!(f, "PCP opcode {op:#04x} is a request"),
            PcpError::UnknownOpcode(op) => write!(f, "unknown PCP response opcode {op:#04x}"),
            PcpError::UnknownProtocol(p) => write!(f, "PCP MAP for protocol {p}"),
            PcpError::NotIpv4(a) => write!(f, "PCP MAP assigned {a}, not an IPv4 address"),
            PcpError::WrongNonce => write!(f, "PCP MAP answer with another nonce"),
            PcpError::TrailingBytes(n) => write!(f, "{n} bytes after the PCP response"),
        }
    }
}

impl std::error::Error for PcpError {}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Udp => 17,
        Proto::Tcp => 6,
    }
}

/// Encodes `req` as PCP from client address `client` with mapping nonce `nonce`: the
/// external address request becomes ANNOUNCE (its answer carries the epoch; the address
/// comes with every MAP answer), a mapping MAP.
pub fn encode(req: &Request, client: Ipv4Addr, nonce: &[u8; 12]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + MAP_LEN);
    let (op, lifetime) = match *req {
        Request::ExternalAddress => (OP_ANNOUNCE, 0),
        Request::Map { lifetime, .. } => (OP_MAP, lifetime),
    };
    v.extend_from_slice(&[VERSION, op, 0, 0]);
    v.extend_from_slice(&lifetime.to_be_bytes());
    v.extend_from_slice(&client.to_ipv6_mapped().octets());
    if let Request::Map {
        proto,
        internal,
        external,
        ..
    } = *req
    {
        v.extend_from_slice(nonce);
        v.extend_from_slice(&[proto_number(proto), 0, 0, 0]);
        v.extend_from_slice(&internal.to_be_bytes());
        v.extend_from_slice(&external.to_be_bytes());
        v.extend_from_slice(&Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    }
    v
}

/// A decoded PCP answer: the NAT-PMP-shaped response, and the external address a MAP answer
/// assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpAnswer {
    /// Result code widened to NAT-PMP's type; epoch; body (ANNOUNCE as the external address
    /// request's answer, with the address unspecified).
    pub response: Response,
    /// The external address a MAP answer assigned (none for ANNOUNCE).
    pub external: Option<Ipv4Addr>,
}

/// Decodes a PCP response to a client using `nonce`. Lengths are checked before every read.
pub fn decode(b: &[u8], nonce: &[u8; 12]) -> Result<PcpAnswer, PcpError> {
    let short = |needed| PcpError::UnexpectedEnd {
        needed,
        got: b.len(),
    };
    let (Some(&version), Some(&op)) = (b.first(), b.get(1)) else {
        return Err(short(2));
    };
    if version == 0 {
        // NAT-PMP: version, opcode, 16-bit result (RFC 6886, section 3.5).
        return match b.get(2..4) {
            Some(&[x, y]) => Err(PcpError::NatPmpAnswer(u16::from_be_bytes([x, y]))),
            _ => Err(short(4)),
        };
    }
    if version != VERSION {
        return Err(PcpError::UnsupportedVersion(version));
    }
    if op & 0x80 == 0 {
        return Err(PcpError::NotAResponse(op));
    }
    let needed = match op & 0x7f {
        OP_ANNOUNCE => HEADER_LEN,
        OP_MAP => HEADER_LEN + MAP_LEN,
        _ => return Err(PcpError::UnknownOpcode(op)),
    };
    if b.len() < needed {
        return Err(short(needed));
    }
    if b.len() > needed {
        return Err(PcpError::TrailingBytes(b.len() - needed));
    }
    let be32 = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let result = u16::from(b[3]);
    let lifetime = be32(4);
    let epoch = be32(8);
    if op & 0x7f == OP_ANNOUNCE {
        return Ok(PcpAnswer {
            response: Response {
                result,
                epoch,
                body: Body::ExternalAddress(Ipv4Addr::UNSPECIFIED),
            },
            external: None,
        });
    }
    let m = &b[HEADER_LEN..];
    if m[..12] != nonce[..] {
        return Err(PcpError::WrongNonce);
    }
    let proto = match m[12] {
        17 => Proto::Udp,
        6 => Proto::Tcp,
        p => return Err(PcpError::UnknownProtocol(p)),
    };
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&m[20..36]);
    let ip = Ipv6Addr::from(ip);
    let external = match ip.to_ipv4_mapped() {
        Some(a) => a,
        // A refusal may leave the address all zeros.
        None if result != 0 && ip.is_unspecified() => Ipv4Addr::UNSPECIFIED,
        None => return Err(PcpError::NotIpv4(ip)),
    };
    Ok(PcpAnswer {
        response: Response {
            result,
            epoch,
            body: Body::Map {
                proto,
                internal: be16(HEADER_LEN + 16),
                external: be16(HEADER_LEN + 18),
                lifetime,
            },
        },
        external: Some(external),
    })
}

#[cfg(test)]
mod pcp_tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).expect("hex")
    }

    const NONCE: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    // The examples of protocol-spec/nat.md, section 10; the answers are miniupnpd 2.3.1's in
    // the lab, byte for byte (it grants at least 120 s).
    const MAP_UDP: &str = "02 01 0000 0000003c 00000000000000000000ffffc000023a \
        000102030405060708090a0b 11 000000 0fa1 0fa1 00000000000000000000ffff00000000";
    const MAP_UDP_OK: &str = "02 81 00 00 00000078 00000001 000000000000000000000000 \
        000102030405060708090a0b 11 000000 0fa1 0fa1 00000000000000000000ffffcb00711b";
    const ANNOUNCE: &str = "02 00 0000 00000000 00000000000000000000ffffc000023a";
    const ANNOUNCE_OK: &str = "02 80 00 00 00000000 00000001 000000000000000000000000";

    #[test]
    fn spec_examples_encode_and_decode() {
        let me = Ipv4Addr::new(192, 0, 2, 58);
        let map = Request::Map {
            proto: Proto::Udp,
            internal: 4001,
            external: 4001,
            lifetime: 60,
        };
        assert_eq!(encode(&map, me, &NONCE), hex(MAP_UDP));
        assert_eq!(encode(&Request::ExternalAddress, me, &NONCE), hex(ANNOUNCE));
        let ok = decode(&hex(MAP_UDP_OK), &NONCE).expect("valid");
        assert_eq!(
            ok,
            PcpAnswer {
                response: Response {
                    result: 0,
                    epoch: 1,
                    body: Body::Map {
                        proto: Proto::Udp,
                        internal: 4001,
                        external: 4001,
                        lifetime: 120
                    }
                },
                external: Some(Ipv4Addr::new(203, 0, 113, 27)),
            }
        );
        let a = decode(&hex(ANNOUNCE_OK), &NONCE).expect("valid");
        assert_eq!(a.response.epoch, 1);
        assert_eq!(a.external, None);
    }

    #[test]
    fn bad_answers_get_typed_errors() {
        let e = |s: &str| decode(&hex(s), &NONCE).expect_err("invalid");
        assert_eq!(e(""), PcpError::UnexpectedEnd { needed: 2, got: 0 });
        // A NAT-PMP server's "unsupported version".
        assert_eq!(e("00 81 0001 00000005"), PcpError::NatPmpAnswer(1));
        assert_eq!(e("00 81"), PcpError::UnexpectedEnd { needed: 4, got: 2 });
        assert_eq!(e("01 81"), PcpError::UnsupportedVersion(1));
        assert_eq!(e(ANNOUNCE), PcpError::NotAResponse(0));
        assert_eq!(e("02 83"), PcpError::UnknownOpcode(0x83));
        assert_eq!(
            e(&ANNOUNCE_OK[..20]),
            PcpError::UnexpectedEnd { needed: 24, got: 8 }
        );
        assert_eq!(e(&format!("{ANNOUNCE_OK} 00")), PcpError::TrailingBytes(1));
        let other_nonce =
            MAP_UDP_OK.replace("000102030405060708090a0b", "ff0102030405060708090a0b");
        assert_eq!(e(&other_nonce), PcpError::WrongNonce);
        let icmp = MAP_UDP_OK.replace(" 11 000000", " 01 000000");
        assert_eq!(e(&icmp), PcpError::UnknownProtocol(1));
        let v6 = MAP_UDP_OK.replace(
            "00000000000000000000ffffcb00711b",
            "20010db8000000000000000000000001",
        );
        assert!(matches!(e(&v6), PcpError::NotIpv4(_)));
    }

    proptest::proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = decode(&bytes, &NONCE);
        }
    }
}
