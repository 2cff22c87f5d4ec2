//! The layout walk shared by every format: a [`Walker`] reads a region of the input with the
//! codec's own [`Reader`], in the decoder's order, and records one [`Field`] per field; where
//! the decoder would fail, it stops with a [`Stop`] that locates the error. Also the value
//! forms (hex previews, quoted text, bitfields) the tables show.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Field, SHOW_ITEMS};
use crate::id::ID_LEN;
use crate::proto::codec::{DecodeError, Reader};

/// Where a layout walk stopped: the error the decoder reports there, located.
#[derive(Debug)]
pub(super) struct Stop {
    /// The error the walk predicts (compared with the decoder's own).
    pub(super) err: DecodeError,
    /// Offset of the field it is about.
    pub(super) offset: usize,
    /// That field, as the decoder names it.
    pub(super) field: Cow<'static, str>,
    /// What the decoder expected there, and what it found.
    pub(super) expected: String,
    pub(super) found: String,
}

/// The outcome of walking part of the input.
pub(super) type Walk<T> = Result<T, Stop>;

/// A stop for `err` at `offset`, the field named as the error names it.
pub(super) fn stop(
    err: DecodeError,
    offset: usize,
    expected: impl Into<String>,
    found: impl ToString,
) -> Stop {
    Stop {
        field: error_field(&err).into(),
        err,
        offset,
        expected: expected.into(),
        found: found.to_string(),
    }
}

/// `v` as a usize if it is at most `max`, else the decoder's `LengthTooLarge` for `field`.
pub(super) fn at_most(field: &'static str, offset: usize, v: u64, max: usize) -> Walk<usize> {
    match usize::try_from(v) {
        Ok(n) if n <= max => Ok(n),
        _ => {
            let len = usize::try_from(v).unwrap_or(usize::MAX);
            let err = DecodeError::LengthTooLarge { field, len, max };
            Err(stop(err, offset, format!("at most {max}"), v))
        }
    }
}

/// The decoder's `InvalidValue` for `field` (its `reason` worded as the codec words it).
pub(super) fn invalid(
    field: &'static str,
    reason: &'static str,
    offset: usize,
    exp: &str,
    found: String,
) -> Stop {
    stop(
        DecodeError::InvalidValue { field, reason },
        offset,
        exp,
        found,
    )
}

/// Walks a region of the input with the codec's own [`Reader`], recording fields.
pub(super) struct Walker<'a> {
    pub(super) region: &'a [u8],
    /// Offset of `region` in the whole input.
    pub(super) base: usize,
    pub(super) r: Reader<'a>,
    pub(super) fields: Vec<Field>,
    /// What ends where the region ends ("datagram", "frame", ...), for messages.
    pub(super) unit: &'static str,
}

impl<'a> Walker<'a> {
    pub(super) fn new(region: &'a [u8], base: usize, unit: &'static str) -> Self {
        let r = Reader::new(region);
        Walker {
            region,
            base,
            r,
            fields: Vec::new(),
            unit,
        }
    }

    /// Offset of the next byte to read, in the whole input.
    pub(super) fn pos(&self) -> usize {
        self.base + self.r.position()
    }

    /// Offset just past the region.
    pub(super) fn end(&self) -> usize {
        self.base + self.region.len()
    }

    /// Records a field.
    pub(super) fn push(
        &mut self,
        offset: usize,
        len: usize,
        name: impl Into<Cow<'static, str>>,
        value: String,
        meaning: impl Into<Cow<'static, str>>,
    ) {
        let (name, meaning) = (name.into(), meaning.into());
        let (children, error) = (Vec::new(), false);
        self.fields.push(Field {
            offset,
            len,
            name,
            value,
            meaning,
            children,
            error,
        });
    }

    /// Takes `n` bytes for `field` (shown as `name`). When fewer remain, those become one
    /// "cut short" field and the walk stops with the reader's own error.
    pub(super) fn take(
        &mut self,
        n: usize,
        field: &'static str,
        name: &'static str,
    ) -> Walk<(usize, &'a [u8])> {
        let off = self.pos();
        let err = match self.r.take(n, field) {
            Ok(b) => return Ok((off, b)),
            Err(err) => err,
        };
        let have = self.r.remaining();
        if have > 0 {
            let b = self.r.take(have, field).unwrap_or_default();
            let value = format!("{} ({have} of {n} bytes)", hex_preview(b));
            self.push(
                off,
                have,
                name,
                value,
                format!("cut short: the {} ends inside it", self.unit),
            );
        }
        let found = format!(
            "{have} byte(s): the {} ends at offset {}",
            self.unit,
            self.end()
        );
        let exp = match name == field {
            true => format!("{n} byte(s) for `{field}`"),
            false => format!("{n} byte(s) for the {name} of `{field}`"),
        };
        Err(stop(err, off, exp, found))
    }

