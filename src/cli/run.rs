//! `peershare run`: its options ([`RunArgs`]), the [`NodeConfig`] they describe, logging,
//! the API token, and running the node until it is stopped.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::parse_rate_arg;
use crate::node::config::{
    check_bootstrap_addr, default_data_dir, parse_duration, parse_fraction, DEFAULT_API_PORT,
    DEFAULT_HTTP_PORT, DEFAULT_PORT,
};
use crate::node::NodeConfig;

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
    /// Port of the HTTP side: the dashboard, /metrics and streaming (0 picks a free one)
    /// [default: 8003; if another program holds it, the node runs without it]
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Address the HTTP side listens on; beyond loopback it needs the API token, as the API
    #[arg(long, default_value = "127.0.0.1")]
    pub http_listen: IpAddr,
    /// Run without the HTTP side
    #[arg(long)]
    pub no_http: bool,
    /// How long an API or HTTP client may take to finish sending a request it started
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub api_request_timeout: Duration,
    /// A node to join through (repeatable), as HOST:PORT with IPv6 in brackets
    /// ([2001:db8::7]:8001); not needed by the first node or after a restart
    #[arg(long, value_name = "HOST:PORT", value_parser = check_bootstrap_addr)]
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
    /// Where finished downloads go [default: the config file's download_dir, else
    /// <data dir>/files]
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
    /// Do not find nodes on the local network by multicast, nor announce this one there
    /// (protocol-spec/nat.md, section 11)
    #[arg(long)]
    pub no_lan: bool,
    /// Ask the router with NAT-PMP only, not PCP first (the NAT lab tests each protocol)
    #[arg(long, hide = true)]
    pub no_pcp: bool,
    /// The NAT-PMP mapping lifetime to ask for (tests use a short one to see renewals)
    #[arg(long, value_parser = parse_duration, default_value = "7200s", hide = true)]
    pub nat_pmp_lifetime: Duration,
    /// Upload limit of the whole node, e.g. 10MB/s, 5mb, 40mbit, 5MiB/s (0: unlimited;
    /// units case-insensitive, bits as `bit` or `bps`). A limit not given is the config
    /// file's (`peershare config`; `peershare limit` saves there too), or unlimited
    #[arg(long, value_parser = parse_rate_arg)]
    pub up_limit: Option<u64>,
    /// Download limit of the whole node (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg)]
    pub down_limit: Option<u64>,
    /// Upload limit of each transfer (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg)]
    pub transfer_up_limit: Option<u64>,
    /// Download limit of each transfer (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg)]
    pub transfer_down_limit: Option<u64>,
    /// Upload limit of each peer connection (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg)]
    pub peer_up_limit: Option<u64>,
    /// Download limit of each peer connection (0: unlimited)
    #[arg(long, value_parser = parse_rate_arg)]
    pub peer_down_limit: Option<u64>,
    /// Announce every chunk of a complete file at once (a full BITFIELD) instead of
    /// super-seeding: offering a few chunks at a time, those the swarm lacks first
    #[arg(long)]
    pub no_super_seed: bool,
}

impl RunArgs {
    /// The node configuration these options describe.
    pub fn to_config(&self) -> NodeConfig {
        let mut c = NodeConfig::new(self.data_dir.clone().unwrap_or_else(default_data_dir));
        c.bind_ip = self.bind;
        c.port = self.port;
        c.api_addr = SocketAddr::new(self.api_listen, self.api_port);
        c.api_request_timeout = self.api_request_timeout;
        c.http_port_given = self.http_port.is_some();
        c.http_addr = (!self.no_http).then(|| {
            SocketAddr::new(
                self.http_listen,
                self.http_port.unwrap_or(DEFAULT_HTTP_PORT),
            )
        });
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
        c.nat.lan_discovery = !self.no_lan;
        c.nat.pcp = !self.no_pcp;
        c.nat.mapping_lifetime = self.nat_pmp_lifetime;
        c.limits = [
            self.up_limit,
            self.down_limit,
            self.transfer_up_limit,
            self.transfer_down_limit,
            self.peer_up_limit,
            self.peer_down_limit,
        ];
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
    // simplelog's `Auto` colours whatever stderr is; a log sent to a file or a pipe must
    // hold plain text, so colour only a terminal.
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let _ = TermLogger::init(level, cfg, TerminalMode::Stderr, color);
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

/// Runs a node in the foreground until it is stopped; returns the process exit code.
pub(super) fn run(args: RunArgs) -> i32 {
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
