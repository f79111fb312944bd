//! The config a manifest's sipgw runs with: the ConfigMap's file under the container's
//! environment overrides, loaded by sipgw's own loader with test files for the secrets.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde_json::Value;
use sipgw::config::{Config, ENV_PREFIX, FileConfig};

/// The `SIPGW__*` variables with a literal value on `container`: sipgw reads them over
/// its config file, as `SIPGW__SECTION__KEY`.
pub fn sipgw_env(container: &Value) -> Vec<(String, String)> {
    let env = container["env"].as_array().into_iter().flatten();
    env.filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Loads the config a ConfigMap embeds with sipgw's own loader, as `serve` would: unknown
/// keys and types on the text as it is with the container's `SIPGW__*` overrides (`env`)
/// on top, then the values, with the secret files (which exist only in the pod) replaced
/// by test files.
pub fn load_embedded(
    toml: &str,
    env: &[(String, String)],
    scratch: &Path,
) -> Result<(FileConfig, Config), String> {
    let parse = || -> Result<FileConfig, String> {
        let mut figment = Figment::from(Toml::string(toml));
        for (name, value) in env {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            let value: figment::value::Value = value.parse().unwrap();
            figment = figment.merge(Serialized::default(&key.replace("__", "."), value));
        }
        figment.extract().map_err(|e| e.to_string())
    };
    let (file, mut test_file) = (parse()?, parse()?);
    let fake = |key: &mut Option<String>, name: &str, contents: &str| {
        if key.is_some() {
            let path = scratch.join(name);
            std::fs::write(&path, contents).unwrap();
            *key = Some(path.display().to_string());
        }
    };
    let vendor = &mut test_file.vendor.app_secret_file;
    fake(vendor, "app_secret", "test-app-secret\n");
    let hmac = "0123456789abcdef0123456789abcdef\n";
    fake(&mut test_file.audit.hmac_key_file, "audit_hmac_key", hmac);
    let password = &mut test_file.rate_limit.redis_password_file;
    fake(password, "redis_password", "test-redis-password\n");
    let redis_ca = &mut test_file.rate_limit.redis_ca_file;
    let server = &mut test_file.server;
    let tls = [
        &mut server.tls_cert_file,
        &mut server.tls_key_file,
        &mut server.tls_client_ca_file,
        redis_ca,
    ];
    if tls.iter().any(|setting| setting.is_some()) {
        let (cert, key, ca) = test_tls(scratch);
        for (setting, pem) in tls.into_iter().zip([&cert, &key, &ca, &ca]) {
            if setting.is_some() {
                *setting = Some(pem.display().to_string());
            }
        }
    }
    let config = Config::from_file(test_file, |_| None).map_err(|e| e.to_string())?;
    Ok((file, config))
}

/// A throw-away CA and a server certificate it signed, as a cert-manager CA issuer writes
/// them: `tls.crt` (leaf, then CA), `tls.key`, `ca.crt`.
fn test_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["sipgw.sipgw.svc".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    std::fs::write(&paths.0, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca_cert.pem()).unwrap();
    paths
}
