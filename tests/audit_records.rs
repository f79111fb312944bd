//! What the gateway knows about a request, in its audit records (docs/audit.md, "The record
//! format"): `grant`, `callerName`, `forwardedFor` and `replayOf`, end to end through a
//! gateway on a real socket.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use http::Method;
use serde_json::{Value, json};
use sipgw::config::FileConfig;
use sipgw_dev::dev_issuer::KeyKind;

/// Request headers, as (name, value).
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A gateway writing its trail to a known file; `tweak` may change its config further.
async fn gateway(name: &str, tweak: impl FnOnce(&mut FileConfig)) -> (Harness, PathBuf) {
    let path = fresh_dir(name).join("sipgw-audit.jsonl");
    let p = path.display().to_string();
    let h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        tweak(c);
    })
    .await;
    (h, path)
}

/// The trail's lines, raw.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The trail's records, parsed.
fn records(path: &Path) -> Vec<Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `outcome` record of the request answered with `answer`.
fn outcome_of(path: &Path, answer: &Answer) -> Value {
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    records(path)
        .into_iter()
        .find(|r| r["kind"] == "outcome" && r["requestId"] == id.as_str())
        .unwrap_or_else(|| panic!("no outcome record for {id}"))
}

/// The `attempt` record of the request answered with `answer`.
fn attempt_of(path: &Path, answer: &Answer) -> Value {
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    records(path)
        .into_iter()
        .find(|r| r["kind"] == "attempt" && r["requestId"] == id.as_str())
        .unwrap_or_else(|| panic!("no attempt record for {id}"))
}

/// A token for `sub` with `extra` claims merged in.
fn token(h: &Harness, sub: &str, extra: Value) -> String {
    let mut claims = token_claims(sub);
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    h.idp.mint(KeyKind::Es256, &claims)
}

