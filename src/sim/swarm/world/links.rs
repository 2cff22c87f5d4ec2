//! The link model: pipes (one per direction of a connection, a FIFO of frames), each
//! sender's upload shared max-min fair among its busy pipes, then cut down to each
//! receiver's download, one link step at a time (the model is in [`super`]'s docs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::{Event, World};
use crate::proto::wire::{Message, PIECE_HEADER_LEN};
use crate::transfer::engine::ConnId;

/// What travels on a pipe.
#[derive(Debug)]
pub(super) enum Item {
    Frame(Message),
    Piece { chunk: u32, data: Arc<Vec<u8>> },
    Fin,
}

impl Item {
    fn size(&self) -> u64 {
        match self {
            Item::Frame(m) => m.encoded_len() as u64,
            Item::Piece { data, .. } => (PIECE_HEADER_LEN + data.len()) as u64,
            Item::Fin => 0,
        }
    }
}

pub(super) type PipeId = usize;

#[derive(Debug)]
pub(super) struct Pipe {
    from: usize,
    from_conn: ConnId,
    pub(super) to: usize,
    pub(super) to_conn: ConnId,
    latency: Duration,
    queue: VecDeque<Item>,
    /// Bytes of the head item already sent.
    head_sent: u64,
    /// Bytes queued and not yet sent.
    queued: u64,
}

impl World {
    pub(super) fn add_pipe(
        &mut self,
        from: usize,
        from_conn: ConnId,
        to: usize,
        to_conn: ConnId,
    ) -> PipeId {
        let latency = self.latency(from, to);
        self.pipes.push(Pipe {
            from,
            from_conn,
            to,
            to_conn,
            latency,
            queue: VecDeque::new(),
            head_sent: 0,
            queued: 0,
        });
        self.pipes.len() - 1
    }

    pub(super) fn push(&mut self, i: usize, conn: ConnId, item: Item) {
        if let Some(&p) = self.nodes[i].out.get(&conn) {
            self.push_to(p, item);
        }
    }

    pub(super) fn push_to(&mut self, p: PipeId, item: Item) {
        let pipe = &mut self.pipes[p];
        pipe.queued += item.size();
        pipe.queue.push_back(item);
        let from = pipe.from;
        self.nodes[from].busy.insert(p);
        self.busy_nodes.insert(from);
    }

    pub(super) fn clear_pipe(&mut self, p: PipeId) {
        let pipe = &mut self.pipes[p];
        pipe.queue.clear();
        pipe.queued = 0;
        pipe.head_sent = 0;
        let from = pipe.from;
        self.nodes[from].busy.remove(&p);
        if self.nodes[from].busy.is_empty() {
            self.busy_nodes.remove(&from);
        }
    }

