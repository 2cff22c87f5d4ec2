//! The conformance suite checked both ways (protocol-spec/conform.md): against a real
//! `peershare` node every case passes, and against deliberately broken peers (a proxy in
//! front of that node, `peershare conform --broken KIND`) exactly the cases for what they
//! break fail. Real processes, real sockets.
//!
//! Also, for an issue 18 defect (after reading a peer's ERROR COMPLETE the node wrote a CHOKE
//! to it, traced as `out tcp 0.0.0.0:0 CHOKE`; unit test
//! `node_core::tests::nothing_is_sent_after_reading_a_peers_error`): the node's trace must not
//! show a frame to an unknown peer.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{bin, Node};

/// Runs the suite against `target` with content shared through `node`'s API.
fn conform(target: &str, node: &Node, work: &Path) -> (Output, BTreeSet<String>) {
    let out = Command::new(bin())
        .args([
            "conform",
            target,
            "--api",
            &node.api.to_string(),
            "--work-dir",
        ])
        .arg(work)
        .output()
        .expect("run peershare conform");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    (out, failed)
}

/// A broken peer in front of `upstream`; returns the process and its address.
fn broken(kind: &str, upstream: &str) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["conform", "--broken", kind, upstream])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the broken peer");
    let stdout = child.stdout.take().expect("stdout");
    let mut addr = String::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(a) = line.strip_prefix("listen: ") {
            addr = a.to_owned();
        }
        if line == "ready" {
            break;
        }
    }
    assert!(!addr.is_empty(), "the broken peer did not start");
    (child, addr)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn conform_passes_against_peershare_and_fails_the_right_cases_against_broken_peers() {
    let t = tempfile::tempdir().expect("temp dir");
    let trace = std::fs::File::create(t.path().join("trace.log")).expect("trace file");
    let mut node = Node::start_logging_to(
        &t.path().join("node"),
        &["--trace", "-q"],
        Stdio::from(trace),
    );
    let target = node.addr();

    let (out, failed) = conform(&target, &node, t.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && failed.is_empty(),
        "peershare must pass every case:\n{stdout}"
    );
    // The only skips are the slow cases (they wait for the node's timeouts).
    let skips: Vec<&str> = stdout.lines().filter(|l| l.starts_with("SKIP ")).collect();
    assert!(
        skips.iter().all(|l| l.ends_with("run with --slow")),
        "{stdout}"
    );
    // The folder cases ran, on the folder the suite shared through the API.
    for case in [
        "folder-manifest-fetch",
        "folder-bitfield-chunk-count",
        "folder-every-piece",
    ] {
        assert!(
            stdout.contains(&format!("PASS {case} ")),
            "{case}\n{stdout}"
        );
    }

    let expected: [(&str, BTreeSet<String>); 3] = [
        (
            "silent-errors",
            set(&[
                "wire-unknown-content",
                "wire-manifest-request-past-end",
                "wire-piece-unrequested",
                "wire-length-0",
                "wire-length-over-max",
                "wire-unknown-type",
                "wire-have-trailing-bytes",
                "wire-bitfield-spare-bit",
                "wire-handshake-version-2",
                "wire-handshake-bad-magic",
                "wire-http-request",
                "rule-frame-before-handshake",
                "rule-second-handshake",
                "rule-request-before-bitfield",
                "rule-interested-before-bitfield",
                "rule-have-before-bitfield",
                "rule-second-bitfield",
                "rule-bitfield-wrong-count",
                "rule-metadata-after-bitfield",
                "rule-second-metadata",
                "rule-have-out-of-range",
                "rule-request-out-of-range",
                "rule-cancel-out-of-range",
                "rule-reject-out-of-range",
                "rule-probe-after-handshake",
                "rule-relay-ok-after-handshake",
            ]),
        ),
        (
            "lenient",
            set(&[
                "dht-malformed-dropped",
                "dht-version-2-dropped",
                "rule-second-bitfield",
                "rule-have-out-of-range",
                "rule-request-out-of-range",
                "rule-cancel-out-of-range",
                "rule-reject-out-of-range",
            ]),
        ),
        (
            "trusting",
            set(&[
                "secure-handshake-frame-names-proven-id",
                "rule-self-connection",
            ]),
        ),
    ];
    for (kind, want) in expected {
        let (mut proxy, addr) = broken(kind, &target);
        let (out, failed) = conform(&addr, &node, t.path());
        let _ = proxy.kill();
        let _ = proxy.wait();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{kind}: exit status\n{stdout}");
        assert_eq!(failed, want, "{kind}: the failed cases\n{stdout}");
    }

    node.kill();
    let trace = std::fs::read_to_string(t.path().join("trace.log")).unwrap_or_default();
    assert!(trace.contains(" tcp "), "the node traced no frame");
    let unknown: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(" tcp 0.0.0.0:0 "))
        .collect();
    assert!(
        unknown.is_empty(),
        "frames traced to an unknown peer: {unknown:?}"
    );
}

/// The cases that wait for a peer's timeouts (a HANDSHAKE never sent, keep-alives on a quiet
/// connection, the 120 s idle rule: wire.md section 9), skipped by the test above, against
/// peershare and the Python peer, every case in its own process at once (about 2 minutes,
/// beside the test above).
#[test]
fn slow_cases_pass_against_peershare_and_pypeer() {
    let t = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&t.path().join("node"), &[]);
    let target = node.addr();
    let mut targets = vec![("peershare", target.clone(), None)];
    let py = if common::pypeer::usable("slow conform cases against pypeer") {
        let served = t.path().join("served.bin");
        std::fs::write(&served, common::seeded_bytes(3 * 262_144 + 7, 5)).expect("write");
        let (py, listen, content) = common::pypeer::serve(&served, &target);
        targets.push(("pypeer", listen, Some(content)));
        Some(py)
    } else {
        None
    };
    let list = Command::new(bin())
        .args(["conform", "--list"])
        .output()
        .expect("list the cases");
    let slow: Vec<String> = [
        "wire-handshake-timeout",
        "wire-keepalive-sent",
        "wire-idle-timeout",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let listed = String::from_utf8_lossy(&list.stdout);
    for case in &slow {
        assert!(
            listed.contains(case.as_str()),
            "{case} is not a case:\n{listed}"
        );
    }
    let runs: Vec<_> = targets
        .iter()
        .flat_map(|(who, addr, content)| {
            slow.iter()
                .map(move |case| (who, addr.clone(), content.clone(), case.clone()))
        })
        .map(|(who, addr, content, case)| {
            let mut cmd = Command::new(bin());
            cmd.args(["conform", &addr, "--slow", "--only", &case]);
            match &content {
                Some(c) => cmd.args(["--content", c]),
                None => cmd.args(["--api", &node.api.to_string()]),
            };
            cmd.arg("--work-dir").arg(t.path());
            let child = cmd.stdout(Stdio::piped()).spawn().expect("run conform");
            (who, case, child)
        })
        .collect();
    let mut failures = Vec::new();
    for (who, case, child) in runs {
        let out = child.wait_with_output().expect("conform output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(&format!("PASS {case} ")) {
            failures.push(format!("{who}: {case}:\n{stdout}"));
        }
    }
    drop(py);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
