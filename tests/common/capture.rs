//! Live captures for tests: `dumpcap` on loopback, and what a capture holds read back with
//! tshark (TCP flows, UDP datagrams); secure sessions (protocol-spec/secure.md) opened with
//! a key log, as a learner's tools do.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use peershare::secure::{
    parse_keylog_line, KeyLogEntry, RecordOpener, LEN_PREFIX, MSG1_LEN, MSG2_LEN, MSG3_LEN,
};

/// A running `dumpcap`.
pub struct Capture {
    child: Child,
    file: PathBuf,
    /// What dumpcap wrote on stderr.
    log: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    /// Starts capturing on `lo` the UDP and TCP traffic of `ports` (with a 16 MiB buffer, so
    /// that a burst of PIECE segments is not dropped); Err says why it cannot.
    pub fn start(file: &Path, ports: &[u16]) -> Result<Capture, String> {
        let filter = format!(
            "(udp or tcp) and ({})",
            ports
                .iter()
                .map(|p| format!("port {p}"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        let mut child = Command::new("dumpcap")
            .args(["-i", "lo", "-q", "-B", "16", "-f", &filter, "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start dumpcap: {e}"))?;
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let started = line.starts_with("Capturing on");
                log2.lock().unwrap().push(line);
                if started {
                    let _ = tx.send(());
                }
            }
        });
        // Its first lines say what is wrong; the rest is advice on permissions.
        let said = |log: &Mutex<Vec<String>>| {
            let lines = log.lock().unwrap();
            let first: Vec<&str> = lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .take(3)
                .collect();
            first.join(" / ")
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "dumpcap did not start capturing within 30 s: {}",
                said(&log)
            ));
        }
        // dumpcap says "Capturing on" before it opens the device: a missing permission
        // shows up just after.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(Some(st)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "dumpcap cannot capture on lo ({st}): {}",
                    said(&log)
                ));
            }
        }
        Ok(Capture {
            child,
            file: file.to_path_buf(),
            log,
        })
    }

    /// Stops the capture cleanly (SIGINT, as Ctrl-C) so the file is complete.
    pub fn stop(self) -> PathBuf {
        self.stop_counted().0
    }

    /// Stops the capture as `stop` does, and says how many packets the kernel or dumpcap
    /// dropped (its closing "received/dropped" line) plus the holes tshark finds in its TCP
    /// streams: a capture with holes says nothing about the nodes.
    pub fn stop_counted(mut self) -> (PathBuf, u64) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let st = self.child.wait().expect("wait for dumpcap");
        assert!(
            st.success(),
            "dumpcap exited with {st}: {}",
            self.log.lock().unwrap().join(" / ")
        );
        // The reader thread may still be taking the last lines: wait for it briefly.
        let mut dropped = None;
        for _ in 0..50 {
            dropped = self.log.lock().unwrap().iter().find_map(|l| dropped_of(l));
            if dropped.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Holes the closing line does not count: on a loaded machine loopback segments go
        // missing mid-stream with "0 dropped" (a 10 MiB transfer lost 120 to 250 KB in 5 of
        // 14 runs); tshark sees each as a segment after one it never saw.
        let holes = tshark_rows(&self.file, "tcp.analysis.lost_segment", &["frame.number"]).len();
        (self.file.clone(), dropped.unwrap_or(0) + holes as u64)
    }
}

