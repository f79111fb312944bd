//! Reloading the TLS material without a restart.
//!
//! Certificates are short-lived (cert-manager renews them well before expiry), so the files
//! are re-read on SIGHUP and whenever their contents change. The change check compares a
//! hash of the contents, not modification times: Kubernetes updates a Secret volume by
//! swapping a `..data` symlink, which leaves the mtime of the path the config names alone.
//!
//! [`Reloads`] owns both triggers and loads the files in the first place.
//!
//! A reload replaces the whole rustls config at once; connections keep the one they were
//! established with, so none is dropped. A reload that fails (files half-written, a key that
//! does not match) logs a warning and keeps the current config.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::ServerConfig;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsAcceptor;

use super::{CertSummary, Contents, LoadError, TlsFiles};
use crate::metrics::{ResultLabel, result_family};

/// How often the files are compared with what was last read.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The API listener's TLS: the config new handshakes use, and how to replace it.
pub struct ServerTls {
    /// The files, re-read on every reload.
    files: TlsFiles,
    /// The config new handshakes use, replaced whole by a successful reload.
    current: RwLock<Arc<ServerConfig>>,
    /// Hash of the files' contents as last read (loaded or refused), so the poll acts only
    /// on a change and warns once about files that do not load rather than at every tick
    /// (files that cannot be read at all are warned about at every tick). The lock also
    /// serialises reloads (the poll and SIGHUP may coincide).
    last_seen: Mutex<Option<[u8; 32]>>,
    /// How often [`ServerTls::watch`] compares the files.
    poll_interval: Duration,
    /// `notAfter` of the certificate in use, for `sipgw_tls_cert_expiry_timestamp_seconds`.
    not_after: Mutex<Option<SystemTime>>,
    /// Reloads by result (`sipgw_tls_reloads_total`); the first load is not counted.
    reloads: Family<ResultLabel, Counter>,
}

/// What set off a reload, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// [`ServerTls::reload`]: SIGHUP, or a test.
    Requested,
    /// The poll saw the files' contents change.
    FilesChanged,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::FilesChanged => "files changed",
        }
    }
}

impl ServerTls {
    /// Loads the files now; an error names the config key of the file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, LoadError> {
        let contents = Contents::read(&files)?;
        let loaded = contents.build(&files)?;
        tracing::info!(
            cert_file = %files.cert_file.display(),
            serial = loaded.leaf.serial_text(),
            not_after = %loaded.leaf.not_after_text(),
            client_auth = files.client_ca_file.is_some(),
            "TLS certificate loaded"
        );
        Ok(Self {
            current: RwLock::new(loaded.config),
            last_seen: Mutex::new(Some(contents.digest())),
            poll_interval: DEFAULT_POLL_INTERVAL,
            not_after: Mutex::new(loaded.leaf.not_after),
            reloads: result_family(),
            files,
        })
    }

    /// When the certificate in use expires, if its `notAfter` could be read.
    pub fn not_after(&self) -> Option<SystemTime> {
        *self.not_after.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads by result, for the metrics registry.
    pub fn reloads(&self) -> &Family<ResultLabel, Counter> {
        &self.reloads
    }

    /// The same, with the files compared every `interval` instead of
    /// [`DEFAULT_POLL_INTERVAL`] (tests use a short one).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The files this config comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the current config, for one handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(Arc::clone(&config))
    }

    /// Re-reads the files and, when they load, makes new handshakes use them: what SIGHUP
    /// does. On an error the current config stays and a warning is logged.
    pub fn reload(&self) -> Result<CertSummary, LoadError> {
        let mut last_seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        self.reload_locked(&mut last_seen, Trigger::Requested, None)
    }

    /// [`ServerTls::reload`], but only when the files' contents differ from what was last
    /// read: what the poll does. `Ok(None)` when nothing changed.
    pub fn reload_if_changed(&self) -> Result<Option<CertSummary>, LoadError> {
        let mut last_seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let contents = Contents::read(&self.files).inspect_err(warn_kept)?;
        if *last_seen == Some(contents.digest()) {
            return Ok(None);
        }
        self.reload_locked(&mut last_seen, Trigger::FilesChanged, Some(contents))
            .map(Some)
    }

    fn reload_locked(
        &self,
        last_seen: &mut Option<[u8; 32]>,
        trigger: Trigger,
        contents: Option<Contents>,
    ) -> Result<CertSummary, LoadError> {
        let result = self.replace(last_seen, trigger, contents);
        self.reloads
            .get_or_create(&ResultLabel::of(result.is_ok()))
            .inc();
        result
    }

    fn replace(
        &self,
        last_seen: &mut Option<[u8; 32]>,
        trigger: Trigger,
        contents: Option<Contents>,
    ) -> Result<CertSummary, LoadError> {
        let contents = match contents {
            Some(contents) => contents,
            None => Contents::read(&self.files).inspect_err(warn_kept)?,
        };
        *last_seen = Some(contents.digest());
        let loaded = contents.build(&self.files).inspect_err(warn_kept)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.config;
        *self.not_after.lock().unwrap_or_else(|p| p.into_inner()) = loaded.leaf.not_after;
        tracing::info!(
            trigger = trigger.as_str(),
            cert_file = %self.files.cert_file.display(),
            serial = loaded.leaf.serial_text(),
            not_after = %loaded.leaf.not_after_text(),
            "TLS certificate reloaded"
        );
        Ok(loaded.leaf)
    }

    /// Compares the files every poll interval and reloads them when they changed. Runs
    /// until its task is aborted; file reads happen off the async worker threads.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.poll_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate, and the files were just loaded.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let this = Arc::clone(&self);
            // Errors are logged where they happen; the next tick tries again.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

