//! The local API's ledger commands: what each reply holds (see "The local API contract" in
//! `MISSION.md` and `protocol-spec/ledger.md`, section 10).
//!
//! - `local_register_file_on_chain` → `file_hash`, `owner_address`, `record`, `record_hash`,
//!   `registered_at` (and `already_registered`).
//! - `local_verify_file_on_chain` → `status` says whether a valid registration (by that
//!   owner) exists: `success` with `verified: true` and `owners`, else `error` with
//!   `verified: false`. A damaged ledger is always an error carrying `ledger_error`, never a
//!   silent success.
//! - `ledger_verify` (extra) → the whole chain checked: `records`, `head_hash`, ...
//! - `ledger_history` (extra) → `records`: registrations, oldest first.
//!
//! Each function returns a [`LedgerReply`], which the node encodes as an API reply and the
//! CLI's offline mode (`--data-dir`) prints as the same JSON.

use serde_json::{json, Map, Value};

use crate::id::Id;
use crate::ledger::{Claim, Ledger, LedgerError, Metadata, Mnemonic, OwnerClaim, Registration};

/// Most records a `ledger_history` reply lists (the most recent ones); `total` says how
/// many matched.
pub const HISTORY_LIMIT: usize = 1000;

/// A reply before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerReply {
    /// Success or error.
    pub ok: bool,
    /// `message` and the other fields (`status` is added when encoding).
    pub fields: Map<String, Value>,
}

impl LedgerReply {
    fn new(ok: bool, fields: Value) -> LedgerReply {
        LedgerReply {
            ok,
            fields: match fields {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        }
    }

    fn error(message: impl Into<String>) -> LedgerReply {
        LedgerReply::new(false, json!({ "message": message.into() }))
    }

    /// The API reply bytes (one compact JSON object and `\n`, like every API reply).
    pub fn into_bytes(self) -> Vec<u8> {
        match serde_json::to_vec(&self.into_value()) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                bytes
            }
            // serde_json does not fail on a `Value`; never panic on a reply all the same.
            Err(_) => b"{\"message\":\"ledger reply could not be encoded\",\"status\":\"error\"}\n"
                .to_vec(),
        }
    }

    /// The reply as a JSON object, `status` included.
    pub fn into_value(self) -> Value {
        let mut m = self.fields;
        m.insert(
            "status".to_owned(),
            Value::from(if self.ok { "success" } else { "error" }),
        );
        Value::Object(m)
    }
}

/// The reply when the node has no ledger (it could not be opened).
pub fn unavailable() -> LedgerReply {
    LedgerReply::error("this node has no ledger available")
}

/// Fields that describe a failure: damage gets `ledger_error` besides the message.
fn failure(prefix: &str, e: &LedgerError, mut extra: Value) -> LedgerReply {
    if let LedgerError::Damaged(d) = e {
        extra["ledger_error"] = json!(d.to_string());
    }
    extra["message"] = json!(format!("{prefix}{e}"));
    LedgerReply::new(false, extra)
}

/// `local_register_file_on_chain`. `known`: whether this node shares the content or has
/// downloaded it (only such content can be registered).
pub fn register(
    ledger: &dyn Ledger,
    known: bool,
    file_hash: Id,
    mnemonic: &Mnemonic,
    metadata: &Metadata,
    unix_time: u64,
) -> LedgerReply {
    if !known {
        return LedgerReply::error(format!(
            "Content {file_hash} is not known to this node: share it (local_add_file) or \
             download it (local_request_file) before registering it"
        ));
    }
    let reg = Registration {
        file_hash,
        mnemonic,
        metadata,
        unix_time,
    };
    match ledger.register(reg) {
        Ok(r) => LedgerReply::new(
            true,
            json!({
                "message": if r.already_registered {
                    "File already registered by this owner with the same metadata"
                } else {
                    "File registered on the ledger"
                },
                "file_hash": r.file_hash.to_hex(),
                "owner_address": r.owner_address,
                "record": r.record,
                "record_hash": r.record_hash,
                "registered_at": r.registered_at,
                "already_registered": r.already_registered,
            }),
        ),
        Err(e) => failure(
            "Not registered: ",
            &e,
            json!({ "file_hash": file_hash.to_hex() }),
        ),
    }
}

fn owner_json(c: &OwnerClaim) -> Value {
    json!({
        "owner_address": c.latest.owner_address,
        "registered_at": c.latest.registered_at,
        "metadata": c.latest.metadata.as_map(),
        "record": c.latest.record,
        "first_registered_at": c.first_registered_at,
    })
}

fn claim_json(c: &Claim) -> Value {
    json!({
        "record": c.record,
        "record_hash": c.record_hash,
        "file_hash": c.file_hash.to_hex(),
        "owner_address": c.owner_address,
        "registered_at": c.registered_at,
        "metadata": c.metadata.as_map(),
    })
}

