//! The `all_available_content` reply, written straight into its bytes.
//!
//! With 100,000 shares, building it as a `serde_json::Value` tree (then copying that tree
//! once more into the reply's map) took about 150 MB for a moment, and the allocator kept
//! most of it as the node's RSS afterwards (issue 21). Written share by share, the reply
//! costs its own bytes only. The bytes are exactly those the `Value` tree gave: the same
//! keys in the same (sorted) order, the same escapes, then `"status":"success"` and `\n`.

use std::net::SocketAddr;

use serde::Serialize;

use super::library::ShareSummary;

/// One entry, its fields in the order a `serde_json::Map` sorts keys. A file's entry keeps
/// EchoChain's exact fields (api.md 5.4); a folder says it is one; part of a folder
/// (`--only`) says how many of its files it can serve.
#[derive(Serialize)]
struct Entry<'a> {
    content_id: String,
    filename: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    files_here: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    num_chunks: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_files: Option<usize>,
    peers: [&'a str; 1],
    size: u64,
}

/// The reply listing `shares`, each with `self_addr` as its one provider (api.md 5.4).
pub fn available_content_reply<'a>(
    shares: impl Iterator<Item = ShareSummary<'a>>,
    self_addr: SocketAddr,
) -> Vec<u8> {
    // Grown as it goes: a large buffer is reallocated in place (mremap), never copied.
    let mut out = Vec::new();
    let peer = self_addr.to_string();
    out.extend_from_slice(b"{\"available_content\":[");
    for (k, s) in shares.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let entry = Entry {
            content_id: s.id.to_hex(),
            filename: &s.name,
            files_here: s.files_here,
            kind: s.folder.then_some("folder"),
            num_chunks: s.chunks,
            num_files: s.folder.then_some(s.files),
            peers: [&peer],
            size: s.size,
        };
        // Serialising plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &entry);
    }
    out.extend_from_slice(b"],\"status\":\"success\"}\n");
    out
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
