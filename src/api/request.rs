//! Typed API requests: turns one framed request's bytes into an [`ApiRequest`].
//!
//! A request is `{"type": "<command>", "payload": {...}}` (see "The local API contract" in
//! `MISSION.md`). Every rejection is an [`ApiError`] whose message is written back to the
//! client as the error reply's `message`, so the messages are meant for people.

use crate::content::tree::select::{Selection, MAX_GLOBS};
use std::fmt;

use serde_json::{Map, Value};

use crate::id::Id;
use crate::ledger::{Metadata, Mnemonic};
use crate::settings::Key;

/// The fields of `set_limits`, in the order of [`ApiRequest::SetLimits`]'s `changes`.
pub const LIMIT_FIELDS: [&str; 6] = crate::limits::Limits::FIELDS;

/// The `content_hash` value that asks for every piece of content the network knows about.
pub const ALL_AVAILABLE_CONTENT: &str = "all_available_content";

/// Most entries of a folder one `content_tree` reply lists (about 100 bytes each: a reply
/// stays near 1 MB; `offset` pages through bigger folders).
pub const TREE_PAGE: usize = 10_000;

/// A request this node can execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// `local_announce_content`: announce that this node provides `content_hash`.
    AnnounceContent {
        /// The content ID to announce.
        content_hash: Id,
    },
    /// `local_request_content_info`: who provides some content, or what content exists.
    RequestContentInfo {
        /// What is asked about.
        query: ContentQuery,
    },
    /// `local_list_content`: the content IDs this node knows.
    ListContent,
    /// `status`: the node's status (an extra command, not in the EchoChain contract).
    Status,
    /// `routing_table`: the contacts of the node's routing table (an extra command).
    RoutingTable,
    /// `local_add_file`: share a file in place.
    AddFile {
        /// The file, as the client named it (absolute, or relative to the node's directory).
        filepath: std::path::PathBuf,
    },
    /// `local_request_file`: download content (blocks until it is complete).
    RequestFile {
        /// What to download.
        content_hash: Id,
        /// Where to put the file (extra field; default: the node's download folder).
        output_dir: Option<std::path::PathBuf>,
        /// Peers to try besides those the DHT knows (extra field, `"ip:port"` strings; at
        /// most 50), like the peer hints of a magnet link.
        peers: Vec<std::net::SocketAddr>,
        /// Only the entries of a folder these globs select (extra field `only`, api.md 5.5).
        only: Option<std::sync::Arc<Selection>>,
    },
    /// `set_limits`: changes bandwidth limits while running (an extra command). Each field
    /// is bytes per second (0: unlimited); absent fields stay as they are.
    SetLimits {
        /// `up`, `down`, `transfer_up`, `transfer_down`, `peer_up`, `peer_down`, in order.
        changes: [Option<u64>; 6],
    },
    /// `cancel_transfer`: stops a download and deletes its partial data (an extra command).
    CancelTransfer {
        /// The download to stop.
        content_hash: Id,
    },
    /// `unshare`: stops sharing content without touching its file (an extra command).
    Unshare {
        /// The content to stop sharing.
        content_hash: Id,
    },
    /// `pause_transfer`: pauses a download until `resume_transfer`, across restarts too (an
    /// extra command).
    PauseTransfer {
        /// The download to pause.
        content_hash: Id,
    },
    /// `resume_transfer`: resumes a paused download (an extra command).
    ResumeTransfer {
        /// The download to resume.
        content_hash: Id,
    },
    /// `get_config`: the settings in force, where each comes from, and what the config file
    /// says (an extra command).
    GetConfig,
    /// `set_config`: sets (or with no value removes) a key of the config file and applies
    /// it where it can (an extra command).
    SetConfig {
        /// The key.
        key: Key,
        /// Its new value (checked), or `None` to remove it.
        value: Option<String>,
    },
    /// `transfer_status`: progress of downloads (an extra command); one or all.
    TransferStatus {
        /// One content, or every transfer when absent.
        content_hash: Option<Id>,
    },
    /// `content_tree`: what a content holds (a folder's paths and sizes), from its manifest,
    /// fetched from peers if this node does not have it; nothing else is downloaded.
    ContentTree {
        /// The content.
        content_hash: Id,
        /// The first entry to list (entries are in the manifest's order).
        offset: usize,
        /// How many entries at most ([`TREE_PAGE`] at most).
        limit: usize,
        /// Peers to try besides those the DHT knows.
        peers: Vec<std::net::SocketAddr>,
    },
    /// `transfer_peers`: the peers of one transfer, each with its connection, rates and
    /// chunks (an extra command).
    TransferPeers {
        /// The download or share.
        content_hash: Id,
    },
    /// `local_register_file_on_chain`: record that the owner of a mnemonic claims content.
    RegisterOnChain {
        /// The content ID.
        file_hash: Id,
        /// The owner's secret phrase (normalised; never logged).
        owner_mnemonic: Mnemonic,
        /// The owner's metadata (a JSON object of bounded size).
        metadata: Metadata,
    },
    /// `local_verify_file_on_chain`: who holds a valid registration of content.
    VerifyOnChain {
        /// The content ID.
        file_hash: Id,
        /// Only this owner (the ledger checks the address); absent, null or empty: any.
        owner_address: Option<String>,
    },
    /// `ledger_verify`: check the whole ledger (an extra command).
    LedgerVerify,
    /// `ledger_history`: registrations, oldest first (an extra command); one content or all.
    LedgerHistory {
        /// One content, or every registration when absent.
        file_hash: Option<Id>,
    },
}

