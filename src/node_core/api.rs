//! What each API command does to the node (spec: `protocol-spec/api.md`). Field names
//! follow the EchoChain API contract (`MISSION.md`) and must not change.
//!
//! Commands that read the node only (`status`, `local_list_content`, `routing_table`) are
//! answered from the published view (`view.rs`), usually by the driver's workers; the
//! ledger's commands leave the core as `Output::Ledger` (they append and fsync); every
//! other command runs here, on the core's state.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;

use super::library::Library;
use super::view::{fields, limits_json, list_reply, routing_reply, status_reply, Live, StatusView};
use crate::api::reply;
use crate::api::request::{ApiRequest, ContentQuery};
use crate::api::ReplyTo;
use crate::dht::{Dht, QueryId, QueryResult};
use crate::id::Id;
use crate::limits::Limits;

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
    /// The limits changed (now in `Ctx::limits`): enforce them, then send this reply.
    Limits(Vec<u8>),
    /// A ledger command: the driver runs it (`known`: whether this node has the content).
    Ledger {
        /// Whether this node shares or downloaded the content.
        known: bool,
    },
    /// A config command: read the config file and make these edits (none: only read), then
    /// answer (`settings.rs`).
    Config(Vec<(crate::settings::Key, Option<String>)>),
    /// A read-only command: answer it from a fresh view.
    View(fn(&StatusView, &Live) -> Vec<u8>),
}

/// What a command may act on.
pub struct Ctx<'a> {
    /// The DHT.
    pub dht: &'a mut Dht,
    /// The contents.
    pub library: &'a mut Library,
    /// The address this node serves content on, as others should see it.
    pub self_addr: SocketAddr,
    /// The bandwidth limits in force.
    pub limits: &'a mut Limits,
    /// NAT traversal: how each connection was made.
    pub nat: &'a super::NatGlue,
    /// The rates the driver measured (empty if it measures none).
    pub rates: &'a super::Rates,
}

/// Runs a command that needs the DHT or the library.
pub fn execute(req: &ApiRequest, ctx: Ctx<'_>, now: Instant, to: ReplyTo) -> Outcome {
    let dht = ctx.dht;
    let busy = || {
        Outcome::Reply(reply::error(
            "node busy: too many DHT lookups running, try again",
        ))
    };
    match req {
        ApiRequest::AnnounceContent { content_hash } => match dht.announce(*content_hash, 0, now) {
            Some(q) => Outcome::Wait(
                q,
                Pending {
                    to,
                    what: Waiting::Announce(*content_hash),
                },
            ),
            None => busy(),
        },
        ApiRequest::RequestContentInfo {
            query: ContentQuery::One(id),
        } => match dht.get_providers(*id, now) {
            Some(q) => Outcome::Wait(
                q,
                Pending {
                    to,
                    what: Waiting::ContentInfo(*id),
                },
            ),
            None => busy(),
        },
        ApiRequest::RequestContentInfo {
            query: ContentQuery::AllAvailable,
        } => {
            // What this node can vouch for: the files it shares (added or downloaded), with
            // itself as a provider. Other nodes' catalogues are not searchable (yet).
            Outcome::Reply(super::listing::available_content_reply(
                ctx.library.shared_summaries(),
                ctx.self_addr,
            ))
        }
        ApiRequest::AddFile { filepath } => {
            ctx.library.add_file(filepath.clone(), to);
            Outcome::Deferred
        }
        ApiRequest::RequestFile {
            content_hash,
            output_dir,
            peers,
            only,
        } => match ctx.library.request_file(
            now,
            *content_hash,
            output_dir.clone(),
            peers,
            only.clone(),
            to,
        ) {
            Some(bytes) => Outcome::Reply(bytes),
            None => Outcome::Deferred,
        },
        ApiRequest::ContentTree {
            content_hash,
            offset,
            limit,
            peers,
        } => match ctx
            .library
            .content_tree(now, *content_hash, (*offset, *limit), peers, to)
        {
            Some(bytes) => Outcome::Reply(bytes),
            None => Outcome::Deferred,
        },
        ApiRequest::CancelTransfer { content_hash } => match ctx.library.cancel(content_hash, to) {
            Ok(()) => Outcome::Deferred,
            Err(e) => Outcome::Reply(reply::error(&e)),
        },
        ApiRequest::Unshare { content_hash } => {
            Outcome::Reply(match ctx.library.unshare(content_hash) {
                Ok(path) => reply::success(fields(json!({
                    "message": format!(
                        "no longer sharing {}; the file stays at {}",
                        content_hash.to_hex(),
                        path.display()
                    ),
                    "file_path": path.display().to_string(),
                }))),
                Err(e) => reply::error(&e),
            })
        }
        ApiRequest::GetConfig => Outcome::Config(Vec::new()),
        ApiRequest::SetConfig { key, value } => Outcome::Config(vec![(*key, value.clone())]),
        ApiRequest::PauseTransfer { content_hash } => Outcome::Reply(
            ctx.library
                .pause_by_user(content_hash)
                .unwrap_or_else(|e| reply::error(&e)),
        ),
        ApiRequest::ResumeTransfer { content_hash } => Outcome::Reply(
            ctx.library
                .resume(now, content_hash)
                .unwrap_or_else(|e| reply::error(&e)),
        ),
        ApiRequest::TransferStatus { content_hash } => Outcome::Reply(reply::success(fields(
            ctx.library.status_json(*content_hash, ctx.rates),
        ))),
        ApiRequest::TransferPeers { content_hash } => Outcome::Reply(super::peers_view::reply(
            ctx.library,
            ctx.nat,
            ctx.rates,
            content_hash,
        )),
        ApiRequest::SetLimits { changes } => {
            let l = &mut *ctx.limits;
            l.apply(changes);
            log::info!("bandwidth limits now: {}", l.describe());
            Outcome::Limits(reply::success(fields(json!({
                "message": "limits set",
                "limits": limits_json(l),
            }))))
        }
        ApiRequest::RegisterOnChain { file_hash, .. } => Outcome::Ledger {
            known: ctx.library.knows(file_hash),
        },
        ApiRequest::VerifyOnChain { .. }
        | ApiRequest::LedgerVerify
        | ApiRequest::LedgerHistory { .. } => Outcome::Ledger { known: false },
        ApiRequest::Status => Outcome::View(status_reply),
        ApiRequest::ListContent => Outcome::View(|v, _| list_reply(v)),
        ApiRequest::RoutingTable => Outcome::View(|v, _| routing_reply(v)),
    }
}

