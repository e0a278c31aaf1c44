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

import json
import sys
import time

sys.dont_write_bytecode = True
import chromium_peer as cp  # noqa: E402

PAGE = "deflate_browser_client.html"


def main():
    args = cp.argument_parser(__doc__).parse_args()
    deadline = time.monotonic() + 30.0 + 6 * args.timeout
    call = "runScenarios({}, {})".format(json.dumps(args.url), json.dumps(args.timeout))
    ok, results = cp.run_page(args.chromium, PAGE, call, deadline)
    return cp.report(results, why_when_ok=True) if ok else 1


if __name__ == "__main__":
    sys.exit(main())
