//! mio tokens: one number space with the core's connection handles ([`ConnId`]).
//!
//! A wire connection's socket is registered under the token of its [`ConnId`]'s number, so
//! readiness names the connection directly. The reactor's other sockets (listeners, API
//! clients, NAT sockets not yet handed to the core) get numbers below [`ConnId::FIRST`].

use mio::Token;

use crate::conn::ConnId;

/// The DHT's UDP socket.
pub const UDP: Token = Token(0);
/// The wire protocol's listener.
pub const WIRE: Token = Token(1);
/// The API's listener.
pub const API: Token = Token(2);
/// The loop's waker.
pub const WAKER: Token = Token(3);
/// The HTTP side's listener (`net::http_server`).
pub const HTTP: Token = Token(4);
/// The first number handed out by [`Tokens::fresh`].
const FIRST_DYNAMIC: usize = 16;

/// Hands out the reactor's own tokens, below the core's handles.
#[derive(Debug)]
pub struct Tokens {
    next: usize,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            next: FIRST_DYNAMIC,
        }
    }
}

impl Tokens {
    /// A fresh token (numbers wrap around long before they reach the core's handles).
    pub fn fresh(&mut self) -> Token {
        let t = Token(self.next);
        self.next += 1;
        if self.next as u64 >= ConnId::FIRST {
            self.next = FIRST_DYNAMIC;
        }
        t
    }
}

/// The token of a wire connection's socket.
pub fn of(conn: ConnId) -> Token {
    Token(conn.get() as usize)
}

/// The wire connection a token stands for, if it is one of the core's handles.
pub fn conn_of(t: Token) -> Option<ConnId> {
    (t.0 as u64 >= ConnId::FIRST).then(|| ConnId::new(t.0 as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactor_tokens_never_meet_core_handles() {
        let mut t = Tokens {
            next: ConnId::FIRST as usize - 2,
        };
        let a = t.fresh();
        let b = t.fresh();
        assert!(conn_of(a).is_none() && conn_of(b).is_none());
        assert_eq!(t.fresh(), Token(FIRST_DYNAMIC));
        let c = ConnId::new(ConnId::FIRST + 5);
        assert_eq!(conn_of(of(c)), Some(c));
    }
}
