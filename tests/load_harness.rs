//! A smoke run of the load benchmark (`benches/load/run.py --smoke`), so that the harness
//! cannot rot: every row is produced, every request answered as expected, and the memory
//! row fills the per-key stores. No timing is
//! asserted; the figures of a debug build on a busy CI machine mean nothing.
//!
//! Needs python3, wrk and (for the stand-in and proxy rows) nginx; `.ci/run` installs
//! them and sets `SIPGW_REQUIRE_LOAD_TOOLS=1`, which turns a missing tool into a failure.
//! Elsewhere the test is skipped when a tool is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::binaries::build_vendor_sim;

fn has(exe: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(exe).exists())
}

/// Whether every one of `tools` is installed. When one is not, the test fails under
/// `SIPGW_REQUIRE_LOAD_TOOLS=1` (CI) and is skipped elsewhere (`false`).
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|exe| !has(exe)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("SIPGW_REQUIRE_LOAD_TOOLS").is_none(),
        "load tools missing: {missing:?}"
    );
    eprintln!("skipped: {missing:?} not installed (set SIPGW_REQUIRE_LOAD_TOOLS=1 to fail)");
    false
}

/// Runs `benches/load/run.py` with `args` and `--json json`, asserts that it succeeded, and
/// returns the JSON it wrote and what it printed.
fn run_harness(args: &[&std::ffi::OsStr], json: &Path) -> (serde_json::Value, String) {
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/load/run.py"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "run.py {args:?} failed:\n{stdout}\n{stderr}"
    );
    let result = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (result, stdout.into_owned())
}

