//! The API token, for clients outside loopback.
//!
//! The API listens on loopback by default, where every local program may use it (as existing
//! EchoChain clients do, without credentials). Listening elsewhere needs a token
//! (`peershare run --api-listen ADDR --api-token-file FILE`), and every request from a
//! non-loopback client must then carry it as a top-level field next to `type`:
//! `{"type": "status", "payload": {}, "token": "<secret>"}`. Loopback clients never need it.

use std::net::IpAddr;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Whether a request from `peer` must carry the token: only from outside loopback
/// (an IPv4 client of a dual-stack listener shows as `::ffff:127.0.0.1`, still loopback).
pub fn required_for(peer: IpAddr) -> bool {
    !peer.to_canonical().is_loopback()
}

/// Checks the request's top-level `"token"` against `expected`. The error is the reply's
/// message. The comparison is of SHA-256 digests, so its timing tells nothing about how many
/// leading characters of a guess were right.
pub fn check(request: &[u8], expected: &str) -> Result<(), String> {
    let given = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| match v.get("token") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        });
    match given {
        None => Err(
            "unauthorized: this node's API needs a \"token\" field (a string next to \
                     \"type\") from clients outside loopback"
                .into(),
        ),
        Some(t) if Sha256::digest(t.as_bytes()) == Sha256::digest(expected.as_bytes()) => Ok(()),
        Some(_) => Err("unauthorized: wrong token".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_exempt_and_tokens_must_match() {
        assert!(!required_for("127.0.0.1".parse().unwrap()));
        assert!(!required_for("::1".parse().unwrap()));
        assert!(!required_for("::ffff:127.0.0.1".parse().unwrap()));
        assert!(required_for("192.0.2.7".parse().unwrap()));
        assert!(required_for("::ffff:192.0.2.7".parse().unwrap()));

        let ok = br#"{"type":"status","payload":{},"token":"s3cret"}"#;
        assert_eq!(check(ok, "s3cret"), Ok(()));
        let e = check(ok, "other").unwrap_err();
        assert!(e.contains("wrong token"), "{e}");
        for bad in [
            &br#"{"type":"status","payload":{}}"#[..],
            br#"{"type":"status","token":7}"#,
            br#"{"type":"status","payload":{"token":"s3cret"}}"#,
            b"not json",
        ] {
            let e = check(bad, "s3cret").unwrap_err();
            assert!(e.contains("needs a \"token\""), "{e}");
        }
    }
}
