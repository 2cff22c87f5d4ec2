//! Network shapes beyond the NAT matrix (issue 20; protocol-spec/nat.md, section 9;
//! `netlab.sh up-shapes`): real `peershare` processes in network namespaces.
//!
//! - **Office**: two hosts behind the same port-restricted router without hairpinning; with
//!   LAN discovery they connect over the LAN (the connection's peer is the seeder's LAN
//!   address), and a second pair in the same office runs with `--no-lan`.
//! - **Double NAT**: a host behind a home router behind an endpoint-independent CGN fetches
//!   from a host behind an ordinary home NAT, and the reverse.
//! - **Symmetric CGN**: a host behind a home router behind a symmetric CGN and a double-NAT
//!   host of the previous shape, both ways.
//! - **IPv6 with stateful firewalls**: two hosts with global addresses behind routers that
//!   drop unsolicited inbound traffic, and dual-stack public bootstrap nodes; neither
//!   firewalled host may serve as the other's rendezvous.
//! - The IPv6 pair once more with a seeder started just before it is asked (issue 20
//!   measured 16.1 s there).
//! - Every host sits behind a filtering NAT or firewall without port mapping: none may find
//!   itself reachable or serve as a rendezvous.
//!
//! Every download is 2 MiB, bytes compared; the test prints a table of shape, seeder,
//! leecher, strategy, connection set-up time and the whole download's time. Tests check
//! correctness, never times: the times are printed, not asserted.
//!
//! Needs root, `ip`, `iptables` and `ip6tables`: without them the test prints SKIPPED and
//! why (and fails instead when `PEERSHARE_REQUIRE_NETLAB=1`, as in CI). With
//! `PEERSHARE_NETLAB_LOGS=DIR` the nodes log at debug level (`-v`) into DIR, kept after the
//! run.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::lab::{dump_logs, skip, Lab, LabNode};
use serde_json::Value;

const BOOT4: [&str; 2] = ["203.0.113.2:4001", "203.0.113.3:4001"];
const BOOT6: [&str; 2] = ["[2001:db8::2]:4001", "[2001:db8::3]:4001"];
/// The size of every download: issue 20's figures were measured with 2 MiB.
const SIZE: usize = 2 << 20;

/// The hosts and what they run with: IPv6 hosts bind `::` and bootstrap over IPv6.
const HOSTS: [(&str, &[&str]); 12] = [
    ("o1", &[]),
    ("o2", &[]),
    ("o3", &["--no-lan"]),
    ("o4", &["--no-lan"]),
    ("h-s", &[]),
    ("h-l", &[]),
    ("de-s", &[]),
    ("de-l", &[]),
    ("dy-s", &[]),
    ("dy-l", &[]),
    ("v6-s", &["--bind", "::"]),
    ("v6-l", &["--bind", "::"]),
];

/// Shape, seeder, leecher: each leecher's downloads run one after another.
const PAIRS: [(&str, &str, &str); 7] = [
    ("office, LAN discovery", "o1", "o2"),
    ("office, --no-lan", "o3", "o4"),
    ("double NAT (EIM CGN) to home", "de-s", "h-l"),
    ("home to double NAT (EIM CGN)", "h-s", "de-l"),
    ("symmetric CGN to double NAT", "dy-s", "de-l"),
    ("double NAT to symmetric CGN", "de-s", "dy-l"),
    ("IPv6 firewall to firewall", "v6-s", "v6-l"),
];

/// One download's outcome.
struct Outcome {
    ok: bool,
    strategy: String,
    peer: String,
    setup_ms: f64,
    whole: Duration,
}

