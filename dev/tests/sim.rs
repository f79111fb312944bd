//! The vendor simulator over real loopback sockets: what the gateway's own tests rely on.

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sipgw_dev::sim::{NO_RESPONSE, SimConfig, TOKEN_PATH, UPDATE_PATH, VendorSim};
use tokio::net::{TcpListener, TcpStream};

const AGENT: &str = "agent1";
const OLD_PASSWORD: &str = "OldPass1";
const NEW_PASSWORD: &str = "NewPass2x";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A simulator on `127.0.0.1:0` and a pooling client aimed at it.
struct Harness {
    /// The handle for assertions and fault switches.
    sim: VendorSim,
    /// Where the simulator listens.
    addr: SocketAddr,
    /// The client requests go through (pooling unless a test says otherwise).
    client: HttpClient,
}

/// What came back from one request.
struct Reply {
    /// The response status.
    status: StatusCode,
    /// The response headers.
    headers: http::HeaderMap,
    /// The whole response body.
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn config() -> SimConfig {
    SimConfig {
        agents: vec![(AGENT.to_owned(), OLD_PASSWORD.to_owned())],
        ..SimConfig::default()
    }
}

fn wrapped(account: &str, current: &str, new: &str) -> Value {
    json!({"requestParam": {"accountPwd": current, "newPhonePwd": new, "userAccount": account}})
}

fn flat(account: &str, current: &str, new: &str) -> Value {
    json!({"accountPwd": current, "newPhonePwd": new, "userAccount": account})
}

fn pooling_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

impl Harness {
    async fn start(config: SimConfig) -> Self {
        Self::start_with_client(config, pooling_client()).await
    }

    async fn start_with_client(config: SimConfig, client: HttpClient) -> Self {
        let sim = VendorSim::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = sim.spawn(listener).expect("spawn");
        Self { sim, addr, client }
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(body)).expect("request"))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.try_send(method, path, headers, Bytes::from(body.to_owned()))
            .await
            .expect("request failed")
    }

    async fn token_reply(&self, headers: &[(&str, &str)], body: &Value) -> Reply {
        self.send(Method::POST, TOKEN_PATH, headers, &body.to_string())
            .await
    }

    async fn token(&self) -> String {
        let reply = self
            .token_reply(
                &[],
                &json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["AccessToken"]
            .as_str()
            .expect("AccessToken")
            .to_owned()
    }

    async fn update(&self, token: &str, body: &Value) -> Reply {
        let bearer = format!("Bearer {token}");
        self.send(
            Method::POST,
            UPDATE_PATH,
            &[("authorization", &bearer), ("x-app-key", "demo-app-key")],
            &body.to_string(),
        )
        .await
    }

    /// The update verdict of a 200 answer: (resultCode, resultMessage).
    async fn verdict(&self, token: &str, body: &Value) -> (String, String) {
        let reply = self.update(token, body).await;
        assert_eq!(reply.status, StatusCode::OK);
        let json = reply.json();
        (
            json["resultCode"].as_str().expect("resultCode").to_owned(),
            json["resultMessage"]
                .as_str()
                .expect("resultMessage")
                .to_owned(),
        )
    }
}

#[tokio::test]
async fn token_is_issued_with_string_expires_and_create_time() {
    let h = Harness::start(config()).await;
    let credentials = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});

    let reply = h.token_reply(&[], &credentials).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let body = reply.json();
    assert!(
        !body["AccessToken"]
            .as_str()
            .expect("AccessToken")
            .is_empty()
    );
    assert_eq!(body["ApplyType"], "Bearer");
    assert_eq!(body["Expires"], "600", "default lifetime, as a string");
    assert_eq!(body["AppKey"], "demo-app-key");
    assert_eq!(body["UserID"], "Anonymous");
    assert!(body["Scope"].is_string());
    let created: u64 = body["CreateTime"]
        .as_str()
        .expect("CreateTime is a string")
        .parse()
        .expect("CreateTime holds an integer");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(created) <= 5,
        "CreateTime {created} vs now {now}"
    );

    let reply = h
        .token_reply(&[("x-token-expire", "3600")], &credentials)
        .await;
    assert_eq!(reply.json()["Expires"], "3600");
    let second = reply.json()["AccessToken"].as_str().unwrap().to_owned();
    assert_ne!(
        second,
        body["AccessToken"].as_str().unwrap(),
        "tokens are random"
    );
    assert_eq!((h.sim.token_requests(), h.sim.tokens_issued()), (2, 2));
}

