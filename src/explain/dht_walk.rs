//! The layout of a DHT datagram (spec: `protocol-spec/dht.md`), in the order of
//! [`Datagram::decode`].

use super::line::{dht_line, line};
use super::walk::{ascii_or_hex, at_most, stop, Walk, Walker};
use super::{finish_message, message, Explanation, Status};
use crate::id::ID_LEN;
use crate::proto::codec::DecodeError;
use crate::proto::dht::{
    self, Datagram, MAX_ANNOUNCE_KEYS, MAX_CONTACTS, MAX_DATAGRAM, MAX_PROVIDERS,
};

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
    let flags = "bit 0 NOT_REACHABLE: keep the sender out of routing tables; bit 1 RENDEZVOUS \
                 (ANNOUNCE, ANNOUNCE_MANY, PROVIDERS: a rendezvous part follows); bit 2 PROVIDER_IDS \
                 (GET_PROVIDERS: send them; PROVIDERS: they follow); bit 3 PORTS_VARY \
                 (REGISTER, INTRODUCED: the registered node's NAT gives each destination \
                 another port); other bits reserved";
    let (_, flags) = w.int(1, "flags", "flags", flags, |f| flags_value(t, f))?;
    let rv = flags & u64::from(dht::FLAG_RENDEZVOUS) != 0;
    let ids = flags & u64::from(dht::FLAG_PROVIDER_IDS) != 0;
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
            if rv {
                rendezvous_records(w)?;
            }
            if ids {
                let m = "each provider's node ID, in the order of the providers (zeros: unknown)";
                w.list(n, "provider_ids", m, "provider_id", |w, _| {
                    let m = "the node ID a downloader expects at that provider's address";
                    w.id("provider_id", m).map(drop)
                })?;
            }
        }
        PROVE => {
            let m = "a fresh random challenge, signed back in the PROOF";
            w.bytes(dht::NONCE_LEN, "nonce", m)?;
            let m = "the address this PROVE was sent to (the prover's, as the verifier knows it)";
            w.address("addr", "addr", m)?;
        }
        PROOF => {
            let m = "the Ed25519 public key: its SHA-256 is the sender's node ID";
            w.bytes(dht::PUBLIC_KEY_LEN, "public_key", m)?;
            let m =
                "Ed25519 signature of \"peershare-dht-proof:\", nonce, prover ID, verifier ID, \
                     address";
            w.bytes(dht::SIGNATURE_LEN, "signature", m)?;
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
            if rv {
                let m = "the sender cannot be reached directly: its rendezvous (UDP)";
                w.address("rendezvous", "rendezvous", m)?;
            }
        }
        ANNOUNCE_MANY => {
            w.bytes(
                dht::TOKEN_LEN,
                "token",
                "a token from an earlier PROVIDERS answer of this node",
            )?;
            let m = "TCP port the contents are served on; 0 = the UDP source port";
            w.int(2, "port", "port", m, |p| match p {
                0 => "0 (the UDP source port)".into(),
                p => p.to_string(),
            })?;
            let at = w.pos();
            let (max, count, want) = if rv {
                let c = "number of keys that follow (1 to 35 with a rendezvous)";
                (dht::MAX_ANNOUNCE_KEYS_RENDEZVOUS, c, "1 to 35 keys")
            } else {
                (
                    MAX_ANNOUNCE_KEYS,
                    "number of keys that follow (1 to 36)",
                    "1 to 36 keys",
                )
            };
            let n = w.count("key_count", max, ID_LEN, count)?;
            if n == 0 {
                let e = DecodeError::InvalidValue {
                    field: "key_count",
                    reason: "0: an ANNOUNCE_MANY carries at least one key",
                };
                return Err(stop(e, at, want, 0));
            }
            let m = "the content IDs the sender provides";
            w.list(n, "keys", m, "key", |w, _| {
                w.id("key", "a content ID the sender provides").map(drop)
            })?;
            if rv {
                let m =
                    "the sender cannot be reached directly: its rendezvous (UDP), for every key";
                w.address("rendezvous", "rendezvous", m)?;
            }
        }
        STORED => {
            let m = "how many of the ANNOUNCE_MANY's keys were stored or refreshed";
            let (off, n) = w.num(1, "stored", m)?;
            at_most("stored", off, n, MAX_ANNOUNCE_KEYS)?;
        }
        DIALBACK => {
            let m = "echoed in the PROBE frame of the dial-back connection";
            w.int(8, "nonce", "nonce", m, |x| format!("0x{x:016x}"))?;
            w.num(2, "port", "the requester's wire (TCP) port to dial")?;
        }
        DIALBACK_ACK | CALL_ACK => {}
        REGISTER => {
            w.num(2, "port", "the requester's wire (TCP) port")?;
        }
        REGISTERED => {
            w.num(
                2,
                "lifetime",
                "seconds the registration lasts unless renewed",
            )?;
        }
        INTRODUCE => {
            w.id(
                "target",
                "the node to be introduced to (a client of the responder)",
            )?;
            w.num(2, "port", "the requester's wire (TCP) port")?;
        }
        INTRODUCED => {
            let m = "the target's UDP address as the rendezvous sees it";
            w.address("addr", "addr", m)?;
            w.num(2, "port", "the target's wire (TCP) port")?;
        }
        CALL => {
            let (moff, mode) = w.int(1, "mode", "mode", "1 PUNCH or 2 RELAY", |m| match m {
                1 => "1 PUNCH".into(),
                2 => "2 RELAY".into(),
                m => format!("{m} (undefined)"),
            })?;
            if mode != 1 && mode != 2 {
                let e = DecodeError::InvalidValue {
                    field: "mode",
                    reason: "neither 1 (PUNCH) nor 2 (RELAY)",
                };
                return Err(stop(e, moff, "1 (PUNCH) or 2 (RELAY)", mode));
            }
            let m = "RELAY: the circuit to join; PUNCH: 0";
            w.int(8, "nonce", "nonce", m, |x| format!("0x{x:016x}"))?;
            w.id("peer_id", "the peer that wants a connection (RELAY: zero)")?;
            w.address(
                "addr",
                "addr",
                "the peer's address as the rendezvous sees it",
            )?;
            w.num(2, "port", "the peer's wire (TCP) port (RELAY: 0)")?;
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
                "a defined type: 0x01 to 0x14, or 0x7f",
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

fn rendezvous_records(w: &mut Walker<'_>) -> Walk<()> {
    let count = "number of rendezvous records that follow (at most 20)";
    let n = w.count(
        "rendezvous_count",
        dht::MAX_RENDEZVOUS,
        7 + ID_LEN + 7,
        count,
    )?;
    let m = "providers that cannot be reached directly, with their rendezvous";
    w.list(n, "rendezvous", m, "record", |w, i| {
        let m = "a provider's address, its node ID, and its rendezvous";
        w.group(format!("record {}", i + 1), m, |w| {
            let p = w.address(
                "provider",
                "provider",
                "the provider's address (IP, TCP port)",
            )?;
            w.id("node_id", "the provider's node ID")?;
            let r = w.address("rendezvous", "rendezvous", "its rendezvous (UDP)")?;
            Ok(((), format!("{p} via {r}")))
        })
    })
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
        ANNOUNCE_MANY => {
            "record that the sender provides each of these keys (a reprovide sweep's batch). \
             Answered by STORED or ERROR"
        }
        STORED => "answers ANNOUNCE_MANY: how many of its keys were stored",
        PROVE => "prove you hold the key of your node ID. Answered by PROOF",
        PROOF => "answers PROVE: the public key and its signature of the challenge",
        DIALBACK => "connect back to me to test my reachability. Answered by DIALBACK_ACK",
        DIALBACK_ACK => "answers DIALBACK: a PROBE connection will be tried",
        REGISTER => "be my rendezvous. Answered by REGISTERED",
        REGISTERED => "answers REGISTER: the registration and its lifetime",
        INTRODUCE => "introduce me to your client. Answered by INTRODUCED",
        INTRODUCED => "answers INTRODUCE: where the client is",
        CALL => "a peer wants a connection: punch or join a relay. Answered by CALL_ACK",
        CALL_ACK => "answers CALL",
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
        5 => "UNKNOWN_PEER",
        6 => "RETRY_LATER",
        _ => "(undefined code)",
    }
}

