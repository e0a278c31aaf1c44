#!/usr/bin/python3
"""A pub/sub test client on Python websockets (Debian's 10.4), driven by lines on stdin.

  pubsub_py_client.py URL
Prints "open" once connected. Commands (one per line on stdin):
  send PREFIX N DELAY_MS   sends text messages "PREFIX:0".."PREFIX:N-1"; prints "sent PREFIX"
  report                   prints one JSON line: per prefix the count, the last index,
                           the gaps and any order violation or duplicate ("bad")
  quit                     closes and exits
Received messages named "probe:*" are only counted (as prefix "probe").
Prints "closed" if the server closes the connection.
"""
import asyncio
import json
import sys

import websockets


async def main(url):
    stats = {}
    bad = []
    async with websockets.connect(url, max_queue=None) as ws:
        print("open", flush=True)

        async def receive():
            try:
                async for m in ws:
                    prefix, _, index = m.partition(":")
                    s = stats.setdefault(prefix, {"count": 0, "last": -1, "gaps": 0})
                    s["count"] += 1
                    if prefix == "probe":
                        continue
                    i = int(index)
                    if i <= s["last"]:
                        bad.append(m)
                    elif i != s["last"] + 1:
                        s["gaps"] += i - s["last"] - 1
                    s["last"] = max(s["last"], i)
            except websockets.ConnectionClosed:
                pass
            print("closed", flush=True)

        rx = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] == "quit":
                break
            if line[0] == "send":
                prefix, n, delay = line[1], int(line[2]), float(line[3]) / 1000
                try:
                    for i in range(n):
                        await ws.send(f"{prefix}:{i}")
                        if delay:
                            await asyncio.sleep(delay)
                except websockets.ConnectionClosed:
                    pass
                print(f"sent {prefix}", flush=True)
            elif line[0] == "report":
                print(json.dumps({"stats": stats, "bad": bad[:10]}), flush=True)
        rx.cancel()


asyncio.run(main(sys.argv[1]))
