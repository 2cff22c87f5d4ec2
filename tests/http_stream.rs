//! Streaming over HTTP (http.md section 6) from a real node: `GET /content/<id>` and
//! `/content/<id>/<path>` inside a folder, with Range requests (first, last, middle, suffix,
//! past the end, many at once); every byte compared with the source file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Node;
use serde_json::json;

/// The response's status, headers (lower-cased names) and body bytes.
fn get(addr: SocketAddr, path: &str, range: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{range}\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let body = out[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

fn share(node: &Node, path: &std::path::Path) -> String {
    let r = node.call("local_add_file", json!({ "filepath": path }));
    assert_eq!(r["status"], "success", "{r}");
    r["file_hash"].as_str().unwrap().to_owned()
}

/// Bytes that differ at every position (a misplaced range shows).
fn sample(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn ranges_of_a_file_and_of_a_folders_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), &[]);
    let http = node.http.unwrap();
    // A file of several chunks (not a whole number of them).
    let src = sample(3 * 1024 * 1024 + 12345, 1);
    let file = dir.path().join("kick.wav");
    std::fs::write(&file, &src).unwrap();
    let id = share(&node, &file);
    let n = src.len() as u64;
    let url = format!("/content/{id}/kick.wav");

    let (st, h, body) = get(http, &url, None);
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type"), "audio/wav");
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert!(body == src, "whole file differs");

    let cases: Vec<(String, std::ops::Range<u64>)> = vec![
        ("bytes=0-99".into(), 0..100),
        ("bytes=0-0".into(), 0..1),
        (format!("bytes={}-", n - 10), n - 10..n),
        ("bytes=-777".into(), n - 777..n),
        // Across a chunk boundary (chunks are a power of two bytes).
        ("bytes=1048000-1049999".into(), 1_048_000..1_050_000),
        (format!("bytes=100-{}", n + 5000), 100..n),
    ];
    for (hdr, r) in cases {
        let (st, h, body) = get(http, &url, Some(&hdr));
        assert_eq!(st, 206, "{hdr}");
        assert_eq!(
            header(&h, "content-range"),
            format!("bytes {}-{}/{n}", r.start, r.end - 1),
            "{hdr}"
        );
        assert!(
            body == src[r.start as usize..r.end as usize],
            "{hdr}: bytes differ"
        );
    }

    // Past the end: 416 with the size.
    let (st, h, _) = get(http, &url, Some(&format!("bytes={n}-")));
    assert_eq!(st, 416);
    assert_eq!(header(&h, "content-range"), format!("bytes */{n}"));

    // Many ranges at once: multipart/byteranges, each part's bytes the source's.
    let ranges: Vec<(u64, u64)> = (0..20)
        .map(|i| (i * 150_000 + 7, i * 150_000 + 1006))
        .collect();
    let spec = ranges
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",");
    let (st, h, body) = get(http, &url, Some(&format!("bytes={spec}")));
    assert_eq!(st, 206);
    let ctype = header(&h, "content-type");
    let boundary = ctype.split_once("boundary=").unwrap().1;
    let mut rest = &body[..];
    for (a, b) in &ranges {
        let start = format!("--{boundary}\r\n");
        assert!(rest.starts_with(start.as_bytes()));
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        assert!(
            head.contains(&format!("Content-Range: bytes {a}-{b}/{n}")),
            "{head}"
        );
        rest = &rest[end + 4..];
        let len = (b - a + 1) as usize;
        assert!(
            rest[..len] == src[*a as usize..=*b as usize],
            "part {a}-{b} differs"
        );
        assert_eq!(&rest[len..len + 2], b"\r\n");
        rest = &rest[len + 2..];
    }
    assert_eq!(rest, format!("--{boundary}--\r\n").as_bytes());

    // A folder: each file by its path; the folder itself or another path is 404.
    let pack = dir.path().join("pack");
    std::fs::create_dir_all(pack.join("Kicks")).unwrap();
    let big = sample(1_500_000, 2);
    let small = sample(5000, 3);
    std::fs::write(pack.join("Kicks/big one.wav"), &big).unwrap();
    std::fs::write(pack.join("README"), &small).unwrap();
    let fid = share(&node, &pack);
    let (st, h, body) = get(
        http,
        &format!("/content/{fid}/Kicks/big%20one.wav"),
        Some("bytes=-1000"),
    );
    assert_eq!(st, 206);
    assert_eq!(header(&h, "content-type"), "audio/wav");
    assert!(body == big[big.len() - 1000..]);
    let (st, _, body) = get(http, &format!("/content/{fid}/README"), None);
    assert_eq!(st, 200);
    assert!(body == small);
    assert_eq!(get(http, &format!("/content/{fid}"), None).0, 404);
    assert_eq!(get(http, &format!("/content/{fid}/nope"), None).0, 404);
    assert_eq!(
        get(http, &format!("/content/{}", "0".repeat(64)), None).0,
        404
    );
}

