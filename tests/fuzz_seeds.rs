//! The fuzz targets' committed seeds (`fuzz/corpus/`) replayed under `cargo test`, with the
//! outcome each seed was made for, through the same public functions the targets call: so
//! the seeds stay meaningful as the code changes, and the in-memory audit check
//! (`verify_readers`) is shown to agree with the file-based `verify`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use http::HeaderValue;
use jsonwebtoken::Algorithm;
use sipgw::audit::chain::MacKey;
use sipgw::audit::verify::{Summary, verify, verify_from_any, verify_readers};
use sipgw::auth::AuthError;
use sipgw::auth::verify::{bearer_token, check_header};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_hmac_key() -> MacKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/hmac-key");
    MacKey::from_file_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// An `audit_verify` seed: (later_start, key, the trail's files).
fn audit_seed(name: &str) -> (bool, MacKey, Vec<Vec<u8>>) {
    let data = seed("audit_verify", name);
    let (flags, trail) = data.split_first().unwrap();
    let key = if flags & 2 == 2 {
        fixture_hmac_key()
    } else {
        MacKey::Plain
    };
    let files = trail.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    (flags & 1 == 1, key, files)
}

fn verify_in_memory(
    files: &[Vec<u8>],
    key: &MacKey,
    later_start: bool,
) -> Result<Summary, sipgw::audit::verify::Failure> {
    let trail = files.iter().enumerate().map(|(i, bytes)| {
        let name = PathBuf::from(format!("part-{i}.jsonl"));
        (name, Ok(Cursor::new(bytes.as_slice())))
    });
    verify_readers(trail, key, later_start)
}

#[test]
fn audit_seeds_verify_as_made_and_in_memory_agrees_with_files() {
    let dir = std::env::temp_dir().join(format!("sipgw-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected: [(&str, Result<u64, u64>); 5] = [
        ("demo-plain", Ok(5)),
        ("hmac-rotated", Ok(14)),
        ("hmac-tail-partial", Ok(5)),
        ("hmac-altered", Err(2)),
        ("hmac-line-removed", Err(2)),
    ];
    for (name, expected) in expected {
        let (later_start, key, files) = audit_seed(name);
        let in_memory = verify_in_memory(&files, &key, later_start);
        // The same trail as files on disk, named so that they sort in chain order.
        let paths: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path = dir.join(format!("{name}-{i}.jsonl"));
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        let on_disk = if later_start {
            verify_from_any(&paths, &key)
        } else {
            verify(&paths, &key)
        };
        match (&in_memory, &on_disk, expected) {
            (Ok(a), Ok(b), Ok(records)) => {
                assert_eq!(a, b, "{name}");
                assert_eq!(a.records, records, "{name}");
            }
            (Err(a), Err(b), Err(line)) => {
                assert_eq!((a.line, &a.reason), (b.line, &b.reason), "{name}");
                assert_eq!(a.line, line, "{name}: {a}");
            }
            _ => panic!("{name}: in memory {in_memory:?}, on disk {on_disk:?}"),
        }
    }
    // The tail of a trail is only accepted as such.
    let (_, key, files) = audit_seed("hmac-tail-partial");
    assert!(verify_in_memory(&files, &key, false).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jwt_seeds_pass_or_fail_the_header_checks_as_made() {
    let expected: [(&str, Result<Algorithm, AuthError>); 8] = [
        ("self-service-es256", Ok(Algorithm::ES256)),
        ("admin-es256-lowercase-scheme", Ok(Algorithm::ES256)),
        ("rs256-kid-synthetic", Ok(Algorithm::RS256)),
        ("eddsa-no-kid-synthetic", Ok(Algorithm::EdDSA)),
        ("alg-none", Err(AuthError::AlgorithmNotAllowed)),
        ("hs256", Err(AuthError::AlgorithmNotAllowed)),
        ("jku-header", Err(AuthError::ForbiddenHeader)),
        ("kid-not-string", Err(AuthError::Malformed)),
    ];
    let allowed = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];
    for (name, expected) in expected {
        let value = HeaderValue::from_bytes(&seed("jwt", name)).unwrap();
        let token = bearer_token(Some(&value)).unwrap();
        let got = check_header(token, &allowed).map(|header| header.alg);
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn request_seeds_parse_as_made() {
    for (name, accepted) in [
        ("valid", true),
        ("valid-charset-encoded-at", true),
        ("unicode-escapes", true),
        ("extra-field", false),
        ("duplicate-field", false),
        ("array-body", false),
    ] {
        let data = seed("request", name);
        let body = data.splitn(4, |b| *b == b'\n').nth(3).unwrap();
        assert_eq!(sipgw::request::parse_body(body).is_ok(), accepted, "{name}");
    }
}