    /// One link step: share each sender's upload among its busy pipes, cut down what
    /// exceeds each receiver's download, move the bytes.
    pub(super) fn link_step(&mut self) {
        let tick_us = self.cfg.tick.as_micros() as u64;
        let mut grants: Vec<(PipeId, u64)> = Vec::new();
        let senders: Vec<usize> = self.busy_nodes.iter().copied().collect();
        for s in senders {
            let node = &mut self.nodes[s];
            node.credit += node.spec.up * tick_us;
            let budget = node.credit / 1_000_000;
            node.credit %= 1_000_000;
            let wants: Vec<(PipeId, u64)> = node
                .busy
                .iter()
                .map(|&p| (p, self.pipes[p].queued))
                .collect();
            // Budget no pipe could use this step is not saved up.
            water_fill(budget, &wants, &mut grants);
        }
        // Receivers: cut what exceeds their download budget.
        let mut incoming: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, (p, _)) in grants.iter().enumerate() {
            incoming.entry(self.pipes[*p].to).or_default().push(k);
        }
        for (r, idx) in incoming {
            let node = &mut self.nodes[r];
            node.down_credit += node.spec.down * tick_us;
            let budget = node.down_credit / 1_000_000;
            node.down_credit %= 1_000_000;
            let total: u64 = idx.iter().map(|&k| grants[k].1).sum();
            if total <= budget {
                continue;
            }
            let wants: Vec<(PipeId, u64)> = idx.iter().map(|&k| (k, grants[k].1)).collect();
            let mut cut = Vec::new();
            water_fill(budget, &wants, &mut cut);
            for (k, g) in cut {
                grants[k].1 = g;
            }
        }
        let mut sent_pieces = Vec::new();
        for (p, bytes) in grants {
            self.transmit(p, bytes, &mut sent_pieces);
        }
        let now = self.instant();
        let mut touched = BTreeSet::new();
        for (node, conn) in sent_pieces {
            self.nodes[node].engine.piece_sent(now, conn);
            touched.insert(node);
        }
        for node in touched {
            self.drain(node);
        }
    }

    /// Sends `bytes` of pipe `p`'s queue; finished frames go on their way.
    fn transmit(&mut self, p: PipeId, mut bytes: u64, sent_pieces: &mut Vec<(usize, ConnId)>) {
        let mut done = Vec::new();
        {
            let pipe = &mut self.pipes[p];
            while let Some(head) = pipe.queue.front() {
                let rest = head.size() - pipe.head_sent;
                if rest > bytes {
                    pipe.head_sent += bytes;
                    pipe.queued -= bytes;
                    break;
                }
                bytes -= rest;
                pipe.queued -= rest;
                pipe.head_sent = 0;
                if let Some(item) = pipe.queue.pop_front() {
                    done.push(item);
                }
            }
        }
        let (from, from_conn, latency) = (
            self.pipes[p].from,
            self.pipes[p].from_conn,
            self.pipes[p].latency,
        );
        if self.pipes[p].queue.is_empty() {
            self.nodes[from].busy.remove(&p);
            if self.nodes[from].busy.is_empty() {
                self.busy_nodes.remove(&from);
            }
        }
        for item in done {
            if let Item::Piece { chunk, data } = &item {
                self.nodes[from].uploaded += data.len() as u64;
                self.sample.uploaded += data.len() as u64;
                if from == 0 {
                    self.sample.seeder += data.len() as u64;
                }
                sent_pieces.push((from, from_conn));
                if from == 0 {
                    self.seeder_sent(*chunk);
                }
            }
            let at = self.now + latency;
            self.schedule(at, Event::Deliver { pipe: p, item });
        }
    }

    fn seeder_sent(&mut self, chunk: u32) {
        let Some(n) = self.out.seeder_sent.get_mut(chunk as usize) else {
            return;
        };
        *n += 1;
        if self.seeder_unsent > 0 {
            // Counts the PIECEs up to the one that completes the first round.
            self.out.seeder_first_round += 1;
            if *n == 1 {
                self.seeder_unsent -= 1;
            }
        }
    }
}

/// Max-min fair shares of `budget` among `wants` (key, bytes wanted), appended to `out` as
/// (key, bytes granted). Returns the bytes granted in all.
fn water_fill(budget: u64, wants: &[(usize, u64)], out: &mut Vec<(usize, u64)>) -> u64 {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&k| (wants[k].1, wants[k].0));
    let mut left = budget;
    let mut granted = vec![0u64; wants.len()];
    for (n, &k) in order.iter().enumerate() {
        let share = left / (order.len() - n) as u64;
        let g = wants[k].1.min(share);
        granted[k] = g;
        left -= g;
    }
    // Integer division leaves a few bytes: give them to the pipes in order.
    for &k in &order {
        if left == 0 {
            break;
        }
        let more = (wants[k].1 - granted[k]).min(left);
        granted[k] += more;
        left -= more;
    }
    for (k, &(key, _)) in wants.iter().enumerate() {
        out.push((key, granted[k]));
    }
    budget - left
}

#[cfg(test)]
mod tests {
    use super::water_fill;

    #[test]
    fn water_filling_is_max_min_fair() {
        let mut out = Vec::new();
        let used = water_fill(100, &[(1, 10), (2, 1000), (3, 1000)], &mut out);
        assert_eq!(out, vec![(1, 10), (2, 45), (3, 45)]);
        assert_eq!(used, 100);
        out.clear();
        assert_eq!(water_fill(100, &[(1, 10), (2, 20)], &mut out), 30);
        assert_eq!(out, vec![(1, 10), (2, 20)]);
        out.clear();
        water_fill(10, &[(1, 100), (2, 100), (3, 100)], &mut out);
        assert_eq!(out.iter().map(|x| x.1).sum::<u64>(), 10);
    }
}
