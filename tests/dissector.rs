//! The Wireshark dissector `tools/wireshark/peershare.lua`, run by tshark.
//!
//! - `spec_vectors_dissect_like_the_decoder`: every vector of `protocol-spec/vectors/` (DHT
//!   and wire, valid and invalid) wrapped into a pcap: a UDP datagram per DHT vector, a TCP
//!   connection per wire vector, on the default port 8001; the valid ones again on ports
//!   Wireshark knows nothing about, which only the heuristics can recognise. A valid vector
//!   must decode with the message type its name says and no error; an invalid one must be
//!   reported (expert info, `_ws.malformed`) with exactly the decode error its line names.
//!   Then the spec's vectors, `peershare decode --json` and the dissector must agree: the
//!   message name, the error kind, the byte offset of the error, and the values of the main
//!   fields.
//! - `wire_frames_are_reassembled`: all valid wire vectors back to back on one connection,
//!   once in a single segment (many frames per segment) and once cut into 7-byte segments
//!   (frames across segments): every frame is decoded exactly once, in order.
//! - `live_session_is_fully_dissected`: three real nodes on loopback, captured with dumpcap
//!   while they bootstrap, one shares a three-chunk file, another looks it up and downloads
//!   it. In the capture itself every TCP payload must be a secure session's message (msg1 to
//!   msg3, records: secure.md) and no wire frame may show but the dial-back PROBEs. Then the
//!   capture opened with the nodes' key log (PEERSHARE_KEYLOG; its records decrypted into a
//!   new pcap, as a learner would): every UDP and TCP packet with payload between their ports
//!   must be decoded as PeerShare, with no decode error and no expert error; every message
//!   type of the flow must appear, and the values the test knows (node IDs from the banners,
//!   the content ID, the manifest, the chunks) must be the ones the dissector shows.
//!
//! Needs `tshark` built with Lua and, for the live capture, the right to capture on `lo`
//! (root or CAP_NET_RAW). Without them a test prints a line saying it was SKIPPED and why,
//! straight to the terminal (the test harness does not capture it), and passes, unless
//! `PEERSHARE_REQUIRE_TSHARK=1` (set by `.ci/run`), when it fails instead.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::capture::Capture;
use common::vectors::{load_invalid, load_valid, prefix, read_spec_file};
use common::{wait_until, Node};
use serde_json::{json, Value};

/// The dissector under test.
fn lua_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/wireshark/peershare.lua")
}

/// Every decode error kind (overview.md, section 9).
const ALL_KINDS: [&str; 9] = peershare::proto::codec::DecodeError::KINDS;

/// `_ws.expert.severity` of an error (Wireshark's PI_ERROR).
const SEVERITY_ERROR: &str = "8388608";

// ----- skipping, loudly -------------------------------------------------------------------

