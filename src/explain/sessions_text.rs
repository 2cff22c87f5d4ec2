//! The text `peershare decode --pcap` prints for a [`CaptureReport`].

use std::fmt::{self, Write as _};

use super::sessions::{CaptureReport, DirectionReport, Keys, SessionKind, SessionReport};
use super::Field;

impl fmt::Display for CaptureReport {
    /// A summary of the capture, then each TCP connection: for a secure session its
    /// handshake messages as field tables, then per direction its records and the wire
    /// frames they carry (when opened) as `peershare decode` explains frames.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secure = self
            .sessions
            .iter()
            .filter(|s| s.kind == SessionKind::Secure)
            .count();
        writeln!(
            f,
            "capture: {} packets: {} TCP connection(s), {secure} of them secure sessions; {} UDP datagram(s) (the DHT's, not encrypted: `peershare decode HEX` explains one)",
            self.packets,
            self.sessions.len(),
            self.udp_datagrams
        )?;
        for (why, first, n) in &self.skipped {
            writeln!(
                f,
                "  skipped: {n} packet(s) ({why}), the first is packet {first}"
            )?;
        }
        match self.keylog_entries {
            Some(n) => writeln!(f, "key log: {n} session key line(s)")?,
            None => writeln!(
                f,
                "no key log (--keylog FILE, written by a node run with PEERSHARE_KEYLOG=FILE): records stay ciphertext"
            )?,
        }
        for s in &self.sessions {
            writeln!(f)?;
            session(f, s)?;
        }
        Ok(())
    }
}

fn session(f: &mut fmt::Formatter<'_>, s: &SessionReport) -> fmt::Result {
    let (c, i, r) = (s.connection, s.initiator, s.responder);
    let what = match s.kind {
        SessionKind::Secure => "a secure session (protocol-spec/secure.md)",
        SessionKind::Plaintext => {
            "wire frames in clear (a PROBE or RELAY, secure.md section 5, or a version 1 peer)"
        }
        SessionKind::Other => "not a PeerShare session (no msg1, no frame in clear)",
    };
    writeln!(f, "=== TCP connection {c}: {i} -> {r}: {what}")?;
    if s.kind == SessionKind::Secure {
        let e = s.ephemeral.as_deref().unwrap_or("?");
        let keys = match s.keys {
            Keys::Found => "its keys are in the key log: the records are opened below",
            Keys::NotInKeyLog => "its keys are not in the key log: the records stay ciphertext",
            Keys::NoKeyLog => "no key log: the records stay ciphertext",
            Keys::NotApplicable => "",
        };
        match s.cipher {
            Some(c) => writeln!(f, "session {e}: {keys} (records: {c})")?,
            None => writeln!(f, "session {e}: {keys}")?,
        }
        for m in &s.handshake {
            writeln!(f)?;
            let (name, from, p) = (m.name, m.from, m.packet);
            let n = m.hex.len() / 2;
            let what = match name {
                "msg1" => "-> e, HELLO: in clear",
                "msg2" => "<- e, ee, s, es: the static key and identity proof encrypted",
                _ => "-> s, se: the static key and identity proof encrypted",
            };
            writeln!(
                f,
                "handshake {name} from {from}, packet {p}, {n} bytes ({what})"
            )?;
            table(f, &m.fields)?;
        }
        if s.keys == Keys::Found {
            writeln!(f, "(the handshake's own keys are not in the key log: the encrypted static keys and identity proofs stay hidden even with it; the HANDSHAKE frame inside the records names the node IDs they proved)")?;
        }
    }
    for d in &s.directions {
        writeln!(f)?;
        direction(f, s, d)?;
    }
    Ok(())
}

fn direction(f: &mut fmt::Formatter<'_>, s: &SessionReport, d: &DirectionReport) -> fmt::Result {
    let (from, to) = (d.from, d.to);
    if s.kind != SessionKind::Secure {
        writeln!(f, "--- {from} -> {to}: {} byte(s)", d.stream_len)?;
    } else {
        let wire: usize = d.records.iter().map(|r| r.len).sum();
        let opened = d.records.iter().filter(|r| r.plain.is_some()).count();
        write!(
            f,
            "--- {from} -> {to}: {} record(s), {wire} bytes on the wire (ciphertext)",
            d.records.len()
        )?;
        if opened > 0 {
            write!(
                f,
                "; {opened} opened into {} bytes of wire frames",
                d.plaintext.len()
            )?;
        }
        writeln!(f)?;
        if !d.records.is_empty() {
            let head = if opened > 0 {
                "  record  packet  offset  length  plaintext (offset+length in the frames below)"
            } else {
                "  record  packet  offset  length"
            };
            writeln!(f, "{head}")?;
        }
        for r in &d.records {
            let mut line = format!(
                "  {:>6}  {:>6}  {:>6}  {:>6}",
                r.number, r.packet, r.offset, r.len
            );
            if let Some((o, n)) = r.plain {
                let _ = write!(line, "  {o}+{n}");
            }
            writeln!(f, "{line}")?;
        }
    }
    if let Some(why) = &d.stopped {
        writeln!(f, "  stopped: {why}")?;
    }
    if let Some(ex) = &d.frames {
        if s.kind == SessionKind::Secure {
            writeln!(f, "the decrypted wire frames (offsets in the plaintext):")?;
        }
        write!(f, "{ex}")?;
    }
    Ok(())
}

fn table(f: &mut fmt::Formatter<'_>, fields: &[Field]) -> fmt::Result {
    let name_w = fields
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let value_w = fields
        .iter()
        .map(|x| x.value.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 66);
    let (o, l, n, v) = ("offset", "len", "field", "value");
    writeln!(f, "{o:>6}  {l:>3}  {n:name_w$}  {v:value_w$}  meaning")?;
    for x in fields {
        let (o, l, n, v, m) = (x.offset, x.len, &x.name, &x.value, &x.meaning);
        writeln!(f, "{o:>6}  {l:>3}  {n:name_w$}  {v:value_w$}  {m}")?;
    }
    Ok(())
}
