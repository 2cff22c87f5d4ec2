//! Control of a node from the command line (issue 15): pausing and resuming downloads,
//! settings that persist in the data dir's config file, and hooks run after a download.
//! Real nodes, real client processes, real sockets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{peershare, text};
use common::{wait_until, Node};
use serde_json::{json, Value};

/// Bound on any wait (a deadline, never an expected duration).
const LONG: Duration = Duration::from_secs(120);

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `node`'s `transfer_status` entry for `id` (Null when none).
fn transfer(node: &Node, id: &str) -> Value {
    node.call("transfer_status", json!({ "content_hash": id }))["transfers"][0].clone()
}

/// `peershare ARGS --api NODE`, to completion.
fn cli(node: &Node, args: &[&str]) -> std::process::Output {
    let api = node.api.to_string();
    let mut all = args.to_vec();
    all.extend(["--api", &api]);
    peershare(None, &all)
}

/// Pause: the waiting request is told, the connections close, progress stops and is shown
/// as paused; `get` does not resume it and says how; a kill -9 and a restart lose no
/// verified byte and keep it paused; `resume` takes it up from there to a complete file.
#[test]
fn a_paused_download_keeps_its_chunks_through_a_kill_and_resumes() {
    let dir = tmp();
    let (seeder, mut leecher, id, data) = common::pair(dir.path(), 3_000_000, "400KB/s", &[]);
    let out = dir.path().join("out");
    let req = json!({ "type": "local_request_file",
                      "payload": { "content_hash": id, "output_dir": out } });
    let api = leecher.api;
    let waiting = std::thread::spawn(move || common::call_timeout(api, &req, LONG));
    let started = wait_until(LONG, || {
        transfer(&leecher, &id)["have_bytes"].as_u64().unwrap_or(0) > 0
    });
    assert!(started, "no chunk arrived");

    let p = cli(&leecher, &["pause", &id]);
    assert!(p.status.success(), "{}", text(&p.stderr));
    assert!(
        text(&p.stdout).contains("peershare resume"),
        "{}",
        text(&p.stdout)
    );
    let told = waiting.join().unwrap().unwrap();
    assert_eq!(told["status"], "error");
    assert!(
        told["message"]
            .as_str()
            .unwrap()
            .contains("paused by the user"),
        "{told}"
    );
    let t = transfer(&leecher, &id);
    assert_eq!(t["paused_reason"], "user", "{t}");
    assert_eq!(
        (t["downloading"].clone(), t["peers"].clone()),
        (json!(false), json!(0))
    );
    let kept = t["have_bytes"].as_u64().unwrap();
    assert!(kept > 0 && kept < data.len() as u64, "{t}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        transfer(&leecher, &id)["have_bytes"],
        kept,
        "no progress while paused"
    );
    let ls = cli(&leecher, &["ls"]);
    let line = text(&ls.stdout);
    assert!(
        line.lines()
            .any(|l| l.contains(&id) && l.contains("paused")),
        "{line}"
    );

    // Asking for it does not resume it, and says how to.
    let g = cli(&leecher, &["get", &id, "-o", &out.display().to_string()]);
    assert_eq!(g.status.code(), Some(1));
    assert!(
        text(&g.stderr).contains(&format!("peershare resume {id}")),
        "{}",
        text(&g.stderr)
    );
    assert_eq!(transfer(&leecher, &id)["paused_reason"], "user");

    // kill -9 and restart: still paused, nothing verified lost. (Killed this soon, the node
    // may not have saved its contacts yet: it is told where the seeder is again.)
    leecher.kill();
    let leecher = Node::start(
        &dir.path().join("leecher"),
        &["--bootstrap", &seeder.addr()],
    );
    let t = transfer(&leecher, &id);
    assert_eq!(t["paused_reason"], "user", "{t}");
    assert_eq!(t["have_bytes"], kept, "{t}");

    let r = cli(&leecher, &["resume", &id]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains(&format!("from {kept} verified bytes")),
        "{}",
        text(&r.stdout)
    );
    let again = cli(&leecher, &["resume", &id]);
    assert!(
        text(&again.stderr).contains("not paused"),
        "{}",
        text(&again.stderr)
    );
    let g = cli(&leecher, &["get", &id, "-o", &out.display().to_string()]);
    assert!(g.status.success(), "{}", text(&g.stderr));
    assert_eq!(std::fs::read(out.join("shared.bin")).unwrap(), data);
    // A share link names the download too; what is done is not paused.
    let link = format!("peershare:{id}?name=shared.bin");
    let p = cli(&leecher, &["pause", &link]);
    assert!(
        text(&p.stderr).contains("no download"),
        "{}",
        text(&p.stderr)
    );
}

