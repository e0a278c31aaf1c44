#!/usr/bin/python3
"""Headless Chromium as a compressing WebSocket client (duplex deflate interop).

  deflate_chromium_peer.py --url URL [--chromium PATH] [--timeout S]

Loads deflate_browser_client.html in headless Chromium (which always offers
permessage-deflate) through chromium_peer.py's machinery and runs its
scenarios against the echo server at URL: each connection must report a
negotiated permessage-deflate (the browser's WebSocket.extensions), then
JSON text, binary 0 B..1 MiB, a 4 MiB text and a burst of 1,000 are echoed.
Prints "ok NAME" / "FAIL NAME: why"; exits 1 on any failure.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
import chromium_peer as cp  # noqa: E402

PAGE = "deflate_browser_client.html"


async def drive(target_url, args, deadline):
    import websockets
    async with websockets.connect(target_url, max_size=None, open_timeout=10) as ws:
        cdp = cp.Cdp(ws)
        while not await cdp.evaluate("window.pageReady === true"):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            await asyncio.sleep(0.05)
        return await cdp.evaluate(
            "runScenarios({}, {})".format(json.dumps(args.url), json.dumps(args.timeout)))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=30.0, help="per scenario, seconds")
    args = parser.parse_args()

    deadline = time.monotonic() + 30.0 + 6 * args.timeout
    http_server = cp.start_http_server()
    page_url = f"http://127.0.0.1:{http_server.server_address[1]}/{PAGE}"
    profile = tempfile.mkdtemp(prefix="duplex-chromium-")
    cmd = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--disable-dev-shm-usage", "--no-first-run",
           "--no-default-browser-check", "--disable-quic", f"--user-data-dir={profile}",
           "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", page_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    stderr_lines = []
    threading.Thread(
        target=lambda: stderr_lines.extend(proc.stderr.read().decode(errors="replace").splitlines()),
        daemon=True).start()
    try:
        port = cp.devtools_port(profile, deadline, proc)
        target = cp.page_target(port, page_url, deadline)
        results = asyncio.run(asyncio.wait_for(drive(target, args, deadline),
                                               max(1.0, deadline - time.monotonic())))
    except Exception as e:  # report any failure of the driver itself, then clean up
        print(f"FAIL chromium-driver: {type(e).__name__}: {e}", flush=True)
        for line in stderr_lines[-20:]:
            print(f"  chromium: {line}", file=sys.stderr)
        return 1
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

    failed = 0
    for r in results or []:
        if r["ok"]:
            print(f"ok {r['name']}" + (f" ({r['why']})" if r["why"] else ""), flush=True)
        else:
            failed += 1
            print(f"FAIL {r['name']}: {r['why']}", flush=True)
    if not results:
        print("FAIL chromium-driver: no results", flush=True)
        return 1
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
