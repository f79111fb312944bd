//! `change_password`: the checks of one password change, as named phases in the order of
//! docs/api.md.
//!
//! 1. [`Gateway::shape_head`]: what the head shows (route, method, `userAccount`, media
//!    type, declared length).
//! 2. [`Gateway::authenticate`]: the JWT, the caller's quota, authorization; all before the
//!    body is read.
//! 3. [`Gateway::shape_body`]: the body, its shape and the password rule.
//! 4. [`Gateway::admit`]: the `Idempotency-Key`, the agent's lockout shield and quota, its
//!    turn.
//! 5. [`Gateway::record`]: the durable audit `attempt`.
//! 6. [`Gateway::forward`]: the vendor call and what its outcome counts for.
//!
//! Each phase hands the next the typed facts it established ([`Head`], [`Caller`],
//! [`Change`], [`Admitted`]); the audit facts gather in the [`Trace`].

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use hyper::body::Incoming;
use secrecy::ExposeSecret;
use tracing::Instrument;

use super::audit::grant_kind;
use super::reply::{idempotency_key, read_body, stored_outcome};
use super::vendor_call::scrub;
use super::{Deadline, Gateway, Reply, Trace};
use crate::auth::{AuthError, Caller};
use crate::error::ApiError;
use crate::ids::{AgentId, CallerId, Scope};
use crate::limits::idempotency::{Begin, Stored};
use crate::limits::quota::Verdict;
use crate::limits::{ChangeTicket, IdempotencyScope, Shield, Turn};
use crate::metrics::ScopeLabel;
use crate::request::{self, ChangeBody};
use crate::terminal;

/// How far a request got, for [`Gateway::handle`]: the audit facts, and whether its body
/// was read.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// What the audit records say.
    pub(super) trace: Trace,
    /// Whether the request's body was read; an HTTP/1.1 answer given before it closes the
    /// connection, whose unread body could otherwise be taken for the next request.
    pub(super) body_read: bool,
}

/// A request on the endpoint whose head passed the first checks.
struct Head {
    /// The agent's account as written: forwarded to the vendor and audited verbatim.
    account: String,
    /// Its canonical id: the key of every per-agent limit.
    agent: AgentId,
    /// The request's headers (the token, the `Idempotency-Key`).
    headers: HeaderMap,
}

/// A change whose body was read and checked.
struct Change {
    /// The body as received (its digest is the `Idempotency-Key`'s fingerprint).
    bytes: Bytes,
    /// The passwords.
    body: ChangeBody,
}

/// What admission hands on to the vendor call.
struct Admitted<'a> {
    /// The agent's turn: no other change of this agent runs until it is dropped (first,
    /// when a refusal drops both).
    turn: Turn<'a>,
    /// The claim on the request's `Idempotency-Key`, if it has one.
    ticket: Option<ChangeTicket<'a>>,
}

/// What [`Gateway::admit`] decided.
enum Admission<'a> {
    /// Call the vendor.
    Proceed(Admitted<'a>),
    /// A retry of a change that reached the vendor: answer with its first outcome.
    Replay(Arc<Stored>),
}

impl Gateway {
    /// The pipeline, phase by phase: everything the head can decide (route, method, media
    /// type, declared length, the JWT, the caller's quota, authorization) before the body is
    /// read, then the body and the rest. The audit `outcome` record is written by `handle`,
    /// for a change and every refusal alike.
    pub(super) async fn change_password(
        &self,
        req: Request<Incoming>,
        request_id: &str,
        deadline: Deadline,
        client_ip: IpAddr,
        progress: &mut Progress,
    ) -> Result<Reply, ApiError> {
        let (head, body) = self.shape_head(req, &mut progress.trace)?;
        // The phases run in spans of their own: what they learn of the request is recorded
        // in the request's span, where every log line of the request finds it.
        let request_span = tracing::Span::current();
        let caller = self
            .authenticate(&head, &request_span, &mut progress.trace)
            .instrument(phase_span!("sipgw.authenticate"))
            .await?;
        let change = self.shape_body(body, deadline, progress).await?;
        let admission = self
            .admit(&caller.id, &head, &change.bytes)
            .instrument(phase_span!("sipgw.admit"))
            .await?;
        let admitted = match admission {
            Admission::Proceed(admitted) => admitted,
            Admission::Replay(stored) => return Ok(Reply::Replayed(stored)),
        };
        self.record(request_id, &mut progress.trace, client_ip, deadline)
            .instrument(phase_span!("sipgw.audit_attempt"))
            .await?;
        let message = self
            .forward(
                &head,
                &change.body,
                admitted,
                request_id,
                deadline,
                &mut progress.trace,
            )
            .await?;
        Ok(Reply::Accepted { message })
    }

