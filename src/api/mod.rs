//! The local JSON-over-TCP API (EchoChain compatible; see "The local API contract" in
//! `MISSION.md`).
//!
//! Existing clients connect to `127.0.0.1:8002`, write ONE JSON object
//! `{"type": "<command>", "payload": {...}}` with no trailing newline and without closing
//! their side, then read the reply once and parse it as one JSON object. The end of a
//! request therefore has to be found by scanning the JSON structure, not by waiting for a
//! newline or for EOF. Newline-delimited requests on a kept-open connection work too: every
//! reply is one compact JSON object followed by `\n`.
//!
//! # Flow
//! The modules here do no I/O of their own (except [`client`], which is the CLI's blocking
//! client); the reactor owns the sockets.
//!
//! 1. The reactor (`src/net/`) accepts a connection and keeps one
//!    [`framing::ApiConnection`] for it.
//! 2. Every read is fed to [`framing::ApiConnection::on_bytes`], which returns each request
//!    completed by those bytes as a [`framing::Frame`], in order. EOF from the peer goes to
//!    [`framing::ApiConnection::on_eof`].
//! 3. A `Frame::Request`'s bytes go to a worker thread, which calls
//!    [`request::parse_request`] to get a typed [`request::ApiRequest`] (or an
//!    [`request::ApiError`] whose message is sent back to the client).
//! 4. The node executes the request and builds the reply with [`reply::success`] or
//!    [`reply::error`]; a `Frame::Malformed` is answered with `reply::error(reason)`.
//! 5. The reactor hands each reply to [`framing::ApiConnection::queue_reply`] — exactly one
//!    reply per frame, in the order the frames were returned — then writes
//!    [`framing::ApiConnection::pending_output`] and reports progress with
//!    [`framing::ApiConnection::consume_output`]. It closes the connection once
//!    [`framing::ApiConnection::wants_close`] says so, and stops reading while
//!    [`framing::ApiConnection::wants_read`] is false.
//!
//! The CLI subcommands talk to a running node through [`client::call`].

pub mod auth;
pub mod client;
pub mod framing;
pub mod ledger;
pub mod paths;
pub mod reply;
pub mod request;
pub mod tls;
pub mod tls_client;

/// Where an API request's reply goes: the client connection it came on and its place in
/// that connection's reply order. The reactor numbers connections; everything else only
/// carries this back with the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyTo {
    /// The API connection (the reactor's number for it).
    pub conn: u64,
    /// The reply's place in that connection's order.
    pub seq: u64,
}
