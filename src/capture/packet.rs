//! One captured packet's headers: the link layer (Ethernet, BSD loopback, raw IP, Linux
//! cooked v1 and v2), IPv4 or IPv6, then TCP or UDP. Anything else is skipped with the
//! reason, never an error: a capture holds ARP, ICMP and fragments too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment or UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// What it carries.
    pub transport: Transport<'a>,
}

/// TCP or UDP, with the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// A TCP segment.
    Tcp {
        /// Sequence number of the first payload byte (of the SYN itself, on a SYN).
        seq: u32,
        /// Flags (FIN, SYN, RST, PSH, ACK, URG: the low 6 bits).
        flags: u8,
        /// The payload.
        payload: &'a [u8],
    },
    /// A UDP datagram's payload.
    Udp(&'a [u8]),
}

/// Why a packet is not a TCP segment or UDP datagram this reader follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A link type not handled here.
    LinkType(u16),
    /// Not IP (ARP, ...).
    NotIp,
    /// IP, but neither TCP nor UDP (ICMP, ...).
    Protocol(u8),
    /// An IP fragment (the loopback never fragments; nothing here reassembles IP).
    Fragment,
    /// Headers shorter than they say, or cut short by the capture.
    Malformed(&'static str),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::LinkType(t) => write!(f, "link type {t} not handled"),
            Skip::NotIp => write!(f, "not IP"),
            Skip::Protocol(p) => write!(f, "IP protocol {p}, neither TCP nor UDP"),
            Skip::Fragment => write!(f, "an IP fragment"),
            Skip::Malformed(w) => write!(f, "malformed: {w}"),
        }
    }
}

/// The IP packet inside a link-layer frame of `linktype`.
pub fn link_payload(linktype: u16, d: &[u8]) -> Result<&[u8], Skip> {
    let ethertype = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ip_ethertype = |t: Option<u16>| matches!(t, Some(0x0800 | 0x86dd));
    match linktype {
        // BSD loopback: a 4-byte address family in the capturing machine's byte order.
        0 | 108 => {
            let fam = d.get(..4).ok_or(Skip::Malformed("short loopback header"))?;
            let f = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let ip = [2, 24, 28, 30];
            if ip.contains(&f) || ip.contains(&f.swap_bytes()) {
                Ok(d.get(4..).unwrap_or_default())
            } else {
                Err(Skip::NotIp)
            }
        }
        1 => {
            let mut at = 12;
            if ethertype(at) == Some(0x8100) {
                at += 4; // one VLAN tag
            }
            if ip_ethertype(ethertype(at)) {
                Ok(d.get(at + 2..).unwrap_or_default())
            } else if ethertype(at).is_none() {
                Err(Skip::Malformed("short Ethernet header"))
            } else {
                Err(Skip::NotIp)
            }
        }
        12 | 14 | 101 | 228 | 229 => Ok(d),
        113 if ip_ethertype(ethertype(14)) => Ok(d.get(16..).unwrap_or_default()),
        276 if ip_ethertype(ethertype(0)) => Ok(d.get(20..).unwrap_or_default()),
        113 | 276 if d.len() < 20 => Err(Skip::Malformed("short Linux cooked header")),
        113 | 276 => Err(Skip::NotIp),
        t => Err(Skip::LinkType(t)),
    }
}

/// The TCP segment or UDP datagram a captured packet holds.
pub fn parse_packet(linktype: u16, data: &[u8]) -> Result<Segment<'_>, Skip> {
    let ip = link_payload(linktype, data)?;
    let (src, dst, proto, body) = match ip.first().map(|b| b >> 4) {
        Some(4) => ipv4(ip)?,
        Some(6) => ipv6(ip)?,
        _ => return Err(Skip::NotIp),
    };
    let port = |at: usize| {
        body.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(sp), Some(dp)) = (port(0), port(2)) else {
        return Err(Skip::Malformed("short transport header"));
    };
    let (src, dst) = (SocketAddr::new(src, sp), SocketAddr::new(dst, dp));
    let transport = match proto {
        6 => {
            let h = body.get(..14).ok_or(Skip::Malformed("short TCP header"))?;
            let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let hl = usize::from(h[12] >> 4) * 4;
            if hl < 20 {
                return Err(Skip::Malformed("TCP header under 20 bytes"));
            }
            let payload = body.get(hl..).ok_or(Skip::Malformed("short TCP header"))?;
            Transport::Tcp {
                seq,
                flags: h[13] & 0x3f,
                payload,
            }
        }
        17 => {
            let len = port(4).ok_or(Skip::Malformed("short UDP header"))?;
            let payload = body
                .get(8..usize::from(len))
                .ok_or(Skip::Malformed("UDP length past the packet"))?;
            Transport::Udp(payload)
        }
        p => return Err(Skip::Protocol(p)),
    };
    Ok(Segment {
        src,
        dst,
        transport,
    })
}

