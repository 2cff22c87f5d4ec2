//! The local API as existing EchoChain clients use it: real client programs in Python,
//! Node.js, Go, C# and a netcat pipeline (`tests/clients/`), each written the way such clients
//! are written (one write of the JSON with no newline, then ONE read of at most 4096 bytes,
//! parsed as one object; netcat with a newline and a half-close), against real nodes.
//!
//! Every contract command of `protocol-spec/api.md` is run through every client with its
//! reply's field names checked, and every reply must fit in that single 4096-byte read.
//! The error cases run through the Python client; 200 Python-pattern clients run at once.
//!
//! A client whose toolchain is missing prints `SKIPPED <client>: <tool> not installed` (to the
//! terminal, uncaptured) and the others still run; with `PEERSHARE_REQUIRE_ALL_CLIENTS=1`
//! (set by `.ci/run`) a missing toolchain fails the test instead.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{seeded_bytes, wait_until, Node};
use serde_json::{json, Value};

/// The client programs.
const CLIENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
/// Bound on one client run (`local_request_file` blocks until a download is done).
const LIMIT: Duration = Duration::from_secs(150);
/// The single read of EchoChain's clients.
const READ_SIZE: usize = 4096;

const ALICE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                     abandon abandon about";
/// ALICE's owner address (protocol-spec/ledger.md, section 14).
const ALICE_ADDR: &str =
    "pse96b1c6b8769fdb0b34fbecfdf85c33b053cecad9517e1ab88cba614335775c1bfdf4e42";
const BOB: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

// ----- the client programs ---------------------------------------------------------------

/// One client program, ready to run.
struct Client {
    name: &'static str,
    program: String,
    args: Vec<String>,
    /// Reads the reply with one read of at most 4096 bytes (all but netcat, and Go's
    /// `line` mode).
    single_read: bool,
}

/// What a client printed.
struct Reply {
    /// The parsed reply.
    value: Value,
    /// How many bytes its single read returned (`received N bytes` on stderr).
    received: Option<usize>,
}

impl Client {
    fn command(&self, api: SocketAddr, request: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg(api.ip().to_string())
            .arg(api.port().to_string())
            .arg(request);
        if self.name == "go-line" {
            cmd.arg("line");
        }
        cmd
    }

