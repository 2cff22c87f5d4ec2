//! `peershare decode`: explains a DHT datagram, wire frames, a manifest or a tree manifest
//! field by field, read from hex, a file or stdin (no node needed); with `--pcap`, the TCP
//! sessions of a capture, opened with a key log and written decrypted (secure.md section 7).

use clap::Args;

/// Options of `peershare decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Hex (spaces, colons, newlines and 0x allowed; several arguments are joined), a file
    /// (raw bytes or hex), or - for stdin
    #[arg(value_name = "HEX|FILE|-", required_unless_present = "pcap", num_args = 1..)]
    pub input: Vec<String>,
    /// A capture (pcap or pcapng, as dumpcap or tcpdump write it): explain its TCP
    /// sessions: the secure handshake, the records and, with --keylog, the wire frames
    #[arg(long, value_name = "CAPTURE", conflicts_with_all = ["input", "kind"])]
    pub pcap: Option<std::path::PathBuf>,
    /// With --pcap: a key log written by a node run with PEERSHARE_KEYLOG=FILE; the
    /// sessions it names are opened
    #[arg(long, value_name = "FILE", requires = "pcap")]
    pub keylog: Option<std::path::PathBuf>,
    /// With --pcap: write the capture decrypted to this pcapng file (each opened session a
    /// TCP connection carrying its wire frames in clear, for Wireshark's dissector)
    #[arg(
        short = 'w',
        long = "write",
        value_name = "OUT.pcapng",
        requires = "pcap"
    )]
    pub write: Option<std::path::PathBuf>,
    /// Read the input as this kind instead of guessing it from its first bytes ("PSMF" a
    /// manifest, "PSTR" a tree manifest, "PSWP" a handshake body, "PS" a DHT datagram,
    /// anything else wire frames)
    #[arg(long = "as", value_enum, value_name = "KIND")]
    pub kind: Option<DecodeKind>,
    /// Print the explanation as JSON
    #[arg(long)]
    pub json: bool,
}

/// What `peershare decode --as` can read the input as.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DecodeKind {
    /// One DHT datagram (UDP payload)
    Dht,
    /// Wire frames back to back, as on a TCP connection
    Wire,
    /// A wire HANDSHAKE body without its 5-byte frame header
    Handshake,
    /// A manifest (a file's: "PSMF")
    Manifest,
    /// A tree manifest (a shared folder's: "PSTR")
    Tree,
}

/// Most bytes `peershare decode` reads: more than the largest manifest (32 MiB + 53).
const MAX_DECODE_INPUT: u64 = 64 << 20;

/// `peershare decode`: exit status 0 for valid input, 1 for malformed or incomplete input
/// (after printing what was decoded and why it stops), 2 when there is nothing to decode.
pub(super) fn decode(args: &DecodeArgs) -> i32 {
    use crate::explain::{explain, explain_as, Kind};
    if let Some(pcap) = &args.pcap {
        return decode_capture(args, pcap);
    }
    let bytes = match decode_input(&args.input.join(" ")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("peershare decode: {e}");
            return 2;
        }
    };
    let ex = match args.kind {
        None => explain(&bytes),
        Some(DecodeKind::Dht) => explain_as(&bytes, Kind::Dht),
        Some(DecodeKind::Wire) => explain_as(&bytes, Kind::Wire),
        Some(DecodeKind::Handshake) => explain_as(&bytes, Kind::Handshake),
        Some(DecodeKind::Manifest) => explain_as(&bytes, Kind::Manifest),
        Some(DecodeKind::Tree) => explain_as(&bytes, Kind::Tree),
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&ex) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("peershare decode: {e}");
                return 2;
            }
        }
    } else {
        ex.to_string()
    };
    // Not print!: it panics when the reader has gone (`peershare decode ... | head`).
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if ex.is_valid() {
        0
    } else {
        1
    }
}

/// The bytes named by `peershare decode`'s argument: hex, a file, or `-` for stdin. A file
/// or stdin whose text is all hex is read as hex (a saved dump), otherwise as raw bytes (a
/// capture): no PeerShare message starts with a hex digit's byte.
fn decode_input(arg: &str) -> Result<Vec<u8>, String> {
    use crate::explain::parse_hex;
    use std::io::Read;
    let hex_err = match parse_hex(arg) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    let (name, source): (String, Box<dyn Read>) = if arg == "-" {
        ("stdin".into(), Box::new(std::io::stdin()))
    } else {
        match std::fs::File::open(arg) {
            Ok(f) => (format!("`{arg}`"), Box::new(f)),
            Err(e) => {
                return Err(format!(
                    "`{arg}` is neither hex ({hex_err}) nor a file ({e})"
                ))
            }
        }
    };
    let mut raw = Vec::new();
    source
        .take(MAX_DECODE_INPUT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if raw.len() as u64 > MAX_DECODE_INPUT {
        return Err(format!("{name} is larger than {MAX_DECODE_INPUT} bytes"));
    }
    if raw.is_empty() {
        return Err(format!("{name} is empty: nothing to decode"));
    }
    Ok(std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| parse_hex(t).ok())
        .unwrap_or(raw))
}

/// `peershare decode --pcap`: 0 when the capture was read (and written, with -w), 2 when a
/// file cannot be read or written or is not a capture.
fn decode_capture(args: &DecodeArgs, pcap: &std::path::Path) -> i32 {
    use crate::capture::{read_capture, reassemble, MAX_CAPTURE_LEN};
    use crate::explain::{explain_reassembled, read_keylog, write_decrypted};
    let fail = |what: String| {
        eprintln!("peershare decode: {what}");
        2
    };
    let bytes = match read_bounded(pcap, MAX_CAPTURE_LEN) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let packets = match read_capture(&bytes) {
        Ok(p) => p,
        Err(e) => return fail(format!("`{}`: {e}", pcap.display())),
    };
    let keys = match &args.keylog {
        None => None,
        Some(k) => match read_bounded(k, MAX_DECODE_INPUT) {
            Ok(t) => {
                // Session keys: wiped from memory once read.
                let t = zeroize::Zeroizing::new(t);
                Some(read_keylog(&zeroize::Zeroizing::new(
                    String::from_utf8_lossy(&t).into_owned(),
                )))
            }
            Err(e) => return fail(e),
        },
    };
    let r = reassemble(&packets);
    let report = explain_reassembled(&r, keys.as_deref());
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => return fail(e.to_string()),
        }
    } else {
        report.to_string()
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if let Some(out) = &args.write {
        let (file, n) = write_decrypted(&packets, &r, &report);
        if let Err(e) = std::fs::write(out, file) {
            return fail(format!("cannot write `{}`: {e}", out.display()));
        }
        eprintln!(
            "wrote `{}`: {n} session(s) decrypted, the other packets as captured",
            out.display()
        );
    }
    0
}

/// A file's bytes, at most `max` of them.
fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let mut b = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut b)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if b.len() as u64 > max {
        return Err(format!("`{}` is larger than {max} bytes", path.display()));
    }
    Ok(b)
}
