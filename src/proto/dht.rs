//! The DHT datagram codec (spec: `protocol-spec/dht.md`).
//!
//! Every datagram is a 45-byte header followed by a body whose layout depends on the message
//! type. Requests have odd type numbers and responses even ones, so a reader can tell them
//! apart from the type byte alone. Decoding is total: any input gives a [`Datagram`] or a
//! [`DecodeError`], never a panic, and never allocates more than the datagram's own size.

use std::net::SocketAddr;

use super::codec::{put_socket_addr, socket_addr_len, DecodeError, Reader};
use super::dht_parts::{
    check_fits, contacts_len, put_contacts, read_announce_many, read_contacts, read_count,
    read_rendezvous, truncate_utf8,
};
pub use super::dht_parts::{proof_message, PROOF_CONTEXT};
use crate::id::{Id, ID_LEN};

/// The two magic bytes that open every DHT datagram: "PS".
pub const MAGIC: [u8; 2] = *b"PS";
/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// The largest datagram (UDP payload) a node sends or accepts: 1280 (the IPv6 minimum MTU)
/// less 40 bytes of IPv6 header and 8 of UDP header, so a datagram is never fragmented on
/// any path.
pub const MAX_DATAGRAM: usize = 1232;
/// Size of the common header.
pub const HEADER_LEN: usize = 2 + 1 + 1 + 1 + 8 + ID_LEN;
/// Length of an announce token.
pub const TOKEN_LEN: usize = 16;
/// Longest ERROR message text, in bytes.
pub const MAX_ERROR_TEXT: usize = 200;

/// Header flag: the sender cannot receive unsolicited datagrams (it is behind a NAT or
/// firewall), so other nodes must not put it in their routing tables.
pub const FLAG_NOT_REACHABLE: u8 = 0x01;
/// Header flag of ANNOUNCE, ANNOUNCE_MANY and PROVIDERS only: the body carries rendezvous
/// information after its usual fields (spec: `protocol-spec/nat.md`, section 5). On other
/// types bit 1 is reserved.
pub const FLAG_RENDEZVOUS: u8 = 0x02;
/// Most rendezvous records in one PROVIDERS message.
pub const MAX_RENDEZVOUS: usize = 20;
/// Header flag of GET_PROVIDERS and PROVIDERS only (dht.md section 4.6): in GET_PROVIDERS,
/// "I read provider node IDs"; in PROVIDERS, the body ends with one node ID per provider.
/// On other types bit 2 is reserved.
pub const FLAG_PROVIDER_IDS: u8 = 0x04;
/// Header flag of REGISTER and INTRODUCED only (nat.md sections 4 and 6): the registering
/// node's NAT gives each destination another port (peers saw it at one IP from different
/// ports: a symmetric NAT), so a punch to it works only from a reachable downloader. On
/// REGISTER the sender says it of itself; on INTRODUCED the rendezvous passes on what the
/// target's REGISTER said. On other types bit 3 is reserved.
pub const FLAG_PORTS_VARY: u8 = 0x08;
/// Most providers a PROVIDERS answer with node IDs lists: 20 IPv6 providers with their IDs
/// (1,020 bytes) still leave room for the header, the token and some contacts.
pub const MAX_PROVIDERS_WITH_IDS: usize = 20;
/// Length of a PROVE nonce.
pub const NONCE_LEN: usize = 32;
/// Length of an Ed25519 public key (PROOF).
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (PROOF).
pub const SIGNATURE_LEN: usize = 64;

