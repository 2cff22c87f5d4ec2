//! Publishing the node's status view for the API and dashboard threads, paced by what it
//! costs ([`ViewPace`]), and at once for a reader that must see every change its client
//! caused (read-your-writes: `status` after `add` lists the share whatever the pace).

use std::time::Instant;

use super::{Reactor, VIEW_EVERY};
use crate::node_core::view::BandwidthView;
use crate::node_core::IoStatus;

impl Reactor {
    /// Rebuilds and publishes the view when it changed or is due, no sooner than its pace
    /// allows.
    pub(super) fn publish_view(&mut self, now: Instant) {
        if !(self.view_dirty || now >= self.next_view) {
            return;
        }
        if now < self.view_pace.soonest() {
            self.next_view = self.view_pace.wake_at(self.next_view, now);
            return;
        }
        self.publish_view_now(now);
    }

    /// The node changed: the view is rebuilt when its pace allows, and readers in the
    /// meantime know it is stale.
    pub(super) fn view_changed(&mut self) {
        self.view_dirty = true;
        self.shared.mark_stale();
    }

    /// Publishes a fresh view if the node changed since the last one, whatever the pace: a
    /// reader waits for it.
    pub(super) fn fresh_view(&mut self, now: Instant) {
        if self.view_dirty {
            self.publish_view_now(now);
        }
    }

    fn publish_view_now(&mut self, now: Instant) {
        let (up_rate, down_rate) = self.bw.rates(now);
        let io = IoStatus {
            emulated_drops: self.emulator.dropped,
            api_connections: self.api.connections(),
            api_refused: self.api.refused(),
            circuits: self.relays.circuits(),
            hooks: self.hooks.stats(),
            bandwidth: BandwidthView {
                limits: self.bw.limits(),
                up_rate,
                down_rate,
            },
        };
        self.shared.publish(self.core.status_view(now, io));
        self.view_pace.built(now);
        self.next_view = now + VIEW_EVERY;
        self.view_dirty = false;
    }
}
