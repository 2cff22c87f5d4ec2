//! A picture of the node at one moment ([`StatusView`]), and the read-only API commands
//! answered from it (`status`, `local_list_content`, `routing_table`). The driver publishes
//! a fresh view whenever [`Output::ViewChanged`](super::Output::ViewChanged) says so and at
//! least twice a second; its workers answer these commands from the latest view without a
//! round trip through the event loop. Pure functions: what only the driver knows (uptime,
//! live byte totals) comes in as [`Live`].

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::reply;
use crate::dht::{BootstrapAddr, DhtStats};
use crate::id::Id;
use crate::limits::Limits;
use crate::proto::dht::Contact;

/// A consistent picture of the node at one moment.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// The node ID.
    pub node_id: Id,
    /// The DHT/wire address.
    pub listen: SocketAddr,
    /// The address peers see us at, once they agree.
    pub external: Option<SocketAddr>,
    /// The routing table's contacts with the bucket each is in and how long ago it was heard
    /// from, in seconds.
    pub routing_table: Vec<(Contact, usize, u64)>,
    /// Provider records held for others.
    pub provider_records: usize,
    /// Keys this node announces, sorted (shared by the views while they do not change).
    pub provided: Arc<[Id]>,
    /// Keys this node knows of and does not announce (records held for others, shares not
    /// provided), sorted: with `provided`, every key it knows of
    /// ([`StatusView::known_keys`]). Apart, so that a library of 100,000 shares is not
    /// listed twice in every view (issue 21).
    pub other_keys: Vec<Id>,
    /// DHT counters.
    pub stats: DhtStats,
    /// DHT lookups running.
    pub running_queries: usize,
    /// NAT traversal: reachability, rendezvous, connection set-ups (nat.md).
    pub nat: Value,
    /// The bootstrap addresses (`--bootstrap`) and whether they answered.
    pub bootstrap: Vec<BootstrapAddr>,
    /// Chunk bytes received that were not needed (copies of chunks already in).
    pub down_duplicate: u64,
    /// Each download in progress and its folder (a request naming another folder is refused
    /// before that folder is created: `net::jobs`).
    pub downloading_into: Vec<(Id, std::path::PathBuf)>,
    /// Contents by state, peers, chunk checks, bans (`/metrics`).
    pub counts: super::library::Counts,
    /// DHT lookups that ended: latency histogram, the last ones.
    pub lookups: super::lookup_log::LookupLog,
    /// DHT lookups running, the newest first (at most [`super::lookup_log::RECENT`]).
    pub running_lookups: Vec<crate::dht::trace::RunningLookup>,
    /// What the driver adds: sockets and bandwidth.
    pub io: IoStatus,
}

/// The driver's part of the view.
#[derive(Clone, Debug, Default)]
pub struct IoStatus {
    /// Datagrams dropped by the emulated loss.
    pub emulated_drops: u64,
    /// API connections open.
    pub api_connections: usize,
    /// API connections refused: input that is not a request (HTTP, garbage), or too slow.
    pub api_refused: u64,
    /// Relayed circuits open (as a rendezvous).
    pub circuits: usize,
    /// Completion hooks run (`on_complete`).
    pub hooks: HookStats,
    /// Wire-protocol bandwidth: limits and rates.
    pub bandwidth: BandwidthView,
}

/// Completion hooks for `status` (`net::hooks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Hooks started.
    pub started: u64,
    /// Hooks that could not be started, or exited other than 0.
    pub failed: u64,
    /// Hooks running now.
    pub running: u64,
    /// Hooks waiting for one of the running ones to end.
    pub waiting: u64,
}

/// Bandwidth figures for `status`.
#[derive(Clone, Debug, Default)]
pub struct BandwidthView {
    /// The limits in force.
    pub limits: Limits,
    /// Bytes per second sent, over about the last second.
    pub up_rate: u64,
    /// Bytes per second received, over about the last second.
    pub down_rate: u64,
}

/// Bytes per second one way and the other, over the last few seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Sent.
    pub up: u64,
    /// Received.
    pub down: u64,
}

/// Rates the driver measures where bytes cross its wire sockets (its bandwidth meters own
/// them): each open connection's and each transfer's (every connection of one content).
/// Handed in with the requests that show them, like `now`; the core keeps none.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    /// By connection.
    pub conns: std::collections::HashMap<crate::conn::ConnId, Flow>,
    /// By content.
    pub transfers: std::collections::HashMap<Id, Flow>,
}

impl Rates {
    /// The rates of `conn` (zero if nothing was measured).
    pub fn conn(&self, conn: crate::conn::ConnId) -> Flow {
        self.conns.get(&conn).copied().unwrap_or_default()
    }

    /// The rates of the transfer of `content` (zero if nothing was measured).
    pub fn transfer(&self, content: &Id) -> Flow {
        self.transfers.get(content).copied().unwrap_or_default()
    }
}

