//! A stream's response body (http.md section 6), sent as the client takes it: its pieces in
//! order, the file's bytes asked for a segment at a time ([`HttpEvent::StreamRead`]) while
//! less than a segment waits to be sent, so a connection holds about two segments whatever
//! the file's size.

use std::collections::VecDeque;
use std::time::Instant;

use mio::{Registry, Token};

use super::{keep_alive, status_of, HttpConn, HttpEvent, HttpServer, State};
use crate::net::jobs::SegmentRead;
use crate::net::stream::{next_segment, StreamPlan, SEGMENT};
use crate::storage::stream::StreamFile;
use crate::web::range::Piece;
use crate::web::response;

/// A stream's body still to send.
pub(super) struct Body {
    pub(super) content: crate::id::Id,
    pub(super) file: StreamFile,
    pub(super) pieces: VecDeque<Piece>,
    /// A segment is being read (one at a time, so they arrive in order).
    pub(super) reading: bool,
}

impl HttpServer {
    /// Connection `conn`, if open.
    fn conn_mut(&mut self, conn: u64) -> Option<(Token, &mut HttpConn)> {
        let t = Token(conn as usize);
        self.conns.get_mut(&t).map(|c| (t, c))
    }

    /// A stream's response for connection `conn`: its head now, its body as the client
    /// takes it (segments asked for with [`HttpEvent::StreamRead`]).
    pub fn start_stream(
        &mut self,
        reg: &Registry,
        conn: u64,
        plan: StreamPlan,
        now: Instant,
    ) -> Vec<HttpEvent> {
        let mut ev = Vec::new();
        let Some((t, c)) = self.conn_mut(conn) else {
            return ev;
        };
        let State::Waiting(Some(p)) = &c.state else {
            return ev;
        };
        let content = p.content;
        let StreamPlan {
            mut head,
            file,
            pieces,
        } = plan;
        let status = status_of(&head);
        response::set_connection(&mut head, keep_alive(c));
        c.state = State::Writing;
        c.progress_at = now;
        c.out = head;
        c.written = 0;
        c.body = Some(Body {
            content,
            file,
            pieces: pieces.into(),
            reading: false,
        });
        self.count(status);
        self.write(reg, t, now, &mut ev);
        ev
    }

    /// A segment of the body of connection `conn`'s stream (`None`: it could not be read;
    /// the response cannot be finished and the connection is closed).
    pub fn stream_bytes(
        &mut self,
        reg: &Registry,
        conn: u64,
        bytes: Option<Vec<u8>>,
        now: Instant,
    ) -> Vec<HttpEvent> {
        let mut ev = Vec::new();
        let Some((t, c)) = self.conn_mut(conn) else {
            return ev;
        };
        let Some(body) = c.body.as_mut().filter(|b| b.reading) else {
            return ev;
        };
        body.reading = false;
        match bytes {
            Some(b) => {
                c.out.drain(..c.written.min(c.out.len()));
                c.written = 0;
                c.out.extend_from_slice(&b);
                self.write(reg, t, now, &mut ev);
            }
            None => {
                log::info!("http: {}: a stream's bytes went away; closing", c.peer);
                self.close(reg, t, &mut ev);
            }
        }
        ev
    }
}

/// Moves what comes next of `c`'s stream body into its output while less than a segment is
/// waiting to be sent: bytes at once, a file range by asking for its next segment (one at
/// a time).
pub(super) fn refill(c: &mut HttpConn, t: Token, ev: &mut Vec<HttpEvent>) {
    let Some(body) = c.body.as_mut() else {
        return;
    };
    while !body.reading && (c.out.len() - c.written) < SEGMENT as usize {
        match body.pieces.front_mut() {
            None => return,
            Some(Piece::Bytes(b)) => {
                let b = std::mem::take(b);
                body.pieces.pop_front();
                c.out.drain(..c.written.min(c.out.len()));
                c.written = 0;
                c.out.extend_from_slice(&b);
            }
            Some(Piece::File(r)) => {
                let seg = next_segment(&body.file, r);
                r.start = seg.end;
                if r.is_empty() {
                    body.pieces.pop_front();
                }
                if seg.is_empty() {
                    continue;
                }
                body.reading = true;
                ev.push(HttpEvent::StreamRead(SegmentRead {
                    conn: t.0 as u64,
                    content: body.content,
                    file: body.file.clone(),
                    range: seg,
                }));
            }
        }
    }
}
