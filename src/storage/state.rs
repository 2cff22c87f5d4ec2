//! What a node keeps across restarts: its ID, its routing table contacts, the keys it
//! provides and its bandwidth limits, in `state.json` in the data dir, written atomically (temp file, fsync, rename)
//! so a crash mid-write leaves the previous state intact.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::limits::Limits;
use crate::proto::dht::Contact;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "node.lock";
/// Most contacts loaded from disk: a routing table never holds more than 256 * k, and a
/// hand-edited or corrupted file must not make start-up slow.
const MAX_CONTACTS: usize = 256 * 20;

pub use super::job::NodeState;

#[derive(Deserialize)]
struct OnDisk {
    version: u32,
    node_id: String,
    contacts: Vec<ContactOnDisk>,
    #[serde(default)]
    provided: Vec<String>,
    /// Kept as raw JSON so that a bad limits object costs only the limits, not the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<serde_json::Value>,
}

/// [`OnDisk`] as it is written: the same fields, the provided keys hex-encoded one at a
/// time as they are written rather than collected as Strings first (100,000 of them every
/// minute for a library of 100,000 shares, issue 21).
#[derive(Serialize)]
struct OnDiskOut<'a> {
    version: u32,
    node_id: String,
    contacts: Vec<ContactOnDisk>,
    provided: HexIds<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<serde_json::Value>,
}

/// IDs written as a list of hex strings.
struct HexIds<'a>(&'a [Id]);

impl Serialize for HexIds<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        let mut buf = [0u8; 64];
        for id in self.0 {
            // Cannot fail: the buffer is exactly twice the ID's length, and hex is ASCII.
            let hex = hex::encode_to_slice(id.0, &mut buf)
                .ok()
                .and_then(|()| std::str::from_utf8(&buf).ok())
                .unwrap_or_default();
            seq.serialize_element(hex)?;
        }
        seq.end()
    }
}

#[derive(Serialize, Deserialize)]
struct ContactOnDisk {
    id: String,
    addr: String,
}

/// Errors reading or writing node state.
#[derive(Debug)]
pub enum StateError {
    /// An I/O operation on `path` failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process holds the data dir.
    Locked(PathBuf),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            StateError::Locked(p) => write!(
                f,
                "data dir {} is in use by another peershare node (choose another with --data-dir)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            StateError::Locked(_) => None,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the data dir if needed and takes an exclusive lock on it for the life of the
/// returned file, so two nodes never share (and corrupt) one data dir. The OS releases the
/// lock when the process dies, even by SIGKILL.
pub fn lock_data_dir(dir: &Path) -> Result<File, StateError> {
    fs::create_dir_all(dir).map_err(io_err("create data dir", dir))?;
    let p = dir.join(LOCK_FILE);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_err("open lock file", &p))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(StateError::Io {
            what: "lock",
            path: p,
            source: e,
        }),
    }
}

/// Loads the state; a missing file is a fresh node. A corrupt file is reported and set aside
/// (renamed to `state.json.corrupt`) rather than silently overwritten or fatal.
pub fn load(dir: &Path) -> Result<NodeState, StateError> {
    let p = dir.join(STATE_FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NodeState::default()),
        Err(e) => return Err(io_err("read", &p)(e)),
    };
    match parse(&text) {
        Ok(s) => Ok(s),
        Err(why) => {
            let aside = dir.join("state.json.corrupt");
            log::warn!(
                "{} is unreadable ({why}); keeping it as {} and starting with a new identity",
                p.display(),
                aside.display()
            );
            fs::rename(&p, &aside).map_err(io_err("set aside", &p))?;
            Ok(NodeState::default())
        }
    }
}

/// Parses the text of `state.json`. Bad contacts and provided keys are skipped (one bad
/// entry must not cost the whole table); a bad version or node ID fails the whole file.
pub fn parse(text: &str) -> Result<NodeState, String> {
    let d: OnDisk = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if d.version != 1 {
        return Err(format!("unknown state version {}", d.version));
    }
    let node_id = Id::from_hex(&d.node_id).map_err(|e| format!("node_id: {e}"))?;
    let mut contacts = Vec::new();
    for c in d.contacts.iter().take(MAX_CONTACTS) {
        // Skip bad entries rather than losing the whole table.
        if let (Ok(id), Ok(addr)) = (Id::from_hex(&c.id), c.addr.parse::<SocketAddr>()) {
            contacts.push(Contact { id, addr });
        }
    }
    let provided = d
        .provided
        .iter()
        .filter_map(|h| Id::from_hex(h).ok())
        .collect();
    // Bad limits are dropped (the node then runs unlimited unless told otherwise).
    let limits = d
        .limits
        .and_then(|v| serde_json::from_value::<Limits>(v).ok());
    Ok(NodeState {
        node_id: Some(node_id),
        contacts,
        provided,
        limits,
    })
}

/// The text of `state.json` for `state`; `None` for a state without a node ID (nothing to
/// keep yet).
pub fn encode(state: &NodeState) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let Some(id) = state.node_id else {
        return Ok(None);
    };
    let d = OnDiskOut {
        version: 1,
        node_id: id.to_hex(),
        contacts: state
            .contacts
            .iter()
            .map(|c| ContactOnDisk {
                id: c.id.to_hex(),
                addr: c.addr.to_string(),
            })
            .collect(),
        provided: HexIds(&state.provided),
        limits: state.limits.and_then(|l| serde_json::to_value(l).ok()),
    };
    serde_json::to_vec_pretty(&d).map(Some)
}

/// Writes the state atomically.
pub fn save(dir: &Path, state: &NodeState) -> Result<(), StateError> {
    let Some(bytes) = encode(state).map_err(|e| StateError::Io {
        what: "encode",
        path: dir.join(STATE_FILE),
        source: io::Error::other(e),
    })?
    else {
        return Ok(());
    };
    let tmp = dir.join("state.json.tmp");
    let dst = dir.join(STATE_FILE);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(&bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(io_err("rename into place", &dst))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), NodeState::default());
        let s = NodeState {
            node_id: Some(Id([5; 32])),
            contacts: vec![Contact {
                id: Id([6; 32]),
                addr: "[2001:db8::1]:8001".parse().unwrap(),
            }],
            provided: vec![Id([7; 32])],
            limits: Some(Limits {
                up: 5_000_000,
                peer_down: 1000,
                ..Limits::default()
            }),
        };
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert_eq!(load(dir.path()).unwrap(), NodeState::default());
        assert!(dir.path().join("state.json.corrupt").exists());
    }

    #[test]
    fn bad_entries_are_skipped() {
        let text = r#"{"version":1,"node_id":"0505050505050505050505050505050505050505050505050505050505050505",
            "contacts":[{"id":"zz","addr":"1.2.3.4:5"},{"id":"0606060606060606060606060606060606060606060606060606060606060606","addr":"1.2.3.4:5"}]}"#;
        let s = parse(text).unwrap();
        assert_eq!(s.contacts.len(), 1);
        assert_eq!(s.limits, None, "a file from before limits were kept");
        // A bad limits object costs the limits only, not the identity.
        let text = text.replace("]}", r#"],"limits":{"up":"fast"}}"#);
        let s = parse(&text).unwrap();
        assert_eq!((s.node_id, s.limits), (Some(Id([5; 32])), None));
    }

    #[test]
    fn data_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock_data_dir(dir.path()).unwrap();
        assert!(matches!(
            lock_data_dir(dir.path()),
            Err(StateError::Locked(_))
        ));
        drop(a);
        assert!(lock_data_dir(dir.path()).is_ok());
    }
}
