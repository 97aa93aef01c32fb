#!/bin/sh
# Taproot benchmarks: in-process (Google Benchmark) and over HTTP (wrk). Every figure is printed
# beside its limit measured in the same run. Results go to bench/out/ as JSON; copy the summary
# into bench/RESULTS.md with the machine, commit and date.
#
#   make bench            (or: bench/run.sh [seconds-per-wrk-run])
set -eu
cd "$(dirname "$0")/.."
. bench/wrk/summary.sh
SECS="${1:-10}"
BIN=build/taproot
OUT=bench/out
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk is missing: run scripts/install-deps" >&2; exit 1; }

echo "== in-process: import of the Synthea bundles (and its limits)" >&2
build/taproot_bench --benchmark_format=json --benchmark_out="$OUT/inprocess.json" \
  --benchmark_out_format=json >/dev/null

DATA=$(mktemp -d /tmp/taproot-bench.XXXXXX)

echo "== taproot import --data (the CLI a user runs): throughput and peak RSS" >&2
"$BIN" import --no-progress --data "$DATA/import" build/fixtures/bundles >"$OUT/import.txt" 2>&1
CLI_IMPORT=$(awk '/imported/ {gsub(/[(]/, "", $0); for (i=1;i<=NF;i++) { if ($i=="resources/s),") r=$(i-1); if ($i=="RSS") m=$(i+1) } print "{\"resources_per_second\":" r ",\"peak_rss_mb\":" m "}"}' "$OUT/import.txt")
rm -rf "$DATA/import"

PORTFILE="$DATA/port"
"$BIN" serve --insecure-dev --no-audit --data "$DATA/store" --listen 127.0.0.1:0 --port-file "$PORTFILE" \
  --log-level warn >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 200); do [ -s "$PORTFILE" ] && break; sleep 0.05; done
PORT=$(cat "$PORTFILE")
BASE="http://127.0.0.1:$PORT"

# 1,000 patients with known ids for the read test, loaded as one batch.
{
  printf '{"resourceType":"Bundle","type":"batch","entry":['
  i=0
  while [ $i -lt 1000 ]; do
    [ $i -gt 0 ] && printf ','
    printf '{"resource":{"resourceType":"Patient","id":"p%d","name":[{"family":"Bench%d"}]},"request":{"method":"PUT","url":"Patient/p%d"}}' $i $i $i
    i=$((i + 1))
  done
  printf ']}'
} >"$DATA/patients.json"
curl -s -o /dev/null -X POST -H 'Content-Type: application/fhir+json' \
  --data-binary @"$DATA/patients.json" "$BASE/fhir"

run_wrk() {  # name script-or-empty path
  name=$1; script=$2; path=$3
  if [ -n "$script" ]; then
    wrk -t2 -c64 -d"${SECS}s" --latency -s "$script" "$BASE$path" >"$OUT/$name.txt"
  else
    wrk -t2 -c64 -d"${SECS}s" --latency "$BASE$path" >"$OUT/$name.txt"
  fi
  wrk_summary "$name" "$OUT/$name.txt"
}

echo "== over HTTP: wrk -t2 -c64 -d${SECS}s on 127.0.0.1 (wrk shares the machine)" >&2
HEALTH=$(run_wrk healthz "" /healthz)
READ=$(run_wrk read bench/wrk/read.lua /fhir/Patient/p1)
TX=$(run_wrk transaction bench/wrk/transaction.lua /fhir)
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
kill $PID; wait $PID 2>/dev/null || true

# The same transactions against a server that does not fsync: what durability costs.
rm -f "$PORTFILE"
"$BIN" serve --insecure-dev --no-audit --data "$DATA/nosync" --listen 127.0.0.1:0 --port-file "$PORTFILE" \
  --unsafe-no-sync --log-level warn >"$DATA/server-nosync.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do [ -s "$PORTFILE" ] && break; sleep 0.05; done
BASE="http://127.0.0.1:$(cat "$PORTFILE")"
TX_NOSYNC=$(run_wrk transaction_nosync bench/wrk/transaction.lua /fhir)

IMPORT=$(awk '
  /"name": "BM_/ { name=$2; gsub(/[",]/, "", name) }
  /"items_per_second"/ { v=$2; gsub(/,/, "", v); printf "%s\"%s\":%s", sep, name, v; sep="," }
  /"peak_rss_mb"/ { v=$2; gsub(/,/, "", v); printf "%s\"%s_peak_rss_mb\":%s", sep, name, v; sep="," }
' "$OUT/inprocess.json")

cat <<JSON | tee "$OUT/summary.json"
{
  "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "machine": "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)",
  "import_cli": $CLI_IMPORT,
  "import_in_process": {$IMPORT},
  "http": [$HEALTH, $READ, $TX, $TX_NOSYNC],
  "read_vs_healthz_limit": $(echo "$READ $HEALTH" | sed 's/[{}]//g' | awk -F'[:,]' '{for(i=1;i<=NF;i++){if($i~/requests_per_second/){v[++n]=$(i+1)}} printf "%.2f", v[1]/v[2]}'),
  "server_peak_rss_mb": $((RSS_KB / 1024))
}
JSON
