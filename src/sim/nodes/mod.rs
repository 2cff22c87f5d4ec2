//! A whole-network simulator: N complete nodes, each the same [`NodeCore`] the binary runs
//! (DHT, transfer engine, NAT traversal and the API's commands), on virtual time and a
//! virtual network with latency, jitter, loss, per-node upload and download capacity, NAT
//! filtering and crashes (`peershare-sim net`, a small run in `make test`). Storage is in
//! memory; hashing, verification and the chunk logic are the real ones.
//!
//! - [`world`] (private): the driver: sockets, pipes, datagrams, NAT filters, crashes, the
//!   event heap. Its module docs state the model.
//! - [`links`] (private): pipes and the link model (shared upload and download capacity).
//! - [`storage`] (private): the storage jobs, in memory.
//!
//! The scenario ([`NetScenario`]): node 0 starts first and is everyone's bootstrap; the
//! others join over `join_over`. Each of `contents` files is shared by one random node from
//! the start. `downloads` requests (a node, a content it does not have) are made at random
//! times in the download window; a request answered with an error (nobody found yet, a
//! stall) is made again 15 s later, as a user would. `churn` of the nodes crash at a random
//! time in the churn window and restart 10 to 60 s later from what their disk kept; their
//! unfinished downloads resume and are asked for again. Every finished file is compared
//! byte for byte with the original.
//!
//! Determinism: everything follows from [`NetScenario::seed`]; the report prints the command
//! that replays it. With `PEERSHARE_SIM_DEBUG` set, a run also prints, per content, its
//! seeder's state (routing table, reachability, rendezvous) and which nodes hold its record.

mod links;
mod storage;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use crate::content::manifest::Manifest;
use crate::content::ContentManifest;
use crate::dht::DhtConfig;
use crate::id::Id;
use crate::sim::net::{derive_seed, SimError};
use crate::sim::report::Percentiles;
use crate::transfer::engine::EngineConfig;
pub use world::NatKind;
use world::{NodeSpec, World, WorldConfig};

/// The parameters of a run.
#[derive(Clone, Debug)]
pub struct NetScenario {
    /// Nodes in all.
    pub nodes: usize,
    /// Files shared, each by one node.
    pub contents: usize,
    /// Each file's size in bytes.
    pub content_size: u64,
    /// Download requests.
    pub downloads: usize,
    /// Fraction of the nodes (node 0 aside) that crash and restart.
    pub churn: f64,
    /// Fraction of the nodes behind a NAT (node 0 aside).
    pub nat: f64,
    /// Datagram loss probability.
    pub loss: f64,
    /// One-way latency is the sum of both nodes' halves, each uniform in this range.
    pub half_latency: (Duration, Duration),
    /// Datagram jitter (uniform, added).
    pub jitter: Duration,
    /// Fraction of nodes with the fast link.
    pub fast_fraction: f64,
    /// Fast link: up, down (bytes per second).
    pub fast: (u64, u64),
    /// Slow link: up, down (bytes per second).
    pub slow: (u64, u64),
    /// Nodes join over this long.
    pub join_over: Duration,
    /// Download requests are made at random times in this window.
    pub download_window: (Duration, Duration),
    /// Crashes happen at random times in this window.
    pub churn_window: (Duration, Duration),
    /// The run stops at this virtual time, finished or not.
    pub max_time: Duration,
    /// Seeds everything.
    pub seed: u64,
}

/// 10^6 bytes: link speeds are given in MB/s.
const MB: u64 = 1_000_000;

