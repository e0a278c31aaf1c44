#!/usr/bin/python3
"""A small echo peer for the gate's self-test, built on wire.py, that can be told
to misbehave in one way (--fault). The self-test (selftest.py) runs the gate
against it to prove each kind of check can fail: a gate that passes a peer with
a known fault is broken.

  mutant_peer.py echo-server [--fault F] [--max-message-size N] ...   (prints 'listening on ws://...')
  mutant_peer.py connect --echo [--fault F] [--max-message-size N] URL
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402
from wire import BINARY, CLOSE, PING, PONG, TEXT  # noqa: E402

FAULTS = ("none", "wrong-close-code", "no-close-frame", "no-pong", "keep-tcp-open", "ignore-rsv",
          "text-as-binary", "mask-from-server", "exit-1")


def valid_code(code):
    # RFC 6455 7.4.1/7.4.2, with 1012-1014 registered since.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def wait_tcp_close(c, seconds=5):
    # Ignore whatever arrives after the close (RFC 6455 5.5.1) until TCP closes.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ev = c.next_event(deadline - time.monotonic())
        except wire.PeerViolation:
            c.buf.clear()
            continue
        if ev is None or ev.kind == "eof":
            return


def serve_conn(sock, rest, we_are_client, fault, limit):
    c = wire.Conn(sock, we_are_client, rest)
    if fault == "ignore-rsv":
        c.rsv_allowed = 7
    if fault == "mask-from-server" and not we_are_client:
        real = c.frame
        c.frame = lambda *a, **kw: real(*a, **dict(kw, masked=True))

    def fail(code):
        if fault == "no-close-frame":
            c.close_tcp()
            return 1
        c.send(c.close_frame(1000 if fault == "wrong-close-code" else code))
        if not we_are_client:
            # A server that fails the connection closes TCP at once (RFC 6455 7.1.7).
            c.close_tcp()
            return 1
        # Wait for the close reply (unless the peer's close came first), skipping
        # whatever follows the offending bytes.
        deadline = time.monotonic() + 2
        c.buf.clear()
        c._frag_op, c._frag_parts = None, []
        while c.close_received is None and time.monotonic() < deadline:
            try:
                ev = c.next_event(deadline - time.monotonic())
            except wire.PeerViolation:
                c.buf.clear()
                c._frag_op, c._frag_parts = None, []
                continue
            if ev is None or ev.kind in ("eof", "close"):
                break
        if we_are_client:
            wait_tcp_close(c)  # the server closes TCP first (RFC 6455 7.1.1)
        c.close_tcp()
        return 1

    while True:
        try:
            ev = c.next_event(30)
        except wire.PeerViolation as e:
            return fail(1007 if "UTF-8" in str(e) else 1002)
        if ev is None or ev.kind == "eof":
            c.close_tcp()
            return 1
        if ev.kind == "message":
            if len(ev.payload) > limit:
                return fail(1009)
            op = BINARY if fault == "text-as-binary" else ev.opcode
            c.send(c.frame(op, ev.payload))
        elif ev.kind == "ping":
            if fault != "no-pong":
                c.send(c.frame(PONG, ev.payload))
        elif ev.kind == "close":
            if ev.code is not None and not valid_code(ev.code):
                return fail(1002)
            try:
                ev.reason.decode("utf-8")
            except UnicodeDecodeError:
                return fail(1007)
            code = 1000 if fault == "wrong-close-code" and ev.code is not None else ev.code
            c.send(c.close_frame(code, ev.reason) if ev.code is not None else c.frame(CLOSE))
            if we_are_client or fault == "keep-tcp-open":
                # A client waits for the server to close TCP (RFC 6455 7.1.1).
                wait_tcp_close(c)
            c.close_tcp()
            return 1 if fault == "exit-1" else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=("echo-server", "connect"))
    ap.add_argument("url", nargs="?")
    ap.add_argument("--fault", choices=FAULTS, default=os.environ.get("MUTANT_FAULT", "none"))
    ap.add_argument("--max-message-size", type=int, default=64 << 20)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--echo", action="store_true")
    args = ap.parse_intermixed_args()
    if args.command == "connect":
        hostport = args.url.split("//", 1)[1]
        hostport, _, path = hostport.partition("/")
        host, _, port = hostport.rpartition(":")
        sock, rest, _ = wire.client_handshake(host, int(port), "/" + path)
        return serve_conn(sock, rest, True, args.fault, args.max_message_size)
    # Stop cleanly on SIGTERM, as the echo-server does (the gate checks status 0).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(64)
    print("listening on ws://%s:%d/" % ls.getsockname()[:2], flush=True)

    def handle(s):
        try:
            path, headers, rest = wire.server_handshake(s)
            serve_conn(s, rest, False, args.fault, args.max_message_size)
        except Exception:
            s.close()
    while True:
        s, _ = ls.accept()
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
