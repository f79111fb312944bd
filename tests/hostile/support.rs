//! What every hostile case needs: a gateway whose audit trail the suite reads and verifies,
//! a mark taken before a case to measure what it added, and the liveness check after it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use sipgw::audit::chain::MacKey;
use sipgw::config::FileConfig;

use crate::common::*;

/// A hang is a failure: no single exchange of the suite may take longer than this.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The agent the liveness check changes back and forth; hostile cases aim at others.
const LIVE_AGENT: &str = AGENT;

/// The agent hostile cases aim at (never changed by the suite).
pub const TARGET: &str = "agent7";

/// A body that passes the shape check but breaks the password rule (new equals current):
/// an authenticated request carrying it reads the whole body and ends in 400
/// `password_policy`, before any vendor call, whatever the order of the other checks.
pub const POLICY_BODY: &str = r#"{"accountPwd":"Same~Pass123","newPhonePwd":"Same~Pass123"}"#;

/// A body the vendor would accept for [`TARGET`]: used where a case must prove that a
/// smuggled or forged request was *not* executed (it would have reached the vendor).
pub fn valid_body() -> String {
    serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string()
}

/// Fields an audit record may hold: format v1, and the additions planned for v2
/// (docs/decisions.md, "Not built yet"), so the suite keeps working when the writer moves.
const RECORD_FIELDS: [&str; 19] = [
    "v",
    "seq",
    "ts",
    "kind",
    "requestId",
    "caller",
    "agent",
    "code",
    "httpStatus",
    "vendor",
    "latencyMs",
    "suppressed",
    "prev",
    "mac",
    "grant",
    "callerName",
    "forwardedFor",
    "replayOf",
    "instance",
];

/// The gateway under attack and its trail.
pub struct Suite {
    /// Gateway, simulator and issuer.
    pub h: Harness,
    /// The live trail file.
    pub trail: PathBuf,
    /// The trail's HMAC key, to verify it.
    key: MacKey,
    /// The HMAC key file (for `sipgw audit verify --key-file`).
    pub key_file: PathBuf,
    /// Numbers the callers minted by [`Suite::admin_token`].
    next_caller: AtomicU64,
    /// Whether the liveness agent currently holds [`NEW`] (else [`CURRENT`]).
    live_flipped: Mutex<bool>,
}

