//! The Redis backend against a `redis-server` that wants credentials and TLS, as a shared
//! Redis should: `requirepass`, an ACL user limited to sipgw's keys, `rediss://` with a
//! private CA. Replicas log in and share their limits; wrong credentials stop start-up
//! naming the key, and credentials refused later make `/readyz` say so.
//!
//! Each test starts its own server (see `common::redis_server`); without `redis-server`
//! installed they are skipped, unless `SIPGW_REQUIRE_REDIS=1`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::{Options, RedisServer};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sipgw::config::{Config, FileConfig};
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";
const REDIS_PASSWORD: &str = "redis-pass-Qx7-not-real";

/// Starts a Redis with `options`, or skips the test (see the module docs).
macro_rules! redis_or_skip {
    ($options:expr) => {
        match RedisServer::start_with($options).await {
            Some(server) => server,
            None => return,
        }
    };
}

/// `GET /readyz` on `h`'s admin listener: (status, body).
async fn readyz(h: &Harness) -> (u16, String) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{}/readyz", h.admin_addr))
        .body(Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A fresh directory holding `name` with `contents`; returns the file's path.
fn secret_file(name: &str, contents: &str) -> PathBuf {
    let path = fresh_dir("redis-secret").join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Points a gateway at `url` with a password file and, when given, a user and a CA file.
fn secured(
    url: String,
    password_file: PathBuf,
    username: Option<&str>,
    ca_file: Option<PathBuf>,
) -> impl Fn(&mut FileConfig) + Clone {
    let username = username.map(str::to_owned);
    move |c| {
        c.rate_limit.backend = "redis".into();
        c.rate_limit.redis_url = Some(url.clone());
        c.rate_limit.redis_password_file = Some(password_file.display().to_string());
        c.rate_limit.redis_username = username.clone();
        c.rate_limit.redis_ca_file = ca_file.as_ref().map(|p| p.display().to_string());
        c.rate_limit.per_agent = QuotaSection {
            burst: 2,
            per_secs: 3600,
        };
        c.lockout.max_consecutive_failures = 2;
    }
}

/// Two replicas in front of one simulator, both configured by `tweak`.
async fn replicas(tweak: impl Fn(&mut FileConfig) + Clone) -> (Arc<Harness>, Arc<Harness>) {
    let t = tweak.clone();
    let a = Harness::start_with(sim_config(), move |c| t(c)).await;
    let b = a.replica(move |c| tweak(c)).await;
    (Arc::new(a), Arc::new(b))
}

/// A spends agent `AGENT`'s quota (burst 2) and B sees it spent; two rejections via A
/// block `agent1` on B. The vendor saw exactly four calls.
async fn assert_shared(a: &Harness, b: &Harness) {
    for (current, new) in [(CURRENT, NEW), (NEW, CURRENT)] {
        let changed = a.change(AGENT, current, new).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
    }
    let spent = b.change(AGENT, CURRENT, NEW).await;
    assert_eq!(spent.code(), "rate_limited", "{}", spent.text);
    for _ in 0..2 {
        let rejected = a.change("agent1", WRONG, NEW).await;
        assert_eq!(rejected.code(), "vendor_rejected", "{}", rejected.text);
    }
    let blocked = b.change("agent1", CURRENT, NEW).await;
    assert_eq!(blocked.code(), "lockout_protection", "{}", blocked.text);
    assert_eq!(a.sim.update_count(), 4, "the refused ones never reached it");
    for h in [a, b] {
        let (status, body) = readyz(h).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("redis"), "not degraded: {body}");
    }
}

#[tokio::test]
async fn replicas_log_in_with_a_password_from_a_file_and_share_limits() {
    let redis = redis_or_skip!(Options {
        args: vec!["--requirepass".into(), REDIS_PASSWORD.into()],
        ..Options::default()
    });
    // A trailing newline, as `kubectl create secret --from-file` keeps it.
    let password = secret_file("password", &format!("{REDIS_PASSWORD}\n"));
    let (a, b) = replicas(secured(redis.url(), password, None, None)).await;
    assert_shared(&a, &b).await;
}

#[tokio::test]
async fn replicas_log_in_as_an_acl_user_limited_to_their_keys() {
    // The default user is off: only `sipgw`, with its password, on keys under `sipgw:`.
    let redis = redis_or_skip!(Options {
        args: [
            "--user",
            "default",
            "off",
            "--user",
            "sipgw",
            "on",
            &format!(">{REDIS_PASSWORD}"),
            "~sipgw:*",
            // What sipgw needs, and nothing an intruder holding its password could use to
            // wipe or reconfigure Redis (FLUSHALL, CONFIG, DEBUG...).
            "+@all",
            "-@dangerous",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..Options::default()
    });
    let password = secret_file("password", REDIS_PASSWORD);
    let (a, b) = replicas(secured(redis.url(), password, Some("sipgw"), None)).await;
    assert_shared(&a, &b).await;
}

#[tokio::test]
async fn a_wrong_password_stops_start_up_naming_the_key() {
    let redis = redis_or_skip!(Options {
        args: vec!["--requirepass".into(), REDIS_PASSWORD.into()],
        ..Options::default()
    });
    let wrong = secret_file("password", "not-the-password-5150");
    for (password, username) in [(Some(wrong), None), (None, None)] {
        // Vendor and issuer are never reached: start-up stops before serving.
        let unused = "127.0.0.1:9".parse().unwrap();
        let mut file = file_config(unused, unused);
        file.rate_limit.backend = "redis".into();
        file.rate_limit.redis_url = Some(redis.url());
        file.rate_limit.redis_password_file = password.map(|p| p.display().to_string());
        file.rate_limit.redis_username = username;
        let config = Config::from_file(file, |_| Some(APP_SECRET.to_owned())).unwrap();
        let listeners = sipgw::app::Listeners {
            api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: None,
        };
        let tls = sipgw::tls::Reloads::when_files_change();
        let served = tokio::time::timeout(
            Duration::from_secs(30),
            sipgw::app::serve(&config, listeners, tls, std::future::pending()),
        )
        .await
        .expect("start-up stops rather than serving");
        let error = served.expect_err("refused credentials stop start-up");
        assert_eq!(error.exit_status(), 2, "{error}");
        let error = error.to_string();
        assert!(
            error.contains("(rate_limit.redis_password_file)") && error.contains("refused"),
            "{error}"
        );
        assert!(
            !error.contains("not-the-password-5150") && !error.contains(REDIS_PASSWORD),
            "{error}"
        );
    }
}

#[tokio::test]
async fn credentials_refused_later_make_the_replica_not_ready() {
    let redis = redis_or_skip!(Options {
        args: vec!["--requirepass".into(), REDIS_PASSWORD.into()],
        ..Options::default()
    });
    let password = secret_file("password", REDIS_PASSWORD);
    let h = Harness::start_with(sim_config(), secured(redis.url(), password, None, None)).await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    // The password is rotated on Redis and sipgw's connection dropped: it logs in again
    // with the old one.
    let client = redis::Client::open(format!(
        "redis://:{REDIS_PASSWORD}@127.0.0.1:{}",
        redis.url().rsplit(':').next().unwrap()
    ))
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "rotated-password-2"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: u32 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let change = h.change(AGENT, NEW, CURRENT).await;
        assert_eq!(
            change.code(),
            "lockout_state_unavailable",
            "{}",
            change.text
        );
        let ready = readyz(&h).await;
        if ready.0 == 503 || Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1.contains("redis_credentials_refused"), "{}", ready.1);
    assert_eq!(h.sim.update_count(), 1, "no change without the shield");
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files: (CA, chain, key).
fn redis_pki() -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipgw test Redis CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = fresh_dir("redis-pki");
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, leaf.pem()).unwrap();
    std::fs::write(&files.2, leaf_key.serialize_pem()).unwrap();
    files
}

#[tokio::test]
async fn replicas_share_limits_over_rediss_with_a_private_ca() {
    let (ca, cert, key) = redis_pki();
    let redis = redis_or_skip!(Options {
        args: vec!["--requirepass".into(), REDIS_PASSWORD.into()],
        tls: Some((cert, key)),
    });
    let password = secret_file("password", REDIS_PASSWORD);
    let (a, b) = replicas(secured(redis.tls_url(), password.clone(), None, Some(ca))).await;
    assert_shared(&a, &b).await;

    // A replica that trusts another CA never talks to this Redis: no credentials are sent,
    // and with the shield's state unreadable its changes are refused.
    let (other_ca, _, _) = redis_pki();
    let c = a
        .replica(secured(redis.tls_url(), password, None, Some(other_ca)))
        .await;
    let refused = c.change("agent2", CURRENT, NEW).await;
    assert_eq!(
        refused.code(),
        "lockout_state_unavailable",
        "{}",
        refused.text
    );
    assert_eq!(a.sim.update_count(), 4);
}
