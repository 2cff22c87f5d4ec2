//! Identity keys and secure sessions (protocol-spec/secure.md) with real processes and real
//! sockets:
//!
//! - `identity_key_is_kept_and_an_old_data_dir_gets_a_new_one_once`: a data dir of the
//!   previous version (a node ID in state.json, no key) starts with a new identity and says so
//!   once; the next start keeps it silently; a key file readable by others is warned about;
//!   a corrupt one stops the node with an error naming it, and is left as it was.
//! - `a_node_claiming_another_node_s_id_is_refused_at_the_handshake`: a session whose
//!   HANDSHAKE frame names another node's ID is closed without an answer, and a proof made
//!   with another node's identity key fails the handshake; both counted in `status`.
//! - `a_dial_to_a_peer_learnt_by_pex_checks_its_node_id`: a peer's PEERS lists two
//!   addresses with node IDs; the node dials both, hangs up on the one where another node
//!   answers (counted as `id_mismatch`) and says HANDSHAKE to the one that proves the listed
//!   ID (wire.md section 4.16).
//! - `a_previous_version_peer_is_refused`: a plaintext version 1 HANDSHAKE is refused and
//!   counted.
//! - `a_byte_rewritten_on_the_path_fails_that_connection_and_the_download_completes`: a man
//!   in the middle that flips one byte of one seeder's stream makes each connection through
//!   it fail closed (counted as a refused record), and the download completes from an honest
//!   seeder.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::capture::{free_port, skip};
use common::{fresh_keys, seeded_bytes, wait_until, wire_connect_as, Node};
use peershare::id::Id;
use peershare::proto::wire::{decode_frame, Handshake, Message, PexPeer};
use serde_json::json;

fn secure_counts(node: &Node) -> serde_json::Value {
    node.status()["secure"].clone()
}

fn add_file(node: &Node, path: &Path) -> String {
    let r = node.call("local_add_file", json!({ "filepath": path }));
    assert_eq!(r["status"], "success", "{r}");
    r["file_hash"].as_str().unwrap().to_string()
}

