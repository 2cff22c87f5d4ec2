//! The layout of a DHT datagram (spec: `protocol-spec/dht.md`), in the order of
//! [`Datagram::decode`].

use super::line::{dht_line, line};
use super::walk::{ascii_or_hex, stop, Walk, Walker};
use super::{finish_message, message, Explanation, Status};
use crate::id::ID_LEN;
use crate::proto::codec::DecodeError;
use crate::proto::dht::{self, Datagram, MAX_CONTACTS, MAX_DATAGRAM, MAX_PROVIDERS};

/// Explains one DHT datagram: the decoder's verdict, and the layout of [`walk_dht`].
pub(super) fn explain_dht(input: &[u8], ex: &mut Explanation) {
    let verdict = Datagram::decode(input);
    let mut w = Walker::new(input, 0, "datagram");
    let mut t = None;
    let walk = walk_dht(&mut w, &mut t);
    let (status, summary, notes) = match &verdict {
        Ok(d) => (Status::Valid, line(|s| dht_line(s, d)), dht_notes(d)),
        Err(e) => (Status::Malformed, format!("malformed: {e}"), Vec::new()),
    };
    let m = message(
        t.map_or("?", dht::type_name),
        status,
        summary,
        notes,
        input.len(),
    );
    finish_message(ex, verdict.map(drop), walk, w, m);
}

/// The layout of [`Datagram::decode`], in its order: size, magic, version, the rest of the
/// header, the type, the body, trailing bytes.
fn walk_dht(w: &mut Walker<'_>, t_out: &mut Option<u8>) -> Walk<()> {
    let len = w.region.len();
    if len > MAX_DATAGRAM {
        let mut s = stop(
            DecodeError::TooLarge {
                len,
                max: MAX_DATAGRAM,
            },
            0,
            "",
            len,
        );
        s.field = "(whole datagram)".into();
        s.expected = format!("at most {MAX_DATAGRAM} bytes (MAX_DATAGRAM), checked first");
        return Err(s);
    }
    let (_, magic) = w.take(2, "magic", "magic")?;
    w.push(
        0,
        2,
        "magic",
        ascii_or_hex(magic),
        "\"PS\": a PeerShare DHT datagram",
    );
    let magic = <[u8; 2]>::try_from(magic).unwrap_or_default();
    if magic != dht::MAGIC {
        let found = hex::encode(magic);
        return Err(stop(
            DecodeError::BadMagic(magic),
            0,
            "50 53 (\"PS\")",
            found,
        ));
    }
    let (voff, v) = w.num(1, "version", "protocol version: 1, the only one defined")?;
    if v != u64::from(dht::VERSION) {
        let v = u8::try_from(v).unwrap_or(u8::MAX);
        return Err(stop(DecodeError::UnsupportedVersion(v), voff, "1", v));
    }
    let (toff, t) = w.take(1, "type", "type")?;
    let t = t.first().copied().unwrap_or(0);
    if dht::type_name(t) != "UNKNOWN" {
        *t_out = Some(t);
    }
    w.push(toff, 1, "type", dht_type_value(t), dht_type_meaning(t));
    let flags = "bit 0 NOT_REACHABLE: keep the sender out of routing tables; bits 1-7 reserved";
    w.int(1, "flags", "flags", flags, flags_value)?;
    let txid = "transaction ID: chosen by the requester, echoed in the response";
    w.int(8, "txid", "txid", txid, |x| format!("0x{x:016x}"))?;
    w.id("sender_id", "the sender's node ID")?;
    use dht::msg_type::*;
    match t {
        PING | ACK => {}
        PONG => {
            let m =
                "the PING's source address as the responder saw it: the requester's public address";
            w.address("observed", "observed", m)?;
        }
        FIND_NODE => w.id("target", "the ID whose closest nodes are wanted")?,
        GET_PROVIDERS => w.id("key", "the content ID whose providers are wanted")?,
        NODES => contacts(
            w,
            "the responder's contacts closest to the target, closest first",
        )?,
        PROVIDERS => {
            let token = "lets the requester's address ANNOUNCE here for 5 to 10 minutes";
            w.bytes(dht::TOKEN_LEN, "token", token)?;
            let count = "number of provider addresses that follow (at most 50)";
            let n = w.count("provider_count", MAX_PROVIDERS, 7, count)?;
            let m = "where nodes serve the key (0.0.0.0: the responder itself)";
            w.list(n, "providers", m, "provider", |w, i| {
                let name = format!("provider {}", i + 1);
                w.address(
                    "provider",
                    name,
                    "an address that serves the key (IP, TCP port)",
                )
                .map(drop)
            })?;
            contacts(
                w,
                "contacts closer to the key, closest first, for the lookup to go on",
            )?;
        }
        ANNOUNCE => {
            w.id("key", "the content ID the sender provides")?;
            w.bytes(
                dht::TOKEN_LEN,
                "token",
                "a token from an earlier PROVIDERS answer of this node",
            )?;
            let m = "TCP port the content is served on; 0 = the UDP source port";
            w.int(2, "port", "port", m, |p| match p {
                0 => "0 (the UDP source port)".into(),
                p => p.to_string(),
            })?;
        }
        ERROR => {
            let m = "why the request failed";
            w.int(2, "error_code", "error_code", m, |c| {
                format!("{c} {}", dht_error_name(c))
            })?;
            w.text(
                "text_len",
                "text",
                dht::MAX_ERROR_TEXT,
                "human-readable explanation, UTF-8",
            )?;
        }
        other => {
            let (exp, found) = (
                "a defined type: 0x01 to 0x08, or 0x7f",
                format!("0x{other:02x}"),
            );
            return Err(stop(
                DecodeError::UnknownMessageType(other),
                toff,
                exp,
                found,
            ));
        }
    }
    w.finish()
}

