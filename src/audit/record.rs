//! The audit record (docs/audit.md): one JSON object per line.
//!
//! A record is written as compact JSON with its fields in a fixed order and `mac` last; the
//! bytes before `,"mac"` (plus the closing brace) are exactly what the MAC covers, so the
//! verifier needs no JSON canonicalization: it checks the bytes as they are on disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chain::{MAC_BYTES, push_hex};

/// Version of the record format: 2 adds `instance` to every record and the `checkpoint`
/// kind. Readers accept 1 and 2.
pub const VERSION: u32 = 2;

/// What happened, as the gateway reports it (the writer adds the envelope: `v`, `seq`,
/// `ts`, `instance`, and the chain's `prev`, `mac`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `attempt` (durable before the vendor is called), `outcome`, or `summary` (suppressed
    /// records of a flood).
    pub kind: Kind,
    /// The request's id (absent in a summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request's W3C trace id (32 hex digits), when it had a trace context: continued
    /// from the caller's `traceparent`, or started by sipgw while traces are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Who asked.
    pub caller: CallerInfo,
    /// The caller's display name (the token's `auth.display_claim`, cut to 64 characters
    /// when verified); once authenticated, when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    /// The end user's address as a trusted proxy reported it (`Forwarded` or
    /// `X-Forwarded-For`, only from a peer in `server.trusted_proxies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// The agent concerned, when the request named a valid one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why the caller may change this agent's password, once authorized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantKind>,
    /// The stable code (`ok` or one of docs/api.md's); for an attempt, `attempt`.
    pub code: String,
    /// The HTTP status answered (absent in an attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// On the outcome of an `Idempotency-Key` replay: the `requestId` of the request whose
    /// outcome it repeats (that one reached the vendor; the replay did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// What the vendor said, when it was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorInfo>,
    /// Time the gateway spent on the request, in milliseconds (absent in an attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// For a summary: how many records were suppressed in its window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
    /// For a summary: its window and what was refused in it. Summaries written before
    /// these fields existed have only `suppressed`; readers accept both.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodSummary>,
}

/// What a flood summary adds to [`Event::suppressed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FloodSummary {
    /// The client network the summary is keyed by (CIDR), when no caller was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// When the window opened (RFC 3339 UTC, ms); it closed at the record's `ts`.
    pub since: String,
    /// Suppressed records per problem code (`forbidden`, `unauthenticated`, ...).
    pub codes: BTreeMap<String, u64>,
}

/// The rule that authorized a change, as the record names it (`grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// `self`: the token's agent claim names the agent itself.
    #[serde(rename = "self")]
    SelfService,
    /// `admin_scope`: the token holds an admin scope.
    AdminScope,
    /// `admin_role`: the token holds an admin role.
    AdminRole,
}

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A change about to be sent to the vendor.
    Attempt,
    /// How a request ended.
    Outcome,
    /// How many outcome records a flood control window suppressed.
    Summary,
}

/// The caller, as far as it is known (`iss`/`sub` only once authenticated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerInfo {
    /// Token issuer.
    pub iss: Option<String>,
    /// Token subject.
    pub sub: Option<String>,
    /// Peer address of the connection.
    pub client_ip: String,
}

/// The vendor's part. `status` is null when the outcome is unknown (timeout, cut
/// connection): the change may or may not have happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VendorInfo {
    /// HTTP status of the password call, if an answer came.
    pub status: Option<u16>,
    /// `resultCode`, if an answer with one came.
    pub result_code: Option<String>,
    /// Time spent on the vendor call(s), in milliseconds.
    pub latency_ms: u64,
}

/// What the writer stamps on every record it writes, before the record's own fields.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The record's place in the chain.
    pub seq: u64,
    /// When it was written (RFC 3339 UTC, milliseconds).
    pub ts: &'a str,
    /// The replica that wrote it (`audit.instance`): trails of several replicas stay
    /// apart, and an anchor names the trail it belongs to.
    pub instance: &'a str,
}

/// A record as written: the chain fields around an event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Unsealed<'a> {
    v: u32,
    seq: u64,
    ts: &'a str,
    instance: &'a str,
    #[serde(flatten)]
    event: &'a Event,
    prev: &'a str,
}