/// `local_verify_file_on_chain`.
pub fn verify(ledger: &dyn Ledger, file_hash: &Id, owner: Option<&str>) -> LedgerReply {
    let base = || json!({ "verified": false, "file_hash": file_hash.to_hex() });
    match ledger.verify(file_hash, owner) {
        Ok(v) if v.verified() => LedgerReply::new(
            true,
            json!({
                "message": match &v.owner {
                    Some(o) => format!("{file_hash} is registered by {o}"),
                    None => format!("{file_hash} is registered by {} owner(s)", v.owners.len()),
                },
                "verified": true,
                "file_hash": file_hash.to_hex(),
                "owners": v.owners.iter().map(owner_json).collect::<Vec<_>>(),
            }),
        ),
        Ok(v) => {
            let mut f = base();
            f["message"] = json!(match &v.owner {
                Some(o) => format!("No valid registration of {file_hash} by {o}"),
                None => format!("No valid registration of {file_hash}"),
            });
            if let Some(o) = v.owner {
                f["owner_address"] = json!(o);
            }
            LedgerReply::new(false, f)
        }
        Err(e @ LedgerError::Damaged(_)) => failure("Cannot verify: ", &e, base()),
        Err(e) => failure("", &e, base()),
    }
}

/// `ledger_verify`: the whole chain.
pub fn check(ledger: &dyn Ledger) -> LedgerReply {
    match ledger.check() {
        Ok(r) => LedgerReply::new(
            true,
            json!({
                "message": format!("The ledger is intact: {} records", r.records),
                "backend": ledger.backend(),
                "records": r.records,
                "head_hash": r.head_hash,
                "files": r.files,
                "owners": r.owners,
                "notes": r.notes,
            }),
        ),
        Err(e) => failure("", &e, json!({ "backend": ledger.backend() })),
    }
}

/// `ledger_history`: registrations of one content, or all, oldest first.
pub fn history(ledger: &dyn Ledger, file_hash: Option<&Id>) -> LedgerReply {
    match ledger.history(file_hash, HISTORY_LIMIT) {
        Ok(h) => LedgerReply::new(
            true,
            json!({
                "file_hash": file_hash.map(Id::to_hex),
                "total": h.total,
                "truncated": h.total > h.claims.len(),
                "records": h.claims.iter().map(claim_json).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => failure("", &e, json!({})),
    }
}

/// Checks the ledger when the node starts (which also repairs crash leftovers) and logs
/// what it found.
pub fn startup_check(ledger: &dyn Ledger) {
    match ledger.check() {
        Ok(r) if r.records > 0 => log::info!(
            "ledger: {} records verified, head {}",
            r.records,
            r.head_hash
        ),
        Ok(_) => {}
        Err(e) => log::error!("ledger: {e}; ledger commands will report it until it is repaired"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::log::{Access, LogLedger};

    #[test]
    fn replies() {
        let d = tempfile::tempdir().unwrap();
        let l = LogLedger::new(d.path().to_path_buf(), Access::ReadWrite);
        let m = Mnemonic::new("reply test words").unwrap();
        let id = Id([3; 32]);
        let meta = Metadata::from_value(&json!({"t": 1})).unwrap();

        let r = register(&l, false, id, &m, &meta, 10).into_value();
        assert_eq!(r["status"], "error");
        assert!(r["message"].as_str().unwrap().contains("not known"));

        let v = verify(&l, &id, None).into_value();
        assert_eq!(v["status"], "error");
        assert_eq!(v["verified"], false);
        assert_eq!(v["message"], format!("No valid registration of {id}"));

        let r = register(&l, true, id, &m, &meta, 10).into_value();
        assert_eq!(r["status"], "success", "{r}");
        assert_eq!(r["record"], 1);
        let owner = r["owner_address"].as_str().unwrap().to_owned();

        let v = verify(&l, &id, Some(&owner)).into_value();
        assert_eq!(v["status"], "success");
        assert_eq!(v["verified"], true);
        assert_eq!(v["owners"][0]["metadata"], json!({"t": 1}));
        assert_eq!(v["owners"][0]["registered_at"], 10);

        let other = Mnemonic::new("other words").unwrap().derive();
        let v = verify(&l, &id, Some(other.address().as_str())).into_value();
        assert_eq!(v["status"], "error");
        assert_eq!(
            v["message"],
            format!("No valid registration of {id} by {}", other.address())
        );
        let v = verify(&l, &id, Some("nope")).into_value();
        assert_eq!(v["status"], "error");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("owner_address: "));

        let h = history(&l, None).into_value();
        assert_eq!(h["total"], 1);
        let c = check(&l).into_value();
        assert_eq!(c["records"], 1);

        // Damage: every command says so, with `ledger_error`.
        let p = d.path().join(crate::ledger::log::LOG_FILE);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        for r in [
            verify(&l, &id, None),
            register(&l, true, id, &m, &Metadata::empty(), 11),
            check(&l),
            history(&l, Some(&id)),
        ] {
            let v = r.into_value();
            assert_eq!(v["status"], "error");
            assert!(
                v["ledger_error"]
                    .as_str()
                    .unwrap()
                    .starts_with("record 1: "),
                "{v}"
            );
        }
        let bytes = verify(&l, &id, None).into_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["verified"], false);
        assert!(v["message"].as_str().unwrap().contains("damaged"));
    }
}