    /// A big-endian unsigned integer of `n` bytes (at most 8) as one field.
    pub(super) fn int(
        &mut self,
        n: usize,
        field: &'static str,
        name: &'static str,
        meaning: &'static str,
        show: impl FnOnce(u64) -> String,
    ) -> Walk<(usize, u64)> {
        let (off, b) = self.take(n, field, name)?;
        let v = be(b);
        self.push(off, n, name, show(v), meaning);
        Ok((off, v))
    }

    /// An integer shown in decimal, under the decoder's name for it.
    pub(super) fn num(
        &mut self,
        n: usize,
        field: &'static str,
        meaning: &'static str,
    ) -> Walk<(usize, u64)> {
        self.int(n, field, field, meaning, |v| v.to_string())
    }

    /// A 32-byte ID or hash, shown in full hex.
    pub(super) fn id(&mut self, field: &'static str, meaning: &'static str) -> Walk<()> {
        self.bytes(ID_LEN, field, meaning)
    }

    /// `n` bytes shown in hex (a token, an ID).
    pub(super) fn bytes(
        &mut self,
        n: usize,
        field: &'static str,
        meaning: &'static str,
    ) -> Walk<()> {
        let (off, b) = self.take(n, field, field)?;
        self.push(off, n, field, hex::encode(b), meaning);
        Ok(())
    }

