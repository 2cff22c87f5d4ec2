//! Reading the hex test vectors of `protocol-spec/vectors/`, shared by the vector tests.
//!
//! Formats: `NAME HEX` (valid) and `NAME ERROR HEX` (invalid), one vector per line, `#`
//! comments, lower-case hex. A missing or empty file, a duplicate name or an unknown error
//! kind is a failure: a test that cannot fail checks nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Path of a file under `protocol-spec/`.
pub fn spec_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("protocol-spec")
        .join(rel)
}

/// The text of a file under `protocol-spec/`; panics with its path if unreadable.
pub fn read_spec_file(rel: &str) -> String {
    let path = spec_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Lower-case hex to bytes, reporting the file and line on error.
pub fn parse_hex(file: &str, line_no: usize, hex: &str) -> Vec<u8> {
    assert!(
        !hex.bytes().any(|b| b.is_ascii_uppercase()),
        "{file}:{line_no}: hex must be lower-case"
    );
    hex::decode(hex).unwrap_or_else(|e| panic!("{file}:{line_no}: bad hex: {e}"))
}

/// The non-comment, non-blank lines of a vector file, with their 1-based line numbers.
pub fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// One valid vector.
pub struct Valid {
    /// Its name (message name, then `-` and a description).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One invalid vector.
pub struct Invalid {
    /// Its name.
    pub name: String,
    /// The `DecodeError` kind a decoder must report.
    pub error: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Loads a `NAME HEX` file.
pub fn load_valid(file: &str) -> Vec<Valid> {
    let text = read_spec_file(file);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, line) in data_lines(&text) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 2, "{file}:{n}: expected `NAME HEX`");
        assert!(
            seen.insert(fields[0].to_owned()),
            "{file}:{n}: duplicate name {}",
            fields[0]
        );
        out.push(Valid {
            name: fields[0].to_owned(),
            bytes: parse_hex(file, n, fields[1]),
        });
    }
    assert!(!out.is_empty(), "{file} holds no vectors");
    out
}

/// Loads a `NAME ERROR HEX` file whose ERROR must be one of `kinds`.
pub fn load_invalid(file: &str, kinds: &[&str]) -> Vec<Invalid> {
    let text = read_spec_file(file);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, line) in data_lines(&text) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{file}:{n}: expected `NAME ERROR HEX`");
        assert!(
            seen.insert(fields[0].to_owned()),
            "{file}:{n}: duplicate name {}",
            fields[0]
        );
        assert!(
            kinds.contains(&fields[1]),
            "{file}:{n}: {} is not an error kind this decoder reports",
            fields[1]
        );
        out.push(Invalid {
            name: fields[0].to_owned(),
            error: fields[1].to_owned(),
            bytes: parse_hex(file, n, fields[2]),
        });
    }
    assert!(!out.is_empty(), "{file} holds no vectors");
    out
}

/// The message name a vector name starts with: the part before the first `-`.
pub fn prefix(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

/// The hex bytes of the code block that follows line `i` of a spec chapter (an "Example
/// (vector `name`)" line): the first column of every line up to the closing fence. Returns
/// the hex and the index of the closing fence.
pub fn example_hex(doc: &str, lines: &[&str], mut i: usize, name: &str) -> (String, usize) {
    i += 1;
    while i < lines.len() && !lines[i].trim_start().starts_with("```") {
        i += 1;
    }
    assert!(
        i < lines.len(),
        "{doc}: no code block after vector `{name}`"
    );
    i += 1;
    let mut hex = String::new();
    while i < lines.len() && !lines[i].trim_start().starts_with("```") {
        let first = lines[i].split_whitespace().next().unwrap_or("");
        assert!(
            !first.is_empty() && first.bytes().all(|b| b.is_ascii_hexdigit()),
            "{doc}:{}: example line must start with hex bytes",
            i + 1
        );
        hex.push_str(first);
        i += 1;
    }
    (hex, i)
}

/// Every "(vector `name`)" example of a spec chapter, in order: (name, the hex of its block).
pub fn examples(doc: &str) -> Vec<(String, String)> {
    let text = read_spec_file(doc);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match lines[i].split("(vector `").nth(1) {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or("").to_owned();
                let (hex, end) = example_hex(doc, &lines, i, &name);
                out.push((name, hex));
                i = end + 1;
            }
            None => i += 1,
        }
    }
    out
}
