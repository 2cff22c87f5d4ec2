//! Why nodes end up outside the main component ("islands", issue 21): the routing-table
//! graph between live nodes, the main component in it, and for each node outside it who
//! knows it, what its own table holds, and how it was known over time.
//!
//! The graph has an edge `i -> j` when live node `i` holds live node `j` in its routing
//! table. The main component is the strongly connected component of the best-connected
//! node (most incoming edges; ties: lowest index): a lookup from a node outside it, or for
//! one, cannot succeed in general.
//!
//! [`History`] samples every node's incoming edges during a run (the scenario calls
//! [`History::sample`] every few virtual seconds while nodes join and settle), so an island
//! can be told apart as "never inserted by anyone" or "inserted, then dropped".

use std::cmp::Reverse;
use std::fmt;
use std::time::Duration;

use super::net::{node_index, Sim};
use crate::dht::DhtStats;

/// The routing-table graph between the live nodes of a [`Sim`].
pub struct Graph {
    /// `out[i]`: the live nodes `i` holds in its table.
    pub out: Vec<Vec<usize>>,
    /// `into[j]`: the live nodes that hold `j`.
    pub into: Vec<Vec<usize>>,
    /// Whether each node is in the main component (false for dead nodes).
    pub main: Vec<bool>,
    /// Routing entries of live nodes, and how many of them point at dead nodes.
    pub entries: u64,
    /// Entries pointing at dead nodes.
    pub dead_entries: u64,
}

impl Graph {
    /// The graph of the live nodes `live` (ascending indexes).
    pub fn of(sim: &Sim, live: &[usize]) -> Graph {
        let n = sim.len();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        let (mut entries, mut dead_entries) = (0u64, 0u64);
        for &i in live {
            let Some(d) = sim.node(i) else { continue };
            // Exact sizes: at 100,000 nodes, doubling would leave hundreds of MB unused.
            out[i].reserve_exact(d.routing_table().len());
            for e in d.routing_table().iter() {
                entries += 1;
                match node_index(&e.contact.addr).filter(|&j| sim.is_alive(j)) {
                    Some(j) => out[i].push(j),
                    None => dead_entries += 1,
                }
            }
        }
        let mut held = vec![0usize; n];
        for &j in out.iter().flatten() {
            held[j] += 1;
        }
        let mut into: Vec<Vec<usize>> = held.into_iter().map(Vec::with_capacity).collect();
        for (i, js) in out.iter().enumerate() {
            for &j in js {
                into[j].push(i);
            }
        }
        let anchor = live
            .iter()
            .copied()
            .max_by_key(|&i| (into[i].len(), Reverse(i)));
        let mut main = vec![false; n];
        if let Some(a) = anchor {
            let (fwd, back) = (reachable(&out, a), reachable(&into, a));
            for &i in live {
                main[i] = fwd[i] && back[i];
            }
        }
        Graph {
            out,
            into,
            main,
            entries,
            dead_entries,
        }
    }

    /// Live nodes outside the main component.
    pub fn islands<'a>(&'a self, live: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
        live.iter().copied().filter(|&i| !self.main[i])
    }
}

/// The nodes reachable from `start` along `edges`.
fn reachable(edges: &[Vec<usize>], start: usize) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![start];
    if let Some(s) = seen.get_mut(start) {
        *s = true;
    }
    while let Some(x) = stack.pop() {
        for &y in edges.get(x).map_or(&[][..], Vec::as_slice) {
            if let Some(s) = seen.get_mut(y) {
                if !*s {
                    *s = true;
                    stack.push(y);
                }
            }
        }
    }
    seen
}

/// How often each node was held by others, sampled over a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Per node: the most live nodes that held it at one sample.
    pub max_in: Vec<usize>,
    /// Per node: the last sample (virtual time) at which somebody held it.
    pub last_held: Vec<Option<Duration>>,
    /// Samples taken.
    pub samples: usize,
}

impl History {
    /// Records who holds whom now.
    pub fn sample(&mut self, sim: &Sim) {
        let n = sim.len();
        self.max_in.resize(n, 0);
        self.last_held.resize(n, None);
        let mut held = vec![0usize; n];
        for i in sim.live_nodes() {
            let Some(d) = sim.node(i) else { continue };
            for e in d.routing_table().iter() {
                if let Some(j) = node_index(&e.contact.addr).filter(|&j| j < n) {
                    held[j] += 1;
                }
            }
        }
        let t = sim.elapsed();
        for (j, &h) in held.iter().enumerate() {
            self.max_in[j] = self.max_in[j].max(h);
            if h > 0 {
                self.last_held[j] = Some(t);
            }
        }
        self.samples += 1;
    }
}