/// The flags byte named: bits 1 to 3 mean something only on the types dht.md section 2
/// gives them, and are reserved (ignored) on the others.
fn flags_value(t: u8, f: u64) -> String {
    use dht::msg_type::{ANNOUNCE, ANNOUNCE_MANY, GET_PROVIDERS, INTRODUCED, PROVIDERS, REGISTER};
    let mut known = vec![(dht::FLAG_NOT_REACHABLE, "NOT_REACHABLE")];
    if matches!(t, ANNOUNCE | ANNOUNCE_MANY | PROVIDERS) {
        known.push((dht::FLAG_RENDEZVOUS, "RENDEZVOUS"));
    }
    if matches!(t, GET_PROVIDERS | PROVIDERS) {
        known.push((dht::FLAG_PROVIDER_IDS, "PROVIDER_IDS"));
    }
    if matches!(t, REGISTER | INTRODUCED) {
        known.push((dht::FLAG_PORTS_VARY, "PORTS_VARY"));
    }
    let mut names = Vec::new();
    let mut reserved = f;
    for (bit, name) in known {
        if f & u64::from(bit) != 0 {
            names.push(name.to_string());
            reserved &= !u64::from(bit);
        }
    }
    if reserved != 0 {
        names.push(format!("reserved bits 0x{reserved:02x} (ignored)"));
    }
    if names.is_empty() {
        names.push("(none)".into());
    }
    format!("0x{f:02x} {}", names.join(", "))
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
