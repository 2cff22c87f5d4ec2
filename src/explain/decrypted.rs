//! The decrypted copy of a capture (`peershare decode --pcap --keylog -w OUT`): every packet
//! of the capture, in order and at its time, except that each secure session whose keys are
//! in the key log becomes a plaintext TCP connection between the same addresses: its SYN,
//! FIN and RST where the capture has them, and, at each packet that completed records, one
//! segment carrying their plaintext. The handshake messages and pure ACKs are left out, so
//! the connection reads as the wire frames of wire.md from its first byte, and Wireshark's
//! PeerShare dissector (tools/wireshark) shows them as frames.
//!
//! The file is pcapng of raw IP packets (link type 101): the link layer is dropped, UDP and
//! other TCP packets are copied as captured; packets that are not IP are left out.

use super::sessions::{CaptureReport, DirectionReport, Keys, SessionKind};
use crate::capture::{
    ip_packet, link_payload, Direction, Packet, PcapngWriter, Reassembled, MAX_SEGMENT_PAYLOAD,
    TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

/// TCP flag PSH, on segments that carry data.
const TCP_PSH: u8 = 0x08;

/// The decrypted capture's bytes, and how many sessions were turned into plaintext.
pub fn write_decrypted(
    packets: &[Packet<'_>],
    r: &Reassembled,
    report: &CaptureReport,
) -> (Vec<u8>, usize) {
    // (packet number, order within it, time, IP packet) of every rewritten session.
    let mut made: Vec<(usize, usize, u64, Vec<u8>)> = Vec::new();
    let mut replaced = std::collections::HashSet::new();
    let mut sessions = 0;
    for (c, s) in r.connections.iter().zip(&report.sessions) {
        if s.kind != SessionKind::Secure || s.keys != Keys::Found {
            continue;
        }
        // The report's directions by sender; the connection's by client (0) and server (1).
        let ends = [c.client, c.server];
        let Some(reports) = ends
            .iter()
            .map(|a| s.directions.iter().find(|d| d.from == *a))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        sessions += 1;
        replaced.extend(c.packets.iter().copied());
        for k in 0..2 {
            let (d, rep) = (&c.dirs[k], reports[k]);
            let (other, other_rep) = (&c.dirs[1 - k], reports[1 - k]);
            let (src, dst) = (ends[k], ends[1 - k]);
            let isn = d.isn.unwrap_or(0).wrapping_add(1);
            let other_isn = other.isn.unwrap_or(0).wrapping_add(1);
            let mut sent = 0usize;
            for m in &d.marks {
                let ack = other_isn.wrapping_add(plain_at(other, other_rep, m.packet) as u32);
                let order = made.len();
                if m.flags & TCP_SYN != 0 {
                    let flags = if k == 0 { TCP_SYN } else { TCP_SYN | TCP_ACK };
                    let p = ip_packet(src, dst, isn.wrapping_sub(1), ack, flags, &[]);
                    made.push((m.packet, order, m.micros, p));
                }
                let avail = plain_upto(rep, m.end);
                let new = rep.plaintext.get(sent..avail).unwrap_or_default();
                for chunk in new.chunks(MAX_SEGMENT_PAYLOAD) {
                    let seq = isn.wrapping_add(sent as u32);
                    let p = ip_packet(src, dst, seq, ack, TCP_ACK | TCP_PSH, chunk);
                    made.push((m.packet, made.len(), m.micros, p));
                    sent += chunk.len();
                }
                if m.flags & (TCP_FIN | TCP_RST) != 0 {
                    let flags = m.flags & (TCP_FIN | TCP_RST) | TCP_ACK;
                    let p = ip_packet(src, dst, isn.wrapping_add(sent as u32), ack, flags, &[]);
                    made.push((m.packet, made.len(), m.micros, p));
                }
            }
        }
    }
    made.sort_by_key(|(packet, order, ..)| (*packet, *order));
    let mut w = PcapngWriter::new();
    let mut next = made.iter().peekable();
    for p in packets {
        while let Some((_, _, t, ip)) = next.next_if(|m| m.0 <= p.number) {
            w.packet(*t, ip);
        }
        if replaced.contains(&p.number) {
            continue;
        }
        if let Ok(ip) = link_payload(p.linktype, p.data) {
            w.packet(p.micros, ip);
        }
    }
    for (_, _, t, ip) in next {
        w.packet(*t, ip);
    }
    (w.finish(), sessions)
}

/// Plaintext bytes of the records that end at or before byte `end` of the direction.
fn plain_upto(rep: &DirectionReport, end: usize) -> usize {
    rep.records
        .iter()
        .take_while(|r| r.offset + r.len <= end)
        .filter_map(|r| r.plain)
        .last()
        .map_or(0, |(o, n)| o + n)
}

/// Plaintext bytes of the direction available once packet `packet` was captured.
fn plain_at(d: &Direction, rep: &DirectionReport, packet: usize) -> usize {
    let end = d
        .marks
        .iter()
        .take_while(|m| m.packet <= packet)
        .last()
        .map_or(0, |m| m.end);
    plain_upto(rep, end)
}
