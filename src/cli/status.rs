//! `peershare status` for people: the node, its DHT traffic, bandwidth and NAT traversal.

use serde_json::Value;

/// The reply of `status` for people.
pub(super) fn format_status(v: &Value) -> String {
    let d = &v["dht"];
    let provided = v["provided"].as_array().map_or(0, Vec::len);
    format!(
        "node id          {}\nlisten           {} (UDP DHT + TCP wire)\nexternal address {}\napi              {}\nuptime           {} s\nrouting table    {} contacts\nprovider records {} held for others, {} provided by this node\ndht traffic      {} datagrams in, {} out; {} malformed, {} rate-limited, {} timeouts",
        v["node_id"].as_str().unwrap_or("?"),
        v["listen"].as_str().unwrap_or("?"),
        v["external_addr"].as_str().unwrap_or("not known yet"),
        v["api"].as_str().unwrap_or("?"),
        v["uptime_secs"],
        v["routing_table_size"],
        v["provider_records"],
        provided,
        d["datagrams_in"],
        d["datagrams_out"],
        d["decode_errors"],
        d["rate_limited"],
        d["timeouts"],
    ) + &format_bootstrap(&v["bootstrap"])
        + &format_bandwidth(&v["bandwidth"])
        + &format_secure(&v["secure"])
        + &format_nat(&v["nat"])
}

/// The `secure` object of `status` for people: sessions made, and what was refused.
fn format_secure(s: &Value) -> String {
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    format!(
        "\nsessions         {} encrypted (Noise XX); refused: {} failed handshakes, {} of the \
         old plaintext version, {} bad records, {} unproved node IDs",
        n("sessions"),
        n("handshake_failures"),
        n("old_version"),
        n("records_refused"),
        n("id_mismatch"),
    )
}

/// The `bootstrap` object of `status` for people: loud when no bootstrap address answers.
fn format_bootstrap(b: &Value) -> String {
    let addrs: Vec<&str> = b["addrs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if addrs.is_empty() {
        return "\nbootstrap        none given".to_string();
    }
    let state = if b["answered"] == true {
        "answered".to_string()
    } else {
        format!(
            "NO ANSWER yet ({} requests unanswered; still trying while no other node is known)",
            b["unanswered"]
        )
    };
    format!("\nbootstrap        {}: {state}", addrs.join(", "))
}

/// The `nat` object of `status` for people: reachability, port mapping, rendezvous, and how
/// connections were set up. Empty for a node that reports none (NAT traversal off).
fn format_nat(n: &Value) -> String {
    if !n.is_object() {
        return String::new();
    }
    let pm = &n["port_mapping"];
    let by = pm["protocol"].as_str().unwrap_or("?");
    let mapping = match (pm["state"].as_str(), pm["external"].as_str()) {
        (Some(state), Some(ext)) => format!("{state} as {ext} by {by}"),
        (Some(state), None) => format!("{state} ({by})"),
        _ => "off".to_string(),
    };
    let s = &n["setups"];
    format!(
        "
nat              reachability {}; port mapping {}; rendezvous {}
connections      {} direct, {} punched, {} relayed; relaying {} for others, {} clients registered here",
        n["reachability"].as_str().unwrap_or("?"),
        mapping,
        n["rendezvous"].as_str().unwrap_or("none"),
        s["direct"],
        s["punched"],
        s["relayed"],
        n["circuits"],
        n["rendezvous_clients"],
    ) + &format_lan(&n["lan"])
}

/// `nat.lan` of `status` for people: the nodes found on the local network, one a line.
fn format_lan(l: &Value) -> String {
    let Some(peers) = l["peers"].as_array() else {
        return "
lan              discovery off"
            .to_string();
    };
    let mut out = format!(
        "
lan              {} node{} on this network (multicast: {} sent, {} received, {} malformed)",
        peers.len(),
        if peers.len() == 1 { "" } else { "s" },
        l["sent_multicast"],
        l["received"],
        l["malformed"],
    );
    for p in peers {
        out.push_str(&format!(
            "
  {:16} {} (heard {} s ago)",
            p["node_id"].as_str().map_or("?", |s| &s[..s.len().min(16)]),
            p["addr"].as_str().unwrap_or("?"),
            p["last_seen_s"],
        ));
    }
    out
}

/// The `bandwidth` object of `status` for people.
pub(super) fn format_bandwidth(b: &Value) -> String {
    use crate::limits::format_rate;
    let r = |v: &Value| format_rate(v.as_u64().unwrap_or(0));
    let l = &b["limits"];
    let rate = |v: &Value| match v.as_u64().unwrap_or(0) {
        0 => "0 B/s".to_string(),
        n => format_rate(n),
    };
    format!(
        "\nupload           {} now, limit {} (each transfer {}, each peer {}); {} bytes sent\ndownload         {} now, limit {} (each transfer {}, each peer {}); {} bytes received{}",
        rate(&b["up_rate"]),
        r(&l["up"]),
        r(&l["transfer_up"]),
        r(&l["peer_up"]),
        b["up_total"],
        rate(&b["down_rate"]),
        r(&l["down"]),
        r(&l["transfer_down"]),
        r(&l["peer_down"]),
        b["down_total"],
        match b["down_duplicate"].as_u64() {
            Some(d) if d > 0 => format!(" ({d} of them copies of chunks already in)"),
            _ => String::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_session_counters_are_shown() {
        let line = format_secure(&json!({
            "sessions": 7, "handshake_failures": 1, "old_version": 2,
            "records_refused": 3, "id_mismatch": 4
        }));
        assert_eq!(
            line,
            "\nsessions         7 encrypted (Noise XX); refused: 1 failed handshakes, 2 of the \
             old plaintext version, 3 bad records, 4 unproved node IDs"
        );
        // A node from before sessions (no `secure` object) shows zeros, not an error.
        assert!(format_secure(&json!(null)).contains(" 0 encrypted"));
    }
}
