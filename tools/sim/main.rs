//! `peershare-sim`: measures PeerShare on simulated networks.
//!
//! - `peershare-sim [--nodes N ...]` or `peershare-sim dht ...` (`make sim`): the DHT. Joins
//!   one network, then runs one scenario per `--dead` fraction on it, from the fewest dead
//!   to the most, each continuing the network of the one before (see
//!   `peershare::sim::scenario` for the phases), and prints each report next to the goals.
//! - `peershare-sim swarm [--leechers N ...]` (`make sim-swarm`): one seeder and many
//!   leechers running the transfer engine (see `peershare::sim::swarm`), once with plain
//!   rarest-first and once with the seeder super-seeding, side by side with the ideal bound.
//! - `peershare-sim net [--nodes N ...]`: whole nodes, the same node core the binary runs,
//!   on a network with NATs and crashes (see `peershare::sim::nodes`); prints a table and,
//!   last, `downloads complete: X/Y, wrong bytes: Z`.
//!
//! These are measurements, not tests: they exit 0 whether or not the goals are met, and
//! non-zero only when the simulation itself fails (bad arguments, livelock).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use peershare::sim::nodes::NetScenario;
use peershare::sim::provide::ProvideScenario;
use peershare::sim::swarm::{LinkClass, SwarmScenario, MB};
use peershare::sim::{NetConfig, Report, Scenario};

/// Simulates PeerShare networks: the DHT (default) or a swarm of transfers.
#[derive(Parser, Debug)]
#[command(
    name = "peershare-sim",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    dht: Args,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// The DHT: lookups on a network of N nodes (the default mode).
    Dht(Args),
    /// One seeder and many leechers: completion times and the seeder's upload, with and
    /// without super-seeding.
    Swarm(SwarmArgs),
    /// Whole nodes (DHT, transfers, NAT traversal) with crashes and NATs: downloads of many
    /// contents, completion times, seeders' upload, DHT traffic.
    Net(NetArgs),
    /// Providing at scale: reprovide sweeps of large libraries against one announce lookup
    /// per item, and how soon a new item is findable (first provide).
    Provide(ProvideArgs),
}

/// The provide scenario's flags (defaults: `ProvideScenario::new`).
#[derive(ClapArgs, Debug)]
struct ProvideArgs {
    /// Nodes in the network.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Library sizes, one sweep each (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000, 10_000, 100_000])]
    items: Vec<usize>,
    /// Keys announced one by one (the per-item anchor and first provide).
    #[arg(long, default_value_t = 200)]
    baseline: usize,
    /// Keys of each library checked (where the record lives, lookups).
    #[arg(long, default_value_t = 300)]
    check: usize,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 25)]
    latency: u64,
    /// Jitter in milliseconds.
    #[arg(long, default_value_t = 10)]
    jitter: u64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    loss: f64,
    /// Seed of every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The sweeping nodes are behind a rendezvous: their ANNOUNCE_MANY batches carry it
    /// (dht.md 4.9a), and a record counts as held only if it names it.
    #[arg(long)]
    rendezvous: bool,
}

fn provide(a: &ProvideArgs) -> ExitCode {
    let mut network = Scenario::new(a.nodes);
    network.net = NetConfig {
        latency: Duration::from_millis(a.latency),
        jitter: Duration::from_millis(a.jitter),
        loss: a.loss,
        seed: a.seed,
    };
    let s = ProvideScenario {
        network,
        items: a.items.clone(),
        baseline_items: a.baseline,
        check_keys: a.check,
        rendezvous: a.rendezvous,
    };
    match s.run() {
        Ok(r) => {
            println!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peershare-sim provide failed (seed {}): {e}", a.seed);
            ExitCode::FAILURE
        }
    }
}

/// The whole-network scenario's flags (defaults: `NetScenario::new`).
#[derive(ClapArgs, Debug)]
struct NetArgs {
    /// Nodes in all.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Files shared, each by one node [default: nodes / 20].
    #[arg(long)]
    contents: Option<usize>,
    /// Each file's size in bytes [default: 3 MiB].
    #[arg(long)]
    content_size: Option<u64>,
    /// Download requests [default: 30% of the nodes].
    #[arg(long)]
    downloads: Option<usize>,
    /// Fraction of the nodes that crash and restart.
    #[arg(long, default_value_t = 0.1, value_parser = fraction)]
    churn: f64,
    /// Fraction of the nodes behind a NAT.
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    nat: f64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.01, value_parser = fraction)]
    loss: f64,
    /// Seed of every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn net(a: &NetArgs) -> ExitCode {
    let base = NetScenario::new(a.nodes);
    let s = NetScenario {
        contents: a.contents.unwrap_or(base.contents),
        content_size: a.content_size.unwrap_or(base.content_size),
        downloads: a.downloads.unwrap_or(base.downloads),
        churn: a.churn,
        nat: a.nat,
        loss: a.loss,
        seed: a.seed,
        ..base
    };
    match s.run() {
        Ok(r) => {
            println!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peershare-sim net failed (seed {}): {e}", a.seed);
            eprintln!("replay: {}", s.replay_command());
            ExitCode::FAILURE
        }
    }
}

