//! JSON text written straight into a line's bytes. Strings are escaped exactly as
//! `serde_json` escapes them (the lines stay what `tracing-subscriber`'s JSON format
//! wrote), and a string is always closed, whatever its value holds or however its `Debug`
//! ends, so every line is valid JSON.

use std::fmt;

/// Hex digits of a `\u00XX` escape, lower case as `serde_json` writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `value` as a JSON string.
pub(super) fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    escape(out, value);
    out.push(b'"');
}

/// Writes `value`'s `Debug` text as a JSON string. A `Debug` that fails part-way leaves
/// what it wrote so far, still a closed string.
pub(super) fn debug_string(out: &mut Vec<u8>, value: &dyn fmt::Debug) {
    out.push(b'"');
    let _ = fmt::write(&mut Escaping(out), format_args!("{value:?}"));
    out.push(b'"');
}

/// Writes a number, a bool or a byte slice as `serde_json` does (a NaN or an infinity
/// becomes `null`, bytes an array of numbers).
pub(super) fn scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Into a Vec nothing can fail: these types always serialise.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// For each byte, how a JSON string writes it: 0 as itself, `u` as `\u00XX`, any other
/// letter or sign as a backslash and that letter or sign. That is `"` and `\`, and every
/// control character (the short forms where JSON has them); non-ASCII and DEL stand for
/// themselves, as in `serde_json`.
static ESCAPES: [u8; 256] = {
    let mut escapes = [0; 256];
    let mut byte = 0;
    while byte < 0x20 {
        escapes[byte] = b'u';
        byte += 1;
    }
    escapes[0x08] = b'b';
    escapes[0x09] = b't';
    escapes[0x0a] = b'n';
    escapes[0x0c] = b'f';
    escapes[0x0d] = b'r';
    escapes[b'"' as usize] = b'"';
    escapes[b'\\' as usize] = b'\\';
    escapes
};

/// Writes `text` escaped for the inside of a JSON string ([`ESCAPES`]), copying the runs
/// between escapes whole.
fn escape(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[plain..at]);
        plain = at + 1;
        if escape == b'u' {
            let high = HEX[usize::from(byte >> 4)];
            let low = HEX[usize::from(byte & 0xf)];
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&bytes[plain..]);
}

/// `Debug` output escaped on its way into the line, without an intermediate `String`.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_char: String = (0u8..=0x7f).map(char::from).collect();
        every_char.push_str("é€😀\u{2028}\u{202e}\u{9b}");
        for value in ["", "plain", "a\"b\\c", "\u{1b}[31m", &every_char] {
            assert_eq!(escaped(value), serde_json::to_string(value).unwrap());
        }
    }

    #[test]
    fn a_failing_debug_still_closes_its_string() {
        struct Half;
        impl fmt::Debug for Half {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("half \"quoted")?;
                Err(fmt::Error)
            }
        }
        let mut out = Vec::new();
        debug_string(&mut out, &Half);
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "half \"quoted");
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        for value in [41.7, 1.0, -0.0, 1e300, f64::NAN, f64::INFINITY] {
            let mut out = Vec::new();
            scalar(&mut out, &value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
        let mut out = Vec::new();
        scalar(&mut out, &b"ab"[..]);
        assert_eq!(out, b"[97,98]");
    }
}
