//! `[auth]`: the section itself, matching strictness and account keys, a JWKS file.

use super::*;
use crate::ids::AccountFolding;

#[test]
fn auth_section_is_required_and_checked() {
    let without_auth = MINIMAL.replace("[auth]", "[unused]");
    assert!(error_of(&without_auth).contains("unused"));
    let no_auth = &MINIMAL[MINIMAL.find("[vendor]").unwrap()..];
    assert!(error_of(no_auth).contains("auth.issuer is required"));
    let swap = |from: &str, to: &str| error_of(&MINIMAL.replace(from, to));
    assert!(swap("audiences = [\"sipgw\"]", "audiences = []").contains("auth.audiences"));
    let hmac = swap("audiences", "algorithms = [\"HS256\"]\naudiences");
    assert!(
        hmac.contains("auth.algorithms") && hmac.contains("HMAC"),
        "{hmac}"
    );
    assert!(swap("audiences", "algorithms = [\"none\"]\naudiences").contains("auth.algorithms"));
    let two = swap(
        "audiences",
        "discovery_url = \"https://x/.well-known/openid-configuration\"\naudiences",
    );
    assert!(
        two.ends_with(
            "auth has more than one key source: auth.jwks_url, auth.discovery_url; set exactly one"
        ),
        "{two}"
    );
    let none = swap("jwks_url = ", "# jwks_url = ");
    assert!(
        none.ends_with(
            "auth has no key source: set one of auth.jwks_url, auth.jwks_file or auth.discovery_url"
        ),
        "{none}"
    );
    assert!(
        swap("jwks_url = \"https", "jwks_url = \"http").contains("auth.jwks_url must be https://")
    );
    assert!(
        swap("audiences", "jwks_refresh_secs = 0\naudiences").contains("auth.jwks_refresh_secs")
    );
    assert!(
        swap(
            "audiences",
            "roles_claim = \"realm_access..roles\"\naudiences"
        )
        .contains("auth.roles_claim")
    );
}

#[test]
fn matching_strictness_and_account_keys_are_checked() {
    let auth = |line: &str| MINIMAL.replace("audiences", &format!("{line}\naudiences"));
    let defaults = load(MINIMAL).unwrap();
    assert_eq!(defaults.limits.account_folding, AccountFolding::CaseFolded);
    assert_eq!(
        defaults.auth.settings.policy.agent_match,
        crate::auth::policy::AgentMatch::Exact
    );
    assert_eq!(defaults.auth.settings.required_typ, None);
    assert_eq!(defaults.auth.settings.max_lifetime, None);
    let set = load(&format!(
        "{}\n[rate_limit]\naccount_key = \"exact\"\n",
        auth("agent_claim_match = \"case_insensitive\"\nrequired_typ = \"application/AT+JWT\"\nmax_token_lifetime_secs = 3600")
    ))
    .unwrap();
    assert_eq!(set.limits.account_folding, AccountFolding::Exact);
    assert_eq!(
        set.auth.settings.policy.agent_match,
        crate::auth::policy::AgentMatch::CaseInsensitive
    );
    assert_eq!(
        set.auth.settings.required_typ,
        crate::auth::verify::RequiredTyp::new("at+jwt")
    );
    assert_eq!(
        set.auth.settings.max_lifetime,
        Some(Duration::from_secs(3600))
    );
    for (line, key) in [
        (
            "agent_claim_match = \"fuzzy\"",
            "auth.agent_claim_match must be",
        ),
        ("required_typ = \"text/plain\"", "auth.required_typ must be"),
        (
            "max_token_lifetime_secs = 0",
            "auth.max_token_lifetime_secs must be > 0",
        ),
    ] {
        let error = error_of(&auth(line));
        assert!(error.contains(key), "{error}");
    }
    let error = error_of(&format!(
        "{MINIMAL}\n[rate_limit]\naccount_key = \"lower\"\n"
    ));
    assert!(error.contains("rate_limit.account_key must be"), "{error}");
}

#[test]
fn a_jwks_file_is_loaded_with_the_config() {
    let dir = std::env::temp_dir().join(format!("sipgw-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    let with_file = MINIMAL.replace(
        "jwks_url = \"https://sso.example.com/realms/corp/protocol/openid-connect/certs\"",
        &format!("jwks_file = {:?}", path.display().to_string()),
    );
    assert!(error_of(&with_file).contains("auth.jwks_file"));
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}]}"#,
    )
    .unwrap();
    let err = error_of(&with_file);
    assert!(
        err.contains("auth.jwks_file") && err.contains("no usable"),
        "{err}"
    );
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
    )
    .unwrap();
    let config = load(&with_file).unwrap();
    match config.auth.source {
        crate::auth::keys::KeySource::Static(set) => assert_eq!(set.len(), 1),
        other => panic!("expected a static key set, got {other:?}"),
    }
}
