//! The page's first section: the verdict on the trails (verification, anchors, the key)
//! and one status block per trail. Every trail value passes through [`text`] here.

use std::fmt::Write as _;

use super::html::{day, text, thousands};
use super::page::plural;
use crate::audit::anchor::{Check, Verdict};
use crate::audit::chain::UNKEYED_WARNING;
use crate::audit::review::{Review, TrailCheck};

/// How many failures each trail lists by name before "and N more".
const LISTED_FAILURES: usize = 20;

/// The overall verdict at the very top, and one status block per trail (with its anchor
/// check, when `--anchor` was given).
pub fn status(review: &Review, anchors: &[Check]) -> String {
    let failed: usize = review.trails.iter().map(|t| t.failures.len()).sum();
    let gaps: usize = review.trails.iter().map(|t| t.discontinuities.len()).sum();
    let unanchored = anchors.iter().filter(|check| check.failed()).count();
    let trails = review.trails.len();
    let (class, verdict) = if failed > 0 {
        (
            "failed",
            format!(
                "{} record{} FAILED verification: this trail cannot be trusted as it stands.",
                thousands(failed as u64),
                plural(failed)
            ),
        )
    } else if unanchored > 0 {
        (
            "failed",
            format!(
                "FAILED: {unanchored} trail{} no longer hold{} the anchor kept off the host: records were cut from the end, or the trail was replaced.",
                plural(unanchored),
                if unanchored == 1 { "s" } else { "" }
            ),
        )
    } else if gaps > 0 {
        (
            "gap",
            format!(
                "Every record verified, but {gaps} discontinuit{}: records were lost and a new chain began.",
                if gaps == 1 { "y" } else { "ies" }
            ),
        )
    } else if trails == 0 {
        ("gap", "No trail was given.".to_owned())
    } else {
        (
            "ok",
            format!(
                "Intact: every record of {trails} trail{} verified.",
                plural(trails)
            ),
        )
    };
    let mut out = format!(
        "<section id=\"status\">\n<h2>Chain status</h2>\n<p id=\"verdict\" class=\"verdict {class}\">{}</p>\n",
        text(&verdict)
    );
    if !review.keyed {
        let _ = writeln!(
            out,
            "<p id=\"unkeyed\" class=\"warning\"><strong>No key was given (--key-file):</strong> {}</p>",
            text(UNKEYED_WARNING)
        );
    } else {
        out.push_str("<p id=\"keyed\">Verified with the HMAC key given (--key-file).</p>\n");
    }
    if anchors.is_empty() {
        out.push_str(
            "<p id=\"no-anchor\" class=\"note\">No anchor was checked (--anchor): a trail cut at \
             its end, or replaced whole by another valid trail, reads as intact here.</p>\n",
        );
    }
    for (i, trail) in review.trails.iter().enumerate() {
        out.push_str(&trail_status(i, trail));
        if let Some(check) = anchors.get(i) {
            let class = match check {
                _ if check.failed() => "failed",
                Check::Judged(_, Verdict::Held) => "ok",
                Check::Judged(..) | Check::NoneOfThisTrail(_) => "gap",
            };
            let _ = writeln!(
                out,
                "<p class=\"line {class}\" id=\"anchor-{i}\">Anchor: {}.</p>",
                text(&check.explain(review.keyed))
            );
        }
    }
    out.push_str("</section>\n");
    out
}

fn trail_status(index: usize, trail: &TrailCheck) -> String {
    let instance = trail
        .instance
        .as_deref()
        .map(|name| format!(" (instance {})", text(name)))
        .unwrap_or_default();
    let mut out = format!(
        "<div class=\"trail\" id=\"trail-{index}\">\n<h3>{}{instance}</h3>\n",
        text(&trail.source.display().to_string())
    );
    let seqs = match (trail.first_seq, trail.last_seq) {
        (Some(first), Some(last)) => format!(", seq {} to {}", thousands(first), thousands(last)),
        _ => String::new(),
    };
    let dates = match (&trail.first_ts, &trail.last_ts) {
        (Some(first), Some(last)) => format!(", {} to {}", day(first), day(last)),
        _ => String::new(),
    };
    let checkpoint = trail.last_checkpoint.map_or_else(
        || ", no checkpoint yet".to_owned(),
        |seq| format!(", last checkpoint seq {}", thousands(seq)),
    );
    let counted = format!(
        "{} record{}{seqs}{dates}{checkpoint}",
        thousands(trail.records),
        plural(trail.records as usize)
    );
    if trail.intact() {
        let _ = writeln!(
            out,
            "<p class=\"line ok\">Intact: {}.</p>",
            // `counted` holds only numbers and formatted dates.
            counted
        );
    } else {
        let _ = writeln!(
            out,
            "<p class=\"line failed\">{} record{} FAILED verification ({counted}):</p>\n<ul class=\"failures\">",
            thousands(trail.failures.len() as u64),
            plural(trail.failures.len())
        );
        for failure in trail.failures.iter().take(LISTED_FAILURES) {
            let _ = writeln!(
                out,
                "<li>{}:{}: {}</li>",
                text(&failure.file.display().to_string()),
                failure.line,
                text(&failure.reason)
            );
        }
        if trail.failures.len() > LISTED_FAILURES {
            let _ = writeln!(
                out,
                "<li>and {} more</li>",
                thousands((trail.failures.len() - LISTED_FAILURES) as u64)
            );
        }
        out.push_str("</ul>\n");
    }
    for gap in &trail.discontinuities {
        let after = gap.held_seq.map_or_else(
            || "the start".to_owned(),
            |seq| format!("seq {}", thousands(seq)),
        );
        let _ = writeln!(
            out,
            "<p class=\"line gap\">Discontinuity: records lost. At {}:{} a new chain began after the trail was found {}: records after {after} up to seq {} are not in these files.</p>",
            text(&gap.file.display().to_string()),
            gap.line,
            text(&gap.detected),
            thousands(gap.last_seq)
        );
    }
    out.push_str("</div>\n");
    out
}
