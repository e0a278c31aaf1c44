#!/usr/bin/python3
"""`duplex pubsub-server --metrics /metrics`, scraped with curl and checked against
the traffic this script sends (Python `websockets` clients).

  run_pubsub_metrics_test.py --duplex PATH [--timeout S]

Starts the server on 127.0.0.1 port 0. Clients a and b join /room, c joins
/other; once the page shows the three subscriptions, a publishes three text
messages (each reaches b), b one binary message of 1000 bytes (reaches a), c
one message nobody else hears. The clients close with 1000, 4001 and 1000.
Then scrapes /metrics with curl until the closes are counted (bounded by the
timeout) and compares every value. Prints "ok NAME" or "FAIL NAME: why" per
check; exits 1 on any failure. The server is stopped with SIGTERM by its pid
and must exit 0.
"""

import argparse
import asyncio
import re
import select
import signal
import subprocess
import sys

import websockets

# The page parser, curl and the scrape loop are echo-server's test's (same
# families, same format).
from run_metrics_test import curl, scrape_until  # noqa: E402


async def traffic(url, base, timeout):
    a = await websockets.connect(url + "room")
    b = await websockets.connect(url + "room")
    c = await websockets.connect(url + "other")
    # Subscriptions are made on the server's loops after each 101: wait until
    # the page shows all three before publishing.
    status, values, scrapes = await asyncio.to_thread(
        scrape_until, base, timeout, lambda v: v.get("duplex_topic_subscriptions") == 3)
    if values.get("duplex_topic_subscriptions") != 3:
        raise RuntimeError(f"subscriptions never reached 3: {values!r}")
    for _ in range(3):
        await a.send("hello")
    for _ in range(3):
        assert await b.recv() == "hello"
    await b.send(bytes(1000))
    assert await a.recv() == bytes(1000)
    await c.send("x")
    await a.close(code=1000)
    await b.close(code=4001, reason="done")
    await c.close(code=1000)
    return scrapes


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplex", required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    proc = subprocess.Popen([args.duplex, "pubsub-server", "--port", "0", "--threads", "2",
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
            print(f"FAIL start: pubsub-server printed {line!r}", flush=True)
            return 1
        port = int(m.group(1))
        base = f"http://127.0.0.1:{port}"

        early = asyncio.run(asyncio.wait_for(traffic(f"ws://127.0.0.1:{port}/", base,
                                                     args.timeout), args.timeout * 2))
        check("other path", curl([base + "/other"], args.timeout)[1], "404")

        # Closed events and the slots of closed connections are counted shortly
        # after the clients see their close: scrape until they are.
        status, values, scrapes = scrape_until(
            base, args.timeout,
            lambda v: (v.get(("duplex_closes_total", "1000")) == 2
                       and v.get(("duplex_closes_total", "4001")) == 1
                       and v.get("duplex_connections_open") == 1
                       and v.get("duplex_topic_subscriptions") == 0))
        check("scrape answered 200", status, "200")
        check("open connections (the scrape's own)", values.get("duplex_connections_open"), 1)
        check("connections opened", values.get("duplex_connections_opened_total"), 3)
        check("handshakes accepted", values.get(("duplex_handshakes_total", "101")), 3)
        check("messages received", values.get("duplex_messages_received_total"), 5)
        check("bytes received", values.get("duplex_received_bytes_total"), 3 * 5 + 1000 + 1)
        check("no per-socket sent counters", "duplex_messages_sent_total" in values, False)
        check("published", values.get("duplex_topic_published_total"), 5)
        check("deliveries (messages sent)", values.get("duplex_topic_deliveries_total"), 4)
        check("dropped", values.get("duplex_topic_dropped_total"), 0)
        check("topics after the closes", values.get("duplex_topics"), 0)
        check("subscriptions after the closes", values.get("duplex_topic_subscriptions"), 0)
        check("closes 1000", values.get(("duplex_closes_total", "1000")), 2)
        check("closes 4001", values.get(("duplex_closes_total", "4001")), 1)
        check("connection errors", values.get("duplex_connection_errors_total"), 0)
        check("http 404", values.get(("duplex_http_requests_total", "404")), 1)
        # Every scrape but this one is counted by the time it is read.
        check("http 200 (earlier scrapes)", values.get(("duplex_http_requests_total", "200"), 0),
              early + scrapes - 1)
        check("loops", sorted(k[1] for k in values if k[0] == "duplex_loop_handshakes_pending"),
              ["0", "1"])
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
    check("pubsub-server exit status", code, 0)
    print(f"{'FAIL' if failures else 'ok'}: {len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