    /// Runs the client with `request` (JSON text) and returns its parsed reply. Panics
    /// with everything the client printed if it fails.
    fn ask(&self, api: SocketAddr, request: &Value) -> Reply {
        let text = request.to_string();
        let out = run(self.command(api, &text), None, LIMIT);
        let what = format!("{} client, request {text}", self.name);
        assert!(
            out.ok,
            "{what}: failed\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        let reply = parse_output(&what, &out, self.single_read);
        if self.single_read {
            let n = reply
                .received
                .unwrap_or_else(|| panic!("{what}: no `received N bytes` in {}", out.stderr));
            assert!(
                n < READ_SIZE,
                "{what}: the reply took {n} bytes: it does not fit in one {READ_SIZE}-byte read"
            );
        }
        reply
    }
}

/// Parses a client's output: exactly one reply line (netcat prints every line the node
/// sent before closing; there must be exactly one).
fn parse_output(what: &str, out: &Output, single_read: bool) -> Reply {
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one reply line\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let value: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("{what}: printed reply is not JSON ({e}): {}", lines[0]));
    assert!(value.is_object(), "{what}: {value}");
    let received = out.stderr.lines().find_map(|l| {
        l.strip_prefix("received ")
            .and_then(|r| r.strip_suffix(" bytes"))
            .and_then(|n| n.parse().ok())
    });
    if !single_read {
        // netcat: the whole reply is what the node wrote, newline included.
        return Reply {
            value,
            received: Some(lines[0].len() + 1),
        };
    }
    Reply { value, received }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with `stdin` (or nothing) as its input, killing it after `limit`.
fn run(mut cmd: Command, stdin: Option<Vec<u8>>, limit: Duration) -> Output {
    let program = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let Some(status) = status else {
        panic!("{program}: no exit within {limit:?}\nstdout: {stdout}\nstderr: {stderr}");
    };
    Output {
        ok: status.success(),
        stdout,
        stderr,
    }
}

/// Whether `tool` runs at all.
fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reports a client that cannot run here: a line straight to the terminal (the test harness
/// does not capture it), or a failure where every client must run (CI sets
/// `PEERSHARE_REQUIRE_ALL_CLIENTS=1`).
fn skipped(client: &str, tool: &str) {
    let line = format!("SKIPPED {client}: {tool} not installed");
    if std::env::var("PEERSHARE_REQUIRE_ALL_CLIENTS").is_ok_and(|v| v == "1") {
        panic!("{line}, and PEERSHARE_REQUIRE_ALL_CLIENTS=1 requires every client");
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn clients_file(name: &str) -> String {
    format!("{CLIENTS_DIR}/{name}")
}

/// The Python client, which every machine has.
fn python() -> Client {
    assert!(
        have("python3", "--version"),
        "python3 is needed for the EchoChain client tests"
    );
    Client {
        name: "python",
        program: "python3".into(),
        args: vec![clients_file("echochain_client.py")],
        single_read: true,
    }
}

/// Every client whose toolchain is here; Go and C# are compiled into `build`.
fn all_clients(build: &Path) -> Vec<Client> {
    let mut out = vec![python()];
    if have("node", "--version") {
        out.push(Client {
            name: "node",
            program: "node".into(),
            args: vec![clients_file("client.js")],
            single_read: true,
        });
    } else {
        skipped("node", "node");
    }
    if have("go", "version") {
        // Offline, as root, on a fresh machine: every Go directory in the temp dir, no proxy.
        let exe = build.join("go-client");
        let mut cmd = Command::new("go");
        cmd.args(["build", "-o"])
            .arg(&exe)
            .arg(clients_file("client.go"))
            .current_dir(build)
            .env("GOCACHE", build.join("gocache"))
            .env("GOPATH", build.join("gopath"))
            .env("GOENV", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0");
        let o = run(cmd, None, Duration::from_secs(300));
        assert!(o.ok, "go build failed:\n{}\n{}", o.stdout, o.stderr);
        for (name, single_read) in [("go", true), ("go-line", false)] {
            out.push(Client {
                name,
                program: exe.display().to_string(),
                args: vec![],
                single_read,
            });
        }
    } else {
        skipped("go", "go");
    }
    match (have("mcs", "--version"), have("mono", "--version")) {
        (true, true) => {
            let exe = build.join("Client.exe");
            let mut cmd = Command::new("mcs");
            cmd.arg(format!("-out:{}", exe.display()))
                .arg(clients_file("Client.cs"));
            let o = run(cmd, None, Duration::from_secs(300));
            assert!(o.ok, "mcs failed:\n{}\n{}", o.stdout, o.stderr);
            out.push(Client {
                name: "csharp",
                program: "mono".into(),
                args: vec![exe.display().to_string()],
                single_read: true,
            });
        }
        (false, _) => skipped("csharp", "mcs"),
        (true, false) => skipped("csharp", "mono"),
    }
    // OpenBSD netcat has no --version; `nc -h` prints its usage and exits 0.
    if have("nc", "-h") {
        out.push(Client {
            name: "nc",
            program: "sh".into(),
            args: vec![clients_file("nc_client.sh")],
            single_read: false,
        });
    } else {
        skipped("nc", "nc (netcat-openbsd)");
    }
    out
}

// ----- helpers ---------------------------------------------------------------------------

fn req(kind: &str, payload: Value) -> Value {
    json!({ "type": kind, "payload": payload })
}

/// A request's bytes, compact.
fn bytes(kind: &str, payload: Value) -> Vec<u8> {
    req(kind, payload).to_string().into_bytes()
}

fn is_content_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort_unstable();
    k
}

/// A `peers` list of `"ip:port"` strings that a client can connect to.
fn assert_peer_list(what: &str, peers: &Value) -> Vec<SocketAddr> {
    let list = peers
        .as_array()
        .unwrap_or_else(|| panic!("{what}: `peers` is not a list: {peers}"));
    list.iter()
        .map(|p| {
            let s = p
                .as_str()
                .unwrap_or_else(|| panic!("{what}: peer {p} is not a string"));
            let a: SocketAddr = s
                .parse()
                .unwrap_or_else(|e| panic!("{what}: peer {s:?} is not \"ip:port\" ({e})"));
            assert!(
                !a.ip().is_unspecified() && a.port() != 0,
                "{what}: peer {s:?} is not an address anyone can connect to"
            );
            a
        })
        .collect()
}

fn address_of(phrase: &str) -> String {
    peershare::ledger::Mnemonic::new(phrase)
        .unwrap()
        .derive()
        .address()
        .to_string()
}

/// `local_add_file` through the harness; returns the content ID.
fn share(node: &Node, path: &Path, len: usize, seed: u64) -> String {
    std::fs::write(path, seeded_bytes(len, seed)).unwrap();
    let r = node
        .call_timeout(
            "local_add_file",
            json!({ "filepath": path }),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    r["file_hash"].as_str().unwrap().to_owned()
}

/// The providers `node` finds for `id` (empty on error).
fn providers(node: &Node, id: &str) -> Vec<String> {
    node.call("local_request_content_info", json!({ "content_hash": id }))["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A `local_request_file` on its own thread (it blocks until the download ends).
fn blocked_request(api: SocketAddr, id: &str) -> JoinHandle<Result<Value, String>> {
    let r = req("local_request_file", json!({ "content_hash": id }));
    std::thread::spawn(move || common::call_timeout(api, &r, Duration::from_secs(90)))
}

/// Whether `node` has a download of `id` in progress.
fn downloading(node: &Node, id: &str) -> bool {
    node.call("transfer_status", json!({ "content_hash": id }))["transfers"][0]["downloading"]
        == true
}

// ----- the tests -------------------------------------------------------------------------

/// Every client runs every contract command (and the extra ones) against a node `a` in a
/// two-node network, with the reply field names checked; every reply fits in one read.
#[test]
fn every_client_speaks_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = Node::start(&root.join("a"), &[]);
    let b = Node::start(&root.join("b"), &["--bootstrap", &a.addr()]);
    // b shares a file of three chunks; a finds b as its provider.
    let remote = root.join("remote sample.wav");
    let remote_id = share(&b, &remote, 600_000, 7);
    // ... and a folder (content.md section 10), which a downloads as one content.
    let remote_pack = root.join("remote pack");
    std::fs::create_dir_all(remote_pack.join("Kicks")).unwrap();
    std::fs::create_dir_all(remote_pack.join("Empty")).unwrap();
    std::fs::write(remote_pack.join("Kicks/kick.wav"), seeded_bytes(50_000, 8)).unwrap();
    std::fs::write(remote_pack.join("loop.wav"), seeded_bytes(400_000, 9)).unwrap();
    let r = b
        .call_timeout(
            "local_add_file",
            json!({ "filepath": remote_pack }),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(r["message"], "Folder added", "{r}");
    let remote_pack_id = r["file_hash"].as_str().unwrap().to_owned();
    for id in [&remote_id, &remote_pack_id] {
        assert!(
            wait_until(Duration::from_secs(30), || providers(&a, id)
                .contains(&b.addr())),
            "a never found b as the provider of {id}"
        );
    }
    let build = root.join("build");
    std::fs::create_dir_all(&build).unwrap();
    let clients = all_clients(&build);
    let names: Vec<&str> = clients.iter().map(|c| c.name).collect();
    println!("clients: {names:?}");
    let bob = address_of(BOB);
    assert_eq!(address_of(ALICE), ALICE_ADDR);

    // A real download, through the Python client (it blocks until the file is verified).
    let py = python();
    let out_dir = root.join("downloads");
    let r = py
        .ask(
            a.api,
            &req(
                "local_request_file",
                json!({ "content_hash": remote_id, "output_dir": out_dir }),
            ),
        )
        .value;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["message"], "File downloaded successfully", "{r}");
    assert_eq!(r["filename"], "remote sample.wav", "{r}");
    assert_eq!(r["content_hash"], remote_id.as_str(), "{r}");
    let got = PathBuf::from(r["file_path"].as_str().unwrap());
    assert_eq!(
        std::fs::canonicalize(got.parent().unwrap()).unwrap(),
        std::fs::canonicalize(&out_dir).unwrap(),
        "{r}"
    );
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&remote).unwrap());
    // The folder the same way: its path and name in the same fields, the tree rebuilt.
    let r = py
        .ask(
            a.api,
            &req(
                "local_request_file",
                json!({ "content_hash": remote_pack_id, "output_dir": out_dir }),
            ),
        )
        .value;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["message"], "File downloaded successfully", "{r}");
    assert_eq!(r["filename"], "remote pack", "{r}");
    let got = PathBuf::from(r["file_path"].as_str().unwrap());
    assert_eq!(got.file_name().unwrap(), "remote pack", "{r}");
    for f in ["Kicks/kick.wav", "loop.wav"] {
        assert!(std::fs::read(got.join(f)).unwrap() == std::fs::read(remote_pack.join(f)).unwrap());
    }
    assert!(got.join("Empty").is_dir());

    for (i, c) in clients.iter().enumerate() {
        let who = c.name;
        let ask = |r: Value| c.ask(a.api, &r).value;

        // local_add_file -> file_hash (plus filename, size, num_chunks).
        let name = format!("{who} sample.wav");
        let path = root.join(&name);
        std::fs::write(&path, seeded_bytes(300_000, 100 + i as u64)).unwrap();
        let r = ask(req("local_add_file", json!({ "filepath": path })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert!(is_content_id(&r["file_hash"]), "{who}: {r}");
        assert_eq!(
            keys(&r),
            [
                "file_hash",
                "filename",
                "message",
                "num_chunks",
                "size",
                "status"
            ],
            "{who}: {r}"
        );
        assert_eq!(r["filename"], name.as_str(), "{who}: {r}");
        assert_eq!(r["size"], 300_000, "{who}: {r}");
        assert_eq!(r["num_chunks"], 2, "{who}: {r}");
        let id = r["file_hash"].as_str().unwrap().to_owned();

        // local_add_file with a folder -> the same fields, plus num_files and skipped.
        let pack_name = format!("{who} pack");
        let pack = root.join(&pack_name);
        std::fs::create_dir_all(pack.join("Sub")).unwrap();
        std::fs::write(pack.join("a.wav"), seeded_bytes(20_000, 200 + i as u64)).unwrap();
        std::fs::write(pack.join("Sub/b.wav"), seeded_bytes(30_000, 300 + i as u64)).unwrap();
        std::os::unix::fs::symlink("/etc", pack.join("link")).unwrap();
        let r = ask(req("local_add_file", json!({ "filepath": pack })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(
            keys(&r),
            [
                "file_hash",
                "filename",
                "message",
                "num_chunks",
                "num_files",
                "size",
                "skipped",
                "status"
            ],
            "{who}: {r}"
        );
        assert_eq!(
            (&r["message"], &r["filename"], &r["size"], &r["num_files"]),
            (
                &json!("Folder added"),
                &json!(pack_name),
                &json!(50_000),
                &json!(2)
            ),
            "{who}: {r}"
        );
        assert_eq!(
            r["skipped"],
            json!(["link: a symbolic link (links are not followed)"]),
            "{who}: {r}"
        );
        let pack_id = r["file_hash"].as_str().unwrap().to_owned();

        // local_announce_content -> success.
        let r = ask(req("local_announce_content", json!({ "content_hash": id })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Content announced")),
            "{who}: {r}"
        );

        // local_request_content_info -> peers: "ip:port" strings.
        let r = ask(req(
            "local_request_content_info",
            json!({ "content_hash": remote_id }),
        ));
        assert_eq!(r["status"], "success", "{who}: {r}");
        let peers = assert_peer_list(who, &r["peers"]);
        assert!(peers.contains(&b.listen), "{who}: b missing from {r}");
        let r = ask(req(
            "local_request_content_info",
            json!({ "content_hash": id }),
        ));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert!(
            assert_peer_list(who, &r["peers"]).contains(&a.listen),
            "{who}: a does not find itself as the provider of what it announced: {r}"
        );
        // Content nobody has.
        let nobody = common::content_id(&format!("nobody has this {who}"));
        let r = ask(req(
            "local_request_content_info",
            json!({ "content_hash": nobody }),
        ));
        assert_eq!(r["status"], "error", "{who}: {r}");
        assert_eq!(r["message"], "Content not found in DHT", "{who}: {r}");

        // "all_available_content" -> available_content items.
        let r = ask(req(
            "local_request_content_info",
            json!({ "content_hash": "all_available_content" }),
        ));
        assert_eq!(r["status"], "success", "{who}: {r}");
        let items = r["available_content"].as_array().unwrap_or_else(|| {
            panic!("{who}: no available_content list: {r}");
        });
        for item in items {
            let folder = item["kind"] == "folder";
            let expected: &[&str] = if folder {
                &[
                    "content_id",
                    "filename",
                    "kind",
                    "num_chunks",
                    "num_files",
                    "peers",
                    "size",
                ]
            } else {
                &["content_id", "filename", "num_chunks", "peers", "size"]
            };
            assert_eq!(keys(item), expected, "{who}: {item}");
            assert!(is_content_id(&item["content_id"]), "{who}: {item}");
            assert!(
                item["size"].is_u64() && item["num_chunks"].is_u64(),
                "{who}: {item}"
            );
            assert!(
                assert_peer_list(who, &item["peers"]).contains(&a.listen),
                "{who}: {item}"
            );
        }
        let mine = items
            .iter()
            .find(|it| it["content_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{who}: {id} missing from {r}"));
        assert_eq!(mine["filename"], name.as_str());
        assert_eq!(mine["size"], 300_000);
        assert_eq!(mine["num_chunks"], 2);
        for shared in [&remote_id, &remote_pack_id] {
            assert!(
                items.iter().any(|it| it["content_id"] == shared.as_str()),
                "{who}: the downloaded file and folder are shared too: {r}"
            );
        }
        let folder = items
            .iter()
            .find(|it| it["content_id"] == pack_id.as_str())
            .unwrap_or_else(|| panic!("{who}: {pack_id} missing from {r}"));
        assert_eq!(
            (&folder["kind"], &folder["num_files"], &folder["filename"]),
            (&json!("folder"), &json!(2), &json!(pack_name)),
            "{who}: {folder}"
        );

        // local_list_content -> content_hashes.
        let r = ask(req("local_list_content", json!({})));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(keys(&r), ["content_hashes", "status"], "{who}: {r}");
        let hashes = r["content_hashes"].as_array().unwrap();
        assert!(hashes.iter().all(is_content_id), "{who}: {r}");
        for want in [&id, &remote_id, &pack_id, &remote_pack_id] {
            assert!(hashes.contains(&json!(want)), "{who}: {want} missing: {r}");
        }

        // local_request_file on content the node has -> "File already available locally".
        for (cid, fname) in [(&id, name.as_str()), (&remote_id, "remote sample.wav")] {
            let r = ask(req("local_request_file", json!({ "content_hash": cid })));
            assert_eq!(r["status"], "success", "{who}: {r}");
            assert_eq!(r["message"], "File already available locally", "{who}: {r}");
            assert_eq!(r["filename"], fname, "{who}: {r}");
            assert!(r["file_path"].is_string(), "{who}: {r}");
        }

        // local_register_file_on_chain -> owner_address.
        let r = ask(req(
            "local_register_file_on_chain",
            json!({ "file_hash": id, "owner_mnemonic": ALICE,
                    "metadata": {"title": name, "client": who, "bpm": 120} }),
        ));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(r["owner_address"], ALICE_ADDR, "{who}: {r}");
        assert_eq!(r["file_hash"], id.as_str(), "{who}: {r}");
        assert_eq!(r["already_registered"], false, "{who}: {r}");
        for k in ["message", "record", "record_hash", "registered_at"] {
            assert!(r.get(k).is_some(), "{who}: no `{k}` in {r}");
        }

        // local_verify_file_on_chain: by the owner, by anyone, by another owner.
        for owner in [json!(ALICE_ADDR), json!(null), json!("")] {
            let r = ask(req(
                "local_verify_file_on_chain",
                json!({ "file_hash": id, "owner_address": owner }),
            ));
            assert_eq!(r["status"], "success", "{who}: {r}");
            assert_eq!(r["verified"], true, "{who}: {r}");
            assert_eq!(r["owners"][0]["owner_address"], ALICE_ADDR, "{who}: {r}");
            assert_eq!(r["owners"][0]["metadata"]["client"], who, "{who}: {r}");
        }
        let r = ask(req(
            "local_verify_file_on_chain",
            json!({ "file_hash": id }),
        ));
        assert_eq!(r["verified"], true, "{who}: {r}");
        let r = ask(req(
            "local_verify_file_on_chain",
            json!({ "file_hash": id, "owner_address": bob }),
        ));
        assert_eq!(r["status"], "error", "{who}: {r}");
        assert_eq!(r["verified"], false, "{who}: {r}");
        assert_eq!(
            r["message"],
            format!("No valid registration of {id} by {bob}"),
            "{who}: {r}"
        );

        // Anything else -> "Unknown command".
        let r = ask(req("local_delete_everything", json!({})));
        assert_eq!(
            r,
            json!({"status": "error", "message": "Unknown command"}),
            "{who}"
        );

        // The extra commands.
        let r = ask(json!({ "type": "status" }));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(r["node_id"], a.node_id.as_str(), "{who}: {r}");
        for k in [
            "listen",
            "api",
            "external_addr",
            "uptime_secs",
            "routing_table_size",
            "provider_records",
            "provided",
            "running_lookups",
            "api_connections",
            "dht",
        ] {
            assert!(r.get(k).is_some(), "{who}: status has no `{k}`: {r}");
        }
        let r = ask(req("routing_table", json!({})));
        assert_eq!(r["node_id"], a.node_id.as_str(), "{who}: {r}");
        assert!(
            r["contacts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["node_id"] == b.node_id.as_str()
                    && c["addr"] == b.addr().as_str()
                    && c["bucket"].is_u64()
                    && c["last_seen_secs_ago"].is_u64()),
            "{who}: {r}"
        );
        let r = ask(req("transfer_status", json!({ "content_hash": remote_id })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        let t = &r["transfers"][0];
        assert_eq!(
            keys(t),
            [
                "chunks_have",
                "chunks_total",
                "complete",
                "content_hash",
                "down_rate",
                "downloading",
                "file_path",
                "has_manifest",
                "have_bytes",
                "name",
                "peers",
                "size",
                "up_rate"
            ],
            "{who}: {r}"
        );
        assert_eq!(t["complete"], true, "{who}: {r}");
        assert_eq!(t["downloading"], false, "{who}: {r}");
        let r = ask(req("transfer_peers", json!({ "content_hash": remote_id })));
        assert_eq!(
            keys(&r),
            [
                "banned",
                "chunks_total",
                "complete",
                "content_hash",
                "name",
                "peers",
                "status"
            ],
            "{who}: {r}"
        );
        let r = ask(req("ledger_verify", json!({})));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(r["records"], i as u64 + 1, "{who}: {r}");
        for k in ["backend", "head_hash", "files", "owners", "notes"] {
            assert!(r.get(k).is_some(), "{who}: ledger_verify has no `{k}`: {r}");
        }
        let r = ask(req("ledger_history", json!({ "file_hash": id })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(r["total"], 1, "{who}: {r}");
        assert_eq!(r["truncated"], false, "{who}: {r}");
        assert_eq!(r["records"][0]["owner_address"], ALICE_ADDR, "{who}: {r}");
        assert_eq!(r["records"][0]["file_hash"], id.as_str(), "{who}: {r}");

        // cancel_transfer: a download in progress (of content nobody has) is stopped, and
        // the request waiting for it is answered; then there is nothing left to cancel.
        let r = ask(req("cancel_transfer", json!({ "content_hash": id })));
        assert_eq!(r["status"], "error", "{who}: {r}");
        assert_eq!(
            r["message"],
            format!("no download of {id} in progress"),
            "{who}: {r}"
        );
        let waiting = blocked_request(a.api, &nobody);
        assert!(
            wait_until(Duration::from_secs(20), || downloading(&a, &nobody)),
            "{who}: the download of {nobody} never started"
        );
        let r = ask(req("cancel_transfer", json!({ "content_hash": nobody })));
        assert_eq!(r["status"], "success", "{who}: {r}");
        assert_eq!(r["message"], "Download cancelled", "{who}: {r}");
        assert_eq!(r["content_hash"], nobody.as_str(), "{who}: {r}");
        let w = waiting.join().unwrap().unwrap();
        assert_eq!(w["status"], "error", "{who}: {w}");
        assert_eq!(
            w["message"],
            format!("download of {nobody} cancelled"),
            "{who}: {w}"
        );
        let r = ask(req("cancel_transfer", json!({ "content_hash": nobody })));
        assert_eq!(r["status"], "error", "{who}: {r}");
    }
    // Every client had its turn against the same node, which still serves.
    assert_eq!(a.status()["status"], "success");
}

/// The `peers` hint of `local_request_file`: content that no DHT lists is fetched from the
/// peer named in the request.
#[test]
fn request_file_with_peer_hints() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&dir.path().join("a"), &[]);
    // c is on no network a knows: only the hint leads a to it.
    let c = Node::start(&dir.path().join("c"), &[]);
    let src = dir.path().join("hinted.wav");
    let id = share(&c, &src, 400_000, 3);
    let out = dir.path().join("out");
    let r = python()
        .ask(
            a.api,
            &req(
                "local_request_file",
                json!({ "content_hash": id, "output_dir": out, "peers": [c.addr()] }),
            ),
        )
        .value;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["message"], "File downloaded successfully", "{r}");
    assert_eq!(r["filename"], "hinted.wav", "{r}");
    assert!(std::fs::read(out.join("hinted.wav")).unwrap() == std::fs::read(&src).unwrap());
}

/// Bad requests through the EchoChain Python pattern: each gets one error reply, in the one
/// read, with a clear message; the node keeps serving.
#[test]
fn python_client_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &["--api-request-timeout", "3s"]);
    let py = python();
    // A download nobody can serve: answered after the node gives up searching (30 s).
    let unknown = common::content_id("python client: unknown content");
    let api = n.api;
    let no_provider = {
        let py_req = req("local_request_file", json!({ "content_hash": unknown }));
        std::thread::spawn(move || python().ask(api, &py_req).value)
    };

    let raw = |bytes: &[u8]| -> Value {
        let mut cmd = Command::new(&py.program);
        cmd.args(&py.args)
            .arg(n.api.ip().to_string())
            .arg(n.api.port().to_string())
            .arg("-");
        let out = run(cmd, Some(bytes.to_vec()), LIMIT);
        let what = format!(
            "python client, raw request {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
        assert!(out.ok, "{what}: {}\n{}", out.stdout, out.stderr);
        let reply = parse_output(&what, &out, true);
        assert!(
            reply.received.is_some_and(|r| r < READ_SIZE),
            "{what}: {}",
            out.stderr
        );
        reply.value
    };
    let error = |bytes: &[u8]| -> String {
        let v = raw(bytes);
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(keys(&v), ["message", "status"], "{v}");
        v["message"].as_str().unwrap().to_owned()
    };
    let hash = common::content_id("some content");
    let exact: Vec<(Vec<u8>, String)> = vec![
        // Not UTF-8.
        (
            b"{\"type\":\"status\",\"x\":\"\xff\xfe\"}".to_vec(),
            "request is not valid UTF-8".into(),
        ),
        // Not an object.
        (
            b"[1,2,3]".to_vec(),
            "a request must be a JSON object starting with `{`, found `[`".into(),
        ),
        // Brackets that do not match.
        (
            br#"{"type":"status","payload":{"a":[1}}"#.to_vec(),
            "malformed JSON: unbalanced `}` in request".into(),
        ),
        // Wrong types.
        (
            br#"{"type":7,"payload":{}}"#.to_vec(),
            "field `type` must be a string".into(),
        ),
        (
            br#"{"type":"local_announce_content","payload":{"content_hash":5}}"#.to_vec(),
            "field `content_hash` must be a string".into(),
        ),
        (
            br#"{"type":"local_announce_content","payload":"x"}"#.to_vec(),
            "field `payload` of local_announce_content must be a JSON object".into(),
        ),
        (
            br#"{"type":"local_add_file","payload":{"filepath":["a"]}}"#.to_vec(),
            "field `filepath` must be a string".into(),
        ),
        (
            bytes(
                "local_register_file_on_chain",
                json!({ "file_hash": hash, "owner_mnemonic": "a b", "metadata": "x" }),
            ),
            "metadata must be a JSON object (use {} for none), got a string".into(),
        ),
        (
            bytes(
                "local_request_file",
                json!({ "content_hash": hash, "peers": "x" }),
            ),
            "field `peers` must be a list of at most 50 \"ip:port\" strings".into(),
        ),
        (
            bytes(
                "local_request_file",
                json!({ "content_hash": hash, "peers": ["nowhere"] }),
            ),
            "field `peers` must be a list of \"ip:port\" strings".into(),
        ),
        // Missing fields.
        (
            br#"{"payload":{}}"#.to_vec(),
            "missing field `type` (the command name) in request".into(),
        ),
        (
            br#"{"type":"local_announce_content"}"#.to_vec(),
            "missing field `payload` in local_announce_content request (it needs `content_hash`)"
                .into(),
        ),
        (
            br#"{"type":"local_request_content_info","payload":{}}"#.to_vec(),
            "missing field `content_hash` in payload of local_request_content_info".into(),
        ),
        (
            br#"{"type":"local_add_file","payload":{}}"#.to_vec(),
            "missing field `filepath` in payload of local_add_file".into(),
        ),
        (
            bytes(
                "local_register_file_on_chain",
                json!({ "file_hash": hash, "metadata": {} }),
            ),
            "missing field `owner_mnemonic` in payload of local_register_file_on_chain".into(),
        ),
        (
            br#"{"type":"local_verify_file_on_chain","payload":{"owner_address":"x"}}"#.to_vec(),
            "missing field `file_hash` in payload of local_verify_file_on_chain".into(),
        ),
        // Bad values.
        (
            br#"{"type":"local_announce_content","payload":{"content_hash":"abc"}}"#.to_vec(),
            "content_hash must be 64 hex characters (an ID is 64 hex characters, got 3)".into(),
        ),
        (
            br#"{"type":"local_add_file","payload":{"filepath":""}}"#.to_vec(),
            "filepath must be a non-empty path without NUL bytes".into(),
        ),
        (
            bytes(
                "local_register_file_on_chain",
                json!({ "file_hash": hash, "owner_mnemonic": "a b", "metadata": {} }),
            ),
            format!(
                "Content {hash} is not known to this node: share it (local_add_file) or \
                 download it (local_request_file) before registering it"
            ),
        ),
        (
            br#"{"type":"no_such_command","payload":{}}"#.to_vec(),
            "Unknown command".into(),
        ),
    ];
    for (input, want) in &exact {
        assert_eq!(&error(input), want, "{}", String::from_utf8_lossy(input));
    }
    // Malformed JSON: the parser's own explanation after a stable prefix.
    let m = error(br#"{"type": }"#);
    assert!(m.starts_with("malformed JSON: "), "{m}");
    let m = error(br#"{"type":"status",}"#);
    assert!(m.starts_with("malformed JSON: "), "{m}");
    // A failed add says why.
    let m = error(br#"{"type":"local_add_file","payload":{"filepath":"/"}}"#);
    assert!(m.starts_with("cannot add file: "), "{m}");
    // owner_address that is not an address: the reply says so, with verified false.
    let v = raw(&bytes(
        "local_verify_file_on_chain",
        json!({ "file_hash": hash, "owner_address": "psnope" }),
    ));
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["verified"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("owner_address: "),
        "{v}"
    );

    // Size: exactly 1 MiB is served; one byte more is refused.
    let sized = |total: usize| -> Vec<u8> {
        let head = br#"{"type":"status","payload":{},"pad":""#;
        let mut v = head.to_vec();
        v.resize(total - 2, b'x');
        v.extend_from_slice(b"\"}");
        v
    };
    let v = raw(&sized(1 << 20));
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(
        error(&sized((1 << 20) + 1)),
        "request is larger than the 1048576-byte limit; closing the connection"
    );

    // Nesting: 64 levels are served; 65 are refused.
    let nested = |depth: usize| -> Vec<u8> {
        format!(
            r#"{{"type":"status","payload":{{}},"x":{}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
        .into_bytes()
    };
    assert_eq!(raw(&nested(64))["status"], "success");
    assert_eq!(
        error(&nested(65)),
        "request is nested deeper than 64 levels; closing the connection"
    );
    assert_eq!(
        error(&nested(10_000)),
        "request is nested deeper than 64 levels; closing the connection"
    );

    // A request that is never finished (and never closed) is answered after the timeout.
    let t0 = Instant::now();
    let unfinished = br#"{"type":"status","payload":{"#;
    assert_eq!(
        error(unfinished),
        format!(
            "request not finished within 3s ({} bytes of it received); closing the connection",
            unfinished.len()
        )
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "not before the deadline"
    );

    // The node is unharmed.
    assert_eq!(raw(br#"{"type":"status"}"#)["status"], "success");

    let v = no_provider.join().unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(
        v["message"],
        format!("no peer provides content {unknown} (searched the DHT for 30 s)")
    );
}

/// 200 EchoChain-pattern Python clients at once (threads, one connection each), mixing the
/// contract commands: every one is answered correctly, each in its single read.
#[test]
fn two_hundred_python_clients_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&dir.path().join("a"), &[]);
    let _b = Node::start(&dir.path().join("b"), &["--bootstrap", &a.addr()]);
    let id = share(&a, &dir.path().join("loop.wav"), 200_000, 11);
    let r = a.call("local_announce_content", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    let r = a.call(
        "local_register_file_on_chain",
        json!({ "file_hash": id, "owner_mnemonic": ALICE, "metadata": {} }),
    );
    assert_eq!(r["status"], "success", "{r}");
    assert!(
        wait_until(Duration::from_secs(30), || !providers(&a, &id).is_empty()),
        "{id} is not findable"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(clients_file("many_clients.py"))
        .arg(a.api.ip().to_string())
        .arg(a.api.port().to_string())
        .arg("200")
        .arg(&id)
        .arg(ALICE_ADDR);
    let out = run(cmd, None, Duration::from_secs(300));
    let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "many_clients.py printed no summary ({e})\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    });
    assert!(out.ok, "{summary:#}\n{}", out.stderr);
    assert_eq!(summary["ok"], 200, "{summary:#}");
    assert!(
        summary["max_reply_bytes"].as_u64().unwrap() < READ_SIZE as u64,
        "{summary}"
    );
    // And the node is still fine.
    assert_eq!(a.status()["status"], "success");
}

// ----- contract mismatches found earlier, now fixed --------------------------------------

/// With the default `--bind ::` (or `0.0.0.0`) and no external address learned yet, the node
/// once listed itself as `"[::]:PORT"`, an address nobody can connect to. It now gives the
/// address the kernel routes from (`net::socket::advertised_addr`).
#[test]
fn all_available_content_lists_a_reachable_address_with_the_default_bind() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(&dir.path().join("n"), &["--bind", "::"]);
    share(&n, &dir.path().join("x.wav"), 1000, 1);
    let r = python()
        .ask(
            n.api,
            &req(
                "local_request_content_info",
                json!({ "content_hash": "all_available_content" }),
            ),
        )
        .value;
    let items = r["available_content"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{r}");
    let peers = assert_peer_list("all_available_content", &items[0]["peers"]);
    // Listed to be dialled: the wire port answers there.
    assert_eq!(peers.len(), 1, "{r}");
    std::net::TcpStream::connect_timeout(&peers[0], Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("advertised {} does not accept connections: {e}", peers[0]));
}

/// A node alone once answered `local_request_content_info` about content it shares itself
/// with "Content not found in DHT" (no lookup returns a node's own record to it), although it
/// listed itself for the same content in `all_available_content`.
#[test]
fn a_lone_node_lists_itself_as_provider_of_its_own_content() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(&dir.path().join("n"), &[]);
    let id = share(&n, &dir.path().join("x.wav"), 1000, 2);
    let r = n.call("local_announce_content", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    let r = python()
        .ask(
            n.api,
            &req("local_request_content_info", json!({ "content_hash": id })),
        )
        .value;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(
        assert_peer_list("content info", &r["peers"]),
        vec![n.listen]
    );

    // With a second node up, the lookup also returns our record as the other node stores it:
    // we are still listed once.
    let b = Node::start(
        &dir.path().join("b"),
        &["--bootstrap", &n.listen.to_string()],
    );
    // b's API answers before n has verified b's address and taken it into its table.
    assert!(
        wait_until(Duration::from_secs(30), || n.status()["routing_table_size"]
            .as_u64()
            .unwrap_or(0)
            >= 1),
        "n never learned of b: {}",
        n.status()
    );
    let r = n.call("local_announce_content", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    assert!(r["stored_at"].as_u64().unwrap_or(0) >= 1, "{r}");
    let r = n.call("local_request_content_info", json!({ "content_hash": id }));
    assert_eq!(
        assert_peer_list("content info", &r["peers"]),
        vec![n.listen],
        "{r}"
    );
    // And the other node, which does not provide it, lists us.
    let r = b.call("local_request_content_info", json!({ "content_hash": id }));
    assert_eq!(
        assert_peer_list("content info", &r["peers"]),
        vec![n.listen],
        "{r}"
    );
}
