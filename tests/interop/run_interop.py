#!/usr/bin/python3
"""Runs one interoperability test between duplex's CLI and a peer we did not write.

  run_interop.py --duplex BIN peer-client --peer python|node|chromium [--tls]
      `duplex echo-server` (plus a second one that refuses foreign Origins) and
      the peer's scenario client against it (peers/*: text with multi-byte
      UTF-8, binary of 0..1 MiB, a burst of 1,000, subprotocol, close 4000 with
      a reason, refused handshake).

  run_interop.py --duplex BIN duplex-client --peer python|node|duplex [--tls]
      The peer's echo server and `duplex connect` against it: lines echoed,
      UTF-8, a 256 KiB line, a burst of 1,000 lines in order, subprotocol,
      close by the peer with 4000 and a reason, refused handshake (403), a
      refused TCP connection, and binary output.

With --tls the servers use certificates made for the run with the openssl CLI
(a CA and a server certificate for 127.0.0.1), and the clients trust the CA.
Every process started is bounded in time and stopped before exit. Prints
"ok NAME" / "FAIL NAME: why" and "N passed, N failed"; exits 1 on any failure.
"""

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"  # Debian's, with websockets 10.4
ALLOWED_ORIGIN = "http://allowed.invalid"
DENIED_ORIGIN = "http://denied.invalid"


