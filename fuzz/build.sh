#!/bin/sh
# Builds the libFuzzer targets with clang-14 into build-fuzz/ (ASan + UBSan + coverage).
#   fuzz/build.sh && build-fuzz/fuzz_resource -max_total_time=600 /tmp/corpus fuzz/corpus/resource
# (the first directory receives new inputs; the committed corpus stays read-only)
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTAPROOT_FUZZ=ON >/dev/null
cmake --build build-fuzz --target fuzz_resource fuzz_json_patch fuzz_query fuzz_datetime fuzz_fhirpath \
  fuzz_units fuzz_token fuzz_audit
