//! The vendor misbehaving: revoked tokens, a failing token endpoint, slowness, broken answers.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_change_retried_once() {
    let h = Harness::start().await;
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
    assert_eq!(h.sim.token_requests(), 1);

    h.sim.revoke_all_tokens();
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(h.sim.token_requests(), 2, "one new token for the retry");
    let updates = h.sim.update_requests();
    assert_eq!(
        updates.len(),
        3,
        "first change, the refused attempt, the retry"
    );
    assert_eq!(updates[1].status, 401);
    assert_eq!(updates[2].status, 200);
    assert_ne!(
        updates[1].headers["authorization"],
        updates[2].headers["authorization"]
    );
}

#[tokio::test]
async fn a_second_401_is_not_retried_again_and_refusals_back_off() {
    let h = Harness::start().await;
    h.sim.faults().set_reject_all_tokens(true);
    let started = std::time::Instant::now();
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.code(), "upstream_auth_unavailable");
    assert_eq!(h.sim.update_count(), 2, "the change and exactly one retry");
    // A vendor that refuses every token is not asked again for every request.
    for _ in 0..30 {
        assert_eq!(
            h.change(AGENT, CURRENT, NEW).await.code(),
            "upstream_auth_unavailable"
        );
    }
    let windows = max_tries_within(started.elapsed());
    let (calls, fetches) = (h.sim.update_count(), h.sim.token_requests());
    assert!(
        calls <= 2 * windows,
        "{calls} password calls in {windows} back-off windows"
    );
    assert!(
        fetches <= 2 * windows,
        "{fetches} token fetches in {windows} back-off windows"
    );
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
}

#[tokio::test]
async fn a_failing_token_endpoint_gives_503_without_a_fetch_storm() {
    let mut sim = sim_config();
    sim.agents.truncate(1);
    let sim = sipgw_dev::sim::VendorSim::new(sim);
    sim.faults().set_token_status(Some(500));
    let sim_addr = sim
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let started = std::time::Instant::now();
    let h = Harness::start_gateway(sim, sim_addr, |_| {}).await;
    for _ in 0..30 {
        let answer = h.change(AGENT, CURRENT, NEW).await;
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert_eq!(answer.code(), "upstream_auth_unavailable");
    }
    // The refresher's start-up fetch and the first request share one fetch; back-off keeps
    // the rest away: at most one fetch per back-off window, however many requests came.
    let (fetches, windows) = (h.sim.token_requests(), max_tries_within(started.elapsed()));
    assert!(
        fetches <= windows,
        "{fetches} token fetches in {windows} back-off windows"
    );
    assert_eq!(h.sim.update_count(), 0);

    // When the vendor recovers, the gateway recovers by itself.
    h.sim.faults().set_token_status(None);
    let mut recovered = false;
    for _ in 0..100 {
        if h.change(AGENT, CURRENT, NEW).await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "no token 10 s after the vendor recovered");
}

#[tokio::test]
async fn a_slow_vendor_gives_504_and_no_retry() {
    let h = Harness::start_with(sim_config(), |c| c.vendor.timeout_ms = 300).await;
    // Warm the token first, so that the 300 ms bound meets the slow password call only.
    let mut warm = false;
    for _ in 0..50 {
        if h.change("agent1", CURRENT, NEW).await.status == 200 {
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(warm, "no token within 5 s");
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(3)));
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 504, "{}", answer.text);
    assert_eq!(answer.code(), "vendor_timeout");
    assert_eq!(
        h.sim.update_count(),
        2,
        "the slow call was sent once, not retried"
    );
}

#[tokio::test]
async fn vendor_error_statuses_and_garbage_give_502_and_no_retry() {
    let h = Harness::start().await;
    for status in [400, 404, 500] {
        h.sim.faults().set_update_status(Some(status));
        let answer = h.change(AGENT, CURRENT, NEW).await;
        assert_eq!(answer.status, 502, "vendor {status}: {}", answer.text);
        assert_eq!(answer.code(), "vendor_error");
    }
    h.sim.faults().set_update_status(None);
    h.sim.faults().set_update_garbage(true);
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.code(), "vendor_error");
    assert_eq!(
        h.sim.update_count(),
        4,
        "every failure was sent exactly once"
    );
}

#[tokio::test]
async fn a_dropped_connection_gives_502_and_no_retry() {
    let h = Harness::start().await;
    h.sim.faults().set_update_drop(true);
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert_eq!(answer.code(), "vendor_error");
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn a_closed_vendor_port_gives_502() {
    // The token comes from a live simulator; the change goes to a port nobody listens on.
    // A second simulator that only serves tokens would hide the case, so the gateway's
    // base URL points at a listener we close right after its token was fetched.
    let sim = sipgw_dev::sim::VendorSim::new(sim_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.serve(listener, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let h = Harness::start_gateway(sim.clone(), sim_addr, |_| {}).await;
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    // Wait until the port really refuses connections.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(sim_addr).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert_eq!(answer.code(), "vendor_error");
}

#[tokio::test]
async fn the_request_deadline_bounds_the_vendor_call() {
    // vendor.timeout_ms alone would wait 5 s; the request's own 500 ms deadline is shorter.
    let h = Harness::start_with(sim_config(), |c| {
        c.vendor.timeout_ms = 5_000;
        c.server.request_timeout_ms = 500;
    })
    .await;
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(30)));
    let answer = tokio::time::timeout(Duration::from_secs(20), h.change(AGENT, CURRENT, NEW))
        .await
        .expect("answered long before the vendor's 30 s delay");
    assert_eq!(answer.status, 504, "{}", answer.text);
    assert_eq!(answer.code(), "vendor_timeout");
}
