//! The ledger through real node processes: register and verify over the local API the way
//! EchoChain clients do, restarts, a ledger damaged on disk, and the CLI subcommands.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, Node};
use serde_json::{json, Value};

const ALICE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                     abandon abandon about";
const BOB: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";
const LONG: Duration = Duration::from_secs(60);

/// Shares a small file; returns its content ID.
fn add_file(node: &Node, dir: &Path, name: &str, seed: u64) -> String {
    let path = dir.join(name);
    std::fs::write(&path, common::seeded_bytes(10_000, seed)).unwrap();
    let r = node
        .call_timeout("local_add_file", json!({ "filepath": path }), LONG)
        .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    r["file_hash"].as_str().unwrap().to_owned()
}

fn register(node: &Node, id: &str, mnemonic: &str, metadata: Value) -> Value {
    node.call(
        "local_register_file_on_chain",
        json!({ "file_hash": id, "owner_mnemonic": mnemonic, "metadata": metadata }),
    )
}

fn verify(node: &Node, id: &str, owner: Option<&str>) -> Value {
    let mut p = json!({ "file_hash": id });
    if let Some(o) = owner {
        p["owner_address"] = json!(o);
    }
    node.call("local_verify_file_on_chain", p)
}

fn ledger_file(node: &Node) -> PathBuf {
    node.data_dir.join("ledger").join("ledger.jsonl")
}

#[test]
fn register_and_verify_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &[]);
    let id = add_file(&node, dir.path(), "kick.wav", 1);

    // Nothing registered yet: status error, verified false.
    let v = verify(&node, &id, None);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["verified"], false);
    assert_eq!(v["message"], format!("No valid registration of {id}"));

    let r = register(&node, &id, ALICE, json!({"title": "Kick", "bpm": 120}));
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["file_hash"], id.as_str());
    assert_eq!(r["record"], 1);
    assert_eq!(r["record_hash"].as_str().unwrap().len(), 64);
    assert!(r["registered_at"].as_u64().unwrap() > 1_600_000_000);
    let alice = r["owner_address"].as_str().unwrap().to_owned();
    // The spec's test vector address for this phrase (protocol-spec/ledger.md, section 14).
    assert_eq!(
        alice,
        "pse96b1c6b8769fdb0b34fbecfdf85c33b053cecad9517e1ab88cba614335775c1bfdf4e42"
    );

    for owner in [None, Some(alice.as_str())] {
        let v = verify(&node, &id, owner);
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["verified"], true);
        assert_eq!(v["file_hash"], id.as_str());
        let o = &v["owners"][0];
        assert_eq!(o["owner_address"], alice.as_str());
        assert_eq!(o["metadata"], json!({"title": "Kick", "bpm": 120}));
        assert_eq!(o["record"], 1);
        assert_eq!(o["registered_at"], r["registered_at"]);
    }

    // A second owner: both claims are kept, verify answers per owner.
    let b = register(&node, &id, BOB, json!({"title": "Also mine"}));
    assert_eq!(b["status"], "success", "{b}");
    let bob = b["owner_address"].as_str().unwrap().to_owned();
    assert_ne!(bob, alice);
    let v = verify(&node, &id, None);
    assert_eq!(v["owners"].as_array().unwrap().len(), 2, "{v}");
    let v = verify(&node, &id, Some(&bob));
    assert_eq!(v["owners"].as_array().unwrap().len(), 1);
    assert_eq!(v["owners"][0]["metadata"]["title"], "Also mine");

    // An owner who registered nothing: status error, verified false.
    let carol = address_of("carol has other words");
    let v = verify(&node, &id, Some(&carol));
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["verified"], false);
    assert_eq!(
        v["message"],
        format!("No valid registration of {id} by {carol}")
    );
    // A typo in an address (last checksum digit): caught, not "not registered".
    let typo = format!("{}3", &alice[..alice.len() - 1]);
    let v = verify(&node, &id, Some(&typo));
    assert_eq!(v["status"], "error");
    assert_eq!(v["verified"], false);
    assert!(v["message"].as_str().unwrap().contains("checksum"), "{v}");

    // Re-registration: same metadata appends nothing; new metadata appends, verify shows it.
    let again = register(&node, &id, ALICE, json!({"bpm": 120, "title": "Kick"}));
    assert_eq!(again["already_registered"], true, "{again}");
    assert_eq!(again["record"], 1);
    let newer = register(
        &node,
        &id,
        &format!("  {ALICE}\n"),
        json!({"title": "Kick v2"}),
    );
    assert_eq!(newer["record"], 3, "{newer}");
    assert_eq!(newer["owner_address"], alice.as_str());
    let v = verify(&node, &id, Some(&alice));
    assert_eq!(v["owners"][0]["record"], 3);
    assert_eq!(v["owners"][0]["metadata"]["title"], "Kick v2");
    let h = node.call("ledger_history", json!({ "file_hash": id }));
    assert_eq!(h["total"], 3, "{h}");
    let c = node.call("ledger_verify", json!({}));
    assert_eq!(c["status"], "success", "{c}");
    assert_eq!(c["records"], 3);

    // Bad input: clear errors, and the ledger is unchanged.
    let unknown = common::content_id("not shared here");
    let e = register(&node, &unknown, ALICE, json!({}));
    assert_eq!(e["status"], "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not known to this node"),
        "{e}"
    );
    for (payload, want) in [
        (
            json!({"file_hash": "abc", "owner_mnemonic": ALICE, "metadata": {}}),
            "file_hash must be 64 hex characters",
        ),
        (
            json!({"file_hash": id, "owner_mnemonic": "  \n", "metadata": {}}),
            "owner_mnemonic: the mnemonic is empty",
        ),
        (
            json!({"file_hash": id, "owner_mnemonic": ALICE, "metadata": "title=x"}),
            "metadata must be a JSON object",
        ),
        (
            json!({"file_hash": id, "owner_mnemonic": ALICE, "metadata": {"x": "y".repeat(20_000)}}),
            "at most 16384",
        ),
    ] {
        let e = node.call("local_register_file_on_chain", payload);
        assert_eq!(e["status"], "error");
        assert!(e["message"].as_str().unwrap().contains(want), "{e}");
    }
    assert_eq!(node.call("ledger_verify", json!({}))["records"], 3);
    // The mnemonic is a secret: it is in no reply and not in the ledger file.
    let text = std::fs::read_to_string(ledger_file(&node)).unwrap();
    assert!(!text.contains("abandon"));
    assert_eq!(text.lines().count(), 3);
}

