//! The ledger subcommands: `peershare register`, `peershare verify` and
//! `peershare ledger verify|list`.
//!
//! `register` and `verify` always go through the node's API (the node checks that it has
//! the content, and owns the ledger file). `ledger verify` and `ledger list` do too, unless
//! `--data-dir` is given: then they read that data dir's ledger files directly, read-only,
//! which works whether a node runs there or not (crash leftovers are reported, not repaired).
//!
//! The mnemonic is never taken as a plain argument (it would show in `ps` and in shell
//! history): it comes from a file (`-` for standard input) or an environment variable.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

use super::ApiArgs;
use crate::api::client;
use crate::id::Id;
use crate::ledger::api as ledger_api;
use crate::ledger::log::{Access, LogLedger};
use crate::ledger::{Metadata, Mnemonic, LEDGER_DIR};

/// Largest mnemonic file read.
const MAX_MNEMONIC_FILE: u64 = 64 * 1024;

/// Options of `peershare register`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("mnemonic_source").required(true).args(["mnemonic_file", "mnemonic_env"])))]
pub struct RegisterArgs {
    /// The content ID (64 hex characters); the node must share it or have downloaded it
    pub id: String,
    /// Read the owner's mnemonic phrase from this file (`-`: standard input); keep it private
    #[arg(long, value_name = "FILE")]
    pub mnemonic_file: Option<PathBuf>,
    /// Read the owner's mnemonic phrase from this environment variable
    #[arg(long, value_name = "VAR")]
    pub mnemonic_env: Option<String>,
    /// Metadata to record: a JSON object, e.g. '{"title":"Kick","bpm":120}'
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub metadata: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Options of `peershare verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The content ID (64 hex characters)
    pub id: String,
    /// Only this owner's registration counts (an address starting with "ps")
    #[arg(long, value_name = "ADDR")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `peershare ledger ...`.
#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Check the whole ledger: every signature, the hash chain and the head file
    Verify {
        #[command(flatten)]
        source: Source,
    },
    /// List registrations, oldest first: of one content ID, or all
    List {
        /// Only this content ID
        id: Option<String>,
        #[command(flatten)]
        source: Source,
    },
}

/// Where `ledger verify|list` read the ledger.
#[derive(Args, Debug)]
pub struct Source {
    /// Read the ledger in this data dir directly (read-only, no node needed) instead of asking
    /// the node
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn parse_id(s: &str) -> Result<Id, String> {
    Id::from_hex(s.trim()).map_err(|e| format!("`{s}` is not a content ID: {e}"))
}

/// Runs `peershare register`; returns the exit code.
pub fn register(a: RegisterArgs) -> i32 {
    let prepared = (|| {
        let id = parse_id(&a.id)?;
        let phrase = read_mnemonic(a.mnemonic_file.as_deref(), a.mnemonic_env.as_deref())?;
        // Checked here too, so mistakes are reported before anything is sent.
        Mnemonic::new(&phrase).map_err(|e| e.to_string())?;
        let metadata: Value = serde_json::from_str(&a.metadata)
            .map_err(|e| format!("--metadata is not valid JSON: {e}"))?;
        Metadata::from_value(&metadata).map_err(|e| format!("--metadata: {e}"))?;
        Ok::<_, String>(json!({
            "file_hash": id.to_hex(),
            "owner_mnemonic": phrase,
            "metadata": metadata,
        }))
    })();
    match prepared {
        Ok(payload) => finish(
            &a.api,
            call(&a.api, "local_register_file_on_chain", payload),
            |v| {
                let what = if v["already_registered"] == true {
                    "already registered (same owner, same metadata)"
                } else {
                    "registered"
                };
                format!(
                    "{} {what}\nowner   {}\nrecord  {} (hash {})\ntime    {}",
                    v["file_hash"].as_str().unwrap_or("?"),
                    v["owner_address"].as_str().unwrap_or("?"),
                    v["record"],
                    v["record_hash"].as_str().unwrap_or("?"),
                    fmt_time(&v["registered_at"]),
                )
            },
        ),
        Err(e) => {
            eprintln!("peershare: {e}");
            2
        }
    }
}

/// Runs `peershare verify`; exit code 0 only when a valid registration exists.
pub fn verify(a: VerifyArgs) -> i32 {
    let id = match parse_id(&a.id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("peershare: {e}");
            return 2;
        }
    };
    let mut payload = json!({ "file_hash": id.to_hex() });
    if let Some(o) = &a.owner {
        payload["owner_address"] = json!(o);
    }
    finish(
        &a.api,
        call(&a.api, "local_verify_file_on_chain", payload),
        |v| {
            let owners = v["owners"].as_array().cloned().unwrap_or_default();
            let mut out = format!(
                "{} is registered by {} owner(s):",
                v["file_hash"].as_str().unwrap_or("?"),
                owners.len()
            );
            for o in owners {
                out.push_str(&format!(
                    "\n  {}  record {}  {}  {}",
                    o["owner_address"].as_str().unwrap_or("?"),
                    o["record"],
                    fmt_time(&o["registered_at"]),
                    o["metadata"]
                ));
            }
            out
        },
    )
}

/// Runs `peershare ledger verify|list`.
pub fn ledger(c: LedgerCommand) -> i32 {
    let data_dir = match &c {
        LedgerCommand::Verify { source } | LedgerCommand::List { source, .. } => &source.data_dir,
    };
    if let Some(d) = data_dir.as_deref().filter(|d| !d.is_dir()) {
        // An empty answer for a mistyped path would read as "nothing registered".
        eprintln!("peershare: {} is not a directory (--data-dir)", d.display());
        return 2;
    }
    match c {
        LedgerCommand::Verify { source } => {
            let reply = match &source.data_dir {
                Some(d) => Ok(ledger_api::check(&offline(d)).into_value()),
                None => call(&source.api, "ledger_verify", json!({})),
            };
            finish(&source.api, reply, |v| {
                let mut out = format!(
                    "ledger intact: {} records, {} contents, {} owners\nhead {}",
                    v["records"],
                    v["files"],
                    v["owners"],
                    v["head_hash"].as_str().unwrap_or("?")
                );
                for n in v["notes"].as_array().into_iter().flatten() {
                    out.push_str(&format!("\nnote: {}", n.as_str().unwrap_or("")));
                }
                out
            })
        }
        LedgerCommand::List { id, source } => {
            let id = match id.as_deref().map(parse_id).transpose() {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("peershare: {e}");
                    return 2;
                }
            };
            let reply = match &source.data_dir {
                Some(d) => Ok(ledger_api::history(&offline(d), id.as_ref()).into_value()),
                None => call(
                    &source.api,
                    "ledger_history",
                    json!({ "file_hash": id.map(|i| i.to_hex()) }),
                ),
            };
            finish(&source.api, reply, format_history)
        }
    }
}

fn offline(data_dir: &Path) -> LogLedger {
    LogLedger::new(data_dir.join(LEDGER_DIR), Access::ReadOnly)
}

fn format_history(v: &Value) -> String {
    let rows = v["records"].as_array().cloned().unwrap_or_default();
    let mut out = format!("{} registrations", v["total"]);
    if v["truncated"] == true {
        out.push_str(&format!(" (the last {} shown)", rows.len()));
    }
    for r in rows {
        out.push_str(&format!(
            "\n{:>6}  {}  {}  {}  {}",
            r["record"].as_u64().unwrap_or(0),
            fmt_time(&r["registered_at"]),
            r["file_hash"].as_str().unwrap_or("?"),
            r["owner_address"].as_str().unwrap_or("?"),
            r["metadata"]
        ));
    }
    out
}

/// The mnemonic from a file (`-`: standard input) or an environment variable.
fn read_mnemonic(file: Option<&Path>, env: Option<&str>) -> Result<String, String> {
    match (file, env) {
        (Some(p), _) if p == Path::new("-") => {
            let mut s = String::new();
            std::io::stdin()
                .take(MAX_MNEMONIC_FILE)
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the mnemonic from standard input: {e}"))?;
            Ok(s)
        }
        (Some(p), _) => {
            let meta = std::fs::metadata(p)
                .map_err(|e| format!("cannot read the mnemonic file {}: {e}", p.display()))?;
            if meta.len() > MAX_MNEMONIC_FILE {
                return Err(format!(
                    "{} is {} bytes: too large to be a mnemonic file",
                    p.display(),
                    meta.len()
                ));
            }
            warn_if_shared(p, &meta);
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the mnemonic file {}: {e}", p.display()))
        }
        (None, Some(var)) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("the environment variable {var} (--mnemonic-env) is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("the environment variable {var} is not valid Unicode")
            }
        }),
        (None, None) => Err("give the mnemonic with --mnemonic-file or --mnemonic-env".to_owned()),
    }
}

#[cfg(unix)]
fn warn_if_shared(p: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "peershare: warning: {} can be read by other users; protect it with `chmod 600 {}`",
            p.display(),
            p.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &std::fs::Metadata) {}

fn call(api: &ApiArgs, kind: &str, payload: Value) -> Result<Value, String> {
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    client::call(api.api, &client::request(kind, payload), timeout).map_err(|e| e.to_string())
}

/// Prints a reply (raw with `--json`) and returns the exit code: 0 on success.
fn finish(
    api: &ApiArgs,
    reply: Result<Value, String>,
    human: impl FnOnce(&Value) -> String,
) -> i32 {
    super::print_reply(api, reply, human)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar).
fn fmt_time(v: &Value) -> String {
    let Some(secs) = v.as_u64() else {
        return "?".to_owned();
    };
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(fmt_time(&json!(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(&json!(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_time(&json!(1_700_000_000)), "2023-11-14 22:13:20 UTC");
        assert_eq!(fmt_time(&json!("x")), "?");
    }

    #[test]
    fn mnemonic_sources() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.txt");
        std::fs::write(&p, "one two\n").unwrap();
        assert_eq!(read_mnemonic(Some(&p), None).unwrap(), "one two\n");
        assert!(read_mnemonic(Some(&d.path().join("nope")), None)
            .unwrap_err()
            .contains("cannot read"));
        std::fs::write(&p, vec![b'a'; MAX_MNEMONIC_FILE as usize + 1]).unwrap();
        assert!(read_mnemonic(Some(&p), None)
            .unwrap_err()
            .contains("too large"));
        assert!(read_mnemonic(None, Some("PEERSHARE_TEST_SURELY_UNSET_VAR"))
            .unwrap_err()
            .contains("not set"));
    }
}
