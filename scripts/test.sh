#!/usr/bin/env bash
# Sets up, builds and runs the whole duplex test suite (what CI runs):
# unit, integration, interop and fuzz-corpus tests in the release build, then
# each libFuzzer target for a short bounded time under the `fuzz` preset.
#
# Usage: scripts/test.sh [PRESET]   (default: release; `asan` runs the suite
#                                    under ASan+UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}

scripts/setup.sh --tests "$preset"
ctest --preset "$preset" -j2

if [[ $preset == release && ${DUPLEX_SKIP_FUZZ:-0} != 1 ]]; then
  # Fixed-time fuzzing of every target; a finding fails the run.
  scripts/setup.sh fuzz
  cmake --build --preset fuzz --target fuzz-all -- -j1
fi