/// A download in progress streams: a range not here yet is fetched first (ahead of the
/// scheduler's own order) and served once verified, before the download completes; bytes
/// are the source's.
#[test]
fn a_range_of_a_download_in_progress_is_fetched_first() {
    let dir = tempfile::tempdir().unwrap();
    // The seeder sends slowly, so the download takes ~30 s.
    let seeder = Node::start(&dir.path().join("seeder"), &["--up-limit", "256KB/s"]);
    let leecher = Node::start(&dir.path().join("leecher"), &[]);
    let src = sample(8 * 1024 * 1024, 4);
    let file = dir.path().join("loop.wav");
    std::fs::write(&file, &src).unwrap();
    let id = share(&seeder, &file);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let req = json!({"type": "local_request_file", "payload": {
        "content_hash": id, "output_dir": out, "peers": [seeder.addr()]}});
    let api = leecher.api;
    let fetch = std::thread::spawn(move || {
        common::call_timeout(api, &req, Duration::from_secs(300)).unwrap()
    });
    let status = || {
        let r = leecher.call("transfer_status", json!({ "content_hash": id }));
        r["transfers"][0].clone()
    };
    assert!(
        common::wait_until(Duration::from_secs(30), || status()["has_manifest"] == true),
        "no manifest: {}",
        status()
    );
    let http = leecher.http.unwrap();
    let n = src.len();
    // The end of the file and a middle part: each waits for its chunks, then comes whole.
    for (hdr, r) in [
        ("bytes=-5000".to_string(), n - 5000..n),
        (
            format!("bytes={}-{}", n / 2, n / 2 + 999),
            n / 2..n / 2 + 1000,
        ),
    ] {
        let (st, h, body) = get(http, &format!("/content/{id}/loop.wav"), Some(&hdr));
        assert_eq!(st, 206, "{hdr}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            header(&h, "content-range"),
            format!("bytes {}-{}/{n}", r.start, r.end - 1)
        );
        assert!(body == src[r], "{hdr}: bytes differ");
    }
    let s = status();
    assert_eq!(s["complete"], false, "the download finished first: {s}");
    // /metrics counts it as it goes.
    let (_, _, m) = get(http, "/metrics", None);
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains("peershare_contents{state=\"downloading\"} 1"),
        "{m}"
    );
    assert!(m.contains("peershare_transfer_peers 1"), "{m}");
    let verified: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("peershare_chunk_checks_total{result=\"verified\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(verified >= 2, "{m}");
    assert!(s["have_bytes"].as_u64().unwrap() < n as u64 / 2, "{s}");
    // An open range from the start gives what is here, contiguous from byte 0 (maybe less
    // than asked), never an unverified byte.
    let (st, h, body) = get(http, &format!("/content/{id}/loop.wav"), Some("bytes=0-"));
    assert_eq!(st, 206);
    let cr = header(&h, "content-range").to_string();
    assert!(
        cr.starts_with("bytes 0-") && cr.ends_with(&format!("/{n}")),
        "{cr}"
    );
    assert!(!body.is_empty() && body == src[..body.len()]);
    drop(seeder);
    drop(fetch);
}
