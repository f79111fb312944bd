//! The page's sections after the status (`super::status`), top to bottom, each a function
//! from the counted [`Facts`] (or the trails' checks) to HTML. Every trail value passes through [`text`] here.

use std::fmt::Write as _;

use super::chart;
use super::facts::{CallerCount, Class, Facts, class};
use super::html::{or_dash, text, thousands, when};
use crate::audit::review::{Row, TrailCheck};

/// The headline numbers, each a `<div class="number" data-name=...>`.
pub fn headline(facts: &Facts) -> String {
    let h = &facts.headline;
    let numbers = [
        (
            "changes",
            "Changes",
            h.changes,
            "applied by the vendor (ok)",
        ),
        (
            "vendor-rejections",
            "Vendor rejections",
            h.vendor_rejections,
            "refused by the vendor",
        ),
        (
            "vendor-failures",
            "Vendor errors",
            h.vendor_failures,
            "vendor error or timeout",
        ),
        (
            "refusals",
            "Refusals",
            h.refusals,
            "refused before the vendor",
        ),
        (
            "lockouts",
            "Lockout-shield events",
            h.lockouts,
            "of those, by the lockout shield",
        ),
        ("orphans", "Orphaned attempts", h.orphans, "outcome unknown"),
        (
            "replays",
            "Replays",
            h.replays,
            "answered from a first outcome",
        ),
        (
            "suppressed",
            "Suppressed by flood control",
            h.suppressed,
            "refusals summarized",
        ),
        (
            "failed",
            "Records failing verification",
            h.failed,
            "in every trail given",
        ),
    ];
    let mut out =
        String::from("<section id=\"numbers\">\n<h2>In numbers</h2>\n<div class=\"numbers\">\n");
    for (name, label, value, note) in numbers {
        let alert = if value > 0 && matches!(name, "orphans" | "failed") {
            " alert"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<div class=\"number{alert}\" data-name=\"{name}\"><span class=\"value\">{}</span>\
             <span class=\"label\">{label}</span><span class=\"note\">{note}</span></div>",
            thousands(value)
        );
    }
    out.push_str("</div>\n</section>\n");
    out
}

/// The two charts.
pub fn charts(facts: &Facts) -> String {
    format!(
        "<section id=\"charts\">\n<h2>Over time</h2>\n<h3>Changes per day</h3>\n{}\
         <h3>Refusals per day, by code</h3>\n{}</section>\n",
        chart::bars("changes-chart", &facts.changes_per_day, "changes"),
        chart::bars("refusals-chart", &facts.refusals_per_day, "refusals"),
    )
}

/// The two top-callers lists.
pub fn top_callers(facts: &Facts) -> String {
    format!(
        "<section id=\"callers\">\n<h2>Top callers</h2>\n<div class=\"pair\">\n{}{}</div>\n</section>\n",
        callers_table(
            "top-changes",
            "By changes",
            "changes",
            &facts.top_by_changes
        ),
        callers_table(
            "top-refusals",
            "By refusals",
            "refusals",
            &facts.top_by_refusals
        ),
    )
}

fn callers_table(id: &str, title: &str, what: &str, list: &[CallerCount]) -> String {
    let mut out = format!("<div>\n<h3>{title}</h3>\n");
    if list.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"empty\" id=\"{id}\">No {what} by a known caller.</p>"
        );
    } else {
        let _ = writeln!(
            out,
            "<table id=\"{id}\"><thead><tr><th>Caller (sub)</th><th>Name</th><th>Issuer</th><th>{what}</th></tr></thead><tbody>"
        );
        for entry in list {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                text(&entry.caller.sub),
                or_dash(entry.name.as_deref()),
                text(&entry.caller.iss),
                thousands(entry.count)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</div>\n");
    out
}

/// Lockout-shield events and orphaned attempts.
pub fn incidents(facts: &Facts) -> String {
    let mut out = String::from("<section id=\"incidents\">\n<h2>Lockout-shield events</h2>\n");
    if facts.lockouts.is_empty() {
        out.push_str("<p class=\"empty\" id=\"lockouts\">None in this period.</p>\n");
    } else {
        incident_table(&mut out, "lockouts", &facts.lockouts);
    }
    out.push_str("<h2>Orphaned attempts</h2>\n");
    if facts.orphans.is_empty() {
        out.push_str(
            "<p class=\"empty\" id=\"orphans\">None: every attempt has its outcome.</p>\n",
        );
    } else {
        out.push_str(
            "<p class=\"warning\">Outcome unknown: the vendor may have applied these changes. \
             Check each with the vendor.</p>\n",
        );
        incident_table(&mut out, "orphans", &facts.orphans);
    }
    out.push_str("</section>\n");
    out
}

/// A table of records: time, agent, caller, client, request id.
fn incident_table(out: &mut String, id: &str, rows: &[&Row]) {
    let _ = writeln!(
        out,
        "<table id=\"{id}\"><thead><tr><th>Time</th><th>Agent</th><th>Caller</th>\
         <th>Client</th><th>Request id</th></tr></thead><tbody>"
    );
    for row in rows {
        let r = &row.record;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(&r.ts),
            or_dash(r.agent.as_deref()),
            caller(row),
            or_dash(r.client()),
            or_dash(r.request_id.as_deref())
        );
    }
    out.push_str("</tbody></table>\n");
}

