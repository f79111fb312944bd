//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`), through the `sd-notify` crate.
//!
//! - `READY=1` once, when `/readyz` would first answer 200 ([`admin::Readiness::unmet`] is
//!   empty) and the API listener serves; until then `STATUS=` names what is missing, so
//!   `systemctl status sipgw` shows why start-up waits.
//! - `WATCHDOG=1` at half `WATCHDOG_USEC`, from a task on the runtime: a stuck runtime
//!   stops the pings, a stuck thread elsewhere does not fake them. It pings whether or not
//!   the gateway is ready: the watchdog is liveness (`/healthz`), and a gateway waiting for
//!   its IdP must not be killed and restarted for it.
//! - `STOPPING=1` when the drain begins, before in-flight requests finish.
//!
//! Everything is gated by the environment, not by the caller: without `NOTIFY_SOCKET` no
//! task starts, so the demo and the tests that call [`super::serve`] send nothing.
//!
//! The crate's `*_and_unset_env` variants are `unsafe` (removing a variable races other
//! threads reading the environment); sipgw forbids `unsafe` code, and sipgw starts no
//! child process that could inherit `NOTIFY_SOCKET`, so the variables stay set.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use crate::admin::Readiness;

/// How often readiness is read until `READY=1`: a few atomic loads each time.
const READY_POLL: Duration = Duration::from_millis(200);
/// Stands for "the API listener does not serve yet" among `/readyz`'s conditions.
const STARTING: &str = "starting";
/// How long the drain waits for `STOPPING=1` to be handed over: a service manager that
/// stopped reading its socket must not hold up the shutdown.
const STOPPING_PATIENCE: Duration = Duration::from_secs(1);

/// The notifier task of one [`super::serve`] call; inert without `NOTIFY_SOCKET`.
pub(super) struct Notifier {
    /// Marks the API listener as serving (readiness counts only from then on).
    serving: watch::Sender<bool>,
    /// Asks the task for `STOPPING=1`; the task answers once it is sent.
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// The task, aborted on drop: the watchdog pings as long as the gateway runs.
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the task when systemd (or a test standing in for it) set `NOTIFY_SOCKET`;
    /// the watchdog when `WATCHDOG_USEC` is set for this process (`WATCHDOG_PID`).
    pub(super) fn start(readiness: Readiness) -> Self {
        let (serving, serving_rx) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let task = std::env::var_os("NOTIFY_SOCKET").map(|_| {
            let watchdog = sd_notify::watchdog_enabled().filter(|period| !period.is_zero());
            tokio::spawn(run(readiness, watchdog, serving_rx, stop_rx))
        });
        Self {
            serving,
            stop: Some(stop),
            task,
        }
    }

    /// The API listener serves: from now on, readiness is what `/readyz` says.
    pub(super) fn serving(&self) {
        self.serving.send_replace(true);
    }

    /// Sends `STOPPING=1` and returns once it is sent (or after [`STOPPING_PATIENCE`]).
    pub(super) async fn stopping(&mut self) {
        let (Some(stop), Some(_)) = (self.stop.take(), &self.task) else {
            return;
        };
        let (sent, sent_rx) = oneshot::channel();
        if stop.send(sent).is_ok() {
            let _ = tokio::time::timeout(STOPPING_PATIENCE, sent_rx).await;
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The one task that talks to systemd: one sender, so `READY=1` never follows
/// `STOPPING=1`.
async fn run(
    readiness: Readiness,
    watchdog: Option<Duration>,
    mut serving: watch::Receiver<bool>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let mut pings = watchdog.map(|period| ticker(period / 2));
    let mut poll = ticker(READY_POLL);
    let mut waiting_for: Option<Vec<&'static str>> = None;
    let mut ready = false;
    let mut stopping = false;
    loop {
        tokio::select! {
            asked = &mut stop, if !stopping => {
                stopping = true;
                send(&[NotifyState::Stopping], "stopping: draining in-flight requests").await;
                if let Ok(sent) = asked {
                    let _ = sent.send(());
                }
            }
            _ = tick(&mut pings) => send(&[NotifyState::Watchdog], "").await,
            _ = poll.tick(), if !ready && !stopping => {
                // Before the API listener serves, the trail is still being read back.
                let unmet = if *serving.borrow_and_update() {
                    readiness.unmet()
                } else {
                    vec![STARTING]
                };
                if unmet.is_empty() {
                    ready = true;
                    tracing::info!("ready: told systemd");
                    send(&[NotifyState::Ready], "serving").await;
                } else if waiting_for.as_ref() != Some(&unmet) {
                    send(&[], &status_line(&unmet)).await;
                    waiting_for = Some(unmet);
                }
            }
        }
    }
}

/// The `STATUS=` line while not ready: what `/readyz` names, or that start-up goes on.
fn status_line(unmet: &[&str]) -> String {
    if unmet == [STARTING] {
        "starting: not serving yet".to_owned()
    } else {
        format!("not ready: {} (see /readyz)", unmet.join(", "))
    }
}

/// An interval that does not burst after a stall: one late ping, then the normal pace.
fn ticker(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The next watchdog tick; never, without a watchdog.
async fn tick(pings: &mut Option<Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends `states` and, unless empty, `STATUS=status`. On the blocking pool: the datagram
/// send blocks while the manager's queue is full, and must not stall a worker thread.
async fn send(states: &'static [NotifyState<'static>], status: &str) {
    let status = (!status.is_empty()).then(|| status.to_owned());
    let sent = tokio::task::spawn_blocking(move || {
        let mut message = states.to_vec();
        message.extend(status.as_deref().map(NotifyState::Status));
        sd_notify::notify(&message)
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)"),
        Err(error) => tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_what_readyz_names_or_that_start_up_goes_on() {
        assert_eq!(status_line(&[STARTING]), "starting: not serving yet");
        assert_eq!(
            status_line(&["jwks_not_loaded", "no_vendor_token"]),
            "not ready: jwks_not_loaded, no_vendor_token (see /readyz)"
        );
    }
}
