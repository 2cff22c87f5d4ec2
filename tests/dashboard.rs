//! The dashboard in a real browser: Debian's chromium driven by Playwright
//! (`tests/browser/dashboard.mjs`, `playwright-core` from npm). A seeder whose upload is
//! limited shares a WAV file; the browser opens the leecher's dashboard, looks at the
//! content, starts the download, plays the file while the download is in progress (its
//! `currentTime` advances first), changes a limit and sees it applied, shows the peers,
//! watches the download reach 100%, and opens the learners' page, where a lookup it starts
//! appears with its requests hop by hop.
//!
//! SKIPPED with a reason where chromium, node or playwright-core is missing;
//! PEERSHARE_REQUIRE_BROWSER=1 (CI) makes them required.

mod common;

use std::path::Path;
use std::process::Command;

use common::Node;
use serde_json::{json, Value};

/// A mono 16-bit PCM WAV file of `secs` seconds of a tone.
fn wav(secs: u32) -> Vec<u8> {
    let rate = 22050u32;
    let n = rate * secs;
    let mut v = Vec::with_capacity(44 + 2 * n as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        v.extend_from_slice(&(s as i16).to_le_bytes());
    }
    v
}

fn missing(what: &str) {
    assert!(
        std::env::var_os("PEERSHARE_REQUIRE_BROWSER").is_none(),
        "the browser test is required here (PEERSHARE_REQUIRE_BROWSER) but {what}"
    );
    eprintln!("SKIPPED: {what}");
}

#[test]
fn dashboard_downloads_plays_and_limits_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return missing(&format!(
            "no chromium at {chromium} (Debian package `chromium`)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return missing("no node (Debian package `nodejs`)");
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return missing("no playwright-core (run `npm ci --prefix tests/browser`)");
    }
    let dir = tempfile::tempdir().unwrap();
    // ~20 s at the limit, so the download is still going while the test plays and looks.
    let seeder = Node::start(&dir.path().join("seeder"), &["--up-limit", "100KB/s"]);
    let leecher = Node::start(
        &dir.path().join("leecher"),
        &["--bootstrap", &seeder.addr()],
    );
    let file = dir.path().join("sample.wav");
    std::fs::write(&file, wav(45)).unwrap();
    let r = seeder.call("local_add_file", json!({ "filepath": file }));
    assert_eq!(r["status"], "success", "{r}");
    let id = r["file_hash"].as_str().unwrap().to_string();
    let url = format!("http://{}/", leecher.http.unwrap());
    let shot = std::env::var("DASHBOARD_SCREENSHOT").ok();
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("DASH_URL", &url)
        .env("CONTENT_ID", &id)
        .env("CHROMIUM", &chromium)
        .env("SHOT", shot.unwrap_or_default())
        .env(
            "SHOT_LEARN",
            std::env::var("LEARN_SCREENSHOT").unwrap_or_default(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let found: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no findings from the browser:\n{stdout}\n{stderr}"));
    assert!(out.status.success(), "browser: {found}\n{stderr}");
    assert_eq!(found["live"], "live", "{found}");
    assert!(
        found["tree_msg"].as_str().unwrap().contains("sample.wav"),
        "{found}"
    );
    let at = found["played_at_progress"].as_u64().unwrap();
    assert!(
        at < 100,
        "playback only began once the download was complete: {found}"
    );
    assert!(found["limits"].as_str().unwrap().contains("down 7.0 MB/s"));
    assert!(
        found["peers"].as_str().unwrap().contains("direct"),
        "{found}"
    );
    assert_eq!(found["finished"], true, "{found}");
    assert!(found["buckets"].as_u64().unwrap() >= 1, "{found}");
    // The download's provider lookup at least.
    assert!(found["lookups"].as_u64().unwrap() >= 1, "{found}");
    // A lookup started from the page shows its requests: the seeder, asked and answering.
    assert!(found["hops"].as_u64().unwrap() >= 1, "{found}");
    let hop = found["hop"].as_str().unwrap();
    assert!(hop.contains(&seeder.node_id[..12]), "{found}");
    assert!(hop.contains("answered in"), "{found}");
    assert_eq!(found["errors"], json!([]), "page errors: {found}");
    // The leecher applied the limit the page set.
    let status = leecher.status();
    assert_eq!(status["bandwidth"]["limits"]["down"], 7_000_000, "{status}");
}
