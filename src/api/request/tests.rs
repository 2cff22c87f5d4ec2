//! Parsing requests: every command, its fields, and malformed, oversized and hostile payloads.

use super::*;
use serde_json::json;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn parse(v: Value) -> Result<ApiRequest, ApiError> {
    parse_request(v.to_string().as_bytes())
}

fn err(v: Value) -> String {
    parse(v).unwrap_err().message
}

/// The commands added for issue 15 refuse malformed, oversized and hostile payloads with
/// a message, like the others.
#[test]
fn new_commands_refuse_bad_payloads() {
    let long = "a".repeat(100_000);
    for kind in ["pause_transfer", "resume_transfer", "transfer_peers"] {
        for payload in [
            json!(null),
            json!(3),
            json!({}),
            json!({"content_hash": 7}),
            json!({"content_hash": "zz"}),
            json!({"content_hash": &long}),
            json!({"content_hash": format!("{HASH}\u{0}")}),
        ] {
            let e = err(json!({"type": kind, "payload": payload}));
            assert!(!e.is_empty(), "{kind} {payload}");
        }
        assert!(parse(json!({"type": kind, "payload": {"content_hash": HASH}})).is_ok());
    }
    for payload in [
        json!({}),
        json!({"key": 3}),
        json!({"key": &long}),
        json!({"key": "no_such_key", "value": "1"}),
        json!({"key": "up_limit", "value": [1]}),
        json!({"key": "up_limit", "value": "fast"}),
        json!({"key": "up_limit", "value": &long}),
    ] {
        let e = err(json!({"type": "set_config", "payload": payload}));
        assert!(!e.is_empty(), "{payload}");
    }
    assert!(
        parse(json!({"type": "set_config", "payload": {"key": "up_limit", "value": "5MB/s"}}))
            .is_ok()
    );
}

fn id() -> Id {
    Id::from_hex(HASH).unwrap()
}

#[test]
fn announce_content() {
    let r = parse(json!({"type": "local_announce_content", "payload": {"content_hash": HASH}}));
    assert_eq!(
        r.unwrap(),
        ApiRequest::AnnounceContent { content_hash: id() }
    );
}

#[test]
fn request_content_info_one_and_all() {
    let r = parse(json!({"type": "local_request_content_info",
                         "payload": {"content_hash": HASH}}));
    assert_eq!(
        r.unwrap(),
        ApiRequest::RequestContentInfo {
            query: ContentQuery::One(id())
        }
    );
    let r = parse(json!({"type": "local_request_content_info",
                         "payload": {"content_hash": "all_available_content"}}));
    assert_eq!(
        r.unwrap(),
        ApiRequest::RequestContentInfo {
            query: ContentQuery::AllAvailable
        }
    );
}

#[test]
fn list_content_and_status_with_or_without_payload() {
    for v in [
        json!({"type": "local_list_content"}),
        json!({"type": "local_list_content", "payload": {}}),
        json!({"type": "local_list_content", "payload": null}),
    ] {
        assert_eq!(parse(v).unwrap(), ApiRequest::ListContent);
    }
    assert_eq!(
        parse(json!({"type": "status"})).unwrap(),
        ApiRequest::Status
    );
    assert_eq!(
        parse(json!({"type": "status", "payload": {"verbose": true}})).unwrap(),
        ApiRequest::Status
    );
    assert_eq!(
        err(json!({"type": "status", "payload": 3})),
        "field `payload` of status must be a JSON object"
    );
}

