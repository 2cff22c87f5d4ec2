//! What a scenario measured, and how it is printed.
//!
//! Percentiles use the nearest-rank method on the successful lookups only: a failed lookup
//! has no meaningful hop count, and its duration is counted in the failure rate instead.
//! Everything in a [`Report`] except [`Report::wall`] is a function of the seed and the
//! scenario, which is what the determinism test checks.

use std::fmt;
use std::time::Duration;

use super::islands::Explained;
use super::net::{NetConfig, NetCounters};

/// Three points of a distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles<T> {
    /// Median.
    pub p50: T,
    /// 90th percentile.
    pub p90: T,
    /// 99th percentile.
    pub p99: T,
    /// Largest value.
    pub max: T,
}

impl<T: Copy + Ord + Default> Percentiles<T> {
    /// The percentiles of `values` (all `T::default()` when empty).
    pub fn of(values: &[T]) -> Self {
        let mut v = values.to_vec();
        v.sort_unstable();
        Percentiles {
            p50: nearest_rank(&v, 50),
            p90: nearest_rank(&v, 90),
            p99: nearest_rank(&v, 99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

/// The smallest value with at least `p`% of the values at or below it.
fn nearest_rank<T: Copy + Default>(sorted: &[T], p: usize) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Outcome of one kind of lookup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindStats {
    /// Lookups started (or refused at start).
    pub attempted: usize,
    /// Lookups that found what they looked for.
    pub succeeded: usize,
    /// Lookups the origin refused to start (too many running).
    pub refused: usize,
    /// Lookups that had not finished at the deadline.
    pub unfinished: usize,
    /// Lookups that finished without the expected answer.
    pub wrong: usize,
    /// Hops of the successful lookups ([`crate::dht::QueryStats::hops`]).
    pub hops: Percentiles<u32>,
    /// Virtual duration of the successful lookups.
    pub latency: Percentiles<Duration>,
    /// Time to the answer of the successful lookups: to the first provider for provider
    /// lookups ([`crate::dht::QueryStats::first_provider`]), the whole lookup for node
    /// lookups (which end when the node itself answers).
    pub answer: Percentiles<Duration>,
    /// Requests sent per finished lookup (answered plus failed).
    pub requests_per_lookup: f64,
    /// Datagrams per finished lookup: requests plus the answers that came back.
    pub datagrams_per_lookup: f64,
}

impl KindStats {
    /// Successful fraction of the attempted lookups (1.0 when none were attempted).
    pub fn success_rate(&self) -> f64 {
        if self.attempted == 0 {
            1.0
        } else {
            self.succeeded as f64 / self.attempted as f64
        }
    }
}

/// The state of the network when the lookups started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkState {
    /// Mean routing-table size of the live nodes.
    pub mean_table: f64,
    /// Smallest routing table of a live node.
    pub min_table: usize,
    /// Fraction of the live nodes' routing entries that point at dead nodes.
    pub dead_entries: f64,
    /// Live nodes with an empty routing table.
    pub empty_tables: usize,
    /// Live nodes outside the main component: following routing entries between live nodes,
    /// they cannot reach the best-connected node or it cannot reach them. A lookup from or
    /// for such a node cannot succeed.
    pub partitioned: usize,
    /// Keys announced, and the mean number of nodes that acknowledged each.
    pub announced: usize,
    /// Mean acknowledgements per announce.
    pub mean_stored_at: f64,
    /// Announces that reached nobody.
    pub stored_nowhere: usize,
}

/// Wall-clock time of a run, by phase (measurement only, never a simulation input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallTimes {
    /// Building and joining the network, settling included.
    pub join: Duration,
    /// Announcing, killing and looking up.
    pub rest: Duration,
    /// The whole run.
    pub total: Duration,
}

/// Everything a scenario measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Nodes built.
    pub nodes: usize,
    /// The dead fraction asked for.
    pub dead_fraction: f64,
    /// Nodes actually killed.
    pub dead: usize,
    /// Nodes that lied in their answers (`Scenario::liar_fraction`).
    pub liars: usize,
    /// Answers they rewrote.
    pub lies: u64,
    /// The network model (its seed replays the run).
    pub net: NetConfig,
    /// `None` when the nodes ran the default `DhtConfig`, else its `Debug` text: a change to
    /// the protocol's tunables must be visible next to the figures.
    pub dht_config: Option<String>,
    /// Provider lookups: success = the announcer's address is among the providers.
    pub providers: KindStats,
    /// Node lookups: success = the target node is the first result.
    pub find_node: KindStats,
    /// Hops of all successful lookups.
    pub hops: Percentiles<u32>,
    /// Virtual duration of all successful lookups.
    pub latency: Percentiles<Duration>,
    /// Time to the answer of all successful lookups ([`KindStats::answer`]).
    pub answer: Percentiles<Duration>,
    /// Network state before the lookups.
    pub state: NetworkState,
    /// The islands explained, when the scenario asked for it.
    pub islands: Option<Explained>,
    /// Datagram counters of the whole run.
    pub counters: NetCounters,
    /// Datagrams sent by all nodes while the lookups ran (background traffic included).
    pub lookup_phase_datagrams: u64,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    /// `Some(f)`: this scenario continued the network of the scenario before it, whose dead
    /// fraction was `f` (`Scenario::measure`: one join for both); its counters and virtual
    /// time include that scenario's.
    pub continues: Option<f64>,
    /// Wall-clock time.
    pub wall: WallTimes,
}

impl Report {
    /// The report with the wall-clock times zeroed: what must be identical for one seed.
    pub fn without_wall_time(&self) -> Report {
        Report {
            wall: WallTimes::default(),
            ..self.clone()
        }
    }

