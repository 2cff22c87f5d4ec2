//! `peershare run --trace` prints every DHT datagram and wire frame, sent and received,
//! decoded, one line each.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Node;
use serde_json::json;

#[test]
fn trace_shows_datagrams_and_frames_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Node::start(&dir.path().join("s"), &[]);
    let file = dir.path().join("sample.wav");
    std::fs::write(&file, common::seeded_bytes(300_000, 3)).unwrap();
    let r = seeder.call("local_add_file", json!({ "filepath": file }));
    let id = r["file_hash"].as_str().unwrap().to_string();

    let mut child = Command::new(common::bin())
        .args([
            "run",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--api-port",
            "0",
            "-q",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("l"))
        .args(["--bootstrap", &seeder.addr(), "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut api = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("api: ") {
            api = Some(a.parse().unwrap());
        }
        if line == "ready" {
            break;
        }
    }
    let api = api.unwrap();
    let out = dir.path().join("out");
    let r = common::call(
        api,
        &json!({"type": "local_request_file", "payload": {"content_hash": id, "output_dir": out}}),
    );
    assert_eq!(r["status"], "success", "{r}");
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("trace ")).collect();
    let seeder_addr = seeder.addr();
    let has = |dir: &str, proto: &str, what: &str| {
        lines.iter().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 5 && f[2] == dir && f[3] == proto && f[4] == seeder_addr && f[5] == what
        })
    };
    for (dir, proto, what) in [
        ("out", "udp", "PING"),
        ("in", "udp", "PONG"),
        ("out", "udp", "FIND_NODE"),
        ("in", "udp", "NODES"),
        ("out", "udp", "GET_PROVIDERS"),
        ("in", "udp", "PROVIDERS"),
        ("out", "tcp", "HANDSHAKE"),
        ("in", "tcp", "HANDSHAKE"),
        ("in", "tcp", "METADATA"),
        ("out", "tcp", "MANIFEST_REQUEST"),
        ("in", "tcp", "MANIFEST_DATA"),
        ("out", "tcp", "REQUEST"),
        ("in", "tcp", "PIECE"),
    ] {
        assert!(
            has(dir, proto, what),
            "no `{dir} {proto} {seeder_addr} {what}` line in:\n{err}"
        );
    }
    // The content ID appears decoded (shortened) in the handshake line.
    assert!(lines
        .iter()
        .any(|l| l.contains("HANDSHAKE") && l.contains(&format!("content={}", &id[..4]))));
    assert!(
        lines.iter().any(|l| l.contains("PIECE chunk=1 len=37856")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("MANIFEST_DATA") && l.contains("(a file's manifest)")),
        "{err}"
    );
}