#[tokio::test]
async fn token_refuses_bad_lifetime_body_and_credentials() {
    let h = Harness::start(config()).await;
    let good = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    for ttl in ["0", "3601", "abc", "-1", "1.5"] {
        let reply = h.token_reply(&[("x-token-expire", ttl)], &good).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "X-Token-Expire {ttl}"
        );
    }
    let wrong_secret = json!({"app_key": "demo-app-key", "app_secret": "nope"});
    assert_eq!(
        h.token_reply(&[], &wrong_secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong_key = json!({"app_key": "other", "app_secret": "demo-app-secret"});
    assert_eq!(
        h.token_reply(&[], &wrong_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = h.send(Method::POST, TOKEN_PATH, &[], "{not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["error_msg"].is_string(),
        "small JSON error body"
    );
    let missing = json!({"app_key": "demo-app-key"});
    assert_eq!(
        h.token_reply(&[], &missing).await.status,
        StatusCode::BAD_REQUEST
    );

    assert_eq!(h.sim.token_requests(), 9, "failed requests are counted too");
    assert_eq!(h.sim.tokens_issued(), 0);
}

#[tokio::test]
async fn max_token_ttl_is_configurable() {
    let h = Harness::start(SimConfig {
        max_token_ttl_secs: 60,
        ..config()
    })
    .await;
    let good = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    assert_eq!(
        h.token_reply(&[("x-token-expire", "61")], &good)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let reply = h.token_reply(&[], &good).await;
    assert_eq!(
        reply.json()["Expires"],
        "60",
        "the default is capped at the maximum"
    );
}

#[tokio::test]
async fn wrapped_body_changes_the_password_and_is_recorded() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let body = wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD);
    assert_eq!(
        h.verdict(&token, &body).await,
        ("0".to_owned(), "success".to_owned())
    );
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW_PASSWORD));

    let recorded = h.sim.update_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body, body);
    assert_eq!(recorded[0].status, 200);
    assert_eq!(
        recorded[0].headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    assert_eq!(recorded[0].headers["x-app-key"], "demo-app-key");
    assert_eq!(h.sim.update_count(), 1);

    // A retry of the same change now carries a stale current password.
    let (code, message) = h.verdict(&token, &body).await;
    assert_eq!(code, "1");
    assert!(message.contains("incorrect"), "{message}");
}

#[tokio::test]
async fn flat_body_changes_the_password() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let (code, _) = h
        .verdict(&token, &flat(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(code, "0");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW_PASSWORD));
}

