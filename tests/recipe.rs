//! The manual recipe of docs/operating.md ("Try it by hand") run as written, so the doc
//! cannot drift from what works: its `sh` block is taken from the page and run by bash,
//! with three substitutions, all here:
//!
//! - the built `sipgw` and `sipgw-vendor-sim` come first on `PATH` (the doc says to put
//!   `target/debug` there);
//! - the working directory is a fresh one holding a copy of `config/local.toml` (the doc
//!   runs from the repository root, whose `config/` it reads and whose `local/` it writes);
//! - the fixed addresses `127.0.0.1:8080`, `:9090` and `:9443`, in the block and in the
//!   config, become free ports (tests never take a fixed port).
//!
//! The block polls `/readyz` itself (its step 4). The test asserts what the doc says each
//! step prints, and reads the audit record the change left.

// `sipgw dev-token`, which the recipe runs, is a development command.
#![cfg(feature = "dev")]

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::binaries::build_vendor_sim;
use common::fresh_dir;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
/// How long the whole recipe may take before the test gives up (only a failure waits).
const PATIENCE: Duration = Duration::from_secs(120);
/// The addresses the recipe and `config/local.toml` use: API, admin, simulator.
const FIXED: [&str; 3] = ["127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:9443"];

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first `sh` block under `## heading` in `page`.
fn shell_block(page: &str, heading: &str) -> String {
    let section = page
        .split_once(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no sh block under {heading}"))
        .0;
    block.to_owned()
}

/// `text` with each fixed address replaced by its free one.
fn on_free_ports(text: &str, free: &[String; 3]) -> String {
    FIXED
        .iter()
        .zip(free)
        .fold(text.to_owned(), |text, (fixed, free)| {
            text.replace(fixed, free)
        })
}

/// A free loopback address, from the kernel (released at once for the recipe to bind).
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The recipe's bash, by process group (its own): on drop the whole group is killed, so a
/// failing test leaves no simulator or gateway behind.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn the_manual_recipe_runs_as_written() {
    let bin_dir = Path::new(SIPGW).parent().unwrap();
    build_vendor_sim(bin_dir);
    let free = [free_addr(), free_addr(), free_addr()];
    let block = shell_block(&repo_file("docs/operating.md"), "Try it by hand");
    for fixed in FIXED {
        assert!(block.contains(fixed), "the recipe no longer uses {fixed}");
    }
    let dir = fresh_dir("recipe");
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let config = on_free_ports(&repo_file("config/local.toml"), &free);
    std::fs::write(dir.join("config/local.toml"), config).unwrap();
    let stdout_path = dir.join("recipe.out");
    let stderr_path = dir.join("recipe.err");

    let path = std::env::var("PATH").unwrap_or_default();
    let mut bash = Command::new("bash")
        .args(["-e", "-u", "-c", &on_free_ports(&block, &free)])
        .current_dir(&dir)
        .env("PATH", format!("{}:{path}", bin_dir.display()))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = Group(bash.id());
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(bash.wait().unwrap()));
    let status = exited.recv_timeout(PATIENCE).ok();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("the recipe did not finish:\n{stdout}\n{stderr}"));
    assert!(status.success(), "{status}:\n{stdout}\n{stderr}");

    // Step 4: ready; step 5: the change went through; step 6: the trail shows it.
    assert!(
        stdout.contains(r#"{"degraded":[],"status":"ready"}"#),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains(r#""resultCode":"0""#), "{stdout}\n{stderr}");
    assert!(stdout.contains(" HTTP 200\n"), "{stdout}\n{stderr}");
    let shown = stdout
        .lines()
        .find(|l| l.contains("outcome") && l.contains("a1001"));
    let shown = shown.unwrap_or_else(|| panic!("audit show lists no outcome: {stdout}"));
    assert!(shown.contains(" ok ") && shown.contains("200"), "{shown}");
    // The record itself, where config/local.toml puts the trail.
    let trail = std::fs::read_to_string(dir.join("local/audit/sipgw-audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcome = records
        .iter()
        .find(|r| r["kind"] == "outcome" && r["agent"] == "a1001");
    let outcome = outcome.unwrap_or_else(|| panic!("no outcome record: {trail}"));
    assert_eq!(outcome["code"], "ok", "{outcome}");
    assert_eq!(outcome["caller"]["sub"], "alice", "{outcome}");
    // Step 7: the gateway drained and sealed the trail on its way out.
    assert!(stderr.contains("all connections drained"), "{stderr}");
    assert!(
        records.last().is_some_and(|r| r["kind"] == "checkpoint"),
        "{trail}"
    );
    // The token and the app secret stay out of the gateway's log.
    let token = std::fs::read_to_string(dir.join("local/alice.jwt")).unwrap();
    assert!(!stderr.contains(token.trim()), "the token was logged");
    assert!(
        !stderr.contains("demo-app-secret"),
        "the app secret was logged"
    );
}
