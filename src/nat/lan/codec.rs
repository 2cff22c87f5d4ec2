//! The LAN discovery datagram (spec: `protocol-spec/nat.md`, section 11): encoding, and a
//! total decoder (a typed [`DecodeError`] for any other input: anyone on the link may send
//! anything to the group).
//!
//! ```text
//! offset size field
//! 0      4    magic "PSLD" (50 53 4c 44)
//! 4      1    version 1
//! 5      1    kind: 1 HELLO, 2 ANNOUNCE, 3 WANT, 4 HAVE
//! 6      32   node ID of the sender
//! 38     2    port: the sender's DHT (UDP) and wire (TCP) port, not 0
//! 40     32   content ID (WANT and HAVE only)
//! ```
//!
//! HELLO and ANNOUNCE are 40 bytes, WANT and HAVE 72. Integers are big-endian.

use std::fmt;

use crate::id::{Id, ID_LEN};

/// The first four bytes of every LAN datagram.
pub const MAGIC: [u8; 4] = *b"PSLD";
/// The version this node speaks.
pub const VERSION: u8 = 1;
/// Size of HELLO and ANNOUNCE.
pub const SHORT_LEN: usize = 6 + ID_LEN + 2;
/// Size of WANT and HAVE.
pub const LONG_LEN: usize = SHORT_LEN + ID_LEN;

/// What a LAN datagram says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// "I just started: who is here?" Multicast; every node answers with a unicast ANNOUNCE.
    Hello,
    /// "I am here." Multicast periodically, unicast in answer to HELLO.
    Announce,
    /// "Who on this link provides `content`?" Multicast when a download starts.
    Want(Id),
    /// "I provide `content`." Unicast, in answer to WANT.
    Have(Id),
}

impl Body {
    fn kind(self) -> u8 {
        match self {
            Body::Hello => 1,
            Body::Announce => 2,
            Body::Want(_) => 3,
            Body::Have(_) => 4,
        }
    }

    /// Lower-case name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Body::Hello => "hello",
            Body::Announce => "announce",
            Body::Want(_) => "want",
            Body::Have(_) => "have",
        }
    }
}

/// One LAN datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's node ID.
    pub node: Id,
    /// The sender's DHT and wire port (the address is the datagram's source).
    pub port: u16,
    /// What it says.
    pub body: Body,
}

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind needs (or than the header).
    UnexpectedEnd {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        got: usize,
    },
    /// Not "PSLD": another protocol on the group's port.
    BadMagic,
    /// A version this node does not speak.
    UnsupportedVersion(u8),
    /// A kind byte outside 1..=4.
    UnknownKind(u8),
    /// Port 0: nobody can be reached there.
    ZeroPort,
    /// Bytes after the datagram's end.
    TrailingBytes(usize),
}

