//! The connection rules a peer's frame is checked against before the engine acts on it
//! (wire.md section 3, rules 4 to 6). A frame that breaks one ends the connection with
//! ERROR PROTOCOL_VIOLATION: being lenient here would let two implementations silently
//! disagree about the state of a connection (issue 18 decided each case as strict, except
//! a REQUEST while choked, answered REJECT CHOKED by section 8).

use super::connection::Conn;
use crate::proto::wire::Message;

impl Conn {
    /// The rule `msg`, received on this handshaken connection, breaks, if any.
    pub(super) fn rule_broken(&self, msg: &Message) -> Option<&'static str> {
        let Some(bits) = &self.peer_bits else {
            // Rule 4: BITFIELD precedes every frame about chunks or choking.
            return match msg {
                Message::Have(_) => Some("HAVE before your BITFIELD"),
                Message::Request(_) => Some("REQUEST before your BITFIELD"),
                Message::Piece { .. } => Some("PIECE before your BITFIELD"),
                Message::Cancel(_) => Some("CANCEL before your BITFIELD"),
                Message::Reject { .. } => Some("REJECT before your BITFIELD"),
                Message::Choke => Some("CHOKE before your BITFIELD"),
                Message::Unchoke => Some("UNCHOKE before your BITFIELD"),
                Message::Interested => Some("INTERESTED before your BITFIELD"),
                Message::NotInterested => Some("NOT_INTERESTED before your BITFIELD"),
                Message::Metadata { .. } if self.got_metadata => Some("a second METADATA"),
                _ => None,
            };
        };
        // Rule 4: one BITFIELD; rule 6: METADATA once, before it.
        let index = match msg {
            Message::Bitfield(_) => return Some("a second BITFIELD"),
            Message::Metadata { .. } => return Some("METADATA after your BITFIELD"),
            // Section 4.8, rule 4: a peer asks for what we announced, and is interested in
            // what we have; both need our BITFIELD first (a node without the manifest has
            // announced nothing, and must not answer with a REJECT before its BITFIELD).
            Message::Request(_) | Message::Interested if !self.sent_bitfield => {
                return Some("REQUEST or INTERESTED before my BITFIELD")
            }
            Message::Have(i) | Message::Request(i) | Message::Cancel(i) => *i,
            Message::Piece { chunk, .. } | Message::Reject { chunk, .. } => *chunk,
            _ => return None,
        };
        // Rule 5: the peer's BITFIELD has the content's chunk count (checked against the
        // manifest when we have it).
        (index as usize >= bits.len()).then_some("chunk index past the content's last chunk")
    }
}
