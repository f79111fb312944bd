//! Stage two for `[server]`: the listeners' addresses and bounds, and inbound TLS; every
//! error names its key.

use super::validate::{in_range, millis, secs};
use super::*;

pub(super) fn server_config(s: &file::ServerSection) -> Result<ServerConfig, ConfigError> {
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
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    let max_header_bytes = in_range(
        "server.max_header_bytes",
        s.max_header_bytes as u64,
        8192,
        1024 * 1024,
    )?;
    let limits = Limits {
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
    };
    // The admin listener: its own slots and head timeout, the API's other bounds.
    let admin_limits = Limits {
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
        ..limits.clone()
    };
    Ok(ServerConfig {
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
        tls: server_tls(s)?,
    })
}

/// `server.tls_*`: both of cert and key or neither, a client CA only with them, and the
/// files loaded once now, so that unusable material fails `check-config` and `serve`
/// rather than every handshake.
fn server_tls(s: &file::ServerSection) -> Result<Option<TlsFiles>, ConfigError> {
    let files = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => TlsFiles {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            client_ca_file: s.tls_client_ca_file.as_ref().map(PathBuf::from),
        },
        (Some(_), None) => {
            return Err(invalid(
                "server.tls_key_file",
                "is required when server.tls_cert_file is set",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "server.tls_cert_file",
                "is required when server.tls_key_file is set",
            ));
        }
        (None, None) if s.tls_client_ca_file.is_some() => {
            return Err(invalid(
                "server.tls_client_ca_file",
                "needs server.tls_cert_file and server.tls_key_file (client certificates are only asked for over TLS)",
            ));
        }
        (None, None) => return Ok(None),
    };
    crate::tls::load(&files)?;
    Ok(Some(files))
}
