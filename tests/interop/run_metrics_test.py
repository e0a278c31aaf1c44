#!/usr/bin/python3
"""`duplex echo-server --metrics /metrics`, scraped with curl and checked against
the traffic this script sends (Python `websockets` clients and raw sockets).

  run_metrics_test.py --duplex PATH [--timeout S]

Starts the server on 127.0.0.1 port 0, sends known messages on two
connections, closes them with 1000 and 4001, makes one refused handshake
(version 12: 426), one connection that leaves without a request (a handshake
error), and plain HTTP requests answered 404 and 405. Then scrapes /metrics
with curl until the closes are counted (bounded by the timeout) and compares
every value. Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 on any
failure. The server is stopped with SIGTERM by its pid and must exit 0.
"""

import argparse
import asyncio
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import websockets

SAMPLE = re.compile(r'^([a-z_]+)(?:\{([a-z]+)="([^"]*)"\})? (\d+)$')


def parse(page):
    """{name: value} and {(name, label_value): value} of a Prometheus text page."""
    values = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        name, _label, label_value, value = m.groups()
        values[(name, label_value) if label_value is not None else name] = int(value)
    return values


def curl(args, timeout):
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-w", "\n%{http_code}"] + args,
                       capture_output=True, text=True, timeout=timeout + 5)
    body, _, status = r.stdout.rpartition("\n")
    return r.returncode, status, body


def scrape_until(base, timeout, settled):
    """Scrapes until settled(values) or the deadline; returns (status, values, scrapes)."""
    deadline = time.monotonic() + timeout
    scrapes = 0
    while True:
        rc, status, page = curl([base + "/metrics"], timeout)
        scrapes += 1
        values = parse(page) if rc == 0 and status == "200" else {}
        if settled(values) or time.monotonic() > deadline:
            return status, values, scrapes
        time.sleep(0.05)


def raw_exchange(port, request, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


async def traffic(url):
    async with websockets.connect(url) as a:
        for _ in range(3):
            await a.send("hello")
            assert await a.recv() == "hello"
        await a.send(bytes(1000))
        assert await a.recv() == bytes(1000)
        await a.close(code=1000)
    async with websockets.connect(url) as b:
        await b.send("abc")
        assert await b.recv() == "abc"
        await b.close(code=4001, reason="done")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplex", required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    proc = subprocess.Popen([args.duplex, "echo-server", "--port", "0", "--threads", "2",
                             "--metrics", "/metrics"], stdout=subprocess.PIPE, text=True)
    failures = []

    def check(name, got, want):
        if got == want:
            print(f"ok {name}", flush=True)
        else:
            failures.append(name)
            print(f"FAIL {name}: got {got!r}, want {want!r}", flush=True)

    try:
        ready, _, _ = select.select([proc.stdout], [], [], args.timeout)
        line = proc.stdout.readline() if ready else ""
        m = re.match(r"listening on ws://127\.0\.0\.1:(\d+)/", line)
        if not m:
            print(f"FAIL start: echo-server printed {line!r}", flush=True)
            return 1
        port = int(m.group(1))
        base = f"http://127.0.0.1:{port}"

        asyncio.run(asyncio.wait_for(traffic(f"ws://127.0.0.1:{port}/"), args.timeout))
        refused = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               b"Sec-WebSocket-Version: 12\r\n\r\n", args.timeout)
        check("refused handshake answer", refused.split("\r\n")[0], "HTTP/1.1 426 Upgrade Required")
        with socket.create_connection(("127.0.0.1", port), timeout=args.timeout):
            pass  # leaves without a request
        check("other path", curl([base + "/other"], args.timeout)[1], "404")
        check("POST to the metrics path", curl(["-X", "POST", base + "/metrics"], args.timeout)[1],
              "405")

        # The closed events and the slots of closed connections are counted
        # shortly after the clients see their close: scrape until they are.
        status, values, scrapes = scrape_until(
            base, args.timeout,
            lambda v: (v.get(("duplex_closes_total", "4001")) == 1
                       and v.get(("duplex_closes_total", "1000")) == 1
                       and v.get("duplex_connections_open") == 1
                       and sum(n for k, n in v.items()
                               if k[0] == "duplex_loop_handshake_errors_total") == 1))
        check("scrape answered 200", status, "200")
        check("open connections (the scrape's own)", values.get("duplex_connections_open"), 1)
        check("connections opened", values.get("duplex_connections_opened_total"), 2)
        check("handshakes accepted", values.get(("duplex_handshakes_total", "101")), 2)
        check("handshakes refused 426", values.get(("duplex_handshakes_total", "426")), 1)
        check("messages received", values.get("duplex_messages_received_total"), 5)
        check("messages sent", values.get("duplex_messages_sent_total"), 5)
        check("bytes received", values.get("duplex_received_bytes_total"), 3 * 5 + 1000 + 3)
        check("bytes sent", values.get("duplex_sent_bytes_total"), 3 * 5 + 1000 + 3)
        check("closes 1000", values.get(("duplex_closes_total", "1000")), 1)
        check("closes 4001", values.get(("duplex_closes_total", "4001")), 1)
        check("connection errors", values.get("duplex_connection_errors_total"), 0)
        check("http 404", values.get(("duplex_http_requests_total", "404")), 1)
        check("http 405", values.get(("duplex_http_requests_total", "405")), 1)
        # Every scrape but this one is counted by the time it is read.
        check("http 200 (earlier scrapes)", values.get(("duplex_http_requests_total", "200"), 0),
              scrapes - 1)
        check("loops", sorted(k[1] for k in values if k[0] == "duplex_loop_handshakes_pending"),
              ["0", "1"])
        check("handshake errors", sum(v for k, v in values.items()
                                      if k[0] == "duplex_loop_handshake_errors_total"), 1)
        check("handshakes pending (the scrape's own)",
              sum(v for k, v in values.items() if k[0] == "duplex_loop_handshakes_pending"), 1)
        head = curl(["-I", base + "/metrics"], args.timeout)
        check("HEAD content type", "Content-Type: text/plain; version=0.0.4; charset=utf-8"
              in head[2], True)
    except Exception as e:  # report the harness's own failure, then stop the server
        failures.append("harness")
        print(f"FAIL harness: {type(e).__name__}: {e}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    check("echo-server exit status", code, 0)
    print(f"{'FAIL' if failures else 'ok'}: {len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
