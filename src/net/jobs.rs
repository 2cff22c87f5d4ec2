//! Work the reactor hands to the worker pool, and what comes back.
//!
//! Every job is a value ([`Job`]) until a worker runs it, so a job the pool has no room for
//! waits in the reactor's backlog ([`Backlog`]) and goes out, in order, as soon as there is
//! room: nothing the node asked for is dropped because the pool was busy. A job's result
//! comes back as a [`Completion`] through the loop's completion channel.

use std::collections::VecDeque;
use std::sync::Arc;

use super::shared::Shared;
use crate::api::request::{parse_request, ApiError, ApiRequest};
use crate::api::{auth, paths, reply, ReplyTo};
use crate::ledger::Ledger;
use crate::node_core::api::{route, Route};
use crate::node_core::library::already_downloading;
use crate::storage::{DiskStorage, StorageDone, StorageJob};
use crate::workers::{Completer, WorkerPool};

/// Results that come back to the loop from workers.
pub enum Completion {
    /// An API request was parsed (and its paths prepared); the loop executes it.
    Parsed {
        /// Where the reply goes.
        to: ReplyTo,
        /// The typed request or why it is invalid.
        result: Result<ApiRequest, ApiError>,
    },
    /// An API request that reads the view found it stale (`Shared::is_stale`): the loop
    /// publishes a fresh one and hands the request back to a worker (`fresh`).
    ViewWanted {
        /// Where the reply goes.
        to: ReplyTo,
        /// The request's bytes.
        bytes: Vec<u8>,
        /// The token this client must send, if any.
        token: Option<Arc<str>>,
    },
    /// A finished API reply.
    Reply {
        /// Where it goes.
        to: ReplyTo,
        /// The reply bytes.
        bytes: Vec<u8>,
    },
    /// A storage job's result.
    Storage(StorageDone),
    /// A stream's response plan, or a segment of its bytes, for the HTTP server.
    Stream(StreamDone),
    /// A stream waits for chunks not here yet (`net::stream`): fetch them first, try again.
    StreamPending {
        /// The HTTP client's connection.
        to: ReplyTo,
        /// The content.
        content: crate::id::Id,
        /// The chunks it waits for.
        chunks: std::ops::Range<u32>,
    },
    /// Storage does not know a stream's content ([`super::stream::Streamed::Unknown`]).
    StreamUnknown {
        /// The HTTP client's connection.
        to: ReplyTo,
        /// The content.
        content: crate::id::Id,
        /// The `404` to send if the node is not downloading it either.
        refusal: Vec<u8>,
    },
}

/// What a stream job came to (`net::stream`).
pub enum StreamDone {
    /// The response to send: its head now, its body piece by piece.
    Plan {
        /// The HTTP client's connection.
        to: ReplyTo,
        /// The response.
        plan: Box<super::stream::StreamPlan>,
    },
    /// A segment of the body, `None` if it could not be read (the content went away): the
    /// response cannot be finished.
    Bytes {
        /// The HTTP client's connection.
        to: ReplyTo,
        /// The bytes.
        bytes: Option<Vec<u8>>,
    },
}

/// A segment of a stream's body to read: bytes `range` of `file` of `content`, for HTTP
/// connection `conn` (`net::http_server`).
#[derive(Debug)]
pub struct SegmentRead {
    /// The HTTP client's connection.
    pub conn: u64,
    /// The content.
    pub content: crate::id::Id,
    /// The file within it.
    pub file: crate::storage::stream::StreamFile,
    /// The bytes, within the file.
    pub range: std::ops::Range<u64>,
}

