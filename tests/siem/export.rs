//! `sipgw audit export --format ecs` through the binary, over a trail a real gateway wrote.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::common::{AGENT, ISSUER};
use super::{HOSTILE_SUB, INSTANCE, SIPGW, serve_and_change, sipgw};

/// The documents `audit export` printed, one per line.
fn documents(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn audit_export_writes_ecs_documents_of_a_real_trail() {
    let run = serve_and_change("siem-export").await;
    let (dir, key) = (run.dir.to_str().unwrap(), run.key_file.to_str().unwrap());
    let (code, stdout, stderr) =
        sipgw(&["audit", "export", dir, "--format", "ecs", "--key-file", key]);
    assert_eq!(code, Some(0), "{stderr}");
    // Nothing that could drive a terminal reaches the output raw; JSON escapes it.
    assert!(
        !stdout
            .chars()
            .any(|c| c != '\n' && sipgw::terminal::is_unsafe(c)),
        "{stdout}"
    );
    let docs = documents(&stdout);
    assert_eq!(docs.len(), run.trail.lines().count(), "{stdout}");
    for doc in &docs {
        assert_eq!(doc["ecs"]["version"], "8.17.0");
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["event"]["category"], serde_json::json!(["iam"]));
        assert_eq!(doc["sipgw"]["verified"], true, "{doc}");
    }
    let records: Vec<Value> = run
        .trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = docs
        .iter()
        .find(|d| d["event"]["outcome"] == "success")
        .expect("the change");
    let record = records
        .iter()
        .find(|r| r["seq"] == done["sipgw"]["seq"])
        .unwrap();
    assert_eq!(done["@timestamp"], record["ts"]);
    assert_eq!(done["event"]["action"], "sip-phone-password-change");
    assert_eq!(done["event"]["type"], serde_json::json!(["change"]));
    assert_eq!(done["event"]["id"], record["requestId"]);
    assert_eq!(done["event"]["reason"], "ok");
    assert_eq!(done["event"]["sequence"], record["seq"]);
    assert_eq!(
        done["event"]["duration"],
        record["latencyMs"].as_u64().unwrap() * 1_000_000
    );
    assert_eq!(done["user"]["id"], "alice");
    assert_eq!(done["user"]["target"]["name"], AGENT);
    assert_eq!(done["sipgw"]["caller"]["iss"], ISSUER);
    assert_eq!(done["source"]["ip"], "127.0.0.1");
    assert_eq!(done["client"]["ip"], "127.0.0.1");
    assert_eq!(done["http"]["response"]["status_code"], 200);
    assert_eq!(done["host"]["name"], INSTANCE);
    assert_eq!(done["labels"]["grant"], "self");
    assert_eq!(done["sipgw"]["v"], 2);
    let checkpoint = docs.last().unwrap();
    assert_eq!(
        checkpoint["event"]["action"], "audit-checkpoint",
        "{checkpoint}"
    );
    assert_eq!(checkpoint["event"]["type"], serde_json::json!(["info"]));
    assert_eq!(checkpoint["host"]["name"], INSTANCE);
    let before = records.iter().rev().nth(1).unwrap();
    assert_eq!(checkpoint["sipgw"]["lastMac"], before["mac"]);
    assert_eq!(done["sipgw"]["mac"], record["mac"]);
    let attempts = docs
        .iter()
        .filter(|d| d["sipgw"]["kind"] == "attempt")
        .count();
    assert_eq!(attempts, 2);
    assert!(
        docs.iter()
            .filter(|d| d["sipgw"]["kind"] == "attempt")
            .all(|d| d["event"]["outcome"] == "unknown" && d["sipgw"]["outcomeUnknown"] == false)
    );
    let rejected = docs
        .iter()
        .find(|d| d["event"]["reason"] == "vendor_rejected")
        .unwrap();
    assert_eq!(rejected["event"]["outcome"], "failure");
    // The hostile caller's sub: escaped on the line, the same value once decoded.
    let refused = docs
        .iter()
        .find(|d| d["event"]["reason"] == "password_policy")
        .unwrap();
    assert_eq!(refused["user"]["id"], HOSTILE_SUB);
    assert_eq!(refused["event"]["outcome"], "failure");

    // An edited record is still exported, marked, and the status says so.
    let edited_dir = run.dir.parent().unwrap().join("edited");
    std::fs::create_dir_all(&edited_dir).unwrap();
    let edited = run
        .trail
        .replacen("\"code\":\"vendor_rejected\"", "\"code\":\"ok\"", 1);
    assert_ne!(edited, run.trail);
    std::fs::write(edited_dir.join("sipgw-audit.jsonl"), edited).unwrap();
    let (code, stdout, stderr) = sipgw(&[
        "audit",
        "export",
        edited_dir.to_str().unwrap(),
        "--format",
        "ecs",
        "--key-file",
        key,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let docs = documents(&stdout);
    assert_eq!(docs.len(), records.len());
    let forged = docs
        .iter()
        .find(|d| d["sipgw"]["seq"] == rejected["sipgw"]["seq"])
        .unwrap();
    assert_eq!(forged["sipgw"]["verified"], false, "{forged}");
    assert!(forged["sipgw"]["problem"].is_string(), "{forged}");
    assert_eq!(docs[0]["sipgw"]["verified"], true);

    // A window, a bad time, a format that does not exist.
    let (code, stdout, _) = sipgw(&[
        "audit",
        "export",
        dir,
        "--format",
        "ecs",
        "--key-file",
        key,
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!((code, stdout.as_str()), (Some(0), ""));
    let (code, _, stderr) = sipgw(&[
        "audit",
        "export",
        dir,
        "--format",
        "ecs",
        "--until",
        "yesterday",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--until"), "{stderr}");
    let (code, _, _) = sipgw(&["audit", "export", dir, "--format", "csv"]);
    assert_eq!(code, Some(2));

    // Without the key: the MACs do not match, and the reader is told what a plain chain is.
    let (code, _, stderr) = sipgw(&["audit", "export", dir, "--format", "ecs"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(sipgw::audit::chain::UNKEYED_WARNING),
        "{stderr}"
    );

    // `| head -1`: the reader goes away after one line; the export ends quietly with the
    // status it had. Copies of the trail (one trail each) make more output than a pipe holds.
    let copies: Vec<PathBuf> = (0..80)
        .map(|n| {
            let copy = run.dir.parent().unwrap().join(format!("copy-{n}"));
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::write(copy.join("sipgw-audit.jsonl"), &run.trail).unwrap();
            copy
        })
        .collect();
    let mut child = Command::new(SIPGW)
        .args(["audit", "export", "--format", "ecs", "--key-file", key])
        .args(&copies)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(serde_json::from_str::<Value>(&first).is_ok(), "{first}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
