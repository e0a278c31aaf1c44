#!/usr/bin/env python3
"""`duplex --version` and the wscat/websocat habits of `duplex connect`.

Usage: test_connect.py DUPLEX_BINARY VERSION

Every server is started here on 127.0.0.1 port 0 and stopped before exit:
`duplex echo-server` (plain and TLS), a small WebSocket server written below
that records the request and the frames it receives (optionally over TLS with a
required client certificate), an HTTP CONNECT proxy with Basic auth, and a TCP
listener that never answers. Certificates are made at test time with openssl.
Each scenario prints "ok NAME" or "FAIL NAME: why"; the exit status is 1 if any
failed.
"""
import base64
import hashlib
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading

DUPLEX, VERSION = sys.argv[1], sys.argv[2]
TIMEOUT = 30.0
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Failure(Exception):
    pass


def run(*args, stdin=b"", timeout=TIMEOUT):
    return subprocess.run([DUPLEX, *args], input=stdin, capture_output=True, timeout=timeout)


def expect_status(result, status, what):
    if result.returncode != status:
        raise Failure(f"{what}: exit {result.returncode}, expected {status}; "
                      f"stderr {result.stderr.decode(errors='replace')[-300:]!r}")


def make_certificates(d):
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=duplex test CA",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                          ("client", "duplex-client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem")
    return d


