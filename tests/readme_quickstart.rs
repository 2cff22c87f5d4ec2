//! The README's quickstart, run as written (`tools/quickstart/check.py`: the commands come
//! from the README itself), three times in a row: three nodes, `add`, `peers`, `get`, `ls`,
//! `status`, each run checked (exit statuses, the byte-identical download, no panic, no
//! stray stderr, clean stops). `make quickstart-check` runs it 100 times.

mod common;

use std::process::Command;

#[test]
fn the_readme_quickstart_runs_clean() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tools/quickstart/check.py"))
        .args(["--runs", "3", "--bin", common::bin()])
        .output()
        .expect("python3 runs tools/quickstart/check.py (python3 is needed by the tests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's quickstart failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("quickstart: 3 of 3 runs clean in a row"),
        "{stdout}"
    );
}
