//! TCP connections of a capture, each direction reassembled by sequence number: segments
//! out of order are held until the gap before them fills, retransmitted bytes are taken once,
//! and a gap the capture never fills (a lost packet) ends that direction's bytes, said
//! plainly. Which packet made which bytes available is kept ([`Mark`]), so a tool can say in
//! which packet a message arrived and write a new capture along the old one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::file::Packet;
use super::packet::{parse_packet, Skip, Transport, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Out-of-order segments held per direction; past this, the direction stops at its gap.
pub const MAX_PENDING_SEGMENTS: usize = 4096;

/// The packets of a capture sorted out.
#[derive(Debug, Default)]
pub struct Reassembled {
    /// TCP connections, in the order of their first packet.
    pub connections: Vec<Connection>,
    /// UDP datagrams: (packet number, source, destination, payload range in the packet).
    pub datagrams: Vec<(usize, SocketAddr, SocketAddr, std::ops::Range<usize>)>,
    /// Packets that are neither, with the reason, by count (first packet number, count).
    pub skipped: BTreeMap<String, (usize, usize)>,
    /// Packets in the capture.
    pub packets: usize,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Connection {
    /// Its number, from 1, in the order connections appear.
    pub number: usize,
    /// The side that sent the SYN (or, without one in the capture, the first packet).
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// True when the capture holds the SYN (the stream's first byte is known).
    pub saw_syn: bool,
    /// Client to server, then server to client.
    pub dirs: [Direction; 2],
    /// Every packet of the connection, by number.
    pub packets: Vec<usize>,
}

/// One direction's bytes, in order.
#[derive(Debug, Default)]
pub struct Direction {
    /// The bytes, from the first after the SYN (or the first captured), up to a gap.
    pub bytes: Vec<u8>,
    /// For each packet that added bytes or carried SYN, FIN or RST: what it did.
    pub marks: Vec<Mark>,
    /// Set when the capture lost a segment: the offset of the first missing byte. Nothing
    /// after it is in `bytes`.
    pub gap: Option<usize>,
    /// The initial sequence number (the SYN's, or one before the first byte captured).
    pub isn: Option<u32>,
    pending: BTreeMap<u64, Vec<u8>>,
}

/// What one packet did to a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The packet.
    pub packet: usize,
    /// Capture time, microseconds.
    pub micros: u64,
    /// `bytes.len()` after it.
    pub end: usize,
    /// Its SYN, FIN and RST flags.
    pub flags: u8,
}

impl Direction {
    /// Adds a segment's payload at sequence number `seq`; returns whether bytes were added.
    fn add(&mut self, seq: u32, payload: &[u8]) -> bool {
        let isn = *self.isn.get_or_insert(seq.wrapping_sub(1));
        // Offset of the segment in the stream; far "after" means before the start (an old
        // retransmission): dropped.
        let off = u64::from(seq.wrapping_sub(isn).wrapping_sub(1));
        if off >= 1 << 31 || payload.is_empty() || self.gap.is_some() {
            return false;
        }
        let before = self.bytes.len();
        self.put(off, payload);
        while let Some((&o, _)) = self.pending.first_key_value() {
            if o > self.bytes.len() as u64 {
                break;
            }
            if let Some((o, p)) = self.pending.pop_first() {
                self.put(o, &p);
            }
        }
        self.bytes.len() > before
    }

    fn put(&mut self, off: u64, payload: &[u8]) {
        let have = self.bytes.len() as u64;
        if off <= have {
            let skip = usize::try_from(have - off).unwrap_or(usize::MAX);
            if let Some(new) = payload.get(skip..) {
                self.bytes.extend_from_slice(new);
            }
        } else if self.pending.len() < MAX_PENDING_SEGMENTS {
            let e = self.pending.entry(off).or_default();
            if payload.len() > e.len() {
                *e = payload.to_vec();
            }
        } else {
            self.gap = Some(self.bytes.len());
        }
    }

    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.gap = Some(self.bytes.len());
            self.pending.clear();
        }
    }
}

