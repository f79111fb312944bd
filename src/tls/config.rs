//! The `server.tls_*` keys: both of cert and key or neither, a client CA only with them, and
//! the files loaded once now, so that unusable material fails `check-config` and `serve`
//! rather than every handshake.

use std::path::PathBuf;

use super::{LoadError, TlsFiles};
use crate::config_key::{InvalidKey, invalid};

impl From<LoadError> for InvalidKey {
    fn from(error: LoadError) -> Self {
        invalid(error.file.config_key(), error.message)
    }
}

impl TlsFiles {
    /// `server.tls_cert_file`, `server.tls_key_file` and `server.tls_client_ca_file`,
    /// checked and loaded; `None` when TLS is off.
    pub fn from_keys(
        cert_file: Option<&str>,
        key_file: Option<&str>,
        client_ca_file: Option<&str>,
    ) -> Result<Option<Self>, InvalidKey> {
        let files = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Self {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(key),
                client_ca_file: client_ca_file.map(PathBuf::from),
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
            (None, None) if client_ca_file.is_some() => {
                return Err(invalid(
                    "server.tls_client_ca_file",
                    "needs server.tls_cert_file and server.tls_key_file (client certificates are only asked for over TLS)",
                ));
            }
            (None, None) => return Ok(None),
        };
        super::load(&files)?;
        Ok(Some(files))
    }
}
