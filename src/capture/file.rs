//! The two capture containers: classic pcap (a 24-byte header, then 16-byte record headers)
//! and pcapng (blocks: a Section Header, Interface Descriptions, Enhanced and Simple Packet
//! Blocks; others skipped), in either byte order. Specs: the pcap file format and
//! draft-ietf-opsawg-pcapng.

use std::fmt;

/// One captured packet: a slice of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its number in the capture, from 1 (as Wireshark counts).
    pub number: usize,
    /// Capture time, microseconds since the Unix epoch.
    pub micros: u64,
    /// The link type of its interface (1 Ethernet, 0 loopback, 101 raw IP, 113 Linux SLL...).
    pub linktype: u16,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The packet's length on the wire (more than `data` when the snap length cut it).
    pub orig_len: u32,
}

/// Why a capture file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureError {
    /// Neither a pcap nor a pcapng magic number.
    NotACapture {
        /// The first four bytes.
        magic: [u8; 4],
    },
    /// The file ends inside a header or a block.
    Truncated {
        /// Offset of the header or block.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A pcapng block whose length is impossible (under 12, not a multiple of 4, past the
    /// end, or not repeated at its end).
    BadBlock {
        /// Offset of the block.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A packet names an interface no Interface Description Block described.
    UnknownInterface {
        /// Offset of the packet's block.
        offset: usize,
        /// The interface number.
        interface: u32,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NotACapture { magic } => write!(
                f,
                "not a pcap or pcapng file (it starts with {})",
                hex::encode(magic)
            ),
            CaptureError::Truncated { offset, what } => {
                write!(f, "the file ends inside the {what} at offset {offset}")
            }
            CaptureError::BadBlock { offset, what } => {
                write!(f, "bad pcapng block at offset {offset}: {what}")
            }
            CaptureError::UnknownInterface { offset, interface } => write!(
                f,
                "the packet block at offset {offset} names interface {interface}, never described"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// Every packet of a pcap or pcapng file.
pub fn read_capture(bytes: &[u8]) -> Result<Vec<Packet<'_>>, CaptureError> {
    let magic: [u8; 4] =
        bytes
            .get(..4)
            .and_then(|m| m.try_into().ok())
            .ok_or(CaptureError::Truncated {
                offset: 0,
                what: "file header",
            })?;
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(bytes),
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => read_pcap(bytes, false),
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => read_pcap(bytes, true),
        _ => Err(CaptureError::NotACapture { magic }),
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    })
}

/// `ticks` of 1/`per_sec` s, in microseconds (saturating: a bogus time stays a number).
fn micros(ticks: u64, per_sec: u64) -> u64 {
    let us = u128::from(ticks) * 1_000_000 / u128::from(per_sec.max(1));
    u64::try_from(us).unwrap_or(u64::MAX)
}

fn read_pcap(bytes: &[u8], big: bool) -> Result<Vec<Packet<'_>>, CaptureError> {
    let nano = matches!(bytes.get(..4), Some([0x4d, 0x3c, ..] | [.., 0x3c, 0x4d]));
    let per_sec = if nano { 1_000_000_000 } else { 1_000_000 };
    let header = |what| CaptureError::Truncated { offset: 0, what };
    // The link type's low 16 bits (the high ones may carry FCS information).
    let linktype = u32_at(bytes, 20, big).ok_or(header("pcap file header"))? as u16;
    let mut out = Vec::new();
    let mut pos = 24;
    while pos < bytes.len() {
        let rec = |i| u32_at(bytes, pos + i, big);
        let (Some(sec), Some(frac), Some(incl), Some(orig)) = (rec(0), rec(4), rec(8), rec(12))
        else {
            return Err(CaptureError::Truncated {
                offset: pos,
                what: "packet record header",
            });
        };
        let start = pos + 16;
        let data = start
            .checked_add(incl as usize)
            .and_then(|end| bytes.get(start..end))
            .ok_or(CaptureError::Truncated {
                offset: pos,
                what: "packet data",
            })?;
        let t = micros(u64::from(sec) * per_sec + u64::from(frac), per_sec);
        out.push(Packet {
            number: out.len() + 1,
            micros: t,
            linktype,
            data,
            orig_len: orig,
        });
        pos = start + data.len();
    }
    Ok(out)
}

