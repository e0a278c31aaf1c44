#!/usr/bin/env bash
# Sets up, builds and runs the whole duplex test suite (what CI runs):
#  1. clang-format: the tree must be formatted (no diff);
#  2. the release build: unit, integration, interop (Python websockets, Node ws,
#     headless Chromium), conformance, fuzz-corpus, bench-smoke and install tests;
#  3. the same unit, integration and fuzz-corpus tests under ASan + UBSan;
#  4. the unit and integration tests under ThreadSanitizer (a report fails the run);
#  5. each libFuzzer target for a short bounded time (a finding fails the run).
#
# Usage: scripts/test.sh [PRESET]   (default: all five stages; with a preset name,
#                                    just that preset's build and tests; for
#                                    tsan, the tests of stage 4)
set -euo pipefail
cd "$(dirname "$0")/.."

# The sanitizer stages run the unit and integration tests (and, under ASan,
# the fuzz-corpus replays), not the examples' run (cli.examples_vs_echo_server:
# the release stage runs it; the library code it drives is what the
# integration tests cover). The memory figures (per connection, and the
# hostile clients' RSS bound) measure the allocator, which both sanitizers
# replace: they run in the release stage only.
sanitizer_skip='^DeflateMemory\.|^hostile\.|^cli\.examples_vs_echo_server$'

# TSan needs a fixed memory layout: with the mmap randomisation of newer
# kernels (vm.mmap_rnd_bits > 28) GCC 12's TSan stops with "FATAL:
# ThreadSanitizer: unexpected memory mapping", so the tests run without ASLR
# (setarch -R) where the machine allows it.
tsan_tests() {
  local run=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then run=(setarch "$(uname -m)" -R); fi
  "${run[@]}" ctest --preset tsan -j2 -L 'unit|integration' -E "$sanitizer_skip"
}

# The sanitizer stages build only what their tests run: the unit and
# integration test programs, the CLI (the CLI tests, and the reconnect tests'
# echo server, start it) and, under ASan, the fuzz-corpus replays. The
# header-alone objects, the interop-only programs and the examples are
# compiled by the release stage, and nothing about them changes under a
# sanitizer. CI time (clean-clone runs, 2 cores): at d687a8f, ASan at -O1 -g,
# the release set-up and build took 396 s, its tests 234 s, the ASan build
# 569 s, on the way to about 35 minutes; at 97fc9e4 (ASan -O0 -g1, -g1
# elsewhere, no examples under the sanitizers, fuzzing 10 s per target):
# release 305 + 248 s, ASan 297 + 125 s, TSan 269 + 139 s, fuzzing 92 s,
# 1,476 s in all; at 6adf8ed 1,352 s in all (tests: release 221 s, ASan
# 117 s, TSan 150 s); at 0d2a324 about 1,145 s (tests: release 204 s, ASan
# 103 s, TSan 129 s).
sanitizer_build() {
  local preset=$1 pattern='^(duplex_unit_tests|duplex_integration_tests|duplex_cli'
  [[ $preset == asan ]] && pattern+='|[a-z0-9_]+_fuzz'
  pattern+=')$'
  scripts/setup.sh --no-build "$preset"
  local targets
  mapfile -t targets < <(cmake --build --preset "$preset" --target help |
    sed -n 's/: phony$//p' | grep -E "$pattern")
  cmake --build --preset "$preset" --target "${targets[@]}"
}

if [[ $# -gt 0 ]]; then
  scripts/setup.sh --tests "$1"
  if [[ $1 == tsan ]]; then
    tsan_tests
    exit
  fi
  exec ctest --preset "$1" -j2
fi

scripts/setup.sh --tests release

echo "== format check"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "== release suite"
ctest --preset release -j2

echo "== ASan + UBSan suite"
sanitizer_build asan
ctest --preset asan -j2 -L 'unit|integration|fuzz' -E "$sanitizer_skip"

echo "== ThreadSanitizer suite"
sanitizer_build tsan
tsan_tests

fuzz_seconds=${DUPLEX_FUZZ_SECONDS:-10}
echo "== fuzzing, $fuzz_seconds s per target"
# Only the fuzz targets and the core they link are built for this.
scripts/setup.sh --no-build fuzz
cmake --preset fuzz -DDUPLEX_FUZZ_SECONDS="$fuzz_seconds" >/dev/null
cmake --build --preset fuzz --target fuzz-all -- -j2
