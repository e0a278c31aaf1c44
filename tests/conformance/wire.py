"""Raw RFC 6455 wire helpers for the conformance gate.

Frames are written by hand (so a case can send anything, malformed included)
and the peer's frames are parsed strictly: every rule RFC 6455 puts on the
sender is checked on what duplex sends back. Standard library only.
"""

import base64
import hashlib
import os
import select
import socket
import struct
import time

# RFC 6455 5.2 opcodes.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPNAMES = {CONT: "cont", TEXT: "text", BINARY: "binary", CLOSE: "close", PING: "ping", PONG: "pong"}

# RFC 6455 1.3: the GUID appended to the key for Sec-WebSocket-Accept.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def apply_mask(data, key):
    """XOR data with the 4-byte key repeated (RFC 6455 5.3), a big integer at a time."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=None, length=None):
    """One frame's bytes. mask: None (unmasked) or 4 bytes. length overrides the
    declared payload length (to send a header that lies)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        return hdr + mask + apply_mask(payload, mask)
    return hdr + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "mask", "payload", "t")

    def __init__(self, fin, rsv, opcode, masked, mask, payload, t):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.mask, self.payload, self.t = masked, mask, payload, t

    def describe(self):
        p = self.payload
        shown = p[:40].hex() + ("..." if len(p) > 40 else "")
        return "%s fin=%d rsv=%d masked=%d len=%d %s" % (
            OPNAMES.get(self.opcode, "op%d" % self.opcode), self.fin, self.rsv, self.masked, len(p), shown)


class PeerViolation(Exception):
    """The peer (duplex) sent something RFC 6455 forbids it to send."""


class Event:
    """What the peer did, at message level: message / ping / pong / close / eof."""
    __slots__ = ("kind", "opcode", "payload", "code", "reason", "t", "frames")

    def __init__(self, kind, opcode=None, payload=b"", code=None, reason=b"", t=0.0, frames=1):
        self.kind, self.opcode, self.payload = kind, opcode, payload
        self.code, self.reason, self.t, self.frames = code, reason, t, frames

    def key(self):
        if self.kind == "message":
            return ("message", self.opcode, self.payload)
        if self.kind in ("ping", "pong"):
            return (self.kind, self.payload)
        if self.kind == "close":
            return ("close", self.code)
        return (self.kind,)

    def describe(self):
        if self.kind == "message":
            p = self.payload
            return "%s message len=%d%s %s" % (OPNAMES[self.opcode], len(p),
                                              " (%d frames)" % self.frames if self.frames > 1 else "",
                                              p[:32].hex() + ("..." if len(p) > 32 else ""))
        if self.kind in ("ping", "pong"):
            return "%s %s" % (self.kind, self.payload[:32].hex())
        if self.kind == "close":
            return "close code=%s reason=%r" % (self.code, self.reason[:40])
        return self.kind


