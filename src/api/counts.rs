//! How many API requests the node answered, by command, and how many replies were errors:
//! for `/metrics` (http.md section 5). Requests over the API port and over `POST /api` count
//! alike. The command table is fixed, so the counters are too (bounded whatever clients send).

use std::sync::atomic::{AtomicU64, Ordering};

/// The commands counted, by their wire names; anything else (unknown commands, requests that
/// do not parse) is counted as [`OTHER`].
pub const COMMANDS: [&str; 21] = [
    "local_add_file",
    "local_announce_content",
    "local_request_content_info",
    "local_request_file",
    "local_list_content",
    "local_register_file_on_chain",
    "local_verify_file_on_chain",
    "status",
    "routing_table",
    "transfer_status",
    "transfer_peers",
    "content_tree",
    "cancel_transfer",
    "unshare",
    "pause_transfer",
    "resume_transfer",
    "get_config",
    "set_config",
    "set_limits",
    "ledger_verify",
    "ledger_history",
];

/// The label of requests that name no command of [`COMMANDS`] or do not parse.
pub const OTHER: &str = "invalid";

/// Counters shared by the loop and the workers.
#[derive(Default)]
pub struct ApiCounters {
    requests: [AtomicU64; COMMANDS.len() + 1],
    errors: AtomicU64,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiCounts {
    /// Requests by command, in [`COMMANDS`]' order, then [`OTHER`].
    pub requests: [u64; COMMANDS.len() + 1],
    /// Replies with `"status": "error"`.
    pub errors: u64,
}

impl ApiCounters {
    /// A request for `command` (its wire name; `None`: it did not parse).
    pub fn request(&self, command: Option<&str>) {
        let i = command
            .and_then(|c| COMMANDS.iter().position(|k| *k == c))
            .unwrap_or(COMMANDS.len());
        if let Some(n) = self.requests.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request that did not parse (`bytes`): counted under the command it names, if it
    /// names one of [`COMMANDS`] (a bad payload), else as [`OTHER`]. Read again only on
    /// this error path.
    pub fn refused_request(&self, bytes: &[u8]) {
        let v: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
        self.request(v.as_ref().and_then(|v| v.get("type")?.as_str()));
    }

    /// A reply went out: counted if it is an error.
    pub fn reply(&self, bytes: &[u8]) {
        if is_error(bytes) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> ApiCounts {
        let mut c = ApiCounts {
            errors: self.errors.load(Ordering::Relaxed),
            ..ApiCounts::default()
        };
        for (to, from) in c.requests.iter_mut().zip(&self.requests) {
            *to = from.load(Ordering::Relaxed);
        }
        c
    }
}

/// Whether a reply (one compact JSON object, as `reply` makes them) has `"status": "error"`
/// at its top level. A scan, not a parse: a `"status"` key inside a nested object (a
/// ledger record's metadata, which a client wrote) does not count, and inside a string a
/// quote is escaped, so the pattern cannot occur there.
pub fn is_error(reply: &[u8]) -> bool {
    const KEY: &[u8] = b"\"status\":\"error\"";
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in reply.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' if depth == 1 && reply.get(i..).is_some_and(|r| r.starts_with(KEY)) => {
                return true
            }
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reply;
    use serde_json::{json, Map, Value};

    #[test]
    fn errors_are_told_from_successes() {
        assert!(is_error(&reply::error("no such content")));
        let mut f = Map::new();
        f.insert("verified".into(), Value::from(false));
        assert!(is_error(&reply::error_with("not registered", f)));
        let mut f = Map::new();
        f.insert(
            "metadata".into(),
            json!({"status": "error", "x": "\"status\":\"error\""}),
        );
        f.insert("message".into(), Value::from("\"status\":\"error\""));
        assert!(!is_error(&reply::success(f)));
        assert!(!is_error(b"not json at all"));
    }

    #[test]
    fn requests_count_by_command() {
        let c = ApiCounters::default();
        c.request(Some("status"));
        c.request(Some("status"));
        c.request(Some("no_such_command"));
        c.request(None);
        c.refused_request(br#"{"type":"status","payload":7}"#);
        c.refused_request(b"{");
        c.reply(&reply::error("x"));
        let s = c.snapshot();
        let status = COMMANDS.iter().position(|k| *k == "status").unwrap();
        assert_eq!(s.requests[status], 3);
        assert_eq!(s.requests[COMMANDS.len()], 3);
        assert_eq!(s.errors, 1);
    }
}
