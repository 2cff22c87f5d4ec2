//! [`Selection`]: the part of a folder a user asks for (`peershare get ID --only GLOB`, the
//! API's `only`), as path globs matched against the tree's entries.
//!
//! A glob is a relative path, `/` between names (spec `api.md`, section 5.5):
//! - `*` is any run of characters within one name, `?` any one character, `[abc]`, `[a-z]`
//!   and `[!abc]` one character of (or not of) a set, `\` takes the next character as is;
//! - `**` as a whole name is any number of names, none included (`**/*.wav`: every `.wav`);
//! - a glob that matches a folder selects everything in it (`Kicks` = `Kicks/**`).
//!
//! Matching is case-sensitive, on the names as the manifest spells them. It is dynamic
//! programming over (glob name, path name) and (glob character, name character), so no glob
//! costs more than the product of the lengths, whatever its stars.

use std::fmt;

use super::{EntryKind, TreeManifest};
use crate::bitset::BitSet;

/// Most globs in one selection.
pub const MAX_GLOBS: usize = 64;
/// Longest glob, in bytes.
pub const MAX_GLOB_LEN: usize = 1024;

/// Why a glob was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobError {
    /// The glob as given.
    pub glob: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad glob {:?}: {}", self.glob, self.reason)
    }
}

impl std::error::Error for GlobError {}

/// One character of a glob name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,
    Star,
    /// A set: ranges (single characters are ranges of one), and whether it is negated.
    Set(Vec<(char, char)>, bool),
}

/// One name of a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// `**`.
    Deep,
    Name(Vec<Tok>),
}

/// One parsed glob.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob {
    text: String,
    parts: Vec<Part>,
}

/// The globs of one request (module docs). An empty selection is refused at parsing: "all
/// of it" is no selection at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    globs: Vec<Glob>,
}

