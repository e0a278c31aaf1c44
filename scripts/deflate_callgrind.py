#!/usr/bin/python3
"""User-space instructions per echoed message of `duplex echo-server`, with
permessage-deflate on and off, measured with callgrind.

  scripts/deflate_callgrind.py [--duplex build/release/bin/duplex] [--messages N] [--size B]

For each mode the server runs under `valgrind --tool=callgrind` twice with one
client connection (Python websockets, /usr/bin/python3, in its own process, so
its instructions are not counted): once echoing N messages of B bytes one at a
time, once with none. Instructions per message = (Ir(N) - Ir(0)) / N, so
start-up, handshake and shutdown cancel out. Modes:
  off           no compression
  on            --deflate; the client compresses every message; the server's
                echo of a message under the 64-byte threshold goes uncompressed
  on-threshold0 --deflate --deflate-threshold 0: the echo is compressed too
  on-nct        as on-threshold0 with --deflate-no-context-takeover
"""

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {
    "off": [],
    "on": ["--deflate"],
    "on-threshold0": ["--deflate", "--deflate-threshold", "0"],
    "on-nct": ["--deflate", "--deflate-threshold", "0", "--deflate-no-context-takeover"],
}


async def client(url, messages, size, compress):
    import websockets
    kw = {"compression": "deflate" if compress else None, "max_size": None}
    async with websockets.connect(url, **kw) as ws:
        payload = ("x" * size)
        for i in range(messages):
            text = (str(i) + payload)[:size]
            await ws.send(text)
            if await ws.recv() != text:
                raise RuntimeError("echo differs")
        return ws.response_headers.get("Sec-WebSocket-Extensions", "")


def run_once(duplex, extra, messages, size, compress, out):
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", duplex, "echo-server",
           "--port", "0", "--threads", "1", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
        if not url:
            raise RuntimeError("server did not start")
        ext = asyncio.run(asyncio.wait_for(client(url, messages, size, compress), 600))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    with open(out) as f:
        for line in f:
            m = re.match(r"(summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(2)), ext
    raise RuntimeError("no totals in " + out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplex", default=os.path.join(ROOT, "build/release/bin/duplex"))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="duplex-callgrind-") as tmp:
        for mode in args.modes.split(","):
            extra = MODES[mode]
            compress = mode != "off"
            base, _ = run_once(args.duplex, extra, 0, args.size, compress, os.path.join(tmp, "0"))
            full, ext = run_once(args.duplex, extra, args.messages, args.size, compress,
                                 os.path.join(tmp, "n"))
            per = (full - base) / args.messages
            print(f"{mode:14} {per:9.0f} instructions per echoed {args.size} B message "
                  f"(extension: {ext or 'none'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
