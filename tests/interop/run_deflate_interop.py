#!/usr/bin/python3
"""permessage-deflate interoperability between duplex's CLI and peers we did not write.

  run_deflate_interop.py --duplex BIN peer-client --peer python|node|chromium
                         [--no-context-takeover]
      `duplex echo-server --deflate -v` and the peer's client against it. The
      Python and Node clients (peers/deflate_*_peer.py|js) offer compression,
      check the negotiated answer, and echo text, binary, fragmented, 8 MiB and
      burst messages (Node also 16 MiB compressed with ws's default limits, and
      4 MiB in 64-byte fragments, whose echo must come in at most 65 frames); headless Chromium (which always offers compression)
      does the same from peers/deflate_browser_client.html, driven through
      peers/chromium_peer.py's DevTools machinery. Then the
      echo server's log must show permessage-deflate on every connection.

  run_deflate_interop.py --duplex BIN duplex-client --peer python|node
                         [--no-context-takeover]
      The peer's compressing echo server and `duplex connect --deflate`
      against it: the connected event names the extension, lines of JSON are
      echoed (also sent in fragments with --fragment-size), a 1 MiB line, a
      burst, and fragmented compressed messages from the peer; the peer's log
      must show permessage-deflate on every connection.

Reuses run_interop.py's process handling. Prints "ok NAME" / "FAIL NAME: why"
and "N passed, N failed"; exits 1 on any failure.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "peers"))

from run_interop import PEERS, PYTHON, Failure, Server, node_env, run  # noqa: E402
from deflate_py_peer import json_text  # noqa: E402


def extension_lines(log):
    return [line for line in log.splitlines() if "extensions: " in line]


def check_log(log, connections, nct):
    """Every connection logged a permessage-deflate answer (with both
    no_context_takeover parameters when asked)."""
    lines = extension_lines(log)
    if len(lines) < connections:
        raise Failure(f"{len(lines)} connections with extensions logged, expected >= {connections}: "
                      f"{log[-600:]!r}")
    for line in lines:
        if "permessage-deflate" not in line:
            raise Failure(f"a connection without compression: {line!r}")
        if nct and ("server_no_context_takeover" not in line
                    or "client_no_context_takeover" not in line):
            raise Failure(f"no_context_takeover missing: {line!r}")
    return lines


def peer_client(args):
    extra = ["--deflate-no-context-takeover"] if args.no_context_takeover else []
    server = Server([args.duplex, "echo-server", "--port", "0", "--threads", "2", "--deflate",
                     "-v", "--protocol", "chat", *extra])
    failed = 0
    try:
        if args.peer == "python":
            cmd = [PYTHON, os.path.join(PEERS, "deflate_py_peer.py"), "client", "--url", server.url]
        elif args.peer == "node":
            cmd = ["node", os.path.join(PEERS, "deflate_node_peer.js"), "client", "--url", server.url]
        else:
            cmd = [PYTHON, os.path.join(PEERS, "deflate_chromium_peer.py"), "--url", server.url,
                   "--timeout", "30"]
        if args.no_context_takeover and args.peer != "chromium":
            cmd.append("--no-context-takeover")
        result = run(cmd, timeout=600, env=node_env())
        sys.stdout.write(result.stdout.decode(errors="replace"))
        sys.stderr.write(result.stderr.decode(errors="replace"))
        if result.returncode != 0:
            failed += 1
            print(f"FAIL {args.peer}-client: exit {result.returncode}")
        else:
            print(f"ok {args.peer}-client")
    finally:
        status, log = server.stop()
    try:
        # Every peer opens one connection per scenario.
        connections = {"chromium": 5, "node": 8}.get(args.peer, 6)
        lines = check_log(log, connections, args.no_context_takeover)
        print(f"ok server-log: {len(lines)} connections, e.g. {lines[0].split('extensions: ')[1]!r}")
    except Failure as e:
        failed += 1
        print(f"FAIL server-log: {e}")
    if status != 0:
        failed += 1
        print(f"FAIL echo-server-stop: exit status {status}")
    else:
        print("ok echo-server-stop")
    print(f"{3 - failed} passed, {failed} failed")  # peer client, server log, server stop
    return 1 if failed else 0


def duplex_client(args):
    nct = ["--no-context-takeover"] if args.no_context_takeover else []
    if args.peer == "python":
        cmd = [PYTHON, os.path.join(PEERS, "deflate_py_peer.py"), "server", *nct]
    else:
        cmd = ["node", os.path.join(PEERS, "deflate_node_peer.js"), "server", *nct]
    server = Server(cmd, env=node_env())
    flags = ["--deflate"] + (["--deflate-no-context-takeover"] if args.no_context_takeover else [])

    def connect(*options, stdin=b""):
        return run([args.duplex, "connect", "--reply-timeout", "30", "--connect-timeout", "10",
                    *flags, *options, server.url], stdin=stdin, timeout=120)

    def expect_echo(r, text, what):
        if r.returncode != 0:
            raise Failure(f"{what}: exit {r.returncode}, {r.stderr.decode(errors='replace')[-300:]!r}")
        if r.stdout.decode() != text:
            raise Failure(f"{what}: stdout differs ({len(r.stdout)} bytes, expected {len(text)})")

    def negotiated():
        r = connect("--json", stdin=b"one\n")
        events = [json.loads(line) for line in r.stdout.decode().splitlines()]
        if not events or events[0].get("event") != "connected":
            raise Failure(f"events {events}")
        ext = events[0].get("extensions", "")
        if not ext.startswith("permessage-deflate"):
            raise Failure(f"connected without compression: {events[0]}")
        if args.no_context_takeover and "server_no_context_takeover" not in ext:
            raise Failure(f"answer {ext!r}")
        print(f"  duplex client negotiated: {ext}", flush=True)

    def lines():
        text = "".join(json_text(3000 + 11 * i, i) + "\n" for i in range(50))
        expect_echo(connect(stdin=text.encode()), text, "50 JSON lines")

    def fragmented_from_duplex():
        text = "".join(json_text(20000, i) + "\n" for i in range(5))
        expect_echo(connect("--fragment-size", "4000", stdin=text.encode()), text,
                    "fragmented lines")

    def big_line():
        text = json_text(1 << 20, 4) + "\n"
        expect_echo(connect(stdin=text.encode()), text, "1 MiB line")

    def burst():
        text = "".join(f"burst {i} {json_text(80, i)}\n" for i in range(1000))
        expect_echo(connect(stdin=text.encode()), text, "burst")

    def fragmented_from_peer():
        r = connect(stdin=b"fragments:7:50000\n")
        expect_echo(r, json_text(50000, 7) + "\n", "fragmented message from the peer")

    scenarios = [("negotiated", negotiated), ("json-lines", lines),
                 ("fragmented-from-duplex", fragmented_from_duplex), ("line-1MiB", big_line),
                 ("burst-1000", burst), ("fragmented-from-peer", fragmented_from_peer)]
    failed = 0
    try:
        for name, fn in scenarios:
            try:
                fn()
                print(f"ok {name}", flush=True)
            except Failure as e:
                failed += 1
                print(f"FAIL {name}: {e}", flush=True)
    finally:
        _, log = server.stop()
    try:
        lines = check_log(log, len(scenarios), args.no_context_takeover)
        print(f"ok peer-log: {len(lines)} connections, e.g. {lines[0].split('extensions: ')[1]!r}")
    except Failure as e:
        failed += 1
        print(f"FAIL peer-log: {e}")
    print(f"{len(scenarios) + 1 - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplex", required=True)
    parser.add_argument("mode", choices=["peer-client", "duplex-client"])
    parser.add_argument("--peer", required=True, choices=["python", "node", "chromium"])
    parser.add_argument("--no-context-takeover", action="store_true")
    args = parser.parse_args()
    try:
        if args.mode == "peer-client":
            return peer_client(args)
        if args.peer == "chromium":
            raise Failure("Chromium is a client only")
        return duplex_client(args)
    except Failure as e:
        print(f"FAIL setup: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