/// A unit of work for a worker.
pub enum Job {
    /// File work for the node ([`DiskStorage::run`]).
    Storage(StorageJob),
    /// An API request's bytes: check the token if one is required, parse, prepare paths,
    /// and answer the read-only commands from the shared view at once.
    Api {
        /// Where the reply goes.
        to: ReplyTo,
        /// The request's bytes.
        bytes: Vec<u8>,
        /// The token this client must send (clients outside loopback), if any.
        token: Option<Arc<str>>,
        /// The loop published its view after the request arrived: it holds every change
        /// the client can know of (read-your-writes), stale or not by now.
        fresh: bool,
    },
    /// Bytes of a content for an HTTP client (`net::stream`); the result is a response
    /// plan (or a whole response: a refusal).
    Stream {
        /// Where the response goes.
        to: ReplyTo,
        /// The content.
        content: crate::id::Id,
        /// A folder's file.
        path: String,
        /// The `Range` header.
        range: Option<String>,
    },
    /// A segment of a stream's body.
    StreamRead(SegmentRead),
    /// A ledger command the node core passed on (`Output::Ledger`): it appends and fsyncs.
    Ledger {
        /// Where the reply goes.
        to: ReplyTo,
        /// The request.
        req: ApiRequest,
        /// Whether this node has the content.
        known: bool,
    },
}

/// What jobs need to run: the node's files, its shared view, its ledger, the way back.
pub struct JobContext {
    /// The files.
    pub storage: Arc<DiskStorage>,
    /// The view read-only API commands are answered from.
    pub shared: Arc<Shared>,
    /// The ledger behind the chain commands.
    pub ledger: Arc<dyn Ledger>,
    /// Where results go.
    pub completer: Completer<Completion>,
}

impl JobContext {
    /// Runs `job` (on a worker).
    pub fn run(&self, job: Job) {
        match job {
            Job::Storage(j) => {
                if let Some(done) = self.storage.run(j) {
                    self.completer.complete(Completion::Storage(done));
                }
            }
            Job::Api {
                to,
                bytes,
                token,
                fresh,
            } => self.api(to, bytes, token, fresh),
            Job::Stream {
                to,
                content,
                path,
                range,
            } => {
                use super::stream::Streamed;
                let done =
                    match super::stream::respond(&self.storage, content, &path, range.as_deref()) {
                        Streamed::Done(bytes) => Completion::Reply { to, bytes },
                        Streamed::Plan(plan) => Completion::Stream(StreamDone::Plan { to, plan }),
                        Streamed::Unknown(refusal) => Completion::StreamUnknown {
                            to,
                            content,
                            refusal,
                        },
                        Streamed::Pending(chunks) => Completion::StreamPending {
                            to,
                            content,
                            chunks,
                        },
                    };
                self.completer.complete(done);
            }
            Job::StreamRead(SegmentRead {
                conn,
                content,
                file,
                range,
            }) => {
                let to = ReplyTo { conn, seq: 0 };
                let bytes = super::stream::read_segment(&self.storage, content, &file, range)
                    .map_err(|e| log::debug!("http: stream of {content}: {e:?}"))
                    .ok();
                self.completer
                    .complete(Completion::Stream(StreamDone::Bytes { to, bytes }));
            }
            Job::Ledger { to, req, known } => {
                let bytes = crate::api::ledger::reply(&*self.ledger, &req, known, unix_now())
                    .unwrap_or_else(|| reply::error("internal: not a ledger command"));
                self.completer.complete(Completion::Reply { to, bytes });
            }
        }
    }

    fn api(&self, to: ReplyTo, bytes: Vec<u8>, token: Option<Arc<str>>, fresh: bool) {
        if let Some(expected) = token.as_deref() {
            if let Err(message) = auth::check(&bytes, expected) {
                self.shared.api.refused_request(&bytes);
                let bytes = reply::error(&message);
                self.completer.complete(Completion::Reply { to, bytes });
                return;
            }
        }
        let parsed = parse_request(&bytes);
        if let Ok(r) = &parsed {
            // The view misses a change (perhaps this client's own, just replied to): the
            // loop publishes a fresh one first. Before anything is done for the request
            // (its folder is not created before the check against running downloads).
            if !fresh && reads_view(r) && self.shared.is_stale() {
                let done = Completion::ViewWanted { to, bytes, token };
                self.completer.complete(done);
                return;
            }
        }
        match &parsed {
            Ok(r) => self.shared.api.request(Some(r.command())),
            Err(_) => self.shared.api.refused_request(&bytes),
        }
        let parsed = parsed.and_then(|r| self.one_folder_per_download(r));
        let done = match parsed.and_then(paths::prepare) {
            Ok(req) => match route(&req) {
                Route::View(answer) => Completion::Reply {
                    to,
                    bytes: answer(&self.shared.view(), &self.shared.live()),
                },
                Route::Ledger => Completion::Reply {
                    to,
                    bytes: crate::api::ledger::reply(&*self.ledger, &req, false, unix_now())
                        .unwrap_or_else(|| reply::error("internal: not a ledger command")),
                },
                Route::Core => Completion::Parsed {
                    to,
                    result: Ok(req),
                },
            },
            result @ Err(_) => Completion::Parsed { to, result },
        };
        self.completer.complete(done);
    }
}