impl ApiRequest {
    /// The wire name of the command, for logs.
    pub fn command(&self) -> &'static str {
        match self {
            ApiRequest::AnnounceContent { .. } => "local_announce_content",
            ApiRequest::RequestContentInfo { .. } => "local_request_content_info",
            ApiRequest::ListContent => "local_list_content",
            ApiRequest::Status => "status",
            ApiRequest::RoutingTable => "routing_table",
            ApiRequest::AddFile { .. } => "local_add_file",
            ApiRequest::RequestFile { .. } => "local_request_file",
            ApiRequest::TransferStatus { .. } => "transfer_status",
            ApiRequest::TransferPeers { .. } => "transfer_peers",
            ApiRequest::ContentTree { .. } => "content_tree",
            ApiRequest::CancelTransfer { .. } => "cancel_transfer",
            ApiRequest::Unshare { .. } => "unshare",
            ApiRequest::PauseTransfer { .. } => "pause_transfer",
            ApiRequest::GetConfig => "get_config",
            ApiRequest::SetConfig { .. } => "set_config",
            ApiRequest::ResumeTransfer { .. } => "resume_transfer",
            ApiRequest::SetLimits { .. } => "set_limits",
            ApiRequest::RegisterOnChain { .. } => "local_register_file_on_chain",
            ApiRequest::VerifyOnChain { .. } => "local_verify_file_on_chain",
            ApiRequest::LedgerVerify => "ledger_verify",
            ApiRequest::LedgerHistory { .. } => "ledger_history",
        }
    }
}

impl ApiRequest {
    /// Whether the reply shows rates the driver measures (so it hands them in).
    pub fn shows_rates(&self) -> bool {
        matches!(
            self,
            ApiRequest::TransferStatus { .. } | ApiRequest::TransferPeers { .. }
        )
    }
}

/// The subject of a `local_request_content_info` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentQuery {
    /// The peers that provide this content ID.
    One(Id),
    /// Every piece of available content (`content_hash` = `"all_available_content"`).
    AllAvailable,
}

