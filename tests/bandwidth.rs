//! Bandwidth limits on real nodes: a limit is never exceeded by more than 5% over any 2 s
//! window (at 1, 5 and 50 MB/s, up and down), a live change is obeyed from the next second
//! on, and two transfers under one limit share it evenly. Only upper bounds are asserted:
//! a busy machine can make a transfer slower, never faster.

mod common;

use std::time::{Duration, Instant};

use common::{seeded_bytes, Node};
use serde_json::{json, Value};

/// Samples `field` of `status.bandwidth` every 50 ms while `busy()` holds.
fn sample(node: &Node, field: &str, mut busy: impl FnMut() -> bool) -> Vec<(Instant, u64)> {
    let mut out = Vec::new();
    while busy() {
        let v = node.status();
        out.push((Instant::now(), v["bandwidth"][field].as_u64().unwrap()));
        std::thread::sleep(Duration::from_millis(50));
    }
    out
}

/// The highest average rate over any window of at least `w`, starting at or after `from`.
fn max_rate(s: &[(Instant, u64)], w: Duration, from: Instant) -> f64 {
    let mut best = 0.0f64;
    for (i, (t0, b0)) in s.iter().enumerate() {
        if *t0 < from {
            continue;
        }
        if let Some((t1, b1)) = s[i..].iter().find(|(t, _)| t.duration_since(*t0) >= w) {
            let r = (b1 - b0) as f64 / t1.duration_since(*t0).as_secs_f64();
            best = best.max(r);
        }
    }
    best
}

fn share(node: &Node, dir: &std::path::Path, name: &str, len: usize, seed: u64) -> String {
    let p = dir.join(name);
    std::fs::write(&p, seeded_bytes(len, seed)).unwrap();
    let r = node.call("local_add_file", json!({ "filepath": p }));
    r["file_hash"].as_str().unwrap().to_string()
}

fn download(
    node: &Node,
    id: &str,
    out: &std::path::Path,
    peer: &Node,
) -> std::thread::JoinHandle<Value> {
    let api = node.api;
    let req = json!({"type": "local_request_file", "payload": {
        "content_hash": id, "output_dir": out, "peers": [peer.addr()]}});
    std::thread::spawn(move || common::call_timeout(api, &req, Duration::from_secs(120)).unwrap())
}

/// One limited transfer; returns (max 2 s rate, mean rate) of the limited side.
fn limited_run(rate: u64, up: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let limit = format!("{rate}B/s");
    let (sargs, largs): (Vec<&str>, Vec<&str>) = if up {
        (vec!["--up-limit", &limit], vec![])
    } else {
        (vec![], vec!["--down-limit", &limit])
    };
    let seeder = Node::start(&dir.path().join("s"), &sargs);
    let leecher = Node::start(&dir.path().join("l"), &largs);
    // About 4.5 s of data at the limit.
    let len = (rate as usize) * 9 / 2;
    let id = share(&seeder, dir.path(), "f.bin", len, rate);
    let h = download(&leecher, &id, &dir.path().join("out"), &seeder);
    let (node, field) = if up {
        (&seeder, "up_total")
    } else {
        (&leecher, "down_total")
    };
    let s = sample(node, field, || !h.is_finished());
    let r = h.join().unwrap();
    assert_eq!(r["status"], "success", "{r}");
    let start = s.first().unwrap().0;
    let max = max_rate(&s, Duration::from_secs(2), start);
    let (t0, b0) = s.first().unwrap();
    let (t1, b1) = s.last().unwrap();
    let mean = (b1 - b0) as f64 / t1.duration_since(*t0).as_secs_f64();
    (max, mean)
}

#[test]
fn limits_hold_within_5_percent_over_2_s() {
    for (rate, up) in [
        (1_000_000u64, true),
        (5_000_000, true),
        (50_000_000, true),
        (5_000_000, false),
    ] {
        let (max, mean) = limited_run(rate, up);
        let dir = if up { "up" } else { "down" };
        println!(
            "limit {dir} {rate} B/s: highest 2 s rate {max:.0} B/s ({:.1}% of the limit), mean {mean:.0} B/s ({:.1}%)",
            100.0 * max / rate as f64,
            100.0 * mean / rate as f64
        );
        assert!(
            max <= rate as f64 * 1.05,
            "{dir} {rate}: {max} B/s over 2 s"
        );
    }
}

