#!/usr/bin/python3
"""Echo server for duplex's client integration tests (Python `websockets` 10.4).

Usage: ws_echo_server.py [--cert FILE --key FILE [--client-ca FILE]] [--protocol P ...]
(--client-ca: require a client certificate issued by that CA)
Listens on 127.0.0.1, port 0, prints "PORT <n>" on stdout, and serves until
stdin closes (the test fixture holds the pipe) or 120 s pass.

Paths:
  /          echo every message with its type
  /headers   first send the request headers as JSON text, then echo
  /close     close with 4000 "bye" at once
  /mute      stop reading after the handshake (a dead peer: no pongs)
  /protocol  send the negotiated subprotocol as text, then echo
"""
import argparse
import asyncio
import json
import ssl
import sys

import websockets


async def handler(ws, path):
    if path == "/headers":
        await ws.send(json.dumps({k.lower(): v for k, v in ws.request_headers.raw_items()}))
    elif path == "/close":
        await ws.close(4000, "bye")
        return
    elif path == "/mute":
        ws.transport.pause_reading()
        await asyncio.sleep(120)
        return
    elif path == "/protocol":
        await ws.send(ws.subprotocol or "")
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--protocol", action="append", default=None)
    args = parser.parse_args()
    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
    server = await websockets.serve(handler, "127.0.0.1", 0, ssl=context, max_size=None,
                                    max_queue=None, subprotocols=args.protocol,
                                    compression=None, ping_interval=None)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait_for(stdin_closed, timeout=120)
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass
