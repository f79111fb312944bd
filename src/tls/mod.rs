//! Inbound TLS on the API listener (`server.tls_cert_file`, `server.tls_key_file`, optional
//! `server.tls_client_ca_file` for mTLS).
//!
//! ## Layout
//! - this file: the files, read and turned into a rustls [`ServerConfig`] offering h2 and
//!   HTTP/1.1 by ALPN; every error names the config key of the file at fault.
//! - [`reload`]: [`ServerTls`], the config new handshakes use, replaced when the files change
//!   (polled by content) or on SIGHUP, without touching established connections; and
//!   [`Reloads`], which loads the files and owns both triggers.
//! - [`summary`]: what may be logged about a certificate (serial, not-after); never key
//!   material.
//!
//! The handshake itself runs in [`crate::server`], in each connection's own task.

pub mod config;
pub mod reload;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretSlice};

pub use reload::{ReloadHandle, Reloading, Reloads, ServerTls};
pub use summary::CertSummary;

/// ALPN protocols offered, most preferred first (RFC 7301): h2, then HTTP/1.1. hyper-util's
/// auto builder then serves whichever the client speaks.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the API listener's TLS material lives (validated paths from `[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

/// One of the three files, so that an error can name its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `server.tls_cert_file`.
    Cert,
    /// `server.tls_key_file`.
    Key,
    /// `server.tls_client_ca_file`.
    ClientCa,
}

impl TlsFile {
    /// The config key that names this file.
    pub fn config_key(self) -> &'static str {
        match self {
            Self::Cert => "server.tls_cert_file",
            Self::Key => "server.tls_key_file",
            Self::ClientCa => "server.tls_client_ca_file",
        }
    }
}

/// TLS material that could not be loaded: which file, and why (never its contents).
#[derive(Debug, thiserror::Error)]
#[error("{} {message}", .file.config_key())]
pub struct LoadError {
    /// The file at fault.
    pub file: TlsFile,
    /// What is wrong with it, naming its path.
    pub message: String,
}

fn error(file: TlsFile, message: impl Into<String>) -> LoadError {
    LoadError {
        file,
        message: message.into(),
    }
}

/// Reads and checks the files once: what config validation calls, so `check-config` and
/// `serve` refuse unusable TLS material before binding.
pub fn load(files: &TlsFiles) -> Result<Loaded, LoadError> {
    Contents::read(files)?.build(files)
}

/// A usable TLS config and what to log about it.
pub struct Loaded {
    /// What new handshakes use.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's serial and not-after.
    pub leaf: CertSummary,
}

/// The three files' bytes as read at one moment; the key's bytes are wiped when dropped.
struct Contents {
    cert: Vec<u8>,
    key: SecretSlice<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Self, LoadError> {
        let read = |file: TlsFile, path: &Path| {
            std::fs::read(path)
                .map_err(|e| error(file, format!("cannot read {}: {e}", path.display())))
        };
        Ok(Self {
            cert: read(TlsFile::Cert, &files.cert_file)?,
            key: SecretSlice::from(read(TlsFile::Key, &files.key_file)?),
            client_ca: match &files.client_ca_file {
                Some(path) => Some(read(TlsFile::ClientCa, path)?),
                None => None,
            },
        })
    }

    /// SHA-256 over all three files, each prefixed by its length: what the poll compares.
    /// A hash rather than a copy, so the key's bytes are not kept around for the comparison.
    fn digest(&self) -> [u8; 32] {
        let mut context = digest::Context::new(&digest::SHA256);
        let ca = self.client_ca.as_deref();
        for part in [Some(&self.cert[..]), Some(self.key.expose_secret()), ca] {
            let part = part.unwrap_or_default();
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }

    fn build(&self, files: &TlsFiles) -> Result<Loaded, LoadError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = self.certified_key(files, &provider)?;
        let leaf = certified
            .end_entity_cert()
            .map(CertSummary::of)
            .unwrap_or_else(|_| CertSummary::unknown());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| error(TlsFile::Cert, format!("no usable TLS version: {e}")))?;
        let builder = match (&self.client_ca, &files.client_ca_file) {
            (Some(bundle), Some(path)) => {
                builder.with_client_cert_verifier(client_verifier(bundle, path, provider)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Loaded {
            config: Arc::new(config),
            leaf,
        })
    }

    /// The chain and the key, checked to belong together: a key that does not match its
    /// certificate would otherwise only show as failed handshakes.
    fn certified_key(
        &self,
        files: &TlsFiles,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, LoadError> {
        let cert_path = files.cert_file.display();
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(TlsFile::Cert, format!("bad PEM in {cert_path}: {e}")))?;
        if chain.is_empty() {
            return Err(error(
                TlsFile::Cert,
                format!("{cert_path} holds no certificate"),
            ));
        }
        let key_path = files.key_file.display();
        let key = PrivateKeyDer::from_pem_slice(self.key.expose_secret())
            .map_err(|e| error(TlsFile::Key, format!("{key_path} {}", key_pem_problem(&e))))?;
        let signing_key = provider.key_provider.load_private_key(key).map_err(|_| {
            error(
                TlsFile::Key,
                format!("{key_path} holds no usable RSA, ECDSA or Ed25519 private key"),
            )
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(error(
                    TlsFile::Key,
                    format!("{key_path} does not match the certificate in {cert_path}"),
                ))
            }
            // The key cannot tell its public half: as rustls itself, accept it unchecked.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e) => Err(error(
                TlsFile::Cert,
                format!("the first certificate in {cert_path} is unusable: {e}"),
            )),
        }
    }
}

/// What is wrong with a key file, in words that never quote it (a malformed line of a key
/// file could be part of the key).
fn key_pem_problem(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::NoItemsFound => "holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
        pem::Error::MissingSectionEnd { .. } => "has a PEM section without its END line",
        pem::Error::IllegalSectionStart { .. } => "has a malformed PEM BEGIN line",
        pem::Error::Base64Decode(_) => "has a PEM section that is not valid base64",
        pem::Error::SectionTooLarge => "has a PEM section that is too large",
        pem::Error::Io(_) => "cannot be read",
        // `pem::Error` is non-exhaustive.
        _ => "is not valid PEM",
    }
}

/// Verifies client certificates against the CA bundle; a client without one is refused.
fn client_verifier(
    bundle: &[u8],
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, LoadError> {
    let shown = path.display();
    let certs = CertificateDer::pem_slice_iter(bundle)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(TlsFile::ClientCa, format!("bad PEM in {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            TlsFile::ClientCa,
            format!("{shown} holds no certificate"),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            error(
                TlsFile::ClientCa,
                format!("{shown} holds a certificate that cannot be a trust anchor: {e}"),
            )
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| error(TlsFile::ClientCa, format!("{shown}: {e}")))
}

#[cfg(test)]
mod tests;
