//! `/metrics`: the node's counters in the Prometheus text format (version 0.0.4), rendered
//! from the status view the loop publishes (http.md section 5).
//!
//! Names follow Prometheus conventions: a `peershare_` prefix, base units (bytes, seconds),
//! `_total` on counters, one metric with a label rather than one metric per variant
//! (`direction`, `type`, `state`). Pure: the same view gives the same text.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::api::counts::{COMMANDS, OTHER};
use crate::node_core::lookup_log::{LookupLog, BUCKETS, KINDS};
use crate::node_core::{Live, StatusView};

/// Counts kept by the HTTP side itself.
#[derive(Clone, Debug, Default)]
pub struct HttpStats {
    /// Connections open now.
    pub connections: usize,
    /// Responses sent, by status code.
    pub responses: BTreeMap<u16, u64>,
}

/// Writes one metric family: its HELP and TYPE lines, then each sample (`labels` without
/// braces, empty for none).
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {v}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
            }
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help, &[(String::new(), v as f64)]);
    }
}

/// A label value, escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// DHT lookups: by kind, and their latency as a histogram.
fn lookups(o: &mut Out, log: &LookupLog) {
    let kinds: Vec<(&str, u64)> = KINDS.iter().copied().zip(log.by_kind).collect();
    o.family(
        "peershare_dht_lookups_total",
        "counter",
        "DHT lookups that ended, by what they were for.",
        &by("kind", &kinds),
    );
    let name = "peershare_dht_lookup_duration_seconds";
    let _ = writeln!(o.0, "# HELP {name} How long DHT lookups took.");
    let _ = writeln!(o.0, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, n) in log.buckets.iter().enumerate() {
        cumulative += n;
        let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(o.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(o.0, "{name}_sum {}", log.sum_secs);
    let _ = writeln!(o.0, "{name}_count {cumulative}");
}

/// Samples of one label `key`, a value each.
fn by(key: &str, pairs: &[(&str, u64)]) -> Vec<(String, f64)> {
    pairs
        .iter()
        .map(|(v, n)| (format!("{key}=\"{v}\""), *n as f64))
        .collect()
}

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The whole `/metrics` page.
pub fn render(view: &StatusView, live: &Live, http: &HttpStats) -> String {
    let mut o = Out(String::new());
    let s = &view.stats;
    let io = &view.io;
    let dir = |a: u64, b: u64, k: &str, x: &str, y: &str| {
        vec![
            (format!("{k}=\"{x}\""), a as f64),
            (format!("{k}=\"{y}\""), b as f64),
        ]
    };
    o.one(
        "peershare_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        live.uptime_secs,
    );
    o.family(
        "peershare_wire_bytes_total",
        "counter",
        "Wire-protocol bytes sent and received (chunks, requests, framing).",
        &dir(
            live.up_total,
            live.down_total,
            "direction",
            "sent",
            "received",
        ),
    );
    o.family(
        "peershare_wire_rate_bytes_per_second",
        "gauge",
        "Wire-protocol bytes per second over about the last second.",
        &dir(
            io.bandwidth.up_rate,
            io.bandwidth.down_rate,
            "direction",
            "sent",
            "received",
        ),
    );
    let l = &io.bandwidth.limits;
    o.family(
        "peershare_bandwidth_limit_bytes_per_second",
        "gauge",
        "Bandwidth limits in force (0: unlimited), by scope and direction.",
        &[
            ("scope=\"node\",direction=\"sent\"".into(), l.up as f64),
            (
                "scope=\"node\",direction=\"received\"".into(),
                l.down as f64,
            ),
            (
                "scope=\"transfer\",direction=\"sent\"".into(),
                l.transfer_up as f64,
            ),
            (
                "scope=\"transfer\",direction=\"received\"".into(),
                l.transfer_down as f64,
            ),
            ("scope=\"peer\",direction=\"sent\"".into(), l.peer_up as f64),
            (
                "scope=\"peer\",direction=\"received\"".into(),
                l.peer_down as f64,
            ),
        ],
    );
    let k = &view.counts;
    o.family(
        "peershare_contents",
        "gauge",
        "Contents held by the node, by state.",
        &by(
            "state",
            &[
                ("shared", k.shared),
                ("downloaded", k.downloaded),
                ("downloading", k.downloading),
                ("searching", k.searching),
                ("paused", k.paused),
            ],
        ),
    );
    o.one(
        "peershare_transfer_peers",
        "gauge",
        "Wire connections of the transfers, set-ups included.",
        k.peers,
    );
    let by_type: Vec<(String, f64)> = ["direct", "mapped", "punched", "relayed"]
        .iter()
        .zip(k.connections)
        .map(|(t, n)| (format!("type=\"{t}\""), n as f64))
        .collect();
    o.family(
        "peershare_wire_connections",
        "gauge",
        "Wire connections open, by how they were made (NAT traversal).",
        &by_type,
    );
    o.family(
        "peershare_chunk_checks_total",
        "counter",
        "Chunks received and checked against their manifest, by result.",
        &dir(
            k.chunk_checks[0],
            k.chunk_checks[1],
            "result",
            "verified",
            "failed",
        ),
    );
    o.one(
        "peershare_banned_peers",
        "gauge",
        "Addresses banned for sending data that failed verification.",
        k.banned,
    );
    o.one(
        "peershare_duplicate_chunk_bytes_total",
        "counter",
        "Chunk bytes received that were already here.",
        view.down_duplicate,
    );
    // DHT.
    o.family(
        "peershare_dht_datagrams_total",
        "counter",
        "DHT datagrams received and sent.",
        &dir(
            s.datagrams_in,
            s.datagrams_out,
            "direction",
            "received",
            "sent",
        ),
    );
    o.family(
        "peershare_dht_errors_total",
        "counter",
        "DHT datagrams refused or lost, by reason.",
        &by(
            "reason",
            &[
                ("decode", s.decode_errors),
                ("unexpected_response", s.unexpected_responses),
                ("rate_limited", s.rate_limited),
                ("timeout", s.timeouts),
                ("bad_token", s.bad_tokens),
                ("emulated_loss", io.emulated_drops),
            ],
        ),
    );
    o.one(
        "peershare_dht_verifications_total",
        "counter",
        "Identity proofs (PROVE) asked of contacts before they enter the routing table.",
        s.verifications,
    );
    o.one(
        "peershare_dht_bad_proofs_total",
        "counter",
        "Identity proofs (PROOF) that did not verify or named another key.",
        s.bad_proofs,
    );
    o.family(
        "peershare_dht_provider_records_dropped_total",
        "counter",
        "Provider records refused (store full) or evicted.",
        &dir(
            s.records_refused,
            s.records_evicted,
            "reason",
            "refused",
            "evicted",
        ),
    );
    o.one(
        "peershare_dht_provider_records",
        "gauge",
        "Provider records held for other nodes.",
        view.provider_records as u64,
    );
    o.one(
        "peershare_dht_provided_keys",
        "gauge",
        "Content IDs this node announces.",
        view.provided.len() as u64,
    );
    o.one(
        "peershare_dht_lookups_running",
        "gauge",
        "DHT lookups in progress.",
        view.running_queries as u64,
    );
    lookups(&mut o, &view.lookups);
    let mut buckets: BTreeMap<usize, u64> = BTreeMap::new();
    for (_, b, _) in &view.routing_table {
        *buckets.entry(*b).or_default() += 1;
    }
    let per_bucket: Vec<(String, f64)> = buckets
        .iter()
        .map(|(b, n)| (format!("bucket=\"{b}\""), *n as f64))
        .collect();
    o.family(
        "peershare_dht_routing_table_contacts",
        "gauge",
        "Contacts in the routing table, by bucket.",
        &per_bucket,
    );
    // NAT.
    let nat = &view.nat;
    let reach = nat
        .get("reachability")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    o.family(
        "peershare_nat_reachability",
        "gauge",
        "How other nodes reach this one (1 for the current state).",
        &[(format!("state=\"{}\"", label(reach)), 1.0)],
    );
    let setups: Vec<(String, f64)> = ["direct", "punched", "relayed"]
        .iter()
        .map(|t| (format!("type=\"{t}\""), num(nat, &["setups", t]) as f64))
        .collect();
    o.family(
        "peershare_nat_connection_setups_total",
        "counter",
        "Connections set up through NAT traversal, by type.",
        &setups,
    );
    o.one(
        "peershare_nat_setup_failures_total",
        "counter",
        "NAT traversal set-ups that failed.",
        num(nat, &["failures"]),
    );
    o.one(
        "peershare_nat_relayed_circuits",
        "gauge",
        "Relayed circuits this node carries as a rendezvous.",
        io.circuits as u64,
    );
    // The API and the HTTP side.
    o.one(
        "peershare_api_connections",
        "gauge",
        "JSON API connections open.",
        io.api_connections as u64,
    );
    o.one(
        "peershare_api_refused_total",
        "counter",
        "JSON API connections refused (not a request, too slow).",
        io.api_refused,
    );
    let api = &live.api;
    let by_command: Vec<(String, f64)> = COMMANDS
        .iter()
        .chain([&OTHER])
        .zip(api.requests)
        .map(|(c, n)| (format!("command=\"{c}\""), n as f64))
        .collect();
    o.family(
        "peershare_api_requests_total",
        "counter",
        "JSON API requests (over the API port and POST /api), by command; invalid: unknown or malformed.",
        &by_command,
    );
    o.one(
        "peershare_api_errors_total",
        "counter",
        "JSON API replies with status error.",
        api.errors,
    );
    o.one(
        "peershare_http_connections",
        "gauge",
        "HTTP connections open.",
        http.connections as u64,
    );
    let codes: Vec<(String, f64)> = http
        .responses
        .iter()
        .map(|(c, n)| (format!("code=\"{c}\""), *n as f64))
        .collect();
    o.family(
        "peershare_http_responses_total",
        "counter",
        "HTTP responses sent, by status code.",
        &codes,
    );
    o.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
