//! Read-only views of the engine: a download's [`Progress`], the manifest, connections.

use std::net::SocketAddr;
use std::sync::Arc;

use super::connection::ConnState;
use super::{ConnId, Engine};
use crate::content::manifest::Manifest;
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

impl Engine {
    /// Progress of `content`.
    pub fn progress(&self, content: &Id) -> Option<Progress> {
        let c = self.contents.get(content)?;
        let (size, total) = c
            .manifest
            .as_ref()
            .map_or((0, 0), |m| (m.file_size(), m.lengths().chunk_count()));
        let have_bytes = match &c.manifest {
            Some(m) => {
                let l = m.lengths();
                c.have
                    .iter()
                    .filter_map(|i| l.validate(i as u32))
                    .map(|i| u64::from(l.chunk_len(i)))
                    .sum()
            }
            None => 0,
        };
        Some(Progress {
            size,
            have_bytes,
            chunks_have: c.have.count() as u32,
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

    /// The manifest of `content`, once known.
    pub fn manifest(&self, content: &Id) -> Option<Arc<Manifest>> {
        self.contents.get(content).and_then(|c| c.manifest.clone())
    }

    /// The peer address of a connection.
    pub fn conn_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(&conn).map(|k| k.addr)
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

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Contents known (shared or downloading).
    pub fn contents(&self) -> impl Iterator<Item = &Id> {
        self.contents.keys()
    }
}
