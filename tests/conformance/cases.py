"""The conformance cases, written from RFC 6455 and organised like the public
Autobahn|Testsuite's sections (its case descriptions say what each case checks;
the code here is ours). Every case runs in both roles unless it says otherwise:
the fuzzer is the client when duplex's server is tested, the server when
duplex's client is tested, and the same frames go out (masked as a client must,
unmasked as a server must).

A case is a function (c, ctx): c is a wire.Conn after the opening handshake, ctx
carries the role ('server' = duplex is the server) and limits. It returns
normally for OK, raises NonStrict or Failed with the reason.
"""

import struct
import time

from wire import BINARY, CLOSE, CONT, PING, PONG, TEXT, PeerViolation

CASE_TIMEOUT = 5.0  # seconds: every case is bounded by this unless it says otherwise
# How long a reply that must come "now" (a pong mid-message, a fail-fast close)
# may take: generous for a loaded CI machine, far below the case bound.
PROMPT = 2.0
TCP_CLOSE_WAIT = 3.0  # how long the server may take to close TCP after the close handshake
LIMIT = 65536  # --max-message-size of the "limit" profile (section 9.9)


class Failed(Exception):
    pass


class NonStrict(Exception):
    pass


class Case:
    def __init__(self, cid, desc, fn, roles=("server", "client"), profile="default", timeout=CASE_TIMEOUT,
                 deflate=None, raw=False):
        self.id, self.desc, self.fn = cid, desc, fn
        # raw: the case does the opening handshake itself; fn(sock, ctx) gets the
        # accepted socket (client role) or None with ctx.host/ctx.port (server role).
        self.raw = raw
        self.roles, self.profile, self.timeout = roles, profile, timeout
        # permessage-deflate: DeflateSpec (what we offer as a client, what we
        # answer as a server), or None for no extension.
        self.deflate = deflate

    def sort_key(self):
        return tuple(int(x) for x in self.id.split("."))


CASES = []


def add(cid, desc, fn, **kw):
    CASES.append(Case(cid, desc, fn, **kw))


# --------------------------------------------------------------- expectations
def msg(opcode, payload):
    return ("message", opcode, payload)


def pong(payload):
    return ("pong", payload)


def describe_key(k):
    if k[0] == "message":
        p = k[2]
        return "%s(%d bytes%s)" % ({TEXT: "text", BINARY: "binary"}.get(k[1], k[1]), len(p),
                                   (": " + p[:24].hex()) if p else "")
    if k[0] in ("ping", "pong"):
        return "%s(%s)" % (k[0], k[1][:24].hex())
    return str(k)


def compare(events, expected):
    got = [e.key() for e in events]
    if got == list(expected):
        return
    # Find the first difference for a short, useful message.
    for i, (g, w) in enumerate(zip(got, expected)):
        if g != w:
            raise Failed("event %d: expected %s, got %s" % (i, describe_key(w), describe_key(g)))
    if len(got) < len(expected):
        raise Failed("expected %d events before the close, got %d (missing %s)" % (
            len(expected), len(got), describe_key(expected[len(got)])))
    raise Failed("unexpected extra event %s (after %d expected ones)" % (describe_key(got[len(expected)]), len(expected)))


def collect_until_close(c, timeout):
    """Events up to the peer's close frame. Returns (events, close_event, how)."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        ev = c.next_event(max(0.0, deadline - time.monotonic()))
        if ev is None:
            return events, None, "timeout"
        if ev.kind == "eof":
            return events, None, "eof"
        if ev.kind == "close":
            return events, ev, "close"
        events.append(ev)


def finish_close(c, ctx, close_ev):
    """Complete the close handshake and check who closes TCP.
    RFC 6455 7.1.1: the server closes the TCP connection first; the client waits."""
    if not c.close_sent:
        code = close_ev.code
        c.send(c.close_frame(code))
        c.close_sent = True
    if ctx.role == "server":
        deadline = time.monotonic() + TCP_CLOSE_WAIT
        while True:
            ev = c.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise Failed("server did not close the TCP connection within %.0f s of the close handshake"
                             % TCP_CLOSE_WAIT)
            if ev.kind == "eof":
                return
            raise Failed("peer sent %s after its close frame" % ev.describe())
    else:
        c.close_tcp()


def collect_n(c, n, timeout):
    """Up to n events; stops early at the peer's close frame, TCP close or timeout."""
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < n:
        ev = c.next_event(max(0.0, deadline - time.monotonic()))
        if ev is None:
            return events, None, "timeout"
        if ev.kind == "eof":
            return events, None, "eof"
        if ev.kind == "close":
            return events, ev, "close"
        events.append(ev)
    return events, None, "count"


def expect_ok(c, ctx, expected, code=1000, reason=b"", send_close=True, timeout=CASE_TIMEOUT,
              reply_codes=None):
    """The case's traffic was valid: we wait for exactly `expected` from the peer
    (as Autobahn does before closing), then close with `code` and expect the
    close reply echoing it. With send_close=False the case already sent its
    close, and `expected` must all arrive before the peer's close reply."""
    events, close_ev, how = [], None, "close"
    if send_close:
        events, close_ev, how = collect_n(c, len(expected), timeout)
        if close_ev is None and how != "eof":
            c.send_frames([c.close_frame(code, reason)])
    if close_ev is None and how != "eof":
        more, close_ev, how = collect_until_close(c, timeout)
        events += more
    compare(events, expected)
    if close_ev is None:
        raise Failed("no close reply (%s)" % ("TCP closed without a close frame" if how == "eof" else "timed out"))
    if not c.close_sent:
        raise Failed("peer closed with %s although the traffic was valid" % close_ev.code)
    finish_close(c, ctx, close_ev)
    ctx.outcome = "clean"
    ctx.close_code = code  # the close this case sent (itself, or just above)
    wanted = reply_codes if reply_codes is not None else ((None, 1000) if code is None else (code,))
    if close_ev.code not in wanted:
        text = "close reply code %s, expected %s" % (close_ev.code, " or ".join(str(w) for w in wanted))
        # RFC 6455 5.5.1 only says an endpoint "typically" echoes the code; the
        # echo-server's contract (issue 4) is to echo it, so the server role is strict.
        if ctx.role == "server":
            raise Failed(text)
        raise NonStrict(text)
    if ctx.role == "server" and code is not None and close_ev.reason != reason:
        raise NonStrict("close reason not echoed: sent %r, got %r" % (reason[:30], close_ev.reason[:30]))


def expect_fail(c, ctx, expected, codes=(1002,), timeout=CASE_TIMEOUT):
    """The case ends in a violation: the peer must deliver (echo) exactly
    `expected` (everything before the offending frame), then fail the connection
    with a close frame carrying one of `codes` (RFC 6455 7.1.7), then close."""
    events, close_ev, how = collect_until_close(c, timeout)
    compare(events, expected)
    if close_ev is None:
        if how == "eof":
            raise Failed("connection dropped without a close frame (expected %s)" % "/".join(map(str, codes)))
        raise Failed("peer did not fail the connection within %.1f s (expected close %s)" % (
            timeout, "/".join(map(str, codes))))
    if close_ev.code not in codes:
        raise Failed("close code %s, expected %s" % (close_ev.code, "/".join(map(str, codes))))
    finish_close(c, ctx, close_ev)
    ctx.outcome = "failed"


def expect_quiet(c, seconds):
    """Nothing may arrive for `seconds` (the peer must wait for more input)."""
    ev = c.next_event(seconds)
    if ev is not None:
        raise Failed("expected nothing yet, got %s" % ev.describe())


