#!/usr/bin/env bash
# schemathesis (PyPI) against openapi.yaml and a running gateway: no 5xx, and every
# status, content type, header and body as the document says.
#
# Starts, on 127.0.0.1 ephemeral ports, the vendor simulator (with its real password and
# lockout rules), a gateway that trusts a development key set (`sipgw dev-token`), and
# sends it schemathesis' generated requests (valid and invalid) with an admin token, so
# that any agent may be asked for and requests get past authorization. Fixed budget: a
# fixed number of examples per phase, a fixed seed, no example database. Afterwards the
# gateway must still be up, its audit trail must verify, and neither its log nor its trail
# may hold the token. Everything it started is stopped on exit.
#
# Usage: .ci/schemathesis.sh   (from anywhere; uses $CARGO_TARGET_DIR like cargo does;
# SIPGW_SCHEMATHESIS_EXAMPLES examples per phase, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CACHE="${SIPGW_CI_CACHE:-$HOME/.cache/sipgw-ci}"
VENV="$CACHE/venv-schemathesis-$SCHEMATHESIS_VERSION"
ISSUER="https://sso.ci.internal/realms/schemathesis"
APP_KEY="schemathesis-app-key"
APP_SECRET="schemathesis-app-secret-$RANDOM$RANDOM"

echo "-- building sipgw and sipgw-vendor-sim"
cargo build --locked --workspace --bins --quiet
BIN="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  echo "-- installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipgw-schemathesis.XXXXXX")"
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $(basename "$log"):"
      tail -n 20 "$log"
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

# Waits up to $2 seconds for the extended regex $3 to appear in file $1; prints the line.
wait_for_line() {
  local file=$1 seconds=$2 pattern=$3 deadline=$((SECONDS + $2))
  until grep -Eom1 "$pattern" "$file" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "nothing matched /$pattern/ in $(basename "$file") within ${seconds}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# A port the kernel picks now, for a config that must name one; used right away.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "-- starting the vendor simulator"
SIM_APP_SECRET="$APP_SECRET" "$BIN/sipgw-vendor-sim" --listen 127.0.0.1:0 --app-key "$APP_KEY" \
  --agent "a1001=Welcome~2024" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
VENDOR_URL="$(wait_for_line "$WORK/sim.log" 20 'http://127\.0\.0\.1:[0-9]+')"

echo "-- minting an admin token from a fresh development key"
TOKEN="$("$BIN/sipgw" dev-token --key-file "$WORK/dev-key.pem" --new-key \
  --jwks-out "$WORK/jwks.json" --issuer "$ISSUER" --sub schemathesis --admin)"

PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
cat >"$WORK/sipgw.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
shutdown_grace_secs = 2

[auth]
issuer = "$ISSUER"
audiences = ["sipgw"]
jwks_file = "$WORK/jwks.json"
admin_scopes = ["sipgw.admin"]

[vendor]
base_url = "$VENDOR_URL"
app_key = "$APP_KEY"
allow_insecure_http = true

# Quotas wide enough that generated requests reach the later checks and the vendor (the
# lockout shield still answers 429 once an agent has two rejections).
[rate_limit]
per_caller = { burst = 1000000, per_secs = 1 }
per_agent = { burst = 1000000, per_secs = 1 }

[audit]
path = "$WORK/audit/sipgw-audit.jsonl"
fsync = "never"
EOF

echo "-- starting the gateway"
SIPGW_APP_SECRET="$APP_SECRET" "$BIN/sipgw" serve --config "$WORK/sipgw.toml" \
  >"$WORK/sipgw.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
deadline=$((SECONDS + 30))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ]; do
  if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
    echo "the gateway did not become ready within 30s" >&2
    exit 1
  fi
  sleep 0.1
done

echo "-- schemathesis $SCHEMATHESIS_VERSION against http://127.0.0.1:$PORT"
# Output sanitization (on by default) masks the Authorization header in what is printed.
# Run from the scratch folder: schemathesis keeps a cache in its working directory.
ROOT="$PWD"
cd "$WORK"
timeout 600 "$VENV/bin/schemathesis" run "$ROOT/openapi.yaml" \
  --url "http://127.0.0.1:$PORT" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SIPGW_SCHEMATHESIS_EXAMPLES:-200}" \
  --seed 20261201 \
  --generation-database none \
  --workers 1 \
  --request-timeout 15 \
  --suppress-health-check all \
  --no-color
cd "$ROOT"

echo "-- afterwards: the gateway is up, its trail verifies, the token is nowhere"
if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
  echo "the gateway exited during the run" >&2
  exit 1
fi
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200 ]
kill -TERM "$GATEWAY_PID"
wait "$GATEWAY_PID"
"$BIN/sipgw" audit verify "$WORK/audit"
echo "-- answers the gateway gave (from its audit trail):"
python3 - "$WORK/audit" <<'PY'
import collections, json, pathlib, sys
counts = collections.Counter(
    (record.get("httpStatus"), record["code"])
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.jsonl"))
    for record in map(json.loads, path.read_text().splitlines())
    if record["kind"] == "outcome"
)
for (status, code), n in sorted(counts.items(), key=lambda item: str(item[0])):
    print(f"   {status} {code}: {n}")
PY
SIGNATURE="${TOKEN##*.}"
if grep -rqF -- "$SIGNATURE" "$WORK/sipgw.log" "$WORK/audit"; then
  echo "the bearer token appears in the gateway's log or audit trail" >&2
  exit 1
fi
