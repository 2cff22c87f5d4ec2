//! `peershare config`: the settings that persist in the data dir's config file
//! (`peershare.conf`; keys and format in `settings`), like `git config`:
//! - `peershare config`: every setting, its value in force and where it comes from;
//! - `peershare config set KEY VALUE`: saved in the file; a running node applies it at once
//!   where it can and says what needs a restart;
//! - `peershare config unset KEY`: back to the default.
//!
//! With a node running (at `--api`), the node reads and writes its file (`get_config`,
//! `set_config`), so it knows which values its command line gave. With none, or with
//! `--data-dir`, the file of that data dir (default: the default data dir) is read and
//! edited directly, under the data dir's lock, so never under a running node's feet.

use std::path::PathBuf;
use std::time::Duration;

use std::net::SocketAddr;

use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use super::{print_reply, ApiArgs};
use crate::api::client::{self, ClientError};
use crate::node::config::{default_data_dir, DEFAULT_API_PORT};
use crate::settings::{Key, Value};
use crate::storage::{config, state};

/// Options of `peershare config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// What to do (nothing: show every setting).
    #[command(subcommand)]
    pub action: Option<ConfigAction>,
    #[command(flatten)]
    pub target: Target,
}

/// `peershare config set` and `unset`.
#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Set KEY to VALUE in the config file (e.g. `up_limit 5MB/s`, `download_dir ~/in`,
    /// `on_complete 'notify-send "$PEERSHARE_NAME"'`)
    Set {
        /// up_limit, down_limit, transfer_up_limit, transfer_down_limit, peer_up_limit,
        /// peer_down_limit, download_dir or on_complete
        key: String,
        /// The value (a rate such as 5MB/s or 40mbit; a folder; a shell command)
        value: String,
    },
    /// Remove KEY from the config file (back to its default)
    Unset {
        /// The key
        key: String,
    },
}

/// Which node's settings (options that go before or after `set`/`unset`).
#[derive(Args, Debug)]
pub struct Target {
    /// The node's API address
    #[arg(long, global = true, env = "PEERSHARE_API", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))]
    pub api: SocketAddr,
    /// Print the raw JSON reply
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the node to accept the connection and to answer (0: for ever)
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Read and edit the config file of this data dir directly (its node must be stopped)
    /// instead of asking the node at --api
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Runs `peershare config`; returns the exit code.
pub fn config(args: ConfigArgs) -> i32 {
    let target = args.target;
    let edit = match args.action {
        None => None,
        Some(ConfigAction::Set { key, value }) => Some((key, Some(value))),
        Some(ConfigAction::Unset { key }) => Some((key, None)),
    };
    let api = ApiArgs {
        api: target.api,
        json: target.json,
        timeout: target.timeout,
    };
    let edit = match edit.map(|(k, v)| checked(&k, v)).transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("peershare: {e}");
            return 2;
        }
    };
    if let Some(dir) = &target.data_dir {
        return offline(&crate::paths::absolute(dir), edit, &api, None);
    }
    let (kind, payload) = match &edit {
        None => ("get_config", json!({})),
        Some((k, v)) => ("set_config", json!({ "key": k.name(), "value": v })),
    };
    let api = &api;
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    match client::call(api.api, &client::request(kind, payload), timeout) {
        // No node: show the default data dir's file; an edit must name its data dir (it
        // is easy to forget `--api` of a node that runs elsewhere).
        Err(ClientError::Connect { .. }) if edit.is_none() => {
            let dir = default_data_dir();
            let why = format!("no node answers at {}", api.api);
            offline(&crate::paths::absolute(&dir), edit, api, Some(why))
        }
        Err(e @ ClientError::Connect { .. }) => {
            eprintln!(
                "peershare: {e}\n  to edit the config file of a stopped node, give its data dir: \
                 `--data-dir DIR` (the default is {})",
                default_data_dir().display()
            );
            1
        }
        r => print_reply(api, r.map_err(|e| e.to_string()), |v| match edit {
            None => show(v),
            Some(_) => v["message"].as_str().unwrap_or("saved").to_string(),
        }),
    }
}