/// The record's bytes without `mac` (what the MAC covers), as compact JSON.
///
/// Characters that JSON allows raw but that break line-oriented readers or terminals (C1
/// controls, DEL, U+2028/2029, bidi controls; serde_json escapes only C0) are written as
/// `\uXXXX` escapes: the record means the same, and every line of the trail is one record
/// to any reader (a `sub` of `"a\u{2028}b"` splits no line in Python's `splitlines`).
pub fn unsealed_json(envelope: Envelope<'_>, event: &Event, prev: &str) -> String {
    let mut out = Vec::with_capacity(512);
    write_unsealed(&mut out, envelope, event, prev);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Appends [`unsealed_json`]'s bytes to `out` (the writer's batch buffer), with no `String`.
pub fn write_unsealed(out: &mut Vec<u8>, envelope: Envelope<'_>, event: &Event, prev: &str) {
    let start = out.len();
    let unsealed = Unsealed {
        v: VERSION,
        seq: envelope.seq,
        ts: envelope.ts,
        instance: envelope.instance,
        event,
        prev,
    };
    serde_json::to_writer(&mut *out, &unsealed).expect("records always serialize");
    escape_in_place(out, start);
}

/// Escapes what [`crate::terminal::escape_json`] escapes in `out[start..]`. Every such
/// character is DEL or beyond ASCII, so a record of bytes below `0x7f` (nearly all) is
/// left as it is without looking at its characters.
fn escape_in_place(out: &mut Vec<u8>, start: usize) {
    // Two word-at-a-time passes: far cheaper than looking at each byte in turn.
    if out[start..].is_ascii() && !out[start..].contains(&0x7f) {
        return;
    }
    let json = std::str::from_utf8(&out[start..]).expect("serde_json writes UTF-8");
    if let std::borrow::Cow::Owned(escaped) = crate::terminal::escape_json(json) {
        out.truncate(start);
        out.extend_from_slice(escaped.as_bytes());
    }
}

/// A `discontinuity` record as written: the first record of a new chain file, started by
/// an operator's decision after the trail was found to lack records it had had.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Discontinuity<'a> {
    v: u32,
    seq: u64,
    ts: &'a str,
    instance: &'a str,
    kind: &'static str,
    /// What was found: `missing`, `truncated`, `replaced`, or what the running gateway
    /// found (`unlinked`, `extended`, ...).
    detected: &'a str,
    /// The last record the gateway knows it wrote (`seq - 1`).
    last_seq: u64,
    /// Its `mac` (also this record's `prev`).
    last_mac: &'a str,
    /// The `seq` the trail on disk ended with (null when no record was left).
    found_seq: Option<u64>,
    prev: &'a str,
}

/// The bytes without `mac` of a `discontinuity` record at `seq`, continuing the chain from
/// `last_mac` (the record before it, which the trail may no longer hold).
pub fn discontinuity_json(
    envelope: Envelope<'_>,
    detected: &str,
    last_mac: &str,
    found_seq: Option<u64>,
) -> String {
    serde_json::to_string(&Discontinuity {
        v: VERSION,
        seq: envelope.seq,
        ts: envelope.ts,
        instance: envelope.instance,
        kind: DISCONTINUITY,
        detected,
        last_seq: envelope.seq - 1,
        last_mac,
        found_seq,
        prev: last_mac,
    })
    .expect("records always serialize")
}

/// Longest line a reader takes in; a longer one is not a record (the writer never writes
/// one), and is skipped rather than held in memory.
pub const MAX_LINE: u64 = 64 * 1024;

/// `kind` of a discontinuity record.
pub const DISCONTINUITY: &str = "discontinuity";

/// A `checkpoint` record as written: it names the record before it (`lastSeq`, `lastMac`,
/// also its `prev`). Kept elsewhere (the log stream, stdout), it is an anchor: proof that
/// the trail held everything up to it (docs/audit.md, "Anchors").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoint<'a> {
    v: u32,
    seq: u64,
    ts: &'a str,
    instance: &'a str,
    kind: &'static str,
    /// The record before it (`seq - 1`).
    last_seq: u64,
    /// Its `mac` (also this record's `prev`).
    last_mac: &'a str,
    prev: &'a str,
}

/// The bytes without `mac` of a `checkpoint` record at `envelope.seq`, after the record
/// whose `mac` is `last_mac`.
pub fn checkpoint_json(envelope: Envelope<'_>, last_mac: &str) -> String {
    serde_json::to_string(&Checkpoint {
        v: VERSION,
        seq: envelope.seq,
        ts: envelope.ts,
        instance: envelope.instance,
        kind: CHECKPOINT,
        last_seq: envelope.seq - 1,
        last_mac,
        prev: last_mac,
    })
    .expect("records always serialize")
}

