#!/bin/sh
# FHIRPath speed beside the reference JavaScript engine (fhirpath.js, precompiled expressions),
# same expressions, same Synthea bundles, same run. Installs fhirpath.js from npm on first use
# (bench/fhirpath/package-lock.json pins it).
set -eu
cd "$(dirname "$0")/.."
SECS="${1:-3}"
command -v node >/dev/null || { echo "node is missing" >&2; exit 1; }
[ -d bench/fhirpath/node_modules/fhirpath ] || (cd bench/fhirpath && npm ci --silent --no-audit --no-fund)
build/taproot_fhirpath_bench build/fixtures/bundles "$SECS"
node bench/fhirpath/fhirpath_js.js build/fixtures/bundles "$SECS"
