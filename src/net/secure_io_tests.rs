//! A dialer's and an acceptor's `SecureIo` over in-memory pipes that hand bytes out in
//! slices and stop with `WouldBlock` now and then, as a non-blocking socket does.

use super::*;
use crate::identity::Identity;
use crate::net::wire_conn::WireConn;
use crate::proto::wire::Message;
use std::sync::Arc;

fn keys(seed: u8) -> LocalKeys {
    LocalKeys::new(Identity::from_secret(&[seed; 32]), [seed ^ 0x5a; 32]).unwrap()
}

/// One side's socket: what the peer sent (`inbound`, read `step` bytes at most per call,
/// every `block_every`-th call answering `WouldBlock`, then the end of the stream) and what
/// this side wrote (`out`).
#[derive(Default)]
struct Pipe {
    inbound: Vec<u8>,
    pos: usize,
    step: usize,
    block_every: usize,
    calls: usize,
    out: Vec<u8>,
    /// Calls to `write`: system calls, for a socket.
    writes: usize,
}

impl Pipe {
    fn gate(&mut self) -> io::Result<usize> {
        self.calls += 1;
        if self.block_every > 0 && self.calls.is_multiple_of(self.block_every) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(self.step.max(1).min(self.inbound.len() - self.pos))
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.gate()?.min(buf.len());
        buf[..n].copy_from_slice(&self.inbound[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// As `readv`: the slices in order, up to what is there.
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let mut left = self.gate()?;
        let mut moved = 0;
        for b in bufs.iter_mut() {
            let n = left.min(b.len());
            b[..n].copy_from_slice(&self.inbound[self.pos..self.pos + n]);
            self.pos += n;
            moved += n;
            left -= n;
        }
        Ok(moved)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A dialer and an acceptor with their session established.
fn open_pair() -> (SecureIo, SecureIo) {
    let mut d = SecureIo::new(Handshake::initiator(&keys(1), Some(keys(2).node_id())).unwrap());
    let mut a = SecureIo::new(Handshake::responder(&keys(2)).unwrap());
    let (mut dp, mut ap) = (Pipe::default(), Pipe::default());
    let mut scratch = [0u8; 16];
    for _ in 0..10 {
        d.writer(&mut dp).flush_pending().unwrap();
        ap.inbound.append(&mut dp.out);
        let _ = a.reader(&mut ap).read(&mut scratch);
        a.writer(&mut ap).flush_pending().unwrap();
        dp.inbound.append(&mut ap.out);
        let _ = d.reader(&mut dp).read(&mut scratch);
        if d.is_open() && a.is_open() && !d.has_output() && !a.has_output() {
            return (d, a);
        }
    }
    panic!("the handshake did not finish");
}

fn frames() -> Vec<Message> {
    vec![
        Message::Have(1),
        Message::Piece {
            chunk: 0,
            data: (0..300_000u32).map(|i| (i % 251) as u8).collect(),
        },
        Message::Piece {
            chunk: 1,
            data: vec![5; 10],
        },
        Message::Interested,
        Message::Piece {
            chunk: 2,
            data: (0..262_144u32).map(|i| (i % 13) as u8).collect(),
        },
        Message::Piece {
            chunk: 3,
            data: vec![7; 20_000],
        },
    ]
}

/// The records a dialer sends for `msgs`, as its reactor writes them.
fn sealed(d: &mut SecureIo, msgs: &[Message]) -> Vec<u8> {
    let mut conn = WireConn::new();
    for m in msgs {
        match m {
            Message::Piece { chunk, data } => conn.queue_piece(*chunk, Arc::new(data.clone())),
            other => conn.queue(other),
        }
    }
    let mut p = Pipe::default();
    while !conn.is_flushed() {
        conn.flush(&mut d.writer(&mut p)).unwrap();
    }
    // As the reactor does after each turn: what waits to be sent goes.
    d.writer(&mut p).flush_pending().unwrap();
    p.out
}

/// Reads frames from `wire` until its end or until the session fails.
fn receive(a: &mut SecureIo, wire: Vec<u8>, step: usize, block_every: usize) -> Vec<Message> {
    let mut p = Pipe {
        inbound: wire,
        step,
        block_every,
        ..Pipe::default()
    };
    let mut conn = WireConn::new();
    let mut got = Vec::new();
    for _ in 0..1_000_000 {
        match conn.read_frames(&mut a.reader(&mut p)) {
            Ok(o) => {
                assert!(o.error.is_none(), "{:?}", o.error);
                got.extend(o.frames);
                if o.eof {
                    return got;
                }
            }
            Err(_) => return got,
        }
    }
    panic!("no end after a million reads");
}

#[test]
fn frames_arrive_whole_whatever_the_reads_and_stops() {
    for (step, block_every) in [
        (1usize << 20, 0usize),
        (1 << 20, 2),
        (100_000, 3),
        (65_537, 2),
        (4096, 5),
        (1000, 2),
        (17, 0),
        (3, 7),
    ] {
        let (mut d, mut a) = open_pair();
        let wire = sealed(&mut d, &frames());
        let got = receive(&mut a, wire, step, block_every);
        assert_eq!(
            got,
            frames(),
            "step {step}, WouldBlock every {block_every} reads"
        );
        assert!(a.take_failure().is_none());
    }
}

#[test]
fn piece_data_is_read_where_it_belongs_not_copied() {
    let (mut d, mut a) = open_pair();
    let wire = sealed(&mut d, &frames());
    let total = wire.len() as u64;
    assert_eq!(receive(&mut a, wire, 1 << 20, 0), frames());
    // Only the small records, and a read-ahead's worth of each large record after one,
    // go through the input buffer.
    assert!(
        a.copied_bytes() * 20 < total,
        "{} of {total} bytes copied",
        a.copied_bytes()
    );
}

/// Where each record of `wire` starts, and its whole length.
fn records(wire: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < wire.len() {
        let len = LEN_PREFIX + u16::from_be_bytes([wire[at], wire[at + 1]]) as usize;
        out.push((at, len));
        at += len;
    }
    out
}

#[test]
fn a_record_altered_anywhere_fails_the_session() {
    let (mut d, _) = open_pair();
    let recs = records(&sealed(&mut d, &frames()));
    let (first, large) = (recs[0], recs[2]);
    assert!(large.1 > DIRECT_MIN, "the third record is a PIECE's data");
    let last = recs[recs.len() - 1];
    // A small record's body and tag, a large one's body and tag, the last byte of all.
    for at in [
        first.0 + 3,
        first.0 + first.1 - 1,
        large.0 + 40_000,
        large.0 + large.1 - 5,
        last.0 + last.1 - 1,
    ] {
        for step in [1usize << 20, 5000] {
            let (mut d, mut a) = open_pair();
            let mut wire = sealed(&mut d, &frames());
            wire[at] ^= 0x40;
            let got = receive(&mut a, wire, step, 3);
            assert_ne!(got, frames(), "byte {at}");
            assert_eq!(a.take_failure(), Some(SecureError::Tampered), "byte {at}");
        }
    }
}

#[test]
fn a_stream_cut_inside_a_record_is_an_end_not_a_frame() {
    let (mut d, mut a) = open_pair();
    let mut wire = sealed(&mut d, &frames()[..2]);
    wire.truncate(50_000);
    let got = receive(&mut a, wire, 1 << 20, 0);
    assert_eq!(got, vec![Message::Have(1)]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the read sizes and stops, and wherever one byte is changed, reading never
    /// panics: either every frame arrives, or the frames before the damage do and the
    /// session fails (a length prefix changed may instead cut the stream short).
    #[test]
    fn any_split_and_any_flip_fail_closed(
        step in 1usize..200_000,
        block_every in proptest::prop_oneof![proptest::strategy::Just(0usize), 2usize..6],
        flip in proptest::option::of((0usize..usize::MAX, 1u8..=255)),
    ) {
        let (mut d, mut a) = open_pair();
        let mut wire = sealed(&mut d, &frames());
        if let Some((at, x)) = flip {
            let at = at % wire.len();
            wire[at] ^= x;
        }
        let got = receive(&mut a, wire, step, block_every);
        let all = frames();
        proptest::prop_assert!(got.len() <= all.len() && got[..] == all[..got.len()]);
        if flip.is_none() {
            proptest::prop_assert_eq!(got, all);
            proptest::prop_assert!(a.take_failure().is_none());
        } else {
            proptest::prop_assert!(got.len() < all.len());
        }
    }
}

/// The records of frames written in one turn leave in one write: a burst of small frames,
/// and a PIECE's header with its data.
#[test]
fn one_turn_s_frames_leave_in_one_write() {
    let (mut d, mut a) = open_pair();
    let mut conn = WireConn::new();
    for i in 0..50 {
        conn.queue(&Message::Have(i));
    }
    conn.queue_piece(7, Arc::new(vec![1; 50_000]));
    let mut p = Pipe::default();
    conn.flush(&mut d.writer(&mut p)).unwrap();
    assert!(conn.is_flushed());
    assert_eq!(p.writes, 0, "nothing sent before the turn's end");
    d.writer(&mut p).flush_pending().unwrap();
    assert_eq!(p.writes, 1);
    let got = receive(&mut a, p.out, 1 << 20, 0);
    assert_eq!(got.len(), 51);
    assert_eq!(
        got[50],
        Message::Piece {
            chunk: 7,
            data: vec![1; 50_000]
        }
    );
}
