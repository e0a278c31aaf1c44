#!/usr/bin/python3
"""Runs the issue-5 and issue-11 scenarios against duplex's echo server and its peers.

Servers (each single-threaded, no compression, pinned to core 0):
  duplex       `duplex echo-server --threads 1` (one event loop)
  beast        bench/peers/beast_echo.cpp (Boost.Beast)
  websocketpp  bench/peers/websocketpp_echo.cpp (websocketpp)
  epoll_echo   bench/peers/epoll_echo.cpp (bare edge-triggered epoll: the ceiling)
Load: `duplex bench` pinned to core 1, which checks every echo.

Scenarios:
  pipelined  100 connections x 16 in flight, 16 B text
  pingpong   1 connection x 1 in flight, 16 B text (round-trip percentiles);
             100 connections x 1 in flight under --callgrind
  large      10 connections x 4 in flight, 64 KiB binary
  idle       10,000 idle connections: server RSS growth per connection

Modes:
  (default)    throughput and memory: rounds alternate the servers, medians
               are reported with ratios against the best peer.
  --callgrind  every figure of issue 11, from one run (about 2.5 minutes on 2 quiet cores,
               7-8 minutes while other jobs load them):
               - server Ir per echoed message in steady state: Ir of a run of
                 N echoes minus Ir of a run with the same connections and one
                 echo each, over the N - C extra messages (callgrind);
               - server Ir per accepted connection: 1,000 connections with one
                 echo each minus 100, over 900 (handshake and close included);
               - system calls per ping-pong message (strace -f -c), same
                 subtraction;
               - memory per idle connection: RSS growth (as the default mode)
                 and heap bytes from valgrind massif snapshots taken with vgdb;
               - client: Ir per message of `duplex bench` itself, the wire
                 engine and --api (MessageWebSocket), against epoll_echo;
               - 64 KiB wall clock: messages/s of duplex over epoll_echo's,
                 the median ratio of --pairs adjacent pairs of short runs
                 (AB, BA, ...) against two long-lived servers, with its
                 spread, and each server's CPU time per message.
  --wallclock  only that 64 KiB wall clock (about 55 s); replaces its section.
  --smoke      seconds in all, tiny counts, for CI: checks that every part
               runs (with --callgrind, every part of that mode), asserts
               nothing about the figures.
  --report     reprints the tables from OUT/benchmarks.json.

Results are merged into OUT/benchmarks.json (one section per figure), the
tables of OUT/benchmarks.md (between its generated-block markers) are rewritten
from it, and the chart OUT/benchmarks.svg is redrawn with gnuplot when it is
installed.
"""

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCENARIOS = {
    # "callgrind_args": the load of issue 11's steady-state method where it
    # differs from the wall-clock one; "callgrind_messages": the extra messages
    # of the load run over the base run (one echo per connection).
    "pipelined": {"args": ["-c", "100", "-k", "16", "-s", "16"], "connections": 100,
                  "callgrind_messages": 30000, "smoke_messages": 1600},
    "pingpong": {"args": ["-c", "1", "-k", "1", "-s", "16", "--latency"], "connections": 1,
                 "callgrind_args": ["-c", "100", "-k", "1", "-s", "16"],
                 "callgrind_connections": 100,
                 "callgrind_messages": 20000, "smoke_messages": 200},
    "large": {"args": ["-c", "10", "-k", "4", "-s", "65536", "--binary"], "connections": 10,
              "callgrind_messages": 1000, "smoke_messages": 40},
}
LOAD_SCENARIOS = list(SCENARIOS)


def server_commands(bin_dir):
    """name -> argv of each server found in the build, in a fixed order."""
    candidates = [
        ("duplex", [os.path.join(bin_dir, "duplex"), "echo-server", "--host", "127.0.0.1",
                    "--port", "0", "--threads", "1"]),
        ("beast", [os.path.join(bin_dir, "beast_echo"), "0"]),
        ("websocketpp", [os.path.join(bin_dir, "websocketpp_echo"), "0"]),
        ("epoll_echo", [os.path.join(bin_dir, "epoll_echo"), "0"]),
    ]
    found = {}
    for name, argv in candidates:
        if not os.access(argv[0], os.X_OK):
            print(f"run.py: {name}: {argv[0]} not built, skipped", file=sys.stderr)
            continue
        if name == "duplex" and not duplex_has(argv[0], "echo-server"):
            print("run.py: duplex: no echo-server sub-command in this build, skipped",
                  file=sys.stderr)
            continue
        found[name] = argv
    return found