/// Message type bytes.
pub mod msg_type {
    /// PING request.
    pub const PING: u8 = 0x01;
    /// PONG response.
    pub const PONG: u8 = 0x02;
    /// FIND_NODE request.
    pub const FIND_NODE: u8 = 0x03;
    /// NODES response.
    pub const NODES: u8 = 0x04;
    /// GET_PROVIDERS request.
    pub const GET_PROVIDERS: u8 = 0x05;
    /// PROVIDERS response.
    pub const PROVIDERS: u8 = 0x06;
    /// ANNOUNCE request.
    pub const ANNOUNCE: u8 = 0x07;
    /// ACK response.
    pub const ACK: u8 = 0x08;
    /// DIALBACK request: connect back to me to test whether I am reachable (nat.md).
    pub const DIALBACK: u8 = 0x09;
    /// DIALBACK_ACK response: I will try.
    pub const DIALBACK_ACK: u8 = 0x0a;
    /// REGISTER request: be my rendezvous (nat.md).
    pub const REGISTER: u8 = 0x0b;
    /// REGISTERED response: I am, for this long.
    pub const REGISTERED: u8 = 0x0c;
    /// INTRODUCE request: introduce me to a node you are the rendezvous of (nat.md).
    pub const INTRODUCE: u8 = 0x0d;
    /// INTRODUCED response: where that node is.
    pub const INTRODUCED: u8 = 0x0e;
    /// CALL request: from a rendezvous to its client: punch to, or relay for, this peer.
    pub const CALL: u8 = 0x0f;
    /// CALL_ACK response: the client got the CALL.
    pub const CALL_ACK: u8 = 0x10;
    /// ANNOUNCE_MANY request: record that the sender provides each of these keys.
    pub const ANNOUNCE_MANY: u8 = 0x11;
    /// STORED response: how many of the keys were stored or refreshed.
    pub const STORED: u8 = 0x12;
    /// PROVE request: prove you hold the key of your node ID (dht.md section 4.10).
    pub const PROVE: u8 = 0x13;
    /// PROOF response: public key and signature.
    pub const PROOF: u8 = 0x14;
    /// ERROR response.
    pub const ERROR: u8 = 0x7f;
}

/// A node as carried on the wire: its ID and the UDP address it answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The node's ID.
    pub id: Id,
    /// The node's address.
    pub addr: SocketAddr,
}

impl Contact {
    /// Encoded size: 32-byte ID plus the address.
    pub fn encoded_len(&self) -> usize {
        ID_LEN + socket_addr_len(&self.addr)
    }
}

/// ERROR codes (spec: `protocol-spec/dht.md`, "ERROR").
pub mod error_code {
    /// The request decoded but this node will not serve it: a REGISTER to a node that does
    /// not know it is reachable (nat.md, section 4). Undecodable datagrams are never
    /// answered.
    pub const BAD_REQUEST: u16 = 1;
    /// The announce token is missing, expired or bound to another address.
    pub const BAD_TOKEN: u16 = 2;
    /// The node's provider store is full for that key or overall.
    pub const STORE_FULL: u16 = 3;
    /// The sender exceeded the node's per-source rate limit.
    pub const RATE_LIMITED: u16 = 4;
    /// INTRODUCE named a node this rendezvous does not serve (nat.md).
    pub const UNKNOWN_PEER: u16 = 5;
    /// The sender exceeded the node's per-source rate limit and must send it nothing more
    /// for 1 s (dht.md sections 4.9 and 13.1); the requests it refused were not served.
    pub const RETRY_LATER: u16 = 6;
}

/// CALL modes (spec: `protocol-spec/nat.md`).
pub mod call_mode {
    /// Punch: send a datagram to the peer and open TCP to it at the same time.
    pub const PUNCH: u8 = 1;
    /// Relay: open TCP to the rendezvous and join circuit `nonce` with RELAY.
    pub const RELAY: u8 = 2;
}

/// A provider record of a node that cannot be reached directly: where it is, and the
/// rendezvous that can introduce a downloader to it (spec: `protocol-spec/nat.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RendezvousRecord {
    /// The provider's address as announced (its NAT's public address and its TCP port).
    pub provider: SocketAddr,
    /// The provider's node ID, which the rendezvous knows it by.
    pub node: Id,
    /// The rendezvous's UDP address.
    pub rendezvous: SocketAddr,
}

impl RendezvousRecord {
    fn encoded_len(&self) -> usize {
        socket_addr_len(&self.provider) + ID_LEN + socket_addr_len(&self.rendezvous)
    }
}

