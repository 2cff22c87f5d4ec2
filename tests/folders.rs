//! Sharing a folder as one content (spec `content.md` section 10), with real nodes and the
//! real command line: `peershare add DIR` shares the tree in place and says what it left
//! out; `peershare get ID -o OUT` rebuilds it, byte for byte, under its name only when every
//! file is verified; a node that downloaded a folder serves it to the next; a download
//! killed with SIGKILL resumes without refetching what was verified; a folder already here
//! asked for in another folder is copied there.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cli::{peershare, text};
use common::{seeded_bytes, wait_until, Node};
use serde_json::json;

const LONG: Duration = Duration::from_secs(120);

/// A small sample pack: nested folders, one-chunk samples, a file of several chunks, an
/// empty file, an empty folder; plus a symbolic link and a FIFO, which are left out.
fn make_pack(root: &Path, big: usize) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("Kicks/Kick 01.wav".into(), seeded_bytes(50_000, 1)),
        ("Kicks/Kick 02.wav".into(), seeded_bytes(48_123, 2)),
        ("Kicks/Sub/Deep.wav".into(), seeded_bytes(51_000, 3)),
        ("Loops/long loop.wav".into(), seeded_bytes(big, 4)),
        ("README.txt".into(), b"Pack v1\n".to_vec()),
        ("empty.txt".into(), Vec::new()),
    ];
    for (p, d) in &files {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, d).unwrap();
    }
    fs::create_dir_all(root.join("Empty Folder")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    let fifo = std::ffi::CString::new(root.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path; the result is checked.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    files
}

/// The tree at `root` is exactly `files` plus the empty folder.
fn assert_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (p, d) in files {
        let got = fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(got == *d, "{p}: {} bytes, expected {}", got.len(), d.len());
    }
    assert!(root.join("Empty Folder").is_dir());
    let mut found = Vec::new();
    list(root, root, &mut found);
    found.sort();
    let mut expected: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    expected.push("Empty Folder/".into());
    expected.sort();
    assert_eq!(
        found, expected,
        "nothing more, nothing less (no link, no FIFO)"
    );
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            let before = out.len();
            list(root, &p, out);
            if out.len() == before {
                out.push(format!("{rel}/"));
            }
        } else {
            out.push(rel);
        }
    }
}

fn api(node: &Node) -> String {
    node.api.to_string()
}

fn add(node: &Node, dir: &Path) -> String {
    let out = peershare(None, &["add", dir.to_str().unwrap(), "--api", &api(node)]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "add: {stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0].len(), 64, "{stdout}");
    assert!(lines[1].contains("folder (6 files,"), "{stdout}");
    // What was left out is said, never silently dropped.
    assert!(
        stderr.contains("left out: etc-link: a symbolic link"),
        "{stderr}"
    );
    assert!(
        stderr.contains("left out: pipe: not a regular file"),
        "{stderr}"
    );
    lines[0].to_owned()
}

fn get(node: &Node, id: &str, out: &Path) -> PathBuf {
    get_only(node, id, out, &[])
}

fn wait_for_provider(node: &Node, id: &str) {
    let found = wait_until(LONG, || {
        let r = node.call("local_request_content_info", json!({ "content_hash": id }));
        r["peers"].as_array().is_some_and(|p| !p.is_empty())
    });
    assert!(found, "{id} never found in the DHT");
}

#[test]
fn a_folder_is_shared_fetched_and_passed_on_as_one_content() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("Pack v1");
    let files = make_pack(&pack, 700_000);
    let mut seeder = Node::start(&tmp.path().join("seeder"), &[]);
    let bootstrap = seeder.addr();
    let leecher = Node::start(&tmp.path().join("leecher"), &["--bootstrap", &bootstrap]);
    let id = add(&seeder, &pack);

    // The seeder lists it as a folder with its number of files.
    let all = seeder.call(
        "local_request_content_info",
        json!({ "content_hash": "all_available_content" }),
    );
    let entry = &all["available_content"][0];
    assert_eq!(entry["content_id"], id.as_str());
    assert_eq!(
        (&entry["kind"], &entry["num_files"], &entry["filename"]),
        (&json!("folder"), &json!(6), &json!("Pack v1")),
        "{all}"
    );

    let ls = text(&peershare(None, &["ls", "--api", &api(&seeder)]).stdout);
    assert!(ls.contains(&format!("{id}  ")), "{ls}");
    assert!(ls.contains(" B  Pack v1/ (6 files)"), "{ls}");

    // The ledger registers and verifies a folder's ID like a file's.
    let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                  abandon abandon about";
    let r = seeder.call(
        "local_register_file_on_chain",
        json!({ "file_hash": id, "owner_mnemonic": phrase, "metadata": { "title": "Pack" } }),
    );
    assert_eq!(r["status"], "success", "{r}");
    let v = seeder.call("local_verify_file_on_chain", json!({ "file_hash": id }));
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["owners"][0]["metadata"]["title"], "Pack", "{v}");

    wait_for_provider(&leecher, &id);
    let out = tmp.path().join("downloads");
    fs::create_dir_all(&out).unwrap();
    let got = get(&leecher, &id, &out);
    assert_eq!(got, out.join("Pack v1"));
    assert_tree(&got, &files);
    // Nothing else in the download folder: no staging folder left behind.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    // The API's reply, as EchoChain's clients read it: the folder and its name.
    let r = leecher.call("local_request_file", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["filename"], "Pack v1");
    assert_eq!(r["file_path"], got.display().to_string());

    // The seeder goes away; a third node fetches the folder from the leecher's copy.
    seeder.kill();
    let (third, out3) = third_node(tmp.path(), &leecher, &id, "third-downloads");
    let got3 = get(&third, &id, &out3);
    assert_tree(&got3, &files);

    // Asked again into another folder on a node that has it: a verified copy goes there.
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let r = common::call_timeout(
        third.api,
        &json!({ "type": "local_request_file",
                 "payload": { "content_hash": id, "output_dir": elsewhere } }),
        LONG,
    )
    .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    assert_tree(&elsewhere.join("Pack v1"), &files);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
}

