//! `peershare ls`: what the node shares and downloads, each download with its rate and ETA;
//! `ls ID` one transfer with its peers (like `transmission-remote -t ID -pi`), `ls -v`
//! every transfer with its peers.
//!
//! The rates are the node's (`transfer_status`'s `down_rate`/`up_rate`, measured where the
//! bytes cross its sockets over the last 5 s), never a difference of two polls, and the
//! words follow the rules of `get`'s bar (`progress.rs`): "searching" while no provider is
//! known, "stalled" when nothing arrived over those 5 s, no ETA without a rate, decimal
//! units (the limits' convention, `limits.rs`).

use std::time::Duration;

use serde_json::{json, Value};

use super::progress::{format_bytes, format_eta, format_rate, peers};
use super::ApiArgs;
use crate::api::client;
use crate::id::Id;

/// What `ls` shows.
pub(super) enum Show {
    /// Shares and downloads, one line each.
    List,
    /// The same, each transfer followed by its peers.
    Verbose,
    /// One transfer and its peers.
    One(Id),
}

/// `peershare ls`: shared files, then transfers in progress (see [`Show`]).
pub(super) fn ls(api: &ApiArgs, show: Show) -> i32 {
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    let call = |kind: &str, payload: Value| {
        client::call(api.api, &client::request(kind, payload), timeout)
            .map_err(|e| e.to_string())
            .and_then(|v| match v["status"].as_str() {
                Some("success") => Ok(v),
                _ => Err(v["message"]
                    .as_str()
                    .unwrap_or("the node reported an error")
                    .to_string()),
            })
    };
    let result = match &show {
        Show::One(id) => one(api, &call, id),
        Show::List | Show::Verbose => list(api, &call, matches!(show, Show::Verbose)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("peershare: {e}");
            1
        }
    }
}

type Call<'a> = dyn Fn(&str, Value) -> Result<Value, String> + 'a;

