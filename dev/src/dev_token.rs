//! `sipgw dev-token`: mint a JWT with a development key kept in a file, for trying the
//! gateway by hand against a `jwks_file`. Never for production: a real deployment verifies
//! tokens from the corporate SSO, whose keys never leave it.
//!
//! ```text
//! sipgw dev-token --key-file dev-key.pem --new-key --jwks-out dev-jwks.json --sub alice --agent a1001
//! sipgw dev-token --key-file dev-key.pem --sub ops --admin
//! ```

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::dev_issuer::{ADMIN_SCOPE, DevIssuer, KeyKind};

/// Arguments of `sipgw dev-token`.
#[derive(Debug, clap::Args)]
pub struct DevTokenArgs {
    /// PKCS#8 PEM file of the ES256 signing key.
    #[arg(long)]
    pub key_file: PathBuf,
    /// Generate a new key into --key-file (refuses to overwrite an existing file).
    #[arg(long)]
    pub new_key: bool,
    /// Also write the public key set here, for `auth.jwks_file`.
    #[arg(long)]
    pub jwks_out: Option<PathBuf>,
    /// `sub`: who the caller is.
    #[arg(long)]
    pub sub: String,
    /// `preferred_username`: the caller's own agent account (self-service).
    #[arg(long)]
    pub agent: Option<String>,
    /// Add the admin scope (`sipgw.admin`).
    #[arg(long)]
    pub admin: bool,
    /// `iss`.
    #[arg(long, default_value = "https://sso.dev.internal/realms/demo")]
    pub issuer: String,
    /// `aud`.
    #[arg(long, default_value = "sipgw")]
    pub audience: String,
    /// Seconds until `exp`.
    #[arg(long, default_value_t = 3600)]
    pub lifetime_secs: u64,
}

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key file holds no usable ES256 key.
    #[error("{0}")]
    Key(#[from] crate::dev_issuer::DevIssuerError),
}

/// Mints the token (and writes the key and key set when asked).
pub fn run(args: &DevTokenArgs) -> Result<String, DevTokenError> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| DevTokenError::Io { path, source }
    };
    let issuer = if args.new_key {
        let issuer = DevIssuer::new(&args.issuer);
        write_new(&args.key_file, issuer.es256_private_key_pem().as_bytes())
            .map_err(io(&args.key_file))?;
        issuer
    } else {
        let pem = std::fs::read_to_string(&args.key_file).map_err(io(&args.key_file))?;
        DevIssuer::from_es256_pem(&args.issuer, &pem)?
    };
    if let Some(path) = &args.jwks_out {
        // Only the ES256 key: the one this command signs with.
        let mut jwks = issuer.jwks_json();
        if let Some(keys) = jwks["keys"].as_array_mut() {
            keys.retain(|k| k["alg"] == "ES256");
        }
        std::fs::write(path, format!("{jwks:#}\n")).map_err(io(path))?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "iss": args.issuer, "sub": args.sub, "aud": args.audience,
        "iat": now, "nbf": now, "exp": now + args.lifetime_secs,
    });
    if let Some(agent) = &args.agent {
        claims["preferred_username"] = json!(agent);
    }
    if args.admin {
        claims["scope"] = json!(ADMIN_SCOPE);
    }
    Ok(issuer.mint(KeyKind::Es256, &claims))
}

/// Writes a private key to a new file readable by its owner only.
fn write_new(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}
