//! The `sipgw` binary itself: configuration errors, SIGTERM, `dev-token`, `audit verify`
//! and `show` (the demo's own suite is tests/demo.rs).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sipgw.toml");
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let path = temp_file(
        "bad",
        "[vendor]\nbase_url = \"https://v.example\"\napp_key = \"k\"\ntimeout_ms = 0\n",
    );
    let output = Command::new(SIPGW)
        .args(["serve", "--config"])
        .arg(&path)
        .env("SIPGW_APP_SECRET", "x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("vendor.timeout_ms must be > 0, got 0"),
        "{stderr}"
    );
}

/// The signal handlers come before the config is read: a SIGHUP (`systemctl reload`) that
/// arrives while `serve` is still reading its config must not take the signal's default
/// action, which ends the process. The config is a FIFO, so that the test knows when `serve`
/// is reading it.
#[test]
fn a_sighup_while_the_config_is_read_does_not_end_the_process() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    /// `O_NONBLOCK` on Linux.
    const O_NONBLOCK: i32 = 0o4000;
    let dir = std::env::temp_dir().join(format!("sipgw-cli-{}-fifo", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("sipgw.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(SIPGW)
        .args(["serve", "--config"])
        .arg(&fifo)
        .env("SIPGW_APP_SECRET", "x")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening a FIFO to write without blocking fails until a reader has it open: then
    // `serve` is reading its config.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut writer = loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo);
        match opened {
            Ok(writer) => break writer,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => {
                let _ = child.kill();
                panic!("serve never opened its config: {error}");
            }
        }
    };
    send_signal(&child, "HUP");
    // A config that stops start-up: the process ends with exit status 2, not by the signal.
    writer
        .write_all(b"[vendor]\nbase_url = \"https://v.example\"\napp_key = \"k\"\ntimeout_ms = 0\n")
        .expect("serve is still reading its config: the SIGHUP did not end it");
    drop(writer);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not end after reading a bad config");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{:?}: {stderr}",
        output.status
    );
    assert!(stderr.contains("vendor.timeout_ms"), "{stderr}");
}

#[test]
fn an_environment_override_is_validated_too() {
    let path = temp_file(
        "env",
        "[vendor]\nbase_url = \"https://v.example\"\napp_key = \"k\"\n",
    );
    let output = Command::new(SIPGW)
        .arg("serve")
        .env("SIPGW_CONFIG", &path)
        .env("SIPGW_APP_SECRET", "x")
        .env("SIPGW__VENDOR__TOKEN_TTL_SECS", "7200")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("vendor.token_ttl_secs"));
}

