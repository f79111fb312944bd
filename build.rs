//! Lays out the release `sipgw` binary's code in the order of `link/sipgw.order`: the
//! functions that run at start-up first, then those of the request paths.
//!
//! Why: the kernel maps an executable's pages 64 KiB at a time around each one that is run
//! (fault-around), and the linker's default order scatters start-up code over the whole
//! `.text`, so an idle gateway kept about 7 MiB of code resident to run 1.7 MiB of it.
//! Together, those functions fill a few dozen windows (docs/performance.md, "Footprint").
//! The order changes no instruction: only where the functions are.
//!
//! Only for release builds on x86_64 Linux with glibc, where rustc links with its own
//! `lld`, which knows `--symbol-ordering-file`; names missing from the list (new code, a
//! newer dependency) are placed as usual, silently. `SIPGW_SYMBOL_ORDER=off` leaves the
//! default order, for a build that links with another linker.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link/sipgw.order");
    println!("cargo:rerun-if-env-changed=SIPGW_SYMBOL_ORDER");
    let var = |key: &str| env::var(key).unwrap_or_default();
    let rustc_lld = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if var("PROFILE") != "release" || !rustc_lld || var("SIPGW_SYMBOL_ORDER") == "off" {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link/sipgw.order");
    // Each through -Xlinker, verbatim: a path with a comma would be split by -Wl.
    for arg in [
        "--symbol-ordering-file",
        &order.display().to_string(),
        "--no-warn-symbol-ordering",
    ] {
        println!("cargo:rustc-link-arg-bins=-Xlinker");
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