fn contacts(w: &mut Walker<'_>, meaning: &'static str) -> Walk<()> {
    let count = "number of contacts that follow (at most 20)";
    let n = w.count("contact_count", MAX_CONTACTS, ID_LEN + 7, count)?;
    w.list(n, "contacts", meaning, "contact", |w, i| {
        let m = "a node: its 32-byte ID, then its UDP address";
        w.group(format!("contact {}", i + 1), m, |w| {
            let (off, b) = w.take(ID_LEN, "contact_id", "id")?;
            let id = hex::encode(b);
            let value = format!("{}… at ", id.get(..8).unwrap_or_default());
            w.push(off, ID_LEN, "id", id, "the node's ID");
            let a = w.address("contact_addr", "address", "where the node answers (UDP)")?;
            Ok(((), format!("{value}{a}")))
        })
    })
}

fn dht_type_value(t: u8) -> String {
    match dht::type_name(t) {
        "UNKNOWN" => format!("0x{t:02x} (undefined)"),
        name if dht::is_request_type(t) => format!("0x{t:02x} {name} (request)"),
        name => format!("0x{t:02x} {name} (response)"),
    }
}

fn dht_type_meaning(t: u8) -> &'static str {
    use dht::msg_type::*;
    match t {
        PING => "are you there? Answered by PONG",
        PONG => "answers PING with the address the PING came from",
        FIND_NODE => "which nodes do you know closest to the target? Answered by NODES",
        NODES => "answers FIND_NODE: up to 20 contacts, closest first",
        GET_PROVIDERS => "who provides this key? Answered by PROVIDERS",
        PROVIDERS => "answers GET_PROVIDERS: a token, providers, closer contacts",
        ANNOUNCE => "record that the sender provides this key. Answered by ACK or ERROR",
        ACK => "answers ANNOUNCE: the provider record is stored",
        ERROR => "answers any request: why it failed",
        _ => "not a defined message type",
    }
}

/// The spec's name for a DHT ERROR code (dht.md, section 4.9).
pub(super) fn dht_error_name(code: u64) -> &'static str {
    match code {
        1 => "BAD_REQUEST",
        2 => "BAD_TOKEN",
        3 => "STORE_FULL",
        4 => "RATE_LIMITED",
        _ => "(undefined code)",
    }
}

fn flags_value(f: u64) -> String {
    let nr = u64::from(dht::FLAG_NOT_REACHABLE);
    match (f & nr != 0, f & !nr) {
        (false, 0) => format!("0x{f:02x} (none)"),
        (true, 0) => format!("0x{f:02x} NOT_REACHABLE"),
        (true, r) => format!("0x{f:02x} NOT_REACHABLE, reserved bits 0x{r:02x} (ignored)"),
        (false, r) => format!("0x{f:02x} reserved bits 0x{r:02x} (ignored)"),
    }
}

fn dht_notes(d: &Datagram) -> Vec<String> {
    let mut notes = Vec::new();
    if d.flags & dht::FLAG_NOT_REACHABLE != 0 {
        notes.push(
            "the sender is not reachable: receivers must not add it to routing tables".into(),
        );
    }
    if d.msg.is_request() {
        let tx = d.txid;
        notes.push(format!(
            "a request: the answer echoes txid 0x{tx:016x} and goes to its source address"
        ));
    }
    notes
}