/// Says on the terminal that `test` did not run and why, or fails when the environment
/// requires it to run (CI). Written to the process's stderr, not through `eprintln!`, so the
/// test harness's output capture cannot swallow it.
fn skip(test: &str, why: &str) {
    if std::env::var("PEERSHARE_REQUIRE_TSHARK").is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {why} (PEERSHARE_REQUIRE_TSHARK=1 requires it to)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Why tshark cannot run the dissector here, if it cannot.
fn tshark_missing() -> Option<String> {
    match Command::new("tshark").arg("-v").output() {
        Err(e) => Some(format!(
            "tshark not found ({e}); install it with `apt-get install tshark`"
        )),
        Ok(out) if !out.status.success() => Some(format!("`tshark -v` failed: {}", out.status)),
        Ok(out) => {
            let v = String::from_utf8_lossy(&out.stdout);
            if v.contains("with Lua") {
                None
            } else {
                Some("this tshark is built without Lua".into())
            }
        }
    }
}

// ----- a tiny pcap writer -------------------------------------------------------------------

/// A classic pcap file of raw IPv4 packets (LINKTYPE_RAW), one second apart.
struct Pcap {
    buf: Vec<u8>,
    packets: u32,
}

impl Pcap {
    fn new() -> Pcap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
        buf.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
        buf.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
        buf.extend_from_slice(&(4u32 << 20).to_le_bytes()); // snapshot length
        buf.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        Pcap { buf, packets: 0 }
    }

    /// Appends one IP packet; returns its frame number (1-based, as Wireshark counts).
    fn packet(&mut self, ip: &[u8]) -> u32 {
        self.packets += 1;
        let len = u32::try_from(ip.len()).expect("packet size");
        self.buf.extend_from_slice(&self.packets.to_le_bytes()); // seconds
        self.buf.extend_from_slice(&0u32.to_le_bytes()); // microseconds
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(ip);
        self.packets
    }

    fn udp(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> u32 {
        let mut udp = Vec::new();
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        udp.extend_from_slice(&0u16.to_be_bytes()); // no checksum (allowed over IPv4)
        udp.extend_from_slice(payload);
        self.packet(&ipv4(src, dst, 17, &udp))
    }

    fn tcp(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> u32 {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4); // header length: 5 words
        tcp.push(flags);
        tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&0u16.to_be_bytes()); // checksum (not checked by Wireshark)
        tcp.extend_from_slice(&0u16.to_be_bytes()); // urgent pointer
        tcp.extend_from_slice(payload);
        self.packet(&ipv4(src, dst, 6, &tcp))
    }

    /// A TCP connection: the three-way handshake, then `segments` from client to server.
    /// Returns the frame numbers of the data segments.
    fn tcp_connection(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        segments: &[&[u8]],
    ) -> Vec<u32> {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        let (mut cseq, sseq) = (1000u32, 5000u32);
        self.tcp(client, server, cseq, 0, SYN, &[]);
        self.tcp(server, client, sseq, cseq + 1, SYN | ACK, &[]);
        cseq += 1;
        self.tcp(client, server, cseq, sseq + 1, ACK, &[]);
        let mut frames = Vec::new();
        for s in segments {
            frames.push(self.tcp(client, server, cseq, sseq + 1, PSH | ACK, s));
            cseq += u32::try_from(s.len()).unwrap();
        }
        frames
    }

    /// A TCP connection carrying `c2s` from client to server and then `s2c` back, in
    /// segments an IPv4 packet holds.
    fn tcp_both_ways(&mut self, client: SocketAddr, server: SocketAddr, c2s: &[u8], s2c: &[u8]) {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        let (mut cseq, mut sseq) = (1000u32, 5000u32);
        self.tcp(client, server, cseq, 0, SYN, &[]);
        self.tcp(server, client, sseq, cseq + 1, SYN | ACK, &[]);
        cseq += 1;
        sseq += 1;
        self.tcp(client, server, cseq, sseq, ACK, &[]);
        for s in c2s.chunks(60_000) {
            self.tcp(client, server, cseq, sseq, PSH | ACK, s);
            cseq = cseq.wrapping_add(u32::try_from(s.len()).unwrap());
        }
        for s in s2c.chunks(60_000) {
            self.tcp(server, client, sseq, cseq, PSH | ACK, s);
            sseq = sseq.wrapping_add(u32::try_from(s.len()).unwrap());
        }
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, &self.buf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn ipv4(src: SocketAddr, dst: SocketAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let ip = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => v4.ip().octets(),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&u16::try_from(20 + payload.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]); // id, DF, TTL, protocol, checksum
    h.extend_from_slice(&ip(src));
    h.extend_from_slice(&ip(dst));
    let sum = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !u16::try_from((folded & 0xffff) + (folded >> 16)).unwrap();
    h[10..12].copy_from_slice(&check.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ----- running tshark -------------------------------------------------------------------------

/// One packet as tshark's `-T fields` shows it: every occurrence of every field asked for.
struct Row(BTreeMap<String, Vec<String>>);

impl Row {
    fn all(&self, f: &str) -> &[String] {
        self.0.get(f).map(Vec::as_slice).unwrap_or(&[])
    }
    fn first(&self, f: &str) -> Option<&str> {
        self.all(f).first().map(String::as_str)
    }
    fn has(&self, f: &str) -> bool {
        !self.all(f).is_empty()
    }
    fn num(&self, f: &str) -> Option<u64> {
        self.first(f).and_then(|v| v.parse().ok())
    }
    fn protocols(&self) -> Vec<&str> {
        self.first("frame.protocols")
            .unwrap_or("")
            .split(':')
            .collect()
    }
    /// The decode errors the dissector reported, and the expert errors of any protocol.
    fn errors(&self) -> Vec<String> {
        let mut e: Vec<String> = self.all("peershare.dht.error").to_vec();
        e.extend(self.all("peershare.wire.error").iter().cloned());
        for (sev, msg) in self
            .all("_ws.expert.severity")
            .iter()
            .zip(self.all("_ws.expert.message").iter())
        {
            if sev == SEVERITY_ERROR {
                e.push(format!("expert error: {msg}"));
            }
        }
        if self.has("_ws.malformed") {
            e.push("_ws.malformed".into());
        }
        e
    }
    /// The byte offset of the dissector's decode error ("Kind at byte N: ..." in its expert
    /// message).
    fn error_offset(&self, kind: &str) -> Option<u64> {
        let prefix = format!("{kind} at byte ");
        self.all("_ws.expert.message").iter().find_map(|m| {
            let rest = m.strip_prefix(&prefix)?;
            rest.split(':').next()?.parse().ok()
        })
    }
}

/// Fields every run asks for.
const BASE_FIELDS: [&str; 14] = [
    "frame.number",
    "frame.protocols",
    "udp.length",
    "tcp.len",
    "tcp.stream",
    "tcp.reassembled_in",
    "peershare.dht.type_name",
    "peershare.wire.type_name",
    "peershare.dht.error",
    "peershare.wire.error",
    "_ws.expert.severity",
    "_ws.expert.message",
    "_ws.malformed",
    "udp.srcport",
];

/// Runs tshark with the dissector on `pcap` (two passes, so that a segment knows which frame
/// reassembles it) and returns one row per packet.
fn tshark_fields(pcap: &Path, fields: &[&str], options: &[&str]) -> Vec<Row> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-2")
        .arg("-X")
        .arg(format!("lua_script:{}", lua_script().display()))
        .arg("-r")
        .arg(pcap);
    for o in options {
        cmd.arg("-o").arg(o);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "header=n",
        "-E",
        "separator=/t",
        "-E",
        "quote=n",
    ])
    .args(["-E", "occurrence=a", "-E", "aggregator=\u{1f}"]);
    let mut all: Vec<&str> = BASE_FIELDS.to_vec();
    all.extend(fields.iter().filter(|f| !BASE_FIELDS.contains(f)));
    for f in &all {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tshark failed on {}: {}\n{stderr}",
        pcap.display(),
        out.status
    );
    // A Lua error while loading the script is only a message: the capture is still read.
    assert!(
        !stderr.contains("Lua"),
        "tshark reported a problem with the dissector:\n{stderr}"
    );
    let text = String::from_utf8(out.stdout).expect("tshark output is UTF-8");
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), all.len(), "unexpected tshark line: {line:?}");
            Row(all
                .iter()
                .zip(cols)
                .map(|(f, v)| {
                    let vals = if v.is_empty() {
                        Vec::new()
                    } else {
                        v.split('\u{1f}').map(str::to_owned).collect()
                    };
                    (f.to_string(), vals)
                })
                .collect())
        })
        .collect()
}

/// UDP and TCP ports some Wireshark dissector is registered on (a heuristic can only be
/// tested on a port nobody else claims first).
fn registered_ports() -> BTreeSet<u16> {
    let out = Command::new("tshark")
        .args(["-G", "decodes"])
        .output()
        .expect("tshark -G decodes");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let table = cols.next()?;
            let port = cols.next()?.parse().ok()?;
            (table == "udp.port" || table == "tcp.port").then_some(port)
        })
        .collect()
}

