//! One wire-protocol TCP connection's buffers: bytes in (framed by `proto::wire`), frames
//! out (with PIECE data written straight from the shared chunk buffer, no copy).
//!
//! PIECE data is also received without a copy: once a PIECE header is at the front of the
//! input, the rest of the chunk is read from the socket straight into the chunk's own buffer
//! (which then travels, unchanged, to hashing and the disk). Other frames go through a small
//! input buffer and [`wire::decode_frame`]. Both paths accept exactly the same byte streams.
//!
//! The reactor owns the socket and calls [`WireConn::read_frames`] when it is readable and
//! [`WireConn::flush`] when it is writable or after queueing. Memory per connection is
//! bounded: the input buffer never holds more than one maximal frame plus one read, and the
//! output queue is bounded by the engine (a few chunks per connection).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use crate::proto::codec::DecodeError;
use crate::proto::wire::{self, Message};

/// Bytes read into the input buffer per `read` call. Small, so that of a PIECE frame only
/// the first few KiB land there (and are copied out); the rest of the chunk is read straight
/// into its own buffer.
const READ_CHUNK: usize = 16 * 1024;

/// A PIECE frame whose data is being read straight into its final buffer.
struct PieceIn {
    chunk: u32,
    /// `want` bytes long (a pooled buffer: see `crate::bufpool`); the first `filled` are in.
    data: Vec<u8>,
    filled: usize,
    /// The data length the frame header announced.
    want: usize,
}

enum Out {
    Bytes {
        buf: Vec<u8>,
        off: usize,
    },
    Piece {
        header: [u8; wire::PIECE_HEADER_LEN],
        data: Arc<Vec<u8>>,
        off: usize,
    },
}

impl Out {
    fn remaining(&self) -> usize {
        match self {
            Out::Bytes { buf, off } => buf.len() - off,
            Out::Piece { header, data, off } => header.len() + data.len() - off,
        }
    }
}

/// What reading produced.
pub struct ReadOutcome {
    /// Complete frames, in order.
    pub frames: Vec<Message>,
    /// The peer closed its side.
    pub eof: bool,
    /// The stream is not valid protocol: close the connection.
    pub error: Option<DecodeError>,
}

/// The buffers of one connection.
#[derive(Default)]
pub struct WireConn {
    /// Read buffer: bytes `start..end` are received and not yet decoded.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    out: VecDeque<Out>,
    queued: usize,
    piece: Option<PieceIn>,
    /// The last frame was a PIECE read in place, so the next one is probably a PIECE too:
    /// read only its header first, so that none of its data goes through `inbuf`.
    header_first: bool,
}

impl WireConn {
    /// Empty buffers.
    pub fn new() -> Self {
        WireConn::default()
    }