impl NetScenario {
    /// The scenario of the node-core issue at `nodes` nodes: 5% as many contents of 3 MiB,
    /// 30% as many downloads, 10% churn, a third of the nodes behind NATs.
    pub fn new(nodes: usize) -> Self {
        NetScenario {
            nodes,
            contents: (nodes / 20).max(1),
            content_size: 3 << 20,
            downloads: (nodes * 3 / 10).max(1),
            churn: 0.1,
            nat: 0.3,
            loss: 0.01,
            half_latency: (Duration::from_millis(5), Duration::from_millis(45)),
            jitter: Duration::from_millis(5),
            fast_fraction: 0.3,
            fast: (5 * MB, 25 * MB),
            slow: (MB, 5 * MB),
            join_over: Duration::from_secs(30),
            download_window: (Duration::from_secs(40), Duration::from_secs(100)),
            churn_window: (Duration::from_secs(45), Duration::from_secs(160)),
            max_time: Duration::from_secs(900),
            seed: 1,
        }
    }

    /// The `peershare-sim` command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "peershare-sim net --nodes {} --contents {} --content-size {} --downloads {} --churn {} --nat {} --loss {} --seed {}",
            self.nodes,
            self.contents,
            self.content_size,
            self.downloads,
            self.churn,
            self.nat,
            self.loss,
            self.seed
        )
    }

    fn check(&self) -> Result<(), SimError> {
        let bad = |why: &str| Err(SimError::InvalidConfig(why.to_owned()));
        if self.nodes < 2 {
            return bad("at least 2 nodes");
        }
        if self.contents == 0 || self.contents >= self.nodes {
            return bad("contents must be between 1 and nodes - 1");
        }
        if !(0.0..=1.0).contains(&self.churn)
            || !(0.0..=1.0).contains(&self.nat)
            || !(0.0..=1.0).contains(&self.loss)
        {
            return bad("churn, nat and loss are fractions in [0, 1]");
        }
        if self.content_size == 0 || self.content_size > 64 << 20 {
            return bad("content size must be 1 byte to 64 MiB");
        }
        if self.downloads > (self.nodes - 1) * self.contents {
            return bad("more downloads than (node, content) pairs");
        }
        Ok(())
    }

    /// Runs the scenario.
    pub fn run(&self) -> Result<NetReport, SimError> {
        self.check()?;
        let wall = std::time::Instant::now();
        let mut rng = StdRng::seed_from_u64(derive_seed(self.seed, u64::MAX, 1));
        let specs: Vec<NodeSpec> = (0..self.nodes)
            .map(|i| {
                let fast = rng.gen_bool(self.fast_fraction);
                let (up, down) = if fast { self.fast } else { self.slow };
                let (lo, hi) = self.half_latency;
                let half = lo + (hi.saturating_sub(lo)).mul_f64(rng.gen::<f64>());
                let nat = if i > 0 && rng.gen_bool(self.nat) {
                    NatKind::Restricted
                } else {
                    NatKind::Public
                };
                NodeSpec {
                    up,
                    down,
                    half_latency: half,
                    nat,
                }
            })
            .collect();
        let behind_nat = specs
            .iter()
            .filter(|s| s.nat == NatKind::Restricted)
            .count();
        let mut world = World::new(
            WorldConfig {
                jitter: self.jitter,
                loss: self.loss,
                tick: Duration::from_millis(10),
                seed: self.seed,
                dht: DhtConfig::default(),
                engine: EngineConfig::default(),
            },
            specs,
        );

        // The files: each shared from the start by a distinct random node (not node 0).
        let seeders: Vec<usize> = sample(&mut rng, self.nodes - 1, self.contents)
            .into_iter()
            .map(|i| i + 1)
            .collect();
        let mut contents: Vec<(Id, Arc<Vec<u8>>)> = Vec::new();
        for (k, &s) in seeders.iter().enumerate() {
            let mut data = vec![0u8; self.content_size as usize];
            StdRng::seed_from_u64(derive_seed(self.seed, k as u64, 9)).fill(&mut data[..]);
            let m = Arc::new(ContentManifest::File(
                Manifest::for_data(&data)
                    .map_err(|e| SimError::InvalidConfig(format!("content {k}: {e:?}")))?,
            ));
            contents.push((m.content_id(), Arc::new(data.clone())));
            world
                .storage_mut(s)
                .share(m, &data, &format!("sample-{k}.wav"));
        }
        let truth: BTreeMap<Id, Arc<Vec<u8>>> = contents.iter().cloned().collect();

        // Scenario events, by tag.
        let mut plan: Vec<Step> = Vec::new();
        let mut at = |world: &mut World, t: Duration, step: Step| {
            world.schedule_scenario(t, plan.len());
            plan.push(step);
        };
        at(&mut world, Duration::ZERO, Step::Start(0));
        for i in 1..self.nodes {
            let t = self.join_over.mul_f64(rng.gen::<f64>());
            at(&mut world, t, Step::Start(i));
        }
        let mut wanted: BTreeSet<(usize, usize)> = BTreeSet::new();
        while wanted.len() < self.downloads {
            let node = rng.gen_range(1..self.nodes);
            let k = rng.gen_range(0..self.contents);
            if seeders[k] != node {
                wanted.insert((node, k));
            }
        }
        let (w0, w1) = self.download_window;
        for &(node, k) in &wanted {
            let t = w0 + (w1.saturating_sub(w0)).mul_f64(rng.gen::<f64>());
            at(&mut world, t, Step::Request(node, k));
        }
        let crashes = ((self.nodes - 1) as f64 * self.churn).round() as usize;
        let (c0, c1) = self.churn_window;
        for i in sample(&mut rng, self.nodes - 1, crashes.min(self.nodes - 1)) {
            let t = c0 + (c1.saturating_sub(c0)).mul_f64(rng.gen::<f64>());
            let back = t + Duration::from_secs(rng.gen_range(10..=60));
            at(&mut world, t, Step::Kill(i + 1));
            at(&mut world, back, Step::Start(i + 1));
        }

        // Run: carry out the plan; retry failed requests; stop when all are done.
        let mut first_asked: BTreeMap<(usize, Id), Duration> = BTreeMap::new();
        // Requests whose time has come (made, or due when their node was down).
        let mut due: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut done: BTreeMap<(usize, Id), Duration> = BTreeMap::new();
        let mut failures = 0u64;
        let mut last_error: BTreeMap<(usize, Id), String> = BTreeMap::new();
        let mut seen_replies = 0usize;
        let key_of = |node: usize, k: usize| (node, contents[k].0);
        loop {
            let tag = world.run_until(self.max_time)?;
            // Replies since the last look: successes end a download; errors get a retry.
            let replies: Vec<_> = world.tally.replies[seen_replies..].to_vec();
            seen_replies = world.tally.replies.len();
            for (node, content, t, ok, msg) in replies {
                if ok {
                    done.entry((node, content)).or_insert(t);
                } else if !done.contains_key(&(node, content)) {
                    failures += 1;
                    last_error.insert((node, content), msg);
                    if let Some(k) = contents.iter().position(|(c, _)| *c == content) {
                        world.schedule_scenario(t + Duration::from_secs(15), plan.len());
                        plan.push(Step::Request(node, k));
                    }
                }
            }
            if done.len() >= wanted.len() {
                break;
            }
            let Some(tag) = tag else {
                break;
            };
            match plan[tag] {
                Step::Start(i) => {
                    world.start(i);
                    // A restarted node is asked again for what it had not finished.
                    for &(node, k) in due.iter().filter(|(n, _)| *n == i) {
                        let key = key_of(node, k);
                        if !done.contains_key(&key) && world.request(node, contents[k].0) {
                            first_asked.entry(key).or_insert(world.elapsed());
                        }
                    }
                }
                Step::Kill(i) => world.kill(i),
                Step::Request(node, k) => {
                    let key = key_of(node, k);
                    due.insert((node, k));
                    if done.contains_key(&key) {
                        continue;
                    }
                    if world.request(node, contents[k].0) {
                        first_asked.entry(key).or_insert(world.elapsed());
                    }
                }
            }
        }

        // Measure.
        let mut wrong_bytes = 0u64;
        let mut verified = 0usize;
        for (node, content, _, bytes) in &world.tally.finished {
            let Some(orig) = truth.get(content) else {
                continue;
            };
            if !wanted
                .iter()
                .any(|(n, k)| n == node && contents[*k].0 == *content)
            {
                continue;
            }
            verified += 1;
            let differ = orig
                .iter()
                .zip(bytes.iter())
                .filter(|(a, b)| a != b)
                .count();
            wrong_bytes += differ as u64 + orig.len().abs_diff(bytes.len()) as u64;
        }
        let times: Vec<Duration> = done
            .iter()
            .filter_map(|(key, t)| first_asked.get(key).map(|t0| t.saturating_sub(*t0)))
            .collect();
        let seeder_copies: Vec<f64> = seeders
            .iter()
            .map(|s| world.traffic(*s).2 as f64 / self.content_size as f64)
            .collect();
        let unfinished: Vec<String> = wanted
            .iter()
            .filter(|(n, k)| !done.contains_key(&key_of(*n, *k)))
            .map(|&(n, k)| {
                format!(
                    "node {n} ({:?}) wanted content {k} of node {} ({:?}){}: last reply {:?}",
                    world.nat_kind(n),
                    seeders[k],
                    world.nat_kind(seeders[k]),
                    if first_asked.contains_key(&key_of(n, k)) {
                        ""
                    } else {
                        ", never asked (down)"
                    },
                    last_error.get(&key_of(n, k)).map_or("none", String::as_str)
                )
            })
            .collect();
        if std::env::var_os("PEERSHARE_SIM_DEBUG").is_some() {
            for (k, &sd) in seeders.iter().enumerate() {
                let holders: Vec<usize> = (0..self.nodes)
                    .filter(|i| world.knows_key(*i, &contents[k].0))
                    .collect();
                eprintln!(
                    "content {k} seeder {sd}: {} ; held by {holders:?}",
                    world.debug_node(sd)
                );
            }
        }
        let end = world.elapsed();
        let minutes = end.as_secs_f64().max(1.0) / 60.0;
        let per_node: Vec<(u64, u64)> = (0..self.nodes)
            .map(|i| {
                let (d, b, _) = world.traffic(i);
                (d, b)
            })
            .collect();
        let dgrams: u64 = per_node.iter().map(|p| p.0).sum();
        let dbytes: u64 = per_node.iter().map(|p| p.1).sum();
        Ok(NetReport {
            scenario: self.clone(),
            behind_nat,
            crashes,
            requested: wanted.len(),
            completed: done.len(),
            files_checked: verified,
            wrong_bytes,
            retries: failures,
            completion: Percentiles::of(&times),
            seeder_copies_mean: mean(&seeder_copies),
            seeder_copies_max: seeder_copies.iter().copied().fold(0.0, f64::max),
            dht_datagrams_per_node_min: dgrams as f64 / self.nodes as f64 / minutes,
            dht_bytes_per_node_min: dbytes as f64 / self.nodes as f64 / minutes,
            setups: world.setups(),
            connects: world.tally.connects,
            refused: world.tally.refused,
            punched: world.tally.punched,
            circuits: world.tally.circuits,
            datagrams_lost: world.tally.lost,
            datagrams_filtered: world.tally.filtered,
            unfinished,
            end,
            wall: wall.elapsed(),
        })
    }
}