/// Runs `peershare run` on `data` expecting it to stop at once; its stderr.
fn run_expecting_failure(data: &Path) -> String {
    let out = Command::new(common::bin())
        .args(["run", "--data-dir"])
        .arg(data)
        .args(["--bind", "127.0.0.1", "--port", "0", "--api-port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the node started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts a node logging (info) to a file; the node and the file's path.
fn start_logged(data: &Path, name: &str) -> (Node, std::path::PathBuf) {
    let log = data.parent().unwrap().join(name);
    let f = std::fs::File::create(&log).unwrap();
    (Node::start_logging_to(data, &[], Stdio::from(f)), log)
}

#[test]
fn identity_key_is_kept_and_an_old_data_dir_gets_a_new_one_once() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("n");
    std::fs::create_dir_all(&data).unwrap();
    let old = "05".repeat(32);
    let state = json!({ "version": 1, "node_id": old, "contacts": [], "provided": [] });
    std::fs::write(data.join("state.json"), state.to_string()).unwrap();

    let (mut node, log) = start_logged(&data, "first.log");
    let id = node.node_id.clone();
    node.terminate();
    let first = std::fs::read_to_string(&log).unwrap();
    assert_ne!(id, old);
    assert!(
        first.contains("earlier version") && first.contains(&id) && first.contains(&old),
        "the first start says the ID changed, naming both: {first}"
    );
    let key = data.join("identity.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The ID is SHA-256 of the key file's public key.
    let text = std::fs::read_to_string(&key).unwrap();
    let identity = peershare::identity::keyfile::parse(&text).unwrap();
    assert_eq!(identity.node_id().to_hex(), id);

    let (mut node, log) = start_logged(&data, "second.log");
    assert_eq!(node.node_id, id, "the identity is kept");
    node.terminate();
    let second = std::fs::read_to_string(&log).unwrap();
    assert!(!second.contains("earlier version"), "said twice: {second}");
    assert!(!second.contains("identity key file"), "{second}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (mut node, log) = start_logged(&data, "third.log");
        assert_eq!(node.node_id, id);
        node.terminate();
        let third = std::fs::read_to_string(&log).unwrap();
        assert!(
            third.contains("chmod 600"),
            "no warning for mode 644: {third}"
        );
    }

    std::fs::write(&key, "PEERSHARE-IDENTITY-ED25519-V1\nnot a key\n").unwrap();
    let err = run_expecting_failure(&data);
    assert!(
        err.contains("identity.key") && err.contains("refusing"),
        "a corrupt key file stops the node, named: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        "PEERSHARE-IDENTITY-ED25519-V1\nnot a key\n",
        "the corrupt key file is left as it was"
    );
}

/// Reads frames until the peer closes or `limit` passes: (frames, closed).
fn frames_until_close(s: &mut common::Wire, limit: Duration) -> (Vec<Message>, bool) {
    s.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 65536];
    while t0.elapsed() < limit {
        while let Ok(Some((m, used))) = decode_frame(&buf) {
            buf.drain(..used);
            got.push(m);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

#[test]
fn a_node_claiming_another_node_s_id_is_refused_at_the_handshake() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("f.bin");
    std::fs::write(&src, seeded_bytes(300_000, 3)).unwrap();
    let node = Node::start(&t.path().join("a"), &[]);
    let victim = Node::start(&t.path().join("v"), &[]);
    let content = Id::from_hex(&add_file(&node, &src)).unwrap();
    let victim_id = Id::from_hex(&victim.node_id).unwrap();

    // Honest: the HANDSHAKE names the proven ID, and is answered.
    let keys = fresh_keys();
    let mut s = wire_connect_as(node.listen, &keys).unwrap();
    let hs = Message::Handshake(Handshake::new(keys.node_id(), content, 0));
    let mut b = Vec::new();
    hs.encode(&mut b);
    s.write_all(&b).unwrap();
    let (got, _) = frames_until_close(&mut s, Duration::from_secs(2));
    assert!(
        matches!(got.first(), Some(Message::Handshake(h)) if h.node_id.to_hex() == node.node_id),
        "an honest peer is answered with the node's proven ID: {got:?}"
    );

    // A session of its own, then a HANDSHAKE naming the victim: closed, nothing said.
    let mut s = wire_connect_as(node.listen, &fresh_keys()).unwrap();
    let mut b = Vec::new();
    Message::Handshake(Handshake::new(victim_id, content, 0)).encode(&mut b);
    s.write_all(&b).unwrap();
    let (got, closed) = frames_until_close(&mut s, Duration::from_secs(10));
    assert!(closed && got.is_empty(), "claimed ID accepted: {got:?}");
    assert!(wait_until(Duration::from_secs(5), || secure_counts(&node)
        ["id_mismatch"]
        == 1));

    // The victim's identity key in the proof, signed by another key: the handshake fails.
    let victim_key = {
        let text = std::fs::read_to_string(t.path().join("v/identity.key")).unwrap();
        peershare::identity::keyfile::parse(&text).unwrap().public()
    };
    let forger = fresh_keys().claiming_identity_key(victim_key);
    let before = secure_counts(&node)["handshake_failures"].as_u64().unwrap();
    // The dialer's side ends with msg3, so it only learns of the refusal by the close.
    if let Ok(mut s) = wire_connect_as(node.listen, &forger) {
        let mut b = Vec::new();
        Message::Handshake(Handshake::new(forger.node_id(), content, 0)).encode(&mut b);
        let _ = s.write_all(&b);
        let (got, closed) = frames_until_close(&mut s, Duration::from_secs(10));
        assert!(
            closed && got.is_empty(),
            "a forged proof was answered: {got:?}"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || {
        secure_counts(&node)["handshake_failures"].as_u64().unwrap() > before
    }));

    // And as the accepting side: a node dialling a forger hangs up on it.
    let forger = Arc::new(fresh_keys().claiming_identity_key(victim_key));
    let (addr, th) = answer_dials(forger, 1);
    let out = t.path().join("out");
    let r = node.call_timeout(
        "local_request_file",
        json!({ "content_hash": Id::hash_of(b"x").to_hex(), "output_dir": out,
                "peers": [addr.to_string()] }),
        Duration::from_secs(3),
    );
    assert!(r.is_err() || r.unwrap()["status"] == "error");
    let dialled = th
        .join()
        .unwrap()
        .pop()
        .expect("the node never dialled the given peer");
    assert!(
        dialled.is_err(),
        "the node completed a session with a forger: {dialled:?}"
    );
    drop(victim);
}

/// What [`answer_dials`] saw, dial by dial.
type Answer = std::thread::JoinHandle<Vec<Result<Vec<Message>, String>>>;

/// Listens on 127.0.0.1 for up to `dials` connections, one after the other, runs the secure
/// handshake as `keys` on each and reads what the dialer sends for 2 s: its frames, or the
/// handshake's error. Gives up waiting for the next dial after 30 s.
fn answer_dials(keys: Arc<peershare::secure::LocalKeys>, dials: usize) -> (SocketAddr, Answer) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let th = std::thread::spawn(move || {
        let mut got = Vec::new();
        'dials: while got.len() < dials {
            for _ in 0..3000 {
                if let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    got.push(match common::Wire::accept(s, &keys) {
                        Ok(mut w) => Ok(frames_until_close(&mut w, Duration::from_secs(2)).0),
                        Err(e) => Err(e.to_string()),
                    });
                    continue 'dials;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            break;
        }
        got
    });
    (addr, th)
}

/// Issue 17: PEERS names each peer's node ID, and a dial to an address learnt from it expects
/// that ID. A fake seed lists two addresses: at one a node other than the listed one answers
/// (the dialer hangs up in the secure handshake, before any frame, and counts it), at the
/// other the listed node does (the dialer goes on to its HANDSHAKE). The seed also lists the
/// first address again with the ID of the node really there, after the wrong one: the lie,
/// named first, does not keep the node from it (wire.md section 4.16), the address is dialled
/// again expecting the ID its node proved.
#[test]
fn a_dial_to_a_peer_learnt_by_pex_checks_its_node_id() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("a"), &[]);
    let content = Id::hash_of(b"pex: a content nobody has");
    let (impostor, listed) = (Arc::new(fresh_keys()), Arc::new(fresh_keys()));
    let (wrong_at, wrong) = answer_dials(impostor.clone(), 2);
    let (right_at, right) = answer_dials(listed.clone(), 1);
    let claimed = Id::hash_of(b"pex: the node the seed says is there");
    assert_ne!(claimed, impostor.node_id());
    let peers = vec![
        PexPeer {
            addr: wrong_at,
            node_id: claimed,
        },
        PexPeer {
            addr: right_at,
            node_id: listed.node_id(),
        },
        PexPeer {
            addr: wrong_at,
            node_id: impostor.node_id(),
        },
    ];

    // The seed the node is told of: answers its HANDSHAKE, then lists the two.
    let seed = TcpListener::bind("127.0.0.1:0").unwrap();
    let seed_at = seed.local_addr().unwrap();
    let seed_th = std::thread::spawn(move || {
        let (s, _) = seed.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let keys = fresh_keys();
        let mut w = common::Wire::accept(s, &keys).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let hello = loop {
            if let Ok(Some((m, _))) = decode_frame(&buf) {
                break m;
            }
            let n = w.read(&mut chunk).unwrap();
            assert!(n > 0, "the node closed before its HANDSHAKE");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(matches!(hello, Message::Handshake(h) if h.content_id == content));
        let mut out = Vec::new();
        Message::Handshake(Handshake::new(keys.node_id(), content, 0)).encode(&mut out);
        Message::Peers(peers).encode(&mut out);
        w.write_all(&out).unwrap();
        // Stay connected while the node dials the others.
        frames_until_close(&mut w, Duration::from_secs(5));
    });
    let r = node.call_timeout(
        "local_request_file",
        json!({ "content_hash": content.to_hex(), "output_dir": t.path().join("out"),
                "peers": [seed_at.to_string()] }),
        Duration::from_secs(3),
    );
    assert!(r.is_err() || r.unwrap()["status"] == "error");
    seed_th.join().unwrap();

    let said_handshake = |frames: &[Message]| {
        matches!(frames.first(), Some(Message::Handshake(h))
            if h.content_id == content && h.node_id.to_hex() == node.node_id)
    };
    let wrong = wrong.join().unwrap();
    let first = wrong.first().expect("the node never dialled the impostor");
    assert!(
        first.is_err(),
        "the node completed a session with a node that is not the listed one: {first:?}"
    );
    let again = wrong
        .get(1)
        .expect("the address was not dialled again for the ID its node proved");
    assert!(
        again.as_ref().is_ok_and(|f| said_handshake(f)),
        "the second dial got no HANDSHAKE: {again:?}"
    );
    let right = right.join().unwrap();
    let frames = right
        .first()
        .expect("the node never dialled the listed node")
        .as_ref()
        .expect("the session with the listed node");
    assert!(
        said_handshake(frames),
        "the listed node got no HANDSHAKE: {frames:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || secure_counts(&node)
        ["id_mismatch"]
        == 1));
}

#[test]
fn a_previous_version_peer_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("a"), &[]);
    let mut s = TcpStream::connect(node.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = Vec::new();
    Message::Handshake(Handshake::new(Id([7; 32]), Id([8; 32]), 0)).encode(&mut b);
    s.write_all(&b).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "answered a v1 peer: {rest:?}");
    assert!(wait_until(Duration::from_secs(5), || secure_counts(&node)
        ["old_version"]
        == 1));
}