type Ip<'a> = (IpAddr, IpAddr, u8, &'a [u8]);

fn ipv4(ip: &[u8]) -> Result<Ip<'_>, Skip> {
    let h = ip.get(..20).ok_or(Skip::Malformed("short IPv4 header"))?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl {
        return Err(Skip::Malformed("IPv4 lengths"));
    }
    // More fragments, or a fragment offset: a piece of a larger datagram.
    if h[6] & 0x20 != 0 || u16::from_be_bytes([h[6] & 0x1f, h[7]]) != 0 {
        return Err(Skip::Fragment);
    }
    let body = ip
        .get(ihl..total)
        .ok_or(Skip::Malformed("IPv4 packet cut short (snap length?)"))?;
    let a = |at: usize| IpAddr::V4(Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]));
    Ok((a(12), a(16), h[9], body))
}

fn ipv6(ip: &[u8]) -> Result<Ip<'_>, Skip> {
    let h = ip.get(..40).ok_or(Skip::Malformed("short IPv6 header"))?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut body = ip
        .get(40..40 + len)
        .ok_or(Skip::Malformed("IPv6 packet cut short (snap length?)"))?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let mut next = h[6];
    // Extension headers: hop-by-hop, routing, destination options (each a length in 8-byte
    // units after the first 8); a fragment header means a fragment.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (n, l) = match body {
                    [n, l, ..] => (*n, usize::from(*l)),
                    _ => return Err(Skip::Malformed("short IPv6 extension header")),
                };
                body = body
                    .get((l + 1) * 8..)
                    .ok_or(Skip::Malformed("short IPv6 extension header"))?;
                next = n;
            }
            44 => return Err(Skip::Fragment),
            _ => break,
        }
    }
    Ok((addr(8), addr(24), next, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ip_packet;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_over_each_link_type() {
        let ip = ip_packet(
            a("127.0.0.1:40000"),
            a("127.0.0.1:8001"),
            1000,
            7,
            TCP_ACK,
            b"data",
        );
        let mut eth = vec![0u8; 12];
        eth.extend([0x08, 0x00]);
        eth.extend(&ip);
        let mut lo = 2u32.to_le_bytes().to_vec();
        lo.extend(&ip);
        let mut sll = vec![0u8; 14];
        sll.extend([0x08, 0x00]);
        sll.extend(&ip);
        for (lt, d) in [(101, &ip), (1, &eth), (0, &lo), (113, &sll)] {
            let s = parse_packet(lt, d).unwrap();
            assert_eq!(s.src, a("127.0.0.1:40000"), "link type {lt}");
            assert_eq!(
                s.transport,
                Transport::Tcp {
                    seq: 1000,
                    flags: TCP_ACK,
                    payload: b"data"
                }
            );
            // Every prefix: skipped with a reason, never a panic.
            for n in 0..d.len() {
                let _ = parse_packet(lt, &d[..n]);
            }
        }
    }

    #[test]
    fn ipv6_tcp() {
        let ip = ip_packet(a("[::1]:5"), a("[::1]:6"), 1, 0, TCP_SYN, b"");
        let s = parse_packet(101, &ip).unwrap();
        assert_eq!((s.src, s.dst), (a("[::1]:5"), a("[::1]:6")));
        assert!(matches!(s.transport, Transport::Tcp { flags: TCP_SYN, .. }));
    }

    #[test]
    fn skips_say_why() {
        assert_eq!(parse_packet(1, &[0; 14]), Err(Skip::NotIp));
        assert_eq!(parse_packet(147, &[0; 14]), Err(Skip::LinkType(147)));
        let mut ip = ip_packet(a("1.2.3.4:1"), a("1.2.3.4:2"), 0, 0, 0, b"x");
        ip[9] = 1; // ICMP
        assert_eq!(parse_packet(101, &ip), Err(Skip::Protocol(1)));
        ip[6] = 0x20; // more fragments
        assert_eq!(parse_packet(101, &ip), Err(Skip::Fragment));
    }
}