/// A folder is placed and its reply sent before the node syncs it (STATE.md, "Folders"). A
/// node killed right after the reply, before its flusher's sync, leaves the share marked
/// unflushed: the kill is made to land there by putting the mark back in the killed node's
/// store (the sync of a small test folder is over in milliseconds). At the restart the node
/// re-hashes the folder: whole, it is still shared, nothing is fetched again, and a third node
/// fetches it from there; with a file's bytes lost (a power cut), it is no longer shared.
#[test]
fn a_folder_placed_but_not_synced_when_its_node_died_is_checked_at_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("Pack");
    let files = make_pack(&pack, 2 << 20);
    let Pair {
        mut seeder,
        bootstrap,
        leech_dir,
        mut leecher,
        id,
        out,
    } = pair(tmp.path(), &pack, &[]);
    let got = get(&leecher, &id, &out);
    leecher.kill();
    assert_tree(&got, &files);
    mark_unflushed(&leech_dir, &id);

    let sent_before = up_total(&seeder);
    let restart = |log: &str| {
        let f = fs::File::create(leech_dir.join(log)).unwrap();
        Node::start_logging_to(&leech_dir, &["--bootstrap", &bootstrap], f.into())
    };
    let shares = |node: &Node| {
        let all = node.call(
            "local_request_content_info",
            json!({ "content_hash": "all_available_content" }),
        );
        let listed = all["available_content"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        listed.iter().any(|e| e["content_id"] == id.as_str())
    };
    let mut leecher = restart("first.log");
    assert!(shares(&leecher));
    let log = fs::read_to_string(leech_dir.join("first.log")).unwrap();
    assert!(log.contains("checked again and good"), "{log}");
    assert_tree(&got, &files);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "no second copy");
    // Nothing fetched again: the seeder sent no more than the odd DHT message since.
    let sent_after = up_total(&seeder) - sent_before;
    assert!(
        sent_after < 65_536,
        "{sent_after} bytes sent after the restart"
    );

    seeder.kill();
    let (third, out3) = third_node(tmp.path(), &leecher, &id, "third-out");
    assert_tree(&get(&third, &id, &out3), &files);

    // Killed again before the sync, and this time a file's bytes never reached the disk.
    leecher.kill();
    mark_unflushed(&leech_dir, &id);
    let (name, data) = &files[0];
    fs::write(got.join(name), vec![0u8; data.len()]).unwrap();
    let leecher = restart("second.log");
    assert!(
        !shares(&leecher),
        "a folder that did not reach the disk whole is not served"
    );
    let log = fs::read_to_string(leech_dir.join("second.log")).unwrap();
    assert!(log.contains("not all of it reached the disk"), "{log}");
}

