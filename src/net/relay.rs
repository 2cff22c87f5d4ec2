//! Relayed circuits, as a rendezvous (nat.md section 7): the sockets the node core told the
//! reactor to hold (a downloader that sent RELAY, waiting for the provider to join), and
//! the circuits that copy bytes between the two ends, within limits on count (the core's),
//! rate, bytes and duration. The bytes are the two peers' own wire session: the relay
//! neither reads nor alters them.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::tokens;
use crate::conn::ConnId;
use crate::proto::wire::Message as WireMsg;

/// Relayed circuits: most bytes per second each way, most bytes in all, longest life.
const CIRCUIT_RATE: f64 = 4_000_000.0;
const CIRCUIT_BYTES: u64 = 1 << 30;
const CIRCUIT_LIFE: Duration = Duration::from_secs(600);
/// Bytes buffered per direction of a circuit.
const CIRCUIT_BUF: usize = 64 * 1024;
/// Circuits waiting for rate allowance are served this often.
const PUMP_EVERY: Duration = Duration::from_millis(50);

/// What the relays report to the node core.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// A held opener closed (or misbehaved) before its circuit came.
    HeldGone(ConnId),
    /// A circuit ended.
    CircuitClosed,
}

struct Circuit {
    ends: [(ConnId, TcpStream); 2],
    /// `bufs[i]`: bytes read from end `i`, waiting to be written to the other end.
    bufs: [Vec<u8>; 2],
    started: Instant,
    moved: u64,
    allowance: f64,
    refilled: Instant,
    closed: bool,
}

/// Held sockets and running circuits.
#[derive(Default)]
pub struct Relays {
    held: HashMap<ConnId, TcpStream>,
    circuits: Vec<Circuit>,
    /// Which circuit each end's token belongs to.
    of_token: HashMap<Token, usize>,
}

impl Relays {
    /// Whether `t` is a held socket or a circuit's end.
    pub fn owns(&self, t: Token) -> bool {
        self.of_token.contains_key(&t)
            || tokens::conn_of(t).is_some_and(|c| self.held.contains_key(&c))
    }

    /// Circuits running.
    pub fn circuits(&self) -> usize {
        self.circuits.len()
    }

    /// Keeps `conn`'s socket (already registered under its token) until its circuit comes.
    pub fn hold(&mut self, reg: &Registry, conn: ConnId, mut stream: TcpStream) {
        // Only reading: the opener must wait silently, so anything it sends (or EOF) ends it.
        let _ = reg.reregister(&mut stream, tokens::of(conn), Interest::READABLE);
        self.held.insert(conn, stream);
    }

    /// Closes a held socket.
    pub fn drop_held(&mut self, reg: &Registry, conn: ConnId) {
        if let Some(mut s) = self.held.remove(&conn) {
            let _ = reg.deregister(&mut s);
        }
    }

    /// Both ends are here: tell the opener (RELAY_OK), then copy bytes both ways. Returns
    /// false if the opener is no longer held (the joiner's socket is then closed).
    pub fn start(
        &mut self,
        reg: &Registry,
        opener: ConnId,
        joiner: (ConnId, TcpStream),
        now: Instant,
    ) -> bool {
        let Some(o) = self.held.remove(&opener) else {
            let mut j = joiner.1;
            let _ = reg.deregister(&mut j);
            return false;
        };
        let mut ok = Vec::new();
        WireMsg::RelayOk.encode(&mut ok);
        let mut c = Circuit {
            ends: [(opener, o), joiner],
            bufs: [Vec::new(), ok],
            started: now,
            moved: 0,
            allowance: CIRCUIT_RATE / 10.0,
            refilled: now,
            closed: false,
        };
        let i = self.circuits.len();
        for (conn, s) in c.ends.iter_mut() {
            let t = tokens::of(*conn);
            let _ = reg.reregister(s, t, Interest::READABLE | Interest::WRITABLE);
            self.of_token.insert(t, i);
        }
        self.circuits.push(c);
        self.pump(i, now);
        true
    }

    /// Readiness of a held socket or a circuit's end.
    pub fn ready(&mut self, reg: &Registry, t: Token, now: Instant, ev: &mut Vec<RelayEvent>) {
        if let Some(&i) = self.of_token.get(&t) {
            self.pump(i, now);
            self.reap(reg, ev);
            return;
        }
        let Some(conn) = tokens::conn_of(t) else {
            return;
        };
        let Some(s) = self.held.get_mut(&conn) else {
            return;
        };
        let mut buf = [0u8; 64];
        // Anything but "nothing yet" (EOF, an error, or bytes before RELAY_OK, which the
        // opener must not send) ends the wait.
        let gone = !matches!(
            s.read(&mut buf),
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
        );
        if gone {
            self.drop_held(reg, conn);
            ev.push(RelayEvent::HeldGone(conn));
        }
    }

    /// Serves every circuit (rate allowance refills with time) and ends those done.
    pub fn tick(&mut self, reg: &Registry, now: Instant, ev: &mut Vec<RelayEvent>) {
        for i in 0..self.circuits.len() {
            self.pump(i, now);
        }
        self.reap(reg, ev);
    }

    /// When [`Relays::tick`] is next due.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        (!self.circuits.is_empty()).then(|| now + PUMP_EVERY)
    }

    /// Copies what it can between the two ends of circuit `i`, within its limits.
    fn pump(&mut self, i: usize, now: Instant) {
        let Some(c) = self.circuits.get_mut(i) else {
            return;
        };
        if c.closed {
            return;
        }
        let dt = now.saturating_duration_since(c.refilled).as_secs_f64();
        c.refilled = now;
        c.allowance = (c.allowance + dt * CIRCUIT_RATE).min(CIRCUIT_RATE / 10.0);
        if now.saturating_duration_since(c.started) > CIRCUIT_LIFE || c.moved > CIRCUIT_BYTES {
            c.closed = true;
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        for from in 0..2 {
            let to = 1 - from;
            // Read from `from` while there is room and allowance.
            loop {
                let room = CIRCUIT_BUF.saturating_sub(c.bufs[from].len());
                let allow = c.allowance.max(0.0) as usize;
                let n = room.min(allow).min(buf.len());
                if n == 0 {
                    break;
                }
                match c.ends[from].1.read(&mut buf[..n]) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.bufs[from].extend_from_slice(&buf[..k]);
                        c.allowance -= k as f64;
                        c.moved += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
            // Write it to `to`.
            while !c.bufs[from].is_empty() {
                match c.ends[to].1.write(&c.bufs[from]) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.bufs[from].drain(..k);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
        }
    }

    /// Ends the circuits that are done: both sockets closed, the core told.
    fn reap(&mut self, reg: &Registry, ev: &mut Vec<RelayEvent>) {
        if !self.circuits.iter().any(|c| c.closed) {
            return;
        }
        let old = std::mem::take(&mut self.circuits);
        self.of_token.clear();
        for mut c in old {
            if c.closed {
                for (_, s) in c.ends.iter_mut() {
                    // Flush what is left, best effort, then close both ends.
                    let _ = s.flush();
                    let _ = reg.deregister(s);
                }
                ev.push(RelayEvent::CircuitClosed);
                continue;
            }
            let i = self.circuits.len();
            for (conn, _) in &c.ends {
                self.of_token.insert(tokens::of(*conn), i);
            }
            self.circuits.push(c);
        }
    }
}
