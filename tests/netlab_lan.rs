//! LAN discovery in the LAN lab (protocol-spec/nat.md, section 11; `netlab.sh up-lan`): real
//! `peershare` processes in network namespaces.
//!
//! - Two LANs, each behind its own NAT router (port-restricted cone, no hairpinning), and a
//!   public node: the nodes of each LAN find each other without `--bootstrap`, never the
//!   other LAN's; a file shared on one LAN host is downloaded by the other over the LAN
//!   (the connection's peer address is the provider's LAN address), though the DHT names
//!   the provider by its router's public address.
//! - An isolated IPv6-only LAN (no router to anywhere): three nodes, no bootstrap, share and
//!   download.
//! - The figure: time from a node's start to its first LAN peer, median of 10 starts
//!   (printed, not asserted: tests check correctness, never times).
//!
//! Needs root and `ip`, `iptables`: without them the test prints SKIPPED and why (and fails
//! instead when `PEERSHARE_REQUIRE_NETLAB=1`, as in CI).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{dump_logs, skip, Lab, LabNode};
use serde_json::Value;

/// The LAN peers' addresses in a node's `status`.
fn lan_peers(n: &LabNode) -> Vec<String> {
    let mut v: Vec<String> = n.status()["nat"]["lan"]["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["addr"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Shares `bytes` as `name` on `seeder`; returns the content ID.
fn share(seeder: &LabNode, dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a file");
    let (ok, out) = seeder.cli(&["add", path.to_str().expect("utf-8")]);
    assert!(ok, "add {name}: {out}");
    out.lines().next().unwrap_or_default().trim().to_string()
}

/// `get`s `id` on `leecher` into `dir/dl-HOST`; returns the bytes and the peer address of
/// the first connection made for it.
fn fetch(leecher: &LabNode, host: &str, dir: &Path, id: &str, name: &str) -> (Vec<u8>, String) {
    let before = connections(leecher).len();
    let dest = dir.join(format!("dl-{host}"));
    let (ok, out) = leecher.cli(&["get", id, "-o", dest.to_str().expect("utf-8")]);
    assert!(ok, "get on {host}: {out}");
    let got = std::fs::read(dest.join(name)).unwrap_or_default();
    let conns = connections(leecher);
    let first = conns.get(before).cloned().unwrap_or(Value::Null);
    println!("{host}: {id:.16}.. first connection {first}");
    (got, first["peer"].as_str().unwrap_or("?").to_string())
}

fn connections(n: &LabNode) -> Vec<Value> {
    n.status()["nat"]["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn data(tag: &str) -> Vec<u8> {
    let mut d = format!("{tag}\n").into_bytes();
    d.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    d
}

#[test]
fn lan_nodes_find_each_other_and_download_over_the_lan() {
    if skip(
        "lan_nodes_find_each_other_and_download_over_the_lan",
        &["ip", "iptables"],
    ) {
        return;
    }
    let lab = Lab::up("up-lan");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let boot = ["203.0.113.2:4001"];
    let public = LabNode::start(&lab, "pub", d, &[], &[]);
    std::thread::sleep(Duration::from_millis(300));
    // One node of each LAN knows the public node; the other knows nobody.
    let a1 = LabNode::start(&lab, "a1", d, &boot, &[]);
    let a2 = LabNode::start(&lab, "a2", d, &[], &[]);
    let b1 = LabNode::start(&lab, "b1", d, &boot, &[]);
    let b2 = LabNode::start(&lab, "b2", d, &[], &[]);
    let iso: Vec<LabNode> = (1..=3)
        .map(|i| {
            let ip = format!("fd00:5053::{i}");
            LabNode::start(&lab, &format!("i{i}"), d, &[], &["--bind", &ip])
        })
        .collect();
    let all = ["pub", "a1", "a2", "b1", "b2", "i1", "i2", "i3"];

    let want = [
        (&a1, vec!["192.168.10.3:4001"]),
        (&a2, vec!["192.168.10.2:4001"]),
        (&b1, vec!["192.168.20.3:4001"]),
        (&b2, vec!["192.168.20.2:4001"]),
        (&iso[0], vec!["[fd00:5053::2]:4001", "[fd00:5053::3]:4001"]),
        (&iso[1], vec!["[fd00:5053::1]:4001", "[fd00:5053::3]:4001"]),
        (&iso[2], vec!["[fd00:5053::1]:4001", "[fd00:5053::2]:4001"]),
    ];
    let found = common::wait_until(Duration::from_secs(20), || {
        want.iter().all(|(n, w)| lan_peers(n) == *w)
    });
    for (n, w) in &want {
        println!("{}: LAN peers {:?} (want {w:?})", n.ns, lan_peers(n));
    }
    if !found {
        dump_logs(d, &all);
    }
    assert!(found, "some node did not find exactly its own LAN's nodes");
    // The public node is on no LAN with anyone.
    assert_eq!(lan_peers(&public), Vec::<String>::new());

    // LAN A: shared on a1, fetched by a2 over the LAN (a2 joined the DHT through a1 alone).
    let bytes = data("on LAN A");
    let id = share(&a1, d, "a-file", &bytes);
    // a1 is behind a NAT: wait until its record can name a rendezvous (or a2 would only see
    // it over the LAN anyway, which is what is checked).
    std::thread::sleep(Duration::from_secs(2));
    let (_, providers) = a2.cli(&["peers", &id]);
    println!(
        "a2: the DHT's providers of a1's file: {}",
        providers.trim().replace('\n', ", ")
    );
    let (got, peer) = fetch(&a2, "a2", d, &id, "a-file");
    assert!(got == bytes, "a2 got other bytes than a1 shares");
    assert_eq!(peer, "192.168.10.2:4001", "a2 did not fetch over the LAN");
    // a2's DHT knows more than its LAN peer: it joined the network through it. A contact
    // enters the table only once it proved its key (dht.md section 6.1), which in a debug
    // build on a loaded machine may still be under way when the fetch ends.
    let mut rt = 0;
    let joined = common::wait_until(Duration::from_secs(10), || {
        rt = a2.status()["routing_table_size"].as_u64().unwrap_or(0);
        rt >= 2
    });
    println!("a2 routing table: {rt} contacts");
    assert!(joined, "a2 did not join the DHT through its LAN peer: {rt}");

    // The isolated LAN: i1 shares, i2 and i3 fetch; no bootstrap anywhere.
    let bytes = data("isolated");
    let id = share(&iso[0], d, "i-file", &bytes);
    for (k, h) in [(1, "i2"), (2, "i3")] {
        let (got, peer) = fetch(&iso[k], h, d, &id, "i-file");
        assert!(got == bytes, "{h} got other bytes than i1 shares");
        assert!(peer.starts_with("[fd00:5053::"), "{h} fetched from {peer}");
    }
    for n in std::iter::once(&a1).chain(iso.iter()) {
        let l = &n.status()["nat"]["lan"];
        println!(
            "{}: LAN datagrams sent {} multicast, {} unicast; received {}; malformed {}",
            n.ns, l["sent_multicast"], l["sent_unicast"], l["received"], l["malformed"]
        );
    }

    // The figure: a2 restarted 10 times; from the start of its process to its first LAN
    // peer in `status`.
    drop(a2);
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let mut n = LabNode::start(&lab, "a2", d, &[], &[]);
        // Polled every 10 ms (each poll runs a `status` client in the namespace).
        let mut ok = false;
        while started.elapsed() < Duration::from_secs(10) {
            if !lan_peers(&n).is_empty() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = started.elapsed();
        assert!(ok, "a2 found no LAN peer after a restart");
        times.push(t);
        assert!(n.terminate(), "a2 did not stop on SIGTERM");
    }
    times.sort();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    println!(
        "\ntime from start to first LAN peer, 10 starts (ms): {ms:?}; median {} ms",
        (ms[4] + ms[5]) / 2
    );
    drop((public, a1, b1, b2, iso));
    drop(lab);
}
