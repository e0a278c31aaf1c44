#!/usr/bin/python3
"""Fan-out benchmarks of `duplex pubsub-server` (issue 10), printed as Markdown
tables for docs/pubsub.md. Every load is `duplex bench --fanout N URL`: one
publisher and N subscribers on one path, each message carrying its sequence
number and publish time (deliveries/s, publish-to-delivery p50/p99, and the
run fails on a lost or reordered message).

Modes:
  (default)    the same load against three topic servers with the same
               semantics (path = topic, the sender excluded), one loop each:
                 duplex   `duplex pubsub-server --threads 1`
                 node-ws  bench/peers/fanout_ws.js (Node `ws`, npm)
                 python   bench/peers/fanout_websockets.py
                          (websockets.broadcast, Debian python3-websockets)
               Rounds alternate the servers (the order rotates each round);
               medians are reported with each peer's ratio to duplex. The
               server is pinned to core 0 and the load to core 1 (taskset).
  --nodes      three `duplex pubsub-server --threads 1` nodes relaying through
               a redis-server and then a nats-server (each started here on a
               free loopback port and stopped by pid), the publisher on node 1
               and the subscribers spread over the three nodes
               (`--subscribe-url`); one node without a broker for reference.
               Reports deliveries/s, p50/p99, and the CPU time of the broker
               and of the nodes during the load (utime + stime from
               /proc/PID/stat). Not pinned: five processes on the machine.
  --callgrind  `valgrind --tool=callgrind --separate-threads=yes duplex bench
               --fanout 1000 -s S -k K -d 5` (S from
               --callgrind-sizes, 16 by default; the server in the bench's
               process, one loop; K from -k, 16 by default); on the server
               loop's thread: instructions per delivery in TopicRegistry's
               delivery, in Session::send_prebuilt within it, in the
               connections' flushes, and the whole thread (handshakes
               included). How many deliveries share a flush depends on how the
               client loop keeps up (valgrind runs one thread at a time), so
               it is reported; -k 1 makes it about one.

Everything this starts is stopped (SIGTERM, then SIGKILL) by pid.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PYTHON = "/usr/bin/python3"  # Debian's, with websockets 10.4
NODE_MODULES = os.path.join(ROOT, ".deps", "node", "node_modules")
PIN = True


def pinned(core, argv):
    if PIN and shutil.which("taskset"):
        return ["taskset", "-c", str(core)] + argv
    return argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing accepts on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A process we started; with `listening=True` its port is read from its
    `listening on ...:PORT/` line."""

    def __init__(self, name, argv, listening=True, env=None, timeout=30.0):
        self.name = name
        self.lines = []
        self.port = None
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                if self.port is None and "listening on" in line:
                    self.port = int(re.findall(r":(\d+)/", line)[-1])
                    found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not listening:
            return
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {''.join(self.lines)[-500:]}")

    def url(self, path="/bench"):
        return f"ws://127.0.0.1:{self.port}{path}"

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


