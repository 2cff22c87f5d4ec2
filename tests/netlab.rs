//! NAT traversal on emulated NATs (protocol-spec/nat.md, section 9): real `peershare`
//! processes in Linux network namespaces behind iptables routers built by
//! `tools/netlab/netlab.sh`. Every pair of {public, EIM, port-restricted, symmetric, NAT-PMP,
//! PCP, UPnP-IGD} as seeder x leecher downloads a file; the bytes are compared, and for each pair the
//! strategy (direct, mapped, punched, relayed) and the connection set-up time are printed as a
//! table. The NAT-PMP, PCP and UPnP-IGD routers run miniupnpd (the node behind the first
//! speaks NAT-PMP, behind the second PCP; the third offers UPnP-IGD only); the same run checks that `status` names the protocol, that each
//! leecher's short mapping is renewed before it expires, and that every mapping is removed
//! when its node is stopped with SIGTERM.
//!
//! Needs root, `ip`, `iptables`, `nft`, `miniupnpd` and `python3`: without them the test
//! prints SKIPPED and why (and fails instead when `PEERSHARE_REQUIRE_NETLAB=1`, as in CI).
//! Run alone with `make netlab-test`. Tests check correctness, never times: the times are
//! printed, not asserted.

mod common;

use common::lab::{dump_logs, skip, Lab, LabNode};

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const TYPES: [&str; 7] = ["public", "eim", "prc", "sym", "pmp", "pcp", "upnp"];
/// The routers that map ports (miniupnpd), and the protocol the node there speaks.
const MAPPERS: [(&str, &str); 3] = [("pmp", "nat-pmp"), ("pcp", "pcp"), ("upnp", "upnp-igd")];
/// The NAT-PMP leecher asks for mappings this short, so that the run sees them renewed.
const SHORT_LIFETIME: Duration = Duration::from_secs(10);

/// miniupnpd's port forwardings on router `router` (its nftables DNAT rules), one per line.
fn forwardings(lab: &Lab, router: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(router)])
        .args([
            "nft",
            "list",
            "chain",
            "inet",
            "miniupnpd",
            "prerouting_miniupnpd",
        ])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("dnat"))
        .map(|l| l.trim().to_string())
        .collect()
}

fn host(t: &str, role: &str) -> String {
    match t {
        "public" => format!("pub-{role}"),
        t => format!("{t}-{role}"),
    }
}

/// The address a seeder of type `t` has on the lab's internet (its router's, behind a NAT;
/// tools/netlab/netlab.sh numbers the routers 203.0.113.(20 + k), k = 1, 2, ... over the
/// types and roles in order).
fn seeder_ip(t: &str) -> String {
    match TYPES.iter().position(|x| *x == t) {
        Some(0) | None => "203.0.113.11".to_string(),
        Some(i) => format!("203.0.113.{}", 20 + 2 * i - 1),
    }
}

/// The IP address of a `status` connection entry's peer (`"IP:PORT"`).
fn peer_ip(c: &Value) -> Option<&str> {
    c["peer"].as_str()?.rsplit_once(':').map(|(ip, _)| ip)
}

/// One download's outcome.
struct Outcome {
    ok: bool,
    strategy: String,
    setup_ms: f64,
    /// Connections through a rendezvous (punched, relayed) to other nodes than the seeder:
    /// a download tries earlier providers first, but only those it can dial directly.
    detours: Vec<String>,
}

