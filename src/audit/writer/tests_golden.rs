//! The exact bytes the writer seals: the record format is a contract (`audit verify`, the
//! reviewers' tools and the shippers read it), so how a batch is serialised and sealed may
//! change, but never a byte of what it produces. The golden lines below were produced by
//! the first serialiser (`serde_json::to_string` per record, a `format!` per seal, hex
//! through `core::fmt`).

use std::collections::BTreeMap;
use std::fs::File;

use super::batch::Sealed;
use super::trail::Trail;
use super::*;
use crate::audit::chain::GENESIS;
use crate::audit::record::{CallerInfo, FloodSummary, GrantKind, Kind, VendorInfo};

const NOW: &str = "2026-12-07T23:59:59.123Z";

/// Every field an event can carry.
fn full() -> Event {
    Event {
        kind: Kind::Outcome,
        request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        caller: CallerInfo {
            iss: Some("https://sso.example.com/realms/corp".into()),
            sub: Some("alice\n\"quoted\"\\".into()),
            client_ip: "2001:db8::7".into(),
        },
        caller_name: Some("Alice Example".into()),
        forwarded_for: Some("203.0.113.9".into()),
        agent: Some("a1001".into()),
        grant: Some(GrantKind::AdminScope),
        code: "ok".into(),
        http_status: Some(200),
        replay_of: Some("r-0".into()),
        vendor: Some(VendorInfo {
            status: Some(200),
            result_code: Some("0".into()),
            latency_ms: 41,
        }),
        latency_ms: Some(43),
        suppressed: None,
        flood: None,
    }
}

/// The fewest fields: an attempt before authentication was known (a `null` caller).
fn bare(kind: Kind, code: &str) -> Event {
    Event {
        kind,
        request_id: Some("r-2".into()),
        trace_id: None,
        caller: CallerInfo {
            iss: None,
            sub: None,
            client_ip: "127.0.0.1".into(),
        },
        caller_name: None,
        forwarded_for: None,
        agent: None,
        grant: None,
        code: code.into(),
        http_status: None,
        replay_of: None,
        vendor: None,
        latency_ms: None,
        suppressed: None,
        flood: None,
    }
}

/// Text that must be escaped beyond what JSON asks: non-ASCII separators, C1 and bidi
/// controls, plain non-ASCII letters (kept raw), and DEL, which is ASCII.
fn hostile() -> Event {
    let mut event = bare(Kind::Outcome, "forbidden");
    event.caller.sub = Some("a\u{2028}b\u{85}c\u{9b}31m\u{202e}d\u{7f}é€😀".into());
    event.caller_name = Some("Zoë\u{2066}".into());
    event.vendor = Some(VendorInfo {
        status: None,
        result_code: None,
        latency_ms: 5000,
    });
    event.http_status = Some(403);
    event
}

/// ASCII only, but with DEL (0x7f), which serde_json leaves raw.
fn delete() -> Event {
    let mut event = bare(Kind::Outcome, "unauthenticated");
    event.caller.sub = Some("x\u{7f}y".into());
    event.http_status = Some(401);
    event.latency_ms = Some(0);
    event
}

fn summary() -> Event {
    let mut event = bare(Kind::Summary, "suppressed");
    event.request_id = None;
    event.caller.client_ip = "10.0.0.0/24".into();
    event.suppressed = Some(12);
    event.flood = Some(FloodSummary {
        network: Some("10.0.0.0/24".into()),
        since: "2026-12-07T23:58:59.000Z".into(),
        codes: BTreeMap::from([("unauthenticated".into(), 10), ("forbidden".into(), 2)]),
    });
    event
}

fn config(key: MacKey) -> WriterConfig {
    WriterConfig {
        path: PathBuf::from("/nonexistent/audit.jsonl"),
        max_bytes: 1 << 30,
        fsync: Fsync::Always,
        stdout: false,
        key,
        file_mode: 0o600,
        allow_new_chain: false,
        instance: "gw-1".into(),
        checkpoint_every: Some(4),
        checkpoint_interval: None,
    }
}

/// A trail whose head is `seq`, `prev` (its file is never written here).
fn trail(seq: u64, prev: &str) -> Trail {
    Trail {
        file: File::open("/dev/null").unwrap(),
        len: 0,
        seq,
        prev: prev.to_owned(),
        needs_cut: false,
        dir_dirty: false,
        renamed_away: false,
        keeps_state: false,
        halted: None,
        state_failing: false,
        unanchored: 1,
        unanchored_since: None,
        unsent: Vec::new(),
        buffer: Vec::new(),
    }
}

