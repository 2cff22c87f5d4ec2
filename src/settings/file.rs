//! The config file's text: a total parser and the edits `peershare config set` and `unset`
//! make.
//!
//! # Format
//! ```text
//! # PeerShare settings (`peershare config` shows them with where each comes from)
//! up_limit = 5MB/s
//! download_dir = /home/ana/Music/incoming
//! on_complete = notify-send "downloaded" "$PEERSHARE_NAME"
//! ```
//! One `key = value` a line; blank lines and lines starting with `#` or `;` are comments.
//! The value is the rest of the line after the first `=`, trimmed, taken as it is (no
//! quoting, no inline comments: a shell command keeps its `#`, `=` and quotes). Keys may
//! be written with `-` or `_`. A key may appear once.
//!
//! Why this and not JSON: people edit this file by hand, as they edit `.gitconfig`. A line
//! format needs no quoting or escaping (a hook command in JSON would need its quotes and
//! backslashes escaped), allows comments, and lets every mistake be reported with its line
//! number and key. Values are checked with the same parsers as the flags ([`Key::check`]),
//! so `5mb` means the same in both places.
//!
//! The parser is total: any text gives a [`ConfigFile`] or a [`ConfigError`] naming the
//! line, never a panic; a mistake is never skipped silently (a node refuses to start with
//! it). Edits keep every other line, comments included, where it was.

use std::fmt;

use super::{Key, Settings};

/// The largest config file read (a few hundred bytes is usual; a bigger file is a mistake).
pub const MAX_LEN: usize = 64 * 1024;

/// A parsed config file: its lines, each a setting or kept as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Line {
    /// `key = value` (the value checked, kept as written).
    Setting { key: Key, value: String },
    /// A comment or a blank line, kept as it is.
    Other(String),
}

