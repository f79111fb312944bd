//! `[rate_limit]`'s Redis keys: the URL, the credentials and the CA.

use super::*;

#[test]
fn the_redis_backend_needs_a_redis_url() {
    let memory = load(MINIMAL).unwrap();
    assert!(matches!(
        memory.limits.backend,
        crate::limits::config::LimitsBackend::Memory
    ));
    let redis = |extra: &str| format!("{MINIMAL}\n[rate_limit]\nbackend = \"redis\"\n{extra}");
    let err = error_of(&redis(""));
    assert!(
        err.contains("rate_limit.redis_url") && err.contains("required"),
        "{err}"
    );
    let err = error_of(&redis("redis_url = \"http://cache:6379\""));
    assert!(err.contains("rate_limit.redis_url"), "{err}");
    let err = error_of(&redis(
        "redis_url = \"redis://cache:6379\"\nkey_prefix = \"\"",
    ));
    assert!(err.contains("rate_limit.key_prefix"), "{err}");
    let config = load(&redis("redis_url = \"redis://cache:6379/2\"")).unwrap();
    let crate::limits::config::LimitsBackend::Redis {
        endpoint,
        key_prefix,
    } = &config.limits.backend
    else {
        panic!("the redis backend");
    };
    assert_eq!(endpoint.url, "redis://cache:6379/2");
    assert!(endpoint.username.is_none() && endpoint.password.is_none());
    assert_eq!(key_prefix, "sipgw:");
    assert!(config.limits.turn_lease > config.server.request_timeout);
}

#[test]
fn redis_credentials_come_from_files_never_from_the_url() {
    let dir = std::env::temp_dir().join(format!("sipgw-redis-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password = dir.join("redis-password");
    std::fs::write(&password, "hunter2-redis\n").unwrap();
    let ca = dir.join("redis-ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["redis.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let redis = |backend: &str, extra: &str| {
        format!("{MINIMAL}\n[rate_limit]\nbackend = \"{backend}\"\n{extra}")
    };

    // A password in the URL is refused, whatever the backend, and never quoted back.
    for backend in ["redis", "memory"] {
        for url in [
            "redis://:hunter2-inline@cache:6379",
            "rediss://app:hunter2-inline@cache:6380/0",
        ] {
            let err = error_of(&redis(backend, &format!("redis_url = \"{url}\"")));
            assert!(
                err.contains("rate_limit.redis_url")
                    && err.contains("rate_limit.redis_password_file"),
                "{err}"
            );
            assert!(!err.contains("hunter2-inline"), "{err}");
        }
    }
    let err = error_of(&redis(
        "redis",
        "redis_url = \"rediss://cache:6380/#insecure\"",
    ));
    assert!(
        err.contains("rate_limit.redis_url") && err.contains("#insecure"),
        "{err}"
    );
    let err = error_of(&redis(
        "redis",
        &format!(
            "redis_url = \"redis://cache:6379\"\nredis_ca_file = {:?}",
            ca.display().to_string()
        ),
    ));
    assert!(
        err.contains("rate_limit.redis_ca_file") && err.contains("rediss://"),
        "{err}"
    );
    let err = error_of(&redis(
        "redis",
        "redis_url = \"redis://cache:6379\"\nredis_username = \"sipgw\"",
    ));
    assert!(err.contains("rate_limit.redis_username"), "{err}");
    let err = error_of(&redis(
        "redis",
        "redis_url = \"redis://cache:6379\"\nredis_password_file = \"/nonexistent/redis-pw\"",
    ));
    assert!(
        err.contains("rate_limit.redis_password_file") && err.contains("/nonexistent/redis-pw"),
        "{err}"
    );

    // rediss:// with an ACL user, its password from a file and a private CA.
    let config = load(&redis(
        "redis",
        &format!(
            "redis_url = \"rediss://cache:6380/0\"\nredis_username = \"sipgw\"\n\
             redis_password_file = {:?}\nredis_ca_file = {:?}",
            password.display().to_string(),
            ca.display().to_string()
        ),
    ))
    .unwrap();
    let crate::limits::config::LimitsBackend::Redis { endpoint, .. } = &config.limits.backend
    else {
        panic!("the redis backend");
    };
    use secrecy::ExposeSecret;
    assert_eq!(
        endpoint.password.as_ref().map(|p| p.expose_secret()),
        Some("hunter2-redis"),
        "the trailing newline is not part of it"
    );
    assert_eq!(endpoint.username.as_deref(), Some("sipgw"));
    assert!(endpoint.tls() && endpoint.ca_pem.is_some());
    assert!(!format!("{config:?}").contains("hunter2-redis"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn passwords_in_urls_are_redacted() {
    assert_eq!(
        redact_url_password("redis://:s3cret@redis:6379/0"),
        "redis://:<redacted>@redis:6379/0"
    );
    assert_eq!(
        redact_url_password("redis://app:s3cret@redis"),
        "redis://app:<redacted>@redis"
    );
    assert_eq!(
        redact_url_password("redis://redis:6379"),
        "redis://redis:6379"
    );
    assert_eq!(
        redact_url_password("redis://user@redis"),
        "redis://user@redis"
    );
}