def duplex_has(duplex, command):
    try:
        out = subprocess.run([duplex, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"^\s+{re.escape(command)}\b", out.stdout, re.M) is not None


PIN = True


def pinned(core, argv):
    if PIN and shutil.which("taskset"):
        return ["taskset", "-c", str(core)] + argv
    return argv


class Server:
    """A server process; port read from its `listening on ... PORT` line."""

    def __init__(self, name, argv, wrapper=(), timeout=30.0):
        self.name = name
        # Under strace the server is strace's child: the signal goes to it, and
        # strace writes its summary once it exits.
        self.traced = bool(wrapper) and os.path.basename(wrapper[0]) == "strace"
        self.proc = subprocess.Popen(pinned(0, list(wrapper) + argv), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        self.port = None
        found = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                if self.port is None and "listening on" in line:
                    numbers = re.findall(r"\d+", line.split("listening on", 1)[1])
                    if numbers:
                        self.port = int(numbers[-1])
                        found.set()

        def read_stderr():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        self.stderr_thread = threading.Thread(target=read_stderr, daemon=True)
        self.stderr_thread.start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {''.join(self.stderr_lines)[-500:]}")

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"

    def rss_kib(self):
        """Resident set of the server itself (the wrapper, taskset, has exec'd)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, timeout=60.0):
        if self.proc.poll() is None:
            pids = [self.proc.pid]
            if self.traced:
                try:
                    with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                        pids = [int(p) for p in f.read().split()] or pids
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr_thread.join(5)


def run_load(duplex, url, args, timeout, wait_open=None, wrapper=(), slow_close=False):
    """Runs `duplex bench URL ARGS --json` on core 1 and returns its JSON object.
    `wait_open()` is called once every connection is open (idle mode); `wrapper`
    goes before the command (valgrind, for the client-side figures). With
    `slow_close`, connections still closing when `duplex bench` gives up on
    them are not an error (a server under massif, or on a loaded machine,
    may take longer than 3 s to close 10,000)."""
    argv = pinned(1, list(wrapper) + [duplex, "bench", url, "--json"] + args)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []
    opened = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if line.startswith("connections open"):
                opened.set()

    t = threading.Thread(target=read_stderr, daemon=True)
    t.start()
    sample = None
    if wait_open is not None:
        if opened.wait(timeout):
            sample = wait_open()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"duplex bench timed out: {' '.join(argv)}")
    t.join(5)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"duplex bench printed no result ({proc.returncode}): "
                           f"{''.join(err_lines)[-500:]}")
    result = json.loads(lines[-1])
    if slow_close and "did not finish closing" in result.get("first_error", "") and \
            result.get("errors", 0) <= 1:
        return result, sample
    if proc.returncode != 0 or result.get("errors"):
        raise RuntimeError(f"duplex bench failed against {url}: "
                           f"{result.get('first_error', ''.join(err_lines)[-300:])}")
    return result, sample


def throughput(servers, duplex, rounds, duration, scenarios=None):
    """Alternating rounds: for each scenario and round, every server in turn
    (the order rotates each round), a fresh server process each run."""
    scenarios = scenarios or LOAD_SCENARIOS
    samples = {s: {n: [] for n in servers} for s in scenarios}
    names = list(servers)
    for scenario in scenarios:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                server = Server(name, servers[name])
                try:
                    args = SCENARIOS[scenario]["args"] + ["-d", str(duration)]
                    result, _ = run_load(duplex, server.url, args, timeout=duration + 60)
                finally:
                    server.stop()
                samples[scenario][name].append(result)
                extra = ""
                if "p50_us" in result:
                    extra = f"  p50 {result['p50_us']:.1f} us  p99 {result['p99_us']:.1f} us"
                print(f"  {scenario:10} round {r + 1}  {name:12} "
                      f"{result['messages_per_s']:12.0f} msg/s{extra}", file=sys.stderr)
    table = {}
    for scenario, by_server in samples.items():
        table[scenario] = {}
        for name, results in by_server.items():
            entry = {
                "messages_per_s": statistics.median(r["messages_per_s"] for r in results),
                "mb_per_s": statistics.median(r["mb_per_s"] for r in results),
                "runs": [round(r["messages_per_s"]) for r in results],
                # What the load generator's core could push (messages per CPU
                # second it used): it must stay well above messages_per_s.
                "load_messages_per_cpu_s": statistics.median(
                    r.get("load_messages_per_cpu_s", 0) for r in results),
            }
            if all("p50_us" in r for r in results):
                entry["p50_us"] = statistics.median(r["p50_us"] for r in results)
                entry["p99_us"] = statistics.median(r["p99_us"] for r in results)
            table[scenario][name] = entry
    return table


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process and all its threads, and how
    many times its threads blocked (voluntary context switches), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    sleeps = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    sleeps += int(line.split()[1])
    return int(fields[11]) / tick, int(fields[12]) / tick, sleeps


def median_interval(values, confidence=0.95):
    """The order statistics that bound the median with `confidence` (sign
    test: the median lies between the k-th smallest and k-th largest of n
    values with probability 1 - 2 P(Binomial(n, 1/2) < k)); None under 6
    values, too few for a 95 % interval."""
    v = sorted(values)
    n = len(v)
    k = 0
    tail = 0.0
    while True:
        tail += math.comb(n, k) / 2 ** n
        if 2 * tail > 1 - confidence:
            break
        k += 1
    return (v[k - 1], v[n - k]) if k >= 1 else None


def wallclock(servers, duplex, pairs, duration):
    """64 KiB wall clock of duplex against epoll_echo, in adjacent pairs.

    Both servers run for the whole measurement (pinned to core 0, warmed up
    by one unrecorded run each); each pair is one `duplex bench -d DURATION`
    run against each, in the order AB, BA, AB, ... (so a trend over the run,
    or an advantage of going first, cancels out), and its ratio is duplex's
    messages/s over epoll_echo's. On a shared machine the rate of a run
    follows the other jobs; two adjacent runs share most of that, so the
    spread of the pair ratios shows how far the comparison can be trusted.
    Beside the rate, each run records the server's CPU time per message
    (user and system, from /proc), how often it blocked per message, and
    the load generator's CPU share."""
    names = ("duplex", "epoll_echo")
    args = SCENARIOS["large"]["args"] + ["-d", str(duration)]
    running = {}
    runs = {name: [] for name in names}
    ratios = []
    try:
        for name in names:
            running[name] = Server(name, servers[name])
            run_load(duplex, running[name].url, args, timeout=duration + 60)
        for p in range(pairs):
            pair = {}
            for name in (names if p % 2 == 0 else names[::-1]):
                server = running[name]
                user, system, sleeps = cpu_seconds(server.proc.pid)
                result, _ = run_load(duplex, server.url, args, timeout=duration + 60)
                user2, system2, sleeps2 = cpu_seconds(server.proc.pid)
                # The server's CPU counts from just before the load starts to
                # after it closed: a few connections' set-up and close more.
                messages = max(result["messages"], 1)
                pair[name] = {
                    "messages_per_s": round(result["messages_per_s"]),
                    "mb_per_s": result["mb_per_s"],
                    "server_user_us": round((user2 - user) * 1e6 / messages, 2),
                    "server_sys_us": round((system2 - system) * 1e6 / messages, 2),
                    "server_blocks": round((sleeps2 - sleeps) / messages, 4),
                    "load_cpu_share": round(result["load_cpu_s"] / result["seconds"], 3),
                }
            for name in names:
                runs[name].append(pair[name])
            ratios.append(pair["duplex"]["messages_per_s"] / pair["epoll_echo"]["messages_per_s"])
            print(f"  64 KiB     pair {p + 1:2}  duplex {pair['duplex']['messages_per_s']:8,} "
                  f"epoll_echo {pair['epoll_echo']['messages_per_s']:8,} msg/s  "
                  f"ratio {ratios[-1]:.2f}", file=sys.stderr)
    finally:
        for server in running.values():
            server.stop()
    table = {"pairs": pairs, "duration_s": duration, "args": " ".join(args),
             "ratios": [round(r, 3) for r in ratios], "ratio": statistics.median(ratios),
             "ratio_min": min(ratios), "ratio_max": max(ratios),
             "pairs_duplex_faster": sum(r > 1 for r in ratios), "servers": {}}
    if len(ratios) >= 2:
        q = statistics.quantiles(ratios, n=4)
        table["ratio_quartiles"] = [q[0], q[2]]
    interval = median_interval(ratios)
    if interval:
        table["ratio_ci95"] = list(interval)
    for name in names:
        rows = runs[name]
        table["servers"][name] = {
            "messages_per_s": statistics.median(r["messages_per_s"] for r in rows),
            "mb_per_s": statistics.median(r["mb_per_s"] for r in rows),
            "server_cpu_us": statistics.median(r["server_user_us"] + r["server_sys_us"]
                                               for r in rows),
            "server_user_us": statistics.median(r["server_user_us"] for r in rows),
            "server_sys_us": statistics.median(r["server_sys_us"] for r in rows),
            "server_blocks": statistics.median(r["server_blocks"] for r in rows),
            "load_cpu_share": statistics.median(r["load_cpu_share"] for r in rows),
            "runs": rows,
        }
    return table


def idle_memory(servers, duplex, rounds, connections):
    """Server RSS growth per open idle connection, in KiB (median of rounds)."""
    table = {}
    names = list(servers)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            server = Server(name, servers[name])
            try:
                # One connection first, so lazily built state (buffers, the
                # reactor's tables) is in the baseline and not charged per connection.
                run_load(duplex, server.url, ["-c", "1", "-k", "1", "-n", "10"], timeout=30)
                base = server.rss_kib()

                def sample():
                    time.sleep(0.3)
                    return server.rss_kib()

                hold = 2.0 if connections > 1000 else 0.6
                _, peak = run_load(duplex, server.url,
                                   ["-c", str(connections), "-k", "0", "-d", str(hold)],
                                   timeout=120, wait_open=sample, slow_close=True)
            finally:
                server.stop()
            if peak is None:
                raise RuntimeError(f"{name}: connections never all opened")
            per = (peak - base) / connections
            table.setdefault(name, []).append(per)
            print(f"  idle       round {r + 1}  {name:12} {per:8.2f} KiB/connection "
                  f"({base} -> {peak} KiB)", file=sys.stderr)
    return {name: {"kib_per_connection": statistics.median(v)} for name, v in table.items()}


def self_check(bin_dir, duplex):
    """`duplex bench` must fail against a server that corrupts its echoes."""
    beast = os.path.join(bin_dir, "beast_echo")
    if not os.access(beast, os.X_OK):
        print("run.py: self-check skipped (no beast_echo)", file=sys.stderr)
        return
    server = Server("beast (corrupting)", [beast, "0", "corrupt"])
    try:
        run_load(duplex, server.url, ["-c", "2", "-k", "2", "-n", "100"], timeout=30)
    except RuntimeError as e:
        if "differs" not in str(e):
            raise RuntimeError(f"self-check: duplex bench failed for another reason: {e}")
        print("  self-check: duplex bench caught a corrupted echo", file=sys.stderr)
        return
    finally:
        server.stop()
    raise RuntimeError("self-check: duplex bench accepted corrupted echoes")


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def tag(args):
    """A file-name tag for bench arguments: ["-c", "100", "-k", "1"] -> "c100-k1"."""
    return "-".join(a.lstrip("-") + (b if not b.startswith("-") else "")
                    for a, b in zip(args, args[1:] + ["-"]) if a.startswith("-"))


class Issue11:
    """The figures of issue 11, each by subtraction so start-up cancels out:
    a load run minus a base run with the same connections and one echo each.

    - server: Ir per echoed message (callgrind on the server), per scenario;
    - accept: Ir per accepted connection (1,000 connections minus 100, one
      echo each, handshake and close included);
    - syscalls: system calls per ping-pong message (strace -f -c on the server);
    - massif: heap bytes per idle connection (valgrind massif snapshots through
      vgdb before and while the connections are open);
    - client: Ir per message of `duplex bench` itself (wire engine and --api)
      against epoll_echo;
    - 64 KiB wall-clock MB/s of duplex against epoll_echo, alternated."""

    def __init__(self, servers, duplex, smoke, workdir):
        self.servers, self.duplex, self.smoke, self.workdir = servers, duplex, smoke, workdir
        self.cache = {}

    def messages(self, scenario):
        spec = SCENARIOS[scenario]
        return spec["smoke_messages"] if self.smoke else spec["callgrind_messages"]

    @staticmethod
    def load_args(scenario):
        """(bench arguments without -n, connections) of the steady-state load."""
        spec = SCENARIOS[scenario]
        args = spec.get("callgrind_args", spec["args"])
        return [a for a in args if a != "--latency"], spec.get("callgrind_connections",
                                                               spec["connections"])

    def server_ir(self, name, args):
        """Ir of one server process that echoes the load `args` (cached)."""
        key = (name, tuple(args))
        if key not in self.cache:
            out = os.path.join(self.workdir, f"callgrind.{name}.{tag(args)}")
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            server = Server(name, self.servers[name], wrapper=wrapper, timeout=120)
            try:
                run_load(self.duplex, server.url, args, timeout=900)
            finally:
                server.stop(timeout=120)
            self.cache[key] = callgrind_total(out)
        return self.cache[key]

    def server_steady(self, name, scenario):
        args, connections = self.load_args(scenario)
        extra = self.messages(scenario)
        base = self.server_ir(name, args + ["-n", str(connections)])
        load = self.server_ir(name, args + ["-n", str(connections + extra)])
        per = (load - base) / extra
        print(f"  callgrind  {scenario:10} {name:12} {per:10.0f} Ir/message "
              f"({extra} messages over the base)", file=sys.stderr)
        return {"instructions_per_message": per, "messages": extra, "ir_load": load,
                "ir_base": base, "args": " ".join(args)}

    def accept(self, name):
        # 100 connections with one echo each is also ping-pong's base run (cached).
        few, many = (100, 130) if self.smoke else (100, 1000)
        ir = {c: self.server_ir(name, ["-c", str(c), "-k", "1", "-s", "16", "-n", str(c)])
              for c in (few, many)}
        per = (ir[many] - ir[few]) / (many - few)
        print(f"  accept                {name:12} {per:10.0f} Ir/connection "
              f"({many} - {few} connections)", file=sys.stderr)
        return {"instructions_per_connection": per, "connections": [few, many],
                "ir": [ir[few], ir[many]]}

    def strace_counts(self, name, args):
        out = os.path.join(self.workdir, f"strace.{name}.{tag(args)}")
        server = Server(name, self.servers[name], wrapper=["strace", "-f", "-c", "-o", out],
                        timeout=60)
        try:
            run_load(self.duplex, server.url, args, timeout=600)
        finally:
            server.stop(timeout=60)
        counts = {}
        with open(out) as f:
            for line in f:
                fields = line.split()
                # "% time seconds usecs/call calls [errors] syscall"
                if len(fields) >= 5 and re.match(r"^[\d.]+$", fields[0]) and \
                        fields[-1] != "total" and fields[3].isdigit():
                    counts[fields[-1]] = int(fields[3])
        return counts

    def syscalls(self, name):
        args, connections = self.load_args("pingpong")
        extra = 300 if self.smoke else 10000
        base = self.strace_counts(name, args + ["-n", str(connections)])
        load = self.strace_counts(name, args + ["-n", str(connections + extra)])
        per = {call: (load.get(call, 0) - base.get(call, 0)) / extra
               for call in set(base) | set(load)}
        per = {call: v for call, v in per.items() if abs(v) >= 0.0005}
        total = sum(per.values())
        print(f"  strace     pingpong   {name:12} {total:10.2f} syscalls/message, "
              f"epoll_ctl {per.get('epoll_ctl', 0):.3f}", file=sys.stderr)
        return {"per_message": per, "total_per_message": total, "messages": extra,
                "args": " ".join(args)}

    def heap_snapshot(self, pid, tag):
        path = os.path.join(self.workdir, f"massif.snapshot.{tag}")
        res = subprocess.run(["vgdb", f"--pid={pid}", "snapshot", path], capture_output=True,
                             text=True, timeout=120)
        if res.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"vgdb snapshot failed: {res.stderr[-300:]}")
        values = {}
        with open(path) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key in ("mem_heap_B", "mem_heap_extra_B"):
                    values[key] = int(value)
        return values.get("mem_heap_B", 0) + values.get("mem_heap_extra_B", 0)

    def massif(self, name, connections):
        out = os.path.join(self.workdir, f"massif.{name}")
        wrapper = ["valgrind", "--tool=massif", f"--massif-out-file={out}", "--vgdb=yes"]
        server = Server(name, self.servers[name], wrapper=wrapper, timeout=120)
        try:
            run_load(self.duplex, server.url, ["-c", "1", "-k", "1", "-n", "10"], timeout=120)
            base = self.heap_snapshot(server.proc.pid, f"{name}.base")
            _, peak = run_load(self.duplex, server.url,
                               ["-c", str(connections), "-k", "0", "-d", "4"], timeout=600,
                               slow_close=True,
                               wait_open=lambda: self.heap_snapshot(server.proc.pid,
                                                                    f"{name}.open"))
        finally:
            server.stop(timeout=120)
        if peak is None:
            raise RuntimeError(f"{name}: connections never all opened under massif")
        per = (peak - base) / connections
        print(f"  massif     idle       {name:12} {per:10.0f} heap B/connection "
              f"({base} -> {peak} B)", file=sys.stderr)
        return {"heap_bytes_per_connection": per, "connections": connections,
                "heap_base": base, "heap_open": peak}

    def client_ir(self, url, args, engine):
        out = os.path.join(self.workdir, f"callgrind.client-{engine}.{tag(args)}")
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        run_load(self.duplex, url, args + (["--api"] if engine == "api" else []), timeout=900,
                 wrapper=wrapper)
        return callgrind_total(out)

    def client(self):
        """`duplex bench`'s own Ir per message against epoll_echo (not under valgrind)."""
        table = {}
        server = Server("epoll_echo", self.servers["epoll_echo"])
        try:
            for engine in ("wire", "api"):
                for scenario in ("pingpong", "pipelined"):
                    args, connections = self.load_args(scenario)
                    extra = self.messages(scenario)
                    base = self.client_ir(server.url, args + ["-n", str(connections)], engine)
                    load = self.client_ir(server.url, args + ["-n", str(connections + extra)],
                                          engine)
                    per = (load - base) / extra
                    table.setdefault(engine, {})[scenario] = {
                        "instructions_per_message": per, "messages": extra, "ir_load": load,
                        "ir_base": base, "args": " ".join(args)}
                    print(f"  client     {scenario:10} {engine:12} {per:10.0f} Ir/message",
                          file=sys.stderr)
        finally:
            server.stop()
        return table


def issue11(servers, duplex, smoke, workdir, data, rounds, idle_connections, pairs, duration):
    """Every figure of issue 11 into `data`, in one run."""
    m = Issue11(servers, duplex, smoke, workdir)
    have_strace = shutil.which("strace") is not None
    if not have_strace:
        print("run.py: strace not installed, no syscall figures", file=sys.stderr)
    # Smoke mode runs the extra figures for two servers only: enough to keep
    # every code path alive, half the valgrind start-ups.
    extra = {n: v for n, v in servers.items()
             if not smoke or n in ("duplex", "epoll_echo")} or servers
    for name in servers:
        data.setdefault("callgrind", {})[name] = {
            scenario: m.server_steady(name, scenario) for scenario in LOAD_SCENARIOS}
        if name in extra:
            data.setdefault("accept", {})[name] = m.accept(name)
            if have_strace:
                data.setdefault("syscalls", {})[name] = m.syscalls(name)
    for name in extra:
        data.setdefault("massif", {})[name] = m.massif(name, idle_connections)
    data["memory"] = idle_memory(extra, duplex, rounds, idle_connections)
    data["idle_connections"] = idle_connections
    if "epoll_echo" in servers:
        data["client"] = m.client()
    if "duplex" in servers and "epoll_echo" in servers:
        part = time.monotonic()
        data["wallclock_64k"] = wallclock_64k(servers, duplex, pairs, duration)
        data["wallclock_64k"]["run"] = run_stamp(part)


def wallclock_64k(servers, duplex, pairs, duration):
    """wallclock() of duplex and epoll_echo, with its one-line summary."""
    table = wallclock({n: servers[n] for n in ("duplex", "epoll_echo")}, duplex, pairs, duration)
    ci = table.get("ratio_ci95")
    ci = f", 95 % interval of the median {ci[0]:.2f}-{ci[1]:.2f}" if ci else ""
    print(f"  64 KiB wall clock: duplex / epoll_echo = {table['ratio']:.2f} (median of "
          f"{pairs} pairs{ci}; duplex faster in {table['pairs_duplex_faster']})", file=sys.stderr)
    return table


ISSUE11_SECTIONS = ("callgrind", "accept", "syscalls", "massif", "memory", "client",
                    "wallclock_64k")


def run_stamp(started):
    """When, at which commit and in how long a run was made."""
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "seconds": round(time.monotonic() - started)}


