//! Share links: one line that carries what a collaborator needs to fetch a file, printed by
//! `peershare add` and accepted by `peershare get` in place of the bare ID:
//!
//! `peershare:ID?name=kick%20drum.wav&size=48213&peer=203.0.113.5:8001&peer=[2001:db8::7]:8001`
//!
//! `ID` is the 64-hex content ID (what the download verifies everything against); `name` and
//! `size` are for people (the download takes the name its peers give); each `peer` is a node
//! that has the content, tried besides the DHT (the `peers` hints of `local_request_file`),
//! so a link works between two nodes that share no bootstrap. Names are percent-encoded
//! (RFC 3986 unreserved characters stay as they are). Unknown parameters are ignored, so
//! later versions can add some.

use std::fmt;
use std::net::SocketAddr;

use crate::id::Id;

/// The scheme that starts a link.
const SCHEME: &str = "peershare:";
/// Most peers a link carries (what `local_request_file` accepts).
pub const MAX_PEERS: usize = 50;

/// A parsed share link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    /// The content ID.
    pub id: Id,
    /// The file's name, if the link gives it.
    pub name: Option<String>,
    /// The file's size in bytes, if the link gives it.
    pub size: Option<u64>,
    /// Nodes that have the content.
    pub peers: Vec<SocketAddr>,
}

impl ShareLink {
    /// Reads a link, or a bare content ID (a link with nothing but the ID).
    pub fn parse(text: &str) -> Result<ShareLink, String> {
        let t = text.trim();
        let Some(rest) = t.strip_prefix(SCHEME) else {
            let id = Id::from_hex(t)
                .map_err(|e| format!("`{t}` is neither a content ID nor a peershare: link: {e}"))?;
            return Ok(ShareLink {
                id,
                name: None,
                size: None,
                peers: Vec::new(),
            });
        };
        let (id_text, query) = rest.split_once('?').unwrap_or((rest, ""));
        let id = Id::from_hex(id_text).map_err(|e| format!("the link's content ID: {e}"))?;
        let mut link = ShareLink {
            id,
            name: None,
            size: None,
            peers: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match key {
                "name" => link.name = Some(value),
                "size" => {
                    link.size = Some(
                        value
                            .parse()
                            .map_err(|_| format!("the link's size `{value}` is not a number"))?,
                    )
                }
                "peer" => {
                    let addr: SocketAddr = value.parse().map_err(|_| {
                        format!("the link's peer `{value}` is not HOST:PORT (IPv6 in brackets)")
                    })?;
                    if link.peers.len() >= MAX_PEERS {
                        return Err(format!("the link names more than {MAX_PEERS} peers"));
                    }
                    link.peers.push(addr);
                }
                _ => {} // a later version's parameter
            }
        }
        Ok(link)
    }
}

impl fmt::Display for ShareLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.id.to_hex())?;
        let mut sep = '?';
        let mut param = |f: &mut fmt::Formatter<'_>, key: &str, value: &str| {
            let r = write!(f, "{sep}{key}={}", percent_encode(value));
            sep = '&';
            r
        };
        if let Some(n) = &self.name {
            param(f, "name", n)?;
        }
        if let Some(s) = self.size {
            param(f, "size", &s.to_string())?;
        }
        for p in &self.peers {
            param(f, "peer", &p.to_string())?;
        }
        Ok(())
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `:`, `[`, `]` of
/// addresses, which need no escaping inside a query).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(if b == b'+' { b' ' } else { b });
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "68eb8f9b9bc5614f763c8e2f3e6197271881722dd79fb90af8172905129eb339";

    #[test]
    fn a_link_reads_back_as_written() {
        let link = ShareLink {
            id: Id::from_hex(ID).unwrap(),
            name: Some("kick drum (v2)&co.wav".into()),
            size: Some(48_213),
            peers: vec![
                "203.0.113.5:8001".parse().unwrap(),
                "[2001:db8::7]:8001".parse().unwrap(),
            ],
        };
        let text = link.to_string();
        assert_eq!(
            text,
            format!(
                "peershare:{ID}?name=kick%20drum%20%28v2%29%26co.wav&size=48213\
                 &peer=203.0.113.5:8001&peer=[2001:db8::7]:8001"
            )
        );
        assert_eq!(ShareLink::parse(&text).unwrap(), link);
    }

    #[test]
    fn a_bare_id_is_a_link_with_nothing_else() {
        let l = ShareLink::parse(&format!("  {ID}\n")).unwrap();
        assert_eq!((l.name, l.size, l.peers.len()), (None, None, 0));
        let l = ShareLink::parse(&format!("peershare:{ID}?later=1")).unwrap();
        assert_eq!(l.id.to_hex(), ID);
    }

    #[test]
    fn bad_links_are_clear_errors() {
        for bad in [
            "peershare:abc".to_string(),
            format!("peershare:{ID}?size=big"),
            format!("peershare:{ID}?peer=example"),
            format!("peershare:{ID}?name=%G1"),
            format!("peershare:{ID}?name=%"),
            format!("peershare:{ID}?name=%FF"),
            "http://example.com".to_string(),
        ] {
            assert!(ShareLink::parse(&bad).is_err(), "{bad}");
        }
        let many: String = (0..51)
            .map(|i| format!("&peer=10.0.0.1:{}", 1000 + i))
            .collect();
        assert!(ShareLink::parse(&format!("peershare:{ID}?{many}")).is_err());
    }
}