/// The drops of dumpcap's closing line "Packets received/dropped on interface
/// 'Loopback: lo': R/D (pcap:P/dumpcap:Q/flushed:F/ps_ifdrop:I) (0.0%)".
fn dropped_of(line: &str) -> Option<u64> {
    let rest = line.split("received/dropped on interface").nth(1)?;
    let counts = rest.rsplit("': ").next()?.split_whitespace().next()?;
    counts.split('/').nth(1)?.parse().ok()
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One TCP connection of a capture: the bytes each way, in order (retransmissions left out).
pub struct TcpFlow {
    /// The side that sent first.
    pub a: SocketAddr,
    /// The other side.
    pub b: SocketAddr,
    /// Bytes from `a` to `b`.
    pub a_to_b: Vec<u8>,
    /// Bytes from `b` to `a`.
    pub b_to_a: Vec<u8>,
}

fn tshark_rows(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn sock(ip: &str, port: &str) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("address")
}

/// Every TCP connection of `pcap` with payload.
pub fn tcp_flows(pcap: &Path) -> Vec<TcpFlow> {
    let rows = tshark_rows(
        pcap,
        "tcp.len > 0 && !tcp.analysis.retransmission",
        &[
            "tcp.stream",
            "ip.src",
            "tcp.srcport",
            "ip.dst",
            "tcp.dstport",
            "tcp.payload",
        ],
    );
    let mut flows: BTreeMap<u64, TcpFlow> = BTreeMap::new();
    for r in rows {
        let [stream, sip, sport, dip, dport, payload] = &r[..] else {
            continue;
        };
        let (src, dst) = (sock(sip, sport), sock(dip, dport));
        let bytes = hex::decode(payload.replace(':', "")).expect("payload hex");
        let f = flows
            .entry(stream.parse().unwrap())
            .or_insert_with(|| TcpFlow {
                a: src,
                b: dst,
                a_to_b: Vec::new(),
                b_to_a: Vec::new(),
            });
        if src == f.a {
            f.a_to_b.extend_from_slice(&bytes);
        } else {
            f.b_to_a.extend_from_slice(&bytes);
        }
    }
    flows.into_values().collect()
}

/// Every UDP datagram of `pcap`: (source, destination, payload).
pub fn udp_datagrams(pcap: &Path) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    tshark_rows(
        pcap,
        "udp.length > 8",
        &[
            "ip.src",
            "udp.srcport",
            "ip.dst",
            "udp.dstport",
            "udp.payload",
        ],
    )
    .into_iter()
    .filter_map(|r| match &r[..] {
        [sip, sport, dip, dport, payload] => Some((
            sock(sip, sport),
            sock(dip, dport),
            hex::decode(payload.replace(':', "")).ok()?,
        )),
        _ => None,
    })
    .collect()
}

/// The key log lines of a file.
pub fn read_keylog(path: &Path) -> Vec<KeyLogEntry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_keylog_line)
        .collect()
}

/// A flow's session opened with the key log: (the initiator's address, the plaintext it
/// sent, the plaintext it received). Err for a flow that is not a session (a plaintext
/// PROBE or RELAY) or whose keys are not in the log.
pub fn open_flow(
    f: &TcpFlow,
    keys: &[KeyLogEntry],
) -> Result<(SocketAddr, Vec<u8>, Vec<u8>), String> {
    // The initiator's stream starts with msg1 (37 bytes) and then msg3 (162).
    let (init, i2r, r2i) = if f.a_to_b.starts_with(&[0, 37]) {
        (f.a, &f.a_to_b, &f.b_to_a)
    } else if f.b_to_a.starts_with(&[0, 37]) {
        (f.b, &f.b_to_a, &f.a_to_b)
    } else {
        return Err(format!("{} <-> {}: no msg1: not a session", f.a, f.b));
    };
    let eph = i2r.get(LEN_PREFIX..LEN_PREFIX + 32).ok_or("short msg1")?;
    let k = keys
        .iter()
        .find(|k| k.ephemeral[..] == *eph)
        .ok_or_else(|| format!("{init}: no key log line for this session"))?;
    let open = |stream: &[u8], skip: usize, key: &[u8; 32]| -> Result<Vec<u8>, String> {
        let mut o = RecordOpener::new(k.cipher, key);
        let mut rest = stream.get(skip..).ok_or("short handshake")?;
        let mut out = Vec::new();
        while rest.len() >= 2 {
            let n = LEN_PREFIX + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let Some(body) = rest.get(LEN_PREFIX..n) else {
                break; // the capture ended inside a record
            };
            out.extend(
                o.open(body)
                    .ok_or("a record does not open with the logged key")?,
            );
            rest = &rest[n..];
        }
        Ok(out)
    };
    let sent = open(
        i2r,
        (LEN_PREFIX + MSG1_LEN) + (LEN_PREFIX + MSG3_LEN),
        &k.initiator_to_responder,
    )?;
    let got = open(r2i, LEN_PREFIX + MSG2_LEN, &k.responder_to_initiator)?;
    Ok((init, sent, got))
}

/// Says that a capture test did not run and why, or fails where it must run (CI sets
/// PEERSHARE_REQUIRE_TSHARK=1).
pub fn skip(test: &str, why: &str) {
    if std::env::var("PEERSHARE_REQUIRE_TSHARK").is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {why} (PEERSHARE_REQUIRE_TSHARK=1 requires it to)");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {test}: {why}\n").as_bytes(),
    );
}

/// A port free for both UDP and TCP on 127.0.0.1 (a capture filter names it).
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}
