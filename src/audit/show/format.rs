//! `show`'s three outputs and its status lines. Every value from a record is untrusted
//! text (a `sub` is whatever the identity provider issued, and a trail may have been
//! edited): the table and CSV cells go through [`escape`], the JSON through
//! [`crate::terminal::escape_json`].

use serde_json::{Value, json};

use crate::audit::review::{Review, Row};
use crate::terminal::{escape, escape_json};

/// The table's column names.
const HEADER: [&str; 10] = [
    "TIME",
    "KIND",
    "CODE",
    "STATUS",
    "AGENT",
    "CALLER",
    "GRANT",
    "CLIENT",
    "REQUEST ID",
    "MARK",
];

/// The table: its header line, then one line per row, each column as wide as its widest
/// cell (issuers and forwarded addresses vary too much for fixed widths).
pub fn table<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<String> {
    let header = HEADER.map(str::to_owned);
    let lines: Vec<[String; 10]> = std::iter::once(header)
        .chain(rows.into_iter().map(table_cells))
        .collect();
    let mut widths = [0; 9];
    for cells in &lines {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    lines.iter().map(|cells| line(cells, &widths)).collect()
}

/// One row's cells: time, kind, code, HTTP status, agent, caller (`sub "name"
/// <issuer>`), grant, client (the forwarded address, else the peer), request id, and the
/// marks ([`marks`]). Absent values are `-`; every cell is escaped.
fn table_cells(row: &Row) -> [String; 10] {
    let record = &row.record;
    let cell = |value: Option<&str>| escape(value.unwrap_or("-")).into_owned();
    let status = record.http_status.map(|s| s.to_string());
    [
        cell(Some(record.ts.as_str()).filter(|ts| !ts.is_empty())),
        cell(Some(record.kind.as_str()).filter(|kind| !kind.is_empty())),
        cell(record.code.as_deref()),
        cell(status.as_deref()),
        cell(record.agent.as_deref()),
        escape(&caller(row)).into_owned(),
        cell(record.grant.as_deref()),
        cell(record.client()),
        cell(record.request_id.as_deref()),
        escape(&marks(row).join("; ")).into_owned(),
    ]
}

/// Cells padded to their column's width, two spaces apart; the last one as it is.
fn line(cells: &[String; 10], widths: &[usize; 9]) -> String {
    let mut out = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        out.push_str(&format!("{cell:<width$}  "));
    }
    out.push_str(&cells[9]);
    out.trim_end().to_owned()
}

/// `sub "name" <issuer>`, as far as they are known.
fn caller(row: &Row) -> String {
    let record = &row.record;
    let mut parts = vec![record.sub.clone().unwrap_or_else(|| "-".into())];
    if let Some(name) = &record.caller_name {
        parts.push(format!("\"{name}\""));
    }
    if let Some(iss) = &record.iss {
        parts.push(format!("<{iss}>"));
    }
    parts.join(" ")
}

/// What a reviewer must notice about a row: `FAILED: reason` (it failed verification),
/// `outcome unknown` (an attempt no outcome answers), `replay of R` (an idempotent
/// replay of request R).
pub fn marks(row: &Row) -> Vec<String> {
    let mut marks = Vec::new();
    if let Some(problem) = &row.problem {
        marks.push(format!("FAILED: {problem}"));
    }
    if row.outcome_unknown {
        marks.push("outcome unknown".into());
    }
    if let Some(first) = &row.record.replay_of {
        marks.push(format!("replay of {first}"));
    }
    marks
}

/// One JSON line: the record as parsed, plus `_verified`, `_problem` (null when
/// verified), `_outcomeUnknown`, `_trail` (its directory), `_file` and `_line`. A line
/// that is not a JSON object is given as `_text`.
pub fn json_line(review: &Review, row: &Row) -> String {
    let mut object = match &row.record.raw {
        Value::Object(map) => map.clone(),
        other => serde_json::Map::from_iter([("_text".to_owned(), other.clone())]),
    };
    let source = &review.trails[row.trail].source;
    let envelope = json!({
        "_verified": row.problem.is_none(),
        "_problem": row.problem,
        "_outcomeUnknown": row.outcome_unknown,
        "_trail": source.to_string_lossy(),
        "_file": row.file.to_string_lossy(),
        "_line": row.line,
    });
    if let Value::Object(envelope) = envelope {
        object.extend(envelope);
    }
    escape_json(&Value::Object(object).to_string()).into_owned()
}

