//! promtool (Debian package `prometheus`): found on `PATH`, or skipped with a message
//! unless `SIPGW_REQUIRE_LOAD_TOOLS` makes its absence a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// promtool's path, or `None` (with a message) when it is missing and not required.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SIPGW_REQUIRE_LOAD_TOOLS").is_none(),
            "SIPGW_REQUIRE_LOAD_TOOLS is set but promtool is not installed \
             (Debian package `prometheus`)"
        );
        eprintln!("skipped: promtool not installed (set SIPGW_REQUIRE_LOAD_TOOLS=1 to fail)");
    }
    found
}

/// Runs promtool with `args` in `dir`, `stdin` fed to it; panics with its output on failure.
pub fn run_promtool(promtool: &Path, dir: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}
