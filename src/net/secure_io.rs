//! One wire connection's secure session, between its socket and its frames ([`WireConn`]):
//! the reader drives the handshake and opens records, the writer seals frames into records
//! (protocol-spec/secure.md). The session logic is `crate::secure`'s; this only moves bytes.
//!
//! Copies: a record whose plaintext fits the caller's buffer (a PIECE's data being read
//! straight into its chunk buffer, `wire_conn`) is read from the socket straight into that
//! buffer, its tag and the next record's length prefix beside it in one vectored read, and
//! opened there: its bytes are never copied. Small records are read a few KiB at a time
//! into `cin` and opened from there; only records read in small pieces go through `pin`.
//! Sealing writes into `cout`, reused.
//!
//! [`WireConn`]: super::wire_conn::WireConn

use std::io::{self, IoSliceMut, Read, Write};

use crate::secure::{
    record_len, Handshake, KeyLogEntry, LocalKeys, Outcome, Peer, SecureError, Transport,
    LEN_PREFIX, MAX_PLAIN, TAG_LEN,
};

/// Bytes read into `cin` past the end of the record being completed: enough to take many
/// small records in one read, little enough that of a large record behind them only this
/// much is copied (the rest is read straight into its caller's buffer).
const READ_AHEAD: usize = 4 * 1024;
/// Records with more plaintext than this are read straight into the caller's buffer when it
/// has room; smaller ones go through `cin` with their neighbours.
const DIRECT_MIN: usize = READ_AHEAD;
/// Plaintext sealed per write: a few records, so that one system call carries them.
const SEAL_BATCH: usize = 2 * MAX_PLAIN;
/// Sealed bytes that may wait in `cout`: the records of the frames written in one turn (a
/// PIECE's header and its data, a burst of REQUESTs or HAVEs) leave in one system call, sent
/// once this much waits or when the caller flushes ([`SecureWriter::flush_pending`]).
const SEND_AT: usize = 2 * SEAL_BATCH;

enum Phase {
    Handshake(Box<Handshake>),
    Open(Box<Transport>),
    /// A plaintext PROBE or RELAY opened the connection (secure.md section 5): no session.
    Plain,
    Failed,
}

/// A connection's session state and buffers.
pub struct SecureIo {
    phase: Phase,
    /// Bytes received and not yet used: `cin[cstart..cend]`.
    cin: Vec<u8>,
    cstart: usize,
    cend: usize,
    /// Opened plaintext not yet read: `pin[pstart..pend]`.
    pin: Vec<u8>,
    pstart: usize,
    pend: usize,
    /// Bytes to send: `cout[coff..]`.
    cout: Vec<u8>,
    coff: usize,
    failure: Option<SecureError>,
    established: Option<KeyLogEntry>,
    peer: Option<Peer>,
    /// Ciphertext bytes opened from `cin` (copied) rather than where the socket put them.
    copied: u64,
}

impl SecureIo {
    /// A connection starting `hs` (whose first message, for a dialer, is queued at once).
    pub fn new(mut hs: Handshake) -> SecureIo {
        let cout = hs.take_output();
        SecureIo {
            phase: Phase::Handshake(Box::new(hs)),
            cin: Vec::new(),
            cstart: 0,
            cend: 0,
            pin: Vec::new(),
            pstart: 0,
            pend: 0,
            cout,
            coff: 0,
            failure: None,
            established: None,
            peer: None,
            copied: 0,
        }
    }

    /// Record bytes opened out of the input buffer, that is copied once more than the
    /// direct path would (for tests and profiles).
    pub fn copied_bytes(&self) -> u64 {
        self.copied
    }

