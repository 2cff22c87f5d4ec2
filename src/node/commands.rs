//! Executing API commands against the node (the reactor calls these on its thread for
//! commands that need the DHT; workers call the read-only ones with the shared view).
//! Field names follow the EchoChain API contract (`protocol-spec/api.md`,
//! after `MISSION.md`) and must not change.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::api::reply;
use crate::api::request::{ApiRequest, ContentQuery};
use crate::dht::{Dht, QueryId, QueryResult};
use crate::id::Id;
use crate::ledger::{self, Ledger};
use crate::node::shared::{Shared, StatusView};
use crate::node::transfers::{Spawner, Transfers, Waiter};

/// A request waiting for a DHT lookup to finish.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The API connection.
    pub token: mio::Token,
    /// The reply's place in that connection's order.
    pub seq: u64,
    /// What was asked.
    pub what: Waiting,
}

/// What a pending request waits for.
#[derive(Clone, Copy, Debug)]
pub enum Waiting {
    /// `local_announce_content`.
    Announce(Id),
    /// `local_request_content_info`.
    ContentInfo(Id),
}

/// The result of executing a command.
pub enum Outcome {
    /// Reply at once.
    Reply(Vec<u8>),
    /// Reply when this lookup finishes.
    Wait(QueryId, Pending),
    /// A transfer will answer (the waiter is registered with it).
    Deferred,
}

/// What a command may act on.
pub struct Ctx<'a> {
    /// The DHT.
    pub dht: &'a mut Dht,
    /// The transfers.
    pub transfers: &'a mut Transfers,
    /// Runs worker jobs.
    pub spawner: &'a dyn Spawner,
    /// The address this node serves content on, as others should see it.
    pub self_addr: std::net::SocketAddr,
}

