#!/usr/bin/python3
"""Python `websockets` (Debian's 10.4) peer for duplex's interoperability tests.

Run it with /usr/bin/python3: the `python3` on some PATHs lacks websockets.

  py_peer.py server [--host H] [--port P] [--protocol P] [--allow-origin O]
                    [--tls-cert F --tls-key F] [--lifetime S]
      An echo server: each message goes back with its type; the peer's close
      code and reason go back in the closing handshake. A text message
      "close:CODE:REASON" makes the server close with CODE and REASON instead,
      and "binary:N" makes it send payload(N, N) (N bytes) as a binary message.
      Prints "listening on ws[s]://HOST:PORT/" when ready; stops on SIGINT /
      SIGTERM or after --lifetime seconds. With --probe the server speaks first
      instead (to test echo clients): it sends a text and a binary message,
      checks that both come back with their types, and closes with 1000 if
      they did, 4001 otherwise.

  py_peer.py client --url URL [--refused-url URL] [--ca F] [--timeout S]
      Runs the interop scenarios against an echo server at URL (which must
      select the subprotocol "chat" when offered) and, with --refused-url,
      checks that a handshake the server refuses (Origin not allowed) fails.
      Prints "ok NAME" / "FAIL NAME: why" per scenario and exits 1 on failure.
"""

import argparse
import asyncio
import random
import signal
import ssl
import sys

import websockets
import websockets.exceptions

TEXT = "Gr\u00fc\u00dfe, \u4e16\u754c! \u20ac \U0001F600 \u00f1 \u05e9\u05dc\u05d5\u05dd"
BINARY_SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
BURST = 1000
DENIED_ORIGIN = "http://denied.invalid"


def payload(size, seed):
    rng = random.Random(seed)
    return rng.randbytes(size)


# --- server ---------------------------------------------------------------------


async def echo(ws):
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(int(code), reason)
                return
            if isinstance(message, str) and message.startswith("binary:"):
                size = int(message[len("binary:"):])
                await ws.send(payload(size, size))
                continue
            await ws.send(message)
    except websockets.exceptions.ConnectionClosed:
        pass


async def probe(ws):
    text = "probe \u00fc\u20ac\U0001F600"
    data = payload(70000, 7)
    try:
        await ws.send(text)
        await ws.send(data)
        ok = await asyncio.wait_for(ws.recv(), 10) == text
        ok = await asyncio.wait_for(ws.recv(), 10) == data and ok
        await ws.close(1000 if ok else 4001, "probe ok" if ok else "probe mismatch")
    except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
        await ws.close(4001, "probe timeout")


async def serve(args):
    ssl_ctx = None
    if args.tls_cert:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(
        probe if args.probe else echo,
        args.host,
        args.port,
        subprotocols=args.protocol or None,
        origins=args.allow_origin or None,
        ssl=ssl_ctx,
        max_size=64 << 20,
        compression=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        scheme = "wss" if ssl_ctx else "ws"
        print(f"listening on {scheme}://{args.host}:{port}/", flush=True)
        try:
            await asyncio.wait_for(stop, args.lifetime)
        except asyncio.TimeoutError:
            print("lifetime over, stopping", file=sys.stderr)


# --- client ---------------------------------------------------------------------


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


async def recv_expect(ws, expected):
    got = await ws.recv()
    check(type(got) is type(expected), f"type {type(got).__name__}, expected {type(expected).__name__}")
    check(got == expected, f"payload differs ({len(got)} vs {len(expected)} units)")


async def scenario_text(url, kw):
    async with websockets.connect(url, **kw) as ws:
        check(ws.subprotocol is None, f"subprotocol {ws.subprotocol!r} not offered")
        await ws.send(TEXT)
        await recv_expect(ws, TEXT)


async def scenario_binary(url, kw):
    async with websockets.connect(url, **kw) as ws:
        for size in BINARY_SIZES:
            data = payload(size, size)
            await ws.send(data)
            try:
                await recv_expect(ws, data)
            except Failure as e:
                raise Failure(f"size {size}: {e}")


async def scenario_burst(url, kw):
    async with websockets.connect(url, **kw) as ws:
        for i in range(BURST):
            await ws.send(f"burst {i}")
        for i in range(BURST):
            got = await ws.recv()
            check(got == f"burst {i}", f"message {i} is {got!r}")


async def scenario_subprotocol(url, kw):
    async with websockets.connect(url, subprotocols=["superchat", "chat"], **kw) as ws:
        check(ws.subprotocol == "chat", f"negotiated {ws.subprotocol!r}, expected 'chat'")
        await ws.send("with chat")
        await recv_expect(ws, "with chat")


async def scenario_close(url, kw):
    ws = await websockets.connect(url, **kw)
    await ws.send("before close")
    await recv_expect(ws, "before close")
    await ws.close(4000, "bye from python")
    check(ws.close_rcvd is not None, "no close frame received")
    check(ws.close_code == 4000, f"server's close code {ws.close_code}")
    check(ws.close_reason == "bye from python", f"server's close reason {ws.close_reason!r}")


async def scenario_refused(url, kw):
    try:
        ws = await websockets.connect(url, origin=DENIED_ORIGIN, **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        check(400 <= e.status_code < 500, f"refused with {e.status_code}")
        return
    await ws.close()
    raise Failure("the handshake succeeded")


async def run_client(args):
    kw = {"max_size": 64 << 20, "compression": None, "open_timeout": args.timeout}
    if args.url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=args.ca)
        kw["ssl"] = ctx
    scenarios = [
        ("text-utf8", scenario_text, args.url),
        ("binary-sizes", scenario_binary, args.url),
        ("burst-1000", scenario_burst, args.url),
        ("subprotocol", scenario_subprotocol, args.url),
        ("close-4000", scenario_close, args.url),
    ]
    if args.refused_url:
        scenarios.append(("refused-handshake", scenario_refused, args.refused_url))
    failed = 0
    for name, fn, url in scenarios:
        try:
            await asyncio.wait_for(fn(url, kw), args.timeout)
            print(f"ok {name}", flush=True)
        except asyncio.TimeoutError:
            failed += 1
            print(f"FAIL {name}: timed out after {args.timeout} s", flush=True)
        except Exception as e:  # any failure of the scenario, reported by name
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(scenarios) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--protocol", action="append", default=[])
    s.add_argument("--allow-origin", action="append", default=[])
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--lifetime", type=float, default=120.0)
    s.add_argument("--probe", action="store_true")
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--refused-url")
    c.add_argument("--ca")
    c.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.command == "server":
        asyncio.run(serve(args))
        return 0
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