/// `n` distinct ports in 21000..32768 (below Linux's ephemeral range, so no outgoing
/// connection takes one) that no Wireshark dissector claims and that are free for both UDP
/// and TCP on 127.0.0.1 right now.
fn quiet_ports(n: usize, taken: &BTreeSet<u16>) -> Vec<u16> {
    let mut out = Vec::new();
    let start = 21000 + u16::try_from(std::process::id() % 10000).unwrap();
    let mut p = start;
    while out.len() < n {
        p = if p >= 32767 { 21000 } else { p + 1 };
        assert_ne!(p, start, "no free port in 21000..32768");
        if taken.contains(&p) || out.contains(&p) {
            continue;
        }
        let free = TcpListener::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if free {
            out.push(p);
        }
    }
    out
}

// ----- agreement with `peershare decode --json` ------------------------------------------------

/// `peershare decode --json --as KIND HEX`, or None when this build has no `decode`.
fn decode_json(kind: &str, bytes: &[u8]) -> Option<Value> {
    let out = Command::new(common::bin())
        .args(["decode", "--json", "--as", kind, &hex::encode(bytes)])
        .output()
        .expect("run peershare decode");
    serde_json::from_slice(&out.stdout).ok()
}

/// Whether `peershare decode --json` works in this build.
fn decode_available() -> bool {
    decode_json("dht", &[0x50, 0x53, 0x01]).is_some_and(|v| v.get("valid").is_some())
}

/// The decode field names compared with dissector fields: the values of all occurrences, in
/// order, must be equal. (`length` is the frame length, then MANIFEST_REQUEST's length.)
fn field_map(kind: &str) -> &'static [(&'static str, &'static [&'static str])] {
    if kind == "dht" {
        &[
            ("version", &["peershare.dht.version"]),
            ("flags", &["peershare.dht.flags"]),
            ("txid", &["peershare.dht.txid"]),
            ("sender_id", &["peershare.dht.sender"]),
            ("target", &["peershare.dht.target"]),
            ("key", &["peershare.dht.key"]),
            ("token", &["peershare.dht.token"]),
            ("port", &["peershare.dht.port"]),
            ("contact_count", &["peershare.dht.contact_count"]),
            ("provider_count", &["peershare.dht.provider_count"]),
            ("key_count", &["peershare.dht.key_count"]),
            ("error_code", &["peershare.dht.error_code"]),
            ("text_len", &["peershare.dht.text_len"]),
        ]
    } else {
        &[
            (
                "length",
                &["peershare.wire.length", "peershare.wire.manifest.length"],
            ),
            ("version", &["peershare.wire.handshake.version"]),
            ("flags", &["peershare.wire.handshake.flags"]),
            (
                "node_id",
                &[
                    "peershare.wire.handshake.node_id",
                    "peershare.wire.relay.node_id",
                ],
            ),
            ("content_id", &["peershare.wire.handshake.content_id"]),
            ("listen_port", &["peershare.wire.handshake.listen_port"]),
            ("name_len", &["peershare.wire.metadata.name_len"]),
            ("offset", &["peershare.wire.manifest.offset"]),
            ("total_len", &["peershare.wire.manifest.total_len"]),
            ("chunk_count", &["peershare.wire.bitfield.chunk_count"]),
            ("chunk", &["peershare.wire.chunk"]),
            ("reason", &["peershare.wire.reject.reason"]),
            ("peer_count", &["peershare.wire.peer_count"]),
            ("error_code", &["peershare.wire.error_code"]),
            ("text_len", &["peershare.wire.text_len"]),
        ]
    }
}

/// A value as a comparable token: numbers (decimal or 0x hex) as numbers, the rest (hex
/// bytes) lower-case. `peershare decode` adds words after the value ("4001", "2 BAD_TOKEN",
/// "0x00 (none)"): only the first word counts.
fn norm(v: &str) -> String {
    let w = v.split_whitespace().next().unwrap_or("");
    if let Some(h) = w.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(h, 16) {
            return n.to_string();
        }
    }
    if w.len() < 20 {
        if let Ok(n) = w.parse::<u64>() {
            return n.to_string();
        }
    }
    w.to_ascii_lowercase()
}

/// The top-level leaf fields of `peershare decode`'s first message, by name, in order.
fn decode_fields(d: &Value) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let fields = d["messages"][0]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for f in fields {
        if f.get("children").is_some() || f["error"] == json!(true) {
            continue;
        }
        if let (Some(n), Some(v)) = (f["name"].as_str(), f["value"].as_str()) {
            m.entry(n.to_owned()).or_default().push(norm(v));
        }
    }
    m
}

/// Differences between the dissector's view of one vector and `peershare decode`'s.
fn disagreements(kind: &str, row: &Row, d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let type_field = format!("peershare.{kind}.type_name");
    let ours = row.first(&type_field).unwrap_or("?");
    let theirs = d["messages"][0]["name"].as_str().unwrap_or("?");
    let same_name = ours == theirs || (theirs == "?" && ours == "UNKNOWN");
    if !same_name {
        out.push(format!("message: dissector {ours}, decode {theirs}"));
    }
    let err_field = format!("peershare.{kind}.error");
    let our_err = row.first(&err_field);
    let their_err = d["error"]["kind"].as_str();
    if our_err != their_err {
        out.push(format!(
            "error: dissector {our_err:?}, decode {their_err:?}"
        ));
    }
    if let (Some(k), Some(off)) = (our_err, d["error"]["offset"].as_u64()) {
        let at = row.error_offset(k);
        if at != Some(off) {
            out.push(format!("error offset: dissector {at:?}, decode {off}"));
        }
    }
    if their_err.is_none() {
        let theirs = decode_fields(d);
        for (name, abbrs) in field_map(kind) {
            let Some(want) = theirs.get(*name) else {
                continue;
            };
            let got: Vec<String> = abbrs
                .iter()
                .flat_map(|a| row.all(a).iter().map(|v| norm(v)))
                .collect();
            if &got != want {
                out.push(format!("field {name}: dissector {got:?}, decode {want:?}"));
            }
        }
    }
    out
}

