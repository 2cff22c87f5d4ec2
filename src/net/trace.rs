//! `peershare run --trace`: one line per DHT datagram and wire frame, sent or received,
//! decoded by [`crate::explain`] — the protocol as it happens, for learning and
//! debugging. Lines go to stderr: `trace <seconds since start> <in|out> <udp|tcp> <peer>
//! <message>`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use crate::explain;
use crate::proto::wire::Message;

/// Writes trace lines when enabled; does nothing (and decodes nothing) otherwise.
pub struct Tracer {
    start: Option<Instant>,
}

impl Tracer {
    /// A tracer that is on or off.
    pub fn new(on: bool) -> Self {
        Tracer {
            start: on.then(Instant::now),
        }
    }

    /// Whether lines are written (callers skip work done only for tracing).
    pub fn enabled(&self) -> bool {
        self.start.is_some()
    }

    /// A datagram sent (`out`) to or received from `peer`.
    pub fn datagram(&self, out: bool, peer: SocketAddr, bytes: &[u8]) {
        if self.start.is_some() {
            self.line(
                out,
                "udp",
                peer,
                &explain::summarize_as(bytes, explain::Kind::Dht),
            );
        }
    }

    /// A wire frame sent to or received from `peer`.
    pub fn frame(&self, out: bool, peer: Option<SocketAddr>, msg: &Message) {
        if self.start.is_some() {
            let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            self.line(out, "tcp", peer, &explain::summarize_message(msg));
        }
    }

    /// A PIECE frame queued to `peer` (its data is not copied to be summarised).
    pub fn piece(&self, peer: Option<SocketAddr>, chunk: u32, len: usize) {
        if self.start.is_some() {
            let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            self.line(true, "tcp", peer, &format!("PIECE chunk={chunk} len={len}"));
        }
    }

    fn line(&self, out: bool, proto: &str, peer: SocketAddr, what: &str) {
        let t = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let dir = if out { "out" } else { "in " };
        // One write per line, so lines from the loop stay whole; errors (a closed stderr)
        // are not worth stopping the node for.
        let _ = writeln!(
            std::io::stderr().lock(),
            "trace {t:10.3} {dir} {proto} {peer} {what}"
        );
    }
}