/// The body of a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Are you there? Also how a node learns its public address (see `Pong`).
    Ping,
    /// Answer to `Ping`: the address the request came from, as the responder saw it.
    Pong {
        /// The requester's address as seen by the responder.
        observed: SocketAddr,
    },
    /// Which nodes do you know closest to `target`?
    FindNode {
        /// The ID searched for.
        target: Id,
    },
    /// Answer to `FindNode`: up to k contacts, closest to the target first.
    Nodes {
        /// The contacts.
        contacts: Vec<Contact>,
    },
    /// Who provides `key`? Also asks for a token to announce `key` later.
    GetProviders {
        /// The content ID.
        key: Id,
    },
    /// Answer to `GetProviders`.
    Providers {
        /// A token that lets the requester's address announce to this node.
        token: [u8; TOKEN_LEN],
        /// Addresses of nodes that provide the key.
        providers: Vec<SocketAddr>,
        /// Contacts closer to the key, for the lookup to go on.
        closer: Vec<Contact>,
        /// With [`FLAG_RENDEZVOUS`]: providers reached through a rendezvous, at most
        /// [`MAX_RENDEZVOUS`].
        rendezvous: Option<Vec<RendezvousRecord>>,
        /// With [`FLAG_PROVIDER_IDS`]: each provider's node ID, in the order of `providers`
        /// (all zeros: unknown). Encoding writes exactly one per provider, zeros for any
        /// missing.
        provider_ids: Option<Vec<Id>>,
    },
    /// Record that the sender provides `key`.
    Announce {
        /// The content ID.
        key: Id,
        /// The token from an earlier `Providers` answer of the receiver.
        token: [u8; TOKEN_LEN],
        /// The TCP port the content is served on; 0 means "the UDP source port".
        port: u16,
        /// With [`FLAG_RENDEZVOUS`]: the sender cannot be reached directly; this rendezvous
        /// (UDP address) introduces downloaders to it.
        rendezvous: Option<SocketAddr>,
    },
    /// Answer to `Announce`: the record is stored.
    Ack,
    /// Record that the sender provides each of `keys` (a reprovide sweep's batch, dht.md
    /// section 4.9a): `Announce` for up to [`MAX_ANNOUNCE_KEYS`] keys in one datagram.
    AnnounceMany {
        /// The token from an earlier `Providers` answer of the receiver.
        token: [u8; TOKEN_LEN],
        /// The TCP port the contents are served on; 0 means "the UDP source port".
        port: u16,
        /// The content IDs, 1 to [`MAX_ANNOUNCE_KEYS`] ([`MAX_ANNOUNCE_KEYS_RENDEZVOUS`]
        /// with a rendezvous).
        keys: Vec<Id>,
        /// With [`FLAG_RENDEZVOUS`]: the sender cannot be reached directly; this rendezvous
        /// (UDP address) introduces downloaders to it, for every key (as in `Announce`).
        rendezvous: Option<SocketAddr>,
    },
    /// Answer to `AnnounceMany`: how many of its keys were stored or refreshed (the others
    /// were refused, as `Announce` would be with STORE_FULL).
    Stored {
        /// Keys stored or refreshed.
        stored: u8,
    },
    /// Prove that you hold the key of your node ID (dht.md section 4.10).
    Prove {
        /// A fresh random challenge.
        nonce: [u8; NONCE_LEN],
        /// The address the request is sent to: the prover's address as the verifier knows
        /// it, which the signature covers.
        addr: SocketAddr,
    },
    /// Answer to `Prove`: the Ed25519 public key whose SHA-256 is the sender's node ID, and
    /// its signature of [`proof_message`].
    Proof {
        /// The public key.
        public: [u8; PUBLIC_KEY_LEN],
        /// The signature.
        signature: [u8; SIGNATURE_LEN],
    },
    /// Connect back to me: a TCP connection to my source IP at `port` carrying PROBE `nonce`
    /// proves I am reachable.
    Dialback {
        /// Echoed in the PROBE frame.
        nonce: u64,
        /// My wire (TCP) port.
        port: u16,
    },
    /// Answer to `Dialback`: the responder will try.
    DialbackAck,
    /// Be my rendezvous: remember where I am (my source address) and pass on introductions.
    Register {
        /// My wire (TCP) port.
        port: u16,
    },
    /// Answer to `Register`.
    Registered {
        /// Seconds the registration lasts unless renewed.
        lifetime: u16,
    },
    /// Introduce me to `target`, a client of yours.
    Introduce {
        /// The node wanted.
        target: Id,
        /// My wire (TCP) port.
        port: u16,
    },
    /// Answer to `Introduce`: where the target is.
    Introduced {
        /// The target's UDP address as the rendezvous sees it.
        addr: SocketAddr,
        /// The target's wire (TCP) port.
        port: u16,
    },
    /// From a rendezvous to its client: a peer wants a connection.
    Call {
        /// One of [`call_mode`].
        mode: u8,
        /// For RELAY: the circuit to join.
        nonce: u64,
        /// The peer's node ID.
        peer: Id,
        /// The peer's UDP address as the rendezvous sees it.
        addr: SocketAddr,
        /// The peer's wire (TCP) port.
        port: u16,
    },
    /// Answer to `Call`.
    CallAck,
    /// A request failed.
    Error {
        /// One of [`error_code`].
        code: u16,
        /// Human-readable text, UTF-8, at most [`MAX_ERROR_TEXT`] bytes.
        text: String,
    },
}

