//! `[server]`: the listeners' addresses and bounds, and inbound TLS; the section as the file
//! holds it ([`ServerSection`]) and validated ([`ServerConfig`]). Every error names its key.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Limits;
use crate::config_key::{InvalidKey, in_range, invalid, millis, secs};
use crate::request::forwarded::{Cidr, TrustedProxies};
use crate::tls::TlsFiles;

/// `[server]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address of the API listener.
    pub listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`).
    pub admin_listen: String,
    /// Connections the API listener holds at once; at the cap, idle ones give way to new
    /// clients (docs/operating.md, "Connection slots and slow clients").
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
    /// Reverse proxies (CIDRs; a bare address is one host) whose `Forwarded` /
    /// `X-Forwarded-For` headers are believed for the audit trail's `forwardedFor`.
    pub trusted_proxies: Vec<String>,
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
            trusted_proxies: Vec::new(),
        }
    }
}

/// Listener address, limits and shutdown behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// API listener address.
    pub listen: SocketAddr,
    /// Admin listener address (`/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Connection, head, idle and shutdown bounds of the API listener.
    pub limits: Limits,
    /// The same for the admin listener: its own connection slots and head timeout.
    pub admin_limits: Limits,
    /// Bound on receiving a request body once the head is in.
    pub request_timeout: Duration,
    /// TLS on the API listener; `None` serves plain HTTP. The files were checked to load.
    pub tls: Option<TlsFiles>,
    /// Proxies whose forwarding headers name the end user (none by default).
    pub trusted_proxies: TrustedProxies,
}

impl ServerConfig {
    /// Checks every key of `[server]`; the TLS files are loaded once to prove them usable.
    pub fn from_section(s: &ServerSection) -> Result<Self, InvalidKey> {
        let listen = s.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("must be IP:PORT, got {:?}", s.listen),
            )
        })?;
        let admin_listen = s.admin_listen.parse().map_err(|_| {
            invalid(
                "server.admin_listen",
                format!("must be IP:PORT, got {:?}", s.admin_listen),
            )
        })?;
        if listeners_collide(listen, admin_listen) {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "{admin_listen} takes the same port as server.listen {listen}: give the admin listener a port of its own"
                ),
            ));
        }
        let limits = api_limits(s)?;
        let admin_limits = admin_limits(s, &limits)?;
        Ok(Self {
            listen,
            admin_listen,
            limits,
            admin_limits,
            request_timeout: millis(
                "server.request_timeout_ms",
                s.request_timeout_ms,
                1,
                600_000,
            )?,
            tls: TlsFiles::from_keys(
                s.tls_cert_file.as_deref(),
                s.tls_key_file.as_deref(),
                s.tls_client_ca_file.as_deref(),
            )?,
            trusted_proxies: trusted_proxies(&s.trusted_proxies)?,
        })
    }
}

/// Whether two listen addresses would fight for one socket: the same port (port 0 picks a
/// free one for each, so never) on the same address, or on an address the other's
/// wildcard covers (on Linux `0.0.0.0:X` holds `127.0.0.1:X`, and `[::]:X` holds IPv4 too
/// unless the host set `IPV6_V6ONLY`).
pub fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |wild: SocketAddr, other: SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

/// `server.trusted_proxies`: each entry a CIDR or a bare address.
fn trusted_proxies(entries: &[String]) -> Result<TrustedProxies, InvalidKey> {
    let networks = entries
        .iter()
        .map(|entry| {
            Cidr::parse(entry).ok_or_else(|| {
                invalid(
                    "server.trusted_proxies",
                    format!(
                        "{entry:?} is not an IP address or a CIDR network such as \"10.0.0.0/8\""
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(TrustedProxies::new(networks))
}

/// The API listener's bounds.
fn api_limits(s: &ServerSection) -> Result<Limits, InvalidKey> {
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    let max_header_bytes = in_range(
        "server.max_header_bytes",
        s.max_header_bytes as u64,
        8192,
        1024 * 1024,
    )?;
    Ok(Limits {
        max_connections: in_range(
            "server.max_connections",
            s.max_connections as u64,
            1,
            100_000,
        )? as usize,
        max_connections_per_ip: in_range(
            "server.max_connections_per_ip",
            s.max_connections_per_ip as u64,
            1,
            100_000,
        )? as usize,
        max_header_bytes: max_header_bytes as usize,
        header_read_timeout: millis(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms,
            1,
            300_000,
        )?,
        idle_timeout: secs("server.idle_timeout_secs", s.idle_timeout_secs, 1, 3600)?,
        shutdown_grace: secs("server.shutdown_grace_secs", s.shutdown_grace_secs, 0, 3600)?,
    })
}

/// The admin listener: its own slots and head timeout, the API's other bounds.
fn admin_limits(s: &ServerSection, api: &Limits) -> Result<Limits, InvalidKey> {
    Ok(Limits {
        max_connections: in_range(
            "server.admin_max_connections",
            s.admin_max_connections as u64,
            1,
            10_000,
        )? as usize,
        max_connections_per_ip: in_range(
            "server.admin_max_connections_per_ip",
            s.admin_max_connections_per_ip as u64,
            1,
            10_000,
        )? as usize,
        header_read_timeout: millis(
            "server.admin_header_read_timeout_ms",
            s.admin_header_read_timeout_ms,
            1,
            300_000,
        )?,
        ..api.clone()
    })
}