/// One batch sealed: its text, the events' seqs, the checkpoints' ranges, the new head.
fn seal(key: MacKey, seq: u64, prev: &str) -> Sealed {
    let events = [
        full(),
        hostile(),
        delete(),
        summary(),
        bare(Kind::Attempt, "attempt"),
    ];
    let events: Vec<&Event> = events.iter().collect();
    Sealed::new(&mut trail(seq, prev), &config(key), NOW, &events, true)
}

const KEYED: &str = concat!(
    r#"{"v":2,"seq":42,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"0f8fad5b-d9cb-469f-a165-70867728950e","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","caller":{"iss":"https://sso.example.com/realms/corp","sub":"alice\n\"quoted\"\\","clientIp":"2001:db8::7"},"callerName":"Alice Example","forwardedFor":"203.0.113.9","agent":"a1001","grant":"admin_scope","code":"ok","httpStatus":200,"replayOf":"r-0","vendor":{"status":200,"resultCode":"0","latencyMs":41},"latencyMs":43,"prev":"abababababababababababababababababababababababababababababababab","mac":"bea7095f8d15ba22ed4df0d2021a80f03b1de53cc6854f0a9998048e8ccffee0"}"#,
    "\n",
    r#"{"v":2,"seq":43,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"r-2","caller":{"iss":null,"sub":"a\u2028b\u0085c\u009b31m\u202ed\u007fé€😀","clientIp":"127.0.0.1"},"callerName":"Zoë\u2066","code":"forbidden","httpStatus":403,"vendor":{"status":null,"resultCode":null,"latencyMs":5000},"prev":"bea7095f8d15ba22ed4df0d2021a80f03b1de53cc6854f0a9998048e8ccffee0","mac":"6b8573e0c2d91a77e50b0c47d63791002929e0e849f2040c0cd5c083598ceaf7"}"#,
    "\n",
    r#"{"v":2,"seq":44,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"r-2","caller":{"iss":null,"sub":"x\u007fy","clientIp":"127.0.0.1"},"code":"unauthenticated","httpStatus":401,"latencyMs":0,"prev":"6b8573e0c2d91a77e50b0c47d63791002929e0e849f2040c0cd5c083598ceaf7","mac":"96aba0e4db9bfcbf571c0e3c3ab1343683c0eeae2d795e14d1c60aac6531f445"}"#,
    "\n",
    r#"{"v":2,"seq":45,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"checkpoint","lastSeq":44,"lastMac":"96aba0e4db9bfcbf571c0e3c3ab1343683c0eeae2d795e14d1c60aac6531f445","prev":"96aba0e4db9bfcbf571c0e3c3ab1343683c0eeae2d795e14d1c60aac6531f445","mac":"7244d01494ac0a90958370a095d2e15833dd23fa6d17709162c60750906ae103"}"#,
    "\n",
    r#"{"v":2,"seq":46,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"summary","caller":{"iss":null,"sub":null,"clientIp":"10.0.0.0/24"},"code":"suppressed","suppressed":12,"network":"10.0.0.0/24","since":"2026-12-07T23:58:59.000Z","codes":{"forbidden":2,"unauthenticated":10},"prev":"7244d01494ac0a90958370a095d2e15833dd23fa6d17709162c60750906ae103","mac":"18d5d46fb79c4d95c7ccfa6050ad020bdd73fd25a210124aaad14235895a4c67"}"#,
    "\n",
    r#"{"v":2,"seq":47,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"attempt","requestId":"r-2","caller":{"iss":null,"sub":null,"clientIp":"127.0.0.1"},"code":"attempt","prev":"18d5d46fb79c4d95c7ccfa6050ad020bdd73fd25a210124aaad14235895a4c67","mac":"53ea8e96cd2f9cca845289bb6f8275bfed0216e7f4e670daa8a6dd7db31b3012"}"#,
    "\n",
    r#"{"v":2,"seq":48,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"checkpoint","lastSeq":47,"lastMac":"53ea8e96cd2f9cca845289bb6f8275bfed0216e7f4e670daa8a6dd7db31b3012","prev":"53ea8e96cd2f9cca845289bb6f8275bfed0216e7f4e670daa8a6dd7db31b3012","mac":"70c3ced4e465b2ec2c0208aa1af5ccd045f8f2200fce761d6b0ef1f9156761a9"}"#,
    "\n",
);

