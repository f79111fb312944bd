//! Escaping for the page: every value from a trail is attacker-reachable text (a `sub` may
//! be `<script>`), so it goes through [`text`] before it meets HTML, and data for the page's
//! script through [`json_for_script`].

use std::fmt::Write as _;

use aws_lc_rs::digest;
use base64::Engine as _;

use crate::terminal;

/// `value` as HTML text or attribute content: the characters HTML gives meaning to become
/// references, and the controls a terminal would also hide (bidi overrides, C0/C1) become
/// visible escapes first, so that a value cannot read differently from what it is.
pub fn text(value: &str) -> String {
    let visible = terminal::escape(value);
    let mut out = String::with_capacity(visible.len());
    for c in visible.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An optional value as text, `–` when absent.
pub fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "–".to_owned(), text)
}

/// JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&` (and the
/// line separators JavaScript once treated as line ends) become `\u` escapes, so no value
/// can close the element or open a comment; `JSON.parse` reads the same data back.
pub fn json_for_script(value: &serde_json::Value) -> String {
    let json = value.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The CSP source for an inline script: `'sha256-<base64 of SHA-256 of its text>'`.
pub fn script_hash(script: &str) -> String {
    let digest = digest::digest(&digest::SHA256, script.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// The page's Content-Security-Policy: nothing may load from anywhere (no fetch, no
/// image, no font, no frame, no form target); only the page's own script, by hash, runs.
pub fn content_security_policy(script: &str) -> String {
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {}; \
         base-uri 'none'; form-action 'none'",
        script_hash(script)
    )
}

/// `n` with thousands separators: 1,204.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A record time as a reviewer reads it: `3 Dec 2026 05:18:26 UTC`; the raw text (escaped)
/// when it does not parse.
pub fn when(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(time) => time.strftime("%-d %b %Y %H:%M:%S UTC").to_string(),
        Err(_) => text(ts),
    }
}

/// A record time's day only: `3 Dec 2026`.
pub fn day(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(time) => time.strftime("%-d %b %Y").to_string(),
        Err(_) => text(ts),
    }
}
