//! A running node: start-up (data dir, identity, sockets, bootstrap), the event loop, and
//! a clean shutdown on Ctrl-C or SIGTERM.

pub mod config;

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::{Poll, Waker};

use crate::dht::Dht;
use crate::id::Id;
use crate::limits::{LimitChanges, Limits};
use crate::net::emulate::SendEmulator;
use crate::net::reactor::{Reactor, ReactorParts};
use crate::net::shared::Shared;
use crate::net::socket;
use crate::net::tokens::WAKER;
use crate::node_core::{BandwidthView, IoStatus, Library, NatGlue, NodeCore, NodeSettings};
use crate::settings::{rate_text, Key, Settings, Source};
use crate::storage::config as config_file;
use crate::storage::state;
use crate::workers::WorkerPool;
pub use config::NodeConfig;

/// Why a node could not start or stopped abnormally.
#[derive(Debug)]
pub enum NodeError {
    /// The data dir is unusable.
    State(state::StateError),
    /// A socket could not be bound.
    Bind {
        /// What it was for.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The configuration is unsafe or inconsistent.
    Config(String),
    /// The identity key file is unusable.
    Identity(crate::identity::keyfile::KeyFileError),
    /// Another I/O failure.
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::State(e) => write!(f, "{e}"),
            NodeError::Config(e) => write!(f, "{e}"),
            NodeError::Identity(e) => write!(f, "{e}"),
            NodeError::Bind { what, addr, source } => {
                write!(f, "cannot listen for the {what} on {addr}: {source}")?;
                if source.kind() == io::ErrorKind::AddrInUse {
                    write!(f, " (is another node running? choose another port)")?;
                }
                Ok(())
            }
            NodeError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// The addresses of the `--bootstrap` nodes. A malformed address is an error (a typo must
/// not leave the node running alone); so is one that does not resolve, unless the node can
/// join through another address or through its saved contacts, when it is a warning.
fn resolve_bootstrap(given: &[String], saved_contacts: bool) -> Result<Vec<SocketAddr>, NodeError> {
    let mut addrs = Vec::new();
    let mut unresolved = Vec::new();
    for b in given {
        let b = config::check_bootstrap_addr(b).map_err(NodeError::Config)?;
        match b.to_socket_addrs() {
            Ok(found) => addrs.extend(found),
            Err(e) => unresolved.push(format!("cannot resolve bootstrap address {b}: {e}")),
        }
    }
    if unresolved.is_empty() {
        return Ok(addrs);
    }
    if addrs.is_empty() && !saved_contacts {
        return Err(NodeError::Config(format!(
            "{}; this node would have no other node to join",
            unresolved.join("; ")
        )));
    }
    for u in unresolved {
        log::warn!("{u}");
    }
    Ok(addrs)
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> NodeError {
    move |source| NodeError::Io { what, source }
}

/// Buffers of a chunk (256 KiB) and more are mapped for themselves and unmapped when freed,
/// and the heap is trimmed past 128 KiB free at its top. With glibc's defaults the mmap
/// threshold rises to 32 MiB after the first such buffers are freed, so later chunk buffers
/// come from the heap, which keeps freed memory: in the 30-minute soak (`make soak`), the
/// downloaders' RSS crept from 20.9 to 23.7 MiB (median) with defaults, and was 14.4-14.9
/// MiB with these two settings (README, Measured: Soak).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt takes plain integers and only sets two of glibc's malloc
        // parameters (under the allocator's own lock, so any thread may call it).
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD) == 1
        };
        if !ok {
            log::debug!("mallopt refused the allocator settings; keeping glibc's defaults");
        }
    }
}

