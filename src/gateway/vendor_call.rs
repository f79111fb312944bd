//! The vendor call of the pipeline: one change, one retry after a refused token, and what
//! the audit trail and the lockout shield learn from it.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use secrecy::ExposeSecret;

use super::{Deadline, Gateway};
use crate::audit::record::VendorInfo;
use crate::error::ApiError;
use crate::metrics::VendorCall;
use crate::request::ChangeBody;
use crate::telemetry::propagation;
use crate::vendor::{AccessToken, UpdateOutcome, UpdateRequest, VendorClient, VendorError};

/// What sending one change to the vendor came to.
pub(super) struct Exchange {
    /// The vendor's answer, or the refusal the caller is told instead.
    pub(super) result: Result<UpdateOutcome, ApiError>,
    /// What the audit trail says of the last call made; `None` when none was made.
    pub(super) vendor: Option<VendorInfo>,
    /// Whether the vendor may have checked the current password (and counted a failure)
    /// although no clear answer came (a timeout, a cut connection, a 5xx): the lockout
    /// shield counts such a call like a rejection.
    pub(super) may_have_checked: bool,
}

impl Exchange {
    /// No call was made: no token could be had.
    fn none(error: ApiError) -> Self {
        Self {
            result: Err(error),
            vendor: None,
            may_have_checked: false,
        }
    }

    /// The last call's `result`, made at `started` by `vendor`.
    fn of(
        result: Result<UpdateOutcome, VendorError>,
        started: Instant,
        request_id: &str,
        vendor: &VendorClient,
    ) -> Self {
        Self {
            vendor: Some(vendor_info(&result, started)),
            may_have_checked: may_have_checked(&result),
            result: result.map_err(|e| vendor_failure(e, request_id, vendor)),
        }
    }
}

impl Gateway {
    /// Sends the change once; after a vendor 401, once more with a freshly fetched token.
    /// Nothing else is ever retried: a change may have been applied even when its answer
    /// was lost, and a retry would then carry a current password that is no longer valid.
    ///
    /// Runs in the `sipgw.vendor_call` span, the parent the vendor is told of in
    /// `traceparent` (with export off: the caller's `traceparent`, from `caller_headers`).
    pub(super) async fn call_vendor(
        &self,
        user_account: &str,
        change: &ChangeBody,
        request_id: &str,
        caller_headers: &HeaderMap,
        deadline: Deadline,
    ) -> Exchange {
        let trace_headers = propagation::outgoing(caller_headers, self.exporting_traces);
        let update = UpdateRequest {
            user_account,
            account_pwd: &change.account_pwd,
            new_phone_pwd: &change.new_phone_pwd,
            request_id,
            trace_headers: &trace_headers,
        };
        let token = match self.token(deadline).await {
            Ok(token) => token,
            Err(error) => return Exchange::none(error),
        };
        let started = Instant::now();
        let result = self.vendor.update_password(&token, &update, deadline).await;
        if !matches!(result, Err(VendorError::Unauthorized)) {
            self.tokens.accepted();
            return Exchange::of(result, started, request_id, &self.vendor);
        }
        tracing::warn!(
            request_id,
            "vendor refused the AccessToken; fetching a new one and retrying once"
        );
        self.tokens.invalidate(&token);
        let fresh = match self.token(deadline).await {
            Ok(fresh) => fresh,
            // The refused call still happened: the trail says so.
            Err(error) => {
                return Exchange {
                    result: Err(error),
                    vendor: Some(vendor_info(&result, started)),
                    may_have_checked: may_have_checked(&result),
                };
            }
        };
        let result = self.vendor.update_password(&fresh, &update, deadline).await;
        match result {
            Err(VendorError::Unauthorized) => self.tokens.refused(&fresh),
            _ => self.tokens.accepted(),
        }
        Exchange::of(result, started, request_id, &self.vendor)
    }

    /// A token, or 503 when none can be had before the request's deadline.
    async fn token(&self, deadline: Deadline) -> Result<Arc<AccessToken>, ApiError> {
        match tokio::time::timeout_at(deadline, self.tokens.get()).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(error)) => {
                tracing::warn!(%error, "no vendor AccessToken available");
                Err(ApiError::UpstreamAuthUnavailable)
            }
            Err(_) => {
                tracing::warn!("no vendor AccessToken before the request's deadline");
                Err(ApiError::UpstreamAuthUnavailable)
            }
        }
    }
}

/// The vendor's `resultMessage` is passed on to the caller; should the vendor ever quote a
/// password in it, the quote is removed first.
pub(super) fn scrub(message: &str, change: &ChangeBody) -> String {
    let mut clean = message.to_owned();
    for secret in [
        change.account_pwd.expose_secret(),
        change.new_phone_pwd.expose_secret(),
    ] {
        clean = clean.replace(secret, "[REDACTED]");
    }
    clean
}

/// What the audit trail says of a vendor call: its status and `resultCode` when an answer
/// came, nothing when the outcome is unknown (timeout, cut or failed connection).
fn vendor_info(result: &Result<UpdateOutcome, VendorError>, started: Instant) -> VendorInfo {
    let (status, result_code) = match result {
        Ok(outcome) => (Some(200), Some(outcome.result_code.clone())),
        Err(VendorError::Status(status)) => (Some(*status), None),
        Err(VendorError::Unauthorized) => (Some(401), None),
        Err(VendorError::BadBody) => (Some(200), None),
        Err(VendorError::Timeout | VendorError::Connect(_) | VendorError::Transport(_)) => {
            (None, None)
        }
    };
    VendorInfo {
        status,
        result_code,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Whether the vendor may have checked the current password (and counted a failure) in a
/// call that did not end with a clear answer: yes once the request may have been sent and
/// the vendor did not refuse it outright (401, or a 4xx for a malformed request).
fn may_have_checked(result: &Result<UpdateOutcome, VendorError>) -> bool {
    match result {
        Ok(_) => true,
        Err(VendorError::Timeout | VendorError::Transport(_) | VendorError::BadBody) => true,
        Err(VendorError::Status(status)) => *status >= 500,
        Err(VendorError::Connect(_) | VendorError::Unauthorized) => false,
    }
}

/// Maps a failed vendor call to what the client sees; the cause, naming the URL, goes to
/// the log only.
fn vendor_failure(error: VendorError, request_id: &str, vendor: &VendorClient) -> ApiError {
    let cause = vendor.describe(VendorCall::Update, &error);
    tracing::warn!(request_id, error = %cause, "vendor call failed");
    match error {
        VendorError::Timeout => ApiError::VendorTimeout,
        // A fresh token refused too: the vendor does not accept our credentials.
        VendorError::Unauthorized => ApiError::UpstreamAuthUnavailable,
        VendorError::Connect(_)
        | VendorError::Transport(_)
        | VendorError::Status(_)
        | VendorError::BadBody => ApiError::VendorError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request;

    #[test]
    fn vendor_messages_never_carry_the_request_passwords() {
        let change =
            request::parse_body(br#"{"accountPwd":"Old~Pass1","newPhonePwd":"New~Pass2"}"#)
                .unwrap();
        let message = "password New~Pass2 rejected; Old~Pass1 was the current one";
        assert_eq!(
            scrub(message, &change),
            "password [REDACTED] rejected; [REDACTED] was the current one"
        );
        assert_eq!(scrub("wrong password", &change), "wrong password");
    }
}
