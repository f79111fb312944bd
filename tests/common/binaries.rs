//! The development crate's binaries for tests that run them as processes.

use std::path::Path;
use std::process::Command;

/// Builds `sipgw-vendor-sim` (the `sipgw-dev` crate's binary) beside `sipgw` in `bin_dir`:
/// cargo builds only this package's binaries for its tests. Quick when `cargo test
/// --workspace` has built it already.
pub fn build_vendor_sim(bin_dir: &Path) {
    let profile = bin_dir.file_name().and_then(|n| n.to_str()).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--locked", "--quiet", "--package", "sipgw-dev"])
        .args(["--bin", "sipgw-vendor-sim", "--target-dir"])
        .arg(bin_dir.parent().unwrap())
        .args(match profile {
            "debug" => vec![],
            "release" => vec!["--release".to_owned()],
            other => vec!["--profile".to_owned(), other.to_owned()],
        })
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cannot build sipgw-vendor-sim:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