fn list(api: &ApiArgs, call: &Call<'_>, verbose: bool) -> Result<(), String> {
    let s = call(
        "local_request_content_info",
        json!({ "content_hash": "all_available_content" }),
    )?;
    let t = call("transfer_status", json!({}))?;
    let transfers = t["transfers"].as_array().cloned().unwrap_or_default();
    let mut peer_replies = Vec::new();
    if verbose {
        for x in &transfers {
            if let Some(id) = x["content_hash"].as_str() {
                // A transfer that ended meanwhile has no peers to show: not an error.
                if let Ok(p) = call("transfer_peers", json!({ "content_hash": id })) {
                    peer_replies.push(p);
                }
            }
        }
    }
    if api.json {
        let mut out = json!({ "shared": s, "transfers": t });
        if verbose {
            out["peers"] = Value::from(peer_replies);
        }
        println!("{out}");
        return Ok(());
    }
    let rate_of = |id: &str| {
        transfers
            .iter()
            .find(|x| x["content_hash"] == id)
            .and_then(|x| x["up_rate"].as_u64())
            .unwrap_or(0)
    };
    let peers_of = |id: &str| {
        peer_replies
            .iter()
            .find(|p| p["content_hash"] == id)
            .map(peer_table)
    };
    let shared = s["available_content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!("shared ({}):", shared.len());
    for c in shared {
        let id = c["content_id"].as_str().unwrap_or("?");
        let up = rate_of(id);
        let sending = if up > 0 {
            format!("  up {}", format_rate(up as f64))
        } else {
            String::new()
        };
        let size = c["size"].as_u64().unwrap_or(0);
        let name = c["filename"].as_str().unwrap_or("");
        // A folder: its name with a slash and how many files it holds.
        let name = match (c["num_files"].as_u64(), c["files_here"].as_u64()) {
            (Some(n), Some(here)) if c["kind"] == "folder" => {
                format!("{name}/ ({here} of {n} files: a part)")
            }
            (Some(n), None) if c["kind"] == "folder" => {
                format!("{name}/ ({n} file{})", if n == 1 { "" } else { "s" })
            }
            _ => name.to_owned(),
        };
        println!("  {id}  {size:>12} B  {name}{sending}");
        if let Some(table) = peers_of(id) {
            print!("{table}");
        }
    }
    let active: Vec<&Value> = transfers
        .iter()
        .filter(|x| x["downloading"] == true || x.get("paused").is_some_and(Value::is_string))
        .collect();
    println!("downloading ({}):", active.len());
    for x in active {
        let id = x["content_hash"].as_str().unwrap_or("?");
        println!("  {id}  {}", download_line(x));
        if let Some(table) = peers_of(id) {
            print!("{table}");
        }
    }
    Ok(())
}

fn one(api: &ApiArgs, call: &Call<'_>, id: &Id) -> Result<(), String> {
    let hex = id.to_hex();
    let t = call("transfer_status", json!({ "content_hash": hex }))?;
    let p = call("transfer_peers", json!({ "content_hash": hex }))?;
    if api.json {
        println!("{}", json!({ "transfer": t, "peers": p }));
        return Ok(());
    }
    let x = t["transfers"].get(0).cloned().unwrap_or(Value::Null);
    let name = p["name"].as_str().unwrap_or("(name not known yet)");
    let what = if x["downloading"] == true || x.get("paused").is_some_and(Value::is_string) {
        download_line(&x)
    } else {
        let up = x["up_rate"].as_u64().unwrap_or(0);
        format!("shared, up {}", format_rate(up as f64))
    };
    println!("{hex}  {name}\n  {what}");
    print!("{}", peer_table(&p));
    Ok(())
}

/// One download: percentage, then what it is doing (the rules of `get`'s bar).
pub(super) fn download_line(x: &Value) -> String {
    let size = x["size"].as_u64().unwrap_or(0);
    let have = x["have_bytes"].as_u64().unwrap_or(0);
    let n = x["peers"].as_u64().unwrap_or(0);
    let rate = x["down_rate"].as_u64().unwrap_or(0);
    let name = x["name"].as_str().unwrap_or("");
    if let Some(why) = x["paused"].as_str() {
        let why = match x["paused_reason"].as_str() {
            Some("user") => "paused".to_string(),
            Some("disk_full") => "paused (disk full)".to_string(),
            _ => format!("paused ({why})"),
        };
        return format!("{why}  {name}");
    }
    if x["has_manifest"] != true {
        let what = if n == 0 {
            "searching the DHT for providers…".to_string()
        } else {
            format!("fetching the file's description from {}…", peers(n))
        };
        return format!("     -  {what}");
    }
    let pct = if size > 0 {
        100.0 * have as f64 / size as f64
    } else {
        100.0
    };
    let doing = if have >= size {
        "verifying and saving".to_string()
    } else if rate == 0 {
        "stalled".to_string()
    } else {
        let left = size.saturating_sub(have) as f64 / rate as f64;
        format!("{} eta {}", format_rate(rate as f64), format_eta(left))
    };
    format!(
        "{pct:5.1}%  {}/{}  {doing}, {}  {name}",
        format_bytes(have),
        format_bytes(size),
        peers(n)
    )
}

/// The peers of one transfer (a `transfer_peers` reply), as an indented table.
pub(super) fn peer_table(p: &Value) -> String {
    let list = p["peers"].as_array().cloned().unwrap_or_default();
    let total = p["chunks_total"].as_u64().unwrap_or(0);
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("    no peers connected\n");
    } else {
        out.push_str(&format!(
            "    {:<40} {:<8} {:<3} {:>11} {:>11} {:>11}  {}\n",
            "peer", "via", "dir", "chunks", "down", "up", "state"
        ));
    }
    for x in &list {
        let chunks = match x["chunks"].as_u64() {
            Some(c) => format!("{c}/{total}"),
            None => "?".into(),
        };
        let rate = |k: &str| format_rate(x[k].as_u64().unwrap_or(0) as f64);
        out.push_str(&format!(
            "    {:<40} {:<8} {:<3} {:>11} {:>11} {:>11}  {}\n",
            x["addr"].as_str().unwrap_or("?"),
            x["connection"].as_str().unwrap_or("-"),
            if x["direction"] == "incoming" {
                "in"
            } else {
                "out"
            },
            chunks,
            rate("down_rate"),
            rate("up_rate"),
            peer_state(x)
        ));
    }
    let banned = p["banned"].as_array().map_or(0, Vec::len);
    if banned > 0 {
        out.push_str(&format!(
            "    banned for bad data (every transfer): {}\n",
            p["banned"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// What a peer and we are doing, in words: `seeder`, `chokes us`, `choked` (by us), ...
fn peer_state(x: &Value) -> String {
    let mut words = Vec::new();
    if x["state"] == "connecting" {
        words.push("connecting");
    }
    if x["seeder"] == true {
        words.push("seeder");
    }
    match x["choking_us"].as_bool() {
        Some(true) if x["interesting"] == true => words.push("chokes us"),
        Some(false) if x["requests_out"].as_u64().unwrap_or(0) > 0 => words.push("sending"),
        _ => {}
    }
    if x["interested"] == true {
        words.push(if x["choked"] == true {
            "wants ours, choked"
        } else {
            "downloading from us"
        });
    }
    if words.is_empty() {
        "idle".into()
    } else {
        words.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(have: u64, rate: u64, peers: u64, manifest: bool) -> Value {
        json!({"size": 10_000_000, "have_bytes": have, "peers": peers, "down_rate": rate,
               "has_manifest": manifest, "name": "f.bin", "downloading": true})
    }

    #[test]
    fn a_download_line_says_what_the_bar_would() {
        assert_eq!(
            download_line(&download(2_000_000, 2_000_000, 2, true)),
            " 20.0%  2.0 MB/10.0 MB  2.0 MB/s eta 4s, 2 peers  f.bin"
        );
        assert_eq!(
            download_line(&download(2_000_000, 0, 1, true)),
            " 20.0%  2.0 MB/10.0 MB  stalled, 1 peer  f.bin"
        );
        assert_eq!(
            download_line(&download(0, 0, 0, false)),
            "     -  searching the DHT for providers…"
        );
        assert!(download_line(&download(0, 0, 2, false)).contains("from 2 peers…"));
        let mut p = download(0, 0, 0, true);
        p["paused"] = json!("disk full");
        assert!(download_line(&p).starts_with("paused (disk full)"));
    }

    #[test]
    fn a_peer_table_has_a_row_per_peer() {
        let reply = json!({"chunks_total": 12, "banned": ["10.0.0.9:4001"], "peers": [
            {"addr": "127.0.0.1:4002", "connection": "direct", "direction": "outgoing",
             "state": "active", "chunks": 12, "seeder": true, "down_rate": 12_300_000,
             "up_rate": 0, "choking_us": false, "interesting": true, "requests_out": 3,
             "interested": false, "choked": true},
            {"addr": "127.0.0.1:4003", "connection": null, "direction": "outgoing",
             "state": "connecting", "chunks": null, "down_rate": 0, "up_rate": 0}]});
        let t = peer_table(&reply);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 4, "{t}");
        assert!(rows[1].contains("127.0.0.1:4002") && rows[1].contains("direct"));
        assert!(rows[1].contains("12/12") && rows[1].contains("12.3 MB/s"));
        assert!(rows[1].contains("seeder, sending"), "{}", rows[1]);
        assert!(
            rows[2].contains(" ? ") && rows[2].contains("connecting"),
            "{}",
            rows[2]
        );
        assert!(rows[3].contains("10.0.0.9:4001"));
    }
}
