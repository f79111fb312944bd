//! Stage one of the configuration: serde structs that mirror the TOML file one to one.
//!
//! Every section rejects unknown keys (a typo must not silently fall back to a default) and
//! every key has a default, so a minimal file only names what differs. Values are checked and
//! turned into typed values in [`super::Config::from_file`]; nothing here is trusted yet.

use serde::{Deserialize, Serialize};

/// The whole file, section by section (DESIGN.md §6).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`: where and how the gateway listens.
    pub server: ServerSection,
    /// `[vendor]`: the vendor's base URL, credentials and timeouts.
    pub vendor: VendorSection,
    /// `[auth]`: how callers' JWTs are checked and who may change which agent.
    pub auth: AuthSection,
    /// `[password_policy]`: our copy of the vendor's password rule group.
    pub password_policy: PasswordPolicySection,
    /// `[rate_limit]`: quotas per caller and per agent.
    pub rate_limit: RateLimitSection,
    /// `[lockout]`: the shield against the vendor's lockout.
    pub lockout: LockoutSection,
    /// `[idempotency]`: how long and how many `Idempotency-Key` outcomes are remembered.
    pub idempotency: IdempotencySection,
    /// `[audit]`: the tamper-evident audit trail.
    pub audit: AuditSection,
}

/// `[server]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address of the API listener.
    pub listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`).
    pub admin_listen: String,
    /// Connections the API listener holds at once; at the cap, idle ones give way to new
    /// clients (README "Connection slots and slow clients").
    pub max_connections: usize,
    /// Of those, most from one client address (IPv4) or /64 (IPv6).
    pub max_connections_per_ip: usize,
    /// Connections the admin listener holds at once: its own budget, so that probes
    /// answer whatever the API listener is going through.
    pub admin_max_connections: usize,
    /// Of those, most from one client address (IPv4) or /64 (IPv6).
    pub admin_max_connections_per_ip: usize,
    /// Time allowed to receive a request head on the admin listener (probes and scrapes
    /// send theirs at once).
    pub admin_header_read_timeout_ms: u64,
    /// Total size of one request's header section, in bytes.
    pub max_header_bytes: usize,
    /// Time allowed to receive the request head after a connection becomes readable.
    pub header_read_timeout_ms: u64,
    /// Bound on a whole request once its head has arrived: body, token wait, vendor call(s).
    pub request_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this long (HTTP/1
    /// ones are also bound by `header_read_timeout_ms` between requests).
    pub idle_timeout_secs: u64,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// PEM certificate chain for TLS on the API listener (with `tls_key_file`).
    pub tls_cert_file: Option<String>,
    /// PEM private key of that certificate.
    pub tls_key_file: Option<String>,
    /// PEM CA bundle: when set, API clients must present a certificate it signed (mTLS).
    pub tls_client_ca_file: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            max_connections: 1024,
            max_connections_per_ip: 256,
            admin_max_connections: 64,
            admin_max_connections_per_ip: 16,
            admin_header_read_timeout_ms: 2_000,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            idle_timeout_secs: 60,
            shutdown_grace_secs: 20,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

/// `[vendor]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendorSection {
    /// Scheme, host and optional path prefix of the vendor's REST APIs.
    pub base_url: Option<String>,
    /// The app key (AK) issued by the vendor's operations staff.
    pub app_key: Option<String>,
    /// File holding the app secret (SK); takes precedence over `app_secret_env`.
    pub app_secret_file: Option<String>,
    /// Name of the environment variable holding the app secret.
    pub app_secret_env: String,
    /// AccessToken lifetime asked for, sent as `X-Token-Expire`.
    pub token_ttl_secs: u64,
    /// Bound on one vendor call (connect, send, receive).
    pub timeout_ms: u64,
    /// `"wrapped"` (`{"requestParam": {...}}`) or `"flat"`.
    pub body_shape: String,
    /// PEM file of extra trusted roots for the vendor's TLS certificate.
    pub ca_file: Option<String>,
    /// Permit an `http://` base URL (tests and the demo only).
    pub allow_insecure_http: bool,
}

impl Default for VendorSection {
    fn default() -> Self {
        Self {
            base_url: None,
            app_key: None,
            app_secret_file: None,
            app_secret_env: "SIPGW_APP_SECRET".into(),
            token_ttl_secs: 600,
            timeout_ms: 5_000,
            body_shape: "wrapped".into(),
            ca_file: None,
            allow_insecure_http: false,
        }
    }
}