/// Puts back the unflushed mark of share `id` in the (stopped) node's store at `data_dir`, as
/// a node killed between a folder's reply and its sync leaves it (`index/store.rs`).
fn mark_unflushed(data_dir: &Path, id: &str) {
    let db = rusqlite::Connection::open(data_dir.join("shares.db")).unwrap();
    let id = hex::decode(id).unwrap();
    db.execute("INSERT OR REPLACE INTO unflushed (id) VALUES (?1)", [&id])
        .unwrap();
}

/// A seeder sharing a folder and a leecher that has found it, in a test's temp dir.
struct Pair {
    seeder: Node,
    /// The seeder's address.
    bootstrap: String,
    leech_dir: PathBuf,
    leecher: Node,
    /// The folder's content ID.
    id: String,
    /// An empty folder `tmp/out` for the leecher's downloads.
    out: PathBuf,
}

/// A seeder (started with `seeder_args`) sharing `pack`, and a leecher bootstrapped from it
/// that has found it.
fn pair(tmp: &Path, pack: &Path, seeder_args: &[&str]) -> Pair {
    let seeder = Node::start(&tmp.join("seeder"), seeder_args);
    let bootstrap = seeder.addr();
    let leech_dir = tmp.join("leecher");
    let leecher = Node::start(&leech_dir, &["--bootstrap", &bootstrap]);
    let id = add(&seeder, pack);
    wait_for_provider(&leecher, &id);
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    Pair {
        seeder,
        bootstrap,
        leech_dir,
        leecher,
        id,
        out,
    }
}

/// A third node in `tmp/third`, bootstrapped from `via`, once it has found a provider of
/// `id`; and an empty folder `tmp/<out>` for its downloads.
fn third_node(tmp: &Path, via: &Node, id: &str, out: &str) -> (Node, PathBuf) {
    let third = Node::start(&tmp.join("third"), &["--bootstrap", &via.addr()]);
    wait_for_provider(&third, id);
    let out = tmp.join(out);
    fs::create_dir_all(&out).unwrap();
    (third, out)
}

/// `transfer_status`'s `have_bytes` for `id` on `node`.
fn have(node: &Node, id: &str) -> u64 {
    let r = node.call("transfer_status", json!({ "content_hash": id }));
    r["transfers"][0]["have_bytes"].as_u64().unwrap_or(0)
}

#[test]
fn a_folder_download_killed_with_sigkill_resumes_without_refetching() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("pack");
    // 4 MiB of loop at 1 MB/s: the download is surely killed half-way.
    let files = make_pack(&pack, 4 << 20);
    let Pair {
        seeder,
        bootstrap,
        leech_dir,
        mut leecher,
        id,
        out,
    } = pair(tmp.path(), &pack, &["--up-limit", "1MB/s"]);
    let req = json!({ "type": "local_request_file",
                      "payload": { "content_hash": id, "output_dir": out } });
    let api = leecher.api;
    std::thread::spawn(move || common::call_timeout(api, &req, LONG));
    assert!(wait_until(LONG, || have(&leecher, &id) >= 1 << 20));
    let at_kill = have(&leecher, &id);
    // Progress counts files too: the small ones are in, the 4 MiB loop is not.
    let t = &leecher.call("transfer_status", json!({ "content_hash": id }))["transfers"][0];
    assert_eq!(t["num_files"], 6, "{t}");
    let done = t["files_done"].as_u64().unwrap();
    assert!((1..6).contains(&done), "{t}");
    leecher.kill();
    let sent_before = up_total(&seeder);
    let seen = fs::read_dir(&out).unwrap().count();
    assert_eq!(
        seen, 0,
        "nothing under the final name before every file is verified"
    );

    let leecher = Node::start(&leech_dir, &["--bootstrap", &bootstrap]);
    let done = wait_until(LONG, || out.join("pack").is_dir());
    assert!(done, "the resumed download never finished");
    let r = leecher.call("local_request_file", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    assert_tree(&out.join("pack"), &files);
    // What was verified before the kill was not fetched again: after the restart the seeder
    // sent at most what was missing, plus a little (framing, a chunk or two sent twice).
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let sent_after = up_total(&seeder) - sent_before;
    assert!(
        sent_after <= total - at_kill + total / 20 + 65_536,
        "{sent_after} bytes sent after the restart; {at_kill} of {total} were verified"
    );
}

