//! The wire codec's tests: round trips, the spec's rules for each message, hostile input.

use std::net::SocketAddr;

use super::decode::body_layout;
use super::*;
use crate::id::Id;
use crate::proto::codec::DecodeError;
use proptest::prelude::*;

fn id(b: u8) -> Id {
    Id([b; 32])
}

/// A PEERS entry at `addr` with node ID `b` x 32.
fn pex(addr: &str, b: u8) -> PexPeer {
    PexPeer {
        addr: addr.parse().unwrap(),
        node_id: id(b),
    }
}

fn enc(m: &Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v);
    v
}

/// Decodes a buffer that must hold exactly one valid frame.
fn dec(bytes: &[u8]) -> Message {
    let (m, n) = decode_frame(bytes).unwrap().expect("complete frame");
    assert_eq!(n, bytes.len());
    m
}

fn err(bytes: &[u8]) -> DecodeError {
    decode_frame(bytes).expect_err("must not decode")
}

fn frame(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    v.push(t);
    v.extend_from_slice(body);
    v
}

fn samples() -> Vec<Message> {
    let mut bf = Bitfield::new(11);
    bf.set(0);
    bf.set(10);
    vec![
        Message::KeepAlive,
        Message::Handshake(Handshake::new(id(0x11), id(0x55), 4001)),
        Message::Metadata {
            name: "holiday.mp4".into(),
        },
        Message::ManifestRequest {
            offset: 0,
            length: MAX_MANIFEST_PIECE as u32,
        },
        Message::ManifestData {
            total_len: 16,
            offset: 8,
            data: vec![1; 8],
        },
        Message::Bitfield(bf),
        Message::Bitfield(Bitfield::new(0)),
        Message::Have(7),
        Message::Request(7),
        Message::Piece {
            chunk: 7,
            data: b"hello".to_vec(),
        },
        Message::Cancel(7),
        Message::Reject {
            chunk: 7,
            reason: 200,
        },
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Peers(vec![
            pex("192.0.2.1:4001", 0x22),
            pex("[2001:db8::1]:4002", 0x33),
        ]),
        Message::Peers(vec![]),
        Message::Error {
            code: error_code::BANNED,
            text: "bad chunk".into(),
        },
        Message::Probe(0x0102_0304_0506_0708),
        Message::Relay {
            node: Id([0x33; 32]),
            nonce: 9,
        },
        Message::RelayOk,
    ]
}

#[test]
fn every_sample_round_trips() {
    for m in samples() {
        let bytes = enc(&m);
        assert_eq!(bytes.len(), m.encoded_len(), "{m:?}");
        assert_eq!(dec(&bytes), m);
        assert_eq!(frame_len_hint(&bytes), Ok(Some(bytes.len())));
    }
}

#[test]
fn every_type_is_named_and_has_a_layout() {
    let named: Vec<u8> = (0..=255u8).filter(|&t| type_name(t) != "UNKNOWN").collect();
    let laid_out: Vec<u8> = (0..=255u8).filter(|&t| body_layout(t).is_some()).collect();
    assert_eq!(named, (0..=0x13).collect::<Vec<u8>>());
    assert_eq!(named, laid_out);
    let mut sampled: Vec<u8> = samples().iter().map(Message::type_byte).collect();
    sampled.dedup();
    assert_eq!(sampled, named);
}

#[test]
fn largest_piece_fits_and_one_more_byte_does_not() {
    let m = Message::Piece {
        chunk: u32::MAX,
        data: vec![0xab; MAX_CHUNK_SIZE],
    };
    let bytes = enc(&m);
    assert_eq!(frame_len_hint(&bytes[..4]), Ok(Some(bytes.len())));
    assert_eq!(dec(&bytes), m);
    let mut over = bytes.clone();
    over.push(0);
    let len = u32::try_from(over.len() - 4).unwrap();
    over[..4].copy_from_slice(&len.to_be_bytes());
    let want = DecodeError::TooLarge {
        len: MAX_CHUNK_SIZE + 6,
        max: MAX_CHUNK_SIZE + 5,
    };
    // Refused from the 5-byte header alone, and the same for the whole frame.
    assert_eq!(decode_frame(&over[..5]), Err(want.clone()));
    assert_eq!(decode_frame(&over), Err(want));
}

