#!/bin/sh
# Search benchmarks on the Synthea patients multiplied to PATIENTS (default 1,000) by
# build/taproot_synthgen (bench/synthea_gen.cc). In one run:
#   1. the cost of indexing: `taproot import` of the same files without search indexing
#      (--no-search-index: identifiers only) and with every R4 search parameter;
#   2. count only: Observation?code=<the commonest code>&_summary=count, matches counted per
#      second at 16 clients;
#   3. download: every page of Observation?code=<that code>&_count=1000 (next links followed
#      once to list them), fetched by 16 clients: resources per second;
#   4. ten clinical queries, each over all the patients in turn, at 16 clients: p50, p99.
# wrk shares the two cores with the server; /healthz at 16 clients is measured as the limit.
# Each wrk run follows an unrecorded warm-up: every path once, then 3 seconds of the same load.
#
#   bench/run-search.sh [seconds-per-query] [patients]
set -eu
cd "$(dirname "$0")/.."
. bench/wrk/summary.sh
SECS="${1:-10}"
PATIENTS="${2:-1000}"
BIN=build/taproot
OUT=bench/out
mkdir -p "$OUT"
for tool in wrk sqlite3 curl; do
  command -v $tool >/dev/null || { echo "$tool is missing: run scripts/install-deps" >&2; exit 1; }
