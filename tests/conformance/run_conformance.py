#!/usr/bin/python3
"""duplex conformance gate: RFC 6455 cases organised like the Autobahn|Testsuite,
run against `duplex echo-server` (the fuzzer is a raw-socket client) and against
`duplex connect --echo` (the fuzzer is a raw-socket server, one client process
per case, as Autobahn drives clients).

Usage:
  run_conformance.py --duplex build/release/bin/duplex [--role server|client|both]
                     [--cases 1.*,6.4.*] [--json report.json] [--jobs N]

Prints one row per case (id, role, verdict, seconds, description, detail), then
the summary line `N passed, M failed`; exits 1 if any case FAILED. NON-STRICT
counts as passed (RFC latitude, see docs/conformance.md).
"""

import argparse
import fnmatch
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as C  # noqa: E402
import wire  # noqa: E402

STARTUP_TIMEOUT = 10.0
DEFLATE_MODE = "auto"  # --deflate: auto (UNIMPLEMENTED if not negotiated), require, off
LISTEN_RE = re.compile(r"listening on ws://([^:/\s]+|\[[^\]]+\]):(\d+)/")

_children = []
_children_lock = threading.Lock()


def track(proc):
    with _children_lock:
        _children.append(proc)
    return proc


def stop(proc, grace=3.0):
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps. Returns the
    exit status and whether SIGTERM was enough."""
    gentle = True
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            gentle = False
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass
    with _children_lock:
        if proc in _children:
            _children.remove(proc)
    return proc.returncode, gentle


def stop_all():
    with _children_lock:
        procs = list(_children)
    for p in procs:
        stop(p, 1.0)


class Ctx:
    def __init__(self, role, profile):
        self.role, self.profile = role, profile
        self.outcome = None  # "clean" or "failed" once the case saw the close handshake
        self.host = self.port = None  # server role, raw cases
        self.close_code = None  # the close code a clean case sent (client role)


def judge(case, role, run_one):
    """Run a case via run_one(log) and turn the outcome into a verdict row."""
    log = []
    t0 = time.monotonic()
    verdict, detail = "OK", ""
    try:
        extra = run_one(log)
        if extra:
            verdict, detail = extra
    except wire.NotNegotiated as e:
        verdict, detail = ("FAILED" if DEFLATE_MODE == "require" else "UNIMPLEMENTED"), str(e)
    except C.NonStrict as e:
        verdict, detail = "NON-STRICT", str(e)
    except C.Failed as e:
        verdict, detail = "FAILED", str(e)
    except wire.PeerViolation as e:
        verdict, detail = "FAILED", "peer violated RFC 6455: %s" % e
    except (OSError, TimeoutError, ConnectionError, ValueError) as e:
        verdict, detail = "FAILED", "%s: %s" % (type(e).__name__, e)
    except Exception as e:  # a bug in a case must show, not pass
        verdict, detail = "FAILED", "harness error %s: %s" % (type(e).__name__, traceback.format_exc(limit=3))
    took = time.monotonic() - t0
    if verdict == "OK" and took > case.timeout + 1.0:
        verdict, detail = "FAILED", "took %.1f s, over its %.0f s bound" % (took, case.timeout)
    return {"id": case.id, "role": role, "description": case.desc, "verdict": verdict, "detail": detail,
            "seconds": round(took, 3), "wire": log[-40:]}


# ---------------------------------------------------------------- server role
class ServerUnderTest:
    """One `duplex echo-server` (or --server-cmd) process; restarted if it dies."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.proc = None
        self.host = self.port = None
        self.stderr = None

    def start(self):
        self.stderr = tempfile.TemporaryFile()
        self.proc = track(subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=self.stderr, start_new_session=True))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        seen = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if not line:
                    break
                seen += line
                m = LISTEN_RE.search(line.decode("utf-8", "replace"))
                if m:
                    self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
                    # Keep draining stdout so the server never blocks on a full pipe.
                    threading.Thread(target=self._drain, daemon=True).start()
                    return
            elif self.proc.poll() is not None:
                break
        stop(self.proc)
        raise RuntimeError("server did not print 'listening on ws://HOST:PORT/' within %.0f s: %r %s" % (
            STARTUP_TIMEOUT, seen[-300:], self.stderr_tail()))

    def _drain(self):
        try:
            for _ in iter(lambda: self.proc.stdout.read(65536), b""):
                pass
        except (OSError, ValueError):
            pass

    def stderr_tail(self):
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return self.stderr.read()[-400:].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stop the server; returns None if it never ran, else (status, stopped by SIGTERM)."""
        if self.proc is None:
            return None
        return stop(self.proc)


def run_server_case(case, server):
    ctx = Ctx("server", case.profile)

    def one(log):
        if not server.alive():
            server.start()
            log.append("server (re)started")
        if case.raw:
            ctx.host, ctx.port = server.host, server.port
            holder = RawHolder(None)
            try:
                run_bounded(case, holder, ctx, arg=None)
            finally:
                holder.sock.close()
            return None
        offer = [] if case.deflate is None else ["Sec-WebSocket-Extensions: " + case.deflate.offer]
        sock, rest, headers = wire.client_handshake(server.host, server.port, "/", timeout=C.CASE_TIMEOUT,
                                                    extra_headers=offer)
        c = wire.Conn(sock, True, rest, log)
        answered = wire.parse_extensions(headers.get("sec-websocket-extensions", []))
        if case.deflate is None and answered:
            c.close_tcp()
            # RFC 6455 9.1: a server may only answer extensions the client offered.
            raise C.Failed("server answered extensions %r that were not offered" % answered)
        if case.deflate is not None:
            if not answered:
                c.close_tcp()
                raise wire.NotNegotiated("server declined permessage-deflate (offer %r)" % case.deflate.offer)
            if len(answered) != 1 or answered[0][0] != "permessage-deflate":
                c.close_tcp()
                raise C.Failed("extension answer %r is not one permessage-deflate" % answered)
            offers = [p for n, p in wire.parse_extensions([case.deflate.offer])]
            try:
                C.server_answer_ok(offers, answered[0][1])
            except C.Failed:
                c.close_tcp()
                raise
            c.extensions = wire.Deflate.from_params(answered[0][1], True)
            c.rsv_allowed = 4
            log.append("permessage-deflate agreed: %s" % headers["sec-websocket-extensions"])
        try:
            run_bounded(case, c, ctx)
        finally:
            c.close_tcp()
        if not server.alive():
            raise C.Failed("server process exited (status %s) %s" % (server.proc.returncode, server.stderr_tail()))
    return judge(case, "server", one)


def run_bounded(case, c, ctx, arg=False):
    """Run case.fn with a hard time bound: a watchdog shuts the socket down, so a
    blocked read returns and the case fails instead of hanging the gate."""
    done = threading.Event()
    fired = []

    def watchdog():
        if not done.wait(case.timeout):
            fired.append(True)
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    t = threading.Thread(target=watchdog, daemon=True)
    t.start()
    try:
        case.fn(c if arg is False else arg, ctx)
    except Exception:
        if fired:
            raise C.Failed("case exceeded its %.0f s bound" % case.timeout)
        raise
    finally:
        done.set()
    if fired:
        raise C.Failed("case exceeded its %.0f s bound" % case.timeout)


# ---------------------------------------------------------------- client role
def run_client_case(case, listener, client_cmd, profile_args):
    ctx = Ctx("client", case.profile)
    host, port = listener.getsockname()[:2]
    url = "ws://127.0.0.1:%d/case/%s" % (port, case.id)

    def one(log):
        err = tempfile.TemporaryFile()
        cmd = client_cmd + profile_args.get(case.profile, []) + [url]
        proc = track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      start_new_session=True))
        log.append("started: %s" % " ".join(shlex.quote(x) for x in cmd))
        sock = None
        try:
            deadline = time.monotonic() + C.CASE_TIMEOUT
            r = []
            while not r and time.monotonic() < deadline and proc.poll() is None:
                r, _, _ = select.select([listener], [], [], 0.05)
            if not r:
                r, _, _ = select.select([listener], [], [], 0)
            if not r:
                raise C.Failed("client did not connect within %.0f s (status %s) %s" % (
                    C.CASE_TIMEOUT, proc.poll(), tail(err)))
            sock, _ = listener.accept()
            if case.raw:
                try:
                    run_bounded(case, RawHolder(sock), ctx, arg=sock)
                finally:
                    sock.close()
                return check_client_exit(proc, ctx, log, err)
            agreed = []

            def extension_reply(headers):
                offers = [p for n, p in wire.parse_extensions(headers.get("sec-websocket-extensions", []))
                          if n == "permessage-deflate"]
                log.append("client offered extensions: %s" % headers.get("sec-websocket-extensions"))
                if case.deflate is None or not offers:
                    return None
                answer = case.deflate.answer(offers[0])
                agreed.append(wire.parse_extensions([answer])[0][1])
                return answer
            path, _, rest = wire.server_handshake(sock, timeout=C.CASE_TIMEOUT, extension_reply=extension_reply)
            if path != "/case/%s" % case.id:
                raise C.Failed("client asked for path %r, not /case/%s" % (path, case.id))
            c = wire.Conn(sock, False, rest, log)
            if case.deflate is not None:
                if not agreed:
                    c.close_tcp()
                    raise wire.NotNegotiated("client did not offer permessage-deflate")
                c.extensions = wire.Deflate.from_params(agreed[0], False)
                c.rsv_allowed = 4
            try:
                run_bounded(case, c, ctx)
            finally:
                c.close_tcp()
            return check_client_exit(proc, ctx, log, err)
        except BaseException:
            log.append("client stderr: %s" % tail(err))
            raise
        finally:
            stop(proc, 1.0)
            err.close()
    return judge(case, "client", one)


def check_client_exit(proc, ctx, log, err):
    # The close handshake is done (or the handshake failed) and we closed TCP: the client must exit.
    try:
        status = proc.wait(3.0)
    except subprocess.TimeoutExpired:
        raise C.Failed("client did not exit within 3 s after the close handshake and TCP close")
    log.append("client exit status %s" % status)
    # The CLI's contract (issue 3, docs/cli.md): a clean close by the peer ends
    # with status 0, or 6 when its code is not 1000/1001 (an error code); a
    # failed connection (an error) with another non-zero status.
    if ctx.outcome == "clean":
        wanted = 0 if ctx.close_code in (None, 1000, 1001) else 6
        if status != wanted:
            raise C.Failed("client exited with status %s after a clean close with code %s, expected %s %s"
                           % (status, ctx.close_code, wanted, tail(err)))
    if ctx.outcome == "failed" and status == 0:
        raise C.Failed("client exited with status 0 after failing the connection")
    return None


class RawHolder:
    """What run_bounded's watchdog shuts down for a raw case."""

    def __init__(self, sock):
        self.sock = sock if sock is not None else socket.socket()


