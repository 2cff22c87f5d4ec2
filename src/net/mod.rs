//! Everything that touches sockets or the real clock: the mio reactor and its helpers. The
//! protocol cores (`dht`, `proto`) are driven from here and never do I/O themselves.

pub mod bandwidth;
pub mod emulate;
pub mod jobs;
pub mod reactor;
pub mod socket;
pub mod trace;
pub mod wire_conn;