    /// Successful fraction of all lookups.
    pub fn success_rate(&self) -> f64 {
        let a = self.providers.attempted + self.find_node.attempted;
        if a == 0 {
            1.0
        } else {
            (self.providers.succeeded + self.find_node.succeeded) as f64 / a as f64
        }
    }

    /// One line: the headline figures.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {:.0}% dead{}: providers lookups {} ({}/{}), find_node {} ({}/{}); \
             hops p50 {} p90 {} max {}; virtual latency p50 {} p90 {} p99 {}",
            self.nodes,
            self.dead_fraction * 100.0,
            if self.liars > 0 {
                format!(", {} liars ({} lies told)", self.liars, self.lies)
            } else {
                String::new()
            },
            pct(self.providers.success_rate()),
            self.providers.succeeded,
            self.providers.attempted,
            pct(self.find_node.success_rate()),
            self.find_node.succeeded,
            self.find_node.attempted,
            self.hops.p50,
            self.hops.p90,
            self.hops.max,
            ms(self.latency.p50),
            ms(self.latency.p90),
            ms(self.latency.p99),
        )
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        writeln!(
            f,
            "  seed {} | net {} ms ± {} ms, loss {} | {} killed{} | DhtConfig: {}",
            self.net.seed,
            self.net.latency.as_millis(),
            self.net.jitter.as_millis(),
            pct(self.net.loss),
            self.dead,
            match self.continues {
                Some(before) => format!(
                    " (the network of the {:.0}% dead scenario, continued: one join for both)",
                    before * 100.0
                ),
                None => String::new(),
            },
            self.dht_config.as_deref().unwrap_or("defaults"),
        )?;
        writeln!(
            f,
            "  {:<14} {:>18} {:>5} {:>5} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "lookup",
            "success",
            "refus",
            "unfin",
            "wrong",
            "hops50",
            "hops90/mx",
            "lat p50",
            "lat p90",
            "lat p99",
            "req/dgrams",
        )?;
        for (name, k) in [
            ("get_providers", &self.providers),
            ("find_node", &self.find_node),
        ] {
            writeln!(
                f,
                "  {:<14} {:>18} {:>5} {:>5} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}",
                name,
                format!(
                    "{} ({}/{})",
                    pct(k.success_rate()),
                    k.succeeded,
                    k.attempted
                ),
                k.refused,
                k.unfinished,
                k.wrong,
                k.hops.p50,
                format!("{}/{}", k.hops.p90, k.hops.max),
                ms(k.latency.p50),
                ms(k.latency.p90),
                ms(k.latency.p99),
                format!("{:.1}/{:.1}", k.requests_per_lookup, k.datagrams_per_lookup),
            )?;
        }
        // A round trip is twice the one-way latency (the jitter averages out).
        let rtt = (self.net.latency * 2).as_secs_f64().max(1e-9);
        writeln!(
            f,
            "  time to the answer (first provider; the node itself): p50 {} ({:.1} round \
             trips), p90 {}, p99 {}; providers {} / nodes {} at p50",
            ms(self.answer.p50),
            self.answer.p50.as_secs_f64() / rtt,
            ms(self.answer.p90),
            ms(self.answer.p99),
            ms(self.providers.answer.p50),
            ms(self.find_node.answer.p50),
        )?;
        let s = &self.state;
        writeln!(
            f,
            "  before lookups: routing table mean {:.1} (min {}, {} empty), {:.1}% of entries \
             dead, {} live nodes outside the main component; {} keys announced, stored at \
             {:.1} nodes on average ({} nowhere)",
            s.mean_table,
            s.min_table,
            s.empty_tables,
            s.dead_entries * 100.0,
            s.partitioned,
            s.announced,
            s.mean_stored_at,
            s.stored_nowhere,
        )?;
        let c = &self.counters;
        write!(
            f,
            "  traffic: {} datagrams ({} lost, {} to/from dead nodes), {} during lookups; \
             {:.0} s virtual; wall {:.1} s ({})",
            c.sent,
            c.lost,
            c.dead_end,
            self.lookup_phase_datagrams,
            self.virtual_time.as_secs_f64(),
            self.wall.total.as_secs_f64(),
            match self.continues {
                Some(_) => "the join shared with the scenario before".to_owned(),
                None => format!(
                    "join {:.1} s, rest {:.1} s",
                    self.wall.join.as_secs_f64(),
                    self.wall.rest.as_secs_f64()
                ),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50, 90, 99, 100));
        let p = Percentiles::of(&[7u32]);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (7, 7, 7, 7));
        let p = Percentiles::<u32>::of(&[]);
        assert_eq!(p, Percentiles::default());
        let p = Percentiles::of(&[3u32, 1, 2]);
        assert_eq!((p.p50, p.p90), (2, 3));
    }
}
