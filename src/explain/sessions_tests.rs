//! A real session (handshake and records made by `crate::secure`) put into a capture built
//! here, explained with and without its key log, and written decrypted.

use super::super::decrypted::write_decrypted;
use super::*;
use crate::capture::{ip_packet, read_capture, PcapngWriter, TCP_ACK, TCP_FIN, TCP_SYN};
use crate::identity::Identity;
use crate::proto::wire::Message;
use crate::secure::{keylog_line, Handshake, LocalKeys, Outcome};

const I: &str = "127.0.0.1:40001";
const R: &str = "127.0.0.1:8001";

/// A capture of one session: SYNs, the handshake, `frames` from the initiator in records
/// (one record each, one packet each), a PING back, FINs. Its key log line too.
fn session_capture(frames: &[Message]) -> (Vec<u8>, String) {
    let k = |s: u8| LocalKeys::new(Identity::from_secret(&[s; 32]), [s + 16; 32]).unwrap();
    let (a, b) = (k(1), k(2));
    let mut i = Handshake::initiator(&a, Some(b.node_id())).unwrap();
    let mut r = Handshake::responder(&b).unwrap();
    let (mut to_r, mut to_i) = (Vec::new(), Vec::new());
    while i.outcome() != Outcome::Finished || r.outcome() != Outcome::Finished {
        let m = i.take_output();
        to_r.push(m.clone());
        r.handle_input(&m).unwrap();
        let m = r.take_output();
        to_i.push(m.clone());
        i.handle_input(&m).unwrap();
    }
    to_r.push(i.take_output());
    let (mut si, mut sr) = (i.into_session().unwrap(), r.into_session().unwrap());
    let line = keylog_line(&si.keys).to_string();
    let (ia, ra) = (I.parse().unwrap(), R.parse().unwrap());
    let mut w = PcapngWriter::new();
    let (mut seq_i, mut seq_r) = (1000u32, 5000u32);
    let mut t = 1_000_000;
    let mut send = |w: &mut PcapngWriter, from_i: bool, flags: u8, data: &[u8]| {
        let (src, dst, seq) = if from_i {
            (ia, ra, &mut seq_i)
        } else {
            (ra, ia, &mut seq_r)
        };
        t += 10;
        w.packet(t, &ip_packet(src, dst, *seq, 0, flags, data));
        *seq = seq.wrapping_add(data.len() as u32 + u32::from(flags & (TCP_SYN | TCP_FIN) != 0));
    };
    send(&mut w, true, TCP_SYN, &[]);
    send(&mut w, false, TCP_SYN | TCP_ACK, &[]);
    for (a, b) in to_r.iter().zip(to_i.iter().chain([&Vec::new()])) {
        if !a.is_empty() {
            send(&mut w, true, TCP_ACK, a);
        }
        if !b.is_empty() {
            send(&mut w, false, TCP_ACK, b);
        }
    }
    for f in frames {
        let mut plain = Vec::new();
        f.encode(&mut plain);
        let mut rec = Vec::new();
        si.transport.seal(&plain, &mut rec).unwrap();
        send(&mut w, true, TCP_ACK, &rec);
    }
    let mut plain = Vec::new();
    Message::KeepAlive.encode(&mut plain);
    let mut rec = Vec::new();
    sr.transport.seal(&plain, &mut rec).unwrap();
    send(&mut w, false, TCP_ACK, &rec);
    send(&mut w, true, TCP_FIN | TCP_ACK, &[]);
    send(&mut w, false, TCP_FIN | TCP_ACK, &[]);
    (w.finish(), line)
}

fn frames() -> Vec<Message> {
    vec![
        Message::KeepAlive,
        Message::Request(3),
        Message::Piece {
            chunk: 3,
            data: b"the third chunk".to_vec(),
        },
    ]
}

