//! The `peershare` command line as a user meets it (issue 15): real nodes, real client
//! processes, real pipes. A closed pipe ends a client quietly (and never the node); logs in
//! a file carry no colour; a mistyped file, a malformed or silent bootstrap address and
//! relative paths are reported plainly; the Makefile and the demo find the binary wherever
//! cargo put it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use common::cli::{peershare, text, wait_bounded};
use common::{bin, wait_until, Node};
use serde_json::{json, Value};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A client that lost its reader ended quietly: no panic, no "failed printing", not the
/// panic exit status 101; it either finished or SIGPIPE ended it (as it ends git).
fn assert_ended_quietly(what: &str, status: ExitStatus, stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("failed printing"),
        "{what}: {stderr}"
    );
    assert_ne!(status.code(), Some(101), "{what}: {stderr}");
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{what}: {status:?} {stderr}"
    );
}

/// Shares `n` files with long names (so that `ls` prints far more than a pipe holds).
fn share_many(node: &Node, dir: &Path, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let p = dir.join(format!("{i:04}-{}.wav", "long-name-".repeat(18)));
        std::fs::write(&p, format!("sample {i}")).expect("write sample");
        let r = node.call(
            "local_add_file",
            json!({ "filepath": p.display().to_string() }),
        );
        assert_eq!(r["status"], "success", "{r}");
        ids.push(r["file_hash"].as_str().unwrap_or_default().to_string());
    }
    ids
}

