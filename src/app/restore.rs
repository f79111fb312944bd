//! The lockout shield's counts, read back from the audit trail at start-up (the `memory`
//! backend: a restart must not forget them; Redis keeps its own across restarts).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Parts;
use crate::audit::history::{self, Scan};
use crate::config::Config;
use crate::limits::Limits;
use crate::limits::config::LimitsBackend;
use crate::limits::lockout::{LockoutRebuild, RECORD_TTL};

/// Before the first request, with the `memory` backend: a restart must not forget the
/// lockout shield's counts. The admin listener already answers meanwhile (`/healthz` 200,
/// `/readyz` 503 `lockout_rebuilding`), so that a long trail cannot get the process killed
/// by its liveness probe before it serves.
pub(super) async fn before_serving(config: &Config, parts: &Parts) {
    if matches!(config.limits.backend, LimitsBackend::Memory) {
        let new_chain = parts.auditor.writer().started_new_chain().is_some();
        restore_lockout(config, Arc::clone(&parts.limits), new_chain).await;
    }
}

/// Rebuilds the lockout shield's counts from the audit trail (the `memory` backend; Redis
/// keeps its own across restarts). Rejections are read back as far as the shield keeps them
/// ([`RECORD_TTL`]), not just one cool-down: like the vendor's, a count does not fade, and a
/// rejection older than the cool-down still makes the next one a block.
///
/// After a new chain (`audit.allow_new_chain`), the records that were lost may have held
/// rejections: the rebuild is incomplete by definition, and the shield refuses every change
/// for one cool-down rather than let a forgotten count become the vendor's third strike.
/// `/readyz` says `lockout_rebuilding` meanwhile.
async fn restore_lockout(config: &Config, limits: Arc<Limits>, new_chain: bool) {
    limits.set_rebuilding(true);
    rebuild(config, Arc::clone(&limits), new_chain).await;
    limits.set_rebuilding(false);
}

async fn rebuild(config: &Config, limits: Arc<Limits>, new_chain: bool) {
    let path = config.audit.path.clone();
    let key = config.audit.key.clone();
    let policy = config.limits.lockout;
    let folding = config.limits.account_folding;
    let started = Instant::now();
    let reader = Arc::clone(&limits);
    let rebuilt = tokio::task::spawn_blocking(move || {
        let since = SystemTime::now()
            .checked_sub(RECORD_TTL)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut rebuild = LockoutRebuild::new(policy, folding);
        let scan = history::replay(&path, since, &key, folding, |agent, at, answer| {
            rebuild.apply(agent, at, answer);
        });
        let agents = rebuild.len();
        let blocked = reader.restore_lockout(rebuild, scan.unreadable == 0 && !new_chain);
        (scan, agents, blocked)
    })
    .await;
    match rebuilt {
        Ok((scan, agents, blocked)) => report(&scan, agents, blocked, new_chain, started),
        Err(error) => {
            // Nothing rebuilt: the shield refuses rather than forgets.
            limits.restore_lockout(LockoutRebuild::new(policy, folding), false);
            tracing::error!(%error, "lockout shield could not be rebuilt; every change is refused for one cool-down");
        }
    }
}

/// Logs how the rebuild went: in full, or why the shield now refuses for one cool-down.
fn report(scan: &Scan, agents: usize, blocked: usize, new_chain: bool, started: Instant) {
    if new_chain {
        tracing::error!(
            files = scan.files,
            lines = scan.lines,
            agents,
            blocked,
            "lockout shield: the audit trail lost records (a new chain was allowed), so counts may be missing; every change is refused (lockout_state_unavailable) for one cool-down"
        );
    } else if scan.unreadable == 0 {
        tracing::info!(
            files = scan.files,
            lines = scan.lines,
            orphans = scan.orphans,
            agents,
            blocked,
            ms = started.elapsed().as_millis() as u64,
            "lockout shield rebuilt from the audit trail"
        );
    } else {
        tracing::error!(
            files = scan.files,
            lines = scan.lines,
            unreadable = scan.unreadable,
            agents,
            blocked,
            "lockout shield: part of the audit trail could not be read; every change is refused (lockout_state_unavailable) for one cool-down"
        );
    }
}
