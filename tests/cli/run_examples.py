#!/usr/bin/env python3
"""Runs the examples that need a server against `duplex echo-server`.

Usage: run_examples.py DUPLEX_BINARY EXAMPLE_MESSAGE EXAMPLE_TIMEOUT EXAMPLE_CHAIN

The echo server is started here on 127.0.0.1 port 0 and stopped by pid. The
timeout example also runs against a listener that accepts and never answers,
where it must report operation_canceled within its timeout.
"""
import select
import signal
import socket
import subprocess
import sys
import time

duplex, message_example, timeout_example, chain_example = sys.argv[1:5]
failed = 0


def check(name, ok, detail):
    global failed
    print(("ok " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)
    failed += 0 if ok else 1


server = subprocess.Popen([duplex, "echo-server", "--port", "0"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
try:
    ready, _, _ = select.select([server.stdout], [], [], 30)
    line = server.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        sys.exit(f"echo-server did not start: {line!r}")
    url = line.split()[-1]

    r = subprocess.run([message_example, url], capture_output=True, timeout=60)
    check("windows_message_websocket", r.returncode == 0 and
          b"Message received from MessageWebSocket: Hello, World!" in r.stdout and
          b'closed: code 1000, reason "Closed due to user request."' in r.stdout, r)

    r = subprocess.run([timeout_example, url, "5000"], capture_output=True, timeout=60)
    check("windows_cancel_after_timeout in time", r.returncode == 0, r)

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        start = time.monotonic()
        r = subprocess.run([timeout_example, f"ws://127.0.0.1:{silent.getsockname()[1]}/", "300"],
                           capture_output=True, timeout=60)
        elapsed = time.monotonic() - start
    check("windows_cancel_after_timeout cancels", r.returncode == 1 and
          b"operation_canceled" in r.stderr and elapsed < 10, (r, elapsed))

    r = subprocess.run([chain_example, url], capture_output=True, timeout=60)
    check("task_chain", r.returncode == 0 and r.stdout == b"sent and closed\n", r)
    r = subprocess.run([chain_example, "ws://127.0.0.1:1/"], capture_output=True, timeout=60)
    check("task_chain error at the end", r.returncode == 1 and b"cannot_connect" in r.stderr, r)
finally:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=15)
sys.exit(1 if failed else 0)
