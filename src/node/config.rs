//! Node configuration: what `peershare run` was asked to do, with sensible defaults.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::dht::DhtConfig;

/// Default port of the DHT (UDP) and the wire protocol (TCP): the same number for both.
pub const DEFAULT_PORT: u16 = 8001;
/// Default port of the local JSON API (the EchoChain clients' default).
pub const DEFAULT_API_PORT: u16 = 8002;
/// Default port of the HTTP side: dashboard, `/metrics`, streaming (http.md).
pub const DEFAULT_HTTP_PORT: u16 = 8003;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the node keeps its identity, routing table and state.
    pub data_dir: PathBuf,
    /// Address for the DHT and wire sockets. The default, `[::]`, is dual-stack
    /// (IPv4 and IPv6); the node falls back to `0.0.0.0` where IPv6 is unavailable.
    pub bind_ip: IpAddr,
    /// Port for both the UDP DHT socket and the TCP wire listener; 0 picks a free one.
    pub port: u16,
    /// Address of the local API listener (loopback by default).
    pub api_addr: SocketAddr,
    /// A secret that API clients outside loopback must send as the request's top-level
    /// `"token"`; required (the node refuses to start without it) when `api_addr` is not a
    /// loopback address. Loopback clients never need it (existing EchoChain clients don't
    /// send one).
    pub api_token: Option<String>,
    /// Address of the HTTP side (dashboard, `/metrics`; loopback by default); `None`: off.
    /// Beyond loopback it needs the API token, as the API does.
    pub http_addr: Option<SocketAddr>,
    /// Whether the HTTP port was asked for: if not (the default port), a port already in use
    /// (another node on this machine) leaves the HTTP side off with a warning instead of
    /// stopping the node.
    pub http_port_given: bool,
    /// How long an API client may take to finish a request it started.
    pub api_request_timeout: Duration,
    /// Print every datagram and frame, decoded, one line each (`--trace`).
    pub trace: bool,
    /// Bandwidth limits given at start (`--up-limit` ...): each wins over the config file's;
    /// the others are the config file's (`settings`), or unlimited.
    pub limits: crate::limits::LimitChanges,
    /// Nodes to contact at start.
    pub bootstrap: Vec<String>,
    /// DHT tunables.
    pub dht: DhtConfig,
    /// NAT traversal tunables (`enabled: false` with `--no-nat`).
    pub nat: crate::nat::NatConfig,
    /// Emulated one-way delay added to every DHT datagram this node sends.
    pub emulate_latency: Duration,
    /// Emulated random extra delay, uniform in `0..jitter`.
    pub emulate_jitter: Duration,
    /// Emulated probability that a DHT datagram this node sends is lost.
    pub emulate_loss: f64,
    /// Worker threads (hashing, disk, request handling).
    pub workers: usize,
    /// Jobs the workers' queue holds; more wait in the event loop's backlog, in order.
    pub worker_queue: usize,
    /// Where finished downloads go unless a request names another folder (default: the
    /// config file's `download_dir`, else `<data dir>/files`).
    pub download_dir: Option<PathBuf>,
    /// The transfer engine's tunables (`--no-super-seed` turns super-seeding off).
    pub engine: crate::transfer::engine::EngineConfig,
}

impl NodeConfig {
    /// Defaults for a data dir: dual-stack on port 8001, API on 127.0.0.1:8002.
    pub fn new(data_dir: PathBuf) -> Self {
        NodeConfig {
            data_dir,
            bind_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            api_addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            api_token: None,
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT))),
            http_port_given: false,
            api_request_timeout: Duration::from_secs(30),
            trace: false,
            limits: [None; 6],
            bootstrap: Vec::new(),
            dht: DhtConfig::default(),
            nat: crate::nat::NatConfig::default(),
            emulate_latency: Duration::ZERO,
            emulate_jitter: Duration::ZERO,
            emulate_loss: 0.0,
            workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
            worker_queue: 4096,
            download_dir: None,
            engine: crate::transfer::engine::EngineConfig::default(),
        }
    }
}

/// The default data dir: `$XDG_DATA_HOME/peershare`, else `~/.local/share/peershare`, else
/// `./peershare-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("peershare");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/peershare");
    }
    PathBuf::from("peershare-data")
}

/// Parses durations such as `25ms`, `1.5s`, `2m`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 25ms, 1s)"))?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" | "min" => v * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use us, ms, s or m)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration `{s}` out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What a right `--bootstrap` address looks like, for error messages.
const BOOTSTRAP_FORM: &str = "give HOST:PORT, the address and --port of a running node, \
    e.g. 192.0.2.7:8001, node.example.org:8001 or [2001:db8::7]:8001 (IPv6 in brackets)";

/// Checks that `s` has the form of a bootstrap address, `HOST:PORT` (an IPv6 address in
/// brackets), and returns it trimmed. Whether the host resolves is for start-up to find out.
pub fn check_bootstrap_addr(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0) {
        return Ok(s.to_string());
    }
    let problem = if s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        "an IPv6 address needs brackets and a port".to_string()
    } else if s.starts_with('[') && s.ends_with(']') {
        "it has no port".to_string()
    } else {
        match s.rsplit_once(':') {
            None => "it has no port".to_string(),
            Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
                "an IPv6 address needs brackets".to_string()
            }
            Some((host, _)) if host.is_empty() || host == "[]" => "it has no host".to_string(),
            Some((_, port)) => match port.parse::<u16>() {
                Ok(0) => "port 0 is not a port a node listens on".to_string(),
                Ok(_) if s.starts_with('[') => {
                    "the bracketed IPv6 address is not valid".to_string()
                }
                Ok(_) => return Ok(s.to_string()),
                Err(_) => format!("`{port}` is not a port number (1 to 65535)"),
            },
        }
    };
    Err(format!(
        "`{s}` is not a bootstrap address: {problem}; {BOOTSTRAP_FORM}"
    ))
}

/// Parses a probability given as `1%` or `0.01`.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a fraction (try 1% or 0.01)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{s}` is not between 0% and 100%"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("25ms"), Ok(Duration::from_millis(25)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("1%"), Ok(0.01));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("150%").is_err());
        assert!(parse_fraction("NaN").is_err());
    }

    #[test]
    fn bootstrap_addresses_need_a_host_and_a_port() {
        for ok in [
            "127.0.0.1:8001",
            "[::1]:8001",
            "[2001:db8::7]:4001",
            "node.example.org:8001",
            "localhost:1",
            " 10.0.0.1:9 ",
        ] {
            assert_eq!(check_bootstrap_addr(ok), Ok(ok.trim().to_string()), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1", "no port"),
            ("node.example.org", "no port"),
            ("::1", "IPv6 address needs brackets"),
            ("2001:db8::7:8001", "IPv6 address needs brackets"),
            ("127.0.0.1:", "not a port number"),
            ("127.0.0.1:http", "not a port number"),
            ("127.0.0.1:70000", "not a port number"),
            ("127.0.0.1:0", "port 0"),
            (":8001", "no host"),
            ("[::zz]:8001", "not valid"),
            ("[::1]", "no port"),
            ("", "no port"),
        ] {
            let e = check_bootstrap_addr(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                e.contains("HOST:PORT") && e.contains("[2001:db8::7]:8001"),
                "{e}"
            );
        }
    }
}
