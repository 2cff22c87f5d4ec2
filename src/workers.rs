//! The worker pool: threads that take jobs (request parsing, hashing, disk I/O) from a
//! crossbeam channel, so the event loop never blocks on them. A job's result goes back to the
//! loop through a channel, and the loop's mio `Waker` is woken so it picks the result up.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The loop was woken and has not drained since: another wake-up would only cost a
    /// system call and an empty turn of the loop (a download of 10,000 small chunks
    /// completes 10,000 jobs, many while the loop is awake).
    woken: Arc<AtomicBool>,
}

impl<T> Clone for Completer<T> {
    fn clone(&self) -> Self {
        Completer {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
            woken: self.woken.clone(),
        }
    }
}

impl<T> Completer<T> {
    /// A completer and the receiving end the loop drains when woken.
    pub fn new(waker: Arc<mio::Waker>) -> (Self, Completions<T>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let woken = Arc::new(AtomicBool::new(false));
        (
            Completer {
                tx,
                waker,
                woken: woken.clone(),
            },
            Completions { rx, woken },
        )
    }

    /// Hands `result` to the loop, and wakes it unless it was woken since it last drained.
    pub fn complete(&self, result: T) {
        // Sent before the flag is read: if the loop cleared the flag before this read, this
        // call wakes it; if after, its drain (which follows the clearing) finds the result.
        if self.tx.send(result).is_ok() && !self.woken.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }
}

/// The loop's end of a [`Completer`].
pub struct Completions<T> {
    rx: Receiver<T>,
    woken: Arc<AtomicBool>,
}

impl<T> Completions<T> {
    /// Call before draining with [`Completions::try_recv`]: a result sent from now on wakes
    /// the loop again unless this drain takes it.
    pub fn start_drain(&self) {
        self.woken.store(false, Ordering::SeqCst);
    }

    /// The next result, if any.
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results sent while the loop has not drained wake it once; after a drain starts, the
    /// next result wakes it again; nothing is lost either way.
    #[test]
    fn a_loop_already_woken_is_not_woken_again() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let (completer, completions) = Completer::new(waker);
        let mut events = mio::Events::with_capacity(8);
        let woken = |poll: &mut mio::Poll, events: &mut mio::Events| {
            poll.poll(events, Some(std::time::Duration::from_millis(10)))
                .unwrap();
            events.iter().count()
        };
        assert_eq!(woken(&mut poll, &mut events), 0);
        for i in 0..3 {
            completer.complete(i);
        }
        assert_eq!(woken(&mut poll, &mut events), 1);
        // Not drained yet: a fourth result does not wake it again.
        completer.complete(3);
        assert_eq!(woken(&mut poll, &mut events), 0);
        completions.start_drain();
        let got: Vec<i32> = std::iter::from_fn(|| completions.try_recv()).collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        completer.complete(4);
        assert_eq!(woken(&mut poll, &mut events), 1);
        completions.start_drain();
        assert_eq!(completions.try_recv(), Some(4));
    }
}