/// The DHT scenario's flags.
#[derive(ClapArgs, Debug)]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Provider lookups per scenario, and as many node lookups.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Keys announced.
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// Dead fractions: one scenario each (repeat the flag or separate with commas), all on
    /// one network joined once, from the fewest dead to the most.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 0.3], value_parser = fraction)]
    dead: Vec<f64>,
    /// Fraction of the nodes that lie in every NODES and PROVIDERS answer (made-up contacts
    /// next to what was asked, made-up providers); announcers and askers are honest.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    liars: f64,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 25)]
    latency: u64,
    /// Jitter in milliseconds (each delay is latency ± jitter, uniform).
    #[arg(long, default_value_t = 10)]
    jitter: u64,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    loss: f64,
    /// Seed of every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual seconds the network runs after the last join before measuring.
    #[arg(long, default_value_t = 180)]
    settle: u64,
    /// Virtual milliseconds between two joins.
    #[arg(long, default_value_t = 20)]
    join_interval: u64,
    /// Explain every node outside the main component (who holds it, what its table holds,
    /// who held it while the network joined).
    #[arg(long)]
    explain_islands: bool,
    /// Sign and check PROOFs with Ed25519 as real nodes do (the default is a hash in place of
    /// the signature: the same datagrams and the same report at a fraction of the CPU).
    #[arg(long)]
    ed25519_proofs: bool,
    /// Threads the nodes run on (0: one per core); the report is the same whatever the
    /// number. 1 by default: on a shared, busy machine 2 threads were slower.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The swarm scenario's flags (defaults: `SwarmScenario::new`).
#[derive(ClapArgs, Debug)]
struct SwarmArgs {
    /// Leechers (plus one seeder).
    #[arg(long, default_value_t = 500)]
    leechers: usize,
    /// Seed of every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// File size in KiB (default 100 MiB).
    #[arg(long, default_value_t = 100 * 1024)]
    file_kib: u64,
    /// Chunk size in KiB (default: the chunk-size policy, 256 KiB up to 1 GiB files).
    #[arg(long)]
    chunk_kib: Option<u32>,
    /// Seeder upload, MB/s (10^6 bytes).
    #[arg(long, default_value_t = 2.5)]
    seeder_up: f64,
    /// Fast leechers' upload, MB/s.
    #[arg(long, default_value_t = 5.0)]
    fast_up: f64,
    /// Fast leechers' download, MB/s.
    #[arg(long, default_value_t = 25.0)]
    fast_down: f64,
    /// Slow leechers' upload, MB/s.
    #[arg(long, default_value_t = 0.5)]
    slow_up: f64,
    /// Slow leechers' download, MB/s.
    #[arg(long, default_value_t = 5.0)]
    slow_down: f64,
    /// Fraction of fast leechers.
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    fast_fraction: f64,
    /// Leechers join at uniformly random times over this many seconds.
    #[arg(long, default_value_t = 60.0)]
    join_over: f64,
    /// Smallest one-way latency, ms.
    #[arg(long, default_value_t = 10)]
    latency_min: u64,
    /// Largest one-way latency, ms.
    #[arg(long, default_value_t = 90)]
    latency_max: u64,
    /// Link model time step, ms.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Joined peers a lookup returns besides the seeder.
    #[arg(long, default_value_t = 30)]
    peers_per_lookup: usize,
    /// Hash every chunk received (slower; the default checks a marker).
    #[arg(long)]
    verify: bool,
    /// Also print each run's timeline (upload used per 10 s of virtual time).
    #[arg(long)]
    timeline: bool,
}

fn rate(mbps: f64) -> u64 {
    (mbps * MB as f64).round().max(1.0) as u64
}

