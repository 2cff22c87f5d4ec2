//! The subcommands about files moving: `peershare get` (a download, with a progress bar)
//! and `peershare ls` (what the node shares and downloads).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::ApiArgs;
use crate::api::client;
use crate::id::Id;

/// `peershare get`: the blocking `local_request_file` runs on a thread while the main thread
/// shows progress from `transfer_status`.
pub(super) fn get(id: Id, output: Option<PathBuf>, api: ApiArgs) -> i32 {
    use indicatif::{ProgressBar, ProgressStyle};
    let mut payload = json!({ "content_hash": id.to_hex() });
    if let Some(o) = output {
        payload["output_dir"] = json!(crate::paths::absolute(&o).display().to_string());
    }
    let addr = api.api;
    let req = client::request("local_request_file", payload);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client::call(addr, &req, None));
    });
    let bar = if api.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("looking for peers");
    let status_req = client::request("transfer_status", json!({ "content_hash": id.to_hex() }));
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(v) = client::call(addr, &status_req, Some(Duration::from_secs(5))) {
            if let Some(t) = v["transfers"].as_array().and_then(|a| a.first()) {
                let size = t["size"].as_u64().unwrap_or(0);
                if size > 0 {
                    bar.set_length(size);
                    bar.set_position(t["have_bytes"].as_u64().unwrap_or(0));
                }
                let name = t["name"].as_str().unwrap_or("");
                bar.set_message(format!("{name} {} peers", t["peers"]));
            }
        }
        bar.tick();
    };
    bar.finish_and_clear();
    match result {
        Some(Ok(v)) => {
            if api.json {
                println!("{v}");
            }
            if v["status"] == "success" {
                if !api.json {
                    println!(
                        "{}",
                        v["file_path"]
                            .as_str()
                            .or(v["filename"].as_str())
                            .unwrap_or("")
                    );
                }
                0
            } else {
                eprintln!(
                    "peershare: {}",
                    v["message"].as_str().unwrap_or("download failed")
                );
                1
            }
        }
        Some(Err(e)) => {
            eprintln!("peershare: {e}");
            1
        }
        None => {
            eprintln!("peershare: the download request thread stopped without an answer");
            1
        }
    }
}

/// `peershare ls`: shared files, then transfers in progress.
pub(super) fn ls(api: &ApiArgs) -> i32 {
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    let shared = client::call(
        api.api,
        &client::request(
            "local_request_content_info",
            json!({ "content_hash": "all_available_content" }),
        ),
        timeout,
    );
    let transfers = client::call(
        api.api,
        &client::request("transfer_status", json!({})),
        timeout,
    );
    match (shared, transfers) {
        (Ok(s), Ok(t)) => {
            if api.json {
                println!("{}", json!({ "shared": s, "transfers": t }));
                return 0;
            }
            let list = s["available_content"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            println!("shared ({}):", list.len());
            for c in list {
                println!(
                    "  {}  {:>12} B  {}",
                    c["content_id"].as_str().unwrap_or("?"),
                    c["size"],
                    c["filename"].as_str().unwrap_or("")
                );
            }
            let active: Vec<Value> = t["transfers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x["downloading"] == true)
                .collect();
            println!("downloading ({}):", active.len());
            for x in active {
                let size = x["size"].as_u64().unwrap_or(0);
                let have = x["have_bytes"].as_u64().unwrap_or(0);
                let pct = if size > 0 {
                    100.0 * have as f64 / size as f64
                } else {
                    0.0
                };
                println!(
                    "  {}  {:5.1}%  {} peers  {}",
                    x["content_hash"].as_str().unwrap_or("?"),
                    pct,
                    x["peers"],
                    x["name"].as_str().unwrap_or("")
                );
            }
            0
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("peershare: {e}");
            1
        }
    }
}
