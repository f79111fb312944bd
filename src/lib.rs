//! # sipgw: an authenticating gateway for SIP phone password changes
//!
//! Internal applications call one stable endpoint; sipgw checks the request, holds the
//! vendor's credentials and AccessToken, and forwards the change to the vendor
//! (docs/ states the contract and the vendor's side).
//!
//! ## Layout
//! - [`config`]: the TOML file and `SIPGW__*` overrides, validated into typed values; it
//!   composes the sections each domain module owns (`vendor::config`, `audit::config`, …).
//! - [`config_key`]: what those sections share: [`config_key::InvalidKey`] and range checks.
//! - [`app`]: the composition root: builds the parts once ([`app::Parts`]), hands each
//!   consumer what it needs, and runs one process ([`app::serve`]); the start-up checks
//!   `check-config` shares ([`app::preflight`]) and its live ones ([`app::probe`]).
//! - [`admin`]: the admin listener: `/healthz`, `/readyz`, `/metrics` (the registry, in
//!   [`admin::metrics`]).
//! - [`metrics`]: the Prometheus instruments the parts record into (a leaf module).
//! - [`auth`]: callers' JWTs (key sets, the token check, a verified-token cache) and who
//!   may change which agent's password.
//! - [`server`]: the listener: connection slots (idle connections give way to new clients
//!   at a cap; a per-IP cap), HTTP/1.1 + h2c, graceful shutdown.
//! - [`tls`]: optional inbound TLS on the API listener (h2 and HTTP/1.1 by ALPN, mTLS),
//!   reloaded on SIGHUP or when the certificate files change.
//! - [`gateway`]: the pipeline, the ordered checks of one password change.
//! - [`request`]: the request's shape: route, `userAccount`, media type, body; and the end
//!   user's address behind a trusted proxy ([`request::forwarded`]).
//! - [`ids`]: one type per caller ([`ids::CallerId`]) and per agent ([`ids::AgentId`]), and
//!   which quota refused ([`ids::Scope`]).
//! - [`password_policy`]: the vendor's password rule, checked locally.
//! - [`limits`]: quotas, the lockout shield, one change per agent, `Idempotency-Key`; in
//!   this process or shared by replicas through Redis ([`limits::redis`]).
//! - [`audit`]: the tamper-evident audit trail (records, HMAC chain, group-commit writer
//!   that stops when its file is removed or altered, checkpoints and anchors, flood
//!   control, `audit verify` / `show` / `export` (ECS documents for a SIEM) / `report` (HTML)
//!   and their command line, the reviewers' reading API
//!   (trails verified record by record, merged in time order), the trail read back at
//!   start-up to rebuild the lockout shield).
//! - [`error`]: what a client can be told; the one error → problem+json mapping.
//! - [`vendor`]: the vendor's HTTP client and the AccessToken cache.
//! - [`backoff`]: exponential back-off with jitter for failing dependencies.
//! - [`outbound`]: the pooled HTTPS client (rustls, HTTP/2 when offered) shared by the
//!   vendor client and the JWKS fetcher; a failure named by its URL and cause chain
//!   ([`outbound::cause`]).
//! - [`demo`]: `sipgw demo`, everything on loopback (with the `dev` feature, which
//!   links the development tools of `sipgw-dev`).
//! - [`telemetry`]: log set-up and the JSON log lines ([`telemetry::JsonLayer`]), and
//!   traces: the `[telemetry]` section, OTLP/HTTP export,
//!   the caller's W3C `traceparent` continued and passed on to the vendor.
//! - [`terminal`]: untrusted text made safe for terminals (controls, bidi made visible), and
//!   printing a command's result to stdout.
//!
//! ## One request
//! [`server::run`] accepts a connection and hands each request, in a task of its own, to
//! [`gateway::Gateway::handle`], which runs the checks of docs/api.md in order: what the
//! head shows (route, method, media type, declared length: [`request`]), the JWT
//! ([`auth`]), the caller's quota ([`limits`]), the authorization ([`auth`]), and only then
//! the body and its shape ([`request`]), the password rule ([`password_policy`]), the
//! `Idempotency-Key`, the agent's quota and lockout shield, the agent's turn ([`limits`]),
//! the durable audit `attempt` ([`audit`]), then the vendor call with an AccessToken from
//! [`vendor::TokenCache`]; the audit `outcome` is written before the answer leaves (flood
//! control decides whether a refusal's is written in full). Every refusal is an
//! [`error::ApiError`], rendered in one place.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod config_key;
#[cfg(feature = "dev")]
pub mod demo;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod password_policy;
pub mod request;
pub mod server;
pub mod telemetry;
pub mod terminal;
pub mod tls;
pub mod vendor;
