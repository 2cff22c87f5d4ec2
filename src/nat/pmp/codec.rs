//! NAT-PMP's datagrams (RFC 6886, section 3): [`Request`]s encoded, [`Response`]s decoded
//! (total: a typed [`DecodeError`] for any other input), and the default gateway found in
//! the text of `/proc/net/route`. Tests at the bottom: the examples of
//! `protocol-spec/nat.md`, section 10.

use std::fmt;
use std::net::Ipv4Addr;

/// The UDP port a NAT-PMP gateway listens on.
pub const SERVER_PORT: u16 = 5351;

/// NAT-PMP's version number (PCP, its successor, is version 2).
pub const VERSION: u8 = 0;

/// Request opcodes; a response has the request's opcode plus 128.
pub mod opcode {
    /// What is the gateway's external IPv4 address?
    pub const EXTERNAL_ADDRESS: u8 = 0;
    /// Map a UDP port.
    pub const MAP_UDP: u8 = 1;
    /// Map a TCP port.
    pub const MAP_TCP: u8 = 2;
    /// Added to a request's opcode in its response.
    pub const RESPONSE: u8 = 128;
}

/// Result codes (RFC 6886, section 3.5).
pub mod result_code {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: u16 = 1;
    /// Not authorized or refused (the gateway has NAT-PMP disabled, or refuses this port).
    pub const NOT_AUTHORIZED: u16 = 2;
    /// Network failure (the gateway has no external address yet).
    pub const NETWORK_FAILURE: u16 = 3;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u16 = 4;
    /// Unsupported opcode.
    pub const UNSUPPORTED_OPCODE: u16 = 5;

    /// A short name for logs and status pages.
    pub fn name(code: u16) -> &'static str {
        match code {
            SUCCESS => "success",
            UNSUPPORTED_VERSION => "unsupported version",
            NOT_AUTHORIZED => "not authorized or refused",
            NETWORK_FAILURE => "network failure",
            OUT_OF_RESOURCES => "out of resources",
            UNSUPPORTED_OPCODE => "unsupported opcode",
            _ => "unknown result code",
        }
    }
}

/// A transport protocol of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// UDP (the DHT).
    Udp,
    /// TCP (the wire protocol).
    Tcp,
}

impl Proto {
    pub(super) fn opcode(self) -> u8 {
        match self {
            Proto::Udp => opcode::MAP_UDP,
            Proto::Tcp => opcode::MAP_TCP,
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Proto::Udp => 0,
            Proto::Tcp => 1,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// A request from the client to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `00 00`: what is your external address?
    ExternalAddress,
    /// Map (or, with `lifetime` 0 and `external` 0, remove) a port.
    Map {
        /// Which protocol.
        proto: Proto,
        /// The port on this host.
        internal: u16,
        /// The external port we would like (a hint).
        external: u16,
        /// Requested lifetime in seconds; 0 removes the mapping.
        lifetime: u32,
    },
}

impl Request {
    /// The request's bytes: 2 for the external address, 12 for a mapping.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Request::ExternalAddress => vec![VERSION, opcode::EXTERNAL_ADDRESS],
            Request::Map {
                proto,
                internal,
                external,
                lifetime,
            } => {
                let mut v = Vec::with_capacity(12);
                v.extend_from_slice(&[VERSION, proto.opcode(), 0, 0]);
                v.extend_from_slice(&internal.to_be_bytes());
                v.extend_from_slice(&external.to_be_bytes());
                v.extend_from_slice(&lifetime.to_be_bytes());
                v
            }
        }
    }

    pub(super) fn opcode(&self) -> u8 {
        match self {
            Request::ExternalAddress => opcode::EXTERNAL_ADDRESS,
            Request::Map { proto, .. } => proto.opcode(),
        }
    }
}

/// What a response carries after its common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The gateway's external IPv4 address (zero when the result is not success).
    ExternalAddress(Ipv4Addr),
    /// A mapping (or its removal).
    Map {
        /// UDP or TCP.
        proto: Proto,
        /// The port on this host the mapping is for.
        internal: u16,
        /// The external port granted (0 for a removal).
        external: u16,
        /// Granted lifetime in seconds (0 for a removal).
        lifetime: u32,
    },
}