/// `[password_policy]`: defaults are the vendor's default rule group (VENDOR_API.md §2).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicySection {
    /// Fewest characters a new password may have.
    pub min_len: usize,
    /// Most characters a new password may have.
    pub max_len: usize,
    /// How many of the four classes (upper, lower, digit, special) must appear.
    pub min_classes: u8,
    /// The characters that count as "special"; any other non-alphanumeric is refused.
    pub specials: String,
}

impl Default for PasswordPolicySection {
    fn default() -> Self {
        Self {
            min_len: 8,
            max_len: 16,
            min_classes: 3,
            specials: "~@^*_+.?".into(),
        }
    }
}

/// `[auth]` (DESIGN.md §2).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The only accepted `iss`; required.
    pub issuer: Option<String>,
    /// `aud` must contain one of these; required, non-empty.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms; `none` and HMAC are refused.
    pub algorithms: Vec<String>,
    /// A JWKS file (exactly one of `jwks_file`, `jwks_url`, `discovery_url`).
    pub jwks_file: Option<String>,
    /// A JWKS URL.
    pub jwks_url: Option<String>,
    /// An OIDC discovery URL (`.../.well-known/openid-configuration`).
    pub discovery_url: Option<String>,
    /// How often a remote key set is re-fetched.
    pub jwks_refresh_secs: u64,
    /// Least time between re-fetches caused by unknown `kid`s.
    pub jwks_refetch_cooldown_secs: u64,
    /// Bound on one key-set fetch.
    pub jwks_timeout_ms: u64,
    /// PEM file of extra trusted roots for the IdP's TLS certificate.
    pub ca_file: Option<String>,
    /// Permit `http://` key-set URLs (tests and the demo only).
    pub allow_insecure_http: bool,
    /// Clock skew allowed for `exp`, `nbf`, `iat`.
    pub leeway_secs: u64,
    /// Claim that names the caller's own agent account.
    pub agent_claim: String,
    /// How that claim is compared with the `userAccount` of the URL: `"exact"` or
    /// `"case_insensitive"` (ASCII).
    pub agent_claim_match: String,
    /// Whether callers may change their own agent's password.
    pub self_service: bool,
    /// Scopes (`scope`/`scp`) that allow changing any agent's password.
    pub admin_scopes: Vec<String>,
    /// Roles (in `roles_claim`) that allow changing any agent's password.
    pub admin_roles: Vec<String>,
    /// Claim holding roles; dots walk into objects (`realm_access.roles`).
    pub roles_claim: String,
    /// Most verified tokens kept in the cache.
    pub verified_cache_entries: usize,
    /// Most refused tokens kept in the refusal cache.
    pub refused_cache_entries: usize,
    /// When set, the JOSE header's `typ` must name this media type (RFC 9068 §2.1:
    /// `at+jwt`); compared case-insensitively, with or without `application/`.
    pub required_typ: Option<String>,
    /// When set, `exp - iat` may not exceed this; tokens without `iat` are then refused.
    pub max_token_lifetime_secs: Option<u64>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            jwks_file: None,
            jwks_url: None,
            discovery_url: None,
            jwks_refresh_secs: 300,
            jwks_refetch_cooldown_secs: 30,
            jwks_timeout_ms: 5_000,
            ca_file: None,
            allow_insecure_http: false,
            leeway_secs: 30,
            agent_claim: "preferred_username".into(),
            agent_claim_match: "exact".into(),
            self_service: true,
            admin_scopes: Vec::new(),
            admin_roles: Vec::new(),
            roles_claim: "roles".into(),
            verified_cache_entries: 10_000,
            refused_cache_entries: 4_096,
            required_typ: None,
            max_token_lifetime_secs: None,
        }
    }
}

/// A quota: `{ burst = N, per_secs = S }`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSection {
    /// Changes allowed at once.
    pub burst: u32,
    /// Seconds for an empty bucket to fill again.
    pub per_secs: u64,
}