def bench(duplex, url, args, subscribe_urls=(), core=1):
    """`duplex bench --fanout ... URL --json` and its JSON object."""
    argv = [duplex, "bench", url, "--json"] + args
    for u in subscribe_urls:
        argv += ["--subscribe-url", u]
    out = subprocess.run(pinned(core, argv) if core is not None else argv, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_args(a, size):
    return ["--fanout", str(a.subscribers), "-s", str(size), "-k", str(a.window), "-d",
            str(a.duration)]


# --- comparison -----------------------------------------------------------------------------

def servers(duplex):
    node_env = dict(os.environ, NODE_PATH=NODE_MODULES)
    return {
        "duplex": lambda: Process("duplex", pinned(0, [duplex, "pubsub-server", "--port", "0",
                                                       "--threads", "1"])),
        "node-ws": lambda: Process("node-ws", pinned(0, ["node", os.path.join(PEERS,
                                                                             "fanout_ws.js")]),
                                   env=node_env),
        "python": lambda: Process("python", pinned(0, [PYTHON, os.path.join(PEERS,
                                                                           "fanout_websockets.py")])),
    }


def compare(a, duplex):
    names = list(servers(duplex))
    if a.servers:
        names = [n for n in names if n in a.servers.split(",")]
    results = collections.defaultdict(list)  # (size, name) -> [run]
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for size in a.sizes:
            for name in order:
                server = servers(duplex)[name]()
                try:
                    results[(size, name)].append(bench(duplex, server.url(), load_args(a, size)))
                finally:
                    server.stop()
                print(f"  round {r + 1} {name} {size} B: "
                      f"{results[(size, name)][-1]['deliveries_per_second']}/s", file=sys.stderr)
    print(f"\n`{' '.join(sys.argv)}` ({a.rounds} rounds, medians; {a.subscribers} subscribers, "
          f"-k {a.window}, {a.duration} s per run; ratio: the peer's value / duplex's)\n")
    print("| server | size | deliveries/s | ratio | p50 | ratio | p99 | ratio | lost / reordered |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes:
        base = None
        for name in names:
            runs = results[(size, name)]
            dps = statistics.median(x["deliveries_per_second"] for x in runs)
            p50 = statistics.median(x["p50_us"] for x in runs)
            p99 = statistics.median(x["p99_us"] for x in runs)
            lost = sum(x["lost"] for x in runs)
            reordered = sum(x["reordered"] for x in runs)
            if base is None:
                base = (dps, p50, p99)
            print(f"| {name} | {size} B | {dps:,.0f} | {dps / base[0]:.2f} | {p50 / 1000:.1f} ms "
                  f"| {p50 / base[1]:.2f} | {p99 / 1000:.1f} ms | {p99 / base[2]:.2f} "
                  f"| {lost} / {reordered} |")
    return results


# --- across nodes ---------------------------------------------------------------------------

def start_broker(kind):
    port = free_port()
    if kind == "redis":
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]
    else:
        argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
    broker = Process(kind, argv, listening=False)
    try:
        wait_accepting(port)
    except Exception:
        broker.stop()
        raise
    return broker, f"{kind}://127.0.0.1:{port}"


def across_nodes(a, duplex):
    rows = []
    for kind in ["none"] + a.brokers.split(","):
        for size in a.sizes:
            runs = []
            for _ in range(a.rounds):
                procs = []
                try:
                    broker, url = (None, None) if kind == "none" else start_broker(kind)
                    if broker:
                        procs.append(broker)
                    n = 1 if kind == "none" else 3
                    nodes = []
                    for _ in range(n):
                        argv = [duplex, "pubsub-server", "--port", "0", "--threads", "1"]
                        if broker:
                            argv += [f"--{kind}", url]
                        nodes.append(Process(f"node{len(nodes) + 1}", argv))
                        procs.append(nodes[-1])
                    cpu0 = [p.cpu() for p in procs]
                    t0 = time.monotonic()
                    res = bench(duplex, nodes[0].url(), load_args(a, size),
                                [x.url() for x in nodes] if n > 1 else (), core=None)
                    wall = time.monotonic() - t0
                    cpu = [p.cpu() - c for p, c in zip(procs, cpu0)]
                    res["wall"] = wall
                    res["broker_cpu"] = cpu[0] if broker else 0.0
                    res["nodes_cpu"] = sum(cpu[1:] if broker else cpu)
                    runs.append(res)
                finally:
                    for p in reversed(procs):
                        p.stop()
            rows.append((kind, size, runs))
            print(f"  {kind} {size} B: {runs[-1]['deliveries_per_second']}/s", file=sys.stderr)
    print(f"\n`{' '.join(sys.argv)}` ({a.rounds} runs each, medians; {a.subscribers} subscribers "
          f"spread over the nodes, the publisher on node 1, -k {a.window}, {a.duration} s; CPU: "
          f"utime+stime during the whole bench run, connections and probes included)\n")
    print("| broker | nodes | size | deliveries/s | p50 | p99 | lost / reordered "
          "| broker CPU | broker CPU per publish | nodes' CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, size, runs in rows:
        med = lambda k: statistics.median(x[k] for x in runs)  # noqa: E731
        per_pub = statistics.median(x["broker_cpu"] / max(x["published"], 1) * 1e6 for x in runs)
        print(f"| {kind} | {1 if kind == 'none' else 3} | {size} B "
              f"| {med('deliveries_per_second'):,.0f} | {med('p50_us') / 1000:.1f} ms "
              f"| {med('p99_us') / 1000:.1f} ms | {sum(x['lost'] for x in runs)} / "
              f"{sum(x['reordered'] for x in runs)} | {med('broker_cpu'):.2f} s of "
              f"{med('wall'):.1f} s | {per_pub:.1f} us | {med('nodes_cpu'):.2f} s |")
    return rows


# --- callgrind ------------------------------------------------------------------------------

def callgrind_file(path):
    """Per function (by name): inclusive cost and calls over all call sites,
    and the file's total cost (callgrind's format, name compression)."""
    names = {}
    incl = collections.Counter()
    calls = collections.Counter()
    total = 0
    cfn = None
    pending = False

    def name(token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), token)

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                name(line[3:].rstrip("\n"))
            elif line.startswith("cfn="):
                cfn = name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                calls[cfn] += int(line[6:].split()[0])
                pending = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2:
                    if pending:
                        incl[cfn] += int(parts[1])
                        pending = False
                    else:
                        total += int(parts[1])
    return incl, calls, total


def find(counter, pattern):
    return sum(v for k, v in counter.items() if re.search(pattern, k))


def callgrind(a, duplex):
    rows = []
    for size in a.callgrind_sizes:
        rows += callgrind_size(a, duplex, size)
    return rows


def callgrind_size(a, duplex, size):
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes", duplex, "bench",
            "--fanout", str(a.callgrind_subscribers), "-s", str(size), "-k", str(a.window),
            "-d", "5"]
    rows = []
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory() as work:
            out = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr[-800:]}")
            deliveries = int(re.search(r"deliveries\s+(\d+)", out.stdout).group(1))
            for f in sorted(os.listdir(work)):
                if not f.startswith("callgrind.out."):
                    continue
                incl, calls, total = callgrind_file(os.path.join(work, f))
                # The delivery loop: deliver() (or drain(), where deliver()
                # is inlined into it), whose writes follow each batch
                # (Session::flush_prebuilt, counted apart).
                flush_re = r"Session::flush_prebuilt\("
                deliver = find(incl, r"TopicRegistry::Impl::deliver\(")
                if not deliver:
                    deliver = find(incl, r"TopicRegistry::Impl::drain\(")
                    deliver -= find(incl, flush_re)
                if not deliver:
                    continue
                rows.append({"size": size, "deliveries": deliveries, "deliver": deliver,
                             "send_prebuilt": find(incl, r"Session::send_prebuilt\("),
                             "flush": find(incl, flush_re), "flushes": find(calls, flush_re),
                             "thread": total})
        print(f"  callgrind run {r + 1}: {rows[-1]}", file=sys.stderr)
    print(f"\n`{' '.join(argv)}`, the server loop's thread, {len(rows)} runs "
          f"(instructions per delivery)\n")
    print("| size | run | deliveries | topics (deliver - send_prebuilt) | send_prebuilt "
          "| flushes | deliver + flushes | whole thread | deliveries per flush |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, x in enumerate(rows):
        d = x["deliveries"]
        print(f"| {x['size']} B | {i + 1} | {d:,} | {(x['deliver'] - x['send_prebuilt']) / d:.0f} "
              f"| {x['send_prebuilt'] / d:.0f} | {x['flush'] / d:.0f} "
              f"| {(x['deliver'] + x['flush']) / d:.0f} | {x['thread'] / d:.0f} "
              f"| {d / max(x['flushes'], 1):.1f} |")
    return rows


def main():
    global PIN
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duplex", default=os.path.join(ROOT, "build", "release", "bin", "duplex"))
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--sizes", default="16,1024", help="payload sizes, comma-separated")
    p.add_argument("-k", "--window", type=int, default=16, help="publishes in flight")
    p.add_argument("-d", "--duration", type=float, default=3.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--servers", help="comma-separated subset of duplex,node-ws,python")
    p.add_argument("--nodes", action="store_true", help="across nodes through brokers")
    p.add_argument("--brokers", default="redis,nats")
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--callgrind-subscribers", type=int, default=1000)
    p.add_argument("--callgrind-sizes", default="16",
                   help="--callgrind: payload sizes, comma-separated (one set of runs each)")
    p.add_argument("--no-pin", action="store_true")
    a = p.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",")]
    a.callgrind_sizes = [int(s) for s in a.callgrind_sizes.split(",")]
    PIN = not a.no_pin
    duplex = os.path.abspath(a.duplex)
    if a.callgrind:
        callgrind(a, duplex)
    elif a.nodes:
        across_nodes(a, duplex)
    else:
        compare(a, duplex)


if __name__ == "__main__":
    main()
