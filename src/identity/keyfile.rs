//! The identity key file, `identity.key` in the data dir (spec: `protocol-spec/secure.md`,
//! "Identity"): two lines, a header and the 32-byte secret seed in hex, mode 0600.
//!
//! A missing file means a new identity (created here). A file that is there but cannot be
//! read or parsed is an error, never a silent new identity: the node ID is what peers,
//! bans and provider records know this node by, and losing it by accident must be loud.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Identity, SECRET_LEN};

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "identity.key";
/// Its first line.
const HEADER: &str = "PEERSHARE-IDENTITY-ED25519-V1";
/// A key file is tiny: anything longer is not one (read no more than this).
const MAX_LEN: u64 = 4096;

/// How the identity was obtained.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    /// Read from the key file.
    Loaded,
    /// No key file: a new identity was made and saved.
    Created,
}

/// The identity and what the caller should tell the user.
pub struct Loaded {
    /// The identity.
    pub identity: Identity,
    /// Read or created.
    pub origin: Origin,
    /// Things worth a warning (a key file readable by others).
    pub warnings: Vec<String>,
}

/// The key file could not be read, parsed or written.
#[derive(Debug)]
pub struct KeyFileError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong, and what to do.
    pub what: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identity key file {}: {}",
            self.path.display(),
            self.what
        )
    }
}

impl std::error::Error for KeyFileError {}

/// Reads the identity from `dir`'s key file, or makes and saves a new one if there is none.
pub fn load_or_create(dir: &Path) -> Result<Loaded, KeyFileError> {
    let path = dir.join(KEY_FILE);
    let err = |what: String| KeyFileError {
        path: path.clone(),
        what,
    };
    match File::open(&path) {
        Ok(f) => {
            let mut warnings = Vec::new();
            let meta = f
                .metadata()
                .map_err(|e| err(format!("cannot read its metadata: {e}")))?;
            if let Some(w) = loose_mode(&meta) {
                warnings.push(format!("identity key file {}: {w}", path.display()));
            }
            let mut text = Zeroizing::new(String::new());
            f.take(MAX_LEN + 1)
                .read_to_string(&mut text)
                .map_err(|e| err(format!("cannot read it: {e}")))?;
            let identity = parse(&text).map_err(|what| {
                err(format!(
                    "{what}; refusing to start with a new node ID by accident: restore the \
                     file from a backup, or move it away to start as a new node"
                ))
            })?;
            Ok(Loaded {
                identity,
                origin: Origin::Loaded,
                warnings,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let identity = Identity::generate();
            write(dir, &identity).map_err(|e| err(format!("cannot save a new identity: {e}")))?;
            Ok(Loaded {
                identity,
                origin: Origin::Created,
                warnings: Vec::new(),
            })
        }
        Err(e) => Err(err(format!("cannot open it: {e}"))),
    }
}

/// The key file's text for `identity`.
pub fn render(identity: &Identity) -> Zeroizing<String> {
    Zeroizing::new(format!("{HEADER}\n{}\n", hex::encode(*identity.secret())))
}

/// Parses a key file's text.
pub fn parse(text: &str) -> Result<Identity, String> {
    if text.len() as u64 > MAX_LEN {
        return Err("it is too long to be a key file".into());
    }
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("it does not start with the line {HEADER}"));
    }
    let hexkey = lines.next().unwrap_or("").trim();
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("it has lines after the key".into());
    }
    let mut seed = Zeroizing::new([0u8; SECRET_LEN]);
    if hexkey.len() != SECRET_LEN * 2 || hex::decode_to_slice(hexkey, seed.as_mut()).is_err() {
        return Err(format!(
            "its second line is not a {}-digit hex key",
            SECRET_LEN * 2
        ));
    }
    Ok(Identity::from_secret(&seed))
}

/// Saves `identity` as `dir`'s key file: created with mode 0600 (never readable by others,
/// not even for an instant), written whole, synced, then renamed into place.
pub fn write(dir: &Path, identity: &Identity) -> io::Result<()> {
    let tmp = dir.join(format!("{KEY_FILE}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(render(identity).as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(KEY_FILE))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn loose_mode(meta: &fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {mode:o} lets other users read the node's secret key (they could act as \
             this node); run chmod 600 on it"
        )
    })
}

#[cfg(not(unix))]
fn loose_mode(_meta: &fs::Metadata) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        assert_eq!(a.origin, Origin::Created);
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(b.origin, Origin::Loaded);
        assert!(b.warnings.is_empty());
        assert_eq!(a.identity.node_id(), b.identity.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_key_file_is_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let p = dir.path().join(KEY_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.identity.node_id(), b.identity.node_id());
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert!(b.warnings[0].contains("chmod 600"));
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_stays_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        for bad in [
            "".to_string(),
            "garbage".to_string(),
            format!("{HEADER}\n1234\n"),
            format!("{HEADER}\n{}\n", "zz".repeat(32)),
            format!("{HEADER}\n{}\nmore\n", "00".repeat(32)),
        ] {
            fs::write(&p, &bad).unwrap();
            let e = load_or_create(dir.path())
                .err()
                .expect("corrupt file accepted");
            assert!(e.to_string().contains("identity.key"), "{e}");
            assert!(e.to_string().contains("refusing"), "{e}");
            assert_eq!(fs::read_to_string(&p).unwrap(), bad);
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let id = Identity::from_secret(&[7; 32]);
        let text = render(&id);
        assert_eq!(parse(&text).unwrap().public(), id.public());
    }
}