    /// Runs `f`, then wraps the fields it recorded (if any) into one group.
    pub(super) fn group<T>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        meaning: &'static str,
        f: impl FnOnce(&mut Self) -> Walk<(T, String)>,
    ) -> Walk<T> {
        let start = self.pos();
        let mark = self.fields.len();
        let res = f(self);
        let children: Vec<Field> = self.fields.drain(mark.min(self.fields.len())..).collect();
        let (value, out) = match res {
            Ok((t, v)) => (v, Ok(t)),
            Err(s) => ("(incomplete: see the error)".to_owned(), Err(s)),
        };
        if !children.is_empty() {
            let (name, meaning, len) = (name.into(), meaning.into(), self.pos() - start);
            self.fields.push(Field {
                offset: start,
                len,
                name,
                value,
                meaning,
                children,
                error: false,
            });
        }
        out
    }

    /// An address (overview.md, section 4): family, IP, port. The codec's own
    /// [`Reader::socket_addr`] runs on the same bytes, so the error is exactly its error.
    pub(super) fn address(
        &mut self,
        field: &'static str,
        name: impl Into<Cow<'static, str>>,
        meaning: &'static str,
    ) -> Walk<SocketAddr> {
        let real = Reader::new(self.region.get(self.r.position()..).unwrap_or_default())
            .socket_addr(field);
        self.group(name, meaning, |w| {
            let family_meaning = "4 = IPv4 (4 address bytes follow), 6 = IPv6 (16)";
            let (off, fam) = w.int(1, field, "family", family_meaning, family_value)?;
            let located = |err: DecodeError, exp: &str, found: String| {
                let mut s = stop(err, off, exp, found);
                s.field = field.into();
                s
            };
            let ip_len = match (fam, &real) {
                (4, _) => 4,
                (6, _) => 16,
                (_, Err(e)) => {
                    return Err(located(e.clone(), "4 (IPv4) or 6 (IPv6)", fam.to_string()))
                }
                // Unreachable: the codec refuses every other family.
                (_, Ok(_)) => {
                    let err = DecodeError::BadAddressFamily(u8::try_from(fam).unwrap_or(0));
                    return Err(located(err, "4 or 6", fam.to_string()));
                }
            };
            let (ip_off, b) = w.take(ip_len, field, "ip")?;
            let ip = match <[u8; 4]>::try_from(b) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default())),
            };
            w.push(
                ip_off,
                ip_len,
                "ip",
                ip.to_string(),
                "the IP address, network byte order",
            );
            if let Err(e @ DecodeError::InvalidValue { .. }) = &real {
                let found = format!("the IPv4-mapped address {ip} sent as family 6");
                return Err(located(
                    e.clone(),
                    "IPv4 sent as family 4 (one address, one encoding)",
                    found,
                ));
            }
            let (_, port) = w.int(2, field, "port", "the port, u16 big-endian", |p| {
                p.to_string()
            })?;
            let addr = SocketAddr::new(ip, u16::try_from(port).unwrap_or_default());
            Ok((addr, addr.to_string()))
        })
    }

    /// A list of `n` items in one group. Past the first [`SHOW_ITEMS`], items that decode are
    /// folded into one summary row, so 20 contacts or 50 providers stay readable.
    pub(super) fn list(
        &mut self,
        n: usize,
        name: &'static str,
        meaning: &'static str,
        noun: &'static str,
        item: impl FnMut(&mut Self, usize) -> Walk<()>,
    ) -> Walk<()> {
        let plural = format!("{noun}s");
        self.list_keeping(n, name, meaning, [noun, &plural], |_| false, item)
    }

    /// [`Walker::list`], also showing the items for which `keep` is true (an item an error
    /// is about) between the folded rows. `nouns`: an item, several items. Each item records
    /// one field (a group, or a plain field).
    pub(super) fn list_keeping(
        &mut self,
        n: usize,
        name: &'static str,
        meaning: &'static str,
        nouns: [&str; 2],
        keep: impl Fn(usize) -> bool,
        mut item: impl FnMut(&mut Self, usize) -> Walk<()>,
    ) -> Walk<()> {
        self.group(name, meaning, |w| {
            let fold = n > SHOW_ITEMS + 1;
            // The folded row being built, and the index of its first item.
            let mut summary: Option<(Field, usize)> = None;
            for i in 0..n {
                let before = w.fields.len();
                let res = item(w, i);
                if res.is_err() || !fold || i < SHOW_ITEMS || keep(i) {
                    // Shown, after the items folded before it (the failing item included).
                    if let Some((s, _)) = summary.take() {
                        w.fields.insert(before.min(w.fields.len()), s);
                    }
                    res?;
                    continue;
                }
                // Items are contiguous, so the folded ones are one byte range.
                let Some(it) = w.fields.pop() else { continue };
                let (s, first) = summary.get_or_insert_with(|| {
                    let f = Field {
                        offset: it.offset,
                        len: 0,
                        name: Cow::Borrowed(""),
                        value: String::new(),
                        meaning: "not shown one by one".into(),
                        children: Vec::new(),
                        error: false,
                    };
                    (f, i)
                });
                s.len += it.len;
                let [one, many] = nouns;
                let k = i + 1 - *first;
                s.name = match k {
                    1 => format!("{one} {}", i + 1),
                    _ => format!("{many} {}-{}", *first + 1, i + 1),
                }
                .into();
                s.value = format!("{k} more {}", if k == 1 { one } else { many });
            }
            w.fields.extend(summary.map(|(s, _)| s));
            let noun = if n == 1 { nouns[0] } else { nouns[1] };
            Ok(((), format!("{n} {noun}")))
        })
    }

    /// A `u8` count at most `max`, then the check that `n` items of at least `min_each`
    /// bytes fit before anything is sized by it (as the DHT and PEERS decoders check).
    pub(super) fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_each: usize,
        meaning: &'static str,
    ) -> Walk<usize> {
        let (off, n) = self.num(1, field, meaning)?;
        let n = at_most(field, off, n, max)?;
        let (need, rem) = (n.saturating_mul(min_each), self.r.remaining());
        if need > rem {
            let err = DecodeError::UnexpectedEnd {
                field,
                needed: need - rem,
            };
            let exp = format!("room for {n} item(s): at least {need} byte(s) after the count");
            return Err(stop(
                err,
                off,
                exp,
                format!("{rem} byte(s) left in the {}", self.unit),
            ));
        }
        Ok(n)
    }

    /// A `u8` length at most `max`, then that many bytes of UTF-8; returns the length's
    /// offset and value.
    pub(super) fn text(
        &mut self,
        len_field: &'static str,
        field: &'static str,
        max: usize,
        meaning: &'static str,
    ) -> Walk<(usize, usize)> {
        let (off, len) = self.num(1, len_field, "length of the text in bytes")?;
        let len = at_most(len_field, off, len, max)?;
        let (toff, b) = self.take(len, field, field)?;
        match std::str::from_utf8(b) {
            Ok(t) if len > 0 => self.push(toff, len, field, quote(t, usize::MAX), meaning),
            Ok(_) => {}
            Err(e) => {
                self.push(
                    toff,
                    len,
                    field,
                    format!("{} (not UTF-8)", hex_preview(b)),
                    meaning,
                );
                let found = format!(
                    "a byte that is not UTF-8 at offset {}",
                    toff + e.valid_up_to()
                );
                return Err(invalid(field, "not valid UTF-8", toff, "UTF-8 text", found));
            }
        }
        Ok((off, len))
    }

    /// Fails like [`Reader::finish`] when bytes remain, showing them as one field.
    pub(super) fn finish(&mut self) -> Walk<()> {
        let n = self.r.remaining();
        if n == 0 {
            return Ok(());
        }
        let off = self.pos();
        let b = self.r.take(n, "trailing").unwrap_or_default();
        let meaning = format!(
            "after the end of the message: the {} should end at {off}",
            self.unit
        );
        self.push(off, n, "(trailing bytes)", hex_preview(b), meaning);
        let exp = format!("the {} to end at offset {off}", self.unit);
        Err(stop(
            DecodeError::TrailingBytes(n),
            off,
            exp,
            format!("{n} more byte(s)"),
        ))
    }
}