/// The node's identity from its key file, made on first start. A data dir of the previous
/// version has a node ID in its state but no key file: the node says once that it now has a
/// new ID (the old one had no key, so nobody could prove it; secure.md, "Identity").
fn load_identity(
    data_dir: &std::path::Path,
    old: Option<Id>,
) -> Result<crate::identity::Identity, NodeError> {
    use crate::identity::keyfile::{self, Origin};
    let loaded = keyfile::load_or_create(data_dir).map_err(NodeError::Identity)?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let id = loaded.identity.node_id();
    if loaded.origin == Origin::Created {
        match old {
            Some(old) if old != id => log::warn!(
                "this data dir was made by an earlier version, whose node IDs had no key: \
                 this node now has identity key {} and node ID {id} (was {old}); peers and \
                 the DHT learn the new ID as it rejoins",
                data_dir.join(keyfile::KEY_FILE).display()
            ),
            _ => log::info!(
                "new identity key {}: node ID {id}",
                data_dir.join(keyfile::KEY_FILE).display()
            ),
        }
    }
    Ok(loaded.identity)
}

/// `PEERSHARE_KEYLOG=FILE`: the file every session's keys are appended to (secure.md section
/// 6), created with mode 0600. Anyone holding it can read those sessions, so it is said loud.
fn open_keylog() -> Result<Option<std::fs::File>, NodeError> {
    let Some(path) = std::env::var_os("PEERSHARE_KEYLOG").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(&path).map_err(|e| {
        NodeError::Config(format!(
            "PEERSHARE_KEYLOG: cannot open {}: {e}",
            std::path::Path::new(&path).display()
        ))
    })?;
    log::warn!(
        "PEERSHARE_KEYLOG: writing every wire session's keys to {}: whoever reads it can \
         decrypt this node's captured traffic",
        std::path::Path::new(&path).display()
    );
    Ok(Some(f))
}

