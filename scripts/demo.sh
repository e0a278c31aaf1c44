#!/usr/bin/env bash
# Sets up, builds and runs the main job: `duplex demo`, the Windows docs' echo
# scenario against an embedded loopback echo server. Builds only the tool.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build release
cmake --build --preset release --target duplex_cli
exec build/release/bin/duplex demo "$@"
