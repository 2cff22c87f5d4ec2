//! Total decoding primitives shared by every PeerShare codec.
//!
//! A [`Reader`] walks a byte slice and checks the remaining length before every read, so a
//! decoder built on it cannot index out of bounds, cannot panic, and never allocates a
//! buffer sized by an unchecked length prefix. Encoding writes into a `Vec<u8>` and cannot fail.
//! Spec: `protocol-spec/overview.md`, "Encoding conventions".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::id::{Id, ID_LEN};

/// Why bytes could not be decoded. Every variant carries the data a learner (or a test)
/// needs to see what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended while reading `field`; `needed` more bytes were required.
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
        /// How many more bytes it needed.
        needed: usize,
    },
    /// The first two bytes are not the protocol magic.
    BadMagic([u8; 2]),
    /// A protocol version this node does not speak.
    UnsupportedVersion(u8),
    /// A message type byte that is not defined.
    UnknownMessageType(u8),
    /// A count or length field exceeds its limit.
    LengthTooLarge {
        /// The field.
        field: &'static str,
        /// The value found.
        len: usize,
        /// The largest value allowed.
        max: usize,
    },
    /// An address family byte that is neither 4 nor 6.
    BadAddressFamily(u8),
    /// A field holds a value that is not allowed (e.g. invalid UTF-8 text, an IPv4-mapped
    /// address sent as family 6).
    InvalidValue {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The message was complete but this many more bytes followed it.
    TrailingBytes(usize),
    /// The whole datagram or frame is larger than the protocol allows.
    TooLarge {
        /// Its size.
        len: usize,
        /// The maximum size.
        max: usize,
    },
}

impl DecodeError {
    /// Every variant's [`DecodeError::kind`] name.
    pub const KINDS: [&'static str; 9] = [
        "UnexpectedEnd",
        "BadMagic",
        "UnsupportedVersion",
        "UnknownMessageType",
        "LengthTooLarge",
        "BadAddressFamily",
        "InvalidValue",
        "TrailingBytes",
        "TooLarge",
    ];

    /// The variant's name, as the spec's error tables and the invalid vectors name it. No
    /// wildcard arm: a new variant must be named here, in the spec and in the vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::UnexpectedEnd { .. } => "UnexpectedEnd",
            DecodeError::BadMagic(_) => "BadMagic",
            DecodeError::UnsupportedVersion(_) => "UnsupportedVersion",
            DecodeError::UnknownMessageType(_) => "UnknownMessageType",
            DecodeError::LengthTooLarge { .. } => "LengthTooLarge",
            DecodeError::BadAddressFamily(_) => "BadAddressFamily",
            DecodeError::InvalidValue { .. } => "InvalidValue",
            DecodeError::TrailingBytes(_) => "TrailingBytes",
            DecodeError::TooLarge { .. } => "TooLarge",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd { field, needed } => {
                write!(
                    f,
                    "input ends inside field `{field}`: {needed} more byte(s) needed"
                )
            }
            DecodeError::BadMagic(m) => {
                write!(
                    f,
                    "bad magic {:02x}{:02x} (expected 5053, \"PS\")",
                    m[0], m[1]
                )
            }
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::UnknownMessageType(t) => write!(f, "unknown message type 0x{t:02x}"),
            DecodeError::LengthTooLarge { field, len, max } => {
                write!(f, "field `{field}` is {len}, more than the maximum {max}")
            }
            DecodeError::BadAddressFamily(b) => {
                write!(f, "address family byte {b} (expected 4 or 6)")
            }
            DecodeError::InvalidValue { field, reason } => {
                write!(f, "field `{field}` is invalid: {reason}")
            }
            DecodeError::TrailingBytes(n) => {
                write!(f, "{n} unexpected byte(s) after the end of the message")
            }
            DecodeError::TooLarge { len, max } => {
                write!(f, "message is {len} bytes, more than the maximum {max}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over input bytes whose every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let rem = self.remaining();
        if n > rem {
            return Err(DecodeError::UnexpectedEnd {
                field,
                needed: n - rem,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a 32-byte ID.
    pub fn id(&mut self, field: &'static str) -> Result<Id, DecodeError> {
        Ok(Id(self.array::<ID_LEN>(field)?))
    }

    /// Reads an address: family (4 or 6), the IP bytes, then the port, big-endian.
    pub fn socket_addr(&mut self, field: &'static str) -> Result<SocketAddr, DecodeError> {
        let fam = self.u8(field)?;
        let ip = match fam {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?)),
            6 => {
                let v6 = Ipv6Addr::from(self.array::<16>(field)?);
                // One address, one encoding: IPv4 travels as family 4, so every valid
                // message re-encodes byte for byte.
                if v6.to_ipv4_mapped().is_some() {
                    return Err(DecodeError::InvalidValue {
                        field,
                        reason: "IPv4-mapped IPv6 address must be sent as family 4",
                    });
                }
                IpAddr::V6(v6)
            }
            other => return Err(DecodeError::BadAddressFamily(other)),
        };
        let port = self.u16(field)?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless the input is used up.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends an address in the [`Reader::socket_addr`] layout.
pub fn put_socket_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            // An IPv4-mapped IPv6 address is sent as plain IPv4 so both ends agree on one form.
            if let Some(v4) = v6.to_ipv4_mapped() {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            } else {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Encoded size of an address.
pub fn socket_addr_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 7,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 7,
        IpAddr::V6(_) => 19,
    }
}

/// The canonical form of an address: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_missing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.u32("b"),
            Err(DecodeError::UnexpectedEnd {
                field: "b",
                needed: 3
            })
        );
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["1.2.3.4:5", "[2001:db8::1]:65535", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let mut v = Vec::new();
            put_socket_addr(&mut v, &a);
            assert_eq!(v.len(), socket_addr_len(&a));
            let mut r = Reader::new(&v);
            assert_eq!(r.socket_addr("a").unwrap(), a);
            r.finish().unwrap();
        }
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        let mut v = Vec::new();
        put_socket_addr(&mut v, &mapped);
        assert_eq!(
            Reader::new(&v).socket_addr("a").unwrap(),
            "10.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            Reader::new(&[5, 0]).socket_addr("a"),
            Err(DecodeError::BadAddressFamily(5))
        );
    }
}
