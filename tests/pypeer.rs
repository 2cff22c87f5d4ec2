//! The learners' Python peer (tools/pypeer/pypeer.py, written from protocol-spec/ alone) as
//! an interop partner of the Rust node: it passes every conformance case, downloads a file
//! the node shares (found through the node's DHT) and serves one the node downloads (the node
//! finds it through the announce pypeer made to it). Real processes, real sockets, every wire
//! connection a secure session (secure.md); skipped, saying why, when python3 or its packages
//! noiseprotocol and cryptography are missing (failed instead under PEERSHARE_REQUIRE_PYPEER,
//! which .ci/run sets).
//!
//! Also: pypeer's wire decoder gives every vector of `protocol-spec/vectors/wire*.txt` the
//! codec's answer (a frame, or the named error), PEERS with its node IDs included.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::cli::peershare;
use common::pypeer::{have_packages, have_python, pypeer_path, serve};
use common::{bin, seeded_bytes, Node};
use serde_json::json;

#[test]
fn pypeer_conforms_and_trades_files_with_the_node_both_ways() {
    if !have_python() {
        println!("SKIPPED: python3 is not installed (tools/pypeer needs it)");
        return;
    }
    if !have_packages() {
        // .ci/run installs them and sets the variable: there a missing package fails.
        assert!(
            std::env::var_os("PEERSHARE_REQUIRE_PYPEER").is_none(),
            "pypeer needs the Python packages noiseprotocol and cryptography"
        );
        println!("SKIPPED: pypeer needs `pip install noiseprotocol` (Noise, secure.md)");
        return;
    }
    let t = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&t.path().join("node"), &[]);

    // pypeer serves a 12-chunk file; the suite finds nothing to fault.
    let served = t.path().join("served.bin");
    let bytes = seeded_bytes(11 * 262_144 + 1000, 18);
    std::fs::write(&served, &bytes).expect("write");
    let (_py, listen, content) = serve(&served, &node.addr());
    let out = Command::new(bin())
        .args(["conform", &listen, "--content", &content])
        .output()
        .expect("run conform");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pypeer fails conformance:\n{stdout}");

    // The node downloads it: pypeer announced itself to the node's DHT.
    let dl = t.path().join("dl");
    std::fs::create_dir_all(&dl).expect("mkdir");
    let api = node.api.to_string();
    let dl_s = dl.display().to_string();
    let got = peershare(None, &["get", &content, "--api", &api, "-o", &dl_s]);
    assert!(got.status.success(), "peershare get: {got:?}");
    assert_eq!(std::fs::read(dl.join("served.bin")).expect("read"), bytes);

    // pypeer downloads a file the node shares, found through the node's DHT.
    let shared = t.path().join("shared.bin");
    let bytes2 = seeded_bytes(700_000, 81);
    std::fs::write(&shared, &bytes2).expect("write");
    let r = node.call(
        "local_add_file",
        json!({ "filepath": shared.display().to_string() }),
    );
    let id = r["file_hash"].as_str().expect("file_hash").to_owned();
    let pdl = t.path().join("pdl");
    std::fs::create_dir_all(&pdl).expect("mkdir");
    let get = Command::new("python3")
        .arg(pypeer_path())
        .args(["get", &id, "--bootstrap", &node.addr(), "--out"])
        .arg(&pdl)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn pypeer get");
    let status = common::cli::wait_bounded(get, "pypeer get");
    assert!(status.success(), "pypeer get failed");
    assert_eq!(std::fs::read(pdl.join("shared.bin")).expect("read"), bytes2);
}

/// Decodes every wire vector with pypeer's `check_header` and `decode_body`; prints one line
/// per disagreement and exits 1 if there is any.
const PY_VECTORS: &str = r##"
import struct, sys
import pypeer as P

def dec(b):
    P.check_header(b)
    n = struct.unpack(">I", b[:4])[0]
    if len(b) < 5 or len(b) < 4 + n:
        return "incomplete"
    return P.decode_body(b[4], b[5:4 + n])

def lines(name):
    with open("protocol-spec/vectors/" + name) as f:
        return [l.split() for l in f if l.strip() and not l.startswith("#")]

bad, count = [], 0
for name, hx in lines("wire.txt"):
    count += 1
    try:
        if dec(bytes.fromhex(hx)) == "incomplete":
            bad.append(f"{name}: incomplete")
    except P.DecodeError as e:
        bad.append(f"{name}: {e}")
for name, kind, hx in lines("wire-invalid.txt"):
    count += 1
    try:
        bad.append(f"{name}: decoded, expected {kind}: {dec(bytes.fromhex(hx))}")
    except P.DecodeError as e:
        if e.kind != kind:
            bad.append(f"{name}: {e.kind}, expected {kind}")
print("\n".join(bad) or f"{count} vectors agree")
sys.exit(1 if bad else 0)
"##;

#[test]
fn pypeer_decodes_every_wire_vector_like_the_codec() {
    if !have_python() || !have_packages() {
        assert!(
            std::env::var_os("PEERSHARE_REQUIRE_PYPEER").is_none(),
            "pypeer needs python3 and the packages noiseprotocol and cryptography"
        );
        println!("SKIPPED: pypeer needs python3, noiseprotocol and cryptography");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args(["-c", PY_VECTORS])
        .current_dir(root)
        .env("PYTHONPATH", root.join("tools/pypeer"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypeer disagrees with the vectors:\n{stdout}{stderr}"
    );
    println!("{stdout}");
}