#[test]
fn ledger_commands() {
    let r = parse(json!({"type": "local_register_file_on_chain", "payload": {
        "file_hash": HASH, "owner_mnemonic": "  word  two ", "metadata": {"title": "x"}}}))
    .unwrap();
    assert_eq!(
        r,
        ApiRequest::RegisterOnChain {
            file_hash: id(),
            owner_mnemonic: Mnemonic::new("word two").unwrap(),
            metadata: Metadata::from_value(&json!({"title": "x"})).unwrap(),
        }
    );
    assert_eq!(r.command(), "local_register_file_on_chain");
    // The mnemonic never shows in debug output (logs).
    assert!(!format!("{r:?}").contains("word"));
    let reg = |p: Value| err(json!({"type": "local_register_file_on_chain", "payload": p}));
    assert!(
        reg(json!({"file_hash": "abc", "owner_mnemonic": "w", "metadata": {}}))
            .starts_with("file_hash must be 64 hex characters")
    );
    assert!(
        reg(json!({"file_hash": HASH, "owner_mnemonic": " \n ", "metadata": {}}))
            .starts_with("owner_mnemonic: the mnemonic is empty")
    );
    assert_eq!(
        reg(json!({"file_hash": HASH, "metadata": {}})),
        "missing field `owner_mnemonic` in payload of local_register_file_on_chain"
    );
    assert!(reg(json!({"file_hash": HASH, "owner_mnemonic": "w"}))
        .starts_with("missing field `metadata`"));
    assert_eq!(
        reg(json!({"file_hash": HASH, "owner_mnemonic": "w", "metadata": "{}"})),
        "metadata must be a JSON object (use {} for none), got a string"
    );
    assert!(reg(json!({"file_hash": HASH, "owner_mnemonic": "w",
                       "metadata": {"k": "x".repeat(20_000)}}))
    .contains("at most 16384"));

    let v = |p: Value| parse(json!({"type": "local_verify_file_on_chain", "payload": p}));
    for p in [
        json!({"file_hash": HASH}),
        json!({"file_hash": HASH, "owner_address": null}),
        json!({"file_hash": HASH, "owner_address": " "}),
    ] {
        assert_eq!(
            v(p).unwrap(),
            ApiRequest::VerifyOnChain {
                file_hash: id(),
                owner_address: None
            }
        );
    }
    assert_eq!(
        v(json!({"file_hash": HASH, "owner_address": " psab "})).unwrap(),
        ApiRequest::VerifyOnChain {
            file_hash: id(),
            owner_address: Some("psab".into())
        }
    );
    assert_eq!(
        v(json!({"file_hash": HASH, "owner_address": 5}))
            .unwrap_err()
            .message,
        "field `owner_address` must be a string"
    );
    assert!(v(json!({"owner_address": "x"})).is_err());

    assert_eq!(
        parse(json!({"type": "ledger_verify"})).unwrap(),
        ApiRequest::LedgerVerify
    );
    assert_eq!(
        parse(json!({"type": "ledger_history", "payload": {"file_hash": HASH}})).unwrap(),
        ApiRequest::LedgerHistory {
            file_hash: Some(id())
        }
    );
    assert_eq!(
        parse(json!({"type": "ledger_history"})).unwrap(),
        ApiRequest::LedgerHistory { file_hash: None }
    );
}

