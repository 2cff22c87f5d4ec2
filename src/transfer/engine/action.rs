//! What the engine asks its driver to do: [`Action`]s grouped by who does them (socket work
//! in [`WireAction`]), queued in order until
//! [`Engine::poll_action`](super::Engine::poll_action) takes them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ConnId;
use crate::id::Id;
use crate::proto::wire::Message;
use crate::storage::job::StorageJob;

/// What the driver must do, grouped by who does it.
#[derive(Debug)]
pub enum Action {
    /// Socket work (the reactor).
    Wire(WireAction),
    /// File work (the storage executor); report its [`StorageDone`](crate::storage::job::StorageDone)
    /// through [`Engine::chunk_read`](super::Engine::chunk_read),
    /// [`Engine::chunk_stored`](super::Engine::chunk_stored),
    /// [`Engine::chunk_checked`](super::Engine::chunk_checked) or
    /// [`Engine::partial_opened`](super::Engine::partial_opened). Only `ReadChunk`,
    /// `StoreChunk`, `CheckChunk` and `OpenPartial` come from the engine.
    Storage(StorageJob),
    /// Every chunk is verified: the node decides the final name and folder and finishes the
    /// file ([`StorageJob::Finish`]); report [`Engine::finished`](super::Engine::finished).
    Finish {
        /// Which content.
        content: Id,
    },
    /// A download wants more peers: look the content up in the DHT and call
    /// [`Engine::add_peers`](super::Engine::add_peers).
    FindPeers {
        /// Which content.
        content: Id,
    },
    /// The manifest of `content`, asked for by [`Engine::peek`](super::Engine::peek), is
    /// here and verified ([`Engine::manifest`](super::Engine::manifest) gives it).
    ManifestFetched {
        /// Which content.
        content: Id,
    },
    /// This node now holds verified chunks of `content`: announce it as a provider.
    Announce {
        /// Which content.
        content: Id,
    },
    /// A peer sent a chunk or a manifest that failed verification (for logs and the ban
    /// list).
    Banned {
        /// Its address.
        addr: SocketAddr,
        /// Its node ID.
        node: Option<Id>,
        /// What it sent: "a chunk" or "a manifest".
        what: &'static str,
    },
}

/// Socket work for one wire connection.
#[derive(Clone, Debug)]
pub enum WireAction {
    /// Open a TCP connection to `addr`; report
    /// [`Engine::connected`](super::Engine::connected) or
    /// [`Engine::closed`](super::Engine::closed).
    Connect {
        /// The handle to use for it.
        conn: ConnId,
        /// Where.
        addr: SocketAddr,
        /// The node ID that must answer there (from a DHT provider record): the secure
        /// handshake hangs up on any other.
        expect: Option<Id>,
    },
    /// Send a frame.
    Send {
        /// On which connection.
        conn: ConnId,
        /// What.
        msg: Message,
    },
    /// Send a PIECE frame: `piece_header(chunk, data.len())` then `data`. Report
    /// [`Engine::piece_sent`](super::Engine::piece_sent) once it is written to the socket.
    SendPiece {
        /// On which connection.
        conn: ConnId,
        /// Which chunk.
        chunk: u32,
        /// Its bytes.
        data: Arc<Vec<u8>>,
    },
    /// Close the connection once what is queued on it is written.
    Close {
        /// Which.
        conn: ConnId,
    },
}

impl From<WireAction> for Action {
    fn from(a: WireAction) -> Action {
        Action::Wire(a)
    }
}

impl From<StorageJob> for Action {
    fn from(j: StorageJob) -> Action {
        Action::Storage(j)
    }
}

/// The engine's outputs, in order (pushes take any group of [`Action`]).
#[derive(Debug, Default)]
pub(super) struct Actions(pub(super) VecDeque<Action>);

impl Actions {
    pub(super) fn push_back(&mut self, a: impl Into<Action>) {
        self.0.push_back(a.into());
    }
}