/// A response from the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Result code ([`result_code`]).
    pub result: u16,
    /// Seconds since the gateway's mapping table was (re)initialised.
    pub epoch: u32,
    /// The rest.
    pub body: Body,
}

/// Why a datagram from the gateway is not a NAT-PMP response we accept. Every input gets
/// one of these or a [`Response`]; nothing panics and nothing is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header or than the response its opcode announces.
    UnexpectedEnd {
        /// Bytes that response needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// Not version 0 (a PCP gateway answers version 2).
    UnsupportedVersion(u8),
    /// The opcode is a request's (below 128): not a response.
    NotAResponse(u8),
    /// A response opcode other than 128, 129, 130.
    UnknownOpcode(u8),
    /// Bytes after the response.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd { needed, got } => {
                write!(f, "NAT-PMP response cut short: {got} bytes, needs {needed}")
            }
            DecodeError::UnsupportedVersion(v) => write!(f, "NAT-PMP version {v}, expected 0"),
            DecodeError::NotAResponse(op) => write!(f, "opcode {op} is a request, not a response"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown NAT-PMP response opcode {op}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the NAT-PMP response"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b2, c, d]) => u32::from_be_bytes([a, b2, c, d]),
        _ => 0,
    }
}

impl Response {
    /// Decodes a response. Lengths are checked before every read (the helpers above only
    /// see checked ranges).
    pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
        let (Some(&version), Some(&op)) = (b.first(), b.get(1)) else {
            return Err(DecodeError::UnexpectedEnd {
                needed: 2,
                got: b.len(),
            });
        };
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if op < opcode::RESPONSE {
            return Err(DecodeError::NotAResponse(op));
        }
        let (needed, proto) = match op - opcode::RESPONSE {
            opcode::EXTERNAL_ADDRESS => (12, None),
            opcode::MAP_UDP => (16, Some(Proto::Udp)),
            opcode::MAP_TCP => (16, Some(Proto::Tcp)),
            _ => return Err(DecodeError::UnknownOpcode(op)),
        };
        if b.len() < needed {
            return Err(DecodeError::UnexpectedEnd {
                needed,
                got: b.len(),
            });
        }
        if b.len() > needed {
            return Err(DecodeError::TrailingBytes(b.len() - needed));
        }
        let result = be16(b, 2);
        let epoch = be32(b, 4);
        let body = match proto {
            None => Body::ExternalAddress(Ipv4Addr::from(be32(b, 8))),
            Some(proto) => Body::Map {
                proto,
                internal: be16(b, 8),
                external: be16(b, 10),
                lifetime: be32(b, 12),
            },
        };
        Ok(Response {
            result,
            epoch,
            body,
        })
    }

    /// The response's bytes (what a gateway sends; used by tests and the spec's examples).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        let op = match self.body {
            Body::ExternalAddress(_) => opcode::EXTERNAL_ADDRESS,
            Body::Map { proto, .. } => proto.opcode(),
        };
        v.extend_from_slice(&[VERSION, opcode::RESPONSE + op]);
        v.extend_from_slice(&self.result.to_be_bytes());
        v.extend_from_slice(&self.epoch.to_be_bytes());
        match self.body {
            Body::ExternalAddress(a) => v.extend_from_slice(&a.octets()),
            Body::Map {
                internal,
                external,
                lifetime,
                ..
            } => {
                v.extend_from_slice(&internal.to_be_bytes());
                v.extend_from_slice(&external.to_be_bytes());
                v.extend_from_slice(&lifetime.to_be_bytes());
            }
        }
        v
    }

    pub(super) fn request_opcode(&self) -> u8 {
        match self.body {
            Body::ExternalAddress(_) => opcode::EXTERNAL_ADDRESS,
            Body::Map { proto, .. } => proto.opcode(),
        }
    }
}

