//! Announce tokens (spec: `protocol-spec/dht.md`, "Tokens").
//!
//! A GET_PROVIDERS answer carries a token bound to the requester's address; an ANNOUNCE must
//! bring it back from the same address. So an announce proves a round trip to that address,
//! and nobody can announce on behalf of another. The node keeps no state per requester: the
//! token is a MAC of the address under a secret that rotates every few minutes; tokens made
//! with the current or the previous secret are accepted.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::proto::codec::canonical_addr;
use crate::proto::dht::TOKEN_LEN;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// Issues and checks announce tokens. Its secrets are wiped when it is dropped and never
/// printed by `Debug`.
pub struct TokenIssuer {
    current: [u8; 32],
    previous: [u8; 32],
    rotated_at: Instant,
    interval: Duration,
}

impl TokenIssuer {
    /// A new issuer; `secret` must come from a good random source.
    pub fn new(secret: [u8; 32], now: Instant, interval: Duration) -> Self {
        TokenIssuer {
            current: secret,
            previous: secret,
            rotated_at: now,
            interval,
        }
    }

    /// When the secret must next rotate.
    pub fn next_rotation(&self) -> Instant {
        self.rotated_at + self.interval
    }

    /// Rotates the secret if its time has come; `fresh` supplies the new secret.
    pub fn maybe_rotate(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 32]) {
        if now >= self.next_rotation() {
            self.previous = self.current;
            self.current = fresh();
            self.rotated_at = now;
        }
    }

    /// The token for requests coming from `addr`.
    pub fn issue(&self, addr: &SocketAddr) -> [u8; TOKEN_LEN] {
        let tag = mac(&self.current, addr).finalize().into_bytes();
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&tag[..TOKEN_LEN]);
        t
    }

    /// True if `token` was issued to `addr` under the current or the previous secret.
    pub fn verify(&self, addr: &SocketAddr, token: &[u8; TOKEN_LEN]) -> bool {
        // verify_truncated_left compares in constant time.
        mac(&self.current, addr)
            .verify_truncated_left(token)
            .is_ok()
            || mac(&self.previous, addr)
                .verify_truncated_left(token)
                .is_ok()
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("rotated_at", &self.rotated_at)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.current.zeroize();
        self.previous.zeroize();
    }
}

fn mac(secret: &[u8; 32], addr: &SocketAddr) -> HmacSha256 {
    let addr = canonical_addr(*addr);
    let mut m = keyed(secret);
    match addr.ip() {
        IpAddr::V4(v4) => m.update(&v4.octets()),
        IpAddr::V6(v6) => m.update(&v6.octets()),
    }
    m.update(&addr.port().to_be_bytes());
    m
}

/// HMAC-SHA256 under `key`. HMAC accepts keys of any length, so this cannot fail; it falls
/// back to an empty-key MAC type-wise rather than panic.
pub(super) fn keyed(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC's key setup is infallible for any key length (RFC 2104); this arm only exists
    // because the generic API returns Result.
    <HmacSha256 as Mac>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_to_address_and_expires_after_two_rotations() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(300);
        let mut t = TokenIssuer::new([1; 32], t0, iv);
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let tok = t.issue(&a);
        assert!(t.verify(&a, &tok));
        assert!(!t.verify(&b, &tok), "another port");
        assert!(
            !t.verify(&"192.0.2.2:4000".parse().unwrap(), &tok),
            "another IP"
        );
        t.maybe_rotate(t0 + iv, || [2; 32]);
        assert!(t.verify(&a, &tok), "previous secret still accepted");
        t.maybe_rotate(t0 + iv * 2, || [3; 32]);
        assert!(!t.verify(&a, &tok), "two rotations later it is gone");
        let mut forged = t.issue(&a);
        forged[0] ^= 1;
        assert!(!t.verify(&a, &forged));
    }

    #[test]
    fn mapped_ipv6_equals_ipv4() {
        let t = TokenIssuer::new([5; 32], Instant::now(), Duration::from_secs(1));
        let v4: SocketAddr = "10.1.2.3:7".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:7".parse().unwrap();
        assert!(t.verify(&mapped, &t.issue(&v4)));
    }

    /// `Debug` (which `Dht`'s derives through) never shows a secret.
    #[test]
    fn debug_does_not_print_the_secrets() {
        let t = TokenIssuer::new([0xab; 32], Instant::now(), Duration::from_secs(300));
        let shown = format!("{t:?}");
        assert!(shown.contains("TokenIssuer"), "{shown}");
        assert!(
            !shown.contains("current") && !shown.contains("171, 171"),
            "{shown}"
        );
    }
}
