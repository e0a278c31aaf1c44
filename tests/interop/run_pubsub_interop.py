#!/usr/bin/python3
"""Multi-node pub/sub test: three `duplex pubsub-server` nodes and one real broker.

  run_pubsub_interop.py --duplex BIN --broker redis|nats

Starts its own redis-server or nats-server on a free 127.0.0.1 port, three
nodes relaying through it, and clients we did not write (Python websockets,
Node ws; peers/pubsub_*_client.*) on different nodes and the same path:
  1. 10,000 messages from two publishers on two nodes: every other client
     gets each once, in order per publisher;
  2. the broker is killed and restarted while traffic flows: local delivery
     goes on (in order, none lost), remote delivery stays in order with gaps
     only, the nodes resubscribe (a probe crosses again), and the nodes report
     the messages not relayed when they stop;
  3. one node is killed: only its own clients lose their connection, the
     others keep exchanging messages.
Every process is bounded in time and stopped by pid. Prints "ok NAME" /
"FAIL NAME: why" and exits 1 on any failure.
"""

import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
MAIN_NODE_PATH = "/work/main/.deps/node/node_modules"


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"nothing accepts on port {port}")


class Proc:
    """A child with line-buffered stdout read with deadlines."""

    def __init__(self, cmd, env=None, stdin=True):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, bufsize=1)
        self.cmd = cmd
        self.fd = self.p.stdout.fileno()
        self.buf = b""

    def line(self, timeout):
        # Our own line buffer over the raw descriptor: select() does not see
        # lines a text wrapper has already buffered.
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise Failure(f"{self.cmd[:2]}: no output within {timeout:.0f} s")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise Failure(f"{self.cmd[:2]} exited: {self.p.stderr.read()[-500:]}")
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode().strip()

    def expect(self, pattern, timeout=10):
        end = time.monotonic() + timeout
        while True:
            line = self.line(max(0.01, end - time.monotonic()))
            if re.search(pattern, line):
                return line
            if os.environ.get("PUBSUB_DEBUG"):
                print(f"debug {self.cmd[:2]}: {line}", flush=True)

    def send(self, text):
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Broker:
    def __init__(self, kind):
        self.kind, self.port, self.proc = kind, free_port(), None

    def url(self):
        return f"{self.kind}://127.0.0.1:{self.port}"

    def start(self):
        if self.kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"]
        else:
            cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_accepting(self.port)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Client(Proc):
    def __init__(self, kind, port, path="/room"):
        url = f"ws://127.0.0.1:{port}{path}"
        if kind == "python":
            super().__init__([PYTHON, os.path.join(PEERS, "pubsub_py_client.py"), url])
        else:
            env = dict(os.environ)
            local = os.path.join(ROOT, ".deps", "node", "node_modules")
            env["NODE_PATH"] = local if os.path.isdir(local) else MAIN_NODE_PATH
            super().__init__(["node", os.path.join(PEERS, "pubsub_node_client.js"), url], env=env)
        self.kind = kind
        self.expect("^open$")

    def report(self):
        self.send("report")
        return json.loads(self.expect(r"^\{"))


def stats_of(reports, prefix):
    return [r["stats"].get(prefix, {"count": 0, "last": -1, "gaps": 0}) for r in reports]


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise Failure(f"timed out waiting for {what}")


