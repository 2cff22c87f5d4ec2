//! The `all_available_content` reply, written straight into its bytes.
//!
//! With 100,000 shares, building it as a `serde_json::Value` tree (then copying that tree
//! once more into the reply's map) took about 150 MB for a moment, and the allocator kept
//! most of it as the node's RSS afterwards (issue 21). Written share by share, the reply
//! costs its own bytes only. The bytes are exactly those the `Value` tree gave: the same
//! keys in the same (sorted) order, the same escapes, then `"status":"success"` and `\n`.

use std::io::Write;
use std::net::SocketAddr;

use super::library::ShareSummary;

/// The reply listing `shares`, each with `self_addr` as its one provider (api.md 5.4).
pub fn available_content_reply<'a>(
    shares: impl Iterator<Item = ShareSummary<'a>>,
    self_addr: SocketAddr,
) -> Vec<u8> {
    // Grown as it goes: a large buffer is reallocated in place (mremap), never copied.
    let mut out = Vec::new();
    // Quoted and escaped once: every entry names the same provider.
    let peer = json_string(&self_addr.to_string());
    out.extend_from_slice(b"{\"available_content\":[");
    for (k, s) in shares.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_share(&mut out, &s, &peer);
    }
    out.extend_from_slice(b"],\"status\":\"success\"}\n");
    out
}

/// One entry, its keys sorted as a `serde_json::Map` sorts them. A file's entry keeps
/// EchoChain's exact fields (api.md 5.4); a folder says it is one; part of a folder
/// (`--only`) says how many of its files it can serve.
fn write_share(out: &mut Vec<u8>, s: &ShareSummary<'_>, peer: &[u8]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"content_id\":\"{}\",\"filename\":", s.id.to_hex());
    out.extend_from_slice(&json_string(&s.name));
    if let Some(n) = s.files_here {
        let _ = write!(out, ",\"files_here\":{n}");
    }
    if s.folder {
        out.extend_from_slice(b",\"kind\":\"folder\"");
    }
    let _ = write!(out, ",\"num_chunks\":{}", s.chunks);
    if s.folder {
        let _ = write!(out, ",\"num_files\":{}", s.files);
    }
    out.extend_from_slice(b",\"peers\":[");
    out.extend_from_slice(peer);
    let _ = write!(out, "],\"size\":{}}}", s.size);
}

/// `s` as a JSON string, quoted and escaped by serde_json (as the `Value` tree was).
fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use serde_json::{json, Value};

    /// The reply as it was built before: a `Value` per share, encoded by `reply::success`.
    fn by_value(shares: &[ShareSummary<'_>], me: SocketAddr) -> Vec<u8> {
        let list: Vec<Value> = shares
            .iter()
            .map(|s| {
                let mut v = json!({
                    "content_id": s.id.to_hex(),
                    "filename": &s.name,
                    "size": s.size,
                    "num_chunks": s.chunks,
                    "peers": [me.to_string()],
                });
                if s.folder {
                    v["kind"] = json!("folder");
                    v["num_files"] = json!(s.files);
                }
                if let Some(n) = s.files_here {
                    v["files_here"] = json!(n);
                }
                v
            })
            .collect();
        let Value::Object(m) = json!({ "available_content": list }) else {
            unreachable!()
        };
        crate::api::reply::success(m)
    }

    #[test]
    fn same_bytes_as_the_value_tree() {
        let me: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let shares = [
            ShareSummary {
                id: Id([7; 32]),
                name: "plain.bin".into(),
                size: 1,
                chunks: 1,
                folder: false,
                files: 1,
                files_here: None,
            },
            ShareSummary {
                id: Id([9; 32]),
                name: "quote \" back\\slash \n tab\t é \u{1}".into(),
                size: u64::MAX,
                chunks: u32::MAX,
                folder: true,
                files: 12,
                files_here: Some(3),
            },
            ShareSummary {
                id: Id([0; 32]),
                name: "".into(),
                size: 0,
                chunks: 0,
                folder: true,
                files: 0,
                files_here: None,
            },
        ];
        assert_eq!(
            available_content_reply(shares.iter().cloned(), me),
            by_value(&shares, me)
        );
        assert_eq!(
            available_content_reply(std::iter::empty(), me),
            by_value(&[], me)
        );
    }
}
