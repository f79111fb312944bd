use super::*;
use rcgen::{CertificateParams, KeyPair, SerialNumber};

/// A self-signed `localhost` certificate and its key, as PEM, with a chosen serial.
fn self_signed(key: &KeyPair, serial: &[u8]) -> String {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_after = rcgen::date_time_ymd(2031, 3, 4);
    params.self_signed(key).unwrap().pem()
}

fn files_in(name: &str, cert: &str, key: &str) -> TlsFiles {
    let dir = std::env::temp_dir().join(format!("sipgw-tls-unit-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    TlsFiles {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
        client_ca_file: None,
    }
}

#[test]
fn an_ecdsa_and_an_rsa_key_load_and_offer_h2_then_http1() {
    let ecdsa = KeyPair::generate().unwrap();
    let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    for (name, key) in [("ecdsa", ecdsa), ("rsa", rsa)] {
        let files = files_in(name, &self_signed(&key, &[1]), &key.serialize_pem());
        let loaded = load(&files).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            loaded.config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}

#[test]
fn the_summary_shows_serial_and_not_after() {
    let key = KeyPair::generate().unwrap();
    let files = files_in(
        "summary",
        &self_signed(&key, &[0x0a, 0xbc, 0x12]),
        &key.serialize_pem(),
    );
    let leaf = load(&files).unwrap().leaf;
    assert_eq!(leaf.serial_text(), "0a:bc:12");
    assert_eq!(leaf.not_after_text(), "2031-03-04T00:00:00Z");
    assert_eq!(
        leaf.to_string(),
        "serial 0a:bc:12, not after 2031-03-04T00:00:00Z"
    );
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    assert_eq!(CertSummary::of(&garbage), CertSummary::unknown());
}

#[test]
fn key_file_errors_never_quote_the_file() {
    let key = KeyPair::generate().unwrap();
    let pem = key.serialize_pem();
    // Cut half-way through: what a reader sees while the file is being written.
    let half = &pem[..pem.len() / 2];
    let files = files_in("half-key", &self_signed(&key, &[2]), half);
    let error = load(&files).err().expect("a half-written key is refused");
    assert_eq!(error.file, TlsFile::Key);
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!error.to_string().contains(&body_line[..16]), "{error}");
    assert!(
        error.to_string().starts_with("server.tls_key_file "),
        "{error}"
    );
}

#[test]
fn the_digest_covers_every_file() {
    let files = files_in("digest", "a", "b");
    let one = Contents::read(&files).unwrap().digest();
    std::fs::write(&files.key_file, "c").unwrap();
    let two = Contents::read(&files).unwrap().digest();
    assert_ne!(one, two);
    // Lengths are part of it: moving a byte from one file to the other changes it.
    std::fs::write(&files.cert_file, "ab").unwrap();
    std::fs::write(&files.key_file, "").unwrap();
    let three = Contents::read(&files).unwrap().digest();
    std::fs::write(&files.cert_file, "a").unwrap();
    std::fs::write(&files.key_file, "b").unwrap();
    assert_ne!(three, Contents::read(&files).unwrap().digest());
    assert_eq!(one, Contents::read(&files).unwrap().digest());
}

#[test]
fn debug_output_holds_no_key_material() {
    let key = KeyPair::generate().unwrap();
    let files = files_in("debug", &self_signed(&key, &[3]), &key.serialize_pem());
    let tls = ServerTls::load(files).unwrap();
    let shown = format!("{tls:?}");
    assert!(
        shown.contains("tls.key") && !shown.contains("PRIVATE"),
        "{shown}"
    );
}
