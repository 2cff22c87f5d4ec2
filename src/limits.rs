//! Bandwidth limits as configuration: what they are, and rates as people write them. The
//! token buckets that enforce them are the reactor's (`net::bandwidth`).

/// Direction of a transfer of bytes, from this node's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Sending.
    Up = 0,
    /// Receiving.
    Down = 1,
}

/// The limits, in bytes per second; 0 is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Whole node, sending.
    pub up: u64,
    /// Whole node, receiving.
    pub down: u64,
    /// Each transfer (content), sending.
    pub transfer_up: u64,
    /// Each transfer, receiving.
    pub transfer_down: u64,
    /// Each connection, sending.
    pub peer_up: u64,
    /// Each connection, receiving.
    pub peer_down: u64,
}

impl Limits {
    /// True if any limit applies in direction `d`.
    pub fn any(&self, d: Dir) -> bool {
        match d {
            Dir::Up => self.up > 0 || self.transfer_up > 0 || self.peer_up > 0,
            Dir::Down => self.down > 0 || self.transfer_down > 0 || self.peer_down > 0,
        }
    }
}

/// Limit changes in the order of [`Limits::FIELDS`]: `Some(rate)` sets that limit, `None`
/// leaves it as it is (an API `set_limits`, or the flags given to `peershare run`).
pub type LimitChanges = [Option<u64>; 6];

impl Limits {
    /// The limits' names, as the API and the state file spell them.
    pub const FIELDS: [&'static str; 6] = [
        "up",
        "down",
        "transfer_up",
        "transfer_down",
        "peer_up",
        "peer_down",
    ];

    /// Sets the limits that `changes` gives, leaving the others.
    pub fn apply(&mut self, changes: &LimitChanges) {
        let slots = [
            &mut self.up,
            &mut self.down,
            &mut self.transfer_up,
            &mut self.transfer_down,
            &mut self.peer_up,
            &mut self.peer_down,
        ];
        for (slot, change) in slots.into_iter().zip(changes) {
            if let Some(v) = change {
                *slot = *v;
            }
        }
    }

    /// For people: `upload 5.0 MB/s (each transfer unlimited, each peer unlimited), ...`.
    pub fn describe(&self) -> String {
        let r = |x| format_rate(x);
        format!(
            "upload {} (each transfer {}, each peer {}), download {} (each transfer {}, each peer {})",
            r(self.up),
            r(self.transfer_up),
            r(self.peer_up),
            r(self.down),
            r(self.transfer_down),
            r(self.peer_down)
        )
    }
}

/// Parses a rate as people write it, per second: `10MB/s`, `10mb`, `5M`, `5MiB/s`, `500kB`,
/// `40mbit`, `40Mbps`, `1000B/s`, `1000`, `0` or `unlimited` (0). Units are case-insensitive:
/// B, KB, MB, GB (powers of 1000, as the bar and `status` show rates), KiB, MiB, GiB (of 1024),
/// and K, M, G alone for KB, MB, GB. Bits: `bit` (`kbit`, `Mbit/s`) and `bps` (`Mbps`) are
/// divided by 8, except `Bps` with a capital B (`MBps`), which is bytes.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("`{text}` is not a rate (e.g. 10MB/s, 40mbit, 500KiB/s, 0 for unlimited)")
    })?;
    let per_unit = bytes_per_unit(unit.trim()).ok_or_else(|| {
        format!(
            "unknown unit `{}` in `{text}`: use B, KB, MB, GB, KiB, MiB, GiB (bytes) or kbit, \
             Mbit, Gbit, Mbps (bits), per second",
            unit.trim()
        )
    })?;
    let bytes = value * per_unit;
    if !bytes.is_finite() || !(0.0..=1e15).contains(&bytes) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Bytes in one `unit` (a rate's unit without its number), or None if it is not one.
fn bytes_per_unit(unit: &str) -> Option<f64> {
    let lower = unit.to_ascii_lowercase();
    let u = lower
        .strip_suffix("/s")
        .or_else(|| lower.strip_suffix("ps").filter(|_| !lower.ends_with("bps")))
        .unwrap_or(&lower);
    // Only `Bps` keeps its case: a capital B is bytes (`MBps`), any other `bps` bits.
    let (prefix, bits) = if unit.ends_with("Bps") {
        (&u[..u.len() - 3], false)
    } else if let Some(p) = u.strip_suffix("bps") {
        (p, true)
    } else if let Some(p) = u.strip_suffix("bits").or_else(|| u.strip_suffix("bit")) {
        (p, true)
    } else if let Some(p) = u.strip_suffix('b') {
        (p, false)
    } else {
        (u, false)
    };
    let mult = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(if bits { mult / 8.0 } else { mult })
}

/// A rate for people, with the exact figure: `5.0 MB/s (5000000 bytes/s)`, `unlimited`.
pub fn describe_rate(rate: u64) -> String {
    match rate {
        0 => "unlimited".into(),
        r if r < 1000 => format_rate(r),
        r => format!("{} ({r} bytes/s)", format_rate(r)),
    }
}

/// A rate for people: `12.5 MB/s`, `unlimited`.
pub fn format_rate(rate: u64) -> String {
    match rate {
        0 => "unlimited".into(),
        r if r >= 1_000_000 => format!("{:.1} MB/s", r as f64 / 1e6),
        r if r >= 1000 => format!("{:.1} KB/s", r as f64 / 1e3),
        r => format!("{r} B/s"),
    }
}