class Failure(Exception):
    pass


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1 / localhost, signed by it."""

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=duplex interop test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {
        "ca": os.path.join(directory, "ca.pem"),
        "cert": os.path.join(directory, "server.pem"),
        "key": os.path.join(directory, "server.key"),
    }


class Server:
    """A server process that prints "listening on URL" when ready."""

    def __init__(self, cmd, env=None, timeout=30.0):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.url = self._wait_for_url(timeout)

    def _wait_for_url(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith("listening on "):
                        return line[len("listening on "):].strip()
            elif self.proc.poll() is not None:
                break
        err = self.stop()
        raise Failure(f"{self.cmd[0]} did not report 'listening on' in time: {buf!r} {err}")

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns (exit status, stderr)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            _, err = self.proc.communicate(timeout=10)
            return None, err.decode(errors="replace")
        return self.proc.returncode, err.decode(errors="replace")


def node_env():
    env = dict(os.environ)
    env["NODE_PATH"] = os.path.join(ROOT, ".deps", "node", "node_modules")
    return env


def peer_server_cmd(peer, duplex, certs, extra):
    tls = ["--tls-cert", certs["cert"], "--tls-key", certs["key"]] if certs else []
    if peer == "python":
        return [PYTHON, os.path.join(PEERS, "py_peer.py"), "server", "--lifetime", "300", *tls, *extra]
    if peer == "node":
        return ["node", os.path.join(PEERS, "node_peer.js"), "server", "--lifetime", "300", *tls, *extra]
    if peer == "duplex":
        return [duplex, "echo-server", "--port", "0", "--threads", "1", *tls, *extra]
    raise ValueError(peer)


def run(cmd, stdin=b"", timeout=60.0, env=None):
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{' '.join(cmd[:3])} ... did not finish within {timeout} s "
                      f"(stdout {e.stdout!r:.200}, stderr {e.stderr!r:.200})")


# --- peer clients against duplex echo-server --------------------------------------


def peer_client(args, certs):
    tls = ["--tls-cert", certs["cert"], "--tls-key", certs["key"]] if certs else []
    main = Server([args.duplex, "echo-server", "--port", "0", "--threads", "2",
                   "--protocol", "chat", *tls])
    servers = [main]
    try:
        refusing = Server([args.duplex, "echo-server", "--port", "0", "--threads", "1",
                           "--allow-origin", ALLOWED_ORIGIN, *tls])
        servers.append(refusing)
        ca = ["--ca", certs["ca"]] if certs else []
        if args.peer == "python":
            cmd = [PYTHON, os.path.join(PEERS, "py_peer.py"), "client"]
        elif args.peer == "node":
            cmd = ["node", os.path.join(PEERS, "node_peer.js"), "client"]
        elif args.peer == "chromium":
            if certs:
                raise Failure("the Chromium peer runs over ws:// only")
            cmd = [PYTHON, os.path.join(PEERS, "chromium_peer.py")]
            ca = []
        else:
            raise ValueError(args.peer)
        cmd += ["--url", main.url, "--refused-url", refusing.url, "--timeout", "30", *ca]
        result = run(cmd, timeout=300, env=node_env())
        sys.stdout.write(result.stdout.decode(errors="replace"))
        sys.stderr.write(result.stderr.decode(errors="replace"))
        failures = [] if result.returncode == 0 else [f"{args.peer} client exited {result.returncode}"]
    finally:
        for s in servers:
            status, err = s.stop()
            if status != 0:
                print(f"FAIL echo-server-stop: exit status {status} after SIGTERM: {err[-500:]}")
                return 1
    print("ok echo-server-stop")
    return 1 if failures else 0


# --- duplex connect against a peer's echo server ----------------------------------


def connect(args, url, *options, stdin=b"", timeout=60.0):
    return run([args.duplex, "connect", "--reply-timeout", "20", "--connect-timeout", "10",
                *options, url], stdin=stdin, timeout=timeout)


def expect_ok(result, what):
    if result.returncode != 0:
        raise Failure(f"{what}: exit {result.returncode}, stderr {result.stderr.decode(errors='replace')[-400:]!r}")


def duplex_client(args, certs):
    ca = ["--ca", certs["ca"]] if certs else []
    servers = []
    scenarios = []
    try:
        main = Server(peer_server_cmd(args.peer, args.duplex, certs, ["--protocol", "chat"]), env=node_env())
        servers.append(main)
        refusing = Server(peer_server_cmd(args.peer, args.duplex, certs,
                                          ["--allow-origin", ALLOWED_ORIGIN]), env=node_env())
        servers.append(refusing)

        def lines():
            text = "hello\nGr\u00fc\u00dfe, \u4e16\u754c \u20ac \U0001F600\n\nlast line\n"
            r = connect(args, main.url, *ca, stdin=text.encode())
            expect_ok(r, "connect")
            got = r.stdout.decode()
            if got != text:
                raise Failure(f"stdout {got!r}, expected {text!r}")

        def big_line():
            text = ("0123456789abcdef" * (256 * 1024 // 16)) + "\n"
            r = connect(args, main.url, *ca, stdin=text.encode())
            expect_ok(r, "connect")
            if r.stdout.decode() != text:
                raise Failure(f"stdout has {len(r.stdout)} bytes, expected {len(text)}")

        def burst():
            text = "".join(f"burst {i}\n" for i in range(1000))
            r = connect(args, main.url, *ca, stdin=text.encode())
            expect_ok(r, "connect")
            if r.stdout.decode() != text:
                raise Failure(f"replies out of order or missing ({len(r.stdout.splitlines())} lines)")

        def json_and_subprotocol():
            r = connect(args, main.url, "--json", "--protocol", "superchat", "--protocol", "chat",
                        *ca, stdin=b"one\n")
            expect_ok(r, "connect")
            events = [json.loads(line) for line in r.stdout.decode().splitlines()]
            kinds = [e["event"] for e in events]
            if kinds != ["connected", "message", "closed"]:
                raise Failure(f"events {kinds}")
            if events[0]["protocol"] != "chat":
                raise Failure(f"negotiated {events[0]['protocol']!r}, expected 'chat'")
            if events[1] != {"event": "message", "type": "text", "data": "one"}:
                raise Failure(f"message event {events[1]}")
            if events[2]["code"] != 1000 or not events[2]["clean"]:
                raise Failure(f"closed event {events[2]}")

        def closed_by_peer():
            r = connect(args, main.url, "--json", *ca, stdin=b"close:4000:bye from server\n")
            if r.returncode != 6:  # closed with a code other than 1000/1001 (docs/cli.md)
                raise Failure(f"exit {r.returncode}, expected 6")
            events = [json.loads(line) for line in r.stdout.decode().splitlines()]
            closed = [e for e in events if e["event"] == "closed"]
            if not closed or closed[0]["code"] != 4000 or closed[0]["reason"] != "bye from server":
                raise Failure(f"events {events}")

        def refused_handshake():
            r = connect(args, refusing.url, "--header", f"Origin: {DENIED_ORIGIN}", *ca, stdin=b"x\n")
            err = r.stderr.decode(errors="replace")
            if r.returncode == 0:
                raise Failure("exit status 0")
            if "forbidden" not in err:
                raise Failure(f"stderr does not name the status 'forbidden': {err!r}")

        def refused_tcp():
            with socket.socket() as s:  # a port nobody listens on: bind, read it, close
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            scheme = "wss" if certs else "ws"
            r = connect(args, f"{scheme}://127.0.0.1:{port}/", *ca, stdin=b"x\n")
            err = r.stderr.decode(errors="replace")
            if r.returncode == 0 or "cannot_connect" not in err:
                raise Failure(f"exit {r.returncode}, stderr {err!r}")

        def connect_timeout():
            # A server that accepts TCP and never answers: --connect-timeout bounds it.
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen(4)
                scheme = "wss" if certs else "ws"
                url = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/"
                start = time.monotonic()
                r = run([args.duplex, "connect", "--connect-timeout", "1", *ca, url],
                        stdin=b"x\n", timeout=30)
                elapsed = time.monotonic() - start
            err = r.stderr.decode(errors="replace")
            if r.returncode == 0 or "timeout" not in err:
                raise Failure(f"exit {r.returncode}, stderr {err!r}")
            if elapsed > 10:
                raise Failure(f"took {elapsed:.1f} s")

        scenarios = [("connect-timeout", connect_timeout), ("lines-utf8", lines), ("line-256KiB", big_line), ("burst-1000", burst),
                     ("json-subprotocol", json_and_subprotocol), ("refused-handshake", refused_handshake),
                     ("refused-tcp", refused_tcp)]
        if args.peer != "duplex":  # the "close:CODE:REASON" command is the peers' own
            scenarios.append(("closed-by-peer-4000", closed_by_peer))
        if args.peer == "python":
            def binary_output():
                sys.path.insert(0, PEERS)
                from py_peer import payload
                r = connect(args, main.url, *ca, stdin=b"binary:0\nbinary:70000\n")
                expect_ok(r, "connect")
                expected = "\n" + payload(70000, 70000).hex() + "\n"
                if r.stdout.decode() != expected:
                    raise Failure(f"hex output differs: {r.stdout[:80]!r}")
                r = connect(args, main.url, "--binary", *ca, stdin=b"binary:65536\n")
                expect_ok(r, "connect --binary")
                if r.stdout != payload(65536, 65536):
                    raise Failure(f"raw output differs ({len(r.stdout)} bytes)")

            scenarios.append(("binary-output", binary_output))

            def echo_mode():
                prober = Server(peer_server_cmd("python", args.duplex, certs, ["--probe"]))
                servers.append(prober)
                r = connect(args, prober.url, "--echo", "--json", *ca, stdin=b"ignored\n")
                expect_ok(r, "connect --echo")
                events = [json.loads(line) for line in r.stdout.decode().splitlines()]
                closed = [e for e in events if e["event"] == "closed"]
                if not closed or closed[0]["code"] != 1000 or closed[0]["reason"] != "probe ok":
                    raise Failure(f"events {events}")

            scenarios.append(("echo-mode", echo_mode))
        if args.peer == "duplex":
            def shutdown_1001():
                # SIGTERM with a client connected: the client sees 1001 (going
                # away), the server exits 0.
                server = Server(peer_server_cmd("duplex", args.duplex, certs, []))
                client = subprocess.Popen(
                    [args.duplex, "connect", "--json", *ca, server.url], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
                try:
                    ready, _, _ = select.select([client.stdout], [], [], 15)
                    first = client.stdout.readline() if ready else b""
                    if b'"connected"' not in first:
                        raise Failure(f"client did not connect: {first!r}")
                    status, err = server.stop()
                    if status != 0:
                        raise Failure(f"echo-server exit status {status}: {err[-300:]!r}")
                    out, cerr = client.communicate(timeout=15)
                finally:
                    if client.poll() is None:
                        os.killpg(client.pid, signal.SIGKILL)
                        client.wait(timeout=10)
                    server.stop()
                events = [json.loads(line) for line in out.decode().splitlines()]
                if client.returncode != 0 or not events or events[-1].get("code") != 1001:
                    raise Failure(f"client exit {client.returncode}, events {events}, {cerr!r}")

            scenarios.append(("shutdown-1001", shutdown_1001))
        if certs:
            def untrusted():
                r = connect(args, main.url, stdin=b"x\n")  # without --ca
                err = r.stderr.decode(errors="replace")
                if r.returncode == 0 or "certificate" not in err:
                    raise Failure(f"exit {r.returncode}, stderr {err!r}")

            def ignored():
                r = connect(args, main.url, "--ignore-certificate-errors", stdin=b"insecure\n")
                expect_ok(r, "connect")
                if r.stdout != b"insecure\n":
                    raise Failure(f"stdout {r.stdout!r}")

            scenarios += [("untrusted-certificate", untrusted), ("ignore-certificate-errors", ignored)]

        failed = 0
        for name, fn in scenarios:
            try:
                fn()
                print(f"ok {name}", flush=True)
            except Failure as e:
                failed += 1
                print(f"FAIL {name}: {e}", flush=True)
    finally:
        for s in servers:
            s.stop()
    print(f"{len(scenarios) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplex", required=True, help="path of the duplex executable")
    parser.add_argument("mode", choices=["peer-client", "duplex-client"])
    parser.add_argument("--peer", required=True, choices=["python", "node", "chromium", "duplex"])
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="duplex-interop-") as tmp:
        try:
            certs = make_certificates(tmp) if args.tls else None
            if args.mode == "peer-client":
                return peer_client(args, certs)
            return duplex_client(args, certs)
        except Failure as e:
            print(f"FAIL setup: {e}")
            return 1


if __name__ == "__main__":
    sys.exit(main())
