//! The repeated parts of DHT datagram bodies (spec: `protocol-spec/dht.md`, section 4):
//! contact lists, rendezvous records, the length checks that keep decoding total, the
//! ANNOUNCE_MANY body, the flags a message implies, and the bytes a PROOF signs. Used by the
//! codec in [`super::dht`].

use std::net::SocketAddr;

use super::codec::{put_socket_addr, DecodeError, Reader};
use super::dht::{
    max_announce_keys, Contact, Datagram, Message, RendezvousRecord, FLAG_PROVIDER_IDS,
    FLAG_RENDEZVOUS, MAX_CONTACTS, MAX_RENDEZVOUS, NONCE_LEN, TOKEN_LEN,
};
use crate::id::{Id, ID_LEN};

/// The body of an ANNOUNCE_MANY (dht.md section 4.9a): 1 to 36 keys, or with
/// [`FLAG_RENDEZVOUS`] in `flags` 1 to 35 keys and the rendezvous after them.
pub(super) fn read_announce_many(r: &mut Reader<'_>, flags: u8) -> Result<Message, DecodeError> {
    let token = r.array::<TOKEN_LEN>("token")?;
    let port = r.u16("port")?;
    let rv = flags & FLAG_RENDEZVOUS != 0;
    let n = read_count(r, "key_count", max_announce_keys(rv))?;
    if n == 0 {
        return Err(DecodeError::InvalidValue {
            field: "key_count",
            reason: "0: an ANNOUNCE_MANY carries at least one key",
        });
    }
    check_fits(r, n, ID_LEN, "key_count")?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(r.id("key")?);
    }
    let rendezvous = if rv {
        Some(r.socket_addr("rendezvous")?)
    } else {
        None
    };
    Ok(Message::AnnounceMany {
        token,
        port,
        keys,
        rendezvous,
    })
}

/// A one-byte count, at most `max` (`LengthTooLarge` otherwise).
pub(super) fn read_count(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let n = usize::from(r.u8(field)?);
    if n > max {
        return Err(DecodeError::LengthTooLarge { field, len: n, max });
    }
    Ok(n)
}

pub(super) fn read_rendezvous(r: &mut Reader<'_>) -> Result<Vec<RendezvousRecord>, DecodeError> {
    let n = read_count(r, "rendezvous_count", MAX_RENDEZVOUS)?;
    // Each record is at least 7 + 32 + 7 bytes.
    check_fits(r, n, 7 + ID_LEN + 7, "rendezvous_count")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let provider = r.socket_addr("provider")?;
        let node = r.id("node_id")?;
        let rendezvous = r.socket_addr("rendezvous")?;
        v.push(RendezvousRecord {
            provider,
            node,
            rendezvous,
        });
    }
    Ok(v)
}

pub(super) fn put_contacts(out: &mut Vec<u8>, contacts: &[Contact]) {
    out.push(contacts.len().min(MAX_CONTACTS) as u8);
    for c in contacts.iter().take(MAX_CONTACTS) {
        out.extend_from_slice(&c.id.0);
        put_socket_addr(out, &c.addr);
    }
}

pub(super) fn contacts_len(contacts: &[Contact]) -> usize {
    1 + contacts
        .iter()
        .take(MAX_CONTACTS)
        .map(Contact::encoded_len)
        .sum::<usize>()
}

pub(super) fn check_fits(
    r: &Reader<'_>,
    n: usize,
    min_each: usize,
    field: &'static str,
) -> Result<(), DecodeError> {
    let need = n.saturating_mul(min_each);
    if need > r.remaining() {
        return Err(DecodeError::UnexpectedEnd {
            field,
            needed: need - r.remaining(),
        });
    }
    Ok(())
}

pub(super) fn read_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>, DecodeError> {
    let n = read_count(r, "contact_count", MAX_CONTACTS)?;
    check_fits(r, n, ID_LEN + 7, "contact_count")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.id("contact_id")?;
        let addr = r.socket_addr("contact_addr")?;
        v.push(Contact { id, addr });
    }
    Ok(v)
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a PROOF signs (dht.md section 4.10): a context string, then the verifier's nonce,
/// the prover's node ID, the verifier's node ID and the prover's address as the verifier
/// sent the PROVE to it (address encoding). Binding all four means a proof answers one
/// challenge, of one verifier, for one ID at one address, and says so in no other protocol.
pub fn proof_message(
    nonce: &[u8; NONCE_LEN],
    prover: &Id,
    verifier: &Id,
    addr: &SocketAddr,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROOF_CONTEXT.len() + NONCE_LEN + 2 * ID_LEN + 19);
    m.extend_from_slice(PROOF_CONTEXT);
    m.extend_from_slice(nonce);
    m.extend_from_slice(&prover.0);
    m.extend_from_slice(&verifier.0);
    put_socket_addr(&mut m, addr);
    m
}

/// The context string that opens every signed [`proof_message`].
pub const PROOF_CONTEXT: &[u8] = b"peershare-dht-proof:";

impl Datagram {
    /// The flags byte as encoded: [`FLAG_RENDEZVOUS`] on ANNOUNCE, ANNOUNCE_MANY and
    /// PROVIDERS, and [`FLAG_PROVIDER_IDS`] on PROVIDERS, say whether those parts are present,
    /// so they are taken from the message; every other bit is sent as given.
    pub fn wire_flags(&self) -> u8 {
        let set = |flags: u8, bit: u8, on: bool| if on { flags | bit } else { flags & !bit };
        match &self.msg {
            Message::Announce { rendezvous, .. } | Message::AnnounceMany { rendezvous, .. } => {
                set(self.flags, FLAG_RENDEZVOUS, rendezvous.is_some())
            }
            Message::Providers {
                rendezvous,
                provider_ids,
                ..
            } => set(
                set(self.flags, FLAG_RENDEZVOUS, rendezvous.is_some()),
                FLAG_PROVIDER_IDS,
                provider_ids.is_some(),
            ),
            _ => self.flags,
        }
    }
}