fn connections(n: &LabNode) -> Vec<Value> {
    n.status()["nat"]["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// 2 MiB that differ per pair (the content ID is their hash).
fn data(tag: &str) -> Vec<u8> {
    let mut d = format!("{tag}\n").into_bytes();
    let mut x = 0x9e37_79b9_u32 ^ tag.len() as u32;
    while d.len() < SIZE {
        // xorshift: cheap bytes that do not compress or repeat.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d.extend_from_slice(&x.to_le_bytes());
    }
    d.truncate(SIZE);
    d
}

/// `get`s `id` (the file `name`) on `leecher` into `dir/dl-HOST`.
fn fetch(leecher: &LabNode, host: &str, dir: &Path, id: &str, name: &str, want: &[u8]) -> Outcome {
    let before = connections(leecher).len();
    let dest = dir.join(format!("dl-{host}"));
    let started = Instant::now();
    let (ok, out) = leecher.cli(&["get", id, "-o", dest.to_str().expect("utf-8")]);
    let whole = started.elapsed();
    if !ok {
        println!("get {name} on {host} failed: {out}");
    }
    let got = std::fs::read(dest.join(name)).unwrap_or_default();
    let first = connections(leecher)
        .get(before)
        .cloned()
        .unwrap_or(Value::Null);
    // The first connection set up for it, as `status` keeps it (`ls ID` no longer lists the
    // peer: the connection closes when the download completes).
    println!("{host}: {name}: first connection {first}");
    Outcome {
        ok: ok && got == want,
        strategy: first["strategy"].as_str().unwrap_or("?").to_string(),
        peer: first["peer"].as_str().unwrap_or("?").to_string(),
        setup_ms: first["setup_ms"].as_f64().unwrap_or(f64::NAN),
        whole,
    }
}

#[test]
fn every_shape_downloads() {
    if skip("every_shape_downloads", &["ip", "iptables", "ip6tables"]) {
        return;
    }
    let lab = Lab::up("up-shapes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let logs = std::env::var_os("PEERSHARE_NETLAB_LOGS").map(PathBuf::from);
    let d: &Path = match &logs {
        Some(p) => {
            std::fs::create_dir_all(p).expect("log dir");
            p
        }
        None => tmp.path(),
    };
    let verbose: &[&str] = if logs.is_some() { &["-v"] } else { &[] };
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        extra.iter().chain(verbose).copied().collect()
    };

    // Dual-stack bootstrap nodes: each knows the other by both addresses.
    let mut boot = Vec::new();
    boot.push(LabNode::start(
        &lab,
        "boot1",
        d,
        &[],
        &with(&["--bind", "::"]),
    ));
    std::thread::sleep(Duration::from_millis(300));
    boot.push(LabNode::start(
        &lab,
        "boot2",
        d,
        &[BOOT4[0], BOOT6[0]],
        &with(&["--bind", "::"]),
    ));
    // Bootstrap nodes of a real network have long known they are reachable: the hosts
    // start once they do (a host that finds itself unreachable first would be refused as
    // their client, and keep asking: see the report of issue 20).
    let started = Instant::now();
    let public = common::wait_until(Duration::from_secs(30), || {
        boot.iter()
            .all(|b| b.status()["nat"]["reachability"] == "public")
    });
    println!(
        "bootstrap nodes public after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        public,
        "the bootstrap nodes never found themselves reachable"
    );
    let nodes: Vec<LabNode> = HOSTS
        .iter()
        .map(|(h, extra)| {
            let bootstrap = if h.starts_with("v6") { BOOT6 } else { BOOT4 };
            LabNode::start(&lab, h, d, &bootstrap, &with(extra))
        })
        .collect();
    let node = |h: &str| &nodes[HOSTS.iter().position(|(x, _)| *x == h).expect("host")];
    let names: Vec<&str> = ["boot1", "boot2"]
        .into_iter()
        .chain(HOSTS.iter().map(|(h, _)| *h))
        .collect();

    // Every node knows how it can be reached, and an unreachable one has a rendezvous.
    let started = Instant::now();
    let ready = common::wait_until(Duration::from_secs(60), || {
        HOSTS.iter().all(|(h, _)| {
            let s = node(h).status();
            s["nat"]["reachability"]
                .as_str()
                .is_some_and(|r| r != "unknown")
                && (s["nat"]["reachability"] != "unreachable" || !s["nat"]["rendezvous"].is_null())
        })
    });
    println!("ready after {:.1} s", started.elapsed().as_secs_f64());
    for (h, _) in HOSTS {
        let s = node(h).status();
        println!(
            "{h:5} external {:24} reachability {:12} rendezvous {:22} clients {}",
            s["external_addr"].as_str().unwrap_or("-"),
            s["nat"]["reachability"].as_str().unwrap_or("?"),
            s["nat"]["rendezvous"].as_str().unwrap_or("-"),
            s["nat"]["rendezvous_clients"],
        );
    }
    if !ready {
        dump_logs(d, &names);
    }
    assert!(ready, "some node never learnt its reachability");
    // Every host sits behind a filtering NAT or firewall with no port mapping: none may
    // believe it is reachable, nor serve others as their rendezvous (a LAN peer's dial-back
    // reaches a host over the LAN, not through its router). Failed after the downloads, so
    // that the table is printed in any case.
    let misjudged: Vec<String> = HOSTS
        .iter()
        .map(|(h, _)| (h, node(h).status()["nat"].clone()))
        .filter(|(_, n)| n["reachability"] != "unreachable" || n["rendezvous_clients"] != 0)
        .map(|(h, n)| {
            format!(
                "{h} is {} with {} rendezvous clients",
                n["reachability"], n["rendezvous_clients"]
            )
        })
        .collect();
    let firewalled_never_register = |when: &str| {
        for (h, other) in [("v6-s", "2001:db8:2::2"), ("v6-l", "2001:db8:1::2")] {
            let s = node(h).status();
            let rv = s["nat"]["rendezvous"].as_str().unwrap_or("-").to_string();
            assert!(
                !rv.contains(other),
                "{when}: {h} registered with the other firewalled host ({rv})"
            );
            assert_eq!(
                s["nat"]["rendezvous_clients"], 0,
                "{when}: {h} serves as a rendezvous behind its firewall"
            );
        }
    };
    firewalled_never_register("before the downloads");

    // Each pair's file, shared by its seeder; then the announces land.
    let files: Vec<(String, String, Vec<u8>)> = PAIRS
        .iter()
        .map(|(_, s, l)| {
            let name = format!("file-{s}-{l}");
            let bytes = data(&name);
            let path = d.join(&name);
            std::fs::write(&path, &bytes).expect("write a file");
            let (ok, out) = node(s).cli(&["add", path.to_str().expect("utf-8")]);
            assert!(ok, "add on {s}: {out}");
            let id = out.lines().next().unwrap_or_default().trim().to_string();
            (name, id, bytes)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    // One download at a time, so that the times are each pair's own.
    let mut results = Vec::new();
    for ((shape, s, l), (name, id, bytes)) in PAIRS.iter().zip(&files) {
        let o = fetch(node(l), l, d, id, name, bytes);
        results.push((*shape, *s, *l, o));
    }

    // Issue 20's IPv6 figure: a seeder asked right after it started, before it knows it is
    // behind a firewall (its first record names no rendezvous).
    let fresh = LabNode::start(&lab, "v6-f", d, &BOOT6, &with(&["--bind", "::"]));
    let name = "file-v6-f-v6-l".to_string();
    let bytes = data(&name);
    std::fs::write(d.join(&name), &bytes).expect("write a file");
    // As soon as its API answers.
    let mut id = String::new();
    let added = common::wait_until(Duration::from_secs(10), || {
        let (ok, out) = fresh.cli(&["add", d.join(&name).to_str().expect("utf-8")]);
        id = out.lines().next().unwrap_or_default().trim().to_string();
        ok
    });
    assert!(added, "add on v6-f failed");
    let o = fetch(node("v6-l"), "v6-l", d, &id, &name, &bytes);
    results.push(("IPv6, seeder just started", "v6-f", "v6-l", o));

    println!(
        "\n{} MiB per download, one at a time\n| shape | seeder | leecher | strategy | set-up | download |",
        SIZE >> 20
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut failures = misjudged;
    for (shape, s, l, o) in &results {
        println!(
            "| {shape} | {s} | {l} | {}{} | {:.0} ms | {:.1} s |",
            if o.ok { "" } else { "FAILED " },
            o.strategy,
            o.setup_ms,
            o.whole.as_secs_f64()
        );
        if !o.ok {
            failures.push(format!("{s} -> {l}: download failed or bytes differ"));
        }
    }
    // With LAN discovery the office pair connects over the LAN: directly to o1's LAN
    // address (a relayed connection records the address it was asked for too, so the
    // strategy says which path it took).
    let office = &results[0].3;
    if office.peer != "192.0.2.2:4001" || office.strategy != "direct" {
        failures.push(format!(
            "o1 -> o2: {} to {}, not directly over the LAN",
            office.strategy, office.peer
        ));
    }
    if !failures.is_empty() {
        dump_logs(d, &names);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    firewalled_never_register("after the downloads");
    drop((nodes, fresh, boot));
    drop(lab);
}
