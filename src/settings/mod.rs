//! Settings that persist: the keys of the node's config file (`<data dir>/peershare.conf`),
//! what each value may be, and where a value in force comes from ([`Source`]).
//!
//! Precedence, as in `git` and `cargo`: a command-line flag of `peershare run` beats the
//! config file, which beats the built-in default. `peershare config` shows each value with
//! its source; `peershare config set KEY VALUE` and `unset KEY` edit the file (through the
//! running node's API, which applies what it can at once, or directly when no node runs).
//!
//! No I/O here: [`file`] parses and edits the file's text; reading and writing it is the
//! storage's (`storage::config`) and the command line's.

pub mod file;

use std::path::PathBuf;

use crate::limits::{describe_rate, parse_rate, LimitChanges};

pub use file::{ConfigError, ConfigFile};

/// The name of the config file in the data dir.
pub const CONFIG_FILE: &str = "peershare.conf";

/// A setting of the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// Upload limit of the whole node (`--up-limit`).
    UpLimit,
    /// Download limit of the whole node (`--down-limit`).
    DownLimit,
    /// Upload limit of each transfer (`--transfer-up-limit`).
    TransferUpLimit,
    /// Download limit of each transfer (`--transfer-down-limit`).
    TransferDownLimit,
    /// Upload limit of each peer connection (`--peer-up-limit`).
    PeerUpLimit,
    /// Download limit of each peer connection (`--peer-down-limit`).
    PeerDownLimit,
    /// Where downloads go when a request names no folder (`--download-dir`).
    DownloadDir,
    /// A command the node runs after every completed download (`sh -c`, values in the
    /// environment: `PEERSHARE_ID`, `PEERSHARE_PATH`, `PEERSHARE_NAME`, `PEERSHARE_SIZE`).
    OnComplete,
}

/// When a change of a setting takes effect on a running node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// At once (`config set` on a running node applies it).
    Live,
    /// When the node starts again.
    AtRestart,
}

impl Key {
    /// Every key, in the order `peershare config` lists them.
    pub const ALL: [Key; 8] = [
        Key::UpLimit,
        Key::DownLimit,
        Key::TransferUpLimit,
        Key::TransferDownLimit,
        Key::PeerUpLimit,
        Key::PeerDownLimit,
        Key::DownloadDir,
        Key::OnComplete,
    ];

    /// The key as the file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Key::UpLimit => "up_limit",
            Key::DownLimit => "down_limit",
            Key::TransferUpLimit => "transfer_up_limit",
            Key::TransferDownLimit => "transfer_down_limit",
            Key::PeerUpLimit => "peer_up_limit",
            Key::PeerDownLimit => "peer_down_limit",
            Key::DownloadDir => "download_dir",
            Key::OnComplete => "on_complete",
        }
    }

    /// The key named `name`; `-` and `_` are alike (`up-limit` is `up_limit`, as the flag
    /// `--up-limit` spells it).
    pub fn parse(name: &str) -> Option<Key> {
        let n = name.trim().replace('-', "_");
        Key::ALL.into_iter().find(|k| k.name() == n)
    }

    /// Every key's name, for error messages.
    pub fn names() -> String {
        let names: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
        names.join(", ")
    }

    /// The `peershare run` flag that gives this setting, if there is one.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Key::UpLimit => Some("--up-limit"),
            Key::DownLimit => Some("--down-limit"),
            Key::TransferUpLimit => Some("--transfer-up-limit"),
            Key::TransferDownLimit => Some("--transfer-down-limit"),
            Key::PeerUpLimit => Some("--peer-up-limit"),
            Key::PeerDownLimit => Some("--peer-down-limit"),
            Key::DownloadDir => Some("--download-dir"),
            Key::OnComplete => None,
        }
    }

    /// When a change takes effect on a running node.
    pub fn applies(self) -> Applies {
        match self {
            Key::DownloadDir => Applies::AtRestart,
            _ => Applies::Live,
        }
    }

    /// The place of a limit key in [`LimitChanges`] (the order of `Limits::FIELDS`).
    pub fn limit_index(self) -> Option<usize> {
        match self {
            Key::UpLimit => Some(0),
            Key::DownLimit => Some(1),
            Key::TransferUpLimit => Some(2),
            Key::TransferDownLimit => Some(3),
            Key::PeerUpLimit => Some(4),
            Key::PeerDownLimit => Some(5),
            Key::DownloadDir | Key::OnComplete => None,
        }
    }

    /// The limit key at place `i` of [`LimitChanges`].
    pub fn of_limit(i: usize) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.limit_index() == Some(i))
    }

    /// Checks a value for this key with the parsers the flags use (`limits::parse_rate`
    /// for rates). The text is what the file holds, trimmed.
    pub fn check(self, text: &str) -> Result<Value, String> {
        if text.is_empty() {
            return Err(format!(
                "`{}` has no value (to go back to the default, remove it: `peershare config unset {}`)",
                self.name(),
                self.name()
            ));
        }
        if text.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "the value of `{}` must be one line without NUL bytes",
                self.name()
            ));
        }
        match self {
            Key::DownloadDir => {
                let p = PathBuf::from(text);
                if !p.is_absolute() {
                    return Err(format!(
                        "download_dir must be an absolute path, not `{text}`"
                    ));
                }
                Ok(Value::Path(crate::paths::absolute(&p)))
            }
            Key::OnComplete => Ok(Value::Command(text.to_string())),
            _ => parse_rate(text)
                .map(Value::Rate)
                .map_err(|e| format!("{}: {e}", self.name())),
        }
    }
}

