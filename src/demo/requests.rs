//! The demo's scripted requests: a change that succeeds, a weak password, another agent's
//! account, a forged token; each answer printed and checked against what the demo shows.

use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sipgw_dev::dev_issuer::{DevIssuer, KeyKind};
use sipgw_dev::sim::VendorSim;

use super::{AGENT, CURRENT_PASSWORD, DEMO_ISSUER, DemoError, NEW_PASSWORD, alice_claims};

/// The four requests, in order; each answer printed and checked.
pub(super) async fn send_the_changes(
    out: &mut impl Write,
    sim: &VendorSim,
    gateway: SocketAddr,
    url: &str,
    token: &str,
) -> Result<(), DemoError> {
    let body = format!(r#"{{"accountPwd":"{CURRENT_PASSWORD}","newPhonePwd":"{NEW_PASSWORD}"}}"#);
    let (status, answer) = post(url, token, &body).await?;
    writeln!(
        out,
        "1. as alice (self-service), change {AGENT}'s password to {NEW_PASSWORD}\n   POST {url}\n   -> {status} {answer}"
    )?;
    expect(status, StatusCode::OK, "the change was refused")?;
    let held = sim.agent_password(AGENT);
    writeln!(
        out,
        "   the vendor simulator now holds the new password: {}\n",
        if held.as_deref() == Some(NEW_PASSWORD) {
            "yes"
        } else {
            "NO"
        }
    )?;

    let weak = format!(r#"{{"accountPwd":"{NEW_PASSWORD}","newPhonePwd":"password"}}"#);
    let (status, answer) = post(url, token, &weak).await?;
    writeln!(
        out,
        "2. try the weak password \"password\"\n   -> {status} {answer}"
    )?;
    expect(
        status,
        StatusCode::BAD_REQUEST,
        "the weak password was not refused",
    )?;
    if sim.update_count() != 1 {
        return Err(DemoError::Unexpected(
            "the weak password reached the vendor".into(),
        ));
    }
    writeln!(
        out,
        "   refused by the gateway: the vendor never saw this request\n"
    )?;

    let other = format!("http://{gateway}/v1/agents/a1002/sip-phone-password");
    let (status, answer) = post(&other, token, &weak).await?;
    writeln!(
        out,
        "3. as alice, change another agent's password (a1002)\n   -> {status} {answer}\n"
    )?;
    expect(status, StatusCode::FORBIDDEN, "alice was not refused")?;
    send_a_forged_token(out, url, &body).await
}

/// Alice's claims, signed by a key the gateway does not trust: another issuer instance
/// whose key has the same `kid` and `iss`, so the token parses, finds a key, and fails the
/// signature check (not the parser).
async fn send_a_forged_token(out: &mut impl Write, url: &str, body: &str) -> Result<(), DemoError> {
    let forger = DevIssuer::new(DEMO_ISSUER);
    let forged = forger.mint(KeyKind::Es256, &alice_claims());
    let (status, answer) = post(url, &forged, body).await?;
    writeln!(
        out,
        "4. with a forged token (alice's claims, signed by a key the gateway does not trust)\n   -> {status} {answer}"
    )?;
    expect(
        status,
        StatusCode::UNAUTHORIZED,
        "a forged token was not refused",
    )?;
    let problem: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| DemoError::Unexpected(format!("the 401 is not JSON: {e}")))?;
    let (code, detail) = (problem["code"].as_str(), problem["detail"].as_str());
    match (code, detail) {
        (Some(code), Some(detail)) if detail.contains("signature") => {
            writeln!(
                out,
                "   refused by the signature check: {code}, \"{detail}\"\n"
            )?;
            Ok(())
        }
        _ => Err(DemoError::Unexpected(format!(
            "the forged token was not refused by the signature check: {answer}"
        ))),
    }
}

fn expect(status: StatusCode, wanted: StatusCode, otherwise: &str) -> Result<(), DemoError> {
    if status == wanted {
        Ok(())
    } else {
        Err(DemoError::Unexpected(format!("{otherwise}: {status}")))
    }
}

/// A JSON `POST` with a bearer token: the status and the body.
async fn post(url: &str, token: &str, body: &str) -> Result<(StatusCode, String), DemoError> {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| DemoError::Http(e.to_string()))?;
    send(request).await
}

/// A `GET`: the status and the body.
pub(super) async fn get(url: &str) -> Result<(StatusCode, String), DemoError> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| DemoError::Http(e.to_string()))?;
    send(request).await
}

async fn send(request: Request<Full<Bytes>>) -> Result<(StatusCode, String), DemoError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| DemoError::Http(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| DemoError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
