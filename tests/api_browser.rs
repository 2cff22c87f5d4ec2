//! A web page must not be able to drive the node through the user's browser. Browsers send
//! "simple" requests (a POST with a `text/plain` or form body, a GET) to any address without
//! a CORS preflight, so a page could aim one at `127.0.0.1:8002` with a JSON command as its
//! body. These tests send the bytes such requests put on the wire to a real node and check
//! that nothing is done: no file shared, no folder created, no download started, and an
//! HTTP error comes back (api.md section 2.2).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Node;
use serde_json::json;

/// Writes `parts` one after another (a pause between them, so they travel as separate
/// segments), then reads until the node closes the connection.
fn send_parts(node: &Node, parts: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(node.api).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The node may already have closed after the first part: later writes can fail.
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A browser's POST of `body` with content type `ctype`, as Chromium writes it for
/// `fetch(url, {method: 'POST', body})` from a page at `origin`.
fn browser_post(path: &str, ctype: &str, origin: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8002\r\nConnection: keep-alive\r\n\
         Content-Length: {}\r\nsec-ch-ua-platform: \"Linux\"\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36\r\n\
         Content-Type: {ctype}\r\nAccept: */*\r\nOrigin: {origin}\r\n\
         Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: empty\r\n\
         Referer: {origin}/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
         Accept-Language: en-US,en;q=0.9\r\n\r\n{body}",
        body.len()
    )
}

fn assert_http_refusal(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(
        text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{what}: {text:?}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("access-control-allow"),
        "{what}: {text}"
    );
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
    assert_eq!(v["status"], "error", "{what}: {v}");
    assert!(
        v["message"].as_str().unwrap().contains("not HTTP"),
        "{what}: {v}"
    );
}

#[test]
fn browser_requests_cannot_drive_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), &[]);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"private key material").unwrap();
    let target = dir.path().join("target-folder");
    let add = json!({"type": "local_add_file", "payload": {"filepath": secret}}).to_string();
    let fetch = json!({"type": "local_request_file",
        "payload": {"content_hash": common::content_id("evil"), "output_dir": target}})
    .to_string();
    let evil = "http://evil.example";
    let mut refused = 0;

    // fetch() with a string body: text/plain, no preflight.
    for body in [&add, &fetch] {
        let req = browser_post("/", "text/plain;charset=UTF-8", evil, body);
        assert_http_refusal(&send_parts(&node, &[req.as_bytes()]), "text/plain POST");
        refused += 1;
    }
    // A form posted by a page (urlencoded and multipart): the JSON in the body as is.
    let req = browser_post(
        "/",
        "application/x-www-form-urlencoded",
        evil,
        &format!("{add}\n"),
    );
    assert_http_refusal(&send_parts(&node, &[req.as_bytes()]), "form POST");
    refused += 1;
    let multipart = format!(
        "------b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n{add}\r\n------b--\r\n"
    );
    let req = browser_post("/", "multipart/form-data; boundary=----b", evil, &multipart);
    assert_http_refusal(&send_parts(&node, &[req.as_bytes()]), "multipart POST");
    refused += 1;
    // An <img> or navigation: GET with the command in the query, then a body anyway.
    let get = format!("GET /?{add} HTTP/1.1\r\nHost: 127.0.0.1:8002\r\n\r\n{add}");
    assert_http_refusal(&send_parts(&node, &[get.as_bytes()]), "GET");
    refused += 1;
    // Split across segments: the headers alone first, the body later; and the request line
    // cut inside its method (refused at the first byte, with the JSON error).
    let req = browser_post("/", "text/plain", evil, &add);
    let (head, body) = req.split_at(req.find("\r\n\r\n").unwrap() + 4);
    assert_http_refusal(
        &send_parts(&node, &[head.as_bytes(), body.as_bytes()]),
        "split POST",
    );
    refused += 1;
    let out = send_parts(&node, &[b"PO", &req.as_bytes()[2..]]);
    let line = String::from_utf8_lossy(&out);
    assert!(
        line.contains("must be a JSON object starting with `{`"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    refused += 1;
    // Not HTTP at all: a bad line and then a valid request on the same connection. The
    // request is never run (only one reply, the error, comes back).
    let out = send_parts(&node, &[format!("hello\n{add}\n").as_bytes()]);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("found `h`"), "{text}");
    refused += 1;

    // Nothing happened: nothing shared, no folder, no download.
    let listed = node.call("local_list_content", json!({}));
    assert_eq!(listed["content_hashes"], json!([]), "{listed}");
    assert!(
        !target.exists(),
        "the page made the node create {}",
        target.display()
    );
    let transfers = node.call("transfer_status", json!({}));
    assert_eq!(transfers["status"], "success", "{transfers}");
    assert!(
        !transfers.to_string().contains(&common::content_id("evil")),
        "{transfers}"
    );
    // Every refusal counted, and the node still serves real clients.
    let status = node.status();
    assert_eq!(status["api_refused"], refused, "{status}");
    let added = node.call("local_add_file", json!({"filepath": secret}));
    assert_eq!(added["status"], "success", "{added}");
}

/// Paths (api.md section 2.4): a relative `output_dir` is resolved against the node's working
/// directory, and what comes back and is kept is the absolute, resolved path.
#[test]
fn relative_output_dir_comes_back_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    let a = Node::start(&dir.path().join("a"), &[]);
    let b = common::Node::start_in(&work, &dir.path().join("b"), &["--bootstrap", &a.addr()]);
    let file = dir.path().join("f.bin");
    std::fs::write(&file, common::seeded_bytes(100_000, 7)).unwrap();
    let added = a.call("local_add_file", json!({"filepath": file}));
    let id = added["file_hash"].as_str().unwrap().to_owned();
    let got = b
        .call_timeout(
            "local_request_file",
            json!({"content_hash": id, "output_dir": "sub/../out", "peers": [a.addr()]}),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(got["status"], "success", "{got}");
    let path = std::path::PathBuf::from(got["file_path"].as_str().unwrap());
    assert!(path.is_absolute(), "{got}");
    let expected = std::fs::canonicalize(work.join("out"))
        .unwrap()
        .join("f.bin");
    assert_eq!(path, expected, "{got}");
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&file).unwrap());
}
