//! Read-only views of the engine: a download's [`Progress`], a transfer's peers
//! ([`PeerView`]), the manifest, connections.

use std::net::SocketAddr;
use std::sync::Arc;

use super::connection::ConnState;
use super::{ConnId, Engine};
use crate::bitset::BitSet;
use crate::content::ContentManifest;
use crate::id::Id;

/// How a download is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Total size in bytes (0 until the manifest is known).
    pub size: u64,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Chunks verified / total.
    pub chunks_have: u32,
    /// Chunk count.
    pub chunks_total: u32,
    /// Connected peers that finished the handshake.
    pub peers: usize,
    /// The manifest is known.
    pub has_manifest: bool,
    /// All chunks verified.
    pub complete: bool,
    /// The file name, if known.
    pub name: Option<String>,
}

/// One connection of a transfer, as the engine knows it (`transfer_peers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The connection.
    pub conn: ConnId,
    /// The peer's address as the socket sees it.
    pub addr: SocketAddr,
    /// Its node ID, once its HANDSHAKE came.
    pub node: Option<Id>,
    /// We opened it (else the peer did).
    pub outgoing: bool,
    /// The handshake is done (else the connection is being set up).
    pub active: bool,
    /// Chunks it told us it has (its BITFIELD and HAVEs), once its BITFIELD came. A
    /// super-seeding peer tells only what it offers.
    pub chunks: Option<u32>,
    /// We choke it: it may not download from us now.
    pub choked: bool,
    /// It wants chunks we have.
    pub interested: bool,
    /// While we download: it chokes us.
    pub choking_us: Option<bool>,
    /// While we download: it has chunks we lack.
    pub interesting: Option<bool>,
    /// While we download: our requests it has not answered yet.
    pub requests_out: usize,
    /// Its requests we have queued or are sending.
    pub requests_in: usize,
}

impl Engine {
    /// The connections of `content` (those being set up included), in the order they were
    /// opened; `None` if the engine does not know the content.
    pub fn peers(&self, content: &Id) -> Option<Vec<PeerView>> {
        let c = self.contents.get(content)?;
        let list = self
            .conns
            .iter()
            .filter(|(_, k)| k.content == Some(*content))
            .map(|(id, k)| {
                let sched = c.scheduler.as_ref().and_then(|s| s.peer_state(*id));
                PeerView {
                    conn: *id,
                    addr: k.addr,
                    node: k.remote.as_ref().map(|h| h.node_id),
                    outgoing: k.outgoing,
                    active: k.state == ConnState::Active,
                    chunks: k.peer_bits.as_ref().map(|b| b.count() as u32),
                    choked: k.am_choking,
                    interested: k.peer_interested,
                    choking_us: sched.map(|s| s.choking_us),
                    interesting: sched.map(|s| s.interested),
                    requests_out: sched.map_or(0, |s| s.in_flight),
                    requests_in: k.requests.len() + k.pieces_pending,
                }
            })
            .collect();
        Some(list)
    }

    /// Addresses banned for sending data that failed verification (for every content).
    pub fn banned(&self) -> impl Iterator<Item = &SocketAddr> {
        self.bans.addrs.iter()
    }

    /// The chunks this node holds of `content` when it holds only part of it (part of a
    /// folder, `--only`); `None` for all of it, or content it does not have.
    pub fn held_chunks(&self, content: &Id) -> Option<BitSet> {
        let c = self.contents.get(content)?;
        (!c.have.is_full()).then(|| c.have.clone())
    }

    /// Progress of `content`.
    pub fn progress(&self, content: &Id) -> Option<Progress> {
        let c = self.contents.get(content)?;
        // Part of a folder (`--only`): what was asked for is the whole of it.
        let (size, total) = match (&c.manifest, &c.wanted) {
            (None, _) => (0, 0),
            (Some(m), None) => (m.total_size(), m.chunk_count()),
            (Some(m), Some(w)) => (bytes_in(m, w), w.count() as u32),
        };
        let (have_bytes, chunks_have) = held(c.manifest.as_deref(), &c.have, c.wanted.as_deref());
        Some(Progress {
            size,
            have_bytes,
            chunks_have: chunks_have as u32,
            chunks_total: total,
            peers: c
                .conns
                .iter()
                .filter(|k| {
                    self.conns
                        .get(k)
                        .is_some_and(|k| k.state == ConnState::Active)
                })
                .count(),
            has_manifest: c.manifest.is_some(),
            complete: c.complete,
            name: c.name.clone(),
        })
    }

