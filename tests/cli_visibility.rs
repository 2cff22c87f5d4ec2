//! Visibility (issue 15): `peershare ls` with each download's rate and ETA as the node
//! measures them, and a transfer's peers (`ls ID`, `ls -v`, API `transfer_peers`). Real
//! nodes, real client processes: a seeder limited to 1 MB/s feeds a downloader, so the
//! download is under way long enough to be looked at; then the seeder dies and the
//! download must show as stalled, never with a rate decaying towards zero.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, content_id, seeded_bytes, wait_until, Node};
use serde_json::{json, Value};

const SIZE: usize = 8_000_000;

/// `peershare ARGS` to completion, stdout and stderr captured (bounded by the node's own
/// `--timeout`, 60 s by default).
fn peershare(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run peershare")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn transfer(node: &Node, id: &str) -> Value {
    let r = node.call("transfer_status", json!({ "content_hash": id }));
    r["transfers"][0].clone()
}

#[test]
fn ls_shows_the_nodes_rate_eta_and_each_transfers_peers() {
    let t = tempfile::tempdir().expect("temp dir");
    let mut seeder = Node::start(
        &t.path().join("seeder"),
        &["--up-limit", "1MB/s", "--no-super-seed"],
    );
    let leecher = Node::start(&t.path().join("leecher"), &["--bootstrap", &seeder.addr()]);
    let file = t.path().join("loop.wav");
    std::fs::write(&file, seeded_bytes(SIZE, 15)).expect("write file");
    let added = seeder.call(
        "local_add_file",
        json!({ "filepath": file.display().to_string() }),
    );
    assert_eq!(added["status"], "success", "{added}");
    let id = added["file_hash"].as_str().expect("file_hash").to_string();
    let chunks = added["num_chunks"].as_u64().expect("num_chunks");
    let api = leecher.api.to_string();
    let seeder_api = seeder.api.to_string();

    // The download runs in the node; nobody diffs anything on this side.
    let req = json!({"type": "local_request_file", "payload": {
        "content_hash": id, "peers": [seeder.addr()] }});
    let leecher_api = leecher.api;
    std::thread::spawn(move || common::call_timeout(leecher_api, &req, Duration::from_secs(120)));
    assert!(
        wait_until(Duration::from_secs(60), || {
            let x = transfer(&leecher, &id);
            x["have_bytes"].as_u64().unwrap_or(0) >= 1_000_000
                && x["down_rate"].as_u64().unwrap_or(0) > 0
        }),
        "the download did not get going: {}",
        transfer(&leecher, &id)
    );

    // The node's rate: the seeder's 1 MB/s limit, give or take framing and a loaded machine.
    let x = transfer(&leecher, &id);
    let down = x["down_rate"].as_u64().unwrap_or(0);
    assert!(
        (300_000..=1_300_000).contains(&down),
        "down_rate {down}: {x}"
    );
    let up = transfer(&seeder, &id)["up_rate"].as_u64().unwrap_or(0);
    assert!((300_000..=1_300_000).contains(&up), "seeder up_rate {up}");

    // `ls`: the download's line has the rate and an ETA, in decimal units.
    let out = peershare(&["ls", "--api", &api]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = text(&out.stdout);
    let line = ls
        .lines()
        .find(|l| l.contains(&id) && l.contains('%'))
        .unwrap_or_else(|| panic!("no download line in:\n{ls}"));
    assert!(
        line.contains("KB/s eta") || line.contains("MB/s eta"),
        "{line}"
    );
    assert!(
        line.contains("1 peer ") && line.contains("loop.wav"),
        "{line}"
    );
    assert!(!line.contains("MiB"), "{line}");

    // The peers of the download, through the API: one, direct, outgoing, a seeder.
    let p = leecher.call("transfer_peers", json!({ "content_hash": id }));
    assert_eq!(p["status"], "success", "{p}");
    assert_eq!(p["chunks_total"], chunks, "{p}");
    let peers = p["peers"].as_array().cloned().unwrap_or_default();
    assert_eq!(peers.len(), 1, "{p}");
    let peer = &peers[0];
    assert_eq!(peer["addr"], seeder.addr(), "{p}");
    assert_eq!(peer["node_id"], seeder.node_id.as_str(), "{p}");
    assert_eq!(peer["direction"], "outgoing", "{p}");
    assert_eq!(peer["connection"], "direct", "{p}");
    assert_eq!(peer["state"], "active", "{p}");
    assert_eq!(peer["chunks"], chunks, "{p}");
    assert_eq!(peer["seeder"], true, "{p}");
    assert_eq!(peer["choking_us"], false, "{p}");
    assert!(peer["down_rate"].as_u64().unwrap_or(0) > 0, "{p}");

    // ... and of the share at the seeder: one incoming peer it uploads to.
    let s = seeder.call("transfer_peers", json!({ "content_hash": id }));
    let sp = &s["peers"][0];
    assert_eq!(sp["direction"], "incoming", "{s}");
    assert_eq!(sp["connection"], "direct", "{s}");
    assert_eq!(sp["interested"], true, "{s}");
    assert_eq!(sp["choked"], false, "{s}");
    assert_eq!(sp["choking_us"], Value::Null, "{s}");
    assert!(sp["up_rate"].as_u64().unwrap_or(0) > 0, "{s}");

    // `ls ID`: the same as a table; `ls -v`: every transfer with its peers.
    let out = peershare(&["ls", &id, "--api", &api]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let one = text(&out.stdout);
    let row = one
        .lines()
        .find(|l| l.contains(&seeder.addr()))
        .unwrap_or_else(|| panic!("no peer row in:\n{one}"));
    assert!(row.contains("direct") && row.contains(" out "), "{row}");
    assert!(
        row.contains(&format!("{chunks}/{chunks}")) && row.contains("seeder"),
        "{row}"
    );
    let out = peershare(&["ls", "-v", "--api", &seeder_api]);
    let all = text(&out.stdout);
    assert!(all.contains("up ") && all.contains(" in "), "{all}");

    // Readers that go away end every form of `ls` quietly.
    for args in [vec!["ls", &id], vec!["ls", "-v"], vec!["ls", &id, "--json"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut full = args.clone();
        full.extend(["--api", &api]);
        let out = Command::new(bin())
            .args(&full)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run ls");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{full:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{full:?}: {:?} {err}",
            out.status
        );
    }

    // An ID nobody has: searching, with no bar, no rate, no ETA.
    let nobody = content_id("nobody has this");
    let req = json!({"type": "local_request_file", "payload": { "content_hash": nobody }});
    std::thread::spawn(move || common::call_timeout(leecher_api, &req, Duration::from_secs(60)));
    assert!(wait_until(Duration::from_secs(20), || {
        let ls = text(&peershare(&["ls", "--api", &api]).stdout);
        ls.lines()
            .any(|l| l.contains(&nobody) && l.contains("searching the DHT for providers"))
    }));

    // The seeder dies: within the rate window the download is stalled, with no rate and
    // no ETA (not a rate decaying towards zero and an ETA of hours).
    seeder.kill();
    let died = Instant::now();
    let mut last = String::new();
    let stalled = wait_until(Duration::from_secs(30), || {
        last = text(&peershare(&["ls", "--api", &api]).stdout);
        last.lines()
            .any(|l| l.contains(&id) && l.contains("stalled") && !l.contains("eta"))
    });
    assert!(
        stalled,
        "not stalled {:?} after the seeder died:\n{last}",
        died.elapsed()
    );
    assert_eq!(transfer(&leecher, &id)["down_rate"], 0);
}

#[test]
fn transfer_peers_of_unknown_content_is_a_clear_error() {
    let t = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&t.path().join("n"), &[]);
    let id = content_id("not here");
    let r = node.call("transfer_peers", json!({ "content_hash": id }));
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("no transfer of {id} here")),
        "{r}"
    );
    let r = node.call("transfer_peers", json!({}));
    assert_eq!(
        r["message"], "missing field `content_hash` in payload of transfer_peers",
        "{r}"
    );
    let api = node.api.to_string();
    let out = peershare(&["ls", &id, "--api", &api]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no transfer of"),
        "{}",
        text(&out.stderr)
    );
    let out = peershare(&["ls", "abc", "--api", &api]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
