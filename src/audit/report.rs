//! `sipgw audit report`: the trail as one self-contained HTML page for a security
//! reviewer (docs/audit.md#the-report): the chain status at the top, the headline
//! numbers, changes and refusals over time, the top callers, lockout-shield events and
//! orphaned attempts, each agent's history, and every attempt and outcome in a table with
//! a filter box.
//!
//! The page must be safe to open from an untrusted trail and must not reach out: every
//! trail value is HTML-escaped ([`html::text`]); the one inline script is allowed by its
//! hash in a Content-Security-Policy that forbids every fetch; no external asset exists.
//!
//! - [`facts`]: what is counted, as plain data; [`page`]: the sections; [`chart`]: the
//!   inline SVG charts; [`html`]: escaping, the CSP; `page.css`, `page.js`: the style and
//!   the filter, embedded as they are; [`command`]: the command (read, render, write
//!   atomically, the exit status).

mod chart;
mod command;
pub mod facts;
pub mod html;
mod page;
mod status;
#[cfg(test)]
mod tests;

pub use command::{Request, run};

use super::anchor::Check;
use super::review::Review;
use super::show::Period;

/// The page's style sheet.
const STYLE: &str = include_str!("report/page.css");
/// The page's script (the filter box); allowed by its hash, so it must stay byte for byte
/// what [`render`] embeds.
const SCRIPT: &str = include_str!("report/page.js");

/// What a report covers, besides the trails.
#[derive(Debug, Clone)]
pub struct Options {
    /// The records shown (the chain status always covers every record).
    pub period: Period,
    /// When the report was made (stated on the page).
    pub generated: jiff::Timestamp,
    /// With `--anchor`: each trail checked against the anchors, in the order of
    /// `Review::trails`; empty without `--anchor`.
    pub anchors: Vec<Check>,
}

/// The whole page.
pub fn render(review: &Review, options: &Options) -> String {
    let facts = facts::Facts::gather(review, options.period);
    let data = serde_json::json!({ "rows": facts.changes.len() });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>sipgw audit report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>sipgw audit report</h1>\n{header}</header>\n<main>\n\
         {status}{headline}{charts}{callers}{incidents}{agents}{records}</main>\n\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        csp = html::content_security_policy(SCRIPT),
        header = header(review, options, &facts),
        status = status::status(review, &options.anchors),
        headline = page::headline(&facts),
        charts = page::charts(&facts),
        callers = page::top_callers(&facts),
        incidents = page::incidents(&facts),
        agents = page::agents(&facts),
        records = page::records(&facts, &review.trails),
        data = html::json_for_script(&data),
    )
}

/// What the report covers and when it was made.
fn header(review: &Review, options: &Options, facts: &facts::Facts) -> String {
    let bound = |time: Option<jiff::Timestamp>| time.map(|t| html::when(&t.to_string()));
    let covered = match (
        bound(options.period.since),
        bound(options.period.until),
        &facts.span,
    ) {
        (None, None, None) => "no records".to_owned(),
        (None, None, Some((first, last))) => {
            format!("{} to {}", html::when(first), html::when(last))
        }
        (since, until, _) => format!(
            "{} to {} (--since/--until)",
            since.unwrap_or_else(|| "the start".to_owned()),
            until.map_or_else(|| "the end".to_owned(), |t| format!("before {t}"))
        ),
    };
    let sources: Vec<String> = review
        .trails
        .iter()
        .map(|trail| html::text(&trail.source.display().to_string()))
        .collect();
    format!(
        "<p id=\"period\">Period covered: <strong>{covered}</strong>.</p>\n\
         <p class=\"meta\">Trails: {}. Generated {}.</p>\n",
        if sources.is_empty() {
            "none".to_owned()
        } else {
            sources.join(", ")
        },
        html::when(&options.generated.to_string())
    )
}