impl Selection {
    /// Parses `globs` (at least one, at most [`MAX_GLOBS`]).
    pub fn parse<S: AsRef<str>>(globs: &[S]) -> Result<Selection, GlobError> {
        if globs.is_empty() {
            return Err(err("", "no glob given"));
        }
        if globs.len() > MAX_GLOBS {
            return Err(err("", "more than 64 globs"));
        }
        let globs = globs
            .iter()
            .map(|g| parse_glob(g.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection { globs })
    }

    /// The globs as given, in order (for records and replies).
    pub fn globs(&self) -> Vec<String> {
        self.globs.iter().map(|g| g.text.clone()).collect()
    }

    /// Whether the entry at `path` is selected: a glob matches it or one of its folders.
    pub fn selects(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').collect();
        self.globs.iter().any(|g| {
            (1..=names.len()).any(|n| names.get(..n).is_some_and(|pre| match_names(&g.parts, pre)))
        })
    }

    /// For each entry of `tree`, whether it is selected.
    pub fn entries(&self, tree: &TreeManifest) -> Vec<bool> {
        tree.entries()
            .iter()
            .map(|e| self.selects(e.path.as_str()))
            .collect()
    }

    /// The tree's chunks of the selected files.
    pub fn chunks(&self, tree: &TreeManifest) -> BitSet {
        chunks_of(tree, &self.entries(tree))
    }
}

/// The chunks of the entries marked in `wanted` (one flag per entry).
pub fn chunks_of(tree: &TreeManifest, wanted: &[bool]) -> BitSet {
    let mut bits = BitSet::new(tree.chunk_count() as usize);
    for (k, e) in tree.entries().iter().enumerate() {
        if wanted.get(k).copied().unwrap_or(false) && matches!(e.kind, EntryKind::File(_)) {
            for c in tree.file_chunks(k) {
                bits.insert(c as usize);
            }
        }
    }
    bits
}

fn err(glob: &str, reason: &'static str) -> GlobError {
    GlobError {
        glob: glob.chars().take(100).collect(),
        reason,
    }
}

fn parse_glob(text: &str) -> Result<Glob, GlobError> {
    if text.is_empty() {
        return Err(err(text, "it is empty"));
    }
    if text.len() > MAX_GLOB_LEN {
        return Err(err(text, "it is longer than 1024 bytes"));
    }
    if text.starts_with('/') {
        return Err(err(text, "it is absolute (paths in a folder are relative)"));
    }
    if text.chars().any(char::is_control) {
        return Err(err(text, "it has a control character"));
    }
    let mut parts = Vec::new();
    for name in text.split('/') {
        match name {
            "" => return Err(err(text, "it has an empty name (`//` or a trailing `/`)")),
            "." | ".." => return Err(err(text, "it has a `.` or `..` name")),
            "**" => {
                // `**/**` is `**`.
                if parts.last() != Some(&Part::Deep) {
                    parts.push(Part::Deep);
                }
            }
            _ => parts.push(Part::Name(parse_name(text, name)?)),
        }
    }
    Ok(Glob {
        text: text.to_owned(),
        parts,
    })
}

fn parse_name(glob: &str, name: &str) -> Result<Vec<Tok>, GlobError> {
    let mut toks = Vec::new();
    let mut it = name.chars();
    while let Some(ch) = it.next() {
        let t = match ch {
            '*' => {
                if toks.last() == Some(&Tok::Star) {
                    continue;
                }
                Tok::Star
            }
            '?' => Tok::Any,
            '\\' => Tok::Char(it.next().ok_or_else(|| err(glob, "it ends with `\\`"))?),
            '[' => parse_set(glob, &mut it)?,
            c => Tok::Char(c),
        };
        toks.push(t);
    }
    Ok(toks)
}

/// A set after its `[`: `!` first negates, `a-z` is a range, `]` first is a member.
fn parse_set(glob: &str, it: &mut std::str::Chars<'_>) -> Result<Tok, GlobError> {
    let mut ranges = Vec::new();
    let mut negated = false;
    let mut first = true;
    loop {
        let c = it.next().ok_or_else(|| err(glob, "a `[` is not closed"))?;
        match c {
            '!' if first && !negated => {
                negated = true;
                continue;
            }
            ']' if !first => break,
            _ => {}
        }
        first = false;
        let lo = if c == '\\' {
            it.next().ok_or_else(|| err(glob, "it ends with `\\`"))?
        } else {
            c
        };
        // A range `lo-hi`, unless the `-` closes the set.
        let mut look = it.clone();
        if look.next() == Some('-') {
            match look.next() {
                Some(']') | None => ranges.push((lo, lo)),
                Some(hi) => {
                    if hi < lo {
                        return Err(err(glob, "a range in `[...]` runs backwards"));
                    }
                    *it = look;
                    ranges.push((lo, hi));
                }
            }
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok(Tok::Set(ranges, negated))
}

/// Whether the glob's names match the path's names exactly.
fn match_names(parts: &[Part], names: &[&str]) -> bool {
    // ok[j]: parts[..i] match names[..j], row by row over i.
    let mut ok = vec![false; names.len() + 1];
    ok[0] = true;
    for part in parts {
        let mut next = vec![false; names.len() + 1];
        match part {
            Part::Deep => {
                let mut any = false;
                for j in 0..=names.len() {
                    any |= ok[j];
                    next[j] = any;
                }
            }
            Part::Name(toks) => {
                for j in 1..=names.len() {
                    next[j] = ok[j - 1] && names.get(j - 1).is_some_and(|n| match_name(toks, n));
                }
            }
        }
        ok = next;
    }
    ok[names.len()]
}

/// Whether one glob name matches one path name.
fn match_name(toks: &[Tok], name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    let mut ok = vec![false; chars.len() + 1];
    ok[0] = true;
    for t in toks {
        let mut next = vec![false; chars.len() + 1];
        if *t == Tok::Star {
            let mut any = false;
            for j in 0..=chars.len() {
                any |= ok[j];
                next[j] = any;
            }
        } else {
            for j in 1..=chars.len() {
                next[j] = ok[j - 1] && chars.get(j - 1).is_some_and(|&c| tok_matches(t, c));
            }
        }
        ok = next;
    }
    ok[chars.len()]
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Char(x) => *x == c,
        Tok::Any | Tok::Star => true,
        Tok::Set(ranges, negated) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(g: &[&str]) -> Selection {
        Selection::parse(g).unwrap()
    }

    #[test]
    fn globs_select_files_and_whole_folders() {
        let s = sel(&["Kicks/**"]);
        assert!(s.selects("Kicks/kick 1.wav"));
        assert!(s.selects("Kicks/Deep/k.wav"));
        assert!(!s.selects("Snares/s.wav"));
        assert!(!s.selects("Kicks2/k.wav"));
        // A folder's name alone selects what is in it.
        let s = sel(&["Kicks"]);
        assert!(s.selects("Kicks/Deep/k.wav"));
        assert!(!s.selects("KicksX/a"));
        let s = sel(&["**/*.wav"]);
        assert!(s.selects("a.wav"));
        assert!(s.selects("x/y/z.wav"));
        assert!(!s.selects("x/y/z.aif"));
        let s = sel(&["*.wav"]);
        assert!(s.selects("a.wav"));
        assert!(!s.selects("x/a.wav"), "`*` stays within one name");
        let s = sel(&["Loops/1?0 bpm/*", "README"]);
        assert!(s.selects("Loops/120 bpm/a.wav"));
        assert!(!s.selects("Loops/90 bpm/a.wav"));
        assert!(s.selects("README"));
        let s = sel(&["[a-c]*/[!x]?"]);
        assert!(s.selects("beats/yz"));
        assert!(!s.selects("beats/xz"));
        assert!(!s.selects("drums/yz"));
        let s = sel(&[r"odd\*name", "a/**/b"]);
        assert!(s.selects("odd*name"));
        assert!(!s.selects("oddXname"));
        assert!(s.selects("a/b"));
        assert!(s.selects("a/x/y/b/c"));
        assert!(!sel(&["kicks"]).selects("Kicks/a"), "case-sensitive");
    }

    #[test]
    fn bad_globs_are_refused_with_a_reason() {
        for g in [
            "", "/abs", "a//b", "a/", "../x", "a/./b", "[abc", "a\\", "[z-a]", "a\u{0}b",
        ] {
            let e = Selection::parse(&[g]).unwrap_err();
            assert!(!e.reason.is_empty(), "{g:?}");
        }
        assert!(Selection::parse::<&str>(&[]).is_err());
        let many = vec!["a"; MAX_GLOBS + 1];
        assert!(Selection::parse(&many).is_err());
        assert!(Selection::parse(&["x".repeat(MAX_GLOB_LEN + 1)]).is_err());
    }

    #[test]
    fn many_stars_cost_no_more_than_the_lengths() {
        // Backtracking matchers take exponential time on this; the tables do not.
        let g = format!("{}b", "*a".repeat(200));
        let s = sel(&[g.as_str(), "**/**/**/**/**/**/**/**/z"]);
        let name = "a".repeat(1000);
        assert!(!s.selects(&name));
        let deep = vec!["y"; 60].join("/");
        assert!(!s.selects(&deep));
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(g in "[a-z*?/\\[\\]!\\-\\\\]{0,40}", p in "[a-z/]{1,40}") {
            if let Ok(s) = Selection::parse(&[g]) {
                let _ = s.selects(&p);
            }
        }
    }
}
