//! The share index's store (`shares.db`, src/content/STATE.md section 2) with real nodes: an
//! add the API replied to survives a SIGKILL at any moment; a file changed while the node
//! was down stops being shared after the restart; a damaged store stops the node with an
//! error that says what to do, and is left as it was.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Node};
use serde_json::{json, Value};

fn listed(node: &Node) -> Vec<String> {
    let r = node.call("local_list_content", json!({}));
    r["content_hashes"]
        .as_array()
        .expect("content_hashes")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_replied_add_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    fs::create_dir_all(&files).unwrap();
    let n = 300;
    for i in 0..n {
        fs::write(
            files.join(format!("f{i}")),
            format!("small file number {i}"),
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, &[]);
    // One kept-open connection, every request written at once (newline-delimited): the
    // node works through them while it is killed.
    let mut s = TcpStream::connect(node.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reqs = String::new();
    for i in 0..n {
        let p = files.join(format!("f{i}"));
        reqs.push_str(&json!({"type": "local_add_file", "payload": {"filepath": p}}).to_string());
        reqs.push('\n');
    }
    s.write_all(reqs.as_bytes()).unwrap();
    let mut replied = Vec::new();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..40 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], "success", "{v}");
        replied.push(v["file_hash"].as_str().unwrap().to_owned());
    }
    node.kill();
    // Whatever was replied before the kill, and possibly more, is there after a restart.
    let node = Node::start(&data, &[]);
    let after = listed(&node);
    for h in &replied {
        assert!(after.contains(h), "{h} was replied to but is lost");
    }
    assert!(after.len() >= replied.len() && after.len() <= n);
    assert!(
        !data.join("manifests").exists(),
        "no folder of manifest files"
    );
    assert!(data.join("shares.db").exists());
}

#[test]
fn a_file_changed_while_the_node_was_down_is_no_longer_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keep = tmp.path().join("keep.bin");
    let change = tmp.path().join("change.bin");
    let gone = tmp.path().join("gone.bin");
    for p in [&keep, &change, &gone] {
        fs::write(p, format!("contents of {}", p.display())).unwrap();
    }
    let mut node = Node::start(&data, &[]);
    let id = |p: &std::path::Path| {
        let r = node.call("local_add_file", json!({"filepath": p}));
        r["file_hash"].as_str().unwrap().to_owned()
    };
    let (k, c, g) = (id(&keep), id(&change), id(&gone));
    node.terminate();
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&change, b"something else entirely").unwrap();
    fs::remove_file(&gone).unwrap();
    let node = Node::start(&data, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let l = listed(&node);
            !l.contains(&c) && !l.contains(&g)
        }),
        "the changed and the deleted file are still listed: {:?}",
        listed(&node)
    );
    assert_eq!(listed(&node), vec![k]);
}

#[test]
fn a_damaged_store_stops_the_node_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let db = data.join("shares.db");
    let junk = b"this is not an SQLite database, but it was once a library".repeat(100);
    fs::write(&db, &junk).unwrap();
    let out = Command::new(common::bin())
        .args(["run", "--data-dir"])
        .arg(&data)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--api-port",
            "0",
            "--no-nat",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shares.db") && err.contains("is damaged") && err.contains("Move it away"),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), junk, "left as it was");
}
