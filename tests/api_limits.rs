//! The API's defences against clients that hold resources: a request that is never
//! finished, more connections than the node keeps, and clients outside loopback (token).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Node;
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};

fn read_reply(s: &mut TcpStream) -> Value {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) => panic!(
                "reading a reply: {e} (got {:?})",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    serde_json::from_slice(&buf)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&buf)))
}

/// A client that starts a request and stops sending gets an error once the deadline passes,
/// and the connection is closed; other clients are served meanwhile.
#[test]
fn an_unfinished_request_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &["--api-request-timeout", "1s"]);
    let mut slow = TcpStream::connect(n.api).unwrap();
    slow.write_all(br#"{"type": "status", "payload": {"#)
        .unwrap();
    let t0 = Instant::now();
    // Served while the slow one waits.
    assert_eq!(n.call("status", json!({}))["status"], "success");
    let v = read_reply(&mut slow);
    assert_eq!(v["status"], "error");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("not finished within 1s") && msg.contains("31 bytes"),
        "{msg}"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "not before the deadline"
    );
    // Then closed: EOF (the lingering close has shut our read side's peer down).
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(slow.read_to_end(&mut rest).unwrap(), 0);

    // A client that sends a request byte by byte, slower than... nothing: each complete
    // request is answered, and a kept-open idle connection is not timed out.
    let mut s = TcpStream::connect(n.api).unwrap();
    for b in br#"{"type":"local_list_content"}"# {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_reply(&mut s)["status"], "success");
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(br#"{"type":"status"}"#).unwrap();
    assert_eq!(read_reply(&mut s)["status"], "success");
}

/// With every connection slot taken by idle clients, a new client is still served: the
/// longest-idle connection is closed to make room.
#[test]
fn idle_connections_make_room_for_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let mut idle: Vec<TcpStream> = (0..1024)
        .map(|_| TcpStream::connect(n.api).unwrap())
        .collect();
    // Make sure the node has accepted them all (status reports its API connections; at
    // capacity, the status request's own connection took the slot of an idle one).
    assert!(common::wait_until(Duration::from_secs(20), || {
        n.status()["api_connections"].as_u64().unwrap_or(0) >= 1023
    }));
    for _ in 0..5 {
        assert_eq!(n.call("status", json!({}))["status"], "success");
    }
    // The oldest idle ones were closed: reading them gives EOF.
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(first.read(&mut b).unwrap(), 0);
}

/// A non-loopback address of this machine, if it has one (no packet is sent).
fn outside_ip() -> Option<IpAddr> {
    let u = UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.1:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Outside loopback the API needs a token: without one the node refuses to start; with one,
/// clients outside loopback must send it, loopback clients need not.
#[test]
fn api_outside_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .args([
            "--port",
            "0",
            "--api-port",
            "0",
            "--api-listen",
            "0.0.0.0",
            "-q",
        ])
        .env_remove("PEERSHARE_API_TOKEN")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");

    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = Command::new(common::bin())
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .args(["--port", "0", "--api-port", "0", "--api-token-file"])
        .arg(&short)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));

    let Some(ip) = outside_ip() else {
        println!("SKIPPED the remote-client part: this machine has no non-loopback address");
        return;
    };
    let token = "0123456789abcdef0123";
    let tf = dir.path().join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    let n = Node::start(
        &dir.path().join("node"),
        &[
            "--api-listen",
            "0.0.0.0",
            "--api-token-file",
            tf.to_str().unwrap(),
        ],
    );
    let remote = SocketAddr::new(ip, n.api.port());
    // In clear from another machine: refused before anything is read, the right token
    // included (it would have crossed the network readable).
    let v = common::call(
        remote,
        &json!({"type": "status", "payload": {}, "token": token}),
    );
    assert_eq!(v["status"], "error");
    assert!(v["message"].as_str().unwrap().contains("needs TLS"), "{v}");
    // A broken TLS record: that connection ends (with an alert), the node keeps serving.
    let mut s = TcpStream::connect(remote).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello, not a ClientHello")
        .unwrap();
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(
        r.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionReset,
            |_| true
        ),
        "the node did not close the connection: {r:?}"
    );
    assert!(rest.len() < 64, "{rest:?}");
    // Over TLS, trusting the certificate by the fingerprint the node printed: the CLI's
    // client, as a user on another machine runs it.
    let fp = n.api_tls.clone().expect("an api_tls: line in the banner");
    let fp_file = peershare::api::tls::fingerprint_of(
        &rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("node/api-tls.crt"))
            .unwrap(),
    );
    assert_eq!(fp, fp_file);
    let cli = |fp: &str, token: Option<&str>| {
        let mut c = Command::new(common::bin());
        c.args(["status", "--json", "--api", &remote.to_string()])
            .env("PEERSHARE_API_FINGERPRINT", fp)
            .env_remove("PEERSHARE_API_TOKEN");
        if let Some(t) = token {
            c.env("PEERSHARE_API_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, err) = cli(&fp, Some(token));
    assert!(out.contains("\"status\":\"success\""), "{out} {err}");
    let (out, err) = cli(&fp, None);
    assert!(format!("{out}{err}").contains("API needs a"), "{out} {err}");
    let (out, err) = cli(&fp, Some("wrong-token-0000000"));
    assert!(format!("{out}{err}").contains("wrong token"), "{out} {err}");
    // Another certificate (a man in the middle's): the client hangs up, nothing is sent.
    let (out, err) = cli(&format!("{}AB", "AB:".repeat(31)), Some(token));
    assert!(err.contains("not the AB:AB"), "{out} {err}");
    // Loopback clients (EchoChain's) need no token.
    let local = SocketAddr::from(([127, 0, 0, 1], n.api.port()));
    assert_eq!(
        common::call(local, &json!({"type": "status"}))["status"],
        "success"
    );
}
