#!/usr/bin/env bash
# Sets up, builds and runs the whole duplex test suite (what CI runs):
#  1. clang-format: the tree must be formatted (no diff);
#  2. the release build: unit, integration, interop (Python websockets, Node ws,
#     headless Chromium), conformance, fuzz-corpus, bench-smoke and install tests;
#  3. the same unit, integration and fuzz-corpus tests under ASan + UBSan;
#  4. each libFuzzer target for a short bounded time (a finding fails the run).
#
# Usage: scripts/test.sh [PRESET]   (default: all four stages; with a preset name,
#                                    just that preset's build and tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -gt 0 ]]; then
  scripts/setup.sh --tests "$1"
  exec ctest --preset "$1" -j2
fi

scripts/setup.sh --tests release

echo "== format check"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "== release suite"
ctest --preset release -j2

echo "== ASan + UBSan suite"
scripts/setup.sh asan
# The memory-per-connection figures measure the allocator, which ASan replaces:
# they run in the release stage only.
ctest --preset asan -j2 -L 'unit|integration|fuzz' -E '^DeflateMemory\.'

echo "== fuzzing, ${DUPLEX_FUZZ_SECONDS:-20} s per target"
# Only the fuzz targets and the core they link are built for this.
scripts/setup.sh --no-build fuzz
cmake --build --preset fuzz --target fuzz-all -- -j2