#[test]
fn a_live_change_is_obeyed_from_the_next_second() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Node::start(&dir.path().join("s"), &["--up-limit", "5MB/s"]);
    let leecher = Node::start(&dir.path().join("l"), &[]);
    let id = share(&seeder, dir.path(), "f.bin", 16_000_000, 9);
    let h = download(&leecher, &id, &dir.path().join("out"), &seeder);
    let t0 = Instant::now();
    let mut changed_at = None;
    let s = sample(&seeder, "up_total", || {
        if changed_at.is_none() && t0.elapsed() >= Duration::from_millis(1500) {
            let r = seeder.call("set_limits", json!({ "up": "1MB/s" }));
            assert_eq!(r["limits"]["up"], 1_000_000, "{r}");
            changed_at = Some(Instant::now());
        }
        !h.is_finished() && t0.elapsed() < Duration::from_secs(6)
    });
    let at = changed_at.unwrap();
    let after = max_rate(&s, Duration::from_secs(2), at + Duration::from_secs(1));
    println!("after the change to 1 MB/s: highest 2 s rate {after:.0} B/s");
    assert!(after <= 1_050_000.0, "{after} B/s after the change");
    // The status shows the new limit; lifting it lets the download finish quickly.
    assert_eq!(seeder.status()["bandwidth"]["limits"]["up"], 1_000_000);
    let r = seeder.call("set_limits", json!({ "up": 0 }));
    assert_eq!(r["status"], "success");
    let r = h.join().unwrap();
    assert_eq!(r["status"], "success", "{r}");
    // Bad values are clear errors.
    let r = seeder.call("set_limits", json!({ "up": "fast" }));
    assert_eq!(r["status"], "error");
    assert!(r["message"].as_str().unwrap().contains("not a rate"), "{r}");
    let r = seeder.call("set_limits", json!({ "down": -3 }));
    assert_eq!(r["status"], "error");
}

/// Two downloads from one seeder whose upload is limited: each gets about half.
#[test]
fn two_transfers_share_a_limit_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Node::start(&dir.path().join("s"), &["--up-limit", "4MB/s"]);
    let a = share(&seeder, dir.path(), "a.bin", 16_000_000, 1);
    let b = share(&seeder, dir.path(), "b.bin", 16_000_000, 2);
    let la = Node::start(&dir.path().join("la"), &[]);
    let lb = Node::start(&dir.path().join("lb"), &[]);
    let ha = download(&la, &a, &dir.path().join("oa"), &seeder);
    let hb = download(&lb, &b, &dir.path().join("ob"), &seeder);
    let have = |n: &Node, id: &str| {
        n.call("transfer_status", json!({ "content_hash": id }))["transfers"][0]["have_bytes"]
            .as_u64()
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(1500));
    let (a0, b0) = (have(&la, &a), have(&lb, &b));
    std::thread::sleep(Duration::from_millis(3000));
    let (a1, b1) = (have(&la, &a), have(&lb, &b));
    let (x, y) = ((a1 - a0) as f64, (b1 - b0) as f64);
    println!("two transfers under 4 MB/s: {x:.0} and {y:.0} bytes in 3 s");
    assert!(x > 0.0 && y > 0.0);
    assert!((x - y).abs() / ((x + y) / 2.0) <= 0.15, "{x} vs {y}");
    assert_eq!(ha.join().unwrap()["status"], "success");
    assert_eq!(hb.join().unwrap()["status"], "success");
}

/// Limits as people write them (case-insensitive units, bit rates), shown as understood, and
/// kept: a limit set live is written to the config file at once (it survives even SIGKILL) and is
/// the one a restarted node has; one given on the command line replaces only that limit, for
/// that run only.
#[test]
fn limits_are_understood_as_written_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut n = Node::start(&data, &["--up-limit", "40mbit"]);
    assert_eq!(n.status()["bandwidth"]["limits"]["up"], 5_000_000);
    let out = std::process::Command::new(common::bin())
        .args(["limit", "--api", &n.api.to_string()])
        .args([
            "--down",
            "5mb",
            "--peer-up",
            "2M",
            "--transfer-down",
            "8Mbps",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("download 5.0 MB/s (5000000 bytes/s)") && text.contains("kept"),
        "{text}"
    );
    let limits = |n: &Node| n.status()["bandwidth"]["limits"].clone();
    let want = json!({"up": 5_000_000, "down": 5_000_000, "transfer_up": 0,
        "transfer_down": 1_000_000, "peer_up": 2_000_000, "peer_down": 0});
    assert_eq!(limits(&n), want);
    // Saved in the config file without waiting for a clean stop: SIGKILL once it has them.
    let conf = data.join("peershare.conf");
    assert!(common::wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&conf).is_ok_and(|t| t.contains("peer_up_limit = 2MB/s"))
    }));
    n.kill();
    // The flag's limit was for that run (flags are never written to the config file).
    let mut n = Node::start(&data, &[]);
    let mut want = want;
    want["up"] = json!(0);
    assert_eq!(limits(&n), want, "after a restart");
    n.terminate();
    // A flag replaces its own limit only.
    let n = Node::start(&data, &["--down-limit", "0"]);
    want["down"] = json!(0);
    assert_eq!(limits(&n), want, "after a restart with --down-limit 0");
}