// ----- the vectors ------------------------------------------------------------------------

/// One vector and what the dissector must say about it.
struct Case {
    kind: &'static str,
    name: String,
    /// None for a valid vector, else the decode error its line names.
    error: Option<String>,
    bytes: Vec<u8>,
    /// The frame that carries it.
    frame: u32,
    /// True when it travels on ports only the heuristic can recognise.
    heuristic: bool,
}

/// The dissector's fields of an address (an ANNOUNCE_MANY holds only its rendezvous).
const RENDEZVOUS_PARTS: [&str; 3] = [
    "peershare.dht.addr.ipv4",
    "peershare.dht.addr.ipv6",
    "peershare.dht.addr.port",
];

/// For a valid ANNOUNCE_MANY vector with the RENDEZVOUS flag: its rendezvous's IP and port,
/// as the dissector must show them (the datagram's last 7 or 19 bytes, dht.md 4.9a).
fn announce_many_rendezvous(c: &Case) -> Option<Vec<String>> {
    let b = &c.bytes;
    if c.kind != "dht" || c.error.is_some() || b.get(3) != Some(&0x11) || b[4] & 0x02 == 0 {
        return None;
    }
    let port = |p: &[u8]| u16::from_be_bytes([p[0], p[1]]);
    let at = |n: usize| &b[b.len() - n..];
    let (ip, p) = if at(7)[0] == 4 {
        let a = at(7);
        (
            format!("{}.{}.{}.{}", a[1], a[2], a[3], a[4]),
            port(&a[5..]),
        )
    } else {
        let a = at(19);
        let ip: [u8; 16] = a[1..17].try_into().expect("16 bytes");
        (std::net::Ipv6Addr::from(ip).to_string(), port(&a[17..]))
    };
    Some(vec![ip, p.to_string()])
}

fn vector_cases(heur_ports: &[u16]) -> (Pcap, Vec<Case>) {
    let dht_valid = load_valid("vectors/dht.txt");
    let mut dht_invalid = load_invalid("vectors/dht-invalid.txt", &ALL_KINDS);
    // The oversized datagram is generated (as tests/spec_vectors.rs does): one byte more than
    // the largest valid datagram.
    let biggest = dht_valid
        .iter()
        .max_by_key(|v| v.bytes.len())
        .expect("DHT vectors");
    let mut too_large = biggest.bytes.clone();
    too_large.push(0);
    dht_invalid.push(common::vectors::Invalid {
        name: format!("{}-plus-one-byte", biggest.name),
        error: "TooLarge".into(),
        bytes: too_large,
    });
    let wire_valid = load_valid("vectors/wire.txt");
    let wire_invalid = load_invalid("vectors/wire-invalid.txt", &ALL_KINDS);

    let mut pcap = Pcap::new();
    let mut cases = Vec::new();
    let server = addr("192.0.2.2:8001");
    let (heur_a, heur_b) = (heur_ports[0], heur_ports[1]);
    let mut port = 10000u16;
    let mut next_port = || {
        port += 1;
        port
    };
    let dht = dht_valid
        .iter()
        .map(|v| (v.name.clone(), None, v.bytes.clone()))
        .chain(
            dht_invalid
                .iter()
                .map(|v| (v.name.clone(), Some(v.error.clone()), v.bytes.clone())),
        );
    for (name, error, bytes) in dht {
        let client = SocketAddr::from(([192, 0, 2, 1], next_port()));
        let frame = pcap.udp(client, server, &bytes);
        cases.push(Case {
            kind: "dht",
            name,
            error,
            bytes,
            frame,
            heuristic: false,
        });
    }
    // On the quiet ports, every packet goes to a new address, so that each one meets the
    // heuristic afresh (a recognised conversation is remembered).
    let client = SocketAddr::from(([192, 0, 2, 1], heur_a));
    let mut host = 0u16;
    let mut next_server = || {
        host += 1;
        let [hi, lo] = host.to_be_bytes();
        SocketAddr::from(([198, 51, hi, lo], heur_b))
    };
    for v in &dht_valid {
        let dst = next_server();
        let frame = pcap.udp(client, dst, &v.bytes);
        cases.push(Case {
            kind: "dht",
            name: v.name.clone(),
            error: None,
            bytes: v.bytes.clone(),
            frame,
            heuristic: true,
        });
    }
    let wire = wire_valid
        .iter()
        .map(|v| (v.name.clone(), None, v.bytes.clone()))
        .chain(
            wire_invalid
                .iter()
                .map(|v| (v.name.clone(), Some(v.error.clone()), v.bytes.clone())),
        );
    for (name, error, bytes) in wire {
        let client = SocketAddr::from(([192, 0, 2, 1], next_port()));
        let frame = pcap.tcp_connection(client, server, &[&bytes])[0];
        cases.push(Case {
            kind: "wire",
            name,
            error,
            bytes,
            frame,
            heuristic: false,
        });
    }
    for v in &wire_valid {
        let dst = next_server();
        let frame = pcap.tcp_connection(client, dst, &[&v.bytes])[0];
        cases.push(Case {
            kind: "wire",
            name: v.name.clone(),
            error: None,
            bytes: v.bytes.clone(),
            frame,
            heuristic: true,
        });
    }
    (pcap, cases)
}