/// Pausing then cancelling deletes the partial data at once, and a restart does not bring
/// the download back.
#[test]
fn a_paused_download_cancelled_is_gone_for_good() {
    let dir = tmp();
    let (_seeder, mut leecher, id, _) = common::pair(dir.path(), 2_000_000, "300KB/s", &[]);
    let req = json!({ "type": "local_request_file", "payload": { "content_hash": id } });
    let api = leecher.api;
    std::thread::spawn(move || common::call_timeout(api, &req, LONG));
    assert!(wait_until(LONG, || {
        transfer(&leecher, &id)["have_bytes"].as_u64().unwrap_or(0) > 0
    }));
    assert!(cli(&leecher, &["pause", &id]).status.success());
    let c = cli(&leecher, &["cancel", &id]);
    assert!(c.status.success(), "{}", text(&c.stderr));
    let downloads = leecher.data_dir.join("downloads");
    let left = || {
        std::fs::read_dir(&downloads)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&id[..16]))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(LONG, || left() == 0),
        "partial files left behind"
    );
    leecher.terminate();
    let leecher = Node::start(&dir.path().join("leecher"), &[]);
    assert!(
        transfer(&leecher, &id).is_null(),
        "{}",
        transfer(&leecher, &id)
    );
}

/// `peershare run` in `data_dir` that must fail at start: its exit code and stderr.
fn failed_start(data_dir: &Path) -> (Option<i32>, String) {
    let d = data_dir.display().to_string();
    let mut args: Vec<&str> = "run --bind 127.0.0.1 --port 0 --api-port 0 --data-dir"
        .split(' ')
        .collect();
    args.push(&d);
    let out = peershare(None, &args);
    (out.status.code(), text(&out.stderr))
}

/// The config file's text in `data_dir`.
fn conf(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("peershare.conf")).unwrap_or_default()
}

/// The limits in force, from `status`.
fn limits(node: &Node) -> Value {
    node.status()["bandwidth"]["limits"].clone()
}

