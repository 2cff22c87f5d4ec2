//! The numbers the wire protocol gives names to: message type bytes, REJECT reasons and
//! ERROR codes, with the spec's name for each.

/// Message type bytes.
pub mod msg_type {
    /// KEEPALIVE: nothing to say, the connection is alive.
    pub const KEEPALIVE: u8 = 0x00;
    /// HANDSHAKE: who I am and which content this connection is about.
    pub const HANDSHAKE: u8 = 0x01;
    /// METADATA: the file name.
    pub const METADATA: u8 = 0x02;
    /// MANIFEST_REQUEST: send me part of the manifest.
    pub const MANIFEST_REQUEST: u8 = 0x03;
    /// MANIFEST_DATA: part of the manifest.
    pub const MANIFEST_DATA: u8 = 0x04;
    /// BITFIELD: the chunks I have.
    pub const BITFIELD: u8 = 0x05;
    /// HAVE: I have just verified this chunk.
    pub const HAVE: u8 = 0x06;
    /// REQUEST: send me this chunk.
    pub const REQUEST: u8 = 0x07;
    /// PIECE: a whole chunk.
    pub const PIECE: u8 = 0x08;
    /// CANCEL: I no longer want this chunk.
    pub const CANCEL: u8 = 0x09;
    /// REJECT: I will not send this chunk.
    pub const REJECT: u8 = 0x0a;
    /// CHOKE: I will not serve your requests.
    pub const CHOKE: u8 = 0x0b;
    /// UNCHOKE: I will serve your requests.
    pub const UNCHOKE: u8 = 0x0c;
    /// INTERESTED: you have chunks I want.
    pub const INTERESTED: u8 = 0x0d;
    /// NOT_INTERESTED: you have nothing I want.
    pub const NOT_INTERESTED: u8 = 0x0e;
    /// PEERS: other peers of this content.
    pub const PEERS: u8 = 0x0f;
    /// ERROR: why I am closing the connection.
    pub const ERROR: u8 = 0x10;
    /// PROBE: the answer to a DIALBACK (spec: `nat.md`): you are reachable.
    pub const PROBE: u8 = 0x11;
    /// RELAY: open or join a relayed circuit at a rendezvous (spec: `nat.md`).
    pub const RELAY: u8 = 0x12;
    /// RELAY_OK: the circuit is up; what follows comes from the other end.
    pub const RELAY_OK: u8 = 0x13;
}

/// REJECT reason codes (spec: `protocol-spec/wire.md`, "REJECT"). A decoder accepts every
/// value, so a newer peer's reasons reach the application as a raw number.
pub mod reject_reason {
    /// I do not have that chunk.
    pub const NOT_AVAILABLE: u8 = 1;
    /// You are choked: I serve no requests from you now.
    pub const CHOKED: u8 = 2;
    /// Too many of your requests are queued already.
    pub const BUSY: u8 = 3;
    /// My copy of the file changed; I no longer serve this content.
    pub const CONTENT_CHANGED: u8 = 4;
}

/// ERROR codes (spec: `protocol-spec/wire.md`, "ERROR"). A decoder accepts every value.
pub mod error_code {
    /// I do not serve the content ID of your HANDSHAKE.
    pub const UNKNOWN_CONTENT: u16 = 1;
    /// You broke the protocol (undecodable frame, message out of order, index out of range).
    pub const PROTOCOL_VIOLATION: u16 = 2;
    /// You sent a chunk that failed verification; I will not talk to you again.
    pub const BANNED: u16 = 3;
    /// I have as many connections as I accept.
    pub const TOO_MANY_CONNECTIONS: u16 = 4;
    /// I am shutting down.
    pub const SHUTTING_DOWN: u16 = 5;
    /// We both have the whole content: this connection has nothing left to carry.
    pub const COMPLETE: u16 = 6;
}

/// The spec's name for a type byte ("UNKNOWN" if undefined).
pub fn type_name(t: u8) -> &'static str {
    match t {
        msg_type::KEEPALIVE => "KEEPALIVE",
        msg_type::HANDSHAKE => "HANDSHAKE",
        msg_type::METADATA => "METADATA",
        msg_type::MANIFEST_REQUEST => "MANIFEST_REQUEST",
        msg_type::MANIFEST_DATA => "MANIFEST_DATA",
        msg_type::BITFIELD => "BITFIELD",
        msg_type::HAVE => "HAVE",
        msg_type::REQUEST => "REQUEST",
        msg_type::PIECE => "PIECE",
        msg_type::CANCEL => "CANCEL",
        msg_type::REJECT => "REJECT",
        msg_type::CHOKE => "CHOKE",
        msg_type::UNCHOKE => "UNCHOKE",
        msg_type::INTERESTED => "INTERESTED",
        msg_type::NOT_INTERESTED => "NOT_INTERESTED",
        msg_type::PEERS => "PEERS",
        msg_type::ERROR => "ERROR",
        msg_type::PROBE => "PROBE",
        msg_type::RELAY => "RELAY",
        msg_type::RELAY_OK => "RELAY_OK",
        _ => "UNKNOWN",
    }
}

/// The spec's name for a REJECT reason ("UNKNOWN" if undefined).
pub fn reject_reason_name(reason: u8) -> &'static str {
    match reason {
        reject_reason::NOT_AVAILABLE => "NOT_AVAILABLE",
        reject_reason::CHOKED => "CHOKED",
        reject_reason::BUSY => "BUSY",
        reject_reason::CONTENT_CHANGED => "CONTENT_CHANGED",
        _ => "UNKNOWN",
    }
}

/// The spec's name for an ERROR code ("UNKNOWN" if undefined).
pub fn error_code_name(code: u16) -> &'static str {
    match code {
        error_code::UNKNOWN_CONTENT => "UNKNOWN_CONTENT",
        error_code::PROTOCOL_VIOLATION => "PROTOCOL_VIOLATION",
        error_code::BANNED => "BANNED",
        error_code::TOO_MANY_CONNECTIONS => "TOO_MANY_CONNECTIONS",
        error_code::SHUTTING_DOWN => "SHUTTING_DOWN",
        error_code::COMPLETE => "COMPLETE",
        _ => "UNKNOWN",
    }
}