#[test]
fn spec_vectors_dissect_like_the_decoder() {
    const TEST: &str = "dissector::spec_vectors_dissect_like_the_decoder";
    if let Some(why) = tshark_missing() {
        return skip(TEST, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let taken = registered_ports();
    let heur_ports: Vec<u16> = (21000u16..32768)
        .filter(|p| !taken.contains(p))
        .take(2)
        .collect();
    let (pcap, cases) = vector_cases(&heur_ports);
    let path = dir.path().join("vectors.pcap");
    pcap.write(&path);

    let mut fields: Vec<&str> = field_map("dht")
        .iter()
        .chain(field_map("wire"))
        .flat_map(|(_, a)| a.iter().copied())
        .collect();
    // An ANNOUNCE_MANY's rendezvous, which the field map cannot compare (decode shows an
    // address as a field with parts).
    fields.extend(RENDEZVOUS_PARTS);
    fields.sort_unstable();
    fields.dedup();
    let rows = tshark_fields(&path, &fields, &[]);
    let by_frame: BTreeMap<u64, &Row> = rows
        .iter()
        .filter_map(|r| Some((r.num("frame.number")?, r)))
        .collect();

    let with_decode = decode_available();
    if !with_decode {
        skip(
            "dissector: agreement with `peershare decode --json`",
            "this build has no working `peershare decode --json`",
        );
    }
    let mut failures = Vec::new();
    for c in &cases {
        let where_ = format!(
            "{} vector `{}` (frame {}{})",
            c.kind,
            c.name,
            c.frame,
            if c.heuristic { ", heuristic port" } else { "" }
        );
        let Some(row) = by_frame.get(&u64::from(c.frame)) else {
            failures.push(format!("{where_}: no such frame in tshark's output"));
            continue;
        };
        let proto = format!("peershare.{}", c.kind);
        if !row.protocols().contains(&proto.as_str()) {
            failures.push(format!(
                "{where_}: not decoded as {proto} ({:?})",
                row.first("frame.protocols")
            ));
            continue;
        }
        let type_name = row
            .first(&format!("peershare.{}.type_name", c.kind))
            .unwrap_or("");
        let ours = row.first(&format!("peershare.{}.error", c.kind));
        match &c.error {
            None => {
                let want = prefix(&c.name).to_ascii_uppercase();
                if type_name != want {
                    failures.push(format!("{where_}: type {type_name:?}, expected {want}"));
                }
                let errs = row.errors();
                if !errs.is_empty() {
                    failures.push(format!("{where_}: valid vector reported as {errs:?}"));
                }
                if row.all(&format!("peershare.{}.type_name", c.kind)).len() != 1 {
                    failures.push(format!("{where_}: expected exactly one message"));
                }
                if let Some(want) = announce_many_rendezvous(c) {
                    let got: Vec<String> = RENDEZVOUS_PARTS
                        .iter()
                        .flat_map(|f| row.all(f).iter().cloned())
                        .collect();
                    if got != want {
                        failures.push(format!("{where_}: rendezvous {got:?}, expected {want:?}"));
                    }
                }
            }
            Some(kind) => {
                if ours != Some(kind.as_str()) {
                    failures.push(format!("{where_}: reported {ours:?}, expected {kind}"));
                }
                if !row.has("_ws.malformed")
                    || !row
                        .all("_ws.expert.severity")
                        .iter()
                        .any(|s| s == SEVERITY_ERROR)
                {
                    failures.push(format!(
                        "{where_}: not flagged as malformed with an expert error"
                    ));
                }
                if row
                    .all("_ws.expert.message")
                    .iter()
                    .any(|m| m.contains("Dissector bug"))
                {
                    failures.push(format!("{where_}: a Lua error in the dissector"));
                }
            }
        }
        if with_decode && !c.heuristic {
            match decode_json(c.kind, &c.bytes) {
                None => failures.push(format!("{where_}: `peershare decode --json` gave no JSON")),
                Some(d) => {
                    for e in disagreements(c.kind, row, &d) {
                        failures.push(format!(
                            "{where_}: dissector and `peershare decode` disagree: {e}"
                        ));
                    }
                }
            }
        }
    }
    // Every decode error kind is exercised, in both protocols where it exists.
    let seen: BTreeSet<(&str, &str)> = cases
        .iter()
        .filter_map(|c| Some((c.kind, c.error.as_deref()?)))
        .collect();
    for k in ALL_KINDS {
        if !seen.contains(&("dht", k)) {
            failures.push(format!("no DHT vector with error {k}"));
        }
        if k != "BadMagic" && !seen.contains(&("wire", k)) {
            failures.push(format!("no wire vector with error {k}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = writeln!(
        std::io::stderr(),
        "dissector: {} vector packets checked{}",
        cases.len(),
        if with_decode {
            ", in agreement with `peershare decode --json`"
        } else {
            ""
        }
    );
}

#[test]
fn wire_frames_are_reassembled() {
    const TEST: &str = "dissector::wire_frames_are_reassembled";
    if let Some(why) = tshark_missing() {
        return skip(TEST, &why);
    }
    let valid = load_valid("vectors/wire.txt");
    let stream: Vec<u8> = valid.iter().flat_map(|v| v.bytes.iter().copied()).collect();
    let want: Vec<String> = valid
        .iter()
        .map(|v| prefix(&v.name).to_ascii_uppercase())
        .collect();

    let mut pcap = Pcap::new();
    let server = addr("192.0.2.2:8001");
    let whole = pcap.tcp_connection(addr("192.0.2.1:10001"), server, &[&stream]);
    let pieces: Vec<&[u8]> = stream.chunks(7).collect();
    let cut = pcap.tcp_connection(addr("192.0.2.1:10002"), server, &pieces);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.pcap");
    pcap.write(&path);
    let rows = tshark_fields(&path, &[], &[]);

    let row_of = |frame: u32| {
        rows.iter()
            .find(|r| r.num("frame.number") == Some(u64::from(frame)))
            .unwrap_or_else(|| panic!("frame {frame} missing"))
    };
    // One segment: every frame decoded from it, in order.
    let r = row_of(whole[0]);
    assert_eq!(
        r.all("peershare.wire.type_name"),
        want.as_slice(),
        "one segment holding every frame"
    );
    assert!(
        r.errors().is_empty(),
        "errors in the one-segment stream: {:?}",
        r.errors()
    );

    // 7-byte segments: each frame decoded once, in the segment that completes it; every other
    // segment is part of a reassembled frame.
    let decoding: BTreeSet<u64> = cut
        .iter()
        .map(|f| row_of(*f))
        .filter(|r| r.has("peershare.wire.type_name"))
        .filter_map(|r| r.num("frame.number"))
        .collect();
    let mut got = Vec::new();
    for f in &cut {
        let r = row_of(*f);
        assert!(r.errors().is_empty(), "frame {f}: {:?}", r.errors());
        got.extend(r.all("peershare.wire.type_name").iter().cloned());
        if !r.has("peershare.wire.type_name") {
            let into = r.num("tcp.reassembled_in");
            assert!(
                into.is_some_and(|n| decoding.contains(&n)),
                "frame {f}: neither decoded nor part of a decoded frame ({into:?})"
            );
        }
    }
    assert_eq!(got, want, "frames reassembled from 7-byte segments");
}

#[test]
fn a_tree_manifest_in_manifest_data_shows_its_header() {
    const TEST: &str = "dissector::a_tree_manifest_in_manifest_data_shows_its_header";
    if let Some(why) = tshark_missing() {
        return skip(TEST, &why);
    }
    let text = read_spec_file("vectors/tree.txt");
    let line = common::vectors::data_lines(&text)
        .find(|(_, l)| l.starts_with("small-pack "))
        .expect("vector small-pack in tree.txt");
    let tree = hex::decode(line.1.split_whitespace().nth(2).unwrap()).unwrap();
    let mut body = (tree.len() as u32).to_be_bytes().to_vec();
    body.extend(0u32.to_be_bytes());
    body.extend(&tree);
    let mut frame = (body.len() as u32 + 1).to_be_bytes().to_vec();
    frame.push(0x04);
    frame.extend(body);
    let mut pcap = Pcap::new();
    let (client, server) = (addr("192.0.2.1:10001"), addr("192.0.2.2:8001"));
    let frames = pcap.tcp_connection(client, server, &[&frame]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.pcap");
    pcap.write(&path);
    let fields = [
        "peershare.wire.manifest.magic",
        "peershare.wire.manifest.entry_count",
        "peershare.wire.manifest.total_size",
        "peershare.wire.manifest.chunk_count",
        "peershare.wire.manifest.entries_len",
    ];
    let rows = tshark_fields(&path, &fields, &[]);
    let r = rows
        .iter()
        .find(|r| r.num("frame.number") == Some(u64::from(frames[0])))
        .expect("the MANIFEST_DATA frame");
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    let got: Vec<Option<&str>> = fields.iter().map(|f| r.first(f)).collect();
    let want = [Some("PSTR"), Some("4"), Some("4"), Some("2"), Some("187")];
    assert_eq!(got, want, "the small-pack tree's header (content.md, 10.5)");
}

// ----- the live session -------------------------------------------------------------------

/// Starts a node on 127.0.0.1:`port` (the capture filter must know the ports before the
/// nodes send anything). None if the port was taken meanwhile.
fn start_node(data_dir: &Path, port: u16, bootstrap: Option<SocketAddr>) -> Option<Node> {
    let port = port.to_string();
    let boot = bootstrap.map(|b| b.to_string());
    let mut extra = vec!["--port", port.as_str()];
    if let Some(b) = &boot {
        extra.extend(["--bootstrap", b.as_str()]);
    }
    // The nodes write their session keys: the test opens the capture with them.
    let keylog = data_dir.parent().expect("parent").join("keys.log");
    Node::try_start_env(
        None,
        data_dir,
        &extra,
        None,
        &[("PEERSHARE_KEYLOG", keylog.as_path())],
    )
}

/// The capture as a learner opens it with the key log (secure.md section 6): its UDP
/// datagrams as they are, and each TCP connection's records opened into the wire protocol's
/// plaintext, written to a new pcap (one connection per session, both directions).
fn opened_capture(raw: &Path, keylog: &Path, out: &Path) -> PathBuf {
    use common::capture::{open_flow, read_keylog, tcp_flows, udp_datagrams};
    let keys = read_keylog(keylog);
    assert!(!keys.is_empty(), "the nodes wrote no key log line");
    let mut pcap = Pcap::new();
    for (src, dst, payload) in udp_datagrams(raw) {
        pcap.udp(src, dst, &payload);
    }
    let mut sessions = 0;
    for f in tcp_flows(raw) {
        let Ok((init, sent, got)) = open_flow(&f, &keys) else {
            continue;
        };
        let other = if init == f.a { f.b } else { f.a };
        pcap.tcp_both_ways(init, other, &sent, &got);
        sessions += 1;
    }
    assert!(
        sessions > 0,
        "no TCP connection of the capture opened with the key log"
    );
    pcap.write(out);
    out.to_path_buf()
}

/// The `three-chunks` manifest vector: (content ID, manifest bytes). Its file is 600000
/// bytes, byte i = i mod 251 (vectors/manifest.txt).
fn three_chunk_manifest() -> (String, Vec<u8>) {
    let text = read_spec_file("vectors/manifest.txt");
    let line = common::vectors::data_lines(&text)
        .find(|(_, l)| l.starts_with("three-chunks "))
        .expect("vector three-chunks in manifest.txt")
        .1;
    let cols: Vec<&str> = line.split_whitespace().collect();
    (cols[1].to_owned(), hex::decode(cols[2]).unwrap())
}

#[test]
fn live_session_is_fully_dissected() {
    const TEST: &str = "dissector::live_session_is_fully_dissected";
    if let Some(why) = tshark_missing() {
        return skip(TEST, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let file_len = 600_000;
    let file: Vec<u8> = (0..file_len).map(|i| (i % 251) as u8).collect();
    let src = dir.path().join("song.bin");
    std::fs::write(&src, &file).unwrap();
    let (content_id, manifest) = three_chunk_manifest();
    let taken = registered_ports();

    // Ports first (the capture filter names them), then the capture, then the nodes. A port
    // taken between the check and the node's bind is retried with new ports.
    let mut attempt = 0;
    let (capture, nodes) = loop {
        attempt += 1;
        let ports = quiet_ports(3, &taken);
        let pcap = dir.path().join(format!("live-{attempt}.pcapng"));
        let capture = match Capture::start(&pcap, &ports) {
            Ok(c) => c,
            Err(why) => return skip(TEST, &why),
        };
        let a = dir.path().join(format!("a{attempt}"));
        let b = dir.path().join(format!("b{attempt}"));
        let c = dir.path().join(format!("c{attempt}"));
        let first = start_node(&a, ports[0], None);
        let boot = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let rest = first.as_ref().map(|_| {
            (
                start_node(&b, ports[1], Some(boot)),
                start_node(&c, ports[2], Some(boot)),
            )
        });
        match (first, rest) {
            (Some(a), Some((Some(b), Some(c)))) => break (capture, [a, b, c]),
            _ if attempt < 3 => continue,
            _ => panic!("could not start three nodes on fixed ports in 3 attempts"),
        }
    };
    let [_, b, c] = &nodes;
    let ports: BTreeSet<u16> = nodes.iter().map(|n| n.listen.port()).collect();

    // Bootstrap: every node knows the two others.
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(30), || n.status()["routing_table_size"]
                .as_u64()
                >= Some(2)),
            "node {} did not learn both others: {}",
            n.addr(),
            n.status()
        );
    }
    // b shares the file, c looks it up and downloads it.
    let r = b
        .call_timeout(
            "local_add_file",
            json!({ "filepath": src }),
            Duration::from_secs(120),
        )
        .expect("local_add_file");
    assert_eq!(r["status"], "success", "local_add_file: {r}");
    assert_eq!(
        r["file_hash"],
        content_id.as_str(),
        "content ID of the three-chunk file: {r}"
    );
    let mut last = Value::Null;
    let found = wait_until(Duration::from_secs(30), || {
        last = c.call(
            "local_request_content_info",
            json!({ "content_hash": content_id }),
        );
        last["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == &json!(b.addr())))
    });
    assert!(found, "c does not find b as a provider: {last}");
    let out = dir.path().join("downloads");
    let r = c
        .call_timeout(
            "local_request_file",
            json!({ "content_hash": content_id, "output_dir": out }),
            Duration::from_secs(120),
        )
        .expect("local_request_file");
    assert_eq!(r["status"], "success", "local_request_file: {r}");
    assert_eq!(
        std::fs::read(out.join("song.bin")).expect("downloaded file"),
        file
    );

    // Let the last answers arrive, stop the nodes (SIGTERM: they close cleanly), then the capture.
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
    let (b_id, c_id) = (b.node_id.clone(), c.node_id.clone());
    let names = [
        ("a", ids[0].clone()),
        ("b", b_id.clone()),
        ("c", c_id.clone()),
    ];
    for mut n in nodes {
        n.terminate();
    }
    let raw = capture.stop();

    // The capture itself: every TCP payload is a secure session's message (msg1, msg2,
    // msg3, records), and no frame of the wire protocol shows but the dial-back PROBEs.
    let raw_rows = tshark_fields(
        &raw,
        &["peershare.wire.secure.msg", "tcp.srcport", "tcp.dstport"],
        &["tcp.try_heuristic_first:TRUE"],
    );
    let mut secure_msgs = BTreeSet::new();
    let mut raw_failures = Vec::new();
    for r in &raw_rows {
        let f = r.num("frame.number").unwrap_or(0);
        secure_msgs.extend(r.all("peershare.wire.secure.msg").iter().cloned());
        // PROBE and RELAY are the only frames sent in clear (secure.md section 5).
        let clear = r.all("peershare.wire.type_name");
        if clear.iter().any(|t| t != "PROBE" && t != "RELAY") {
            raw_failures.push(format!("frame {f}: a wire frame in clear: {clear:?}"));
        }
        for e in r.errors() {
            raw_failures.push(format!("frame {f}: {e}"));
        }
    }
    for m in [
        "handshake msg1",
        "handshake msg2",
        "handshake msg3",
        "record",
    ] {
        if !secure_msgs.iter().any(|s| s.starts_with(m)) {
            raw_failures.push(format!(
                "no secure {m} in the capture (saw {secure_msgs:?})"
            ));
        }
    }
    assert!(
        raw_failures.is_empty(),
        "the raw capture:\n{}",
        raw_failures.join("\n")
    );
    // Then the same capture opened with the key log must show every frame below.
    let pcap = opened_capture(
        &raw,
        &dir.path().join("keys.log"),
        &dir.path().join("opened.pcap"),
    );

    // Dissect. Heuristics first: the downloader's TCP port is an ephemeral one, which some
    // other dissector might be registered on.
    let fields = [
        "peershare.dht.sender",
        "peershare.dht.key",
        "peershare.dht.addr.port",
        "peershare.wire.handshake.node_id",
        "peershare.wire.handshake.content_id",
        "peershare.wire.metadata.name",
        "peershare.wire.manifest.total_len",
        "peershare.wire.manifest.chunk_count",
        "peershare.wire.manifest.data",
        "peershare.wire.bitfield.chunk_count",
        "peershare.wire.chunk",
        "peershare.wire.piece.data_len",
        "udp.dstport",
        "tcp.srcport",
        "tcp.dstport",
    ];
    let rows = tshark_fields(
        &pcap,
        &fields,
        &[
            "udp.try_heuristic_first:TRUE",
            "tcp.try_heuristic_first:TRUE",
        ],
    );
    assert!(!rows.is_empty(), "nothing captured");

    let mut failures = Vec::new();
    let wire_frames: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.protocols().contains(&"peershare.wire"))
        .filter_map(|r| r.num("frame.number"))
        .collect();
    let (mut udp_n, mut tcp_n) = (0, 0);
    let mut dht_types = BTreeSet::new();
    let mut wire_types = BTreeSet::new();
    for r in &rows {
        let f = r.num("frame.number").unwrap_or(0);
        for e in r.errors() {
            failures.push(format!("frame {f}: {e}"));
        }
        dht_types.extend(r.all("peershare.dht.type_name").iter().cloned());
        wire_types.extend(r.all("peershare.wire.type_name").iter().cloned());
        let on = |a: &str, b: &str| {
            [r.num(a), r.num(b)]
                .iter()
                .any(|p| p.is_some_and(|p| ports.contains(&(p as u16))))
        };
        if r.num("udp.length").is_some_and(|l| l > 8) && on("udp.srcport", "udp.dstport") {
            udp_n += 1;
            if !r.protocols().contains(&"peershare.dht") {
                failures.push(format!(
                    "frame {f}: UDP payload not decoded as peershare.dht ({:?})",
                    r.first("frame.protocols")
                ));
            }
        }
        if r.num("tcp.len").is_some_and(|l| l > 0) && on("tcp.srcport", "tcp.dstport") {
            tcp_n += 1;
            let reassembled = r
                .num("tcp.reassembled_in")
                .is_some_and(|n| wire_frames.contains(&n));
            if !r.protocols().contains(&"peershare.wire") && !reassembled {
                failures.push(format!(
                    "frame {f}: TCP payload neither decoded as peershare.wire nor part of a frame that is ({:?})",
                    r.first("frame.protocols")
                ));
            }
        }
    }
    let expect =
        |set: &BTreeSet<String>, names: &[&str], what: &str, failures: &mut Vec<String>| {
            for n in names {
                if !set.contains(*n) {
                    failures.push(format!("no {what} {n} in the capture (saw {set:?})"));
                }
            }
        };
    expect(
        &dht_types,
        &[
            "PING",
            "PONG",
            "FIND_NODE",
            "NODES",
            "GET_PROVIDERS",
            "PROVIDERS",
            "ANNOUNCE",
            "ACK",
        ],
        "DHT",
        &mut failures,
    );
    expect(
        &wire_types,
        &[
            "HANDSHAKE",
            "METADATA",
            "BITFIELD",
            "MANIFEST_REQUEST",
            "MANIFEST_DATA",
            "INTERESTED",
            "UNCHOKE",
            "REQUEST",
            "PIECE",
            "HAVE",
        ],
        "wire",
        &mut failures,
    );

    // Values the test knows.
    let values = |f: &str| -> BTreeSet<String> {
        rows.iter().flat_map(|r| r.all(f).iter().cloned()).collect()
    };
    let senders = values("peershare.dht.sender");
    for (name, id) in names {
        if !senders.contains(id.as_str()) {
            failures.push(format!(
                "node {name}'s ID {id} (from its banner) is no DHT sender: {senders:?}"
            ));
        }
    }
    let strangers: Vec<&String> = senders.iter().filter(|s| !ids.contains(s)).collect();
    if !strangers.is_empty() {
        failures.push(format!(
            "DHT senders that are none of the nodes: {strangers:?}"
        ));
    }
    let dht_ports: BTreeSet<String> = values("peershare.dht.addr.port");
    // Port 0: a responder listing itself as a provider (dht.md, section 4.6).
    if !dht_ports
        .iter()
        .all(|p| p.parse().is_ok_and(|p: u16| p == 0 || ports.contains(&p)))
    {
        failures.push(format!(
            "addresses in DHT messages name ports {dht_ports:?}, the nodes have {ports:?}"
        ));
    }
    if !values("peershare.dht.key").contains(&content_id) {
        failures.push(format!(
            "no GET_PROVIDERS or ANNOUNCE for the content ID {content_id}"
        ));
    }
    let hs_nodes = values("peershare.wire.handshake.node_id");
    if hs_nodes
        != [b_id.clone(), c_id.clone()]
            .into_iter()
            .collect::<BTreeSet<String>>()
    {
        failures.push(format!(
            "HANDSHAKE node IDs {hs_nodes:?}, expected b {b_id} and c {c_id}"
        ));
    }
    let one = |v: &str| -> BTreeSet<String> { [v.to_string()].into_iter().collect() };
    let checks: [(&str, BTreeSet<String>); 6] = [
        ("peershare.wire.handshake.content_id", one(&content_id)),
        ("peershare.wire.metadata.name", one("song.bin")),
        (
            "peershare.wire.manifest.total_len",
            one(&manifest.len().to_string()),
        ),
        ("peershare.wire.manifest.chunk_count", one("3")),
        ("peershare.wire.manifest.data", one(&hex::encode(&manifest))),
        ("peershare.wire.bitfield.chunk_count", one("3")),
    ];
    for (f, want) in checks {
        let got = values(f);
        if got != want {
            failures.push(format!("{f}: {got:?}, expected {want:?}"));
        }
    }
    // PIECEs: chunks 0, 1, 2 with their sizes, each frame reassembled whole.
    let mut pieces = BTreeMap::new();
    for r in &rows {
        let types = r.all("peershare.wire.type_name");
        let chunks = r.all("peershare.wire.chunk");
        let lens = r.all("peershare.wire.piece.data_len");
        // Frames carrying a chunk index, in order; PIECE is the one with a data length.
        let mut li = lens.iter();
        let mut ci = chunks.iter();
        for t in types {
            match t.as_str() {
                "PIECE" => {
                    if let (Some(ch), Some(l)) = (ci.next(), li.next()) {
                        pieces.insert(ch.clone(), l.clone());
                    }
                }
                "HAVE" | "REQUEST" | "CANCEL" | "REJECT" => {
                    ci.next();
                }
                _ => {}
            }
        }
    }
    let want_pieces: BTreeMap<String, String> = [("0", "262144"), ("1", "262144"), ("2", "75712")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    if pieces != want_pieces {
        failures.push(format!(
            "PIECEs (chunk -> bytes) {pieces:?}, expected {want_pieces:?}"
        ));
    }
    if udp_n == 0 || tcp_n == 0 {
        failures.push(format!(
            "captured {udp_n} UDP and {tcp_n} TCP packets with payload"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) in the capture:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = writeln!(
        std::io::stderr(),
        "dissector: live capture of {} packets ({udp_n} UDP and {tcp_n} TCP with payload) fully decoded",
        rows.len()
    );
}
