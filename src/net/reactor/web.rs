//! The reactor's side of the HTTP server (`net::http_server`): its readiness, its timers,
//! and JSON API requests made over HTTP, which run exactly as the API's own (api.md).

use std::time::Instant;

use mio::Token;

use super::Reactor;
use crate::api::{reply, ReplyTo};
use crate::net::http_server::HttpEvent;
use crate::net::jobs::Job;

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
                    self.backlog.push(Job::Api {
                        to,
                        bytes,
                        token: None,
                    });
                    self.backlog.submit(&self.workers, &self.jobs);
                }
                HttpEvent::Stream {
                    conn,
                    content,
                    path,
                    range,
                } => {
                    let to = ReplyTo { conn, seq: 0 };
                    self.backlog.push(Job::Stream {
                        to,
                        content,
                        path,
                        range,
                    });
                    self.backlog.submit(&self.workers, &self.jobs);
                }
                HttpEvent::Closed { conn } => self.core.handle_api_gone(conn),
            }
        }
    }
}
