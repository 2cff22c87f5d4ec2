//! `peershare get ID --exec CMD`: once the download is complete and verified, CMD runs
//! through `sh -c` with the file's facts in its environment (`PEERSHARE_ID`,
//! `PEERSHARE_PATH`, also `$1`, `PEERSHARE_NAME`, `PEERSHARE_SIZE`), exactly as the node
//! runs its `on_complete` hook (`net::hooks::command`); `get` exits with CMD's status.
//! The values are never put into CMD's text: quote them in CMD (`"$PEERSHARE_PATH"`).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use serde_json::Value;

use crate::id::Id;
use crate::node_core::HookRun;

/// Runs `cmd` for the file a successful `local_request_file` reply names; returns the exit
/// code for `get`: 0, CMD's own code, 128 + a signal that ended it, or 127 if it could not
/// be run (as a shell says).
pub(super) fn run_exec(cmd: &str, id: Id, reply: &Value) -> i32 {
    let Some(path) = reply["file_path"].as_str().map(PathBuf::from) else {
        eprintln!("peershare: the node did not say where the file is; --exec not run");
        return 1;
    };
    let name = reply["filename"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!(
                "peershare: cannot read {}: {e}; --exec not run",
                path.display()
            );
            return 1;
        }
    };
    let hook = HookRun {
        command: cmd.to_string(),
        content: id,
        path,
        name,
        size,
    };
    match crate::net::hooks::command(&hook).status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            let code = s
                .code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(1);
            eprintln!("peershare: the --exec command failed ({s}); exiting with {code}: {cmd}");
            code
        }
        Err(e) => {
            eprintln!("peershare: cannot run the --exec command with sh: {e}");
            127
        }
    }
}