/// Sorts the packets of a capture into TCP connections (reassembled) and UDP datagrams.
pub fn reassemble(packets: &[Packet<'_>]) -> Reassembled {
    let mut r = Reassembled {
        packets: packets.len(),
        ..Default::default()
    };
    // The current connection of each pair of endpoints (a port reused later is a new one).
    let mut current: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    for p in packets {
        let seg = match parse_packet(p.linktype, p.data) {
            Ok(s) => s,
            Err(skip) => {
                skip_one(&mut r, p.number, skip);
                continue;
            }
        };
        let (seq, flags, payload) = match seg.transport {
            Transport::Udp(payload) => {
                let start = payload.as_ptr() as usize - p.data.as_ptr() as usize;
                r.datagrams
                    .push((p.number, seg.src, seg.dst, start..start + payload.len()));
                continue;
            }
            Transport::Tcp {
                seq,
                flags,
                payload,
            } => (seq, flags, payload),
        };
        let key = if seg.src < seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let syn_only = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        let idx = match current.get(&key) {
            // A new SYN on a pair whose connection already carried data or ended: a new one.
            Some(&i) if !(syn_only && r.connections.get(i).is_some_and(used)) => i,
            _ => {
                let i = r.connections.len();
                r.connections.push(Connection {
                    number: i + 1,
                    client: seg.src,
                    server: seg.dst,
                    saw_syn: syn_only,
                    dirs: Default::default(),
                    packets: Vec::new(),
                });
                current.insert(key, i);
                i
            }
        };
        let Some(c) = r.connections.get_mut(idx) else {
            continue;
        };
        c.packets.push(p.number);
        let d = &mut c.dirs[usize::from(seg.src != c.client)];
        if flags & TCP_SYN != 0 {
            d.isn = Some(seq);
        }
        let added = d.add(seq.wrapping_add(u32::from(flags & TCP_SYN != 0)), payload);
        let flags = flags & (TCP_SYN | TCP_FIN | TCP_RST);
        if added || flags != 0 {
            d.marks.push(Mark {
                packet: p.number,
                micros: p.micros,
                end: d.bytes.len(),
                flags,
            });
        }
    }
    for c in &mut r.connections {
        for d in &mut c.dirs {
            d.finish();
        }
    }
    r
}

/// Whether a connection already carried data or a FIN or RST.
fn used(c: &Connection) -> bool {
    c.dirs
        .iter()
        .any(|d| !d.bytes.is_empty() || d.marks.iter().any(|m| m.flags & (TCP_FIN | TCP_RST) != 0))
}

fn skip_one(r: &mut Reassembled, number: usize, skip: Skip) {
    let e = r.skipped.entry(skip.to_string()).or_insert((number, 0));
    e.1 += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ip_packet;

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:8001";

    fn seg(src: &str, dst: &str, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            seq,
            0,
            flags,
            payload,
        )
    }

    fn run(segs: &[Vec<u8>]) -> Reassembled {
        let packets: Vec<Packet<'_>> = segs
            .iter()
            .enumerate()
            .map(|(i, d)| Packet {
                number: i + 1,
                micros: i as u64,
                linktype: 101,
                data: d,
                orig_len: d.len() as u32,
            })
            .collect();
        reassemble(&packets)
    }

    #[test]
    fn out_of_order_and_retransmitted_segments() {
        let r = run(&[
            seg(C, S, 100, TCP_SYN, b""),
            seg(S, C, 900, TCP_SYN | TCP_ACK, b""),
            seg(C, S, 101, TCP_ACK, b"hello "),
            seg(C, S, 112, TCP_ACK, b"!"),      // early
            seg(C, S, 101, TCP_ACK, b"hello "), // retransmitted
            seg(C, S, 107, TCP_ACK, b"world"),  // fills the gap
            seg(S, C, 901, TCP_ACK | TCP_FIN, b"bye"),
        ]);
        assert_eq!(r.connections.len(), 1);
        let c = &r.connections[0];
        assert!(c.saw_syn);
        assert_eq!(c.client, C.parse().unwrap());
        assert_eq!(c.dirs[0].bytes, b"hello world!");
        assert_eq!(c.dirs[0].gap, None);
        let ends: Vec<(usize, usize)> = c.dirs[0].marks.iter().map(|m| (m.packet, m.end)).collect();
        assert_eq!(ends, [(1, 0), (3, 6), (6, 12)]);
        assert_eq!(c.dirs[1].bytes, b"bye");
        assert_eq!(c.dirs[1].marks.last().unwrap().flags, TCP_FIN);
    }

    #[test]
    fn a_lost_segment_is_a_gap() {
        let r = run(&[
            seg(C, S, 100, TCP_SYN, b""),
            seg(C, S, 101, TCP_ACK, b"abc"),
            seg(C, S, 110, TCP_ACK, b"xyz"),
        ]);
        let d = &r.connections[0].dirs[0];
        assert_eq!((d.bytes.as_slice(), d.gap), (&b"abc"[..], Some(3)));
    }

    #[test]
    fn a_port_reused_is_a_new_connection_and_mid_stream_starts_work() {
        let r = run(&[
            seg(C, S, 5000, TCP_ACK, b"mid"), // no SYN captured
            seg(C, S, 5003, TCP_ACK | TCP_FIN, b""),
            seg(C, S, 1, TCP_SYN, b""),
            seg(C, S, 2, TCP_ACK, b"new"),
        ]);
        assert_eq!(r.connections.len(), 2);
        assert!(!r.connections[0].saw_syn);
        assert_eq!(r.connections[0].dirs[0].bytes, b"mid");
        assert_eq!(r.connections[1].dirs[0].bytes, b"new");
    }

    #[test]
    fn udp_and_skipped() {
        let mut udp = seg(C, S, 0, 0, b"");
        udp[9] = 17;
        let r = run(&[udp, vec![0x45]]);
        assert_eq!(r.connections.len(), 0);
        assert_eq!(r.skipped.values().map(|v| v.1).sum::<usize>(), 2);
    }
}
