//! `peershare decode --pcap` on a real capture (dumpcap on lo) of a real transfer between two
//! nodes run with `PEERSHARE_KEYLOG` (protocol-spec/secure.md section 7):
//!
//! - with `--keylog`, each session's handshake messages are explained and its records opened
//!   into HANDSHAKE, BITFIELD, REQUEST and PIECE frames, and the PIECEs are the file;
//! - without it, the same sessions show their handshake and records, and no frame;
//! - the capture written with `-w` is plaintext: tshark with the Lua dissector
//!   (tools/wireshark/peershare.lua) shows its wire frames.
//!
//! SKIPPED, with the reason, without tshark (with Lua) or the right to capture on lo;
//! required in CI (PEERSHARE_REQUIRE_TSHARK=1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::capture::free_port;
use common::{seeded_bytes, Node};
use peershare::proto::wire::{decode_frame, Message};
use serde_json::{json, Value};

const TEST: &str = "decode_capture::a_captured_transfer_decodes_with_the_key_log";

fn skip(why: &str) {
    common::capture::skip(TEST, why)
}

fn decode(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("decode")
        .args(args)
        .output()
        .expect("run peershare decode");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a transfer of `data` from a to b under capture; the capture and the key log. A
/// capture that dropped packets is made again (at most twice).
fn captured_transfer(dir: &Path, data: &[u8]) -> Option<(PathBuf, PathBuf)> {
    let src = dir.join("shared.bin");
    std::fs::write(&src, data).unwrap();
    for attempt in 1..=3 {
        let (pa, pb) = (free_port(), free_port());
        let pcap = dir.join(format!("cap{attempt}.pcapng"));
        let capture = match common::capture::Capture::start(&pcap, &[pa, pb]) {
            Ok(c) => c,
            Err(why) => {
                skip(&why);
                return None;
            }
        };
        let keylog = dir.join(format!("keys{attempt}.log"));
        let start = |name: &str, port: u16| {
            Node::try_start_env(
                None,
                &dir.join(format!("{name}{attempt}")),
                &["--port", &port.to_string()],
                None,
                &[("PEERSHARE_KEYLOG", &keylog)],
            )
            .expect("node")
        };
        let (a, b) = (start("a", pa), start("b", pb));
        let r = a.call("local_add_file", json!({ "filepath": src }));
        assert_eq!(r["status"], "success", "{r}");
        let id = r["file_hash"].as_str().unwrap().to_string();
        let r = b
            .call_timeout(
                "local_request_file",
                json!({ "content_hash": id, "output_dir": dir.join(format!("out{attempt}")),
                        "peers": [a.listen.to_string()] }),
                Duration::from_secs(120),
            )
            .unwrap();
        assert_eq!(r["status"], "success", "{r}");
        assert!(std::fs::read(r["file_path"].as_str().unwrap()).unwrap() == data);
        std::thread::sleep(Duration::from_millis(300));
        drop((a, b));
        let (pcap, dropped) = capture.stop_counted();
        if dropped == 0 {
            return Some((pcap, keylog));
        }
        eprintln!("{TEST}: the capture dropped {dropped} packets; running the transfer again");
    }
    panic!("every capture dropped packets");
}

/// Frames of a plaintext stream.
fn frames(plain: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = plain;
    while let Ok(Some((m, used))) = decode_frame(rest) {
        out.push(m);
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "the opened stream ends inside a frame");
    out
}

#[test]
fn a_captured_transfer_decodes_with_the_key_log() {
    match Command::new("tshark").arg("-v").output() {
        Err(e) => return skip(&format!("tshark not found ({e}): apt-get install tshark")),
        Ok(o) if !String::from_utf8_lossy(&o.stdout).contains("with Lua") => {
            return skip("this tshark is built without Lua")
        }
        Ok(_) => {}
    }
    let t = tempfile::tempdir().unwrap();
    // Three chunks or so: a small transfer, several records per PIECE.
    let data = seeded_bytes(600_000, 17);
    let Some((pcap, keylog)) = captured_transfer(t.path(), &data) else {
        return;
    };
    let plain = t.path().join("plain.pcapng");
    // PEERSHARE_TEST_KEEP=DIR keeps the capture and the key log, to look at by hand.
    if let Some(keep) = std::env::var_os("PEERSHARE_TEST_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&pcap, keep.join("capture.pcapng")).unwrap();
        std::fs::copy(&keylog, keep.join("keys.log")).unwrap();
    }

    // With the key log: the frames, and the PIECEs are the file.
    let (code, out, err) = decode(&[
        "--pcap".as_ref(),
        pcap.as_os_str(),
        "--keylog".as_ref(),
        keylog.as_os_str(),
        "--json".as_ref(),
        "-w".as_ref(),
        plain.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    let sessions: Vec<&Value> = rep["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "secure")
        .collect();
    assert!(
        !sessions.is_empty(),
        "no secure session in the capture: {out}"
    );
    let (mut names, mut pieces) = (Vec::new(), std::collections::BTreeMap::new());
    for s in &sessions {
        assert_eq!(s["keys"], "found", "a session without its keys: {s}");
        let hs: Vec<&str> = s["handshake"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(hs, ["msg1", "msg2", "msg3"]);
        for d in s["directions"].as_array().unwrap() {
            assert!(d["stopped"].is_null(), "{}", d["stopped"]);
            let plain = hex::decode(d["plaintext"].as_str().unwrap()).unwrap();
            for m in d["frames"]["messages"].as_array().into_iter().flatten() {
                names.push(m["name"].as_str().unwrap().to_string());
            }
            for m in frames(&plain) {
                if let Message::Piece { chunk, data } = m {
                    pieces.insert(chunk, data);
                }
            }
        }
    }
    for want in ["HANDSHAKE", "BITFIELD", "REQUEST", "PIECE"] {
        assert!(
            names.iter().any(|n| n == want),
            "no {want} frame: {names:?}"
        );
    }
    let whole: Vec<u8> = pieces.into_values().flatten().collect();
    assert!(whole == data, "the PIECEs opened are not the file");

    // The text form says the same, for a reader.
    let (code, text, err) = decode(&[
        "--pcap".as_ref(),
        pcap.as_os_str(),
        "--keylog".as_ref(),
        keylog.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "handshake msg1",
        "handshake msg2",
        "handshake msg3",
        "opened into",
        "PIECE chunk=",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }

    // Without the key log: the handshake and the ciphertext, no frame.
    let (code, out, err) = decode(&["--pcap".as_ref(), pcap.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    for s in rep["sessions"].as_array().unwrap() {
        if s["kind"] == "secure" {
            assert_eq!(s["keys"], "no_key_log");
            assert_eq!(s["handshake"].as_array().unwrap().len(), 3);
            for d in s["directions"].as_array().unwrap() {
                assert!(d["frames"].is_null() && d["plaintext"] == "");
                assert!(!d["records"].as_array().unwrap().is_empty());
            }
        }
    }

    // The decrypted capture under tshark with the dissector: the wire frames.
    let lua = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/wireshark/peershare.lua");
    let out = Command::new("tshark")
        .args(["-n", "-2", "-X"])
        .arg(format!("lua_script:{}", lua.display()))
        .arg("-r")
        .arg(&plain)
        .args([
            "-Y",
            "peershare.wire.type_name",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
        ])
        .args(["-e", "peershare.wire.type_name"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    for want in ["HANDSHAKE", "BITFIELD", "REQUEST", "PIECE"] {
        assert!(
            shown.contains(want),
            "tshark shows no {want} frame in the decrypted capture:\n{shown}"
        );
    }
    // And on the original capture only records, never a frame.
    let out = Command::new("tshark")
        .args(["-n", "-2", "-X"])
        .arg(format!("lua_script:{}", lua.display()))
        .arg("-r")
        .arg(&pcap)
        .args(["-Y", "peershare.wire.type_name", "-T", "fields"])
        .args(["-e", "peershare.wire.type_name"])
        .output()
        .expect("run tshark");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains("PIECE"),
        "tshark shows frames in the encrypted capture:\n{shown}"
    );
}
