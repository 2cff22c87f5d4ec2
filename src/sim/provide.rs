//! Providing at scale (issue 21), `peershare-sim provide`: on a joined network of
//! [`Scenario::nodes`] nodes,
//!
//! 1. **One lookup per item** (the anchor): a node announces `baseline_items` keys one by
//!    one, the way every key used to be republished; the datagrams each announce took
//!    (lookup requests and answers, ANNOUNCEs and ACKs) give the cost per item.
//! 2. **First provide**: the same announces, timed from `add` to the first ACK (the record
//!    is findable from then on); and a provider lookup from another random node, started
//!    [`FIRST_PROVIDE_GOAL`] after each announce, must find the announcer.
//! 3. **Reprovide sweeps**: for each library size, a fresh node provides that many random
//!    keys through [`Dht::provide_many`](crate::dht::Dht::provide_many), and the sweep that
//!    republishes them runs to its end. Measured: its datagrams against `items` times the
//!    per-item cost of step 1, its virtual duration, and whether every record lives where
//!    it should: for a sample of keys, the fraction of the true k closest live nodes that
//!    hold the record (global knowledge), and provider lookups from random nodes. With
//!    [`ProvideScenario::rendezvous`] the node is behind a rendezvous (another node's
//!    address): its batches carry it, and a record counts as held only if it names it.
//!
//! Deterministic by seed like the rest of the simulator.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use super::net::{node_addr, Sim, SimError};
use super::report::Percentiles;
use super::scenario::Scenario;
use crate::dht::{QueryId, QueryResult};
use crate::id::Id;

/// How soon after `add` a new item should be findable (issue 21).
pub const FIRST_PROVIDE_GOAL: Duration = Duration::from_secs(1);

/// The experiment's parameters.
#[derive(Clone, Debug)]
pub struct ProvideScenario {
    /// The network (nodes, latency, loss, seed, DHT configuration).
    pub network: Scenario,
    /// Library sizes: one reprovide sweep each, by a different node.
    pub items: Vec<usize>,
    /// Keys announced one by one for the per-item anchor and the first-provide figures.
    pub baseline_items: usize,
    /// Keys of each library whose placement is checked (true k closest, lookups).
    pub check_keys: usize,
    /// The sweeping nodes announce a rendezvous (dht.md 4.9a, nat.md 5), as behind a NAT.
    pub rendezvous: bool,
}

impl ProvideScenario {
    /// `nodes` nodes; libraries of 1,000, 10,000 and 100,000 items; 200 keys announced one
    /// by one; 300 keys checked per library.
    pub fn new(nodes: usize) -> Self {
        ProvideScenario {
            network: Scenario::new(nodes),
            items: vec![1_000, 10_000, 100_000],
            baseline_items: 200,
            check_keys: 300,
            rendezvous: false,
        }
    }

