//! Why a gateway process could not start, said as what actually failed: the operator reads
//! this one line (on stderr, or in the orchestrator's events) and must know whether to fix
//! a key, a file, Redis or a port.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::tls::LoadError;

/// Exit status for a configuration that cannot be used: a bad value, or something it names
/// (the audit trail, Redis, the TLS files) that is not usable. Retrying will not help.
pub const EXIT_CONFIG: u8 = 2;

/// Exit status for a failure of the host rather than the configuration (a port taken, a
/// signal handler refused): a retry, or another node, may succeed.
pub const EXIT_FAILURE: u8 = 1;

/// A start-up failure of `sipgw serve`. Each message names the config key to look at and
/// never quotes a secret (Redis's errors are its own reason text, never our URL or password).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A signal handler could not be installed (before the config is read).
    #[error("cannot install the {signal} handler: {cause}")]
    Signal {
        /// `SIGHUP`.
        signal: &'static str,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The configuration is invalid: the message names the key.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A listener's address could not be bound.
    #[error("cannot listen on {addr} ({key}): {cause}")]
    Bind {
        /// `server.listen` or `server.admin_listen`.
        key: &'static str,
        /// The address from the config.
        addr: SocketAddr,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The TLS files could not be loaded (they changed since the config was checked).
    #[error("cannot load the TLS files: {0}")]
    Tls(#[from] LoadError),
    /// The audit trail could not be opened: unwritable, or missing records it had (the
    /// cause then says how to start a new chain).
    #[error("cannot open the audit trail {} (audit.path): {cause}", path.display())]
    AuditTrail {
        /// `audit.path`.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// No Redis client could be set up for the URL. (An unreachable Redis does not stop
    /// start-up: the replica starts on its fallbacks, as it rides out an outage.)
    #[error("cannot reach Redis (rate_limit.redis_url): {cause}")]
    Redis {
        /// What failed; never the URL, which may hold a password.
        cause: String,
    },
    /// Redis refused our credentials: every change would be refused, so stop now.
    #[error(
        "Redis refused the credentials (rate_limit.redis_password_file): {cause} (the user is rate_limit.redis_username when set)"
    )]
    RedisRefused {
        /// Redis's reason (`WRONGPASS ...`).
        cause: String,
    },
}

impl StartError {
    /// The process's exit status: [`EXIT_CONFIG`] (2) when the config is invalid or
    /// something it names is unusable, [`EXIT_FAILURE`] (1) when a listener cannot be bound
    /// or a signal handler installed.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::Signal { .. } | Self::Bind { .. } => EXIT_FAILURE,
            Self::Config(_)
            | Self::Tls(_)
            | Self::AuditTrail { .. }
            | Self::Redis { .. }
            | Self::RedisRefused { .. } => EXIT_CONFIG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_key_and_exit_status() {
        let io = || std::io::Error::other("denied");
        let cases = [
            (
                StartError::AuditTrail {
                    path: "/var/lib/sipgw/audit.jsonl".into(),
                    cause: io(),
                },
                "cannot open the audit trail /var/lib/sipgw/audit.jsonl (audit.path): denied",
                2,
            ),
            (
                StartError::Redis {
                    cause: "no client".into(),
                },
                "cannot reach Redis (rate_limit.redis_url): no client",
                2,
            ),
            (
                StartError::RedisRefused {
                    cause: "WRONGPASS".into(),
                },
                "Redis refused the credentials (rate_limit.redis_password_file): WRONGPASS",
                2,
            ),
            (
                StartError::Bind {
                    key: "server.listen",
                    addr: "127.0.0.1:8443".parse().unwrap(),
                    cause: io(),
                },
                "cannot listen on 127.0.0.1:8443 (server.listen): denied",
                1,
            ),
        ];
        for (error, starts, status) in cases {
            assert!(error.to_string().starts_with(starts), "{error}");
            assert_eq!(error.exit_status(), status, "{error}");
        }
    }
}
