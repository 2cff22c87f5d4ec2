//! A wire-protocol TCP stream as the reactor reads it: `WireConn::read_frames`
//! (src/net/wire_conn.rs), which buffers, calls `decode_frame`, and reads PIECE data straight
//! into the chunk's buffer, fed by a socket that returns the stream in fuzzer-chosen pieces
//! with WouldBlock in between. Then the frames are queued back and written by `flush` to a
//! socket that takes fuzzer-chosen amounts.
//! Invariants: never a panic; the frames and the error are exactly those of `decode_frame`
//! run over the whole stream at once, whatever the read sizes; writing the frames back gives
//! the bytes they were read from.
#![no_main]

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use peershare::net::wire_conn::WireConn;
use peershare::proto::wire::{decode_frame, Message};
use peershare_fuzz::Steps;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

struct Socket<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: Steps,
    blocked: bool,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.blocked && self.sizes.blocks() {
            self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let rest = &self.data[self.pos..];
        let n = self.sizes.step().min(buf.len()).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

struct Sink {
    got: Vec<u8>,
    sizes: Steps,
    blocked: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.blocked && self.sizes.blocks() {
            self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let n = self.sizes.step().min(buf.len());
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Like a socket: a short write may end anywhere, even inside the first slice.
        if !self.blocked && self.sizes.blocks() {
            self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let mut room = self.sizes.step();
        let mut n = 0;
        for b in bufs {
            let k = room.min(b.len());
            self.got.extend_from_slice(&b[..k]);
            n += k;
            room -= k;
            if room == 0 {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first_chunk::<4>() else {
        return;
    };

    // What the reference decoder makes of the whole stream at once.
    let mut want = Vec::new();
    let mut rest = stream;
    let want_err = loop {
        match decode_frame(rest) {
            Ok(Some((m, n))) => {
                want.push(m);
                rest = &rest[n..];
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let consumed = stream.len() - rest.len();

    let mut socket = Socket {
        data: stream,
        pos: 0,
        sizes: Steps::new(seed),
        blocked: false,
    };
    let mut conn = WireConn::new();
    let mut got = Vec::new();
    let got_err = loop {
        let out = conn
            .read_frames(&mut socket)
            .expect("the socket never fails");
        got.extend(out.frames);
        if out.error.is_some() || out.eof {
            break out.error;
        }
    };
    assert_eq!(
        got_err, want_err,
        "the connection and the decoder disagree on the error"
    );
    assert!(
        got == want,
        "the connection and the decoder give different frames"
    );

    // Back out: the frames written through a slow socket are the bytes they came from.
    let mut tx = WireConn::new();
    for m in got {
        match m {
            Message::Piece { chunk, data } => tx.queue_piece(chunk, Arc::new(data)),
            other => tx.queue(&other),
        }
    }
    assert_eq!(tx.queued(), consumed);
    let mut sink = Sink {
        got: Vec::new(),
        sizes: Steps::new([seed[2], seed[3], seed[0], seed[1]]),
        blocked: false,
    };
    while !tx.is_flushed() {
        tx.flush(&mut sink).expect("the sink never fails");
    }
    assert_eq!(tx.queued(), 0);
    assert!(
        sink.got == stream[..consumed],
        "frames written back differ from the input"
    );
});
