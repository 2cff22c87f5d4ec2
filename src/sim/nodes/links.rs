//! TCP-like pipes between simulated sockets and the link model that moves their bytes.
//!
//! A connection is two pipes, one per direction, each a FIFO of items (frames, PIECEs, and
//! a final FIN once the sender closed). Every `tick`, each node may send `up × tick` bytes
//! and receive `down × tick` bytes; the pipes with bytes queued share those budgets in
//! rounds of a small quantum, in an order that rotates every tick (per-connection fair
//! queueing, roughly what TCP flows sharing an access link get; slow start and loss are not
//! modelled). An item whose last byte has left arrives one latency later, in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::proto::wire::{Message, PIECE_HEADER_LEN};

/// A socket of the simulation (one end of a connection).
pub type SockId = u64;

/// A pipe's number.
pub type PipeId = u64;

/// What travels in a pipe.
#[derive(Debug)]
pub enum Item {
    /// A frame.
    Frame(Message),
    /// A PIECE, its data shared with the sender's storage.
    Piece {
        /// The chunk.
        chunk: u32,
        /// Its bytes.
        data: Arc<Vec<u8>>,
    },
    /// The sender closed the connection.
    Fin,
}

impl Item {
    /// Bytes on the wire.
    fn len(&self) -> u64 {
        match self {
            Item::Frame(m) => m.encoded_len() as u64,
            Item::Piece { data, .. } => (PIECE_HEADER_LEN + data.len()) as u64,
            // A FIN takes no room; it still waits its turn behind the data.
            Item::Fin => 0,
        }
    }
}

struct Pipe {
    from: usize,
    to: usize,
    /// The receiving socket.
    to_sock: SockId,
    /// The sending socket.
    from_sock: SockId,
    latency: Duration,
    /// Items with the bytes of the first one still to send.
    queue: VecDeque<Item>,
    head_left: u64,
}

/// An item whose last byte left in this tick.
pub struct Sent {
    /// The pipe it left.
    pub pipe: PipeId,
    /// Sending node and socket.
    pub from: (usize, SockId),
    /// Receiving node and socket.
    pub to: (usize, SockId),
    /// When it arrives.
    pub after: Duration,
    /// What.
    pub item: Item,
}

/// Every pipe.
#[derive(Default)]
pub struct Links {
    pipes: BTreeMap<PipeId, Pipe>,
    /// Pipes with something queued.
    active: BTreeSet<PipeId>,
    next: PipeId,
    /// Rotates the serving order from tick to tick.
    turn: u64,
}

/// The bytes a pipe may move at once before the next pipe's turn.
const QUANTUM: u64 = 4096;

impl Links {
    /// A new pipe from socket `from_sock` of node `from` to socket `to_sock` of node `to`.
    pub fn open(
        &mut self,
        from: (usize, SockId),
        to: (usize, SockId),
        latency: Duration,
    ) -> PipeId {
        let id = self.next;
        self.next += 1;
        self.pipes.insert(
            id,
            Pipe {
                from: from.0,
                to: to.0,
                from_sock: from.1,
                to_sock: to.1,
                latency,
                queue: VecDeque::new(),
                head_left: 0,
            },
        );
        id
    }

    /// Queues `item` on pipe `p` (ignored if the pipe is gone).
    pub fn push(&mut self, p: PipeId, item: Item) {
        if let Some(pipe) = self.pipes.get_mut(&p) {
            if pipe.queue.is_empty() {
                pipe.head_left = item.len();
            }
            pipe.queue.push_back(item);
            self.active.insert(p);
        }
    }

    /// Drops pipe `p` and what is queued on it (its sender is gone).
    pub fn drop_pipe(&mut self, p: PipeId) {
        self.pipes.remove(&p);
        self.active.remove(&p);
    }

    /// Whether any pipe has bytes to move.
    pub fn busy(&self) -> bool {
        !self.active.is_empty()
    }

    /// Moves bytes for one tick of `dt`; `up` and `down` give each node's capacity in bytes
    /// per second. Returns the items that finished leaving, in the order they left.
    pub fn tick(
        &mut self,
        dt: Duration,
        up: &dyn Fn(usize) -> u64,
        down: &dyn Fn(usize) -> u64,
    ) -> Vec<Sent> {
        let secs = dt.as_secs_f64();
        let mut up_left: BTreeMap<usize, u64> = BTreeMap::new();
        let mut down_left: BTreeMap<usize, u64> = BTreeMap::new();
        let order: Vec<PipeId> = {
            let all: Vec<PipeId> = self.active.iter().copied().collect();
            let k = if all.is_empty() {
                0
            } else {
                (self.turn % all.len() as u64) as usize
            };
            all[k..].iter().chain(all[..k].iter()).copied().collect()
        };
        self.turn = self.turn.wrapping_add(1);
        let mut out = Vec::new();
        loop {
            let mut moved = false;
            for p in &order {
                let Some(pipe) = self.pipes.get_mut(p) else {
                    continue;
                };
                if pipe.queue.is_empty() {
                    continue;
                }
                let u = up_left
                    .entry(pipe.from)
                    .or_insert_with(|| (up(pipe.from) as f64 * secs) as u64);
                let d = down_left
                    .entry(pipe.to)
                    .or_insert_with(|| (down(pipe.to) as f64 * secs) as u64);
                let n = QUANTUM.min(*u).min(*d).min(pipe.head_left);
                if n == 0 && pipe.head_left > 0 {
                    continue;
                }
                *u -= n;
                *d -= n;
                pipe.head_left -= n;
                moved = moved || n > 0;
                // Items that have left in full (a FIN, or an empty frame, leaves at once).
                while pipe.head_left == 0 {
                    let Some(item) = pipe.queue.pop_front() else {
                        break;
                    };
                    moved = true;
                    out.push(Sent {
                        pipe: *p,
                        from: (pipe.from, pipe.from_sock),
                        to: (pipe.to, pipe.to_sock),
                        after: pipe.latency,
                        item,
                    });
                    pipe.head_left = pipe.queue.front().map_or(0, Item::len);
                }
            }
            if !moved {
                break;
            }
        }
        self.active
            .retain(|p| self.pipes.get(p).is_some_and(|pipe| !pipe.queue.is_empty()));
        out
    }
}
