#!/usr/bin/python3
"""Python `websockets` (Debian's 10.4) with permessage-deflate, for duplex's
compression interop tests. Run it with /usr/bin/python3.

  deflate_py_peer.py server [--port P] [--no-context-takeover] [--lifetime S]
      An echo server with compression (websockets' default offer handling):
      each message goes back with its type; a text message "fragments:N:SIZE"
      makes it send json_text(SIZE) as one text message in N fragments.
      Prints "listening on ws://127.0.0.1:PORT/" when ready, and for every
      connection "extensions: ..." (the negotiated answer) on stderr.

  deflate_py_peer.py client --url URL [--no-context-takeover] [--timeout S]
      Scenarios against an echo server, compression offered: checks the
      negotiated extension, then echoes text, binary, fragmented and large
      messages. Prints "ok NAME" / "FAIL NAME: why"; exits 1 on any failure.
"""

import argparse
import asyncio
import random
import signal
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)


def json_text(size, seed=1):
    """Text that compresses like JSON telemetry (the same as the C++ tests')."""
    out = []
    n = 0
    i = seed
    while n < size:
        s = '{"id":%d,"name":"sensor-%d","value":%d,"ok":true},' % (i, i % 17, (i * 7919) % 1000)
        out.append(s)
        n += len(s)
        i += 1
    return "".join(out)[:size]


def noise(size, seed):
    return random.Random(seed).randbytes(size)


def describe(ws):
    """The Sec-WebSocket-Extensions answer as the peer saw it."""
    headers = ws.response_headers if ws.response_headers is not None else {}
    return headers.get("Sec-WebSocket-Extensions", "")


# --- server ---------------------------------------------------------------------


async def echo(ws):
    print(f"extensions: {describe(ws)}", file=sys.stderr, flush=True)
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("fragments:"):
                _, n, size = message.split(":")
                text = json_text(int(size), int(n))
                step = max(1, len(text) // int(n))
                pieces = [text[i:i + step] for i in range(0, len(text), step)]
                await ws.send(pieces)
                continue
            await ws.send(message)
    except websockets.exceptions.ConnectionClosed:
        pass


async def serve(args):
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=args.no_context_takeover,
        client_no_context_takeover=args.no_context_takeover,
    )
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=64 << 20,
                                extensions=[factory], compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}/", flush=True)
        await asyncio.wait_for(stop, args.lifetime) if args.lifetime else await stop


# --- client ---------------------------------------------------------------------


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


async def scenarios(args):
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=args.no_context_takeover,
        client_no_context_takeover=args.no_context_takeover,
        client_max_window_bits=True,
    )
    kw = {"max_size": 64 << 20, "extensions": [factory], "compression": None,
          "open_timeout": args.timeout}
    results = []

    async def run(name, fn):
        try:
            await asyncio.wait_for(fn(), args.timeout)
            results.append((name, None))
        except Exception as e:  # any failure of a scenario is reported, not raised
            results.append((name, f"{type(e).__name__}: {e}"))

    async def negotiation():
        async with websockets.connect(args.url, **kw) as ws:
            answer = describe(ws)
            check(answer.startswith("permessage-deflate"), f"answer {answer!r}")
            check(len(ws.extensions) == 1, f"extensions {ws.extensions}")
            if args.no_context_takeover:
                check("server_no_context_takeover" in answer, f"answer {answer!r}")
                check("client_no_context_takeover" in answer, f"answer {answer!r}")
            print(f"negotiated: {answer}", file=sys.stderr, flush=True)

    async def text_messages():
        async with websockets.connect(args.url, **kw) as ws:
            for i in range(50):
                t = json_text(2000 + i * 37, i)
                await ws.send(t)
                check(await ws.recv() == t, f"echo {i} differs")
            await ws.send("h\u00e9llo \u20ac \U0001F600")
            check(await ws.recv() == "h\u00e9llo \u20ac \U0001F600", "short text differs")

    async def binary_messages():
        async with websockets.connect(args.url, **kw) as ws:
            for size in [0, 1, 125, 126, 65535, 65536, 1 << 20]:
                data = noise(size, size)
                await ws.send(data)
                got = await ws.recv()
                check(isinstance(got, bytes) and got == data, f"binary {size} differs")

    async def fragmented_to_peer():
        # A compressed message in fragments (RSV1 on the first frame only).
        async with websockets.connect(args.url, **kw) as ws:
            text = json_text(100_000, 3)
            await ws.send([text[i:i + 7000] for i in range(0, len(text), 7000)])
            check(await ws.recv() == text, "fragmented text echo differs")
            data = noise(300_000, 5)
            await ws.send([data[i:i + 65536] for i in range(0, len(data), 65536)])
            check(await ws.recv() == data, "fragmented binary echo differs")

    async def large_message():
        async with websockets.connect(args.url, **kw) as ws:
            text = json_text(8 << 20, 9)
            await ws.send(text)
            check(await ws.recv() == text, "8 MiB echo differs")

    async def burst():
        async with websockets.connect(args.url, **kw) as ws:
            for i in range(1000):
                await ws.send(f"burst {i} " + json_text(100, i))
            for i in range(1000):
                check(await ws.recv() == f"burst {i} " + json_text(100, i), f"burst {i} differs")

    for name, fn in [("negotiation", negotiation), ("text-messages", text_messages),
                     ("binary-messages", binary_messages), ("fragmented-to-peer", fragmented_to_peer),
                     ("large-message-8MiB", large_message), ("burst-1000", burst)]:
        await run(name, fn)
    failed = 0
    for name, why in results:
        if why is None:
            print(f"ok {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {why}", flush=True)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--url")
    parser.add_argument("--no-context-takeover", action="store_true")
    parser.add_argument("--lifetime", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if args.mode == "server":
        try:
            asyncio.run(serve(args))
        except asyncio.TimeoutError:
            print("lifetime over, stopping", file=sys.stderr)
        return 0
    return asyncio.run(scenarios(args))


if __name__ == "__main__":
    sys.exit(main())
