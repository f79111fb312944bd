//! A TLS front for the simulator with a `localhost` certificate from a throw-away CA that
//! no config trusts: what an operator meets when the vendor's CA is missing from
//! `vendor.ca_file`.

use std::net::SocketAddr;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A `localhost` certificate and its key, signed by a CA made for this call alone.
fn untrusted_leaf() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipgw untrusted test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into();
    (leaf.der().clone(), key)
}

/// Terminates TLS on `127.0.0.1:0` with an untrusted certificate and relays each connection
/// to `backend`.
pub async fn start(backend: SocketAddr) -> SocketAddr {
    let (leaf, key) = untrusted_leaf();
    super::common::tls_front::start(leaf, key, backend).await
}
