//! The command line. `peershare run` starts a node; every other subcommand is a client of a
//! running node's local API (so scripts and the CLI see exactly what programs see).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

pub mod ledger;

use crate::api::client;
use crate::id::Id;
use crate::node::config::{
    default_data_dir, parse_duration, parse_fraction, DEFAULT_API_PORT, DEFAULT_PORT,
};
use crate::node::NodeConfig;

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
    Run(RunArgs),
    /// Announce that this node provides a content ID.
    Announce {
        /// The content ID (64 hex characters).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Find the peers that provide a content ID.
    Peers {
        /// The content ID (64 hex characters).
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
    /// Explain a DHT datagram, wire frames or a manifest field by field (no node needed).
    Decode(DecodeArgs),
    /// Share a file (in place: it is hashed, not copied) and announce it.
    Add {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change bandwidth limits of the running node (e.g. --up 5MB/s; 0: unlimited); with no
    /// option, show them
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
    /// Stop a download and delete what it fetched so far.
    Cancel {
        /// The content ID (64 hex characters).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Download content by ID, with progress; reattaches to a download already running.
    Get {
        /// The content ID (64 hex characters).
        id: String,
        /// Folder to put the file in [default: the node's download folder]
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List what this node shares and what it is downloading.
    Ls {
        #[command(flatten)]
        api: ApiArgs,
    },
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

/// Options of `peershare run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Where the node keeps its identity and state [default: $XDG_DATA_HOME/peershare]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// UDP port of the DHT and TCP port of the wire protocol (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to bind the DHT and wire sockets to ([::] is IPv4 and IPv6)
    #[arg(long, default_value = "::")]
    pub bind: IpAddr,
    /// Port of the local API (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_API_PORT)]
    pub api_port: u16,
    /// Address the API listens on. Anything but loopback lets other machines control the
    /// node, so it needs a token (--api-token-file or PEERSHARE_API_TOKEN), which clients
    /// outside loopback must then send; loopback clients never need it
    #[arg(long, default_value = "127.0.0.1")]
    pub api_listen: IpAddr,
    /// File holding the API token (its first line); see --api-listen
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// How long an API client may take to finish sending a request it started
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub api_request_timeout: Duration,
    /// A node to join through (repeatable); not needed by the first node or after a restart
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// More logging (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
    /// Emulate this one-way delay on every DHT datagram sent (e.g. 25ms)
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub emulate_latency: Duration,
    /// Emulate a random extra delay up to this much (e.g. 5ms)
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub emulate_jitter: Duration,
    /// Emulate losing this share of DHT datagrams sent (e.g. 1%)
    #[arg(long, value_parser = parse_fraction, default_value = "0")]
    pub emulate_loss: f64,
    /// How long provider records live without a refresh (e.g. 2h is 7200s)
    #[arg(long, value_parser = parse_duration, default_value = "7200s")]
    pub provider_ttl: Duration,
    /// How often this node re-announces what it provides
    #[arg(long, value_parser = parse_duration, default_value = "1800s")]
    pub republish_interval: Duration,
    /// How long to wait for a DHT answer
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub request_timeout: Duration,
    /// Worker threads [default: number of CPUs, 2 to 8]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Jobs the worker queue holds; more wait, in order, in the event loop
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub worker_queue: u64,
    /// Where finished downloads go [default: <data dir>/files]
    #[arg(long)]
    pub download_dir: Option<PathBuf>,
    /// Print every DHT datagram and wire frame sent and received, decoded, one line each
    /// (on stderr)
    #[arg(long)]
    pub trace: bool,
    /// Do not test reachability, use a rendezvous or relay (protocol-spec/nat.md); the node
    /// still serves as a rendezvous and relay for others
    #[arg(long)]
    pub no_nat: bool,
    /// Do not ask the router to map our port with NAT-PMP (protocol-spec/nat.md, section 10)
    #[arg(long)]
    pub no_nat_pmp: bool,
    /// The NAT-PMP mapping lifetime to ask for (tests use a short one to see renewals)
    #[arg(long, value_parser = parse_duration, default_value = "7200s", hide = true)]
    pub nat_pmp_lifetime: Duration,
    /// Upload limit of the whole node, e.g. 10MB/s, 5MiB/s (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub up_limit: u64,
    /// Download limit of the whole node (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub down_limit: u64,
    /// Upload limit of each transfer (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub transfer_up_limit: u64,
    /// Download limit of each transfer (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub transfer_down_limit: u64,
    /// Upload limit of each peer connection (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub peer_up_limit: u64,
    /// Download limit of each peer connection (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg, default_value = "0")]
    pub peer_down_limit: u64,
    /// Announce every chunk of a complete file at once (a full BITFIELD) instead of
    /// super-seeding: offering a few chunks at a time, those the swarm lacks first
    #[arg(long)]
    pub no_super_seed: bool,
}

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
    /// Give up after this many seconds (0: never; `add` and `get` wait as long as it takes)
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

impl RunArgs {
    /// The node configuration these options describe.
    pub fn to_config(&self) -> NodeConfig {
        let mut c = NodeConfig::new(self.data_dir.clone().unwrap_or_else(default_data_dir));
        c.bind_ip = self.bind;
        c.port = self.port;
        c.api_addr = SocketAddr::new(self.api_listen, self.api_port);
        c.api_request_timeout = self.api_request_timeout;
        c.bootstrap = self.bootstrap.clone();
        c.emulate_latency = self.emulate_latency;
        c.emulate_jitter = self.emulate_jitter;
        c.emulate_loss = self.emulate_loss;
        c.dht.provider_ttl = self.provider_ttl;
        c.dht.republish_interval = self.republish_interval;
        c.dht.request_timeout = self.request_timeout;
        if let Some(w) = self.workers {
            c.workers = w.clamp(1, 64);
        }
        c.worker_queue = usize::try_from(self.worker_queue).unwrap_or(4096);
        c.download_dir = self.download_dir.clone();
        c.trace = self.trace;
        c.engine.super_seed = !self.no_super_seed;
        c.nat.enabled = !self.no_nat;
        c.nat.port_mapping = !self.no_nat_pmp;
        c.nat.mapping_lifetime = self.nat_pmp_lifetime;
        c.limits = crate::limits::Limits {
            up: self.up_limit,
            down: self.down_limit,
            transfer_up: self.transfer_up_limit,
            transfer_down: self.transfer_down_limit,
            peer_up: self.peer_up_limit,
            peer_down: self.peer_down_limit,
        };
        c
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::Warn,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let cfg = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    let _ = TermLogger::init(level, cfg, TerminalMode::Stderr, ColorChoice::Auto);
}

/// The API token: the first line of `file`, else `PEERSHARE_API_TOKEN`, else none.
fn api_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let token = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the API token file {}: {e}", f.display()))?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
        None => match std::env::var("PEERSHARE_API_TOKEN") {
            Ok(t) => t.trim().to_string(),
            Err(_) => return Ok(None),
        },
    };
    if token.len() < 16 {
        return Err(format!(
            "the API token is {} characters long; use at least 16 (e.g. `openssl rand -hex 16`)",
            token.len()
        ));
    }
    Ok(Some(token))
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => {
            init_logging(args.verbose, args.quiet);
            let shutdown = Arc::new(AtomicBool::new(false));
            let mut cfg = args.to_config();
            match api_token(args.api_token_file.as_deref()) {
                Ok(t) => cfg.api_token = t,
                Err(e) => {
                    eprintln!("peershare: {e}");
                    return 2;
                }
            }
            match crate::node::run(cfg, shutdown) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("peershare: {e}");
                    1
                }
            }
        }
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
                    let r = |x: &Value| crate::limits::format_rate(x.as_u64().unwrap_or(0));
                    format!(
                        "limits set: upload {} (each transfer {}, each peer {}), download {} (each transfer {}, each peer {})",
                        r(&l["up"]), r(&l["transfer_up"]), r(&l["peer_up"]),
                        r(&l["down"]), r(&l["transfer_down"]), r(&l["peer_down"])
                    )
                })
            }
        }
        Command::Cancel { id, api } => with_id(&id, |id| {
            call(
                &api,
                "cancel_transfer",
                json!({ "content_hash": id.to_hex() }),
                |v| {
                    format!(
                        "cancelled {}: {} verified bytes deleted",
                        id, v["discarded_bytes"]
                    )
                },
            )
        }),
        Command::Announce { id, api } => with_id(&id, |id| {
            call(
                &api,
                "local_announce_content",
                json!({ "content_hash": id.to_hex() }),
                |v| {
                    format!(
                        "{} (stored at {} of {} closest nodes)",
                        v["message"].as_str().unwrap_or("announced"),
                        v["stored_at"],
                        v["asked"]
                    )
                },
            )
        }),
        Command::Peers { id, api } => with_id(&id, |id| {
            call(
                &api,
                "local_request_content_info",
                json!({ "content_hash": id.to_hex() }),
                |v| {
                    v["peers"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default()
                },
            )
        }),
        Command::Status { api } => call(&api, "status", json!({}), format_status),
        Command::Decode(args) => decode(&args),
        Command::Add { file, api } => {
            let path = absolute(&file);
            let api = ApiArgs { timeout: 0, ..api };
            call(
                &api,
                "local_add_file",
                json!({ "filepath": path.display().to_string() }),
                |v| {
                    format!(
                        "{}\n{} ({} bytes, {} chunks) is shared and announced",
                        v["file_hash"].as_str().unwrap_or("?"),
                        v["filename"].as_str().unwrap_or("?"),
                        v["size"],
                        v["num_chunks"]
                    )
                },
            )
        }
        Command::Get { id, output, api } => with_id(&id, |id| get(id, output, api)),
        Command::Ls { api } => ls(&api),
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

fn with_id(s: &str, f: impl FnOnce(Id) -> i32) -> i32 {
    match Id::from_hex(s.trim()) {
        Ok(id) => f(id),
        Err(e) => {
            eprintln!("peershare: `{s}` is not a content ID: {e}");
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

fn format_status(v: &Value) -> String {
    let d = &v["dht"];
    let provided = v["provided"].as_array().map_or(0, Vec::len);
    format!(
        "node id          {}\nlisten           {} (UDP DHT + TCP wire)\nexternal address {}\napi              {}\nuptime           {} s\nrouting table    {} contacts\nprovider records {} held for others, {} provided by this node\ndht traffic      {} datagrams in, {} out; {} malformed, {} rate-limited, {} timeouts",
        v["node_id"].as_str().unwrap_or("?"),
        v["listen"].as_str().unwrap_or("?"),
        v["external_addr"].as_str().unwrap_or("not known yet"),
        v["api"].as_str().unwrap_or("?"),
        v["uptime_secs"],
        v["routing_table_size"],
        v["provider_records"],
        provided,
        d["datagrams_in"],
        d["datagrams_out"],
        d["decode_errors"],
        d["rate_limited"],
        d["timeouts"],
    ) + &format_bandwidth(&v["bandwidth"])
        + &format_nat(&v["nat"])
}

/// The `nat` object of `status` for people: reachability, port mapping, rendezvous, and how
/// connections were set up. Empty for a node that reports none (NAT traversal off).
fn format_nat(n: &Value) -> String {
    if !n.is_object() {
        return String::new();
    }
    let pm = &n["port_mapping"];
    let mapping = match (pm["state"].as_str(), pm["external"].as_str()) {
        (Some(state), Some(ext)) => format!("{state} as {ext}"),
        (Some(state), None) => state.to_string(),
        _ => "off".to_string(),
    };
    let s = &n["setups"];
    format!(
        "
nat              reachability {}; port mapping {}; rendezvous {}
connections      {} direct, {} punched, {} relayed; relaying {} for others, {} clients registered here",
        n["reachability"].as_str().unwrap_or("?"),
        mapping,
        n["rendezvous"].as_str().unwrap_or("none"),
        s["direct"],
        s["punched"],
        s["relayed"],
        n["circuits"],
        n["rendezvous_clients"],
    )
}

/// The `bandwidth` object of `status` for people.
fn format_bandwidth(b: &Value) -> String {
    use crate::limits::format_rate;
    let r = |v: &Value| format_rate(v.as_u64().unwrap_or(0));
    let l = &b["limits"];
    let rate = |v: &Value| match v.as_u64().unwrap_or(0) {
        0 => "0 B/s".to_string(),
        n => format_rate(n),
    };
    format!(
        "\nupload           {} now, limit {} (each transfer {}, each peer {}); {} bytes sent\ndownload         {} now, limit {} (each transfer {}, each peer {}); {} bytes received",
        rate(&b["up_rate"]),
        r(&l["up"]),
        r(&l["transfer_up"]),
        r(&l["peer_up"]),
        b["up_total"],
        rate(&b["down_rate"]),
        r(&l["down"]),
        r(&l["transfer_down"]),
        r(&l["peer_down"]),
        b["down_total"],
    )
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
}

/// `peershare get`: the blocking `local_request_file` runs on a thread while the main thread
/// shows progress from `transfer_status`.
fn get(id: Id, output: Option<PathBuf>, api: ApiArgs) -> i32 {
    use indicatif::{ProgressBar, ProgressStyle};
    let mut payload = json!({ "content_hash": id.to_hex() });
    if let Some(o) = output {
        payload["output_dir"] = json!(absolute(&o).display().to_string());
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
fn ls(api: &ApiArgs) -> i32 {
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

/// Options of `peershare decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Hex (spaces, colons, newlines and 0x allowed; several arguments are joined), a file
    /// (raw bytes or hex), or - for stdin
    #[arg(value_name = "HEX|FILE|-", required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// Read the input as this kind instead of guessing it from its first bytes
    #[arg(long = "as", value_enum, value_name = "KIND")]
    pub kind: Option<DecodeKind>,
    /// Print the explanation as JSON
    #[arg(long)]
    pub json: bool,
}

/// What `peershare decode --as` can read the input as.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DecodeKind {
    /// One DHT datagram (UDP payload)
    Dht,
    /// Wire frames back to back, as on a TCP connection
    Wire,
    /// A wire HANDSHAKE body without its 5-byte frame header
    Handshake,
    /// A manifest
    Manifest,
}

/// Most bytes `peershare decode` reads: more than the largest manifest (32 MiB + 53).
const MAX_DECODE_INPUT: u64 = 64 << 20;

/// `peershare decode`: exit status 0 for valid input, 1 for malformed or incomplete input
/// (after printing what was decoded and why it stops), 2 when there is nothing to decode.
fn decode(args: &DecodeArgs) -> i32 {
    use crate::explain::{explain, explain_as, Kind};
    let bytes = match decode_input(&args.input.join(" ")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("peershare decode: {e}");
            return 2;
        }
    };
    let ex = match args.kind {
        None => explain(&bytes),
        Some(DecodeKind::Dht) => explain_as(&bytes, Kind::Dht),
        Some(DecodeKind::Wire) => explain_as(&bytes, Kind::Wire),
        Some(DecodeKind::Handshake) => explain_as(&bytes, Kind::Handshake),
        Some(DecodeKind::Manifest) => explain_as(&bytes, Kind::Manifest),
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&ex) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("peershare decode: {e}");
                return 2;
            }
        }
    } else {
        ex.to_string()
    };
    // Not print!: it panics when the reader has gone (`peershare decode ... | head`).
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if ex.is_valid() {
        0
    } else {
        1
    }
}

/// The bytes named by `peershare decode`'s argument: hex, a file, or `-` for stdin. A file
/// or stdin whose text is all hex is read as hex (a saved dump), otherwise as raw bytes (a
/// capture): no PeerShare message starts with a hex digit's byte.
fn decode_input(arg: &str) -> Result<Vec<u8>, String> {
    use crate::explain::parse_hex;
    use std::io::Read;
    let hex_err = match parse_hex(arg) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    let (name, source): (String, Box<dyn Read>) = if arg == "-" {
        ("stdin".into(), Box::new(std::io::stdin()))
    } else {
        match std::fs::File::open(arg) {
            Ok(f) => (format!("`{arg}`"), Box::new(f)),
            Err(e) => {
                return Err(format!(
                    "`{arg}` is neither hex ({hex_err}) nor a file ({e})"
                ))
            }
        }
    };
    let mut raw = Vec::new();
    source
        .take(MAX_DECODE_INPUT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if raw.len() as u64 > MAX_DECODE_INPUT {
        return Err(format!("{name} is larger than {MAX_DECODE_INPUT} bytes"));
    }
    if raw.is_empty() {
        return Err(format!("{name} is empty: nothing to decode"));
    }
    Ok(std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| parse_hex(t).ok())
        .unwrap_or(raw))
}