/// The owner address of a phrase (the derivation is deterministic).
fn address_of(phrase: &str) -> String {
    peershare::ledger::Mnemonic::new(phrase)
        .unwrap()
        .derive()
        .address()
        .to_string()
}

#[test]
fn the_ledger_survives_a_restart_and_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut node = Node::start(&data, &[]);
    let id = add_file(&node, dir.path(), "a.wav", 2);
    let r = register(&node, &id, ALICE, json!({"n": 1}));
    assert_eq!(r["status"], "success", "{r}");
    let r2 = register(&node, &id, BOB, json!({"n": 2}));
    assert_eq!(r2["status"], "success", "{r2}");
    let (_, status) = node.terminate();
    assert!(status.success());

    let mut node = Node::start(&data, &[]);
    let v = verify(&node, &id, Some(r["owner_address"].as_str().unwrap()));
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["owners"][0]["record"], 1);
    // Killed without a chance to clean up: appends were already durable.
    let r3 = register(&node, &id, ALICE, json!({"n": 3}));
    assert_eq!(r3["record"], 3, "{r3}");
    node.kill();
    // As if killed in the middle of an append: half a line, no newline.
    let path = ledger_file(&node);
    let whole = std::fs::read(&path).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..100]);
    std::fs::write(&path, &torn).unwrap();
    let node = Node::start(&data, &[]);
    let c = node.call("ledger_verify", json!({}));
    assert_eq!(c["status"], "success", "{c}");
    assert_eq!(c["records"], 3);
    assert_eq!(c["notes"].as_array().unwrap().len(), 1, "{c}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        whole,
        "the torn tail is dropped"
    );

    // One byte changed on disk while the node runs: verify says so, never success.
    let path = ledger_file(&node);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let at = good.iter().position(|&b| b == b'\n').unwrap() + 40; // inside record 2
    bad[at] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let v = verify(&node, &id, None);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["verified"], false);
    let why = v["ledger_error"].as_str().unwrap();
    assert!(why.starts_with("record 2: "), "{why}");
    let e = register(&node, &id, BOB, json!({"n": 4}));
    assert_eq!(e["status"], "error");
    assert!(e["ledger_error"].is_string(), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bad,
        "a damaged ledger is never written"
    );
    let c = node.call("ledger_verify", json!({}));
    assert_eq!(c["status"], "error");
    assert!(c["ledger_error"]
        .as_str()
        .unwrap()
        .starts_with("record 2: "));

    // Repaired by putting the original back.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(verify(&node, &id, None)["status"], "success");

    // The last record cut off: truncation is reported.
    let cut = good[..good.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    std::fs::write(&path, &good[..cut]).unwrap();
    let v = verify(&node, &id, None);
    assert_eq!(v["status"], "error");
    assert!(
        v["ledger_error"].as_str().unwrap().contains("truncated"),
        "{v}"
    );
    drop(node);
    // Still reported after a restart: damage is not repaired away.
    let node = Node::start(&data, &[]);
    let v = verify(&node, &id, None);
    assert!(
        v["ledger_error"].as_str().unwrap().contains("truncated"),
        "{v}"
    );
}

