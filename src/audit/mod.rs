//! The tamper-evident audit trail (docs/audit.md).
//!
//! - [`record`]: the record and its exact bytes.
//! - [`chain`]: `prev` and `mac` (HMAC-SHA256, or plain SHA-256 without a key).
//! - [`writer`]: one thread owns the file; group commit; rotation; the chain across restarts.
//! - [`throttle`]: flood control for the records of refusals (per caller or client network).
//! - [`verify`]: `sipgw audit verify`; [`show`]: `sipgw audit show`; [`cli`]: their
//!   command line.
//! - [`export`]: `sipgw audit export`, the trail as ECS documents for a SIEM.
//! - [`history`]: the trail read back at start-up, for the lockout shield.
//! - [`anchor`]: checkpoint records kept off the host, and `verify --anchor`.
//! - [`review`]: the reading API for reviewers' tools: trails verified record by record,
//!   merged in time order.
//! - [`report`]: `sipgw audit report`, the trail as one self-contained HTML page.

pub mod anchor;
pub mod chain;
pub mod cli;
pub mod config;
pub mod export;
pub mod history;
pub mod record;
pub mod report;
pub mod review;
pub mod show;
pub mod throttle;
pub mod verify;
pub mod writer;
