//! The API's ledger commands (`local_register_file_on_chain`, `local_verify_file_on_chain`,
//! `ledger_verify`, `ledger_history`), answered from a [`Ledger`]. They read and append
//! files (and fsync), so the driver runs them on a worker.

use crate::api::request::ApiRequest;
use crate::ledger::{self, Ledger};

/// The reply to a ledger command; `None` for any other request. `known`: whether this node
/// has the content (only such content can be registered); `now_unix`: the registration's
/// time, in seconds since 1970.
pub fn reply(ledger: &dyn Ledger, req: &ApiRequest, known: bool, now_unix: u64) -> Option<Vec<u8>> {
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
            now_unix,
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
