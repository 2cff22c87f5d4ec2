//! Running the `peershare` command line as a user does: a client process to completion,
//! with a bound on how long it may take.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::bin;

/// Generous bound on a client or a failing node start: a loaded machine is slow, a hang is
/// a failure.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Waits for `child` up to [`DEADLINE`], killing it (and failing) past that.
pub fn wait_bounded(mut child: Child, what: &str) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st,
            Ok(None) if t0.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not end within {DEADLINE:?}");
            }
            Err(e) => panic!("wait for {what}: {e}"),
        }
    }
}

/// Runs `peershare ARGS` in `cwd` to completion (stdout and stderr captured).
pub fn peershare(cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn peershare");
    // Read both pipes while it runs, so a large output cannot block it.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(child, &format!("peershare {args:?}"));
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
