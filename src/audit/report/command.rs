//! The command: read and check the trails, render, write the page atomically; the verdict
//! is the exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Options, render};
use crate::audit::chain::UNKEYED_WARNING;
use crate::audit::show::{self, TrailArgs};
use crate::audit::{anchor, review, verify};
use crate::terminal::escape;

/// Exit status for unreadable input, bad usage, or an output that cannot be written.
const EXIT_UNUSABLE: u8 = 2;
const CONTEXT: &str = "sipgw audit report";

/// What `sipgw audit report` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The trails, their key, and the period the page covers.
    pub trails: TrailArgs,
    /// The page to write.
    pub output: PathBuf,
    /// `--anchor` arguments: checkpoint lines, or files of them or of sipgw's JSON logs.
    pub anchors: Vec<String>,
}

/// Runs `sipgw audit report`. Once the page is written, the verdict is `audit show`'s: 0
/// every trail intact, 1 a record failed verification (or, with `--anchor`, a trail no
/// longer holds its anchor), 3 intact but with discontinuities; 2 when nothing was
/// written (unreadable input or anchor file, bad usage, an unwritable output).
pub fn run(request: &Request) -> ExitCode {
    match report(request) {
        Ok(status) => {
            let verdict = match status {
                0 => "every trail intact",
                show::EXIT_DISCONTINUITY => {
                    "intact, but records were lost before a new chain began (see the top of the page)"
                }
                _ => "FAILED verification (see the top of the page)",
            };
            eprintln!(
                "{CONTEXT}: wrote {}: {verdict}",
                escape(&request.output.display().to_string())
            );
            ExitCode::from(status)
        }
        Err(error) => {
            eprintln!("{CONTEXT}: {}", escape(&error));
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// Writes the page; the verdict on the trails as `audit show` gives it, or what made
/// writing impossible.
fn report(request: &Request) -> Result<u8, String> {
    let trails = &request.trails;
    let key = trails.key()?;
    if !key.is_keyed() {
        // Said here as on the page: without the key, the check proves little.
        eprintln!("{CONTEXT}: warning: {UNKEYED_WARNING}");
    }
    let inputs = verify::expand(&trails.paths).map_err(|e| e.to_string())?;
    if inputs.is_empty() {
        return Err("no trail files found".to_owned());
    }
    // Unreadable input is bad usage (2), not a trail that failed verification (1).
    for input in &inputs {
        std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    }
    refuse_overwriting(&request.output, &trails.paths, &inputs)?;
    let anchors = if request.anchors.is_empty() {
        Vec::new()
    } else {
        anchor::load(&request.anchors)?
    };
    let review = review::load(&trails.paths, &key, trails.partial).map_err(|e| e.to_string())?;
    let checks = if anchors.is_empty() {
        Vec::new()
    } else {
        review
            .trails
            .iter()
            .map(|trail| anchor::check(&trail.files, &anchors, &key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?
    };
    let unanchored = checks.iter().any(anchor::Check::failed);
    let page = render(
        &review,
        &Options {
            period: trails.period,
            generated: jiff::Timestamp::now(),
            anchors: checks,
        },
    );
    write_atomically(&request.output, page.as_bytes())
        .map_err(|e| format!("--output {}: {e}", request.output.display()))?;
    Ok(if unanchored {
        show::EXIT_FAILED
    } else {
        show::exit_status(&review)
    })
}

/// The page must never replace a trail file, nor land among a trail's files where the
/// next `verify` of that directory would read it.
fn refuse_overwriting(output: &Path, paths: &[PathBuf], inputs: &[PathBuf]) -> Result<(), String> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if inputs.iter().any(|input| same(output, input)) {
        return Err(format!(
            "--output {} is one of the trail's files; it is never overwritten",
            output.display()
        ));
    }
    let in_trail_dir = output.extension().is_some_and(|e| e == "jsonl")
        && output
            .parent()
            .is_some_and(|dir| paths.iter().any(|p| p.is_dir() && same(p, dir)));
    if in_trail_dir {
        return Err(format!(
            "--output {} would become one of the trail's files",
            output.display()
        ));
    }
    Ok(())
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk, then renames it
/// over `path`: a reader sees the old page or the whole new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("names no file"))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(temporary);
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt as _;
        // The page names callers and agents: readable by its owner only, like the trail
        // by default (a reviewer shares it on purpose, not by umask).
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sipgw-report-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_page_replaces_an_old_one_whole_and_leaves_no_temporary_file() {
        let dir = dir("atomic");
        let page = dir.join("report.html");
        std::fs::write(&page, "old").unwrap();
        write_atomically(&page, b"new page").unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "new page");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&page).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the page is its owner's only");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.html"]);
        // A directory that does not exist: an error, and nothing left behind.
        assert!(write_atomically(&dir.join("missing/report.html"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_trail_file_is_never_the_output() {
        let dir = dir("overwrite");
        let trail = dir.join("sipgw-audit.jsonl");
        std::fs::write(&trail, "{}\n").unwrap();
        let inputs = [trail.clone()];
        let given = [dir.clone()];
        assert!(refuse_overwriting(&trail, &given, &inputs).is_err());
        // The same file by another spelling.
        let other = dir.join(".").join("sipgw-audit.jsonl");
        assert!(refuse_overwriting(&other, &given, &inputs).is_err());
        // A new `.jsonl` in the trail's directory would join the trail.
        assert!(refuse_overwriting(&dir.join("report.jsonl"), &given, &inputs).is_err());
        assert!(refuse_overwriting(&dir.join("report.html"), &given, &inputs).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
