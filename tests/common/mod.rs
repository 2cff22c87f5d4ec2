//! Test harness: real `peershare` processes on loopback, driven through their real API.
#![allow(dead_code)]

pub mod capture;
pub mod cli;
pub mod http;
pub mod lab;
pub mod pypeer;
pub mod vectors;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running node process.
pub struct Node {
    pub child: Child,
    pub listen: SocketAddr,
    pub api: SocketAddr,
    /// The HTTP side (dashboard, /metrics), if on.
    pub http: Option<SocketAddr>,
    /// The dashboard's address as `peershare run` printed it (`dashboard: URL`).
    pub dashboard: Option<String>,
    pub node_id: String,
    /// The API certificate's fingerprint (`api_tls:` line), when the API listens beyond
    /// loopback.
    pub api_tls: Option<String>,
    pub data_dir: PathBuf,
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_peershare")
}

impl Node {
    /// Starts a node on 127.0.0.1 with free ports and waits until it prints `ready`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Node {
        Node::try_start(data_dir, extra)
            .unwrap_or_else(|| panic!("node in {} did not start", data_dir.display()))
    }

    /// [`Node::start`], but `None` if the node does not get ready (for instance because a
    /// `--port` given in `extra` is taken). `--bind` and `--port` in `extra` replace the
    /// defaults (127.0.0.1, a free port).
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Option<Node> {
        Node::try_start_in(None, data_dir, extra)
    }

    /// [`Node::start`] with `cwd` as the node's working directory.
    pub fn start_in(cwd: &Path, data_dir: &Path, extra: &[&str]) -> Node {
        Node::try_start_in(Some(cwd), data_dir, extra)
            .unwrap_or_else(|| panic!("node in {} did not start", data_dir.display()))
    }

    /// [`Node::try_start`] in working directory `cwd` (the test's own if `None`).
    pub fn try_start_in(cwd: Option<&Path>, data_dir: &Path, extra: &[&str]) -> Option<Node> {
        Node::try_start_with(cwd, data_dir, extra, None)
    }

    /// [`Node::start`] with the node's stderr (its log) going to `stderr`. The log level is
    /// the node's default (info) unless `extra` has `-q` or `-v`.
    pub fn start_logging_to(data_dir: &Path, extra: &[&str], stderr: Stdio) -> Node {
        Node::try_start_with(None, data_dir, extra, Some(stderr))
            .unwrap_or_else(|| panic!("node in {} did not start", data_dir.display()))
    }

    /// [`Node::try_start_in`] with the node's stderr going to `log`. With `None` it is
    /// inherited and the harness picks the log level (`-q`, or `-v` with
    /// PEERSHARE_TEST_VERBOSE); otherwise `extra` does (the default, info, if it says nothing).
    pub fn try_start_with(
        cwd: Option<&Path>,
        data_dir: &Path,
        extra: &[&str],
        log: Option<Stdio>,
    ) -> Option<Node> {
        Node::try_start_env(cwd, data_dir, extra, log, &[])
    }

    /// [`Node::try_start_with`] with more environment variables for the node.
    pub fn try_start_env(
        cwd: Option<&Path>,
        data_dir: &Path,
        extra: &[&str],
        log: Option<Stdio>,
        env: &[(&str, &Path)],
    ) -> Option<Node> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        if !extra.contains(&"--bind") {
            args.extend(["--bind".into(), "127.0.0.1".into()]);
        }
        if !extra.contains(&"--port") {
            args.extend(["--port".into(), "0".into()]);
        }
        // PEERSHARE_TEST_VERBOSE=1 shows the nodes' debug logs (when a test fails).
        let verbosity = if std::env::var_os("PEERSHARE_TEST_VERBOSE").is_some() {
            "-v"
        } else {
            "-q"
        };
        args.extend(["--api-port".into(), "0".into()]);
        // A free port each: nodes of parallel tests must not contend for the default one.
        if !extra.contains(&"--http-port") && !extra.contains(&"--no-http") {
            args.extend(["--http-port".into(), "0".into()]);
        }
        if log.is_none() {
            args.push(verbosity.into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(log.unwrap_or_else(Stdio::inherit))
            .spawn()
            .expect("spawn peershare");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ready = line == "ready";
                lines.push(line);
                if ready {
                    let _ = tx.send(lines.clone());
                }
            }
        });
        let Ok(lines) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        let field = |k: &str| -> String {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("no `{k}:` line in {lines:?}"))
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        };
        Some(Node {
            listen: field("listen").parse().unwrap(),
            api: field("api").parse().unwrap(),
            http: lines
                .iter()
                .find_map(|l| l.strip_prefix("http: "))
                .map(|a| a.parse().unwrap()),
            dashboard: lines
                .iter()
                .find_map(|l| l.strip_prefix("dashboard: "))
                .map(str::to_string),
            node_id: field("node_id"),
            api_tls: lines
                .iter()
                .find_map(|l| l.strip_prefix("api_tls: SHA-256 "))
                .and_then(|r| r.split(' ').next())
                .map(str::to_string),
            child,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The address other nodes use to reach this one.
    pub fn addr(&self) -> String {
        self.listen.to_string()
    }

    /// One API call the way EchoChain's Python client makes it: the JSON with no newline,
    /// the connection left open, the reply read until its newline.
    pub fn call(&self, kind: &str, payload: Value) -> Value {
        call(self.api, &json!({ "type": kind, "payload": payload }))
    }

    pub fn status(&self) -> Value {
        self.call("status", json!({}))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns how long it took.
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let t0 = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let st = self.child.wait().expect("wait");
        (t0.elapsed(), st)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request and reads one reply line.
pub fn call(api: SocketAddr, req: &Value) -> Value {
    let mut s = TcpStream::connect(api).expect("connect to API");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(req.to_string().as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = match s.read(&mut b) {
            Ok(n) => n,
            // A signal to the test process (a child exiting) is not the node's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read reply to {req}: {e}"),
        };
        assert!(n > 0, "connection closed before a reply to {req}");
        buf.extend_from_slice(&b[..n]);
        if buf.ends_with(b"\n") {
            break;
        }
    }
    serde_json::from_slice(&buf).unwrap_or_else(|e| {
        panic!(
            "reply is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// Polls `f` until it is true, up to `limit` (a bound on waiting, not a timing assertion).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A content ID for a test label.
pub fn content_id(label: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(label.as_bytes()))
}

/// Like [`call`], but with its own bound on waiting for the reply (for requests that block,
/// such as `local_request_file`); `Err` says what went wrong instead of panicking, so a
/// caller can tell "no reply yet" from a reply.
pub fn call_timeout(api: SocketAddr, req: &Value, limit: Duration) -> Result<Value, String> {
    let mut s = TcpStream::connect(api).map_err(|e| format!("connect to API: {e}"))?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.write_all(req.to_string().as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = match s.read(&mut b) {
            Ok(n) => n,
            // A signal to the test process (a child exiting) is not the node's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("no reply to {req} within {limit:?}: {e}")),
        };
        if n == 0 {
            return Err(format!("connection closed before a reply to {req}"));
        }
        buf.extend_from_slice(&b[..n]);
        if buf.ends_with(b"\n") {
            break;
        }
    }
    serde_json::from_slice(&buf).map_err(|e| {
        format!(
            "reply is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

impl Node {
    /// One API call with its own bound on waiting for the reply (see [`call_timeout`]).
    pub fn call_timeout(
        &self,
        kind: &str,
        payload: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        call_timeout(
            self.api,
            &json!({ "type": kind, "payload": payload }),
            limit,
        )
    }
}

/// `len` pseudo-random bytes from `seed`: the same seed always gives the same bytes.
pub fn seeded_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A seeder sharing `size` bytes at `limit` (slow enough to act during the download), and a
/// leecher that knows it through the DHT. Returns them, the ID and the bytes.
pub fn pair(
    dir: &Path,
    size: usize,
    limit: &str,
    leecher_args: &[&str],
) -> (Node, Node, String, Vec<u8>) {
    let seeder = Node::start(&dir.join("seeder"), &["--up-limit", limit]);
    let addr = seeder.addr();
    let mut args = vec!["--bootstrap", addr.as_str()];
    args.extend_from_slice(leecher_args);
    let leecher = Node::start(&dir.join("leecher"), &args);
    let data = seeded_bytes(size, size as u64);
    let file = dir.join("shared.bin");
    std::fs::write(&file, &data).unwrap();
    let r = seeder
        .call_timeout(
            "local_add_file",
            json!({ "filepath": file }),
            Duration::from_secs(120),
        )
        .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    let id = r["file_hash"].as_str().unwrap().to_string();
    let found = wait_until(Duration::from_secs(120), || {
        let r = leecher.call("local_request_content_info", json!({ "content_hash": id }));
        r["peers"].as_array().is_some_and(|p| !p.is_empty())
    });
    assert!(found, "the leecher never found the seeder's record");
    (seeder, leecher, id, data)
}

/// A wire connection, encrypted as every one is (protocol-spec/secure.md).
pub type Wire = peershare::net::secure_io::SecureStream<std::net::TcpStream>;

/// Session keys of a fresh identity.
pub fn fresh_keys() -> peershare::secure::LocalKeys {
    peershare::secure::LocalKeys::generate(peershare::identity::Identity::generate()).unwrap()
}

/// Dials `addr` as `keys`: the session is up when this returns (the handshake's own errors
/// are the `Err`).
pub fn wire_connect_as(
    addr: SocketAddr,
    keys: &peershare::secure::LocalKeys,
) -> std::io::Result<Wire> {
    let s = std::net::TcpStream::connect(addr)?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Wire::connect(s, keys, None)
}

/// Dials `addr` from a fresh identity; the session and the node ID it proved (the one its
/// HANDSHAKE frame must name).
pub fn wire_connect(addr: SocketAddr) -> (Wire, peershare::id::Id) {
    let keys = fresh_keys();
    let w =
        wire_connect_as(addr, &keys).unwrap_or_else(|e| panic!("secure session with {addr}: {e}"));
    (w, keys.node_id())
}

/// A non-loopback address of this machine, if it has one (no packet is sent): where a test
/// plays a client on another machine.
#[allow(dead_code)]
pub fn outside_ip() -> Option<std::net::IpAddr> {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.1:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