class Conn:
    """One WebSocket connection seen from the fuzzer's side.

    we_are_client: the fuzzer is the client (testing duplex's server): our frames
    are masked and the peer's must not be; the reverse otherwise."""

    def __init__(self, sock, we_are_client, leftover=b"", log=None, extensions=None):
        self.sock = sock
        self.we_are_client = we_are_client
        self.buf = bytearray(leftover)
        self.t0 = time.monotonic()
        self.log = log if log is not None else []
        self.send_error = None
        self.close_sent = False
        self.close_received = None
        self.eof = False
        self.rsv_allowed = 0  # RSV bits the negotiated extensions let the peer set
        self.extensions = extensions
        self.masks = []
        self._frag_op = None
        self._frag_parts = []
        self._frag_count = 0
        self.pending = []  # events read but not yet consumed
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---------------------------------------------------------------- sending
    def now(self):
        return time.monotonic() - self.t0

    def frame(self, opcode, payload=b"", fin=True, rsv=0, masked=None, length=None):
        """Frame bytes in our role: masked with a fresh random key as a client must
        (RFC 6455 5.3), unmasked as a server must (5.1), unless masked overrides."""
        if masked is None:
            masked = self.we_are_client
        mask = os.urandom(4) if masked else None
        return build_frame(opcode, payload, fin, rsv, mask, length)

    def compressed_frames(self, opcode, payload, frag=None, compress=True):
        """One message under permessage-deflate: compressed with RSV1 on its first
        frame (RFC 7692 6.1), optionally split into fragments of `frag` bytes of
        compressed data; compress=False sends it plain (RSV1 clear)."""
        data = self.extensions.deflate(payload) if compress else payload
        rsv1 = 4 if compress else 0
        if not frag:
            return [self.frame(opcode, data, rsv=rsv1)]
        offs = list(range(0, len(data), frag)) or [0]
        return [self.frame(opcode if i == 0 else CONT, data[o:o + frag], fin=(i == len(offs) - 1),
                           rsv=rsv1 if i == 0 else 0) for i, o in enumerate(offs)]

    def close_frame(self, code=None, reason=b"", **kw):
        return self.frame(CLOSE, close_payload(code, reason), **kw)

    def send(self, data, chop=None, pause=0.0):
        """Send bytes; chop=N sends N-byte pieces, each its own send() with a pause,
        so the peer sees frames split across TCP segments. A send that fails (the
        peer already closed) is remembered, not raised: the case judges what the
        peer did."""
        if self.send_error is not None:
            return False
        try:
            if not chop:
                self._send_reading(data)
            else:
                for i in range(0, len(data), chop):
                    self.sock.sendall(data[i:i + chop])
                    if pause:
                        time.sleep(pause)
            self.log.append("%.3f >> %d bytes%s" % (self.now(), len(data), " in chops of %d" % chop if chop else ""))
            return True
        except OSError as e:
            self.send_error = e
            self.log.append("%.3f >> send failed: %s" % (self.now(), e))
            return False

    def _send_reading(self, data, stall=30.0):
        """sendall that keeps reading meanwhile: a peer applying backpressure
        stops reading while its own output to us waits, so a large send that
        read nothing would deadlock against it. What arrives is kept in self.buf
        for next_event."""
        view = memoryview(data)
        while view:
            r, w, _ = select.select([] if self.eof else [self.sock], [self.sock], [], stall)
            if not r and not w:
                raise TimeoutError("send made no progress for %.0f s" % stall)
            if r:
                try:
                    chunk = self.sock.recv(1 << 20)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    self.buf += chunk
                else:
                    self.eof = True
            if w:
                try:
                    n = self.sock.send(view[:1 << 16], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                view = view[n:]

    def send_frames(self, frames, mode="one", pause=None):
        """Send a list of frame byte strings: mode 'one' (one write), 'frame' (one
        write per frame, paused), 'octet' (one write per byte, paused)."""
        for f in frames:
            if self.close_sent_by(f):
                self.close_sent = True
        if mode == "one":
            return self.send(b"".join(frames))
        if mode == "frame":
            ok = True
            for f in frames:
                ok = self.send(f) and ok
                time.sleep(0.005 if pause is None else pause)
            return ok
        if mode == "octet":
            return self.send(b"".join(frames), chop=1, pause=0.0002 if pause is None else pause)
        raise ValueError("mode")

    @staticmethod
    def close_sent_by(f):
        return len(f) >= 1 and (f[0] & 0x0F) == CLOSE

    # ---------------------------------------------------------------- receiving
    def _fill(self, deadline):
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return None
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return None
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
            self.log.append("%.3f << connection reset" % self.now())
        except OSError as e:
            data = b""
            self.log.append("%.3f << recv error %s" % (self.now(), e))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _parse_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, rsv, opcode = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 0xF
        masked, n = b[1] >> 7, b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack_from("!H", b, 2)[0]
            pos = 4
            if n < 126:
                raise PeerViolation("non-minimal 16-bit length %d (RFC 6455 5.2)" % n)
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack_from("!Q", b, 2)[0]
            pos = 10
            if n >> 63:
                raise PeerViolation("64-bit length with the top bit set (RFC 6455 5.2)")
            if n < 65536:
                raise PeerViolation("non-minimal 64-bit length %d (RFC 6455 5.2)" % n)
        mask = None
        if masked:
            if len(b) < pos + 4:
                return None
            mask = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = apply_mask(payload, mask)
        return Frame(fin, rsv, opcode, masked, mask, payload, self.now())

    def _check_frame(self, f):
        # RFC 6455 5.1: a client masks every frame, a server never masks.
        if self.we_are_client and f.masked:
            raise PeerViolation("server sent a masked frame (RFC 6455 5.1)")
        if not self.we_are_client and not f.masked:
            raise PeerViolation("client sent an unmasked frame (RFC 6455 5.1)")
        if f.masked:
            self.masks.append(f.mask)
        if f.opcode not in OPNAMES:
            raise PeerViolation("reserved opcode %d (RFC 6455 5.2)" % f.opcode)
        allowed = self.rsv_allowed if f.opcode in (TEXT, BINARY) else 0
        if f.rsv & ~allowed:
            raise PeerViolation("RSV bits %d without an extension (RFC 6455 5.2)" % f.rsv)
        if f.opcode >= 8:
            if not f.fin:
                raise PeerViolation("fragmented control frame (RFC 6455 5.5)")
            if len(f.payload) > 125:
                raise PeerViolation("control frame of %d bytes (RFC 6455 5.5)" % len(f.payload))
        if self.close_received is not None:
            raise PeerViolation("frame after its close frame (RFC 6455 5.5.1)")

    def next_event(self, timeout):
        """The peer's next message-level event, None on timeout, Event('eof') when
        TCP closed. Raises PeerViolation on anything the peer must not send."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse_frame()
            if f is None:
                if self.eof:
                    if self.buf:
                        raise PeerViolation("TCP closed inside a frame (%d bytes left)" % len(self.buf))
                    self.log.append("%.3f << TCP closed" % self.now())
                    return Event("eof", t=self.now())
                got = self._fill(deadline)
                if got is None:
                    return None
                continue
            self.log.append("%.3f << %s" % (f.t, f.describe()))
            self._check_frame(f)
            ev = self._assemble(f)
            if ev is not None:
                return ev

    def _assemble(self, f):
        if f.opcode == CLOSE:
            p = f.payload
            if len(p) == 1:
                raise PeerViolation("close payload of 1 byte (RFC 6455 5.5.1)")
            code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
            reason = p[2:]
            # RFC 6455 7.4: codes an endpoint may put on the wire (1012-1014 registered since).
            if code is not None and not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                raise PeerViolation("close code %d may not be sent (RFC 6455 7.4)" % code)
            try:
                reason.decode("utf-8")
            except UnicodeDecodeError:
                raise PeerViolation("close reason is not UTF-8 (RFC 6455 5.5.1)")
            self.close_received = (code, reason)
            return Event("close", code=code, reason=reason, t=f.t)
        if f.opcode in (PING, PONG):
            return Event("ping" if f.opcode == PING else "pong", payload=f.payload, t=f.t)
        if f.opcode == CONT:
            if self._frag_op is None:
                raise PeerViolation("continuation frame with nothing to continue (RFC 6455 5.4)")
        else:
            if self._frag_op is not None:
                raise PeerViolation("new data frame inside a fragmented message (RFC 6455 5.4)")
            self._frag_op = f.opcode
            self._frag_rsv = f.rsv
        self._frag_parts.append(f.payload)
        self._frag_count += 1
        if not f.fin:
            return None
        data = b"".join(self._frag_parts)
        op, count, rsv = self._frag_op, self._frag_count, self._frag_rsv
        self._frag_op, self._frag_parts, self._frag_count = None, [], 0
        if rsv & 4:
            data = self.extensions.inflate(data)
        if op == TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise PeerViolation("peer sent invalid UTF-8 in a text message (RFC 6455 8.1)")
        return Event("message", opcode=op, payload=data, t=self.now(), frames=count)

    def close_tcp(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- handshakes
def read_http_head(sock, deadline, limit=65536):
    """Read up to the blank line; returns (head_text, leftover_bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError("no complete HTTP head in time (%d bytes)" % len(buf))
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            continue
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("peer closed during the handshake (%d bytes)" % len(buf))
        buf += data
        if len(buf) > limit:
            raise ValueError("HTTP head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def parse_headers(lines):
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def client_handshake(host, port, path="/", timeout=5.0, extra_headers=()):
    """Open a TCP connection and do the client side of the opening handshake.
    Returns (sock, leftover, response_headers)."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, host, port, key))
    for h in extra_headers:
        req += h + "\r\n"
    sock.sendall((req + "\r\n").encode("latin-1"))
    head, rest = read_http_head(sock, deadline)
    lines = head.split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        sock.close()
        raise ConnectionError("handshake refused: %r" % lines[0])
    headers = parse_headers(lines[1:])
    if headers.get("sec-websocket-accept", [""])[0] != accept_for(key):
        sock.close()
        raise ConnectionError("bad Sec-WebSocket-Accept")
    return sock, rest, headers


def server_handshake(sock, timeout=5.0, extension_reply=None):
    """Read a client's opening handshake on an accepted socket and answer 101.
    extension_reply(headers) -> value of Sec-WebSocket-Extensions or None.
    Returns (path, request_headers, leftover)."""
    deadline = time.monotonic() + timeout
    head, rest = read_http_head(sock, deadline)
    lines = head.split("\r\n")
    method, path, version = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = parse_headers(lines[1:])
    problems = []
    # RFC 6455 4.1: what a client's opening handshake must contain.
    if method != "GET" or version != "HTTP/1.1":
        problems.append("request line %r" % lines[0])
    if "websocket" not in headers.get("upgrade", [""])[0].lower():
        problems.append("Upgrade header")
    if "upgrade" not in ",".join(headers.get("connection", [])).lower():
        problems.append("Connection header")
    if headers.get("sec-websocket-version", [""])[0] != "13":
        problems.append("Sec-WebSocket-Version")
    if "host" not in headers:
        problems.append("Host header")
    key = headers.get("sec-websocket-key", [""])[0]
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            problems.append("Sec-WebSocket-Key length")
    except ValueError:
        problems.append("Sec-WebSocket-Key not base64")
    if problems:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        raise ConnectionError("bad client handshake: " + ", ".join(problems))
    resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n" % accept_for(key))
    if extension_reply is not None:
        ext = extension_reply(headers)
        if ext:
            resp += "Sec-WebSocket-Extensions: %s\r\n" % ext
    sock.sendall((resp + "\r\n").encode("latin-1"))
    return path, headers, rest


# ---------------------------------------------------------------- permessage-deflate (RFC 7692)
import zlib  # noqa: E402


def parse_extensions(values):
    """Sec-WebSocket-Extensions values -> [(name, {param: value or None})]."""
    out = []
    for value in values:
        for elem in value.split(","):
            parts = [p.strip() for p in elem.split(";")]
            if not parts[0]:
                continue
            params = {}
            for p in parts[1:]:
                if not p:
                    continue
                k, eq, v = p.partition("=")
                params[k.strip().lower()] = v.strip().strip('"') if eq else None
            out.append((parts[0].lower(), params))
    return out


class NotNegotiated(Exception):
    """The peer did not agree to permessage-deflate."""


class Deflate:
    """Our side of a negotiated permessage-deflate: our compressor obeys the
    parameters the peer imposed on us, and our inflater checks the peer obeys
    the ones imposed on it (its window size, its context takeover)."""

    def __init__(self, tx_wbits, tx_no_ctx, rx_wbits, rx_no_ctx):
        self.tx_wbits, self.tx_no_ctx = tx_wbits, tx_no_ctx
        self.rx_wbits, self.rx_no_ctx = rx_wbits, rx_no_ctx
        self.comp = None
        self.decomp = None

    @staticmethod
    def from_params(params, we_are_client):
        def bits(name):
            v = params.get(name)
            return 15 if v is None else int(v)
        mine, theirs = ("client", "server") if we_are_client else ("server", "client")
        return Deflate(bits(mine + "_max_window_bits"), (mine + "_no_context_takeover") in params,
                       bits(theirs + "_max_window_bits"), (theirs + "_no_context_takeover") in params)

    def can_compress(self):
        # zlib cannot write raw DEFLATE with a 256-byte window: send uncompressed (RFC 7692 allows it).
        return self.tx_wbits >= 9

    def deflate(self, data):
        if self.comp is None or self.tx_no_ctx:
            self.comp = zlib.compressobj(6, zlib.DEFLATED, -self.tx_wbits)
        out = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        # RFC 7692 7.2.1: drop the 00 00 ff ff tail; 7.2.3.6: an empty result is sent as 00.
        assert out.endswith(b"\x00\x00\xff\xff")
        out = out[:-4]
        return out or b"\x00"

    def inflate(self, data):
        if self.decomp is None or self.rx_no_ctx or self.decomp.eof:
            # The peer's window is at most rx_wbits: inflating with exactly that
            # window fails on any reference farther back (zlib needs at least 9).
            self.decomp = zlib.decompressobj(-max(9, self.rx_wbits))
        try:
            return self.decomp.decompress(data + b"\x00\x00\xff\xff")
        except zlib.error as e:
            raise PeerViolation("compressed message does not inflate with the negotiated parameters "
                                "(window %d bits%s): %s" % (self.rx_wbits, ", no context takeover" if self.rx_no_ctx
                                                            else "", e))
