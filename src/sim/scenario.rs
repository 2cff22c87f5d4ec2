//! The experiment behind `make sim`: build a network, announce keys, kill nodes, look up.
//!
//! Phases, all in virtual time on one [`Sim`]:
//! 1. **Join**: node `i` is created at `i * join_interval` and bootstraps from a random
//!    earlier node, so the network grows the way a real one does: early nodes know few
//!    peers, later ones find a populated network. Then the network **settles** for
//!    `settle`, long enough for every node's first round of bucket refreshes (a node
//!    refreshes the buckets it never looked up at its first maintenance after joining).
//! 2. **Announce**: `keys` random keys, each from a random node, one every `op_interval`;
//!    the phase ends when every announce has finished.
//! 3. **Kill**: `dead_fraction` of the nodes, chosen at random, die silently, all at once
//!    and right before the lookups: the worst moment, when every routing table still holds
//!    them.
//! 4. **Look up**: `lookups` provider lookups (a random live node asks for a random key whose
//!    announcer is alive; success = the announcer's address is among the providers) and
//!    `lookups` node lookups (a random live node looks for another random live node's ID;
//!    success = that node is the first result), interleaved, one pair every `op_interval`.
//!    Lookups not finished `lookup_deadline` after the last one started count as unfinished.
//!
//! Phases 1 and 2 ([`Scenario::prepare`]) build a [`Network`] that several scenarios measure
//! in turn (phases 3 and 4, [`Scenario::measure`]): `peershare-sim --dead 0,0.3` joins once.
//! The first scenario's report is the one [`Scenario::run`] gives; a later one continues the
//! network the one before left (more nodes killed, that scenario's lookups done), which
//! moves its figures about as much as another seed does, at half the time of two joins.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use super::islands::{explain, Graph, History};
use super::net::{node_addr, NetConfig, Sim, SimError};
use super::report::{KindStats, NetworkState, Percentiles, Report, WallTimes};
use crate::dht::{DhtConfig, ProofScheme, QueryId, QueryResult, QueryStats};
use crate::id::Id;

/// The parameters of one run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Nodes in the network.
    pub nodes: usize,
    /// Keys announced.
    pub keys: usize,
    /// Provider lookups, and as many node lookups.
    pub lookups: usize,
    /// Fraction of the nodes killed before the lookups, in `[0, 1)`.
    pub dead_fraction: f64,
    /// Fraction of the nodes that lie in every NODES and PROVIDERS answer from the end of
    /// the join on (`sim::liars`), in `[0, 1)`. Announcers, askers and looked-for nodes are
    /// honest.
    pub liar_fraction: f64,
    /// Virtual time between two joins.
    pub join_interval: Duration,
    /// Virtual time the network runs after the last join before anything is measured.
    pub settle: Duration,
    /// Virtual time between two announces, and between two pairs of lookups.
    pub op_interval: Duration,
    /// How long announces and lookups may take before they count as unfinished.
    pub lookup_deadline: Duration,
    /// The network model and the seed.
    pub net: NetConfig,
    /// What every node runs. Not the default: the report says so.
    pub dht: DhtConfig,
    /// Explain the islands in the report: who holds each node outside the main component,
    /// sampled every [`HISTORY_EVERY`] while the network joins and settles.
    pub explain_islands: bool,
    /// Sign and check PROOFs with Ed25519 as real nodes do, rather than the simulator's
    /// hash ([`Sim::set_proof_scheme`]): the same report, several times the CPU.
    pub ed25519_proofs: bool,
    /// Threads the nodes run on (0: one per core; 1 by default); the report is the same
    /// whatever the number ([`Sim::set_threads`]).
    pub threads: usize,
}

/// The stretch of virtual time whose joins [`Scenario::join`] hands the network at once.
const JOIN_BATCH: Duration = Duration::from_secs(1);

/// How often [`Scenario::explain_islands`] samples who holds whom.
pub const HISTORY_EVERY: Duration = Duration::from_secs(5);