class EchoServer:
    """`duplex echo-server` on an ephemeral port; stopped with SIGTERM by pid."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DUPLEX, "echo-server", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise Failure(f"echo-server did not start: {line!r}")
        self.url = line.split()[-1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_frame(conn):
    """One client frame: (opcode, unmasked payload)."""
    b0, b1 = read_exact(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(conn, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(conn, 8))[0]
    mask = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(conn, length)))
    return b0 & 0x0F, payload


def frame(opcode, payload=b""):
    return bytes([0x80 | opcode, len(payload)]) + payload  # payloads here are < 126 bytes


class RecordingServer:
    """A WebSocket server for one connection that records what it receives.

    action "close:CODE": send a close frame with CODE at once, then wait for the answer.
    action "ping": wait for a ping (answer a pong), then close with 1000.
    action "serve": answer a close frame with a close frame.
    action "hang": accept TCP and never answer.
    """

    def __init__(self, action, context=None):
        self.action, self.context = action, context
        self.headers, self.frames, self.peer_cert = {}, [], None
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        scheme = "wss" if context else "ws"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(TIMEOUT)
            if self.action == "hang":
                self.done = threading.Event()
                self.done.wait(TIMEOUT)
                conn.close()
                return
            if self.context:
                tls = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                try:
                    tls.do_handshake()
                except ssl.SSLError:
                    # The alert is sent; read what the client still sends until it
                    # closes, so that our close is no reset that could overtake
                    # the alert and turn the client's TLS error into a reset.
                    raw = socket.socket(fileno=tls.detach())
                    raw.settimeout(TIMEOUT)
                    try:
                        while raw.recv(65536):
                            pass
                    except OSError:
                        pass
                    raw.close()
                    return
                conn = tls
                self.peer_cert = conn.getpeercert()
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    raise EOFError
                request += chunk
            for line in request.decode().split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    self.headers[k.strip().lower()] = v.strip()
            accept = base64.b64encode(hashlib.sha1((self.headers["sec-websocket-key"] + GUID).encode()).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            if self.action.startswith("close:"):
                conn.sendall(frame(8, struct.pack("!H", int(self.action[6:]))))
            for _ in range(100):
                opcode, payload = read_frame(conn)
                self.frames.append(opcode)
                if opcode == 9:
                    conn.sendall(frame(10, payload))
                    if self.action == "ping":
                        conn.sendall(frame(8, struct.pack("!H", 1000)))
                if opcode == 8:
                    if not self.action.startswith("close:"):
                        conn.sendall(frame(8, payload[:2]))
                    break
            conn.close()
        except Exception as e:  # reported by the scenario that expected more
            self.error = e

    def stop(self):
        if self.action == "hang" and hasattr(self, "done"):
            self.done.set()
        self.thread.join(timeout=TIMEOUT)
        self.sock.close()


class ConnectProxy:
    """An HTTP CONNECT proxy (one tunnel at a time) that requires Basic auth."""

    def __init__(self, user, password):
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = client.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                lines = request.decode(errors="replace").split("\r\n")
                auth = next((l.split(":", 1)[1].strip() for l in lines
                             if l.lower().startswith("proxy-authorization:")), None)
                self.seen.append((lines[0], auth))
                if auth != self.expected:
                    client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                   b"Proxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
                    continue
                host, port = lines[0].split()[1].rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=TIMEOUT) as upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pump(client, upstream)

    @staticmethod
    def _pump(a, b):
        for _ in range(100000):
            ready, _, _ = select.select([a, b], [], [], TIMEOUT)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.thread.join(timeout=TIMEOUT)
        self.sock.close()


def main():
    tmp = tempfile.TemporaryDirectory()
    certs = make_certificates(tmp.name)
    servers = []

    def serve(server):
        servers.append(server)
        return server

    def version():
        r = subprocess.run([DUPLEX, "--version"], capture_output=True, timeout=TIMEOUT)
        expect_status(r, 0, "--version")
        if r.stdout.decode().strip() != f"duplex {VERSION}":
            raise Failure(f"--version printed {r.stdout!r}")

    def short_flags_and_refused_handshake():
        s = serve(EchoServer("--protocol", "chat", "--allow-origin", "http://ok.test"))
        r = run("connect", "--json", "-s", "chat", "-H", "Origin: http://ok.test", s.url, stdin=b"hi\n")
        expect_status(r, 0, "-s chat -H Origin")
        if b'"protocol":"chat"' not in r.stdout or b'"data":"hi"' not in r.stdout:
            raise Failure(f"stdout {r.stdout!r}")
        r = run("connect", "-H", "Origin: http://other.test", s.url, stdin=b"hi\n")
        expect_status(r, 3, "refused handshake (403)")

    def headers_and_credential():
        s = serve(RecordingServer("serve"))
        r = run("connect", "-H", "X-Test: yes", "--credential", "user:pa:ss", s.url)
        expect_status(r, 0, "--credential")
        s.stop()
        want = "Basic " + base64.b64encode(b"user:pa:ss").decode()
        if s.headers.get("authorization") != want or s.headers.get("x-test") != "yes":
            raise Failure(f"server saw {s.headers}")

    def close_codes():
        for code, status in ((1011, 6), (4000, 6), (1001, 0), (1000, 0)):
            s = serve(RecordingServer(f"close:{code}"))
            r = run("connect", "-n", s.url)
            expect_status(r, status, f"peer closed with {code}")

    def timeout():
        s = serve(RecordingServer("hang"))
        r = run("connect", "--connect-timeout", "1", s.url, stdin=b"x\n")
        expect_status(r, 5, "connect timeout")

    def tls():
        s = serve(EchoServer("--tls-cert", f"{certs}/server.pem", "--tls-key", f"{certs}/server.key"))
        r = run("connect", s.url, stdin=b"x\n")  # untrusted CA
        expect_status(r, 4, "untrusted certificate")
        r = run("connect", "--ca", f"{certs}/ca.pem", s.url, stdin=b"x\n")
        expect_status(r, 0, "trusted certificate")

    def client_certificate():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(f"{certs}/server.pem", f"{certs}/server.key")
        context.load_verify_locations(f"{certs}/ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        s = serve(RecordingServer("serve", context))
        r = run("connect", "--ca", f"{certs}/ca.pem", "--cert", f"{certs}/client.pem",
                "--key", f"{certs}/client.key", s.url)
        expect_status(r, 0, "--cert/--key")
        s.stop()
        subject = dict(x[0] for x in (s.peer_cert or {}).get("subject", ()))
        if subject.get("commonName") != "duplex-client":
            raise Failure(f"server saw client certificate {s.peer_cert}")
        s = serve(RecordingServer("serve", context))
        r = run("connect", "--ca", f"{certs}/ca.pem", s.url)
        expect_status(r, 4, "no client certificate")

    def proxy():
        s = serve(EchoServer())
        p = serve(ConnectProxy("proxy-user", "secret"))
        r = run("connect", "--proxy", p.url, "--proxy-credential", "proxy-user:secret", s.url,
                stdin=b"through\n")
        expect_status(r, 0, "--proxy with --proxy-credential")
        if r.stdout != b"through\n":
            raise Failure(f"stdout {r.stdout!r}")
        port = s.url.rsplit(":", 1)[1].strip("/")
        if not p.seen or p.seen[0][0] != f"CONNECT 127.0.0.1:{port} HTTP/1.1":
            raise Failure(f"proxy saw {p.seen}")
        r = run("connect", "--proxy", p.url, s.url, stdin=b"x\n")
        if r.returncode == 0 or len(p.seen) != 2 or p.seen[1][1] is not None:
            raise Failure(f"without credential: exit {r.returncode}, proxy saw {p.seen}")

    def ping_interval_and_stay_open():
        s = serve(RecordingServer("ping"))
        r = run("connect", "-n", "--ping-interval", "0.2", s.url)  # stdin ends at once
        expect_status(r, 0, "-n --ping-interval")
        s.stop()
        if not s.frames or s.frames[0] != 9:
            raise Failure(f"server received opcodes {s.frames}, expected a ping first")
        # Without -n the client closes at the end of stdin, before any ping.
        s = serve(RecordingServer("ping"))
        r = run("connect", "--ping-interval", "5", s.url)
        expect_status(r, 0, "without -n")
        s.stop()
        if s.frames[:1] != [8]:
            raise Failure(f"without -n the server received {s.frames}, expected a close")

    def binary_input():
        s = serve(EchoServer())
        data = os.urandom(300 * 1024)
        r = run("connect", "--binary-input", "--binary", "-q", s.url, stdin=data)
        expect_status(r, 0, "--binary-input")
        if r.stdout != data:
            raise Failure(f"echo of {len(data)} bytes came back as {len(r.stdout)} bytes")

    scenarios = [version, short_flags_and_refused_handshake, headers_and_credential, close_codes,
                 timeout, tls, client_certificate, proxy, ping_interval_and_stay_open, binary_input]
    failed = 0
    for fn in scenarios:
        try:
            fn()
            print(f"ok {fn.__name__}", flush=True)
        except (Failure, subprocess.TimeoutExpired, OSError) as e:
            failed += 1
            print(f"FAIL {fn.__name__}: {e}", flush=True)
        finally:
            while servers:
                servers.pop().stop()
    print(f"{len(scenarios) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
