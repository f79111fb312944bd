//! The operator's side of the demo: what the admin listener answers before and after the
//! scripted requests.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use super::DemoError;
use super::requests::get;

/// How often `/readyz` is asked while the gateway fetches its key set and vendor token.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long the demo waits for readiness: every upstream is in this process, so only a
/// bug takes longer.
const READY_PATIENCE: Duration = Duration::from_secs(20);
/// The families shown from `/metrics` (their non-zero series): what the requests did, and
/// how long the vendor token has left.
const SHOWN_FAMILIES: [&str; 4] = [
    "sipgw_requests_total{",
    "sipgw_vendor_requests_total{",
    "sipgw_token_refreshes_total{",
    "sipgw_token_expires_in",
];

/// Waits for `/readyz` to answer 200 and prints its answer (and the first 503, if any,
/// which names what the gateway was still waiting for).
pub(super) async fn show_readiness(
    out: &mut impl Write,
    admin: SocketAddr,
) -> Result<(), DemoError> {
    let url = format!("http://{admin}/readyz");
    let deadline = tokio::time::Instant::now() + READY_PATIENCE;
    let mut first_refusal = None;
    let answer = loop {
        let (status, body) = get(&url).await?;
        if status == StatusCode::OK {
            break body;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DemoError::Unexpected(format!("/readyz: {status} {body}")));
        }
        first_refusal.get_or_insert(format!("{status} {body}"));
        tokio::time::sleep(READY_POLL).await;
    };
    if let Some(refusal) = first_refusal {
        writeln!(out, "GET /readyz -> {refusal}   (still starting)")?;
    }
    writeln!(out, "GET /readyz -> {} {answer}\n", StatusCode::OK)?;
    Ok(())
}

/// Prints the non-zero series of [`SHOWN_FAMILIES`] from `/metrics`.
pub(super) async fn show_metrics(out: &mut impl Write, admin: SocketAddr) -> Result<(), DemoError> {
    let (status, text) = get(&format!("http://{admin}/metrics")).await?;
    if status != StatusCode::OK {
        return Err(DemoError::Unexpected(format!("/metrics: {status}")));
    }
    writeln!(
        out,
        "GET /metrics, a few series after those requests (zeros left out):"
    )?;
    for line in shown_lines(&text) {
        writeln!(out, "  {line}")?;
    }
    writeln!(out)?;
    Ok(())
}

/// The lines of `text` (Prometheus text format) in [`SHOWN_FAMILIES`] whose value is not 0.
fn shown_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|line| {
        let shown = SHOWN_FAMILIES.iter().any(|family| line.starts_with(family));
        let value = line.rsplit(' ').next().unwrap_or("");
        shown && value.parse::<f64>().is_ok_and(|v| v != 0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shown_families_non_zero_series_are_printed() {
        let text = "# HELP sipgw_requests Requests\n\
                    sipgw_requests_total{code=\"ok\"} 1\n\
                    sipgw_requests_total{code=\"rate_limited\"} 0\n\
                    sipgw_rate_limited_total{scope=\"caller\"} 3\n\
                    sipgw_token_expires_in_seconds 598\n";
        let shown: Vec<&str> = shown_lines(text).collect();
        assert_eq!(
            shown,
            [
                "sipgw_requests_total{code=\"ok\"} 1",
                "sipgw_token_expires_in_seconds 598"
            ]
        );
    }
}
