//! One change per agent at a time (docs/api.md): a second change for the same agent waits
//! for the first (bounded), and is never sent to the vendor concurrently. Two concurrent
//! changes would each carry a current password, at most one of which can be right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// Per-agent locks; an agent's entry exists only while a change for it is in flight or
/// waiting, so memory is bounded by the requests in flight.
#[derive(Default)]
pub struct AgentLocks {
    /// Agent → its lock, shared by the holder and the waiters.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds an agent's lock; dropping it lets the next waiter in.
pub struct AgentGuard<'a> {
    /// The lock held (dropped before the map is tidied).
    guard: Option<OwnedMutexGuard<()>>,
    /// The agent, to tidy the map.
    agent: String,
    /// The map.
    locks: &'a AgentLocks,
}

impl AgentLocks {
    /// Waits up to `wait` for `agent`'s lock; `None` when another change still holds it.
    pub async fn lock(&self, agent: &str, wait: Duration) -> Option<AgentGuard<'_>> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(agent.to_owned()).or_default())
        };
        let acquired = tokio::time::timeout(wait, Arc::clone(&lock).lock_owned()).await;
        drop(lock);
        match acquired {
            Ok(guard) => Some(AgentGuard {
                guard: Some(guard),
                agent: agent.to_owned(),
                locks: self,
            }),
            Err(_) => {
                self.tidy(agent);
                None
            }
        }
    }

    /// Removes `agent`'s entry when nobody holds or waits for it.
    fn tidy(&self, agent: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(agent).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(agent);
        }
    }

    /// Agents with a change in flight or waiting.
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no change is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for AgentGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.tidy(&self.agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_change_waits_then_gives_up() {
        let locks = AgentLocks::default();
        let first = locks.lock("a", Duration::from_secs(1)).await.unwrap();
        assert!(locks.lock("a", Duration::from_secs(1)).await.is_none());
        assert!(
            locks.lock("b", Duration::from_secs(1)).await.is_some(),
            "other agents proceed"
        );
        drop(first);
        assert!(locks.lock("a", Duration::from_secs(1)).await.is_some());
        assert!(locks.is_empty(), "no entry outlives its changes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_lock_when_the_holder_finishes() {
        let locks = Arc::new(AgentLocks::default());
        let first = locks.lock("a", Duration::from_secs(1)).await.unwrap();
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { locks.lock("a", Duration::from_secs(5)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(first);
        assert!(waiter.await.unwrap());
        assert!(locks.is_empty());
    }
}