def run(args):
    results = []
    procs = []
    broker = Broker(args.broker)
    try:
        broker.start()
        nodes = []
        for _ in range(3):
            n = Proc([args.duplex, "pubsub-server", "--port", "0", "--threads", "2",
                      f"--{args.broker}", broker.url()], stdin=False)
            procs.append(n)
            port = int(n.expect(r"^listening on ws://127\.0\.0\.1:(\d+)/$").rsplit(":", 1)[1][:-1])
            nodes.append((n, port))
        # Publishers on nodes 0 and 1; subscribers of both kinds on every node.
        pub_a = Client("python", nodes[0][1])
        pub_b = Client("node", nodes[1][1])
        subs = [Client("python", nodes[2][1]), Client("node", nodes[2][1]),
                Client("node", nodes[0][1]), Client("python", nodes[1][1])]
        procs += [pub_a, pub_b, *subs]
        everyone = [pub_a, pub_b, *subs]

        def probe_crossed():
            # Each node subscribes at the broker when its first client comes:
            # a probe from each publisher reaching everyone shows it is done.
            pub_a.send("send probe 1 0")
            pub_b.send("send probe 1 0")
            time.sleep(0.1)
            reps = [c.report() for c in everyone]
            return all(r["stats"].get("probe", {}).get("count", 0) > 0 for r in reps)

        wait_for(probe_crossed, 20, "the nodes to subscribe at the broker")

        # 1. 10,000 messages, two publishers on two nodes.
        name = f"{args.broker}.10k_two_publishers_exactly_once_in_order"
        try:
            pub_a.send("send A 5000 0")
            pub_b.send("send B 5000 0")
            pub_a.expect("^sent A$", 60)
            pub_b.expect("^sent B$", 60)

            def complete():
                a = stats_of([c.report() for c in [pub_b, *subs]], "A")
                b = stats_of([c.report() for c in [pub_a, *subs]], "B")
                return all(s["count"] >= 5000 for s in a + b)

            wait_for(complete, 60, "every client to get 5,000 from each other publisher")
            for c in everyone:
                r = c.report()
                if r["bad"]:
                    raise Failure(f"{c.kind} client: out of order or twice: {r['bad']}")
                for p in ("A", "B"):
                    s = r["stats"].get(p)
                    if s is None:
                        continue
                    if s["count"] != 5000 or s["gaps"] != 0:
                        raise Failure(f"{c.kind} client: {p}: {s}")
            results.append(("ok", name))
        except Failure as e:
            results.append(("FAIL", f"{name}: {e}"))

        # 2. The broker is killed and restarted while traffic flows.
        name = f"{args.broker}.broker_restart_under_traffic"
        try:
            pub_a.send("send C 600 5")  # about 3 s of traffic
            time.sleep(0.7)
            broker.kill()
            time.sleep(0.8)
            broker.start()
            pub_a.expect("^sent C$", 60)
            local = subs[2]  # on the publisher's node: nothing lost
            wait_for(lambda: local.report()["stats"].get("C", {}).get("count") == 600, 20,
                     "local delivery of all 600")
            wait_for(probe_crossed, 20, "the nodes to resubscribe after the restart")
            for c in subs:
                r = c.report()
                if r["bad"]:
                    raise Failure(f"{c.kind} client: out of order or twice: {r['bad']}")
            remote = [c.report()["stats"].get("C", {"count": 0}) for c in (subs[0], subs[3])]
            lost = 600 * 2 - sum(s["count"] for s in remote)
            print(f"info {args.broker}: remote subscribers missed {lost} of 1200 during the outage",
                  flush=True)
            results.append(("ok", name))
        except Failure as e:
            results.append(("FAIL", f"{name}: {e}"))

        # 3. One node is killed: only its clients are affected.
        name = f"{args.broker}.node_killed_only_its_clients_affected"
        try:
            nodes[1][0].stop(signal.SIGKILL)
            pub_b.expect("^closed$", 10)
            subs[3].expect("^closed$", 10)
            pub_a.send("send E 200 0")
            pub_a.expect("^sent E$", 30)
            for c in (subs[0], subs[1], subs[2]):
                wait_for(lambda: c.report()["stats"].get("E", {}).get("count") == 200, 20,
                         f"{c.kind} client to get E")
            results.append(("ok", name))
        except Failure as e:
            results.append(("FAIL", f"{name}: {e}"))

        # The surviving nodes report what was not relayed during the outage:
        # the publisher's node (0) must have counted some.
        name = f"{args.broker}.outage_losses_reported"
        for i in (0, 2):
            n = nodes[i][0]
            n.stop(signal.SIGTERM)
            summary = n.p.stderr.read()
            m = re.search(r"(\d+) not relayed; broker: (\d+) relayed, (\d+) received, (\d+) lost, "
                          r"(\d+) reconnects", summary)
            line = m.group(0) if m else summary[-300:]
            print(f"info node {i}: {line}", flush=True)
            if not m:
                results.append(("FAIL", f"{name}: node {i} printed no summary: {line}"))
            elif i == 0 and int(m.group(1)) + int(m.group(4)) == 0:
                results.append(("FAIL", f"{name}: node 0 reported no loss during the outage"))
            elif i == 0:
                results.append(("ok", name))
    except Failure as e:
        results.append(("FAIL", f"{args.broker}.setup: {e}"))
    finally:
        for p in procs:
            if isinstance(p, Client):
                p.stop(signal.SIGKILL)
            else:
                p.stop()
        broker.kill()
    failed = 0
    for status, text in results:
        print(f"{status} {text}")
        failed += status != "ok"
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duplex", required=True)
    ap.add_argument("--broker", required=True, choices=["redis", "nats"])
    sys.exit(run(ap.parse_args()))