impl Scenario {
    /// `nodes` nodes with the defaults of `peershare-sim` for the rest: 200 keys, 1000
    /// lookups of each kind, nobody dead, default network and DHT configuration.
    pub fn new(nodes: usize) -> Self {
        Scenario {
            nodes,
            keys: 200,
            lookups: 1000,
            dead_fraction: 0.0,
            liar_fraction: 0.0,
            join_interval: Duration::from_millis(20),
            settle: Duration::from_secs(180),
            op_interval: Duration::from_millis(10),
            lookup_deadline: Duration::from_secs(600),
            net: NetConfig::default(),
            dht: DhtConfig::default(),
            explain_islands: false,
            ed25519_proofs: false,
            threads: 1,
        }
    }

    /// The `peershare-sim` command line that replays this scenario, for failure messages.
    /// (`op_interval`, `lookup_deadline` and `dht` are not flags: they replay only at their
    /// defaults.)
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release --bin peershare-sim -- --nodes {} --keys {} --lookups {} \
             --dead {} --liars {} --latency {} --jitter {} --loss {} --seed {} --settle {} \
             --join-interval {} --threads {}{}",
            self.nodes,
            self.keys,
            self.lookups,
            self.dead_fraction,
            self.liar_fraction,
            self.net.latency.as_millis(),
            self.net.jitter.as_millis(),
            self.net.loss,
            self.net.seed,
            self.settle.as_secs(),
            self.join_interval.as_millis(),
            self.threads,
            if self.ed25519_proofs {
                " --ed25519-proofs"
            } else {
                ""
            },
        )
    }

    fn validate(&self) -> Result<(), SimError> {
        if self.nodes == 0 {
            return Err(SimError::InvalidConfig("at least one node".into()));
        }
        if !(0.0..1.0).contains(&self.dead_fraction) {
            return Err(SimError::InvalidConfig(format!(
                "dead fraction must be in [0, 1), got {}",
                self.dead_fraction
            )));
        }
        if !(0.0..1.0).contains(&self.liar_fraction) {
            return Err(SimError::InvalidConfig(format!(
                "liar fraction must be in [0, 1), got {}",
                self.liar_fraction
            )));
        }
        Ok(())
    }

    /// Phase 1 alone: a network of [`Scenario::nodes`] nodes joined and settled, for
    /// experiments of their own (`sim::provide`).
    pub fn build(&self) -> Result<Sim, SimError> {
        self.validate()?;
        let mut sim = self.new_sim()?;
        self.join(&mut sim, None)?;
        Ok(sim)
    }

    fn new_sim(&self) -> Result<Sim, SimError> {
        let mut sim = Sim::new(self.net.clone(), self.dht.clone())?;
        sim.set_threads(self.threads);
        sim.reserve_nodes(self.nodes);
        if self.ed25519_proofs {
            sim.set_proof_scheme(ProofScheme::Ed25519);
        }
        Ok(sim)
    }

    /// Joins the nodes one by one, then lets the network settle; samples who holds whom
    /// into `history` when given.
    fn join(&self, sim: &mut Sim, mut history: Option<&mut History>) -> Result<(), SimError> {
        let mut next_sample = sim.now();
        let start = sim.at(Duration::ZERO);
        let at = |i: usize| start + saturating_mul(self.join_interval, i);
        let mut i = 0;
        // The joins go in batches, each a stretch of virtual time: the network runs up to
        // the batch's first join, as it would before a join made there, and the batch's
        // joins happen inside the windows that run it (`Sim::join_at`), not between them.
        // A batch ends where the history takes its next sample.
        while i < self.nodes {
            let first = at(i);
            sim.run_until(first)?;
            if let Some(h) = history.as_deref_mut() {
                if sim.now() >= next_sample {
                    h.sample(sim);
                    next_sample = sim.now() + HISTORY_EVERY;
                }
            }
            let end = match history {
                Some(_) => (first + JOIN_BATCH).min(next_sample),
                None => first + JOIN_BATCH,
            };
            loop {
                let via = (i > 0).then(|| sim.rng().gen_range(0..i));
                sim.join_at(at(i), via)?;
                i += 1;
                if i >= self.nodes || at(i) >= end {
                    break;
                }
            }
        }
        // The last joins, as the loop above runs the network only up to a batch's first.
        sim.run_until(at(self.nodes.saturating_sub(1)))?;
        match history {
            Some(h) => {
                let end = sim.now() + self.settle;
                while sim.now() < end {
                    let step = HISTORY_EVERY.min(end.saturating_duration_since(sim.now()));
                    sim.run_for(step)?;
                    h.sample(sim);
                }
            }
            None => sim.run_for(self.settle)?,
        }
        Ok(())
    }

    /// Runs the scenario and measures it: [`Scenario::prepare`], then
    /// [`Scenario::measure`] with [`Scenario::dead_fraction`].
    pub fn run(&self) -> Result<Report, SimError> {
        let mut network = self.prepare()?;
        self.measure(&mut network, self.dead_fraction)
    }

    /// Phases 1 and 2: joins the network, lets it settle, makes the liars and announces the
    /// keys. Every scenario measured on the result ([`Scenario::measure`]) shares them.
    pub fn prepare(&self) -> Result<Network, SimError> {
        self.validate()?;
        // The wall clock is read for the report only.
        let wall_start = std::time::Instant::now();
        let mut sim = self.new_sim()?;
        let n = self.nodes;

        // 1. Join, then settle.
        let mut history = History::default();
        self.join(&mut sim, self.explain_islands.then_some(&mut history))?;
        let wall_join = wall_start.elapsed();
        let liars = (self.liar_fraction * n as f64).round() as usize;
        for v in rand::seq::index::sample(sim.rng(), n, liars.min(n)).iter() {
            sim.make_liar(v);
        }

        // 2. Announce (from honest nodes).
        let mut announces: Vec<(Id, usize, QueryId)> = Vec::new();
        for _ in 0..self.keys {
            let key = Id::random(sim.rng());
            let who = loop {
                let w = sim.rng().gen_range(0..n);
                if !sim.is_liar(w) || liars >= n {
                    break w;
                }
            };
            if let Some(q) = sim.announce(who, key) {
                announces.push((key, who, q));
            }
            sim.run_for(self.op_interval)?;
        }
        let watch: Vec<(usize, QueryId)> = announces.iter().map(|(_, w, q)| (*w, *q)).collect();
        let deadline = sim.now() + self.lookup_deadline;
        sim.run_until_finished(&watch, deadline)?;
        let mut stored = Vec::new();
        for (w, q) in &watch {
            if let Some((QueryResult::Announced { stored_at, .. }, _)) = sim.take_finished(*w, *q) {
                stored.push(stored_at);
            } else {
                stored.push(0);
            }
        }
        Ok(Network {
            sim,
            history,
            liars,
            announced: announces.iter().map(|(k, w, _)| (*k, *w)).collect(),
            stored,
            killed: 0,
            measured: None,
            wall_join,
            wall_rest: wall_start.elapsed().saturating_sub(wall_join),
        })
    }

    /// Phases 3 and 4 on `network`: kills nodes until `dead_fraction` of them are dead, then
    /// looks up. The first scenario measured on a network sees it as [`Scenario::prepare`]
    /// left it, exactly as [`Scenario::run`] would; a later one continues the network the
    /// one before left (its dead stay dead, its lookups have run), so its dead fraction may
    /// not be smaller.
    pub fn measure(&self, network: &mut Network, dead_fraction: f64) -> Result<Report, SimError> {
        if !(0.0..1.0).contains(&dead_fraction) {
            return Err(SimError::InvalidConfig(format!(
                "dead fraction must be in [0, 1), got {dead_fraction}"
            )));
        }
        let wall_start = std::time::Instant::now();
        let n = self.nodes;
        let dead = (dead_fraction * n as f64).round() as usize;
        if dead < network.killed {
            return Err(SimError::InvalidConfig(format!(
                "a scenario with {dead} dead cannot continue one with {} dead: give the dead \
                 fractions in increasing order",
                network.killed
            )));
        }
        let continues = network.measured.replace(dead_fraction);
        let sim = &mut network.sim;

        // 3. Kill: as many more as needed, chosen among the living (at the first scenario
        // every node lives, so this is a sample of all of them).
        let living = sim.live_nodes();
        let more = (dead - network.killed).min(living.len());
        for k in rand::seq::index::sample(sim.rng(), living.len(), more).iter() {
            if let Some(&v) = living.get(k) {
                sim.kill(v);
            }
        }
        network.killed += more;
        let live = sim.live_nodes();
        // Who asks and who is looked for: honest live nodes.
        let honest: Vec<usize> = live.iter().copied().filter(|&i| !sim.is_liar(i)).collect();
        let graph = Graph::of(sim, &live);
        let mut state = network_state(sim, &live, &graph);
        let islands = self
            .explain_islands
            .then(|| explain(sim, &graph, &live, &network.history));
        drop(graph);
        state.announced = network.announced.len();
        state.mean_stored_at = mean(network.stored.iter().map(|&s| s as f64));
        state.stored_nowhere = network.stored.iter().filter(|&&s| s == 0).count();

        // 4. Look up.
        let sent_before = sim.counters().sent;
        let keys: Vec<(Id, usize)> = network
            .announced
            .iter()
            .filter(|(_, w)| sim.is_alive(*w))
            .copied()
            .collect();
        let mut started: Vec<Started> = Vec::new();
        if honest.len() >= 2 {
            for _ in 0..self.lookups {
                if !keys.is_empty() {
                    let (key, announcer) = keys[sim.rng().gen_range(0..keys.len())];
                    let origin = pick_other(sim, &honest, announcer);
                    let q = sim.get_providers(origin, key);
                    started.push(Started {
                        origin,
                        q,
                        expect: Expect::Provider(node_addr(announcer)),
                    });
                }
                let target = honest[sim.rng().gen_range(0..honest.len())];
                let origin = pick_other(sim, &honest, target);
                let target_id = sim.node(target).map(|d| d.id()).unwrap_or(Id::ZERO);
                let q = sim.find_node(origin, target_id);
                started.push(Started {
                    origin,
                    q,
                    expect: Expect::Node(target_id),
                });
                sim.run_for(self.op_interval)?;
            }
        }
        let watch: Vec<(usize, QueryId)> = started
            .iter()
            .filter_map(|s| s.q.map(|q| (s.origin, q)))
            .collect();
        let deadline = sim.now() + self.lookup_deadline;
        sim.run_until_finished(&watch, deadline)?;
        let lookup_phase_datagrams = sim.counters().sent - sent_before;

        let mut providers = Tally::default();
        let mut nodes = Tally::default();
        for s in &started {
            let tally = match s.expect {
                Expect::Provider(_) => &mut providers,
                Expect::Node(_) => &mut nodes,
            };
            tally.attempted += 1;
            let Some(q) = s.q else {
                tally.refused += 1;
                continue;
            };
            let Some((result, stats)) = sim.take_finished(s.origin, q) else {
                tally.unfinished += 1;
                continue;
            };
            tally.record(&s.expect, &result, &stats);
        }

        let hops: Vec<u32> = providers.hops.iter().chain(&nodes.hops).copied().collect();
        let latency: Vec<Duration> = providers
            .latency
            .iter()
            .chain(&nodes.latency)
            .copied()
            .collect();
        let answer: Vec<Duration> = providers
            .answer
            .iter()
            .chain(&nodes.answer)
            .copied()
            .collect();
        // The join's wall time (and the announces') counts for the first scenario only.
        let (join, before) = match continues {
            None => (network.wall_join, network.wall_rest),
            Some(_) => (Duration::ZERO, Duration::ZERO),
        };
        let rest = before + wall_start.elapsed();
        Ok(Report {
            nodes: n,
            dead_fraction,
            dead: network.killed,
            liars: network.liars,
            lies: sim.lies_told(),
            net: self.net.clone(),
            dht_config: config_diff(&self.dht),
            providers: providers.stats(),
            find_node: nodes.stats(),
            hops: Percentiles::of(&hops),
            latency: Percentiles::of(&latency),
            answer: Percentiles::of(&answer),
            state,
            islands,
            counters: sim.counters().clone(),
            lookup_phase_datagrams,
            virtual_time: sim.elapsed(),
            continues,
            wall: WallTimes {
                join,
                rest,
                total: join + rest,
            },
        })
    }
}

