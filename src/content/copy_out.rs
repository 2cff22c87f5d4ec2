//! A copy of a complete, local file or folder into another folder ([`copy_into`],
//! [`copy_folder_into`]): what `local_request_file` does when the content is already here
//! and the request names an `output_dir` it is not in (api.md section 5.5).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::HASH_LEN;
use super::partial::{link_no_clobber, rename_no_clobber, sync_fs, Placed};
use super::tree::{EntryKind, TreeManifest};
use super::{remove_if_exists, sync_dir, ContentError};
use crate::id::Id;

/// Puts a copy of `src` (the content `id`, whose whole-file SHA-256 is `sha256`) in `dir`
/// under `name` (already safe), or `name (1)`, ... if taken, and returns its path. If `dir`
/// already holds the same file under `name` (the same inode, or the same bytes: an earlier
/// copy), that is the answer and nothing is copied. Never a partial or wrong file under the
/// final name: the copy is made under a hidden temp name (`fs::copy`, which the kernel may
/// turn into a reflink on file systems that share extents), its hash is checked against
/// `sha256` (the shared file may have been modified since it was hashed), and only then is it
/// linked into place without replacing anything. An independent copy, not a hard link: a
/// user editing their copy must not change the file this node shares. On a worker thread.
pub fn copy_into(
    src: &Path,
    id: &Id,
    sha256: &[u8; HASH_LEN],
    dir: &Path,
    name: &str,
) -> Result<PathBuf, ContentError> {
    let existing = dir.join(name);
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(&existing)) {
        let same_inode = a.dev() == b.dev() && a.ino() == b.ino();
        if same_inode || (b.is_file() && b.len() == a.len() && file_sha256(&existing)? == *sha256) {
            return Ok(existing);
        }
    }
    let hex = id.to_hex();
    let tmp = dir.join(format!(".{}.peershare-copy", hex.get(..16).unwrap_or(&hex)));
    fs::copy(src, &tmp).map_err(|e| ContentError::io("copy", &tmp, e))?;
    let placed = check_and_place(&tmp, src, sha256, dir, name);
    // The temp name goes whatever happened (after a successful link it is a second name).
    if let Err(e) = remove_if_exists(&tmp) {
        log::warn!("removing {}: {e}", tmp.display());
    }
    placed
}

fn check_and_place(
    tmp: &Path,
    src: &Path,
    sha256: &[u8; HASH_LEN],
    dir: &Path,
    name: &str,
) -> Result<PathBuf, ContentError> {
    if file_sha256(tmp)? != *sha256 {
        return Err(ContentError::Changed {
            path: src.to_path_buf(),
            what: "its bytes no longer match the content's SHA-256".into(),
        });
    }
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| ContentError::io("sync", tmp, e))?;
    let path = match link_no_clobber(tmp, dir, name)? {
        Placed::At(p) => p,
        Placed::CrossDevice => {
            return Err(ContentError::io(
                "link",
                tmp,
                io::Error::other("temp file and final name on different file systems"),
            ))
        }
    };
    sync_dir(dir)?;
    Ok(path)
}

/// The SHA-256 of a whole file.
fn file_sha256(path: &Path) -> Result<[u8; HASH_LEN], ContentError> {
    let mut f = File::open(path).map_err(|e| ContentError::io("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContentError::io("read", path, e)),
        };
        h.update(buf.get(..n).unwrap_or(&[]));
    }
    Ok(h.finalize().into())
}

/// [`copy_into`] for a shared folder at `src` whose manifest is `tree`: every file copied
/// into a hidden staging folder in `dir` and checked against its SHA-256 (a shared file may
/// have changed since it was hashed), empty folders made, the file system synced, then the
/// staging folder renamed to `name` (or `name (1)`, ...) without replacing anything.
pub fn copy_folder_into(
    src: &Path,
    tree: &TreeManifest,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, ContentError> {
    let hex = tree.content_id().to_hex();
    let staging = dir.join(format!(".{}.peershare-copy", hex.get(..16).unwrap_or(&hex)));
    if fs::symlink_metadata(&staging).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(&staging).map_err(|e| ContentError::io("remove", &staging, e))?;
    }
    fs::create_dir(&staging).map_err(|e| ContentError::io("create", &staging, e))?;
    let copied = copy_entries(src, tree, &staging).and_then(|()| sync_fs(&staging));
    let placed = copied.and_then(|()| rename_no_clobber(&staging, dir, name));
    match placed {
        Ok(p) => {
            sync_dir(dir)?;
            Ok(p)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn copy_entries(src: &Path, tree: &TreeManifest, staging: &Path) -> Result<(), ContentError> {
    for e in tree.entries() {
        let to = staging.join(e.path.as_str());
        let f = match e.kind {
            EntryKind::EmptyFolder => {
                fs::create_dir_all(&to).map_err(|err| ContentError::io("create", &to, err))?;
                continue;
            }
            EntryKind::File(f) => f,
        };
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|err| ContentError::io("create", parent, err))?;
        }
        let from = src.join(e.path.as_str());
        fs::copy(&from, &to).map_err(|err| ContentError::io("copy", &from, err))?;
        if file_sha256(&to)? != f.sha256 {
            return Err(ContentError::Changed {
                path: from,
                what: "its bytes no longer match the folder's manifest".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_once_then_finds_its_copy_and_never_copies_a_changed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("a.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &data).unwrap();
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let id = Id(sha);
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        let p = copy_into(&src, &id, &sha, &out, "a.bin").unwrap();
        assert_eq!(p, out.join("a.bin"));
        assert_eq!(fs::read(&p).unwrap(), data);
        // Asked again: the same copy, nothing new.
        assert_eq!(copy_into(&src, &id, &sha, &out, "a.bin").unwrap(), p);
        // Another file under the name: a numbered copy beside it, the other file untouched.
        fs::write(&p, b"other").unwrap();
        let q = copy_into(&src, &id, &sha, &out, "a.bin").unwrap();
        assert_eq!(q, out.join("a (1).bin"));
        assert_eq!(fs::read(&p).unwrap(), b"other");
        // The shared file was modified: refused, nothing left behind.
        fs::write(&src, b"changed").unwrap();
        let other = tmp.path().join("other");
        fs::create_dir(&other).unwrap();
        let e = copy_into(&src, &id, &sha, &other, "a.bin").unwrap_err();
        assert!(matches!(e, ContentError::Changed { .. }), "{e}");
        assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
    }
}
