//! A deterministic swarm simulator for the transfer engine: one seeder and many leechers,
//! each a real [`Engine`](crate::transfer::engine::Engine), on a virtual network with
//! per-node upload and download capacities and latency (`peershare-sim swarm`,
//! `make sim-swarm`). It measures how well the swarm uses its upload capacity when the
//! seeder's is scarce: completion times against an ideal bound, and how much the seeder
//! uploaded, for plain rarest-first and with the seeder's super-seeding
//! ([`EngineConfig::super_seed`](crate::transfer::engine::EngineConfig::super_seed)).
//!
//! - [`world`] (private): the machinery: pipes, the link model, events, virtual clock. Its
//!   module docs state the model and its simplifications.
//! - [`report`]: what a run measured ([`SwarmReport`]), the [`IdealBound`], and the two runs
//!   side by side ([`Comparison`]).
//!
//! The scenario ([`SwarmScenario::new`]): node 0 shares a file from the start; leechers join
//! at uniformly random times over `join_over`, each a *fast* (`fast_fraction` of them) or a
//! *slow* node. Each looks the content up (the seeder and `peers_per_lookup` random nodes
//! that joined before it), downloads, and stays to serve others after it finished. Both runs
//! of a [`Comparison`] use the same nodes, capacities, latencies and join times; only the
//! seeder's policy differs.
//!
//! Determinism: everything is derived from [`SwarmScenario::seed`]; a failing run prints
//! the `peershare-sim` command that replays it.

mod report;
mod world;

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

pub use report::{Comparison, IdealBound, SwarmReport};
pub use world::Sample;

use crate::content::manifest::{chunk_size_for, Manifest};
use crate::content::ContentManifest;
use crate::sim::net::{derive_seed, SimError};
use crate::transfer::engine::EngineConfig;
use world::{chunk_bytes, NodeSpec, World, WorldConfig};

/// The bytes of each chunk, shared by every PIECE that carries it.
type Chunks = Vec<Arc<Vec<u8>>>;

/// 10^6 bytes: link speeds are given in MB/s.
pub const MB: u64 = 1_000_000;

/// A node's link capacities, bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkClass {
    /// Upload.
    pub up: u64,
    /// Download.
    pub down: u64,
}

/// The parameters of a swarm run.
#[derive(Clone, Debug)]
pub struct SwarmScenario {
    /// Leechers (the seeder comes on top).
    pub leechers: usize,
    /// Size of the shared file, bytes.
    pub file_size: u64,
    /// Chunk size; `None`: the chunk-size policy for that file size.
    pub chunk_size: Option<u32>,
    /// The seeder's link.
    pub seeder: LinkClass,
    /// A fast leecher's link.
    pub fast: LinkClass,
    /// A slow leecher's link.
    pub slow: LinkClass,
    /// Fraction of the leechers that are fast.
    pub fast_fraction: f64,
    /// Leechers join at uniformly random times in `[0, join_over)`.
    pub join_over: Duration,
    /// One-way latency between two nodes: each node draws half of it uniformly in
    /// `[min / 2, max / 2]`, and a pair's latency is the sum of their halves.
    pub latency: (Duration, Duration),
    /// Link model time step.
    pub tick: Duration,
    /// How long a DHT lookup for peers takes.
    pub dht_delay: Duration,
    /// Joined peers a lookup returns besides the seeder.
    pub peers_per_lookup: usize,
    /// Hash every chunk received against the manifest (tests); otherwise check the marker
    /// the simulated sender wrote into it (big runs: SHA-256 of every copy is the slowest
    /// part otherwise).
    pub verify: bool,
    /// Give up at this virtual time.
    pub max_time: Duration,
    /// Seeds every random choice.
    pub seed: u64,
    /// What every node runs; [`SwarmScenario::compare`] sets `super_seed` both ways.
    pub engine: EngineConfig,
}

