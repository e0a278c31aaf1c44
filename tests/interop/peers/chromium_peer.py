#!/usr/bin/python3
"""Headless Chromium as a WebSocket client of an echo server (duplex interop).

  chromium_peer.py --url URL [--refused-url URL] [--chromium PATH] [--timeout S]

Serves browser_client.html from 127.0.0.1 (a real http:// origin), starts
Debian's `chromium` headless with a fresh profile and the DevTools protocol on
an ephemeral port, and calls the page's runScenarios(url, refusedUrl) through
the DevTools protocol (Python `websockets` as the CDP client). Prints
"ok NAME" / "FAIL NAME: why" per scenario, exits 1 on any failure. Everything
it starts is stopped before it exits, and every wait has a deadline.
"""

import argparse
import asyncio
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def start_http_server():
    handler = functools.partial(QuietHandler, directory=HERE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def wait_for(predicate, deadline, what):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def devtools_port(profile, deadline, proc):
    path = os.path.join(profile, "DevToolsActivePort")

    def read():
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        try:
            with open(path) as f:
                first = f.readline().strip()
            return int(first) if first else None
        except (FileNotFoundError, ValueError):
            return None

    return wait_for(read, deadline, "chromium's DevToolsActivePort")


def page_target(port, page_url, deadline):
    def find():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = json.load(r)
        except OSError:
            return None
        for t in targets:
            if t.get("type") == "page" and t.get("url", "").startswith(page_url):
                return t["webSocketDebuggerUrl"]
        return None

    return wait_for(find, deadline, "the page target")


class Cdp:
    """A minimal DevTools protocol client: numbered commands, replies by id."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == my_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression):
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page exception: {result['exceptionDetails']}")
        return result["result"].get("value")


async def drive(target_url, expression, deadline):
    async with websockets.connect(target_url, max_size=None, open_timeout=10) as ws:
        cdp = Cdp(ws)
        while not await cdp.evaluate("window.pageReady === true"):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            await asyncio.sleep(0.05)
        return await cdp.evaluate(expression)


def run_page(chromium, page, expression, deadline):
    """Loads `page` (a file next to this script) in headless Chromium and, once
    the page sets window.pageReady, evaluates `expression` there, awaiting its
    promise. Returns (True, its value); or, when the driver itself fails,
    prints "FAIL chromium-driver: why" (and Chromium's last stderr lines) and
    returns (False, None). Everything it starts is stopped before it returns;
    every wait ends by `deadline` (time.monotonic())."""
    http_server = start_http_server()
    page_url = f"http://127.0.0.1:{http_server.server_address[1]}/{page}"
    profile = tempfile.mkdtemp(prefix="duplex-chromium-")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        page_url,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    stderr_lines = []
    threading.Thread(
        target=lambda: stderr_lines.extend(proc.stderr.read().decode(errors="replace").splitlines()),
        daemon=True,
    ).start()
    try:
        port = devtools_port(profile, deadline, proc)
        target = page_target(port, page_url, deadline)
        return True, asyncio.run(
            asyncio.wait_for(
                drive(target, expression, deadline), max(1.0, deadline - time.monotonic())
            )
        )
    except Exception as e:  # report any failure of the driver itself, then clean up
        print(f"FAIL chromium-driver: {type(e).__name__}: {e}", flush=True)
        for line in stderr_lines[-20:]:
            print(f"  chromium: {line}", file=sys.stderr)
        return False, None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        http_server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


def report(results, why_when_ok=False):
    """Prints "ok NAME" (with the page's note in parentheses if `why_when_ok`)
    or "FAIL NAME: why" per scenario result and a count; returns the exit
    status: 1 on any failure or no results."""
    failed = 0
    for r in results or []:
        if r["ok"]:
            note = f" ({r['why']})" if why_when_ok and r["why"] else ""
            print(f"ok {r['name']}{note}", flush=True)
        else:
            failed += 1
            print(f"FAIL {r['name']}: {r['why']}", flush=True)
    if not results:
        print("FAIL chromium-driver: no results", flush=True)
        return 1
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def argument_parser(doc):
    """The options every Chromium peer takes: --url, --chromium, --timeout."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=30.0, help="per scenario, seconds")
    return parser


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--refused-url")
    args = parser.parse_args()

    deadline = time.monotonic() + 30.0 + 7 * args.timeout
    call = "runScenarios({}, {}, {})".format(
        json.dumps(args.url), json.dumps(args.refused_url or ""), json.dumps(args.timeout)
    )
    ok, results = run_page(args.chromium, "browser_client.html", call, deadline)
    return report(results) if ok else 1


if __name__ == "__main__":
    sys.exit(main())
