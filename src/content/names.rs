//! File names that came from the network, made safe to create in the download folder.
//!
//! A name is untrusted input: a hostile peer (or a careless publisher) may send
//! `../../etc/passwd`, `/abs/path`, `a/b`, `..`, names with NUL or terminal control codes,
//! right-to-left overrides that disguise `gpj.exe` as `exe.jpg`, or 10 000 bytes. The rules:
//!
//! - path separators `/` and `\` become `_` (so the name stays one path component, and a
//!   Windows-style `a\b` is not a path on another OS either);
//! - control characters (NUL, C0, DEL, C1) and Unicode bidirectional formatting characters are
//!   removed;
//! - leading and trailing whitespace is trimmed; leading dots are stripped, which rules out
//!   `.` and `..` and also files hidden by a leading dot (a download should be visible);
//! - the result is at most 255 bytes (the Linux file name limit), cut on a character boundary
//!   and keeping a short extension (`.wav` survives truncation);
//! - if nothing usable remains, [`safe_file_name`] fails and the caller uses
//!   [`fallback_name`], `<first 16 hex digits of the content ID>.bin`.
//!
//! Windows-reserved names (`CON`, `NUL`, `COM1`, ...) and characters such as `:` `*` `?` are
//! ordinary file names on Linux and are kept: the node only ever creates files on the machine
//! it runs on. A port to Windows must add those rules here.

use std::fmt;

use crate::id::Id;

/// The longest file name Linux file systems accept, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Extensions up to this many bytes (dot included) are kept when a name is truncated.
const MAX_EXT_BYTES: usize = 16;

/// Why no usable name could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left once separators, control characters, whitespace and leading dots are
    /// removed (e.g. `""`, `"."`, `".."`, `"\0"`).
    NothingUsable,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::NothingUsable => write!(
                f,
                "the name has no usable characters (only dots, spaces or control characters)"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// True for characters that are removed: control codes and the Unicode bidirectional
/// formatting characters that can make a name display differently from what it is.
fn is_removed(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Cleans an untrusted name into a single, visible path component of at most 255 bytes
/// (rules in the module docs). Fails only when nothing usable remains.
pub fn safe_file_name(name: &str) -> Result<String, NameError> {
    let cleaned: String = name
        .chars()
        .filter(|&c| !is_removed(c))
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    // Dots and spaces in any mix at the start (". ." must not become ".").
    let trimmed = cleaned
        .trim_end()
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace());
    let short = truncate_keeping_extension(trimmed, MAX_NAME_BYTES);
    // Truncation may leave trailing whitespace; a trailing dot is harmless on Linux.
    let out = short.trim_end();
    if out.is_empty() {
        return Err(NameError::NothingUsable);
    }
    Ok(out.to_owned())
}

/// The name used when nothing usable remains of the one received: the first 16 hex digits
/// of the content ID, with `.bin`.
pub fn fallback_name(id: &Id) -> String {
    let hex = id.to_hex();
    format!("{}.bin", hex.get(..16).unwrap_or(&hex))
}

/// [`safe_file_name`], or [`fallback_name`] when it fails.
pub fn safe_file_name_or_fallback(name: &str, id: &Id) -> String {
    safe_file_name(name).unwrap_or_else(|_| fallback_name(id))
}

/// The `n`-th alternative to a name that is taken: `song.wav` gives `song (1).wav`,
/// `song (2).wav`, ...; `n = 0` is the name itself. The result stays within 255 bytes. `name`
/// must already be safe (from [`safe_file_name`]); the result then is too.
pub fn numbered_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let suffix = format!(" ({n})");
    let room = MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len());
    format!("{}{suffix}{ext}", prefix_within(stem, room))
}

/// Splits `name` into stem and extension (with its dot) when the extension is short enough
/// to be one; otherwise the extension is empty.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXT_BYTES => name.split_at(i),
        _ => (name, ""),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix_within(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Cuts `s` to at most `max` bytes, keeping a short extension whole.
fn truncate_keeping_extension(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let (stem, ext) = split_extension(s);
    let stem = prefix_within(stem, max.saturating_sub(ext.len()));
    format!("{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn is_one_normal_component(s: &str) -> bool {
        let mut c = Path::new(s).components();
        matches!(c.next(), Some(Component::Normal(_))) && c.next().is_none()
    }

    #[test]
    fn hostile_names() {
        let cases = [
            ("song.wav", "song.wav"),
            ("../../etc/passwd", "_.._etc_passwd"),
            ("/abs", "_abs"),
            ("a/b", "a_b"),
            ("a\\b", "a_b"),
            ("\0x", "x"),
            (".hidden", "hidden"),
            ("...x", "x"),
            ("  spaced  ", "spaced"),
            ("evil\u{202e}gpj.exe", "evilgpj.exe"),
            ("tab\there", "tabhere"),
            ("CON", "CON"),
            ("a:b*c?", "a:b*c?"),
            ("日本語.flac", "日本語.flac"),
        ];
        for (input, want) in cases {
            assert_eq!(safe_file_name(input).as_deref(), Ok(want), "{input:?}");
        }
        for input in ["", ".", "..", "...", "\0", " ", "\u{202e}", ". .", "\n\r"] {
            assert_eq!(
                safe_file_name(input),
                Err(NameError::NothingUsable),
                "{input:?}"
            );
        }
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.wav", "é".repeat(300));
        let s = safe_file_name(&long).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES);
        assert!(s.ends_with(".wav"));
        assert!(
            s.len() >= MAX_NAME_BYTES - 1,
            "cut on a char boundary, not short"
        );
        // A very long "extension" is not one: plain truncation.
        let weird = format!("a.{}", "b".repeat(400));
        assert_eq!(safe_file_name(&weird).unwrap().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn fallback_and_numbering() {
        let id = Id::hash_of(b"x");
        let f = fallback_name(&id);
        assert_eq!(f.len(), 20);
        assert!(f.ends_with(".bin") && id.to_hex().starts_with(&f[..16]));
        assert_eq!(safe_file_name_or_fallback("..", &id), f);
        assert_eq!(numbered_name("song.wav", 0), "song.wav");
        assert_eq!(numbered_name("song.wav", 1), "song (1).wav");
        assert_eq!(numbered_name("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered_name("README", 3), "README (3)");
        let long = safe_file_name(&format!("{}.wav", "x".repeat(300))).unwrap();
        let n = numbered_name(&long, 12345);
        assert!(n.len() <= MAX_NAME_BYTES && n.ends_with(" (12345).wav"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn always_one_safe_component(name in any::<String>(), n in 0u32..100_000) {
            if let Ok(r) = safe_file_name(&name) {
                prop_assert!(is_one_normal_component(&r), "{:?} -> {:?}", name, r);
                prop_assert!(r != "." && r != "..");
                prop_assert!(!r.starts_with('.'));
                prop_assert!(r.len() <= MAX_NAME_BYTES);
                prop_assert!(!r.contains('\0') && !r.contains('/'));
                let numbered = numbered_name(&r, n);
                prop_assert!(is_one_normal_component(&numbered), "{:?}", numbered);
                prop_assert!(numbered.len() <= MAX_NAME_BYTES);
            }
        }

        #[test]
        fn separators_and_dots_soup(name in "[./\\\\\\x00 a\u{e9}]{0,300}") {
            let r = safe_file_name_or_fallback(&name, &Id::ZERO);
            prop_assert!(is_one_normal_component(&r), "{:?} -> {:?}", name, r);
            prop_assert!(r.len() <= MAX_NAME_BYTES);
        }
    }
}
