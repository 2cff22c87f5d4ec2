//! `peershare-sim`: measures the DHT on a simulated network (`make sim`).
//!
//! Runs one scenario per `--dead` fraction (see `peershare::sim::scenario` for the phases)
//! and prints each report next to the goals. It is a measurement, not a test: it exits 0
//! whether or not the goals are met, and non-zero only when the simulation itself fails
//! (bad arguments, livelock).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peershare::sim::{NetConfig, Report, Scenario};

/// Simulates a PeerShare DHT network and measures its lookups.
#[derive(Parser, Debug)]
#[command(name = "peershare-sim", version, about)]
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
    /// Dead fractions: one scenario each (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 0.3], value_parser = fraction)]
    dead: Vec<f64>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let net = NetConfig {
        latency: Duration::from_millis(args.latency),
        jitter: Duration::from_millis(args.jitter),
        loss: args.loss,
        seed: args.seed,
    };
    for &dead in &args.dead {
        let scenario = Scenario {
            keys: args.keys,
            lookups: args.lookups,
            dead_fraction: dead,
            settle: Duration::from_secs(args.settle),
            join_interval: Duration::from_millis(args.join_interval),
            net: net.clone(),
            ..Scenario::new(args.nodes)
        };
        match scenario.run() {
            Ok(report) => {
                println!("{report}");
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
