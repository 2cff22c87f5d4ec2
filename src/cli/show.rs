//! `peershare show ID`: what a content holds (a folder's paths and sizes) from its manifest,
//! fetched from peers when this node does not have it, without downloading the files.

use std::time::Duration;

use serde_json::{json, Value};

use super::{link, print_reply, ApiArgs};
use crate::api::client;

/// Lists the content `id` (an ID or a share link) page by page (`content_tree`, api.md
/// section 5.20). Exit status 0 when listed.
pub(super) fn show(id: &str, api: &ApiArgs) -> i32 {
    let l = match link::ShareLink::parse(id) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peershare: {e}");
            return 2;
        }
    };
    let peers: Vec<String> = l.peers.iter().map(ToString::to_string).collect();
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    let mut offset = 0u64;
    let mut first = true;
    loop {
        let req = client::request(
            "content_tree",
            json!({ "content_hash": l.id.to_hex(), "offset": offset, "peers": peers }),
        );
        let reply = client::call(api.api, &req, timeout).map_err(|e| e.to_string());
        let (next, total) = match &reply {
            Ok(v) if v["status"] == "success" => {
                let n = v["entries"].as_array().map_or(0, Vec::len) as u64;
                (offset + n, v["total_entries"].as_u64().unwrap_or(0))
            }
            _ => (0, 0),
        };
        let code = print_reply(api, reply, |v| page(v, first));
        if code != 0 || next >= total || next == offset {
            return code;
        }
        offset = next;
        first = false;
    }
}

/// One page of the listing: a heading on the first page, then one line per entry.
fn page(v: &Value, first: bool) -> String {
    let mut out = Vec::new();
    if first {
        let files = v["num_files"].as_u64().unwrap_or(0);
        let kind = if v["kind"] == "folder" {
            format!(
                "folder: {files} file{}, ",
                if files == 1 { "" } else { "s" }
            )
        } else {
            "file: ".to_owned()
        };
        out.push(format!(
            "{} ({kind}{} bytes)",
            v["name"].as_str().unwrap_or("(name not known yet)"),
            v["size"]
        ));
    }
    for e in v["entries"].as_array().into_iter().flatten() {
        let path = e["path"].as_str().unwrap_or("?");
        if e["folder"] == true {
            out.push(format!("{:>14}  {path}/", ""));
        } else {
            let size = e["size"].as_u64().unwrap_or(0);
            out.push(format!("{size:>14}  {path}"));
        }
    }
    out.join("\n")
}
