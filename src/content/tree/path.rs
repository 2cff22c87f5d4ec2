//! Paths inside a shared folder (spec: `protocol-spec/content.md`, section 10.2): relative,
//! `/`-separated, and safe to create under any download folder on any common system.
//!
//! A path comes from the network (a tree manifest) as often as from a disk, so every rule is
//! checked by [`TreePath::new`] and nothing else makes one. The rules refuse what could
//! escape the download folder (`..`, absolute paths, backslashes read as separators on
//! Windows), what cannot be a file name (NUL, control characters, empty components), and what
//! is dangerous on Windows (device names such as `CON` or `aux.wav`, which open a device
//! instead of a file; trailing dots and spaces, which Windows strips, so that `kick.wav.`
//! would overwrite `kick.wav`). Names that are merely unusual (`Kick: 808.wav`) are allowed.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Longest path, in bytes of UTF-8.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest component (a file or folder name), in bytes: what most file systems allow.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Most components in a path (folders nested this deep at most, the file included).
pub const MAX_DEPTH: usize = 64;

/// A valid path inside a shared folder (see the module docs for the rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreePath(String);

/// Why a string is not a valid [`TreePath`]. `reason` reads as the end of a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    /// What is wrong, for a person and for [`crate::proto::codec::DecodeError`].
    pub reason: &'static str,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for PathError {}

fn err(reason: &'static str) -> PathError {
    PathError { reason }
}

/// Windows device names: `CON` or `con.wav` opens the console there, not a file.
const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

impl TreePath {
    /// Checks `s` against every rule.
    pub fn new(s: &str) -> Result<TreePath, PathError> {
        if s.is_empty() {
            return Err(err("the path is empty"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(err("the path is longer than 1024 bytes"));
        }
        if s.starts_with('/') {
            return Err(err("the path is absolute"));
        }
        let mut depth = 0;
        for c in s.split('/') {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(err("the path is nested more than 64 levels deep"));
            }
            check_component(c)?;
        }
        Ok(TreePath(s.to_owned()))
    }

    /// The path as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> + Clone {
        self.0.split('/')
    }

    /// The last component (the file or folder's own name).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_component(c: &str) -> Result<(), PathError> {
    if c.is_empty() {
        return Err(err(
            "the path has an empty component (`//`, or a trailing `/`)",
        ));
    }
    if c == "." || c == ".." {
        return Err(err("the path has a `.` or `..` component"));
    }
    if c.len() > MAX_COMPONENT_LEN {
        return Err(err("a name in the path is longer than 255 bytes"));
    }
    if c.contains('\\') {
        return Err(err("the path has a backslash (a separator on Windows)"));
    }
    if c.chars().any(|ch| ch.is_control()) {
        return Err(err("the path has a NUL or another control character"));
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Err(err(
            "a name ends with a dot or a space (Windows drops them: two names would collide)",
        ));
    }
    let stem = c.split('.').next().unwrap_or(c).trim_end();
    if RESERVED.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        return Err(err(
            "a name is reserved on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)",
        ));
    }
    Ok(())
}

/// The form two names share when a case-insensitive or normalization-insensitive file system
/// (macOS, Windows) would take them for the same name: Unicode NFC, then lower case.
pub fn folded(component: &str) -> String {
    component.nfc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_accepted() {
        for p in [
            "kick.wav",
            "Kicks/808 kick.wav",
            "Drums/Snares/snare: tight.wav",
            "a/b/c/d.txt",
            ".hidden/file",
            "Ünïcødé/ファイル.wav",
            "con-tent.wav",
            "console.wav",
        ] {
            assert!(TreePath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn escaping_and_unwritable_paths_are_refused() {
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        let long = "x".repeat(MAX_COMPONENT_LEN + 1);
        let longest = vec!["y".repeat(200); 6].join("/");
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "a\0b",
            "a\nb",
            "bell\u{7}",
            "CON",
            "aux.wav",
            "Kicks/Com1.wav",
            "LPT9.tar.gz",
            "nul ",
            "kick.wav.",
            "trailing ",
            &deep,
            &long,
            &longest,
        ] {
            assert!(TreePath::new(p).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn folding_matches_case_and_normalization() {
        assert_eq!(folded("Kick.WAV"), folded("kick.wav"));
        // "é" precomposed and as "e" + combining acute accent.
        assert_eq!(folded("caf\u{e9}"), folded("cafe\u{301}"));
        assert_ne!(folded("kick1"), folded("kick2"));
    }
}