#[tokio::test]
async fn update_needs_exactly_bearer_and_a_live_token() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let body = wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD).to_string();
    let one_space_too_many = format!("Bearer  {token}");
    let lower_case = format!("bearer {token}");
    let no_scheme = token.clone();
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("authorization", "Bearer not-a-token")],
        &[("authorization", &one_space_too_many)],
        &[("authorization", &lower_case)],
        &[("authorization", &no_scheme)],
    ];
    for headers in cases {
        let reply = h.send(Method::POST, UPDATE_PATH, headers, &body).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    assert_eq!(h.sim.update_count(), 5);
    assert!(h.sim.update_requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn x_app_key_must_match_when_present() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let bearer = format!("Bearer {token}");
    let body = wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD).to_string();
    let reply = h
        .send(
            Method::POST,
            UPDATE_PATH,
            &[("authorization", &bearer), ("x-app-key", "other")],
            &body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Absent is fine: the header is optional in the reference.
    let reply = h
        .send(
            Method::POST,
            UPDATE_PATH,
            &[("authorization", &bearer)],
            &body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["resultCode"], "0");
}

#[tokio::test]
async fn malformed_update_bodies_get_400() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let bearer = format!("Bearer {token}");
    let bodies = [
        "{not json".to_owned(),
        "[]".to_owned(),
        json!({"requestParam": "x"}).to_string(),
        json!({"requestParam": {"accountPwd": OLD_PASSWORD, "userAccount": AGENT}}).to_string(),
        json!({"accountPwd": OLD_PASSWORD, "newPhonePwd": 12345678, "userAccount": AGENT})
            .to_string(),
    ];
    for body in &bodies {
        let reply = h
            .send(
                Method::POST,
                UPDATE_PATH,
                &[("authorization", &bearer)],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let recorded = h.sim.update_requests();
    assert_eq!(
        recorded[0].body,
        json!("{not json"),
        "non-JSON is recorded as its text"
    );
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
}

#[tokio::test]
async fn business_failures_come_back_as_result_code_1() {
    let h = Harness::start(config()).await;
    let token = h.token().await;

    let (code, message) = h
        .verdict(&token, &wrapped("ghost", OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(code, "1");
    assert!(message.contains("does not exist"), "{message}");

    for bad_new in [
        "Short1",
        "alllowercase1",
        "Has Space12",
        "Bad!char12",
        "Way2LongPassword17",
    ] {
        let (code, message) = h
            .verdict(&token, &wrapped(AGENT, OLD_PASSWORD, bad_new))
            .await;
        assert_eq!(code, "1", "{bad_new}");
        assert!(message.contains("password rule"), "{message}");
    }
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    // Five rule violations with the right current password did not lock the agent.
    assert!(!h.sim.is_locked(AGENT));
}

#[tokio::test]
async fn three_wrong_current_passwords_lock_the_agent() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    for _ in 0..3 {
        let (code, message) = h
            .verdict(&token, &wrapped(AGENT, "Wrong123", NEW_PASSWORD))
            .await;
        assert_eq!(code, "1");
        assert!(message.contains("incorrect"), "{message}");
    }
    assert!(h.sim.is_locked(AGENT));
    let (code, message) = h
        .verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(code, "1");
    assert!(message.contains("locked"), "{message}");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));

    // An administrator reset clears the lock.
    h.sim.set_agent(AGENT, "Reset123x");
    assert!(!h.sim.is_locked(AGENT));
    let (code, _) = h
        .verdict(&token, &wrapped(AGENT, "Reset123x", NEW_PASSWORD))
        .await;
    assert_eq!(code, "0");
}

/// Token expiry and lock expiry under paused time. The client opens a fresh connection per
/// request so that jumping the clock (which also fires the server's idle timeout) cannot
/// race with a pooled connection being closed.
#[tokio::test]
async fn tokens_and_locks_expire_with_time() {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let h = Harness::start_with_client(
        SimConfig {
            lock_duration: Duration::from_secs(60),
            ..config()
        },
        client,
    )
    .await;
    let credentials = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    let reply = h
        .token_reply(&[("x-token-expire", "1")], &credentials)
        .await;
    let short = reply.json()["AccessToken"].as_str().unwrap().to_owned();
    let long = h.token().await;
    for _ in 0..3 {
        h.verdict(&long, &wrapped(AGENT, "Wrong123", NEW_PASSWORD))
            .await;
    }
    assert!(h.sim.is_locked(AGENT));
    // Still valid before the clock moves: proves the 401 below is expiry.
    assert_eq!(
        h.update(&short, &wrapped("ghost", "x", "y")).await.status,
        StatusCode::OK
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1100)).await;
    let reply = h
        .update(&short, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "1-second token expired"
    );

    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(!h.sim.is_locked(AGENT), "lock lasts lock_duration");
    let (code, _) = h
        .verdict(&long, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(code, "0");
}

#[tokio::test]
async fn revoke_all_tokens_invalidates_issued_tokens() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    h.sim.revoke_all_tokens();
    let reply = h
        .update(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A token fetched afterwards works.
    let fresh = h.token().await;
    let (code, _) = h
        .verdict(&fresh, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(code, "0");
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let h = Harness::start(config()).await;
    let reply = h
        .send(Method::POST, "/apiaccess/rest/other", &[], "{}")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    for path in [TOKEN_PATH, UPDATE_PATH] {
        let reply = h.send(Method::GET, path, &[], "").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(reply.headers[header::ALLOW], "POST");
    }
    assert_eq!(h.sim.token_requests(), 1);
    assert_eq!(h.sim.update_count(), 1);
    assert_eq!(h.sim.update_requests()[0].status, 405);
}

#[tokio::test]
async fn token_faults_status_and_delay() {
    let h = Harness::start(config()).await;
    let credentials = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    h.sim.faults().set_token_status(Some(500));
    let reply = h.token_reply(&[], &credentials).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.json()["error_msg"].is_string());
    assert_eq!((h.sim.token_requests(), h.sim.tokens_issued()), (1, 0));
    h.sim.faults().set_token_status(None);

    h.sim
        .faults()
        .set_token_delay(Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let reply = h.token_reply(&[], &credentials).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(reply.status, StatusCode::OK);
    h.sim.faults().set_token_delay(None);
    assert_eq!(h.sim.tokens_issued(), 1);
}

#[tokio::test]
async fn update_status_fault_answers_that_status_and_changes_nothing() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let body = wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD);
    for status in [400, 401, 404, 500] {
        h.sim.faults().set_update_status(Some(status));
        let reply = h.update(&token, &body).await;
        assert_eq!(reply.status.as_u16(), status);
        assert!(
            reply.json()["error_msg"].is_string(),
            "small JSON error body"
        );
    }
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    let statuses: Vec<u16> = h.sim.update_requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [400, 401, 404, 500],
        "faulted requests are recorded"
    );
    h.sim.faults().set_update_status(None);
    assert_eq!(h.verdict(&token, &body).await.0, "0");
}