/// Why a request was rejected; `message` is the error reply's `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Parses one request, as framed by [`crate::api::framing`]. Unknown extra fields are
/// ignored; hex IDs are accepted in either case.
pub fn parse_request(bytes: &[u8]) -> Result<ApiRequest, ApiError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| ApiError::new("request is not valid UTF-8"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::new(format!("malformed JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::new("request must be a JSON object"))?;
    let command = match object.get("type") {
        None => {
            return Err(ApiError::new(
                "missing field `type` (the command name) in request",
            ))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::new("field `type` must be a string")),
    };
    let payload = object.get("payload");
    match command {
        "local_announce_content" => {
            let payload = payload_object(command, payload, "content_hash")?;
            let hash = string_field(command, payload, "content_hash")?;
            Ok(ApiRequest::AnnounceContent {
                content_hash: parse_id("content_hash", hash)?,
            })
        }
        "local_request_content_info" => {
            let payload = payload_object(command, payload, "content_hash")?;
            let hash = string_field(command, payload, "content_hash")?;
            let query = if hash == ALL_AVAILABLE_CONTENT {
                ContentQuery::AllAvailable
            } else {
                ContentQuery::One(parse_id("content_hash", hash)?)
            };
            Ok(ApiRequest::RequestContentInfo { query })
        }
        "local_list_content" => {
            optional_payload(command, payload)?;
            Ok(ApiRequest::ListContent)
        }
        "status" => {
            optional_payload(command, payload)?;
            Ok(ApiRequest::Status)
        }
        "routing_table" => {
            optional_payload(command, payload)?;
            Ok(ApiRequest::RoutingTable)
        }
        "local_add_file" => {
            let payload = payload_object(command, payload, "filepath")?;
            let path = string_field(command, payload, "filepath")?;
            if path.is_empty() || path.contains('\0') {
                return Err(ApiError::new(
                    "filepath must be a non-empty path without NUL bytes",
                ));
            }
            Ok(ApiRequest::AddFile {
                filepath: std::path::PathBuf::from(path),
            })
        }
        "local_request_file" => {
            let payload = payload_object(command, payload, "content_hash")?;
            let hash = string_field(command, payload, "content_hash")?;
            let output_dir = match payload.get("output_dir") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => {
                    Some(std::path::PathBuf::from(s))
                }
                Some(_) => {
                    return Err(ApiError::new(
                        "field `output_dir` must be a non-empty path string",
                    ))
                }
            };
            let peers = peers_field(payload)?;
            Ok(ApiRequest::RequestFile {
                content_hash: parse_id("content_hash", hash)?,
                output_dir,
                peers,
                only: only_field(payload)?.map(std::sync::Arc::new),
            })
        }
        "set_limits" => {
            optional_payload(command, payload)?;
            let mut changes = [None; 6];
            for (i, name) in LIMIT_FIELDS.iter().enumerate() {
                changes[i] = match payload.and_then(|p| p.get(*name)) {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                        ApiError::new(format!(
                            "field `{name}` must be a whole number of bytes per second (0: unlimited)"
                        ))
                    })?),
                    Some(Value::String(s)) => Some(
                        crate::limits::parse_rate(s)
                            .map_err(|e| ApiError::new(format!("field `{name}`: {e}")))?,
                    ),
                    Some(_) => {
                        return Err(ApiError::new(format!(
                            "field `{name}` must be a number of bytes per second or a string like \"5MB/s\""
                        )))
                    }
                };
            }
            Ok(ApiRequest::SetLimits { changes })
        }
        "cancel_transfer" => Ok(ApiRequest::CancelTransfer {
            content_hash: content_hash(command, payload)?,
        }),
        "unshare" => Ok(ApiRequest::Unshare {
            content_hash: content_hash(command, payload)?,
        }),
        "get_config" => {
            optional_payload(command, payload)?;
            Ok(ApiRequest::GetConfig)
        }
        "set_config" => {
            let payload = payload_object(command, payload, "key")?;
            let name = string_field(command, payload, "key")?;
            let key = Key::parse(name).ok_or_else(|| {
                ApiError::new(format!(
                    "unknown key `{name}` (the keys are {})",
                    Key::names()
                ))
            })?;
            let value = match payload.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(v)) => Some(v.trim().to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(ApiError::new(
                        "field `value` must be a string (or null to remove the key)",
                    ))
                }
            };
            if let Some(v) = &value {
                key.check(v).map_err(ApiError::new)?;
            }
            Ok(ApiRequest::SetConfig { key, value })
        }
        "pause_transfer" => Ok(ApiRequest::PauseTransfer {
            content_hash: content_hash(command, payload)?,
        }),
        "resume_transfer" => Ok(ApiRequest::ResumeTransfer {
            content_hash: content_hash(command, payload)?,
        }),
        "transfer_status" => {
            optional_payload(command, payload)?;
            let content_hash = match payload.and_then(|p| p.get("content_hash")) {
                None | Some(Value::Null) => None,
                Some(Value::String(h)) => Some(parse_id("content_hash", h)?),
                Some(_) => return Err(ApiError::new("field `content_hash` must be a string")),
            };
            Ok(ApiRequest::TransferStatus { content_hash })
        }
        "content_tree" => {
            let payload = payload_object(command, payload, "content_hash")?;
            Ok(ApiRequest::ContentTree {
                content_hash: parse_id(
                    "content_hash",
                    string_field(command, payload, "content_hash")?,
                )?,
                offset: count_field(payload, "offset", 0, u64::from(u32::MAX))? as usize,
                limit: count_field(payload, "limit", TREE_PAGE as u64, TREE_PAGE as u64)? as usize,
                peers: peers_field(payload)?,
            })
        }
        "transfer_peers" => Ok(ApiRequest::TransferPeers {
            content_hash: content_hash(command, payload)?,
        }),
        "local_register_file_on_chain" => {
            let payload = payload_object(command, payload, "file_hash")?;
            let file_hash = parse_id("file_hash", string_field(command, payload, "file_hash")?)?;
            let owner_mnemonic = Mnemonic::new(string_field(command, payload, "owner_mnemonic")?)
                .map_err(|e| ApiError::new(format!("owner_mnemonic: {e}")))?;
            let metadata = match payload.get("metadata") {
                None => {
                    return Err(ApiError::new(format!(
                        "missing field `metadata` in payload of {command} (a JSON object; {{}} for none)"
                    )))
                }
                Some(v) => Metadata::from_value(v).map_err(|e| ApiError::new(e.to_string()))?,
            };
            Ok(ApiRequest::RegisterOnChain {
                file_hash,
                owner_mnemonic,
                metadata,
            })
        }
        "local_verify_file_on_chain" => {
            let payload = payload_object(command, payload, "file_hash")?;
            let file_hash = parse_id("file_hash", string_field(command, payload, "file_hash")?)?;
            let owner_address = match payload.get("owner_address") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                Some(_) => return Err(ApiError::new("field `owner_address` must be a string")),
            };
            Ok(ApiRequest::VerifyOnChain {
                file_hash,
                owner_address,
            })
        }
        "ledger_verify" => {
            optional_payload(command, payload)?;
            Ok(ApiRequest::LedgerVerify)
        }
        "ledger_history" => {
            optional_payload(command, payload)?;
            let file_hash = match payload.and_then(|p| p.get("file_hash")) {
                None | Some(Value::Null) => None,
                Some(Value::String(h)) => Some(parse_id("file_hash", h)?),
                Some(_) => return Err(ApiError::new("field `file_hash` must be a string")),
            };
            Ok(ApiRequest::LedgerHistory { file_hash })
        }
        _ => Err(ApiError::new("Unknown command")),
    }
}