    /// Reads everything available and decodes complete frames. Stops at `WouldBlock`, EOF
    /// or the first protocol error.
    pub fn read_frames<R: Read>(&mut self, r: &mut R) -> io::Result<ReadOutcome> {
        let mut frames = Vec::new();
        let mut eof = false;
        loop {
            if let Some(p) = &mut self.piece {
                // Straight into the chunk's buffer, which has its full length already, so
                // the read needs no zeroed spare capacity.
                match r.read(p.data.get_mut(p.filled..p.want).unwrap_or(&mut [])) {
                    // The stream ended inside the frame.
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        p.filled += n;
                        if p.filled >= p.want {
                            self.header_first = true;
                            if let Some(p) = self.piece.take() {
                                frames.push(Message::Piece {
                                    chunk: p.chunk,
                                    data: p.data,
                                });
                            }
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            self.make_room();
            let room = self.inbuf.get_mut(self.end..).unwrap_or(&mut []);
            let limit = if std::mem::take(&mut self.header_first) && self.start == self.end {
                wire::PIECE_HEADER_LEN
            } else {
                room.len()
            };
            let n = match r.read(room.get_mut(..limit).unwrap_or(&mut [])) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            if n == 0 {
                eof = true;
                break;
            }
            self.end += n;
            if let Err(e) = self.decode_into(&mut frames) {
                return Ok(ReadOutcome {
                    frames,
                    eof,
                    error: Some(e),
                });
            }
        }
        let error = self.decode_into(&mut frames).err();
        Ok(ReadOutcome { frames, eof, error })
    }

    /// If the undecoded input starts with the header of a PIECE frame that is not complete
    /// yet, moves what is here of its data into a buffer of the chunk's size and switches to
    /// reading the rest straight into it. The header was validated by `frame_len_hint`, as
    /// `decode_frame` would, so the size is bounded by the largest chunk.
    fn start_piece(&mut self, total: usize) {
        let avail = self.inbuf.get(self.start..self.end).unwrap_or(&[]);
        if total <= avail.len() || avail.len() < wire::PIECE_HEADER_LEN {
            return;
        }
        if avail.get(wire::LENGTH_PREFIX_LEN) != Some(&wire::msg_type::PIECE) {
            return;
        }
        let want = total - wire::PIECE_HEADER_LEN;
        let Some(&[a, b, c, d]) = avail.get(wire::FRAME_HEADER_LEN..wire::PIECE_HEADER_LEN) else {
            return;
        };
        let have = avail.get(wire::PIECE_HEADER_LEN..).unwrap_or(&[]);
        let mut data = crate::bufpool::take(want);
        let filled = have.len().min(want);
        if let (Some(dst), Some(src)) = (data.get_mut(..filled), have.get(..filled)) {
            dst.copy_from_slice(src);
        }
        self.piece = Some(PieceIn {
            chunk: u32::from_be_bytes([a, b, c, d]),
            data,
            filled,
            want,
        });
        self.start = 0;
        self.end = 0;
    }

    /// Ensures at least a quarter of a read's worth of free space after `end`: first by
    /// moving the unconsumed bytes to the front, then by growing once. Amortised O(1) per
    /// byte whatever the read sizes.
    fn make_room(&mut self) {
        if self.inbuf.len() - self.end >= READ_CHUNK / 4 {
            return;
        }
        if self.start > 0 {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.inbuf.len() - self.end < READ_CHUNK / 4 {
            let want = self.end + READ_CHUNK;
            self.inbuf.resize(want, 0);
        }
    }

    fn decode_into(&mut self, frames: &mut Vec<Message>) -> Result<(), DecodeError> {
        loop {
            let avail = self.inbuf.get(self.start..self.end).unwrap_or(&[]);
            match wire::decode_frame(avail)? {
                Some((msg, used)) => {
                    frames.push(msg);
                    self.start += used;
                }
                None => {
                    // Checked as decode_frame would: an invalid header is an error here too.
                    if self.piece.is_none() {
                        if let Some(total) = wire::frame_len_hint(avail)? {
                            self.start_piece(total);
                        }
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Queues a frame.
    pub fn queue(&mut self, msg: &Message) {
        let mut buf = Vec::with_capacity(msg.encoded_len());
        msg.encode(&mut buf);
        self.queued += buf.len();
        self.out.push_back(Out::Bytes { buf, off: 0 });
    }

    /// Queues a PIECE frame without copying its data.
    pub fn queue_piece(&mut self, chunk: u32, data: Arc<Vec<u8>>) {
        let header = wire::piece_header(chunk, data.len());
        self.queued += header.len() + data.len();
        self.out.push_back(Out::Piece {
            header,
            data,
            off: 0,
        });
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Writes as much as the socket takes. Returns how many PIECE frames were completed.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut pieces_done = 0;
        while let Some(front) = self.out.front_mut() {
            let res = match front {
                Out::Bytes { buf, off } => w.write(buf.get(*off..).unwrap_or(&[])),
                Out::Piece { header, data, off } => {
                    let h = header.len();
                    if *off < h {
                        let slices = [
                            IoSlice::new(header.get(*off..).unwrap_or(&[])),
                            IoSlice::new(data),
                        ];
                        w.write_vectored(&slices)
                    } else {
                        w.write(data.get(*off - h..).unwrap_or(&[]))
                    }
                }
            };
            match res {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket wrote 0 bytes",
                    ))
                }
                Ok(n) => {
                    self.queued = self.queued.saturating_sub(n);
                    let done = match front {
                        Out::Bytes { off, .. } | Out::Piece { off, .. } => {
                            *off += n;
                            front.remaining() == 0
                        }
                    };
                    if done {
                        if let Some(Out::Piece { data, .. }) = self.out.pop_front() {
                            pieces_done += 1;
                            // Written: the chunk buffer can serve the next read.
                            if let Ok(buf) = Arc::try_unwrap(data) {
                                crate::bufpool::give(buf);
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(pieces_done)
    }

    /// True when nothing waits to be written.
    pub fn is_flushed(&self) -> bool {
        self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes in small slices, then WouldBlock.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos >= self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    /// A writer that takes at most `step` bytes per call.
    struct Sink {
        got: Vec<u8>,
        step: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_survive_any_split_and_pieces_are_written_whole() {
        let mut out = WireConn::new();
        out.queue(&Message::Interested);
        out.queue_piece(7, Arc::new(vec![9u8; 100_000]));
        out.queue(&Message::Have(3));
        for step in [1usize, 7, 4096, 1 << 20] {
            let mut w = WireConn::new();
            w.queue(&Message::Interested);
            w.queue_piece(7, Arc::new(vec![9u8; 100_000]));
            w.queue(&Message::Have(3));
            let mut sink = Sink { got: vec![], step };
            let mut pieces = 0;
            while !w.is_flushed() {
                pieces += w.flush(&mut sink).unwrap();
            }
            assert_eq!(pieces, 1);
            assert_eq!(w.queued(), 0);
            let mut r = WireConn::new();
            let mut src = Trickle {
                data: sink.got,
                pos: 0,
                step,
            };
            let mut frames = Vec::new();
            loop {
                let o = r.read_frames(&mut src).unwrap();
                assert!(o.error.is_none());
                frames.extend(o.frames);
                if src.pos >= src.data.len() {
                    break;
                }
            }
            assert_eq!(frames.len(), 3, "step {step}");
            assert_eq!(frames[0], Message::Interested);
            assert!(
                matches!(&frames[1], Message::Piece { chunk: 7, data } if data.len() == 100_000)
            );
            assert_eq!(frames[2], Message::Have(3));
        }
    }

    /// The direct PIECE path and the buffered path decode the same stream into the same
    /// frames, whatever the read sizes; an invalid frame after pieces is still reported.
    #[test]
    fn pieces_read_in_place_match_the_reference_decoder() {
        let msgs = vec![
            Message::Have(1),
            Message::Piece {
                chunk: 0,
                data: (0..300_000u32).map(|i| i as u8).collect(),
            },
            Message::Piece {
                chunk: 1,
                data: vec![5; 10],
            },
            Message::Piece {
                chunk: 2,
                data: vec![6; 20_000],
            },
            Message::Interested,
            Message::Piece {
                chunk: 3,
                data: vec![7; 262_144],
            },
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            m.encode(&mut stream);
        }
        for step in [
            1usize,
            3,
            9,
            1000,
            16 * 1024,
            16 * 1024 + 5,
            100_000,
            1 << 21,
        ] {
            let mut r = WireConn::new();
            let mut src = Trickle {
                data: stream.clone(),
                pos: 0,
                step,
            };
            let mut frames = Vec::new();
            while src.pos < src.data.len() {
                let o = r.read_frames(&mut src).unwrap();
                assert!(o.error.is_none(), "step {step}: {:?}", o.error);
                frames.extend(o.frames);
            }
            assert_eq!(frames, msgs, "step {step}");
        }
        // A bad frame after a piece read in place is an error, as decode_frame says.
        let mut bad = stream.clone();
        bad.extend_from_slice(&[0, 0, 0, 0]);
        let mut r = WireConn::new();
        let mut src = Trickle {
            data: bad,
            pos: 0,
            step: 4096,
        };
        let mut error = None;
        while src.pos < src.data.len() && error.is_none() {
            error = r.read_frames(&mut src).unwrap().error;
        }
        assert!(error.is_some());
    }

    /// The stream ending inside a PIECE frame is an EOF, not a frame.
    #[test]
    fn eof_inside_a_piece() {
        let mut stream = Vec::new();
        Message::Piece {
            chunk: 9,
            data: vec![1; 100_000],
        }
        .encode(&mut stream);
        stream.truncate(50_000);
        let mut r = WireConn::new();
        let mut src = std::io::Cursor::new(stream);
        let o = r.read_frames(&mut src).unwrap();
        assert!(o.eof);
        assert!(o.frames.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = WireConn::new();
        let mut src = Trickle {
            data: vec![0xff; 64],
            pos: 0,
            step: 64,
        };
        let o = r.read_frames(&mut src).unwrap();
        assert!(o.error.is_some());
    }
}