#[test]
fn transfer_commands() {
    assert_eq!(
        parse(json!({"type": "local_add_file", "payload": {"filepath": "/tmp/a b.wav"}})).unwrap(),
        ApiRequest::AddFile {
            filepath: "/tmp/a b.wav".into()
        }
    );
    assert_eq!(
        err(json!({"type": "local_add_file", "payload": {}})),
        "missing field `filepath` in payload of local_add_file"
    );
    assert!(
        err(json!({"type": "local_add_file", "payload": {"filepath": "a\u{0}b"}})).contains("NUL")
    );
    assert_eq!(
        parse(json!({"type": "local_request_file", "payload": {"content_hash": HASH}})).unwrap(),
        ApiRequest::RequestFile {
            content_hash: Id::from_hex(HASH).unwrap(),
            output_dir: None,
            peers: vec![],
            only: None,
        }
    );
    assert_eq!(
        parse(json!({"type": "local_request_file", "payload": {"content_hash": HASH, "output_dir": "/x"}}))
            .unwrap(),
        ApiRequest::RequestFile {
            content_hash: Id::from_hex(HASH).unwrap(),
            output_dir: Some("/x".into()),
            peers: vec![],
            only: None,
        }
    );
    assert!(err(
        json!({"type": "local_request_file", "payload": {"content_hash": HASH, "output_dir": 3}})
    )
    .contains("output_dir"));
    // `only`: 1 to 64 globs, each checked (api.md 5.5).
    match parse(json!({"type": "local_request_file",
                       "payload": {"content_hash": HASH, "only": ["Kicks/**", "*.txt"]}}))
    .unwrap()
    {
        ApiRequest::RequestFile { only: Some(s), .. } => {
            assert_eq!(s.globs(), ["Kicks/**", "*.txt"]);
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        json!([]),
        json!("Kicks"),
        json!([3]),
        json!(["/abs"]),
        json!(["a["]),
    ] {
        let e = err(json!({"type": "local_request_file",
                           "payload": {"content_hash": HASH, "only": bad}}));
        assert!(e.contains("only"), "{e}");
    }
    assert_eq!(
        parse(json!({"type": "transfer_status"})).unwrap(),
        ApiRequest::TransferStatus { content_hash: None }
    );
    assert!(
        err(json!({"type": "transfer_status", "payload": {"content_hash": "zz"}}))
            .contains("64 hex")
    );
}

#[test]
fn unknown_command() {
    assert_eq!(
        err(json!({"type": "frobnicate", "payload": {}})),
        "Unknown command"
    );
    assert_eq!(err(json!({"type": ""})), "Unknown command");
}

#[test]
fn envelope_errors() {
    assert_eq!(
        parse_request(b"{\"type\":\"status\xff\"}")
            .unwrap_err()
            .message,
        "request is not valid UTF-8"
    );
    let m = parse_request(b"{\"type\": }").unwrap_err().message;
    assert!(m.starts_with("malformed JSON: "), "{m}");
    assert!(m.len() > "malformed JSON: ".len());
    assert_eq!(
        parse_request(b"[1,2]").unwrap_err().message,
        "request must be a JSON object"
    );
    assert_eq!(
        err(json!({"payload": {}})),
        "missing field `type` (the command name) in request"
    );
    assert_eq!(err(json!({"type": 7})), "field `type` must be a string");
}

#[test]
fn payload_errors() {
    assert_eq!(
        err(json!({"type": "local_announce_content"})),
        "missing field `payload` in local_announce_content request (it needs `content_hash`)"
    );
    assert_eq!(
        err(json!({"type": "local_announce_content", "payload": "x"})),
        "field `payload` of local_announce_content must be a JSON object"
    );
    assert_eq!(
        err(json!({"type": "local_announce_content", "payload": {}})),
        "missing field `content_hash` in payload of local_announce_content"
    );
    assert_eq!(
        err(json!({"type": "local_request_content_info", "payload": {"hash": HASH}})),
        "missing field `content_hash` in payload of local_request_content_info"
    );
    assert_eq!(
        err(json!({"type": "local_announce_content", "payload": {"content_hash": 12}})),
        "field `content_hash` must be a string"
    );
}

#[test]
fn bad_hashes() {
    assert_eq!(
        err(json!({"type": "local_announce_content", "payload": {"content_hash": "abc"}})),
        "content_hash must be 64 hex characters (an ID is 64 hex characters, got 3)"
    );
    assert_eq!(
        err(json!({"type": "local_request_content_info",
                   "payload": {"content_hash": "g".repeat(64)}})),
        "content_hash must be 64 hex characters (an ID must contain only hex digits 0-9a-f)"
    );
    // Multi-byte characters with the right byte length.
    let m = err(json!({"type": "local_announce_content",
                       "payload": {"content_hash": "é".repeat(32)}}));
    assert!(
        m.starts_with("content_hash must be 64 hex characters"),
        "{m}"
    );
}

#[test]
fn uppercase_hex_and_extra_fields() {
    let r = parse(json!({
        "type": "local_announce_content",
        "payload": {"content_hash": HASH.to_uppercase(), "note": [1, 2]},
        "request_id": 99,
    }));
    assert_eq!(
        r.unwrap(),
        ApiRequest::AnnounceContent { content_hash: id() }
    );
}

#[test]
fn command_names_round_trip() {
    for (v, name) in [
        (json!({"type": "local_list_content"}), "local_list_content"),
        (json!({"type": "status"}), "status"),
        (json!({"type": "routing_table"}), "routing_table"),
        (
            json!({"type": "local_announce_content", "payload": {"content_hash": HASH}}),
            "local_announce_content",
        ),
        (
            json!({"type": "local_request_content_info",
                   "payload": {"content_hash": HASH}}),
            "local_request_content_info",
        ),
    ] {
        assert_eq!(parse(v).unwrap().command(), name);
    }
}

/// `content_tree` (api.md 5.20) refuses malformed, oversized and hostile payloads with a
/// message naming the field, and takes the defaults when the optional fields are absent.
#[test]
fn content_tree_refuses_bad_payloads() {
    let long = "a".repeat(100_000);
    let too_many: Vec<String> = (0..51).map(|i| format!("127.0.0.1:{}", 1000 + i)).collect();
    for (payload, says) in [
        (json!(null), "content_hash"),
        (json!({}), "content_hash"),
        (json!({"content_hash": &long}), "content_hash"),
        (json!({"content_hash": HASH, "offset": -1}), "offset"),
        (json!({"content_hash": HASH, "offset": 1e300}), "offset"),
        (json!({"content_hash": HASH, "offset": "0"}), "offset"),
        (
            json!({"content_hash": HASH, "offset": 4_294_967_296u64}),
            "offset",
        ),
        (json!({"content_hash": HASH, "limit": 10_001}), "limit"),
        (json!({"content_hash": HASH, "limit": [1]}), "limit"),
        (
            json!({"content_hash": HASH, "peers": "127.0.0.1:1"}),
            "peers",
        ),
        (json!({"content_hash": HASH, "peers": ["nowhere"]}), "peers"),
        (json!({"content_hash": HASH, "peers": too_many}), "peers"),
    ] {
        let e = err(json!({"type": "content_tree", "payload": payload}));
        assert!(e.contains(says), "{payload}: {e}");
    }
    match parse(json!({"type": "content_tree", "payload": {"content_hash": HASH}})) {
        Ok(ApiRequest::ContentTree {
            offset: 0,
            limit: TREE_PAGE,
            peers,
            ..
        }) => assert!(peers.is_empty()),
        other => panic!("{other:?}"),
    }
}
