//! `sipgw demo`, run as a new user runs it: the change end to end, and the operator's side
//! (the admin listener, `/readyz`, `/metrics`, the log lines) with no secret shown.

use std::process::Command;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

#[test]
fn the_demo_changes_a_password_end_to_end() {
    let output = Command::new(SIPGW).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("-> 200 OK"), "{stdout}");
    assert!(stdout.contains("\"resultCode\":\"0\""), "{stdout}");
    assert!(stdout.contains("-> 400 Bad Request"), "{stdout}");
    assert!(stdout.contains("\"code\":\"password_policy\""), "{stdout}");
    assert!(
        stdout.contains("the vendor simulator now holds the new password: yes"),
        "{stdout}"
    );
    assert!(stdout.contains("-> 403 Forbidden"), "{stdout}");
    assert!(stdout.contains("-> 401 Unauthorized"), "{stdout}");
    assert!(stdout.contains("-H 'Authorization: Bearer ey"), "{stdout}");
    assert!(
        stdout.contains("curl -i -X POST http://127.0.0.1:"),
        "{stdout}"
    );
}

// The demo shows the operator's side: the admin listener, /readyz, /metrics, the log lines;
// its forged token is refused by the signature check; no secret is printed.
#[cfg(feature = "dev")]
#[test]
fn the_demo_shows_the_operators_side_and_no_secret() {
    let output = Command::new(SIPGW)
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sipgw admin        http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GET /readyz -> 200 OK {\"degraded\":[],\"status\":\"ready\"}"),
        "{stdout}"
    );
    // The four requests, counted by code, and the held token's expiry.
    for code in ["ok", "password_policy", "forbidden", "unauthenticated"] {
        let line = format!("  sipgw_requests_total{{code=\"{code}\"}} 1\n");
        assert!(stdout.contains(&line), "{line} in {stdout}");
    }
    assert!(
        stdout.contains("  sipgw_token_expires_in_seconds "),
        "{stdout}"
    );
    assert!(!stdout.contains("} 0\n"), "zeros are left out: {stdout}");
    // A well-formed token signed by an untrusted key: the signature check refuses it.
    assert!(
        stdout.contains(
            r#"refused by the signature check: unauthenticated, "token signature is invalid""#
        ),
        "{stdout}"
    );
    // The gateway's log lines on stderr: start-up, and one line per request.
    assert!(stderr.contains("sipgw listening"), "{stderr}");
    assert!(stderr.contains("admin listening"), "{stderr}");
    let request_lines = stderr.lines().filter(|l| l.contains("request_id")).count();
    assert!(request_lines >= 4, "{stderr}");
    // Captured, not a terminal: no colour escape codes around the fields.
    assert!(!stderr.contains('\x1b'), "escape codes in a pipe: {stderr}");
    // The app secret nowhere; the token and the passwords only in the walk-through.
    assert!(!stdout.contains("demo-app-secret"), "{stdout}");
    for secret in [
        "demo-app-secret",
        "Welcome~2024",
        "Sip~Phone2025",
        "Next~Phone26",
        "eyJ",
    ] {
        assert!(!stderr.contains(secret), "{secret} logged: {stderr}");
    }
}
