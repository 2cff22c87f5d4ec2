use super::walk::quote;
use super::*;
use crate::id::Id;
use proptest::prelude::*;
use std::net::SocketAddr;

/// The leaf fields' (offset, length), in order; checks that groups add up.
fn leaves(fields: &[Field], out: &mut Vec<(usize, usize)>) {
    for f in fields {
        if f.children.is_empty() {
            out.push((f.offset, f.len));
        } else {
            assert_eq!(
                f.children.iter().map(|c| c.len).sum::<usize>(),
                f.len,
                "{}",
                f.name
            );
            leaves(&f.children, out);
        }
    }
}

/// The leaves cover the input exactly once, in order.
pub(super) fn assert_covers(e: &Explanation) {
    let mut l = Vec::new();
    for m in &e.messages {
        leaves(&m.fields, &mut l);
    }
    let mut at = 0;
    for (off, len) in l {
        assert_eq!(off, at, "gap or overlap at {at}:\n{e}");
        at += len;
    }
    assert_eq!(at, e.input_len, "not all bytes covered:\n{e}");
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn frame(m: &wire::Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v);
    v
}

const PING: &str = "50530101000102030405060708\
                    1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn ping_is_explained_field_by_field() {
    let e = explain(&h(PING));
    assert!(e.is_valid() && e.layout_agrees);
    assert_eq!(e.kind, Kind::Dht);
    assert_covers(&e);
    let m = &e.messages[0];
    assert_eq!(m.name, "PING");
    let names: Vec<&str> = m.fields.iter().map(|f| &*f.name).collect();
    assert_eq!(
        names,
        ["magic", "version", "type", "flags", "txid", "sender_id"]
    );
    assert_eq!(m.fields[4].value, "0x0102030405060708");
    assert_eq!(m.fields[5].value, "11".repeat(32));
    assert_eq!(summarize(&h(PING)), "PING tx=0102… from=1111…");
}

/// The flags value names bits 1 and 2 on the types that define them (dht.md section 2) and
/// calls them reserved elsewhere.
#[test]
fn flags_are_named_by_the_type() {
    let flags_of = |hex_dg: &str| {
        let e = explain(&h(hex_dg));
        assert!(e.is_valid(), "{e}");
        e.messages[0].fields[3].value.clone()
    };
    let key = "55".repeat(32);
    let get = format!("50530105040102030405060708{}{key}", "11".repeat(32));
    assert_eq!(flags_of(&get), "0x04 PROVIDER_IDS");
    let ping = format!("50530101060102030405060708{}", "11".repeat(32));
    assert_eq!(flags_of(&ping), "0x06 reserved bits 0x06 (ignored)");
    let ping = format!("50530101030102030405060708{}", "11".repeat(32));
    assert_eq!(
        flags_of(&ping),
        "0x03 NOT_REACHABLE, reserved bits 0x02 (ignored)"
    );
}

#[test]
fn truncated_pong_names_offset_and_field() {
    // dht-invalid.txt, pong-without-port: the address lacks its 2-byte port.
    let b = h(&format!(
        "5053010200{}{}04c6336407",
        "0102030405060708",
        "ee".repeat(32)
    ));
    let e = explain(&b);
    assert!(!e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("UnexpectedEnd", "observed", 50)
    );
    assert_eq!(err.decode_error, Datagram::decode(&b).unwrap_err());
    assert!(e
        .to_string()
        .contains("MALFORMED at offset 50, field `observed`"));
}