/// A big-endian unsigned integer from up to 8 bytes.
pub(super) fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

/// The field an error is about, as the decoder names it.
pub(super) fn error_field(e: &DecodeError) -> &'static str {
    use DecodeError::*;
    match e {
        UnexpectedEnd { field, .. } | LengthTooLarge { field, .. } | InvalidValue { field, .. } => {
            field
        }
        BadMagic(_) => "magic",
        UnsupportedVersion(_) => "version",
        UnknownMessageType(_) => "type",
        BadAddressFamily(_) => "family",
        TrailingBytes(_) => "(trailing bytes)",
        TooLarge { .. } => "length",
    }
}

// Value forms.

/// Text from a peer, quoted, with everything that could act on a terminal escaped: control
/// characters (an ESC could rewrite the screen) and bidirectional overrides (which can make
/// `gpj.exe` read as `exe.jpg`). At most `max_chars` characters, then an ellipsis.
pub(super) fn quote(t: &str, max_chars: usize) -> String {
    let mut s = String::with_capacity(t.len().min(max_chars) + 2);
    s.push('"');
    for (i, c) in t.chars().enumerate() {
        if i == max_chars {
            s.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
        } else {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
    }
    s.push('"');
    s
}

/// Hex of the first 16 bytes, then an ellipsis if there are more.
pub(super) fn hex_preview(b: &[u8]) -> String {
    const MAX: usize = 16;
    match b.get(..MAX) {
        Some(head) if b.len() > MAX => format!("{}…", hex::encode(head)),
        _ => hex::encode(b),
    }
}

/// Bulk data: its size, the first bytes in hex, and the text if it is printable text.
pub(super) fn data_value(b: &[u8]) -> String {
    let mut s = format!("{} byte(s): {}", b.len(), hex_preview(b));
    if let Ok(t) = std::str::from_utf8(b) {
        if t.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') {
            s.push(' ');
            s.push_str(&quote(t, 32));
        }
    }
    s
}

/// A magic as a quoted string if it is printable ASCII, else in hex.
pub(super) fn ascii_or_hex(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic()) {
        format!("\"{}\"", String::from_utf8_lossy(b))
    } else {
        hex::encode(b)
    }
}

fn family_value(f: u64) -> String {
    match f {
        4 => "4 (IPv4)".into(),
        6 => "6 (IPv6)".into(),
        other => format!("{other} (neither 4 nor 6)"),
    }
}

/// "4 of 11 chunks: 0-2, 9": how many chunks are present, and the first few as ranges.
pub(super) fn bits_value(bits: &[u8], count: usize) -> String {
    const MAX_RANGES: usize = 6;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let (mut ones, mut more) = (0usize, false);
    for i in (0..count).filter(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)) {
        ones += 1;
        let full = ranges.len() >= MAX_RANGES;
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ if !full => ranges.push((i, i)),
            _ => more = true,
        }
    }
    let mut s = format!("{ones} of {count} chunks");
    if ones == count && count > 0 {
        s.push_str(" (all)");
    } else if ones > 0 {
        let list: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let _ = write!(s, ": {}{}", list.join(", "), if more { ", …" } else { "" });
    }
    s
}