/// Whether a worker reads the view to handle `req`: the read-only commands, and a
/// download into a folder (`JobContext::one_folder_per_download`).
fn reads_view(req: &ApiRequest) -> bool {
    matches!(route(req), Route::View(_))
        || matches!(
            req,
            ApiRequest::RequestFile {
                output_dir: Some(_),
                ..
            }
        )
}

impl JobContext {
    /// Refuses a `local_request_file` naming another folder than the one its download in
    /// progress goes to, before `paths::prepare` would create that folder (it would stay
    /// empty). The core refuses it too, for downloads started since the view was taken.
    fn one_folder_per_download(&self, req: ApiRequest) -> Result<ApiRequest, ApiError> {
        if let ApiRequest::RequestFile {
            content_hash,
            output_dir: Some(dir),
            ..
        } = &req
        {
            let view = self.shared.view();
            let running = view
                .downloading_into
                .iter()
                .find(|(id, _)| id == content_hash);
            if let Some((_, first)) = running {
                // Missing (so not the same folder) or another folder.
                let same = std::fs::canonicalize(dir).is_ok_and(|d| {
                    d == *first || std::fs::canonicalize(first).is_ok_and(|f| f == d)
                });
                if !same {
                    return Err(ApiError::new(already_downloading(content_hash, first)));
                }
            }
        }
        Ok(req)
    }
}

/// Jobs waiting for room in the pool, oldest first.
#[derive(Default)]
pub struct Backlog {
    waiting: VecDeque<Job>,
    /// How many of them are [`Job::Api`].
    api: usize,
}

/// Most API requests waiting for room in the pool; beyond, new ones are answered "busy".
/// Storage jobs always wait: the engine bounds how many it has outstanding.
pub const MAX_API_BACKLOG: usize = 4096;

impl Backlog {
    /// Queues `job` behind the others.
    pub fn push(&mut self, job: Job) {
        if matches!(job, Job::Api { .. }) {
            self.api += 1;
        }
        self.waiting.push_back(job);
    }

    /// Whether an API request may still be queued.
    pub fn api_room(&self) -> bool {
        self.api < MAX_API_BACKLOG
    }

    fn pop(&mut self) -> Option<Job> {
        let job = self.waiting.pop_front()?;
        if matches!(job, Job::Api { .. }) {
            self.api = self.api.saturating_sub(1);
        }
        Some(job)
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Hands waiting jobs to the pool, in order, while it has room. Only the loop submits
    /// to the pool (workers only take), so room seen here is room still there at the
    /// submit.
    pub fn submit(&mut self, pool: &WorkerPool, ctx: &Arc<JobContext>) {
        while pool.has_room() {
            let Some(job) = self.pop() else {
                break;
            };
            let ctx = ctx.clone();
            if !pool.submit(move || ctx.run(job)) {
                // The pool is shutting down: nothing more will run.
                log::warn!(
                    "worker pool closed; {} jobs not run",
                    self.waiting.len() + 1
                );
                self.waiting.clear();
                self.api = 0;
                break;
            }
        }
    }

    /// Runs every waiting job on this thread (the node is stopping).
    pub fn run_all_here(&mut self, ctx: &JobContext) {
        while let Some(job) = self.pop() {
            ctx.run(job);
        }
    }
}

/// Seconds since 1970 (ledger records carry their time).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
