//! Capture files, read for `peershare decode --pcap`: the packets of a pcap or pcapng file
//! (what dumpcap, tcpdump and Wireshark write), their IP and TCP/UDP headers, the TCP
//! connections reassembled by sequence number, and a pcapng writer for the decrypted capture.
//!
//! A capture is input from outside like any datagram: every reader here is total (a typed
//! error or a skipped packet, never a panic), allocates only what the input holds (copies of
//! its bytes, never a size read from it) and is fuzzed (tools/fuzz/fuzz_targets/capture.rs).
//! Pure: bytes in, values out; the CLI reads and writes the files.
//!
//! Files: `file.rs` the pcap and pcapng containers, `packet.rs` link layer, IP, TCP and UDP,
//! `tcp.rs` reassembly, `write.rs` the writer.

mod file;
mod packet;
mod tcp;
mod write;

pub use file::{read_capture, CaptureError, Packet};
pub use packet::{
    link_payload, parse_packet, Segment, Skip, Transport, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
pub use tcp::{reassemble, Connection, Direction, Mark, Reassembled, MAX_PENDING_SEGMENTS};
pub use write::{ip_packet, PcapngWriter, LINKTYPE_RAW, MAX_SEGMENT_PAYLOAD};

/// Largest capture file `peershare decode --pcap` reads.
pub const MAX_CAPTURE_LEN: u64 = 1 << 30;
