//! Executing API commands against the node (the reactor calls these on its thread for
//! commands that need the DHT; workers call the read-only ones with the shared view).
//! Field names follow the EchoChain API contract (`protocol-spec/api.md`,
//! after `MISSION.md`) and must not change.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::api::reply;
use crate::api::request::{ApiRequest, ContentQuery};
use crate::api::ReplyTo;
use crate::dht::{Dht, QueryId, QueryResult};
use crate::id::Id;
use crate::ledger::{self, Ledger};
use crate::node::library::Library;
use crate::node::shared::{Shared, StatusView};

/// A request waiting for a DHT lookup to finish.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Where the reply goes.
    pub to: ReplyTo,
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
    /// The library will answer (the request waits there).
    Deferred,
}

/// What a command may act on.
pub struct Ctx<'a> {
    /// The DHT.
    pub dht: &'a mut Dht,
    /// The contents.
    pub library: &'a mut Library,
    /// The address this node serves content on, as others should see it.
    pub self_addr: SocketAddr,
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

/// Runs a command that needs the DHT or the library.
pub fn execute(req: ApiRequest, ctx: Ctx<'_>, now: Instant, to: ReplyTo) -> Outcome {
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
                    to,
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
                    to,
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
                .library
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
            ctx.library.add_file(filepath, to);
            Outcome::Deferred
        }
        ApiRequest::RequestFile {
            content_hash,
            output_dir,
            peers,
        } => match ctx
            .library
            .request_file(now, content_hash, output_dir, &peers, to)
        {
            Some(bytes) => Outcome::Reply(bytes),
            None => Outcome::Deferred,
        },
        ApiRequest::CancelTransfer { content_hash } => {
            match ctx.library.cancel(&content_hash, to) {
                Ok(()) => Outcome::Deferred,
                Err(e) => Outcome::Reply(reply::error(&e)),
            }
        }
        ApiRequest::TransferStatus { content_hash } => Outcome::Reply(reply::success(fields(
            ctx.library.status_json(content_hash),
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

/// Providers listed in one `local_request_content_info` reply: 50 IPv6 addresses still fit
/// the single 4096-byte read of EchoChain's clients (`protocol-spec/api.md`, section 3).
pub const API_MAX_PEERS: usize = 50;

/// The reply for a pending request whose lookup finished. `self_addr` is this node's
/// address for clients: a node that provides the content lists itself first, since no
/// lookup returns a node's own record to it (a lone node would otherwise say "not found").
pub fn reply_for(p: &Pending, result: &QueryResult, dht: &Dht, self_addr: SocketAddr) -> Vec<u8> {
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
            let mut list: Vec<SocketAddr> = Vec::with_capacity(API_MAX_PEERS);
            if dht.is_providing(&id) {
                list.push(self_addr);
            }
            for a in providers {
                if list.len() == API_MAX_PEERS {
                    break;
                }
                // Our own record, as another node saw us: already listed.
                if dht.is_providing(&id) && is_self(*a, self_addr) {
                    continue;
                }
                list.push(*a);
            }
            if list.is_empty() {
                reply::error("Content not found in DHT")
            } else {
                let peers: Vec<String> = list.iter().map(|a| a.to_string()).collect();
                reply::success(fields(json!({
                    "content_hash": id.to_hex(),
                    "peers": peers,
                })))
            }
        }
        _ => reply::error("internal: lookup finished with an unexpected result"),
    }
}

/// Whether a provider address other nodes gave us is this node: our port at our address,
/// or at a loopback one (how nodes on the same machine see us).
fn is_self(a: SocketAddr, me: SocketAddr) -> bool {
    a.port() == me.port() && (a.ip() == me.ip() || a.ip().is_loopback())
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
        "api_refused": view.api_refused,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::DhtConfig;

    fn content_info(dht: &Dht, id: Id, providers: Vec<SocketAddr>, me: SocketAddr) -> Value {
        let p = Pending {
            to: ReplyTo { conn: 1, seq: 0 },
            what: Waiting::ContentInfo(id),
        };
        let result = QueryResult::Providers {
            providers,
            closest: Vec::new(),
        };
        let bytes = reply_for(&p, &result, dht, me);
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        serde_json::from_slice(&bytes).unwrap()
    }

    fn peers(v: &Value) -> Vec<String> {
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn provider_lists_fit_one_4096_byte_read() {
        let now = Instant::now();
        let dht = Dht::new(Id([1; 32]), DhtConfig::default(), 1, now);
        let me: SocketAddr = "192.0.2.1:8001".parse().unwrap();
        // 200 providers of the longest form (IPv6, 5-digit port): 50 listed.
        let many: Vec<SocketAddr> = (0..200u16)
            .map(|i| {
                format!("[2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}]:65535")
                    .parse()
                    .unwrap()
            })
            .collect();
        let v = content_info(&dht, Id([2; 32]), many.clone(), me);
        assert_eq!(v["status"], "success");
        let got = peers(&v);
        assert_eq!(got.len(), API_MAX_PEERS);
        assert_eq!(got[0], many[0].to_string());
    }

    #[test]
    fn a_provider_lists_itself_once_and_first() {
        let now = Instant::now();
        let mut dht = Dht::new(Id([1; 32]), DhtConfig::default(), 1, now);
        let me: SocketAddr = "192.0.2.1:8001".parse().unwrap();
        let id = Id([2; 32]);
        let other: SocketAddr = "198.51.100.7:8001".parse().unwrap();
        // Not providing, nothing found: the contract's error.
        let v = content_info(&dht, id, Vec::new(), me);
        assert_eq!(v["message"], "Content not found in DHT");
        let _ = dht.announce(id, 0, now);
        // Alone: ourselves.
        assert_eq!(
            peers(&content_info(&dht, id, Vec::new(), me)),
            [me.to_string()]
        );
        // Our record as others store it (at our address, or on loopback) is not repeated; a
        // node on another address with the same port is someone else.
        let back = vec!["127.0.0.1:8001".parse().unwrap(), me, other];
        assert_eq!(
            peers(&content_info(&dht, id, back, me)),
            [me.to_string(), other.to_string()]
        );
    }
}
