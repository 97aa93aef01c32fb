#!/bin/sh
# PostgreSQL beside SQLite (issue 5), on the same data in one run:
#   1. import: `taproot import` of PATIENTS generated patients (build/taproot_synthgen) into an
#      embedded store and into a PostgreSQL database: resources per second;
#   2. reads by id and five clinical searches, each over every patient, served from each store:
#      latency at one client (p50, p99: what the issue's "within 2x" is about), and requests per
#      second with p50 and p99 at 16 clients;
#   3. writes: small transactions (bench/wrk/transaction.lua) at 32 clients per node, on SQLite,
#      on one taproot node over PostgreSQL, and on two nodes over the same database;
#   4. the same writes with each node held to NODE_CPU percent of one core (25 unless set; 0
#      skips it) by a cgroup CPU quota, standing in for nodes on machines of their own: on one
#      small machine the nodes, wrk and PostgreSQL share the cores, so step 3 measures the
#      machine; step 4 measures whether a second node adds what the first one can do, that is
#      whether the nodes contend with each other in the database. Needs root and a cgroup CPU
#      controller (v1 or v2); otherwise the step says why and is left out.
# Both stores make every commit durable: SQLite with synchronous=FULL, PostgreSQL with fsync and
# synchronous_commit on (scripts/pg-test-cluster with TAPROOT_PG_DURABLE=1, a throwaway cluster
# on 127.0.0.1). wrk, the server(s) and PostgreSQL share the machine's cores.
#
#   bench/run-postgres.sh [seconds-per-run] [patients]
set -eu
cd "$(dirname "$0")/.."
. bench/wrk/summary.sh
SECS="${1:-10}"
PATIENTS="${2:-100}"
BIN=build/taproot
OUT=bench/out
mkdir -p "$OUT"
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "$tool is missing: run scripts/install-deps" >&2; exit 1; }
done
DATA=$(mktemp -d /tmp/taproot-pgbench.XXXXXX)
chmod 755 "$DATA"
PIDS=""
CGROUPS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for g in $CGROUPS; do rmdir "$g" 2>/dev/null || true; done
  scripts/pg-test-cluster stop "$DATA/pg" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

echo "== generating $PATIENTS patients" >&2
build/taproot_synthgen --from build/fixtures/bundles --patients "$PATIENTS" --out "$DATA/gen" >&2
echo "== a durable PostgreSQL 15 cluster" >&2
TAPROOT_PG_DURABLE=1 scripts/pg-test-cluster start "$DATA/pg" >&2
PG=$(cat "$DATA/pg/url")

rate() { awk '/imported/ { for (i = 1; i <= NF; i++) if ($i == "resources/s),") { r = $(i - 1); gsub(/[(]/, "", r); print r } }' "$1"; }
echo "== import into SQLite" >&2
"$BIN" import --no-progress --data "$DATA/sqlite" "$DATA/gen" >"$OUT/pg-import-sqlite.txt" 2>&1
echo "== import into PostgreSQL" >&2
"$BIN" import --no-progress --postgres "$PG" "$DATA/gen" >"$OUT/pg-import-postgres.txt" 2>&1
IMPORT_SQLITE=$(rate "$OUT/pg-import-sqlite.txt")
IMPORT_PG=$(rate "$OUT/pg-import-postgres.txt")
RESOURCES=$(awk '/imported/ {print $2}' "$OUT/pg-import-postgres.txt")