fn swarm(a: &SwarmArgs) -> ExitCode {
    if a.tick_ms == 0 || a.file_kib == 0 || !a.join_over.is_finite() || a.join_over < 0.0 {
        eprintln!(
            "peershare-sim swarm: --tick-ms and --file-kib must be positive, --join-over a \
             number of seconds >= 0"
        );
        return ExitCode::FAILURE;
    }
    let s = SwarmScenario {
        file_size: a.file_kib * 1024,
        chunk_size: a.chunk_kib.map(|k| k * 1024),
        seeder: LinkClass {
            up: rate(a.seeder_up),
            down: rate(a.fast_down),
        },
        fast: LinkClass {
            up: rate(a.fast_up),
            down: rate(a.fast_down),
        },
        slow: LinkClass {
            up: rate(a.slow_up),
            down: rate(a.slow_down),
        },
        fast_fraction: a.fast_fraction,
        join_over: Duration::from_secs_f64(a.join_over),
        latency: (
            Duration::from_millis(a.latency_min),
            Duration::from_millis(a.latency_max),
        ),
        tick: Duration::from_millis(a.tick_ms),
        peers_per_lookup: a.peers_per_lookup,
        verify: a.verify,
        seed: a.seed,
        ..SwarmScenario::new(a.leechers)
    };
    match s.compare() {
        Ok(c) => {
            println!("{c}");
            if a.timeline {
                println!("\n  rarest-first:\n{}", c.plain.timeline_table());
                println!("  + super-seeding:\n{}", c.super_seeding.timeline_table());
            }
            println!("  replay: {}", s.replay_command());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peershare-sim swarm failed (seed {}): {e}", a.seed);
            eprintln!("replay: {}", s.replay_command());
            ExitCode::FAILURE
        }
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not a fraction between 0 and 1"))
    }
}

/// The goals, printed next to the measured figures.
fn goals(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let check = |ok: bool| if ok { "met" } else { "MISSED" };
    let rate = r.success_rate();
    if r.net.loss > 0.0 {
        out.push(format!(
            "goals: success goals are set for a lossless network; this one loses {:.1}% \
             of datagrams (success {:.2}%, for reference)",
            r.net.loss * 100.0,
            rate * 100.0
        ));
    } else if r.dead == 0 {
        out.push(format!(
            "goal: 100% success without churn: {:.2}% [{}]",
            rate * 100.0,
            check(rate >= 1.0)
        ));
    } else {
        out.push(format!(
            "goal: >= 99% success with {:.0}% dead: {:.2}% [{}]",
            r.dead_fraction * 100.0,
            rate * 100.0,
            check(rate >= 0.99)
        ));
    }
    out.push(format!(
        "goal: median hops <= 4: {} [{}]",
        r.hops.p50,
        check(r.hops.p50 <= 4)
    ));
    out
}

/// mimalloc, not glibc's malloc: a simulation is gigabytes of small heap objects, made and
/// freed by the million and touched in random order. At 30,000 nodes and 10% loss it took
/// 0.76x the wall time (101 against 134 s, the report byte for byte the same) for 3% more
/// memory; at 100,000 nodes 7 min 50 s and 8 min 1 s, 6.1 GiB (README, "The DHT at scale
/// and under loss, where it stands"). It uses transparent huge pages on its own (its
/// `allow_thp` option; without it, 11% slower at 100,000 nodes), which glibc's malloc did
/// only when restarted with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, as this binary did
/// before.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Swarm(a)) => swarm(&a),
        Some(Mode::Net(a)) => net(&a),
        Some(Mode::Provide(a)) => provide(&a),
        Some(Mode::Dht(a)) => dht(&a),
        None => dht(&cli.dht),
    }
}

fn dht(args: &Args) -> ExitCode {
    let net = NetConfig {
        latency: Duration::from_millis(args.latency),
        jitter: Duration::from_millis(args.jitter),
        loss: args.loss,
        seed: args.seed,
    };
    // One join for every scenario (`Scenario::measure`): each continues the network of the
    // one before, so they run from the fewest dead to the most.
    let mut fractions = args.dead.clone();
    fractions.sort_by(f64::total_cmp);
    fractions.dedup();
    let scenario = Scenario {
        keys: args.keys,
        lookups: args.lookups,
        dead_fraction: fractions.first().copied().unwrap_or(0.0),
        liar_fraction: args.liars,
        settle: Duration::from_secs(args.settle),
        join_interval: Duration::from_millis(args.join_interval),
        net,
        explain_islands: args.explain_islands,
        ed25519_proofs: args.ed25519_proofs,
        threads: args.threads,
        ..Scenario::new(args.nodes)
    };
    let mut network = match scenario.prepare() {
        Ok(network) => network,
        Err(e) => {
            eprintln!(
                "peershare-sim: building the network failed (seed {}): {e}",
                args.seed
            );
            return ExitCode::FAILURE;
        }
    };
    for &dead in &fractions {
        match scenario.measure(&mut network, dead) {
            Ok(report) => {
                println!("{report}");
                if let Some(islands) = &report.islands {
                    print!("{islands}");
                }
                for g in goals(&report) {
                    println!("  {g}");
                }
                println!();
            }
            Err(e) => {
                eprintln!(
                    "peershare-sim: scenario with {:.0}% dead failed (seed {}): {e}",
                    dead * 100.0,
                    args.seed
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
