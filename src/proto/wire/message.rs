//! The messages of the wire protocol: [`Message`], and the [`Handshake`] that opens a
//! connection.

use std::net::SocketAddr;

use super::codes::{msg_type, type_name};
use super::Bitfield;
use crate::id::Id;

/// The first message on a connection, in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Reserved: sent as 0, ignored on receipt (kept here so a frame re-encodes byte-exact).
    pub flags: u8,
    /// The sender's node ID (the same ID it uses in the DHT).
    pub node_id: Id,
    /// The content this connection is about: the SHA-256 of its manifest.
    pub content_id: Id,
    /// The TCP port the sender accepts connections on, so the receiver can pass its address
    /// on in PEERS; 0 means it accepts none.
    pub listen_port: u16,
}

impl Handshake {
    /// A handshake with the reserved flags at 0.
    pub fn new(node_id: Id, content_id: Id, listen_port: u16) -> Handshake {
        Handshake {
            flags: 0,
            node_id,
            content_id,
            listen_port,
        }
    }
}

/// One entry of PEERS: another peer of the same content, at the address it accepts
/// connections on, with the node ID it proved to the sender in their secure session
/// (secure.md). A dial to `addr` expects that ID (wire.md, section 4.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PexPeer {
    /// The peer's IP address on the sender's connection, with the peer's listen port.
    pub addr: SocketAddr,
    /// The node ID the peer's secure session with the sender authenticated.
    pub node_id: Id,
}

/// One wire protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Nothing to say: sent after [`KEEPALIVE_INTERVAL`](super::KEEPALIVE_INTERVAL) of silence
    /// so the peer (and any NAT on the way) sees the connection is alive.
    KeepAlive,
    /// The first message in each direction.
    Handshake(Handshake),
    /// The file name as the sharer called it. Not part of the content identity; receivers
    /// must sanitize it before using it as a path (spec: "METADATA").
    Metadata {
        /// 1 to [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes of UTF-8 (longer names are cut on
        /// encoding).
        name: String,
    },
    /// Send me `length` bytes of the manifest starting at `offset`.
    ManifestRequest {
        /// First byte wanted.
        offset: u32,
        /// Bytes wanted, 1 to [`MAX_MANIFEST_PIECE`](super::MAX_MANIFEST_PIECE).
        length: u32,
    },
    /// Part of the manifest.
    ManifestData {
        /// Size of the whole manifest, at most [`MAX_MANIFEST_LEN`](super::MAX_MANIFEST_LEN).
        total_len: u32,
        /// Position of `data` in the manifest; `offset + data.len() <= total_len`.
        offset: u32,
        /// 1 to [`MAX_MANIFEST_PIECE`](super::MAX_MANIFEST_PIECE) bytes of manifest.
        data: Vec<u8>,
    },
    /// The chunks the sender has; sent once, as soon as the sender knows the manifest.
    Bitfield(Bitfield),
    /// The sender has just verified this chunk.
    Have(u32),
    /// Please send this whole chunk.
    Request(u32),
    /// A whole chunk.
    Piece {
        /// Its index.
        chunk: u32,
        /// Its bytes: 1 to [`MAX_CHUNK_SIZE`](super::MAX_CHUNK_SIZE).
        data: Vec<u8>,
    },
    /// Withdraws a REQUEST (endgame).
    Cancel(u32),
    /// The sender will not send this chunk.
    Reject {
        /// The chunk requested.
        chunk: u32,
        /// One of [`reject_reason`](super::reject_reason); unknown values are kept as they are.
        reason: u8,
    },
    /// The sender will not serve the receiver's requests.
    Choke,
    /// The sender will serve the receiver's requests.
    Unchoke,
    /// The sender wants chunks the receiver has.
    Interested,
    /// The sender wants nothing the receiver has.
    NotInterested,
    /// Other peers of the same content (peer exchange), each with its node ID, at most
    /// [`MAX_PEERS`](super::MAX_PEERS).
    Peers(Vec<PexPeer>),
    /// Why the sender is closing the connection.
    Error {
        /// One of [`error_code`](super::error_code); unknown values are kept as they are.
        code: u16,
        /// For people, not programs: UTF-8, at most [`MAX_ERROR_TEXT`](super::MAX_ERROR_TEXT)
        /// bytes.
        text: String,
    },
    /// The only frame of a dial-back connection: the nonce of the DIALBACK it answers.
    Probe(u64),
    /// The first frame of a relayed connection at a rendezvous: open a circuit to node
    /// `node` (downloader), or join circuit `nonce` as `node` (the called client).
    Relay {
        /// The node at the other end (opening) or the sender itself (joining).
        node: Id,
        /// The circuit's number, chosen by the opener.
        nonce: u64,
    },
    /// From the rendezvous to the opener: both ends are joined.
    RelayOk,
}

impl Message {
    /// The type byte of this message.
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::KeepAlive => msg_type::KEEPALIVE,
            Message::Handshake(_) => msg_type::HANDSHAKE,
            Message::Metadata { .. } => msg_type::METADATA,
            Message::ManifestRequest { .. } => msg_type::MANIFEST_REQUEST,
            Message::ManifestData { .. } => msg_type::MANIFEST_DATA,
            Message::Bitfield(_) => msg_type::BITFIELD,
            Message::Have(_) => msg_type::HAVE,
            Message::Request(_) => msg_type::REQUEST,
            Message::Piece { .. } => msg_type::PIECE,
            Message::Cancel(_) => msg_type::CANCEL,
            Message::Reject { .. } => msg_type::REJECT,
            Message::Choke => msg_type::CHOKE,
            Message::Unchoke => msg_type::UNCHOKE,
            Message::Interested => msg_type::INTERESTED,
            Message::NotInterested => msg_type::NOT_INTERESTED,
            Message::Peers(_) => msg_type::PEERS,
            Message::Error { .. } => msg_type::ERROR,
            Message::Probe(_) => msg_type::PROBE,
            Message::Relay { .. } => msg_type::RELAY,
            Message::RelayOk => msg_type::RELAY_OK,
        }
    }

    /// A short upper-case name, as in the spec.
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }

    /// True for the frames of NAT traversal (PROBE, RELAY, RELAY_OK: nat.md), which open a
    /// connection and end its framed part: whatever follows on the connection (the bytes of
    /// a relayed circuit) is not wire frames, and must not be decoded as such.
    pub fn ends_framing(&self) -> bool {
        matches!(
            self,
            Message::Probe(_) | Message::Relay { .. } | Message::RelayOk
        )
    }
}