/// `kind` of a checkpoint record.
pub const CHECKPOINT: &str = "checkpoint";

/// Appends `mac` to unsealed JSON: `{...}` → `{...,"mac":"<hex>"}`.
pub fn seal(unsealed: &str, mac_hex: &str) -> String {
    debug_assert!(unsealed.ends_with('}'));
    format!(
        "{},\"mac\":\"{mac_hex}\"}}",
        &unsealed[..unsealed.len() - 1]
    )
}

/// Seals the unsealed record that ends `out` as [`seal`] does, in place, and ends its line:
/// `{...}` → `{...,"mac":"<hex>"}\n`. Returns where the mac's hex is in `out`.
pub fn seal_in_place(out: &mut Vec<u8>, mac: &[u8; MAC_BYTES]) -> std::ops::Range<usize> {
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(b",\"mac\":\"");
    let at = out.len();
    push_hex(out, mac);
    let hex = at..out.len();
    out.extend_from_slice(b"\"}\n");
    hex
}

/// Splits a sealed line into (unsealed JSON, mac hex); `None` if it does not end with a
/// 64-hex-digit `mac` member.
pub fn unseal(line: &str) -> Option<(String, &str)> {
    const TAIL: usize = ",\"mac\":\"".len() + 64 + "\"}".len();
    if line.len() < TAIL + 2 || !line.is_char_boundary(line.len() - TAIL) {
        return None;
    }
    let (body, tail) = line.split_at(line.len() - TAIL);
    let mac = tail.strip_prefix(",\"mac\":\"")?.strip_suffix("\"}")?;
    if !mac
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    Some((format!("{body}}}"), mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_c1_and_bidi_controls_are_escaped_in_the_line() {
        let mut hostile = event();
        hostile.caller.sub = Some("a\u{2028}b\u{85}c\u{9b}31m\u{202e}d\u{7f}".into());
        let line = unsealed_json(envelope(7), &hostile, &"0".repeat(64));
        assert!(line.is_ascii(), "{line}");
        assert!(
            line.contains(r"a\u2028b\u0085c\u009b31m\u202ed\u007f"),
            "{line}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed["caller"]["sub"],
            hostile.caller.sub.unwrap().as_str()
        );
    }

    fn envelope(seq: u64) -> Envelope<'static> {
        Envelope {
            seq,
            ts: "2026-11-27T20:00:00.000Z",
            instance: "gw-1",
        }
    }

    fn event() -> Event {
        Event {
            kind: Kind::Outcome,
            request_id: Some("r-1".into()),
            caller: CallerInfo {
                iss: Some("https://sso".into()),
                sub: Some("alice\nforged".into()),
                client_ip: "127.0.0.1".into(),
            },
            agent: Some("a1001".into()),
            code: "ok".into(),
            http_status: Some(200),
            vendor: Some(VendorInfo {
                status: Some(200),
                result_code: Some("0".into()),
                latency_ms: 12,
            }),
            latency_ms: Some(15),
            caller_name: Some("Alice Example".into()),
            forwarded_for: Some("203.0.113.9".into()),
            grant: Some(GrantKind::SelfService),
            replay_of: Some("r-0".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            suppressed: None,
            flood: None,
        }
    }

    #[test]
    fn fields_come_in_the_documented_order_and_caller_values_are_escaped() {
        let json = unsealed_json(envelope(7), &event(), &"0".repeat(64));
        assert!(json.starts_with(r#"{"v":2,"seq":7,"ts":"2026-11-27T20:00:00.000Z","instance":"gw-1","kind":"outcome","requestId":"r-1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","caller":{"iss":"https://sso","sub":"alice\nforged","clientIp":"127.0.0.1"},"callerName":"Alice Example","forwardedFor":"203.0.113.9","agent":"a1001","grant":"self","code":"ok","httpStatus":200,"replayOf":"r-0","vendor":{"status":200,"resultCode":"0","latencyMs":12},"latencyMs":15,"prev":"#), "{json}");
        assert!(
            !json.contains('\n'),
            "a caller's line break cannot split a record"
        );
    }

    #[test]
    fn grants_are_named_as_the_record_format_says() {
        for (grant, name) in [
            (GrantKind::SelfService, "self"),
            (GrantKind::AdminScope, "admin_scope"),
            (GrantKind::AdminRole, "admin_role"),
        ] {
            assert_eq!(serde_json::to_value(grant).unwrap(), name);
        }
    }

    #[test]
    fn a_v1_record_without_the_v2_fields_still_reads_and_writes_none_of_them() {
        let v1 = r#"{"v":1,"seq":3,"ts":"2026-11-27T20:00:00.000Z","kind":"outcome","requestId":"r-1","caller":{"iss":null,"sub":null,"clientIp":"10.0.0.1"},"code":"unauthenticated","httpStatus":401,"latencyMs":1,"prev":"00"}"#;
        let event: Event = serde_json::from_str(v1).unwrap();
        let v2 = (
            &event.caller_name,
            &event.forwarded_for,
            event.grant,
            &event.replay_of,
            &event.trace_id,
        );
        assert_eq!(v2, (&None, &None, None, &None, &None));
        let json = unsealed_json(envelope(3), &event, "00");
        for field in ["callerName", "forwardedFor", "grant", "replayOf", "traceId"] {
            assert!(!json.contains(field), "{json}");
        }
    }

    #[test]
    fn a_summary_carries_its_network_window_and_codes_after_the_count() {
        let summary = Event {
            kind: Kind::Summary,
            request_id: None,
            caller: CallerInfo {
                iss: None,
                sub: None,
                client_ip: "2001:db8:1:2::/64".into(),
            },
            agent: None,
            code: "suppressed".into(),
            http_status: None,
            vendor: None,
            latency_ms: None,
            caller_name: None,
            forwarded_for: None,
            grant: None,
            replay_of: None,
            trace_id: None,
            suppressed: Some(12),
            flood: Some(FloodSummary {
                network: Some("2001:db8:1:2::/64".into()),
                since: "2026-11-27T19:59:00.000Z".into(),
                codes: BTreeMap::from([
                    ("unauthenticated".into(), 10),
                    ("invalid_request".into(), 2),
                ]),
            }),
        };
        let json = unsealed_json(envelope(8), &summary, &"0".repeat(64));
        assert!(json.starts_with(r#"{"v":2,"seq":8,"ts":"2026-11-27T20:00:00.000Z","instance":"gw-1","kind":"summary","#), "{json}");
        assert!(json.contains(r#""code":"suppressed","suppressed":12,"network":"2001:db8:1:2::/64","since":"2026-11-27T19:59:00.000Z","codes":{"invalid_request":2,"unauthenticated":10},"prev":"#), "{json}");
        // Old summaries (only `suppressed`) still read as events.
        let old = r#"{"kind":"summary","caller":{"iss":null,"sub":null,"clientIp":"10.0.0.1"},"code":"suppressed","suppressed":3}"#;
        let event: Event = serde_json::from_str(old).unwrap();
        assert_eq!((event.suppressed, event.flood), (Some(3), None));
        let new: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(new.flood, summary.flood);
    }

    #[test]
    fn seal_and_unseal_round_trip() {
        let json = unsealed_json(envelope(1), &event(), &"0".repeat(64));
        let mac = "ab".repeat(32);
        let line = seal(&json, &mac);
        assert!(line.ends_with(&format!(",\"mac\":\"{mac}\"}}")));
        let (back, got) = unseal(&line).unwrap();
        assert_eq!((back.as_str(), got), (json.as_str(), mac.as_str()));
        assert!(unseal(&line[..line.len() - 1]).is_none());
        assert!(unseal(&line.replace(&mac, &"AB".repeat(32))).is_none());
    }

    #[test]
    fn checkpoints_and_discontinuities_carry_the_envelope_in_order() {
        let mac = "ab".repeat(32);
        let checkpoint = checkpoint_json(envelope(40), &mac);
        assert_eq!(
            checkpoint,
            format!(
                r#"{{"v":2,"seq":40,"ts":"2026-11-27T20:00:00.000Z","instance":"gw-1","kind":"checkpoint","lastSeq":39,"lastMac":"{mac}","prev":"{mac}"}}"#
            )
        );
        let gap = discontinuity_json(envelope(9), "missing", &mac, None);
        assert_eq!(
            gap,
            format!(
                r#"{{"v":2,"seq":9,"ts":"2026-11-27T20:00:00.000Z","instance":"gw-1","kind":"discontinuity","detected":"missing","lastSeq":8,"lastMac":"{mac}","foundSeq":null,"prev":"{mac}"}}"#
            )
        );
    }
}