fn warn_kept(error: &LoadError) {
    tracing::warn!(%error, "TLS reload failed; the current certificate stays in use");
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The rustls config holds the private key: never print it.
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// What reloads the API listener's TLS files, in one place: the files' contents compared
/// every poll interval (cert-manager renewals, a Secret volume's swap), and SIGHUP side by
/// side when the binary asks for it. [`Reloads::start`] loads the files and starts the
/// triggers; the composition root calls it once.
pub struct Reloads {
    /// How often the files are compared with what was last read.
    poll_interval: Duration,
    /// SIGHUP, when installed ([`Reloads::on_hangup`]).
    hangups: Option<Signal>,
    /// Who waits for the loaded TLS ([`Reloads::on_demand`]).
    loaded: Option<oneshot::Sender<Arc<ServerTls>>>,
}

impl Reloads {
    /// The files are compared every [`DEFAULT_POLL_INTERVAL`] and reloaded when their
    /// contents changed.
    pub fn when_files_change() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            hangups: None,
            loaded: None,
        }
    }

    /// [`Reloads::when_files_change`], plus a handle that yields the loaded TLS once it is
    /// serving, to reload it whenever the holder wants (tests).
    pub fn on_demand() -> (Self, ReloadHandle) {
        let (loaded, handle) = oneshot::channel();
        let reloads = Self {
            loaded: Some(loaded),
            ..Self::when_files_change()
        };
        (reloads, ReloadHandle(handle))
    }

    /// The same, with the files compared every `interval` (tests use a short one).
    pub fn polling_every(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Also reloads on every SIGHUP. The handler is installed now, not when the TLS is
    /// loaded: a SIGHUP (`systemctl reload`) that arrives while the config is read or the
    /// ports are bound must not take the signal's default action, which ends the process.
    /// Without TLS, a SIGHUP is logged and otherwise ignored. Only the binary installs it:
    /// a signal handler is process-wide, and tests run many gateways in one process.
    pub fn on_hangup(mut self) -> std::io::Result<Self> {
        self.hangups = Some(signal(SignalKind::hangup())?);
        Ok(self)
    }

    /// Loads `files` (none: a plain listener) and starts the triggers; they stop when the
    /// returned [`Reloading`] is dropped. Must be called inside the Tokio runtime.
    pub fn start(self, files: Option<&TlsFiles>) -> Result<Reloading, LoadError> {
        let tls = match files {
            Some(files) => Some(Arc::new(
                ServerTls::load(files.clone())?.with_poll_interval(self.poll_interval),
            )),
            None => None,
        };
        let mut tasks = Vec::new();
        if let Some(tls) = &tls {
            tasks.push(tokio::spawn(Arc::clone(tls).watch()));
        }
        if let Some(hangups) = self.hangups {
            tasks.push(tokio::spawn(reload_on_hangup(tls.clone(), hangups)));
        }
        if let (Some(loaded), Some(tls)) = (self.loaded, &tls) {
            // Nobody waiting any more is fine.
            let _ = loaded.send(Arc::clone(tls));
        }
        Ok(Reloading { tls, tasks })
    }
}

impl fmt::Debug for Reloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloads")
            .field("poll_interval", &self.poll_interval)
            .field("on_hangup", &self.hangups.is_some())
            .finish_non_exhaustive()
    }
}

/// The loaded TLS, for a test that reloads it on demand ([`Reloads::on_demand`]).
#[derive(Debug)]
pub struct ReloadHandle(oneshot::Receiver<Arc<ServerTls>>);

impl ReloadHandle {
    /// Waits until the TLS is loaded and serving; `None` when the gateway stopped first
    /// or has no TLS configured.
    pub async fn loaded(self) -> Option<Arc<ServerTls>> {
        self.0.await.ok()
    }
}

/// The API listener's TLS (none: plain), with its reload triggers running until dropped.
#[derive(Debug)]
pub struct Reloading {
    /// The TLS new handshakes use.
    tls: Option<Arc<ServerTls>>,
    /// The file watch and the SIGHUP loop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Reloading {
    /// The TLS the API listener serves with, when configured.
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reloads `tls` on every SIGHUP (`hangups`), until its task is aborted.
async fn reload_on_hangup(tls: Option<Arc<ServerTls>>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        match &tls {
            Some(tls) => {
                tracing::info!("SIGHUP received: reloading the TLS certificate");
                let tls = Arc::clone(tls);
                // Errors are logged by `reload`.
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
            None => tracing::info!("SIGHUP received: no TLS configured, nothing to reload"),
        }
    }
}