impl Message {
    /// The type byte of this message.
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::Ping => msg_type::PING,
            Message::Pong { .. } => msg_type::PONG,
            Message::FindNode { .. } => msg_type::FIND_NODE,
            Message::Nodes { .. } => msg_type::NODES,
            Message::GetProviders { .. } => msg_type::GET_PROVIDERS,
            Message::Providers { .. } => msg_type::PROVIDERS,
            Message::Announce { .. } => msg_type::ANNOUNCE,
            Message::Ack => msg_type::ACK,
            Message::AnnounceMany { .. } => msg_type::ANNOUNCE_MANY,
            Message::Stored { .. } => msg_type::STORED,
            Message::Prove { .. } => msg_type::PROVE,
            Message::Proof { .. } => msg_type::PROOF,
            Message::Dialback { .. } => msg_type::DIALBACK,
            Message::DialbackAck => msg_type::DIALBACK_ACK,
            Message::Register { .. } => msg_type::REGISTER,
            Message::Registered { .. } => msg_type::REGISTERED,
            Message::Introduce { .. } => msg_type::INTRODUCE,
            Message::Introduced { .. } => msg_type::INTRODUCED,
            Message::Call { .. } => msg_type::CALL,
            Message::CallAck => msg_type::CALL_ACK,
            Message::Error { .. } => msg_type::ERROR,
        }
    }

    /// True for requests. Requests have odd type numbers; ERROR (0x7f) is odd too but is a
    /// response.
    pub fn is_request(&self) -> bool {
        is_request_type(self.type_byte())
    }

    /// A short upper-case name, as in the spec.
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }
}

/// True if a type byte denotes a request: odd, except ERROR.
pub fn is_request_type(t: u8) -> bool {
    t & 1 == 1 && t != msg_type::ERROR
}

/// The spec's name for a type byte ("UNKNOWN" if undefined).
pub fn type_name(t: u8) -> &'static str {
    match t {
        msg_type::PING => "PING",
        msg_type::PONG => "PONG",
        msg_type::FIND_NODE => "FIND_NODE",
        msg_type::NODES => "NODES",
        msg_type::GET_PROVIDERS => "GET_PROVIDERS",
        msg_type::PROVIDERS => "PROVIDERS",
        msg_type::ANNOUNCE => "ANNOUNCE",
        msg_type::ACK => "ACK",
        msg_type::DIALBACK => "DIALBACK",
        msg_type::DIALBACK_ACK => "DIALBACK_ACK",
        msg_type::REGISTER => "REGISTER",
        msg_type::REGISTERED => "REGISTERED",
        msg_type::INTRODUCE => "INTRODUCE",
        msg_type::INTRODUCED => "INTRODUCED",
        msg_type::CALL => "CALL",
        msg_type::CALL_ACK => "CALL_ACK",
        msg_type::ANNOUNCE_MANY => "ANNOUNCE_MANY",
        msg_type::STORED => "STORED",
        msg_type::PROVE => "PROVE",
        msg_type::PROOF => "PROOF",
        msg_type::ERROR => "ERROR",
        _ => "UNKNOWN",
    }
}

/// A whole datagram: header fields plus the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Header flags ([`FLAG_NOT_REACHABLE`]); unknown bits are ignored on receipt.
    pub flags: u8,
    /// Transaction ID: chosen by the requester, echoed by the responder.
    pub txid: u64,
    /// The sender's node ID.
    pub sender: Id,
    /// The body.
    pub msg: Message,
}