const PLAIN: &str = concat!(
    r#"{"v":2,"seq":1,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"0f8fad5b-d9cb-469f-a165-70867728950e","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","caller":{"iss":"https://sso.example.com/realms/corp","sub":"alice\n\"quoted\"\\","clientIp":"2001:db8::7"},"callerName":"Alice Example","forwardedFor":"203.0.113.9","agent":"a1001","grant":"admin_scope","code":"ok","httpStatus":200,"replayOf":"r-0","vendor":{"status":200,"resultCode":"0","latencyMs":41},"latencyMs":43,"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"78d968b355f64d632d76655c342e4a7d8485ec154c031142233da1e535b97c6b"}"#,
    "\n",
    r#"{"v":2,"seq":2,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"r-2","caller":{"iss":null,"sub":"a\u2028b\u0085c\u009b31m\u202ed\u007fé€😀","clientIp":"127.0.0.1"},"callerName":"Zoë\u2066","code":"forbidden","httpStatus":403,"vendor":{"status":null,"resultCode":null,"latencyMs":5000},"prev":"78d968b355f64d632d76655c342e4a7d8485ec154c031142233da1e535b97c6b","mac":"2c1191da09339fda89fdefa9e558865b8f4f7a4f9ee7903baeda6934ee39bc58"}"#,
    "\n",
    r#"{"v":2,"seq":3,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"outcome","requestId":"r-2","caller":{"iss":null,"sub":"x\u007fy","clientIp":"127.0.0.1"},"code":"unauthenticated","httpStatus":401,"latencyMs":0,"prev":"2c1191da09339fda89fdefa9e558865b8f4f7a4f9ee7903baeda6934ee39bc58","mac":"51fdb3f4e2dbc1b0754855f5abd57de133ddfb972de78709910860b11b3190c6"}"#,
    "\n",
    r#"{"v":2,"seq":4,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"checkpoint","lastSeq":3,"lastMac":"51fdb3f4e2dbc1b0754855f5abd57de133ddfb972de78709910860b11b3190c6","prev":"51fdb3f4e2dbc1b0754855f5abd57de133ddfb972de78709910860b11b3190c6","mac":"92af46abad7998462f63d64b75c86030d918ce4de60f3e3b5acc7798ee2b4e9a"}"#,
    "\n",
    r#"{"v":2,"seq":5,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"summary","caller":{"iss":null,"sub":null,"clientIp":"10.0.0.0/24"},"code":"suppressed","suppressed":12,"network":"10.0.0.0/24","since":"2026-12-07T23:58:59.000Z","codes":{"forbidden":2,"unauthenticated":10},"prev":"92af46abad7998462f63d64b75c86030d918ce4de60f3e3b5acc7798ee2b4e9a","mac":"a71148bf0f69072e874a51f26eba5d40cc2870a7f677459e5897cb486ee1b8f3"}"#,
    "\n",
    r#"{"v":2,"seq":6,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"attempt","requestId":"r-2","caller":{"iss":null,"sub":null,"clientIp":"127.0.0.1"},"code":"attempt","prev":"a71148bf0f69072e874a51f26eba5d40cc2870a7f677459e5897cb486ee1b8f3","mac":"db5554bf69ca9b5893d3923e7145c86c5f674105488e0498e06ca5fa84afb673"}"#,
    "\n",
    r#"{"v":2,"seq":7,"ts":"2026-12-07T23:59:59.123Z","instance":"gw-1","kind":"checkpoint","lastSeq":6,"lastMac":"db5554bf69ca9b5893d3923e7145c86c5f674105488e0498e06ca5fa84afb673","prev":"db5554bf69ca9b5893d3923e7145c86c5f674105488e0498e06ca5fa84afb673","mac":"1aed255ef1b7b1d390360f7403ac29c73b710447dacd7b58139d905bc09734cb"}"#,
    "\n",
);

#[test]
fn a_keyed_batch_is_sealed_to_the_golden_bytes() {
    let key = MacKey::from_file_bytes(b"golden-hmac-key-0123456789abcdef\n").unwrap();
    let prev = "ab".repeat(32);
    let sealed = seal(key, 41, &prev);
    assert_eq!(sealed.text(), KEYED);
    assert_eq!(sealed.seqs, [42, 43, 44, 46, 47]);
    let lines: Vec<&str> = KEYED.lines().collect();
    let ranges: Vec<&str> = sealed
        .checkpoints
        .iter()
        .map(|r| &sealed.text()[r.clone()])
        .collect();
    assert_eq!(ranges, [lines[3], lines[6]]);
    assert_eq!(sealed.seq, 48);
    assert_eq!(sealed.unanchored, 0);
    assert!(lines[6].ends_with(&format!(",\"mac\":\"{}\"}}", sealed.prev)));
}

#[test]
fn a_plain_batch_from_genesis_is_sealed_to_the_golden_bytes() {
    let sealed = seal(MacKey::Plain, 0, GENESIS);
    assert_eq!(sealed.text(), PLAIN);
}
