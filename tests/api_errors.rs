//! Bad input on the API and the DHT port gets a clear error or is dropped and counted, and
//! the node keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::Node;
use serde_json::{json, Value};

fn raw(node: &Node, bytes: &[u8]) -> Vec<Value> {
    let mut s = TcpStream::connect(node.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    // Half-close, as `nc -N` does: every reply must still arrive.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn api_errors_are_clear_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let cases: Vec<(&[u8], &str)> =
        vec![
        (br#"{"type":"what"}"#, "Unknown command"),
        (
            br#"{"type":"local_announce_content","payload":{}}"#,
            "missing field `content_hash`",
        ),
        (
            br#"{"type":"local_announce_content","payload":{"content_hash":5}}"#,
            "must be a string",
        ),
        (
            br#"{"type":"local_announce_content","payload":{"content_hash":"abc"}}"#,
            "64 hex characters",
        ),
        (
            br#"{"type":"local_request_content_info","payload":{"content_hash":"zz"}}"#,
            "64 hex characters",
        ),
        (b"{\"type\":\"status\", \"x\": \"\xff\xfe\"}", "UTF-8"),
        (br#"{"type": 7}"#, "type"),
        (b"[1,2,3]\n", "JSON object"),
        (
            br#"{"type":"local_add_file","payload":{"filepath":"/nonexistent/peershare/x.wav"}}"#,
            "cannot add file",
        ),
        (br#"{"type":"local_add_file","payload":{"filepath":"/"}}"#, "cannot add file"),
        (br#"{"type":"local_add_file","payload":{"filepath":""}}"#, "non-empty path"),
        (
            br#"{"type":"local_request_file","payload":{"content_hash":"00"}}"#,
            "64 hex characters",
        ),
        (
            br#"{"type":"local_register_file_on_chain","payload":{}}"#,
            "missing field `file_hash`",
        ),
    ];
    for (req, want) in cases {
        let replies = raw(&n, req);
        assert_eq!(replies.len(), 1, "{}", String::from_utf8_lossy(req));
        assert_eq!(replies[0]["status"], "error");
        let msg = replies[0]["message"].as_str().unwrap();
        assert!(
            msg.contains(want),
            "{} -> {msg}",
            String::from_utf8_lossy(req)
        );
    }
    // Oversized: an error (or a close), never a crash.
    let mut big = b"{\"type\":\"status\",\"pad\":\"".to_vec();
    big.resize(2 << 20, b'a');
    let mut s = TcpStream::connect(n.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&big);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    // The lingering close lets the error reply arrive even though the client was still sending.
    let first = out.split(|b| *b == b'\n').next().unwrap();
    let v: Value = serde_json::from_slice(first)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&out)));
    assert_eq!(v["status"], "error");
    assert!(v["message"].as_str().unwrap().contains("1048576"), "{v}");
    // Deep nesting.
    let deep = format!(
        "{{\"type\":\"status\",\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let r = raw(&n, deep.as_bytes());
    assert_eq!(r[0]["status"], "error");

    // Garbage on the DHT port is counted and dropped.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    for g in [&b"hello"[..], b"PS\x01\x01", &[0xffu8; 1500][..], b""] {
        u.send_to(g, n.listen).unwrap();
    }
    assert!(common::wait_until(Duration::from_secs(5), || n.status()
        ["dht"]["decode_errors"]
        .as_u64()
        == Some(4)));

    // Several requests in one write, newline-delimited, answered in order.
    let replies = raw(
        &n,
        b"{\"type\":\"status\"}\n{\"type\":\"local_list_content\"}\n{\"type\":\"nope\"}\n",
    );
    assert_eq!(replies.len(), 3);
    assert!(replies[0]["node_id"].is_string());
    assert!(replies[1]["content_hashes"].is_array());
    assert_eq!(replies[2]["message"], "Unknown command");

    // Still serving.
    assert_eq!(n.call("status", json!({}))["status"], "success");
}
