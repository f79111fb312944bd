//! `sipgw check-config --probe`: after the checks `serve` makes at start-up
//! ([`super::preflight`]), the live ones it cannot make without the network or the host:
//! the IdP's discovery document and JWKS, a vendor token fetch, the audit trail's tail,
//! Redis, and whether the listen addresses are free. Each check is one [`Line`], `ok` or
//! `FAIL`, naming what it reached (a URL, an address, a path) and, on failure, the cause
//! chain. Nothing secret is printed: no AccessToken, no app secret, no password, no key.
//!
//! - `trail`: the audit trail's last record, read and its MAC checked.

mod trail;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;

use super::preflight;
use crate::auth::keys::{KeySet, KeySource, KeyStore};
use crate::config::Config;
use crate::limits::config::LimitsBackend;
use crate::limits::redis::endpoint::RedisEndpoint;
use crate::metrics::VendorCall;
use crate::outbound::cause;
use crate::vendor::{VendorClient, VendorError};

/// Bound on each check, over the timeouts of the calls it makes: a probe never hangs.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on Redis's connection and `PING`.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's result, printed as one line: `ok   <what>: <detail>` or
/// `FAIL <what>: <detail>`, so that `grep ^FAIL` lists what to fix.
#[derive(Debug)]
pub struct Line {
    /// What was checked (`jwks`, `vendor token`, `server.listen`, ...).
    pub what: &'static str,
    /// What was found, or why it failed; either names the URL, address or path.
    pub result: Result<String, String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(detail) => write!(f, "ok   {}: {detail}", self.what),
            Err(cause) => write!(f, "FAIL {}: {cause}", self.what),
        }
    }
}

impl Line {
    /// Whether the check passed.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Runs every check that applies to `config`, one after the other (their output reads in
/// a fixed order), each bounded by [`CHECK_TIMEOUT`].
pub async fn run(config: &Config) -> Vec<Line> {
    let mut lines = idp(config).await;
    lines.push(
        bounded(
            "vendor token",
            &config.vendor.base_url,
            vendor_token(config),
        )
        .await,
    );
    lines.push(Line {
        what: "audit trail",
        result: trail::check(&config.audit),
    });
    if let LimitsBackend::Redis { endpoint, .. } = &config.limits.backend {
        lines.push(bounded("redis", &endpoint.url, redis(endpoint)).await);
    }
    for (what, addr) in [
        ("server.listen", config.server.listen),
        ("server.admin_listen", config.server.admin_listen),
    ] {
        lines.push(bounded(what, &addr.to_string(), free(addr)).await);
    }
    lines
}

/// `check` as a line, failed when it takes longer than [`CHECK_TIMEOUT`].
async fn bounded(
    what: &'static str,
    target: &str,
    check: impl Future<Output = Result<String, String>>,
) -> Line {
    Line {
        what,
        result: within(target, check).await,
    }
}

/// `check`'s result, or a failure naming `target` after [`CHECK_TIMEOUT`].
async fn within<T>(
    target: &str,
    check: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{target}: no answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        })
}

/// The key source: the discovery document (when configured) and the JWKS, fetched once.
async fn idp(config: &Config) -> Vec<Line> {
    let auth = &config.auth;
    let client = match preflight::idp_client(auth) {
        Ok(client) => client,
        Err(error) => {
            return vec![Line {
                what: "jwks",
                result: Err(error.to_string()),
            }];
        }
    };
    let store = KeyStore::new(auth.source.clone(), auth.fetch.clone(), client);
    let jwks_uri = match &auth.source {
        KeySource::Static(set) => {
            return vec![Line {
                what: "jwks",
                result: Ok(format!("auth.jwks_file: {}", describe_keys(set))),
            }];
        }
        KeySource::JwksUrl(uri) => uri.clone(),
        KeySource::Discovery(uri) => {
            let target = cause::target(&http::Method::GET, uri);
            let found = within(&target, async {
                store.discover(uri).await.map_err(|e| e.to_string())
            })
            .await;
            let jwks_uri = match found {
                Ok(jwks_uri) => jwks_uri,
                Err(why) => {
                    return vec![Line {
                        what: "idp discovery",
                        result: Err(why),
                    }];
                }
            };
            let found = Line {
                what: "idp discovery",
                result: Ok(format!(
                    "{target}: issuer is auth.issuer, jwks_uri {}",
                    cause::safe_url(&jwks_uri)
                )),
            };
            return vec![found, jwks(&store, &jwks_uri).await];
        }
    };
    vec![jwks(&store, &jwks_uri).await]
}

/// The JWKS at `uri`: its keys, or why it is unusable.
async fn jwks(store: &KeyStore, uri: &Uri) -> Line {
    let target = cause::target(&http::Method::GET, uri);
    bounded("jwks", &target, async {
        let (set, _) = store.keys_at(uri).await.map_err(|e| e.to_string())?;
        Ok(format!("{target}: {}", describe_keys(&set)))
    })
    .await
}

/// `2 keys: k1 (RS256), k2 (ES256)`: public key ids and algorithms only.
fn describe_keys(set: &KeySet) -> String {
    let keys = set.describe();
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    format!("{} usable {noun}: {}", keys.len(), keys.join(", "))
}

/// One `tokenByAkSk` call with the configured app key and secret. The token is dropped
/// unseen; only its lifetime is reported.
async fn vendor_token(config: &Config) -> Result<String, String> {
    let client = VendorClient::new(config.vendor.clone()).map_err(|e| e.to_string())?;
    match client.fetch_token().await {
        Ok(token) => Ok(format!(
            "{}: AccessToken issued, usable for {} s (vendor.token_ttl_secs = {})",
            client.token_target(),
            token.lifetime.as_secs(),
            config.vendor.token_ttl.as_secs()
        )),
        Err(error @ VendorError::Unauthorized) => Err(format!(
            "{} (check vendor.app_key and the app secret)",
            client.describe(VendorCall::Token, &error)
        )),
        Err(error) => Err(client.describe(VendorCall::Token, &error)),
    }
}

/// Connects to Redis, logs in as configured, and sends `PING`.
async fn redis(endpoint: &RedisEndpoint) -> Result<String, String> {
    let failed = |error: redis::RedisError| {
        // Redis's reason, never the password (kept out of the URL by the config; removed
        // here too, should a reason ever quote it).
        let mut why = error.to_string();
        if let Some(password) = &endpoint.password {
            use secrecy::ExposeSecret;
            why = why.replace(password.expose_secret(), "<redacted>");
        }
        format!("{}: {why}", endpoint.url)
    };
    let client = endpoint.client().map_err(failed)?;
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let reply = tokio::time::timeout(REDIS_TIMEOUT, ping)
        .await
        .map_err(|_| {
            format!(
                "{}: no answer within {} s",
                endpoint.url,
                REDIS_TIMEOUT.as_secs()
            )
        })?
        .map_err(failed)?;
    let user = endpoint.username.as_deref().unwrap_or("default");
    Ok(format!(
        "{}: PING answered {reply} (user {user})",
        endpoint.url
    ))
}

/// Binds `addr` and releases it at once: whether `serve` could listen there now. A running
/// sipgw on the same address makes this fail, which is the point before starting another.
async fn free(addr: SocketAddr) -> Result<String, String> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            drop(listener);
            Ok(format!("{addr}: free"))
        }
        Err(error) => Err(format!("{addr}: cannot listen: {error}")),
    }
}
