//! The reactor's side of the HTTP server (`net::http_server`): its readiness, its timers,
//! and JSON API requests made over HTTP, which run exactly as the API's own (api.md).

use std::time::Instant;

use mio::Token;

use super::Reactor;
use crate::api::{reply, ReplyTo};
use crate::net::http_server::HttpEvent;
use crate::net::jobs::{Job, StreamDone};

impl Reactor {
    /// Whether `t` is an HTTP client socket.
    pub(super) fn http_owns(&self, t: Token) -> bool {
        self.http.as_ref().is_some_and(|h| h.owns(t))
    }

    pub(super) fn http_accept(&mut self, now: Instant) {
        let ev = match self.http.as_mut() {
            Some(h) => h.accept(self.poll.registry(), &mut self.tokens, now),
            None => return,
        };
        self.http_events(now, ev);
    }

    pub(super) fn http_ready(&mut self, t: Token, r: bool, w: bool, now: Instant) {
        if r {
            // A request may read the view (metrics, lookups): it sees every change so far.
            self.fresh_view(now);
        }
        let ev = match self.http.as_mut() {
            Some(h) => h.ready(self.poll.registry(), t, (r, w), now),
            None => return,
        };
        self.http_events(now, ev);
    }

    pub(super) fn http_tick(&mut self, now: Instant) {
        let ev = match self.http.as_mut() {
            Some(h) => h.housekeeping(self.poll.registry(), now),
            None => return,
        };
        self.http_events(now, ev);
    }

    /// Hands the reply to `to` to its HTTP client, if `to` is one; false if it is not.
    pub(super) fn http_deliver(&mut self, now: Instant, to: ReplyTo, bytes: &[u8]) -> bool {
        if !self.http_owns(Token(to.conn as usize)) {
            return false;
        }
        let ev = match self.http.as_mut() {
            Some(h) => h.deliver(self.poll.registry(), to.conn, bytes, now),
            None => return true,
        };
        self.http_events(now, ev);
        true
    }

    /// A stream waits for `chunks`: the core fetches them first, and the request is tried
    /// again shortly (`HttpServer::retry`).
    pub(super) fn http_stream_pending(
        &mut self,
        now: Instant,
        to: ReplyTo,
        content: crate::id::Id,
        chunks: std::ops::Range<u32>,
    ) {
        self.core.handle_stream_wanted(now, content, chunks);
        if let Some(h) = self.http.as_mut() {
            h.retry(to.conn);
        }
    }

    /// Storage does not know a stream's content. A download whose storage is not open yet
    /// (its manifest just arrived) will have it in a moment: the request waits, as for
    /// chunks not here yet (until `STREAM_WAIT`, then `503`). Otherwise: `404`.
    pub(super) fn http_stream_unknown(
        &mut self,
        now: Instant,
        to: ReplyTo,
        content: crate::id::Id,
        refusal: Vec<u8>,
    ) {
        if self.core.library().is_downloading(&content) {
            if let Some(h) = self.http.as_mut() {
                h.retry(to.conn);
            }
        } else {
            self.deliver(now, to, refusal);
        }
    }

    /// A stream's response plan or a segment of its body, for its HTTP client.
    pub(super) fn http_stream_done(&mut self, now: Instant, done: StreamDone) {
        let reg = self.poll.registry();
        let ev = match (self.http.as_mut(), done) {
            (Some(h), StreamDone::Plan { to, plan }) => h.start_stream(reg, to.conn, *plan, now),
            (Some(h), StreamDone::Bytes { to, bytes }) => h.stream_bytes(reg, to.conn, bytes, now),
            (None, _) => return,
        };
        self.http_events(now, ev);
    }

    fn http_job(&mut self, job: Job) {
        self.backlog.push(job);
        self.backlog.submit(&self.workers, &self.jobs);
    }

    fn http_events(&mut self, now: Instant, events: Vec<HttpEvent>) {
        for ev in events {
            match ev {
                HttpEvent::Api { conn, bytes } => {
                    let to = ReplyTo { conn, seq: 0 };
                    if !self.backlog.api_room() {
                        let busy = reply::error("node busy: too many requests queued, try again");
                        self.http_deliver(now, to, &busy);
                        continue;
                    }
                    // The guard checked the token, if one was needed (http.md section 4).
                    self.http_job(Job::Api {
                        to,
                        bytes,
                        token: None,
                        fresh: false,
                    });
                }
                HttpEvent::Stream {
                    conn,
                    content,
                    path,
                    range,
                } => self.http_job(Job::Stream {
                    to: ReplyTo { conn, seq: 0 },
                    content,
                    path,
                    range,
                }),
                HttpEvent::StreamRead(read) => self.http_job(Job::StreamRead(read)),
                HttpEvent::Closed { conn } => self.core.handle_api_gone(conn),
            }
        }
    }
}
