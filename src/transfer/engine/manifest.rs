//! The manifest exchange: serving our manifest in pieces (MANIFEST_REQUEST), and fetching
//! a peer's and checking it against the content ID before anything else (MANIFEST_DATA).

use std::sync::Arc;
use std::time::Instant;

use super::connection::ConnState;
use super::{Action, ConnId, Engine};
use crate::bitset::BitSet;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::proto::wire::{self, error_code, Message};
use crate::storage::job::StorageJob;

/// A manifest being fetched, piece by piece, from one peer.
#[derive(Debug)]
pub(super) struct ManifestAssembly {
    pub(super) from: ConnId,
    pub(super) total: usize,
    pub(super) data: Vec<u8>,
}

impl Engine {
    pub(super) fn on_manifest_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        content: Id,
        offset: u32,
        length: u32,
    ) {
        let Some(bytes) = self.contents.get_mut(&content).and_then(|c| {
            let m = c.manifest.as_ref()?;
            let bytes = c.manifest_bytes.get_or_insert_with(|| Arc::new(m.encode()));
            Some(bytes.clone())
        }) else {
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "MANIFEST_REQUEST before our BITFIELD",
            );
            return;
        };
        let start = offset as usize;
        let end = start.saturating_add(length as usize).min(bytes.len());
        if start >= end {
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "MANIFEST_REQUEST out of range",
            );
            return;
        }
        let data = bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.send(
            conn,
            now,
            Message::ManifestData {
                total_len: bytes.len() as u32,
                offset,
                data,
            },
        );
    }

    pub(super) fn on_manifest_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        content: Id,
        total: u32,
        offset: u32,
        data: Vec<u8>,
    ) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        let Some(a) = c.assembly.as_mut().filter(|a| a.from == conn) else {
            // Unsolicited, or from a peer we stopped asking: ignore.
            return;
        };
        if total as usize != a.total && a.total != 0 || offset as usize != a.data.len() {
            c.assembly = None;
            self.close_with(
                conn,
                error_code::PROTOCOL_VIOLATION,
                "manifest data out of order",
            );
            self.request_manifest(now, content);
            return;
        }
        a.total = total as usize;
        a.data.extend_from_slice(&data);
        if a.data.len() < a.total {
            let next = a.data.len() as u32;
            let len = (a.total - a.data.len()).min(wire::MAX_MANIFEST_PIECE) as u32;
            self.send(
                conn,
                now,
                Message::ManifestRequest {
                    offset: next,
                    length: len,
                },
            );
            return;
        }
        let bytes = std::mem::take(&mut a.data);
        c.assembly = None;
        match ContentManifest::decode_for(&content, &bytes) {
            Ok(m) => {
                let m = Arc::new(m);
                c.manifest = Some(m.clone());
                c.manifest_bytes = Some(Arc::new(bytes));
                if c.peek {
                    self.actions.push_back(Action::ManifestFetched { content });
                    return;
                }
                c.opening = true;
                c.have = BitSet::new(m.chunk_count() as usize);
                self.actions.push_back(StorageJob::OpenPartial {
                    content,
                    manifest: m,
                    only: c.only.clone(),
                });
            }
            Err(e) => {
                log::warn!("download {content}: peer sent a bad manifest: {e}");
                self.ban(now, conn, "a manifest");
                self.request_manifest(now, content);
            }
        }
    }

    /// Asks a peer that holds the manifest for it, if nobody is being asked.
    pub(super) fn request_manifest(&mut self, now: Instant, content: Id) {
        let Some(c) = self.contents.get(&content) else {
            return;
        };
        if c.manifest.is_some() || c.assembly.is_some() {
            return;
        }
        let from = c.conns.iter().copied().find(|k| {
            self.conns
                .get(k)
                .is_some_and(|k| k.peer_has_manifest && k.state == ConnState::Active)
        });
        let Some(from) = from else {
            return;
        };
        if let Some(c) = self.contents.get_mut(&content) {
            c.assembly = Some(Box::new(ManifestAssembly {
                from,
                total: 0,
                data: Vec::new(),
            }));
        }
        self.send(
            from,
            now,
            Message::ManifestRequest {
                offset: 0,
                length: wire::MAX_MANIFEST_PIECE as u32,
            },
        );
    }
}