/// An interface of a pcapng section: its link type and time resolution.
#[derive(Clone, Copy)]
struct Interface {
    linktype: u16,
    per_sec: u64,
}

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Interface Description option: the timestamp resolution.
const IF_TSRESOL: u16 = 9;

fn read_pcapng(bytes: &[u8]) -> Result<Vec<Packet<'_>>, CaptureError> {
    let mut out = Vec::new();
    let mut big = false;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let bad = |what| CaptureError::BadBlock { offset: pos, what };
        let cut = CaptureError::Truncated {
            offset: pos,
            what: "pcapng block header",
        };
        let kind = u32_at(bytes, pos, false).ok_or(cut.clone())?;
        if kind == SHB {
            // A new section: its byte order is told by the magic after the length.
            match u32_at(bytes, pos + 8, false).ok_or(cut.clone())? {
                BYTE_ORDER_MAGIC => big = false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => big = true,
                _ => return Err(bad("section header without the byte-order magic")),
            }
            interfaces.clear();
        }
        let kind = u32_at(bytes, pos, big).ok_or(cut.clone())?;
        let len = u32_at(bytes, pos + 4, big).ok_or(cut)? as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(bad("length under 12 or not a multiple of 4"));
        }
        let block = pos
            .checked_add(len)
            .and_then(|end| bytes.get(pos..end))
            .ok_or(CaptureError::Truncated {
                offset: pos,
                what: "pcapng block",
            })?;
        if u32_at(block, len - 4, big) != Some(len as u32) {
            return Err(bad(
                "the length at its end differs from the one at its start",
            ));
        }
        let body = block.get(8..len - 4).unwrap_or_default();
        match kind {
            IDB => {
                let linktype = u16_at(body, 0, big).ok_or(bad("short interface block"))?;
                let per_sec = tsresol(body.get(8..).unwrap_or_default(), big);
                interfaces.push(Interface { linktype, per_sec });
            }
            EPB => {
                let field = |i| u32_at(body, i, big).ok_or(bad("short enhanced packet block"));
                let (ifc, hi, lo, incl, orig) =
                    (field(0)?, field(4)?, field(8)?, field(12)?, field(16)?);
                let i = interfaces
                    .get(ifc as usize)
                    .ok_or(CaptureError::UnknownInterface {
                        offset: pos,
                        interface: ifc,
                    })?;
                let data = body
                    .get(20..20usize.saturating_add(incl as usize))
                    .ok_or(bad("packet data longer than its block"))?;
                let ticks = (u64::from(hi) << 32) | u64::from(lo);
                out.push(Packet {
                    number: out.len() + 1,
                    micros: micros(ticks, i.per_sec),
                    linktype: i.linktype,
                    data,
                    orig_len: orig,
                });
            }
            SPB => {
                let i = interfaces.first().ok_or(CaptureError::UnknownInterface {
                    offset: pos,
                    interface: 0,
                })?;
                let orig = u32_at(body, 0, big).ok_or(bad("short simple packet block"))?;
                let room = body.len().saturating_sub(4);
                let data = body.get(4..4 + room.min(orig as usize)).unwrap_or_default();
                out.push(Packet {
                    number: out.len() + 1,
                    micros: 0,
                    linktype: i.linktype,
                    data,
                    orig_len: orig,
                });
            }
            // Name resolution, statistics, journal and custom blocks: nothing to decode.
            _ => {}
        }
        pos += len;
    }
    Ok(out)
}