impl DecodeError {
    /// Short name, for counters.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::UnexpectedEnd { .. } => "unexpected_end",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::ZeroPort => "zero_port",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd { needed, got } => {
                write!(f, "LAN datagram of {got} bytes, needs {needed}")
            }
            DecodeError::BadMagic => write!(f, "not a PeerShare LAN datagram (magic)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "LAN datagram version {v}, expected 1"),
            DecodeError::UnknownKind(k) => write!(f, "unknown LAN datagram kind {k}"),
            DecodeError::ZeroPort => write!(f, "LAN datagram names port 0"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the LAN datagram"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Datagram {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LONG_LEN);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(self.body.kind());
        b.extend_from_slice(&self.node.0);
        b.extend_from_slice(&self.port.to_be_bytes());
        if let Body::Want(c) | Body::Have(c) = self.body {
            b.extend_from_slice(&c.0);
        }
        b
    }

    /// Decodes one datagram; checks in the order of the fields (magic, version, kind,
    /// length, port).
    pub fn decode(b: &[u8]) -> Result<Datagram, DecodeError> {
        if b.len() < 6 {
            // Too short for a header: a foreign datagram if its first bytes already differ.
            if !MAGIC.starts_with(&b[..b.len().min(4)]) {
                return Err(DecodeError::BadMagic);
            }
            return Err(DecodeError::UnexpectedEnd {
                needed: SHORT_LEN,
                got: b.len(),
            });
        }
        if b[..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if b[4] != VERSION {
            return Err(DecodeError::UnsupportedVersion(b[4]));
        }
        let needed = match b[5] {
            1 | 2 => SHORT_LEN,
            3 | 4 => LONG_LEN,
            k => return Err(DecodeError::UnknownKind(k)),
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
        let id_at = |at: usize| {
            let mut id = [0u8; ID_LEN];
            id.copy_from_slice(&b[at..at + ID_LEN]);
            Id(id)
        };
        let port = u16::from_be_bytes([b[38], b[39]]);
        if port == 0 {
            return Err(DecodeError::ZeroPort);
        }
        let body = match b[5] {
            1 => Body::Hello,
            2 => Body::Announce,
            3 => Body::Want(id_at(SHORT_LEN)),
            _ => Body::Have(id_at(SHORT_LEN)),
        };
        Ok(Datagram {
            node: id_at(6),
            port,
            body,
        })
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).expect("hex")
    }

    /// The vectors of protocol-spec/nat.md, section 11: lines `lan-vector NAME HEX...` in
    /// its example block, so the spec and this test cannot drift apart.
    fn spec_vectors() -> Vec<(String, Vec<u8>)> {
        include_str!("../../../protocol-spec/nat.md")
            .lines()
            .filter_map(|l| l.strip_prefix("lan-vector "))
            .map(|l| {
                let (name, rest) = l.split_once(' ').expect("name and hex");
                let hexpart = rest.split("  ").next().expect("hex");
                (name.to_string(), hex(hexpart))
            })
            .collect()
    }

    fn id(byte: u8) -> Id {
        Id([byte; ID_LEN])
    }

    #[test]
    fn spec_vectors_decode_and_reencode() {
        let v = spec_vectors();
        let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["hello", "announce", "want", "have"]);
        let want = [
            Datagram {
                node: id(0x11),
                port: 4001,
                body: Body::Hello,
            },
            Datagram {
                node: id(0x11),
                port: 4001,
                body: Body::Announce,
            },
            Datagram {
                node: id(0x22),
                port: 8001,
                body: Body::Want(id(0xab)),
            },
            Datagram {
                node: id(0x11),
                port: 4001,
                body: Body::Have(id(0xab)),
            },
        ];
        for ((name, bytes), d) in v.iter().zip(want) {
            assert_eq!(Datagram::decode(bytes), Ok(d), "{name}");
            assert_eq!(&d.encode(), bytes, "{name}");
        }
    }

    #[test]
    fn bad_datagrams_get_typed_errors() {
        let good = Datagram {
            node: id(1),
            port: 4001,
            body: Body::Want(id(2)),
        }
        .encode();
        let e = |b: &[u8]| Datagram::decode(b).expect_err("invalid");
        assert_eq!(e(b""), DecodeError::UnexpectedEnd { needed: 40, got: 0 });
        assert_eq!(e(b"PS"), DecodeError::UnexpectedEnd { needed: 40, got: 2 });
        assert_eq!(e(b"BT-S"), DecodeError::BadMagic);
        assert_eq!(e(b"BT-SEARCH * HTTP/1.1\r\n"), DecodeError::BadMagic);
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(e(&b), DecodeError::UnsupportedVersion(2));
        b = good.clone();
        b[5] = 9;
        assert_eq!(e(&b), DecodeError::UnknownKind(9));
        assert_eq!(
            e(&good[..50]),
            DecodeError::UnexpectedEnd {
                needed: 72,
                got: 50
            }
        );
        b = good.clone();
        b.push(0);
        assert_eq!(e(&b), DecodeError::TrailingBytes(1));
        b = good.clone();
        b[38] = 0;
        b[39] = 0;
        assert_eq!(e(&b), DecodeError::ZeroPort);
        // A HELLO with a content ID appended is too long for its kind.
        b = good.clone();
        b[5] = 1;
        assert_eq!(e(&b), DecodeError::TrailingBytes(32));
    }

    proptest::proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            if let Ok(d) = Datagram::decode(&bytes) {
                proptest::prop_assert_eq!(d.encode(), bytes);
            }
        }
    }
}
