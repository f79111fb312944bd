//! `[server]` TLS keys, checked with the whole configuration.

use std::path::PathBuf;

use super::*;

#[test]
fn tls_files_are_loaded_with_the_config() {
    let pems = TlsPems::new("ok");
    assert!(load(MINIMAL).unwrap().server.tls.is_none());
    let config = load(&pems.config(&[
        ("tls_cert_file", "tls.crt"),
        ("tls_key_file", "tls.key"),
        ("tls_client_ca_file", "ca.crt"),
    ]))
    .unwrap();
    let tls = config.server.tls.expect("TLS is configured");
    assert_eq!(tls.cert_file, pems.dir.join("tls.crt"));
    assert_eq!(tls.key_file, pems.dir.join("tls.key"));
    assert_eq!(tls.client_ca_file, Some(pems.dir.join("ca.crt")));
}

#[test]
fn tls_errors_name_the_key() {
    let pems = TlsPems::new("bad");
    let cases: [(&[(&str, &str)], &str); 8] = [
        (
            &[("tls_cert_file", "tls.crt"), ("tls_key_file", "other.key")],
            "server.tls_key_file",
        ),
        (
            &[("tls_cert_file", "tls.crt")],
            "server.tls_key_file is required when server.tls_cert_file is set",
        ),
        (
            &[("tls_key_file", "tls.key")],
            "server.tls_cert_file is required when server.tls_key_file is set",
        ),
        (
            &[("tls_client_ca_file", "ca.crt")],
            "server.tls_client_ca_file needs server.tls_cert_file",
        ),
        (
            &[("tls_cert_file", "junk.pem"), ("tls_key_file", "tls.key")],
            "server.tls_cert_file bad PEM in",
        ),
        (
            &[("tls_cert_file", "tls.crt"), ("tls_key_file", "junk.pem")],
            "server.tls_key_file",
        ),
        (
            &[
                ("tls_cert_file", "tls.crt"),
                ("tls_key_file", "tls.key"),
                ("tls_client_ca_file", "tls.key"),
            ],
            "server.tls_client_ca_file",
        ),
        (
            &[
                ("tls_cert_file", "missing.crt"),
                ("tls_key_file", "tls.key"),
            ],
            "server.tls_cert_file cannot read",
        ),
    ];
    for (keys, expected) in cases {
        let err = error_of(&pems.config(keys));
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
    let err =
        error_of(&pems.config(&[("tls_cert_file", "tls.crt"), ("tls_key_file", "other.key")]));
    assert!(err.contains("does not match the certificate"), "{err}");
}

/// PEM files for `[server]` TLS in a fresh directory: a certificate, its key, a key that
/// does not match it, a CA bundle and a file that is not PEM.
struct TlsPems {
    dir: PathBuf,
}

impl TlsPems {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sipgw-cfg-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        for (file, contents) in [
            ("tls.crt", cert.pem()),
            ("tls.key", key.serialize_pem()),
            ("other.key", other.serialize_pem()),
            ("ca.crt", cert.pem()),
            (
                "junk.pem",
                "-----BEGIN CERTIFICATE-----\nnot base64!\n".to_owned(),
            ),
        ] {
            std::fs::write(dir.join(file), contents).unwrap();
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// MINIMAL with a `[server]` section holding `keys` (`name = file` pairs).
    fn config(&self, keys: &[(&str, &str)]) -> String {
        let mut toml = format!("{MINIMAL}\n[server]\n");
        for (key, file) in keys {
            toml.push_str(&format!("{key} = {:?}\n", self.path(file)));
        }
        toml
    }
}
