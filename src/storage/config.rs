//! The config file on disk (`<data dir>/peershare.conf`; format in `settings::file`):
//! read at start, edited by `peershare config set` (on a worker for a running node, by the
//! command line itself for a stopped one), always written atomically (temp file, fsync,
//! rename) so a crash leaves the old file or the new one, never half of one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::settings::file::MAX_LEN;
use crate::settings::{ConfigFile, Key, CONFIG_FILE};

/// Where the config file of `data_dir` is.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONFIG_FILE)
}

/// Reads and parses the config file; a missing file is an empty one. Errors name the file
/// and, for a mistake in it, the line and the key: `config file /d/peershare.conf, line 3:
/// unknown key ...`.
pub fn read(data_dir: &Path) -> Result<ConfigFile, String> {
    let p = path(data_dir);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(format!("cannot read config file {}: {e}", p.display())),
    };
    if bytes.len() > MAX_LEN {
        return Err(format!(
            "config file {} is {} bytes long; it may hold at most {MAX_LEN}",
            p.display(),
            bytes.len()
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("config file {} is not UTF-8 text: {e}", p.display()))?;
    ConfigFile::parse(&text).map_err(|e| format!("config file {}, {e}", p.display()))
}

/// Writes the config file atomically and durably (`content::write_atomic`).
pub fn write(data_dir: &Path, file: &ConfigFile) -> Result<(), String> {
    crate::content::write_atomic(data_dir, CONFIG_FILE, file.to_text().as_bytes())
        .map_err(|e| e.to_string())
}

/// Reads the file as it is now (hand edits included), applies `edits` (`Some(value)` sets
/// a key, `None` removes it) and writes it back; with no edits, only reads. Returns the file
/// after the edits. A file with a mistake is not edited: the error says where it is.
pub fn edit(data_dir: &Path, edits: &[(Key, Option<String>)]) -> Result<ConfigFile, String> {
    let mut file = read(data_dir)?;
    if edits.is_empty() {
        return Ok(file);
    }
    for (key, value) in edits {
        match value {
            Some(v) => file.set(*key, v)?,
            None => {
                file.unset(*key);
            }
        }
    }
    write(data_dir, &file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_hand_written_lines_and_mistakes_are_located() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), ConfigFile::default());
        fs::write(path(dir.path()), "# my limits\nup_limit = 1MB\n").unwrap();
        let f = edit(dir.path(), &[(Key::DownLimit, Some("2MB".into()))]).unwrap();
        assert_eq!(f.get(Key::DownLimit), Some("2MB"));
        let text = fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(text, "# my limits\nup_limit = 1MB\ndown_limit = 2MB\n");
        edit(dir.path(), &[(Key::UpLimit, None)]).unwrap();
        assert!(!fs::read_to_string(path(dir.path()))
            .unwrap()
            .contains("up_limit"));
        fs::write(path(dir.path()), "down_limit = 2MB\nup_limt = 1\n").unwrap();
        let e = edit(dir.path(), &[(Key::UpLimit, Some("1".into()))]).unwrap_err();
        assert!(
            e.contains("peershare.conf, line 2: unknown key `up_limt`"),
            "{e}"
        );
        assert!(
            fs::read_to_string(path(dir.path()))
                .unwrap()
                .contains("up_limt"),
            "a file with a mistake is left as it is"
        );
        fs::write(path(dir.path()), [0xff, 0xfe]).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("not UTF-8"));
    }
}