/// A checked value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Bytes per second (0: unlimited).
    Rate(u64),
    /// An absolute, clean path.
    Path(PathBuf),
    /// A shell command.
    Command(String),
}

impl Value {
    /// For people: `5.0 MB/s (5000000 bytes/s)`, the path, the command.
    pub fn describe(&self) -> String {
        match self {
            Value::Rate(r) => describe_rate(*r),
            Value::Path(p) => p.display().to_string(),
            Value::Command(c) => c.clone(),
        }
    }
}

/// A rate as the file spells it, exactly: `5MB/s`, `500KB/s`, `1234B/s`.
pub fn rate_text(rate: u64) -> String {
    match rate {
        r if r >= 1_000_000 && r % 1_000_000 == 0 => format!("{}MB/s", r / 1_000_000),
        r if r >= 1000 && r % 1000 == 0 => format!("{}KB/s", r / 1000),
        r => format!("{r}B/s"),
    }
}

/// Where a value in force comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A flag of `peershare run`.
    CommandLine,
    /// The config file.
    ConfigFile,
    /// Changed on the running node (`peershare limit`) and not in the file.
    SetLive,
    /// Built in.
    Default,
}

impl Source {
    /// As `peershare config` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Source::CommandLine => "command line",
            Source::ConfigFile => "config file",
            Source::SetLive => "set live",
            Source::Default => "default",
        }
    }
}

/// Settings given in one place (the command line, or the config file): `None` where that
/// place says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bandwidth limits, in the order of `Limits::FIELDS`.
    pub limits: LimitChanges,
    /// The default download folder.
    pub download_dir: Option<PathBuf>,
    /// The completion hook.
    pub on_complete: Option<String>,
}

impl Settings {
    /// The value this place gives `key`, if any.
    pub fn get(&self, key: Key) -> Option<Value> {
        match key {
            Key::DownloadDir => self.download_dir.clone().map(Value::Path),
            Key::OnComplete => self.on_complete.clone().map(Value::Command),
            k => k
                .limit_index()
                .and_then(|i| self.limits[i])
                .map(Value::Rate),
        }
    }

    /// Sets (or with `None` clears) `key`; a value of the wrong kind is ignored (values
    /// come from [`Key::check`], which gives each key its kind).
    pub fn set(&mut self, key: Key, value: Option<Value>) {
        match (key, value) {
            (Key::DownloadDir, Some(Value::Path(p))) => self.download_dir = Some(p),
            (Key::DownloadDir, None) => self.download_dir = None,
            (Key::OnComplete, Some(Value::Command(c))) => self.on_complete = Some(c),
            (Key::OnComplete, None) => self.on_complete = None,
            (k, v) => {
                if let Some(i) = k.limit_index() {
                    match v {
                        Some(Value::Rate(r)) => self.limits[i] = Some(r),
                        None => self.limits[i] = None,
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_as_the_flags_are() {
        for k in Key::ALL {
            assert_eq!(Key::parse(k.name()), Some(k));
            if let Some(f) = k.flag() {
                assert_eq!(Key::parse(f.trim_start_matches('-')), Some(k), "{f}");
            }
        }
        assert_eq!(Key::parse("up_limt"), None);
        for i in 0..6 {
            assert_eq!(Key::of_limit(i).and_then(Key::limit_index), Some(i));
        }
    }

    #[test]
    fn values_are_checked_with_the_flags_parsers() {
        assert_eq!(Key::UpLimit.check("5mb"), Ok(Value::Rate(5_000_000)));
        assert_eq!(
            Key::PeerDownLimit.check("40mbit"),
            Ok(Value::Rate(5_000_000))
        );
        assert_eq!(Key::DownLimit.check("unlimited"), Ok(Value::Rate(0)));
        let e = Key::UpLimit.check("fast").unwrap_err();
        assert!(e.starts_with("up_limit: `fast` is not a rate"), "{e}");
        assert!(Key::UpLimit
            .check("")
            .unwrap_err()
            .contains("config unset up_limit"));
        assert_eq!(
            Key::DownloadDir.check("/srv/./in/../dl"),
            Ok(Value::Path(PathBuf::from("/srv/dl")))
        );
        assert!(Key::DownloadDir
            .check("dl")
            .unwrap_err()
            .contains("absolute"));
        assert!(Key::OnComplete.check("a\nb").is_err());
        for r in [5_000_000, 1500, 1234, 7, 2_000_000_000] {
            assert_eq!(Key::UpLimit.check(&rate_text(r)), Ok(Value::Rate(r)));
        }
        let mut s = Settings::default();
        s.set(Key::TransferUpLimit, Some(Value::Rate(7)));
        assert_eq!(s.get(Key::TransferUpLimit), Some(Value::Rate(7)));
        s.set(Key::TransferUpLimit, None);
        assert_eq!(s, Settings::default());
    }
}