/// The CSV header row.
pub fn csv_header() -> String {
    [
        "time",
        "kind",
        "code",
        "httpStatus",
        "agent",
        "sub",
        "callerName",
        "iss",
        "grant",
        "client",
        "requestId",
        "replayOf",
        "traceId",
        "instance",
        "seq",
        "verified",
        "problem",
        "outcomeUnknown",
        "file",
        "line",
    ]
    .join(",")
}

/// One CSV row (RFC 4180; the caller adds the CRLF), in [`csv_header`]'s columns; absent
/// values are empty cells.
pub fn csv_row(row: &Row) -> String {
    let record = &row.record;
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let text = |s: Option<&str>| s.unwrap_or_default().to_owned();
    let cells = [
        record.ts.clone(),
        record.kind.clone(),
        text(record.code.as_deref()),
        number(record.http_status.map(u64::from)),
        text(record.agent.as_deref()),
        text(record.sub.as_deref()),
        text(record.caller_name.as_deref()),
        text(record.iss.as_deref()),
        text(record.grant.as_deref()),
        text(record.client()),
        text(record.request_id.as_deref()),
        text(record.replay_of.as_deref()),
        text(record.trace_id.as_deref()),
        text(record.instance.as_deref()),
        number(Some(record.seq)),
        row.problem.is_none().to_string(),
        text(row.problem.as_deref()),
        row.outcome_unknown.to_string(),
        row.file.to_string_lossy().into_owned(),
        row.line.to_string(),
    ];
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// A CSV cell: control characters made visible (a CSV is read in terminals too), a
/// leading `=`, `+`, `-` or `@` defused with `'` (a spreadsheet would run it as a
/// formula: OWASP "CSV injection"), then quoted as RFC 4180 asks when needed.
pub fn csv_cell(value: &str) -> String {
    let mut cell = escape(value).into_owned();
    if cell.starts_with(['=', '+', '-', '@']) {
        cell.insert(0, '\'');
    }
    if cell.contains([',', '"', '\n', '\r']) || cell.starts_with(' ') || cell.ends_with(' ') {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// One trail's status line for stderr: intact, or how many records failed (the first
/// named), or its discontinuities; its records, seqs and last checkpoint.
pub fn trail_status(review: &Review, index: usize) -> String {
    let trail = &review.trails[index];
    let mut name = escape(&trail.source.display().to_string()).into_owned();
    if let Some(instance) = &trail.instance {
        name.push_str(&format!(" (instance {})", escape(instance)));
    }
    let verdict = match (trail.failures.first(), trail.discontinuities.is_empty()) {
        (Some(first), _) => format!(
            "FAILED: {} of {} records fail verification (first {}:{}: {})",
            trail.failures.len(),
            trail.records,
            escape(&first.file.display().to_string()),
            first.line,
            escape(&first.reason)
        ),
        (None, true) => "intact".to_owned(),
        (None, false) => format!(
            "DISCONTINUITY: records were lost before {} new chain(s)",
            trail.discontinuities.len()
        ),
    };
    let seqs = match (trail.first_seq, trail.last_seq) {
        (Some(first), Some(last)) => format!("seq {first}..{last}"),
        _ => "no seq".to_owned(),
    };
    let checkpoint = trail
        .last_checkpoint
        .map_or_else(|| "none".to_owned(), |seq| format!("seq {seq}"));
    let mut status = format!(
        "trail {name}: {verdict}; {} records in {} file(s), {seqs}, last checkpoint {checkpoint}",
        trail.records,
        trail.files.len(),
    );
    for gap in &trail.discontinuities {
        status.push_str(&format!("\n  {gap}"));
    }
    status
}