serve() {  # name store-args... ; sets BASE and adds the pid to PIDS
  name=$1
  shift
  rm -f "$DATA/port-$name"
  "$BIN" serve --insecure-dev --no-audit "$@" --listen 127.0.0.1:0 --port-file "$DATA/port-$name" --no-access-log \
    --log-level warn >"$DATA/server-$name.log" 2>&1 &
  PIDS="$PIDS $!"
  LAST_PID=$!
  for _ in $(seq 1 600); do [ -s "$DATA/port-$name" ] && break; sleep 0.1; done
  BASE="http://127.0.0.1:$(cat "$DATA/port-$name")"
}
stop() {  # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

run_paths() {  # name paths-file: warm-up (every path once, then 3 s), then the measured runs
  sed "s|.*|url = \"$BASE&\"\noutput = \"/dev/null\"|" "$2" | curl -s -g -K - || true
  PATHS="$2" wrk -t2 -c16 -d3s -s bench/wrk/paths.lua "$BASE" >/dev/null
  PATHS="$2" wrk -t1 -c1 -d"${SECS}s" --latency -s bench/wrk/paths.lua "$BASE" >"$OUT/pg-$1-1.txt"
  PATHS="$2" wrk -t2 -c16 -d"${SECS}s" --latency -s bench/wrk/paths.lua "$BASE" >"$OUT/pg-$1.txt"
  printf '{"one_client":%s,"clients_16":%s}' "$(wrk_summary "$1" "$OUT/pg-$1-1.txt")" \
    "$(wrk_summary "$1" "$OUT/pg-$1.txt")"
}

reads_and_searches() {  # store-label
  serve "$1-read" $STORE_ARGS
  # Transaction bundles create with POST: each store gave the patients its own ids.
  rm -f "$DATA"/r-*.txt "$DATA/patients.txt"
  if [ ! -s "$DATA/patients.txt" ]; then
        curl -s "$BASE/fhir/Patient?_count=1000&_elements=id" | tr -d '\n' |
      awk 'BEGIN { RS = "\"resource\":" } NR > 1 {
        if (match($0, /"id":"[^"]*"/)) print substr($0, RSTART + 6, RLENGTH - 7) }' \
      >"$DATA/patients.txt"
            # The first Observation's code (not its meta.tag, which _elements adds), chosen once: both
    # stores are asked the same questions.
    if [ ! -s "$DATA/code.txt" ]; then
      curl -s "$BASE/fhir/Observation?_count=1&_elements=code" |
        grep -o '"code":{"coding":\[{"system":"[^"]*","code":"[^"]*"' | head -1 |
        sed 's/.*"system":"//; s/","code":"/|/; s/"$//' >"$DATA/code.txt"
    fi
    CODE=$(cat "$DATA/code.txt")
    while read -r id; do
      echo "/fhir/Patient/$id" >>"$DATA/r-read.txt"
      echo "/fhir/Observation?subject=Patient/$id&code=$CODE&date=ge2000-01-01" >>"$DATA/r-obs.txt"
      echo "/fhir/Condition?patient=$id&_include=Condition:patient" >>"$DATA/r-cond.txt"
      echo "/fhir/Observation?patient=$id&_sort=-date&_count=20" >>"$DATA/r-sort.txt"
      echo "/fhir/Encounter?patient=$id&date=ge2015-01-01" >>"$DATA/r-enc.txt"
      echo "/fhir/Patient/$id/\$everything?_count=100" >>"$DATA/r-every.txt"
    done <"$DATA/patients.txt"
  fi
  out=""
  for q in read obs cond sort enc every; do
    out="${out:+$out,}$(run_paths "$1-$q" "$DATA/r-$q.txt")"
  done
  stop "$LAST_PID"
  echo "$out"
}

echo "== reads and searches: SQLite" >&2
STORE_ARGS="--data $DATA/sqlite"
Q_SQLITE=$(reads_and_searches sqlite)
echo "== reads and searches: PostgreSQL" >&2
STORE_ARGS="--postgres $PG"
Q_PG=$(reads_and_searches postgres)

tx() {  # name base: 32 clients of small transactions
  wrk -t1 -c32 -d3s -s bench/wrk/transaction.lua "$2/fhir" >/dev/null
  wrk -t1 -c32 -d"${SECS}s" --latency -s bench/wrk/transaction.lua "$2/fhir" >"$OUT/pg-$1.txt"
  wrk_summary "$1" "$OUT/pg-$1.txt"
}
tx_pair() {  # name base-a base-b: 32 clients on each node at once; sets PAIR_A and PAIR_B
  wrk -t1 -c32 -d3s -s bench/wrk/transaction.lua "$2/fhir" >/dev/null &
  W=$!
  wrk -t1 -c32 -d3s -s bench/wrk/transaction.lua "$3/fhir" >/dev/null
  wait $W
  wrk -t1 -c32 -d"${SECS}s" --latency -s bench/wrk/transaction.lua "$2/fhir" >"$OUT/pg-$1-a.txt" &
  W=$!
  wrk -t1 -c32 -d"${SECS}s" --latency -s bench/wrk/transaction.lua "$3/fhir" >"$OUT/pg-$1-b.txt"
  wait $W
  PAIR_A=$(wrk_summary "$1-a" "$OUT/pg-$1-a.txt")
  PAIR_B=$(wrk_summary "$1-b" "$OUT/pg-$1-b.txt")
}
echo "== writes: SQLite, one node" >&2
serve tx-sqlite --data "$DATA/sqlite"
TX_SQLITE=$(tx tx-sqlite "$BASE")
stop "$LAST_PID"
echo "== writes: PostgreSQL, one node" >&2
serve tx-pg1 --postgres "$PG"
TX_PG1=$(tx tx-pg-one-node "$BASE")
A=$BASE
A_PID=$LAST_PID
echo "== writes: PostgreSQL, two nodes on one database" >&2
serve tx-pg2 --postgres "$PG"
B=$BASE
B_PID=$LAST_PID
tx_pair tx-pg-two-nodes "$A" "$B"
TX_A=$PAIR_A
TX_B=$PAIR_B
stop "$A_PID"
stop "$B_PID"

rps() { echo "$1" | sed 's/.*"requests_per_second":\([0-9.]*\).*/\1/'; }
TWO=$(awk "BEGIN { printf \"%.1f\", $(rps "$TX_A") + $(rps "$TX_B") }")

# Step 4. cap_cpu GROUP PID PERCENT: moves the process into a cgroup of its own with that CPU
# quota (cgroup v2's cpu.max, or v1's cpu controller); fails if neither can be written.
cap_cpu() {
  quota=$(($3 * 1000))
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    dir=/sys/fs/cgroup/$1
    mkdir -p "$dir" 2>/dev/null && echo "$quota 100000" >"$dir/cpu.max" 2>/dev/null || return 1
  elif [ -d /sys/fs/cgroup/cpu ]; then
    dir=/sys/fs/cgroup/cpu/$1
    mkdir -p "$dir" 2>/dev/null && echo 100000 >"$dir/cpu.cfs_period_us" 2>/dev/null &&
      echo "$quota" >"$dir/cpu.cfs_quota_us" 2>/dev/null || return 1
  else
    return 1
  fi
  CGROUPS="$CGROUPS $dir"
  echo "$2" >"$dir/cgroup.procs" 2>/dev/null
}
NODE_CPU="${NODE_CPU:-25}"
CAPPED='null'
if [ "$NODE_CPU" -gt 0 ]; then
  echo "== writes: PostgreSQL, nodes held to $NODE_CPU % of a core each" >&2
  serve tx-cap1 --postgres "$PG"
  A=$BASE
  A_PID=$LAST_PID
  if cap_cpu "taproot-bench-a-$$" "$A_PID" "$NODE_CPU"; then
    TX_C1=$(tx tx-pg-capped-one-node "$A")
    serve tx-cap2 --postgres "$PG"
    B=$BASE
    B_PID=$LAST_PID
    cap_cpu "taproot-bench-b-$$" "$B_PID" "$NODE_CPU"
    tx_pair tx-pg-capped-two-nodes "$A" "$B"
    TX_CA=$PAIR_A
    TX_CB=$PAIR_B
    stop "$B_PID"
    CTWO=$(awk "BEGIN { printf \"%.1f\", $(rps "$TX_CA") + $(rps "$TX_CB") }")
    CAPPED="{\"node_cpu_percent\":$NODE_CPU,\"one_node\":$TX_C1,\"two_nodes\":[$TX_CA,$TX_CB],
           \"two_nodes_per_second\":$CTWO,
           \"two_over_one\":$(awk "BEGIN { printf \"%.2f\", $CTWO / $(rps "$TX_C1") }")}"
  else
    echo "   left out: no writable cgroup CPU controller (needs root)" >&2
  fi
  stop "$A_PID"
fi

# One-client p50 and 16-client requests/s of each query, PostgreSQL over SQLite (for requests/s,
# SQLite over PostgreSQL: both read "how many times slower PostgreSQL is").
to_us() { awk -v t="$1" 'BEGIN { v = t + 0; if (t ~ /ms$/) v *= 1000; else if (t ~ /us$/) v *= 1;
  else if (t ~ /s$/) v *= 1000000; print v }'; }
RATIOS=""
for q in read obs cond sort enc every; do
  s1=$(to_us "$(awk '$1=="50%" {print $2}' "$OUT/pg-sqlite-$q-1.txt")")
  p1=$(to_us "$(awk '$1=="50%" {print $2}' "$OUT/pg-postgres-$q-1.txt")")
  s16=$(awk '/Requests\/sec/ {print $2}' "$OUT/pg-sqlite-$q.txt")
  p16=$(awk '/Requests\/sec/ {print $2}' "$OUT/pg-postgres-$q.txt")
  RATIOS="${RATIOS:+$RATIOS,}\"$q\":{\"p50_one_client\":$(awk "BEGIN { printf \"%.2f\", $p1 / $s1 }"),\"throughput_16_clients\":$(awk "BEGIN { printf \"%.2f\", $s16 / $p16 }")}"
done

cat >"$OUT/postgres.json" <<EOF
{"commit":"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "date":"$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "machine":"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)",
 "patients":$PATIENTS,"resources":$RESOURCES,
 "import_per_second":{"sqlite":$IMPORT_SQLITE,"postgres":$IMPORT_PG,
                      "postgres_over_sqlite":$(awk "BEGIN { printf \"%.2f\", $IMPORT_PG / $IMPORT_SQLITE }")},
 "reads_and_searches":{"sqlite":[$Q_SQLITE],"postgres":[$Q_PG]},
 "postgres_vs_sqlite":{$RATIOS},
 "transactions":{"sqlite":$TX_SQLITE,"postgres_one_node":$TX_PG1,
                 "postgres_two_nodes":[$TX_A,$TX_B],
                 "two_nodes_per_second":$TWO,
                 "two_over_one":$(awk "BEGIN { printf \"%.2f\", $TWO / $(rps "$TX_PG1") }"),
                 "nodes_capped":$CAPPED}}
EOF
cat "$OUT/postgres.json"