/// A well-formed change of `agent` by `token`, with `headers` added.
async fn change(h: &Harness, token: &str, agent: &str, headers: &[(&str, &str)]) -> Answer {
    let bearer = format!("Bearer {token}");
    let mut all = vec![
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    all.extend_from_slice(headers);
    h.send_raw(
        Method::POST,
        &Harness::endpoint(agent),
        &all,
        change_body(CURRENT, NEW),
    )
    .await
}

#[tokio::test]
async fn the_grant_names_the_rule_that_authorized_the_change_and_only_once_authorized() {
    let (h, path) = gateway("grants", |_| {}).await;
    let own = token(&h, "alice", json!({ "preferred_username": "agent1" }));
    let scoped = token(&h, "ops", json!({ "scope": ADMIN_SCOPE }));
    let role = token(
        &h,
        "lead",
        json!({ "realm_access": { "roles": [ADMIN_ROLE] } }),
    );

    let by_self = change(&h, &own, "agent1", &[]).await;
    let by_scope = change(&h, &scoped, "agent2", &[]).await;
    let by_role = change(&h, &role, "agent3", &[]).await;
    for (answer, grant) in [
        (&by_self, "self"),
        (&by_scope, "admin_scope"),
        (&by_role, "admin_role"),
    ] {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(outcome_of(&path, answer)["grant"], grant);
        // An attempt left without its outcome must still say on what authority it ran.
        assert_eq!(attempt_of(&path, answer)["grant"], grant);
    }
    // A grant is recorded even when the vendor then refuses the change.
    let rejected = change(&h, &own, "agent1", &[]).await;
    assert_eq!(rejected.code(), "vendor_rejected");
    assert_eq!(outcome_of(&path, &rejected)["grant"], "self");

    // Refused before authorization: no grant, though the caller is known when it is.
    let forbidden = change(&h, &own, "agent4", &[]).await;
    assert_eq!(forbidden.status, 403);
    let record = outcome_of(&path, &forbidden);
    assert_eq!(record["caller"]["sub"], "alice");
    assert!(record.get("grant").is_none(), "{record}");
    let unauthenticated = change(&h, "not.a.token", "agent4", &[]).await;
    assert_eq!(unauthenticated.status, 401);
    let record = outcome_of(&path, &unauthenticated);
    assert!(record.get("grant").is_none(), "{record}");
    assert!(record.get("callerName").is_none(), "{record}");
}

#[tokio::test]
async fn the_caller_name_comes_from_the_display_claim_cut_and_escaped() {
    let (h, path) = gateway("caller-name", |_| {}).await;
    let named = token(
        &h,
        "alice",
        json!({ "scope": ADMIN_SCOPE, "name": "Alice Example", "email": "alice@example.com" }),
    );
    let answer = change(&h, &named, "agent1", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(outcome_of(&path, &answer)["callerName"], "Alice Example");
    assert_eq!(attempt_of(&path, &answer)["callerName"], "Alice Example");
    // Known once authenticated, so a refusal after that carries it too.
    let forbidden = token(&h, "bob", json!({ "name": "Bob" }));
    let refused = change(&h, &forbidden, "agent2", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(outcome_of(&path, &refused)["callerName"], "Bob");

    // Long names are cut to 64 characters on a character boundary, ending with `…`; line
    // breaks, C1 and bidi controls are escaped in the line, which stays one line.
    let hostile = format!(
        "Eve\n{{\"kind\":\"outcome\"}}\u{202e}\u{85}{}",
        "é".repeat(80)
    );
    let sub = "mallory\u{2028}\u{202e}x";
    let eve = token(&h, sub, json!({ "scope": ADMIN_SCOPE, "name": hostile }));
    let answer = change(&h, &eve, "agent3", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    let line = lines(&path)
        .into_iter()
        .find(|l| l.contains(&id) && l.contains("\"kind\":\"outcome\""))
        .unwrap();
    let raw_control =
        |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}');
    assert!(!line.chars().any(raw_control), "controls escaped: {line}");
    assert!(line.contains(r#"Eve\n{\"kind\":\"outcome\"}"#), "{line}");
    assert!(line.contains(r"\u202e\u0085"), "{line}");
    assert!(line.contains(r"mallory\u2028\u202ex"), "{line}");
    let record: Value = serde_json::from_str(&line).unwrap();
    let expected: String = hostile.chars().take(63).chain(['…']).collect();
    assert_eq!(record["callerName"], expected.as_str());
    assert_eq!(record["caller"]["sub"], sub);
    // Nothing but whole records, one per line, in the trail.
    assert!(records(&path).iter().all(|r| r["mac"].is_string()));
}

#[tokio::test]
async fn a_configured_display_claim_is_used_and_an_empty_one_records_none() {
    let (h, path) = gateway("display-claim", |c| c.auth.display_claim = "email".into()).await;
    let claims = json!({ "scope": ADMIN_SCOPE, "name": "Alice", "email": "alice@example.com" });
    let answer = change(&h, &token(&h, "alice", claims.clone()), "agent1", &[]).await;
    assert_eq!(
        outcome_of(&path, &answer)["callerName"],
        "alice@example.com"
    );
    // A claim that is not a string is not a name.
    let odd = json!({ "scope": ADMIN_SCOPE, "email": ["a@example.com"] });
    let answer = change(&h, &token(&h, "alice", odd), "agent2", &[]).await;
    assert!(outcome_of(&path, &answer).get("callerName").is_none());

    let (off, off_path) = gateway("display-claim-off", |c| {
        c.auth.display_claim = String::new()
    })
    .await;
    let answer = change(&off, &token(&off, "alice", claims), "agent1", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let record = outcome_of(&off_path, &answer);
    assert!(record.get("callerName").is_none(), "{record}");
}

#[tokio::test]
async fn forwarded_for_is_taken_from_a_trusted_proxy_only() {
    let (h, path) = gateway("forwarded", |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
    })
    .await;
    let admin = h.admin_token.clone();
    let cases: [(Headers, Option<&str>); 5] = [
        (&[("x-forwarded-for", "203.0.113.9")], Some("203.0.113.9")),
        // The client's own claim on the left is not believed past an untrusted hop; a
        // trusted hop on the right is skipped.
        (
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")],
            Some("198.51.100.7"),
        ),
        (
            &[(
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.2",
            )],
            Some("2001:db8::7"),
        ),
        // Forwarded is the standard header and wins over X-Forwarded-For.
        (
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("forwarded", "for=192.0.2.60"),
            ],
            Some("192.0.2.60"),
        ),
        // Not an address: nothing recorded rather than garbage.
        (&[("x-forwarded-for", "203.0.113.9, unknown")], None),
    ];
    for (i, (headers, expected)) in cases.into_iter().enumerate() {
        let answer = change(&h, &admin, &format!("agent{i}"), headers).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        for record in [outcome_of(&path, &answer), attempt_of(&path, &answer)] {
            assert_eq!(record["forwardedFor"].as_str(), expected, "{headers:?}");
            assert_eq!(
                record["caller"]["clientIp"], "127.0.0.1",
                "the peer, as before"
            );
        }
    }
    // Refusals carry it too (a flood from behind the proxy is told apart by it).
    let refused = change(
        &h,
        "not.a.token",
        AGENT,
        &[("x-forwarded-for", "203.0.113.50")],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(outcome_of(&path, &refused)["forwardedFor"], "203.0.113.50");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let (h, path) = gateway("forwarded-untrusted", |_| {}).await;
    let admin = h.admin_token.clone();
    let spoofed = [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ];
    let answer = change(&h, &admin, AGENT, &spoofed).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    for record in [outcome_of(&path, &answer), attempt_of(&path, &answer)] {
        assert!(record.get("forwardedFor").is_none(), "{record}");
        assert_eq!(record["caller"]["clientIp"], "127.0.0.1");
    }
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("203.0.113.9")
    );
}

#[tokio::test]
async fn a_replay_names_the_request_whose_outcome_it_repeats() {
    let (h, path) = gateway("replay", |_| {}).await;
    let first = h.change_with_key(AGENT, "key-1", CURRENT, NEW).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = h.change_with_key(AGENT, "key-1", CURRENT, NEW).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    let first_id = first.headers["x-request-id"].to_str().unwrap();
    let retry_id = retry.headers["x-request-id"].to_str().unwrap();
    assert_ne!(first_id, retry_id);

    let original = outcome_of(&path, &first);
    assert!(original.get("replayOf").is_none(), "{original}");
    let replayed = outcome_of(&path, &retry);
    assert_eq!(replayed["replayOf"], first_id);
    assert_eq!(replayed["code"], "ok");
    assert!(
        replayed.get("vendor").is_none(),
        "the replay never reached the vendor"
    );
    // The replay itself was not an attempt: one attempt in the trail, the first's.
    let attempts: Vec<Value> = records(&path)
        .into_iter()
        .filter(|r| r["kind"] == "attempt")
        .collect();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["requestId"], first_id);
}