#[test]
fn with_the_key_log_the_records_open_into_frames() {
    let (cap, line) = session_capture(&frames());
    let packets = read_capture(&cap).unwrap();
    let keys = read_keylog(&format!("# a comment\n{line}\n"));
    let rep = explain_capture(&packets, Some(&keys));
    assert_eq!(rep.sessions.len(), 1);
    let s = &rep.sessions[0];
    assert_eq!((s.kind, s.keys), (SessionKind::Secure, Keys::Found));
    assert_eq!(s.initiator, I.parse().unwrap());
    let names: Vec<_> = s.handshake.iter().map(|m| m.name).collect();
    assert_eq!(names, ["msg1", "msg2", "msg3"]);
    assert_eq!(s.handshake[0].fields[2].value, "\"PSWP\", version 3");
    let d = &s.directions[0];
    assert_eq!(d.records.len(), 3);
    let ex = d.frames.as_ref().unwrap();
    assert!(ex.valid, "{ex}");
    let got: Vec<&str> = ex.messages.iter().map(|m| &*m.name).collect();
    assert_eq!(got, ["KEEPALIVE", "REQUEST", "PIECE"]);
    let mut want = Vec::new();
    for f in frames() {
        f.encode(&mut want);
    }
    assert_eq!(d.plaintext, want);
    assert_eq!(s.directions[1].records.len(), 1);
    let text = rep.to_string();
    assert!(
        text.contains("handshake msg2 from 127.0.0.1:8001"),
        "{text}"
    );
    assert!(text.contains("PIECE"), "{text}");
}

#[test]
fn without_the_keys_the_records_stay_ciphertext() {
    let (cap, _) = session_capture(&frames());
    let packets = read_capture(&cap).unwrap();
    for keys in [None, Some(&[][..])] {
        let rep = explain_capture(&packets, keys);
        let s = &rep.sessions[0];
        assert_eq!(s.handshake.len(), 3);
        assert_eq!(s.directions[0].records.len(), 3);
        assert!(s.directions[0].frames.is_none());
        assert!(s.directions[0].plaintext.is_empty());
        let want = if keys.is_none() {
            Keys::NoKeyLog
        } else {
            Keys::NotInKeyLog
        };
        assert_eq!(s.keys, want);
        assert!(rep.to_string().contains("records stay ciphertext"));
    }
}

#[test]
fn a_wrong_key_stops_at_the_first_record() {
    let (cap, line) = session_capture(&frames());
    // The same session name, another i2r key.
    let mut bad = line.clone();
    bad.replace_range(71..72, if &line[71..72] == "0" { "1" } else { "0" });
    let keys = read_keylog(&bad);
    let packets = read_capture(&cap).unwrap();
    let rep = explain_capture(&packets, Some(&keys));
    let d = &rep.sessions[0].directions[0];
    assert!(d.plaintext.is_empty());
    assert!(d.stopped.as_deref().unwrap().contains("does not open"));
}

#[test]
fn the_decrypted_capture_carries_the_frames_in_clear() {
    let (cap, line) = session_capture(&frames());
    let packets = read_capture(&cap).unwrap();
    let keys = read_keylog(&line);
    let r = crate::capture::reassemble(&packets);
    let rep = explain_reassembled(&r, Some(&keys));
    let (out, n) = write_decrypted(&packets, &r, &rep);
    assert_eq!(n, 1);
    // Read back: one connection in clear, the frames from its first byte.
    let again = read_capture(&out).unwrap();
    let r2 = crate::capture::reassemble(&again);
    assert_eq!(r2.connections.len(), 1);
    let c = &r2.connections[0];
    assert!(c.saw_syn);
    assert_eq!(c.dirs[0].bytes, rep.sessions[0].directions[0].plaintext);
    assert_eq!(c.dirs[0].gap, None);
    let rep2 = explain_reassembled(&r2, None);
    assert_eq!(rep2.sessions[0].kind, SessionKind::Plaintext);
    assert!(
        rep2.sessions[0].directions[0]
            .frames
            .as_ref()
            .unwrap()
            .valid
    );
}

#[test]
fn garbage_never_panics() {
    let (cap, line) = session_capture(&frames());
    let keys = read_keylog(&line);
    // Every cut of the file, and bytes flipped across it.
    for n in (0..cap.len()).step_by(7) {
        if let Ok(p) = read_capture(&cap[..n]) {
            let _ = explain_capture(&p, Some(&keys)).to_string();
        }
    }
    for at in (60..cap.len()).step_by(13) {
        let mut c = cap.clone();
        c[at] ^= 0x5a;
        if let Ok(p) = read_capture(&c) {
            let r = crate::capture::reassemble(&p);
            let rep = explain_reassembled(&r, Some(&keys));
            let _ = rep.to_string();
            let _ = write_decrypted(&p, &r, &rep);
        }
    }
}
