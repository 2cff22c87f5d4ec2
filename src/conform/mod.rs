//! `peershare conform HOST:PORT`: a black-box conformance suite, in the spirit of h2spec,
//! for *any* implementation of `protocol-spec/`. It talks to the peer over real sockets only
//! (UDP for the DHT, TCP for the wire protocol, both on PORT: dht.md section 2 makes them one
//! number), runs every case, prints each as PASS, FAIL or SKIP with the spec section it
//! checks and, on failure, the bytes exchanged in hex; the exit status is 0 only if no case
//! failed.
//!
//! What the suite needs from the peer (`protocol-spec/conform.md`): its DHT and wire port,
//! and content it serves, either named (`--content ID`, a file of any size the peer shares
//! completely) or shared for the occasion through a PeerShare API (`--api PORT`, the peer on
//! this machine). Without content only the DHT cases and the wire cases that need none run.
//!
//! Cases live by topic: `dht_cases.rs`, `wire_cases.rs` (handshake, manifest, transfer,
//! malformed frames), `rule_cases.rs` (the connection rules of wire.md section 3 and the
//! decisions of issue 18), `dial_cases.rs` (the peer dials the suite, asked to through
//! `--api`), `secure_cases.rs` (the secure session, secure.md). `broken.rs` is a deliberately broken peer (a proxy in front of a
//! real one) that the suite's own test runs it against.

mod broken;
mod dht_cases;
mod dial_cases;
mod folder_cases;
mod link;
mod lookup_cases;
mod rule_cases;
mod secure_cases;
mod session;
mod wire_cases;

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::content::manifest::Manifest;
use crate::id::Id;
pub use broken::{serve_broken, BrokenKind};
use link::Transcript;

/// How long the suite waits for an answer it expects.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long silence must last to count as "no answer".
pub const SILENCE_WAIT: Duration = Duration::from_millis(700);

/// What to test and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The peer's DHT (UDP) and wire (TCP) address.
    pub target: SocketAddr,
    /// A content the peer shares completely.
    pub content: Option<Id>,
    /// A PeerShare API on this machine through which to share a test file.
    pub api: Option<SocketAddr>,
    /// Where to write that test file (a temporary folder if `None`).
    pub work_dir: Option<PathBuf>,
    /// A folder the peer shares completely (content.md section 10).
    pub folder: Option<Id>,
    /// Run only the cases whose name contains this.
    pub only: Option<String>,
    /// Also run the cases that wait for the peer's timeouts (10 s and more).
    pub slow: bool,
}

/// A case's verdict.
#[derive(Debug)]
pub enum Outcome {
    /// The peer did what the spec says.
    Pass,
    /// It did not: why.
    Fail(String),
    /// The case could not run (no content, too few chunks, ...): why.
    Skip(String),
}

/// What every case gets: the target, the content, and a transcript of the case's bytes.
pub struct Ctx {
    /// The options.
    pub opts: Options,
    /// The content to test with.
    pub content: Option<Id>,
    /// Its manifest, once `manifest-fetch` got it.
    pub manifest: Option<Manifest>,
    /// The peer's node ID, once a PONG or a HANDSHAKE told it.
    pub peer_id: Option<Id>,
    /// The folder to test with.
    pub folder: Option<Id>,
    /// Its tree, once `folder-manifest-fetch` got it.
    pub tree: Option<crate::content::tree::TreeManifest>,
    log: Transcript,
}

/// One case: a name, the spec section it checks, and the check.
pub struct Case {
    /// Short, unique, kebab-case.
    pub name: &'static str,
    /// Where the rule is written, e.g. "wire.md §4.6".
    pub spec: &'static str,
    /// The check: `Ok` passes, `Err` fails or skips.
    pub run: fn(&mut Ctx) -> Result<(), Outcome>,
    /// Waits for one of the peer's timeouts: only with `--slow`.
    pub slow: bool,
}

impl Case {
    /// A case.
    pub fn new(
        name: &'static str,
        spec: &'static str,
        run: fn(&mut Ctx) -> Result<(), Outcome>,
    ) -> Case {
        Case {
            name,
            spec,
            run,
            slow: false,
        }
    }

    /// A case that waits for one of the peer's timeouts (run with `--slow` only).
    pub fn slow(
        name: &'static str,
        spec: &'static str,
        run: fn(&mut Ctx) -> Result<(), Outcome>,
    ) -> Case {
        Case {
            slow: true,
            ..Case::new(name, spec, run)
        }
    }
}

/// Every case, in the order they run: the DHT first, then the wire protocol (the manifest
/// fetch early: later cases use it).
pub fn cases() -> Vec<Case> {
    let mut v = dht_cases::cases();
    v.extend(lookup_cases::cases());
    v.extend(wire_cases::cases());
    v.extend(rule_cases::cases());
    v.extend(secure_cases::cases());
    v.extend(dial_cases::cases());
    v.extend(folder_cases::cases());
    v
}

