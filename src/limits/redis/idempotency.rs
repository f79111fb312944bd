//! `Idempotency-Key` records in Redis, so a retry sent to another replica is replayed too.
//!
//! `idem:{hex key digest}` is a hash: the body fingerprint, `state` (`flight` or `done`),
//! the claim token while in flight, and the outcome (status, content type, body in base64)
//! once done. The first request claims the key for the turn lease (so a crashed replica's
//! claim expires), the outcome is stored for `idempotency.ttl_secs`, and a request that did
//! not reach the vendor releases its claim (compare-and-delete on the token).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;

use super::{Call, Shared, Unavailable, hex, scripts};
use crate::limits::idempotency::{Begin, Stored};

/// How often a repeat of a request in flight asks again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The claim of the first request on a key held in Redis. Dropping it without
/// [`SharedTicket::complete`] releases the key (in the background).
pub struct SharedTicket {
    /// The connection.
    shared: Arc<Shared>,
    /// `idem:{digest}` with the prefix.
    key: String,
    /// Our claim token; empty once completed.
    token: String,
    /// How long an outcome is remembered.
    ttl: Duration,
}

impl Shared {
    /// Looks the key up, claiming it when new; a repeat of a request in flight polls until
    /// it is done or `deadline` passes.
    pub async fn idempotency_begin(
        self: &Arc<Self>,
        key_digest: &[u8; 32],
        fingerprint: &[u8; 32],
        lease: Duration,
        ttl: Duration,
        deadline: Instant,
    ) -> Result<Begin<SharedTicket>, Unavailable> {
        let key = self.key(&format!("idem:{}", hex(key_digest)));
        let fingerprint = hex(fingerprint);
        let token = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let mut invocation = scripts::IDEM_BEGIN.prepare_invoke();
            invocation
                .key(&key)
                .arg(&fingerprint)
                .arg(&token)
                .arg(lease.as_millis() as u64);
            let reply: Vec<String> = self.run(Call::Script(invocation)).await?;
            match reply.first().map(String::as_str) {
                Some("proceed") => {
                    return Ok(Begin::Proceed(SharedTicket {
                        shared: Arc::clone(self),
                        key,
                        token,
                        ttl,
                    }));
                }
                Some("reused") => return Ok(Begin::Reused),
                Some("done") => return Ok(Begin::Replay(Arc::new(decode(&reply)?))),
                _ => {}
            }
            if Instant::now() + POLL_EVERY > deadline {
                return Ok(Begin::Busy);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// The outcome of a `done` reply: {"done", status, content type, base64 body}. The record
/// keeps the rendered answer (the format of earlier versions, so replicas of either version
/// replay each other's outcomes during a rolling upgrade); it is read back into the small
/// form.
fn decode(reply: &[String]) -> Result<Stored, Unavailable> {
    let [_, status, _content_type, body] = reply else {
        return Err(Unavailable);
    };
    let status = status.parse().map_err(|_| Unavailable)?;
    let body = STANDARD.decode(body).map_err(|_| Unavailable)?;
    Stored::parse(status, &body).ok_or(Unavailable)
}

impl SharedTicket {
    /// Stores `outcome` for the retries (any replica), or releases the key when `None`.
    pub async fn complete(mut self, outcome: Option<Stored>) {
        let token = std::mem::take(&mut self.token);
        match outcome {
            Some(stored) => {
                let mut invocation = scripts::IDEM_COMPLETE.prepare_invoke();
                invocation
                    .key(&self.key)
                    .arg(&token)
                    .arg(stored.status())
                    .arg(stored.content_type())
                    .arg(STANDARD.encode(stored.body()))
                    .arg(self.ttl.as_millis() as u64);
                let stored: Result<u8, _> = self.shared.run(Call::Script(invocation)).await;
                if stored != Ok(1) {
                    tracing::warn!(
                        "an Idempotency-Key outcome could not be stored in redis; retries will wait for the claim to expire"
                    );
                }
            }
            None => release(&self.shared, &self.key, &token).await,
        }
    }
}

async fn release(shared: &Shared, key: &str, token: &str) {
    let mut invocation = scripts::IDEM_RELEASE.prepare_invoke();
    invocation.key(key).arg(token);
    let _: Result<u8, _> = shared.run(Call::Script(invocation)).await;
}

impl Drop for SharedTicket {
    fn drop(&mut self) {
        if self.token.is_empty() {
            return;
        }
        let (shared, key, token) = (
            Arc::clone(&self.shared),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&shared, &key, &token).await });
        }
    }
}
