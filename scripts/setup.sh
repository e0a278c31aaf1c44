#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) to build and test duplex, then
# configures and builds one CMake preset. Idempotent: packages are installed only
# when missing, and an up-to-date build does nothing.
#
# Usage: scripts/setup.sh [--tests] [PRESET]     (PRESET defaults to "release")
#   --tests  also installs what the test suite's peers need (Python websockets,
#            Node's ws, headless Chromium, valgrind; Boost.Beast, websocketpp and
#            gnuplot and strace for bench/run.py).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
build=1
preset=release
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    --no-build) build=0 ;;
    *) preset=$arg ;;
  esac
done

# Build tools and libraries, all from Debian.
pkgs=(ca-certificates cmake ninja-build g++ pkg-config openssl
      libasio-dev libssl-dev zlib1g-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
      libhiredis-dev libnats-dev)
if [[ $preset == fuzz ]]; then
  pkgs+=(clang lld libclang-rt-14-dev)
fi
if (( with_tests )); then
  # Peers we did not write, and the tools the suite drives.
  pkgs+=(python3 python3-websockets chromium curl valgrind clang clang-format libclang-rt-14-dev
         libboost-dev libwebsocketpp-dev gnuplot-nox strace
         redis-server nats-server)
  # install.deb: `cpack -G DEB` runs dpkg-shlibdeps.
  pkgs+=(dpkg-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if (( with_tests )); then
  # Node.js for the `ws` interop peer: the machine's node if it has one, else Debian's.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  if [[ -f tests/interop/package.json ]] &&
     [[ ! -d .deps/node/node_modules/ws || tests/interop/package.json -nt .deps/node/.stamp ]]; then
    echo "setup: installing Node test peers into .deps/node"
    mkdir -p .deps/node
    cp tests/interop/package.json .deps/node/
    [[ -f tests/interop/package-lock.json ]] && cp tests/interop/package-lock.json .deps/node/
    (cd .deps/node && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    touch .deps/node/.stamp
  fi
fi

if [[ ! -f build/$preset/CMakeCache.txt ]]; then
  cmake --preset "$preset" >/dev/null
fi
if (( build )); then
  cmake --build --preset "$preset"
fi
