//! The command line. `peershare run` starts a node; every other subcommand is a client of a
//! running node's local API (so scripts and the CLI see exactly what programs see).
//!
//! Here: the command tree and the dispatch; `run.rs` is `peershare run` (options to
//! `NodeConfig`), `status.rs` the status display, `transfers.rs` `get`, `ls.rs` `ls`, `decode.rs`
//! `peershare decode`, `ledger.rs` the ledger subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

pub mod ledger;

mod config;
mod conform;
mod decode;
mod hook;
pub mod link;
mod ls;
mod progress;
mod run;
mod show;
mod status;
mod transfers;

use crate::api::client;
use crate::id::Id;
use crate::node::config::DEFAULT_API_PORT;
use decode::decode;
use ls::{ls, Show};
use status::{format_bandwidth, format_status};
use transfers::get;

/// PeerShare: a peer-to-peer file sharing node.
#[derive(Parser, Debug)]
#[command(name = "peershare", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node in the foreground (Ctrl-C stops it cleanly).
    Run(Box<RunArgs>),
    /// Announce that this node provides a content ID.
    Announce {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Find the peers that provide a content ID.
    Peers {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List what a content holds (a folder's paths and sizes) from its manifest, fetched
    /// from peers if needed, without downloading the files.
    Show {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show the node's ID, addresses, routing table and counters.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the contacts of the node's routing table, by bucket.
    Routes {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Explain a DHT datagram, wire frames, a manifest or a folder's tree manifest field by
    /// field (no node needed).
    Decode(DecodeArgs),
    /// Share a file (in place: it is hashed, not copied) and announce it.
    Add {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change bandwidth limits of the running node (e.g. --up 5MB/s, --down 40mbit; 0:
    /// unlimited; kept across restarts); with no option, show them
    Limit {
        /// Upload limit of the node
        #[arg(long, value_parser = parse_rate_arg)]
        up: Option<u64>,
        /// Download limit of the node
        #[arg(long, value_parser = parse_rate_arg)]
        down: Option<u64>,
        /// Upload limit of each transfer
        #[arg(long, value_parser = parse_rate_arg)]
        transfer_up: Option<u64>,
        /// Download limit of each transfer
        #[arg(long, value_parser = parse_rate_arg)]
        transfer_down: Option<u64>,
        /// Upload limit of each peer connection
        #[arg(long, value_parser = parse_rate_arg)]
        peer_up: Option<u64>,
        /// Download limit of each peer connection
        #[arg(long, value_parser = parse_rate_arg)]
        peer_down: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop sharing content; its file stays where it is (add it again to share it again).
    Unshare {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pause a download: its connections close, its verified chunks stay; it stays paused
    /// (also across restarts) until `peershare resume`
    Pause {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume a paused download from the chunks it has (to watch it: `peershare get ID`)
    Resume {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a download and delete what it fetched so far.
    Cancel {
        /// The content ID (64 hex characters), or a share link
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Download content by ID, with progress; reattaches to a download already running.
    Get {
        /// The content ID (64 hex characters), or a share link (`peershare:ID?...`, printed
        /// by `add`), whose peers are tried besides the DHT
        id: String,
        /// Folder to put the file in [default: the node's download folder]
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Run CMD (with `sh -c`) once the file is complete and verified, with
        /// PEERSHARE_ID, PEERSHARE_PATH (also $1), PEERSHARE_NAME and PEERSHARE_SIZE in its
        /// environment; `get` then exits with CMD's status
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        /// Of a folder, fetch only the files GLOB selects (repeatable): `*` and `?` within a
        /// name, `**` across folders, `[a-z]` sets; a folder's name selects all in it
        /// (`--only 'Kicks/**' --only '**/*.txt'`). See the tree first with `peershare show`
        #[arg(long, value_name = "GLOB")]
        only: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show the settings kept in the data dir's config file (limits, download folder,
    /// completion hook) and where each value in force comes from; `set KEY VALUE` and
    /// `unset KEY` edit them (like `git config`)
    Config(config::ConfigArgs),
    /// List what this node shares and downloads (each download with its rate and ETA, as
    /// the node measures them); with an ID, that transfer's peers: address, how the
    /// connection was made (direct, mapped, punched, relayed), chunks, rate each way, choking
    Ls {
        /// One content ID: show that transfer and its peers
        id: Option<String>,
        /// Show every transfer's peers
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Test another implementation against protocol-spec/ over the network: DHT messages,
    /// the wire handshake, manifest, transfer, connection rules and malformed input; prints
    /// PASS/FAIL per case with the spec section it checks (exit status 0: it conforms)
    Conform(conform::ConformArgs),
    /// Register content on the ledger as owned by the key of a mnemonic phrase.
    Register(ledger::RegisterArgs),
    /// Check who registered content on the ledger (exit status 0 only if someone did).
    Verify(ledger::VerifyArgs),
    /// Inspect the ledger: check the whole chain, or list registrations.
    Ledger {
        /// What to do.
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
}

pub use decode::{DecodeArgs, DecodeKind};
pub use run::RunArgs;

fn parse_rate_arg(s: &str) -> Result<u64, String> {
    crate::limits::parse_rate(s)
}

/// How a client subcommand reaches the node.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The node's API address
    #[arg(long, env = "PEERSHARE_API", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))]
    pub api: SocketAddr,
    /// Print the raw JSON reply
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the node to accept the connection and to answer each request
    /// (0: wait forever). `add` and `get` ignore it: they wait until the file is hashed or
    /// downloaded, however long that takes. A refused connection is retried for 2 s, for a
    /// node that is still starting
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

/// Lets SIGPIPE end the process, as it ends `git` and `cargo`: a client whose reader went
/// away (`peershare ls | head -1`) stops there, silently, instead of panicking in
/// `println!` ("failed printing to stdout"). Only for client subcommands: their sockets
/// are safe, as std writes to TCP streams with MSG_NOSIGNAL; the node must not call this.
pub fn end_quietly_on_closed_stdout() {
    // SAFETY: signal(2) with SIG_DFL installs no handler code; it only restores the
    // default disposition, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Limit {
            up,
            down,
            transfer_up,
            transfer_down,
            peer_up,
            peer_down,
            api,
        } => {
            let mut payload = serde_json::Map::new();
            let given = [up, down, transfer_up, transfer_down, peer_up, peer_down];
            for (name, v) in crate::api::request::LIMIT_FIELDS.iter().zip(given) {
                if let Some(v) = v {
                    payload.insert((*name).into(), json!(v));
                }
            }
            if payload.is_empty() {
                call(&api, "status", json!({}), |v| {
                    format_bandwidth(&v["bandwidth"]).trim_start().to_string()
                })
            } else {
                call(&api, "set_limits", Value::Object(payload), |v| {
                    let l = &v["limits"];
                    let r = |x: &Value| crate::limits::describe_rate(x.as_u64().unwrap_or(0));
                    format!(
                        "limits set (kept across restarts): upload {} (each transfer {}, each peer {}), download {} (each transfer {}, each peer {})",
                        r(&l["up"]), r(&l["transfer_up"]), r(&l["peer_up"]),
                        r(&l["down"]), r(&l["transfer_down"]), r(&l["peer_down"])
                    )
                })
            }
        }
        Command::Unshare { id, api } => about(&id, &api, "unshare", |_, v| {
            v["message"]
                .as_str()
                .unwrap_or("no longer shared")
                .to_string()
        }),
        Command::Pause { id, api } => about(&id, &api, "pause_transfer", |id, v| {
            format!(
                "paused {id} ({} verified bytes kept); `peershare resume {id}` resumes it",
                v["have_bytes"]
            )
        }),
        Command::Resume { id, api } => about(&id, &api, "resume_transfer", |id, v| {
            format!(
                "resumed {id} from {} verified bytes; `peershare get {id}` watches it",
                v["have_bytes"]
            )
        }),
        Command::Cancel { id, api } => about(&id, &api, "cancel_transfer", |id, v| {
            format!(
                "cancelled {id}: {} verified bytes deleted",
                v["discarded_bytes"]
            )
        }),
        Command::Announce { id, api } => about(&id, &api, "local_announce_content", |_, v| {
            format!(
                "{} (stored at {} of {} closest nodes)",
                v["message"].as_str().unwrap_or("announced"),
                v["stored_at"],
                v["asked"]
            )
        }),
        Command::Peers { id, api } => about(&id, &api, "local_request_content_info", |_, v| {
            v["peers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        }),
        Command::Show { id, api } => show::show(&id, &api),
        Command::Status { api } => call(&api, "status", json!({}), format_status),
        Command::Decode(args) => decode(&args),
        Command::Add { file, api } => {
            let path = crate::paths::absolute(&file);
            let peer = reachable_addr(&api);
            let api = ApiArgs { timeout: 0, ..api };
            call(
                &api,
                "local_add_file",
                json!({ "filepath": path.display().to_string() }),
                |v| {
                    let id = v["file_hash"].as_str().unwrap_or("?");
                    let link = Id::from_hex(id).map(|id| link::ShareLink {
                        id,
                        name: v["filename"].as_str().map(str::to_owned),
                        size: v["size"].as_u64(),
                        peers: peer.into_iter().collect(),
                    });
                    // Left out of a folder: said on stderr, so stdout stays ID, summary, link.
                    for left in v["skipped"].as_array().into_iter().flatten() {
                        eprintln!("left out: {}", left.as_str().unwrap_or("?"));
                    }
                    let what = match v["num_files"].as_u64() {
                        Some(n) => format!(
                            "folder ({n} file{}, {} bytes, {} chunks)",
                            if n == 1 { "" } else { "s" },
                            v["size"],
                            v["num_chunks"]
                        ),
                        None => format!("({} bytes, {} chunks)", v["size"], v["num_chunks"]),
                    };
                    format!(
                        "{id}\n{} {what} is shared and announced\nlink: {}",
                        v["filename"].as_str().unwrap_or("?"),
                        link.map_or_else(|_| "?".into(), |l| l.to_string())
                    )
                },
            )
        }
        Command::Get {
            id,
            output,
            exec,
            only,
            api,
        } => {
            let link = link::ShareLink::parse(&id).map_err(|e| e.to_string());
            let sel = if only.is_empty() {
                Ok(None)
            } else {
                crate::content::tree::Selection::parse(&only)
                    .map(|_| Some(only))
                    .map_err(|e| format!("--only: {e}"))
            };
            match (link, sel) {
                (Ok(l), Ok(only)) => get(l.id, output, api, l.peers, exec.as_deref(), only),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("peershare: {e}");
                    2
                }
            }
        }
        Command::Ls { id, verbose, api } => match id {
            Some(id) => match link::ShareLink::parse(&id) {
                Ok(l) => ls(&api, Show::One(l.id)),
                Err(e) => {
                    eprintln!("peershare: {e}");
                    2
                }
            },
            None if verbose => ls(&api, Show::Verbose),
            None => ls(&api, Show::List),
        },
        Command::Config(args) => config::config(args),
        Command::Conform(args) => conform::conform(args),
        Command::Register(args) => ledger::register(args),
        Command::Verify(args) => ledger::verify(args),
        Command::Ledger { command } => ledger::ledger(command),
        Command::Routes { api } => call(&api, "routing_table", json!({}), |v| {
            let rows = v["contacts"].as_array().cloned().unwrap_or_default();
            let mut out = format!(
                "{} contacts (bucket = leading zero bits of the XOR distance)\n",
                rows.len()
            );
            out.push_str("bucket  node id                                                           address                 seen\n");
            for r in rows {
                out.push_str(&format!(
                    "{:>6}  {}  {:<22}  {} s ago\n",
                    r["bucket"],
                    r["node_id"].as_str().unwrap_or("?"),
                    r["addr"].as_str().unwrap_or("?"),
                    r["last_seen_secs_ago"]
                ));
            }
            out.trim_end().to_string()
        }),
    }
}

/// Where others can reach the node, for a share link's peer: the address peers saw it at,
/// else its listen address unless that is a wildcard; None if the node does not say.
fn reachable_addr(api: &ApiArgs) -> Option<SocketAddr> {
    let req = client::request("status", json!({}));
    let v = client::call(api.api, &req, Some(Duration::from_secs(5))).ok()?;
    let parse = |k: &str| v[k].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
    parse("external_addr").or_else(|| parse("listen").filter(|a| !a.ip().is_unspecified()))
}

/// A command about one content: `id` is its ID or a share link (as `get` takes), sent as
/// `content_hash`; `human(id, reply)` is what a successful reply says.
fn about(id: &str, api: &ApiArgs, kind: &str, human: impl FnOnce(Id, &Value) -> String) -> i32 {
    match link::ShareLink::parse(id) {
        Ok(l) => call(api, kind, json!({ "content_hash": l.id.to_hex() }), |v| {
            human(l.id, v)
        }),
        Err(e) => {
            eprintln!("peershare: {e}");
            2
        }
    }
}

fn call(api: &ApiArgs, kind: &str, payload: Value, human: impl FnOnce(&Value) -> String) -> i32 {
    let req = client::request(kind, payload);
    let timeout = (api.timeout > 0).then(|| Duration::from_secs(api.timeout));
    print_reply(
        api,
        client::call(api.api, &req, timeout).map_err(|e| e.to_string()),
        human,
    )
}

/// Prints a reply (raw with `--json`, else `human(reply)`, or the error message on stderr)
/// and returns the exit code: 0 on success.
pub(crate) fn print_reply(
    api: &ApiArgs,
    reply: Result<Value, String>,
    human: impl FnOnce(&Value) -> String,
) -> i32 {
    match reply {
        Ok(v) => {
            let ok = v["status"] == "success";
            if api.json {
                println!("{v}");
            } else if ok {
                println!("{}", human(&v));
            } else {
                eprintln!(
                    "peershare: {}",
                    v["message"]
                        .as_str()
                        .unwrap_or("the node reported an error")
                );
            }
            if ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("peershare: {e}");
            1
        }
    }
}