/// A failure, for `?` in cases.
pub fn fail(why: impl Into<String>) -> Outcome {
    Outcome::Fail(why.into())
}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Names of the cases that passed.
    pub passed: Vec<&'static str>,
    /// Names of the cases that failed.
    pub failed: Vec<&'static str>,
    /// Names of the cases that were skipped.
    pub skipped: Vec<&'static str>,
}

/// Resolves `HOST:PORT`.
pub fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: no address"))
        .map(crate::proto::codec::canonical_addr)
}

/// Runs the suite, printing one line per case (and the transcript of each failure).
pub fn run(opts: Options, out: &mut dyn std::io::Write) -> Summary {
    let mut ctx = Ctx {
        content: opts.content,
        folder: opts.folder,
        opts,
        manifest: None,
        peer_id: None,
        tree: None,
        log: Transcript::default(),
    };
    let mut sum = Summary::default();
    if ctx.content.is_none() {
        if let Some(api) = ctx.opts.api {
            match share_test_file(api, ctx.opts.work_dir.clone()) {
                Ok(id) => ctx.content = Some(id),
                Err(e) => {
                    let _ = writeln!(out, "conform: cannot share a test file through {api}: {e}");
                }
            }
        }
    }
    if ctx.folder.is_none() {
        if let Some(api) = ctx.opts.api {
            match folder_cases::share_test_folder(api, ctx.opts.work_dir.clone()) {
                Ok(id) => ctx.folder = Some(id),
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "conform: cannot share a test folder through {api}: {e}"
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "conform: testing {} (content {})",
        ctx.opts.target,
        ctx.content
            .map_or_else(|| "none: content cases skipped".to_owned(), |c| c.to_hex())
    );
    for case in cases() {
        if let Some(only) = &ctx.opts.only {
            if !case.name.contains(only.as_str()) {
                continue;
            }
        }
        ctx.log.borrow_mut().clear();
        let outcome = if case.slow && !ctx.opts.slow {
            Outcome::Skip("waits for a timeout: run with --slow".into())
        } else {
            (case.run)(&mut ctx).err().unwrap_or(Outcome::Pass)
        };
        let line = match &outcome {
            Outcome::Pass => {
                sum.passed.push(case.name);
                format!("PASS {} ({})", case.name, case.spec)
            }
            Outcome::Skip(why) => {
                sum.skipped.push(case.name);
                format!("SKIP {} ({}): {why}", case.name, case.spec)
            }
            Outcome::Fail(why) => {
                sum.failed.push(case.name);
                let mut s = format!("FAIL {} ({}): {why}", case.name, case.spec);
                for (sent, bytes) in ctx.log.borrow().iter() {
                    let dir = if *sent { "sent" } else { "recv" };
                    let _ = write!(s, "\n    {dir} {}", hex_cut(bytes));
                }
                s
            }
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    let _ = writeln!(
        out,
        "conform: {} passed, {} failed, {} skipped",
        sum.passed.len(),
        sum.failed.len(),
        sum.skipped.len()
    );
    sum
}

/// Hex of `b`, cut after 256 bytes (a PIECE can be a megabyte).
fn hex_cut(b: &[u8]) -> String {
    const MAX: usize = 256;
    match b.get(..MAX) {
        Some(head) if b.len() > MAX => format!("{}... ({} bytes)", hex::encode(head), b.len()),
        _ => hex::encode(b),
    }
}

/// Chunks of the test file: enough for cases about the last chunk, an index past it, and
/// requests of several chunks.
pub const TEST_FILE_CHUNKS: u64 = 12;

/// Writes a 12-chunk file (the last chunk short) and shares it through the API at `api`.
fn share_test_file(api: SocketAddr, dir: Option<PathBuf>) -> Result<Id, String> {
    let dir = dir.unwrap_or_else(std::env::temp_dir);
    let size = (TEST_FILE_CHUNKS - 1) * 262_144 + 1000;
    let seed = rand::random::<u64>();
    let data = noise(seed, size as usize);
    let path = dir.join(format!("conform-{seed:016x}.bin"));
    std::fs::write(&path, &data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    add_through_api(api, &path)
}

/// `n` incompressible bytes, different for every `seed` (xorshift).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(n + 8);
    let mut x = seed | 1;
    while data.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(n);
    data
}

/// Shares `path` (a file or a folder) with `local_add_file`; its content ID.
fn add_through_api(api: SocketAddr, path: &std::path::Path) -> Result<Id, String> {
    let req = crate::api::client::request(
        "local_add_file",
        json!({ "filepath": path.display().to_string() }),
    );
    let reply = crate::api::client::call(api, &req, Some(Duration::from_secs(60)))
        .map_err(|e| format!("API call failed: {e}"))?;
    let hash = reply["file_hash"]
        .as_str()
        .ok_or_else(|| format!("no file_hash in {reply}"))?;
    Id::from_hex(hash).map_err(|e| format!("bad file_hash {hash}: {e}"))
}
