#!/usr/bin/python3
"""Self-test of the interop harness, without duplex: each peer client (Python
websockets, Node ws, headless Chromium) against each peer echo server (Python,
Node) must pass every scenario, and against a server that does not select the
subprotocol and refuses nothing it must fail exactly the `subprotocol` and
`refused-handshake` scenarios. So the harness is known to pass and to fail on
its own, and a failure against duplex points at duplex.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_interop import PEERS, PYTHON, ALLOWED_ORIGIN, Failure, Server, node_env, run  # noqa: E402


def server_cmd(peer, extra):
    if peer == "python":
        return [PYTHON, os.path.join(PEERS, "py_peer.py"), "server", "--lifetime", "240", *extra]
    return ["node", os.path.join(PEERS, "node_peer.js"), "server", "--lifetime", "240", *extra]


def client_cmd(peer, url, refused_url):
    args = ["--url", url, "--refused-url", refused_url, "--timeout", "30"]
    if peer == "python":
        return [PYTHON, os.path.join(PEERS, "py_peer.py"), "client", *args]
    if peer == "node":
        return ["node", os.path.join(PEERS, "node_peer.js"), "client", *args]
    return [PYTHON, os.path.join(PEERS, "chromium_peer.py"), *args]


def main():
    failed = 0
    passed = 0
    for server_peer in ("python", "node"):
        servers = []
        try:
            good = Server(server_cmd(server_peer, ["--protocol", "chat"]), env=node_env())
            servers.append(good)
            refusing = Server(server_cmd(server_peer, ["--allow-origin", ALLOWED_ORIGIN]), env=node_env())
            servers.append(refusing)
            lax = Server(server_cmd(server_peer, []), env=node_env())
            servers.append(lax)
            for client_peer in ("python", "node", "chromium"):
                name = f"{client_peer}-client-vs-{server_peer}-server"
                r = run(client_cmd(client_peer, good.url, refusing.url), timeout=240, env=node_env())
                if r.returncode == 0:
                    passed += 1
                    print(f"ok {name}", flush=True)
                else:
                    failed += 1
                    print(f"FAIL {name}:\n{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')[-1000:]}",
                          flush=True)
                # Against the lax server the two negative scenarios must fail.
                name += "-must-fail"
                r = run(client_cmd(client_peer, lax.url, lax.url), timeout=240, env=node_env())
                out = r.stdout.decode(errors="replace")
                fails = sorted(line.split(":")[0][5:] for line in out.splitlines() if line.startswith("FAIL "))
                if r.returncode != 0 and fails == ["refused-handshake", "subprotocol"]:
                    passed += 1
                    print(f"ok {name}", flush=True)
                else:
                    failed += 1
                    print(f"FAIL {name}: exit {r.returncode}, failures {fails}:\n{out}", flush=True)
        except Failure as e:
            failed += 1
            print(f"FAIL {server_peer}-server: {e}", flush=True)
        finally:
            for s in servers:
                s.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
