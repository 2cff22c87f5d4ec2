//! Blockchain hooks: register who owns which content, and verify it later
//! (`local_register_file_on_chain`, `local_verify_file_on_chain`; normative description in
//! `protocol-spec/ledger.md`).
//!
//! [`Ledger`] is the interface a chain client implements. The default backend,
//! [`LogLedger`], is embedded: an append-only, hash-chained, signed log in the node's data
//! dir (`<data dir>/ledger/`). It is tamper-evident, not tamper-proof: any change to a
//! recorded registration, any reordering and any truncation is detected and reported, but
//! someone who can write the data dir can still throw the whole file away. Anchoring the head
//! hash somewhere else (or a real chain backend) is what closes that gap.
//!
//! Modules, one concept each:
//! - [`keys`]: mnemonic → BIP-39 seed → SLIP-0010 Ed25519 key → checksummed owner address.
//! - [`record`]: the canonical signed body of a record, its hash and its on-disk line.
//! - [`log`]: the embedded backend: the log file, its head file, verification and recovery.
//! - [`api`]: the API replies of the ledger commands (the node calls these).
//!
//! Semantics every backend keeps:
//! - Several owners may register the same content; every claim is kept, and verification
//!   answers per owner.
//! - Registering again by the same owner appends a new record with the new metadata;
//!   verification shows each owner's latest record (and when they first registered), history
//!   shows them all. Registering again with identical metadata appends nothing and returns
//!   the existing record, so a client that retries does not grow the ledger.

pub mod api;
pub mod keys;
pub mod log;
pub mod record;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::id::Id;
pub use keys::{Address, AddressError, KeyError, Mnemonic, OwnerKey};
pub use log::LogLedger;
pub use record::{Metadata, MetadataError, Record, RecordError};

/// The sub-directory of a node's data dir that holds the embedded ledger.
pub const LEDGER_DIR: &str = "ledger";

/// A registration to record.
pub struct Registration<'a> {
    /// The content ID.
    pub file_hash: Id,
    /// The owner's secret phrase; the backend derives its signing key from it.
    pub mnemonic: &'a Mnemonic,
    /// The owner's metadata.
    pub metadata: &'a Metadata,
    /// Now, in Unix seconds (the caller reads the clock; a backend may use its own time,
    /// such as a block's).
    pub unix_time: u64,
}

/// What a registration produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The content ID.
    pub file_hash: Id,
    /// The record's sequence number in the ledger.
    pub record: u64,
    /// The record's hash, in hex.
    pub record_hash: String,
    /// The owner's address.
    pub owner_address: String,
    /// When it was registered, in Unix seconds.
    pub registered_at: u64,
    /// True when the same owner had already registered the same metadata: nothing was
    /// appended and this is that earlier record.
    pub already_registered: bool,
}

/// One recorded registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The record's sequence number.
    pub record: u64,
    /// The record's hash, in hex.
    pub record_hash: String,
    /// The content ID.
    pub file_hash: Id,
    /// The owner's address.
    pub owner_address: String,
    /// When it was registered, in Unix seconds.
    pub registered_at: u64,
    /// The owner's metadata.
    pub metadata: Metadata,
}

/// One owner's standing claim on some content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerClaim {
    /// The owner's latest registration of the content.
    pub latest: Claim,
    /// When the owner first registered it.
    pub first_registered_at: u64,
    /// How many times the owner registered it.
    pub registrations: u64,
}

/// The answer to "who registered this content?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The content ID.
    pub file_hash: Id,
    /// The owner asked about, if any (normalised).
    pub owner: Option<String>,
    /// Each owner with a valid registration (only the one asked about, if any), in order
    /// of their first registration. Empty: not verified.
    pub owners: Vec<OwnerClaim>,
}

impl Verification {
    /// Whether a valid registration (by the owner asked about) exists.
    pub fn verified(&self) -> bool {
        !self.owners.is_empty()
    }
}

/// Registrations in ledger order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The most recent claims, oldest first (at most the limit asked for).
    pub claims: Vec<Claim>,
    /// How many claims matched in all.
    pub total: usize,
}

/// The result of checking a whole ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Records in the ledger.
    pub records: u64,
    /// Hash of the last record (64 zeros when empty), in hex: note it down to detect a
    /// rewritten ledger later.
    pub head_hash: String,
    /// Distinct contents registered.
    pub files: usize,
    /// Distinct owners.
    pub owners: usize,
    /// Recovery notes: what was (or, read-only, would be) repaired after a crash.
    pub notes: Vec<String>,
}

/// What is wrong with a damaged ledger, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The first record concerned, if the damage is in one.
    pub record: Option<u64>,
    /// What is wrong, for people.
    pub what: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(n) => write!(f, "record {n}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Why a ledger operation failed.
#[derive(Debug)]
pub enum LedgerError {
    /// An owner address was malformed.
    Address(AddressError),
    /// The ledger is damaged: it is not trusted until it is repaired.
    Damaged(Damage),
    /// A file operation failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::Address(e) => write!(f, "owner_address: {e}"),
            LedgerError::Damaged(d) => write!(f, "the ledger is damaged: {d}"),
            LedgerError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LedgerError::Address(e) => Some(e),
            LedgerError::Damaged(_) => None,
            LedgerError::Io { source, .. } => Some(source),
        }
    }
}

/// A ledger of content ownership: the embedded [`LogLedger`], or a chain client.
///
/// Implementations are shared between threads and serialise their own writes. They do not
/// check that the content exists anywhere: the node refuses to register content it does not
/// have before it calls [`Ledger::register`].
pub trait Ledger: Send + Sync {
    /// A short name of the backend for replies and logs ("embedded", ...).
    fn backend(&self) -> &'static str;

    /// Records that the owner of `reg.mnemonic` claims `reg.file_hash`, with metadata.
    fn register(&self, reg: Registration<'_>) -> Result<Receipt, LedgerError>;

    /// Who holds a valid registration of `file_hash` (only `owner`, if given). A malformed
    /// `owner` is [`LedgerError::Address`]; a damaged ledger is [`LedgerError::Damaged`],
    /// never an empty answer.
    fn verify(&self, file_hash: &Id, owner: Option<&str>) -> Result<Verification, LedgerError>;

    /// Registrations of `file_hash` (of everything when `None`), oldest first; at most the
    /// `limit` most recent.
    fn history(&self, file_hash: Option<&Id>, limit: usize) -> Result<History, LedgerError>;

    /// Checks the whole ledger.
    fn check(&self) -> Result<ChainReport, LedgerError>;
}