/// The default IPv4 gateway in the text of Linux's `/proc/net/route`: the first route with
/// destination 0 and the RTF_GATEWAY flag. Fields are hexadecimal, addresses in host byte
/// order (little-endian on the machines we run on). The reactor reads the file; this only
/// parses it.
pub fn default_gateway(proc_net_route: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    proc_net_route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().take(4).collect();
        let [_iface, dest, gw, flags] = f.as_slice() else {
            return None;
        };
        let dest = u32::from_str_radix(dest, 16).ok()?;
        let gw = u32::from_str_radix(gw, 16).ok()?;
        let flags = u32::from_str_radix(flags, 16).ok()?;
        (dest == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY && gw != 0)
            .then(|| Ipv4Addr::from(gw.to_le_bytes()))
    })
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    // The examples of protocol-spec/nat.md, section 10 (the answers are in the form
    // miniupnpd 2.3.1 sent them in the lab; EXTERNAL_OK is byte for byte one of them).
    const MAP_UDP: &str = "00 01 0000 0fa1 0fa1 00001c20";
    const MAP_UDP_OK: &str = "00 81 0000 00000002 0fa1 0fa1 00001c20";
    const EXTERNAL_OK: &str = "00 80 0000 00000002 cb00711b";
    const UNMAP_TCP: &str = "00 02 0000 0fa1 0000 00000000";

    #[test]
    fn spec_examples_encode_and_decode() {
        let map = Request::Map {
            proto: Proto::Udp,
            internal: 4001,
            external: 4001,
            lifetime: 7200,
        };
        assert_eq!(map.encode(), hex(MAP_UDP));
        let unmap = Request::Map {
            proto: Proto::Tcp,
            internal: 4001,
            external: 0,
            lifetime: 0,
        };
        assert_eq!(unmap.encode(), hex(UNMAP_TCP));
        assert_eq!(Request::ExternalAddress.encode(), hex("0000"));
        let ok = Response::decode(&hex(MAP_UDP_OK)).expect("valid");
        assert_eq!(
            ok,
            Response {
                result: 0,
                epoch: 2,
                body: Body::Map {
                    proto: Proto::Udp,
                    internal: 4001,
                    external: 4001,
                    lifetime: 7200
                }
            }
        );
        assert_eq!(ok.encode(), hex(MAP_UDP_OK));
        let ext = Response::decode(&hex(EXTERNAL_OK)).expect("valid");
        assert_eq!(
            ext.body,
            Body::ExternalAddress(Ipv4Addr::new(203, 0, 113, 27))
        );
        assert_eq!(ext.encode(), hex(EXTERNAL_OK));
    }

    #[test]
    fn bad_responses_get_typed_errors() {
        let e = |s: &str| Response::decode(&hex(s)).expect_err("invalid");
        assert_eq!(e(""), DecodeError::UnexpectedEnd { needed: 2, got: 0 });
        assert_eq!(e("02 81"), DecodeError::UnsupportedVersion(2));
        assert_eq!(e("00 01"), DecodeError::NotAResponse(1));
        assert_eq!(e("00 83"), DecodeError::UnknownOpcode(0x83));
        assert_eq!(
            e("00 81 0000 00000002 0fa1 0fa1 0000"),
            DecodeError::UnexpectedEnd {
                needed: 16,
                got: 14
            }
        );
        assert_eq!(
            e("00 80 0000 00000002 cb00711b 00"),
            DecodeError::TrailingBytes(1)
        );
        // A refusal decodes: the result code is the client's business.
        let r = Response::decode(&hex("00 82 0002 00000002 0fa1 0000 00000000")).expect("valid");
        assert_eq!(r.result, result_code::NOT_AUTHORIZED);
    }

    #[test]
    fn the_default_gateway_comes_from_proc_net_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(192, 0, 2, 1)));
        // No default route, a default route without a gateway, garbage: none.
        assert_eq!(
            default_gateway(&table.replace("00000000\t0102", "0000000a\t0102")),
            None
        );
        assert_eq!(default_gateway(&table.replace("0003", "0001")), None);
        assert_eq!(default_gateway("Iface\nx y z\n\u{0}\n"), None);
        assert_eq!(default_gateway(""), None);
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Ok(r) = Response::decode(&bytes) {
                proptest::prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn any_route_table_text_never_panics(text in "\\PC{0,200}") {
            let _ = default_gateway(&text);
        }
    }
}