// Only a binary built with the `dev` feature (the default) has the command.
#[cfg(feature = "dev")]
#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let upstreams = Upstreams::start().await;
    let (sim, sections) = (&upstreams.sim, upstreams.config_sections());
    let token = upstreams
        .idp
        .mint_for("alice", AUDIENCE, Some(AGENT), false);
    let audit_dir = fresh_dir("term-audit");
    let audit_path = audit_dir.join("sipgw-audit.jsonl").display().to_string();
    let hmac_key = "audit-hmac-key-for-the-term-test-0042";
    let hmac_key_path = audit_dir.join("hmac.key");
    std::fs::write(&hmac_key_path, hmac_key).unwrap();
    let path = temp_file(
        "term",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
             [audit]\npath = {audit_path:?}\nstdout = true\nhmac_key_file = {hmac_key_path:?}\n{sections}"
        ),
    );
    let mut child = serve_command(&path)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The JSON log line "sipgw listening" carries the address.
    let (lines_rx, mut log, addr) = listening(&mut child, Duration::from_secs(20));
    // Traffic with secrets in it: a change, a vendor rejection, a policy refusal.
    let client = http_client();
    for (current, new) in [
        (CURRENT, NEW),
        ("Wrong~Pass77", "Other~Pass88"),
        (NEW, "weakpassword"),
    ] {
        let body = serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string();
        let request = http::Request::post(format!("http://{addr}{}", Harness::endpoint(AGENT)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        client.request(request).await.unwrap();
    }
    assert_eq!(sim.agent_password(AGENT).as_deref(), Some(NEW));
    let access_token = sim.update_requests()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();

    send_signal(&child, "TERM");
    let mut stdout = child.stdout.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "sipgw exit after SIGTERM; log: {log:?}"
    );
    assert!(std::net::TcpStream::connect(&addr).is_err());
    // The log (at trace level) holds the requests but no secret of any kind.
    while let Ok(line) = lines_rx.try_recv() {
        log.push(line);
    }
    assert!(
        log.iter().filter(|l| l.contains("\"request\"")).count() >= 3,
        "{log:?}"
    );
    // Each request's line carries its span: request id, route, the caller and the agent.
    let lines: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let first_request = lines.iter().find(|j| j["message"] == "request").unwrap();
    let span = &first_request["span"];
    assert_eq!(span["name"], "request", "{first_request}");
    assert_eq!(span["sub"], "alice", "{first_request}");
    assert_eq!(span["agent"], AGENT);
    assert_eq!(span["route"], Harness::endpoint(AGENT));
    assert_eq!(first_request["code"], "ok");
    assert_eq!(first_request["status"], 200);
    // Lines logged inside the request (the audit writes, at trace level) carry the same
    // request id.
    let request_id = span["request_id"].as_str().unwrap();
    assert!(
        lines
            .iter()
            .filter(|j| j["span"]["request_id"] == request_id)
            .count()
            > 1,
        "only the final line names request {request_id}: {log:?}"
    );
    let secrets = [
        APP_SECRET,
        CURRENT,
        NEW,
        "Wrong~Pass77",
        "Other~Pass88",
        "weakpassword",
        &token,
        &access_token,
        hmac_key,
    ];
    for secret in secrets {
        assert!(
            log.iter().all(|l| !l.contains(secret)),
            "{secret} appears in the log: {log:?}"
        );
    }
    // The audit trail holds the run (an attempt and an outcome per vendor call, one outcome
    // for the refusal, the checkpoint written at shutdown), verifies, and holds no secret
    // either.
    let trail = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(
        printed, trail,
        "stdout = true prints the same records as the file"
    );
    assert_eq!(trail.lines().count(), 6, "{trail}");
    assert!(
        trail
            .lines()
            .last()
            .unwrap()
            .contains(r#""kind":"checkpoint","lastSeq":5,"#),
        "{trail}"
    );
    for secret in secrets {
        assert!(
            !trail.contains(secret),
            "{secret} appears in the audit trail"
        );
    }
    let verify = Command::new(SIPGW)
        .args(["audit", "verify", &audit_path, "--key-file"])
        .arg(&hmac_key_path)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

// Only a binary built with the `dev` feature (the default) has the command.
#[cfg(feature = "dev")]
#[test]
fn dev_token_mints_tokens_that_verify_against_its_jwks() {
    let dir = std::env::temp_dir().join(format!("sipgw-cli-{}-devtoken", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (key, jwks) = (dir.join("dev-key.pem"), dir.join("dev-jwks.json"));
    let mint = |extra: &[&str]| {
        let output = Command::new(SIPGW)
            .args(["dev-token", "--key-file"])
            .arg(&key)
            .args(["--sub", "alice", "--agent", "a1001"])
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
    };
    let (ok, first) = mint(&["--new-key", "--jwks-out", jwks.to_str().unwrap()]);
    assert!(ok, "{first}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, second) = mint(&["--admin"]);
    assert!(ok);
    // An existing key is never overwritten.
    assert!(!mint(&["--new-key"]).0);

    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&std::fs::read(&jwks).unwrap()).unwrap();
    assert_eq!(set.keys.len(), 1);
    let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["sipgw"]);
    for (token, admin) in [(first, false), (second, true)] {
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["preferred_username"], "a1001");
        assert_eq!(claims["scope"] == "sipgw.admin", admin);
    }
}

#[tokio::test]
async fn audit_verify_and_show_read_a_trail() {
    use sipgw::audit::chain::MacKey;
    use sipgw::audit::record::{CallerInfo, Event, Kind};
    use sipgw::audit::writer::{AuditWriter, Fsync, WriterConfig};
    let dir = std::env::temp_dir().join(format!("sipgw-cli-{}-audit", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, "an-hmac-key-kept-off-the-host-0123\n").unwrap();
    let trail = dir.join("trail");
    let writer = AuditWriter::open(WriterConfig {
        path: trail.join("audit.jsonl"),
        max_bytes: 1500,
        fsync: Fsync::Always,
        stdout: false,
        key: MacKey::from_file_bytes(&std::fs::read(&key_file).unwrap()).unwrap(),
        file_mode: 0o600,
        allow_new_chain: false,
        instance: "test-gw".into(),
        checkpoint_every: None,
        checkpoint_interval: None,
    })
    .unwrap();
    for (n, agent) in ["a1001", "a1002", "a1001", "a1003", "a1001", "a1002"]
        .into_iter()
        .enumerate()
    {
        let event = Event {
            kind: Kind::Outcome,
            request_id: Some(format!("req-{n}")),
            caller: CallerInfo {
                iss: Some(ISSUER.into()),
                sub: Some("alice".into()),
                client_ip: "127.0.0.1".into(),
            },
            agent: Some(agent.into()),
            code: if n == 2 {
                "vendor_rejected".into()
            } else {
                "ok".into()
            },
            http_status: Some(200),
            vendor: None,
            latency_ms: Some(1),
            caller_name: None,
            forwarded_for: None,
            grant: None,
            replay_of: None,
            trace_id: None,
            suppressed: None,
            flood: None,
        };
        writer.append(event).await.unwrap();
    }
    drop(writer);
    let run = |args: &[&str]| {
        let output = Command::new(SIPGW).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let trail_arg = trail.to_str().unwrap();
    let key_arg = key_file.to_str().unwrap();
    let (code, out) = run(&["audit", "verify", trail_arg, "--key-file", key_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("OK: 6 records in "), "{out}");
    // Without the key the MACs do not match.
    let (code, out) = run(&["audit", "verify", trail_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(":1: mac does not match"), "{out}");
    // Edit one byte of the current file's first record.
    let current = trail.join("audit.jsonl");
    let text = std::fs::read_to_string(&current).unwrap();
    std::fs::write(&current, text.replacen("\"ok\"", "\"OK\"", 1)).unwrap();
    let (code, out) = run(&["audit", "verify", trail_arg, "--key-file", key_arg]);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("FAILED: ") && out.contains("audit.jsonl:"),
        "{out}"
    );
    // `show` verifies as it reads: the edited record is shown, marked, and fails the run.
    let show = |extra: &[&str]| {
        let args = [&["audit", "show", trail_arg, "--key-file", key_arg], extra].concat();
        run(&args)
    };
    let (code, out) = show(&["--json"]);
    assert_eq!(code, Some(1), "{out}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    let failed: Vec<&serde_json::Value> = rows.iter().filter(|r| r["_verified"] == false).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert_eq!(failed[0]["code"], "OK");
    let (_, out) = show(&["--agent", "A1001", "--json"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out) = show(&["--code", "vendor_rejected"]);
    assert_eq!(out.lines().count(), 2, "a header and one row: {out}");
    assert!(out.lines().nth(1).unwrap().contains("req-2"), "{out}");
}
