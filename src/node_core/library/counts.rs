//! Counts of the library's contents, for `/metrics` (http.md section 5).

use super::Library;

/// Contents by state, peers, chunk checks and bans, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Files and folders added here and shared.
    pub shared: u64,
    /// Downloads finished (and shared on).
    pub downloaded: u64,
    /// Downloads fetching chunks.
    pub downloading: u64,
    /// Downloads still looking for providers or their manifest.
    pub searching: u64,
    /// Downloads paused (by the user, or a full disk).
    pub paused: u64,
    /// Wire connections of the transfers (set-ups included).
    pub peers: u64,
    /// Chunks checked against their manifest: `[verified, failed]`.
    pub chunk_checks: [u64; 2],
    /// Addresses banned for sending bad data.
    pub banned: u64,
    /// Wire connections open by how they were made, `[direct, mapped, punched, relayed]`
    /// (NAT traversal's, filled in by the node core).
    pub connections: [u64; 4],
}

impl Library {
    /// The counts now.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            chunk_checks: self.engine.chunk_checks,
            banned: self.engine.banned().count() as u64,
            ..Counts::default()
        };
        // Shares are counted, not visited: a library of 100,000 is counted every view.
        c.downloaded = self.entries.downloaded_count() as u64;
        c.shared = (self.entries.len() - self.entries.download_count()) as u64 - c.downloaded;
        for (id, d) in self.entries.downloads() {
            let slot = if d.paused.is_some() {
                &mut c.paused
            } else {
                match self.engine.progress(id) {
                    Some(p) if p.has_manifest => &mut c.downloading,
                    _ => &mut c.searching,
                }
            };
            *slot += 1;
        }
        c.peers = self.engine.active_content_conns() as u64;
        c
    }
}