#[tokio::test]
async fn update_garbage_fault_answers_200_with_non_json() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    h.sim.faults().set_update_garbage(true);
    let reply = h
        .update(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn update_drop_fault_closes_the_connection_without_a_response() {
    let h = Harness::start(config()).await;
    // The token request leaves a pooled keep-alive connection, so the update goes over a
    // reused connection: the client must still see an error, and must not retry silently.
    let token = h.token().await;
    h.sim.faults().set_update_drop(true);
    let body = Bytes::from(wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD).to_string());
    let bearer = format!("Bearer {token}");
    let error = h
        .try_send(
            Method::POST,
            UPDATE_PATH,
            &[("authorization", &bearer)],
            body,
        )
        .await
        .err()
        .expect("no response expected");
    assert!(
        !error.is_connect(),
        "the connection was made; it was closed after the request"
    );
    let hyper_error = error
        .source()
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .expect("a hyper error underneath");
    assert!(hyper_error.is_incomplete_message(), "{hyper_error}");
    assert_eq!(h.sim.update_count(), 1);
    assert_eq!(h.sim.update_requests()[0].status, NO_RESPONSE);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));

    h.sim.faults().set_update_drop(false);
    assert_eq!(
        h.verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
            .await
            .0,
        "0"
    );
}

#[tokio::test]
async fn update_delay_fault_delays_the_answer() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let (code, _) = h
        .verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(code, "0");
}

