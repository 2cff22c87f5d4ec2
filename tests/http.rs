//! The node's HTTP side (protocol-spec/http.md) on a real node over real sockets: pages of
//! other sites are refused (Host: DNS rebinding; Origin: CSRF), the limits hold (oversized
//! heads, slow clients, 1,000 connections) with the node serving on, JSON API requests run
//! over POST /api, and `/metrics` passes `promtool check metrics`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::read_response;
use common::Node;
use serde_json::{json, Value};

/// Sends `raw` on a new connection and reads one response; the response as text.
fn send(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The node may refuse before reading everything: a failed write is its answer.
    let _ = s.write_all(raw);
    String::from_utf8_lossy(&read_response(&mut s)).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

fn post_api(addr: SocketAddr, extra: &str, body: &Value) -> String {
    let body = body.to_string();
    send(
        addr,
        format!(
            "POST /api HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn start(dir: &std::path::Path, extra: &[&str]) -> (Node, SocketAddr) {
    let node = Node::start(&dir.join("node"), extra);
    let http = node.http.expect("the node prints its `http:` address");
    (node, http)
}

/// `peershare run` prints the dashboard's address, and the page is there.
#[test]
fn run_prints_the_dashboard_address() {
    let dir = tempfile::tempdir().unwrap();
    let (node, http) = start(dir.path(), &[]);
    assert_eq!(node.dashboard, Some(format!("http://{http}/")));
    let r = get(http, "/");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("<title>PeerShare</title>"), "{r}");
}

/// The node still answers: a page over HTTP and a status over the API.
fn assert_serving(node: &Node, http: SocketAddr) {
    assert_eq!(status_of(&get(http, "/metrics")), 200);
    assert_eq!(node.status()["status"], "success");
}

#[test]
fn pages_of_other_sites_cannot_drive_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (node, http) = start(dir.path(), &[]);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"private key material").unwrap();
    let add = json!({"type": "local_add_file", "payload": {"filepath": secret}});
    let port = http.port();

    // CSRF: a page on another site posts to the node; the browser adds its Origin.
    for origin in [
        "http://evil.example",
        "null",
        &format!("https://127.0.0.1:{port}"),
    ] {
        let r = post_api(http, &format!("Origin: {origin}\r\n"), &add);
        assert_eq!(status_of(&r), 403, "{origin}: {r}");
        assert!(body_of(&r).contains("Origin"), "{r}");
    }
    let r = post_api(http, "Sec-Fetch-Site: cross-site\r\n", &add);
    assert_eq!(status_of(&r), 403, "{r}");
    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as Host.
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let r = send(
            http,
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&r), 403, "{host}: {r}");
        let body = add.to_string();
        let r = send(
            http,
            format!(
                "POST /api HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(status_of(&r), 403, "{host}: {r}");
    }
    let r = send(http, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&r), 403, "no Host: {r}");
    // Nothing was shared.
    let list = node.call("transfer_status", json!({}));
    assert_eq!(list["transfers"], json!([]), "{list}");

    // The node's own pages (same origin) may.
    let own = format!("Origin: http://{http}\r\n");
    let r = post_api(http, &own, &add);
    assert_eq!(status_of(&r), 200, "{r}");
    let reply: Value = serde_json::from_str(body_of(&r).trim()).unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    let r = post_api(
        http,
        &format!("Origin: http://localhost:{port}\r\n"),
        &json!({"type": "status", "payload": {}}),
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let list = node.call("transfer_status", json!({}));
    assert_eq!(list["transfers"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn the_token_rule_holds_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef0123\n").unwrap();
    // Without a token, the node refuses to open HTTP beyond loopback.
    let out = Command::new(common::bin())
        .args(["run", "--data-dir"])
        .arg(dir.path().join("a"))
        .args(["--port", "0", "--api-port", "0", "--http-port", "0"])
        .args(["--http-listen", "0.0.0.0", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP side") && err.contains("token"), "{err}");
    // With one it opens; loopback clients need none (the token rule of the API).
    let tf = token_file.display().to_string();
    let (_node, http) = start(
        dir.path(),
        &["--http-listen", "0.0.0.0", "--api-token-file", &tf],
    );
    let lo = SocketAddr::from(([127, 0, 0, 1], http.port()));
    assert_eq!(status_of(&get(lo, "/metrics")), 200);

    // Other machines speak HTTPS (http.md section 1): plain HTTP from one is refused before
    // its request is read, the right token included.
    let Some(ip) = common::outside_ip() else {
        println!("SKIPPED the remote-client part: this machine has no non-loopback address");
        return;
    };
    let remote = SocketAddr::new(ip, http.port());
    let plain = send(
        remote,
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {remote}\r\n\
             Authorization: Bearer 0123456789abcdef0123\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&plain), 403, "{plain}");
    assert!(plain.contains("speaks HTTPS"), "{plain}");
    // Over TLS, trusting the certificate by the fingerprint the node printed, with the token.
    let fp = _node
        .api_tls
        .clone()
        .expect("an api_tls: line in the banner");
    let tls_get = |token: &str| {
        let sock = TcpStream::connect(remote).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut s = peershare::api::tls_client::connect(sock, &fp).unwrap();
        s.write_all(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {remote}\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let r = tls_get("0123456789abcdef0123");
    assert_eq!(status_of(&r), 200, "{}", &r[..r.len().min(300)]);
    assert!(
        body_of(&r).contains("peershare_"),
        "{}",
        &r[..r.len().min(300)]
    );
    let r = tls_get("wrong-token-0000000");
    assert_eq!(status_of(&r), 401, "{}", &r[..r.len().min(300)]);
}

#[test]
fn oversized_heads_slow_clients_and_many_connections_leave_it_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (node, http) = start(dir.path(), &["--api-request-timeout", "1s"]);

    // A head past the limit: 431, and the connection closed.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: {http}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = send(http, big.as_bytes());
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(200)]);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    let r = send(
        http,
        format!("GET / HTTP/1.1\r\nHost: {http}\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(status_of(&r), 431, "{r}");
    let r = post_api(
        http,
        "",
        &json!({"type": "status", "pad": "x".repeat(2 << 20)}),
    );
    assert_eq!(status_of(&r), 413, "{}", &r[..r.len().min(200)]);
    assert_serving(&node, http);

    // A slow client (half a head, then nothing) gets 408 once the timeout passes, while
    // others are served.
    let mut slow = TcpStream::connect(http).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    assert_serving(&node, http);
    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(out.contains("not finished within 1s"), "{out}");

    // 1,000 connections that send nothing: the node keeps its slots bounded (the oldest
    // make room) and serves a new client.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(http).unwrap());
    }
    assert_serving(&node, http);
    let r = get(http, "/");
    assert_eq!(status_of(&r), 200, "{r}");
    let metrics = get(http, "/metrics");
    let open: f64 = body_of(&metrics)
        .lines()
        .find_map(|l| l.strip_prefix("peershare_http_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(open <= 256.0, "{open} connections held");
    drop(idle);
    assert_serving(&node, http);
}

#[test]
fn metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let (node, http) = start(dir.path(), &[]);
    // Some traffic first, so the counters are not all zero.
    let file = dir.path().join("a.bin");
    std::fs::write(&file, vec![7u8; 10_000]).unwrap();
    let r = node.call("local_add_file", json!({ "filepath": file }));
    assert_eq!(r["status"], "success", "{r}");
    let _ = get(http, "/nope");
    // Two errors: an unknown command over the API port, a bad payload over POST /api.
    let r = node.call("no_such_command", json!({}));
    assert_eq!(r["status"], "error", "{r}");
    let r = post_api(http, "", &json!({"type": "local_add_file", "payload": {}}));
    assert!(r.contains("\"status\":\"error\""), "{r}");
    let r = get(http, "/metrics");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    let text = body_of(&r);
    for name in [
        "peershare_wire_bytes_total{direction=\"sent\"}",
        "peershare_dht_datagrams_total{direction=\"received\"}",
        "peershare_dht_provider_records ",
        "peershare_dht_lookups_running ",
        "peershare_nat_reachability{state=",
        "peershare_contents{state=\"shared\"} 1",
        "peershare_contents{state=\"downloading\"} 0",
        "peershare_chunk_checks_total{result=\"failed\"} 0",
        "peershare_banned_peers 0",
        "peershare_transfer_peers 0",
        "peershare_http_responses_total{code=\"404\"} 1",
        "peershare_api_connections ",
        "peershare_dht_lookup_duration_seconds_bucket{le=\"+Inf\"}",
        "peershare_dht_lookups_total{kind=\"announce\"}",
        "peershare_api_requests_total{command=\"local_add_file\"} 2",
        "peershare_api_requests_total{command=\"status\"}",
        "peershare_api_requests_total{command=\"invalid\"} 1",
        "peershare_api_errors_total 2",
        "peershare_wire_connections{type=\"direct\"} 0",
        "peershare_wire_connections{type=\"relayed\"} 0",
    ] {
        assert!(text.contains(name), "no {name} in\n{text}");
    }
    let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("PEERSHARE_REQUIRE_PROMTOOL").is_none(),
            "promtool is required here (PEERSHARE_REQUIRE_PROMTOOL) but missing"
        );
        eprintln!("SKIPPED: promtool not installed (Debian package `prometheus`)");
        return;
    };
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn events_stream_the_status_each_second() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, http) = start(dir.path(), &[]);
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /events HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Two events: the stream goes on.
    while String::from_utf8_lossy(&got).matches("\n\n").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/event-stream\r\n"),
        "{text}"
    );
    let first = text
        .split("data: ")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let status: Value = serde_json::from_str(first).unwrap();
    assert_eq!(status["status"], "success", "{status}");
    assert!(status["bandwidth"]["limits"].is_object(), "{status}");
}