fn up_total(node: &Node) -> u64 {
    node.status()["bandwidth"]["up_total"].as_u64().unwrap()
}

/// The measured case, small: pack v2 with 5% of its files changed, fetched by a node
/// that has v1 (downloaded earlier). The files it already has are copied locally; what the
/// seeder sends is the changed files, not the pack.
#[test]
fn pack_v2_fetches_only_what_changed_since_v1() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("v1/Pack");
    let v2 = tmp.path().join("v2/Pack");
    let n = 40;
    for k in 0..n {
        let rel = format!("Folder {}/sample {k:02}.wav", k % 5);
        for (root, changed) in [(&v1, false), (&v2, k % 20 == 7)] {
            let p = root.join(&rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let seed = if changed { 1000 + k } else { k };
            fs::write(p, seeded_bytes(50_000, seed as u64)).unwrap();
        }
    }
    let seeder = Node::start(&tmp.path().join("seeder"), &[]);
    let leecher = Node::start(
        &tmp.path().join("leecher"),
        &["--bootstrap", &seeder.addr()],
    );
    let share = |dir: &Path| -> String {
        let r = seeder
            .call_timeout("local_add_file", json!({ "filepath": dir }), LONG)
            .unwrap();
        assert_eq!(r["status"], "success", "{r}");
        r["file_hash"].as_str().unwrap().to_owned()
    };
    let id1 = share(&v1);
    wait_for_provider(&leecher, &id1);
    let out1 = tmp.path().join("got-v1");
    fs::create_dir_all(&out1).unwrap();
    get(&leecher, &id1, &out1);

    let id2 = share(&v2);
    assert_ne!(id1, id2);
    wait_for_provider(&leecher, &id2);
    let before = up_total(&seeder);
    let out2 = tmp.path().join("got-v2");
    fs::create_dir_all(&out2).unwrap();
    let got = get(&leecher, &id2, &out2);
    let sent = up_total(&seeder) - before;
    for k in 0..n {
        let rel = format!("Folder {}/sample {k:02}.wav", k % 5);
        assert!(fs::read(got.join(&rel)).unwrap() == fs::read(v2.join(&rel)).unwrap());
    }
    let total = 50_000 * n as u64;
    let changed = 2 * 50_000;
    assert!(
        sent <= total * 7 / 100,
        "the seeder sent {sent} bytes for a pack of {total} with {changed} changed"
    );
    assert!(
        sent >= changed,
        "{sent}: the changed files came from the seeder"
    );
}

