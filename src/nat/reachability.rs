//! Reachability: testing our own (asking peers to dial back to our public address, waiting
//! for their PROBE), a router's port mapping, and dialling back for peers that test theirs
//! (nat.md, section 3).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Action, Nat, Reachability};
use crate::proto::dht::{error_code, Contact, Message};

/// Our reachability test.
#[derive(Clone, Copy, Debug)]
pub(super) enum Probe {
    Idle,
    Waiting {
        nonce: u64,
        acked: bool,
        deadline: Instant,
    },
}

impl Nat {
    /// Peers agree on our public address: test whether it is reachable by asking up to two
    /// `peers` to dial back. `peers` are also the rendezvous candidates.
    pub fn external_address(&mut self, now: Instant, peers: Vec<Contact>) {
        if !self.cfg.enabled || self.reach == Reachability::Mapped {
            return;
        }
        if !peers.is_empty() {
            self.candidates = peers;
        }
        if matches!(self.probe, Probe::Waiting { .. }) || self.candidates.is_empty() {
            return;
        }
        let nonce = self.next_rand();
        let port = self.wire_port;
        for c in self.candidates.clone().into_iter().take(2) {
            let txid = self.next_rand();
            self.send(c.addr, txid, Message::Dialback { nonce, port });
        }
        self.probe = Probe::Waiting {
            nonce,
            acked: false,
            deadline: now + self.cfg.probe_wait,
        };
        // Register at once, not when the test fails (nat.md section 4): a node sharing as it
        // starts announces its rendezvous within a round trip rather than after the probe
        // wait, so a downloader does not first wait out a connect its firewall drops. A test
        // that finds us reachable drops the registration and the records say so again.
        if self.reach == Reachability::Unknown && self.registration.is_none() {
            self.register(now);
        }
    }

    /// The router maps our port (NAT-PMP, [`pmp`](super::pmp)), or stopped doing so. Mapped, we
    /// are reachable and need no rendezvous; the mapping lost, reachability is tested again.
    pub fn set_mapped(&mut self, now: Instant, mapped: bool) {
        if mapped {
            self.set_reach(Reachability::Mapped);
            self.probe = Probe::Idle;
            self.next_probe = None;
            self.drop_registration();
        } else if self.reach == Reachability::Mapped {
            self.set_reach(Reachability::Unknown);
            self.next_probe = Some(now);
        }
    }

    /// Whether a reachability test is owed but found no peer to ask: peers agreed on our
    /// address while the routing table was still empty (contacts enter it only once they
    /// have proved their keys, dht.md section 6.1). The caller then asks again with peers.
    pub fn lacks_candidates(&self) -> bool {
        self.cfg.enabled
            && self.reach == Reachability::Unknown
            && self.candidates.is_empty()
            && !matches!(self.probe, Probe::Waiting { .. })
    }

    /// A peer asks us to dial back to its wire port (its own reachability test).
    pub(super) fn on_dialback(&mut self, from: SocketAddr, txid: u64, nonce: u64, port: u16) {
        if self.dialbacks >= self.cfg.max_dialbacks || port == 0 {
            let msg = Message::Error {
                code: error_code::RATE_LIMITED,
                text: "too many dial-backs in progress".into(),
            };
            self.send(from, txid, msg);
            return;
        }
        self.dialbacks += 1;
        self.send(from, txid, Message::DialbackAck);
        self.actions.push_back(Action::DialBack {
            addr: SocketAddr::new(from.ip(), port),
            nonce,
        });
    }

    /// A peer acknowledged our DIALBACK: if its PROBE does not come, we are not reachable.
    pub(super) fn on_dialback_ack(&mut self) {
        if let Probe::Waiting { acked, .. } = &mut self.probe {
            *acked = true;
        }
    }

    /// A dial-back this node was making ended (whatever the outcome).
    pub fn dialback_done(&mut self) {
        self.dialbacks = self.dialbacks.saturating_sub(1);
    }

    /// A PROBE frame arrived on a connection to our wire port.
    pub fn probe_received(&mut self, now: Instant, nonce: u64) -> bool {
        match self.probe {
            Probe::Waiting { nonce: n, .. } if n == nonce => {
                self.probe = Probe::Idle;
                self.set_reach(Reachability::Public);
                self.drop_registration();
                self.next_probe = Some(now + self.cfg.recheck_every);
                true
            }
            _ => false,
        }
    }

    /// The test's deadline, and the next test.
    pub(super) fn probe_timeout(&mut self, now: Instant) {
        if let Probe::Waiting {
            acked, deadline, ..
        } = self.probe
        {
            if deadline <= now {
                self.probe = Probe::Idle;
                if acked {
                    // A peer tried to reach us and could not.
                    log::info!("nat: dial-back did not get through: not reachable");
                    self.set_reach(Reachability::Unreachable);
                    // A re-test that confirms it keeps the rendezvous we have.
                    if self.registration.is_none() {
                        self.register(now);
                    }
                    self.next_probe = Some(now + self.cfg.recheck_every);
                } else {
                    // Nobody answered: try again later.
                    self.next_probe = Some(now + Duration::from_secs(10));
                }
            }
        }
        if self.next_probe.is_some_and(|t| t <= now) {
            self.next_probe = None;
            self.external_address(now, Vec::new());
        }
    }
}
