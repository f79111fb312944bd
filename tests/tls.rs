//! Inbound TLS on the API listener: HTTP/1.1 and h2 by ALPN, certificate reload without a
//! restart (on demand, by the file poll, and by SIGHUP to the real binary), mTLS, the
//! handshake's bounds, and the config checks.
//!
//! Certificates come from throw-away CAs made with rcgen; clients are tokio-rustls plus
//! hyper's connection-level client, so a test holds one specific connection open.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sipgw::config::{Config, FileConfig};
use sipgw::tls::{Reloads, ServerTls, TlsFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
/// Bound on anything a test waits for; far above what any of it takes.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Certificates

/// A throw-away certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A slice from the middle of a PEM key's base64 body: what a leak of the key would show.
fn key_body(pem: &str) -> &str {
    let line = pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() >= 40)
        .expect("a PEM body line");
    &line[8..40]
}

/// A certificate it signed, with its key.
struct Leaf {
    der: CertificateDer<'static>,
    /// The certificate followed by its CA's: a chain, as cert-manager writes `tls.crt`.
    chain_pem: String,
    key_pem: String,
    key_der: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A `localhost` server certificate with serial `serial`.
    fn server(&self, serial: u64) -> Leaf {
        self.leaf(
            vec!["localhost".to_owned()],
            serial,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for the application next to the sidecar.
    fn client(&self) -> Leaf {
        self.leaf(
            vec!["app.internal".to_owned()],
            7,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(&self, names: Vec<String>, serial: u64, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        // Expires on 2030-01-{serial}, so each serial has an expiry of its own.
        params.not_after = rcgen::date_time_ymd(2030, 1, serial as u8);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

/// A directory laid out as Kubernetes mounts a Secret: `tls.crt` and `tls.key` are
/// symlinks into `..data`, itself a symlink to a timestamped directory; an update writes a
/// new directory and swaps `..data` atomically, so the paths sipgw reads never change.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(name: &str, leaf: &Leaf) -> Self {
        let dir = fresh_dir(name);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
        let mut volume = Self { dir, version: 0 };
        volume.publish(&leaf.chain_pem, &leaf.key_pem);
        volume
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// What cert-manager does on renewal.
    fn rotate_to(&mut self, leaf: &Leaf) {
        self.publish(&leaf.chain_pem, &leaf.key_pem);
    }

    fn publish(&mut self, cert: &str, key: &str) {
        self.version += 1;
        let data = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&data)).unwrap();
        std::fs::write(self.dir.join(&data).join("tls.crt"), cert).unwrap();
        std::fs::write(self.dir.join(&data).join("tls.key"), key).unwrap();
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

// ---------------------------------------------------------------------------------------
// The gateway

/// A gateway serving TLS in front of a simulator, with the reload handle at hand.
struct TlsGateway {
    addr: SocketAddr,
    /// The admin listener (plain HTTP).
    admin_addr: SocketAddr,
    tls: Arc<ServerTls>,
    sim: sipgw_dev::sim::VendorSim,
    /// An admin caller's JWT.
    token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TlsGateway {
    /// Starts a gateway whose `[server]` names `cert`, `key` and `client_ca`; `tweak` may
    /// change the rest. The files are polled every `poll`.
    async fn start(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        poll: Duration,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> Self {
        let Upstreams {
            idp,
            idp_addr,
            sim,
            sim_addr,
        } = Upstreams::start().await;
        let mut file = file_config(sim_addr, idp_addr);
        file.server.tls_cert_file = Some(path_text(cert));
        file.server.tls_key_file = Some(path_text(key));
        file.server.tls_client_ca_file = client_ca.map(path_text);
        tweak(&mut file);
        let config =
            Config::from_file(file, |_| Some(APP_SECRET.to_owned())).expect("test config is valid");
        let (reloads, loaded) = Reloads::on_demand();
        let reloads = reloads.polling_every(poll);
        let listeners = sipgw::app::Listeners {
            api: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let addr = listeners.api.local_addr().unwrap();
        let admin_addr = listeners.admin.as_ref().unwrap().local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sipgw::app::serve(&config, listeners, reloads, async {
                let _ = stopped.await;
            })
            .await
            .expect("gateway runs");
        });
        // The gateway loads the files itself; the test reloads them on demand.
        let tls = loaded.loaded().await.expect("the TLS files load");
        Self {
            addr,
            admin_addr,
            tls,
            sim,
            token: idp.mint_for("ops-robot", AUDIENCE, None, true),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `name value` lines of the admin listener's `/metrics` whose name starts `sipgw_tls_`.
    async fn tls_metrics(&self) -> Vec<String> {
        let mut stream = tokio::net::TcpStream::connect(self.admin_addr)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text)
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("sipgw_tls_"))
            .map(str::to_owned)
            .collect()
    }

    /// Triggers graceful shutdown and waits for the gateway to finish.
    async fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the gateway stops")
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// A client trusting `ca`, presenting `identity` when given, offering `alpn`.
fn client_config(ca: &Ca, identity: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        PATIENCE,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("the handshake ends")
}

/// One HTTP connection over TLS, speaking whatever ALPN chose.
struct Conn {
    sender: Sender,
    /// The certificate the server presented.
    peer: CertificateDer<'static>,
    /// The protocol ALPN settled on.
    alpn: Option<Vec<u8>>,
    addr: SocketAddr,
    /// Drives the connection; ends when the server closes it.
    driver: JoinHandle<()>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Reply {
    status: StatusCode,
    version: Version,
    text: String,
}

impl Conn {
    async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let stream = tls_connect(addr, config).await.expect("TLS handshake");
        let (_, session) = stream.get_ref();
        let peer = session.peer_certificates().unwrap()[0].clone().into_owned();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            (Sender::H2(sender), driver)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            (Sender::H1(sender), driver)
        };
        Self {
            sender,
            peer,
            alpn,
            addr,
            driver,
        }
    }

    /// A password change for `agent` (from [`CURRENT`] to [`NEW`]) as `token`'s caller.
    async fn change(&mut self, token: &str, agent: &str) -> Reply {
        let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
        let path = Harness::endpoint(agent);
        let uri = match self.sender {
            // h2 carries the authority in the request itself.
            Sender::H2(_) => format!("https://localhost:{}{path}", self.addr.port()),
            Sender::H1(_) => path,
        };
        let request = Request::post(uri)
            .header("host", format!("localhost:{}", self.addr.port()))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let sending = async {
            match &mut self.sender {
                Sender::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await
                }
                Sender::H2(sender) => {
                    let mut request = request;
                    request.headers_mut().remove("host");
                    sender.ready().await?;
                    sender.send_request(request).await
                }
            }
        };
        let response = tokio::time::timeout(PATIENCE, sending)
            .await
            .expect("the gateway answers in time")
            .expect("the gateway answers");
        let status = response.status();
        let version = response.version();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            version,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// The certificate a new handshake is given.
async fn presented(addr: SocketAddr, ca: &Ca) -> CertificateDer<'static> {
    let stream = tls_connect(addr, client_config(ca, None, &[b"http/1.1"]))
        .await
        .expect("TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Connects and waits for the server's verdict; the TLS error it gave. With TLS 1.3 the
/// client finishes its side of the handshake before the server has checked its
/// certificate, so the refusal arrives as an alert on the first read.
async fn refusal(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> rustls::Error {
    let as_tls = |error: std::io::Error| -> rustls::Error {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS error: {error}"))
    };
    let mut stream = match tls_connect(addr, config).await {
        Ok(stream) => stream,
        Err(error) => return as_tls(error),
    };
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf)).await {
        Ok(Err(error)) => as_tls(error),
        other => panic!(
            "the server answered: {other:?} {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Round trips

#[tokio::test]
async fn a_password_change_over_tls_with_http1() {
    let ca = Ca::new("round trip CA");
    let volume = SecretVolume::new("tls-h1", &ca.server(1));
    let mut gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |_| {}).await;
    let mut conn = Conn::open(gw.addr, client_config(&ca, None, &[b"http/1.1"])).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let reply = conn.change(&gw.token, AGENT).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(gw.sim.agent_password(AGENT).as_deref(), Some(NEW));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_password_change_over_tls_with_h2() {
    let ca = Ca::new("round trip CA");
    let volume = SecretVolume::new("tls-h2", &ca.server(1));
    let mut gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |_| {}).await;
    let mut conn = Conn::open(gw.addr, client_config(&ca, None, &[b"h2", b"http/1.1"])).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]), "h2 is preferred");
    let reply = conn.change(&gw.token, AGENT).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(gw.sim.agent_password(AGENT).as_deref(), Some(NEW));
    // A second stream on the same connection.
    let reply = conn.change(&gw.token, "agent1").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    gw.shutdown().await;
}

#[tokio::test]
async fn plain_http_gets_no_answer_on_a_tls_listener() {
    let ca = Ca::new("plain CA");
    let volume = SecretVolume::new("tls-plain", &ca.server(1));
    let gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |_| {}).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf))
        .await
        .expect("the connection is closed");
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

// ---------------------------------------------------------------------------------------
// Reload

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let ca = Ca::new("reload CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let mut volume = SecretVolume::new("tls-reload", &first);
    let mut gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |_| {}).await;
    let mut open = Conn::open(gw.addr, client_config(&ca, None, &[b"http/1.1"])).await;
    assert_eq!(open.peer, first.der);
    assert_eq!(open.change(&gw.token, "agent1").await.status, 200);

    volume.rotate_to(&second);
    let summary = gw.tls.reload().expect("the new files load");
    assert_eq!(summary.serial_text(), "02");

    // The connection made before the swap still works...
    let reply = open.change(&gw.token, "agent2").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // ...and a new handshake gets the new certificate.
    let mut fresh = Conn::open(gw.addr, client_config(&ca, None, &[b"h2"])).await;
    assert_eq!(fresh.peer, second.der);
    assert_eq!(fresh.change(&gw.token, "agent3").await.status, 200);
    // The metrics count the reload and show the new certificate's expiry.
    let metrics = gw.tls_metrics().await;
    assert!(
        metrics.contains(&r#"sipgw_tls_reloads_total{result="ok"} 1"#.to_owned()),
        "{metrics:?}"
    );
    let not_after = 1_893_542_400; // 2030-01-02T00:00:00Z, serial 2's expiry

    assert!(
        metrics.contains(&format!(
            "sipgw_tls_cert_expiry_timestamp_seconds {not_after}"
        )),
        "{metrics:?} (want {not_after})"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failed_reload_keeps_the_current_certificate() {
    let ca = Ca::new("broken reload CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let mut volume = SecretVolume::new("tls-broken", &first);
    let gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |_| {}).await;

    // The new certificate with the old key: a renewal half-applied.
    volume.publish(&second.chain_pem, &first.key_pem);
    let error = gw
        .tls
        .reload()
        .expect_err("a key that does not match is refused");
    assert_eq!(error.file, TlsFile::Key);
    assert!(
        error.to_string().starts_with("server.tls_key_file ")
            && error.to_string().contains("does not match"),
        "{error}"
    );
    assert_eq!(presented(gw.addr, &ca).await, first.der);

    // A certificate file cut off half-way.
    let half = &second.chain_pem[..second.chain_pem.len() / 2];
    volume.publish(half, &second.key_pem);
    let error = gw
        .tls
        .reload()
        .expect_err("a truncated certificate is refused");
    assert_eq!(error.file, TlsFile::Cert, "{error}");
    assert_eq!(presented(gw.addr, &ca).await, first.der);

    // Once the files are whole again, the poll's check picks them up.
    volume.rotate_to(&second);
    let summary = gw.tls.reload_if_changed().unwrap();
    assert_eq!(
        summary.map(|s| s.serial_text().to_owned()).as_deref(),
        Some("02")
    );
    assert_eq!(presented(gw.addr, &ca).await, second.der);
    assert!(
        gw.tls.reload_if_changed().unwrap().is_none(),
        "unchanged files are not reloaded"
    );
    // Two refused reloads and one that worked, as the metrics count them.
    let metrics = gw.tls_metrics().await;
    for line in [
        r#"sipgw_tls_reloads_total{result="error"} 2"#,
        r#"sipgw_tls_reloads_total{result="ok"} 1"#,
    ] {
        assert!(metrics.contains(&line.to_owned()), "{line}: {metrics:?}");
    }
}

#[tokio::test]
async fn a_secret_volume_update_is_picked_up_by_the_poll() {
    let ca = Ca::new("poll CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let mut volume = SecretVolume::new("tls-poll", &first);
    let poll = Duration::from_millis(100);
    let mut gw = TlsGateway::start(&volume.cert(), &volume.key(), None, poll, |_| {}).await;
    assert_eq!(presented(gw.addr, &ca).await, first.der);

    volume.rotate_to(&second);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented(gw.addr, &ca).await != second.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(poll).await;
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// mTLS

/// A gateway that requires client certificates from `client_ca`.
async fn mtls_gateway(name: &str, server_ca: &Ca, client_ca: &Ca) -> TlsGateway {
    let volume = SecretVolume::new(name, &server_ca.server(1));
    let ca_file = volume.dir.join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    TlsGateway::start(
        &volume.cert(),
        &volume.key(),
        Some(&ca_file),
        PATIENCE,
        |_| {},
    )
    .await
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_from_the_configured_ca() {
    let (server_ca, app_ca) = (Ca::new("server CA"), Ca::new("app CA"));
    let mut gw = mtls_gateway("mtls-ok", &server_ca, &app_ca).await;
    let app = app_ca.client();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut conn = Conn::open(gw.addr, client_config(&server_ca, Some(&app), &[alpn])).await;
        assert_eq!(conn.alpn.as_deref(), Some(alpn));
        let agent = if alpn == b"h2" { "agent2" } else { "agent1" };
        let reply = conn.change(&gw.token, agent).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(gw.sim.update_count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate() {
    let (server_ca, app_ca) = (Ca::new("server CA"), Ca::new("app CA"));
    let gw = mtls_gateway("mtls-none", &server_ca, &app_ca).await;
    let error = refusal(gw.addr, client_config(&server_ca, None, &[b"http/1.1"])).await;
    assert!(
        matches!(
            error,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        ),
        "{error:?}"
    );
    assert_eq!(gw.sim.update_count(), 0);
}

#[tokio::test]
async fn mtls_refuses_a_client_certificate_from_another_ca() {
    let (server_ca, app_ca, stranger_ca) =
        (Ca::new("server CA"), Ca::new("app CA"), Ca::new("other CA"));
    let gw = mtls_gateway("mtls-other", &server_ca, &app_ca).await;
    let stranger = stranger_ca.client();
    let error = refusal(
        gw.addr,
        client_config(&server_ca, Some(&stranger), &[b"http/1.1"]),
    )
    .await;
    assert!(
        matches!(
            error,
            rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA | rustls::AlertDescription::BadCertificate
            )
        ),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Bounds

#[tokio::test]
async fn a_client_that_never_says_hello_is_closed_and_frees_its_slot() {
    let ca = Ca::new("silent CA");
    let volume = SecretVolume::new("tls-silent", &ca.server(1));
    let gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |c| {
        c.server.header_read_timeout_ms = 300;
        c.server.max_connections = 1;
    })
    .await;
    // Takes the only slot and sends nothing: not even a ClientHello.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Waits for the slot.
    let waiting = {
        let (addr, config, token) = (
            gw.addr,
            client_config(&ca, None, &[b"http/1.1"]),
            gw.token.clone(),
        );
        tokio::spawn(async move { Conn::open(addr, config).await.change(&token, AGENT).await })
    };
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the silent connection is closed without a word: {read:?}"
    );
    let reply = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting client is served once the slot is free")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn a_connection_still_in_its_handshake_gives_way_to_a_new_client() {
    let ca = Ca::new("shed CA");
    let volume = SecretVolume::new("tls-shed", &ca.server(1));
    // Only shedding can free the slot: the head timeout is far beyond the test's patience.
    let gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |c| {
        c.server.header_read_timeout_ms = 120_000;
        c.server.max_connections = 1;
    })
    .await;
    // Takes the only slot and never sends its ClientHello.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let config = client_config(&ca, None, &[b"http/1.1"]);
    let served = async {
        Conn::open(gw.addr, config)
            .await
            .change(&gw.token, AGENT)
            .await
    };
    let reply = tokio::time::timeout(PATIENCE, served)
        .await
        .expect("the new client is served at once");
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "shed without a word: {read:?}");
}

#[tokio::test]
async fn tls_connections_keep_the_idle_and_drain_bounds() {
    let ca = Ca::new("bounds CA");
    let volume = SecretVolume::new("tls-bounds", &ca.server(1));
    let mut gw = TlsGateway::start(&volume.cert(), &volume.key(), None, PATIENCE, |c| {
        c.server.idle_timeout_secs = 1;
        // Neither bound below may be what ends the connections in this test.
        c.server.header_read_timeout_ms = 120_000;
        c.server.shutdown_grace_secs = 120;
    })
    .await;
    // Connections that made a request are closed once idle.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut idle = Conn::open(gw.addr, client_config(&ca, None, &[alpn])).await;
        let agent = if alpn == b"h2" { "agent1" } else { "agent2" };
        assert_eq!(idle.change(&gw.token, agent).await.status, 200);
        tokio::time::timeout(PATIENCE, idle.driver)
            .await
            .expect("an idle TLS connection is closed")
            .unwrap();
    }

    // A connection still in its handshake does not hold up the drain.
    let _handshaking = TcpStream::connect(gw.addr).await.unwrap();
    let mut served = Conn::open(gw.addr, client_config(&ca, None, &[b"http/1.1"])).await;
    assert_eq!(served.change(&gw.token, AGENT).await.status, 200);
    // Within PATIENCE, well before the head timeout or the grace period could end it.
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The binary

/// A config file for `sipgw serve` on loopback, TLS from `volume`.
fn binary_config(name: &str, tls: &str, idp_addr: SocketAddr, sim_addr: SocketAddr) -> PathBuf {
    let dir = fresh_dir(name);
    let audit = path_text(&dir.join("audit.jsonl"));
    let path = dir.join("sipgw.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{tls}\
             [audit]\npath = {audit:?}\n{}",
            upstream_sections(idp_addr, sim_addr)
        ),
    )
    .unwrap();
    path
}

fn tls_keys(cert: &Path, key: &Path) -> String {
    format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        path_text(cert),
        path_text(key)
    )
}

#[test]
fn check_config_shows_the_tls_files_and_refuses_a_key_that_does_not_match() {
    let ca = Ca::new("check CA");
    let (leaf, other) = (ca.server(1), ca.server(2));
    let volume = SecretVolume::new("tls-check", &leaf);
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let good = binary_config(
        "tls-check-ok",
        &tls_keys(&volume.cert(), &volume.key()),
        addr,
        addr,
    );
    let output = Command::new(SIPGW)
        .args(["check-config", "--config"])
        .arg(&good)
        .env("SIPGW_APP_SECRET", "x")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("tls_cert_file = {:?}", path_text(&volume.cert()))),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    assert!(!stdout.contains(key_body(&leaf.key_pem)), "{stdout}");

    let wrong_key = volume.dir.join("other.key");
    std::fs::write(&wrong_key, &other.key_pem).unwrap();
    let bad = binary_config(
        "tls-check-bad",
        &tls_keys(&volume.cert(), &wrong_key),
        addr,
        addr,
    );
    for command in ["check-config", "serve"] {
        let output = Command::new(SIPGW)
            .args([command, "--config"])
            .arg(&bad)
            .env("SIPGW_APP_SECRET", "x")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("server.tls_key_file") && stderr.contains("does not match"),
            "{command}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_binary_reloads_its_certificate_on_sighup() {
    let Upstreams {
        idp,
        idp_addr,
        sim: _sim,
        sim_addr,
    } = Upstreams::start().await;
    let ca = Ca::new("binary CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let mut volume = SecretVolume::new("tls-binary", &first);
    let config = binary_config(
        "tls-binary-config",
        &tls_keys(&volume.cert(), &volume.key()),
        idp_addr,
        sim_addr,
    );
    let mut child = serve_command(&config).spawn().unwrap();
    let lines_rx = stderr_lines(&mut child);
    let mut log = Vec::new();
    let listening = wait_for_listening(&lines_rx, &mut log, PATIENCE);
    assert_eq!(listening["tls"], true, "{listening}");
    let addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let token = idp.mint_for("alice", AUDIENCE, Some(AGENT), false);
    let mut conn = Conn::open(addr, client_config(&ca, None, &[b"h2"])).await;
    assert_eq!(conn.peer, first.der);
    assert_eq!(conn.change(&token, AGENT).await.status, 200);

    volume.rotate_to(&second);
    send_signal(&child, "HUP");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented(addr, &ca).await != second.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new certificate after SIGHUP; log: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The process lived through the signal, and logged the reload with the new serial.
    let mut reloaded = false;
    while !reloaded {
        let line = lines_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no reload logged; log: {log:?}"));
        log.push(line.clone());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        // A reload by SIGHUP ("requested"), not by the file poll ("files changed"): SIGHUP
        // reloads even when the poll got there first, so this line comes either way.
        reloaded = json["message"] == "TLS certificate reloaded"
            && json["serial"] == "02"
            && json["trigger"] == "requested";
    }
    assert!(log.iter().any(|l| l.contains("SIGHUP received")), "{log:?}");
    for key in [&first.key_pem, &second.key_pem] {
        let body = key_body(key);
        assert!(
            log.iter()
                .all(|l| !l.contains("PRIVATE KEY") && !l.contains(body)),
            "key material in the log: {log:?}"
        );
    }

    send_signal(&child, "TERM");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "log: {log:?}");
}