/// `peershare show ID` lists a folder a peer shares, from the manifest alone: nothing of the
/// folder is downloaded (no partial file, the seeder sends only the manifest), and a `get`
/// afterwards fetches it as usual. Paging through a folder bigger than one reply works.
#[test]
fn show_lists_a_folder_without_downloading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("Pack v1");
    let files = make_pack(&pack, 2 << 20);
    let seeder = Node::start(&tmp.path().join("seeder"), &[]);
    let leecher = Node::start(
        &tmp.path().join("leecher"),
        &["--bootstrap", &seeder.addr()],
    );
    let id = add(&seeder, &pack);
    wait_for_provider(&leecher, &id);
    let before = up_total(&seeder);
    let o = peershare(None, &["show", &id, "--api", &api(&leecher)]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Pack v1 (folder: 6 files,"), "{out}");
    for (p, d) in &files {
        let want = format!("{:>14}  {p}", d.len());
        assert!(lines.contains(&want.as_str()), "{want:?} missing in\n{out}");
    }
    assert!(
        lines.contains(&format!("{:>14}  Empty Folder/", "").as_str()),
        "{out}"
    );
    assert_eq!(lines.len(), 1 + files.len() + 1, "{out}");
    let sent = up_total(&seeder) - before;
    assert!(
        sent < 64 * 1024,
        "only the manifest travelled, not {sent} bytes"
    );
    let downloads = tmp.path().join("leecher/downloads");
    let parts = fs::read_dir(&downloads).map_or(0, |d| d.count());
    assert_eq!(parts, 0, "no partial download was made");
    // The API pages: one entry at a time.
    let r = leecher.call(
        "content_tree",
        json!({ "content_hash": id, "offset": 3, "limit": 1 }),
    );
    assert_eq!(r["total_entries"], 7, "{r}");
    assert_eq!(
        r["entries"],
        json!([{ "path": "Kicks/Sub/Deep.wav", "size": 51_000 }])
    );
    // The folder is then fetched as usual.
    let out_dir = tmp.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let got = get(&leecher, &id, &out_dir);
    assert_tree(&got, &files);
}

/// A tree manifest exactly as content.md section 10.1 lays it out, whatever its entries say
/// (`(kind, path, size)`; every file holds "abc"-sized junk hashes): what a hostile
/// publisher can make, since the content ID is only the hash of these bytes.
fn raw_tree(entries: &[(u8, &str, u64)], total: u64, chunks: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let abc: [u8; 32] = Sha256::digest(b"abc").into();
    let mut body = Vec::new();
    for (kind, path, size) in entries {
        body.push(*kind);
        body.extend_from_slice(&(path.len() as u16).to_be_bytes());
        body.extend_from_slice(path.as_bytes());
        if *kind == 0 {
            body.extend_from_slice(&size.to_be_bytes());
            body.extend_from_slice(&262_144u32.to_be_bytes());
            body.extend_from_slice(&abc);
        }
    }
    let mut m = b"PSTR\x01".to_vec();
    m.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    m.extend_from_slice(&total.to_be_bytes());
    m.extend_from_slice(&chunks.to_be_bytes());
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(&body);
    for _ in 0..chunks.min(8) {
        m.extend_from_slice(&abc);
    }
    m
}

/// A hostile peer on a real socket: it claims `manifest`'s content, proves it "has" it with
/// a BITFIELD, and serves the manifest, under the node ID of identity seed `[node; 32]`
/// (proved in its secure session). Returns its address; the thread ends when the node hangs
/// up, sending on `done` what the node last said.
/// Returns the peer's address and a handle on its listening socket: holding it keeps the
/// port from being given to the next case's peer, whose address would then be one the node
/// banned (bans name addresses too).
fn hostile_peer(
    manifest: Vec<u8>,
    node: u8,
    done: std::sync::mpsc::Sender<String>,
) -> (String, std::net::TcpListener) {
    use peershare::id::Id;
    use peershare::proto::wire::{decode_frame, Bitfield, Handshake, Message};
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = l.try_clone().unwrap();
    std::thread::spawn(move || {
        let keys = peershare::secure::LocalKeys::generate(
            peershare::identity::Identity::from_secret(&[node; 32]),
        )
        .unwrap();
        let me = keys.node_id();
        // A node may dial again when a connection fails before its session is up (a loaded
        // machine): serve each dial until one carries a session, rather than leaving the
        // node to dial a closed port.
        let mut s = loop {
            let Ok((s, from)) = l.accept() else { return };
            match common::Wire::accept(s, &keys) {
                Ok(s) => break s,
                Err(e) => eprintln!("hostile peer {addr}: session from {from} failed: {e}"),
            }
        };
        let id = Id::hash_of(&manifest);
        let mut buf = Vec::new();
        let mut last = String::new();
        let mut chunk = [0u8; 65536];
        let send = |s: &mut common::Wire, m: Message| {
            let mut out = Vec::new();
            m.encode(&mut out);
            let _ = s.write_all(&out);
        };
        loop {
            while let Ok(Some((msg, used))) = decode_frame(&buf) {
                buf.drain(..used);
                last = format!("{msg:?}");
                match msg {
                    Message::Handshake(_) => {
                        send(&mut s, Message::Handshake(Handshake::new(me, id, 0)));
                        send(
                            &mut s,
                            Message::Metadata {
                                name: "Pack".into(),
                            },
                        );
                        send(&mut s, Message::Bitfield(Bitfield::new(1)));
                    }
                    Message::ManifestRequest { offset, length } => {
                        let start = (offset as usize).min(manifest.len());
                        let end = start.saturating_add(length as usize).min(manifest.len());
                        send(
                            &mut s,
                            Message::ManifestData {
                                total_len: manifest.len() as u32,
                                offset,
                                data: manifest[start..end].to_vec(),
                            },
                        );
                    }
                    _ => {}
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = done.send(last);
    });
    (addr.to_string(), held)
}

/// Trees a publisher may not make (content.md sections 10.2 and 10.3), served by a peer:
/// the node refuses each manifest with its reason, bans the peer, writes nothing (inside or
/// outside the output folder), and keeps serving.
#[test]
fn hostile_trees_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    // The node's log, shown if a case fails.
    let log_path = tmp.path().join("node.log");
    let log = fs::File::create(&log_path).unwrap();
    let node = Node::start_logging_to(&tmp.path().join("node"), &["-v"], log.into());
    let out = tmp.path().join("box/out");
    fs::create_dir_all(&out).unwrap();
    let deep = format!("{}f", "d/".repeat(65));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "climbs out with ..",
            raw_tree(&[(0, "../escape.txt", 3)], 3, 1),
        ),
        (
            "absolute path",
            raw_tree(&[(0, "/tmp/escape.txt", 3)], 3, 1),
        ),
        ("backslash", raw_tree(&[(0, "..\\escape.txt", 3)], 3, 1)),
        ("NUL in a name", raw_tree(&[(0, "a\0b", 3)], 3, 1)),
        ("Windows device name", raw_tree(&[(0, "CON.wav", 3)], 3, 1)),
        (
            "names differing only by case",
            raw_tree(&[(0, "Kick.wav", 3), (0, "kick.wav", 3)], 6, 2),
        ),
        (
            "a file and a folder of the same name",
            raw_tree(&[(0, "a", 3), (0, "a/b", 3)], 6, 2),
        ),
        ("nesting deeper than 64", raw_tree(&[(0, &deep, 3)], 3, 1)),
        (
            "a terabyte and more",
            raw_tree(&[(0, "huge.bin", 3)], 2 << 40, 1),
        ),
        ("a million entries", {
            let mut m = raw_tree(&[(0, "a", 3)], 3, 1);
            m[5..9].copy_from_slice(&1_000_000u32.to_be_bytes());
            m
        }),
    ];
    let mut ports = Vec::new();
    for (k, (what, manifest)) in cases.into_iter().enumerate() {
        let id = peershare::id::Id::hash_of(&manifest).to_hex();
        let (tx, rx) = std::sync::mpsc::channel();
        // A new identity each time: a banned node ID is refused at its HANDSHAKE.
        let (peer, port) = hostile_peer(manifest, 0x60 + k as u8, tx);
        ports.push(port);
        let req = json!({ "type": "local_request_file",
                          "payload": { "content_hash": id, "output_dir": out, "peers": [peer] } });
        let api = node.api;
        std::thread::spawn(move || common::call_timeout(api, &req, LONG));
        // The node hangs up on the peer once it has refused the manifest.
        let last = rx.recv_timeout(LONG).unwrap_or_else(|_| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{what}: the node never hung up; its log ends:\n{}",
                tail.join("\n")
            )
        });
        // Its last word: an ERROR naming the manifest (wire.md section 4.14).
        assert!(
            last.starts_with("Error") && last.contains("manifest"),
            "{what}: last frame {last}"
        );
        let banned = wait_until(LONG, || {
            let r = node.call("transfer_peers", json!({ "content_hash": id }));
            r["banned"]
                .as_array()
                .is_some_and(|b| b.iter().any(|a| a == peer.as_str()))
        });
        assert!(banned, "{what}: the peer was not banned");
        let r = node.call("cancel_transfer", json!({ "content_hash": id }));
        assert_eq!(r["status"], "success", "{what}: {r}");
    }
    // Nothing was written: not in the output folder, not beside it, not in /tmp.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    assert_eq!(fs::read_dir(tmp.path().join("box")).unwrap().count(), 1);
    assert!(!tmp.path().join("box/escape.txt").exists());
    assert_eq!(node.status()["node_id"], node.node_id.as_str());
}

