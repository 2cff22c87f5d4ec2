//! One API client's socket, plain or TLS (api.md section 1): the first byte tells. A TLS
//! ClientHello starts with 0x16 (a handshake record); a JSON request starts with `{` or
//! white space. So one port serves loopback clients in plain JSON, as EchoChain's clients
//! speak it, and clients on other machines over TLS.
//!
//! Reads and writes carry plaintext either way; TLS records are read from and written to
//! the socket underneath as needed, never blocking.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// The first byte of a TLS record carrying a handshake message (RFC 8446 section 5.1).
const TLS_HANDSHAKE: u8 = 0x16;

enum Mode {
    /// No byte yet.
    Undecided,
    Plain,
    Tls(Box<rustls::ServerConnection>),
}

/// An API client connection's byte stream.
pub struct ApiStream {
    /// The socket (register it with the poll).
    pub sock: TcpStream,
    mode: Mode,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl ApiStream {
    /// A fresh connection; with `tls`, a client that opens with a ClientHello gets TLS.
    pub fn new(sock: TcpStream, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        ApiStream {
            sock,
            mode: Mode::Undecided,
            tls,
        }
    }

    /// Whether the client speaks plain JSON (known from its first byte on).
    pub fn is_plain(&self) -> bool {
        matches!(self.mode, Mode::Plain)
    }

    /// Whether TLS bytes (handshake, alerts, sealed replies) wait to be written.
    pub fn tls_pending(&self) -> bool {
        matches!(&self.mode, Mode::Tls(c) if c.wants_write())
    }

    /// Decides plain or TLS from the first byte, without taking it.
    fn decide(&mut self) -> io::Result<()> {
        if !matches!(self.mode, Mode::Undecided) {
            return Ok(());
        }
        let mut first = [0u8; 1];
        if self.sock.peek(&mut first)? == 0 {
            // The end of the stream before any byte: plain (the read sees the end).
            self.mode = Mode::Plain;
            return Ok(());
        }
        self.mode = match (&self.tls, first[0]) {
            (Some(cfg), TLS_HANDSHAKE) => Mode::Tls(Box::new(
                rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?,
            )),
            _ => Mode::Plain,
        };
        Ok(())
    }

    /// Writes what TLS has ready; `WouldBlock` if some is left.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match &mut self.mode {
            Mode::Tls(c) => flush(c, &mut self.sock),
            _ => Ok(()),
        }
    }

    /// Ends our side: TLS says close_notify first.
    pub fn shutdown_write(&mut self) {
        if let Mode::Tls(c) = &mut self.mode {
            c.send_close_notify();
            let _ = self.flush_tls();
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

impl Read for ApiStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decide()?;
        let Mode::Tls(c) = &mut self.mode else {
            return self.sock.read(buf);
        };
        loop {
            match c.reader().read(buf) {
                // Ok(0) is the client's close_notify: the end of its requests.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if c.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = c.process_new_packets() {
                // Send the alert that says why, then fail the connection.
                let _ = c.write_tls(&mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // The handshake's answers go out at once (the loop hears of writability only
            // when it asked for it: see `tls_pending`).
            match flush(c, &mut self.sock) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

impl Write for ApiStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.decide()?;
        let Mode::Tls(c) = &mut self.mode else {
            return self.sock.write(buf);
        };
        // Sealed replies wait in rustls while the socket is full: take more only once they
        // are out, so a client that does not read cannot make the node buffer without end.
        flush(c, &mut self.sock)?;
        let n = c.writer().write(buf)?;
        match flush(c, &mut self.sock) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

/// Writes what `c` has ready to `sock`; `WouldBlock` if some is left.
fn flush(c: &mut rustls::ServerConnection, sock: &mut TcpStream) -> io::Result<()> {
    while c.wants_write() {
        if c.write_tls(sock)? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}