#[test]
fn long_lists_fold_after_three_items() {
    let addr: SocketAddr = "[2001:db8::1]:4001".parse().unwrap();
    let contacts = (0..20u8)
        .map(|i| dht::Contact {
            id: Id([i; 32]),
            addr,
        })
        .collect();
    let msg = dht::Message::Nodes { contacts };
    let d = Datagram {
        flags: 0,
        txid: 1,
        sender: Id([1; 32]),
        msg,
    };
    let e = explain(&d.encode());
    assert!(e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    let list = e.messages[0]
        .fields
        .iter()
        .find(|f| f.name == "contacts")
        .unwrap();
    assert_eq!(list.children.len(), 4);
    assert_eq!(
        (&*list.children[3].name, &*list.children[3].value),
        ("contacts 4-20", "17 more contacts")
    );
    assert_eq!(list.children[0].children[1].value, "[2001:db8::1]:4001");
}

#[test]
fn a_stream_of_frames_and_a_cut_last_one() {
    let mut s = frame(&wire::Message::Have(9));
    s.extend(frame(&wire::Message::Request(3)));
    s.extend(frame(&wire::Message::Piece {
        chunk: 3,
        data: b"hello".to_vec(),
    }));
    let whole = explain(&s);
    assert!(whole.is_valid() && whole.layout_agrees);
    assert_covers(&whole);
    let names: Vec<&str> = whole.messages.iter().map(|m| &*m.name).collect();
    assert_eq!(names, ["HAVE", "REQUEST", "PIECE"]);
    let cut = explain(&s[..s.len() - 2]);
    let inc = Incomplete {
        offset: 18,
        have: 12,
        needed: 2,
        at_least: false,
    };
    assert_eq!(cut.incomplete, Some(inc));
    assert!(cut.error.is_none() && !cut.is_valid() && cut.layout_agrees);
    assert_covers(&cut);
    assert_eq!(summarize(&s[..9]), "HAVE chunk=9");
    assert_eq!(summarize(&s), "HAVE chunk=9 (+23 more bytes)");
    assert_eq!(summarize(&s[18..]), "PIECE chunk=3 len=5");
    assert_eq!(
        summarize(&s[18..20]),
        "incomplete wire frame: needs at least 2 more byte(s)"
    );
}

#[test]
fn a_long_capture_folds_the_frames_past_the_limit() {
    let n = MAX_FRAMES_SHOWN + 5;
    let s: Vec<u8> = (0..n)
        .flat_map(|_| frame(&wire::Message::KeepAlive))
        .collect();
    let e = explain(&s);
    assert!(e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    assert_eq!((e.frames, e.messages.len()), (n, MAX_FRAMES_SHOWN + 1));
    let mut cut = s.clone();
    cut.extend([0, 0, 0, 5, 6]); // a HAVE without its chunk index
    let e = explain(&cut);
    assert_eq!((e.frames, e.messages.len()), (n + 1, MAX_FRAMES_SHOWN + 2));
    assert_eq!(e.incomplete.map(|i| i.needed), Some(4));
    assert_covers(&e);
    assert!(e
        .to_string()
        .contains("\nframes 10001-10005, offset 50000, 25 bytes: "));
    assert!(e
        .to_string()
        .contains("\nframe 10006, offset 50025, 5 bytes: "));
}

#[test]
fn an_error_in_a_later_frame_keeps_the_earlier_ones() {
    let mut s = frame(&wire::Message::KeepAlive);
    // PEERS, one entry of address family 5 (and an ID, so the count fits).
    s.extend(h("000000290f0105c000020a0fa1"));
    s.extend([0x22; 32]);
    s.extend([0, 0, 0, 1, 0]);
    let e = explain(&s);
    assert!(e.layout_agrees);
    assert_covers(&e);
    assert_eq!(e.messages.len(), 2);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("BadAddressFamily", "peer", 11)
    );
    assert_eq!(e.messages[1].fields.last().unwrap().name, "(not decoded)");
}

#[test]
fn manifest_shows_its_content_id_and_bad_fields() {
    let m = Manifest::for_data_with_chunk_size(&[7u8; 100_000], 16384).unwrap();
    let e = explain(&m.encode());
    assert_eq!(e.kind, Kind::Manifest);
    assert!(e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    assert!(e.messages[0].notes[0].ends_with(&m.content_id().to_hex()));
    let mut bad = m.encode();
    bad[13..17].copy_from_slice(&300_000u32.to_be_bytes());
    let e = explain(&bad);
    let err = e.error.as_ref().unwrap();
    assert_eq!(
        (err.kind, &*err.field, err.offset),
        ("InvalidValue", "chunk_size", 13)
    );
    assert!(e.layout_agrees);
    assert_covers(&e);
}

#[test]
fn bare_handshake_body() {
    let hs = wire::Handshake::new(Id([0x11; 32]), Id([0x55; 32]), 4001);
    let f = frame(&wire::Message::Handshake(hs));
    let body = &f[5..];
    let e = explain(body);
    assert_eq!(e.kind, Kind::Handshake);
    assert!(e.is_valid() && e.layout_agrees);
    assert_covers(&e);
    assert_eq!(
        summarize(body),
        "HANDSHAKE node=1111… content=5555… port=4001"
    );
    let e = explain(&body[..70]);
    assert_eq!(e.error.as_ref().unwrap().field, "listen_port");
}

#[test]
fn hex_as_people_paste_it() {
    assert_eq!(
        parse_hex("0x50 53:01\n0A").unwrap(),
        vec![0x50, 0x53, 1, 10]
    );
    assert_eq!(parse_hex("0x5053").unwrap(), vec![0x50, 0x53]);
    assert!(parse_hex("505").is_err());
    assert!(parse_hex("zz").is_err());
    assert!(parse_hex("  ").is_err());
}

#[test]
fn text_from_peers_cannot_drive_the_terminal() {
    assert_eq!(
        quote("a\u{1b}[2J\u{202e}b\"", 99),
        "\"a\\u{1b}[2J\\u{202e}b\\\"\""
    );
}

/// Explains `bytes` as `kind`: the layout agrees with the decoder and covers the input.
pub(super) fn check(bytes: &[u8], kind: Kind) {
    let e = explain_as(bytes, kind);
    assert!(
        e.layout_agrees,
        "layout and decoder disagree on {}:\n{e}",
        hex::encode(bytes)
    );
    assert_covers(&e);
    if let Some(err) = &e.error {
        assert!(err.offset <= bytes.len());
    }
    let _ = e.to_string();
    let _ = summarize_as(bytes, kind);
}

proptest! {
    #[test]
    fn layout_agrees_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), k in 0..5usize) {
        check(&bytes, [Kind::Dht, Kind::Wire, Kind::Handshake, Kind::Manifest, Kind::Tree][k]);
    }

    #[test]
    fn layout_agrees_behind_plausible_headers(t in any::<u8>(), len in 0u32..400, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Random bodies behind valid-looking headers get as far as the body checks.
        let mut f = len.to_be_bytes().to_vec();
        f.push(t % 0x12);
        f.extend_from_slice(&body);
        check(&f, Kind::Wire);
        let mut d = h(PING);
        d[3] = t;
        d.extend_from_slice(&body);
        check(&d, Kind::Dht);
        let mut m = manifest::MAGIC.to_vec();
        m.push(1);
        m.extend_from_slice(&body);
        check(&m, Kind::Manifest);
    }
}

/// A trace line says which kind of manifest the first MANIFEST_DATA carries.
#[test]
fn manifest_data_lines_name_the_kind_of_manifest() {
    let line = |data: &[u8], offset: u32| {
        let m = wire::Message::ManifestData {
            total_len: 1000,
            offset,
            data: data.to_vec(),
        };
        summarize_as(&frame(&m), Kind::Wire)
    };
    assert!(line(b"PSTR\x01rest", 0).ends_with("(a folder's tree manifest)"));
    assert!(line(b"PSMF\x01rest", 0).ends_with("(a file's manifest)"));
    assert!(
        line(b"PSTR\x01rest", 8).ends_with("len=9"),
        "only the first piece"
    );
    assert!(line(b"??", 0).ends_with("len=2"));
}
