//! The worker pool: threads that take jobs (request parsing, hashing, disk I/O) from a
//! crossbeam channel, so the event loop never blocks on them. A job's result goes back to the
//! loop through a channel, and the loop's mio `Waker` is woken so it picks the result up.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of worker threads.
pub struct WorkerPool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `n` workers sharing a queue of `queue` jobs (at least one).
    pub fn new(n: usize, queue: usize) -> std::io::Result<Self> {
        // Bounded so a flood of work applies back-pressure instead of growing memory.
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rx: Receiver<Job> = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("peershare-worker-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })?,
            );
        }
        Ok(WorkerPool {
            jobs: Some(tx),
            threads,
        })
    }

    /// Runs `job` on a worker. Returns false if the pool is saturated or shut down (the
    /// caller answers "busy" rather than blocking the event loop).
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> bool {
        match &self.jobs {
            Some(tx) => tx.try_send(Box::new(job)).is_ok(),
            None => false,
        }
    }

    /// Whether the queue can take a job now.
    pub fn has_room(&self) -> bool {
        self.jobs.as_ref().is_some_and(|tx| !tx.is_full())
    }

    /// Stops accepting jobs and waits for the queued ones to finish.
    pub fn shutdown(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends results from workers back to the event loop and wakes it.
pub struct Completer<T> {
    tx: Sender<T>,
    waker: Arc<mio::Waker>,
}

impl<T> Clone for Completer<T> {
    fn clone(&self) -> Self {
        Completer {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<T> Completer<T> {
    /// A completer and the receiving end the loop drains when woken.
    pub fn new(waker: Arc<mio::Waker>) -> (Self, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Completer { tx, waker }, rx)
    }

    /// Hands `result` to the loop.
    pub fn complete(&self, result: T) {
        if self.tx.send(result).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }
}