# --------------------------------------------------------------- helpers
def echo_case(opcode, payload, mode="one", frag=None, chop=None, pause=None):
    """Send one message (optionally in fragments of `frag` bytes, optionally in
    TCP chops of `chop` bytes) and expect it echoed byte for byte."""
    def run(c, ctx):
        if frag:
            frames = []
            n = len(payload)
            offs = list(range(0, n, frag)) or [0]
            for i, o in enumerate(offs):
                frames.append(c.frame(opcode if i == 0 else CONT, payload[o:o + frag], fin=(i == len(offs) - 1)))
        else:
            frames = [c.frame(opcode, payload)]
        if chop:
            c.send(b"".join(frames), chop=chop, pause=pause or 0.0)
        else:
            c.send_frames(frames, mode, pause)
        expect_ok(c, ctx, [msg(opcode, payload)], timeout=max(CASE_TIMEOUT, len(payload) / 2e6))
    return run


def frames_case(build, expected, fail=None, mode="one", codes=None):
    """build(c) -> list of frame bytes; expected: events before the close; fail:
    None (valid traffic, we close) or the close codes expected."""
    def run(c, ctx):
        c.send_frames(build(c), mode)
        if fail is None:
            expect_ok(c, ctx, expected)
        else:
            expect_fail(c, ctx, expected, fail)
    return run


def frags(c, op, data, size):
    offs = list(range(0, len(data), size))
    return [c.frame(op if i == 0 else CONT, data[o:o + size], fin=(i == len(offs) - 1)) for i, o in enumerate(offs)]