/// Answers a ledger command (`local_register_file_on_chain`, `local_verify_file_on_chain`,
/// `ledger_verify`, `ledger_history`); `None` for any other request. It does file I/O and
/// fsyncs, so the reactor runs it on a worker. `known`: whether this node has the content
/// (only such content can be registered).
pub fn ledger_reply(ledger: &dyn Ledger, req: &ApiRequest, known: bool) -> Option<Vec<u8>> {
    let reply = match req {
        ApiRequest::RegisterOnChain {
            file_hash,
            owner_mnemonic,
            metadata,
        } => ledger::api::register(
            ledger,
            known,
            *file_hash,
            owner_mnemonic,
            metadata,
            unix_now(),
        ),
        ApiRequest::VerifyOnChain {
            file_hash,
            owner_address,
        } => ledger::api::verify(ledger, file_hash, owner_address.as_deref()),
        ApiRequest::LedgerVerify => ledger::api::check(ledger),
        ApiRequest::LedgerHistory { file_hash } => ledger::api::history(ledger, file_hash.as_ref()),
        _ => return None,
    };
    Some(reply.into_bytes())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Runs a command that needs the DHT or the transfers.
pub fn execute(
    req: ApiRequest,
    ctx: Ctx<'_>,
    now: Instant,
    token: mio::Token,
    seq: u64,
) -> Outcome {
    let dht = ctx.dht;
    let busy = || {
        Outcome::Reply(reply::error(
            "node busy: too many DHT lookups running, try again",
        ))
    };
    match req {
        ApiRequest::AnnounceContent { content_hash } => match dht.announce(content_hash, 0, now) {
            Some(q) => Outcome::Wait(
                q,
                Pending {
                    token,
                    seq,
                    what: Waiting::Announce(content_hash),
                },
            ),
            None => busy(),
        },
        ApiRequest::RequestContentInfo {
            query: ContentQuery::One(id),
        } => match dht.get_providers(id, now) {
            Some(q) => Outcome::Wait(
                q,
                Pending {
                    token,
                    seq,
                    what: Waiting::ContentInfo(id),
                },
            ),
            None => busy(),
        },
        ApiRequest::RequestContentInfo {
            query: ContentQuery::AllAvailable,
        } => {
            // What this node can vouch for: the files it shares (added or downloaded), with
            // itself as a provider. Other nodes' catalogues are not searchable (yet).
            let list: Vec<Value> = ctx
                .transfers
                .shared_summaries()
                .into_iter()
                .map(|(id, name, size, chunks)| {
                    json!({
                        "content_id": id.to_hex(),
                        "filename": name,
                        "size": size,
                        "num_chunks": chunks,
                        "peers": [ctx.self_addr.to_string()],
                    })
                })
                .collect();
            Outcome::Reply(reply::success(fields(json!({ "available_content": list }))))
        }
        ApiRequest::AddFile { filepath } => {
            if ctx
                .transfers
                .add_file(filepath, Waiter { token, seq }, ctx.spawner)
            {
                Outcome::Deferred
            } else {
                busy()
            }
        }
        ApiRequest::RequestFile {
            content_hash,
            output_dir,
            peers,
        } => match ctx.transfers.request_file(
            now,
            content_hash,
            output_dir,
            &peers,
            Waiter { token, seq },
        ) {
            Ok(Some(bytes)) => Outcome::Reply(bytes),
            Ok(None) => Outcome::Deferred,
            Err(e) => Outcome::Reply(reply::error(&e)),
        },
        ApiRequest::CancelTransfer { content_hash } => {
            Outcome::Reply(match ctx.transfers.cancel(&content_hash) {
                Ok(discarded) => reply::success(fields(json!({
                    "message": "Download cancelled",
                    "content_hash": content_hash.to_hex(),
                    "discarded_bytes": discarded,
                }))),
                Err(e) => reply::error(&e),
            })
        }
        ApiRequest::TransferStatus { content_hash } => Outcome::Reply(reply::success(fields(
            ctx.transfers.status_json(content_hash),
        ))),
        // Answered by workers from the shared view; kept here so any caller gets an answer.
        ApiRequest::Status
        | ApiRequest::ListContent
        | ApiRequest::RoutingTable
        | ApiRequest::RegisterOnChain { .. }
        | ApiRequest::VerifyOnChain { .. }
        | ApiRequest::LedgerVerify
        | ApiRequest::LedgerHistory { .. }
        | ApiRequest::SetLimits { .. } => Outcome::Reply(reply::error(
            "internal: read-only command reached the event loop",
        )),
    }
}

/// The reply for a pending request whose lookup finished.
pub fn reply_for(p: &Pending, result: &QueryResult, dht: &Dht) -> Vec<u8> {
    match (p.what, result) {
        (Waiting::Announce(id), QueryResult::Announced { stored_at, asked }) => {
            let message = if *asked == 0 && dht.routing_table().is_empty() {
                "Content announced; no peers are known yet, so it will be announced as soon as one joins"
            } else {
                "Content announced"
            };
            reply::success(fields(json!({
                "message": message,
                "content_hash": id.to_hex(),
                "stored_at": stored_at,
                "asked": asked,
            })))
        }
        (Waiting::ContentInfo(id), QueryResult::Providers { providers, .. }) => {
            if providers.is_empty() {
                reply::error("Content not found in DHT")
            } else {
                let peers: Vec<String> = providers.iter().map(|a| a.to_string()).collect();
                reply::success(fields(json!({
                    "content_hash": id.to_hex(),
                    "peers": peers,
                })))
            }
        }
        _ => reply::error("internal: lookup finished with an unexpected result"),
    }
}

/// `local_list_content`: every content hash this node knows of in the DHT.
pub fn list_reply((view, _): &(std::sync::Arc<StatusView>, &Shared)) -> Vec<u8> {
    let hashes: Vec<String> = view.known_keys.iter().map(Id::to_hex).collect();
    reply::success(fields(json!({ "content_hashes": hashes })))
}

/// `routing_table`: every contact, closest bucket last.
pub fn routing_reply((view, _): &(std::sync::Arc<StatusView>, &Shared)) -> Vec<u8> {
    let mut rows: Vec<&(crate::proto::dht::Contact, usize, u64)> =
        view.routing_table.iter().collect();
    rows.sort_by_key(|(c, bucket, _)| (*bucket, c.id));
    let contacts: Vec<Value> = rows
        .iter()
        .map(|(c, bucket, age)| {
            json!({
                "node_id": c.id.to_hex(),
                "addr": c.addr.to_string(),
                "bucket": bucket,
                "last_seen_secs_ago": age,
            })
        })
        .collect();
    reply::success(fields(
        json!({ "node_id": view.node_id.to_hex(), "contacts": contacts }),
    ))
}

/// `status`: identity, addresses and counters.
pub fn status_reply((view, shared): &(std::sync::Arc<StatusView>, &Shared)) -> Vec<u8> {
    let s = &view.stats;
    reply::success(fields(json!({
        "node_id": view.node_id.to_hex(),
        "listen": view.listen.to_string(),
        "api": shared.api_addr.to_string(),
        "external_addr": view.external.map(|a| a.to_string()),
        "uptime_secs": shared.started.elapsed().as_secs(),
        "routing_table_size": view.routing_table.len(),
        "provider_records": view.provider_records,
        "provided": view.provided.iter().map(Id::to_hex).collect::<Vec<_>>(),
        "running_lookups": view.running_queries,
        "api_connections": view.api_connections,
        "dht": {
            "datagrams_in": s.datagrams_in,
            "datagrams_out": s.datagrams_out,
            "decode_errors": s.decode_errors,
            "unexpected_responses": s.unexpected_responses,
            "rate_limited": s.rate_limited,
            "timeouts": s.timeouts,
            "bad_tokens": s.bad_tokens,
            "emulated_drops": view.emulated_drops,
        },
        "bandwidth": bandwidth_json(&view.bandwidth, shared),
        "nat": view.nat,
    })))
}

/// Rates (as of the view), live byte totals and limits of wire-protocol bytes for `status`;
/// 0 is unlimited.
fn bandwidth_json(b: &crate::node::shared::BandwidthView, shared: &Shared) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    json!({
        "up_rate": b.up_rate,
        "down_rate": b.down_rate,
        "up_total": shared.wire_totals[0].load(Relaxed),
        "down_total": shared.wire_totals[1].load(Relaxed),
        "limits": limits_json(&b.limits),
    })
}

/// The limits as JSON (bytes per second; 0 is unlimited).
pub fn limits_json(l: &crate::net::bandwidth::Limits) -> Value {
    json!({
        "up": l.up,
        "down": l.down,
        "transfer_up": l.transfer_up,
        "transfer_down": l.transfer_down,
        "peer_up": l.peer_up,
        "peer_down": l.peer_down,
    })
}