impl SwarmScenario {
    /// `leechers` leechers on the defaults of `peershare-sim swarm`: a 100 MiB file in the
    /// policy's chunks (256 KiB), a seeder with 2.5 MB/s of upload, 30% fast leechers
    /// (5 MB/s up, 25 MB/s down) and 70% slow ones (0.5 MB/s up, 5 MB/s down), joining over
    /// the first 60 s, one-way latency 10 to 90 ms, a 10 ms link step.
    pub fn new(leechers: usize) -> Self {
        SwarmScenario {
            leechers,
            file_size: 100 << 20,
            chunk_size: None,
            seeder: LinkClass {
                up: 5 * MB / 2,
                down: 25 * MB,
            },
            fast: LinkClass {
                up: 5 * MB,
                down: 25 * MB,
            },
            slow: LinkClass {
                up: MB / 2,
                down: 5 * MB,
            },
            fast_fraction: 0.3,
            join_over: Duration::from_secs(60),
            latency: (Duration::from_millis(10), Duration::from_millis(90)),
            tick: Duration::from_millis(10),
            dht_delay: Duration::from_secs(1),
            peers_per_lookup: 30,
            verify: false,
            max_time: Duration::from_secs(3600),
            seed: 1,
            engine: EngineConfig::default(),
        }
    }

