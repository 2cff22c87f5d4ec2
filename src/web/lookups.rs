//! `GET /lookups` (http.md section 7): the last DHT lookups, newest first, each with its
//! requests hop by hop, as JSON for the learners' page. Pure: the log and the time now in,
//! bytes out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::dht::trace::{Hop, HopOutcome};
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

/// The body of `GET /lookups` at `now`.
pub fn recent(log: &LookupLog, now: Instant) -> Vec<u8> {
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
    json!({ "lookups": list }).to_string().into_bytes()
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
        let body = recent(&log, start + Duration::from_secs(3));
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
}
