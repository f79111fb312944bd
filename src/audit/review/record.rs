//! One record of the trail as a reviewer's tool reads it: v1 and v2 alike.

use serde_json::Value;

/// One record, as a reviewer sees it. v1 and v2 alike: a field the record does not have
/// (or holds with another type, as an edited record may) is `None`.
///
/// The values are the raw strings of the trail, not escaped: every tool escapes them for
/// its own output (a terminal through [`crate::terminal::escape`], HTML, CSV, JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Format version (`1` or `2`; `0` when the line did not say).
    pub v: u32,
    /// Place in its trail's chain (`0` when the line did not say).
    pub seq: u64,
    /// The time as written (RFC 3339 UTC; empty when the line did not say).
    pub ts: String,
    /// [`Self::ts`] parsed; `None` when it is not a valid time.
    pub time: Option<jiff::Timestamp>,
    /// The replica that wrote it (v2).
    pub instance: Option<String>,
    /// `attempt`, `outcome`, `summary`, `checkpoint`, `discontinuity`, or a kind to come
    /// (empty when the line did not say).
    pub kind: String,
    /// The request's id.
    pub request_id: Option<String>,
    /// The token's issuer.
    pub iss: Option<String>,
    /// The token's subject.
    pub sub: Option<String>,
    /// The TCP peer's address (for a flood summary: its network).
    pub client_ip: Option<String>,
    /// The token's display name (v2).
    pub caller_name: Option<String>,
    /// The end user's address a trusted proxy forwarded (v2).
    pub forwarded_for: Option<String>,
    /// How the caller was authorized: `self`, `admin_scope`, `admin_role` (v2).
    pub grant: Option<String>,
    /// For an idempotent replay: the first request's id (v2).
    pub replay_of: Option<String>,
    /// The request's W3C trace id, when it had a trace (v2): where its spans are found.
    pub trace_id: Option<String>,
    /// The agent account, as the request wrote it.
    pub agent: Option<String>,
    /// The stable code (`ok`, `vendor_rejected`, ...; `attempt` for an attempt).
    pub code: Option<String>,
    /// The HTTP status answered.
    pub http_status: Option<u16>,
    /// The vendor's HTTP status (`None` also when the vendor gave no answer).
    pub vendor_status: Option<u16>,
    /// The vendor's `resultCode`.
    pub vendor_result_code: Option<String>,
    /// Time spent on the vendor call(s), in milliseconds.
    pub vendor_latency_ms: Option<u64>,
    /// Time the gateway spent on the request, in milliseconds.
    pub latency_ms: Option<u64>,
    /// For a flood summary: how many records it stands for.
    pub suppressed: Option<u64>,
    /// The record as parsed, for JSON output. A line that is not JSON is kept here as a
    /// JSON string of its text (invalid UTF-8 replaced).
    pub raw: Value,
}

impl Record {
    /// The fields of a parsed line. Read field by field rather than through a typed
    /// deserializer: a record that fails verification may have been edited into any shape,
    /// and the reviewer must still see what it says.
    pub fn from_value(raw: Value) -> Self {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let number = |value: &Value| value.as_u64();
        let status = |value: &Value| value.as_u64().and_then(|n| u16::try_from(n).ok());
        let caller = &raw["caller"];
        let vendor = &raw["vendor"];
        let ts = text(&raw["ts"]).unwrap_or_default();
        Self {
            v: number(&raw["v"])
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            seq: number(&raw["seq"]).unwrap_or(0),
            time: ts.parse().ok(),
            ts,
            instance: text(&raw["instance"]),
            kind: text(&raw["kind"]).unwrap_or_default(),
            request_id: text(&raw["requestId"]),
            iss: text(&caller["iss"]),
            sub: text(&caller["sub"]),
            client_ip: text(&caller["clientIp"]),
            caller_name: text(&raw["callerName"]),
            forwarded_for: text(&raw["forwardedFor"]),
            grant: text(&raw["grant"]),
            replay_of: text(&raw["replayOf"]),
            trace_id: text(&raw["traceId"]),
            agent: text(&raw["agent"]),
            code: text(&raw["code"]),
            http_status: status(&raw["httpStatus"]),
            vendor_status: status(&vendor["status"]),
            vendor_result_code: text(&vendor["resultCode"]),
            vendor_latency_ms: number(&vendor["latencyMs"]),
            latency_ms: number(&raw["latencyMs"]),
            suppressed: number(&raw["suppressed"]),
            raw,
        }
    }

    /// Where the change came from: the end user's forwarded address when a trusted proxy
    /// gave one, else the TCP peer.
    pub fn client(&self) -> Option<&str> {
        self.forwarded_for.as_deref().or(self.client_ip.as_deref())
    }

    /// Whether the outcome's record says the vendor was called.
    pub(super) fn called_vendor(&self) -> bool {
        self.raw["vendor"].is_object()
    }
}