    /// Runs it.
    pub fn run(&self) -> Result<ProvideReport, SimError> {
        let wall = std::time::Instant::now();
        let mut sim = self.network.build()?;
        let n = sim.len();
        let k = self.network.dht.k;
        let op = self.network.op_interval;
        let mut used = Vec::new();

        // 1 and 2: one announce per item, and how soon each is findable.
        let who = pick_unused(&mut sim, &mut used, n);
        let mut started = Vec::new();
        for _ in 0..self.baseline_items {
            let key = Id::random(sim.rng());
            let q = sim.announce(who, key);
            let at = sim.now();
            started.push((key, q, at));
            sim.run_for(op)?;
        }
        // A lookup from another node FIRST_PROVIDE_GOAL after each add.
        let mut probes: Vec<(usize, QueryId)> = Vec::new();
        for (key, _, at) in &started {
            sim.run_until(*at + FIRST_PROVIDE_GOAL)?;
            let from = pick_other(&mut sim, n, who);
            if let Some(q) = sim.get_providers(from, *key) {
                probes.push((from, q));
            }
        }
        let mut watch: Vec<(usize, QueryId)> = started
            .iter()
            .filter_map(|(_, q, _)| q.map(|q| (who, q)))
            .collect();
        watch.extend(probes.iter().copied());
        let deadline = sim.now() + self.network.lookup_deadline;
        sim.run_until_finished(&watch, deadline)?;
        let mut per_item = Vec::new();
        let mut first_ack = Vec::new();
        let mut stored_nowhere = 0;
        for (_, q, _) in &started {
            let Some((QueryResult::Announced { stored_at, asked }, st)) =
                q.and_then(|q| sim.take_finished(who, q))
            else {
                stored_nowhere += 1;
                continue;
            };
            per_item.push(
                2 * u64::from(st.answers) + u64::from(st.failures) + (asked + stored_at) as u64,
            );
            match st.first_provider {
                Some(t) if stored_at > 0 => first_ack.push(t),
                _ => stored_nowhere += 1,
            }
        }
        let found_after_goal = probes
            .iter()
            .filter(|(from, q)| {
                matches!(sim.take_finished(*from, *q),
                    Some((QueryResult::Providers { providers, .. }, _)) if providers.contains(&node_addr(who)))
            })
            .count();
        let per_item_datagrams = mean(&per_item);
        let announced_keys: Vec<Id> = started.iter().map(|(key, _, _)| *key).collect();
        let (baseline_held, baseline_all_k) = placement(&sim, who, &announced_keys, k, None);

        // 3. Sweeps.
        let mut sweeps = Vec::new();
        for &items in &self.items {
            let p = pick_unused(&mut sim, &mut used, n);
            let keys: Vec<Id> = (0..items).map(|_| Id::random(sim.rng())).collect();
            let before = sim
                .node(p)
                .map(|d| d.sweep_stats().clone())
                .unwrap_or_default();
            let io_before = sim
                .node(p)
                .map_or(0, |d| d.stats().datagrams_in + d.stats().datagrams_out);
            // Any other node's address serves: nobody is introduced through it here.
            let rv = self
                .rendezvous
                .then(|| node_addr(pick_other(&mut sim, n, p)));
            let start = sim.now();
            sim.command(p, |d, now| {
                d.set_rendezvous(rv, now);
                d.provide_many(&keys, 0, now);
            });
            let limit = start + self.network.dht.republish_interval;
            loop {
                sim.run_for(Duration::from_secs(1))?;
                let done = sim
                    .node(p)
                    .is_some_and(|d| d.sweep_stats().finished > before.finished);
                if done || sim.now() >= limit {
                    break;
                }
            }
            let after = sim
                .node(p)
                .map(|d| d.sweep_stats().clone())
                .unwrap_or_default();
            let io_after = sim
                .node(p)
                .map_or(0, |d| d.stats().datagrams_in + d.stats().datagrams_out);
            let finished = after.finished > before.finished;
            let took = sim.now().saturating_duration_since(start);
            // Placement: for sampled keys, which of the true k closest hold the record.
            let addr = node_addr(p);
            let sample = rand::seq::index::sample(sim.rng(), items, self.check_keys.min(items));
            let sampled: Vec<Id> = sample.iter().map(|i| keys[i]).collect();
            let (held, all_k) = placement(&sim, p, &sampled, k, rv);
            // Lookups from random nodes.
            let mut looks = Vec::new();
            for i in sample.iter() {
                let from = pick_other(&mut sim, n, p);
                if let Some(q) = sim.get_providers(from, keys[i]) {
                    looks.push((from, q));
                }
                sim.run_for(op)?;
            }
            let deadline = sim.now() + self.network.lookup_deadline;
            sim.run_until_finished(&looks, deadline)?;
            let found = looks
                .iter()
                .filter(|(from, q)| {
                    matches!(sim.take_finished(*from, *q),
                        Some((QueryResult::Providers { providers, .. }, _)) if providers.contains(&addr))
                })
                .count();
            let d = |f: fn(&crate::dht::SweepStats) -> u64| f(&after) - f(&before);
            sweeps.push(SweepRow {
                items,
                finished,
                took,
                regions: d(|s| s.regions),
                batches: d(|s| s.batches),
                datagrams: d(|s| s.datagrams()),
                node_datagrams: io_after - io_before,
                records_stored: d(|s| s.records_stored),
                deferred: d(|s| s.keys_deferred),
                one_lookup_each: per_item_datagrams * items as f64,
                held,
                all_k,
                looked_up: looks.len(),
                found,
            });
        }
        Ok(ProvideReport {
            nodes: n,
            scenario: self.clone(),
            per_item_datagrams,
            baseline_held,
            baseline_all_k,
            announced: started.len(),
            first_ack: Percentiles::of(&first_ack),
            stored_nowhere,
            probes: probes.len(),
            found_after_goal,
            sweeps,
            virtual_time: sim.elapsed(),
            wall: wall.elapsed(),
        })
    }
}

