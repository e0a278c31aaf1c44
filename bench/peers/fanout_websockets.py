#!/usr/bin/python3
"""A topic server on Python websockets (Debian's python3-websockets, 10.4), the
same semantics as `duplex pubsub-server`: a client's topic is its URL path,
and each text or binary message a client sends goes to every other client of
that path with websockets.broadcast(), type intact (str stays text, bytes
binary). No compression. Prints "listening on ws://127.0.0.1:PORT/" when
ready; SIGTERM or SIGINT stop it.

    /usr/bin/python3 fanout_websockets.py [PORT]
"""

import asyncio
import signal
import sys
import urllib.parse

import websockets

ROOMS = {}  # path -> set of connections


async def handler(ws, target):
    path = urllib.parse.urlsplit(target).path  # the topic: the path without its query
    room = ROOMS.setdefault(path, set())
    room.add(ws)
    try:
        async for message in ws:
            websockets.broadcast([c for c in room if c is not ws], message)
    except websockets.exceptions.ConnectionClosed:
        pass
    finally:
        room.discard(ws)
        if not room:
            ROOMS.pop(path, None)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(handler, "127.0.0.1", port, compression=None,
                                max_size=None) as server:
        print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
