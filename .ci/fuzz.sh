#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time, starting from its committed seed
# corpus (fuzz/corpus/<target>). Fails if any target finds a crash or a broken invariant,
# and prints the input that does it, with the command that reproduces it.
#
# Usage: .ci/fuzz.sh [TARGET...]   (default: every target; SIPGW_FUZZ_SECONDS per target,
# default 30; SIPGW_FUZZ_TARGET_DIR, default fuzz/target). Needs the nightly toolchain;
# installs cargo-fuzz (cargo install --locked) if missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${SIPGW_FUZZ_SECONDS:-30}"
# cargo-fuzz's defaults: optimized, with debug assertions and overflow checks. No
# sanitizer: the gateway forbids unsafe code, and its C dependency (aws-lc) is not built
# instrumented either, so AddressSanitizer would add build and run time but find nothing
# the panics and assertions do not. The same flags for build and run, so that `run` does
# not rebuild.
FUZZ_FLAGS=(--sanitizer none)
# Where the targets are built: fuzz/target unless SIPGW_FUZZ_TARGET_DIR says otherwise
# (.ci/run keeps a cache there between runs); never the main crate's $CARGO_TARGET_DIR.
FUZZ_FLAGS+=(--target-dir "${SIPGW_FUZZ_TARGET_DIR:-$PWD/target}")

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "the nightly toolchain is needed for cargo-fuzz (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "-- installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# The committed Cargo.lock must not change (cargo fuzz has no --locked of its own).
cargo +nightly metadata --locked --format-version 1 >/dev/null

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "-- building the fuzz targets (nightly)"
started=$SECONDS
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
echo "-- built in $((SECONDS - started))s"

failed=()
for target in "${targets[@]}"; do
  echo "-- fuzzing $target for ${SECONDS_PER_TARGET}s"
  # New inputs go to corpus-found/ (not committed); the seeds are only read. Absolute
  # paths: the config target runs from fuzz/fixtures.
  found="$PWD/corpus-found/$target"
  mkdir -p "$found" "artifacts/$target"
  rm -f "artifacts/$target"/*
  if cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "$found" "$PWD/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"corpus-found/$target.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' \
      "corpus-found/$target.log" || true
  else
    failed+=("$target")
    echo "!! $target FAILED; its output without the progress lines:"
    grep -v '^#' "corpus-found/$target.log" | tail -n 80
    for input in "artifacts/$target"/*; do
      [ -f "$input" ] || continue
      echo "!! reproducer $input (base64):"
      base64 -w 0 "$input"
      echo
      echo "!! reproduce: (cd fuzz && cargo +nightly fuzz run ${FUZZ_FLAGS[*]} $target $input)"
    done
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "-- every target ran ${SECONDS_PER_TARGET}s without a failure"
