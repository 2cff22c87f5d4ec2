//! One-line forms of decoded messages, shared by [`super::summarize`] and the summaries of an
//! explanation: `PING tx=0102… from=1111…`. IDs are cut to their first 4 hex digits.

use std::fmt::{self, Write as _};

use super::dht_walk::dht_error_name;
use super::walk::quote;
use crate::content::content_manifest::ManifestKind;
use crate::content::manifest::Manifest;
use crate::content::tree::TreeManifest;
use crate::proto::dht::{self, Datagram};
use crate::proto::wire;

/// A new line, written by `f`.
pub(super) fn line(f: impl FnOnce(&mut String)) -> String {
    let mut s = String::with_capacity(96);
    f(&mut s);
    s
}

/// The line of a decoded datagram: type, txid, sender, then what the body says.
pub(super) fn dht_line(s: &mut String, d: &Datagram) {
    use dht::Message as M;
    let (tx, from) = (d.txid.to_be_bytes(), Short(&d.sender.0));
    let _ = write!(s, "{} tx={} from={from}", d.msg.name(), Short(&tx));
    let _ = match &d.msg {
        M::Ping | M::Ack => Ok(()),
        M::Pong { observed } => write!(s, " observed={observed}"),
        M::FindNode { target } => write!(s, " target={}", Short(&target.0)),
        M::Nodes { contacts } => write!(s, " contacts={}", contacts.len()),
        M::GetProviders { key } => write!(s, " key={}", Short(&key.0)),
        M::Providers {
            providers, closer, ..
        } => {
            write!(s, " providers={} closer={}", providers.len(), closer.len())
        }
        M::Announce { key, port, .. } => write!(s, " key={} port={port}", Short(&key.0)),
        M::AnnounceMany {
            keys,
            port,
            rendezvous,
            ..
        } => write!(s, " keys={} port={port}", keys.len()).and_then(|()| match rendezvous {
            Some(rv) => write!(s, " rendezvous={rv}"),
            None => Ok(()),
        }),
        M::Stored { stored } => write!(s, " stored={stored}"),
        M::Prove { addr, .. } => write!(s, " addr={addr}"),
        M::Proof { public, .. } => write!(s, " key={}", Short(public)),
        M::DialbackAck | M::CallAck => Ok(()),
        M::Dialback { nonce, port } => write!(s, " nonce={nonce:016x} port={port}"),
        M::Register { port } => write!(s, " port={port}"),
        M::Registered { lifetime } => write!(s, " lifetime={lifetime}s"),
        M::Introduce { target, port } => write!(s, " target={} port={port}", Short(&target.0)),
        M::Introduced { addr, port } => write!(s, " addr={addr} port={port}"),
        M::Call {
            mode, peer, addr, ..
        } => write!(s, " mode={mode} peer={} addr={addr}", Short(&peer.0)),
        M::Error { code, text } => {
            let name = dht_error_name(u64::from(*code));
            write!(s, " code={code} {name}{}", Quoted(text))
        }
    };
    if d.flags & dht::FLAG_NOT_REACHABLE != 0 {
        s.push_str(" NOT_REACHABLE");
    }
}

/// The line of a decoded wire message.
pub(super) fn wire_line(s: &mut String, m: &wire::Message) {
    use wire::Message as M;
    s.push_str(m.name());
    let _ = match m {
        M::KeepAlive | M::Choke | M::Unchoke | M::Interested | M::NotInterested => Ok(()),
        M::Handshake(h) => {
            let (n, c) = (Short(&h.node_id.0), Short(&h.content_id.0));
            write!(s, " node={n} content={c} port={}", h.listen_port)
        }
        M::Metadata { name } => write!(s, " name={}", quote(name, 40)),
        M::ManifestRequest { offset, length } => write!(s, " off={offset} len={length}"),
        M::ManifestData {
            total_len,
            offset,
            data,
        } => {
            // The first piece says which kind of manifest travels (content.md section 10).
            let kind = match (offset, crate::content::content_manifest::kind_of(data)) {
                (0, Some(ManifestKind::File)) => " (a file's manifest)",
                (0, Some(ManifestKind::Tree)) => " (a folder's tree manifest)",
                _ => "",
            };
            write!(
                s,
                " total={total_len} off={offset} len={}{kind}",
                data.len()
            )
        }
        M::Bitfield(b) => write!(s, " have={}/{}", b.count_ones(), b.len()),
        M::Have(c) | M::Request(c) | M::Cancel(c) => write!(s, " chunk={c}"),
        M::Piece { chunk, data } => write!(s, " chunk={chunk} len={}", data.len()),
        M::Reject { chunk, reason } => {
            write!(
                s,
                " chunk={chunk} reason={}",
                wire::reject_reason_name(*reason)
            )
        }
        M::Peers(p) => write!(s, " n={}", p.len()),
        M::Probe(nonce) => write!(s, " nonce={nonce:016x}"),
        M::Relay { node, nonce } => write!(s, " node={} nonce={nonce:016x}", Short(&node.0)),
        M::RelayOk => Ok(()),
        M::Error { code, text } => {
            write!(
                s,
                " code={code} {}{}",
                wire::error_code_name(*code),
                Quoted(text)
            )
        }
    };
}

/// The line of a decoded manifest: sizes, chunk count, content ID.
pub(super) fn manifest_line(s: &mut String, m: &Manifest) {
    let l = m.lengths();
    let (size, cs, n) = (l.total(), l.chunk_size(), l.chunk_count());
    let id = Short(&m.content_id().0);
    let _ = write!(s, "MANIFEST size={size} chunk_size={cs} chunks={n} id={id}");
}

/// The line of a decoded tree manifest: entries, files, total size, chunks, content ID.
pub(super) fn tree_line(s: &mut String, t: &TreeManifest) {
    let (entries, files) = (t.entries().len(), t.file_count());
    let (size, chunks, id) = (t.total_size(), t.chunk_count(), Short(&t.content_id().0));
    let _ = write!(
        s,
        "TREE entries={entries} files={files} size={size} chunks={chunks} id={id}"
    );
}

/// Bytes as their first 2 in hex and an ellipsis: enough to tell IDs apart in a log line.
struct Short<'a>(&'a [u8]);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in self.0.iter().take(2) {
            write!(f, "{x:02x}")?;
        }
        if self.0.len() > 2 {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Text for a one-line form: nothing if empty, else a space and the quoted text, cut short.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, " {}", quote(self.0, 40))
    }
}
