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

/// Parses a rate: `10MB/s`, `10MB`, `5MiB/s`, `500KB/s`, `1000B/s`, `1000`, `0` or
/// `unlimited` (0). Units: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (of 1024).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("ps"))
        .unwrap_or(t)
        .trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a rate (e.g. 10MB/s, 500KiB/s, 0 for unlimited)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        u => {
            return Err(format!(
                "unknown unit `{u}` in `{text}`: use B, KB, MB, GB, KiB, MiB or GiB (per second)"
            ))
        }
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || !(0.0..=1e15).contains(&bytes) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
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
