#!/usr/bin/env bash
# Builds bulwark and runs every test (unit, integration, crash, fuzz) through ctest,
# twice: first the normal build (build/), then an AddressSanitizer + UndefinedBehavior-
# Sanitizer build of everything (build-asan/) running the unit tests and every
# integration suite against the instrumented server; a sanitizer report from the
# server or a CLI command fails the test that caused it (tests/integration/conftest.py).
# The fuzz target is instrumented already and runs in the first pass.
#   scripts/test.sh                 both passes (what CI runs)
#   BULWARK_SANITIZE=0 scripts/test.sh   the first pass only (quicker, for local work)
#   scripts/test.sh -R smtp         extra arguments go to both ctest runs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULWARK_SANITIZE=OFF >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure --timeout 900 "$@")

if [ "${BULWARK_SANITIZE:-1}" != 0 ]; then
  echo "== second pass: ASan + UBSan build =="
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULWARK_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  export BULWARK_SANITIZED=1
  export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1
  (cd build-asan && ctest --output-on-failure --timeout 1800 -E '^fuzz_' "$@")
fi
