//! The trails and the runs of `tests/audit_show.rs`: records written with the real
//! sealing functions, and `sipgw audit show` run on them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sipgw::audit::chain::{GENESIS, MacKey};
use sipgw::audit::record::seal;

use super::{KEY, SIPGW};

/// A fresh, empty directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-show-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One record to write: a v1 outcome (its bytes as the v1 writer made them, up to `prev`),
/// or v2 fields.
pub enum Line {
    V1(String),
    V2(Value),
}

/// Writes `lines` as one chained trail file `dir/audit.jsonl`, sealed with `key`.
pub fn write_trail(dir: &Path, key: &MacKey, lines: Vec<Line>) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    let mut sealed = Vec::new();
    for (seq, line) in (1..).zip(lines) {
        let unsealed = match line {
            Line::V1(head) => format!("{{\"v\":1,\"seq\":{seq},{head},\"prev\":\"{prev}\"}}"),
            Line::V2(mut fields) => {
                let mut record = json!({"v": 2, "seq": seq});
                let object = record.as_object_mut().unwrap();
                object.append(fields.as_object_mut().unwrap());
                object.insert("prev".into(), json!(prev));
                record.to_string()
            }
        };
        let mac = key.mac(&prev, &unsealed);
        sealed.push(seal(&unsealed, &mac));
        prev = mac;
    }
    std::fs::write(dir.join("audit.jsonl"), sealed.join("\n") + "\n").unwrap();
    sealed
}

pub fn v1(ts: &'static str, id: &str, sub: &str, code: &str) -> Line {
    // The v1 writer's field order; `sub` escaped as serde_json does (C0 controls), plus
    // what the writer escapes beyond it (C1, separators, bidi controls).
    let sub = sipgw::terminal::escape_json(&serde_json::to_string(sub).unwrap()).into_owned();
    let id = serde_json::to_string(id).unwrap();
    Line::V1(format!(
        r#""ts":"{ts}","kind":"outcome","requestId":{id},"caller":{{"iss":"https://sso","sub":{sub},"clientIp":"127.0.0.1"}},"agent":"a1001","code":"{code}","httpStatus":200,"vendor":{{"status":200,"resultCode":"0","latencyMs":3}},"latencyMs":5"#
    ))
}

/// A v2 record of `kind` at `ts` for request `id` of agent `agent`, by alice.
pub fn v2(ts: &str, kind: &str, id: &str, agent: &str, code: &str) -> Value {
    let mut record = json!({"ts": ts, "instance": "gw-a", "kind": kind, "requestId": id,
        "caller": {"iss": "https://sso", "sub": "alice", "clientIp": "10.0.0.1"},
        "callerName": "Alice Example", "forwardedFor": "203.0.113.9",
        "agent": agent, "grant": "self", "code": code});
    if kind == "outcome" {
        record["httpStatus"] = json!(200);
        if code == "ok" {
            record["vendor"] = json!({"status": 200, "resultCode": "0", "latencyMs": 12});
        }
    }
    record
}

pub struct Run {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
}

impl Run {
    /// The rows of a table (the header aside).
    pub fn rows(&self) -> Vec<&str> {
        self.out.lines().skip(1).collect()
    }

    /// The rows of JSON lines output.
    pub fn json(&self) -> Vec<Value> {
        self.out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

pub fn show(paths: &[&Path], args: &[&str]) -> Run {
    let output = Command::new(SIPGW)
        .args(["audit", "show"])
        .args(paths)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        out: String::from_utf8(output.stdout).unwrap(),
        err: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A trail of v1 and v2 records for the filter tests, keyed; its directory and key file.
pub fn mixed_trail(name: &str) -> (PathBuf, PathBuf) {
    let dir = fresh_dir(name);
    let trail = dir.join("trail");
    std::fs::create_dir_all(&trail).unwrap();
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, KEY).unwrap();
    let key = MacKey::from_file_bytes(KEY).unwrap();
    write_trail(
        &trail,
        &key,
        vec![
            v1("2026-12-01T04:00:00.000Z", "r-1", "bob", "ok"),
            Line::V2(v2(
                "2026-12-01T05:00:00.000Z",
                "attempt",
                "r-2",
                "A1002",
                "attempt",
            )),
            Line::V2(v2(
                "2026-12-01T05:00:01.000Z",
                "outcome",
                "r-2",
                "a1002",
                "ok",
            )),
            Line::V2(v2(
                "2026-12-01T06:00:00.000Z",
                "outcome",
                "r-3",
                "a1003",
                "forbidden",
            )),
        ],
    );
    (trail, key_file)
}

pub fn ids(run: &Run) -> Vec<String> {
    run.json()
        .iter()
        .map(|record| record["requestId"].as_str().unwrap().to_owned())
        .collect()
}