def tail(f):
    try:
        f.seek(0)
        return f.read()[-300:].decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""


# ---------------------------------------------------------------- report
def print_table(rows, out=sys.stdout):
    out.write("%-8s %-7s %-10s %7s  %s\n" % ("case", "role", "verdict", "seconds", "description"))
    for r in rows:
        out.write("%-8s %-7s %-10s %7.2f  %s\n" % (r["id"], r["role"], r["verdict"], r["seconds"], r["description"]))
        if r["verdict"] != "OK":
            out.write("%28s-> %s\n" % ("", r["detail"].replace("\n", "\n" + " " * 31)))
    out.flush()


def section_counts(rows):
    table = {}
    for r in rows:
        sec = r["id"].split(".")[0]
        t = table.setdefault((r["role"], sec), {"OK": 0, "NON-STRICT": 0, "FAILED": 0, "UNIMPLEMENTED": 0})
        t[r["verdict"]] += 1
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duplex", help="path to the duplex executable")
    ap.add_argument("--role", choices=("server", "client", "both"), default="both")
    ap.add_argument("--cases", default="*", help="comma-separated id patterns (fnmatch), e.g. '1.*,6.4.*'")
    ap.add_argument("--json", help="write the JSON report here")
    ap.add_argument("--server-cmd", help="server command instead of duplex echo-server (harness checks)")
    ap.add_argument("--client-cmd", help="client command instead of duplex connect --echo (URL appended)")
    ap.add_argument("--markdown", help="write the results by section as Markdown tables here")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--deflate", choices=("auto", "require", "off"), default="auto",
                    help="sections 12/13: auto = UNIMPLEMENTED when the peer does not negotiate "
                         "permessage-deflate, require = FAILED then, off = skip them")
    args = ap.parse_args()

    global DEFLATE_MODE
    DEFLATE_MODE = args.deflate
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    selected = [c for c in C.CASES if any(fnmatch.fnmatchcase(c.id, p) or c.id == p for p in patterns)]
    if args.deflate == "off":
        selected = [c for c in selected if c.deflate is None]
    if args.list:
        for c in selected:
            print("%-8s %-14s %s" % (c.id, "/".join(c.roles), c.desc))
        return 0
    if not selected:
        print("no case matches %r" % args.cases)
        return 2
    if not args.duplex and not (args.server_cmd or args.client_cmd):
        ap.error("--duplex is required")

    rows = []
    roles = ("server", "client") if args.role == "both" else (args.role,)
    started = time.monotonic()

    def on_signal(signum, frame):
        stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        if "server" in roles:
            base = shlex.split(args.server_cmd) if args.server_cmd else [args.duplex, "echo-server", "--host",
                                                                           "127.0.0.1", "--port", "0"] + (
                                                                               ["--deflate"] if args.deflate != "off" else [])
            servers = {"default": ServerUnderTest(base),
                       "limit": ServerUnderTest(base + ["--max-message-size", str(C.LIMIT)])}
            try:
                for case in selected:
                    if "server" not in case.roles:
                        continue
                    srv = servers[case.profile]
                    if not srv.alive():
                        try:
                            srv.start()
                        except RuntimeError as e:
                            rows.append({"id": case.id, "role": "server", "description": case.desc,
                                         "verdict": "FAILED", "detail": str(e), "seconds": 0.0, "wire": []})
                            continue
                    rows.append(run_server_case(case, srv))
                    report_row(rows[-1])
            finally:
                for name, s in servers.items():
                    t0 = time.monotonic()
                    result = s.stop()
                    if result is None:
                        continue
                    status, gentle = result
                    # Issue 4: the echo-server stops cleanly on SIGTERM (every
                    # connection is closed by now), so its status is 0.
                    ok = gentle and status == 0
                    rows.append({"id": "10.7.%d" % (1 if name == "default" else 2), "role": "server",
                                 "description": "echo-server (%s profile) exits with status 0 on SIGTERM (ours)" % name,
                                 "verdict": "OK" if ok else "FAILED",
                                 "detail": "" if ok else "status %s%s %s" % (
                                     status, "" if gentle else " (SIGKILL after 3 s)", s.stderr_tail()),
                                 "seconds": round(time.monotonic() - t0, 3), "wire": []})
        if "client" in roles:
            ccmd = shlex.split(args.client_cmd) if args.client_cmd else [args.duplex, "connect", "--echo"] + (
                ["--deflate"] if args.deflate != "off" else [])
            profile_args = {"default": [], "limit": ["--max-message-size", str(C.LIMIT)]}
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            try:
                for case in selected:
                    if "client" not in case.roles:
                        continue
                    rows.append(run_client_case(case, listener, ccmd, profile_args))
                    report_row(rows[-1])
                    # A client that connected twice (a retry) must not leak into the next case.
                    drain_listener(listener)
            finally:
                listener.close()
    finally:
        stop_all()

    elapsed = time.monotonic() - started
    print()
    print_table(rows)
    counts = section_counts(rows)
    print()
    print("by section (OK / NON-STRICT / FAILED / UNIMPLEMENTED):")
    for (role, sec), t in sorted(counts.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        print("  %-6s %-3s %3d / %3d / %3d / %3d" % (role, sec, t["OK"], t["NON-STRICT"], t["FAILED"],
                                                   t["UNIMPLEMENTED"]))
    unimpl = sum(1 for r in rows if r["verdict"] == "UNIMPLEMENTED")
    failed = sum(1 for r in rows if r["verdict"] == "FAILED")
    passed = len(rows) - failed - unimpl
    nonstrict = sum(1 for r in rows if r["verdict"] == "NON-STRICT")
    print("total %.1f s; %d OK, %d NON-STRICT, %d UNIMPLEMENTED (permessage-deflate not negotiated; "
          "not counted)" % (elapsed, passed - nonstrict, nonstrict, unimpl))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": round(elapsed, 2), "passed": passed, "failed": failed,
                       "non_strict": nonstrict, "unimplemented": unimpl,
                       "sections": {"%s %s" % k: v for k, v in sorted(counts.items())},
                       "cases": rows}, f, indent=1)
    if args.markdown:
        write_markdown(args.markdown, rows, counts, elapsed)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