/// `GET /lookups` lists the last lookups hop by hop: a client's lookup on a node that knows
/// one other node shows the request to it, answered, with its round trip and what it named.
#[test]
fn lookups_show_each_request_hop_by_hop() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Node::start(&dir.path().join("seeder"), &[]);
    let (node, http) = start(dir.path(), &["--bootstrap", &seeder.addr()]);
    let file = dir.path().join("a.bin");
    std::fs::write(&file, vec![3u8; 5000]).unwrap();
    let r = seeder.call("local_add_file", json!({ "filepath": file }));
    assert_eq!(r["status"], "success", "{r}");
    let id = r["file_hash"].as_str().unwrap().to_string();
    let r = node.call("local_request_content_info", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    // The view is rebuilt as the node changes; a large library's is paced (net/view_pace.rs).
    let mut resp = String::new();
    common::wait_until(Duration::from_secs(5), || {
        resp = get(http, "/lookups");
        resp.contains(&format!("\"{id}\""))
    });
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("Content-Type: application/json"), "{resp}");
    let v: Value = serde_json::from_str(body_of(&resp)).unwrap();
    let lookup = v["lookups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "api" && l["target"] == id.as_str())
        .unwrap_or_else(|| panic!("no api lookup of {id} in {v}"));
    let asked = lookup["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["node"] == seeder.node_id.as_str())
        .unwrap_or_else(|| panic!("the seeder was not asked: {lookup}"));
    assert_eq!(asked["addr"], seeder.addr(), "{asked}");
    assert_eq!(asked["round"], 0, "{asked}");
    assert_eq!(asked["result"], "answered", "{asked}");
    assert!(asked["rtt_ms"].as_u64().is_some(), "{asked}");
    assert!(asked["closer"].as_u64().is_some(), "{asked}");
    // The record may be the asking node's own (the seeder announced it to its one neighbour).
    assert!(asked["providers"].as_u64().is_some(), "{asked}");
    assert!(lookup["answers"].as_u64().unwrap() >= 1, "{lookup}");
}

/// A lookup under way is on `GET /lookups` too, with its requests so far: a client's lookup
/// on a node whose one contact is stopped (SIGSTOP) shows the request to it waiting.
#[test]
fn a_running_lookup_shows_its_requests_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Node::start(&dir.path().join("seeder"), &[]);
    let (node, http) = start(dir.path(), &["--bootstrap", &seeder.addr()]);
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &seeder.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} failed");
    };
    // The node knows the seeder (its table holds it) before the seeder stops answering.
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            node.call("routing_table", json!({}))["contacts"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        }),
        "the node never took the seeder in"
    );
    signal("-STOP");
    let api = node.api;
    let mut seen = None;
    // A lookup through a silent contact runs about 4 s (a request, its retry); the view
    // that /lookups reads is made each second. Three tries, in case one ends unseen.
    for attempt in 0..3u8 {
        let target = format!("{:02x}", 0xa0 + attempt).repeat(32);
        let req =
            json!({"type": "local_request_content_info", "payload": {"content_hash": target}});
        let lookup =
            std::thread::spawn(move || common::call_timeout(api, &req, Duration::from_secs(60)));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while seen.is_none() && std::time::Instant::now() < until && !lookup.is_finished() {
            let v: Value = serde_json::from_str(body_of(&get(http, "/lookups"))).unwrap();
            seen = v["running"].as_array().and_then(|r| {
                r.iter()
                    .find(|l| l["kind"] == "api" && l["target"] == target.as_str())
                    .cloned()
            });
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = lookup.join();
        if seen.is_some() {
            break;
        }
    }
    signal("-CONT");
    let l = seen.expect("no running api lookup was ever listed under `running`");
    assert!(l["running_ms"].as_u64().is_some(), "{l}");
    assert!(l["query"].as_u64().is_some(), "{l}");
    let asked = l["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["node"] == seeder.node_id.as_str())
        .unwrap_or_else(|| panic!("the seeder was not asked: {l}"));
    assert_eq!(asked["result"], "waiting", "{l}");
    assert_eq!(l["answers"], 0, "{l}");
}

/// HTTP/1.1 persistent connections (http.md section 1): several requests on one connection,
/// pipelined ones answered in order, `Connection: close` honoured, at most 100 requests per
/// connection (the last response says close), a connection idle past 5 s closed, and one
/// whose next request does not finish in time answered 408 and closed.
#[test]
fn connections_are_kept_alive_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, http) = start(dir.path(), &[]);
    let req =
        |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: {http}\r\n{extra}\r\n");
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // One after the other, then two in one write (pipelined): each answered, in order.
    s.write_all(req("/metrics", "").as_bytes()).unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(
        r.contains("Connection: keep-alive\r\nKeep-Alive: timeout=5, max=99\r\n"),
        "{r}"
    );
    s.write_all((req("/nope", "") + &req("/app.css", "")).as_bytes())
        .unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert_eq!(status_of(&r), 404, "{r}");
    assert!(r.contains("max=98\r\n"), "{r}");
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("Content-Type: text/css"), "{r}");
    // The client asks to close: the response says so and the node closes.
    s.write_all(req("/metrics", "Connection: close\r\n").as_bytes())
        .unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert!(r.contains("Connection: close\r\n"), "{r}");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "not closed");

    // A hundred requests at most on one connection.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for i in 1..=100 {
        s.write_all(req("/app.css", "").as_bytes()).unwrap();
        let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
        assert_eq!(status_of(&r), 200, "request {i}: {r}");
        if i < 100 {
            assert!(
                r.contains(&format!("max={}\r\n", 100 - i)),
                "request {i}: {r}"
            );
        } else {
            assert!(r.contains("Connection: close\r\n"), "request {i}: {r}");
        }
    }
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "open after 100 requests"
    );

    // Idle: closed after 5 s without a request (read_to_end returns at the close).
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req("/app.css", "").as_bytes()).unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert_eq!(status_of(&r), 200, "{r}");
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "idle connection not closed"
    );
    // Refused requests close their connection (their framing is not to be trusted).
    let r = send(
        http,
        format!(
            "GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n{}",
            req("/metrics", "")
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains("Connection: close\r\n"), "{r}");

    // A kept connection whose next request does not finish in time: 408, closed.
    let (_quick, http) = start(&dir.path().join("quick"), &["--api-request-timeout", "1s"]);
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /app.css HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert!(r.contains("Connection: keep-alive\r\n"), "{r}");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let r = String::from_utf8_lossy(&read_response(&mut s)).into_owned();
    assert_eq!(status_of(&r), 408, "{r}");
    assert!(r.contains("Connection: close\r\n"), "{r}");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "not closed after 408");
}