/// One node outside the main component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Island {
    /// Its index (it joined at `index * join_interval`).
    pub index: usize,
    /// Its routing table's size.
    pub table: usize,
    /// Entries of its table that are live nodes of the main component.
    pub out_main: usize,
    /// Live nodes that hold it, and those of them in the main component.
    pub held_by: usize,
    /// Of `held_by`, those in the main component.
    pub held_by_main: usize,
    /// Live nodes that hold it in a replacement cache.
    pub cached_by: usize,
    /// Sampled history: most holders at once, last time held (None: never held).
    pub max_held: usize,
    /// The last sample at which somebody held it.
    pub last_held: Option<Duration>,
    /// Its DHT counters.
    pub stats: DhtStats,
    /// Contacts per bucket of its table, up to the deepest non-empty bucket.
    pub buckets: Vec<usize>,
    /// Common prefix length with the closest live node of the network (its deepest
    /// bucket could be this deep).
    pub nearest_prefix: usize,
}

/// Every island of a run, explained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explained {
    /// The islands, by index.
    pub islands: Vec<Island>,
}

/// Explains the islands of `sim` now (`history`: samples taken during the run, if any).
pub fn explain(sim: &Sim, graph: &Graph, live: &[usize], history: &History) -> Explained {
    let n = sim.len();
    let mut cached = vec![0usize; n];
    for &i in live {
        let Some(d) = sim.node(i) else { continue };
        for c in d.routing_table().replacements() {
            if let Some(j) = node_index(&c.addr).filter(|&j| j < n) {
                cached[j] += 1;
            }
        }
    }
    let islands = graph
        .islands(live)
        .map(|i| {
            let d = sim.node(i);
            Island {
                index: i,
                table: d.map_or(0, |d| d.routing_table().len()),
                out_main: graph.out[i].iter().filter(|&&j| graph.main[j]).count(),
                held_by: graph.into[i].len(),
                held_by_main: graph.into[i].iter().filter(|&&j| graph.main[j]).count(),
                cached_by: cached[i],
                max_held: history.max_in.get(i).copied().unwrap_or(0),
                last_held: history.last_held.get(i).copied().flatten(),
                stats: d.map(|d| d.stats().clone()).unwrap_or_default(),
                nearest_prefix: d.map_or(0, |d| {
                    live.iter()
                        .filter(|&&j| j != i)
                        .filter_map(|&j| sim.node(j))
                        .map(|o| d.id().distance(&o.id()).leading_zeros())
                        .max()
                        .unwrap_or(0)
                }),
                buckets: d.map_or(Vec::new(), |d| {
                    let t = d.routing_table();
                    let mut b: Vec<usize> = (0..256).map(|i| t.bucket_len(i)).collect();
                    while b.last() == Some(&0) {
                        b.pop();
                    }
                    b
                }),
            }
        })
        .collect();
    Explained { islands }
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |p: &dyn Fn(&Island) -> bool| self.islands.iter().filter(|x| p(x)).count();
        writeln!(
            f,
            "  islands: {} | held by nobody now {} (never held {}, held then dropped {}) | \
             held only by islands {} | cached by someone {} | own table without the main \
             component {}",
            self.islands.len(),
            count(&|x| x.held_by == 0),
            count(&|x| x.held_by == 0 && x.max_held == 0),
            count(&|x| x.held_by == 0 && x.max_held > 0),
            count(&|x| x.held_by > 0 && x.held_by_main == 0),
            count(&|x| x.cached_by > 0),
            count(&|x| x.out_main == 0),
        )?;
        writeln!(
            f,
            "  {:>6} {:>5} {:>8} {:>7} {:>9} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6}",
            "node",
            "table",
            "out_main",
            "held_by",
            "held_main",
            "cached",
            "max_held",
            "last_held",
            "verif",
            "tmo",
            "unexp"
        )?;
        for x in &self.islands {
            writeln!(
                f,
                "  {:>6} {:>5} {:>8} {:>7} {:>9} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>4}  {:?}",
                x.index,
                x.table,
                x.out_main,
                x.held_by,
                x.held_by_main,
                x.cached_by,
                x.max_held,
                x.last_held
                    .map_or("never".to_owned(), |t| format!("{:.0}s", t.as_secs_f64())),
                x.stats.verifications,
                x.stats.timeouts,
                x.stats.unexpected_responses,
                x.stats.datagrams_in,
                x.stats.datagrams_out,
                x.nearest_prefix,
                x.buckets,
            )?;
        }
        Ok(())
    }
}
