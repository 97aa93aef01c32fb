#!/bin/sh
# Access control's cost: read and search throughput with authentication, policy and a durable
# audit trail on, against all of it off, on the same store in the same run.
#
#   [CONNS=16] [ROUNDS=3] bench/run-auth.sh [seconds-per-wrk-run] [patients]
#
# CONNS: wrk's connections (16 by default; 64 is what bench/run.sh's read test uses).
# ROUNDS: how many times off and on alternate (each round restarts both servers).
#
# The store: N patients registered with one GP practice (ODS A81001), five Observations each.
# "off": taproot serve --insecure-dev --no-audit. "on": the default (tokens checked, policy,
# legitimate relationship, an fsynced audit record per request), called with a clinician's
# token of that practice (every access passes the relationship check) and with a system token.
set -eu
cd "$(dirname "$0")/.."
. bench/wrk/summary.sh
SECS="${1:-10}"
N="${2:-1000}"
ROUNDS="${ROUNDS:-3}"
BIN=build/taproot
OUT=bench/out
mkdir -p "$OUT"
DATA=$(mktemp -d /tmp/taproot-auth-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

start() {  # args for serve
  rm -f "$DATA/port"
  "$BIN" serve --data "$DATA/store" --listen 127.0.0.1:0 --port-file "$DATA/port" \
    --no-access-log --log-level warn "$@" >>"$DATA/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 400); do [ -s "$DATA/port" ] && break; sleep 0.05; done
  BASE="http://127.0.0.1:$(cat "$DATA/port")"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

start --insecure-dev --no-audit
{
  printf '{"resourceType":"Bundle","type":"batch","entry":['
  printf '{"resource":{"resourceType":"Organization","id":"gp","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}]},"request":{"method":"PUT","url":"Organization/gp"}}'
  i=0
  while [ "$i" -lt "$N" ]; do
    printf ',{"resource":{"resourceType":"Patient","id":"p%d","name":[{"family":"Bench%d"}],"generalPractitioner":[{"reference":"Organization/gp"}]},"request":{"method":"PUT","url":"Patient/p%d"}}' "$i" "$i" "$i"
    for k in 1 2 3 4 5; do
      printf ',{"resource":{"resourceType":"Observation","id":"o%d-%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2024-0%d-01","valueQuantity":{"value":7%d,"unit":"/min"}},"request":{"method":"PUT","url":"Observation/o%d-%d"}}' "$i" "$k" "$i" "$k" "$k" "$i" "$k"
    done
    i=$((i + 1))
  done
  printf ']}'
} >"$DATA/load.json"
curl -sf -o /dev/null -X POST -H 'Content-Type: application/fhir+json' --data-binary @"$DATA/load.json" "$BASE/fhir"
i=0
: >"$DATA/reads"
: >"$DATA/searches"
while [ "$i" -lt "$N" ]; do
  echo "/fhir/Observation/o$i-3" >>"$DATA/reads"
  echo "/fhir/Observation?subject=Patient/p$i&code=http://loinc.org|8867-4" >>"$DATA/searches"
  i=$((i + 1))
done

run() {  # name paths-file [token]
  # Two seconds unmeasured first: each side starts with the caches a running server has
  # (current versions; relationship and consent facts), not with a cold start.
  if [ -n "${3:-}" ]; then
    PATHS="$2" wrk -t2 -c"${CONNS:-16}" -d2s -s bench/wrk/paths.lua -H "Authorization: Bearer $3" "$BASE" >/dev/null
  else
    PATHS="$2" wrk -t2 -c"${CONNS:-16}" -d2s -s bench/wrk/paths.lua "$BASE" >/dev/null
  fi
  if [ -n "${3:-}" ]; then
    PATHS="$2" wrk -t2 -c"${CONNS:-16}" -d"${SECS}s" --latency -s bench/wrk/paths.lua \
      -H "Authorization: Bearer $3" "$BASE" >"$OUT/auth-$1.txt"
  else
    PATHS="$2" wrk -t2 -c"${CONNS:-16}" -d"${SECS}s" --latency -s bench/wrk/paths.lua "$BASE" >"$OUT/auth-$1.txt"
  fi
  wrk_summary "$1" "$OUT/auth-$1.txt"
}

echo "== wrk -t2 -c${CONNS:-16} -d${SECS}s, $N patients, $ROUNDS rounds, 127.0.0.1 (wrk shares the machine)" >&2
stop
GP=$("$BIN" token --data "$DATA/store" --user Practitioner/bench --role S8000:G8000:R8000 --org A81001 \
  --expires-in 86400)
SYS=$("$BIN" token --data "$DATA/store" --user bench-app --scope 'system/*.cruds' --expires-in 86400)
rps() { echo "$1" | sed 's/.*"requests_per_second":\([0-9.]*\).*/\1/'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# Off and on alternate, ROUNDS times: a single pair swings by 0.3 with the VM's noise. The ratio
# reported is that of the sums; each round's ratio is listed too.
OFF_ALL= ON_ALL= READ_ROUNDS= SEARCH_ROUNDS=
OFF_READ_SUM=0 OFF_SEARCH_SUM=0 ON_READ_SUM=0 ON_SEARCH_SUM=0
r=1
while [ "$r" -le "$ROUNDS" ]; do
  start --insecure-dev --no-audit
  OFF_READ=$(run off-read-$r "$DATA/reads")
  OFF_SEARCH=$(run off-search-$r "$DATA/searches")
  stop
  start --rate-limit 1000000
  ON_READ=$(run on-read-clinician-$r "$DATA/reads" "$GP")
  ON_SEARCH=$(run on-search-clinician-$r "$DATA/searches" "$GP")
  if [ "$r" -eq 1 ]; then ON_ALL="$(run on-read-system "$DATA/reads" "$SYS"), "; fi
  stop
  OFF_ALL="$OFF_ALL${OFF_ALL:+, }$OFF_READ, $OFF_SEARCH"
  ON_ALL="$ON_ALL$ON_READ, $ON_SEARCH"
  [ "$r" -lt "$ROUNDS" ] && ON_ALL="$ON_ALL, "
  READ_ROUNDS="$READ_ROUNDS${READ_ROUNDS:+, }$(div "$(rps "$ON_READ")" "$(rps "$OFF_READ")")"
  SEARCH_ROUNDS="$SEARCH_ROUNDS${SEARCH_ROUNDS:+, }$(div "$(rps "$ON_SEARCH")" "$(rps "$OFF_SEARCH")")"
  OFF_READ_SUM=$(add "$OFF_READ_SUM" "$(rps "$OFF_READ")")
  OFF_SEARCH_SUM=$(add "$OFF_SEARCH_SUM" "$(rps "$OFF_SEARCH")")
  ON_READ_SUM=$(add "$ON_READ_SUM" "$(rps "$ON_READ")")
  ON_SEARCH_SUM=$(add "$ON_SEARCH_SUM" "$(rps "$ON_SEARCH")")
  r=$((r + 1))
done
AUDITED=$("$BIN" audit verify --data "$DATA/store")

# Where the cost is: the same with the audit log's sync off (not a mode to run in; the
# difference is what the durability of each audit record costs).
start --rate-limit 1000000 --unsafe-no-sync
NOSYNC_READ=$(run on-read-clinician-audit-nosync "$DATA/reads" "$GP")
stop

cat <<JSON | tee "$OUT/auth-summary.json"
{
  "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "machine": "$(nproc) cores",
  "patients": $N,
  "rounds": $ROUNDS,
  "off": [$OFF_ALL],
  "on": [$ON_ALL],
  "diagnostic": [$NOSYNC_READ],
  "read_on_vs_off_by_round": [$READ_ROUNDS],
  "search_on_vs_off_by_round": [$SEARCH_ROUNDS],
  "read_on_vs_off": $(div "$ON_READ_SUM" "$OFF_READ_SUM"),
  "search_on_vs_off": $(div "$ON_SEARCH_SUM" "$OFF_SEARCH_SUM"),
  "audit_verify": "$AUDITED"
}
JSON