#[test]
fn the_load_harness_produces_every_row_without_errors() {
    if !tools_present(&["python3", "wrk", "nginx"]) {
        return;
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sipgw")).parent().unwrap();
    build_vendor_sim(bin_dir);
    let json = std::env::temp_dir().join(format!("sipgw-load-smoke-{}.json", std::process::id()));
    let args = ["--smoke", "--no-install", "--bin-dir"].map(std::ffi::OsStr::new);
    let (result, stdout) = run_harness(&[&args[..], &[bin_dir.as_os_str()]].concat(), &json);
    let _ = std::fs::remove_file(&json);

    let rows: Vec<&serde_json::Value> = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .chain(result["fixed_rate"]["rows"].as_array().unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for want in [
        "direct to stand-in",
        "nginx proxy",
        "sipgw",
        "sipgw 401 (bad tokens)",
        "sipgw 401 (a new forgery each time)",
        "sipgw 429 (quota spent)",
    ] {
        assert!(names.contains(&want), "row {want:?} missing: {names:?}");
    }
    assert_eq!(names.len(), 8, "{names:?}");
    for row in &rows {
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(
            row["errors"], 0,
            "unexpected answers or socket errors: {row}"
        );
        // Every row printed in the table.
        let name = row["name"].as_str().unwrap();
        assert!(
            stdout.contains(&format!("| {name} |")),
            "{name} not printed:\n{stdout}"
        );
    }
    // sipgw's own resource figures are there for the gateway rows.
    for row in rows
        .iter()
        .filter(|r| r["name"].as_str().unwrap().starts_with("sipgw"))
    {
        // A row of a few dozen requests may not reach one clock tick of CPU.
        assert!(row["cpu_s_per_10k"].as_f64().unwrap() >= 0.0, "{row}");
        assert!(row["peak_rss_mib"].as_f64().unwrap() > 0.0, "{row}");
    }
    let footprint = &result["footprint"];
    for key in [
        "binary_mib",
        "idle_rss_mib",
        "peak_rss_mib",
        "startup_ms_median",
    ] {
        assert!(footprint[key].as_f64().unwrap() > 0.0, "{key}: {footprint}");
    }
    // The memory row: every change answered as expected, one entry per agent in each
    // per-key store it fills (its figures are for the release run, not asserted here).
    let memory = &result["memory"];
    let agents = memory["agents"].as_u64().unwrap();
    assert!(agents > 0, "{memory}");
    assert_eq!(memory["answered"].as_u64(), Some(agents), "{memory}");
    assert_eq!(memory["errors"], 0, "{memory}");
    assert!(memory["rss_after_mib"].as_f64().unwrap() > 0.0, "{memory}");
    for store in ["agent_quotas", "lockout", "idempotency"] {
        assert_eq!(
            memory["entries"][store].as_u64(),
            Some(agents),
            "{store}: {memory}"
        );
    }
    assert!(stdout.contains("| bytes per agent |"), "{stdout}");
    assert!(stdout.contains("| Target | measured | met |"), "{stdout}");
    assert!(
        stdout.contains("sipgw / nginx proxy throughput"),
        "{stdout}"
    );
}

/// The counting mode (`run.py --count --smoke`): a handful of requests per row under
/// callgrind and under strace. It asserts that every figure is produced and written, never
/// what it is: instruction and syscall counts of a debug build say nothing about a release.
#[test]
fn the_counting_mode_produces_every_figure_of_every_row() {
    if !tools_present(&[
        "python3",
        "nginx",
        "valgrind",
        "callgrind_control",
        "strace",
    ]) {
        return;
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sipgw")).parent().unwrap();
    let dir = common::fresh_dir("count");
    let json = dir.join("count.json");
    // --write-results into a copy of the results file: the counting part is added and the
    // wall-clock part kept.
    let results = dir.join("RESULTS.md");
    let wall_clock = "# Load benchmark results\n\n| Row | req/s |\n|---|---:|\n| sipgw | 1 |\n";
    std::fs::write(&results, wall_clock).unwrap();
    let args = [
        "--count",
        "--smoke",
        "--no-install",
        "--write-results",
        "--results-file",
    ]
    .map(std::ffi::OsStr::new);
    let bin = [std::ffi::OsStr::new("--bin-dir"), bin_dir.as_os_str()];
    let (result, stdout) = run_harness(&[&args[..], &[results.as_os_str()], &bin].concat(), &json);

    let rows = result["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "nginx proxy",
            "sipgw",
            "sipgw 401 (bad tokens)",
            "sipgw 401 (a new forgery each time)",
            "sipgw 403 (another caller's agent)",
            "sipgw 429 (quota spent)",
        ]
    );
    for row in rows {
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        for figure in [
            "instructions_per_request",
            "syscalls_per_request",
            "x_nginx_instructions",
            "x_nginx_syscalls",
        ] {
            assert!(row[figure].as_f64().unwrap() > 0.0, "{figure}: {row}");
        }
        let functions = row["top_functions"].as_array().unwrap();
        assert!(!functions.is_empty(), "{row}");
        for function in functions {
            assert!(!function["name"].as_str().unwrap().is_empty(), "{row}");
            assert!(function["per_request"].as_f64().unwrap() > 0.0, "{row}");
        }
        assert!(!row["top_syscalls"].as_array().unwrap().is_empty(), "{row}");
        let name = row["name"].as_str().unwrap();
        assert!(
            stdout.contains(&format!("| {name} |")),
            "{name} not printed:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("| {name}: top inclusive functions |")),
            "{name}'s functions not printed:\n{stdout}"
        );
    }
    // sipgw's own code is among the success path's top functions (names shortened, but
    // still sipgw's).
    let success = &rows[1]["top_functions"];
    assert!(
        success
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"].as_str().unwrap().contains("sipgw::")),
        "{success}"
    );
    let written = std::fs::read_to_string(&results).unwrap();
    assert!(written.starts_with(wall_clock), "{written}");
    assert!(
        written.contains("## Instructions and syscalls per request"),
        "{written}"
    );
    assert!(
        written.contains("| sipgw 403 (another caller's agent) |"),
        "{written}"
    );
    assert!(
        written.contains("| sipgw: top inclusive functions |"),
        "{written}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
