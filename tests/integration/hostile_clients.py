#!/usr/bin/env python3
"""Clients that send without reading, against `duplex echo-server`.

Four raw clients push 1 MiB binary messages for DURATION seconds and never
read their echoes; two well-behaved clients send a short text message every
100 ms and wait for its echo. The server must stop reading the hostile ones
(backpressure) instead of queuing their echoes, so its peak RSS grows by less
than (outbound limit + max message size) x 4 + 16 MB, and it must keep
answering the others. Prints the figures (docs/server.md quotes them).

Usage: hostile_clients.py --duplex PATH [--duration 30]
Exit status 0 when every check holds.
"""
import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

OUTBOUND_LIMIT = 256 * 1024     # WebSocketListenerOptions::outbound_buffer_size default
MAX_MESSAGE = 16 * 1024 * 1024  # --max-message-size given below
HOSTILE = 4
POLITE = 2
MESSAGE = 1 << 20

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def masked_frame(opcode, payload, mask=b"\x11\x22\x33\x44"):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    # XOR a word at a time through int arithmetic: fast enough for 1 MiB once.
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return head + mask + body


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def open_client(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {buf[:40]!r}")
    s.setblocking(False)
    return s, buf[buf.index(b"\r\n\r\n") + 4:]


def take_frames(buf):
    """Complete server frames at the front of buf: ([(opcode, payload)], rest)."""
    out, pos = [], 0
    while len(buf) - pos >= 2:
        n = buf[pos + 1] & 0x7F
        head = 2
        if n == 126:
            if len(buf) - pos < 4:
                break
            n, head = struct.unpack("!H", buf[pos + 2:pos + 4])[0], 4
        elif n == 127:
            if len(buf) - pos < 10:
                break
            n, head = struct.unpack("!Q", buf[pos + 2:pos + 10])[0], 10
        if len(buf) - pos < head + n:
            break
        out.append((buf[pos] & 0x0F, buf[pos + head:pos + head + n]))
        pos += head + n
    return out, buf[pos:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duplex", required=True)
    ap.add_argument("--duration", type=float, default=30.0)
    args = ap.parse_args()

    server = subprocess.Popen([args.duplex, "echo-server", "--port", "0", "--threads", "2",
                               "--max-message-size", str(MAX_MESSAGE)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures = []
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"echo-server said {line!r}")
        port = int(line.strip().rstrip("/").rsplit(":", 1)[1])

        hostile = [open_client(port)[0] for _ in range(HOSTILE)]
        polite = [open_client(port) for _ in range(POLITE)]
        base = rss_kib(server.pid, "VmRSS")
        frame = masked_frame(0x2, os.urandom(MESSAGE))
        pending = {s: memoryview(frame) for s in hostile}
        pushed = {s: 0 for s in hostile}
        inbox = {s: rest for s, rest in polite}
        sent_at = {s: None for s, _ in polite}
        answered = {s: 0 for s, _ in polite}
        worst = 0.0
        next_send = time.monotonic()
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_send:
                for s, _ in polite:
                    if sent_at[s] is None:  # one message in flight per polite client
                        s.sendall(masked_frame(0x1, b"are you there?"))
                        sent_at[s] = now
                next_send = now + 0.1
            readable, writable, _ = select.select([s for s, _ in polite], hostile, [], 0.05)
            for s in writable:
                try:
                    n = s.send(pending[s])
                except BlockingIOError:
                    continue
                pushed[s] += n
                pending[s] = pending[s][n:] if n < len(pending[s]) else memoryview(frame)
            for s in readable:
                chunk = s.recv(1 << 16)
                if not chunk:
                    failures.append("the server closed a polite client")
                    polite = [(p, r) for p, r in polite if p is not s]
                    continue
                frames, inbox[s] = take_frames(inbox[s] + chunk)
                for op, payload in frames:
                    if op == 0x1 and payload == b"are you there?" and sent_at[s] is not None:
                        worst = max(worst, time.monotonic() - sent_at[s])
                        answered[s] += 1
                        sent_at[s] = None
        peak = rss_kib(server.pid, "VmHWM")
        growth_mb = (peak - base) * 1024 / 1e6
        bound_mb = ((OUTBOUND_LIMIT + MAX_MESSAGE) * HOSTILE) / 1e6 + 16
        total_pushed = sum(pushed.values())
        print(f"hostile clients: {HOSTILE} x 1 MiB messages, never reading, {args.duration:.0f} s")
        print(f"  pushed by the hostile clients: {total_pushed / 1e6:.1f} MB in all "
              f"({', '.join(f'{v / 1e6:.1f}' for v in pushed.values())} MB each)")
        print(f"  server RSS: {base / 1024:.1f} MiB at start, peak {peak / 1024:.1f} MiB, "
              f"growth {growth_mb:.1f} MB (bound {bound_mb:.1f} MB)")
        print(f"  polite clients: {', '.join(str(v) for v in answered.values())} echoes, "
              f"slowest {worst * 1000:.1f} ms")
        if growth_mb >= bound_mb:
            failures.append(f"RSS grew by {growth_mb:.1f} MB, over the bound {bound_mb:.1f} MB")
        expected = int(args.duration / 0.1 * 0.5)  # at least half of one message per 100 ms
        for s, n in answered.items():
            if n < expected:
                failures.append(f"a polite client got {n} echoes in {args.duration:.0f} s (< {expected})")
        for s in hostile:
            s.close()
        for s, _ in polite:
            s.close()
    except Exception as e:  # noqa: BLE001 - any failure of the harness fails the test
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            failures.append("echo-server did not stop on SIGTERM")
    for f in failures:
        print("FAIL", f)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