    /// The request's head: route and method first (cheapest, and they decide whether the
    /// rest applies at all), then the media type and the declared length. The body is not
    /// read yet: nobody has shown who they are.
    fn shape_head(
        &self,
        req: Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<(Head, Incoming), ApiError> {
        let segment = request::match_endpoint(req.uri().path()).ok_or(ApiError::NotFound)?;
        trace.endpoint = true;
        if req.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let account = request::parse_user_account(segment)?;
        tracing::Span::current().record("agent", account.as_str());
        trace.agent = Some(account.clone());
        // Every per-agent limit uses the canonical id; the vendor and the audit trail get
        // the account as written.
        let agent = self.limits.account_key(&account);
        request::check_content_type(req.headers())?;
        request::check_declared_length(req.headers())?;
        let (parts, body) = req.into_parts();
        let head = Head {
            account,
            agent,
            headers: parts.headers,
        };
        Ok((head, body))
    }

    /// Who calls, how often, and whether they may change this agent's password.
    ///
    /// The JWT comes from the head, before the body, so that an unauthenticated client
    /// cannot hold a connection with a slow body; and before anything that spends a quota,
    /// touches the vendor or writes. The caller's quota is spent by every authenticated
    /// request to the endpoint, before authorization, so a caller that keeps asking for
    /// what it may not do is soon refused cheaply (429) like any other runaway caller;
    /// after authentication, so unauthenticated floods cannot spend it.
    async fn authenticate(
        &self,
        head: &Head,
        request_span: &tracing::Span,
        trace: &mut Trace,
    ) -> Result<Caller, ApiError> {
        let mut authorization = head.headers.get_all(http::header::AUTHORIZATION).iter();
        let (header, extra) = (authorization.next(), authorization.next());
        if extra.is_some() {
            return Err(ApiError::Unauthenticated(AuthError::Duplicate));
        }
        let identity = self
            .auth
            .authenticate(header)
            .await
            .map_err(ApiError::Unauthenticated)?;
        let caller = &identity.caller;
        request_span.record("sub", terminal::escape(caller.sub()).as_ref());
        trace.caller = Some(caller.clone());
        trace.caller_name.clone_from(&identity.name);

        let verdict = self.limits.check_caller(caller).await;
        self.within_quota(Scope::Caller, verdict)?;

        let grant = self
            .auth
            .policy()
            .authorize(&identity.grants, &head.account)
            .ok_or(ApiError::Forbidden)?;
        tracing::debug!(rule = grant.rule(), "caller authorized");
        trace.grant = Some(grant_kind(&grant));
        Ok(Caller {
            id: caller.clone(),
            grant,
        })
    }

    /// The body, read within its size and time bounds, and its shape: only now that the
    /// caller may make this change at all. Then the password rule: a local check that
    /// spares the vendor (and the agent's lockout count) a change that is bound to fail.
    async fn shape_body(
        &self,
        body: Incoming,
        deadline: Deadline,
        progress: &mut Progress,
    ) -> Result<Change, ApiError> {
        let bytes = read_body(body, deadline).await?;
        progress.body_read = true;
        let body = request::parse_body(&bytes)?;
        self.policy
            .check(
                body.new_phone_pwd.expose_secret(),
                body.account_pwd.expose_secret(),
            )
            .map_err(ApiError::PasswordPolicy)?;
        Ok(Change { bytes, body })
    }

    /// Whether this change may go to the vendor now.
    ///
    /// First the `Idempotency-Key`: a retry of a change that reached the vendor gets its
    /// first outcome and never reaches the vendor (its current password may no longer be
    /// valid). Then the agent's lockout shield and quota, then one change per agent at a
    /// time; the shield is asked again once it is our turn, since the change we waited for
    /// may have been the one that tripped it. A refusal releases the key's claim.
    async fn admit(
        &self,
        caller: &CallerId,
        head: &Head,
        body: &[u8],
    ) -> Result<Admission<'_>, ApiError> {
        let agent = &head.agent;
        let ticket = match idempotency_key(&head.headers)? {
            None => None,
            Some(key) => {
                let scope = IdempotencyScope { caller, agent, key };
                match self.limits.idempotency_begin(&scope, body).await {
                    Begin::Proceed(ticket) => Some(ticket),
                    Begin::Replay(stored) => return Ok(Admission::Replay(stored)),
                    Begin::Reused => return Err(ApiError::IdempotencyKeyReused),
                    Begin::Busy => return Err(ApiError::ChangeInProgress),
                }
            }
        };

        self.check_lockout(agent).await?;
        let verdict = self.limits.check_agent(agent).await;
        self.within_quota(Scope::Agent, verdict)?;

        let turn = self
            .limits
            .lock_agent(agent)
            .await
            .ok_or(ApiError::ChangeInProgress)?;
        self.check_lockout(agent).await?;
        Ok(Admission::Proceed(Admitted { turn, ticket }))
    }

