#!/usr/bin/python3
"""`duplex pubsub-server` end to end over TLS and with permessage-deflate,
driven by clients we did not write (Python websockets, Debian's 10.4).

    run_pubsub_tls_deflate.py --duplex BIN [--tls] [--deflate]

Starts `duplex pubsub-server --port 0 --threads 1` (with --tls: a certificate
made for the run by the openssl CLI, the clients trusting its CA; with
--deflate: `--deflate`, and one subscriber asks for
server_no_context_takeover, so it gets the frame compressed once and shared,
while the other keeps context takeover and gets it uncompressed). Then, on
the path /room: a sender and two subscribers, and one client on /other:
  - the sender's text and binary messages (small, and large compressible
    ones) reach both subscribers intact, in order, with their type (str stays
    str, bytes stay bytes);
  - the sender gets none of its own: after the subscribers got everything,
    one of them sends a marker, and the marker is the first thing the sender
    receives (one loop: the sender's messages were handed to every subscriber
    before the marker was published);
  - /other gets nothing of /room (its first message is a marker sent on
    /other);
  - with --deflate, each client negotiated permessage-deflate, and the
    server compressed (its "N compressed" on stopping is at least the
    messages over the 64 B threshold; without --deflate it is 0).
The server is stopped by pid (SIGTERM) and must exit 0. Exit status 0 when
every check passed.
"""

import argparse
import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_interop import make_certificates  # noqa: E402  (the same certificates)

TIMEOUT = 10.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Server:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.err = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr),
                                       daemon=True)
        self.reader.start()
        line = self.proc.stdout.readline()  # "listening on ws[s]://HOST:PORT/"
        if "listening on" not in line:
            self.stop()
            raise Failure(f"pubsub-server did not start: {line!r} {''.join(self.err)}")
        self.base = line.split("listening on", 1)[1].strip().rstrip("/")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("pubsub-server did not stop on SIGTERM")
        self.reader.join(TIMEOUT)  # its stderr to the end: the summary line
        return self.proc.returncode


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"{what}: nothing within {TIMEOUT} s") from None


async def scenario(base, ca, deflate):
    ctx = None
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    kw = {"ssl": ctx} if ctx else {}

    def compression(no_takeover):
        if not deflate:
            return {"compression": None}
        return {"extensions": [ClientPerMessageDeflateFactory(
            server_no_context_takeover=no_takeover, client_max_window_bits=True)]}

    sender = await websockets.connect(base + "/room", **kw, **compression(False))
    shared = await websockets.connect(base + "/room", **kw, **compression(True))
    own = await websockets.connect(base + "/room", **kw, **compression(False))
    other = await websockets.connect(base + "/other", **kw, **compression(False))
    clients = {"sender": sender, "shared": shared, "own": own, "other": other}
    try:
        if deflate:
            for name, ws in clients.items():
                names = [e.name for e in ws.extensions]
                check(names == ["permessage-deflate"], f"{name}: extensions {names}")
            check(shared.extensions[0].remote_no_context_takeover,
                  "shared: server_no_context_takeover not agreed")
        # Each subscriber is in the room once a probe reaches it: probes every
        # 100 ms (at most 100) until both got one, then "start" (one
        # publisher's messages keep their order, so what follows "start" is
        # the scenario).
        waiting = {asyncio.ensure_future(ws.recv()): name
                   for name, ws in (("shared", shared), ("own", own))}
        for _ in range(100):
            if not waiting:
                break
            await sender.send("probe")
            done, _ = await asyncio.wait(list(waiting), timeout=0.1)
            for t in done:
                check(t.result() == "probe", f"{waiting[t]}: {t.result()!r} before any probe")
                del waiting[t]
        check(not waiting, f"no probe reached {sorted(waiting.values())} in 10 s")
        await sender.send("start")
        for name, ws in (("shared", shared), ("own", own)):
            while (m := await recv(ws, f"{name} start")) != "start":
                check(m == "probe", f"{name}: {m!r} before start")
        messages = []
        for i in range(20):
            messages.append(f"text {i} " + "é" * (i * 50))  # UTF-8, over the 64 B threshold
            messages.append(bytes([i]) * (i * 300 + 1))  # binary, up to ~6 KB
        messages.append("a" * 100_000)  # compressible: compressed when agreed
        messages.append(os.urandom(70_000))
        for m in messages:
            await sender.send(m)
        for name, ws in (("shared", shared), ("own", own)):
            for i, want in enumerate(messages):
                got = await recv(ws, f"{name} message {i}")
                check(type(got) is type(want), f"{name} message {i}: {type(got).__name__}, "
                      f"sent {type(want).__name__}")
                check(got == want, f"{name} message {i}: content differs ({len(got)} B, "
                      f"sent {len(want)} B)")
        await shared.send("marker")
        first = await recv(sender, "sender marker")
        check(first == "marker", f"sender got its own message back: {str(first)[:40]!r}")
        check(await recv(own, "own marker") == "marker", "own: no marker")
        # /other: a second client there sends a marker; /room traffic must not precede it.
        other2 = await websockets.connect(base + "/other", **kw, **compression(False))
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                check(time.monotonic() < deadline, "other: no marker")
                await other2.send("other-marker")
                try:
                    m = await asyncio.wait_for(other.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue  # other2's subscription not in place yet: send again
                check(m == "other-marker", f"/other got /room traffic: {str(m)[:40]!r}")
                break
        finally:
            await other2.close()
        print(f"ok: {len(messages)} messages to 2 subscribers, types intact, sender excluded, "
              f"/other untouched" + (", permessage-deflate agreed" if deflate else ""))
    finally:
        for ws in clients.values():
            await ws.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duplex", required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--deflate", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        argv = [a.duplex, "pubsub-server", "--port", "0", "--threads", "1"]
        ca = None
        if a.tls:
            certs = make_certificates(work)
            argv += ["--tls-cert", certs["cert"], "--tls-key", certs["key"]]
            ca = certs["ca"]
        if a.deflate:
            argv += ["--deflate"]
        server = Server(argv)
        try:
            check(server.base.startswith("wss://" if a.tls else "ws://"), server.base)
            asyncio.run(scenario(server.base, ca, a.deflate))
        except Failure as e:
            server.stop()
            print(f"FAIL: {e}\n{''.join(server.err)[-1000:]}", file=sys.stderr)
            return 1
        rc = server.stop()
        err = "".join(server.err)
        if rc != 0:
            print(f"FAIL: pubsub-server exit {rc}: {err[-1000:]}", file=sys.stderr)
            return 1
        found = re.search(r"(\d+) compressed", err)
        compressed = int(found.group(1)) if found else -1
        # 40 of the 42 messages are over the threshold (not text 0, binary 0).
        if (a.deflate and compressed < 40) or (not a.deflate and compressed != 0):
            print(f"FAIL: {compressed} compressed by the server: {err[-500:]}", file=sys.stderr)
            return 1
        print(f"server: {compressed} compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