/// Ticks per second from an Interface Description's options (`if_tsresol`; microseconds
/// when absent). A resolution finer than a nanosecond's thousandth is taken as nanoseconds.
fn tsresol(mut opts: &[u8], big: bool) -> u64 {
    while let (Some(code), Some(len)) = (u16_at(opts, 0, big), u16_at(opts, 2, big)) {
        let len = len as usize;
        if code == 0 {
            break;
        }
        if code == IF_TSRESOL && len == 1 {
            let v = opts.get(4).copied().unwrap_or(6);
            let per_sec = if v & 0x80 == 0 {
                10u64.checked_pow(u32::from(v))
            } else {
                2u64.checked_pow(u32::from(v & 0x7f))
            };
            return per_sec.unwrap_or(1_000_000_000).clamp(1, 1_000_000_000_000);
        }
        let next = 4 + len.div_ceil(4) * 4;
        opts = opts.get(next..).unwrap_or_default();
    }
    1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_le(packets: &[&[u8]]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0; 8]);
        f.extend(65535u32.to_le_bytes());
        f.extend(101u32.to_le_bytes());
        for (i, p) in packets.iter().enumerate() {
            f.extend((i as u32 + 10).to_le_bytes());
            f.extend(500u32.to_le_bytes());
            f.extend((p.len() as u32).to_le_bytes());
            f.extend((p.len() as u32).to_le_bytes());
            f.extend(*p);
        }
        f
    }

    #[test]
    fn classic_pcap_packets() {
        let f = pcap_le(&[b"abc", b"", b"defg"]);
        let p = read_capture(&f).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].number, p[0].linktype, p[0].data),
            (1, 101, &b"abc"[..])
        );
        assert_eq!(p[0].micros, 10_000_500);
        assert_eq!(p[2].data, b"defg");
        // Cut anywhere inside: an error, never a panic.
        for n in 0..f.len() {
            let r = read_capture(&f[..n]);
            assert!(r.is_err() || n == 24 || n == 43 || n == 59, "{n}: {r:?}");
        }
    }

    #[test]
    fn pcapng_written_is_read_back() {
        let mut w = crate::capture::PcapngWriter::new();
        w.packet(1_700_000_000_123_456, b"hello");
        w.packet(1_700_000_001_000_000, b"world!");
        let f = w.finish();
        let p = read_capture(&f).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].data, b"hello");
        assert_eq!(p[0].micros, 1_700_000_000_123_456);
        assert_eq!((p[1].linktype, p[1].data), (101, &b"world!"[..]));
        for n in 0..f.len() {
            let _ = read_capture(&f[..n]);
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(
            read_capture(b"PSWP\0\0"),
            Err(CaptureError::NotACapture { .. })
        ));
        assert!(matches!(
            read_capture(b"\x0a\x0d"),
            Err(CaptureError::Truncated { .. })
        ));
        // A block length of 8: impossible.
        let mut f = vec![0x0a, 0x0d, 0x0d, 0x0a, 8, 0, 0, 0];
        f.extend(BYTE_ORDER_MAGIC.to_le_bytes());
        assert!(matches!(
            read_capture(&f),
            Err(CaptureError::BadBlock { .. })
        ));
        // A packet on an interface never described.
        let mut w = crate::capture::PcapngWriter::new();
        w.packet(0, b"x");
        let mut f = w.finish();
        f[56..60].copy_from_slice(&5u32.to_le_bytes()); // the first EPB (after SHB 28, IDB 20) names interface 5
        assert!(matches!(
            read_capture(&f),
            Err(CaptureError::UnknownInterface { interface: 5, .. })
        ));
    }

    #[test]
    fn tsresol_option() {
        let mut o = vec![9, 0, 1, 0, 9, 0, 0, 0];
        assert_eq!(tsresol(&o, false), 1_000_000_000);
        o[4] = 0x80 | 10;
        assert_eq!(tsresol(&o, false), 1024);
        assert_eq!(tsresol(&[], false), 1_000_000);
        o[4] = 200; // 2^72: saturates instead of overflowing
        assert_eq!(tsresol(&o, false), 1_000_000_000);
    }
}
