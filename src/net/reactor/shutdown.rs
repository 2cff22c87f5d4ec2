//! Stopping the node: the router's port mappings removed first, then the jobs still
//! waiting, then the final saves.

use std::io;
use std::time::Instant;

use mio::Events;

use super::{Job, Reactor, UNMAP_FOR};

impl Reactor {
    /// Stops the node: the router's port mappings go first (they point at a node that is
    /// going away), then every job still waiting runs here, then the final saves.
    pub(super) fn stop(&mut self) {
        let now = Instant::now();
        let wait = self.core.begin_shutdown(now);
        self.drain(now);
        if wait {
            self.wait_for_unmapping();
        }
        self.backlog.run_all_here(&self.jobs);
        for job in self.core.final_jobs() {
            self.jobs.run(Job::Storage(job));
        }
        self.hooks.shutdown();
    }

    /// Waits up to [`UNMAP_FOR`] for the gateway to confirm the mappings' removal (they
    /// expire on their own if it never answers). Other sockets' events are dropped: the
    /// node is stopping.
    fn wait_for_unmapping(&mut self) {
        let until = Instant::now() + UNMAP_FOR;
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            if self.core.mapping_removed() || now >= until {
                break;
            }
            let wake = self.core.poll_timeout().unwrap_or(until).min(until);
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("nat-pmp: poll while removing mappings: {e}");
                    break;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                let t = ev.token();
                if self.nat.owns(t) {
                    let mut out = Vec::new();
                    self.nat.ready(self.poll.registry(), t, &mut out);
                    self.nat_events(now, out);
                }
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.drain(now);
        }
        if self.core.mapping_removed() {
            log::info!("nat-pmp: mappings removed");
        } else {
            log::info!(
                "nat-pmp: the gateway did not confirm the removal; the mappings will expire"
            );
        }
    }
}