/// A network after [`Scenario::prepare`]: joined, settled, its keys announced, ready for
/// one scenario after another ([`Scenario::measure`]). At 100,000 nodes the join is about
/// 98% of a scenario's time, so `peershare-sim --dead 0,0.3` joins once, not twice; a copy
/// of the network for each scenario would have doubled the memory instead (7 GiB).
pub struct Network {
    sim: Sim,
    history: History,
    liars: usize,
    /// Each key announced and the node that announced it.
    announced: Vec<(Id, usize)>,
    /// How many nodes stored each announce (0: the announce failed).
    stored: Vec<usize>,
    /// Nodes killed so far.
    killed: usize,
    /// The dead fraction of the last scenario measured on it.
    measured: Option<f64>,
    wall_join: Duration,
    /// Wall time of the announces.
    wall_rest: Duration,
}

/// What a lookup should find.
enum Expect {
    /// This address among the providers.
    Provider(SocketAddr),
    /// This node first.
    Node(Id),
}

struct Started {
    origin: usize,
    /// None: the origin refused to start the lookup.
    q: Option<QueryId>,
    expect: Expect,
}

#[derive(Default)]
struct Tally {
    attempted: usize,
    succeeded: usize,
    refused: usize,
    unfinished: usize,
    wrong: usize,
    hops: Vec<u32>,
    latency: Vec<Duration>,
    answer: Vec<Duration>,
    finished: usize,
    requests: u64,
    datagrams: u64,
}