    /// A folder download's files whose every chunk is verified, and all its files; `None`
    /// for a file or before the manifest is known. Linear in the chunks: for status replies,
    /// not for every tick.
    pub fn files_progress(&self, content: &Id) -> Option<(usize, usize)> {
        let c = self.contents.get(content)?;
        let m = c.manifest.as_ref()?;
        let tree = m.as_tree()?;
        if let Some(sel) = &c.only {
            // Part of a folder: its selected files (empty ones are done from the start).
            let (mut done, mut all) = (0, 0);
            for (k, w) in sel.entries(tree).into_iter().enumerate() {
                if w && tree.file_number(k).is_some() {
                    all += 1;
                    if tree.file_chunks(k).all(|i| c.have.contains(i as usize)) {
                        done += 1;
                    }
                }
            }
            return Some((done, all));
        }
        let spans = m.file_spans();
        let done = spans
            .iter()
            .filter(|f| f.chunks.clone().all(|i| c.have.contains(i as usize)))
            .count();
        // Empty files are not spans: they are there as soon as the folder is.
        let empty = m.file_count() - spans.len();
        Some((done + empty, m.file_count()))
    }

    /// The manifest of `content`, once known.
    pub fn manifest(&self, content: &Id) -> Option<Arc<ContentManifest>> {
        self.contents.get(content).and_then(|c| c.manifest.clone())
    }

    /// The peer address of a connection.
    pub fn conn_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(&conn).map(|k| k.addr)
    }

    /// Whether this node dialled the connection (it speaks first: wire.md section 3, and is
    /// the secure session's initiator, secure.md section 2).
    pub fn conn_outgoing(&self, conn: ConnId) -> Option<bool> {
        self.conns.get(&conn).map(|k| k.outgoing)
    }

    /// The node ID a connection we dialled must find at its other end, if its DHT record or
    /// PEERS entry named one (the same as its [`super::WireAction::Connect`]'s `expect`).
    pub fn conn_expected_id(&self, conn: ConnId) -> Option<Id> {
        self.conns.get(&conn).and_then(|k| k.expect)
    }

    /// The content a connection is about, once its handshake named it.
    pub fn conn_content(&self, conn: ConnId) -> Option<Id> {
        self.conns.get(&conn).and_then(|k| k.content)
    }

    /// Checks the schedulers' and the super-seeding bookkeeping's invariants; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (id, c) in &self.contents {
            if let Some(s) = &c.scheduler {
                s.check_invariants().map_err(|e| format!("{id}: {e}"))?;
            }
            if let Some(ss) = &c.super_seed {
                ss.check_invariants().map_err(|e| format!("{id}: {e}"))?;
            }
        }
        Ok(())
    }

    /// For each of `contents` that is a download still running (not complete, not a share):
    /// how many peers it has whose handshake is done, and how many more it is dialling or
    /// has queued to dial. What the node core's provider search decides on (issue 21): a
    /// download with none of either has nobody left to try. One pass over the connections.
    pub fn download_prospects(&self, contents: &[Id]) -> Vec<(Id, usize, usize)> {
        let mut dialing: std::collections::HashMap<Id, usize> = Default::default();
        for k in self.conns.values() {
            if let (Some(c), true) = (k.content, k.state != ConnState::Active) {
                *dialing.entry(c).or_default() += 1;
            }
        }
        contents
            .iter()
            .filter_map(|id| {
                let c = self.contents.get(id)?;
                let running = matches!(c.source, super::Source::Download) && !c.complete;
                running.then(|| {
                    let queued = c.dials.as_ref().map_or(0, |d| d.candidates.len());
                    let pending = queued + dialing.get(id).copied().unwrap_or(0);
                    (*id, c.conns.len(), pending)
                })
            })
            .collect()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Contents known (shared or downloading).
    pub fn contents(&self) -> impl Iterator<Item = &Id> {
        self.contents.keys()
    }

    /// The sum of every content's [`Progress::peers`], counted from the connections (a few)
    /// rather than the contents (a node may share 100,000): for `/metrics` and the status
    /// view, rebuilt after every add.
    pub fn active_content_conns(&self) -> usize {
        self.conns
            .iter()
            .filter(|(k, c)| {
                c.state == ConnState::Active
                    && c.content
                        .and_then(|id| self.contents.get(&id))
                        .is_some_and(|ct| ct.conns.contains(k))
            })
            .count()
    }
}

/// Bytes in the chunks `chunks` of `m`, a run of consecutive chunks at a time (the view is
/// rebuilt after each chunk stored: a chunk at a time, a pack of 10,000 files cost 10,000
/// steps each time).
fn bytes_in(m: &ContentManifest, chunks: &BitSet) -> u64 {
    let l = m.layout();
    chunks.runs().into_iter().map(|r| l.bytes_in(r)).sum()
}