/// What the trail and the vendor held before a case.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// Audit lines.
    pub lines: usize,
    /// Password calls the vendor received.
    pub vendor: u64,
}

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A gateway with an HMAC-keyed trail and flood control that never binds in a suite of
    /// bounded size, so audit growth can be counted exactly. (Flood control is issue 11's
    /// own subject, measured by its own test; the merger renames these keys if they change.)
    pub async fn start_with(tweak: impl FnOnce(&mut FileConfig)) -> Self {
        let dir = fresh_dir("hostile");
        let trail = dir.join("sipgw-audit.jsonl");
        let key_file = dir.join("audit-hmac.key");
        std::fs::write(&key_file, "hostile-suite-audit-key-0123456789").unwrap();
        let key = MacKey::from_file_bytes(&std::fs::read(&key_file).unwrap()).unwrap();
        let (path, key_path) = (trail.display().to_string(), key_file.display().to_string());
        let h = Harness::start_with(sim_config(), move |c| {
            c.audit.path = path;
            c.audit.hmac_key_file = Some(key_path);
            // Records reach the file before the answer leaves either way; durability on
            // disk is tested elsewhere, and fsyncs would only slow a shared machine.
            c.audit.fsync = "never".into();
            // Exact record counts per case: no flood control in this suite (tests/audit_floods.rs
            // covers it).
            c.audit.flood_caller_per_minute = 100_000;
            c.audit.flood_network_per_minute = 100_000;
            c.audit.flood_total_per_minute = 100_000;
            tweak(c);
        })
        .await;
        Self {
            h,
            trail,
            key,
            key_file,
            next_caller: AtomicU64::new(0),
            live_flipped: Mutex::new(false),
        }
    }

    /// A fresh admin caller's token (its own `sub`, so per-caller quotas and flood control
    /// never tie one case to another).
    pub fn admin_token(&self) -> String {
        let n = self.next_caller.fetch_add(1, Ordering::Relaxed);
        self.h
            .idp
            .mint_for(&format!("hostile-admin-{n}"), AUDIENCE, None, true)
    }

    /// The trail's lines as they are on disk.
    /// The trail's complete lines. A record being written while the test reads (a reset
    /// stream's request still runs in its own task) is not a line yet: it is left for the
    /// next read rather than parsed half-written.
    pub fn lines(&self) -> Vec<String> {
        match std::fs::read_to_string(&self.trail) {
            Ok(text) => {
                let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
                complete.lines().map(str::to_owned).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read the trail: {e}"),
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            lines: self.lines().len(),
            vendor: self.h.sim.update_count(),
        }
    }

    /// The records added since `mark`, parsed.
    pub fn added(&self, mark: Mark) -> Vec<Value> {
        self.lines()[mark.lines..]
            .iter()
            .map(|line| parse_record(line))
            .collect()
    }

    /// The vendor saw no password call since `mark`.
    #[track_caller]
    pub fn assert_no_vendor_call(&self, mark: Mark, case: &str) {
        assert_eq!(
            self.h.sim.update_count(),
            mark.vendor,
            "{case}: a hostile request reached the vendor"
        );
    }

    /// Since `mark`: exactly one `outcome` record per entry of `expected` (code, status),
    /// in that order, no `attempt`, and no vendor call.
    #[track_caller]
    pub fn assert_outcomes(&self, mark: Mark, expected: &[(&str, u16)], case: &str) -> Vec<Value> {
        self.assert_no_vendor_call(mark, case);
        let added = self.added(mark);
        let got: Vec<(String, u64)> = added
            .iter()
            .map(|r| {
                assert_eq!(r["kind"], "outcome", "{case}: {r}");
                (
                    r["code"].as_str().unwrap_or_default().to_owned(),
                    r["httpStatus"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = expected
            .iter()
            .map(|(c, s)| ((*c).to_owned(), u64::from(*s)))
            .collect();
        assert_eq!(got, want, "{case}: audit records added");
        added
    }

    /// The whole trail verifies (chain and MACs), and every line is one JSON object holding
    /// only the fields of a record, with the types they must have.
    #[track_caller]
    pub fn assert_trail_intact(&self, case: &str) {
        // A refusal of an attack's request may still be landing (its task outlives a reset
        // stream): verify until the trail holds still between the two readings.
        let lines = loop {
            let lines = self.lines();
            if lines.is_empty() {
                break lines;
            }
            let summary =
                sipgw::audit::verify::verify(std::slice::from_ref(&self.trail), &self.key)
                    .unwrap_or_else(|failure| {
                        panic!("{case}: the trail no longer verifies: {failure}")
                    });
            if summary.records == lines.len() as u64 {
                break lines;
            }
            assert!(
                summary.records > lines.len() as u64,
                "{case}: the trail lost records"
            );
        };
        for (i, line) in lines.iter().enumerate() {
            let record = parse_record(line);
            assert_eq!(record["seq"], i as u64 + 1, "{case}: line {}", i + 1);
        }
    }

    /// A legitimate change still goes through: 200, one vendor call, its two records.
    pub async fn assert_alive(&self, case: &str) {
        let mark = self.mark();
        self.assert_served(case).await;
        assert_eq!(self.h.sim.update_count(), mark.vendor + 1, "{case}");
        let added = self.added(mark);
        let kinds: Vec<&str> = added.iter().map(|r| r["code"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["attempt", "ok"],
            "{case}: records of the liveness change"
        );
    }

    /// A legitimate change gets its 200 (while an attack runs: the caller counts the vendor
    /// calls and records afterwards).
    pub async fn assert_served(&self, case: &str) {
        let (from, to) = {
            let flipped = *self.live_flipped.lock().unwrap();
            if flipped {
                (NEW, CURRENT)
            } else {
                (CURRENT, NEW)
            }
        };
        let answer = within(case, self.h.change(LIVE_AGENT, from, to)).await;
        assert_eq!(
            answer.status, 200,
            "{case}: the gateway no longer serves a legitimate change: {}",
            answer.text
        );
        *self.live_flipped.lock().unwrap() = to == NEW;
    }

    /// Sends a request with exactly `headers`, within [`PATIENCE`].
    pub async fn send(
        &self,
        case: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> Answer {
        within(case, self.h.send_raw(method, path, headers, body)).await
    }

    /// A JSON `POST` to the change endpoint of `account` with `token` as the bearer token.
    pub async fn post_as(
        &self,
        case: &str,
        token: &str,
        account: &str,
        body: impl Into<bytes::Bytes>,
    ) -> Answer {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", bearer.as_str()),
        ];
        let path = Harness::endpoint(account);
        self.send(case, Method::POST, &path, &headers, body).await
    }
}

/// Runs `future` within [`PATIENCE`]; a hang fails the case.
pub async fn within<T>(case: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{case}: no answer within {PATIENCE:?} (a hang)"))
}

/// One audit line as a record: a JSON object with only record fields, typed as they must be.
#[track_caller]
pub fn parse_record(line: &str) -> Value {
    let record: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("an audit line is not one JSON value ({e}): {line:?}"));
    let object = record
        .as_object()
        .unwrap_or_else(|| panic!("an audit line is not a JSON object: {line:?}"));
    for name in object.keys() {
        assert!(
            RECORD_FIELDS.contains(&name.as_str()),
            "unexpected field {name:?} in {line:?}"
        );
    }
    assert!(record["seq"].is_u64() && record["v"].is_u64(), "{line:?}");
    assert!(
        record["kind"].is_string() && record["code"].is_string(),
        "{line:?}"
    );
    assert!(record["caller"].is_object(), "{line:?}");
    let caller = record["caller"].as_object().unwrap();
    for name in caller.keys() {
        assert!(
            ["iss", "sub", "clientIp"].contains(&name.as_str()),
            "unexpected caller field {name:?} in {line:?}"
        );
    }
    if record["kind"] != "summary" {
        assert_eq!(record["caller"]["clientIp"], "127.0.0.1", "{line:?}");
    }
    assert!(
        record["mac"].as_str().is_some_and(|m| m.len() == 64),
        "{line:?}"
    );
    assert!(
        record["prev"].as_str().is_some_and(|m| m.len() == 64),
        "{line:?}"
    );
    record
}

/// The answer is the problem document of `code` with `status`, with a request id echoed.
#[track_caller]
pub fn assert_problem(answer: &Answer, status: u16, code: &str, case: &str) {
    assert_eq!(answer.status, status, "{case}: {}", answer.text);
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{case}"
    );
    let json = answer.json();
    assert_eq!(json["code"], code, "{case}: {}", answer.text);
    assert_eq!(json["status"], status, "{case}");
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert_eq!(json["requestId"], id, "{case}");
    if status == 401 {
        assert_eq!(
            answer.headers["www-authenticate"], r#"Bearer error="invalid_token""#,
            "{case}"
        );
    }
    for secret in [CURRENT, NEW, APP_SECRET, "Same~Pass123"] {
        assert!(!answer.text.contains(secret), "{case}: a password leaked");
    }
}
