//! The owner's completion hook (`on_complete` in the config file), run for every completed
//! download without ever blocking the event loop: the loop hands each run to a thread of
//! its own ([`Hooks`]), which spawns `sh -c COMMAND`, reaps it and logs its exit status.
//!
//! The hook's environment (its documented interface; README, Hooks):
//! - `PEERSHARE_ID`: the content ID (64 hex digits);
//! - `PEERSHARE_PATH`: the complete, verified file (absolute); also `$1`;
//! - `PEERSHARE_NAME`: its file name (made safe by the node: no `/`, no control characters);
//! - `PEERSHARE_SIZE`: its size in bytes.
//!
//! Security: the command comes only from the owner's config file, never from a peer; the
//! values (the name is a peer's word) travel in the environment and as `$1`, never inside
//! the command's text, so no file name can inject shell code (quote them: `"$PEERSHARE_PATH"`).
//! Its stdin is empty; its stdout and stderr go to the node's log (stderr), never to the
//! node's stdout, whose lines scripts read.
//!
//! At most [`MAX_RUNNING`] hooks run at once; more wait in order. A hook still running after
//! [`HOOK_TIMEOUT`] is killed with everything it started (its own process group) and counted
//! as failed: eight hung hooks would otherwise hold every slot for good, and no later
//! download's hook would ever run. Every run is counted:
//! `status` shows `hooks: {started, failed, running, waiting}`; a hook that cannot be
//! spawned or exits other than 0 is logged and counted as failed, never dropped silently.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::node_core::view::HookStats;
use crate::node_core::HookRun;

/// Hooks running at once, at most.
pub const MAX_RUNNING: usize = 8;
/// How long a hook may run (generous: a hook may transcode or upload a big file).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often running hooks are checked for their exit.
const REAP_EVERY: Duration = Duration::from_millis(100);

/// The hook runner: a thread that spawns and reaps (see the module docs).
pub struct Hooks {
    tx: Option<Sender<HookRun>>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    started: AtomicU64,
    failed: AtomicU64,
    running: AtomicU64,
    waiting: AtomicU64,
}

impl Counts {
    /// A running hook is over, as a success or not.
    fn ended(&self, ok: bool) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Hooks {
    /// Starts the runner's thread.
    pub fn new() -> io::Result<Hooks> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("peershare-hooks".into())
            .spawn(move || runner(&rx, &c, HOOK_TIMEOUT))?;
        Ok(Hooks {
            tx: Some(tx),
            counts,
            thread: Some(thread),
        })
    }

    /// Runs `hook` (soon: at once unless [`MAX_RUNNING`] already run). Never blocks.
    pub fn run(&self, hook: HookRun) {
        self.counts.waiting.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.as_ref().map(|tx| tx.send(hook));
        if !matches!(sent, Some(Ok(()))) {
            self.counts.waiting.fetch_sub(1, Ordering::Relaxed);
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
            log::error!("hook: the hook runner is gone; a completion hook was not run");
        }
    }

    /// The counters for `status`.
    pub fn stats(&self) -> HookStats {
        let c = &self.counts;
        HookStats {
            started: c.started.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
        }
    }

