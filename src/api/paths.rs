//! The file-system side of API requests, done on a worker before the request reaches the
//! node (api.md section 2.4): a download's `output_dir` is created if missing and resolved
//! to an absolute path (relative paths are the node's working directory's), so the node
//! and everything it records hold absolute paths only. `local_add_file`'s `filepath` is
//! resolved by the storage when it hashes the file.

use std::fs;
use std::path::Path;

use super::request::{ApiError, ApiRequest};

/// Prepares the paths of `req` (see the module docs); other requests pass unchanged.
pub fn prepare(req: ApiRequest) -> Result<ApiRequest, ApiError> {
    match req {
        ApiRequest::RequestFile {
            content_hash,
            output_dir: Some(dir),
            peers,
            only,
        } => Ok(ApiRequest::RequestFile {
            content_hash,
            output_dir: Some(output_folder(&dir).map_err(ApiError::new)?),
            peers,
            only,
        }),
        other => Ok(other),
    }
}

/// Creates `dir` if needed and returns it absolute and resolved (no `..`, no symlinks).
/// Errors name it absolute and clean too (`/a/b`, never `/a/./b`).
pub fn output_folder(dir: &Path) -> Result<std::path::PathBuf, String> {
    let dir = &crate::paths::absolute(dir);
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create output folder {}: {e}", dir.display()))?;
    if !dir.is_dir() {
        return Err(format!(
            "output folder {} is not a directory",
            dir.display()
        ));
    }
    fs::canonicalize(dir)
        .map_err(|e| format!("cannot resolve output folder {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_folder_is_created_and_absolute() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/../b/c");
        std::fs::create_dir_all(tmp.path().join("a")).unwrap();
        let got = output_folder(&d).unwrap();
        assert_eq!(got, std::fs::canonicalize(tmp.path()).unwrap().join("b/c"));
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(output_folder(&file).is_err());
    }
}
