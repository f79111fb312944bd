//! Where the shared Redis is and how to log in to it: `rate_limit.redis_url` (`redis://` or
//! `rediss://`), an ACL user (`rate_limit.redis_username`), a password read from a file
//! (`rate_limit.redis_password_file`) and, for `rediss://`, the CA that signed the server's
//! certificate (`rate_limit.redis_ca_file`).
//!
//! The password never sits in the URL (the config refuses one there), so the URL can be
//! logged and printed by `check-config` as it is; `Debug` shows the password as redacted.

use std::fmt;

use redis::IntoConnectionInfo;
use secrecy::{ExposeSecret, SecretString};

/// How to reach and log in to the shared Redis.
#[derive(Clone)]
pub struct RedisEndpoint {
    /// `redis://host:port/db` or `rediss://host:port/db`, without credentials.
    pub url: String,
    /// The ACL user (`AUTH username password`); `None` logs in as `default`.
    pub username: Option<String>,
    /// The password (`requirepass`, or the ACL user's); `None` skips `AUTH`.
    pub password: Option<SecretString>,
    /// PEM roots for a `rediss://` server's certificate, replacing the public (webpki)
    /// roots: a private Redis is signed by a private CA, and nothing else should be trusted
    /// for it.
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisEndpoint {
    /// An endpoint with no credentials and the public roots (tests, benchmarks).
    pub fn plain(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            username: None,
            password: None,
            ca_pem: None,
        }
    }

    /// Whether the URL asks for TLS.
    pub fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// A client for this endpoint (no connection is made yet).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let mut info = self.url.as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose_secret());
        }
        info = info.set_redis_settings(settings);
        match &self.ca_pem {
            Some(ca) if self.tls() => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            _ => redis::Client::open(info),
        }
    }
}

impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Whether `error` means that Redis refused our credentials or their rights (a wrong or
/// missing password, an unknown or disabled ACL user, a user without the commands or keys
/// it needs): an operator has to act, unlike a Redis that is merely unreachable.
pub fn credentials_refused(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let endpoint = RedisEndpoint {
            password: Some(SecretString::from("hunter2-redis")),
            username: Some("sipgw".into()),
            ..RedisEndpoint::plain("rediss://redis:6380/0")
        };
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("hunter2-redis"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("sipgw"),
            "{shown}"
        );
        assert!(endpoint.tls());
    }
}
