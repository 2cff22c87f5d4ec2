//! What a swarm run measured, the ideal bound it is compared with, and the two runs of a
//! comparison side by side.
//!
//! Everything except the wall-clock time is a function of the scenario and its seed.

use std::fmt;
use std::time::Duration;

use super::world::{Outcome, Sample};
use crate::sim::report::Percentiles;

/// Lower bounds on completion times, from the capacities alone (no protocol can beat them).
///
/// - **Seeder alone:** every byte of the file must leave the seeder once, so nobody finishes
///   before `size / seeder upload` after the start.
/// - **Own download:** leecher `i` cannot finish before `join_i + size / download_i`.
/// - **All uploads busy:** the leechers receive `leechers × size` bytes in all, and at time
///   `t` at most `seeder upload + Σ upload of the leechers joined by t` bytes per second
///   can be sent; the last completion comes no earlier than the `T` where that capacity,
///   integrated from 0, reaches `leechers × size`. (Optimistic: a leecher that just joined
///   has nothing to upload yet.)
///
/// A leecher's ideal download time is `max(join_i + size / download_i, seeder alone) -
/// join_i`; the ideal last completion is the largest of the three bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdealBound {
    /// `size / seeder upload`.
    pub seeder_alone: Duration,
    /// `max_i (join_i + size / download_i)`.
    pub own_download: Duration,
    /// When the integrated upload capacity reaches `leechers × size`.
    pub all_uploads: Duration,
    /// The largest of the three: no leecher can finish later than this in the best case.
    pub last_completion: Duration,
    /// Per-leecher ideal download times.
    pub download: Percentiles<Duration>,
}