/// Runs a node in the foreground until `shutdown` is set (by the signal handler).
/// Prints the node's identity and addresses to stdout once it is listening.
pub fn run(mut cfg: NodeConfig, shutdown: Arc<AtomicBool>) -> Result<(), NodeError> {
    tune_allocator();
    // Relative folders are the working directory's; made absolute and clean once, here, so
    // that replies, records and messages never show `./` or `..` (api.md section 2.4).
    cfg.data_dir = crate::paths::absolute(&cfg.data_dir);
    cfg.download_dir = cfg.download_dir.as_deref().map(crate::paths::absolute);
    if !cfg.api_addr.ip().to_canonical().is_loopback()
        && cfg.api_token.as_deref().is_none_or(str::is_empty)
    {
        return Err(NodeError::Config(format!(
            "refusing to open the API on {} without a token: anyone who can reach it could \
             share any file of this machine; set --api-token-file FILE or PEERSHARE_API_TOKEN",
            cfg.api_addr
        )));
    }
    if let Some(h) = cfg.http_addr {
        if !h.ip().to_canonical().is_loopback()
            && cfg.api_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(NodeError::Config(format!(
                "refusing to open the HTTP side on {h} without a token: anyone who can reach                  it could drive the node; set --api-token-file FILE or PEERSHARE_API_TOKEN"
            )));
        }
    }
    let _lock = state::lock_data_dir(&cfg.data_dir).map_err(NodeError::State)?;
    let saved = state::load(&cfg.data_dir).map_err(NodeError::State)?;
    // The config file: a mistake in it stops the node here, named by line and key.
    let file = read_config(&cfg.data_dir, saved.limits)?;
    let identity = load_identity(&cfg.data_dir, saved.node_id)?;
    // Beyond loopback the API speaks TLS to other machines (api.md section 1).
    let http_beyond = cfg
        .http_addr
        .is_some_and(|h| !h.ip().to_canonical().is_loopback());
    let api_tls = if cfg.api_addr.ip().to_canonical().is_loopback() && !http_beyond {
        None
    } else {
        Some(
            crate::api::tls::ApiTls::load_or_create(&cfg.data_dir)
                .map_err(|e| NodeError::Config(format!("the API's TLS: {e}")))?,
        )
    };
    let id = identity.node_id();
    // The DHT signs its PROOFs with the same key (dht.md section 6.1): its own copy, zeroized
    // when it is dropped like the first.
    let dht_identity = crate::identity::Identity::from_secret(&identity.secret());
    // The Noise static key is fresh at each start: only the identity key is long-term.
    let keys = crate::secure::LocalKeys::generate(identity)
        .map(Arc::new)
        .map_err(|e| NodeError::Config(format!("session keys: {e}")))?;

    let bound = socket::bind_pair(cfg.bind_ip, cfg.port).map_err(|source| NodeError::Bind {
        what: "DHT and wire protocol",
        addr: SocketAddr::new(cfg.bind_ip, cfg.port),
        source,
    })?;
    let api = socket::listen_tcp(cfg.api_addr).map_err(|source| NodeError::Bind {
        what: "local API",
        addr: cfg.api_addr,
        source,
    })?;
    let api_addr = api.local_addr().map_err(io_err("API address"))?;
    let http = listen_http(&cfg)?;
    let http_addr = http.as_ref().map(|(_, a)| *a);

    let poll = Poll::new().map_err(io_err("create event loop"))?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err("create waker"))?);
    let now = Instant::now();
    let mut dht = Dht::new(dht_identity, cfg.dht.clone(), rand::random(), now);
    for c in &saved.contacts {
        dht.add_contact(*c, now);
    }
    // Republished together by the first housekeeping round's reprovide sweep (dht.md
    // section 10.1): one announce each would start more lookups than the DHT runs at once
    // for a large library, and the rest would wait for the next republish.
    dht.provide_many(&saved.provided, 0, now);
    let bootstrap = resolve_bootstrap(&cfg.bootstrap, !saved.contacts.is_empty())?;
    let bootstrapped = !bootstrap.is_empty();
    for a in bootstrap {
        dht.bootstrap_from(a, now);
    }
    if !saved.contacts.is_empty() {
        // A restarted node rejoins through the contacts it remembers.
        dht.rejoin(now);
    } else if !bootstrapped {
        log::info!("no bootstrap node and no saved contacts: this node starts a new network");
    }

    let workers =
        WorkerPool::new(cfg.workers, cfg.worker_queue).map_err(io_err("start worker threads"))?;
    // A flag, else the config file, else the default (`settings`).
    let (download_dir, dir_source) = match (&cfg.download_dir, &file.download_dir) {
        (Some(d), _) => (d.clone(), Source::CommandLine),
        (None, Some(d)) => (d.clone(), Source::ConfigFile),
        (None, None) => (cfg.data_dir.join("files"), Source::Default),
    };
    // Absolute and resolved, like the folders requests name (`api::paths`), so that a request
    // naming this folder is seen to be the same folder.
    let download_dir = crate::api::paths::output_folder(&download_dir).unwrap_or_else(|e| {
        log::warn!("download folder: {e}");
        download_dir
    });
    let (storage, inventory) =
        crate::storage::DiskStorage::open(&cfg.data_dir).map_err(|e| NodeError::Io {
            what: "open shares and downloads",
            source: io::Error::other(e),
        })?;
    let library = Library::new(
        inventory,
        download_dir,
        id,
        bound.local.port(),
        cfg.engine.clone(),
        rand::random(),
        now,
    );
    let emulator = SendEmulator::new(
        cfg.emulate_latency,
        cfg.emulate_jitter,
        cfg.emulate_loss,
        rand::random(),
    );
    let local = bound.local;
    // The embedded ledger: verified (and crash leftovers repaired) before the API answers.
    let ledger = Arc::new(crate::ledger::LogLedger::new(
        cfg.data_dir.join(crate::ledger::LEDGER_DIR),
        crate::ledger::log::Access::ReadWrite,
    ));
    crate::ledger::api::startup_check(&*ledger);
    let nat = NatGlue::new(
        crate::nat::Nat::new(local.port(), cfg.nat.clone(), rand::random()),
        id,
        local,
        now,
    );
    let advertised = socket::advertised_addr(local);
    let limits = start_limits(&file.limits, &cfg.limits);
    let cli = Settings {
        limits: cfg.limits,
        download_dir: cfg.download_dir.clone(),
        on_complete: None,
    };
    let mut core = NodeCore::new(dht, library, nat, local, advertised, limits, now);
    let lan = open_lan(&cfg, local, &mut core, now);
    let download_dir = core.library().download_dir().to_path_buf();
    core.set_settings(NodeSettings::new(cli, file, (download_dir, dir_source)));
    // The first view already shows the limits in force: workers answer `status` from it
    // before the loop publishes its own (a client may ask as soon as `ready` is printed).
    let first = IoStatus {
        bandwidth: BandwidthView {
            limits,
            ..BandwidthView::default()
        },
        ..IoStatus::default()
    };
    let shared = Arc::new(Shared::new(core.status_view(now, first), api_addr));
    let mut reactor = Reactor::new(ReactorParts {
        poll,
        waker: waker.clone(),
        udp: bound.udp,
        wire: bound.tcp,
        api,
        http,
        local,
        core,
        emulator,
        workers,
        storage: Arc::new(storage),
        shared,
        shutdown: shutdown.clone(),
        api_token: cfg.api_token.clone().map(Arc::from),
        api_tls: api_tls
            .as_ref()
            .filter(|_| !cfg.api_addr.ip().to_canonical().is_loopback())
            .map(|t| t.config.clone()),
        http_tls: api_tls
            .as_ref()
            .filter(|_| http_beyond)
            .map(|t| t.config.clone()),
        api_request_timeout: cfg.api_request_timeout,
        ledger,
        trace: cfg.trace,
        limits,
        lan,
        keys,
        keylog: open_keylog()?,
    })
    .map_err(io_err("register sockets"))?;

    install_signal_handler(shutdown, waker)?;
    announce_banner(id, local, (api_addr, http_addr), api_tls.as_ref(), &cfg);
    reactor.run().map_err(io_err("event loop"))?;
    log::info!("node stopped; state saved in {}", cfg.data_dir.display());
    Ok(())
}