done
DATA=$(mktemp -d /tmp/taproot-search.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

echo "== generating $PATIENTS patients" >&2
build/taproot_synthgen --from build/fixtures/bundles --patients "$PATIENTS" --out "$DATA/gen" >&2

rate() { awk '/imported/ { for (i = 1; i <= NF; i++) if ($i == "resources/s),") { r = $(i - 1); gsub(/[(]/, "", r); print r } }' "$1"; }
echo "== import without search indexing" >&2
"$BIN" import --no-progress --no-search-index --data "$DATA/none" "$DATA/gen" >"$OUT/import-none.txt" 2>&1
rm -rf "$DATA/none"
echo "== import with every search parameter" >&2
"$BIN" import --no-progress --data "$DATA/full" "$DATA/gen" >"$OUT/import-full.txt" 2>&1
NONE=$(rate "$OUT/import-none.txt")
FULL=$(rate "$OUT/import-full.txt")
RESOURCES=$(awk '/imported/ {print $2}' "$OUT/import-full.txt")

DB="$DATA/full/taproot.db"
CODE=$(sqlite3 -readonly "$DB" "SELECT system || '|' || code FROM idx_token WHERE tp=(SELECT tp FROM \
  idx_keys WHERE type='Observation' AND param='code') GROUP BY system, code ORDER BY count(*) DESC LIMIT 1")

PORTFILE="$DATA/port"
"$BIN" serve --insecure-dev --no-audit --data "$DATA/full" --listen 127.0.0.1:0 --port-file "$PORTFILE" --no-access-log \
  --log-level warn >"$DATA/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -s "$PORTFILE" ] && break; sleep 0.1; done
BASE="http://127.0.0.1:$(cat "$PORTFILE")"

# Patients: "id family" per line, from one search.
curl -s "$BASE/fhir/Patient?_count=1000&_elements=name" | tr -d '\n' |
  awk 'BEGIN { RS = "\"resource\":" } NR > 1 {
    id = ""; fam = "";
    if (match($0, /"id":"[^"]*"/)) id = substr($0, RSTART + 6, RLENGTH - 7);
    if (match($0, /"family":"[^"]*"/)) fam = substr($0, RSTART + 10, RLENGTH - 11);
    if (id != "" && fam != "") print id, fam }' >"$DATA/patients.txt"
[ -s "$DATA/patients.txt" ] || { echo "no patients found" >&2; exit 1; }

run_wrk() {  # name paths-file
  # Not recorded, first: every path once (one curl, one connection), so that each patient's
  # pages have been read since the imports pushed them out of the page cache, then 3 seconds
  # of the load itself. The figures are of a warm server.
  sed "s|.*|url = \"$BASE&\"\noutput = \"/dev/null\"|" "$2" | curl -s -g -K - || true
  PATHS="$2" wrk -t2 -c16 -d3s -s bench/wrk/paths.lua "$BASE" >/dev/null
  PATHS="$2" wrk -t2 -c16 -d"${SECS}s" --latency -s bench/wrk/paths.lua "$BASE" >"$OUT/search-$1.txt"
  wrk_summary "$1" "$OUT/search-$1.txt"
}

echo "== limit: /healthz at 16 clients" >&2
echo "/healthz" >"$DATA/health.txt"
HEALTH=$(run_wrk healthz "$DATA/health.txt")

echo "== count only" >&2
COUNT_PATH="/fhir/Observation?code=$CODE&_summary=count"
MATCHES=$(curl -s "$BASE$COUNT_PATH" | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
echo "$COUNT_PATH" >"$DATA/count.txt"
COUNT=$(run_wrk count "$DATA/count.txt")
COUNT_RPS=$(echo "$COUNT" | sed 's/.*"requests_per_second":\([0-9.]*\).*/\1/')

echo "== download: every page of $MATCHES matches, 1,000 per page" >&2
: >"$DATA/pages.txt"
url="/fhir/Observation?code=$CODE&_count=1000"
start=$(date +%s.%N)
while [ -n "$url" ]; do
  echo "$url" >>"$DATA/pages.txt"
  next=$(curl -s "$BASE$url" | grep -o '"relation":"next","url":"[^"]*"' | sed 's/.*"url":"//; s/"$//')
  url=${next#"$BASE"}
done
WALK_SECS=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $start }")
PAGES=$(wc -l <"$DATA/pages.txt")
DOWNLOAD=$(run_wrk download "$DATA/pages.txt")
DL_RPS=$(echo "$DOWNLOAD" | sed 's/.*"requests_per_second":\([0-9.]*\).*/\1/')

echo "== ten clinical queries, each over every patient" >&2
while read -r id fam; do
  echo "/fhir/Observation?subject=Patient/$id&code=$CODE&date=ge2000-01-01&date=lt2030-01-01" >>"$DATA/q01.txt"
  echo "/fhir/Condition?patient=$id&_include=Condition:patient" >>"$DATA/q02.txt"
  echo "/fhir/MedicationRequest?patient=$id&_revinclude=MedicationDispense:prescription" >>"$DATA/q03.txt"
  echo "/fhir/Observation?subject:Patient.name=$fam&code=$CODE" >>"$DATA/q04.txt"
  echo "/fhir/Patient?family=$fam&_has:Observation:patient:code=$CODE" >>"$DATA/q05.txt"
  echo "/fhir/Observation?patient=$id&_sort=-date&_count=20" >>"$DATA/q06.txt"
  echo "/fhir/Patient?family=$fam&gender=female,male" >>"$DATA/q07.txt"
  echo "/fhir/Encounter?patient=$id&date=ge2015-01-01&_sort=-date" >>"$DATA/q08.txt"
  echo "/fhir/Patient/$id/DiagnosticReport?_count=50" >>"$DATA/q09.txt"
  echo "/fhir/Patient/$id/\$everything?_count=100" >>"$DATA/q10.txt"
done <"$DATA/patients.txt"
NAMES="obs-by-code-and-date conditions-include-patient medreq-revinclude-dispense chain-patient-name has-observation sort-by-date patient-by-name encounters-since compartment-reports everything-first-page"
QUERIES=""
i=1
for n in $NAMES; do
  f=$(printf "%s/q%02d.txt" "$DATA" $i)
  r=$(run_wrk "$n" "$f")
  sample=$(head -1 "$f")
  r="${r%\}},\"example\":\"$(echo "$sample" | sed 's/"/\\"/g')\"}"
  QUERIES="${QUERIES:+$QUERIES,}$r"
  i=$((i + 1))
done
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)

cat >"$OUT/search.json" <<EOF
{"patients":$PATIENTS,"resources":$RESOURCES,
 "import_no_search_index_per_second":$NONE,"import_full_index_per_second":$FULL,
 "indexing_ratio":$(awk "BEGIN { printf \"%.3f\", $FULL / $NONE }"),
 "count":{"code":"$CODE","matches":$MATCHES,"requests":$COUNT,
          "matches_per_second":$(awk "BEGIN { printf \"%d\", $MATCHES * $COUNT_RPS }")},
 "download":{"matches":$MATCHES,"pages":$PAGES,"single_client_walk_seconds":$WALK_SECS,
             "requests":$DOWNLOAD,
             "resources_per_second":$(awk "BEGIN { printf \"%d\", $DL_RPS * $MATCHES / $PAGES }")},
 "limit":$HEALTH,
 "queries":[$QUERIES],
 "server_peak_rss_mb":$((RSS_KB / 1024))}
EOF
cat "$OUT/search.json"