/// One library's sweep.
#[derive(Clone, Debug)]
pub struct SweepRow {
    /// Keys provided.
    pub items: usize,
    /// Whether the sweep ended within the republish interval.
    pub finished: bool,
    /// Virtual time it took.
    pub took: Duration,
    /// Region lookups.
    pub regions: u64,
    /// ANNOUNCE_MANY datagrams.
    pub batches: u64,
    /// The sweep's datagrams, sent and received.
    pub datagrams: u64,
    /// Every datagram the providing node sent or received meanwhile (background included).
    pub node_datagrams: u64,
    /// Records the STORED answers counted.
    pub records_stored: u64,
    /// Keys handed back to per-key announces.
    pub deferred: u64,
    /// The anchor: items times the per-item cost of one announce lookup each.
    pub one_lookup_each: f64,
    /// Of the sampled keys' true k closest live nodes, the fraction holding the record.
    pub held: f64,
    /// Sampled keys held by all of their true k closest.
    pub all_k: f64,
    /// Provider lookups run for sampled keys, and how many found the provider.
    pub looked_up: usize,
    /// Lookups that found it.
    pub found: usize,
}

/// What [`ProvideScenario::run`] measured.
#[derive(Clone, Debug)]
pub struct ProvideReport {
    /// Nodes in the network.
    pub nodes: usize,
    /// The parameters.
    pub scenario: ProvideScenario,
    /// Mean datagrams of one announce (lookup and ANNOUNCEs, both ways).
    pub per_item_datagrams: f64,
    /// Of the one-by-one keys' true k closest live nodes, the fraction holding the record.
    pub baseline_held: f64,
    /// Those keys held by all of their true k closest.
    pub baseline_all_k: f64,
    /// Announces made one by one.
    pub announced: usize,
    /// Time from `add` to the first ACK.
    pub first_ack: Percentiles<Duration>,
    /// Announces that stored the record nowhere (or did not finish).
    pub stored_nowhere: usize,
    /// Lookups started [`FIRST_PROVIDE_GOAL`] after an add, and how many found it.
    pub probes: usize,
    /// Those that found the new provider.
    pub found_after_goal: usize,
    /// One row per library size.
    pub sweeps: Vec<SweepRow>,
    /// Virtual time covered.
    pub virtual_time: Duration,
    /// Wall-clock time (measurement only).
    pub wall: Duration,
}

