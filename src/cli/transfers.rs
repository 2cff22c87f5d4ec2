//! `peershare get`: a download, with a progress bar (`ls.rs` lists transfers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::progress::{Line, Seen, Watch};
use super::ApiArgs;
use crate::api::client::{self, ClientError};
use crate::id::Id;

/// `peershare get`: the blocking `local_request_file` runs on a thread while the main thread
/// shows progress from `transfer_status` (rules in `progress.rs`). Ctrl-C stops watching only:
/// the download goes on in the node, and the message says so and how to stop it (exit 130).
pub(super) fn get(
    id: Id,
    output: Option<PathBuf>,
    api: ApiArgs,
    peers: Vec<std::net::SocketAddr>,
    exec: Option<&str>,
    only: Option<Vec<String>>,
) -> i32 {
    let mut payload = json!({ "content_hash": id.to_hex() });
    if let Some(globs) = only {
        payload["only"] = json!(globs);
    }
    if !peers.is_empty() {
        // From a share link: tried besides the providers the DHT knows.
        let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
        payload["peers"] = json!(peers);
    }
    if let Some(o) = output {
        payload["output_dir"] = json!(crate::paths::absolute(&o).display().to_string());
    }
    let addr = api.api;
    let req = client::request("local_request_file", payload);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client::call(addr, &req, None));
    });
    // Without the flag, SIGINT would end the process before it could say anything.
    let interrupted = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone()) {
        log::debug!("cannot catch Ctrl-C: {e}");
    }
    let bar = if api.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    let searching = ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let barred = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(searching.clone());
    let mut showing_bar = false;
    let mut watch = Watch::new(Instant::now());
    let status_req = client::request("transfer_status", json!({ "content_hash": id.to_hex() }));
    let result = loop {
        if interrupted.load(Ordering::Relaxed) {
            bar.finish_and_clear();
            eprintln!(
                "peershare: stopped watching; the download of {id} goes on in the node \
                 (`peershare get {id}` watches it again, `peershare cancel {id}{}` stops it)",
                api_flag(&api)
            );
            return 130;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break Some(r),
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Ok(v) = client::call(addr, &status_req, Some(Duration::from_secs(5))) {
            if let Some(t) = v["transfers"].as_array().and_then(|a| a.first()) {
                watch.observe(Instant::now(), Seen::from_json(t));
            }
        }
        match watch.line(Instant::now()) {
            Line::Searching(text) => bar.set_message(text),
            Line::Bar { have, size, text } => {
                if !showing_bar {
                    bar.set_style(barred.clone());
                    showing_bar = true;
                }
                bar.set_length(size);
                bar.set_position(have);
                bar.set_message(text);
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
                match exec {
                    Some(cmd) => super::hook::run_exec(cmd, id, &v),
                    None => 0,
                }
            } else {
                let message = v["message"].as_str().unwrap_or("download failed");
                eprintln!("peershare: {message}");
                // The node's words are the API's; name the commands that do it here.
                if message.contains("paused (pause_transfer)")
                    || message.contains("paused by the user")
                {
                    eprintln!("  `peershare resume {id}{}` resumes it", api_flag(&api));
                }
                if message.starts_with("already downloading") {
                    eprintln!(
                        "  `peershare get {id}` (without -o) waits for it, \
                         `peershare cancel {id}{}` stops it",
                        api_flag(&api)
                    );
                }
                1
            }
        }
        Some(Err(e @ ClientError::Connect { .. })) => {
            eprintln!("peershare: {e}");
            1
        }
        Some(Err(e)) => {
            // The request was sent, so the node had it: the connection ended without a reply
            // because the node stopped (or the link to it broke), not because of the request.
            log::debug!("local_request_file: {e}");
            let again = if watch.last().is_some_and(|s| s.has_manifest) {
                "the download resumes when the node starts again"
            } else {
                "ask for it again once the node runs"
            };
            eprintln!(
                "peershare: the node stopped, or the connection to it was lost, before the \
                 download of {id} finished; {again} (`peershare get {id}{}` to watch it)",
                api_flag(&api)
            );
            1
        }
        None => {
            eprintln!("peershare: the download request thread stopped without an answer");
            1
        }
    }
}

/// ` --api ADDR` when the node is not at the default address (for commands we suggest).
fn api_flag(api: &ApiArgs) -> String {
    let default = SocketAddr::from(([127, 0, 0, 1], crate::node::config::DEFAULT_API_PORT));
    let from_env = std::env::var("PEERSHARE_API")
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok());
    if api.api == from_env.unwrap_or(default) {
        String::new()
    } else {
        format!(" --api {}", api.api)
    }
}
