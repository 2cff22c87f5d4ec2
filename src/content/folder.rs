//! Reading a folder to share it (spec: `protocol-spec/content.md`, section 10): which files
//! and empty folders it holds, under their paths in the tree; what is left out, and why; then
//! each file hashed into the folder's [`TreeManifest`].
//!
//! Nothing is followed out of the folder: a symbolic link is reported and left out (a link
//! to `/` or to a parent folder would share the disk, or loop), and so are FIFOs, sockets and
//! devices (reading a FIFO blocks; a device is not content). A name that cannot be a portable
//! path (tree/path.rs: not UTF-8, `CON.wav`, a trailing dot, ...) is left out and reported
//! too. Names that would collide on another system (`Kick.wav` beside `kick.wav`) stop the
//! share with an error naming them: leaving one out would be a silent choice.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::hasher::hash_file_stamped;
use super::tree::path::MAX_DEPTH;
use super::tree::{PathError, TreeManifest, TreePath, MAX_ENTRIES};
use super::{ContentError, FileStamp, Manifest};

/// A file to share, found in the folder.
#[derive(Clone, Debug)]
pub struct ScannedFile {
    /// Its path in the tree.
    pub path: TreePath,
    /// Where it is on this disk.
    pub abs: PathBuf,
}

/// Why something in the folder is not shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Special,
    /// Its name is not UTF-8.
    NotUtf8,
    /// Its path breaks a rule of tree paths.
    BadName(PathError),
    /// It could not be listed or inspected.
    Unreadable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Symlink => f.write_str("a symbolic link (links are not followed)"),
            SkipReason::Special => {
                f.write_str("not a regular file or folder (a FIFO, socket or device)")
            }
            SkipReason::NotUtf8 => f.write_str("its name is not valid UTF-8"),
            SkipReason::BadName(e) => write!(f, "{e}"),
            SkipReason::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Something in the folder that is not shared.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// Its path relative to the folder, as well as it can be shown.
    pub path: String,
    /// Why.
    pub why: SkipReason,
}

/// What a folder holds.
#[derive(Clone, Debug, Default)]
pub struct FolderScan {
    /// The files, in the order they were found.
    pub files: Vec<ScannedFile>,
    /// Folders with nothing shared in them.
    pub empty_folders: Vec<TreePath>,
    /// What was left out.
    pub skipped: Vec<Skipped>,
}

/// Lists the folder `root` (a symbolic link given as the root itself is followed: the user
/// named it).
pub fn scan_folder(root: &Path) -> Result<FolderScan, ContentError> {
    let meta = fs::metadata(root).map_err(|e| ContentError::io("inspect", root, e))?;
    if !meta.is_dir() {
        return Err(ContentError::NotAFile {
            path: root.to_path_buf(),
        });
    }
    let mut scan = FolderScan::default();
    // (folder on disk, its path in the tree: "" for the root, its depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let listing = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if rel.is_empty() => return Err(ContentError::io("list", root, e)),
            Err(e) => {
                scan.skipped.push(Skipped {
                    path: rel.clone(),
                    why: SkipReason::Unreadable(e.to_string()),
                });
                continue;
            }
        };
        let mut children = 0usize;
        for item in listing {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    scan.skipped.push(Skipped {
                        path: format!("{rel}/…"),
                        why: SkipReason::Unreadable(e.to_string()),
                    });
                    continue;
                }
            };
            let name = item.file_name();
            let shown = join(&rel, &name.to_string_lossy());
            let Some(name) = name.to_str() else {
                scan.skipped.push(Skipped {
                    path: shown,
                    why: SkipReason::NotUtf8,
                });
                continue;
            };
            let child_rel = join(&rel, name);
            let skip = |why| Skipped {
                path: child_rel.clone(),
                why,
            };
            // symlink_metadata: a link is looked at, never through.
            let kind = match item.file_type() {
                Ok(k) => k,
                Err(e) => {
                    scan.skipped
                        .push(skip(SkipReason::Unreadable(e.to_string())));
                    continue;
                }
            };
            if kind.is_symlink() {
                scan.skipped.push(skip(SkipReason::Symlink));
                continue;
            }
            if !kind.is_dir() && !kind.is_file() {
                scan.skipped.push(skip(SkipReason::Special));
                continue;
            }
            let path = match TreePath::new(&child_rel) {
                Ok(p) => p,
                Err(e) => {
                    scan.skipped.push(skip(SkipReason::BadName(e)));
                    continue;
                }
            };
            children += 1;
            if kind.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((item.path(), child_rel, depth + 1));
                } else {
                    // A folder at the deepest level can only be listed as empty.
                    scan.empty_folders.push(path);
                }
            } else {
                scan.files.push(ScannedFile {
                    path,
                    abs: item.path(),
                });
            }
            if scan.files.len() + scan.empty_folders.len() > MAX_ENTRIES as usize {
                return Err(ContentError::Folder {
                    path: root.to_path_buf(),
                    why: format!("it holds more than {MAX_ENTRIES} files and folders"),
                });
            }
        }
        if children == 0 && !rel.is_empty() {
            if let Ok(p) = TreePath::new(&rel) {
                scan.empty_folders.push(p);
            }
        }
    }
    Ok(scan)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// A folder hashed: its manifest, and the stamp of each file as it was read (in the order of
