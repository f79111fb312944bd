//! Limits on password changes (DESIGN.md §3): quotas per caller and per agent, the lockout
//! shield, one change per agent at a time, and idempotent retries.
//!
//! - [`quota`]: keyed GCRA quotas (`governor`).
//! - [`lockout`]: counts vendor rejections per agent and blocks before the vendor would.
//! - [`serial`]: one change per agent at a time.
//! - [`idempotency`]: the first outcome of an `Idempotency-Key`, replayed for its retries.

pub mod idempotency;
pub mod lockout;
pub mod quota;
pub mod serial;