/// A file of a shared folder edited after the folder was added: the node notices at the
/// first read of it, sends none of its bytes, and stops sharing the folder (as for a file;
/// the user adds the folder again to share what it holds now).
#[test]
fn a_folder_whose_file_changed_is_no_longer_served() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("pack");
    let files = make_pack(&pack, 300_000);
    let seeder = Node::start(&tmp.path().join("seeder"), &[]);
    let leecher = Node::start(
        &tmp.path().join("leecher"),
        &["--bootstrap", &seeder.addr()],
    );
    let id = add(&seeder, &pack);
    wait_for_provider(&leecher, &id);
    // Same size, other bytes: only the stamp (mtime, ctime) tells.
    std::thread::sleep(Duration::from_millis(20));
    let changed = &files[0].0;
    fs::write(pack.join(changed), vec![7u8; files[0].1.len()]).unwrap();

    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let req = json!({ "type": "local_request_file",
                      "payload": { "content_hash": id, "output_dir": out } });
    let api = leecher.api;
    std::thread::spawn(move || common::call_timeout(api, &req, LONG));
    let withdrawn = wait_until(LONG, || {
        let r = seeder.call("local_list_content", json!({}));
        !r["content_hashes"].as_array().unwrap().contains(&json!(id))
    });
    assert!(withdrawn, "the seeder still shares the changed folder");
    let r = leecher.call("cancel_transfer", json!({ "content_hash": id }));
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "no folder was made");
}

