//! A production build (`cargo build --no-default-features`, as `deploy/Dockerfile` runs it)
//! has no development commands and links none of the development tools: no `demo`, no
//! `dev-token`, no vendor simulator, no issuer that forges tokens.
//!
//! The binary is built once, in the debug profile, into a target directory of this test's
//! own (under `CARGO_TARGET_TMPDIR`), so the binaries the other tests run are left alone;
//! every assertion below reuses it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// What `sipgw` prints for a subcommand it does not have (clap's wording).
const UNRECOGNIZED: &str = "unrecognized subcommand";

/// The `sipgw` binary built without default features (once per test run).
fn production_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("production-build");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--locked", "--quiet", "--no-default-features"])
            .args(["--package", "sipgw", "--bin", "sipgw", "--target-dir"])
            .arg(&target_dir)
            .output()
            .expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build --no-default-features failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target_dir.join("debug").join("sipgw")
    })
}

fn run(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", binary.display()))
}

/// The subcommand names of `sipgw --help` (the first word of each "Commands:" line).
fn commands(binary: &Path) -> Vec<String> {
    let output = run(binary, &["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_lists_the_production_commands_only() {
    let listed = commands(production_binary());
    for command in ["serve", "check-config", "audit"] {
        assert!(listed.iter().any(|c| c == command), "{command}: {listed:?}");
    }
    for command in ["demo", "dev-token"] {
        assert!(
            !listed.iter().any(|c| c == command),
            "{command}: {listed:?}"
        );
    }
    // The same reading of the default build (the binary the other tests run) does find
    // them, so the absence above is not an artefact of the parsing.
    let default = commands(Path::new(env!("CARGO_BIN_EXE_sipgw")));
    for command in ["demo", "dev-token"] {
        assert_eq!(
            default.iter().any(|c| c == command),
            cfg!(feature = "dev"),
            "{command} in the default build: {default:?}"
        );
    }
}

#[test]
fn development_commands_are_unrecognized() {
    let binary = production_binary();
    for args in [
        &["demo"][..],
        &["dev-token", "--key-file", "k.pem", "--sub", "x"],
    ] {
        let output = run(binary, args);
        // clap's usage error: exit status 2, nothing on stdout.
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{UNRECOGNIZED} '{}'", args[0])),
            "{args:?}: {stderr}"
        );
    }
    // The production commands are still there.
    for args in [
        &["serve", "--help"][..],
        &["check-config", "--help"],
        &["audit", "--help"],
    ] {
        let output = run(binary, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
}

#[test]
fn no_development_tool_is_linked() {
    let bytes = std::fs::read(production_binary()).expect("read the binary");
    // Messages that only the simulator and the development issuer carry.
    for marker in [
        "simulated fault: connection dropped without a response",
        "simulated identity provider failure",
        "sipgw-vendor-sim",
    ] {
        assert!(
            !bytes
                .windows(marker.len())
                .any(|window| window == marker.as_bytes()),
            "the production binary holds {marker:?}"
        );
    }
}