#[tokio::test]
async fn update_hold_keeps_a_request_in_flight_until_released() {
    let h = std::sync::Arc::new(Harness::start(config()).await);
    let token = h.token().await;
    h.sim.faults().hold_updates();
    let held = tokio::spawn({
        let h = std::sync::Arc::clone(&h);
        async move {
            h.verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(15), async {
        while h.sim.update_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("update request arrived");
    // Counted and recorded, but neither answered nor applied while held.
    assert!(!held.is_finished());
    assert_eq!(h.sim.update_requests()[0].status, NO_RESPONSE);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    h.sim.faults().release_updates();
    assert_eq!(held.await.expect("join").0, "0");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW_PASSWORD));
}

#[tokio::test]
async fn reject_all_tokens_fault_answers_401_to_a_valid_token() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    h.sim.faults().set_reject_all_tokens(true);
    let reply = h
        .update(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    h.sim.faults().set_reject_all_tokens(false);
    assert_eq!(
        h.verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
            .await
            .0,
        "0"
    );
}

#[tokio::test]
async fn fast_mode_counts_but_does_not_record() {
    let h = Harness::start(SimConfig {
        record_requests: false,
        ..config()
    })
    .await;
    let token = h.token().await;
    h.verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    h.update("bad", &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(h.sim.update_count(), 2);
    assert!(h.sim.update_requests().is_empty());
}

#[tokio::test]
async fn always_succeed_mode_accepts_any_current_password_but_still_checks_the_token() {
    let h = Harness::start(SimConfig {
        always_succeed: true,
        ..config()
    })
    .await;
    let token = h.token().await;
    // The same change twice, and one with a wrong current password: all succeed, and the
    // agent's password is untouched.
    for current in [OLD_PASSWORD, OLD_PASSWORD, "Wrong~Pass99"] {
        assert_eq!(
            h.verdict(&token, &wrapped(AGENT, current, NEW_PASSWORD))
                .await
                .0,
            "0"
        );
    }
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(OLD_PASSWORD));
    // A bad AccessToken is still refused.
    let reply = h
        .update("bad", &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn one_http1_connection_serves_several_requests() {
    let h = Harness::start(config()).await;
    let stream = TcpStream::connect(h.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    let credentials = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    for _ in 0..3 {
        let request = Request::post(TOKEN_PATH)
            .header(header::HOST, h.addr.to_string())
            .body(Full::new(Bytes::from(credentials.to_string())))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .expect("keep-alive request");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.expect("body");
    }
    assert_eq!(h.sim.tokens_issued(), 3);
    drop(sender);
    connection
        .await
        .expect("join")
        .expect("connection closed cleanly");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let h = Harness::start(config()).await;
    let stream = TcpStream::connect(h.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let credentials = json!({"app_key": "demo-app-key", "app_secret": "demo-app-secret"});
    let request = Request::post(format!("http://{}{TOKEN_PATH}", h.addr))
        .body(Full::new(Bytes::from(credentials.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn serve_drains_in_flight_requests_on_shutdown() {
    let sim = VendorSim::new(config());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let sim = sim.clone();
        async move {
            sim.serve(listener, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let h = Harness {
        sim: sim.clone(),
        addr,
        client: pooling_client(),
    };
    let token = h.token().await;
    sim.faults()
        .set_update_delay(Some(Duration::from_millis(300)));
    let in_flight = tokio::spawn(async move {
        h.verdict(&token, &wrapped(AGENT, OLD_PASSWORD, NEW_PASSWORD))
            .await
    });
    // Wait (bounded) until the request has reached the simulator, then signal shutdown.
    tokio::time::timeout(Duration::from_secs(5), async {
        while sim.update_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("update request arrived");
    stop.send(()).expect("server still running");

    let (code, _) = in_flight.await.expect("join");
    assert_eq!(
        code, "0",
        "the in-flight request completed after the signal"
    );
    server.await.expect("join").expect("serve returned Ok");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// Kills the child if the test fails before it exits, so no simulator outlives the run.
struct ChildGuard(
    /// The simulator process.
    std::process::Child,
);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn binary_prints_its_address_serves_and_exits_0_on_sigterm() {
    use std::io::BufRead;

    let mut child = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_sipgw-vendor-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--agent",
                "agent1=OldPass1",
                "--fast",
            ])
            .env("SIM_APP_SECRET", "env-secret")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the binary"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let read_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), read_line)
        .await
        .expect("listening line in time")
        .expect("join")
        .expect("read stdout");
    let url = line
        .trim_end()
        .strip_prefix("sipgw-vendor-sim listening on http://")
        .expect("listening line format");
    let addr: SocketAddr = url.parse().expect("an address");

    let client = pooling_client();
    let request = Request::post(format!("http://{addr}{TOKEN_PATH}"))
        .body(Full::new(Bytes::from(
            json!({"app_key": "demo-app-key", "app_secret": "env-secret"}).to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.expect("token request");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "secret came from SIM_APP_SECRET"
    );

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("exits in time");
    assert!(status.success(), "exit status {status:?}");
}
