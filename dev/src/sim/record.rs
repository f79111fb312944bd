//! What the update endpoint received, kept so tests can assert on the exact calls the
//! gateway made (headers, body shape, how many, in which order).

use std::collections::VecDeque;
use std::fmt;

/// How many update requests are kept; older ones are dropped first. Bounds memory in long
/// demo and benchmark runs; [`super::VendorSim::update_count`] still counts them all.
pub const MAX_RECORDED_UPDATES: usize = 1000;

/// `status` of a request that got no response: the connection was dropped on purpose, or
/// the request is still being handled (e.g. sleeping in a delay fault, or held).
pub const NO_RESPONSE: u16 = 0;

/// One request that reached the update path.
#[derive(Clone)]
pub struct RecordedUpdate {
    /// The request headers as received, so tests can check `Authorization` and `x-app-key`.
    pub headers: http::HeaderMap,
    /// The body parsed as JSON; a body that is not JSON is kept as a JSON string of its
    /// (lossily decoded) text, and a body over the size limit as `null`.
    pub body: serde_json::Value,
    /// The status answered, or [`NO_RESPONSE`] (0) if none was (yet) sent.
    pub status: u16,
}

impl fmt::Debug for RecordedUpdate {
    // The body holds passwords and the headers a bearer token: show only their shape so a
    // failing assertion never prints a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        let body_keys: Vec<&str> = match &self.body {
            serde_json::Value::Object(map) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        f.debug_struct("RecordedUpdate")
            .field("headers", &header_names)
            .field("body_keys", &body_keys)
            .field("status", &self.status)
            .finish()
    }
}

/// The last [`MAX_RECORDED_UPDATES`] requests in arrival order, each addressable by a
/// sequence number so its status can be filled in once the response is chosen.
#[derive(Default)]
pub struct UpdateLog {
    /// The kept requests, oldest first.
    entries: VecDeque<RecordedUpdate>,
    /// Sequence number of `entries[0]`; grows as old entries are dropped.
    first_seq: u64,
}

impl UpdateLog {
    /// Appends a request that has just arrived (status [`NO_RESPONSE`]) and returns its
    /// sequence number.
    pub fn push(&mut self, headers: http::HeaderMap, body: serde_json::Value) -> u64 {
        if self.entries.len() == MAX_RECORDED_UPDATES {
            self.entries.pop_front();
            self.first_seq += 1;
        }
        self.entries.push_back(RecordedUpdate {
            headers,
            body,
            status: NO_RESPONSE,
        });
        self.first_seq + self.entries.len() as u64 - 1
    }

    /// Fills in the status of request `seq`, unless it has already been dropped from the log.
    pub fn set_status(&mut self, seq: u64, status: u16) {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        {
            entry.status = status;
        }
    }

    /// A copy of every kept request, oldest first.
    pub fn snapshot(&self) -> Vec<RecordedUpdate> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_arrival_order_and_fills_in_status_later() {
        let mut log = UpdateLog::default();
        let a = log.push(http::HeaderMap::new(), json!({"n": 1}));
        let b = log.push(http::HeaderMap::new(), json!({"n": 2}));
        log.set_status(b, 200);
        let entries = log.snapshot();
        assert_eq!(entries[0].body, json!({"n": 1}));
        assert_eq!(entries[0].status, NO_RESPONSE);
        assert_eq!(entries[1].status, 200);
        log.set_status(a, 401);
        assert_eq!(log.snapshot()[0].status, 401);
    }

    #[test]
    fn is_bounded_and_ignores_status_for_dropped_entries() {
        let mut log = UpdateLog::default();
        let first = log.push(http::HeaderMap::new(), json!(0));
        for n in 1..=MAX_RECORDED_UPDATES {
            log.push(http::HeaderMap::new(), json!(n));
        }
        log.set_status(first, 500);
        let entries = log.snapshot();
        assert_eq!(entries.len(), MAX_RECORDED_UPDATES);
        assert_eq!(entries[0].body, json!(1));
        assert!(entries.iter().all(|e| e.status == NO_RESPONSE));
        let last = log.push(http::HeaderMap::new(), json!("last"));
        log.set_status(last, 200);
        assert_eq!(log.snapshot().last().map(|e| e.status), Some(200));
    }

    #[test]
    fn debug_shows_no_secrets() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer tok-123".parse().unwrap());
        let recorded = RecordedUpdate {
            headers,
            body: json!({"requestParam": {"accountPwd": "Secret1!"}}),
            status: 200,
        };
        let shown = format!("{recorded:?}");
        assert!(shown.contains("authorization") && shown.contains("requestParam"));
        assert!(
            !shown.contains("tok-123") && !shown.contains("Secret1!"),
            "{shown}"
        );
    }
}