/// A TCP proxy to `to` that flips one byte of the upstream's answer at offset `at` (counted
/// from the start of each connection). Connections made through it are counted.
struct Mitm {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Mitm {
    fn start(to: SocketAddr, at: usize) -> Mitm {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let Ok((down, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let Ok(up) = TcpStream::connect(to) else {
                    continue;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                let _ = down.set_nonblocking(false);
                let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || copy(down, u2, usize::MAX));
                std::thread::spawn(move || copy(up, d2, at));
            }
        });
        Mitm { addr, conns, stop }
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, flipping the lowest bit of the byte at offset `flip`.
fn copy(mut from: TcpStream, mut to: TcpStream, flip: usize) {
    let mut buf = vec![0u8; 65536];
    let mut pos = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flip >= pos && flip < pos + n {
            buf[flip - pos] ^= 1;
        }
        pos += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_byte_rewritten_on_the_path_fails_that_connection_and_the_download_completes() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded_bytes(3 * 1024 * 1024 + 7, 5);
    let src = t.path().join("f.bin");
    std::fs::write(&src, &data).unwrap();
    // Two seeders that know nobody: the downloader learns them only from its request, one
    // through the man in the middle, which flips a byte 250 bytes into what the seeder
    // sends: past its msg2 (195 bytes), inside its first record.
    let bad = Node::start(&t.path().join("bad"), &[]);
    let good = Node::start(&t.path().join("good"), &[]);
    let id = add_file(&bad, &src);
    assert_eq!(add_file(&good, &src), id);
    let mitm = Mitm::start(bad.listen, 250);
    let leecher = Node::start(&t.path().join("l"), &[]);
    let out = t.path().join("out");
    let r = leecher
        .call_timeout(
            "local_request_file",
            json!({ "content_hash": id, "output_dir": out,
                    "peers": [mitm.addr.to_string(), good.listen.to_string()] }),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    let got = std::fs::read(r["file_path"].as_str().unwrap()).unwrap();
    assert!(got == data, "the downloaded file differs");
    assert!(
        mitm.conns.load(Ordering::SeqCst) >= 1,
        "nobody went through the proxy"
    );
    // The download can finish from the good seeder before the loop has read the altered
    // record on the proxied connection: wait for that count, up to 20 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let n = secure_counts(&leecher)["records_refused"].as_u64().unwrap();
        if n >= 1 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused >= 1,
        "the altered record was not refused: {}",
        secure_counts(&leecher)
    );
    // The seeder behind the proxy was not blamed for a bad chunk: no chunk ever got through.
    let s = leecher.status();
    assert_eq!(s["secure"]["id_mismatch"], 0, "{s}");
}

/// Windows of 32 bytes of `data` at every `step` bytes, keyed by their first 8 bytes.
fn windows(data: &[u8], step: usize) -> std::collections::HashMap<u64, Vec<[u8; 32]>> {
    let mut m: std::collections::HashMap<u64, Vec<[u8; 32]>> = Default::default();
    for i in (0..data.len().saturating_sub(31)).step_by(step) {
        let w: [u8; 32] = data[i..i + 32].try_into().unwrap();
        m.entry(u64::from_le_bytes(w[..8].try_into().unwrap()))
            .or_default()
            .push(w);
    }
    m
}

/// The first offset of `hay` where one of `w`'s windows starts.
fn find_window(hay: &[u8], w: &std::collections::HashMap<u64, Vec<[u8; 32]>>) -> Option<usize> {
    (0..hay.len().saturating_sub(31)).find(|&i| {
        let k = u64::from_le_bytes(hay[i..i + 8].try_into().unwrap());
        w.get(&k)
            .is_some_and(|v| v.iter().any(|x| x[..] == hay[i..i + 32]))
    })
}

/// A 10 MiB transfer captured on loopback: no 32-byte run of the file (sampled every 509
/// bytes, so any leaked stretch of 541 bytes or more is found) nor of the manifest (every
/// run) is in any TCP payload; with the nodes' key logs the same capture opens into frames
/// whose PIECEs are the file and whose MANIFEST_DATA is the manifest.
#[test]
fn a_capture_of_a_transfer_shows_no_plaintext_and_the_key_log_opens_it() {
    const TEST: &str =
        "secure::a_capture_of_a_transfer_shows_no_plaintext_and_the_key_log_opens_it";
    if Command::new("tshark").arg("-v").output().is_err() {
        return skip(TEST, "tshark not found (apt-get install tshark)");
    }
    let t = tempfile::tempdir().unwrap();
    let data = seeded_bytes(10 * 1024 * 1024, 77);
    let src = t.path().join("ten.bin");
    std::fs::write(&src, &data).unwrap();
    let manifest = peershare::content::manifest::Manifest::for_data(&data)
        .unwrap()
        .encode();
    // A capture that dropped packets (a loaded machine starves dumpcap) has holes in its
    // streams and proves nothing either way: that run is done again, at most twice.
    let mut attempt = 0;
    let (pcap, keylog) = loop {
        attempt += 1;
        let (pa, pb) = (free_port(), free_port());
        let pcap = t.path().join(format!("cap{attempt}.pcapng"));
        let capture = match common::capture::Capture::start(&pcap, &[pa, pb]) {
            Ok(c) => c,
            Err(why) => return skip(TEST, &why),
        };
        let keylog = t.path().join(format!("keys{attempt}.log"));
        let start = |dir: &str, port: u16| {
            Node::try_start_env(
                None,
                &t.path().join(dir),
                &["--port", &port.to_string()],
                None,
                &[("PEERSHARE_KEYLOG", &keylog)],
            )
            .expect("node")
        };
        // Fresh nodes each time: a second `b` would already hold the file.
        let (a, b) = (
            start(&format!("a{attempt}"), pa),
            start(&format!("b{attempt}"), pb),
        );
        let id = add_file(&a, &src);
        assert_eq!(id, Id::hash_of(&manifest).to_hex());
        let out = t.path().join(format!("out{attempt}"));
        let r = b
            .call_timeout(
                "local_request_file",
                json!({ "content_hash": id, "output_dir": out, "peers": [a.listen.to_string()] }),
                Duration::from_secs(120),
            )
            .unwrap();
        assert_eq!(r["status"], "success", "{r}");
        assert!(std::fs::read(r["file_path"].as_str().unwrap()).unwrap() == data);
        std::thread::sleep(Duration::from_millis(300));
        drop((a, b));
        let (pcap, dropped) = capture.stop_counted();
        if dropped == 0 {
            break (pcap, keylog);
        }
        assert!(
            attempt < 3,
            "every capture dropped packets ({dropped} the last time)"
        );
        eprintln!("{TEST}: the capture dropped {dropped} packets; running the transfer again");
    };

    let flows = common::capture::tcp_flows(&pcap);
    let total: usize = flows.iter().map(|f| f.a_to_b.len() + f.b_to_a.len()).sum();
    assert!(
        total >= data.len(),
        "the capture holds {total} TCP bytes, the file is bigger"
    );
    let file_w = windows(&data, 509);
    let manifest_w = windows(&manifest, 1);
    // The scanner finds what it looks for (a test that cannot fail proves nothing).
    assert_eq!(
        find_window(&data[5000..6000], &file_w).map(|i| i < 509),
        Some(true)
    );
    assert!(find_window(&manifest, &manifest_w).is_some());
    for f in &flows {
        for (dir, bytes) in [("->", &f.a_to_b), ("<-", &f.b_to_a)] {
            assert_eq!(
                find_window(bytes, &file_w),
                None,
                "{} {dir} {}: a run of the file in clear",
                f.a,
                f.b
            );
            assert_eq!(
                find_window(bytes, &manifest_w),
                None,
                "{} {dir} {}: a run of the manifest in clear",
                f.a,
                f.b
            );
        }
    }

    // With the key log: the frames, the manifest and every chunk.
    let keys = common::capture::read_keylog(&keylog);
    assert!(!keys.is_empty(), "the nodes wrote no key log line");
    let (mut pieces, mut manifest_seen) = (std::collections::BTreeMap::new(), Vec::new());
    let (mut opened, mut why) = (0, Vec::new());
    for f in &flows {
        let (sent, got) = match common::capture::open_flow(f, &keys) {
            Ok((_, sent, got)) => (sent, got),
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        opened += 1;
        for stream in [sent, got] {
            let mut rest = &stream[..];
            while let Ok(Some((m, used))) = decode_frame(rest) {
                match m {
                    Message::Piece { chunk, data } => {
                        pieces.insert(chunk, data);
                    }
                    Message::ManifestData { offset, data, .. } => {
                        manifest_seen.push((offset, data));
                    }
                    _ => {}
                }
                rest = &rest[used..];
            }
            assert!(rest.is_empty(), "the opened stream ends inside a frame");
        }
    }
    assert!(
        opened >= 1,
        "no session of the capture opened with the key log: {why:?}"
    );
    manifest_seen.sort();
    let m: Vec<u8> = manifest_seen.into_iter().flat_map(|(_, d)| d).collect();
    assert!(
        m == manifest,
        "the MANIFEST_DATA opened are not the manifest"
    );
    let whole: Vec<u8> = pieces.into_values().flatten().collect();
    assert!(whole == data, "the PIECEs opened are not the file");
}
