#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite:
#   unit + model tests (ctest, including the Hugging Face parity scripts in tests/reference/),
#   then the unit tests again under AddressSanitizer + UBSan (the `asan` CMake preset).
# SLLM_TEST_LABELS narrows ctest (e.g. "unit"); SLLM_SKIP_ASAN=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
labels=${SLLM_TEST_LABELS:-unit|model|gpu}
echo "== ctest -L '$labels' (build/)" >&2
ctest --test-dir build -L "$labels" --output-on-failure -j 2 --timeout 1200
if [ -z "${SLLM_SKIP_ASAN:-}" ]; then
  echo "== AddressSanitizer + UBSan unit tests (build-asan/)" >&2
  [ -f build-asan/CMakeCache.txt ] || cmake --preset asan >/dev/null
  cmake --build build-asan -j 2
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan -L unit --output-on-failure -j 2
fi