/// `[rate_limit]` (DESIGN.md §3).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// `"memory"` (this process) or `"redis"` (shared by replicas).
    pub backend: String,
    /// Redis URL for `backend = "redis"`: `redis://` or `rediss://` (TLS), no password.
    pub redis_url: Option<String>,
    /// The Redis ACL user to log in as (with `redis_password_file`).
    pub redis_username: Option<String>,
    /// File holding the Redis password (`requirepass`, or the ACL user's).
    pub redis_password_file: Option<String>,
    /// PEM CA bundle that signed a `rediss://` server's certificate (replaces the public
    /// roots for Redis).
    pub redis_ca_file: Option<String>,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Per agent (`userAccount`).
    pub per_agent: QuotaSection,
    /// Per caller (`iss` + `sub`).
    pub per_caller: QuotaSection,
    /// Most agents whose quota is tracked in this process; new agents are refused beyond.
    pub max_agents: usize,
    /// Most callers whose quota is tracked in this process; new callers are refused beyond.
    pub max_callers: usize,
    /// How `userAccount` keys every per-agent limit: `"case_folded"` or `"exact"`.
    pub account_key: String,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            redis_url: None,
            redis_username: None,
            redis_password_file: None,
            redis_ca_file: None,
            key_prefix: "sipgw:".into(),
            per_agent: QuotaSection {
                burst: 3,
                per_secs: 1800,
            },
            per_caller: QuotaSection {
                burst: 30,
                per_secs: 60,
            },
            max_agents: 100_000,
            max_callers: 10_000,
            account_key: "case_folded".into(),
        }
    }
}

/// `[lockout]` (DESIGN.md §3).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutSection {
    /// Vendor rejections in a row that block the agent (the vendor locks at 3).
    pub max_consecutive_failures: u32,
    /// How long the block lasts.
    pub cooldown_secs: u64,
    /// How long a change waits for another change of the same agent to finish.
    pub change_wait_ms: u64,
    /// Most agents with a rejection count held; changes for new agents are refused beyond.
    pub max_entries: usize,
}

impl Default for LockoutSection {
    fn default() -> Self {
        Self {
            max_consecutive_failures: 2,
            cooldown_secs: 1800,
            change_wait_ms: 5_000,
            max_entries: 100_000,
        }
    }
}

/// `[idempotency]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySection {
    /// How long a first outcome is replayed for its retries.
    pub ttl_secs: u64,
    /// Most outcomes remembered (oldest forgotten first).
    pub max_entries: usize,
    /// Most bytes the remembered outcomes may take (oldest forgotten first).
    pub max_bytes: usize,
}

impl Default for IdempotencySection {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            max_entries: 100_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[audit]` (DESIGN.md §5).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The current trail file; rotated files go beside it.
    pub path: String,
    /// File holding the HMAC key; without it records are chained with plain SHA-256.
    pub hmac_key_file: Option<String>,
    /// `"always"` (group commit, the default), `"interval"` or `"never"`.
    pub fsync: String,
    /// With `fsync = "interval"`: at most this long between a write and its fsync.
    pub fsync_interval_ms: u64,
    /// Rotate when the file would grow beyond this.
    pub max_bytes: u64,
    /// Also print each record on stdout as JSON.
    pub stdout: bool,
    /// Full refusal records per caller (`iss` + `sub`) and minute; then one summary.
    pub flood_caller_per_minute: u32,
    /// Full refusal records per client network and minute when no caller is known.
    pub flood_network_per_minute: u32,
    /// Prefix length of an IPv4 client network for flood control.
    pub flood_ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network for flood control.
    pub flood_ipv6_prefix: u8,
    /// Most callers, and most networks, tracked at once; more share one overflow window.
    pub flood_max_keys: u32,
    /// Full refusal records per minute across all keys (the global budget).
    pub flood_total_per_minute: u32,
    /// Deprecated: read as `flood_network_per_minute` (with a warning).
    pub unauthenticated_per_minute: Option<u32>,
    /// Deprecated: read as `flood_caller_per_minute` (with a warning).
    pub rate_limited_per_minute: Option<u32>,
    /// Mode of the files sipgw creates (`"0600"`, or `"0640"` for a reviewers' group);
    /// directories it creates get `0700` / `0750`.
    pub file_mode: String,
    /// Start a new chain, beginning with a `discontinuity` record, although the trail
    /// directory was written before and now lacks its records (an operator's decision).
    pub allow_new_chain: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            path: "audit/sipgw-audit.jsonl".into(),
            hmac_key_file: None,
            fsync: "always".into(),
            fsync_interval_ms: 1_000,
            max_bytes: 64 * 1024 * 1024,
            stdout: false,
            flood_caller_per_minute: 10,
            flood_network_per_minute: 10,
            flood_ipv4_prefix: 32,
            flood_ipv6_prefix: 64,
            flood_max_keys: 1_000,
            flood_total_per_minute: 1_000,
            unauthenticated_per_minute: None,
            rate_limited_per_minute: None,
            file_mode: "0600".into(),
            allow_new_chain: false,
        }
    }
}