/// A mistake in a config file: which line, which key if known, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The line, from 1 (0: the file as a whole).
    pub line: usize,
    /// The key on that line, if it could be read.
    pub key: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.message),
            n => write!(f, "line {n}: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigFile {
    /// Parses the text of a config file (see the module docs).
    pub fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        if text.len() > MAX_LEN {
            return Err(ConfigError {
                line: 0,
                key: None,
                message: format!(
                    "the file is {} bytes long; a config file holds at most {MAX_LEN}",
                    text.len()
                ),
            });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut file = ConfigFile::default();
        let mut seen: Vec<(Key, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                file.lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let err = |key: Option<&str>, message: String| ConfigError {
                line: n,
                key: key.map(str::to_string),
                message,
            };
            let Some((k, v)) = t.split_once('=') else {
                return Err(err(
                    None,
                    format!("`{t}` is not `key = value` (a comment starts with #)"),
                ));
            };
            let (k, v) = (k.trim(), v.trim());
            let key = Key::parse(k).ok_or_else(|| {
                err(
                    Some(k),
                    format!("unknown key `{k}` (the keys are {})", Key::names()),
                )
            })?;
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == key) {
                return Err(err(
                    Some(k),
                    format!("`{}` is set twice (also on line {first})", key.name()),
                ));
            }
            key.check(v).map_err(|e| err(Some(k), e))?;
            seen.push((key, n));
            file.lines.push(Line::Setting {
                key,
                value: v.to_string(),
            });
        }
        Ok(file)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Setting { key, value } => {
                    out.push_str(key.name());
                    out.push_str(" = ");
                    out.push_str(value);
                }
                Line::Other(t) => out.push_str(t),
            }
            out.push('\n');
        }
        out
    }

    /// The value of `key` as written, if the file sets it.
    pub fn get(&self, key: Key) -> Option<&str> {
        self.lines.iter().find_map(|l| match l {
            Line::Setting { key: k, value } if *k == key => Some(value.as_str()),
            _ => None,
        })
    }

    /// Sets `key` to `value` (checked first): in place if the file sets it already, else
    /// appended (after a header comment in a new file).
    pub fn set(&mut self, key: Key, value: &str) -> Result<(), String> {
        let value = value.trim();
        key.check(value)?;
        for l in &mut self.lines {
            if let Line::Setting { key: k, value: v } = l {
                if *k == key {
                    *v = value.to_string();
                    return Ok(());
                }
            }
        }
        if self.lines.is_empty() {
            self.lines.push(Line::Other(
                "# PeerShare settings: `key = value`, one a line (`peershare config` lists \
                 them; `peershare config set KEY VALUE` edits this file)"
                    .into(),
            ));
        }
        self.lines.push(Line::Setting {
            key,
            value: value.to_string(),
        });
        Ok(())
    }

    /// Removes `key`; returns whether the file set it.
    pub fn unset(&mut self, key: Key) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Setting { key: k, .. } if *k == key));
        self.lines.len() != before
    }

    /// What the file sets, typed.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        for l in &self.lines {
            if let Line::Setting { key, value } = l {
                // Checked when parsed or set: a value that fails here cannot exist.
                s.set(*key, key.check(value).ok());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Value;
    use std::path::PathBuf;

    const SAMPLE: &str = "# mine\n\nup_limit = 5MB/s\n; old style comment\ndownload-dir=/srv/in\non_complete = echo \"$PEERSHARE_NAME\" # = kept\n";

    #[test]
    fn a_file_reads_and_edits_keep_the_rest() {
        let f = ConfigFile::parse(SAMPLE).unwrap();
        let s = f.settings();
        assert_eq!(s.limits[0], Some(5_000_000));
        assert_eq!(s.download_dir, Some(PathBuf::from("/srv/in")));
        assert_eq!(
            s.on_complete.as_deref(),
            Some("echo \"$PEERSHARE_NAME\" # = kept")
        );
        let mut g = f.clone();
        g.set(Key::UpLimit, " 1MB ").unwrap();
        g.set(Key::PeerUpLimit, "40mbit").unwrap();
        assert!(g.unset(Key::DownloadDir));
        assert!(!g.unset(Key::DownloadDir));
        assert_eq!(
            g.to_text(),
            "# mine\n\nup_limit = 1MB\n; old style comment\non_complete = echo \"$PEERSHARE_NAME\" # = kept\npeer_up_limit = 40mbit\n"
        );
        assert_eq!(ConfigFile::parse(&g.to_text()).unwrap(), g);
        assert!(g.set(Key::UpLimit, "fast").is_err());
        assert_eq!(
            g.get(Key::UpLimit),
            Some("1MB"),
            "a refused value changes nothing"
        );
        let mut new = ConfigFile::default();
        new.set(Key::DownloadDir, "/x").unwrap();
        assert!(new.to_text().starts_with("# PeerShare settings"));
        assert_eq!(
            new.settings().get(Key::DownloadDir),
            Some(Value::Path("/x".into()))
        );
    }

    #[test]
    fn mistakes_name_their_line_and_key() {
        for (text, line, key, says) in [
            (
                "up_limt = 5MB\n",
                1,
                Some("up_limt"),
                "unknown key `up_limt`",
            ),
            (
                "# c\nup_limit = fast\n",
                2,
                Some("up_limit"),
                "`fast` is not a rate",
            ),
            ("up_limit 5MB\n", 1, None, "not `key = value`"),
            (
                "up_limit = 1\n\nup-limit = 2\n",
                3,
                Some("up-limit"),
                "set twice (also on line 1)",
            ),
            ("download_dir =\n", 1, Some("download_dir"), "has no value"),
            (
                "download_dir = rel/dir\n",
                1,
                Some("download_dir"),
                "absolute",
            ),
        ] {
            let e = ConfigFile::parse(text).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (line, key), "{text:?}: {e}");
            assert!(e.to_string().contains(says), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
        assert!(ConfigFile::parse(&"#".repeat(MAX_LEN + 1)).is_err());
        assert_eq!(
            ConfigFile::parse("\u{feff}up_limit = 1\r\n")
                .unwrap()
                .get(Key::UpLimit),
            Some("1")
        );
    }

    proptest::proptest! {
        /// Total: any text parses or is refused with a line number, never a panic; what
        /// parses writes back to text that parses to the same settings.
        #[test]
        fn any_text_parses_or_is_refused(text in "(\\PC|[=#;\\n\\r \\t])*") {
            if let Ok(f) = ConfigFile::parse(&text) {
                let again = ConfigFile::parse(&f.to_text()).expect("written text parses");
                proptest::prop_assert_eq!(again.settings(), f.settings());
            }
        }
    }
}