/// What changes faster than the view, read when a reply is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct Live {
    /// The API address.
    pub api_addr: Option<SocketAddr>,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Wire bytes sent since start.
    pub up_total: u64,
    /// Wire bytes received since start.
    pub down_total: u64,
    /// The wire sessions' counters.
    pub secure: SecureCounts,
    /// API requests by command, and error replies.
    pub api: crate::api::counts::ApiCounts,
}

/// The wire sessions' counters (`status`'s `secure`; protocol-spec/secure.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecureCounts {
    /// Sessions established.
    pub sessions: u64,
    /// Handshakes that failed.
    pub handshake_failures: u64,
    /// Peers refused for speaking the previous, plaintext version.
    pub old_version: u64,
    /// Records that failed authentication or were malformed: the connection was closed.
    pub records_refused: u64,
    /// Peers whose HANDSHAKE frame named a node ID they had not proved.
    pub id_mismatch: u64,
}

impl StatusView {
    /// Every key this node knows of (held records and its own shares), sorted.
    pub fn known_keys(&self) -> Vec<Id> {
        merge_sorted(&self.provided, &self.other_keys)
    }
}

/// The union of two sorted, duplicate-free lists, sorted.
fn merge_sorted(a: &[Id], b: &[Id]) -> Vec<Id> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.iter().copied().peekable(), b.iter().copied().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x < y => a.next(),
            (Some(x), Some(y)) if x > y => b.next(),
            (Some(_), Some(_)) => {
                b.next();
                a.next()
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

/// `local_list_content`: every content hash this node knows of in the DHT.
pub fn list_reply(view: &StatusView) -> Vec<u8> {
    reply::success_with_ids(Map::new(), "content_hashes", view.known_keys().iter())
}

/// `routing_table`: every contact, closest bucket last.
pub fn routing_reply(view: &StatusView) -> Vec<u8> {
    let mut rows: Vec<&(Contact, usize, u64)> = view.routing_table.iter().collect();
    rows.sort_by_key(|(c, bucket, _)| (*bucket, c.id));
    let contacts: Vec<Value> = rows
        .iter()
        .map(|(c, bucket, age)| {
            json!({
                "node_id": c.id.to_hex(),
                "addr": c.addr.to_string(),
                "bucket": bucket,
                "last_seen_secs_ago": age,
            })
        })
        .collect();
    reply::success(fields(
        json!({ "node_id": view.node_id.to_hex(), "contacts": contacts }),
    ))
}

/// `status`: identity, addresses and counters.
pub fn status_reply(view: &StatusView, live: &Live) -> Vec<u8> {
    let s = &view.stats;
    let io = &view.io;
    let mut nat = view.nat.clone();
    if let Value::Object(m) = &mut nat {
        m.insert("circuits".into(), json!(io.circuits));
    }
    let status = json!({
        "node_id": view.node_id.to_hex(),
        "listen": view.listen.to_string(),
        "api": live.api_addr.map(|a| a.to_string()),
        "external_addr": view.external.map(|a| a.to_string()),
        "uptime_secs": live.uptime_secs,
        "routing_table_size": view.routing_table.len(),
        "provider_records": view.provider_records,
        "running_lookups": view.running_queries,
        "api_connections": io.api_connections,
        "api_refused": io.api_refused,
        "dht": {
            "datagrams_in": s.datagrams_in,
            "datagrams_out": s.datagrams_out,
            "decode_errors": s.decode_errors,
            "unexpected_responses": s.unexpected_responses,
            "rate_limited": s.rate_limited,
            "retry_later_sent": s.retry_later_sent,
            "backed_off": s.backed_off,
            "requests_held": s.requests_held,
            "requests_paced": s.requests_paced,
            "timeouts": s.timeouts,
            "bad_tokens": s.bad_tokens,
            "verifications": s.verifications,
            "bad_proofs": s.bad_proofs,
            "records_refused": s.records_refused,
            "records_evicted": s.records_evicted,
            "announces_postponed": s.announces_postponed,
            "emulated_drops": io.emulated_drops,
        },
        "bandwidth": {
            "up_rate": io.bandwidth.up_rate,
            "down_rate": io.bandwidth.down_rate,
            "up_total": live.up_total,
            "down_total": live.down_total,
            "down_duplicate": view.down_duplicate,
            "limits": limits_json(&io.bandwidth.limits),
        },
        "secure": {
            "sessions": live.secure.sessions,
            "handshake_failures": live.secure.handshake_failures,
            "old_version": live.secure.old_version,
            "records_refused": live.secure.records_refused,
            "id_mismatch": live.secure.id_mismatch,
        },
        "nat": nat,
        "bootstrap": bootstrap_json(&view.bootstrap),
        "hooks": {
            "started": io.hooks.started,
            "failed": io.hooks.failed,
            "running": io.hooks.running,
            "waiting": io.hooks.waiting,
        },
    });
    // `provided` lists every key this node announces: 100,000 for a library that size.
    reply::success_with_ids(fields(status), "provided", view.provided.iter())
}

/// The bootstrap addresses for `status` (api.md section 5.9): `answered` once any of them
/// answered; `unanswered` counts the requests to them that timed out.
fn bootstrap_json(b: &[BootstrapAddr]) -> Value {
    json!({
        "addrs": b.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(),
        "answered": b.iter().any(|b| b.answered),
        "unanswered": b.iter().map(|b| u64::from(b.unanswered)).sum::<u64>(),
    })
}

/// The limits as JSON (bytes per second; 0 is unlimited).
pub fn limits_json(l: &Limits) -> Value {
    json!({
        "up": l.up,
        "down": l.down,
        "transfer_up": l.transfer_up,
        "transfer_down": l.transfer_down,
        "peer_up": l.peer_up,
        "peer_down": l.peer_down,
    })
}

pub(crate) fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The sorted lists of this node's own keys in the status view, and what they were made of.
#[derive(Debug)]
pub struct KeyLists {
    /// The DHT's provided keys and the library's contents, as their generations.
    stamp: ((usize, u64), u64),
    /// Keys provided.
    provided: Arc<[Id]>,
    /// Shares not provided (a share being withdrawn, or not yet provided).
    unprovided_shares: Arc<[Id]>,
}

impl super::NodeCore {
    /// The view's lists of this node's own keys: the last ones if no key came or went.
    fn key_lists(&self) -> std::cell::RefMut<'_, KeyLists> {
        let stamp = (self.dht.provided_generation(), self.library.generation());
        let mut cached = self.key_lists.borrow_mut();
        if cached.as_ref().is_some_and(|k| k.stamp != stamp) {
            *cached = None;
        }
        std::cell::RefMut::map(cached, |c| {
            c.get_or_insert_with(|| {
                let mut provided = self.dht.provided_keys();
                provided.sort_unstable();
                let mut unprovided: Vec<Id> = self
                    .library
                    .shared_id_iter()
                    .filter(|k| !self.dht.is_providing(k))
                    .copied()
                    .collect();
                unprovided.sort_unstable();
                KeyLists {
                    stamp,
                    provided: provided.into(),
                    unprovided_shares: unprovided.into(),
                }
            })
        })
    }

    /// A picture of the node now, with the driver's part `io`.
    pub fn status_view(&self, now: std::time::Instant, io: IoStatus) -> StatusView {
        let rt = self.dht.routing_table();
        let routing_table = rt
            .iter()
            .map(|e| {
                let bucket = rt.bucket_index(&e.contact.id).unwrap_or(0);
                (
                    e.contact,
                    bucket,
                    now.saturating_duration_since(e.last_seen).as_secs(),
                )
            })
            .collect();
        // A node sharing 100,000 files rebuilds this view after every add (paced) and twice
        // a second: its shares are listed once, in `provided`, and the few other keys apart;
        // both lists of its own keys are sorted again only when they changed.
        let lists = self.key_lists();
        let provided = lists.provided.clone();
        let mut other_keys: Vec<Id> = self
            .dht
            .held_keys()
            .filter(|k| !self.dht.is_providing(k))
            .copied()
            .collect();
        other_keys.sort_unstable();
        let other_keys = merge_sorted(&other_keys, &lists.unprovided_shares);
        StatusView {
            node_id: self.dht.id(),
            listen: self.local,
            external: self.dht.external_addr(),
            routing_table,
            provider_records: self.dht.provider_records(),
            provided,
            other_keys,
            stats: self.dht.stats().clone(),
            running_queries: self.dht.running_queries(),
            nat: {
                let mut nat = self.nat.status_json();
                nat["lan"] = self.lan_json(now);
                nat
            },
            bootstrap: self.dht.bootstrap_status().to_vec(),
            down_duplicate: self.library.engine.duplicate_bytes(),
            downloading_into: self.library.download_dirs(),
            counts: super::library::Counts {
                connections: self.nat.connections_by_path(),
                ..self.library.counts()
            },
            lookups: self.lookup_log.clone(),
            running_lookups: self.running_lookups(),
            io,
        }
    }

    /// The DHT's running lookups, named as [`LookupLog`](super::lookup_log::LookupLog) names
    /// those that ended where the node started them.
    fn running_lookups(&self) -> Vec<crate::dht::trace::RunningLookup> {
        let mut running = self.dht.running_lookups(super::lookup_log::RECENT);
        for r in &mut running {
            r.kind = match self.lookups.get(&r.query) {
                Some(super::Lookup::Api(_)) => super::lookup_log::KINDS[0],
                Some(super::Lookup::Peers(_)) => super::lookup_log::KINDS[1],
                Some(super::Lookup::Announce { .. }) => super::lookup_log::KINDS[2],
                // An announce the DHT runs by itself: a republish.
                None if r.kind == "announce" => super::lookup_log::KINDS[3],
                None => r.kind,
            };
        }
        running
    }
}
