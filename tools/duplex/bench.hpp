// tools/duplex/bench.hpp: the `duplex bench` sub-command, a WebSocket load
// generator (see docs/benchmarks.md).
#pragma once

namespace CLI {
class App;
}

/// Adds `bench [URL] --connections N --in-flight K --size BYTES [--binary]
/// [--duration S] [--messages M] [--latency] [--json]` to `app`. The command
/// opens N connections (real opening handshakes), keeps K messages of BYTES in
/// flight on each (masked client frames, pipelined and corked), checks every
/// echo byte for byte and in order, and prints messages/s, MB/s and, with
/// --latency, round-trip percentiles. Without URL it echoes against a duplex
/// server started in the same process on another thread. `--in-flight 0`
/// opens the connections and holds them idle for the duration (memory
/// measurements). Exits non-zero on any failed handshake or wrong echo.
void add_bench_command(CLI::App& app);