def best_peer(values):
    """The best peer's figure: the highest value among servers other than duplex."""
    peers = {n: v for n, v in values.items() if n != "duplex"}
    return max(peers.values()) if peers else None


def duplex_first(names):
    return sorted(names, key=lambda n: (n != "duplex", n))


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def get(data, *keys):
    """data[k0][k1]..., or None where a level is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def stamp_text(run):
    """"DATE, at commit C, S s" of a run stamp."""
    run = run or {}
    parts = [run["date"]] if run.get("date") else []
    if run.get("commit"):
        parts.append(f"at commit {run['commit']}")
    if run.get("seconds"):
        parts.append(f"{run['seconds']} s")
    return ", ".join(parts)


def stamp(data, key):
    when = stamp_text(data.get(f"{key}_run"))
    return f"`{data.get(f'{key}_command', '?')}`" + (f", {when}" if when else "")


# Issue 11's required figures: (label, path in the JSON, limit, "max" or "min", digits).
TARGETS = [
    ("server, pipelined 16 B, Ir/message", ("callgrind", "duplex", "pipelined",
                                            "instructions_per_message"), 400, "max", 0),
    ("server, ping-pong, Ir/message", ("callgrind", "duplex", "pingpong",
                                       "instructions_per_message"), 700, "max", 0),
    ("server, 64 KiB, Ir/message", ("callgrind", "duplex", "large", "instructions_per_message"),
     20000, "max", 0),
    ("server, KiB per idle connection (RSS, 10,000)", ("memory", "duplex",
                                                       "kib_per_connection"), 1.0, "max", 2),
    ("server, Ir per accepted connection", ("accept", "duplex", "instructions_per_connection"),
     15000, "max", 0),
    ("server, epoll_ctl per ping-pong message", ("syscalls", "duplex", "per_message",
                                                 "epoll_ctl"), 0.1, "max", 3),
    ("server, 64 KiB MB/s / epoll_echo's", ("wallclock_64k", "ratio"), 1.0, "min", 2),
    ("client `duplex bench`, ping-pong Ir/message", ("client", "wire", "pingpong",
                                                     "instructions_per_message"), 600, "max", 0),
    ("client `duplex bench`, pipelined Ir/message", ("client", "wire", "pipelined",
                                                     "instructions_per_message"), 300, "max", 0),
    ("client MessageWebSocket, ping-pong Ir/message", ("client", "api", "pingpong",
                                                       "instructions_per_message"), 1000, "max", 0),
    ("client MessageWebSocket, pipelined Ir/message", ("client", "api", "pipelined",
                                                       "instructions_per_message"), 500, "max", 0),
]


def print_issue11(data, out):
    cg = data.get("callgrind")
    if not cg:
        return
    conns = data.get("idle_connections", "?")
    print(f"\n#### Server side, one thread each\n\nRun: {stamp(data, 'callgrind')}.\n", file=out)
    print(f"| server | pipelined 16 B | ping-pong 16 B | 64 KiB | idle KiB/conn (RSS, {conns:,}) "
          f"| idle heap B/conn (massif) | Ir per accepted connection | syscalls per ping-pong "
          "| epoll_ctl per ping-pong |", file=out)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", file=out)
    for name in duplex_first(cg):
        cells = [fmt(get(cg, name, s, "instructions_per_message")) for s in SCENARIOS]
        cells += [fmt(get(data, "memory", name, "kib_per_connection"), 2),
                  fmt(get(data, "massif", name, "heap_bytes_per_connection")),
                  fmt(get(data, "accept", name, "instructions_per_connection")),
                  fmt(get(data, "syscalls", name, "total_per_message"), 2),
                  fmt(get(data, "syscalls", name, "per_message", "epoll_ctl") or
                      (0.0 if get(data, "syscalls", name) else None), 3)]
        print(f"| {name} | {' | '.join(cells)} |", file=out)
    sc = data.get("syscalls")
    if sc:
        print("\nSystem calls per ping-pong message (strace -f -c on the server; "
              "load minus base over the extra messages):\n", file=out)
        print("| server | system calls per message |", file=out)
        print("|---|---|", file=out)
        for name in duplex_first(sc):
            per = sorted(sc[name]["per_message"].items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{call} {v:.2f}" for call, v in per if v >= 0.005)
            print(f"| {name} | {text or '–'} |", file=out)
    client = data.get("client")
    if client:
        print("\n#### Client side: `duplex bench` against epoll_echo\n", file=out)
        print("| engine | ping-pong 16 B (100 × 1) | pipelined 16 B (100 × 16) |", file=out)
        print("|---|---:|---:|", file=out)
        for engine, label in (("wire", "wire engine (default)"),
                              ("api", "`--api` (MessageWebSocket)")):
            if engine in client:
                cells = [fmt(get(client, engine, s, "instructions_per_message"))
                         for s in ("pingpong", "pipelined")]
                print(f"| {label} | {' | '.join(cells)} |", file=out)
    wc = data.get("wallclock_64k")
    if wc and "pairs" in wc:
        print_wallclock(wc, out)
    elif wc:
        print(f"\n#### 64 KiB wall clock, duplex against epoll_echo\n\n"
              f"{wc['rounds']} alternating rounds of {wc['duration_s']} s, 10 connections × 4 in "
              f"flight, medians; duplex / epoll_echo = **{wc['ratio']:.2f}**.\n", file=out)
        print("| server | MB/s | messages/s per round |", file=out)
        print("|---|---:|---|", file=out)
        for name in duplex_first(wc["servers"]):
            r = wc["servers"][name]
            print(f"| {name} | {r['mb_per_s']:,.1f} | {', '.join(f'{x:,}' for x in r['runs'])} |",
                  file=out)
    print("\n#### Against the targets of issue 11\n", file=out)
    print("| figure | target | measured | |", file=out)
    print("|---|---:|---:|---|", file=out)
    for label, path, limit, kind, digits in TARGETS:
        value = get(data, *path)
        if value is None and path[0] == "syscalls" and get(data, *path[:2]) is not None:
            value = 0.0
        if value is None:
            verdict = "not measured"
        elif (value <= limit) if kind == "max" else (value >= limit):
            verdict = "met"
        else:
            verdict = f"missed ({value / limit:.2f}× the target)"
        ci = get(data, path[0], "ratio_ci95") if path[-1] == "ratio" else None
        if ci and value is not None:
            # A median of paired ratios: how sure the verdict is.
            verdict += f"; 95 % interval of the median {ci[0]:.2f}-{ci[1]:.2f}"
        sign = "≤" if kind == "max" else "≥"
        print(f"| {label} | {sign} {fmt(limit, digits)} | {fmt(value, digits)} | {verdict} |",
              file=out)


def print_wallclock(wc, out):
    run = f"Run: `{wc['command']}`, {stamp_text(wc.get('run'))}.\n\n" if "command" in wc else ""
    spread = [f"range {wc['ratio_min']:.2f}-{wc['ratio_max']:.2f}"]
    if "ratio_quartiles" in wc:
        spread.insert(0, "quartiles {:.2f}-{:.2f}".format(*wc["ratio_quartiles"]))
    if "ratio_ci95" in wc:
        spread.append("95 % interval of the median {:.2f}-{:.2f}".format(*wc["ratio_ci95"]))
    print(f"\n#### 64 KiB wall clock, duplex against epoll_echo\n\n{run}"
          f"{wc['pairs']} pairs of {wc['duration_s']} s runs of `duplex bench {wc['args']}`, one "
          f"against each server, in the order AB, BA, AB, ...; both servers run throughout. "
          f"duplex / epoll_echo = **{wc['ratio']:.2f}**, the median of the pair ratios "
          f"({', '.join(spread)}; duplex faster in {wc['pairs_duplex_faster']} of "
          f"{wc['pairs']} pairs).\n", file=out)
    print("| server | messages/s | MB/s | server CPU µs/message (user + system) "
          "| server blocks/message | load generator CPU share |", file=out)
    print("|---|---:|---:|---:|---:|---:|", file=out)
    for name in duplex_first(wc["servers"]):
        r = wc["servers"][name]
        print(f"| {name} | {r['messages_per_s']:,.0f} | {r['mb_per_s']:,.1f} | "
              f"{r['server_cpu_us']:.1f} ({r['server_user_us']:.1f} + {r['server_sys_us']:.1f}) | "
              f"{r['server_blocks']:.3f} | {r['load_cpu_share']:.2f} |", file=out)
    print("\nMedians of the runs. Pair ratios in run order: "
          f"{', '.join(f'{r:.2f}' for r in wc['ratios'])}.", file=out)


def print_tables(data, out=sys.stdout):
    tp = data.get("throughput")
    if tp:
        print(f"\n#### Throughput\n\nRun: {stamp(data, 'throughput')}. Median of alternating "
              "rounds; ratio = server / best peer.\n", file=out)
        print("| scenario | server | messages/s | MB/s | p50 µs | p99 µs | vs best peer |", file=out)
        print("|---|---|---:|---:|---:|---:|---:|", file=out)
        for scenario in SCENARIOS:
            rows = tp.get(scenario, {})
            best = best_peer({n: r["messages_per_s"] for n, r in rows.items()})
            for name in duplex_first(rows):
                r = rows[name]
                ratio = f"{r['messages_per_s'] / best:.2f}" if best else "–"
                p50 = f"{r['p50_us']:.1f}" if "p50_us" in r else "–"
                p99 = f"{r['p99_us']:.1f}" if "p99_us" in r else "–"
                print(f"| {scenario} | {name} | {r['messages_per_s']:,.0f} | "
                      f"{r['mb_per_s']:,.1f} | {p50} | {p99} | {ratio} |", file=out)
    print_issue11(data, out)


DOC_BEGIN = "<!-- bench/run.py --report: generated from benchmarks.json, do not edit -->"
DOC_END = "<!-- end of bench/run.py --report -->"


def update_doc(data, path):
    """Replaces the generated block of docs/benchmarks.md with fresh tables."""
    with open(path) as f:
        text = f.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        print(f"run.py: {path} has no generated block, not updated", file=sys.stderr)
        return
    buf = io.StringIO()
    print_tables(data, buf)
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    with open(path, "w") as f:
        f.write(head + DOC_BEGIN + "\n" + buf.getvalue().strip("\n").replace("\n\n\n", "\n\n")
                + "\n\n" + DOC_END + tail)
    print(f"run.py: tables in {path} regenerated", file=sys.stderr)


def chart(data, path, workdir):
    """Two panels: messages/s and instructions per message, by scenario and server."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("run.py: gnuplot not installed, no chart", file=sys.stderr)
        return False
    def throughput_value(scenario, name):
        row = data.get("throughput", {}).get(scenario, {}).get(name)
        return row["messages_per_s"] if row else None

    def callgrind_value(scenario, name):
        row = data.get("callgrind", {}).get(name, {}).get(scenario)
        return row["instructions_per_message"] if row else None

    names = set(data.get("callgrind", {}))
    for rows in data.get("throughput", {}).values():
        names.update(rows)
    panels = []
    for title, value, file in (
            ("Throughput (messages/s, higher is better)", throughput_value, "throughput.dat"),
            ("User-space instructions per echoed message (lower is better)", callgrind_value,
             "callgrind.dat")):
        # gnuplot refuses a column without a single point: keep the servers
        # with at least one figure in this panel.
        columns = [n for n in duplex_first(names)
                   if any(value(sc, n) is not None for sc in SCENARIOS)]
        if not columns:
            continue
        file = os.path.join(workdir, file)
        with open(file, "w") as f:
            f.write("scenario " + " ".join(columns) + "\n")
            for scenario in SCENARIOS:
                f.write(scenario + " " + " ".join(
                    "NaN" if value(scenario, n) is None else str(value(scenario, n))
                    for n in columns) + "\n")
        plot = ", ".join(f"'{file}' using {i + 2}:xtic(1) title columnheader({i + 2})"
                         for i in range(len(columns)))
        panels.append((title, plot))
    if not panels:
        return False
    if path.endswith(".png"):
        terminal = f"set terminal pngcairo size {500 * len(panels)},420 font 'sans,10'"
    else:
        terminal = (f"set terminal svg size {500 * len(panels)},420 dynamic font 'sans,11' "
                    "background '#ffffff'")
    body = "".join(f'set title "{title}"\nplot {plot}\n' for title, plot in panels)
    script = f"""
{terminal}
set output '{path}'
set multiplot layout 1,{len(panels)} title "Echo servers, one thread each, loopback ({data.get('machine', '')})"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside bottom center horizontal
set logscale y
set grid ytics
set format y "%.0s%c"
{body}unset multiplot
"""
    script_path = os.path.join(workdir, "chart.gp")
    with open(script_path, "w") as f:
        f.write(script)
    res = subprocess.run([gnuplot, script_path], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"gnuplot failed: {res.stderr}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    parser.add_argument("--out", help="where benchmarks.json and benchmarks.svg go "
                        "(default: docs/, or BUILD_DIR/bench-smoke with --smoke)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load run")
    parser.add_argument("--idle-connections", type=int, default=10000)
    parser.add_argument("--servers", help="comma-separated subset of duplex,beast,websocketpp")
    parser.add_argument("--callgrind", action="store_true",
                        help="every figure of issue 11 (callgrind, strace, massif, client side, "
                        "64 KiB wall clock) instead of the throughput rounds")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the raw callgrind, strace and massif outputs in DIR "
                        "(for callgrind_annotate)")
    parser.add_argument("--all", action="store_true",
                        help="the throughput rounds, then everything --callgrind measures")
    parser.add_argument("--wallclock", action="store_true",
                        help="only the 64 KiB wall clock of duplex against epoll_echo (the pairs "
                        "of --callgrind's last part; replaces that section alone)")
    parser.add_argument("--pairs", type=int, default=24,
                        help="pairs of runs in the 64 KiB wall clock (default 24)")
    parser.add_argument("--pair-duration", type=float, default=1.0,
                        help="seconds per run of the 64 KiB wall clock (default 1.0)")
    parser.add_argument("--smoke", action="store_true", help="seconds in all, for CI")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin with taskset (on a machine shared with other jobs, "
                        "a pinned process waits for its core: ping-pong then measures that wait)")
    parser.add_argument("--scenarios", help="comma-separated subset of pipelined,pingpong,large,idle")
    parser.add_argument("--report", action="store_true",
                        help="only print the tables and redraw the chart from OUT/benchmarks.json")
    parser.add_argument("--duplex", help="the duplex executable (default: BUILD_DIR/bin/duplex)")
    args = parser.parse_args()

    global PIN, LOAD_SCENARIOS
    PIN = not args.no_pin
    run_idle = True
    if args.scenarios:
        wanted = args.scenarios.split(",")
        unknown = [w for w in wanted if w not in SCENARIOS and w != "idle"]
        if unknown:
            sys.exit(f"run.py: unknown scenario {unknown[0]}")
        LOAD_SCENARIOS = [s for s in SCENARIOS if s in wanted]
        run_idle = "idle" in wanted
    if args.pairs < 1 or args.pair_duration <= 0:
        parser.error("--pairs must be at least 1 and --pair-duration above 0")
    if args.smoke:
        args.rounds, args.duration, args.idle_connections = 1, 0.3, 200
        args.pairs, args.pair_duration = 2, 0.3
    if args.report:
        out = args.out or os.path.join(ROOT, "docs")
        with open(os.path.join(out, "benchmarks.json")) as f:
            data = json.load(f)
        print_tables(data)
        doc = os.path.join(out, "benchmarks.md")
        if os.path.exists(doc):
            update_doc(data, doc)
        with tempfile.TemporaryDirectory(prefix="duplex-bench-") as workdir:
            chart(data, os.path.join(out, "benchmarks.svg"), workdir)
        return
    bin_dir = os.path.join(args.build_dir, "bin")
    duplex = args.duplex or os.path.join(bin_dir, "duplex")
    if (args.callgrind or args.all) and not shutil.which("valgrind"):
        sys.exit("run.py: valgrind not installed (scripts/setup.sh --tests)")
    if not duplex_has(duplex, "bench"):
        sys.exit(f"run.py: {duplex} has no bench sub-command; build it first")
    servers = server_commands(bin_dir)
    if args.servers:
        wanted = args.servers.split(",")
        servers = {n: v for n, v in servers.items() if n in wanted}
    if not servers:
        sys.exit("run.py: no server to measure")

    if not args.out:
        args.out = (os.path.join(args.build_dir, "bench-smoke") if args.smoke
                    else os.path.join(ROOT, "docs"))
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "benchmarks.json")
    data = {}
    if os.path.exists(json_path):
        with open(json_path) as f:
            data = json.load(f)
    data["machine"] = f"{os.cpu_count()} cores, " + os.uname().release
    started = time.monotonic()
    if args.smoke:
        self_check(bin_dir, duplex)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    keep = contextlib.nullcontext(os.path.abspath(args.keep)) if args.keep else None
    with keep or tempfile.TemporaryDirectory(prefix="duplex-bench-") as workdir:
        command = " ".join(["bench/run.py"] + sys.argv[1:])
        if args.wallclock and not (args.callgrind or args.all):
            if "duplex" not in servers or "epoll_echo" not in servers:
                sys.exit("run.py: --wallclock needs duplex and epoll_echo")
            part = time.monotonic()
            data["wallclock_64k"] = wallclock_64k(servers, duplex, args.pairs,
                                                  args.pair_duration)
            data["wallclock_64k"].update(command=command, run=run_stamp(part))
        elif not args.callgrind or args.all:
            part = time.monotonic()
            data.setdefault("throughput", {}).update(
                throughput(servers, duplex, args.rounds, args.duration))
            if run_idle and not args.all:
                data["memory"] = idle_memory(servers, duplex, args.rounds, args.idle_connections)
                data["idle_connections"] = args.idle_connections
            data["throughput_command"] = command
            data["throughput_run"] = run_stamp(part)
        if args.callgrind or args.all:
            part = time.monotonic()
            # Every figure of this mode comes from this one run: no leftovers.
            for section in ISSUE11_SECTIONS:
                data.pop(section, None)
            issue11(servers, duplex, args.smoke, workdir, data, args.rounds,
                    args.idle_connections, args.pairs, args.pair_duration)
            data["callgrind_command"] = command
            data["callgrind_run"] = run_stamp(part)
        with open(json_path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        print_tables(data)
        doc = os.path.join(args.out, "benchmarks.md")
        if os.path.exists(doc):
            update_doc(data, doc)
        svg = os.path.join(args.out, "benchmarks.svg")
        if chart(data, svg, workdir):
            print(f"\nchart: {svg}", file=sys.stderr)
    print(f"run.py: done in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