/// Bytes and chunks of `have` that count towards `wanted` (every chunk when `None`).
/// [`Engine::progress`] is asked for every download on every tick: the whole-content case
/// (most downloads) is counted without a walk over the chunks where the counts tell it.
fn held(m: Option<&ContentManifest>, have: &BitSet, wanted: Option<&BitSet>) -> (u64, usize) {
    let Some(m) = m else {
        return (0, 0);
    };
    // Until the partial file is opened, `have` is empty and sized 0.
    let sized = have.len() == m.chunk_count() as usize;
    match (m, wanted) {
        (m, None) if sized && have.is_full() => (m.total_size(), have.count()),
        (ContentManifest::File(f), None) if sized => {
            // Every chunk is full size but the last.
            let l = f.lengths();
            let short = l
                .last_chunk()
                .filter(|i| have.contains(i.as_usize()))
                .map_or(0, |_| l.chunk_size() - l.last_chunk_len());
            let n = have.count();
            (
                (n as u64 * u64::from(l.chunk_size())).saturating_sub(u64::from(short)),
                n,
            )
        }
        (m, None) => (bytes_in(m, have), have.count()),
        (m, Some(w)) => {
            let mine = have.intersection(w);
            (bytes_in(m, &mine), mine.count())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Manifest;

    /// The counted shortcut agrees with adding up every held chunk's length.
    #[test]
    fn held_bytes_match_the_sum_of_the_chunks() {
        for (size, chunk) in [
            (0usize, 16_384u32),
            (1, 16_384),
            (16_384, 16_384),
            (16_385, 16_384),
            (100_000, 16_384),
            (131_072, 32_768),
        ] {
            let data = vec![3u8; size];
            let m =
                ContentManifest::File(Manifest::for_data_with_chunk_size(&data, chunk).unwrap());
            let n = m.chunk_count() as usize;
            let l = m.layout();
            let sets = [
                BitSet::new(n),
                BitSet::full(n),
                {
                    let mut b = BitSet::new(n);
                    (0..n).filter(|i| i % 3 != 1).for_each(|i| {
                        b.insert(i);
                    });
                    b
                },
                {
                    let mut b = BitSet::new(n);
                    if n > 0 {
                        b.insert(n - 1);
                    }
                    b
                },
            ];
            if n > 0 {
                // Before the partial file is opened: nothing held yet.
                assert_eq!(held(Some(&m), &BitSet::new(0), None), (0, 0));
            }
            for have in &sets {
                let want: u64 = have
                    .iter()
                    .map(|i| u64::from(l.chunk_len(l.validate(i as u32).unwrap())))
                    .sum();
                assert_eq!(
                    held(Some(&m), have, None),
                    (want, have.count()),
                    "size {size}"
                );
            }
        }
    }

    /// A folder's held bytes, summed a run of chunks at a time, with and without a
    /// selection (`--only`), agree with adding up every chunk's length.
    #[test]
    fn a_folders_held_bytes_match_the_sum_of_its_chunks() {
        use crate::content::tree::{TreeManifest, TreePath};
        let files = [
            ("a/big", 700_000usize),
            ("a/one", 50_000),
            ("b/two", 49_999),
            ("b/three", 1),
            ("c/four", 300_000),
        ];
        let entries = files
            .iter()
            .map(|(p, n)| {
                let data: Vec<u8> = (0..*n).map(|i| (i % 251) as u8).collect();
                (
                    TreePath::new(p).unwrap(),
                    Manifest::for_data(&data).unwrap(),
                )
            })
            .collect();
        let m = ContentManifest::Tree(TreeManifest::build(entries, Vec::new()).unwrap());
        let n = m.chunk_count() as usize;
        assert!(n > files.len(), "some file has several chunks");
        let l = m.layout();
        let sum = |set: &mut dyn Iterator<Item = usize>| -> u64 {
            set.map(|i| u64::from(l.chunk_len(l.validate(i as u32).unwrap())))
                .sum()
        };
        for pick in 0..(1u32 << n.min(12)) {
            let mut have = BitSet::new(n);
            (0..n)
                .filter(|i| pick & (1 << (i % 12)) != 0)
                .for_each(|i| {
                    have.insert(i);
                });
            let mut wanted = BitSet::new(n);
            (0..n).filter(|i| i % 3 != 0).for_each(|i| {
                wanted.insert(i);
            });
            assert_eq!(
                held(Some(&m), &have, None),
                (sum(&mut have.iter()), have.count()),
                "{pick:b}"
            );
            let both: Vec<usize> = have.iter().filter(|&i| wanted.contains(i)).collect();
            assert_eq!(
                held(Some(&m), &have, Some(&wanted)),
                (sum(&mut both.iter().copied()), both.len()),
                "{pick:b}"
            );
            assert_eq!(bytes_in(&m, &have), sum(&mut have.iter()));
        }
        assert_eq!(bytes_in(&m, &BitSet::full(n)), m.total_size());
    }
}
