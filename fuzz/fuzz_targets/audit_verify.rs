//! Audit-line parsing and `sipgw audit verify` (`src/audit/verify.rs`, `record.rs`) on a
//! trail held in memory, through the same check the file-based verify runs.
//!
//! Input: one flag byte, then the trail: its files (rotations) separated by NUL bytes,
//! which a record never holds. Flag bit 0: accept a trail that starts after seq 1
//! (`--partial`); bit 1: records are sealed with the HMAC key of `fuzz/fixtures/hmac-key`
//! rather than plain SHA-256.

#![no_main]

use std::io::Cursor;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use sipgw::audit::chain::MacKey;
use sipgw::audit::record::{seal, unseal};
use sipgw::audit::review::{Record, Row};
use sipgw::audit::show::table;
use sipgw::audit::verify::{Failure, Summary, verify_readers};
use sipgw::terminal::is_unsafe;

/// `fuzz/fixtures/hmac-key`, without its line end.
const HMAC_KEY: &[u8] = b"fuzz-hmac-key-0123456789abcdef";

fn hmac_key() -> MacKey {
    MacKey::from_file_bytes(HMAC_KEY).expect("a long enough key")
}

fn verify(files: &[&[u8]], key: &MacKey, later_start: bool) -> Result<Summary, Failure> {
    let trail = files.iter().enumerate().map(|(i, bytes)| {
        (
            PathBuf::from(format!("part-{i}.jsonl")),
            Ok(Cursor::new(*bytes)),
        )
    });
    verify_readers(trail, key, later_start)
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, trail)) = data.split_first() else {
        return;
    };
    let later_start = flags & 1 == 1;
    let (key, other_key) = if flags & 2 == 2 {
        (hmac_key(), MacKey::Plain)
    } else {
        (MacKey::Plain, hmac_key())
    };
    let files: Vec<&[u8]> = trail.split(|b| *b == 0).collect();
    let lines: Vec<&[u8]> = files
        .iter()
        .flat_map(|file| file.split_inclusive(|b| *b == b'\n'))
        .collect();

    let summary = match verify(&files, &key, later_start) {
        Ok(summary) => summary,
        Err(failure) => {
            // The failure names a line that exists (files in memory always open).
            let index: usize = failure
                .file
                .to_str()
                .and_then(|name| name.strip_prefix("part-"))
                .and_then(|rest| rest.strip_suffix(".jsonl"))
                .and_then(|i| i.parse().ok())
                .expect("the failure names one of the files");
            let in_file = files[index].split_inclusive(|b| *b == b'\n').count() as u64;
            assert!(
                (1..=in_file).contains(&failure.line),
                "failure at line {} of a {in_file}-line file: {failure}",
                failure.line
            );
            return;
        }
    };

    // Every line was checked, and each one is a sealed record that seals back to itself.
    assert_eq!(summary.records, lines.len() as u64);
    assert_eq!(summary.files, files.len());
    for line in &lines {
        let text = std::str::from_utf8(line).expect("accepted lines are UTF-8");
        let text = text
            .strip_suffix('\n')
            .expect("accepted lines end with a line end");
        let (unsealed, mac) = unseal(text).expect("accepted lines are sealed");
        assert_eq!(seal(&unsealed, mac), text, "seal(unseal(line)) differs");
        let record: serde_json::Value =
            serde_json::from_str(text).expect("accepted lines are JSON");
        // As `audit show` prints it: one line per row, nothing a terminal would obey.
        let row = Row {
            trail: 0,
            file: PathBuf::from("part-0.jsonl"),
            line: 1,
            problem: None,
            outcome_unknown: false,
            record: Record::from_value(record),
        };
        for shown in table([&row]) {
            assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        }
    }
    if !later_start {
        // A whole trail starts at seq 1, or with a new chain that names what it lost.
        assert!(
            summary.records == 0
                || summary.first_seq == 1
                || !summary.discontinuities.is_empty()
        );
    }
    // The same bytes verify the same way again, and with --partial too.
    assert_eq!(verify(&files, &key, later_start).as_ref(), Ok(&summary));
    assert_eq!(verify(&files, &key, true).as_ref(), Ok(&summary));
    // The chain is bound to the key: another key accepts no record of it.
    if summary.records > 0 {
        assert!(
            verify(&files, &other_key, later_start).is_err(),
            "the wrong key verified"
        );
    }
    // Any whole-record prefix of the last file is an intact trail too (a trail is only
    // ever appended to), and cutting into a record's line end is noticed.
    let last = files.last().expect("split yields at least one part");
    if let Some(last_line) = last.split_inclusive(|b| *b == b'\n').last() {
        let head = &last[..last.len() - last_line.len()];
        let mut shorter = files.clone();
        *shorter.last_mut().expect("non-empty") = head;
        let cut = verify(&shorter, &key, later_start).expect("a prefix verifies");
        assert_eq!(cut.records, summary.records - 1);
        *shorter.last_mut().expect("non-empty") = &last[..last.len() - 1];
        assert!(
            verify(&shorter, &key, later_start).is_err(),
            "a cut line verified"
        );
    }
});