/// The key and value of `set`/`unset`, checked here first so a typo never reaches a file.
/// A relative `download_dir` is taken from where the command runs, as `get -o` is.
fn checked(key: &str, value: Option<String>) -> Result<(Key, Option<String>), String> {
    let k = Key::parse(key)
        .ok_or_else(|| format!("unknown key `{key}` (the keys are {})", Key::names()))?;
    let value = match value {
        Some(v) if k == Key::DownloadDir => {
            let p = crate::paths::absolute(std::path::Path::new(v.trim()));
            Some(p.display().to_string())
        }
        v => v.map(|v| v.trim().to_string()),
    };
    if let Some(v) = &value {
        k.check(v)?;
    }
    Ok((k, value))
}

/// The table of `peershare config` from a `get_config` reply.
fn show(v: &Json) -> String {
    let mut out = format!("config file: {}\n", v["file"].as_str().unwrap_or("?"));
    for r in v["settings"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20} {:<34} {}\n",
            r["key"].as_str().unwrap_or("?"),
            r["value"].as_str().unwrap_or("(none)"),
            r["source"].as_str().unwrap_or("?")
        ));
        if let Some(n) = r["note"].as_str() {
            out.push_str(&format!("{:<20} note: {n}\n", ""));
        }
    }
    out.trim_end().to_string()
}

/// Reads or edits the config file of `dir` directly (no node runs with it).
fn offline(
    dir: &std::path::Path,
    edit: Option<(Key, Option<String>)>,
    api: &ApiArgs,
    why: Option<String>,
) -> i32 {
    let reply = offline_reply(dir, edit.clone(), why);
    print_reply(api, reply, |v| match edit {
        None => show(v),
        Some(_) => v["message"].as_str().unwrap_or("saved").to_string(),
    })
}

fn offline_reply(
    dir: &std::path::Path,
    edit: Option<(Key, Option<String>)>,
    why: Option<String>,
) -> Result<Json, String> {
    let file_path = config::path(dir).display().to_string();
    let prefix = why.map(|w| format!("{w}; ")).unwrap_or_default();
    let Some((key, value)) = edit else {
        let file = config::read(dir)?;
        let settings = file.settings();
        let rows: Vec<Json> = Key::ALL
            .into_iter()
            .map(|k| {
                let in_file = settings.get(k);
                let (value, source) = match (&in_file, k) {
                    (Some(v), _) => (Some(v.describe()), "config file"),
                    (None, Key::DownloadDir) => {
                        (Some(dir.join("files").display().to_string()), "default")
                    }
                    (None, Key::OnComplete) => (None, "default"),
                    (None, _) => (Some(Value::Rate(0).describe()), "default"),
                };
                json!({ "key": k.name(), "value": value, "source": source,
                        "in_file": in_file.map(|v| v.describe()) })
            })
            .collect();
        return Ok(json!({
            "status": "success",
            "file": format!("{file_path} ({prefix}read directly; a node started with flags may differ)"),
            "settings": rows,
        }));
    };
    let lock = match state::lock_data_dir(dir) {
        Ok(l) => l,
        Err(state::StateError::Locked(_)) => {
            return Err(format!(
                "{prefix}a node is running with data dir {}: give its API address (--api ADDR) \
                 so that it applies the change, or stop it first",
                dir.display()
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    config::edit(dir, &[(key, value.clone())])?;
    drop(lock);
    let done = match &value {
        Some(v) => format!("{} = {v} saved in {file_path}", key.name()),
        None => format!("{} removed from {file_path}", key.name()),
    };
    Ok(json!({
        "status": "success",
        "message": format!("{prefix}{done}; it applies when a node starts with data dir {}", dir.display()),
        "key": key.name(),
        "file": file_path,
        "applied": false,
    }))
}