impl Tally {
    fn record(&mut self, expect: &Expect, result: &QueryResult, stats: &QueryStats) {
        self.finished += 1;
        let answers = u64::from(stats.answers);
        let failures = u64::from(stats.failures);
        self.requests += answers + failures;
        self.datagrams += 2 * answers + failures;
        let ok = match (expect, result) {
            (Expect::Provider(a), QueryResult::Providers { providers, .. }) => {
                providers.contains(a)
            }
            (Expect::Node(id), QueryResult::Nodes(found)) => {
                found.first().is_some_and(|c| c.id == *id)
            }
            _ => false,
        };
        if ok {
            self.succeeded += 1;
            self.hops.push(stats.hops.unwrap_or(0));
            self.latency.push(stats.duration);
            self.answer
                .push(stats.first_provider.unwrap_or(stats.duration));
        } else {
            self.wrong += 1;
        }
    }

    fn stats(&self) -> KindStats {
        let per = |x: u64| {
            if self.finished == 0 {
                0.0
            } else {
                x as f64 / self.finished as f64
            }
        };
        KindStats {
            attempted: self.attempted,
            succeeded: self.succeeded,
            refused: self.refused,
            unfinished: self.unfinished,
            wrong: self.wrong,
            hops: Percentiles::of(&self.hops),
            latency: Percentiles::of(&self.latency),
            answer: Percentiles::of(&self.answer),
            requests_per_lookup: per(self.requests),
            datagrams_per_lookup: per(self.datagrams),
        }
    }
}

