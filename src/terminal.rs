//! Text that may reach a terminal (issue 11, finding 7).
//!
//! The audit trail, log lines and config errors can echo what a client or an identity
//! provider chose: a `sub` claim, a URL path. Printed raw, an ESC or CSI sequence in one
//! can recolour, move the cursor, retitle the window or hide lines on a reviewer's
//! terminal, and Unicode bidi controls can make text read differently from what it is
//! ("Trojan Source", CVE-2021-42574). So every human-readable output that can hold
//! untrusted text passes it through [`escape`] first, which writes these characters as
//! visible escapes such as `\u{1b}`:
//!
//! - C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls (U+0080–U+009F);
//! - the bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the
//!   bidi marks (U+200E, U+200F, U+061C);
//! - the line and paragraph separators (U+2028, U+2029).
//!
//! The escape is for display only: a backslash is not itself escaped, so the form cannot
//! be turned back into the original with certainty. JSON output instead uses [`escape_json`],
//! which keeps the document valid and its values unchanged.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

/// Whether `c` must not reach a terminal raw.
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{61c}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `text` with every unsafe character (line ends and tabs included) written as `\u{..}`:
/// for one-line output such as a table cell, an error message or a log field.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, |_| false)
}

/// Like [`escape`], but line ends and tabs are kept: for multi-line output (an effective
/// configuration) whose structure is made of them.
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_except(text, |c| c == '\n' || c == '\t')
}

/// A serialized JSON value with the unsafe characters that JSON allows raw (C1, DEL, bidi
/// controls, U+2028/2029: serde_json escapes only C0) written as JSON `\uXXXX` escapes.
/// They can only occur inside strings, so the document stays valid and means the same.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn escape_except(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe(c) && !keep(c);
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `text` to stdout and returns `status`; see [`write_failed`] for what a failed
/// write returns instead. For the commands that print one result (`check-config`,
/// `audit verify`, `dev-token`).
pub fn print_all(context: &str, text: &str, status: ExitCode) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => status,
        Err(error) => write_failed(context, &error, status),
    }
}

/// The exit status after writing to stdout failed. A reader that went away (`| head -1`:
/// EPIPE, since Rust ignores SIGPIPE) asked for no more: the command ends quietly with the
/// status it had anyway (`println!` would panic and exit 101). Any other failure (a full
/// disk behind a redirect) is reported and fails the command.
pub fn write_failed(context: &str, error: &std::io::Error, status: ExitCode) -> ExitCode {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        status
    } else {
        eprintln!("{context}: cannot write the output: {error}");
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_made_visible() {
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("a\u{9b}2Jb"), "a\\u{9b}2Jb");
        assert_eq!(escape("x\u{202e}y\u{2066}z"), "x\\u{202e}y\\u{2066}z");
        assert_eq!(
            escape("l1\nl2\r\tx\u{7f}"),
            "l1\\u{a}l2\\u{d}\\u{9}x\\u{7f}"
        );
        assert_eq!(
            escape("\u{2028}\u{2029}\u{200f}"),
            "\\u{2028}\\u{2029}\\u{200f}"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["alice", "agent.one@corp-x", "Zoë 東京 🙂", ""] {
            assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn line_structure_can_be_kept() {
        assert_eq!(
            escape_keeping_lines("[a]\nk = \"v\u{1b}\"\n\tx"),
            "[a]\nk = \"v\\u{1b}\"\n\tx"
        );
    }

    #[test]
    fn json_stays_valid_and_equal() {
        let value = serde_json::json!({"sub": "a\u{1b}b\u{9b}c\u{202e}d\u{2028}"});
        let text = value.to_string();
        let escaped = escape_json(&text);
        assert!(!escaped.chars().any(is_unsafe), "{escaped}");
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }
}