/// Most contacts a NODES or PROVIDERS message may carry (k).
pub const MAX_CONTACTS: usize = 20;
/// Most provider addresses a PROVIDERS message may carry: 50 IPv6 addresses (950 bytes)
/// plus the header and token always fit in [`MAX_DATAGRAM`].
pub const MAX_PROVIDERS: usize = 50;
/// Most keys an ANNOUNCE_MANY carries: 45 + 16 + 2 + 1 + 36 x 32 = 1216 bytes fit in
/// [`MAX_DATAGRAM`], 37 keys would not.
pub const MAX_ANNOUNCE_KEYS: usize = 36;
/// Most keys an ANNOUNCE_MANY with a rendezvous carries, whatever the address family: with
/// an IPv6 rendezvous (19 bytes) 45 + 16 + 2 + 1 + 35 x 32 + 19 = 1203 bytes fit in
/// [`MAX_DATAGRAM`], 36 keys (1235) would not.
pub const MAX_ANNOUNCE_KEYS_RENDEZVOUS: usize = 35;

/// The most keys an ANNOUNCE_MANY may carry, with or without a rendezvous.
pub fn max_announce_keys(rendezvous: bool) -> usize {
    if rendezvous {
        MAX_ANNOUNCE_KEYS_RENDEZVOUS
    } else {
        MAX_ANNOUNCE_KEYS
    }
}

