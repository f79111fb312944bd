//! A remembered outcome, kept small: what a replay needs to answer exactly as the first
//! request was answered (which outcome, the first request's id, the vendor's message), not
//! the rendered response. The body is rendered again on each replay by the same functions
//! that rendered the first answer, so it comes out byte for byte the same.

use bytes::Bytes;
use serde::Serialize;

use crate::error::{ApiError, PROBLEM_JSON, json_bytes};

/// Which answer the first request got (only outcomes that reached the vendor are stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200: the vendor changed the password.
    Accepted,
    /// 422 `vendor_rejected`.
    VendorRejected,
    /// 502 `vendor_error`.
    VendorError,
    /// 504 `vendor_timeout`.
    VendorTimeout,
}

impl Outcome {
    /// The problem code, or `ok`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Accepted => "ok",
            Self::VendorRejected => "vendor_rejected",
            Self::VendorError => "vendor_error",
            Self::VendorTimeout => "vendor_timeout",
        }
    }
}

/// A remembered outcome: 24 bytes plus one allocation for the request id and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Which answer.
    outcome: Outcome,
    /// Where the message starts in `text`.
    split: u32,
    /// The first request's id, then the vendor's message (one allocation, not two).
    text: Box<str>,
}

/// The success body (docs/api.md); the gateway's first answer uses it too. Its members
/// are in alphabetical order, as earlier versions (a JSON tree) wrote them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessBody<'a> {
    /// The request whose change this was.
    request_id: &'a str,
    /// Always `"0"`, as the vendor says it.
    result_code: &'static str,
    /// The vendor's `resultMessage`.
    result_message: &'a str,
}

/// The success body of the request `request_id`, with the vendor's `message`.
pub fn success_body<'a>(message: &'a str, request_id: &'a str) -> SuccessBody<'a> {
    SuccessBody {
        request_id,
        result_code: "0",
        result_message: message,
    }
}

impl Stored {
    /// `outcome` of the request `request_id`, with the vendor's `message` (its
    /// `resultMessage` for a success or a rejection; empty otherwise).
    pub fn new(outcome: Outcome, request_id: &str, message: &str) -> Self {
        let split = u32::try_from(request_id.len()).expect("request ids are short");
        Self {
            outcome,
            split,
            text: format!("{request_id}{message}").into_boxed_str(),
        }
    }

    /// Which answer.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The first answer's code (a problem code, or `ok`): a replay is logged, counted and
    /// audited with it.
    pub fn code(&self) -> &'static str {
        self.outcome.code()
    }

    /// The first request's id.
    pub fn request_id(&self) -> &str {
        &self.text[..self.split as usize]
    }

    /// The vendor's message.
    pub fn message(&self) -> &str {
        &self.text[self.split as usize..]
    }

    /// Bytes held on the heap for this entry (the store's memory budget counts them).
    pub fn heap_bytes(&self) -> usize {
        self.text.len()
    }

    /// The error the first request answered with, if it failed.
    fn error(&self) -> Option<ApiError> {
        match self.outcome {
            Outcome::Accepted => None,
            Outcome::VendorRejected => Some(ApiError::VendorRejected {
                vendor_message: self.message().to_owned(),
            }),
            Outcome::VendorError => Some(ApiError::VendorError),
            Outcome::VendorTimeout => Some(ApiError::VendorTimeout),
        }
    }

    /// The first answer's HTTP status.
    pub fn status(&self) -> u16 {
        self.error().map_or(200, |e| e.status().as_u16())
    }

    /// The first answer's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.outcome {
            Outcome::Accepted => "application/json",
            _ => PROBLEM_JSON,
        }
    }

    /// The first answer's body, rendered again.
    pub fn body(&self) -> Bytes {
        match self.error() {
            None => json_bytes(&success_body(self.message(), self.request_id())),
            Some(error) => json_bytes(&error.problem(self.request_id())),
        }
    }

    /// Reads back a rendered answer (the Redis record keeps the rendered body, so replicas
    /// of earlier versions read it too); `None` when it is not one this gateway renders.
    pub fn parse(status: u16, body: &[u8]) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let request_id = value.get("requestId")?.as_str()?;
        let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (outcome, message) = match (status, text("code").as_deref()) {
            (200, _) => (Outcome::Accepted, text("resultMessage")?),
            (_, Some("vendor_rejected")) => (
                Outcome::VendorRejected,
                text("vendorMessage").unwrap_or_default(),
            ),
            (_, Some("vendor_error")) => (Outcome::VendorError, String::new()),
            (_, Some("vendor_timeout")) => (Outcome::VendorTimeout, String::new()),
            _ => return None,
        };
        let stored = Self::new(outcome, request_id, &message);
        (stored.status() == status).then_some(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_first_answer_again_and_reads_it_back() {
        for (outcome, message) in [
            (Outcome::Accepted, "success"),
            (Outcome::VendorRejected, "密码错误 wrong password"),
            (Outcome::VendorError, ""),
            (Outcome::VendorTimeout, ""),
        ] {
            let stored = Stored::new(outcome, "req-1", message);
            assert_eq!(stored.request_id(), "req-1");
            assert_eq!(stored.message(), message);
            let body = stored.body();
            let error = stored.error();
            let first = match &error {
                None => json_bytes(&success_body(message, "req-1")),
                Some(error) => json_bytes(&error.problem("req-1")),
            };
            assert_eq!(body, first, "byte for byte");
            assert_eq!(Stored::parse(stored.status(), &body), Some(stored));
        }
        assert_eq!(Stored::parse(200, b"{}"), None);
        assert_eq!(std::mem::size_of::<Stored>(), 24);
    }
}
