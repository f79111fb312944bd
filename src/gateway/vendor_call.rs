//! The vendor call of the pipeline: one change, one retry after a refused token, and what
//! the audit trail and the lockout shield learn from it.

use std::sync::Arc;
use std::time::Instant;

use secrecy::ExposeSecret;

use super::{Deadline, Gateway, Trace};
use crate::audit::record::VendorInfo;
use crate::error::ApiError;
use crate::request::ChangeBody;
use crate::vendor::{AccessToken, UpdateOutcome, UpdateRequest, VendorError};

impl Gateway {
    /// Sends the change once; after a vendor 401, once more with a freshly fetched token.
    /// Nothing else is ever retried: a change may have been applied even when its answer
    /// was lost, and a retry would then carry a current password that is no longer valid.
    pub(super) async fn call_vendor(
        &self,
        user_account: &str,
        change: &ChangeBody,
        request_id: &str,
        deadline: Deadline,
        trace: &mut Trace,
    ) -> Result<UpdateOutcome, ApiError> {
        let update = UpdateRequest {
            user_account,
            account_pwd: &change.account_pwd,
            new_phone_pwd: &change.new_phone_pwd,
            request_id,
        };
        let token = self.token(deadline).await?;
        let started = Instant::now();
        let result = self.vendor.update_password(&token, &update, deadline).await;
        trace.vendor = Some(vendor_info(&result, started));
        trace.vendor_may_have_checked = may_have_checked(&result);
        if !matches!(result, Err(VendorError::Unauthorized)) {
            self.tokens.accepted();
        }
        match result {
            Err(VendorError::Unauthorized) => {
                tracing::warn!(
                    request_id,
                    "vendor refused the AccessToken; fetching a new one and retrying once"
                );
                self.tokens.invalidate(&token);
                let fresh = self.token(deadline).await?;
                let result = self.vendor.update_password(&fresh, &update, deadline).await;
                trace.vendor = Some(vendor_info(&result, started));
                trace.vendor_may_have_checked = may_have_checked(&result);
                match result {
                    Err(VendorError::Unauthorized) => self.tokens.refused(&fresh),
                    _ => self.tokens.accepted(),
                }
                result.map_err(|e| vendor_failure(e, request_id))
            }
            result => result.map_err(|e| vendor_failure(e, request_id)),
        }
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

/// Maps a failed vendor call to what the client sees; the cause goes to the log only.
fn vendor_failure(error: VendorError, request_id: &str) -> ApiError {
    tracing::warn!(request_id, %error, "vendor call failed");
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