    /// The peer the handshake proved, once it has.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// Whether frames can flow (a session, or a plaintext PROBE/RELAY connection).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_) | Phase::Plain)
    }

    /// Whether bytes wait to be sent.
    pub fn has_output(&self) -> bool {
        self.coff < self.cout.len()
    }

    /// Why the session failed, once (the read that met it returned an error).
    pub fn take_failure(&mut self) -> Option<SecureError> {
        self.failure.take()
    }

    /// The keys of a session established since the last call (for counting and the key log).
    pub fn take_established(&mut self) -> Option<KeyLogEntry> {
        self.established.take()
    }

    /// A reader of plaintext over `inner`.
    pub fn reader<'a, S: Read + Write>(&'a mut self, inner: &'a mut S) -> SecureReader<'a, S> {
        SecureReader { io: self, inner }
    }

    /// A writer of plaintext over `inner`.
    pub fn writer<'a, S: Write>(&'a mut self, inner: &'a mut S) -> SecureWriter<'a, S> {
        SecureWriter { io: self, inner }
    }

    fn fail(&mut self, e: SecureError) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        self.failure = Some(e);
        self.phase = Phase::Failed;
        err
    }

    /// Writes pending bytes; `WouldBlock` if some are left.
    fn flush_out<S: Write>(&mut self, s: &mut S) -> io::Result<()> {
        while self.coff < self.cout.len() {
            match s.write(self.cout.get(self.coff..).unwrap_or(&[])) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.coff += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.cout.clear();
        self.coff = 0;
        Ok(())
    }

    /// Reads more bytes into `cin`: up to [`READ_AHEAD`] past the first `want` unread ones
    /// (the record being completed).
    fn fill<S: Read>(&mut self, s: &mut S, want: usize) -> io::Result<usize> {
        if self.cstart == self.cend {
            self.cstart = 0;
            self.cend = 0;
        }
        if self.cin.len() < self.cstart + want + READ_AHEAD {
            // Move the unread bytes to the front, then grow if still short.
            self.cin.copy_within(self.cstart..self.cend, 0);
            self.cend -= self.cstart;
            self.cstart = 0;
        }
        let end = (self.cstart + want).max(self.cend) + READ_AHEAD;
        if self.cin.len() < end {
            self.cin.resize(end, 0);
        }
        s.read(self.cin.get_mut(self.cend..end).unwrap_or_default())
            .inspect(|&n| self.cend += n)
    }

    /// Feeds the handshake what has arrived. Returns true when it moved on (finished or
    /// found a plaintext frame), false when it needs more bytes.
    fn drive_handshake<S: Write>(&mut self, s: &mut S) -> io::Result<bool> {
        let Phase::Handshake(hs) = &mut self.phase else {
            return Ok(true);
        };
        let got = self.cin.get(self.cstart..self.cend).unwrap_or(&[]);
        let used = match hs.handle_input(got) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(e)),
        };
        self.cstart += used;
        let out = hs.take_output();
        self.cout.extend_from_slice(&out);
        match hs.outcome() {
            Outcome::InProgress => {}
            Outcome::Plaintext => {
                // The bytes the handshake looked at are the frame's first: read them first.
                self.pin = hs.take_buffered();
                self.pstart = 0;
                self.pend = self.pin.len();
                self.phase = Phase::Plain;
            }
            Outcome::Finished => {
                let Phase::Handshake(hs) = std::mem::replace(&mut self.phase, Phase::Failed) else {
                    return Ok(true);
                };
                match hs.into_session() {
                    Ok(session) => {
                        self.peer = Some(session.peer);
                        self.established = Some(session.keys);
                        self.phase = Phase::Open(Box::new(session.transport));
                    }
                    Err(e) => return Err(self.fail(e)),
                }
            }
        }
        // msg2 or msg3, at once if the socket takes it (the writer sends the rest).
        match self.flush_out(s) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(!matches!(self.phase, Phase::Handshake(_)))
    }
}

/// Plaintext in: see [`SecureIo::reader`].
pub struct SecureReader<'a, S> {
    io: &'a mut SecureIo,
    inner: &'a mut S,
}

impl<S: Read + Write> Read for SecureReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let io = &mut *self.io;
        loop {
            if io.pstart < io.pend {
                let n = buf.len().min(io.pend - io.pstart);
                if let (Some(d), Some(s)) = (buf.get_mut(..n), io.pin.get(io.pstart..io.pstart + n))
                {
                    d.copy_from_slice(s);
                }
                io.pstart += n;
                return Ok(n);
            }
            match &mut io.phase {
                Phase::Failed => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "session failed"))
                }
                Phase::Plain => {
                    // What the handshake read past the frame's first bytes, then the socket.
                    if io.cstart < io.cend {
                        let n = buf.len().min(io.cend - io.cstart);
                        if let (Some(d), Some(s)) =
                            (buf.get_mut(..n), io.cin.get(io.cstart..io.cstart + n))
                        {
                            d.copy_from_slice(s);
                        }
                        io.cstart += n;
                        return Ok(n);
                    }
                    return self.inner.read(buf);
                }
                Phase::Handshake(_) => {
                    if io.cstart < io.cend && io.drive_handshake(self.inner)? {
                        continue;
                    }
                    if io.fill(self.inner, LEN_PREFIX + 256)? == 0 {
                        return Ok(0);
                    }
                }
                Phase::Open(_) => match io.open_next(buf, self.inner)? {
                    Some(n) => return Ok(n),
                    None => continue,
                },
            }
        }
    }
}