    /// The chunk size used.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
            .unwrap_or_else(|| chunk_size_for(self.file_size))
    }

    /// Runs once, with the seeder super-seeding or not.
    pub fn run(&self, super_seed: bool) -> Result<SwarmReport, SimError> {
        let started = std::time::Instant::now();
        let (manifest, chunks) = self.content()?;
        let specs = self.nodes();
        let cfg = WorldConfig {
            tick: self.tick,
            dht_delay: self.dht_delay,
            peers_per_lookup: self.peers_per_lookup,
            verify: self.verify,
            max_time: self.max_time,
            seed: self.seed,
            engine: EngineConfig {
                super_seed,
                ..self.engine.clone()
            },
        };
        let outcome = World::new(cfg, manifest, chunks, specs)?.run()?;
        Ok(SwarmReport::new(
            super_seed,
            self.file_size,
            outcome,
            started.elapsed(),
        ))
    }

    /// Both runs, plain rarest-first first, and the ideal bound.
    pub fn compare(&self) -> Result<Comparison, SimError> {
        let plain = self.run(false)?;
        let super_seeding = self.run(true)?;
        Ok(Comparison {
            scenario: self.describe(),
            ideal: self.ideal(),
            plain,
            super_seeding,
        })
    }

    /// The lower bounds of this scenario's completion times (see [`IdealBound`]).
    pub fn ideal(&self) -> IdealBound {
        let specs = self.nodes();
        let seeder_up = specs.first().map_or(1, |s| s.up.max(1));
        let leechers: Vec<(Duration, u64, u64)> = specs
            .iter()
            .skip(1)
            .map(|s| (s.join.unwrap_or_default(), s.up, s.down.max(1)))
            .collect();
        IdealBound::new(self.file_size, seeder_up, &leechers)
    }

    /// The `peershare-sim` command that replays this scenario (`engine`, `verify`,
    /// `dht_delay` and `max_time` replay only at their defaults).
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run --release --bin peershare-sim -- swarm --leechers {} --seed {} \
             --file-kib {} --seeder-up {} --fast-up {} --fast-down {} --slow-up {} \
             --slow-down {} --fast-fraction {} --join-over {} --latency-min {} \
             --latency-max {} --tick-ms {} --peers-per-lookup {}",
            self.leechers,
            self.seed,
            self.file_size / 1024,
            mbps(self.seeder.up),
            mbps(self.fast.up),
            mbps(self.fast.down),
            mbps(self.slow.up),
            mbps(self.slow.down),
            self.fast_fraction,
            self.join_over.as_secs_f64(),
            self.latency.0.as_millis(),
            self.latency.1.as_millis(),
            self.tick.as_millis(),
            self.peers_per_lookup,
        );
        if let Some(c) = self.chunk_size {
            cmd.push_str(&format!(" --chunk-kib {}", c / 1024));
        }
        cmd
    }

    /// Two lines: the swarm and its links.
    pub fn describe(&self) -> String {
        let fast = self.fast_count();
        let cs = self.chunk_size();
        format!(
            "swarm: 1 seeder + {} leechers, {:.1} MiB in {} chunks of {} KiB, seed {}\n  \
             links (MB = 10^6 B): seeder up {} MB/s; {} fast (up {} MB/s, down {} MB/s); \
             {} slow (up {} MB/s, down {} MB/s)\n  \
             one-way latency {}-{} ms; joins uniform over the first {:.0} s; a lookup gives \
             the seeder + {} joined peers after {:.1} s; link step {} ms",
            self.leechers,
            self.file_size as f64 / f64::from(1u32 << 20),
            self.file_size.div_ceil(u64::from(cs)),
            cs / 1024,
            self.seed,
            mbps(self.seeder.up),
            fast,
            mbps(self.fast.up),
            mbps(self.fast.down),
            self.leechers - fast,
            mbps(self.slow.up),
            mbps(self.slow.down),
            self.latency.0.as_millis(),
            self.latency.1.as_millis(),
            self.join_over.as_secs_f64(),
            self.peers_per_lookup,
            self.dht_delay.as_secs_f64(),
            self.tick.as_millis(),
        )
    }

    fn fast_count(&self) -> usize {
        ((self.leechers as f64 * self.fast_fraction).round() as usize).min(self.leechers)
    }

    /// The file (chunk bytes) and its manifest.
    fn content(&self) -> Result<(Arc<ContentManifest>, Chunks), SimError> {
        let cs = self.chunk_size();
        let lengths = crate::content::manifest::Lengths::new(self.file_size, cs)
            .map_err(|e| SimError::InvalidConfig(format!("file layout: {e}")))?;
        let chunks: Chunks = lengths
            .chunks()
            .map(|c| Arc::new(chunk_bytes(c.get(), lengths.chunk_len(c) as usize)))
            .collect();
        let mut data = Vec::with_capacity(self.file_size as usize);
        for c in &chunks {
            data.extend_from_slice(c);
        }
        let m = Manifest::for_data_with_chunk_size(&data, cs)
            .map_err(|e| SimError::InvalidConfig(format!("manifest: {e}")))?;
        Ok((Arc::new(ContentManifest::File(m)), chunks))
    }

    /// Node 0 is the seeder; the leechers' classes, latencies and join times come from the
    /// seed (the same for both runs of a comparison).
    fn nodes(&self) -> Vec<NodeSpec> {
        let mut rng = StdRng::seed_from_u64(derive_seed(self.seed, 0, 10));
        let (lo, hi) = (self.latency.0 / 2, self.latency.1.max(self.latency.0) / 2);
        let half = |rng: &mut StdRng| {
            Duration::from_micros(rng.gen_range(lo.as_micros() as u64..=hi.as_micros() as u64))
        };
        let mut specs = vec![NodeSpec {
            up: self.seeder.up,
            down: self.seeder.down,
            half_latency: half(&mut rng),
            join: None,
        }];
        let mut fast: Vec<bool> = (0..self.leechers).map(|i| i < self.fast_count()).collect();
        fast.shuffle(&mut rng);
        let over = self.join_over.as_micros() as u64;
        for is_fast in fast {
            let link = if is_fast { self.fast } else { self.slow };
            let join = Duration::from_micros(if over == 0 { 0 } else { rng.gen_range(0..over) });
            specs.push(NodeSpec {
                up: link.up,
                down: link.down,
                half_latency: half(&mut rng),
                join: Some(join),
            });
        }
        specs
    }
}

fn mbps(bytes_per_s: u64) -> String {
    let x = bytes_per_s as f64 / MB as f64;
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