/// The payload of a command that has fields: it must be present and an object.
/// `first_field` names a required field, so the error says what the payload should hold.
fn payload_object<'a>(
    command: &str,
    payload: Option<&'a Value>,
    first_field: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    match payload {
        Some(Value::Object(map)) => Ok(map),
        None | Some(Value::Null) => Err(ApiError::new(format!(
            "missing field `payload` in {command} request (it needs `{first_field}`)"
        ))),
        Some(_) => Err(ApiError::new(format!(
            "field `payload` of {command} must be a JSON object"
        ))),
    }
}

/// The optional `peers` field: at most 50 `"ip:port"` strings to try besides the DHT's.
fn peers_field(payload: &Map<String, Value>) -> Result<Vec<std::net::SocketAddr>, ApiError> {
    match payload.get("peers") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() <= 50 => a
            .iter()
            .map(|p| {
                p.as_str()
                    .and_then(|s| s.parse::<std::net::SocketAddr>().ok())
                    .ok_or_else(|| {
                        ApiError::new("field `peers` must be a list of \"ip:port\" strings")
                    })
            })
            .collect(),
        Some(_) => Err(ApiError::new(
            "field `peers` must be a list of at most 50 \"ip:port\" strings",
        )),
    }
}

/// The optional `only` field: 1 to 64 globs selecting part of a folder (api.md 5.5).
fn only_field(payload: &Map<String, Value>) -> Result<Option<Selection>, ApiError> {
    let shape = || ApiError::new("field `only` must be a list of 1 to 64 glob strings");
    match payload.get("only") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_GLOBS => {
            let globs = a
                .iter()
                .map(|g| g.as_str().ok_or_else(shape))
                .collect::<Result<Vec<&str>, _>>()?;
            Selection::parse(&globs)
                .map(Some)
                .map_err(|e| ApiError::new(format!("field `only`: {e}")))
        }
        Some(_) => Err(shape()),
    }
}

/// An optional whole-number field, `default` when absent or null, at most `max`.
fn count_field(
    payload: &Map<String, Value>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
            ApiError::new(format!("field `{name}` must be a whole number up to {max}"))
        }),
    }
}

/// The payload of a command with no fields: absent, null, or an object (contents ignored).
fn optional_payload(command: &str, payload: Option<&Value>) -> Result<(), ApiError> {
    match payload {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::new(format!(
            "field `payload` of {command} must be a JSON object"
        ))),
    }
}

fn string_field<'a>(
    command: &str,
    payload: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match payload.get(name) {
        None => Err(ApiError::new(format!(
            "missing field `{name}` in payload of {command}"
        ))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::new(format!("field `{name}` must be a string"))),
    }
}

/// The payload of a command whose one field is the required `content_hash`.
fn content_hash(command: &str, payload: Option<&Value>) -> Result<Id, ApiError> {
    let payload = payload_object(command, payload, "content_hash")?;
    parse_id(
        "content_hash",
        string_field(command, payload, "content_hash")?,
    )
}

fn parse_id(name: &str, hex: &str) -> Result<Id, ApiError> {
    Id::from_hex(hex).map_err(|e| ApiError::new(format!("{name} must be 64 hex characters ({e})")))
}

#[cfg(test)]
mod tests;
