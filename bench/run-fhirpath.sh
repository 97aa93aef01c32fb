#!/bin/sh
# FHIRPath speed beside the reference JavaScript engine (fhirpath.js, precompiled expressions),
# same expressions, same Synthea bundles, same run, in two modes (see bench/fhirpath_bench.cc):
# sweep (every evaluation on the next bundle: mostly main-memory latency) and warm (each bundle
# 20 times in a row: the engines' own cost). Installs fhirpath.js from npm on first use
# (bench/fhirpath/package-lock.json pins it). Prints one JSON line per engine, mode and class,
# then a table with the ratios. A shared VM's speed drifts by tens of percent from one minute to
# the next, so the engines take turns for ROUNDS rounds and the table gives each one's median and
# the median (and range) of the ratios taken within a round.
#   bench/run-fhirpath.sh [seconds] [rounds]
set -eu
cd "$(dirname "$0")/.."
SECS="${1:-3}"
ROUNDS="${2:-3}"
command -v node >/dev/null || { echo "node is missing" >&2; exit 1; }
[ -d bench/fhirpath/node_modules/fhirpath ] || (cd bench/fhirpath && npm ci --silent --no-audit --no-fund)
mkdir -p bench/out
OUT=bench/out/fhirpath.jsonl
: > "$OUT"
for round in $(seq "$ROUNDS"); do
  for mode in sweep warm; do
    build/taproot_fhirpath_bench build/fixtures/bundles "$SECS" "$mode" |
      sed "s/^{/{\"round\":$round,/" | tee -a "$OUT"
    node bench/fhirpath/fhirpath_js.js build/fixtures/bundles "$SECS" "$mode" |
      sed "s/^{/{\"round\":$round,/" | tee -a "$OUT"
  done
done
node bench/fhirpath/summary.js "$OUT"
# Sweep measures main memory only where the parsed bundles (about 420 MB, of which the expressions
# touch a fraction) outgrow the last-level cache: name it beside the figures.
echo "machine: $(nproc) cores, last-level cache $(lscpu 2>/dev/null | awk -F: '/L3 cache/ {gsub(/^ +/, "", $2); print $2}')"