/// Where a parsed request is answered (the driver follows this on its workers).
pub enum Route {
    /// From the published view, at once.
    View(fn(&StatusView, &Live) -> Vec<u8>),
    /// From the ledger (reads files): run it where files may be read.
    Ledger,
    /// By the core.
    Core,
}

/// Where `req` is answered: the read-only commands from the view, the ledger's reads from
/// the ledger, everything else (registering included: it needs to know whether this node
/// has the content) by the core.
pub fn route(req: &ApiRequest) -> Route {
    match req {
        ApiRequest::Status => Route::View(status_reply),
        ApiRequest::ListContent => Route::View(|v, _| list_reply(v)),
        ApiRequest::RoutingTable => Route::View(|v, _| routing_reply(v)),
        ApiRequest::VerifyOnChain { .. }
        | ApiRequest::LedgerVerify
        | ApiRequest::LedgerHistory { .. } => Route::Ledger,
        ApiRequest::RegisterOnChain { .. }
        | ApiRequest::AnnounceContent { .. }
        | ApiRequest::RequestContentInfo { .. }
        | ApiRequest::AddFile { .. }
        | ApiRequest::RequestFile { .. }
        | ApiRequest::CancelTransfer { .. }
        | ApiRequest::Unshare { .. }
        | ApiRequest::PauseTransfer { .. }
        | ApiRequest::ResumeTransfer { .. }
        | ApiRequest::GetConfig
        | ApiRequest::SetConfig { .. }
        | ApiRequest::TransferStatus { .. }
        | ApiRequest::TransferPeers { .. }
        | ApiRequest::ContentTree { .. }
        | ApiRequest::SetLimits { .. } => Route::Core,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::DhtConfig;
    use serde_json::Value;

    fn content_info(dht: &Dht, id: Id, providers: Vec<SocketAddr>, me: SocketAddr) -> Value {
        let p = Pending {
            to: ReplyTo { conn: 1, seq: 0 },
            what: Waiting::ContentInfo(id),
        };
        let result = QueryResult::Providers {
            providers,
            closest: Vec::new(),
            node_ids: Vec::new(),
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
        let dht = Dht::new(
            crate::identity::Identity::from_secret(&[1; 32]),
            DhtConfig::default(),
            1,
            now,
        );
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
        let mut dht = Dht::new(
            crate::identity::Identity::from_secret(&[1; 32]),
            DhtConfig::default(),
            1,
            now,
        );
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
