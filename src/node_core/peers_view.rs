//! `transfer_peers` (api.md section 5.17): the peers of one transfer, each joined from the
//! part of the node that owns it: the engine (address, handshake, bitfield, choking,
//! requests), NAT traversal (how the connection was made) and the driver's meters (rates,
//! handed in with the request). Nothing here is stored: the reply is made when asked.

use serde_json::{json, Value};

use super::library::Library;
use super::view::{fields, Rates};
use super::NatGlue;
use crate::api::reply;
use crate::id::Id;
use crate::transfer::engine::PeerView;

/// Most banned addresses listed in one reply.
pub const MAX_BANNED_LISTED: usize = 50;

/// The reply to `transfer_peers` for `id`.
pub fn reply(library: &Library, nat: &NatGlue, rates: &Rates, id: &Id) -> Vec<u8> {
    let engine = &library.engine;
    let Some(peers) = engine.peers(id) else {
        return reply::error(&format!(
            "no transfer of {id} here: this node neither shares nor downloads it (a paused \
             download has no peers)"
        ));
    };
    let progress = engine.progress(id).unwrap_or_default();
    let list: Vec<Value> = peers
        .iter()
        .map(|p| peer_json(p, nat, rates, progress.chunks_total))
        .collect();
    let mut banned: Vec<String> = engine.banned().map(ToString::to_string).collect();
    banned.sort_unstable();
    banned.truncate(MAX_BANNED_LISTED);
    reply::success(fields(json!({
        "content_hash": id.to_hex(),
        "name": progress.name,
        "chunks_total": progress.chunks_total,
        "complete": progress.complete,
        "peers": list,
        "banned": banned,
    })))
}

fn peer_json(p: &PeerView, nat: &NatGlue, rates: &Rates, total: u32) -> Value {
    let flow = rates.conn(p.conn);
    json!({
        "addr": p.addr.to_string(),
        "node_id": p.node.map(|n| n.to_hex()),
        "direction": if p.outgoing { "outgoing" } else { "incoming" },
        "connection": nat.conn_path(p.conn).map(|c| c.name()),
        "state": if p.active { "active" } else { "connecting" },
        "down_rate": flow.down,
        "up_rate": flow.up,
        "chunks": p.chunks,
        "seeder": p.chunks.is_some_and(|c| total > 0 && c == total),
        "choked": p.choked,
        "interested": p.interested,
        "choking_us": p.choking_us,
        "interesting": p.interesting,
        "requests_out": p.requests_out,
        "requests_in": p.requests_in,
    })
}
