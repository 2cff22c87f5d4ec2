//! A full disk pauses a download instead of wedging it (issue 13): a node whose data dir is a
//! real 20 MiB tmpfs asks for a 50 MiB file. It must say clearly that the disk is full and
//! where, leave no stray files, keep the download (paused, not lost), and finish it with the
//! right bytes and name once space is there and the download is asked for again; a download
//! that does fit, next to it, completes.
//!
//! Mounting a tmpfs needs root: without it the test prints SKIPPED and why (and fails instead
//! when `PEERSHARE_REQUIRE_TMPFS=1`, as in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{seeded_bytes, Node};
use serde_json::{json, Value};

const MIB: usize = 1 << 20;

/// A tmpfs mounted at a temp dir for the test's life.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err(format!("mount -t tmpfs failed ({st}): needs root"));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn request(node: &Node, id: &str, out: &Path, peer: &str) -> Value {
    node.call_timeout(
        "local_request_file",
        json!({ "content_hash": id, "output_dir": out, "peers": [peer] }),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("local_request_file: {e}"))
}

fn transfer(node: &Node, id: &str) -> Value {
    let all = node.call("transfer_status", json!({}));
    all["transfers"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["content_hash"] == id).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn a_full_disk_pauses_the_download_until_there_is_room() {
    let tmpfs = match Tmpfs::mount("20m") {
        Ok(t) => t,
        Err(why) => {
            if std::env::var("PEERSHARE_REQUIRE_TMPFS").is_ok_and(|v| v == "1") {
                panic!("the disk-full test must run here: {why}");
            }
            println!("SKIPPED a_full_disk_pauses_the_download_until_there_is_room: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let big = seeded_bytes(50 * MIB, 41);
    let small = seeded_bytes(6 * MIB, 42);
    let (big_src, small_src) = (work.path().join("pack.zip"), work.path().join("kick.wav"));
    std::fs::write(&big_src, &big).unwrap();
    std::fs::write(&small_src, &small).unwrap();
    let seeder = Node::start(&work.path().join("seed"), &[]);
    let add = |p: &Path| -> String {
        let r = seeder.call("local_add_file", json!({ "filepath": p }));
        r["file_hash"].as_str().unwrap().to_owned()
    };
    let (big_id, small_id) = (add(&big_src), add(&small_src));
    let seed = seeder.addr();

    // The leecher's data dir (where partial downloads live) and output on the small disk.
    let data = tmpfs.path().join("node");
    let out = tmpfs.path().join("out");
    let leecher = Node::start(&data, &[]);

    // 50 MiB on a 20 MiB disk: a clear error naming the folder, at once, nothing left behind.
    let r = request(&leecher, &big_id, &out, &seed);
    assert_eq!(r["status"], "error", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("disk full"), "{msg}");
    assert!(
        msg.contains(&data.join("downloads").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("paused"), "{msg}");
    assert!(
        files_under(&data.join("downloads")).is_empty(),
        "stray files: {:?}",
        files_under(&data.join("downloads"))
    );
    let t = transfer(&leecher, &big_id);
    assert!(
        t["paused"]
            .as_str()
            .is_some_and(|p| p.contains("disk full")),
        "{t}"
    );
    assert_eq!(t["downloading"], false, "{t}");

    // A download that fits still works beside it.
    let r = request(&leecher, &small_id, &out, &seed);
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(std::fs::read(out.join("kick.wav")).unwrap(), small);

    // Asked again while the disk is still full: paused again, same clear reason.
    let r = request(&leecher, &big_id, &out, &seed);
    assert!(r["message"].as_str().unwrap().contains("disk full"), "{r}");

    // Room made (the disk grows, as when files are deleted): asked again, it completes with
    // the right bytes and its own name.
    tmpfs.resize("200m");
    let r = request(&leecher, &big_id, &out, &seed);
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["filename"], "pack.zip", "{r}");
    assert_eq!(std::fs::read(out.join("pack.zip")).unwrap(), big);
    assert!(files_under(&data.join("downloads")).is_empty());
    drop(leecher);
}