impl fmt::Display for ProvideReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = &self.scenario.network.net;
        writeln!(
            f,
            "provide: {} nodes, seed {}, net {} ms ± {} ms one way, loss {:.1}%{}",
            self.nodes,
            net.seed,
            net.latency.as_millis(),
            net.jitter.as_millis(),
            net.loss * 100.0,
            if self.scenario.rendezvous {
                "; sweeping nodes behind a rendezvous (records held only if they name it)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  one announce lookup per item: {:.1} datagrams per item ({} announces); records on \
             {:.1}% of the true k closest, all k for {:.1}% of the keys",
            self.per_item_datagrams,
            self.announced,
            self.baseline_held * 100.0,
            self.baseline_all_k * 100.0
        )?;
        writeln!(
            f,
            "  first provide: add -> first ACK p50 {} ms, p90 {} ms, p99 {} ms ({} stored nowhere); \
             a lookup from another node {} ms after add found it {}/{} [goal: p50 <= {} ms: {}]",
            self.first_ack.p50.as_millis(),
            self.first_ack.p90.as_millis(),
            self.first_ack.p99.as_millis(),
            self.stored_nowhere,
            FIRST_PROVIDE_GOAL.as_millis(),
            self.found_after_goal,
            self.probes,
            FIRST_PROVIDE_GOAL.as_millis(),
            if self.first_ack.p50 <= FIRST_PROVIDE_GOAL { "met" } else { "NOT met" },
        )?;
        writeln!(
            f,
            "  {:>8} {:>9} {:>8} {:>8} {:>10} {:>13} {:>7} {:>10} {:>8} {:>9} {:>9}",
            "items",
            "sweep",
            "regions",
            "batches",
            "datagrams",
            "1 lookup each",
            "ratio",
            "node dgrams",
            "held",
            "all k",
            "lookups"
        )?;
        for r in &self.sweeps {
            let ratio = r.datagrams as f64 / r.one_lookup_each.max(1.0);
            writeln!(
                f,
                "  {:>8} {:>9} {:>8} {:>8} {:>10} {:>13.0} {:>7.3} {:>10} {:>7.1}% {:>8.1}% {:>4}/{:<4} [goal: ratio <= 0.5: {}]{}",
                r.items,
                if r.finished { format!("{:.0} s", r.took.as_secs_f64()) } else { "unfinished".into() },
                r.regions,
                r.batches,
                r.datagrams,
                r.one_lookup_each,
                ratio,
                r.node_datagrams,
                r.held * 100.0,
                r.all_k * 100.0,
                r.found,
                r.looked_up,
                if ratio <= 0.5 && r.finished { "met" } else { "NOT met" },
                if r.deferred > 0 { format!(" ({} keys deferred)", r.deferred) } else { String::new() },
            )?;
        }
        write!(
            f,
            "  {:.0} s virtual; wall {:.1} s",
            self.virtual_time.as_secs_f64(),
            self.wall.as_secs_f64()
        )
    }
}

/// For `keys` provided by node `p`: the fraction of their true k closest nodes (global
/// knowledge, `p` excluded) that hold `p`'s record (naming rendezvous `rv`, if given), and
/// the fraction of keys all k hold.
fn placement(sim: &Sim, p: usize, keys: &[Id], k: usize, rv: Option<SocketAddr>) -> (f64, f64) {
    let ids: Vec<(usize, Id)> = (0..sim.len())
        .filter(|&i| i != p && sim.is_alive(i))
        .filter_map(|i| sim.node(i).map(|d| (i, d.id())))
        .collect();
    let addr = node_addr(p);
    let now = sim.now();
    let (mut held, mut slots, mut full) = (0usize, 0usize, 0usize);
    for key in keys {
        let mut order = ids.clone();
        order.sort_by_key(|(_, id)| id.distance(key));
        let want = k.min(order.len());
        let h = order
            .iter()
            .take(want)
            .filter(|(j, _)| {
                sim.node(*j).is_some_and(|d| {
                    d.holds_record(key, &addr, now)
                        && rv.is_none_or(|rv| d.record_rendezvous(key, &addr, now) == Some(rv))
                })
            })
            .count();
        held += h;
        slots += want;
        full += usize::from(h == want);
    }
    (ratio(held, slots), ratio(full, keys.len()))
}

fn pick_unused(sim: &mut Sim, used: &mut Vec<usize>, n: usize) -> usize {
    loop {
        let i = sim.rng().gen_range(0..n);
        if !used.contains(&i) || used.len() >= n {
            used.push(i);
            return i;
        }
    }
}

fn pick_other(sim: &mut Sim, n: usize, not: usize) -> usize {
    loop {
        let i = sim.rng().gen_range(0..n);
        if i != not || n < 2 {
            return i;
        }
    }
}

fn mean(xs: &[u64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<u64>() as f64 / xs.len() as f64
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
