//! The password-change pipeline: the ordered checks of DESIGN.md §1, top to bottom.
//!
//! [`Gateway::handle`] is the only entry point of the API listener. It reads the request id,
//! runs `Gateway::change_password` and renders its result: a success, or an [`ApiError`]
//! through the single mapping in [`crate::error`]. Each step says why it stands where it does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use secrecy::ExposeSecret;
use tracing::Instrument;

mod audit;
mod flood;
mod reply;
mod vendor_call;

pub use audit::{Auditor, Trace};
use reply::{
    declares_body, idempotency_key, read_body, replay, replayed_code, stored_outcome, success_body,
};
use vendor_call::scrub;

use crate::auth::{AuthError, Authenticator, Caller};
use crate::error::{ApiError, json_response};
use crate::limits::idempotency::{Begin, Stored};
use crate::limits::quota::Verdict;
use crate::limits::{IdempotencyScope, Limits, Shield};
use crate::metrics::{CodeLabel, RequestMetrics, ScopeLabel};
use crate::password_policy::PasswordPolicy;
use crate::request::{self, AccountKey};
use crate::terminal;
use crate::vendor::{TokenCache, VendorClient};

/// What the pipeline is made of: the parts a request needs, built once at start-up. The
/// shared ones are handles (`Arc`s, instruments that share their values), so whoever built
/// them keeps its own handle to run their background tasks or read their state.
pub struct Parts {
    /// Checks callers' JWTs and holds the key set.
    pub auth: Arc<Authenticator>,
    /// Writes the audit trail.
    pub auditor: Arc<Auditor>,
    /// Quotas, lockout shield, per-agent serialization, idempotency.
    pub limits: Arc<Limits>,
    /// The compiled `[password_policy]`.
    pub policy: PasswordPolicy,
    /// Bound on a whole request once its head has arrived.
    pub request_timeout: std::time::Duration,
    /// The vendor's pooled HTTP client.
    pub vendor: VendorClient,
    /// The shared AccessToken cache, refreshed in the background.
    pub tokens: Arc<TokenCache>,
    /// Request counters and durations.
    pub metrics: RequestMetrics,
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Gateway {
    /// Checks callers' JWTs and holds the key set.
    auth: Arc<Authenticator>,
    /// Writes the audit trail.
    auditor: Arc<Auditor>,
    /// Quotas, lockout shield, per-agent serialization, idempotency.
    limits: Arc<Limits>,
    /// The compiled `[password_policy]`.
    policy: PasswordPolicy,
    /// Bound on a whole request once its head has arrived.
    request_timeout: std::time::Duration,
    /// The vendor's pooled HTTP client.
    vendor: VendorClient,
    /// The shared AccessToken cache, refreshed in the background.
    tokens: Arc<TokenCache>,
    /// Request counters and durations.
    metrics: RequestMetrics,
}

/// When a request must be answered: `server.request_timeout_ms` after its head arrived.
type Deadline = tokio::time::Instant;

/// What a successful pass through the pipeline answers.
enum Reply {
    /// The vendor accepted the change; its `resultMessage`.
    Accepted {
        /// The vendor's `resultMessage`.
        message: String,
    },
    /// A retry: the first request's outcome, as it was.
    Replayed(Arc<Stored>),
}

impl Gateway {
    /// Assembles the pipeline from parts built once at start-up (by [`crate::app`]): the
    /// gateway holds them and hands none of them out.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            auth,
            auditor,
            limits,
            policy,
            request_timeout,
            vendor,
            tokens,
            metrics,
        } = parts;
        Self {
            auth,
            auditor,
            limits,
            policy,
            request_timeout,
            vendor,
            tokens,
            metrics,
        }
    }

    /// Serves one request on the API listener.
    ///
    /// Everything logged while the request is handled happens inside its `request` span
    /// (request id, client IP, route; the caller's `sub` and the agent once known), and the
    /// last event, `request`, adds the status, code and latency.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = request::request_id(req.headers());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            client_ip = %peer.ip(),
            // Paths may hold raw non-ASCII (C1, bidi controls): escaped for log readers.
            route = %terminal::escape(req.uri().path()),
            sub = tracing::field::Empty,
            agent = tracing::field::Empty,
        );
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let unread_body_closes = req.version() < Version::HTTP_2 && declares_body(req.headers());
        let mut trace = Trace::default();
        let result = self
            .change_password(req, &request_id, deadline, peer.ip(), &mut trace)
            .instrument(span.clone())
            .await;
        let (mut response, code) = match result {
            Ok(Reply::Accepted { message }) => (
                json_response(
                    StatusCode::OK,
                    &success_body(&message, &request_id),
                    &request_id,
                ),
                "ok",
            ),
            Ok(Reply::Replayed(stored)) => (replay(&stored, &request_id), replayed_code(&stored)),
            Err(error) => (error.to_response(&request_id), error.code()),
        };
        // Refused before its body was read: hyper drains what already arrived or else
        // closes the connection, so the rest of the body is never parsed as a request.
        // Saying so lets the client know not to reuse the connection.
        if unread_body_closes && !trace.body_read {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        let latency = started.elapsed();
        // Requests on the endpoint end with an outcome record, written before the answer
        // leaves; other paths are not password changes.
        if trace.endpoint {
            let status = response.status().as_u16();
            let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            self.auditor
                .outcome(&request_id, &trace, peer.ip(), code, status, latency_ms)
                .instrument(span.clone())
                .await;
        }
        // The answer leaves only now, after the outcome record: the histogram and the log
        // line count that write too (the record itself can only hold the time before it).
        let answered = started.elapsed();
        self.metrics
            .requests
            .get_or_create(&CodeLabel { code })
            .inc();
        self.metrics.duration.observe(answered.as_secs_f64());
        span.in_scope(|| {
            tracing::info!(
                status = response.status().as_u16(),
                code,
                latency_ms = answered.as_secs_f64() * 1000.0,
                "request"
            );
        });
        response
    }

    /// The pipeline, in the order of DESIGN.md §1: everything the head can decide (route,
    /// method, media type, declared length, the JWT, the caller's quota, authorization)
    /// before the body is read, then the body and the rest. The audit steps take their
    /// places as marked.
    async fn change_password(
        &self,
        req: Request<Incoming>,
        request_id: &str,
        deadline: Deadline,
        client_ip: IpAddr,
        trace: &mut Trace,
    ) -> Result<Reply, ApiError> {
        // 1. The request's head: route and method first (cheapest, and they decide whether
        //    the rest applies at all), then the media type and the declared length. The
        //    body is not read yet: nobody has shown who they are.
        let segment = request::match_endpoint(req.uri().path()).ok_or(ApiError::NotFound)?;
        trace.endpoint = true;
        if req.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let user_account = request::parse_user_account(segment)?;
        tracing::Span::current().record("agent", user_account.as_str());
        trace.agent = Some(user_account.clone());
        // Every per-agent limit uses the canonical key; the vendor and the audit trail get
        // the account as written.
        let account_key = self.limits.account_key(&user_account);
        request::check_content_type(req.headers())?;
        request::check_declared_length(req.headers())?;
        let (parts, body) = req.into_parts();
        let headers = parts.headers;

        // 2. JWT: from the head, before the body, so that an unauthenticated client cannot
        //    hold a connection with a slow body; and before anything that spends a quota,
        //    touches the vendor or writes.
        let mut authorization = headers.get_all(http::header::AUTHORIZATION).iter();
        let (header, extra) = (authorization.next(), authorization.next());
        if extra.is_some() {
            return Err(ApiError::Unauthenticated(AuthError::Duplicate));
        }
        let identity = self
            .auth
            .authenticate(header)
            .await
            .map_err(ApiError::Unauthenticated)?;
        tracing::Span::current().record("sub", terminal::escape(&identity.sub).as_ref());
        trace.caller = Some((identity.iss.clone(), identity.sub.clone()));

        // 3. Per-caller quota: spent by every authenticated request to the endpoint, before
        //    authorization, so a caller that keeps asking for what it may not do is soon
        //    refused cheaply (429) like any other runaway caller; after authentication, so
        //    unauthenticated floods cannot spend it.
        let caller_key = (identity.iss.clone(), identity.sub.clone());
        if let Verdict::Limited { retry_after } = self.limits.check_caller(&caller_key).await {
            self.count_rate_limited("caller");
            return Err(ApiError::RateLimited {
                scope: "caller",
                spec: self.limits.per_caller.spec(),
                retry_after,
            });
        }

        // 4. Authorization: may this caller change this agent's password?
        let grant = self
            .auth
            .policy()
            .authorize(&identity.grants, &user_account)
            .ok_or(ApiError::Forbidden)?;
        let caller = Caller {
            iss: identity.iss.clone(),
            sub: identity.sub.clone(),
            grant,
        };
        tracing::debug!(rule = caller.grant.rule(), "caller authorized");

        // 5. The body, read within its size and time bounds, and its shape: only now that
        //    the caller may make this change at all.
        let body = read_body(body, deadline).await?;
        trace.body_read = true;
        let change = request::parse_body(&body)?;

        //    Then the password rule: a local check that spares the vendor (and the
        //    agent's lockout count) a change that is bound to fail.
        self.policy
            .check(
                change.new_phone_pwd.expose_secret(),
                change.account_pwd.expose_secret(),
            )
            .map_err(ApiError::PasswordPolicy)?;

        // 6. Idempotency: a retry of a change that reached the vendor gets its first outcome
        //    and never reaches the vendor (its current password may no longer be valid).
        let ticket = match idempotency_key(&headers)? {
            None => None,
            Some(key) => {
                let scope = IdempotencyScope {
                    iss: &caller.iss,
                    sub: &caller.sub,
                    agent: &account_key,
                    key,
                };
                match self.limits.idempotency_begin(&scope, &body).await {
                    Begin::Proceed(ticket) => Some(ticket),
                    Begin::Replay(stored) => return Ok(Reply::Replayed(stored)),
                    Begin::Reused => return Err(ApiError::IdempotencyKeyReused),
                    Begin::Busy => return Err(ApiError::ChangeInProgress),
                }
            }
        };

        // 7. Per-agent quota and the lockout shield.
        self.check_lockout(&account_key).await?;
        if let Verdict::Limited { retry_after } = self.limits.check_agent(&account_key).await {
            self.count_rate_limited("agent");
            return Err(ApiError::RateLimited {
                scope: "agent",
                spec: self.limits.per_agent.spec(),
                retry_after,
            });
        }

        // 8. One change per agent at a time; the shield is asked again once it is our turn,
        //    since the change we waited for may have been the one that tripped it.
        let _turn = self
            .limits
            .lock_agent(&account_key)
            .await
            .ok_or(ApiError::ChangeInProgress)?;
        self.check_lockout(&account_key).await?;

        // 9. Audit `attempt`: durable before the vendor is called, or no call at all (and no
        //    waiting past the request's deadline for a stalled disk).
        // From here on the outcome is never flood-controlled: a reader must not find an
        // attempt (even one made durable only after its deadline) without its outcome.
        trace.attempted = true;
        match tokio::time::timeout_at(deadline, self.auditor.attempt(request_id, trace, client_ip))
            .await
        {
            Ok(written) => written?,
            Err(_) => {
                tracing::error!(
                    request_id,
                    "audit attempt record not durable before the deadline; the change is refused"
                );
                return Err(ApiError::AuditUnavailable);
            }
        }

        // 10. The vendor call.
        let result = self
            .call_vendor(&user_account, &change, request_id, deadline, trace)
            .await
            .and_then(|outcome| {
                if outcome.is_success() {
                    Ok(outcome.result_message)
                } else {
                    Err(ApiError::VendorRejected {
                        vendor_message: scrub(&outcome.result_message, &change),
                    })
                }
            });
        // A lost or garbled answer after the vendor may have checked the password counts
        // like a rejection: the vendor may have counted one.
        let counts_as_rejection = match &result {
            Err(ApiError::VendorRejected { .. }) => true,
            Err(ApiError::VendorTimeout | ApiError::VendorError) => trace.vendor_may_have_checked,
            _ => false,
        };
        if result.is_ok() {
            self.limits.record_success(&account_key).await;
        } else if counts_as_rejection && self.limits.record_rejection(&account_key).await {
            tracing::warn!(request_id, agent = %user_account, "lockout shield: agent blocked after repeated vendor rejections");
        }

        // 11. Remember the outcome for retries, if the change reached the vendor (an outcome
        //     decided before it is not worth replaying). The audit `outcome` record is
        //     written by `handle`, for this and every earlier refusal alike.
        if let Some(ticket) = ticket {
            ticket.complete(stored_outcome(&result, request_id)).await;
        }
        result.map(|message| Reply::Accepted { message })
    }

    fn count_rate_limited(&self, scope: &'static str) {
        self.metrics
            .rate_limited
            .get_or_create(&ScopeLabel { scope })
            .inc();
    }

    async fn check_lockout(&self, agent: &AccountKey) -> Result<(), ApiError> {
        match self.limits.lockout_check(agent).await {
            Shield::Open => Ok(()),
            Shield::Blocked(retry_after) => Err(ApiError::LockoutProtection { retry_after }),
            Shield::Unknown => Err(ApiError::LockoutStateUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
