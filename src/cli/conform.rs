//! `peershare conform HOST:PORT`: the conformance suite (`src/conform/`), or with
//! `--broken KIND` the deliberately broken peer the suite's own test runs it against.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::conform::{self, BrokenKind, Options};
use crate::id::Id;

/// Options of `peershare conform`.
#[derive(Args, Debug)]
pub struct ConformArgs {
    /// The peer to test: its DHT (UDP) and wire (TCP) port, one number (dht.md section 2)
    #[arg(required_unless_present = "list")]
    pub target: Option<String>,
    /// A content the peer shares completely (64 hex digits): the wire cases use it
    #[arg(long, value_name = "ID")]
    pub content: Option<String>,
    /// A folder the peer shares completely (64 hex digits): the folder cases use it
    #[arg(long, value_name = "ID")]
    pub folder: Option<String>,
    /// A PeerShare API on this machine (port, or HOST:PORT) to share a fresh 12-chunk test
    /// file and a small test folder through, when no --content / --folder is given
    #[arg(long, value_name = "PORT")]
    pub api: Option<String>,
    /// Where to write that test file [default: the system's temporary folder]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Run only the cases whose name contains this
    #[arg(long, value_name = "TEXT")]
    pub only: Option<String>,
    /// Also run the cases that wait for the peer's timeouts (10 s and more)
    #[arg(long)]
    pub slow: bool,
    /// List the cases and the spec sections they check, and exit
    #[arg(long)]
    pub list: bool,
    /// Do not test: serve as a peer broken in this way, in front of the target (for the
    /// suite's own test)
    #[arg(long, value_enum, value_name = "KIND")]
    pub broken: Option<BrokenKind>,
    /// With --broken: where to listen (TCP and UDP)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// Runs `peershare conform`; exit status 0 if the peer conforms (no case failed), 1 if a
/// case failed, 2 on bad arguments.
pub fn conform(args: ConformArgs) -> i32 {
    if args.list {
        for c in conform::cases() {
            println!("{:40} {}", c.name, c.spec);
        }
        return 0;
    }
    let target = match conform::resolve(args.target.as_deref().unwrap_or_default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("peershare conform: {e}");
            return 2;
        }
    };
    if let Some(kind) = args.broken {
        return match conform::serve_broken(kind, target, args.listen) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("peershare conform --broken: {e}");
                2
            }
        };
    }
    let content = match args.content.as_deref().map(Id::from_hex).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peershare conform: --content: {e}");
            return 2;
        }
    };
    let folder = match args.folder.as_deref().map(Id::from_hex).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peershare conform: --folder: {e}");
            return 2;
        }
    };
    let api = match args.api.as_deref().map(parse_api).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("peershare conform: --api: {e}");
            return 2;
        }
    };
    let opts = Options {
        target,
        content,
        api,
        work_dir: args.work_dir,
        folder,
        only: args.only,
        slow: args.slow,
    };
    let sum = conform::run(opts, &mut std::io::stdout());
    i32::from(!sum.failed.is_empty())
}

/// A port alone means 127.0.0.1 (the API listens on loopback by default).
fn parse_api(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|e| format!("{s}: {e}"))
}