/// A scenario step.
#[derive(Clone, Copy, Debug)]
enum Step {
    Start(usize),
    Kill(usize),
    Request(usize, usize),
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct NetReport {
    /// The scenario.
    pub scenario: NetScenario,
    /// Nodes behind a NAT.
    pub behind_nat: usize,
    /// Nodes that crashed (and restarted).
    pub crashes: usize,
    /// Downloads asked for / answered with success.
    pub requested: usize,
    /// Downloads answered with success.
    pub completed: usize,
    /// Finished files compared with the original.
    pub files_checked: usize,
    /// Bytes of finished files that differ from the original (0 is the goal).
    pub wrong_bytes: u64,
    /// Requests answered with an error and asked again.
    pub retries: u64,
    /// From the first request to the success reply.
    pub completion: Percentiles<Duration>,
    /// PIECE bytes each original seeder uploaded, in copies of its file.
    pub seeder_copies_mean: f64,
    /// The most any seeder uploaded, in copies.
    pub seeder_copies_max: f64,
    /// DHT datagrams sent per node per minute.
    pub dht_datagrams_per_node_min: f64,
    /// DHT bytes sent per node per minute.
    pub dht_bytes_per_node_min: f64,
    /// Connection set-ups the running nodes counted at the end: direct, punched, relayed.
    pub setups: [u64; 3],
    /// TCP connections made / refused (dead node or NAT filter).
    pub connects: u64,
    /// TCP connects refused.
    pub refused: u64,
    /// Connections made by a hole punch.
    pub punched: u64,
    /// Circuits relayed.
    pub circuits: u64,
    /// Datagrams lost to the loss model.
    pub datagrams_lost: u64,
    /// Datagrams dropped by a NAT filter or a dead node.
    pub datagrams_filtered: u64,
    /// The downloads that did not complete, and what their node last heard.
    pub unfinished: Vec<String>,
    /// Virtual time the run covered.
    pub end: Duration,
    /// Wall-clock time it took.
    pub wall: Duration,
}

impl NetReport {
    /// True when every download completed with the right bytes.
    pub fn all_good(&self) -> bool {
        self.completed == self.requested && self.wrong_bytes == 0
    }
}

impl fmt::Display for NetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        let ms = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        writeln!(f, "| whole-network simulation | |")?;
        writeln!(f, "| --- | --- |")?;
        writeln!(
            f,
            "| nodes | {} ({} behind NATs; {} crashed and restarted) |",
            s.nodes, self.behind_nat, self.crashes
        )?;
        writeln!(
            f,
            "| contents | {} of {:.1} MiB |",
            s.contents,
            s.content_size as f64 / (1 << 20) as f64
        )?;
        writeln!(
            f,
            "| network | one-way {}-{} ms, jitter {} ms, loss {:.1}% |",
            (s.half_latency.0 * 2).as_millis(),
            (s.half_latency.1 * 2).as_millis(),
            s.jitter.as_millis(),
            s.loss * 100.0
        )?;
        writeln!(
            f,
            "| downloads | {} of {} complete, {} files compared, {} requests retried |",
            self.completed, self.requested, self.files_checked, self.retries
        )?;
        writeln!(
            f,
            "| completion p50 / p90 / max | {} / {} / {} |",
            ms(self.completion.p50),
            ms(self.completion.p90),
            ms(self.completion.max)
        )?;
        writeln!(
            f,
            "| seeders' upload, copies of their file | {:.2} mean, {:.2} max |",
            self.seeder_copies_mean, self.seeder_copies_max
        )?;
        writeln!(
            f,
            "| DHT traffic per node | {:.0} datagrams/min, {:.1} KB/min |",
            self.dht_datagrams_per_node_min,
            self.dht_bytes_per_node_min / 1000.0
        )?;
        writeln!(
            f,
            "| connections | {} made, {} refused; set-ups direct / punched / relayed: {} / {} / {}; {} punches, {} circuits |",
            self.connects,
            self.refused,
            self.setups[0],
            self.setups[1],
            self.setups[2],
            self.punched,
            self.circuits
        )?;
        writeln!(
            f,
            "| datagrams lost / filtered | {} / {} |",
            self.datagrams_lost, self.datagrams_filtered
        )?;
        writeln!(
            f,
            "| virtual / wall time | {:.0} s / {:.1} s |",
            self.end.as_secs_f64(),
            self.wall.as_secs_f64()
        )?;
        for u in &self.unfinished {
            writeln!(f, "unfinished: {u}")?;
        }
        writeln!(f, "replay: {}", s.replay_command())?;
        write!(
            f,
            "downloads complete: {}/{}, wrong bytes: {}",
            self.completed, self.requested, self.wrong_bytes
        )
    }
}
