//! The start-up checks that need no network, run by `serve` (before the parts are built)
//! and by `check-config` alike, so that a config `check-config` passes is one `serve`
//! starts with: the audit trail's directory usable, the outbound TLS set-ups (the CA files
//! of `vendor.ca_file` and `auth.ca_file`) buildable. The config's own validation already
//! read the key files, the HMAC key and the TLS files.

use std::fs::OpenOptions;
use std::io::{Error, ErrorKind};
use std::path::Path;

use super::StartError;
use crate::audit::config::AuditConfig;
use crate::auth::config::AuthConfig;
use crate::auth::keys::KeySource;
use crate::config::{Config, ConfigError, invalid};
use crate::outbound::{self, HttpsClient};
use crate::vendor::VendorClient;

/// Every check of this module, in the order `serve` meets them.
pub fn check(config: &Config) -> Result<(), StartError> {
    VendorClient::new(config.vendor.clone()).map_err(ConfigError::from)?;
    idp_client(&config.auth)?;
    audit_usable(&config.audit)
}

/// The IdP's HTTPS client (`auth.ca_file`'s roots), for a remote key source; `None` for a
/// JWKS file.
pub fn idp_client(auth: &AuthConfig) -> Result<Option<HttpsClient>, StartError> {
    match auth.source {
        KeySource::Static(_) => Ok(None),
        KeySource::JwksUrl(_) | KeySource::Discovery(_) => {
            outbound::client(&auth.extra_roots, auth.fetch.timeout)
                .map(Some)
                .map_err(|e| invalid("auth.ca_file", format!("TLS set-up failed: {e}")).into())
        }
    }
}

/// Whether the trail at `audit.path` can be opened as `serve` opens it: its directory (or
/// the nearest one that exists, under which `serve` creates it) is a directory we can
/// create files in (the trail, its state file, rotated files), and an existing trail file
/// opens for appending. A trail that is a device (not a regular file) keeps no state
/// beside it, so only the device itself must open. Nothing is left behind: the write test
/// creates a file and removes it.
pub fn audit_usable(audit: &AuditConfig) -> Result<(), StartError> {
    let failed = |cause| StartError::AuditTrail {
        path: audit.path.clone(),
        cause,
    };
    let path = &audit.path;
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => {
            return open_for_append(path).map_err(failed);
        }
        Ok(meta) if meta.is_dir() => {
            let what = format!("{} is a directory, not a file", path.display());
            return Err(failed(Error::new(ErrorKind::IsADirectory, what)));
        }
        _ => {}
    }
    let dir = nearest_dir(path).map_err(failed)?;
    can_create_in(&dir).map_err(failed)?;
    match open_for_append(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(failed(error)),
        _ => Ok(()),
    }
}

/// The trail's directory, or its nearest ancestor that exists; an error when that is not a
/// directory (a file where a directory should be).
fn nearest_dir(path: &Path) -> Result<std::path::PathBuf, Error> {
    let mut dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    loop {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => return Ok(dir.to_owned()),
            Ok(_) => {
                let what = format!("{} is not a directory", dir.display());
                return Err(Error::new(ErrorKind::NotADirectory, what));
            }
            // Missing, or under a file (ENOTDIR): the ancestor that exists says which.
            Err(error)
                if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) =>
            {
                match dir.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
                    // A relative path's first component: it is created in the working directory.
                    Some(_) => dir = Path::new("."),
                    None => return Err(named(dir, error)),
                }
            }
            Err(error) => return Err(named(dir, error)),
        }
    }
}

/// Creates and removes a file in `dir`: the one test of "writable" that also holds for
/// root (who passes permission bits), a read-only mount and a full inode table.
fn can_create_in(dir: &Path) -> Result<(), Error> {
    let probe = dir.join(format!(".sipgw-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            let what = format!("cannot create a file in {}: {e}", dir.display());
            Error::new(e.kind(), what)
        })?;
    std::fs::remove_file(&probe).map_err(|e| named(&probe, e))
}

/// Opens the trail as the writer does, to see that it can; closed at once.
fn open_for_append(path: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .append(true)
        .read(true)
        .open(path)
        .map(drop)
        .map_err(|e| named(path, e))
}

/// `error`, with the path it is about in front.
fn named(path: &Path, error: Error) -> Error {
    Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_at(path: &Path) -> AuditConfig {
        let section = crate::audit::config::AuditSection {
            path: path.display().to_string(),
            ..Default::default()
        };
        AuditConfig::from_section(&section).unwrap()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sipgw-preflight-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_trail_under_a_regular_file_is_refused_naming_the_file() {
        // Root passes permission bits: a file where a directory should be fails for anyone.
        let dir = scratch("under-file");
        std::fs::write(dir.join("plain"), "x").unwrap();
        let path = dir.join("plain/audit/sipgw-audit.jsonl");
        let error = audit_usable(&audit_at(&path)).unwrap_err().to_string();
        assert!(
            error.contains(&format!("{} (audit.path)", path.display())),
            "{error}"
        );
        assert!(
            error.ends_with(&format!(
                "{} is not a directory",
                dir.join("plain").display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_relative_path_under_the_working_directory_is_fine() {
        let path = Path::new("sipgw-preflight-no-such-dir/sipgw-audit.jsonl");
        audit_usable(&audit_at(path)).unwrap();
    }

    #[test]
    fn a_missing_directory_under_a_writable_one_is_fine_and_nothing_is_left() {
        let dir = scratch("missing");
        let path = dir.join("a/b/sipgw-audit.jsonl");
        audit_usable(&audit_at(&path)).unwrap();
        assert!(!dir.join("a").exists(), "the check creates nothing");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_as_the_trail_and_a_device_are_told_apart() {
        let dir = scratch("is-dir");
        let error = audit_usable(&audit_at(&dir)).unwrap_err().to_string();
        assert!(error.contains("is a directory, not a file"), "{error}");
        // A device opens for appending and keeps no state beside it.
        audit_usable(&audit_at(Path::new("/dev/null"))).unwrap();
    }
}