/// LAN discovery (nat.md section 11), unless `--no-lan` or the node listens on a loopback
/// address (nobody on a link could reach it there: how the tests keep their nodes apart).
fn open_lan(
    cfg: &NodeConfig,
    local: SocketAddr,
    core: &mut NodeCore,
    now: Instant,
) -> Option<crate::net::lan_io::LanSockets> {
    if !cfg.nat.lan_discovery || local.ip().is_loopback() {
        return None;
    }
    match crate::net::lan_io::LanSockets::open(local) {
        Ok(socks) => {
            let lan = crate::nat::lan::Lan::new(
                crate::nat::lan::LanConfig::default(),
                core.node_id(),
                local.port(),
                now,
            );
            core.enable_lan(lan);
            Some(socks)
        }
        Err(e) => {
            log::warn!("LAN discovery is off: cannot open its multicast sockets: {e}");
            None
        }
    }
}

/// The limits to start with: each given on the command line, else in the config file, else
/// unlimited. Logged when any applies, with what was understood (`40mbit` is 5.0 MB/s).
fn start_limits(file: &LimitChanges, given: &LimitChanges) -> Limits {
    let mut limits = Limits::default();
    limits.apply(file);
    limits.apply(given);
    if limits != Limits::default() {
        log::info!(
            "bandwidth limits: {}{}",
            limits.describe(),
            if file.iter().any(Option::is_some) {
                " (those not given on the command line are the config file's; `peershare \
                 config` shows where each comes from)"
            } else {
                ""
            }
        );
    }
    limits
}

