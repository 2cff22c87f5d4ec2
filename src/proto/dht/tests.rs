//! Tests of the DHT datagram codec: round trips, limits, typed errors, flags.

use super::*;
use proptest::prelude::*;

fn id(b: u8) -> Id {
    Id([b; 32])
}

fn samples() -> Vec<Message> {
    let a: SocketAddr = "192.0.2.7:4001".parse().unwrap();
    let b: SocketAddr = "[2001:db8::5]:4002".parse().unwrap();
    vec![
        Message::Ping,
        Message::Pong { observed: a },
        Message::FindNode { target: id(3) },
        Message::Nodes {
            contacts: vec![
                Contact { id: id(1), addr: a },
                Contact { id: id(2), addr: b },
            ],
        },
        Message::GetProviders { key: id(9) },
        Message::Providers {
            token: [7; 16],
            providers: vec![a, b],
            closer: vec![Contact { id: id(4), addr: a }],
            rendezvous: Some(vec![RendezvousRecord {
                provider: a,
                node: id(5),
                rendezvous: b,
            }]),
            provider_ids: Some(vec![id(6), id(7)]),
        },
        Message::Prove {
            nonce: [8; NONCE_LEN],
            addr: b,
        },
        Message::Proof {
            public: [9; PUBLIC_KEY_LEN],
            signature: [10; SIGNATURE_LEN],
        },
        Message::Announce {
            key: id(9),
            token: [7; 16],
            port: 0,
            rendezvous: None,
        },
        Message::Ack,
        Message::AnnounceMany {
            token: [7; 16],
            port: 4001,
            keys: (0..MAX_ANNOUNCE_KEYS as u8).map(id).collect(),
            rendezvous: None,
        },
        Message::AnnounceMany {
            token: [7; 16],
            port: 4001,
            keys: (0..MAX_ANNOUNCE_KEYS_RENDEZVOUS as u8).map(id).collect(),
            rendezvous: Some(b),
        },
        Message::Stored { stored: 36 },
        Message::Error {
            code: error_code::BAD_TOKEN,
            text: "bad token".into(),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, msg) in samples().into_iter().enumerate() {
        let d = Datagram {
            flags: 0,
            txid: 0x0102030405060708 + i as u64,
            sender: id(0xaa),
            msg,
        };
        let d = Datagram {
            flags: d.wire_flags(),
            ..d
        };
        let bytes = d.encode();
        assert_eq!(bytes.len(), d.encoded_len());
        assert_eq!(Datagram::decode(&bytes).unwrap(), d);
    }
}

#[test]
fn full_nodes_reply_fits_in_one_datagram() {
    let b: SocketAddr = "[2001:db8::5]:4002".parse().unwrap();
    let contacts = vec![Contact { id: id(1), addr: b }; MAX_CONTACTS];
    let d = Datagram {
        flags: 0,
        txid: 1,
        sender: id(0),
        msg: Message::Nodes { contacts },
    };
    assert!(d.encoded_len() <= MAX_DATAGRAM, "{}", d.encoded_len());
}

#[test]
fn typed_errors() {
    let good = Datagram {
        flags: 0,
        txid: 1,
        sender: id(1),
        msg: Message::Ping,
    }
    .encode();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(
        Datagram::decode(&bad),
        Err(DecodeError::BadMagic([b'X', b'S']))
    );
    let mut bad = good.clone();
    bad[2] = 9;
    assert_eq!(
        Datagram::decode(&bad),
        Err(DecodeError::UnsupportedVersion(9))
    );
    let mut bad = good.clone();
    bad[3] = 0x40;
    assert_eq!(
        Datagram::decode(&bad),
        Err(DecodeError::UnknownMessageType(0x40))
    );
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(Datagram::decode(&bad), Err(DecodeError::TrailingBytes(1)));
    assert!(matches!(
        Datagram::decode(&good[..10]),
        Err(DecodeError::UnexpectedEnd { field: "txid", .. })
    ));
    assert!(matches!(
        Datagram::decode(&vec![0u8; 2000]),
        Err(DecodeError::TooLarge { len: 2000, .. })
    ));
    // A NODES count of 200 is refused before anything is allocated for it.
    let mut nodes = Datagram {
        flags: 0,
        txid: 1,
        sender: id(1),
        msg: Message::Nodes { contacts: vec![] },
    }
    .encode();
    *nodes.last_mut().unwrap() = 200;
    assert_eq!(
        Datagram::decode(&nodes),
        Err(DecodeError::LengthTooLarge {
            field: "contact_count",
            len: 200,
            max: MAX_CONTACTS
        })
    );
}

/// ANNOUNCE_MANY with a rendezvous (nat.md section 5): the most keys that fit with an IPv6
/// rendezvous, and typed errors for one key more, a missing or cut rendezvous, and the
/// rendezvous without the flag (what a node older than the flag sees: it drops the batch).
#[test]
fn announce_many_with_a_rendezvous_keeps_within_a_datagram() {
    let v6: SocketAddr = "[2001:db8::5]:4002".parse().unwrap();
    let many = |n: usize, rendezvous| Datagram {
        flags: 0,
        txid: 1,
        sender: id(1),
        msg: Message::AnnounceMany {
            token: [7; 16],
            port: 0,
            keys: (0..n as u8).map(id).collect(),
            rendezvous,
        },
    };
    let full = many(MAX_ANNOUNCE_KEYS_RENDEZVOUS, Some(v6));
    assert_eq!(full.encoded_len(), 1203);
    let bytes = full.encode();
    assert_eq!(bytes[4], FLAG_RENDEZVOUS);
    assert_eq!(
        Datagram::decode(&bytes).unwrap(),
        Datagram {
            flags: FLAG_RENDEZVOUS,
            ..full.clone()
        }
    );
    // 36 keys and an IPv6 rendezvous would be 1235 bytes: the encoder keeps 35, and a count
    // of 36 with the flag is refused.
    assert_eq!(many(36, Some(v6)).encode(), bytes);
    const { assert!(HEADER_LEN + 16 + 2 + 1 + 36 * 32 + 19 > MAX_DATAGRAM) };
    // With an IPv4 rendezvous 36 keys would fit (1223 bytes), but the count's limit does not
    // depend on the address family, which comes after the keys.
    let v4: SocketAddr = "192.0.2.7:4001".parse().unwrap();
    let mut over = many(35, Some(v4)).encode();
    over[HEADER_LEN + 18] = 36;
    over.splice(over.len() - 7..over.len() - 7, [9u8; 32]);
    assert_eq!(over.len(), 1223);
    assert_eq!(
        Datagram::decode(&over),
        Err(DecodeError::LengthTooLarge {
            field: "key_count",
            len: 36,
            max: MAX_ANNOUNCE_KEYS_RENDEZVOUS
        })
    );
    // The flag without the address, or with part of it.
    let plain = many(2, None).encode();
    let mut flagged = plain.clone();
    flagged[4] = FLAG_RENDEZVOUS;
    assert!(matches!(
        Datagram::decode(&flagged),
        Err(DecodeError::UnexpectedEnd {
            field: "rendezvous",
            ..
        })
    ));
    let cut = &bytes[..bytes.len() - 1];
    assert!(matches!(
        Datagram::decode(cut),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
    // The address without the flag: trailing bytes, as an older node (which ignores the
    // flag here) sees every batch with a rendezvous; it never stores the keys without it.
    let mut unflagged = bytes.clone();
    unflagged[4] = 0;
    assert_eq!(
        Datagram::decode(&unflagged),
        Err(DecodeError::TrailingBytes(19))
    );
}

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

fn arb_contact() -> impl Strategy<Value = Contact> {
    (any::<[u8; 32]>(), arb_addr()).prop_map(|(i, addr)| Contact { id: Id(i), addr })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Ping),
        arb_addr().prop_map(|observed| Message::Pong { observed }),
        any::<[u8; 32]>().prop_map(|t| Message::FindNode { target: Id(t) }),
        proptest::collection::vec(arb_contact(), 0..=MAX_CONTACTS)
            .prop_map(|contacts| Message::Nodes { contacts }),
        any::<[u8; 32]>().prop_map(|k| Message::GetProviders { key: Id(k) }),
        (
            any::<[u8; 16]>(),
            proptest::collection::vec(arb_addr(), 0..8),
            proptest::collection::vec(arb_contact(), 0..8),
            proptest::option::of(proptest::collection::vec(
                (arb_addr(), any::<[u8; 32]>(), arb_addr()),
                0..4
            ))
        )
            .prop_map(|(token, providers, closer, rv)| Message::Providers {
                token,
                provider_ids: (providers.len() % 2 == 1)
                    .then(|| providers.iter().map(|_| Id([3; 32])).collect()),
                providers,
                closer,
                rendezvous: rv.map(|v| v
                    .into_iter()
                    .map(|(provider, n, rendezvous)| RendezvousRecord {
                        provider,
                        node: Id(n),
                        rendezvous,
                    })
                    .collect()),
            }),
        (
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            proptest::option::of(arb_addr())
        )
            .prop_map(|(k, token, port, rendezvous)| {
                Message::Announce {
                    key: Id(k),
                    token,
                    port,
                    rendezvous,
                }
            }),
        (any::<u64>(), any::<u16>()).prop_map(|(nonce, port)| Message::Dialback { nonce, port }),
        (any::<[u8; 32]>(), any::<u16>(), arb_addr()).prop_map(|(p, port, addr)| {
            Message::Call {
                mode: call_mode::RELAY,
                nonce: port.into(),
                peer: Id(p),
                addr,
                port,
            }
        }),
        Just(Message::Ack),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            proptest::collection::vec(any::<[u8; 32]>(), 1..=MAX_ANNOUNCE_KEYS),
            proptest::option::of(arb_addr())
        )
            .prop_map(|(token, port, mut keys, rendezvous)| {
                // With a rendezvous one key less fits.
                keys.truncate(max_announce_keys(rendezvous.is_some()));
                Message::AnnounceMany {
                    token,
                    port,
                    keys: keys.into_iter().map(Id).collect(),
                    rendezvous,
                }
            }),
        (0..=MAX_ANNOUNCE_KEYS as u8).prop_map(|stored| Message::Stored { stored }),
        (any::<u16>(), "[a-zA-Z0-9 é]{0,60}")
            .prop_map(|(code, text)| Message::Error { code, text }),
    ]
}

proptest! {
    #[test]
    fn round_trip(flags in any::<u8>(), txid in any::<u64>(), s in any::<[u8; 32]>(), msg in arb_message()) {
        let d = Datagram { flags, txid, sender: Id(s), msg };
        // Bit 1 of ANNOUNCE and PROVIDERS is what the message says (nat.md).
        let d = Datagram { flags: d.wire_flags(), ..d };
        let bytes = d.encode();
        prop_assert_eq!(bytes.len(), d.encoded_len());
        prop_assert_eq!(Datagram::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Datagram::decode(&bytes);
    }

    #[test]
    fn mutated_datagrams_never_panic(msg in arb_message(), pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut bytes = Datagram { flags: 0, txid: 9, sender: Id([1; 32]), msg }.encode();
        let p = pos % bytes.len();
        bytes[p] = val;
        let _ = Datagram::decode(&bytes);
        let c = cut % (bytes.len() + 1);
        let _ = Datagram::decode(&bytes[..c]);
    }
}
