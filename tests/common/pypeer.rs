//! The learners' Python peer (tools/pypeer/pypeer.py): starting it, and whether it can run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn pypeer_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pypeer/pypeer.py")
}

pub fn have_python() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pypeer's two packages (its secure sessions, secure.md): `noiseprotocol`, `cryptography`.
pub fn have_packages() -> bool {
    Command::new("python3")
        .args(["-c", "import noise.connection, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Kills the peer when the test ends, however it ends.
pub struct Py(pub Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pypeer.py serve FILE --bootstrap NODE`: the peer, its address and its content ID.
pub fn serve(file: &Path, bootstrap: &str) -> (Py, String, String) {
    let mut child = Command::new("python3")
        .arg(pypeer_path())
        .args(["serve"])
        .arg(file)
        .args(["--bootstrap", bootstrap])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pypeer");
    let out = child.stdout.take().expect("stdout");
    let py = Py(child);
    let (mut listen, mut content) = (String::new(), String::new());
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if let Some(a) = line.strip_prefix("listen: ") {
            listen = a.to_owned();
        }
        if let Some(c) = line.strip_prefix("content: ") {
            content = c.to_owned();
        }
        if line == "ready" {
            break;
        }
    }
    assert!(
        !listen.is_empty() && !content.is_empty(),
        "pypeer did not start"
    );
    (py, listen, content)
}

/// Whether pypeer can run here; if not, prints why the caller skips (a failure instead
/// under PEERSHARE_REQUIRE_PYPEER, which .ci/run sets).
pub fn usable(test: &str) -> bool {
    if have_python() && have_packages() {
        return true;
    }
    assert!(
        std::env::var_os("PEERSHARE_REQUIRE_PYPEER").is_none(),
        "{test}: pypeer needs python3 and the packages noiseprotocol and cryptography"
    );
    println!("SKIPPED {test}: pypeer needs python3, noiseprotocol and cryptography");
    false
}
