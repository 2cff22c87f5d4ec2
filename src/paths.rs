//! Paths as the node and the command line show them: absolute and clean, with no `.` and no
//! `..` components (api.md section 2.4). Lexical only: nothing here looks at the disk, so it
//! works for paths that do not exist yet (a download folder to create, a mistyped file).

use std::path::{Component, Path, PathBuf};

/// `path` without `.` components and with each `..` taking away the component before it.
/// A `..` at the root stays at the root (`/..` is `/`); a relative path keeps its leading
/// `..`s, having nothing to take them from.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    // Normal components in `out` that a `..` may take away.
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            Component::ParentDir if out.has_root() => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `path` made absolute against this process's working directory, then [`normalize`]d. If
/// the working directory cannot be read (it was deleted), a relative `path` stays relative.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return normalize(path);
    }
    match std::env::current_dir() {
        Ok(cwd) => normalize(&cwd.join(path)),
        Err(_) => normalize(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(Path::new(s)).display().to_string()
    }

    #[test]
    fn dots_go_and_parents_take_the_component_before() {
        assert_eq!(n("/tmp/qs/./downloads/x.wav"), "/tmp/qs/downloads/x.wav");
        assert_eq!(n("/tmp/qs/a/../downloads/"), "/tmp/qs/downloads");
        assert_eq!(n("/tmp/./././x"), "/tmp/x");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../../a"), "/a");
        assert_eq!(n("/"), "/");
        assert_eq!(n("a/b/../../.."), "..");
        assert_eq!(n("../a/./b"), "../a/b");
        assert_eq!(n("./"), ".");
        assert_eq!(n("a/.."), ".");
    }

    #[test]
    fn absolute_is_against_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("./x/../y")), normalize(&cwd.join("y")));
        assert_eq!(absolute(Path::new("/a/./b")), PathBuf::from("/a/b"));
        assert!(absolute(Path::new(".")).is_absolute());
    }
}