/// The config file's settings. Limits kept in `state.json` by an older version (`old`) are
/// moved into the config file once, unless it sets limits already; the state file stops
/// holding them at its next save.
fn read_config(data_dir: &std::path::Path, old: Option<Limits>) -> Result<Settings, NodeError> {
    let mut file = config_file::read(data_dir).map_err(NodeError::Config)?;
    let keys: Vec<Key> = (0..6).filter_map(Key::of_limit).collect();
    let in_file = keys.iter().any(|k| file.get(*k).is_some());
    if let Some(old) = old.filter(|l| *l != Limits::default() && !in_file) {
        let rates = [
            old.up,
            old.down,
            old.transfer_up,
            old.transfer_down,
            old.peer_up,
            old.peer_down,
        ];
        for (key, rate) in keys.iter().zip(rates).filter(|(_, r)| *r > 0) {
            file.set(*key, &rate_text(rate))
                .map_err(NodeError::Config)?;
        }
        config_file::write(data_dir, &file).map_err(NodeError::Config)?;
        log::info!(
            "moved the bandwidth limits kept in state.json into {} ({})",
            config_file::path(data_dir).display(),
            old.describe()
        );
    }
    Ok(file.settings())
}

/// The HTTP side's listener, if it is on (`cfg.http_addr`). The default port in use by
/// another program leaves it off with a warning; a port asked for must be free.
fn listen_http(cfg: &NodeConfig) -> Result<Option<(mio::net::TcpListener, SocketAddr)>, NodeError> {
    let Some(addr) = cfg.http_addr else {
        return Ok(None);
    };
    match socket::listen_tcp(addr) {
        Ok(l) => {
            let bound = l.local_addr().map_err(io_err("HTTP address"))?;
            Ok(Some((l, bound)))
        }
        Err(e) if !cfg.http_port_given && e.kind() == io::ErrorKind::AddrInUse => {
            log::warn!(
                "HTTP side off: port {} is in use (another node?); --http-port N picks another",
                addr.port()
            );
            Ok(None)
        }
        Err(source) => Err(NodeError::Bind {
            what: "HTTP side",
            addr,
            source,
        }),
    }
}

fn announce_banner(
    id: Id,
    local: SocketAddr,
    (api, http): (SocketAddr, Option<SocketAddr>),
    tls: Option<&crate::api::tls::ApiTls>,
    cfg: &NodeConfig,
) {
    // Machine-readable lines on stdout (tests and scripts read them); logs go to stderr.
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "node_id: {id}");
    let _ = writeln!(out, "listen: {local} (UDP DHT + TCP wire)");
    let _ = writeln!(out, "api: {api}");
    if let Some(t) = tls {
        let _ = writeln!(
            out,
            "api_tls: SHA-256 {} ({}; clients outside loopback must use TLS)",
            t.fingerprint,
            t.cert_path.display()
        );
    }
    if let Some(h) = http {
        let _ = writeln!(out, "http: {h}");
        // A wildcard address is not one a browser can open; loopback reaches it.
        let shown = if h.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), h.port())
        } else {
            h
        };
        let _ = writeln!(out, "dashboard: http://{shown}/");
    }
    let _ = writeln!(out, "data_dir: {}", cfg.data_dir.display());
    if !cfg.emulate_latency.is_zero() || cfg.emulate_loss > 0.0 {
        let _ = writeln!(
            out,
            "emulating: +{:?} (+ up to {:?} jitter) per datagram sent, {:.2}% loss",
            cfg.emulate_latency,
            cfg.emulate_jitter,
            cfg.emulate_loss * 100.0
        );
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

fn install_signal_handler(shutdown: Arc<AtomicBool>, waker: Arc<Waker>) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(io_err("install signal handler"))?;
    std::thread::Builder::new()
        .name("peershare-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if shutdown.swap(true, Ordering::SeqCst) {
                    // Second signal: the user insists.
                    eprintln!("peershare: second signal, exiting now");
                    std::process::exit(128 + sig);
                }
                log::info!("signal {sig}: shutting down");
                let _ = waker.wake();
            }
        })
        .map_err(io_err("start signal thread"))?;
    Ok(())
}