#[test]
fn piece_header_matches_encode() {
    let m = Message::Piece {
        chunk: 0x01020304,
        data: vec![9; 1000],
    };
    let bytes = enc(&m);
    assert_eq!(
        piece_header(0x01020304, 1000)[..],
        bytes[..PIECE_HEADER_LEN]
    );
    // An impossible size gives a header every receiver rejects, never a wrapped length.
    let h = piece_header(1, usize::MAX);
    assert!(matches!(
        frame_len_hint(&h),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn header_errors_need_only_the_header() {
    assert_eq!(
        decode_frame(&[0, 0, 0, 0]),
        Err(DecodeError::InvalidValue {
            field: "length",
            reason: "0, but every frame holds at least its type byte"
        })
    );
    assert_eq!(
        decode_frame(&[0, 0x10, 0, 0x11]),
        Err(DecodeError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    // "GET " from an HTTP client reads as a length of 1.2 GB.
    assert!(matches!(
        decode_frame(b"GET / HTTP/1.1"),
        Err(DecodeError::TooLarge { .. })
    ));
    // The largest allowed length is only incomplete.
    assert_eq!(decode_frame(&[0, 0x10, 0, 0x10]), Ok(None));
    assert_eq!(
        frame_len_hint(&[0, 0x10, 0, 0x10]),
        Ok(Some(MAX_FRAME_LEN + 4))
    );
    assert_eq!(
        decode_frame(&[0, 0, 0, 9, 0x14]),
        Err(DecodeError::UnknownMessageType(0x14))
    );
    // A HAVE announcing a megabyte is refused before its body arrives.
    assert_eq!(
        decode_frame(&[0, 0x10, 0, 0, msg_type::HAVE]),
        Err(DecodeError::TrailingBytes((1 << 20) - 5))
    );
    assert_eq!(frame_len_hint(&[0, 0, 0]), Ok(None));
    assert_eq!(decode_frame(&[]), Ok(None));
}

#[test]
fn typed_body_errors() {
    let mut hs = enc(&Message::Handshake(Handshake::new(id(1), id(2), 0)));
    hs[5] = b'X';
    assert!(matches!(
        err(&hs),
        DecodeError::InvalidValue { field: "magic", .. }
    ));
    let mut hs = enc(&Message::Handshake(Handshake::new(id(1), id(2), 0)));
    hs[9] = 2;
    assert_eq!(err(&hs), DecodeError::UnsupportedVersion(2));
    // A later version's longer handshake still reaches the version check...
    let mut v2 = hs[5..].to_vec();
    v2.extend_from_slice(&[0; 100]);
    assert_eq!(
        err(&frame(msg_type::HANDSHAKE, &v2)),
        DecodeError::UnsupportedVersion(2)
    );
    // ... while a version 1 handshake must be exactly 72 bytes.
    v2[4] = 1;
    assert_eq!(
        err(&frame(msg_type::HANDSHAKE, &v2)),
        DecodeError::TrailingBytes(100)
    );
    // Beyond MAX_HANDSHAKE_BODY, the header alone is refused.
    let len = u32::try_from(MAX_HANDSHAKE_BODY + 2).unwrap();
    let mut h = len.to_be_bytes().to_vec();
    h.push(msg_type::HANDSHAKE);
    assert_eq!(
        decode_frame(&h),
        Err(DecodeError::TooLarge {
            len: MAX_HANDSHAKE_BODY + 2,
            max: MAX_HANDSHAKE_BODY + 1
        })
    );
    // Reserved flags are kept, not rejected.
    hs[9] = 1;
    hs[10] = 0xff;
    assert!(matches!(
        dec(&hs),
        Message::Handshake(Handshake { flags: 0xff, .. })
    ));
    // A handshake one byte short.
    let short = frame(msg_type::HANDSHAKE, &hs[5..hs.len() - 1]);
    assert_eq!(
        err(&short),
        DecodeError::UnexpectedEnd {
            field: "listen_port",
            needed: 1
        }
    );
    assert_eq!(
        err(&frame(msg_type::HAVE, &[0, 0, 1])),
        DecodeError::UnexpectedEnd {
            field: "chunk",
            needed: 1
        }
    );
    assert_eq!(
        err(&frame(msg_type::CHOKE, &[0])),
        DecodeError::TrailingBytes(1)
    );
    assert_eq!(
        err(&frame(msg_type::METADATA, &[0])),
        DecodeError::InvalidValue {
            field: "name",
            reason: "empty: a file name has at least one byte"
        }
    );
    assert!(matches!(
        err(&frame(msg_type::METADATA, &[2, 0xc3, 0x28])),
        DecodeError::InvalidValue { field: "name", .. }
    ));
    assert_eq!(
        err(&frame(msg_type::METADATA, &[1, b'a', b'b'])),
        DecodeError::TrailingBytes(1)
    );
    assert!(matches!(
        err(&frame(
            msg_type::MANIFEST_REQUEST,
            &[0, 0, 0, 0, 0, 0, 0, 0]
        )),
        DecodeError::InvalidValue {
            field: "length",
            ..
        }
    ));
    assert_eq!(
        err(&frame(
            msg_type::MANIFEST_REQUEST,
            &[0, 0, 0, 0, 0, 4, 0, 1]
        )),
        DecodeError::LengthTooLarge {
            field: "length",
            len: MAX_MANIFEST_PIECE + 1,
            max: MAX_MANIFEST_PIECE
        }
    );
    assert!(matches!(
        err(&frame(
            msg_type::MANIFEST_DATA,
            &[2, 0, 0, 0x41, 0, 0, 0, 0, 1]
        )),
        DecodeError::LengthTooLarge {
            field: "total_len",
            ..
        }
    ));
    // offset 0xffffffff + 2 bytes wraps to 1 in u32 arithmetic: must still be refused.
    assert!(matches!(
        err(&frame(
            msg_type::MANIFEST_DATA,
            &[0, 0, 0, 100, 0xff, 0xff, 0xff, 0xff, 1, 2]
        )),
        DecodeError::InvalidValue {
            field: "offset",
            ..
        }
    ));
    assert!(matches!(
        err(&frame(
            msg_type::MANIFEST_DATA,
            &[0, 0, 0, 4, 0, 0, 0, 3, 1, 2]
        )),
        DecodeError::InvalidValue {
            field: "offset",
            ..
        }
    ));
    // Exactly at the end is fine.
    assert!(matches!(
        dec(&frame(
            msg_type::MANIFEST_DATA,
            &[0, 0, 0, 4, 0, 0, 0, 2, 1, 2]
        )),
        Message::ManifestData { .. }
    ));
    assert!(matches!(
        err(&frame(msg_type::MANIFEST_DATA, &[0, 0, 0, 4, 0, 0, 0, 0])),
        DecodeError::InvalidValue { field: "data", .. }
    ));
    assert!(matches!(
        err(&frame(msg_type::PIECE, &[0, 0, 0, 1])),
        DecodeError::InvalidValue { field: "data", .. }
    ));
    assert_eq!(
        err(&frame(msg_type::BITFIELD, &[0, 0x10, 0, 1])),
        DecodeError::LengthTooLarge {
            field: "chunk_count",
            len: MAX_CHUNKS + 1,
            max: MAX_CHUNKS
        }
    );
    assert!(matches!(
        err(&frame(msg_type::BITFIELD, &[0, 0, 0, 9, 0xff, 0x40])),
        DecodeError::InvalidValue { field: "bits", .. }
    ));
    assert_eq!(
        err(&frame(msg_type::BITFIELD, &[0, 0, 0, 9, 0xff])),
        DecodeError::UnexpectedEnd {
            field: "bits",
            needed: 1
        }
    );
    assert_eq!(
        err(&frame(msg_type::BITFIELD, &[0, 0, 0, 8, 0xff, 0])),
        DecodeError::TrailingBytes(1)
    );
    assert_eq!(
        err(&frame(msg_type::PEERS, &[51])),
        DecodeError::LengthTooLarge {
            field: "peer_count",
            len: 51,
            max: MAX_PEERS
        }
    );
    assert_eq!(
        err(&frame(msg_type::ERROR, &[0, 1, 201])),
        DecodeError::LengthTooLarge {
            field: "text_len",
            len: 201,
            max: MAX_ERROR_TEXT
        }
    );
    assert_eq!(
        err(&frame(msg_type::ERROR, &[0, 1, 3, b'a'])),
        DecodeError::UnexpectedEnd {
            field: "text",
            needed: 2
        }
    );
    assert!(matches!(
        err(&frame(msg_type::ERROR, &[0, 1, 1, 0x80])),
        DecodeError::InvalidValue { field: "text", .. }
    ));
}

/// PEERS built by hand the way a hostile or out-of-date peer would send it: every
/// malformed body fails with the error and field wire.md section 4.16 names, in the
/// order it names (count, room for the count, then each entry's address and ID, then
/// trailing bytes); a count the body cannot hold is refused before any entry is read.
#[test]
fn peers_hostile_inputs() {
    let v4 = [4, 192, 0, 2, 1, 0x0f, 0xa1];
    let entry = |addr: &[u8], id: u8| [addr, &[id; 32]].concat();
    let body = |n: u8, parts: &[&[u8]]| [&[n][..], &parts.concat()].concat();
    let peers = |b: &[u8]| err(&frame(msg_type::PEERS, b));
    // Count first: above 50 is refused whatever follows.
    let e = peers(&body(51, &[&entry(&v4, 1)]));
    assert!(matches!(e, DecodeError::LengthTooLarge { len: 51, .. }));
    // Room for the count, as if every entry were IPv4 (39 bytes), before anything else:
    // two entries claimed, one given; and the address-only layout of before.
    let one = entry(&v4, 1);
    assert_eq!(
        peers(&body(2, &[&one])),
        DecodeError::UnexpectedEnd {
            field: "peer_count",
            needed: 39
        }
    );
    assert_eq!(
        peers(&body(2, &[&v4, &v4])),
        DecodeError::UnexpectedEnd {
            field: "peer_count",
            needed: 64
        }
    );
    // A bad family is named even in an entry that is cut short after it, since the
    // count fits.
    let fam5 = [5, 192, 0, 2, 1, 0x0f, 0xa1];
    assert_eq!(
        peers(&body(1, &[&entry(&fam5, 1)])),
        DecodeError::BadAddressFamily(5)
    );
    let fam0 = [0, 192, 0, 2, 1, 0x0f, 0xa1];
    assert_eq!(
        peers(&body(2, &[&one, &entry(&fam0, 2)])),
        DecodeError::BadAddressFamily(0)
    );
    let mut mapped = vec![6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1];
    mapped.extend_from_slice(&[0x0f, 0xa1]);
    assert!(matches!(
        peers(&body(1, &[&entry(&mapped, 1)])),
        DecodeError::InvalidValue { field: "peer", .. }
    ));
    // An IPv6 entry passes the IPv4-sized room check, then its ID is cut.
    let mut v6 = vec![
        6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    v6.extend_from_slice(&[0x0f, 0xa1]);
    let cut = entry(&v6, 3);
    assert_eq!(
        peers(&body(1, &[&cut[..39]])),
        DecodeError::UnexpectedEnd {
            field: "peer_id",
            needed: 12
        }
    );
    // Whole entries, then a byte more: trailing bytes, checked last.
    assert_eq!(
        peers(&body(1, &[&one, &[0]])),
        DecodeError::TrailingBytes(1)
    );
    assert_eq!(peers(&body(0, &[&one])), DecodeError::TrailingBytes(39));
    // The largest body is exactly the type's layout: one byte more is refused from the
    // header, before any entry is read.
    let most = body(50, &[&entry(&v6, 9).repeat(50)]);
    assert_eq!(most.len(), 1 + 50 * 51);
    let mut over = frame(msg_type::PEERS, &most);
    over.push(0);
    let len = u32::try_from(over.len() - 4).unwrap();
    over[..4].copy_from_slice(&len.to_be_bytes());
    let e = DecodeError::TooLarge {
        len: 2 + 50 * 51 + 1,
        max: 2 + 50 * 51,
    };
    assert_eq!(decode_frame(&over[..5]), Err(e.clone()));
    assert_eq!(decode_frame(&over), Err(e));
}

#[test]
fn encoding_cuts_only_where_documented() {
    let long = "é".repeat(200); // 400 bytes
    let m = Message::Error {
        code: 2,
        text: long.clone(),
    };
    let bytes = enc(&m);
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(
        dec(&bytes),
        Message::Error {
            code: 2,
            text: "é".repeat(100)
        }
    );
    let m = Message::Metadata { name: long };
    let bytes = enc(&m);
    assert_eq!(bytes.len(), m.encoded_len());
    // 255 is odd: the cut falls inside a two-byte char and backs off to 254 bytes.
    assert_eq!(
        dec(&bytes),
        Message::Metadata {
            name: "é".repeat(127)
        }
    );
    let p = pex("192.0.2.9:1", 7);
    let m = Message::Peers(vec![p; 60]);
    let bytes = enc(&m);
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(dec(&bytes), Message::Peers(vec![p; MAX_PEERS]));
    let mapped = pex("[::ffff:192.0.2.9]:1", 7);
    assert_eq!(
        dec(&enc(&Message::Peers(vec![mapped]))),
        Message::Peers(vec![p])
    );
    // The largest PEERS (50 IPv6 addresses with their IDs) is within its type's layout.
    let m = Message::Peers(vec![pex("[2001:db8::1]:1", 8); MAX_PEERS]);
    assert_eq!(enc(&m).len(), 4 + 2 + MAX_PEERS * 51);
    assert_eq!(dec(&enc(&m)), m);
}

#[test]
fn bitfield_is_total() {
    let mut b = Bitfield::new(10);
    assert_eq!((b.len(), b.as_bytes().len()), (10, 2));
    assert!(!b.is_empty() && !b.is_full());
    for i in [0, 3, 9, 10, 11, u32::MAX] {
        b.set(i);
    }
    assert!(b.get(0) && b.get(3) && b.get(9));
    assert!(!b.get(1) && !b.get(10) && !b.get(u32::MAX));
    assert_eq!(b.count_ones(), 3);
    assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 3, 9]);
    assert_eq!(b.as_bytes(), &[0b1001_0000, 0b0100_0000]);
    for i in 0..10 {
        b.set(i);
    }
    assert!(b.is_full());
    assert_eq!(Bitfield::from_bytes(10, b.as_bytes().to_vec()), Ok(b));
    let e = Bitfield::new(0);
    assert!(e.is_empty() && e.is_full() && !e.get(0));
    assert_eq!(e.iter_ones().count(), 0);
    assert_eq!(Bitfield::new(u32::MAX).len(), MAX_CHUNKS as u32);
    let full = {
        let mut f = Bitfield::new(MAX_CHUNKS as u32);
        for i in 0..MAX_CHUNKS as u32 {
            f.set(i);
        }
        f
    };
    assert!(full.is_full());
    let m = Message::Bitfield(full);
    assert_eq!(dec(&enc(&m)), m);
    assert!(matches!(
        Bitfield::from_bytes(9, vec![0, 1]),
        Err(DecodeError::InvalidValue { .. })
    ));
}

/// Addresses in canonical form (IPv4-mapped IPv6 becomes IPv4), as they decode.
fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::from((std::net::Ipv4Addr::from(ip), p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| {
            let v6 = std::net::Ipv6Addr::from(ip);
            crate::proto::codec::canonical_addr(SocketAddr::from((v6, p)))
        }),
    ]
}

fn arb_bitfield() -> impl Strategy<Value = Bitfield> {
    (0u32..300, proptest::collection::vec(any::<u32>(), 0..40)).prop_map(|(len, ones)| {
        let mut b = Bitfield::new(len);
        for i in ones {
            b.set(i % len.max(1));
        }
        b
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        (
            any::<u8>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u16>()
        )
            .prop_map(|(flags, n, c, listen_port)| Message::Handshake(Handshake {
                flags,
                node_id: Id(n),
                content_id: Id(c),
                listen_port
            })),
        "[a-zA-Z0-9 ._é漢-]{1,80}".prop_map(|name| Message::Metadata { name }),
        (any::<u32>(), 1..=MAX_MANIFEST_PIECE as u32)
            .prop_map(|(offset, length)| Message::ManifestRequest { offset, length }),
        (
            0..=MAX_MANIFEST_LEN as u32,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 1..300)
        )
            .prop_map(|(total, off, data)| {
                // Place the data somewhere inside a manifest at least as long as it.
                let total_len = total.max(data.len() as u32);
                let room = total_len - data.len() as u32;
                Message::ManifestData {
                    total_len,
                    offset: off % (room + 1),
                    data,
                }
            }),
        arb_bitfield().prop_map(Message::Bitfield),
        any::<u32>().prop_map(Message::Have),
        any::<u32>().prop_map(Message::Request),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 1..2000)
        )
            .prop_map(|(chunk, data)| Message::Piece { chunk, data }),
        any::<u32>().prop_map(Message::Cancel),
        (any::<u32>(), any::<u8>()).prop_map(|(chunk, reason)| Message::Reject { chunk, reason }),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        proptest::collection::vec(
            (arb_addr(), any::<[u8; 32]>()).prop_map(|(addr, n)| PexPeer {
                addr,
                node_id: Id(n)
            }),
            0..=MAX_PEERS
        )
        .prop_map(Message::Peers),
        (any::<u16>(), "[a-zA-Z0-9 é]{0,60}")
            .prop_map(|(code, text)| Message::Error { code, text }),
        any::<u64>().prop_map(Message::Probe),
        (any::<[u8; 32]>(), any::<u64>())
            .prop_map(|(n, nonce)| Message::Relay { node: Id(n), nonce }),
        Just(Message::RelayOk),
    ]
}

/// What the reactor does: append each read to a buffer, decode every complete frame.
fn feed_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Message>, DecodeError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut from = 0;
    for to in points {
        buf.extend_from_slice(&stream[from..to]);
        from = to;
        while let Some((m, n)) = decode_frame(&buf)? {
            out.push(m);
            buf.drain(..n);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    Ok(out)
}

proptest! {
    #[test]
    fn round_trip(msg in arb_message()) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(frame_len_hint(&bytes), Ok(Some(bytes.len())));
        // Bytes after the frame are left alone.
        bytes.extend_from_slice(&[0, 0, 0]);
        let (back, n) = decode_frame(&bytes).unwrap().unwrap();
        prop_assert_eq!(n, msg.encoded_len());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = frame_len_hint(&bytes);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn random_bodies_never_panic(t in 0u8..0x16, body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_frame(&frame(t, &body));
    }

    /// A mutated or cut frame never panics, and every prefix of any input gives either
    /// "incomplete" or exactly the error (or message) the whole input gives.
    #[test]
    fn mutated_frames_are_consistent(msg in arb_message(), pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        let p = pos % bytes.len();
        bytes[p] = val;
        let c = cut % (bytes.len() + 1);
        let bytes = &bytes[..c];
        let whole = decode_frame(bytes);
        for k in 0..bytes.len() {
            let part = decode_frame(&bytes[..k]);
            match (&part, &whole) {
                (Ok(None), _) => {}
                (Err(e), Err(w)) => prop_assert_eq!(e, w),
                (Ok(Some((_, n))), Ok(Some((_, m)))) => prop_assert_eq!(n, m),
                _ => prop_assert!(false, "prefix {} gave {:?}, whole gave {:?}", k, part, whole),
            }
        }
    }

    #[test]
    fn valid_prefixes_are_incomplete(msg in arb_message()) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        for k in 0..bytes.len() {
            prop_assert_eq!(decode_frame(&bytes[..k]), Ok(None));
        }
    }

    #[test]
    fn stream_split_anywhere_decodes_the_same(
        msgs in proptest::collection::vec(arb_message(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            m.encode(&mut stream);
        }
        prop_assert_eq!(feed_in_pieces(&stream, &cuts), Ok(msgs.clone()));
        // One byte at a time, the worst case for a reactor.
        let every: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(feed_in_pieces(&stream, &every), Ok(msgs));
    }
}