    /// The audit `attempt`: durable before the vendor is called, or no call at all (and no
    /// waiting past the request's deadline for a stalled disk).
    async fn record(
        &self,
        request_id: &str,
        trace: &mut Trace,
        client_ip: IpAddr,
        deadline: Deadline,
    ) -> Result<(), ApiError> {
        // From here on the outcome is never flood-controlled: a reader must not find an
        // attempt (even one made durable only after its deadline) without its outcome.
        trace.attempted = true;
        let attempt = self.auditor.attempt(request_id, trace, client_ip);
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(written) => written,
            Err(_) => {
                tracing::error!(
                    request_id,
                    "audit attempt record not durable before the deadline; the change is refused"
                );
                Err(ApiError::AuditUnavailable)
            }
        }
    }

    /// The vendor call, then what its outcome counts for: the agent's lockout count, and
    /// the outcome remembered for retries of its `Idempotency-Key` (only one that reached
    /// the vendor: an outcome decided before it is not worth replaying). The agent's turn
    /// ends last, so the next change of this agent sees both.
    async fn forward(
        &self,
        head: &Head,
        change: &ChangeBody,
        admitted: Admitted<'_>,
        request_id: &str,
        deadline: Deadline,
        trace: &mut Trace,
    ) -> Result<String, ApiError> {
        let exchange = self
            .call_vendor(&head.account, change, request_id, &head.headers, deadline)
            .instrument(phase_span!("sipgw.vendor_call", otel.kind = "client"))
            .await;
        trace.vendor = exchange.vendor;
        let result = exchange.result.and_then(|outcome| {
            if outcome.is_success() {
                Ok(outcome.result_message)
            } else {
                Err(ApiError::VendorRejected {
                    vendor_message: scrub(&outcome.result_message, change),
                })
            }
        });
        self.count_for_lockout(head, &result, exchange.may_have_checked, request_id)
            .await;
        if let Some(ticket) = admitted.ticket {
            ticket.complete(stored_outcome(&result, request_id)).await;
        }
        drop(admitted.turn);
        result
    }

    /// A success starts the agent's lockout count over; a rejection counts, and so does a
    /// lost or garbled answer after the vendor may have checked the password (the vendor
    /// may have counted one).
    async fn count_for_lockout(
        &self,
        head: &Head,
        result: &Result<String, ApiError>,
        may_have_checked: bool,
        request_id: &str,
    ) {
        let counts_as_rejection = match result {
            Err(ApiError::VendorRejected { .. }) => true,
            Err(ApiError::VendorTimeout | ApiError::VendorError) => may_have_checked,
            _ => false,
        };
        if result.is_ok() {
            self.limits.record_success(&head.agent).await;
        } else if counts_as_rejection && self.limits.record_rejection(&head.agent).await {
            tracing::warn!(request_id, agent = %head.account, "lockout shield: agent blocked after repeated vendor rejections");
        }
    }

    /// A spent quota is a 429 naming it, and counted by its scope.
    fn within_quota(&self, scope: Scope, verdict: Verdict) -> Result<(), ApiError> {
        let Verdict::Limited { retry_after } = verdict else {
            return Ok(());
        };
        self.metrics
            .rate_limited
            .get_or_create(&ScopeLabel { scope })
            .inc();
        let spec = match scope {
            Scope::Caller => self.limits.per_caller.spec(),
            Scope::Agent => self.limits.per_agent.spec(),
        };
        Err(ApiError::RateLimited {
            scope,
            spec,
            retry_after,
        })
    }

    async fn check_lockout(&self, agent: &AgentId) -> Result<(), ApiError> {
        match self.limits.lockout_check(agent).await {
            Shield::Open => Ok(()),
            Shield::Blocked(retry_after) => Err(ApiError::LockoutProtection { retry_after }),
            Shield::Unknown => Err(ApiError::LockoutStateUnavailable),
        }
    }
}
