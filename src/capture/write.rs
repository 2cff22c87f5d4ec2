//! Writing a capture: a pcapng file of raw IP packets (link type 101), and TCP segments
//! built from scratch, checksums included, for the decrypted copy of a capture that
//! `peershare decode --pcap --keylog -w` writes.

use std::net::{IpAddr, SocketAddr};

/// Link type of raw IP packets (IPv4 or IPv6, told by the first nibble).
pub const LINKTYPE_RAW: u16 = 101;

/// Most payload bytes [`ip_packet`] puts in one segment (an IPv4 packet's length is a u16).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_000;

/// A pcapng file being written in memory: one section, one interface of raw IP.
pub struct PcapngWriter {
    out: Vec<u8>,
}

impl Default for PcapngWriter {
    fn default() -> Self {
        PcapngWriter::new()
    }
}

impl PcapngWriter {
    /// The Section Header and Interface Description blocks (microsecond timestamps).
    pub fn new() -> PcapngWriter {
        let mut w = PcapngWriter { out: Vec::new() };
        let mut shb = Vec::new();
        shb.extend(0x1a2b_3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes()); // version 1.0
        shb.extend(0u16.to_le_bytes());
        shb.extend(u64::MAX.to_le_bytes()); // section length not given
        w.block(0x0a0d_0d0a, &shb);
        let mut idb = Vec::new();
        idb.extend(LINKTYPE_RAW.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(0u32.to_le_bytes()); // no snap length
        w.block(1, &idb);
        w
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        self.out.extend(kind.to_le_bytes());
        self.out.extend(len.to_le_bytes());
        self.out.extend(body);
        self.out.extend(&[0u8; 3][..pad]);
        self.out.extend(len.to_le_bytes());
    }

    /// Appends an Enhanced Packet Block holding `data` (an IP packet), at time `micros`.
    pub fn packet(&mut self, micros: u64, data: &[u8]) {
        let mut b = Vec::with_capacity(20 + data.len());
        b.extend(0u32.to_le_bytes());
        b.extend(((micros >> 32) as u32).to_le_bytes());
        b.extend((micros as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend(data);
        self.block(6, &b);
    }

    /// The file's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// An IP packet (IPv4 when both addresses are, else IPv6) holding one TCP segment: `seq`,
/// `ack` (sent when `flags` has ACK), the flags, a window of 65535 and `payload` (at most
/// [`MAX_SEGMENT_PAYLOAD`] bytes; the rest is cut). Checksums are right.
pub fn ip_packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let payload = payload.get(..MAX_SEGMENT_PAYLOAD).unwrap_or(payload);
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend(src.port().to_be_bytes());
    tcp.extend(dst.port().to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(ack.to_be_bytes());
    tcp.extend([5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend(payload);
    let tcp_len = tcp.len() as u32;
    let (mut out, pseudo) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend(((20 + tcp.len()) as u16).to_be_bytes());
            h.extend([0, 0, 0x40, 0, 64, 6, 0, 0]); // id 0, don't fragment, TTL 64, TCP
            h.extend(s.octets());
            h.extend(d.octets());
            let c = checksum(0, &h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend(s.octets());
            pseudo.extend(d.octets());
            pseudo.extend([0, 6]);
            pseudo.extend((tcp_len as u16).to_be_bytes());
            (h, pseudo)
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            let mut h = vec![0x60, 0, 0, 0];
            h.extend((tcp.len() as u16).to_be_bytes());
            h.extend([6, 64]);
            h.extend(v6(s));
            h.extend(v6(d));
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend(v6(s));
            pseudo.extend(v6(d));
            pseudo.extend(tcp_len.to_be_bytes());
            pseudo.extend([0, 0, 0, 6]);
            (h, pseudo)
        }
    };
    let c = checksum(sum(0, &pseudo), &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    out.extend(tcp);
    out
}

/// The ones'-complement sum of 16-bit words (RFC 1071), carried.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    for w in data.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        acc += hi | u32::from(w.get(1).copied().unwrap_or(0));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum of `data`, after `acc` (a partial sum: a pseudo-header's).
fn checksum(acc: u32, data: &[u8]) -> u16 {
    !(sum(acc, data) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let p = ip_packet(
            "10.0.0.1:1234".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            7,
            9,
            0x18,
            b"abc",
        );
        // A header with its checksum sums to 0xffff.
        assert_eq!(sum(0, &p[..20]), 0xffff);
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend([0, 6, 0, 23]);
        assert_eq!(sum(sum(0, &pseudo), &p[20..]), 0xffff);
        // RFC 1071's example words sum to 0xddf2.
        assert_eq!(sum(0, &[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }
}