impl SecureIo {
    /// Opens the next record: into `buf` if it fits (returns its length), else into `pin`
    /// (returns None: read on from `pin`); reads more first if no whole record is here.
    /// `Ok(Some(0))` is the end of the stream.
    fn open_next<S: Read>(&mut self, buf: &mut [u8], s: &mut S) -> io::Result<Option<usize>> {
        let avail = self.cin.get(self.cstart..self.cend).unwrap_or(&[]);
        let total = match record_len(avail) {
            Ok(t) => t,
            Err(e) => return Err(self.fail(e)),
        };
        let Some(total) = total.filter(|&t| t <= avail.len()) else {
            if let Some(plain) = total.map(|t| t - LEN_PREFIX - TAG_LEN) {
                if plain > DIRECT_MIN {
                    if let Some(out) = buf.get_mut(..plain) {
                        return self.read_direct(out, s);
                    }
                }
            }
            return match self.fill(s, total.unwrap_or(LEN_PREFIX))? {
                0 => Ok(Some(0)),
                _ => Ok(None),
            };
        };
        let Phase::Open(t) = &mut self.phase else {
            return Ok(None);
        };
        self.copied += (total - LEN_PREFIX) as u64;
        let body = self
            .cin
            .get(self.cstart + LEN_PREFIX..self.cstart + total)
            .unwrap_or(&[]);
        let plain = total - LEN_PREFIX - TAG_LEN;
        let direct = buf.len() >= plain;
        let res = if direct {
            t.open(body, buf)
        } else {
            if self.pin.len() < plain {
                self.pin.resize(MAX_PLAIN, 0);
            }
            t.open(body, &mut self.pin)
        };
        self.cstart += total;
        match res {
            // An empty record is legal and means nothing: read on.
            Ok(n) if direct && n > 0 => Ok(Some(n)),
            Ok(n) => {
                if !direct {
                    self.pstart = 0;
                    self.pend = n;
                }
                Ok(None)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl SecureIo {
    /// Reads the rest of the record whose length prefix starts `cin` straight into `out`
    /// (exactly its plaintext's room), its tag into a small array and the next record's
    /// prefix into `cin`, then opens it where it lies. On any error (the socket has no more
    /// for now, the byte budget ran out) the part read is put back into `cin`, so that the
    /// next read, whatever buffer it brings, goes on from there.
    fn read_direct<S: Read>(&mut self, out: &mut [u8], s: &mut S) -> io::Result<Option<usize>> {
        let plain = out.len();
        let body_len = plain + TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        let have = self
            .cin
            .get(self.cstart + LEN_PREFIX..self.cend)
            .unwrap_or(&[]);
        let (b, t) = have.split_at(have.len().min(plain));
        if let (Some(o), Some(g)) = (out.get_mut(..b.len()), tag.get_mut(..t.len())) {
            o.copy_from_slice(b);
            g.copy_from_slice(t);
        }
        self.copied += have.len() as u64;
        let mut got = have.len();
        self.cstart = 0;
        self.cend = 0;
        if self.cin.len() < LEN_PREFIX {
            self.cin.resize(LEN_PREFIX + READ_AHEAD, 0);
        }
        while got < body_len {
            let (ob, tb) = (got.min(plain), got.saturating_sub(plain));
            let mut slices = [
                IoSliceMut::new(out.get_mut(ob..).unwrap_or_default()),
                IoSliceMut::new(tag.get_mut(tb..).unwrap_or_default()),
                IoSliceMut::new(self.cin.get_mut(..LEN_PREFIX).unwrap_or_default()),
            ];
            match s.read_vectored(&mut slices) {
                // The stream ended inside a record.
                Ok(0) => return Ok(Some(0)),
                Ok(n) => {
                    let body = n.min(body_len - got);
                    got += body;
                    self.cend = n - body;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.put_back(out, &tag, got);
                    return Err(e);
                }
            }
        }
        let Phase::Open(t) = &mut self.phase else {
            return Ok(None);
        };
        match t.open_in_place(out, &tag) {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Puts a record read in part by [`SecureIo::read_direct`] back at the front of `cin`:
    /// its prefix, then the `got` bytes of its body found in `out` and `tag`.
    fn put_back(&mut self, out: &[u8], tag: &[u8; TAG_LEN], got: usize) {
        let plain = out.len();
        let prefix = ((plain + TAG_LEN) as u16).to_be_bytes();
        let (ob, tb) = (got.min(plain), got.saturating_sub(plain));
        let end = LEN_PREFIX + got;
        if self.cin.len() < end {
            self.cin.resize(end, 0);
        }
        let parts = [
            &prefix[..],
            out.get(..ob).unwrap_or(&[]),
            tag.get(..tb).unwrap_or(&[]),
        ];
        let mut at = 0;
        for part in parts {
            if let Some(d) = self.cin.get_mut(at..at + part.len()) {
                d.copy_from_slice(part);
            }
            at += part.len();
        }
        self.cstart = 0;
        self.cend = end;
    }
}

/// Plaintext out: see [`SecureIo::writer`].
pub struct SecureWriter<'a, S> {
    io: &'a mut SecureIo,
    inner: &'a mut S,
}

impl<S: Write> SecureWriter<'_, S> {
    /// Writes what is sealed and not yet sent; `WouldBlock` if some is left.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        self.io.flush_out(self.inner)
    }
}

impl<S: Write> SecureWriter<'_, S> {
    fn waiting(&self) -> usize {
        self.io.cout.len() - self.io.coff
    }
}

/// Writes seal into `cout`, which goes out once [`SEND_AT`] bytes wait there or when
/// [`SecureWriter::flush_pending`] (or `flush`) is called: a caller must call one of them
/// after its last write.
impl<S: Write> Write for SecureWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let open = matches!(self.io.phase, Phase::Open(_));
        if !open || self.waiting() >= SEND_AT {
            self.io.flush_out(self.inner)?;
        }
        match &mut self.io.phase {
            // No frame before the session is up; the handshake's own bytes went above.
            Phase::Handshake(_) => Err(io::ErrorKind::WouldBlock.into()),
            Phase::Failed => Err(io::Error::new(io::ErrorKind::InvalidData, "session failed")),
            Phase::Plain => self.inner.write(buf),
            Phase::Open(t) => {
                let n = buf.len().min(SEAL_BATCH);
                if let Err(e) = t.seal(buf.get(..n).unwrap_or(&[]), &mut self.io.cout) {
                    return Err(self.io.fail(e));
                }
                if self.waiting() < SEND_AT {
                    return Ok(n);
                }
                match self.io.flush_out(self.inner) {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                    _ => Ok(n),
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush_out(self.inner)?;
        self.inner.flush()
    }
}

impl SecureIo {
    /// Runs the handshake to its end over a blocking stream.
    fn complete<S: Read + Write>(&mut self, s: &mut S) -> io::Result<()> {
        self.flush_out(s)?;
        while matches!(self.phase, Phase::Handshake(_)) {
            if self.cstart == self.cend && self.fill(s, LEN_PREFIX + 256)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the handshake",
                ));
            }
            self.drive_handshake(s)?;
        }
        self.flush_out(s)?;
        match self.phase {
            Phase::Open(_) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent a plaintext frame instead of a handshake",
            )),
        }
    }
}