/// A random live node other than `not` (the live set has at least two nodes).
fn pick_other(sim: &mut Sim, live: &[usize], not: usize) -> usize {
    loop {
        let i = live[sim.rng().gen_range(0..live.len())];
        if i != not || live.len() < 2 {
            return i;
        }
    }
}

/// Routing-table size and quality over the live nodes, and how many of them are cut off.
fn network_state(sim: &Sim, live: &[usize], graph: &Graph) -> NetworkState {
    let sizes: Vec<usize> = live
        .iter()
        .filter_map(|&i| sim.node(i))
        .map(|d| d.routing_table().len())
        .collect();
    NetworkState {
        mean_table: mean(sizes.iter().map(|&s| s as f64)),
        min_table: sizes.iter().copied().min().unwrap_or(0),
        dead_entries: if graph.entries == 0 {
            0.0
        } else {
            graph.dead_entries as f64 / graph.entries as f64
        },
        empty_tables: sizes.iter().filter(|&&s| s == 0).count(),
        partitioned: graph.islands(live).count(),
        ..NetworkState::default()
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

fn saturating_mul(d: Duration, n: usize) -> Duration {
    d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The fields of `cfg` that differ from `DhtConfig::default()`, as `name: value` pairs, or
/// `None` when there are none. Works from the `Debug` text so that a field added to
/// `DhtConfig` later is covered without touching this function.
pub fn config_diff(cfg: &DhtConfig) -> Option<String> {
    let ours = format!("{cfg:?}");
    let default = format!("{:?}", DhtConfig::default());
    if ours == default {
        return None;
    }
    let fields = |s: &str| -> Option<Vec<String>> {
        let inner = s.strip_prefix("DhtConfig { ")?.strip_suffix(" }")?;
        Some(top_level_fields(inner))
    };
    match (fields(&ours), fields(&default)) {
        (Some(a), Some(b)) if a.len() == b.len() => {
            let changed: Vec<String> = a
                .into_iter()
                .zip(b)
                .filter(|(x, y)| x != y)
                .map(|(x, _)| x)
                .collect();
            Some(changed.join(", "))
        }
        _ => Some(ours),
    }
}

/// `a: 1, b: X { c: 2, d: 3 }` -> `["a: 1", "b: X { c: 2, d: 3 }"]`: splits at the commas
/// outside braces, so a nested struct (such as `DhtConfig::diversity`) stays one field.
fn top_level_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim().to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_diff_names_changed_fields() {
        assert_eq!(config_diff(&DhtConfig::default()), None);
        let cfg = DhtConfig {
            alpha: 5,
            refresh_interval: Duration::from_secs(60),
            ..DhtConfig::default()
        };
        assert_eq!(
            config_diff(&cfg).as_deref(),
            Some("alpha: 5, refresh_interval: 60s")
        );
        // A nested struct is one field, shown whole.
        let mut cfg = DhtConfig::default();
        cfg.diversity.source.contacts_per_table = 3;
        let diff = config_diff(&cfg).unwrap();
        assert!(
            diff.starts_with("diversity: DiversityLimits { source: Quota {")
                && diff.contains("contacts_per_table: 3")
                && diff.ends_with('}'),
            "{diff}"
        );
    }

    #[test]
    fn tiny_scenario_runs() {
        let s = Scenario {
            keys: 3,
            lookups: 5,
            settle: Duration::from_secs(30),
            ..Scenario::new(12)
        };
        let r = s.run().unwrap();
        assert_eq!(r.providers.attempted, 5);
        assert_eq!(r.find_node.attempted, 5);
        assert!(r.success_rate() > 0.0, "{r}");
    }

    /// What every node's table holds, node by node: `(ID, address, failures)` in the
    /// table's order.
    fn tables(sim: &Sim) -> Vec<Vec<(Id, SocketAddr, u32)>> {
        (0..sim.len())
            .map(|i| {
                let d = sim.node(i).expect("every node is alive");
                (d.routing_table().iter())
                    .map(|e| (e.contact.id, e.contact.addr, e.failures))
                    .collect()
            })
            .collect()
    }

    /// The joins handed to the network in batches, inside the windows that run it
    /// (`Sim::join_at`), make the network that joins made between windows one by one
    /// (running it up to each join's time, then `add_node` and `bootstrap`) make: the same
    /// counters and the same tables, node by node, on one thread or two, with or without
    /// the history's samples (which end batches).
    #[test]
    fn joins_inside_the_windows_make_the_network_joins_between_them_make() {
        for threads in [1, 2] {
            let s = Scenario {
                settle: Duration::from_secs(20),
                join_interval: Duration::from_millis(7),
                net: NetConfig {
                    loss: 0.05,
                    ..NetConfig::default()
                },
                threads,
                ..Scenario::new(400)
            };
            let mut one_by_one = s.new_sim().unwrap();
            for i in 0..s.nodes {
                let at = one_by_one.at(saturating_mul(s.join_interval, i));
                one_by_one.run_until(at).unwrap();
                let me = one_by_one.add_node().unwrap();
                if me > 0 {
                    let via = one_by_one.rng().gen_range(0..me);
                    assert!(one_by_one.bootstrap(me, via));
                }
            }
            one_by_one.run_for(s.settle).unwrap();
            assert!(one_by_one.counters().delivered > 10 * s.nodes as u64);

            for history in [false, true] {
                let mut batched = s.new_sim().unwrap();
                let mut h = History::default();
                s.join(&mut batched, history.then_some(&mut h)).unwrap();
                let why = format!("{threads} threads, history {history}");
                assert_eq!(batched.elapsed(), one_by_one.elapsed(), "{why}");
                assert_eq!(batched.counters(), one_by_one.counters(), "{why}");
                assert_eq!(tables(&batched), tables(&one_by_one), "{why}");
            }
        }
    }
}
