//! What `peershare get` shows while it waits: a line built from successive `transfer_status`
//! replies. Pure (no terminal, no clock of its own), so the rules are unit-tested:
//!
//! - the rate counts only bytes that arrived while this `get` watched (a reattached `get`
//!   never divides what was already there by a few milliseconds);
//! - nothing verified for [`STALL_AFTER`]: "stalled", with no rate and no ETA;
//! - before the size is known (no manifest yet): "searching", not a bar;
//! - units are decimal (KB = 1000 B, MB/s = 10^6 B/s), like the limits users type.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// No verified byte for this long: the download shows as stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// The rate is measured over about this long (long enough to span several 256 KiB chunks at
/// modest rates, short enough to follow a limit changed live).
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A rate needs samples spread over at least this long.
const MIN_RATE_SPAN: Duration = Duration::from_millis(900);

/// One `transfer_status` entry, as far as the display needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The file name, once known.
    pub name: Option<String>,
    /// The manifest is in (so `size` is real).
    pub has_manifest: bool,
    /// Total size.
    pub size: u64,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Connected peers.
    pub peers: u64,
    /// A folder's files: (verified, all); `None` for a file.
    pub files: Option<(u64, u64)>,
}

impl Seen {
    /// Reads the fields of one entry of `transfer_status`'s `transfers`.
    pub fn from_json(t: &serde_json::Value) -> Seen {
        Seen {
            name: t["name"].as_str().map(str::to_owned),
            has_manifest: t["has_manifest"].as_bool().unwrap_or(false),
            size: t["size"].as_u64().unwrap_or(0),
            have_bytes: t["have_bytes"].as_u64().unwrap_or(0),
            peers: t["peers"].as_u64().unwrap_or(0),
            files: t["num_files"]
                .as_u64()
                .map(|n| (t["files_done"].as_u64().unwrap_or(0), n)),
        }
    }
}

/// What the watcher has seen so far.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    /// (when, verified bytes), oldest first, over about [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64)>,
    /// When the verified count last changed (or watching began).
    last_change: Instant,
    last: Option<Seen>,
}

/// What to draw.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// No size yet: a spinner and this text.
    Searching(String),
    /// A bar at `have` of `size`, then this text.
    Bar {
        /// Verified bytes.
        have: u64,
        /// Total.
        size: u64,
        /// Sizes, rate or "stalled", ETA, peers.
        text: String,
    },
}

impl Watch {
    /// Starts watching at `now`.
    pub fn new(now: Instant) -> Watch {
        Watch {
            started: now,
            samples: VecDeque::new(),
            last_change: now,
            last: None,
        }
    }

    /// Records a status reply.
    pub fn observe(&mut self, now: Instant, seen: Seen) {
        let changed = self
            .last
            .as_ref()
            .is_none_or(|l| l.have_bytes != seen.have_bytes);
        // The first reply is the baseline, not an arrival: a reattached download's bytes
        // were there before we looked.
        if changed && self.last.is_some() {
            self.last_change = now;
        }
        // Fewer bytes than before (chunks found damaged on disk at the finish are fetched
        // again):
        // earlier samples say nothing about the rate any more.
        if self
            .samples
            .back()
            .is_some_and(|&(_, b)| b > seen.have_bytes)
        {
            self.samples.clear();
        }
        self.samples.push_back((now, seen.have_bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| now.saturating_duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        self.last = Some(seen);
    }

    /// The last status seen.
    pub fn last(&self) -> Option<&Seen> {
        self.last.as_ref()
    }

    /// Verified bytes per second over the window, if measured long enough.
    pub fn rate(&self) -> Option<f64> {
        let (t0, b0) = *self.samples.front()?;
        let (t1, b1) = *self.samples.back()?;
        let span = t1.saturating_duration_since(t0);
        (span >= MIN_RATE_SPAN).then(|| b1.saturating_sub(b0) as f64 / span.as_secs_f64())
    }

    /// Whether nothing was verified for [`STALL_AFTER`].
    pub fn stalled(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_change) >= STALL_AFTER
    }

    /// The line to show at `now`.
    pub fn line(&self, now: Instant) -> Line {
        let Some(s) = &self.last else {
            return Line::Searching("asking the node…".into());
        };
        let peers = peers(s.peers);
        if !s.has_manifest {
            let waited = now.saturating_duration_since(self.started).as_secs();
            let text = if s.peers == 0 {
                format!("searching the DHT for providers… {waited} s")
            } else {
                format!("fetching the file's description from {peers}… {waited} s")
            };
            return Line::Searching(text);
        }
        let name = s.name.as_deref().unwrap_or("");
        let files = s
            .files
            .map(|(done, n)| format!(" {done}/{n} files"))
            .unwrap_or_default();
        let sizes = format!(
            "{}/{}{files}",
            format_bytes(s.have_bytes),
            format_bytes(s.size)
        );
        let text = if s.have_bytes >= s.size {
            format!("{name} {sizes}, verifying and saving, {peers}")
        } else if self.stalled(now) {
            format!("{name} {sizes} stalled, {peers}")
        } else {
            match self.rate() {
                Some(r) if r >= 1.0 => {
                    let left = s.size.saturating_sub(s.have_bytes) as f64 / r;
                    format!(
                        "{name} {sizes} {} eta {}, {peers}",
                        format_rate(r),
                        format_eta(left)
                    )
                }
                _ => format!("{name} {sizes}, {peers}"),
            }
        };
        Line::Bar {
            have: s.have_bytes,
            size: s.size,
            text,
        }
    }
}

/// "1 peer", "2 peers".
pub fn peers(n: u64) -> String {
    if n == 1 {
        "1 peer".into()
    } else {
        format!("{n} peers")
    }
}

/// A byte count in decimal units: `999 B`, `12.3 KB`, `47.8 MB`, `1.07 GB`.
pub fn format_bytes(n: u64) -> String {
    let x = n as f64;
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} KB", x / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", x / 1e6),
        _ => format!("{:.2} GB", x / 1e9),
    }
}