/// the manifest's entries; a changed file is then detected as for a single file).
#[derive(Clone, Debug)]
pub struct HashedFolder {
    /// The tree manifest.
    pub manifest: TreeManifest,
    /// For each file entry, in entry order: where it is and its stamp while it was hashed.
    pub files: Vec<(PathBuf, FileStamp)>,
}

/// Hashes every file of `scan` (one after the other, on this thread; `progress` gets the
/// bytes hashed so far) into the folder's tree manifest.
pub fn hash_folder(
    root: &Path,
    scan: &FolderScan,
    progress: &dyn Fn(u64),
) -> Result<HashedFolder, ContentError> {
    let mut done = 0u64;
    let mut hashed: Vec<(TreePath, Manifest)> = Vec::with_capacity(scan.files.len());
    let mut stamps: Vec<(TreePath, PathBuf, FileStamp)> = Vec::with_capacity(scan.files.len());
    for f in &scan.files {
        let h = hash_file_stamped(&f.abs, None, &|n| progress(done + n))?;
        done += h.manifest.file_size();
        stamps.push((f.path.clone(), f.abs.clone(), h.stamp));
        hashed.push((f.path.clone(), h.manifest));
    }
    let manifest = TreeManifest::build(hashed, scan.empty_folders.clone()).map_err(|e| {
        ContentError::Folder {
            path: root.to_path_buf(),
            why: e.to_string(),
        }
    })?;
    stamps.sort_by(|a, b| a.0.as_str().as_bytes().cmp(b.0.as_str().as_bytes()));
    Ok(HashedFolder {
        manifest,
        files: stamps.into_iter().map(|(_, abs, st)| (abs, st)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    #[test]
    fn a_folder_is_listed_with_its_empty_folders_and_what_was_left_out() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "Kicks/kick 1.wav", &[1; 1000]);
        write(r, "Kicks/Sub/kick 2.wav", &[2; 1000]);
        write(r, "README.txt", b"hi");
        fs::create_dir_all(r.join("Loops/Empty")).unwrap();
        fs::create_dir_all(r.join("OnlyLinks")).unwrap();
        symlink("/etc", r.join("OnlyLinks/etc")).unwrap();
        symlink("../README.txt", r.join("Kicks/link.txt")).unwrap();
        write(r, "aux.wav", b"x");
        let c = std::ffi::CString::new(r.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path; the result is checked.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

        let scan = scan_folder(r).unwrap();
        let mut files: Vec<&str> = scan.files.iter().map(|f| f.path.as_str()).collect();
        files.sort();
        assert_eq!(
            files,
            ["Kicks/Sub/kick 2.wav", "Kicks/kick 1.wav", "README.txt"]
        );
        let mut empty: Vec<&str> = scan.empty_folders.iter().map(|p| p.as_str()).collect();
        empty.sort();
        // Loops holds Empty, so only Empty is listed; OnlyLinks holds only a link.
        assert_eq!(empty, ["Loops/Empty", "OnlyLinks"]);
        let mut skipped: Vec<String> = scan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.why))
            .collect();
        skipped.sort();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped[0].starts_with("Kicks/link.txt: a symbolic link"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].starts_with("OnlyLinks/etc: a symbolic link"),
            "{skipped:?}"
        );
        assert!(
            skipped[2].starts_with("aux.wav: a name is reserved"),
            "{skipped:?}"
        );
        assert!(
            skipped[3].starts_with("pipe: not a regular file"),
            "{skipped:?}"
        );

        let h = hash_folder(r, &scan, &|_| {}).unwrap();
        assert_eq!(h.manifest.file_count(), 3);
        assert_eq!(h.files.len(), 3);
        assert!(h.files[0].0.ends_with("Kicks/Sub/kick 2.wav"));
        // The same tree copied elsewhere (another listing order) has the same ID.
        let d2 = tempfile::tempdir().unwrap();
        let r2 = d2.path();
        write(r2, "README.txt", b"hi");
        write(r2, "Kicks/Sub/kick 2.wav", &[2; 1000]);
        write(r2, "Kicks/kick 1.wav", &[1; 1000]);
        fs::create_dir_all(r2.join("Loops/Empty")).unwrap();
        fs::create_dir_all(r2.join("OnlyLinks")).unwrap();
        let h2 = hash_folder(r2, &scan_folder(r2).unwrap(), &|_| {}).unwrap();
        assert_eq!(h.manifest.content_id(), h2.manifest.content_id());
    }

    #[test]
    fn names_that_collide_elsewhere_stop_the_share() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "Kick.wav", b"1");
        write(d.path(), "kick.wav", b"2");
        let scan = scan_folder(d.path()).unwrap();
        let e = hash_folder(d.path(), &scan, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ only by case"), "{e}");
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f", b"1");
        assert!(matches!(
            scan_folder(&d.path().join("f")),
            Err(ContentError::NotAFile { .. })
        ));
    }
}
