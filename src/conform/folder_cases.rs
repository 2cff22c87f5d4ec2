//! Folder cases (content.md section 10): a folder is one content whose manifest is a tree;
//! it travels like a file's (the same MANIFEST_REQUEST, BITFIELD, REQUEST and PIECE), and
//! each chunk lies inside one file, with that file's own chunking.
//!
//! The folder is named with `--folder ID`, or shared for the occasion through `--api` (a
//! small tree: files of one and of several chunks, an empty file, an empty folder).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::link::Got;
use super::session::{fetch_manifest, open_for, unexpected};
use super::{add_through_api, fail, noise, Case, Ctx, Outcome, ANSWER_WAIT};
use crate::content::tree::TreeManifest;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::proto::wire::Message;

/// Most chunks `folder-every-piece` asks for (the test folder has 5).
const MAX_PIECES: usize = 64;

/// The folder cases.
pub fn cases() -> Vec<Case> {
    let c = Case::new;
    vec![
        c(
            "folder-manifest-fetch",
            "content.md §10.1, §10.4; wire.md §5",
            manifest_fetch,
        ),
        c(
            "folder-bitfield-chunk-count",
            "content.md §10.6; wire.md §4.6",
            bitfield_count,
        ),
        c(
            "folder-every-piece",
            "content.md §10, §10.6; wire.md §4.8, §4.9",
            every_piece,
        ),
    ]
}

fn folder(ctx: &Ctx) -> Result<Id, Outcome> {
    ctx.folder
        .ok_or_else(|| Outcome::Skip("no folder: give --folder ID or --api PORT".into()))
}

fn tree(ctx: &Ctx) -> Result<TreeManifest, Outcome> {
    ctx.tree
        .clone()
        .ok_or_else(|| Outcome::Skip("needs the tree (folder-manifest-fetch)".into()))
}

fn manifest_fetch(ctx: &mut Ctx) -> Result<(), Outcome> {
    let id = folder(ctx)?;
    let mut s = open_for(ctx, id)?;
    let data = fetch_manifest(&mut s)?;
    match ContentManifest::decode_for(&id, &data) {
        Ok(ContentManifest::Tree(t)) => {
            ctx.tree = Some(t);
            Ok(())
        }
        Ok(ContentManifest::File(_)) => Err(fail("the manifest is a file's, not a tree")),
        Err(e) => Err(fail(format!("the tree manifest: {e}"))),
    }
}

fn bitfield_count(ctx: &mut Ctx) -> Result<(), Outcome> {
    let n = tree(ctx)?.chunk_count();
    let id = folder(ctx)?;
    let s = open_for(ctx, id)?;
    if s.chunks() != n {
        return Err(fail(format!(
            "BITFIELD chunk_count {}, the tree has {n}",
            s.chunks()
        )));
    }
    Ok(())
}

/// Asks for every chunk the peer offers (up to [`MAX_PIECES`]), one at a time, and checks
/// each PIECE: its length is its file's chunk's, its bytes hash to the tree's chunk hash.
fn every_piece(ctx: &mut Ctx) -> Result<(), Outcome> {
    let t = tree(ctx)?;
    let id = folder(ctx)?;
    let mut s = open_for(ctx, id)?;
    s.ready()?;
    s.unchoked()?;
    s.some_offered()?;
    let chunks: Vec<u32> = s.offered.iter().copied().take(MAX_PIECES).collect();
    for chunk in chunks {
        let place = t.chunk_place(chunk).ok_or_else(|| {
            fail(format!(
                "offered chunk {chunk}, the tree has {}",
                t.chunk_count()
            ))
        })?;
        s.link.send(&Message::Request(chunk)).map_err(fail)?;
        loop {
            match s.link.recv(ANSWER_WAIT) {
                Got::Frame(Message::Piece { chunk: c, data }) if c == chunk => {
                    if data.len() != place.len as usize {
                        return Err(fail(format!(
                            "chunk {chunk}: {} bytes, its file's chunk {} is {}",
                            data.len(),
                            place.chunk_in_file,
                            place.len
                        )));
                    }
                    if !t.verify_chunk(chunk, &data) {
                        return Err(fail(format!("chunk {chunk}: the bytes fail its hash")));
                    }
                    break;
                }
                Got::Frame(
                    Message::Have(_) | Message::Peers(_) | Message::KeepAlive | Message::Unchoke,
                ) => {}
                other => return Err(unexpected(&format!("PIECE {chunk}"), &other)),
            }
        }
    }
    Ok(())
}

/// Writes a small folder and shares it through the API at `api`: files of one chunk and of
/// several, an empty file, an empty folder.
pub fn share_test_folder(api: SocketAddr, dir: Option<PathBuf>) -> Result<Id, String> {
    let dir = dir.unwrap_or_else(std::env::temp_dir);
    let seed = rand::random::<u64>();
    let root = dir.join(format!("conform-folder-{seed:016x}"));
    let files: [(&str, usize); 4] = [
        ("Kicks/kick.wav", 1000),
        ("Kicks/Sub/long.wav", 300_000),
        ("snare.wav", 70_000),
        ("empty.txt", 0),
    ];
    for (k, (path, n)) in files.iter().enumerate() {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&p, noise(seed ^ k as u64, *n))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    let empty = root.join("Empty");
    std::fs::create_dir_all(&empty)
        .map_err(|e| format!("cannot create {}: {e}", empty.display()))?;
    add_through_api(api, &root)
}