/// A session over a blocking stream: what test clients, the conformance suite and tools use
/// to talk to a node. Reads give the peer's plaintext, writes are sealed.
pub struct SecureStream<S> {
    io: SecureIo,
    inner: S,
}

impl<S: Read + Write> SecureStream<S> {
    /// Dials: runs the handshake as initiator over `inner`; with `expect`, any other peer
    /// is refused. The error says why (secure.md's wording).
    pub fn connect(inner: S, keys: &LocalKeys, expect: Option<crate::id::Id>) -> io::Result<Self> {
        let hs = Handshake::initiator(keys, expect).map_err(|e| io::Error::other(e.to_string()))?;
        SecureStream::start(inner, hs)
    }

    /// Accepts: runs the handshake as responder over `inner`.
    pub fn accept(inner: S, keys: &LocalKeys) -> io::Result<Self> {
        let hs = Handshake::responder(keys).map_err(|e| io::Error::other(e.to_string()))?;
        SecureStream::start(inner, hs)
    }

    fn start(mut inner: S, hs: Handshake) -> io::Result<Self> {
        let mut io = SecureIo::new(hs);
        io.complete(&mut inner)?;
        Ok(SecureStream { io, inner })
    }

    /// The peer the handshake proved.
    pub fn peer(&self) -> Option<&Peer> {
        self.io.peer()
    }

    /// The keys of this session (for a key log).
    pub fn take_keys(&mut self) -> Option<KeyLogEntry> {
        self.io.take_established()
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream underneath, mutably (timeouts, shutdown; writing to it directly breaks
    /// the session).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Read + Write> Read for SecureStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.reader(&mut self.inner).read(buf)
    }
}

impl<S: Read + Write> Write for SecureStream<S> {
    /// Each write is sent at once (a blocking stream's callers need not flush).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = self.io.writer(&mut self.inner);
        let n = w.write(buf)?;
        w.flush_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.writer(&mut self.inner).flush()
    }
}

#[cfg(test)]
#[path = "secure_io_tests.rs"]
mod tests;
