//! Our registration with a rendezvous (client side), while we are unreachable: registering,
//! renewing (which keeps our NAT's mapping open), answering its CALLs, and moving on to
//! another rendezvous when one stops answering (nat.md, section 4).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Action, Nat, Reachability};

/// How long an unreachable node waits before asking its candidates again once every one of
/// them refused to be its rendezvous or stopped answering.
const REGISTER_RETRY: Duration = Duration::from_secs(2);
use crate::proto::dht::{call_mode, Message};

/// Our registration with a rendezvous.
#[derive(Clone, Copy, Debug)]
pub(super) struct Registration {
    pub(super) rendezvous: SocketAddr,
    pub(super) txid: u64,
    /// Set once REGISTERED came back.
    pub(super) confirmed: bool,
    pub(super) next_renew: Instant,
    /// Renewals sent without an answer.
    pub(super) unanswered: u32,
}

impl Nat {
    /// Our rendezvous confirmed our registration (or its renewal).
    pub(super) fn on_registered(&mut self, from: SocketAddr, txid: u64) {
        let ours = self
            .registration
            .as_mut()
            .filter(|r| r.txid == txid && r.rendezvous == from);
        match ours {
            Some(r) => {
                r.unanswered = 0;
                if !r.confirmed {
                    r.confirmed = true;
                    log::info!("nat: {from} is our rendezvous");
                    self.actions.push_back(Action::Rendezvous(Some(from)));
                }
            }
            None => self.counters.unexpected += 1,
        }
    }

    /// Our rendezvous calls: a downloader wants to reach us (punch), or a relayed circuit
    /// waits for us to join.
    pub(super) fn on_call(
        &mut self,
        from: SocketAddr,
        txid: u64,
        mode: u8,
        nonce: u64,
        addr: SocketAddr,
        port: u16,
    ) {
        let from_ours = self
            .registration
            .is_some_and(|r| r.rendezvous == from && r.confirmed);
        if !from_ours {
            self.counters.unexpected += 1;
            return;
        }
        self.send(from, txid, Message::CallAck);
        if mode == call_mode::RELAY {
            self.actions.push_back(Action::RelayJoin {
                rendezvous: from,
                nonce,
                peer: addr,
            });
        } else {
            let txid = self.next_rand();
            self.send(addr, txid, Message::Ping);
            let tcp = SocketAddr::new(addr.ip(), if port == 0 { addr.port() } else { port });
            self.actions.push_back(Action::PunchAccept { addr: tcp });
        }
    }

    /// Renews the registration when due; two renewals unanswered, the rendezvous has failed.
    /// Without one, registers again once every candidate had failed and the retry is due.
    pub(super) fn renew_registration(&mut self, now: Instant) {
        if self.register_again.is_some_and(|t| t <= now) {
            self.register_again = None;
            if self.registration.is_none() && self.wants_rendezvous() {
                self.register(now);
            }
        }
        if let Some(r) = self.registration {
            if r.next_renew <= now {
                if r.unanswered >= 2 {
                    self.rendezvous_failed(now);
                } else {
                    let txid = self.next_rand();
                    let port = self.wire_port;
                    let flags = self.register_flags();
                    self.send_flagged(r.rendezvous, txid, Message::Register { port }, flags);
                    if let Some(r) = self.registration.as_mut() {
                        r.txid = txid;
                        r.unanswered += 1;
                        r.next_renew = now
                            + if r.confirmed {
                                self.cfg.renew_every
                            } else {
                                Duration::from_secs(2)
                            };
                    }
                }
            }
        }
    }

    pub(super) fn register(&mut self, now: Instant) {
        let pick = self
            .candidates
            .iter()
            .find(|c| !self.failed_rendezvous.contains(&c.addr))
            .copied();
        let Some(c) = pick else {
            // Every candidate refused or stopped answering: all of them again later, not at
            // once (nodes not yet known reachable refuse REGISTER, and retrying the first at
            // once made a storm of 100 REGISTERs a second in the lab).
            if !self.candidates.is_empty() {
                self.failed_rendezvous.clear();
                self.register_again = Some(now + REGISTER_RETRY);
            }
            return;
        };
        let txid = self.next_rand();
        let port = self.wire_port;
        let flags = self.register_flags();
        self.send_flagged(c.addr, txid, Message::Register { port }, flags);
        self.registration = Some(Registration {
            rendezvous: c.addr,
            txid,
            confirmed: false,
            next_renew: now + Duration::from_secs(2),
            unanswered: 1,
        });
    }

    pub(super) fn rendezvous_failed(&mut self, now: Instant) {
        if let Some(r) = self.registration.take() {
            log::info!("nat: rendezvous {} stopped answering", r.rendezvous);
            if !self.failed_rendezvous.contains(&r.rendezvous) {
                if self.failed_rendezvous.len() >= 16 {
                    self.failed_rendezvous.remove(0);
                }
                self.failed_rendezvous.push(r.rendezvous);
            }
            if r.confirmed {
                self.actions.push_back(Action::Rendezvous(None));
            }
        }
        if self.wants_rendezvous() {
            self.register(now);
        }
    }

    /// Whether we keep a rendezvous: when unreachable, and while our reachability is still
    /// unknown (a test under way registers at once, nat.md section 4).
    fn wants_rendezvous(&self) -> bool {
        matches!(
            self.reach,
            Reachability::Unreachable | Reachability::Unknown
        )
    }

    pub(super) fn drop_registration(&mut self) {
        if let Some(r) = self.registration.take() {
            if r.confirmed {
                self.actions.push_back(Action::Rendezvous(None));
            }
        }
    }
}