impl Datagram {
    /// Encodes the datagram. Callers keep lists within [`MAX_CONTACTS`] and
    /// [`MAX_PROVIDERS`] and the total within [`MAX_DATAGRAM`]; [`Datagram::encoded_len`]
    /// tells the size beforehand.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.msg.type_byte());
        out.push(self.wire_flags());
        out.extend_from_slice(&self.txid.to_be_bytes());
        out.extend_from_slice(&self.sender.0);
        match &self.msg {
            Message::Ping | Message::Ack | Message::DialbackAck | Message::CallAck => {}
            Message::Pong { observed } => put_socket_addr(&mut out, observed),
            Message::Dialback { nonce, port } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Register { port } => out.extend_from_slice(&port.to_be_bytes()),
            Message::Registered { lifetime } => out.extend_from_slice(&lifetime.to_be_bytes()),
            Message::Introduce { target, port } => {
                out.extend_from_slice(&target.0);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Introduced { addr, port } => {
                put_socket_addr(&mut out, addr);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Call {
                mode,
                nonce,
                peer,
                addr,
                port,
            } => {
                out.push(*mode);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&peer.0);
                put_socket_addr(&mut out, addr);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::FindNode { target } => out.extend_from_slice(&target.0),
            Message::GetProviders { key } => out.extend_from_slice(&key.0),
            Message::Nodes { contacts } => put_contacts(&mut out, contacts),
            Message::Providers {
                token,
                providers,
                closer,
                rendezvous,
                provider_ids,
            } => {
                out.extend_from_slice(token);
                out.push(providers.len().min(MAX_PROVIDERS) as u8);
                for p in providers.iter().take(MAX_PROVIDERS) {
                    put_socket_addr(&mut out, p);
                }
                put_contacts(&mut out, closer);
                if let Some(rv) = rendezvous {
                    out.push(rv.len().min(MAX_RENDEZVOUS) as u8);
                    for r in rv.iter().take(MAX_RENDEZVOUS) {
                        put_socket_addr(&mut out, &r.provider);
                        out.extend_from_slice(&r.node.0);
                        put_socket_addr(&mut out, &r.rendezvous);
                    }
                }
                if let Some(ids) = provider_ids {
                    let n = providers.len().min(MAX_PROVIDERS);
                    for i in 0..n {
                        out.extend_from_slice(&ids.get(i).unwrap_or(&Id([0; ID_LEN])).0);
                    }
                }
            }
            Message::Prove { nonce, addr } => {
                out.extend_from_slice(nonce);
                put_socket_addr(&mut out, addr);
            }
            Message::Proof { public, signature } => {
                out.extend_from_slice(public);
                out.extend_from_slice(signature);
            }
            Message::Announce {
                key,
                token,
                port,
                rendezvous,
            } => {
                out.extend_from_slice(&key.0);
                out.extend_from_slice(token);
                out.extend_from_slice(&port.to_be_bytes());
                if let Some(rv) = rendezvous {
                    put_socket_addr(&mut out, rv);
                }
            }
            Message::AnnounceMany {
                token,
                port,
                keys,
                rendezvous,
            } => {
                let max = max_announce_keys(rendezvous.is_some());
                out.extend_from_slice(token);
                out.extend_from_slice(&port.to_be_bytes());
                out.push(keys.len().min(max) as u8);
                for k in keys.iter().take(max) {
                    out.extend_from_slice(&k.0);
                }
                if let Some(rv) = rendezvous {
                    put_socket_addr(&mut out, rv);
                }
            }
            Message::Stored { stored } => out.push(*stored),
            Message::Error { code, text } => {
                out.extend_from_slice(&code.to_be_bytes());
                let t = truncate_utf8(text, MAX_ERROR_TEXT);
                out.push(t.len() as u8);
                out.extend_from_slice(t.as_bytes());
            }
        }
        out
    }

    /// The exact size [`Datagram::encode`] will produce.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match &self.msg {
                Message::Ping | Message::Ack | Message::DialbackAck | Message::CallAck => 0,
                Message::Pong { observed } => socket_addr_len(observed),
                Message::Dialback { .. } => 10,
                Message::Register { .. } | Message::Registered { .. } => 2,
                Message::Introduce { .. } => ID_LEN + 2,
                Message::Introduced { addr, .. } => socket_addr_len(addr) + 2,
                Message::Call { addr, .. } => 1 + 8 + ID_LEN + socket_addr_len(addr) + 2,
                Message::FindNode { .. } | Message::GetProviders { .. } => ID_LEN,
                Message::Nodes { contacts } => contacts_len(contacts),
                Message::Providers {
                    providers,
                    closer,
                    rendezvous,
                    provider_ids,
                    ..
                } => {
                    TOKEN_LEN
                        + 1
                        + providers
                            .iter()
                            .take(MAX_PROVIDERS)
                            .map(socket_addr_len)
                            .sum::<usize>()
                        + contacts_len(closer)
                        + rendezvous.as_ref().map_or(0, |rv| {
                            1 + rv
                                .iter()
                                .take(MAX_RENDEZVOUS)
                                .map(RendezvousRecord::encoded_len)
                                .sum::<usize>()
                        })
                        + provider_ids
                            .as_ref()
                            .map_or(0, |_| ID_LEN * providers.len().min(MAX_PROVIDERS))
                }
                Message::Prove { addr, .. } => NONCE_LEN + socket_addr_len(addr),
                Message::Proof { .. } => PUBLIC_KEY_LEN + SIGNATURE_LEN,
                Message::Announce { rendezvous, .. } => {
                    ID_LEN + TOKEN_LEN + 2 + rendezvous.as_ref().map_or(0, socket_addr_len)
                }
                Message::AnnounceMany {
                    keys, rendezvous, ..
                } => {
                    let max = max_announce_keys(rendezvous.is_some());
                    TOKEN_LEN
                        + 2
                        + 1
                        + ID_LEN * keys.len().min(max)
                        + rendezvous.as_ref().map_or(0, socket_addr_len)
                }
                Message::Stored { .. } => 1,
                Message::Error { text, .. } => 2 + 1 + truncate_utf8(text, MAX_ERROR_TEXT).len(),
            }
    }

    /// Decodes one datagram. Total: every input yields a value or an error.
    pub fn decode(buf: &[u8]) -> Result<Datagram, DecodeError> {
        if buf.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLarge {
                len: buf.len(),
                max: MAX_DATAGRAM,
            });
        }
        let mut r = Reader::new(buf);
        let magic = r.array::<2>("magic")?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let t = r.u8("type")?;
        let flags = r.u8("flags")?;
        let txid = r.u64("txid")?;
        let sender = r.id("sender_id")?;
        let msg = match t {
            msg_type::PING => Message::Ping,
            msg_type::PONG => Message::Pong {
                observed: r.socket_addr("observed")?,
            },
            msg_type::FIND_NODE => Message::FindNode {
                target: r.id("target")?,
            },
            msg_type::NODES => Message::Nodes {
                contacts: read_contacts(&mut r)?,
            },
            msg_type::GET_PROVIDERS => Message::GetProviders { key: r.id("key")? },
            msg_type::PROVIDERS => {
                let token = r.array::<TOKEN_LEN>("token")?;
                let n = read_count(&mut r, "provider_count", MAX_PROVIDERS)?;
                // Each address is at least 7 bytes: a count that cannot fit is rejected
                // before the vector is sized by it.
                check_fits(&r, n, 7, "provider_count")?;
                let mut providers = Vec::with_capacity(n);
                for _ in 0..n {
                    providers.push(r.socket_addr("provider")?);
                }
                let closer = read_contacts(&mut r)?;
                let rendezvous = if flags & FLAG_RENDEZVOUS != 0 {
                    Some(read_rendezvous(&mut r)?)
                } else {
                    None
                };
                let provider_ids = if flags & FLAG_PROVIDER_IDS != 0 {
                    // n is at most MAX_PROVIDERS: the vector's size is bounded.
                    let mut ids = Vec::with_capacity(n);
                    for _ in 0..n {
                        ids.push(r.id("provider_id")?);
                    }
                    Some(ids)
                } else {
                    None
                };
                Message::Providers {
                    token,
                    providers,
                    closer,
                    rendezvous,
                    provider_ids,
                }
            }
            msg_type::PROVE => Message::Prove {
                nonce: r.array::<NONCE_LEN>("nonce")?,
                addr: r.socket_addr("addr")?,
            },
            msg_type::PROOF => Message::Proof {
                public: r.array::<PUBLIC_KEY_LEN>("public_key")?,
                signature: r.array::<SIGNATURE_LEN>("signature")?,
            },
            msg_type::ANNOUNCE => Message::Announce {
                key: r.id("key")?,
                token: r.array::<TOKEN_LEN>("token")?,
                port: r.u16("port")?,
                rendezvous: if flags & FLAG_RENDEZVOUS != 0 {
                    Some(r.socket_addr("rendezvous")?)
                } else {
                    None
                },
            },
            msg_type::ACK => Message::Ack,
            msg_type::DIALBACK => Message::Dialback {
                nonce: r.u64("nonce")?,
                port: r.u16("port")?,
            },
            msg_type::DIALBACK_ACK => Message::DialbackAck,
            msg_type::REGISTER => Message::Register {
                port: r.u16("port")?,
            },
            msg_type::REGISTERED => Message::Registered {
                lifetime: r.u16("lifetime")?,
            },
            msg_type::INTRODUCE => Message::Introduce {
                target: r.id("target")?,
                port: r.u16("port")?,
            },
            msg_type::INTRODUCED => Message::Introduced {
                addr: r.socket_addr("addr")?,
                port: r.u16("port")?,
            },
            msg_type::CALL => {
                let mode = r.u8("mode")?;
                if mode != call_mode::PUNCH && mode != call_mode::RELAY {
                    return Err(DecodeError::InvalidValue {
                        field: "mode",
                        reason: "neither 1 (PUNCH) nor 2 (RELAY)",
                    });
                }
                Message::Call {
                    mode,
                    nonce: r.u64("nonce")?,
                    peer: r.id("peer_id")?,
                    addr: r.socket_addr("addr")?,
                    port: r.u16("port")?,
                }
            }
            msg_type::CALL_ACK => Message::CallAck,
            msg_type::ANNOUNCE_MANY => read_announce_many(&mut r, flags)?,
            msg_type::STORED => {
                let stored = r.u8("stored")?;
                if usize::from(stored) > MAX_ANNOUNCE_KEYS {
                    return Err(DecodeError::LengthTooLarge {
                        field: "stored",
                        len: usize::from(stored),
                        max: MAX_ANNOUNCE_KEYS,
                    });
                }
                Message::Stored { stored }
            }
            msg_type::ERROR => {
                let code = r.u16("error_code")?;
                let len = r.u8("text_len")? as usize;
                if len > MAX_ERROR_TEXT {
                    return Err(DecodeError::LengthTooLarge {
                        field: "text_len",
                        len,
                        max: MAX_ERROR_TEXT,
                    });
                }
                let bytes = r.take(len, "text")?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::InvalidValue {
                        field: "text",
                        reason: "not valid UTF-8",
                    })?
                    .to_owned();
                Message::Error { code, text }
            }
            other => return Err(DecodeError::UnknownMessageType(other)),
        };
        r.finish()?;
        Ok(Datagram {
            flags,
            txid,
            sender,
            msg,
        })
    }
}

#[cfg(test)]
mod tests;