/// One collapsible history per agent.
pub fn agents(facts: &Facts) -> String {
    let mut out = String::from("<section id=\"agents\">\n<h2>Per agent</h2>\n");
    if facts.agents.is_empty() {
        out.push_str("<p class=\"empty\">No agent named in this period.</p>\n");
    }
    for (agent, rows) in &facts.agents {
        let count = |wanted: &[Class]| {
            rows.iter()
                .filter(|row| row.problem.is_none() && wanted.contains(&class(&row.record)))
                .count()
        };
        let mut parts = vec![counted(count(&[Class::Change]), "change")];
        let refused = count(&[Class::Refusal, Class::VendorRejection, Class::VendorFailure]);
        parts.push(counted(refused, "refusal or failure"));
        for (n, what) in [
            (count(&[Class::Attempt]), "outcome unknown"),
            (count(&[Class::Replay]), "replay"),
            (
                rows.iter().filter(|row| row.problem.is_some()).count(),
                "FAILED verification",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let _ = writeln!(
            out,
            "<details class=\"agent\"><summary><span class=\"name\">{}</span>: {}</summary>\n\
             <table><thead><tr><th>Time</th><th>Kind</th><th>Code</th><th>Caller</th><th>Request id</th><th>Mark</th></tr></thead><tbody>",
            text(agent),
            parts.join(", ")
        );
        for row in rows {
            let r = &row.record;
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mark\">{}</td></tr>",
                row_class(row),
                when(&r.ts),
                text(&r.kind),
                or_dash(r.code.as_deref()),
                caller(row),
                or_dash(r.request_id.as_deref()),
                mark(row)
            );
        }
        out.push_str("</tbody></table></details>\n");
    }
    out.push_str("</section>\n");
    out
}

/// Every attempt and outcome, with the filter box.
pub fn records(facts: &Facts, trails: &[TrailCheck]) -> String {
    let total = facts.changes.len();
    // Merged trails (one per replica): a column says which trail each row is from.
    let merged = trails.len() > 1;
    let trail_head = if merged { "<th>Trail</th>" } else { "" };
    let mut out = format!(
        "<section id=\"all\">\n<h2>Every attempt and outcome</h2>\n\
         <p class=\"filter\"><label for=\"filter\">Filter</label> \
         <input id=\"filter\" type=\"search\" placeholder=\"words that every shown row contains\" disabled> \
         <span id=\"shown\">{total} of {total} rows shown</span></p>\n\
         <table id=\"records\"><thead><tr>{trail_head}<th>Time</th><th>Kind</th><th>Code</th><th>Status</th>\
         <th>Agent</th><th>Caller</th><th>Grant</th><th>Client</th><th>Request id</th><th>Mark</th></tr></thead><tbody>\n"
    );
    for row in &facts.changes {
        let r = &row.record;
        let trail = if merged {
            format!("<td>{}</td>", trail_name(trails, row.trail))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr class=\"{}\">{trail}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mark\">{}</td></tr>",
            row_class(row),
            when(&r.ts),
            text(&r.kind),
            or_dash(r.code.as_deref()),
            r.http_status
                .map_or_else(|| "–".to_owned(), |s| s.to_string()),
            or_dash(r.agent.as_deref()),
            caller(row),
            or_dash(r.grant.as_deref()),
            or_dash(r.client()),
            or_dash(r.request_id.as_deref()),
            mark(row)
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
    out
}

/// A trail as a row names it: its instance, else its directory's name, else its number.
fn trail_name(trails: &[TrailCheck], index: usize) -> String {
    let Some(trail) = trails.get(index) else {
        return (index + 1).to_string();
    };
    match (&trail.instance, trail.source.file_name()) {
        (Some(instance), _) => text(instance),
        (None, Some(name)) => text(&name.to_string_lossy()),
        (None, None) => (index + 1).to_string(),
    }
}

/// The caller: `sub`, the display name after it, the issuer as a tooltip.
fn caller(row: &Row) -> String {
    let r = &row.record;
    let Some(sub) = &r.sub else {
        return "<span class=\"anon\">not authenticated</span>".to_owned();
    };
    let name = r
        .caller_name
        .as_deref()
        .map(|name| format!(" <span class=\"callername\">({})</span>", text(name)))
        .unwrap_or_default();
    format!(
        "<span class=\"caller\" title=\"{}\">{}</span>{name}",
        or_dash(r.iss.as_deref()),
        text(sub)
    )
}

/// What a reviewer should notice about a row.
fn mark(row: &Row) -> String {
    let r = &row.record;
    let mut marks = Vec::new();
    if let Some(problem) = &row.problem {
        marks.push(format!("FAILED verification: {}", text(problem)));
    }
    if row.outcome_unknown {
        marks.push("outcome unknown: the vendor may have applied this change".to_owned());
    }
    if let Some(first) = &r.replay_of {
        marks.push(format!("replay of {}", text(first)));
    }
    if r.kind == "outcome" && r.code.as_deref() == Some("lockout_protection") {
        marks.push("lockout shield".to_owned());
    }
    marks.join("; ")
}

fn row_class(row: &Row) -> &'static str {
    if row.problem.is_some() {
        "failed"
    } else if row.outcome_unknown {
        "orphan"
    } else {
        match class(&row.record) {
            Class::Change => "change",
            Class::VendorRejection | Class::VendorFailure => "vendor",
            Class::Refusal => "refusal",
            Class::Replay => "replay",
            Class::Attempt | Class::Other => "attempt",
        }
    }
}

/// `1 change`, `2 changes`.
fn counted(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "refusal or failure") => format!("{n} refusals or failures"),
        _ => format!("{n} {what}s"),
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
