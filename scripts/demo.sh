#!/usr/bin/env bash
# Sets up, builds and runs the main job: `duplex demo`, the Windows docs' echo
# scenario against an embedded loopback echo server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
exec build/release/bin/duplex demo "$@"
