//! `GET /lookups` (http.md section 7): the DHT lookups running now and the last ones that
//! ended, newest first, each with its requests hop by hop, as JSON for the learners' page.
//! Pure: the log, the running lookups and the time now in, bytes out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::dht::trace::{Hop, HopOutcome, RunningLookup};
use crate::node_core::lookup_log::LookupLog;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hop(h: &Hop) -> Value {
    let mut v = json!({
        "round": h.round,
        "node": h.node.to_hex(),
        "addr": h.addr.to_string(),
        "bits": h.bits,
        "sent_ms": ms(h.sent),
        "resent": h.resent,
    });
    let extra = match h.outcome {
        HopOutcome::Waiting => json!({ "result": "waiting" }),
        HopOutcome::Answered {
            rtt,
            closer,
            new,
            providers,
            best_bits,
        } => json!({
            "result": "answered",
            "rtt_ms": ms(rtt),
            "closer": closer,
            "new": new,
            "providers": providers,
            "best_bits": best_bits,
        }),
        HopOutcome::Failed { after, timeout } => json!({
            "result": if timeout { "timeout" } else { "error" },
            "after_ms": ms(after),
        }),
    };
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

/// A running lookup: its requests so far, those answered and those failed.
fn running(r: &RunningLookup, now: Instant) -> Value {
    let count = |f: fn(&HopOutcome) -> bool| r.trace.hops.iter().filter(|h| f(&h.outcome)).count();
    json!({
        "query": r.query.0,
        "kind": r.kind,
        "target": r.trace.target.map(|t| t.to_hex()),
        "running_ms": ms(now.saturating_duration_since(r.started)),
        "answers": count(|o| matches!(o, HopOutcome::Answered { .. })),
        "failures": count(|o| matches!(o, HopOutcome::Failed { .. })),
        "requests": r.trace.hops.iter().map(hop).collect::<Vec<_>>(),
        "untraced": r.trace.untraced,
    })
}

/// The body of `GET /lookups` at `now`: `running` (the lookups under way, as the node's
/// view last saw them) and `lookups` (the last that ended).
pub fn recent(log: &LookupLog, under_way: &[RunningLookup], now: Instant) -> Vec<u8> {
    let list: Vec<Value> = log
        .recent
        .iter()
        .rev()
        .map(|r| {
            json!({
                "seq": r.seq,
                "kind": r.kind,
                "target": r.trace.target.map(|t| t.to_hex()),
                "ms": (r.secs * 1000.0).round(),
                "ago_ms": ms(now.saturating_duration_since(r.ended)),
                "hops": r.hops,
                "answers": r.answers,
                "failures": r.failures,
                "requests": r.trace.hops.iter().map(hop).collect::<Vec<_>>(),
                "untraced": r.trace.untraced,
            })
        })
        .collect();
    let under_way: Vec<Value> = under_way.iter().map(|r| running(r, now)).collect();
    json!({ "running": under_way, "lookups": list })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::trace::LookupTrace;
    use crate::dht::QueryStats;
    use crate::id::Id;

    #[test]
    fn each_lookup_lists_its_requests() {
        let start = Instant::now();
        let mut trace = LookupTrace::new(Id([0; 32]));
        let a = Id([0x0f; 32]);
        let b = Id([0xf0; 32]);
        let addr = "192.0.2.7:4000".parse().unwrap();
        trace.sent(a, addr, 0, Duration::ZERO);
        trace.sent(b, addr, 0, Duration::from_millis(2));
        trace.answered(&a, Duration::from_millis(12), &[Id([1; 32])], 1, 2);
        trace.failed(&b, Duration::from_millis(2002), true);
        let stats = QueryStats {
            duration: Duration::from_millis(2002),
            answers: 1,
            failures: 1,
            hops: Some(1),
            first_provider: None,
            trace,
        };
        let mut log = LookupLog::default();
        log.record(1, &stats, start);
        let body = recent(&log, &[], start + Duration::from_secs(3));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let l = &v["lookups"][0];
        assert_eq!(l["kind"], "providers");
        assert_eq!(l["seq"], 1);
        assert_eq!(l["ago_ms"], 3000);
        assert_eq!(l["target"], "0".repeat(64));
        let r = &l["requests"];
        assert_eq!(r[0]["node"], a.to_hex());
        assert_eq!(r[0]["bits"], 4);
        assert_eq!(r[0]["result"], "answered");
        assert_eq!(r[0]["rtt_ms"], 12);
        assert_eq!(r[0]["providers"], 2);
        assert_eq!(r[0]["best_bits"], 7);
        assert_eq!(r[1]["result"], "timeout");
        assert_eq!(r[1]["after_ms"], 2000);
        assert_eq!(r[1]["sent_ms"], 2);
    }

    /// A lookup under way is listed with its requests so far: answered, failed, and those
    /// still waiting for an answer.
    #[test]
    fn running_lookups_show_their_requests_so_far() {
        let start = Instant::now();
        let mut trace = LookupTrace::new(Id([0; 32]));
        let addr = "192.0.2.7:4000".parse().unwrap();
        let (a, b, c) = (Id([0x0f; 32]), Id([0xf0; 32]), Id([0x01; 32]));
        trace.sent(a, addr, 0, Duration::ZERO);
        trace.sent(b, addr, 0, Duration::ZERO);
        trace.sent(c, addr, 1, Duration::from_millis(20));
        trace.answered(&a, Duration::from_millis(20), &[c], 1, 0);
        trace.failed(&b, Duration::from_millis(30), false);
        let r = RunningLookup {
            query: crate::dht::QueryId(7),
            kind: "api",
            started: start,
            trace,
        };
        let body = recent(
            &LookupLog::default(),
            &[r],
            start + Duration::from_millis(500),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["lookups"], json!([]));
        let l = &v["running"][0];
        assert_eq!(l["query"], 7);
        assert_eq!(l["kind"], "api");
        assert_eq!(l["running_ms"], 500);
        assert_eq!(
            (l["answers"].clone(), l["failures"].clone()),
            (json!(1), json!(1))
        );
        let results: Vec<&str> = l["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["result"].as_str().unwrap())
            .collect();
        assert_eq!(results, ["answered", "error", "waiting"]);
        assert_eq!(l["requests"][2]["round"], 1);
    }
}