/// Settings persist in `peershare.conf`; `config` shows each with its source; `config set`
/// applies limits at once unless a flag gives them, says when a restart is needed, and
/// refuses bad keys and values; `limit` saves there too; a restart reads the file; with no
/// node, `--data-dir` edits the file directly (refused while a node holds the data dir); a
/// mistake in a hand-edited file stops the node at start, naming the line and the key.
#[test]
fn settings_persist_in_the_config_file_with_their_sources() {
    let dir = tmp();
    let data = dir.path().join("n");
    let mut node = Node::start(&data, &["--down-limit", "1MB"]);
    let shown = text(&cli(&node, &["config"]).stdout);
    let row = |table: &str, key: &str| -> String {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {table}"))
            .to_string()
    };
    assert!(row(&shown, "up_limit").ends_with("default"), "{shown}");
    assert!(row(&shown, "down_limit").contains("1.0 MB/s"), "{shown}");
    assert!(
        row(&shown, "down_limit").ends_with("command line"),
        "{shown}"
    );
    let files = data.join("files").display().to_string();
    assert!(row(&shown, "download_dir").contains(&files), "{shown}");
    assert!(row(&shown, "on_complete").contains("(none)"), "{shown}");

    let s = cli(&node, &["config", "set", "up_limit", "5mb"]);
    assert!(s.status.success(), "{}", text(&s.stderr));
    assert!(
        text(&s.stdout).contains("in force now: 5.0 MB/s"),
        "{}",
        text(&s.stdout)
    );
    assert_eq!(limits(&node)["up"], 5_000_000, "applied live");
    let s = cli(&node, &["config", "set", "down-limit", "2MB"]);
    assert!(
        text(&s.stdout).contains("--down-limit"),
        "{}",
        text(&s.stdout)
    );
    assert_eq!(limits(&node)["down"], 1_000_000, "the flag wins");
    let elsewhere = dir.path().join("incoming");
    let s = cli(
        &node,
        &[
            "config",
            "set",
            "download_dir",
            &elsewhere.display().to_string(),
        ],
    );
    assert!(text(&s.stdout).contains("restarts"), "{}", text(&s.stdout));
    for (args, says) in [
        (
            &["config", "set", "up_limt", "5"][..],
            "unknown key `up_limt`",
        ),
        (
            &["config", "set", "up_limit", "fast"][..],
            "`fast` is not a rate",
        ),
    ] {
        let bad = cli(&node, args);
        assert_eq!(bad.status.code(), Some(2), "{args:?}");
        assert!(text(&bad.stderr).contains(says), "{}", text(&bad.stderr));
    }
    assert!(conf(&data).contains("up_limit = 5mb\n"), "{}", conf(&data));
    // `limit` (set_limits) keeps what it sets in the same file.
    assert!(cli(&node, &["limit", "--peer-up", "3MB"]).status.success());
    assert!(
        wait_until(LONG, || conf(&data).contains("peer_up_limit = 3MB/s")),
        "{}",
        conf(&data)
    );
    // Editing the file of a running node directly is refused.
    let d = data.display().to_string();
    let busy = peershare(
        None,
        &["config", "set", "up_limit", "1MB", "--data-dir", &d],
    );
    assert!(
        text(&busy.stderr).contains("a node is running"),
        "{}",
        text(&busy.stderr)
    );

    node.terminate();
    // No node: the file is edited directly.
    let off = peershare(
        None,
        &[
            "config",
            "set",
            "transfer_up_limit",
            "700KB",
            "--data-dir",
            &d,
        ],
    );
    assert!(off.status.success(), "{}", text(&off.stderr));
    assert!(
        text(&off.stdout).contains("applies when a node starts"),
        "{}",
        text(&off.stdout)
    );
    let node = Node::start(&data, &[]);
    let l = limits(&node);
    assert_eq!(
        (
            l["up"].clone(),
            l["down"].clone(),
            l["peer_up"].clone(),
            l["transfer_up"].clone()
        ),
        (
            json!(5_000_000),
            json!(2_000_000),
            json!(3_000_000),
            json!(700_000)
        ),
        "{l}"
    );
    let shown = text(&cli(&node, &["config"]).stdout);
    assert!(
        row(&shown, "down_limit").ends_with("config file"),
        "{shown}"
    );
    assert!(row(&shown, "download_dir").contains("incoming"), "{shown}");
    assert!(
        row(&shown, "download_dir").ends_with("config file"),
        "{shown}"
    );
    assert!(cli(&node, &["config", "unset", "up_limit"])
        .status
        .success());
    assert_eq!(limits(&node)["up"], 0, "back to the default at once");
    drop(node);

    // A hand-edited mistake: the node does not start, and says where.
    std::fs::write(
        data.join("peershare.conf"),
        "down_limit = 2MB\nup_limt = 5MB\n",
    )
    .unwrap();
    let (code, err) = failed_start(&data);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("peershare.conf, line 2: unknown key `up_limt`"),
        "{err}"
    );
    std::fs::write(data.join("peershare.conf"), "down_limit = quick\n").unwrap();
    let (_, err) = failed_start(&data);
    assert!(
        err.contains("line 1: down_limit: `quick` is not a rate"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Limits that an older version kept in `state.json` are moved into the config file once.
#[test]
fn limits_kept_in_the_old_state_file_move_to_the_config_file() {
    let dir = tmp();
    let data = dir.path().join("n");
    std::fs::create_dir_all(&data).unwrap();
    let state = json!({
        "version": 1,
        "node_id": "05".repeat(32),
        "contacts": [],
        "provided": [],
        "limits": { "up": 5_000_000, "down": 0, "transfer_up": 0, "transfer_down": 0,
                    "peer_up": 0, "peer_down": 1000 },
    });
    std::fs::write(data.join("state.json"), state.to_string()).unwrap();
    let mut node = Node::start(&data, &[]);
    // The old file's node ID had no key: it gives way to the new identity key's
    // (secure.md section 1); the rest of the old state is read.
    assert_ne!(node.node_id, "05".repeat(32));
    assert!(data.join("identity.key").exists());
    let l = limits(&node);
    assert_eq!(
        (l["up"].clone(), l["peer_down"].clone()),
        (json!(5_000_000), json!(1000))
    );
    assert_eq!(
        conf(&data).lines().filter(|l| l.contains("limit")).count(),
        2,
        "{}",
        conf(&data)
    );
    assert!(conf(&data).contains("up_limit = 5MB/s"), "{}", conf(&data));
    node.terminate();
    let saved = std::fs::read_to_string(data.join("state.json")).unwrap();
    assert!(!saved.contains("limits"), "{saved}");
}

/// `status`'s hook counters.
fn hooks(node: &Node) -> Value {
    node.status()["hooks"].clone()
}

/// `get --exec` runs its command once the file is verified, with the file's facts in the
/// environment and as $1, and exits with the command's status when it fails; the node's
/// `on_complete` runs for every completed download, counted in `status`; a file name
/// chosen by a peer is a value in the environment, never shell code. Downloads without `-o`
/// go to the config file's `download_dir`.
#[test]
fn hooks_run_after_verified_downloads_with_their_facts_in_the_environment() {
    let dir = tmp();
    let seeder = Node::start(&dir.path().join("seeder"), &[]);
    let leecher_dir = dir.path().join("leecher");
    std::fs::create_dir_all(&leecher_dir).unwrap();
    let incoming = dir.path().join("incoming");
    let log = dir.path().join("hook.log");
    // The hook writes every variable on one line; `$1` must be the path.
    let hook = format!(
        r#"printf '%s|%s|%s|%s|%s\n' "$PEERSHARE_ID" "$PEERSHARE_PATH" "$PEERSHARE_NAME" "$PEERSHARE_SIZE" "$1" >> '{}'"#,
        log.display()
    );
    std::fs::write(
        leecher_dir.join("peershare.conf"),
        format!(
            "download_dir = {}\non_complete = {hook}\n",
            incoming.display()
        ),
    )
    .unwrap();
    let leecher = Node::start(&leecher_dir, &["--bootstrap", &seeder.addr()]);
    // A name made to be shell code if it were ever pasted into a command.
    let name = "kick $(touch PWNED) `touch PWNED2`;.wav";
    let bytes = common::seeded_bytes(400_000, 9);
    std::fs::write(dir.path().join(name), &bytes).unwrap();
    let added = seeder
        .call_timeout(
            "local_add_file",
            json!({ "filepath": dir.path().join(name) }),
            LONG,
        )
        .unwrap();
    let id = added["file_hash"].as_str().unwrap().to_string();
    let link = format!("peershare:{id}?peer={}", seeder.listen);
    let facts = dir.path().join("facts");
    let exec = format!(
        r#"test "$1" = "$PEERSHARE_PATH" && printf '%s|%s' "$PEERSHARE_NAME" "$PEERSHARE_SIZE" > '{}'"#,
        facts.display()
    );
    let g = cli(&leecher, &["get", &link, "--exec", &exec]);
    assert!(
        g.status.success(),
        "{} {}",
        text(&g.stdout),
        text(&g.stderr)
    );
    let got = incoming.join(name);
    assert_eq!(
        std::fs::read(&got).unwrap(),
        bytes,
        "into the config's download_dir"
    );
    assert_eq!(
        std::fs::read_to_string(&facts).unwrap(),
        format!("{name}|400000")
    );

    // The node's own hook, for the same download.
    assert!(wait_until(LONG, || hooks(&leecher)["started"] == 1
        && hooks(&leecher)["running"] == 0));
    let line = std::fs::read_to_string(&log).unwrap();
    let want = format!("{id}|{p}|{name}|400000|{p}\n", p = got.display());
    assert_eq!(line, want);
    assert_eq!(hooks(&leecher)["failed"], 0);
    let cwds = [
        dir.path().to_path_buf(),
        std::env::current_dir().unwrap(),
        leecher_dir.clone(),
    ];
    for d in cwds {
        assert!(
            !d.join("PWNED").exists() && !d.join("PWNED2").exists(),
            "a name ran as code"
        );
    }

    // A failing --exec: `get` says so and exits with its status (the file is here: at once).
    let g = cli(&leecher, &["get", &id, "--exec", "exit 3"]);
    assert_eq!(g.status.code(), Some(3), "{}", text(&g.stderr));
    assert!(
        text(&g.stderr).contains("--exec command failed"),
        "{}",
        text(&g.stderr)
    );

    // A failing node hook is counted, set live through `config set`.
    assert!(cli(&leecher, &["config", "set", "on_complete", "exit 5"])
        .status
        .success());
    let other = dir.path().join("other.bin");
    std::fs::write(&other, common::seeded_bytes(50_000, 10)).unwrap();
    let added = seeder
        .call_timeout("local_add_file", json!({ "filepath": other }), LONG)
        .unwrap();
    let id2 = added["file_hash"].as_str().unwrap().to_string();
    let link2 = format!("peershare:{id2}?peer={}", seeder.listen);
    assert!(cli(&leecher, &["get", &link2]).status.success());
    assert!(
        wait_until(LONG, || hooks(&leecher)["failed"] == 1),
        "{}",
        hooks(&leecher)
    );
    assert_eq!(hooks(&leecher)["started"], 2);
}
