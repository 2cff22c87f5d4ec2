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
//! At most [`MAX_RUNNING`] hooks run at once; more wait in order. Every run is counted:
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

impl Hooks {
    /// Starts the runner's thread.
    pub fn new() -> io::Result<Hooks> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("peershare-hooks".into())
            .spawn(move || runner(&rx, &c))?;
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

/// The runner's loop: take hooks, start them (at most [`MAX_RUNNING`] at once), reap them.
fn runner(rx: &Receiver<HookRun>, counts: &Counts) {
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
            Ok(None) => true,
            Ok(Some(status)) => {
                counts.running.fetch_sub(1, Ordering::Relaxed);
                let took = since.elapsed();
                if status.success() {
                    log::info!("hook: for {} exited 0 after {took:.1?}", h.content);
                } else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "hook: for {} failed after {took:.1?} ({status}): {}",
                        h.content,
                        h.command
                    );
                }
                false
            }
            Err(e) => {
                counts.running.fetch_sub(1, Ordering::Relaxed);
                counts.failed.fetch_add(1, Ordering::Relaxed);
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
fn spawn(h: &HookRun) -> io::Result<Child> {
    let log =
        || -> io::Result<Stdio> { Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?)) };
    command(h).stdout(log()?).stderr(log()?).spawn()
}
