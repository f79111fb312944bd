//! A TLS front on `127.0.0.1:0` that relays each connection to a plain backend (the
//! simulator), so the gateway talks real TLS to a real listener; and the throw-away CA
//! whose `localhost` certificate it presents.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A CA made for one test and a `localhost` server certificate it signed.
pub struct TestPki {
    /// The CA's certificate, for `vendor.ca_file` (trusting it) or nothing (not).
    pub ca_pem: String,
    /// The server certificate.
    pub leaf: CertificateDer<'static>,
    /// Its key.
    pub leaf_key: PrivateKeyDer<'static>,
}

impl TestPki {
    /// A fresh CA and `localhost` certificate.
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sipgw test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Self {
            ca_pem: ca_cert.pem(),
            leaf: leaf.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        }
    }
}

/// Terminates TLS with `leaf` and `key` and relays each connection to `backend`; offers no
/// ALPN protocol, so clients speak HTTP/1.1.
pub async fn start(
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    backend: SocketAddr,
) -> SocketAddr {
    start_with_alpn(leaf, key, backend, &[]).await.0
}

/// The ALPN protocol each handshake settled on (`None`: none), in the order they finished.
pub type Negotiated = Arc<Mutex<Vec<Option<Vec<u8>>>>>;

/// [`start`], offering `alpn` (e.g. `h2`) and recording what each handshake negotiated.
/// The backend must speak what is negotiated: the simulator takes HTTP/1.1 and h2 alike.
pub async fn start_with_alpn(
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    backend: SocketAddr,
    alpn: &[&[u8]],
) -> (SocketAddr, Negotiated) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let negotiated = Negotiated::default();
    let seen = Arc::clone(&negotiated);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                seen.lock().unwrap().push(protocol);
                let Ok(mut upstream) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (addr, negotiated)
}
