//! The NAT lab's harness (tools/netlab/netlab.sh): a lab of network namespaces removed on
//! drop, and `peershare` nodes running inside it (tests/netlab.rs, netlab_lan.rs, netlab_shapes.rs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/netlab/netlab.sh")
}

/// Why the lab cannot run here, if it cannot: root and `tools` are needed.
pub fn unavailable(tools: &[&str]) -> Option<String> {
    // The effective user: `id -u` prints it.
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (network namespaces, iptables)".into());
    }
    for tool in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// True if test `name` must skip: prints SKIPPED and why, or panics instead when
/// `PEERSHARE_REQUIRE_NETLAB=1` (CI, as root) says the lab must run.
pub fn skip(name: &str, tools: &[&str]) -> bool {
    let Some(why) = unavailable(tools) else {
        return false;
    };
    if std::env::var("PEERSHARE_REQUIRE_NETLAB").is_ok_and(|v| v == "1") {
        panic!("the NAT lab must run here: {why}");
    }
    println!("SKIPPED {name}: {why}");
    true
}

/// The lab; removed on drop, failures included.
pub struct Lab {
    pub prefix: String,
}

impl Lab {
    /// Builds the lab with `netlab.sh CMD` (`up`: the NAT matrix; `up-lan`: the LAN lab).
    pub fn up(cmd: &str) -> Lab {
        let prefix = format!("psl{}", std::process::id());
        // Labs left by crashed runs (their creator's PID is gone) go first.
        let _ = Command::new(script()).arg("gc").status();
        let lab = Lab { prefix };
        let st = Command::new(script())
            .args([cmd, &lab.prefix])
            .status()
            .expect("run netlab.sh");
        assert!(st.success(), "netlab.sh up failed");
        lab
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &self.prefix]).status();
    }
}

/// A node running in a namespace.
pub struct LabNode {
    pub ns: String,
    pub child: Child,
}

impl LabNode {
    /// Starts a node on port 4001 (API 5001) in `host`'s namespace, bound to `0.0.0.0`
    /// unless `extra` names `--bind`.
    pub fn start(lab: &Lab, host: &str, dir: &Path, bootstrap: &[&str], extra: &[&str]) -> LabNode {
        let ns = lab.ns(host);
        let data = dir.join(host);
        let log = std::fs::File::create(dir.join(format!("{host}.log"))).expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, super::bin(), "run", "--data-dir"])
            .arg(&data)
            .args(["--port", "4001", "--api-port", "5001"]);
        if !extra.contains(&"--bind") {
            cmd.args(["--bind", "0.0.0.0"]);
        }
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.args(extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node in its namespace");
        LabNode { ns, child }
    }

    /// Runs a client subcommand against this node's API, inside its namespace.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = self.client(args).expect("run the peershare client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Runs the client with `args` against this node's API, inside its namespace.
    fn client(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, super::bin()])
            .args(args)
            .args(["--api", "127.0.0.1:5001"])
            .output()
    }

    /// `status --json`, or null.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or(Value::Null)
    }

    /// `status --json`, or what the client printed when it failed.
    pub fn try_status(&self) -> Result<Value, String> {
        let out = self
            .client(&["status", "--json"])
            .map_err(|e| format!("cannot run the client: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).map_err(|e| {
            format!(
                "status --json on {}: {} ({e}); stdout {:?}; stderr {:?}",
                self.ns,
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Stops the node the way a user does (SIGTERM); true if it exited within 10 s.
    pub fn terminate(&mut self) -> bool {
        // `ip netns exec` execs the node, so the child's PID is the node's.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        super::wait_until(Duration::from_secs(10), || {
            self.child.try_wait().is_ok_and(|s| s.is_some())
        })
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints the last 15 lines of each host's log (`DIR/HOST.log`), for a failed run.
pub fn dump_logs(dir: &Path, hosts: &[&str]) {
    for h in hosts {
        if let Ok(log) = std::fs::read_to_string(dir.join(format!("{h}.log"))) {
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            println!(
                "--- {h} (last lines)\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