SECTION_NAMES = {"1": "framing", "2": "pings/pongs", "3": "reserved bits", "4": "opcodes",
                 "5": "fragmentation", "6": "UTF-8 handling", "7": "close handling",
                 "9": "limits/performance (scaled)", "10": "misc", "12": "compression: echo",
                 "13": "compression: parameters"}


def write_markdown(path, rows, counts, elapsed):
    with open(path, "w") as f:
        roles = sorted({role for role, _ in counts}, reverse=True)
        for role in roles:
            f.write("### duplex %s\n\n| section | cases | OK | NON-STRICT | FAILED | UNIMPLEMENTED |\n"
                    "|---|---:|---:|---:|---:|---:|\n" % ("echo-server" if role == "server" else "connect --echo"))
            tot = {"OK": 0, "NON-STRICT": 0, "FAILED": 0, "UNIMPLEMENTED": 0}
            for (r, sec), t in sorted(counts.items(), key=lambda kv: int(kv[0][1])):
                if r != role:
                    continue
                for k in tot:
                    tot[k] += t[k]
                f.write("| %s %s | %d | %d | %d | %d | %d |\n" % (sec, SECTION_NAMES.get(sec, ""), sum(t.values()),
                                                                  t["OK"], t["NON-STRICT"], t["FAILED"],
                                                                  t["UNIMPLEMENTED"]))
            f.write("| **total** | %d | %d | %d | %d | %d |\n\n" % (sum(tot.values()), tot["OK"], tot["NON-STRICT"],
                                                                    tot["FAILED"], tot["UNIMPLEMENTED"]))
        odd = [r for r in rows if r["verdict"] not in ("OK", "UNIMPLEMENTED")]
        if odd:
            f.write("| case | role | verdict | detail |\n|---|---|---|---|\n")
            for r in odd:
                f.write("| %s | %s | %s | %s |\n" % (r["id"], r["role"], r["verdict"],
                                                     r["detail"].replace("|", "\\|").replace("\n", " ")[:200]))
            f.write("\n")
        f.write("Run time: %.1f s.\n" % elapsed)


def report_row(r):
    if os.environ.get("CONFORMANCE_VERBOSE"):
        sys.stderr.write("%s %s %s %.2f %s\n" % (r["id"], r["role"], r["verdict"], r["seconds"], r["detail"][:200]))


def drain_listener(listener):
    while True:
        r, _, _ = select.select([listener], [], [], 0)
        if not r:
            return
        s, _ = listener.accept()
        s.close()


if __name__ == "__main__":
    sys.exit(main())