#[test]
fn every_nat_pair_downloads() {
    if skip(
        "every_nat_pair_downloads",
        &["ip", "iptables", "nft", "miniupnpd", "python3"],
    ) {
        return;
    }
    let lab = Lab::up("up");
    // PEERSHARE_LAB_KEEP=1 keeps the nodes' logs and data for a look after the run.
    let keep = std::env::var_os("PEERSHARE_LAB_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .disable_cleanup(keep)
        .tempdir()
        .expect("temp dir");
    if keep {
        println!("the lab's logs stay in {}", dir.path().display());
    }
    let boot = ["203.0.113.2:4001", "203.0.113.3:4001"];
    let mut nodes = vec![LabNode::start(&lab, "boot1", dir.path(), &[], &[])];
    std::thread::sleep(Duration::from_millis(300));
    nodes.push(LabNode::start(&lab, "boot2", dir.path(), &boot[..1], &[]));
    let mut hosts = Vec::new();
    let short = format!("{}s", SHORT_LIFETIME.as_secs());
    for t in TYPES {
        for role in ["s", "l"] {
            let h = host(t, role);
            let mut extra: Vec<&str> = Vec::new();
            if t == "pmp" {
                extra.push("--no-pcp");
            }
            if role == "l" && MAPPERS.iter().any(|(m, _)| *m == t) {
                extra.extend(["--nat-pmp-lifetime", &short]);
            }
            nodes.push(LabNode::start(&lab, &h, dir.path(), &boot, &extra));
            hosts.push(h);
        }
    }
    let node = |h: &str| {
        let i = 2 + hosts.iter().position(|x| x == h).expect("host");
        &nodes[i]
    };

    // Every node knows how it can be reached before anything is shared.
    let ready = common::wait_until(Duration::from_secs(60), || {
        hosts.iter().all(|h| {
            let s = node(h).status();
            s["nat"]["reachability"]
                .as_str()
                .is_some_and(|r| r != "unknown")
                && (s["nat"]["reachability"] != "unreachable" || !s["nat"]["rendezvous"].is_null())
        })
    });
    let mut vary_wrong = Vec::new();
    for h in &hosts {
        let s = node(h).status();
        let vary = s["nat"]["ports_vary"].as_bool();
        println!(
            "{h:6} external {:22} reachability {:12} rendezvous {:18} ports vary {}",
            s["external_addr"].as_str().unwrap_or("-"),
            s["nat"]["reachability"].as_str().unwrap_or("?"),
            s["nat"]["rendezvous"].as_str().unwrap_or("-"),
            vary.map_or("?".to_string(), |v| v.to_string()),
        );
        // Only the symmetric NAT gives each destination another port (nat.md section 3).
        if vary != Some(h.starts_with("sym-")) {
            vary_wrong.push(format!("{h}: ports_vary {vary:?}"));
        }
    }
    assert!(ready, "some node never learnt its reachability");
    assert!(vary_wrong.is_empty(), "{}", vary_wrong.join("\n"));
    // The hosts behind mapping routers are reachable through their mapping, found before
    // any dial-back, each with the protocol it speaks.
    let mapped_at = Instant::now();
    for (t, proto) in MAPPERS {
        for role in ["s", "l"] {
            let h = host(t, role);
            let s = node(&h).status();
            assert_eq!(
                s["nat"]["reachability"], "mapped",
                "{h} did not map its port"
            );
            assert_eq!(
                s["nat"]["port_mapping"]["protocol"], proto,
                "{h} mapped with another protocol"
            );
        }
    }

    // One file per pair, shared by the seeder.
    let mut ids = std::collections::HashMap::new();
    for s in TYPES {
        for l in TYPES {
            let path = dir.path().join(format!("file-{s}-{l}"));
            // Distinct bytes per pair (the content ID is their hash).
            let mut data = format!("{s} seeds this for {l}\n").into_bytes();
            data.extend((0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            std::fs::write(&path, &data).expect("write a file");
            let (ok, out) = node(&host(s, "s")).cli(&["add", path.to_str().expect("utf-8")]);
            assert!(ok, "add on {s}: {out}");
            let id = out.lines().next().unwrap_or_default().trim().to_string();
            ids.insert((s, l), (id, data));
        }
    }
    // Let the announces land (the seeders behind a rendezvous announce it with them).
    std::thread::sleep(Duration::from_secs(3));

    // Each leecher downloads its files one after another; the leechers run in parallel.
    let started = Instant::now();
    let results: Vec<((&str, &str), Outcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = TYPES
            .iter()
            .map(|&l| {
                let n = node(&host(l, "l"));
                let ids = &ids;
                let dir = dir.path();
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for s in TYPES {
                        let (id, data) = &ids[&(s, l)];
                        let seen = n.status()["nat"]["connections"]
                            .as_array()
                            .map_or(0, Vec::len);
                        let dest = dir.join(format!("dl-{l}"));
                        let (ok, _) = n.cli(&["get", id, "-o", dest.to_str().expect("utf-8")]);
                        let got =
                            std::fs::read(dest.join(format!("file-{s}-{l}"))).unwrap_or_default();
                        let st = n.try_status().unwrap_or_else(|e| {
                            eprintln!("{s} -> {l}: {e}");
                            Value::Null
                        });
                        let conns = st["nat"]["connections"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        // The connection to the seeder: a download may first try providers
                        // of earlier downloads (dht.md, known providers first).
                        let ip = seeder_ip(s);
                        let first = conns
                            .iter()
                            .skip(seen)
                            .find(|c| peer_ip(c) == Some(ip.as_str()))
                            .cloned()
                            .unwrap_or(Value::Null);
                        let detours = conns
                            .iter()
                            .skip(seen)
                            .filter(|c| c["strategy"] == "punched" || c["strategy"] == "relayed")
                            .filter(|c| peer_ip(c) != Some(ip.as_str()))
                            .map(|c| format!("{} {}", c["strategy"], c["peer"]))
                            .collect();
                        out.push((
                            (s, l),
                            Outcome {
                                ok: ok && &got == data,
                                strategy: first["strategy"].as_str().unwrap_or("?").to_string(),
                                setup_ms: first["setup_ms"].as_f64().unwrap_or(f64::NAN),
                                detours,
                            },
                        ));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("leecher thread"))
            .collect()
    });
    let mapped_seeders: Vec<&str> = TYPES
        .iter()
        .copied()
        .filter(|s| node(&host(s, "s")).status()["nat"]["reachability"] == "mapped")
        .collect();

    println!(
        "\nseeder \\ leecher: strategy, connection set-up (ms); all downloads in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("| seeder \\ leecher | {} |", TYPES.join(" | "));
    println!("| --- |{}", " --- |".repeat(TYPES.len()));
    let mut failures = Vec::new();
    for s in TYPES {
        let mut row = format!("| {s} |");
        for l in TYPES {
            let o = &results
                .iter()
                .find(|(k, _)| *k == (s, l))
                .expect("result")
                .1;
            let strategy = if o.strategy == "direct" && mapped_seeders.contains(&s) {
                "mapped"
            } else {
                o.strategy.as_str()
            };
            row.push_str(&format!(
                " {}{} {:.0} ms |",
                if o.ok { "" } else { "FAILED " },
                strategy,
                o.setup_ms
            ));
            if !o.ok {
                failures.push(format!("{s} -> {l}: download failed or bytes differ"));
            }
            if !o.detours.is_empty() {
                failures.push(format!(
                    "{s} -> {l}: connections through a rendezvous to other nodes: {:?}",
                    o.detours
                ));
            }
            if o.strategy == "relayed" && s != "sym" && l != "sym" {
                failures.push(format!(
                    "{s} -> {l}: relayed, though neither side is symmetric"
                ));
            }
            if MAPPERS.iter().any(|(m, _)| *m == s) && strategy != "mapped" {
                failures.push(format!(
                    "{s} -> {l}: {strategy}, though the seeder has a mapping"
                ));
            }
        }
        println!("{row}");
    }
    // A punch that cannot work is skipped (nat.md section 6): by the unreachable leechers
    // that meet a symmetric NAT (their own or the seeder's), and by nobody else.
    for l in TYPES {
        let skipped = node(&host(l, "l")).status()["nat"]["punches_skipped"]
            .as_u64()
            .unwrap_or(0);
        let expected = matches!(l, "prc" | "sym");
        if (skipped > 0) != expected {
            failures.push(format!("{l} leecher skipped {skipped} punches"));
        }
    }
    if !failures.is_empty() {
        let mut names = vec!["boot1", "boot2"];
        names.extend(hosts.iter().map(String::as_str));
        dump_logs(dir.path(), &names);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Renewal: the short mappings outlive their first lifetime (plus miniupnpd's clean-up).
    let expired = mapped_at + SHORT_LIFETIME + Duration::from_secs(3);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    for (t, _) in MAPPERS {
        let h = host(t, "l");
        let pm = node(&h).status()["nat"]["port_mapping"].clone();
        println!("\n{h} port mapping after its first lifetime: {pm}");
        let rules = forwardings(&lab, &format!("r-{h}"));
        println!("r-{h} forwardings: {rules:?}");
        assert_eq!(pm["state"], "mapped", "{h} lost its mapping");
        assert!(
            pm["renewals"].as_u64().unwrap_or(0) >= 1,
            "{h}: no renewal: {pm}"
        );
        assert_eq!(
            rules.len(),
            2,
            "{h}: expected the udp and tcp forwardings: {rules:?}"
        );
    }

    // Removal: SIGTERM, and the router forwards nothing any more.
    for (t, _) in MAPPERS {
        for role in ["s", "l"] {
            let h = host(t, role);
            let router = format!("r-{h}");
            assert_eq!(forwardings(&lab, &router).len(), 2, "{router} before stop");
            let i = 2 + hosts.iter().position(|x| *x == h).expect("host");
            assert!(nodes[i].terminate(), "{h} did not stop on SIGTERM");
            let left = forwardings(&lab, &router);
            println!("{router} forwardings after {h} stopped: {left:?}");
            assert!(
                left.is_empty(),
                "{h} stopped but {router} still forwards: {left:?}"
            );
        }
    }
    drop(nodes);
    drop(lab);
}