    /// The node is stopping: hooks still waiting are started now (the runner does not
    /// wait for any to end; they outlive the node).
    pub fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The runner's loop: take hooks, start them (at most [`MAX_RUNNING`] at once), reap them,
/// kill those running longer than `timeout`.
fn runner(rx: &Receiver<HookRun>, counts: &Counts, timeout: Duration) {
    let mut waiting: VecDeque<HookRun> = VecDeque::new();
    let mut running: Vec<(Child, HookRun, Instant)> = Vec::new();
    loop {
        let got = if running.is_empty() && waiting.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(REAP_EVERY)
        };
        let stopping = match got {
            Ok(h) => {
                waiting.push_back(h);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        while let Ok(h) = rx.try_recv() {
            waiting.push_back(h);
        }
        while stopping || running.len() < MAX_RUNNING {
            let Some(h) = waiting.pop_front() else { break };
            counts.waiting.fetch_sub(1, Ordering::Relaxed);
            match spawn(&h) {
                Ok(child) => {
                    counts.started.fetch_add(1, Ordering::Relaxed);
                    counts.running.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "hook: started for {} (pid {}): {}",
                        h.content,
                        child.id(),
                        h.command
                    );
                    running.push((child, h, Instant::now()));
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    log::error!("hook: cannot run `{}` for {}: {e}", h.command, h.content);
                }
            }
        }
        running.retain_mut(|(child, h, since)| match child.try_wait() {
            Ok(None) if since.elapsed() < timeout => true,
            Ok(None) => {
                kill_group(child);
                counts.ended(false);
                log::warn!(
                    "hook: for {} still running after {timeout:.0?}: killed (pid {}): {}",
                    h.content,
                    child.id(),
                    h.command
                );
                false
            }
            Ok(Some(status)) => {
                counts.ended(status.success());
                let took = since.elapsed();
                if status.success() {
                    log::info!("hook: for {} exited 0 after {took:.1?}", h.content);
                } else {
                    log::warn!(
                        "hook: for {} failed after {took:.1?} ({status}): {}",
                        h.content,
                        h.command
                    );
                }
                false
            }
            Err(e) => {
                counts.ended(false);
                log::error!("hook: cannot wait for the hook of {}: {e}", h.content);
                false
            }
        });
        if stopping {
            if !running.is_empty() {
                log::info!(
                    "hook: {} hook(s) still running as the node stops; not waited for",
                    running.len()
                );
            }
            return;
        }
    }
}

/// `sh -c COMMAND peershare-hook PATH`, with the values in the environment (the module
/// docs list them) and stdin empty; the caller chooses where its output goes. `peershare
/// get --exec` runs its command the same way.
pub fn command(h: &HookRun) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(&h.command)
        .arg("peershare-hook")
        .arg(&h.path)
        .env("PEERSHARE_ID", h.content.to_hex())
        .env("PEERSHARE_PATH", &h.path)
        .env("PEERSHARE_NAME", &h.name)
        .env("PEERSHARE_SIZE", h.size.to_string())
        .stdin(Stdio::null());
    c
}

/// [`command`] with its output into the node's log (stderr), started.
/// In a process group of its own, so that a timeout kills what it started too.
fn spawn(h: &HookRun) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log =
        || -> io::Result<Stdio> { Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?)) };
    command(h)
        .process_group(0)
        .stdout(log()?)
        .stderr(log()?)
        .spawn()
}

/// Kills a hook's process group (the hook is its leader: [`spawn`]) and reaps the hook.
fn kill_group(child: &mut Child) {
    match libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        Ok(pid) if unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 => {}
        _ => {
            if let Err(e) = child.kill() {
                log::warn!("hook: cannot kill pid {}: {e}", child.id());
            }
        }
    }
    if let Err(e) = child.wait() {
        log::warn!("hook: cannot reap pid {}: {e}", child.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn alive(pid: i32) -> bool {
        // Gone, or a zombie nobody reaped yet: either way it no longer runs.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| !r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// A hook that hangs (and started a child that hangs too) is killed after the timeout,
    /// child included, and counted as failed; the next hook then runs.
    #[test]
    fn a_hung_hook_is_killed_with_its_children_and_the_next_runs() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let done = dir.path().join("done");
        let hook = |command: String| HookRun {
            command,
            content: Id([1; 32]),
            path: dir.path().join("f"),
            name: "f".into(),
            size: 1,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let th = std::thread::spawn(move || runner(&rx, &c, Duration::from_millis(300)));
        let hang = format!("sleep 60 & echo $! > '{}'; wait", pidfile.display());
        counts.waiting.fetch_add(2, Ordering::Relaxed);
        tx.send(hook(hang)).unwrap();
        let t0 = Instant::now();
        while counts.failed.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(counts.failed.load(Ordering::Relaxed), 1, "not killed");
        assert_eq!(counts.running.load(Ordering::Relaxed), 0);
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let t1 = Instant::now();
        while alive(child) && t1.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(child), "the hook's child {child} outlived it");
        tx.send(hook(format!("touch '{}'", done.display())))
            .unwrap();
        while !done.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(done.exists(), "the next hook did not run");
        drop(tx);
        th.join().unwrap();
        assert_eq!(counts.started.load(Ordering::Relaxed), 2);
        assert_eq!(counts.waiting.load(Ordering::Relaxed), 0);
    }
}