def text_bytes(n):
    pattern = b"Hello, conformance! *0123456789abcdef"
    return (pattern * (n // len(pattern) + 1))[:n]


def binary_bytes(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


HELLO = b"Hello, world!"

# =============================================================== 1 framing
for sec, op, gen in ((1, TEXT, text_bytes), (2, BINARY, binary_bytes)):
    kind = "text" if op == TEXT else "binary"
    for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536)):
        add("1.%d.%d" % (sec, i + 1), "Send %s message with payload of length %d" % (kind, n),
            echo_case(op, gen(n)))
    add("1.%d.8" % sec, "Send %s message with payload of length 65536, sent in chops of 997 octets" % kind,
        echo_case(op, gen(65536), chop=997, pause=0.0005))

# RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
add("1.3.1", "Frame header with a 64-bit length whose top bit is set (ours)",
    frames_case(lambda c: [c.frame(BINARY, b"", length=(1 << 63) | 5)], [], fail=(1002, 1009)))

# =============================================================== 2 pings/pongs
add("2.1", "Send ping without payload", frames_case(lambda c: [c.frame(PING)], [pong(b"")]))
add("2.2", "Send ping with small text payload", frames_case(lambda c: [c.frame(PING, HELLO)], [pong(HELLO)]))
BIN_PING = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
add("2.3", "Send ping with small binary (non UTF-8) payload",
    frames_case(lambda c: [c.frame(PING, BIN_PING)], [pong(BIN_PING)]))
add("2.4", "Send ping with binary payload of 125 octets",
    frames_case(lambda c: [c.frame(PING, b"\xfe" * 125)], [pong(b"\xfe" * 125)]))
# RFC 6455 5.5: control frames carry at most 125 bytes of payload.
add("2.5", "Send ping with binary payload of 126 octets", frames_case(lambda c: [c.frame(PING, b"\xfe" * 126)], [], fail=(1002,)))
add("2.6", "Send ping with binary payload of 125 octets, sent one octet per TCP segment",
    frames_case(lambda c: [c.frame(PING, b"\xfe" * 125)], [pong(b"\xfe" * 125)], mode="octet"))
add("2.7", "Send unsolicited pong without payload (no answer expected)", frames_case(lambda c: [c.frame(PONG)], []))
add("2.8", "Send unsolicited pong with payload (no answer expected)",
    frames_case(lambda c: [c.frame(PONG, b"unsolicited pong payload")], []))
add("2.9", "Send unsolicited pong, then ping: only the ping is answered",
    frames_case(lambda c: [c.frame(PONG, b"unsolicited pong payload"), c.frame(PING, b"ping payload")],
                [pong(b"ping payload")]))


def ten_pings(mode):
    def run(c, ctx):
        payloads = [b"payload-%d" % i for i in range(10)]
        c.send_frames([c.frame(PING, p) for p in payloads], mode)
        events = []
        while len(events) < 10:
            ev = c.next_event(PROMPT)
            if ev is None or ev.kind in ("close", "eof"):
                if ev is not None:
                    c.pending.insert(0, ev)
                break
            events.append(ev)
            if ev.key() == pong(payloads[-1]):
                break
        c.send_frames([c.close_frame(1000)])
        more, close_ev, how = collect_until_close(c, CASE_TIMEOUT)
        events += more
        got = [e.key() for e in events]
        if close_ev is None:
            raise Failed("no close reply (%s)" % how)
        finish_close(c, ctx, close_ev)
        if got == [pong(p) for p in payloads]:
            return
        # RFC 6455 5.5.3: a pong may answer only the most recent of several pings.
        pongs = [k for k in got if k[0] == "pong"]
        if got == pongs and pongs and pongs[-1] == pong(payloads[-1]) and all(
                k in [pong(p) for p in payloads] for k in pongs):
            raise NonStrict("%d pongs for 10 pings (allowed by RFC 6455 5.5.3)" % len(pongs))
        raise Failed("pongs for 10 pings: %s" % ", ".join(describe_key(k) for k in got))
    return run


add("2.10", "Send 10 pings, expect 10 pongs", ten_pings("one"))
add("2.11", "Send 10 pings, one octet per TCP segment, expect 10 pongs", ten_pings("octet"))

# =============================================================== 3 reserved bits
# RFC 6455 5.2: RSV bits MUST be 0 unless an extension defines them.
add("3.1", "Send small text message with RSV = 1", frames_case(lambda c: [c.frame(TEXT, HELLO, rsv=1)], [], fail=(1002,)))
for cid, mode, how in (("3.2", "one", "one write"), ("3.3", "frame", "one write per frame"),
                       ("3.4", "octet", "one octet per TCP segment")):
    add(cid, "Send text, then text with RSV = 2, then ping (%s): echo, then fail" % how,
        frames_case(lambda c: [c.frame(TEXT, HELLO), c.frame(TEXT, HELLO, rsv=2), c.frame(PING, HELLO)],
                    [msg(TEXT, HELLO)], fail=(1002,), mode=mode))
add("3.5", "Send small binary message with RSV = 5",
    frames_case(lambda c: [c.frame(BINARY, b"\x00\xff\xfe\xfd", rsv=5)], [], fail=(1002,)))
add("3.6", "Send ping with RSV = 6", frames_case(lambda c: [c.frame(PING, HELLO, rsv=6)], [], fail=(1002,)))
add("3.7", "Send close with RSV = 7",
    frames_case(lambda c: [c.frame(CLOSE, struct.pack("!H", 1000), rsv=7)], [], fail=(1002,)))

# =============================================================== 4 opcodes
# RFC 6455 5.2: opcodes 3-7 and 11-15 are reserved; receiving one fails the connection.
for sub, base in ((1, 3), (2, 11)):
    kind = "non-control" if base == 3 else "control"
    add("4.%d.1" % sub, "Send frame with reserved %s opcode %d" % (kind, base),
        frames_case(lambda c, o=base: [c.frame(o)], [], fail=(1002,)))
    add("4.%d.2" % sub, "Send frame with reserved %s opcode %d and payload" % (kind, base + 1),
        frames_case(lambda c, o=base + 1: [c.frame(o, HELLO)], [], fail=(1002,)))
    for k in range(3):
        o = base + 2 + k
        add("4.%d.%d" % (sub, 3 + k), "Send text, then frame with reserved %s opcode %d%s, then ping" % (
            kind, o, " and payload" if k else ""),
            frames_case(lambda c, o=o, k=k: [c.frame(TEXT, HELLO), c.frame(o, HELLO if k else b""), c.frame(PING, HELLO)],
                        [msg(TEXT, HELLO)], fail=(1002,)))

# =============================================================== 5 fragmentation
# RFC 6455 5.5: control frames MUST NOT be fragmented.
add("5.1", "Send ping fragmented into 2 fragments",
    frames_case(lambda c: [c.frame(PING, b"frag1", fin=False), c.frame(CONT, b"frag2")], [], fail=(1002,)))
add("5.2", "Send pong fragmented into 2 fragments",
    frames_case(lambda c: [c.frame(PONG, b"frag1", fin=False), c.frame(CONT, b"frag2")], [], fail=(1002,)))
two = lambda c: [c.frame(TEXT, b"fragment1", fin=False), c.frame(CONT, b"fragment2")]
for cid, mode, how in (("5.3", "one", "one write"), ("5.4", "octet", "one octet per TCP segment"),
                       ("5.5", "frame", "one write per frame")):
    add(cid, "Send text message fragmented into 2 fragments (%s)" % how,
        frames_case(two, [msg(TEXT, b"fragment1fragment2")], mode=mode))
# RFC 6455 5.4: control frames MAY be injected in the middle of a fragmented message.
two_ping = lambda c: [c.frame(TEXT, b"fragment1", fin=False), c.frame(PING, b"pongme!"), c.frame(CONT, b"fragment2")]
for cid, mode, how in (("5.6", "one", "one write"), ("5.7", "octet", "one octet per TCP segment"),
                       ("5.8", "frame", "one write per frame")):
    add(cid, "Send text message in 2 fragments with a ping in between (%s)" % how,
        frames_case(two_ping, [pong(b"pongme!"), msg(TEXT, b"fragment1fragment2")], mode=mode))
# RFC 6455 5.4: a continuation frame needs a message to continue.
for base, fin in ((9, True), (12, False)):
    for k, (mode, how) in enumerate((("one", "one write"), ("frame", "one write per frame"),
                                     ("octet", "one octet per TCP segment"))):
        add("5.%d" % (base + k), "Send continuation frame with FIN = %s and nothing to continue, then text (%s)" % (
            fin, how),
            frames_case(lambda c, fin=fin: [c.frame(CONT, b"non-continuation payload", fin=fin), c.frame(TEXT, b"Hello, world!")],
                        [], fail=(1002,), mode=mode))
add("5.15", "Send text in 2 fragments, then continuation (FIN = false) with nothing to continue, then text",
    frames_case(lambda c: two(c) + [c.frame(CONT, b"fragment3", fin=False), c.frame(TEXT, b"fragment4")],
                [msg(TEXT, b"fragment1fragment2")], fail=(1002,)))
add("5.16", "Twice: continuation (FIN = false) with nothing to continue, then text in 2 fragments",
    frames_case(lambda c: ([c.frame(CONT, b"fragment1", fin=False)] + two(c)) * 2, [], fail=(1002,)))
add("5.17", "Twice: continuation (FIN = true) with nothing to continue, then text in 2 fragments",
    frames_case(lambda c: ([c.frame(CONT, b"fragment1")] + two(c)) * 2, [], fail=(1002,)))
# RFC 6455 5.4: the fragments after the first carry opcode 0.
add("5.18", "Send text in 2 fragments, both with the text opcode",
    frames_case(lambda c: [c.frame(TEXT, b"fragment1", fin=False), c.frame(TEXT, b"fragment2")], [], fail=(1002,)))


def pings_inside_fragments(mode):
    """Pings inside a fragmented message must be answered at once, not after the
    message completes (RFC 6455 5.4, 5.5.2)."""
    def run(c, ctx):
        c.send_frames([c.frame(TEXT, b"fragment1", fin=False), c.frame(CONT, b"fragment2", fin=False),
                       c.frame(PING, b"pongme 1!")], mode)
        ev = c.next_event(PROMPT)
        if ev is None or ev.key() != pong(b"pongme 1!"):
            raise Failed("first pong not received while the message was incomplete (got %s)" % (
                ev.describe() if ev else "nothing in %.0f s" % PROMPT))
        c.send_frames([c.frame(CONT, b"fragment3", fin=False), c.frame(CONT, b"fragment4", fin=False),
                       c.frame(PING, b"pongme 2!")], mode)
        ev = c.next_event(PROMPT)
        if ev is None or ev.key() != pong(b"pongme 2!"):
            raise Failed("second pong not received while the message was incomplete (got %s)" % (
                ev.describe() if ev else "nothing in %.0f s" % PROMPT))
        c.send_frames([c.frame(CONT, b"fragment5")], mode)
        expect_ok(c, ctx, [msg(TEXT, b"fragment1fragment2fragment3fragment4fragment5")])
    return run


add("5.19", "Text in 5 fragments with 2 pings between; each pong must come before the message completes",
    pings_inside_fragments("one"))
add("5.20", "As 5.19, one write per frame", pings_inside_fragments("frame"))



def pings_between_big_fragments(c, ctx):
    data = binary_bytes(MIB)
    frames = frags(c, BINARY, data, 65536)
    out = []
    for i, f in enumerate(frames):
        out.append(f)
        out.append(c.frame(PING, b"ping %d" % i))
    c.send_frames(out)
    expect_ok(c, ctx, [pong(b"ping %d" % i) for i in range(len(frames) - 1)] + [msg(BINARY, data),
                                                                                pong(b"ping %d" % (len(frames) - 1))],
              timeout=10.0)


add("5.21", "1 MiB binary in 16 fragments with a ping after each: pongs in order, then the echo (ours)",
    pings_between_big_fragments, timeout=10.0)

# =============================================================== 6 UTF-8
add("6.1.1", "Send text message of length 0", echo_case(TEXT, b""))
add("6.1.2", "Send fragmented text message, 3 fragments each of length 0",
    frames_case(lambda c: [c.frame(TEXT, b"", fin=False), c.frame(CONT, b"", fin=False), c.frame(CONT, b"")],
                [msg(TEXT, b"")]))
add("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0",
    frames_case(lambda c: [c.frame(TEXT, b"", fin=False), c.frame(CONT, b"middle frame payload", fin=False),
                           c.frame(CONT, b"")], [msg(TEXT, b"middle frame payload")]))
VALID = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")
KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")


def split_at_codepoints(data):
    s = data.decode("utf-8")
    return [ch.encode("utf-8") for ch in s]


def fragments_case(parts, valid):
    def run(c, ctx):
        frames = [c.frame(TEXT if i == 0 else CONT, p, fin=(i == len(parts) - 1)) for i, p in enumerate(parts)]
        c.send_frames(frames)
        if valid:
            expect_ok(c, ctx, [msg(TEXT, b"".join(parts))])
        else:
            expect_fail(c, ctx, [], (1007,))
    return run


add("6.2.1", "Send valid UTF-8 text message in one fragment", echo_case(TEXT, VALID))
add("6.2.2", "Send valid UTF-8 text message in 2 fragments, split on a code point boundary",
    fragments_case([VALID[:12], VALID[12:]], True))
add("6.2.3", "Send valid UTF-8 text message, one octet per fragment",
    fragments_case([VALID[i:i + 1] for i in range(len(VALID))], True))
add("6.2.4", "Send valid UTF-8 text message (kosme), one octet per fragment",
    fragments_case([KOSME[i:i + 1] for i in range(len(KOSME))], True))
BAD = KOSME + bytes.fromhex("eda080") + b"edited"
add("6.3.1", "Send invalid UTF-8 text message unfragmented",
    frames_case(lambda c: [c.frame(TEXT, BAD)], [], fail=(1007,)))
add("6.3.2", "Send invalid UTF-8 text message, one octet per fragment",
    fragments_case([BAD[i:i + 1] for i in range(len(BAD))], False))


def fail_fast(parts, in_frames):
    """RFC 6455 8.1 + our design: invalid UTF-8 fails the connection as soon as no
    continuation could make it valid, before the rest of the message is sent."""
    def run(c, ctx):
        if in_frames:
            chunks = [c.frame(TEXT if i == 0 else CONT, p, fin=(i == len(parts) - 1)) for i, p in enumerate(parts)]
        else:
            whole = c.frame(TEXT, b"".join(parts))
            hdr = len(whole) - len(b"".join(parts))
            cut1, cut2 = hdr + len(parts[0]), hdr + len(parts[0]) + len(parts[1])
            chunks = [whole[:cut1], whole[cut1:cut2], whole[cut2:]]
        c.send(chunks[0])
        expect_quiet(c, 0.3)
        c.send(chunks[1])
        ev = c.next_event(PROMPT)
        if ev is None:
            c.send(chunks[2])
            events, close_ev, how = collect_until_close(c, CASE_TIMEOUT)
            late = "and not after the rest either" if close_ev is None else "only after the rest (close %s)" % close_ev.code
            raise Failed("not failed within %.0f s of the invalid part, %s" % (PROMPT, late))
        c.pending.insert(0, ev)
        expect_fail(c, ctx, [], (1007,))
    return run


P641 = (KOSME, bytes.fromhex("f4908080"), bytes.fromhex("656469746564"))
P642 = (KOSME + b"\xf4", b"\x90", bytes.fromhex("8080656469746564"))
add("6.4.1", "Invalid UTF-8 in 3 fragments (valid, invalid code point, valid): fail after the 2nd", fail_fast(P641, True))
add("6.4.2", "Invalid UTF-8 in 3 fragments, invalid at one octet: fail after the 2nd", fail_fast(P642, True))
add("6.4.3", "Invalid UTF-8 in one frame sent in 3 chops: fail after the 2nd chop", fail_fast(P641, False))
add("6.4.4", "Invalid UTF-8 in one frame sent in 3 chops, invalid at one octet: fail after the 2nd chop",
    fail_fast(P642, False))


def first_fragment_invalid(c, ctx):
    c.send(c.frame(TEXT, b"Hello\xff", fin=False))
    ev = c.next_event(PROMPT)
    if ev is None:
        c.send(c.frame(CONT, b"world"))
        raise Failed("a text message invalid in its first fragment was not failed before the next fragment")
    c.pending.insert(0, ev)
    expect_fail(c, ctx, [], (1007,))


add("6.4.5", "Text message invalid in its first fragment: fail before the next fragment is sent (ours)",
    first_fragment_invalid)


def truncated_at_end(c, ctx):
    # A final fragment that ends inside a code point is invalid (RFC 3629).
    c.send_frames([c.frame(TEXT, b"abc\xce", fin=False), c.frame(CONT, b"")])
    expect_fail(c, ctx, [], (1007,))


add("6.4.6", "Text message whose final fragment ends inside a code point (ours)", truncated_at_end)

# 6.5-6.23: single-frame text messages, valid ones echoed, invalid ones failed with 1007.
UTF8_GROUPS = [
    ("6.5", "valid UTF-8", [(True, VALID), (True, KOSME), (True, "∮ E⋅da = Q".encode()), (True, "𝄞 clef".encode()),
                            (True, b"\x00")]),
    ("6.6", "prefixes of kosme", [(p in (2, 5, 7, 9, 11), KOSME[:p]) for p in range(1, 12)]),
    ("6.7", "first code point of each length", [(True, bytes.fromhex(h)) for h in ("00", "c280", "e0a080", "f0908080")]),
    ("6.8", "first 5- and 6-byte sequences", [(False, bytes.fromhex(h)) for h in ("f888808080", "fc8480808080")]),
    ("6.9", "last code point of each length", [(True, bytes.fromhex(h)) for h in ("7f", "dfbf", "efbfbf", "f48fbfbf")]),
    ("6.10", "beyond the last code point", [(False, bytes.fromhex(h)) for h in ("f7bfbfbf", "fbbfbfbfbf", "fdbfbfbfbfbf")]),
    ("6.11", "other boundaries", [(True, bytes.fromhex("ed9fbf")), (True, bytes.fromhex("ee8080")),
                                  (True, bytes.fromhex("efbfbd")), (True, bytes.fromhex("f48fbfbf")),
                                  (False, bytes.fromhex("f4908080"))]),
    ("6.12", "unexpected continuation bytes", [(False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
                                               (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
                                               (False, b"\x80\xbf\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf\x80\xbf"),
                                               (False, bytes(range(0x80, 0xc0)))]),
    ("6.13", "lonely start bytes followed by a space", [
        (False, b"".join(bytes([b]) + b" " for b in range(0xc0, 0xe0))),
        (False, b"".join(bytes([b]) + b" " for b in range(0xe0, 0xf0))),
        (False, b"".join(bytes([b]) + b" " for b in range(0xf0, 0xf8))),
        (False, b"".join(bytes([b]) + b" " for b in range(0xf8, 0xfc))),
        (False, b"\xfc \xfd ")]),
    ("6.14", "sequences with the last continuation byte missing", [
        (False, bytes.fromhex(h)) for h in ("c0", "e080", "f08080", "f8808080", "fc80808080",
                                            "df", "efbf", "f7bfbf", "fbbfbfbf", "fdbfbfbfbf")]),
    ("6.15", "concatenation of incomplete sequences", [(False, bytes.fromhex(
        "c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf"))]),
    ("6.16", "impossible bytes", [(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]),
    ("6.17", "overlong ASCII slash", [(False, bytes.fromhex(h)) for h in ("c0af", "e080af", "f08080af", "f8808080af",
                                                                         "fc80808080af")]),
    ("6.18", "maximum overlong sequences", [(False, bytes.fromhex(h)) for h in ("c1bf", "e09fbf", "f08fbfbf",
                                                                               "f887bfbfbf", "fc83bfbfbfbf")]),
    ("6.19", "overlong NUL", [(False, bytes.fromhex(h)) for h in ("c080", "e08080", "f0808080", "f880808080",
                                                                 "fc8080808080")]),
    ("6.20", "single UTF-16 surrogates", [(False, bytes.fromhex(h)) for h in ("eda080", "edadbf", "edae80", "edafbf",
                                                                             "edb080", "edbe80", "edbfbf")]),
    ("6.21", "paired UTF-16 surrogates", [(False, bytes.fromhex(a + b)) for a in ("eda080", "edadbf", "edae80", "edafbf")
                                          for b in ("edb080", "edbfbf")]),
    ("6.22", "noncharacters (valid in UTF-8)", [(True, chr(c).encode("utf-8")) for c in (
        0xFFFE, 0xFFFF, 0x1FFFE, 0x1FFFF, 0x2FFFE, 0x2FFFF, 0x10FFFE, 0x10FFFF, 0xFDD0, 0xFDEF)]),
    ("6.23", "replacement character and neighbours", [(True, "\ufffd".encode()), (True, "\ufffc\ufffd\ufeff".encode()),
                                                      (True, "a\u0000b".encode())]),
]
for group, gdesc, vectors in UTF8_GROUPS:
    for i, (valid, data) in enumerate(vectors):
        d = "Text message, %s: %s (%s)" % (gdesc, data[:16].hex() + ("..." if len(data) > 16 else ""),
                                           "valid" if valid else "invalid")
        if valid:
            add("%s.%d" % (group, i + 1), d, echo_case(TEXT, data))
        else:
            add("%s.%d" % (group, i + 1), d,
                lambda c, ctx, data=data: (c.send_frames([c.frame(TEXT, data)]), expect_fail(c, ctx, [], (1007,))))

# 6.24 (ours): long non-ASCII text, where validators take their word-at-a-time or
# SIMD paths: valid in one frame and in fragments that split code points, and
# with one bad byte at positions around 16- and 4096-byte boundaries.
MIXED = ("aé€𝄞ßκόσμε中文😀" * 40000).encode("utf-8")[:1 << 20]
while True:
    try:
        MIXED.decode("utf-8")
        break
    except UnicodeDecodeError:
        MIXED = MIXED[:-1]
add("6.24.1", "1 MiB of mixed 1-4 byte UTF-8 in one frame (ours)", echo_case(TEXT, MIXED), timeout=10.0)
add("6.24.2", "1 MiB of mixed UTF-8 in 999-octet fragments, code points split (ours)",
    echo_case(TEXT, MIXED, frag=999), timeout=10.0)
for i, pos in enumerate((0, 15, 16, 17, 31, 4095, 4096, 65535, len(MIXED) // 2, len(MIXED) - 1)):
    bad = MIXED[:pos] + b"\xff" + MIXED[pos + 1:]
    add("6.24.%d" % (i + 3), "1 MiB of mixed UTF-8 with byte %d replaced by ff (ours)" % pos,
        frames_case(lambda c, bad=bad: [c.frame(TEXT, bad)], [], fail=(1007,)), timeout=10.0)
for i, pos in enumerate((4096, len(MIXED) // 2)):
    bad = MIXED[:pos] + b"\xed\xa0\x80" + MIXED[pos + 3:]
    add("6.24.%d" % (i + 13), "1 MiB of mixed UTF-8 with a surrogate at %d, in 4 KiB fragments (ours)" % pos,
        frames_case(lambda c, bad=bad: frags(c, TEXT, bad, 4096), [], fail=(1007,)), timeout=10.0)

# =============================================================== 7 close handling
add("7.1.1", "Send a message, then close: echo, then close reply",
    frames_case(lambda c: [c.frame(TEXT, b"Hello World!")], [msg(TEXT, b"Hello World!")]))


def close_then(extra_builder, expected=()):
    """We close, then send more: RFC 6455 5.5.1: after a close frame the peer
    ignores everything (no echo, no pong) and only replies to the close."""
    def run(c, ctx):
        c.send_frames([c.close_frame(1000)] + extra_builder(c))
        expect_ok(c, ctx, list(expected), send_close=False)
    return run


add("7.1.2", "Send close twice: one close reply, nothing else", close_then(lambda c: [c.close_frame(1000)]))
add("7.1.3", "Send close, then ping: no pong", close_then(lambda c: [c.frame(PING, HELLO)]))
add("7.1.4", "Send close, then text: no echo", close_then(lambda c: [c.frame(TEXT, HELLO)]))


def close_mid_message(c, ctx):
    c.send_frames([c.frame(TEXT, b"fragment1", fin=False), c.close_frame(1000), c.frame(CONT, b"fragment2")])
    expect_ok(c, ctx, [], send_close=False)


add("7.1.5", "Send first fragment, close, then last fragment: no echo", close_mid_message)
BIG = text_bytes(256 * 1024)


def big_then_close(c, ctx):
    c.send_frames([c.frame(TEXT, BIG), c.close_frame(1000), c.frame(PING, HELLO)])
    try:
        expect_ok(c, ctx, [msg(TEXT, BIG)], send_close=False)
    except Failed as e:
        # RFC 6455 leaves it to the implementation whether a message still being
        # echoed when the close arrives goes out (Autobahn: informational).
        if "missing text" in str(e):
            raise NonStrict("message not echoed before the close reply: " + str(e))
        raise


add("7.1.6", "Send 256 KiB text, close, then ping: echo (else NON-STRICT), close reply, no pong", big_then_close)


def huge_then_close(c, ctx):
    # The close arrives while a 16 MiB echo is still being written: the echo must
    # not be cut (no data frame may follow the close reply, RFC 6455 5.5.1).
    data = binary_bytes(16 * MIB)
    c.send_frames([c.frame(BINARY, data), c.close_frame(1000)])
    try:
        expect_ok(c, ctx, [msg(BINARY, data)], send_close=False, timeout=20.0)
    except Failed as e:
        if "missing binary" in str(e):
            raise NonStrict("message not echoed before the close reply: " + str(e))
        raise


add("7.1.7", "Send 16 MiB binary and a close in one write: whole echo (else NON-STRICT), then the close reply (ours)",
    huge_then_close, timeout=20.0)
add("7.3.1", "Send close with no payload", lambda c, ctx: expect_ok(c, ctx, [], code=None))
# RFC 6455 5.5.1: a close body, if any, starts with a 2-byte code.
add("7.3.2", "Send close with a payload of 1 octet",
    frames_case(lambda c: [c.frame(CLOSE, b"\x03")], [], fail=(1002,)))
add("7.3.3", "Send close with code 1000 and no reason", lambda c, ctx: expect_ok(c, ctx, [], code=1000))
add("7.3.4", "Send close with code 1000 and a reason", lambda c, ctx: expect_ok(c, ctx, [], code=1000, reason=b"Hello World!"))
add("7.3.5", "Send close with code 1000 and a reason of 123 octets",
    lambda c, ctx: expect_ok(c, ctx, [], code=1000, reason=b"*" * 123))
add("7.3.6", "Send close with code 1000 and a reason of 124 octets (frame of 126)",
    frames_case(lambda c: [c.close_frame(1000, b"*" * 124)], [], fail=(1002,)))
# RFC 6455 5.5.1, 8.1: a close reason is UTF-8.
add("7.5.1", "Send close with a reason that is invalid UTF-8",
    frames_case(lambda c: [c.close_frame(1000, KOSME + bytes.fromhex("eda080") + b"edited")], [], fail=(1007,)))
# RFC 6455 7.4.1/7.4.2: codes a peer may send; 1012-1014 are registered with IANA since.
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014]
for i, code in enumerate(VALID_CODES):
    add("7.7.%d" % (i + 1), "Send close with valid code %d" % code,
        lambda c, ctx, code=code: expect_ok(c, ctx, [], code=code, reason=b"reason"))
# RFC 6455 7.4.1, 7.4.2: 0-999 unused, 1004-1006/1015 never on the wire, 1016-2999 reserved.
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
for i, code in enumerate(INVALID_CODES):
    add("7.9.%d" % (i + 1), "Send close with invalid code %d" % code,
        frames_case(lambda c, code=code: [c.close_frame(code)], [], fail=(1002,)))
for i, code in enumerate((5000, 65535)):
    add("7.13.%d" % (i + 1), "Send close with invalid code %d (above 4999)" % code,
        frames_case(lambda c, code=code: [c.close_frame(code)], [], fail=(1002,)))

# =============================================================== 9 limits/performance (scaled down)
MIB = 1 << 20
for sec, op, gen in ((1, TEXT, text_bytes), (2, BINARY, binary_bytes)):
    kind = "text" if op == TEXT else "binary"
    for i, n in enumerate((64 * 1024, 256 * 1024, MIB, 4 * MIB, 8 * MIB, 16 * MIB)):
        add("9.%d.%d" % (sec, i + 1), "Send %s message of %d KiB in one frame" % (kind, n // 1024),
            echo_case(op, gen(n)), timeout=20.0)
for sec, op, gen in ((3, TEXT, text_bytes), (4, BINARY, binary_bytes)):
    kind = "text" if op == TEXT else "binary"
    for i, f in enumerate((64, 256, 1024, 4096, 16384, 65536, 256 * 1024, MIB, 4 * MIB)):
        add("9.%d.%d" % (sec, i + 1), "Send fragmented %s message of 4 MiB in fragments of %d octets" % (kind, f),
            echo_case(op, gen(4 * MIB), frag=f), timeout=20.0)
    add("9.%d.10" % sec, "Send fragmented %s message of 16 MiB in fragments of 64 KiB (ours)" % kind,
        echo_case(op, gen(16 * MIB), frag=65536), timeout=20.0)
for sec, op, gen in ((5, TEXT, text_bytes), (6, BINARY, binary_bytes)):
    kind = "text" if op == TEXT else "binary"
    for i, ch in enumerate((64, 128, 256, 512, 1024, 2048)):
        add("9.%d.%d" % (sec, i + 1), "Send %s message of 1 MiB in TCP chops of %d octets" % (kind, ch),
            echo_case(op, gen(MIB), chop=ch), timeout=20.0)


def round_trips(op, size, count=1000):
    def run(c, ctx):
        payload = (text_bytes if op == TEXT else binary_bytes)(size)
        for i in range(count):
            c.send(c.frame(op, payload))
            ev = c.next_event(CASE_TIMEOUT)
            if ev is None or ev.key() != msg(op, payload):
                raise Failed("round trip %d: got %s" % (i, ev.describe() if ev else "nothing"))
        expect_ok(c, ctx, [])
    return run


for sec, op in ((7, TEXT), (8, BINARY)):
    for i, n in enumerate((0, 16, 64, 256, 1024, 4096)):
        add("9.%d.%d" % (sec, i + 1), "Send 1000 %s messages of %d octets one after another, each echoed" % (
            "text" if op == TEXT else "binary", n), round_trips(op, n), timeout=20.0)

# 9.9 (ours): the message size limit (--max-message-size 65536), RFC 6455 7.4.1 code 1009.
add("9.9.1", "Limit 64 KiB: text message of exactly 65536 octets is echoed",
    echo_case(TEXT, text_bytes(LIMIT)), profile="limit")
add("9.9.2", "Limit 64 KiB: text message of 65537 octets in one frame fails with 1009",
    frames_case(lambda c: [c.frame(TEXT, text_bytes(LIMIT + 1))], [], fail=(1009,)), profile="limit")


add("9.9.3", "Limit 64 KiB: binary message of 65536 octets in 1 KiB fragments is echoed",
    frames_case(lambda c: frags(c, BINARY, binary_bytes(LIMIT), 1024), [msg(BINARY, binary_bytes(LIMIT))]),
    profile="limit")
add("9.9.4", "Limit 64 KiB: binary message of 65537 octets in 1 KiB fragments fails with 1009",
    frames_case(lambda c: frags(c, BINARY, binary_bytes(LIMIT + 1), 1024), [], fail=(1009,)), profile="limit")


def header_only_too_big(c, ctx):
    # The length in the header alone is enough to fail; no payload is ever sent.
    c.send(c.frame(BINARY, b"", length=1 << 40)[:14])
    expect_fail(c, ctx, [], (1009,), timeout=2.0)


add("9.9.5", "Limit 64 KiB: a frame header declaring 1 TiB fails with 1009 before any payload", header_only_too_big,
    profile="limit")
add("9.9.6", "Limit 64 KiB: a valid message, then one too big: echo, then 1009",
    frames_case(lambda c: [c.frame(TEXT, HELLO), c.frame(BINARY, binary_bytes(LIMIT + 100))],
                [msg(TEXT, HELLO)], fail=(1009,)), profile="limit")

# =============================================================== 10 misc
add("10.1.1", "Send text message of 65536 octets in fragments of 1300 octets",
    echo_case(TEXT, text_bytes(65536), frag=1300))


def split_everywhere(build_one, positions=None):
    """For each split point k, send the bytes as two TCP segments [0,k) and [k,n):
    the peer must see the same message whatever the split (a parser that is wrong
    at one offset of a split header is caught here)."""
    def run(c, ctx):
        sample = build_one(c)
        n = len(b"".join(sample[0]))
        points = positions(n) if positions else range(1, n)
        for k in points:
            frames, exp = build_one(c)
            data = b"".join(frames)
            c.send(data[:k])
            time.sleep(0.001)
            c.send(data[k:])
            events, close_ev, how = collect_n(c, len(exp), CASE_TIMEOUT)
            try:
                compare(events, exp)
            except Failed as e:
                raise Failed("split at byte %d of %d: %s" % (k, len(data), e))
        expect_ok(c, ctx, [])
    return run


add("10.2.1", "Text frame with a 7-bit length, split into 2 TCP segments at every byte (ours)",
    split_everywhere(lambda c: ([c.frame(TEXT, b"split me anywhere")], [msg(TEXT, b"split me anywhere")])), timeout=20.0)
add("10.2.2", "Binary frame with a 16-bit length, split at every byte (ours)",
    split_everywhere(lambda c: ([c.frame(BINARY, binary_bytes(300))], [msg(BINARY, binary_bytes(300))])), timeout=20.0)
add("10.2.3", "Binary frame with a 64-bit length, split at every header byte and around the payload edges (ours)",
    split_everywhere(lambda c: ([c.frame(BINARY, binary_bytes(70000))], [msg(BINARY, binary_bytes(70000))]),
                     positions=lambda n: list(range(1, 20)) + list(range(n - 4, n))), timeout=20.0)
add("10.2.4", "Fragmented text with a ping in between, split at every byte (ours)",
    split_everywhere(lambda c: ([c.frame(TEXT, KOSME[:4], fin=False), c.frame(PING, b"p"),
                                 c.frame(CONT, KOSME[4:])], [pong(b"p"), msg(TEXT, KOSME)])), timeout=20.0)


def close_split(c, ctx):
    c.send_frames([c.close_frame(4321, b"bye, one octet at a time")], mode="octet", pause=0.002)
    expect_ok(c, ctx, [], code=4321, reason=b"bye, one octet at a time", send_close=False)


add("10.2.5", "Close frame with code and reason, one octet per TCP segment (ours)", close_split)


# RFC 6455 5.1: a server MUST close the connection on an unmasked client frame,
# a client on a masked server frame.
add("10.3.1", "Client sends an unmasked text frame (ours)",
    frames_case(lambda c: [c.frame(TEXT, HELLO, masked=False)], [], fail=(1002,)), roles=("server",))
add("10.3.2", "Valid message, then an unmasked one: echo, then 1002 (ours)",
    frames_case(lambda c: [c.frame(TEXT, HELLO), c.frame(TEXT, HELLO, masked=False)], [msg(TEXT, HELLO)],
                fail=(1002,)), roles=("server",))
add("10.3.3", "Server sends a masked text frame (ours)",
    frames_case(lambda c: [c.frame(TEXT, HELLO, masked=True)], [], fail=(1002,)), roles=("client",))
add("10.3.4", "Valid message, then a masked one: echo, then 1002 (ours)",
    frames_case(lambda c: [c.frame(TEXT, HELLO), c.frame(TEXT, HELLO, masked=True)], [msg(TEXT, HELLO)],
                fail=(1002,)), roles=("client",))


def fresh_masks(c, ctx):
    # RFC 6455 5.3: a new, unpredictable masking key for every frame.
    c.send_frames([c.frame(BINARY, b"mask me %d" % i) for i in range(20)])
    expect_ok(c, ctx, [msg(BINARY, b"mask me %d" % i) for i in range(20)])
    keys = set(c.masks)
    if len(keys) < len(c.masks) // 2:
        raise Failed("only %d distinct masking keys in %d client frames" % (len(keys), len(c.masks)))


add("10.3.5", "Client masks every frame with a fresh key (ours)", fresh_masks, roles=("client",))
add("10.4.1", "1000 small messages in one write, echoed in order (ours)",
    frames_case(lambda c: [c.frame(TEXT if i % 2 else BINARY, b"m%d" % i) for i in range(1000)],
                [msg(TEXT if i % 2 else BINARY, b"m%d" % i) for i in range(1000)]))


def burst_with_pings(c, ctx):
    # Pongs are protocol replies and echoes application replies: each stream keeps
    # its order (RFC 6455 5.4), their interleaving is free.
    c.send_frames([f for i in range(50) for f in (c.frame(TEXT, b"t%d" % i), c.frame(PING, b"p%d" % i))])
    events, close_ev, how = collect_n(c, 100, CASE_TIMEOUT)
    if close_ev is not None or how != "count":
        raise Failed("got %d of 100 replies (%s)" % (len(events), how))
    msgs = [e.key() for e in events if e.kind == "message"]
    pongs = [e.key() for e in events if e.kind == "pong"]
    compare([e for e in events if e.kind == "message"], [msg(TEXT, b"t%d" % i) for i in range(50)])
    compare([e for e in events if e.kind == "pong"], [pong(b"p%d" % i) for i in range(50)])
    assert len(msgs) + len(pongs) == 100
    expect_ok(c, ctx, [])


add("10.4.2", "Burst of 50 messages with 50 pings mixed in: echoes and pongs each in order (ours)", burst_with_pings)

# 10.5 (ours): the client must fail a bad opening handshake answer (RFC 6455 4.1,
# 4.2.2): no frames, TCP closed, non-zero exit.
import base64 as _b64  # noqa: E402
import hashlib as _hashlib  # noqa: E402

import wire as _wire  # noqa: E402


def bad_answer(make_response):
    def run(sock, ctx):
        deadline = time.monotonic() + CASE_TIMEOUT
        head, _ = _wire.read_http_head(sock, deadline)
        headers = _wire.parse_headers(head.split("\r\n")[1:])
        key = headers.get("sec-websocket-key", [""])[0]
        sock.sendall(make_response(_wire.accept_for(key)).encode("latin-1"))
        ctx.outcome = "failed"
        got = b""
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            r, _, _ = _wire.select.select([sock], [], [], end - time.monotonic())
            if not r:
                break
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                if got:
                    raise NonStrict("client sent %d bytes (%s) before closing a connection it should "
                                    "have failed in the handshake" % (len(got), got[:16].hex()))
                return
            got += data
        raise Failed("client kept the connection open after a bad handshake answer (%d bytes sent)" % len(got))
    return run


def response(accept, status="101 Switching Protocols", upgrade="websocket", extra=""):
    r = "HTTP/1.1 %s\r\n" % status
    if upgrade:
        r += "Upgrade: %s\r\n" % upgrade
    return r + "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n" % (accept, extra)


BAD_ANSWERS = [
    ("wrong Sec-WebSocket-Accept", lambda a: response(_b64.b64encode(_hashlib.sha1(b"x").digest()).decode())),
    ("101 without Upgrade: websocket", lambda a: response(a, upgrade="")),
    ("an extension the client did not offer", lambda a: response(a, extra="Sec-WebSocket-Extensions: x-unknown\r\n")),
    ("a subprotocol the client did not offer", lambda a: response(a, extra="Sec-WebSocket-Protocol: chat\r\n")),
    ("200 OK instead of 101", lambda a: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
]
for i, (what, mk) in enumerate(BAD_ANSWERS):
    add("10.5.%d" % (i + 1), "Opening handshake answer with %s: the client fails it (ours)" % what, bad_answer(mk),
        roles=("client",), raw=True)


def response_and_frame(sock, ctx):
    # The 101 and the first frame in one TCP segment: the bytes after the head are frames.
    deadline = time.monotonic() + CASE_TIMEOUT
    head, rest = _wire.read_http_head(sock, deadline)
    headers = _wire.parse_headers(head.split("\r\n")[1:])
    c = _wire.Conn(sock, False, rest)
    sock.sendall(response(_wire.accept_for(headers["sec-websocket-key"][0])).encode() + c.frame(TEXT, HELLO))
    expect_ok(c, ctx, [msg(TEXT, HELLO)])


add("10.5.6", "The 101 answer and a first frame in one TCP segment (ours)", response_and_frame, roles=("client",),
    raw=True)


# 10.6 (ours): the server refuses bad opening handshakes with an HTTP error (RFC 6455 4.2.1, 4.2.2, 4.4).
def request(key="dGhlIHNhbXBsZSBub25jZQ==", method="GET", version="HTTP/1.1", upgrade="websocket", ws_version="13",
            drop=()):
    lines = ["%s / %s" % (method, version), "Host: 127.0.0.1"]
    fields = [("Upgrade", upgrade), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
              ("Sec-WebSocket-Version", ws_version)]
    lines += ["%s: %s" % (k, v) for k, v in fields if k not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refused(req, statuses, want_header=None):
    def run(_, ctx):
        sock = _wire.socket.create_connection((ctx.host, ctx.port), timeout=CASE_TIMEOUT)
        try:
            sock.sendall(req)
            head, _ = _wire.read_http_head(sock, time.monotonic() + CASE_TIMEOUT)
        finally:
            sock.close()
        status_line = head.split("\r\n")[0]
        parts = status_line.split(" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status == 101:
            raise Failed("server accepted: %r" % status_line)
        if not 400 <= status <= 599:
            raise Failed("expected an HTTP error, got %r" % status_line)
        if status not in statuses:
            raise NonStrict("status %d, expected %s" % (status, "/".join(map(str, statuses))))
        if want_header:
            name, value = want_header
            got = _wire.parse_headers(head.split("\r\n")[1:]).get(name.lower(), [])
            if not any(value in v for v in got):
                raise Failed("answer lacks %s: %s (RFC 6455 4.4)" % (name, value))
    return run


REFUSALS = [
    ("Sec-WebSocket-Version: 12", request(ws_version="12"), (426,), ("Sec-WebSocket-Version", "13")),
    ("no Sec-WebSocket-Key", request(drop=("Sec-WebSocket-Key",)), (400,), None),
    ("a key of 15 bytes", request(key=_b64.b64encode(b"x" * 15).decode()), (400,), None),
    ("POST instead of GET", request(method="POST"), (400, 405), None),
    ("no Upgrade header", request(drop=("Upgrade",)), (400, 426), None),
    ("HTTP/1.0", request(version="HTTP/1.0"), (400, 505), None),
]
for i, (what, req, statuses, hdr) in enumerate(REFUSALS):
    add("10.6.%d" % (i + 1), "Opening handshake with %s: refused with HTTP %s (ours)" % (
        what, "/".join(map(str, statuses))), refused(req, statuses, hdr), roles=("server",), raw=True)


def request_and_frame(_, ctx):
    # The request and a first frame in one TCP segment: the server must keep the frame.
    sock = _wire.socket.create_connection((ctx.host, ctx.port), timeout=CASE_TIMEOUT)
    sock.settimeout(None)
    key = _b64.b64encode(b"0123456789abcdef").decode()
    frame = _wire.build_frame(TEXT, HELLO, mask=b"\x01\x02\x03\x04")
    sock.sendall(request(key=key) + frame)
    head, rest = _wire.read_http_head(sock, time.monotonic() + CASE_TIMEOUT)
    if not head.startswith("HTTP/1.1 101"):
        sock.close()
        raise Failed("handshake refused: %r" % head.split("\r\n")[0])
    c = _wire.Conn(sock, True, rest)
    try:
        expect_ok(c, ctx, [msg(TEXT, HELLO)])
    finally:
        c.close_tcp()


add("10.6.7", "The request and a first frame in one TCP segment (ours)", request_and_frame, roles=("server",),
    raw=True)

# =============================================================== 12/13 compression (RFC 7692)
import os as _os  # noqa: E402
import random as _random  # noqa: E402
import zlib as _zlib  # noqa: E402


class DeflateSpec:
    """offer: our Sec-WebSocket-Extensions offer when we are the client.
    answer(params_offered) -> our answer when we are the server (None: decline).
    check(params_answered, offered): raise Failed if a server's answer breaks RFC 7692 7.1."""

    def __init__(self, offer, answer):
        self.offer, self.answer = offer, answer


def server_answer_ok(offers, answer):
    """RFC 7692 7.1: the answer must accept one of our offers as offered."""
    problems = []
    for k, v in answer.items():
        if k not in ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
                     "client_max_window_bits"):
            problems.append("unknown parameter %s" % k)
    for offer in offers:
        bad = []
        # 7.1.1.1: an offered server_no_context_takeover must be in the answer.
        if "server_no_context_takeover" in offer and "server_no_context_takeover" not in answer:
            bad.append("server_no_context_takeover offered but not answered")
        # 7.1.2.1: an offered server_max_window_bits is answered with a value not above it.
        if "server_max_window_bits" in offer:
            v = answer.get("server_max_window_bits")
            if v is None or int(v) > int(offer["server_max_window_bits"]):
                bad.append("server_max_window_bits %s for an offer of %s" % (v, offer["server_max_window_bits"]))
        # 7.1.2.2: client_max_window_bits only when offered, not above the offered value.
        if "client_max_window_bits" in answer:
            if "client_max_window_bits" not in offer:
                bad.append("client_max_window_bits answered but not offered")
            elif offer["client_max_window_bits"] and int(answer["client_max_window_bits"]) > int(
                    offer["client_max_window_bits"]):
                bad.append("client_max_window_bits above the offer")
        for k in ("server_max_window_bits", "client_max_window_bits"):
            v = answer.get(k)
            if v is not None and (not v.isdigit() or not 8 <= int(v) <= 15 or v.startswith("0")):
                bad.append("%s=%r out of range" % (k, v))
        if not bad:
            return
        problems.extend(bad)
    raise Failed("permessage-deflate answer %r does not fit our offers: %s" % (answer, "; ".join(problems)))


def answer_with(**params):
    """Answer a client's first permessage-deflate offer with `params`; a
    client_max_window_bits value is sent only if the client offered it."""
    def answer(offered):
        parts = ["permessage-deflate"]
        for k, v in params.items():
            if k == "client_max_window_bits" and k not in offered:
                continue
            parts.append(k if v is True else "%s=%d" % (k, v))
        return "; ".join(parts)
    return answer


def json_like(n, seed):
    rnd = _random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"value", b"name", b"id", b"true", b"false", b"null"]
    out = bytearray()
    while len(out) < n:
        out += b'{"%s": %d, "%s": "%s"}, ' % (rnd.choice(words), rnd.randint(0, 99999), rnd.choice(words),
                                             rnd.choice(words))
    return bytes(out[:n])


def random_bytes(n, seed):
    return _random.Random(seed).randbytes(n)


def compressed_echo(gen, op, size, count=20, frag=None, mixed=False):
    """Send `count` messages of `size` bytes under permessage-deflate (compressed,
    or alternately plain with mixed=True), expect each echoed (the peer may
    compress its echo or not; its compressed data must inflate with the
    negotiated parameters)."""
    def run(c, ctx):
        for i in range(count):
            payload = gen(size, i)
            compress = c.extensions.can_compress() and not (mixed and i % 2)
            c.send_frames(c.compressed_frames(op, payload, frag=frag, compress=compress))
            ev = c.next_event(CASE_TIMEOUT)
            if ev is None or ev.key() != msg(op, payload):
                raise Failed("message %d of %d bytes: got %s" % (i, size, ev.describe() if ev else "nothing"))
        expect_ok(c, ctx, [])
    return run


DEFAULT_DEFLATE = DeflateSpec("permessage-deflate; client_max_window_bits", answer_with())
SIZES_12 = (16, 64, 256, 1024, 4096, 16384, 65536, 131072)
for sub, (gen, op, frag, mixed, what) in enumerate((
        (json_like, TEXT, None, False, "compressible text"),
        (random_bytes, BINARY, None, False, "incompressible binary"),
        (json_like, TEXT, 256, False, "compressible text, compressed data in 256-octet fragments"),
        (random_bytes, BINARY, 1000, False, "incompressible binary in 1000-octet fragments"),
        (json_like, BINARY, None, True, "binary, alternately compressed and plain (RSV1 clear)"))):
    for i, size in enumerate(SIZES_12):
        add("12.%d.%d" % (sub + 1, i + 1), "permessage-deflate: 20 messages of %d octets, %s" % (size, what),
            compressed_echo(gen, op, size, frag=frag, mixed=mixed), deflate=DEFAULT_DEFLATE, timeout=10.0)

# 13: parameter combinations (our offer as a client; our answer as a server).
PARAMS_13 = [
    ("default parameters", "permessage-deflate", answer_with()),
    ("client_no_context_takeover", "permessage-deflate; client_no_context_takeover",
     answer_with(client_no_context_takeover=True)),
    ("server_max_window_bits=8 / client_max_window_bits=9", "permessage-deflate; server_max_window_bits=8",
     answer_with(client_max_window_bits=9)),
    ("server_max_window_bits=15 / client_max_window_bits=15", "permessage-deflate; server_max_window_bits=15",
     answer_with(client_max_window_bits=15)),
    ("server_no_context_takeover; server_max_window_bits=9",
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
     answer_with(server_no_context_takeover=True, server_max_window_bits=9)),
    ("both no_context_takeover, window bits 9", "permessage-deflate; server_no_context_takeover; "
     "client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
     answer_with(server_no_context_takeover=True, client_no_context_takeover=True, client_max_window_bits=9)),
    ("several offers, first unacceptable-looking", "permessage-deflate; server_max_window_bits=8; "
     "server_no_context_takeover, permessage-deflate; client_no_context_takeover, permessage-deflate",
     answer_with(client_no_context_takeover=True, server_max_window_bits=10)),
]
for sub, (what, offer, answer) in enumerate(PARAMS_13):
    spec = DeflateSpec(offer, answer)
    for i, size in enumerate((16, 1024, 65536)):
        for j, (gen, op) in enumerate(((json_like, TEXT), (random_bytes, BINARY))):
            add("13.%d.%d" % (sub + 1, i * 2 + j + 1), "permessage-deflate %s: 20 %s messages of %d octets" % (
                what, "text" if op == TEXT else "binary", size), compressed_echo(gen, op, size), deflate=spec,
                timeout=10.0)


# 12.6 (ours): compression rules RFC 7692 puts on the receiver.
def rsv1_on_continuation(c, ctx):
    # RFC 7692 6.1: RSV1 is set on the first frame of a message only.
    data = c.extensions.deflate(json_like(200, 1))
    c.send_frames([c.frame(TEXT, data[:50], fin=False, rsv=4), c.frame(CONT, data[50:], rsv=4)])
    expect_fail(c, ctx, [], (1002,))


def rsv1_on_control(c, ctx):
    # RFC 7692 6.1: control frames never carry RSV1.
    c.send_frames([c.frame(PING, HELLO, rsv=4)])
    expect_fail(c, ctx, [], (1002,))


def corrupt_deflate(c, ctx):
    # A message whose data is not DEFLATE fails the connection (1007, as duplex's design says).
    c.send_frames([c.frame(BINARY, b"\xff\xff\xff\xff garbage", rsv=4)])
    expect_fail(c, ctx, [], (1007, 1002))


def empty_compressed(c, ctx):
    # RFC 7692 7.2.3.6: an empty message compresses to a single 00 byte; an
    # empty RSV1 payload is what zlib senders produce after a previous message.
    c.send_frames([c.frame(TEXT, b"\x00", rsv=4), c.frame(BINARY, b"", rsv=4)])
    events, close_ev, how = collect_n(c, 2, CASE_TIMEOUT)
    compare(events, [msg(TEXT, b""), msg(BINARY, b"")])
    expect_ok(c, ctx, [])


def bomb(c, ctx):
    # The limit bounds the inflated size (RFC 6455 7.4.1 code 1009): 1 MiB of zeros
    # compresses to about 1 KiB.
    data = _zlib.compressobj(9, _zlib.DEFLATED, -15)
    comp = data.compress(bytes(MIB)) + data.flush(_zlib.Z_SYNC_FLUSH)
    c.send_frames([c.frame(BINARY, comp[:-4], rsv=4)])
    expect_fail(c, ctx, [], (1009,))


def text_invalid_after_inflate(c, ctx):
    # UTF-8 is checked on the inflated text (RFC 7692 6, RFC 6455 8.1).
    c.send_frames(c.compressed_frames(TEXT, b"valid start \xce\xba then \xff invalid"))
    expect_fail(c, ctx, [], (1007,))


for i, (fn, desc, prof) in enumerate((
        (rsv1_on_continuation, "RSV1 on a continuation frame fails with 1002", "default"),
        (rsv1_on_control, "RSV1 on a ping fails with 1002", "default"),
        (corrupt_deflate, "data that does not inflate fails the connection (1007)", "default"),
        (empty_compressed, "empty compressed messages (00 and empty payload) are empty messages", "default"),
        (text_invalid_after_inflate, "compressed text that inflates to invalid UTF-8 fails with 1007", "default"),
        (bomb, "limit 64 KiB: 1 KiB that inflates to 1 MiB fails with 1009", "limit"))):
    add("12.6.%d" % (i + 1), "permessage-deflate (ours): " + desc, fn, deflate=DEFAULT_DEFLATE, profile=prof)

CASES.sort(key=Case.sort_key)
_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), "duplicate case ids"
