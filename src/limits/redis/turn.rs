//! One change per agent across replicas: `SET turn:{agent} <token> NX PX <lease>`, polled
//! until the wait bound, released by a compare-and-delete so that only its holder can
//! release it. The lease (request deadline plus a margin) frees the turn of a replica that
//! crashed while holding it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Call, Shared, Unavailable, scripts};
use crate::ids::AgentId;

/// How often a waiting change asks again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// An agent's turn held in Redis; released (in the background) when dropped.
pub struct SharedTurn {
    /// The connection.
    shared: Arc<Shared>,
    /// `turn:{agent}` with the prefix.
    key: String,
    /// Our random token, so we never release someone else's turn.
    token: String,
}

impl Shared {
    /// Takes `agent`'s turn, waiting until `deadline`; `Ok(None)` when another replica still
    /// holds it then.
    pub async fn take_turn(
        self: &Arc<Self>,
        agent: &AgentId,
        lease: Duration,
        deadline: Instant,
    ) -> Result<Option<SharedTurn>, Unavailable> {
        let key = self.key(&format!("turn:{}", agent.as_str()));
        let token = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64);
            let taken: Option<String> = self.run(Call::Cmd(cmd)).await?;
            if taken.is_some() {
                return Ok(Some(SharedTurn {
                    shared: Arc::clone(self),
                    key,
                    token,
                }));
            }
            if Instant::now() + POLL_EVERY > deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for SharedTurn {
    fn drop(&mut self) {
        let (shared, key, token) = (
            Arc::clone(&self.shared),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        // Dropped at the end of a request, inside the runtime. Without one (shutdown) the
        // lease frees the turn.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut invocation = scripts::RELEASE_TURN.prepare_invoke();
                invocation.key(key).arg(token);
                let _: Result<u8, _> = shared.run(Call::Script(invocation)).await;
            });
        }
    }
}