#[test]
fn concurrent_api_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &[]);
    let id = add_file(&node, dir.path(), "loop.wav", 4);
    let api = node.api;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let id = id.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let r = common::call(
                        api,
                        &json!({"type": "local_register_file_on_chain", "payload": {
                            "file_hash": id,
                            "owner_mnemonic": format!("owner {t} words"),
                            "metadata": {"take": i},
                        }}),
                    );
                    assert_eq!(r["status"], "success", "{r}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = node.call("ledger_verify", json!({}));
    assert_eq!(c["status"], "success", "{c}");
    assert_eq!(
        (c["records"].as_u64(), c["owners"].as_u64()),
        (Some(20), Some(4))
    );
    let v = verify(&node, &id, None);
    let owners = v["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 4);
    assert!(owners.iter().all(|o| o["metadata"]["take"] == 4), "{v}");
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).env_remove("PEERSHARE_API");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run peershare")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut node = Node::start(&data, &[]);
    let api = node.api.to_string();
    let id = add_file(&node, dir.path(), "snare.wav", 3);

    let mfile = dir.path().join("mnemonic.txt");
    std::fs::write(&mfile, format!("{ALICE}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&mfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mpath = mfile.display().to_string();
    let out = cli(
        &[
            "register",
            &id,
            "--mnemonic-file",
            &mpath,
            "--metadata",
            r#"{"title":"Snare"}"#,
            "--api",
            &api,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("{id} registered")), "{stdout}");
    assert!(stdout.contains("record  1"), "{stdout}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    let alice = address_of(ALICE);
    assert!(stdout.contains(&alice), "{stdout}");

    // From an environment variable, as JSON.
    let out = cli(
        &[
            "register",
            &id,
            "--mnemonic-env",
            "PS_TEST_MNEMONIC",
            "--api",
            &api,
            "--json",
        ],
        &[("PS_TEST_MNEMONIC", BOB)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["record"], 2);

    // No mnemonic source, or a mnemonic on the command line: refused by the parser.
    let out = cli(&["register", &id, "--api", &api], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["register", &id, "--mnemonic", ALICE, "--api", &api], &[]);
    assert_eq!(out.status.code(), Some(2));
    // Bad metadata is caught before anything is sent.
    let out = cli(
        &[
            "register",
            &id,
            "--mnemonic-file",
            &mpath,
            "--metadata",
            "[1]",
            "--api",
            &api,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("metadata must be a JSON object"));

    let out = cli(&["verify", &id, "--owner", &alice, "--api", &api], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("registered by 1 owner(s)"));
    let out = cli(&["verify", &id, "--api", &api], &[]);
    assert!(text(&out.stdout).contains("registered by 2 owner(s)"));
    let nobody = address_of("nobody");
    let out = cli(&["verify", &id, "--owner", &nobody, "--api", &api], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("No valid registration"),
        "{}",
        text(&out.stderr)
    );

    let out = cli(&["ledger", "verify", "--api", &api], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ledger intact: 2 records"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(&["ledger", "list", &id, "--api", &api], &[]);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(listing.starts_with("2 registrations"), "{listing}");
    assert!(listing.contains("Snare"), "{listing}");

    // Straight from the data dir, read-only: with the node running, and without.
    let dd = data.display().to_string();
    for running in [true, false] {
        let out = cli(&["ledger", "verify", "--data-dir", &dd], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("ledger intact: 2 records"));
        let out = cli(&["ledger", "list", "--data-dir", &dd, "--json"], &[]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["total"], 2);
        if running {
            node.terminate();
        }
    }
    let mut bytes = std::fs::read(data.join("ledger/ledger.jsonl")).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(data.join("ledger/ledger.jsonl"), bytes).unwrap();
    let out = cli(&["ledger", "verify", "--data-dir", &dd], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("record 1"),
        "{}",
        text(&out.stderr)
    );
    let missing = dir.path().join("no-such-dir").display().to_string();
    let out = cli(&["ledger", "list", "--data-dir", &missing], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a directory"));
}