impl IdealBound {
    /// The bound for a `size`-byte file, a seeder uploading `seeder_up` B/s, and leechers
    /// given as (join time, upload, download) in B/s.
    pub fn new(size: u64, seeder_up: u64, leechers: &[(Duration, u64, u64)]) -> IdealBound {
        let secs = |bytes: u64, rate: u64| Duration::from_secs_f64(bytes as f64 / rate as f64);
        let seeder_alone = secs(size, seeder_up);
        let mut own_download = Duration::ZERO;
        let mut per = Vec::new();
        for &(join, _, down) in leechers {
            let done = (join + secs(size, down)).max(seeder_alone);
            own_download = own_download.max(join + secs(size, down));
            per.push(done - join);
        }
        // Integrate the upload capacity over the joins, in join order.
        let mut joins: Vec<(Duration, u64)> = leechers.iter().map(|l| (l.0, l.1)).collect();
        joins.sort_unstable();
        let need = size as f64 * leechers.len() as f64;
        let (mut t, mut rate, mut sent) = (0.0f64, seeder_up as f64, 0.0f64);
        for (join, up) in joins {
            let j = join.as_secs_f64();
            if sent + rate * (j - t) >= need {
                break;
            }
            sent += rate * (j - t);
            t = j;
            rate += up as f64;
        }
        let all_uploads = if need > 0.0 && rate > 0.0 {
            Duration::from_secs_f64((t + (need - sent) / rate).max(0.0))
        } else {
            Duration::ZERO
        };
        IdealBound {
            seeder_alone,
            own_download,
            all_uploads,
            last_completion: seeder_alone.max(own_download).max(all_uploads),
            download: Percentiles::of(&per),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmReport {
    /// The seeder super-seeded.
    pub super_seed: bool,
    /// Leechers in the swarm.
    pub leechers: usize,
    /// Leechers that finished (every chunk verified, file complete).
    pub completed: usize,
    /// Download times (finish − join) of the leechers that finished.
    pub download: Percentiles<Duration>,
    /// When the last leecher finished, since the start (or when the run gave up).
    pub last_completion: Duration,
    /// Size of the file.
    pub file_size: u64,
    /// PIECE bytes the seeder uploaded.
    pub seeder_bytes: u64,
    /// PIECE bytes all nodes uploaded.
    pub total_bytes: u64,
    /// Chunks in the file.
    pub chunks: usize,
    /// PIECEs the seeder sent until it had sent every chunk once (ideal: `chunks`).
    pub seeder_first_round: u64,
    /// Most PIECEs of one chunk the seeder sent.
    pub seeder_max_copies: u32,
    /// When every chunk had reached at least one leecher.
    pub swarm_complete_at: Option<Duration>,
    /// Chunks that failed verification (0 unless something is broken).
    pub bad_chunks: u64,
    /// Peers banned (0 unless something is broken).
    pub bans: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    /// The run in stretches of 10 s: upload used against capacity, joins, completions.
    pub timeline: Vec<Sample>,
    /// Wall-clock time of the run.
    pub wall: Duration,
}

impl SwarmReport {
    pub(super) fn new(super_seed: bool, file_size: u64, o: Outcome, wall: Duration) -> Self {
        let times: Vec<Duration> = o
            .joined
            .iter()
            .zip(&o.finished)
            .filter_map(|(j, f)| f.map(|f| f.saturating_sub(*j)))
            .collect();
        let completed = times.len();
        let last_completion = if completed == o.finished.len() {
            o.finished
                .iter()
                .flatten()
                .max()
                .copied()
                .unwrap_or_default()
        } else {
            o.end
        };
        SwarmReport {
            super_seed,
            leechers: o.finished.len(),
            completed,
            download: Percentiles::of(&times),
            last_completion,
            file_size,
            seeder_bytes: o.uploaded.first().copied().unwrap_or(0),
            total_bytes: o.uploaded.iter().sum(),
            chunks: o.seeder_sent.len(),
            seeder_first_round: o.seeder_first_round,
            seeder_max_copies: o.seeder_sent.iter().copied().max().unwrap_or(0),
            swarm_complete_at: o.swarm_complete_at,
            bad_chunks: o.bad_chunks,
            bans: o.bans,
            frames: o.frames,
            virtual_time: o.end,
            timeline: o.timeline,
            wall,
        }
    }

    /// The report with the wall-clock time zeroed: what must be identical for one seed.
    pub fn without_wall_time(&self) -> SwarmReport {
        SwarmReport {
            wall: Duration::ZERO,
            ..self.clone()
        }
    }

    /// Fraction of all uploaded bytes the seeder sent.
    pub fn seeder_share(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.seeder_bytes as f64 / self.total_bytes as f64
        }
    }

    /// Copies of the file the seeder uploaded.
    pub fn seeder_copies(&self) -> f64 {
        if self.file_size == 0 {
            0.0
        } else {
            self.seeder_bytes as f64 / self.file_size as f64
        }
    }

    /// Bytes uploaded over the upload capacity of the nodes that had joined, until the last
    /// completion.
    pub fn upload_used(&self) -> f64 {
        let cap: u64 = self.timeline.iter().map(|s| s.capacity).sum();
        if cap == 0 {
            0.0
        } else {
            self.total_bytes as f64 / cap as f64
        }
    }

    /// The timeline as a table, one line per sample.
    pub fn timeline_table(&self) -> String {
        let mut out =
            String::from("    until   joined  finished  upload used  seeder MB/s  swarm MB/s\n");
        for s in &self.timeline {
            let secs = super::world::SAMPLE.as_secs_f64();
            out.push_str(&format!(
                "  {:>6.0} s  {:>7}  {:>8}  {:>10.0}%  {:>11.2}  {:>10.1}\n",
                s.at.as_secs_f64(),
                s.joined,
                s.finished,
                if s.capacity == 0 {
                    0.0
                } else {
                    100.0 * s.uploaded as f64 / s.capacity as f64
                },
                s.seeder as f64 / secs / 1e6,
                s.uploaded as f64 / secs / 1e6,
            ));
        }
        out
    }

    /// Every leecher finished and nothing failed verification.
    pub fn all_complete(&self) -> bool {
        self.completed == self.leechers && self.bad_chunks == 0 && self.bans == 0
    }
}

/// Plain rarest-first and super-seeding on the same swarm, with the ideal bound.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// What the swarm is (from `SwarmScenario::describe`).
    pub scenario: String,
    /// The capacities' lower bounds.
    pub ideal: IdealBound,
    /// The seeder announces every chunk; leechers pick rarest first.
    pub plain: SwarmReport,
    /// The seeder super-seeds.
    pub super_seeding: SwarmReport,
}

fn s(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, i) = (&self.plain, &self.super_seeding, &self.ideal);
        writeln!(f, "{}", self.scenario)?;
        writeln!(
            f,
            "  ideal: the seeder sends one copy in {}; the last joiner's own download ends at {}; \
             all uploads busy until {} => last completion >= {}",
            s(i.seeder_alone),
            s(i.own_download),
            s(i.all_uploads),
            s(i.last_completion)
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, x: String, y: String, z: String| {
            writeln!(f, "  {name:<36} {x:>14} {y:>16} {z:>10}")
        };
        row(
            f,
            "",
            "rarest-first".into(),
            "+ super-seeding".into(),
            "ideal".into(),
        )?;
        row(
            f,
            "leechers completed",
            format!("{}/{}", a.completed, a.leechers),
            format!("{}/{}", b.completed, b.leechers),
            String::new(),
        )?;
        for (name, x, y, z) in [
            (
                "download time p50",
                a.download.p50,
                b.download.p50,
                i.download.p50,
            ),
            (
                "download time p90",
                a.download.p90,
                b.download.p90,
                i.download.p90,
            ),
            (
                "download time max",
                a.download.max,
                b.download.max,
                i.download.max,
            ),
            (
                "last completion (since start)",
                a.last_completion,
                b.last_completion,
                i.last_completion,
            ),
        ] {
            row(f, name, s(x), s(y), s(z))?;
        }
        row(
            f,
            "swarm held every chunk at",
            a.swarm_complete_at.map_or("never".into(), s),
            b.swarm_complete_at.map_or("never".into(), s),
            s(i.seeder_alone),
        )?;
        row(
            f,
            "seeder PIECEs until each chunk sent once",
            a.seeder_first_round.to_string(),
            b.seeder_first_round.to_string(),
            a.chunks.to_string(),
        )?;
        row(
            f,
            "seeder uploaded (copies of the file)",
            format!("{:.2}", a.seeder_copies()),
            format!("{:.2}", b.seeder_copies()),
            "1.00".into(),
        )?;
        row(
            f,
            "seeder share of all bytes uploaded",
            format!("{:.2}%", a.seeder_share() * 100.0),
            format!("{:.2}%", b.seeder_share() * 100.0),
            String::new(),
        )?;
        row(
            f,
            "most copies of one chunk from the seeder",
            a.seeder_max_copies.to_string(),
            b.seeder_max_copies.to_string(),
            "1".into(),
        )?;
        row(
            f,
            "upload capacity used (joined nodes)",
            format!("{:.0}%", a.upload_used() * 100.0),
            format!("{:.0}%", b.upload_used() * 100.0),
            String::new(),
        )?;
        row(
            f,
            "bad chunks / bans",
            format!("{} / {}", a.bad_chunks, a.bans),
            format!("{} / {}", b.bad_chunks, b.bans),
            String::new(),
        )?;
        row(
            f,
            "virtual time / wall time",
            format!(
                "{:.0} s / {:.1} s",
                a.virtual_time.as_secs_f64(),
                a.wall.as_secs_f64()
            ),
            format!(
                "{:.0} s / {:.1} s",
                b.virtual_time.as_secs_f64(),
                b.wall.as_secs_f64()
            ),
            String::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideal_bound_of_a_simple_swarm() {
        // 100 bytes, seeder 10 B/s: 10 s alone. Two leechers at 0 s, 10 B/s down, 0 up:
        // 200 bytes at 10 B/s take 20 s.
        let l = [(Duration::ZERO, 0, 10), (Duration::ZERO, 0, 10)];
        let b = IdealBound::new(100, 10, &l);
        assert_eq!(b.seeder_alone, Duration::from_secs(10));
        assert_eq!(b.own_download, Duration::from_secs(10));
        assert_eq!(b.all_uploads, Duration::from_secs(20));
        assert_eq!(b.last_completion, Duration::from_secs(20));
        // With 10 B/s of upload each, joining at 0 and 5 s: capacity 30 B/s from 5 s on.
        let l = [(Duration::ZERO, 10, 100), (Duration::from_secs(5), 10, 100)];
        let b = IdealBound::new(100, 10, &l);
        // 0-5 s: 20 B/s -> 100 B; then 30 B/s for the other 100 B: 5 + 3.33 s.
        assert!((b.all_uploads.as_secs_f64() - 8.333).abs() < 0.01, "{b:?}");
        assert_eq!(b.download.max, Duration::from_secs(10));
    }
}