/// A rate in decimal units per second (the units limits are given in).
pub fn format_rate(bytes_per_sec: f64) -> String {
    // Whole bytes: a rate is never precise below that.
    format!("{}/s", format_bytes(bytes_per_sec.round() as u64))
}

/// `12s`, `3m05s`, `2h07m`.
pub fn format_eta(secs: f64) -> String {
    let s = secs.ceil().clamp(0.0, 99.0 * 3600.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(have: u64, size: u64, peers: u64) -> Seen {
        Seen {
            name: Some("f.bin".into()),
            has_manifest: true,
            size,
            have_bytes: have,
            peers,
            files: None,
        }
    }

    fn text(l: Line) -> String {
        match l {
            Line::Searching(t) | Line::Bar { text: t, .. } => t,
        }
    }

    /// A folder's line counts its verified files beside its bytes, read from
    /// `transfer_status`'s `files_done` and `num_files`.
    #[test]
    fn a_folder_shows_its_files() {
        let t = Instant::now();
        let mut w = Watch::new(t);
        let entry = serde_json::json!({
            "name": "Pack", "has_manifest": true, "size": 2_000_000, "have_bytes": 500_000,
            "peers": 1, "num_files": 40, "files_done": 10,
        });
        w.observe(t, Seen::from_json(&entry));
        let line = text(w.line(t));
        assert!(
            line.starts_with("Pack 500.0 KB/2.0 MB 10/40 files"),
            "{line}"
        );
        let file = serde_json::json!({ "name": "f", "has_manifest": true, "size": 10 });
        assert_eq!(Seen::from_json(&file).files, None);
    }

    /// Reattaching to a download that already has 900 MB: the rate is what arrives while
    /// watching (20 MB/s), not 900 MB over the first poll.
    #[test]
    fn a_reattached_download_counts_only_new_bytes() {
        let t = Instant::now();
        let mut w = Watch::new(t);
        w.observe(t, seen(900_000_000, 1_000_000_000, 3));
        assert!(w.rate().is_none());
        let ms = Duration::from_millis;
        w.observe(t + ms(200), seen(904_000_000, 1_000_000_000, 3));
        assert!(w.rate().is_none(), "too short to measure");
        for i in 2..=10u64 {
            w.observe(
                t + ms(200 * i),
                seen(900_000_000 + 4_000_000 * i, 1_000_000_000, 3),
            );
        }
        let r = w.rate().unwrap();
        assert!((r - 20e6).abs() < 1e3, "{r}");
        assert_eq!(
            text(w.line(t + ms(2000))),
            "f.bin 940.0 MB/1.00 GB 20.0 MB/s eta 3s, 3 peers"
        );
    }

    /// Nothing verified for a few seconds: "stalled", no rate, no ETA; bytes again: a rate.
    #[test]
    fn a_download_with_no_bytes_arriving_is_stalled() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut w = Watch::new(t);
        w.observe(t, seen(1_000_000, 10_000_000, 1));
        w.observe(t + s(1), seen(2_000_000, 10_000_000, 1));
        for i in 2..=7 {
            w.observe(t + s(i), seen(2_000_000, 10_000_000, 0));
        }
        assert!(w.stalled(t + s(7)));
        assert_eq!(
            text(w.line(t + s(7))),
            "f.bin 2.0 MB/10.0 MB stalled, 0 peers"
        );
        w.observe(t + s(8), seen(3_000_000, 10_000_000, 1));
        assert!(!w.stalled(t + s(8)));
        assert!(text(w.line(t + s(8))).contains("eta"));
    }

    /// No manifest yet: a search line, never a full `0 B/0 B` bar.
    #[test]
    fn before_the_size_is_known_it_searches() {
        let t = Instant::now();
        let mut w = Watch::new(t);
        let s = Seen::default();
        w.observe(t, s.clone());
        let l = w.line(t + Duration::from_secs(12));
        assert_eq!(
            l,
            Line::Searching("searching the DHT for providers… 12 s".into())
        );
        w.observe(t, Seen { peers: 1, ..s });
        assert!(text(w.line(t)).contains("from 1 peer…"));
    }

    #[test]
    fn units_are_decimal() {
        assert_eq!(format_rate(50e6), "50.0 MB/s");
        assert_eq!(format_rate(47.8 * 1024.0 * 1024.0), "50.1 MB/s");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 KB");
        assert_eq!(format_bytes(1_073_741_824), "1.07 GB");
        assert_eq!(format_eta(0.2), "1s");
        assert_eq!(format_eta(185.0), "3m05s");
        assert_eq!(format_eta(7_620.0), "2h07m");
        assert_eq!(peers(1), "1 peer");
        assert_eq!(peers(0), "0 peers");
    }
}
