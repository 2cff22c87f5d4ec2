//! The handle of a wire connection, shared by the node core and the reactor.
//!
//! One ID space: the transfer engine allocates a [`ConnId`] for every wire connection, and
//! the reactor registers that connection's socket under the mio token of the same number.
//! So nothing maps handles both ways between layers. Engine handles start at
//! [`ConnId::FIRST`]; the reactor numbers its own sockets (API clients, NAT sockets not yet
//! handed to the engine) below it.

use std::fmt;

/// A wire connection's handle (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The first handle the engine gives out; smaller numbers are the reactor's.
    pub const FIRST: u64 = 1 << 32;

    /// The handle numbered `n` (the engine allocates them; tests and simulators name them).
    pub const fn new(n: u64) -> ConnId {
        ConnId(n)
    }

    /// Its number (the reactor's token for the connection's socket).
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next handle after this one.
    #[must_use]
    pub const fn next(self) -> ConnId {
        ConnId(self.0.wrapping_add(1))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
