//! Many downloads at once from one peer (issue 21): two real nodes on loopback, one shares
//! 150 small files, the other asks for all of them at once by content ID alone (as
//! EchoChain does, file by file, providers from the DHT). Every download completes with the
//! right bytes, and neither node's per-source DHT rate limit drops a request: the
//! downloader's provider lookups and announces are coalesced (`node_core/search.rs`,
//! `Dht::provide_soon`), not sent as two requests per download within the same second.
//! Correctness only: no wall-clock assertion (`tools/bench/bench.py many-downloads` gives
//! the figures).

mod common;

use std::path::Path;
use std::time::Duration;

use common::Node;
use serde_json::{json, Value};

const FILES: usize = 150;
const SIZE: usize = 20 * 1024;
const LONG: Duration = Duration::from_secs(120);

fn dht_counter(node: &Node, name: &str) -> u64 {
    node.status()["dht"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no dht.{name}"))
}

fn add(node: &Node, path: &Path) -> String {
    let r = common::call_timeout(
        node.api,
        &json!({ "type": "local_add_file", "payload": { "filepath": path } }),
        LONG,
    )
    .unwrap_or_else(|e| panic!("local_add_file {}: {e}", path.display()));
    assert_eq!(r["status"], "success", "{r}");
    r["file_hash"].as_str().expect("file_hash").to_string()
}

#[test]
fn many_downloads_at_once_from_one_peer_trip_no_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&dir.path().join("a"), &[]);
    let b = Node::start(&dir.path().join("b"), &["--bootstrap", &a.addr()]);
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            b.status()["routing_table_size"].as_u64() >= Some(1)
        }),
        "B never had A in its routing table"
    );
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut files = Vec::new();
    for i in 0..FILES {
        // Distinct contents: the index in every byte's neighbourhood.
        let data: Vec<u8> = (0..SIZE)
            .map(|j| {
                (j as u32)
                    .wrapping_mul(2_654_435_761)
                    .rotate_left(i as u32 % 32) as u8
            })
            .chain((i as u32).to_be_bytes())
            .collect();
        let path = inputs.join(format!("sample-{i:03}.bin"));
        std::fs::write(&path, &data).unwrap();
        files.push((add(&a, &path), data));
    }
    // The adds' own announces are A's; let the limiter's buckets refill before counting.
    std::thread::sleep(Duration::from_secs(3));
    let limited = [
        dht_counter(&a, "rate_limited"),
        dht_counter(&b, "rate_limited"),
    ];
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let handles: Vec<_> = files
        .iter()
        .map(|(id, _)| {
            let req = json!({ "type": "local_request_file",
                              "payload": { "content_hash": id, "output_dir": out } });
            let api = b.api;
            std::thread::spawn(move || common::call_timeout(api, &req, LONG))
        })
        .collect();
    for (h, (id, data)) in handles.into_iter().zip(&files) {
        let r: Value = h
            .join()
            .expect("request thread")
            .unwrap_or_else(|e| panic!("local_request_file {id}: {e}"));
        assert_eq!(r["status"], "success", "{id}: {r}");
        let path = r["file_path"].as_str().expect("file_path");
        assert_eq!(&std::fs::read(path).unwrap(), data, "{path}");
    }
    // The downloads' announces go out within a second of their first chunk: wait for them.
    std::thread::sleep(Duration::from_secs(2));
    let now = [
        dht_counter(&a, "rate_limited"),
        dht_counter(&b, "rate_limited"),
    ];
    eprintln!(
        "rate_limited A {} -> {}, B {} -> {}; timeouts A {}, B {}; paced A {}, B {}",
        limited[0],
        now[0],
        limited[1],
        now[1],
        dht_counter(&a, "timeouts"),
        dht_counter(&b, "timeouts"),
        dht_counter(&a, "requests_paced"),
        dht_counter(&b, "requests_paced")
    );
    assert_eq!(now, limited, "requests dropped by a DHT rate limit");
}