/// `peershare get ID -o OUT --only GLOB...` on `node`; the path it printed.
fn get_only(node: &Node, id: &str, out: &Path, globs: &[&str]) -> PathBuf {
    let mut args = vec!["get", id, "-o", out.to_str().unwrap()];
    for g in globs {
        args.extend(["--only", g]);
    }
    let a = api(node);
    args.extend(["--api", &a]);
    let o = peershare(None, &args);
    assert!(
        o.status.success(),
        "get: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    PathBuf::from(text(&o.stdout).trim())
}

/// `get --only`: part of a folder is fetched (nothing else crosses the wire), placed under
/// the folder's name with only the selected files, shared on as a partial copy that keeps
/// serving what it has after a restart; bad globs are refused with the reason.
#[test]
fn only_part_of_a_folder_is_fetched_and_served_on() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("pack");
    make_pack(&pack, 700_000);
    let mut seeder = Node::start(&tmp.path().join("seeder"), &[]);
    let mid_dir = tmp.path().join("mid");
    let mut mid = Node::start(&mid_dir, &["--bootstrap", &seeder.addr()]);
    let id = add(&seeder, &pack);
    wait_for_provider(&mid, &id);

    let o = peershare(None, &["get", &id, "--only", "../x", "--api", &api(&mid)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--only: bad glob"),
        "{}",
        text(&o.stderr)
    );
    let r = mid.call(
        "local_request_file",
        json!({ "content_hash": id, "only": ["a//b"] }),
    );
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("field `only`"),
        "{r}"
    );
    let r = mid.call(
        "local_request_file",
        json!({ "content_hash": id, "only": [] }),
    );
    assert_eq!(r["status"], "error", "{r}");

    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let got = get_only(&mid, &id, &out, &["Kicks/**", "README.txt"]);
    assert_eq!(got, out.join("pack"));
    let mut found = Vec::new();
    list(&got, &got, &mut found);
    found.sort();
    assert_eq!(
        found,
        [
            "Kicks/Kick 01.wav",
            "Kicks/Kick 02.wav",
            "Kicks/Sub/Deep.wav",
            "README.txt"
        ],
        "only the selected files"
    );
    for p in &found {
        assert_eq!(
            fs::read(got.join(p)).unwrap(),
            fs::read(pack.join(p)).unwrap(),
            "{p}"
        );
    }
    // The 700 KB loop was never sent: only the selected ~150 KB (plus framing) were.
    assert!(up_total(&seeder) < 400_000, "{}", up_total(&seeder));
    // Listed as a part: 4 of the 6 files (the empty file was not selected).
    let ls = text(&peershare(None, &["ls", "--api", &api(&mid)]).stdout);
    assert!(ls.contains("pack/ (4 of 6 files: a part)"), "{ls}");

    // A partial copy is shared on, and still after a restart; the seeder goes away.
    mid.kill();
    let mid = Node::start(&mid_dir, &["--bootstrap", &seeder.addr()]);
    let all = mid.call(
        "local_request_content_info",
        json!({ "content_hash": "all_available_content" }),
    );
    let entry = &all["available_content"][0];
    assert_eq!(
        (&entry["num_files"], &entry["files_here"]),
        (&json!(6), &json!(4)),
        "{all}"
    );
    seeder.kill();
    let (third, out3) = third_node(tmp.path(), &mid, &id, "out3");
    let got3 = get_only(&third, &id, &out3, &["Kicks/Sub"]);
    assert_eq!(
        fs::read(got3.join("Kicks/Sub/Deep.wav")).unwrap(),
        fs::read(pack.join("Kicks/Sub/Deep.wav")).unwrap()
    );
    let mut found = Vec::new();
    list(&got3, &got3, &mut found);
    assert_eq!(found, ["Kicks/Sub/Deep.wav"]);
}
