#!/usr/bin/python3
"""Headless Chromium loads a page from a duplex listener and runs a check there.

  same_origin_chromium.py --url PAGE_URL --expression JS [--chromium PATH] [--timeout S]

Unlike chromium_peer.py, the page is not served from here: PAGE_URL is the
listener's own http:// address, so the page's WebSocket and fetch() calls go to
the same origin. Once the page sets window.pageReady, JS is evaluated there
(its promise awaited) and its value printed as one JSON line on stdout; exit 0.
A failure of the driver prints "FAIL chromium-driver: why" and exits 1.
Chromium is stopped (by its process group) before exiting; every wait ends by
the deadline.
"""

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium_peer  # noqa: E402  (devtools_port, page_target, drive, argument_parser)


def main():
    parser = chromium_peer.argument_parser(__doc__)
    parser.add_argument("--expression", required=True)
    args = parser.parse_args()
    deadline = time.monotonic() + 30.0 + args.timeout

    profile = tempfile.mkdtemp(prefix="duplex-chromium-")
    cmd = [
        args.chromium,
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
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        args.url,
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
        port = chromium_peer.devtools_port(profile, deadline, proc)
        target = chromium_peer.page_target(port, args.url, deadline)
        value = asyncio.run(
            asyncio.wait_for(
                chromium_peer.drive(target, args.expression, deadline),
                max(1.0, deadline - time.monotonic()),
            )
        )
        print(json.dumps(value), flush=True)
        return 0
    except Exception as e:  # report the driver's failure, then clean up
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
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