#[test]
fn clients_end_quietly_when_their_reader_goes_away() {
    let t = tmp();
    let node = Node::start(&t.path().join("n"), &[]);
    let api = node.api.to_string();
    let files = t.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let ids = share_many(&node, &files, 300);

    // `peershare ls | head -1`: about 90 KB of output, more than a pipe holds, so the client
    // is still writing when its reader reads one line and goes.
    for round in 0..3 {
        let mut child = Command::new(bin())
            .args(["ls", "--api", &api])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ls");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read a line");
        assert_eq!(first.trim(), "shared (300):");
        let mut err = child.stderr.take().expect("stderr");
        let status = wait_bounded(child, "ls");
        let mut stderr = String::new();
        let _ = err.read_to_string(&mut stderr);
        assert_ended_quietly(&format!("ls | head -1, round {round}"), status, &stderr);
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "ls had more to write");
    }

    // Every client subcommand, its reader gone before it writes a byte.
    let file = files.join("one-more.wav");
    std::fs::write(&file, b"one more").unwrap();
    let file = file.display().to_string();
    let id = ids[0].as_str();
    let cases: Vec<Vec<&str>> = vec![
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["routes"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["add", &file],
        vec!["peers", id],
        vec!["announce", id],
        vec!["get", id],
        vec!["limit"],
        vec!["limit", "--up", "5MB/s"],
    ];
    for mut args in cases {
        args.extend(["--api", &api]);
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let child = Command::new(bin())
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client");
        let out = child_output(child, &format!("{args:?}"));
        assert_ended_quietly(&format!("{args:?}"), out.status, &text(&out.stderr));
    }
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(bin())
        .args(["decode", "50530100"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn decode");
    let out = child_output(child, "decode");
    assert_ended_quietly("decode", out.status, &text(&out.stderr));
    // The node is unharmed.
    assert_eq!(node.status()["status"], "success");
}

/// The exit status and stderr of a child whose stdout is not ours to read.
fn child_output(mut child: Child, what: &str) -> Output {
    let mut err = child.stderr.take().expect("stderr");
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(child, what);
    Output {
        status,
        stdout: Vec::new(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// The node keeps running when the reader of its log goes away: only clients die of SIGPIPE.
#[test]
fn a_node_outlives_a_closed_log_pipe() {
    let t = tmp();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    // Info level (the default): it logs at start, into the closed pipe.
    let node = Node::start_logging_to(&t.path().join("n"), &[], writer.into());
    let f = t.path().join("x.wav");
    std::fs::write(&f, b"logged").unwrap();
    let r = node.call(
        "local_add_file",
        json!({ "filepath": f.display().to_string() }),
    );
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(node.status()["status"], "success");
}

#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    let t = tmp();
    let log_path = t.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    // -v: debug lines too, each with its level (what simplelog colours on a terminal).
    let mut node = Node::start_logging_to(&t.path().join("n"), &["-v"], log.into());
    let f = t.path().join("kick.wav");
    std::fs::write(&f, b"kick").unwrap();
    let r = node.call(
        "local_add_file",
        json!({ "filepath": f.display().to_string() }),
    );
    assert_eq!(r["status"], "success", "{r}");
    let _ = node.terminate();
    let logged = std::fs::read(&log_path).expect("read log");
    assert!(
        text(&logged).contains("INFO") || text(&logged).contains("DEBUG"),
        "the node logged: {}",
        text(&logged)
    );
    assert!(
        !logged.contains(&0x1b),
        "ESC in the log: {:?}",
        text(&logged)
    );
}

#[test]
fn a_mistyped_file_is_named_plainly_and_a_vanished_one_as_vanished() {
    let t = tmp();
    let node = Node::start(&t.path().join("n"), &[]);
    let api = node.api.to_string();
    let cwd = std::fs::canonicalize(t.path()).unwrap();

    // Relative, with `.` and `..`: named absolute and clean.
    let out = peershare(Some(&cwd), &["add", "./sub/../nosuch.wav", "--api", &api]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("no such file: {}", cwd.join("nosuch.wav").display());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("moved or deleted"), "{err}");

    // The API says the same to any client.
    let r = node.call(
        "local_add_file",
        json!({ "filepath": cwd.join("nosuch.wav").display().to_string() }),
    );
    assert_eq!(r["message"], format!("cannot add file: {want}"), "{r}");

    // A file shared, then deleted: that is what the message says.
    let f = cwd.join("kick.wav");
    std::fs::write(&f, b"kick").unwrap();
    let out = peershare(Some(&cwd), &["add", "kick.wav", "--api", &api]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(&f).unwrap();
    let out = peershare(Some(&cwd), &["add", "kick.wav", "--api", &api]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{} no longer exists (moved or deleted?)",
            f.display()
        )),
        "{err}"
    );
}

#[test]
fn a_malformed_bootstrap_address_stops_the_node_at_start() {
    let t = tmp();
    for (addr, why) in [
        ("127.0.0.1", "no port"),
        ("::1", "brackets"),
        ("fe80::1:8001", "brackets"),
        ("127.0.0.1:99999", "not a port number"),
    ] {
        let data = t.path().join("n");
        let out = peershare(
            None,
            &[
                "run",
                "--data-dir",
                &data.display().to_string(),
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--api-port",
                "0",
                "--bootstrap",
                addr,
            ],
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{addr}: {err}");
        assert!(text(&out.stdout).is_empty(), "{addr} started a node");
        assert!(err.contains(why), "{addr}: {err}");
        assert!(
            err.contains("HOST:PORT") && err.contains("[2001:db8::7]:8001"),
            "{err}"
        );
    }
}

/// A UDP port on loopback that nobody listens on (bound, then freed).
fn dead_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("local addr").port()
}

#[test]
fn a_silent_bootstrap_address_is_warned_about_and_shown_in_status() {
    let t = tmp();
    let dead = format!("127.0.0.1:{}", dead_udp_port());
    let log_path = t.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let node = Node::start_logging_to(&t.path().join("n"), &["--bootstrap", &dead], log.into());
    let warning = format!("bootstrap: no answer from {dead}");
    let warned = wait_until(Duration::from_secs(90), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(&warning))
    });
    assert!(
        warned,
        "no warning; log: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    // The status view is republished at least twice a second: it may lag the log a little.
    let mut b = Value::Null;
    let counted = wait_until(Duration::from_secs(30), || {
        b = node.status()["bootstrap"].clone();
        b["unanswered"].as_u64().unwrap_or(0) >= 2
    });
    assert!(counted, "{b}");
    assert_eq!(b["addrs"], json!([dead]), "{b}");
    assert_eq!(b["answered"], false, "{b}");
    let out = peershare(None, &["status", "--api", &node.api.to_string()]);
    let human = text(&out.stdout);
    assert!(
        human.contains(&format!("bootstrap        {dead}: NO ANSWER yet")),
        "{human}"
    );

    // A bootstrap address that answers says so.
    let second = Node::start(&t.path().join("m"), &["--bootstrap", &node.addr()]);
    let answered = wait_until(Duration::from_secs(60), || {
        second.status()["bootstrap"]["answered"] == true
    });
    assert!(answered, "{}", second.status());
    let out = peershare(None, &["status", "--api", &second.api.to_string()]);
    let human = text(&out.stdout);
    assert!(
        human.contains(&format!("bootstrap        {}: answered", node.addr())),
        "{human}"
    );
    let out = peershare(None, &["status", "--api", &node.api.to_string()]);
    assert!(out.status.success());
}

#[test]
fn paths_are_shown_absolute_and_clean() {
    let t = tmp();
    let root = std::fs::canonicalize(t.path()).unwrap();
    let qs = root.join("qs");
    std::fs::create_dir_all(&qs).unwrap();
    let seeder = Node::start(&root.join("a"), &[]);
    let f = root.join("loop.wav");
    std::fs::write(&f, common::seeded_bytes(300_000, 5)).unwrap();
    let r = seeder.call(
        "local_add_file",
        json!({ "filepath": f.display().to_string() }),
    );
    let id = r["file_hash"].as_str().expect("file_hash").to_string();
    // Started in `qs` with a relative download folder full of `.` and `..`.
    let leecher = Node::start_in(
        &qs,
        &root.join("b"),
        &[
            "--bootstrap",
            &seeder.addr(),
            "--download-dir",
            "./x/./../downloads/.",
        ],
    );
    let api = leecher.api.to_string();
    let out = peershare(Some(&qs), &["get", &id, "--api", &api]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        qs.join("downloads/loop.wav").display().to_string()
    );
    // The command line's own relative paths (`-o`), and the node's replies.
    let out = peershare(
        Some(&qs),
        &["get", &id, "-o", "./y/../z/.", "--api", &api, "--json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json reply");
    let path = v["file_path"].as_str().unwrap_or_default().to_string();
    assert!(Path::new(&path).is_absolute(), "{v}");
    assert!(!path.contains("/./") && !path.contains("/../"), "{v}");
    let transfers = leecher.call("transfer_status", json!({}));
    assert!(!transfers.to_string().contains("/./"), "{transfers}");
}

#[test]
fn the_timeout_help_says_what_it_times_and_in_what_unit() {
    for sub in ["get", "status", "ls"] {
        let out = peershare(None, &[sub, "--help"]);
        let help = text(&out.stdout);
        assert!(help.contains("--timeout <SECONDS>"), "{help}");
        assert!(help.contains("Seconds to wait for the node"), "{help}");
    }
}

/// The repository's root (where the Makefile is).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free TCP and UDP port `base..base+3` and `base+100..base+103`, for the demo's nodes.
fn free_demo_ports() -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    let seed = u64::from(std::process::id()) * 7919;
    for i in 0..200u64 {
        let base = 29_000 + ((seed + i * 211) % 3_000) as u16;
        if (0..3).all(|k| free(base + k) && free(base + 100 + k)) {
            return base;
        }
    }
    panic!("no free ports for the demo");
}

#[test]
fn make_and_the_demo_use_cargo_target_dir() {
    let t = tmp();
    // `make -n run` shows the command it would run: the binary under CARGO_TARGET_DIR.
    let out = Command::new("make")
        .args(["-n", "run"])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", t.path())
        .output()
        .expect("make");
    let plan = text(&out.stdout);
    let want = format!("{}/release/peershare\" run", t.path().display());
    assert!(plan.contains(&want), "{plan}{}", text(&out.stderr));
    let out = Command::new("make")
        .args(["-n", "run"])
        .current_dir(repo())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("make");
    assert!(
        text(&out.stdout).contains("\"target/release/peershare\" run"),
        "{}",
        text(&out.stdout)
    );

    // The demo, whole, with the binary only under CARGO_TARGET_DIR.
    let release = t.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(bin(), release.join("peershare")).unwrap();
    let base = free_demo_ports();
    let mut child = Command::new("tools/demo.sh")
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", t.path())
        .env_remove("PEERSHARE_BIN")
        .env("DEMO_PORT", base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(child, "tools/demo.sh");
    let shown = reader.join().unwrap_or_default();
    let errs = err_reader.join().unwrap_or_default();
    assert!(status.success(), "{shown}\n{errs}");
    assert!(shown.contains("byte-identical"), "{shown}");
    // Honest figures: the file's bytes, labelled, apart from the wire's.
    assert!(
        shown.contains("alice received 3000000 bytes of file data"),
        "{shown}"
    );
}

/// `peershare unshare ID` stops sharing without touching the file: the node no longer lists
/// or announces it, also after a restart; unsharing what is not shared is a clear error.
#[test]
fn unshare_stops_sharing_and_keeps_the_file() {
    let dir = tmp();
    let data = dir.path().join("n");
    let mut node = Node::start(&data, &[]);
    let ids = share_many(&node, dir.path(), 2);
    let api = node.api.to_string();
    let out = peershare(None, &["unshare", &ids[0], "--api", &api]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no longer sharing") && text(&out.stdout).contains(".wav"),
        "{}",
        text(&out.stdout)
    );
    let listed = |n: &Node| n.call("local_list_content", json!({}))["content_hashes"].clone();
    assert_eq!(listed(&node), json!([ids[1]]));
    assert!(!node.status()["provided"]
        .as_array()
        .is_some_and(|p| p.contains(&json!(ids[0]))));
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("0000-"));
    assert!(file, "the file stays");
    // Not shared any more: a second unshare is an error.
    let again = peershare(None, &["unshare", &ids[0], "--api", &api]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("does not share"),
        "{}",
        text(&again.stderr)
    );
    node.terminate();
    let node = Node::start(&data, &[]);
    assert_eq!(listed(&node), json!([ids[1]]), "after a restart");
}

/// `add` prints a share link with the node's address; `get LINK` on a node that knows no
/// other node (no bootstrap, an empty DHT) downloads through the link's peer alone.
#[test]
fn a_share_link_carries_what_get_needs() {
    let dir = tmp();
    let seeder = Node::start(&dir.path().join("s"), &[]);
    let leecher = Node::start(&dir.path().join("l"), &[]);
    let bytes = common::seeded_bytes(700_000, 5);
    let file = dir.path().join("kick drum.wav");
    std::fs::write(&file, &bytes).unwrap();
    let out = peershare(
        None,
        &[
            "add",
            &file.display().to_string(),
            "--api",
            &seeder.api.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let link = stdout
        .lines()
        .find_map(|l| l.strip_prefix("link: "))
        .unwrap_or_else(|| panic!("no link in {stdout}"))
        .to_string();
    let id = stdout.lines().next().unwrap_or_default().to_string();
    assert!(link.starts_with(&format!("peershare:{id}?name=kick%20drum.wav&size=700000")));
    assert!(link.contains(&format!("peer={}", seeder.listen)), "{link}");
    let into = dir.path().join("got");
    let out = peershare(
        None,
        &[
            "get",
            &link,
            "-o",
            &into.display().to_string(),
            "--api",
            &leecher.api.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(into.join("kick drum.wav")).unwrap(), bytes);
    // A broken link is a clear error, before any request.
    let out = peershare(
        None,
        &["get", "peershare:12ab", "--api", &leecher.api.to_string()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("content ID"),
        "{}",
        text(&out.stderr)
    );
}
