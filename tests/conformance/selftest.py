#!/usr/bin/python3
"""Self-test of the conformance gate: runs it against mutant_peer.py, a small
echo peer, first well-behaved (every selected case must pass), then with one
fault at a time (the cases that check that rule must FAIL). Proves the gate can
fail on each kind of check, in both roles. Exit status 0 when all hold."""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
PEER = "%s %s" % (PY, os.path.join(HERE, "mutant_peer.py"))

# Rules the mutant implements (it validates UTF-8 only at message end, and sizes
# only on whole messages, so fail-fast cases 6.4.x and 9.9.5 are left out).
GOOD_CASES = "1.1.*,1.2.1,2.*,3.*,4.*,5.*,6.1.*,6.2.*,6.3.*,6.12.*,7.*,9.9.1,9.9.2,9.9.3,9.9.4,10.2.*,10.3.*,10.4.*"
# One process per case in the client role: a smaller set keeps the self-test short.
GOOD_CLIENT_CASES = ("1.1.1,1.1.6,1.2.8,2.*,3.2,3.4,4.1.3,5.6,5.7,5.15,5.19,6.2.3,6.3.1,7.1.*,7.3.*,7.7.1,7.9.1,"
                     "9.9.2,10.2.1,10.3.*")

CHECKS = [
    # (role, fault, cases, ids that must FAIL)
    ("server", "none", GOOD_CASES, []),
    ("client", "none", GOOD_CLIENT_CASES, []),
    ("server", "wrong-close-code", "3.1,7.9.1,7.7.10", ["3.1", "7.9.1", "7.7.10"]),
    ("client", "wrong-close-code", "3.1,6.3.1", ["3.1", "6.3.1"]),
    ("server", "no-close-frame", "4.1.1,5.18", ["4.1.1", "5.18"]),
    ("client", "no-close-frame", "4.1.1", ["4.1.1"]),
    ("server", "no-pong", "2.2,5.19", ["2.2", "5.19"]),
    ("client", "no-pong", "2.2", ["2.2"]),
    ("server", "keep-tcp-open", "1.1.1,7.3.3", ["1.1.1", "7.3.3"]),
    ("server", "ignore-rsv", "3.1,3.5", ["3.1", "3.5"]),
    ("client", "ignore-rsv", "3.1", ["3.1"]),
    ("server", "text-as-binary", "1.1.2,6.2.1", ["1.1.2", "6.2.1"]),
    ("client", "text-as-binary", "1.1.2", ["1.1.2"]),
    ("server", "mask-from-server", "1.1.2", ["1.1.2"]),
    ("client", "exit-1", "1.1.2,2.1", ["1.1.2", "2.1"]),
]


def main():
    bad = []
    for role, fault, cases, must_fail in CHECKS:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            flag = "--server-cmd" if role == "server" else "--client-cmd"
            cmd = PEER + (" echo-server" if role == "server" else " connect --echo") + " --fault " + fault
            proc = subprocess.run([PY, os.path.join(HERE, "run_conformance.py"), "--role", role, flag, cmd,
                                   "--deflate", "off", "--cases", cases, "--json", out.name],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            report = json.load(open(out.name))
        verdicts = {r["id"]: r for r in report["cases"]}
        failed = sorted(i for i, r in verdicts.items() if r["verdict"] == "FAILED")
        problems = []
        for cid in must_fail:
            if cid not in verdicts or verdicts[cid]["verdict"] != "FAILED":
                problems.append("%s should be FAILED, is %s" % (cid, verdicts.get(cid, {}).get("verdict")))
        for cid in failed:
            if cid not in must_fail:
                problems.append("%s FAILED unexpectedly: %s" % (cid, verdicts[cid]["detail"][:200]))
        if (proc.returncode != 0) != bool(must_fail):
            problems.append("runner exit status %d" % proc.returncode)
        print("%-6s fault=%-17s %3d cases, FAILED %-24s %s" % (role, fault, len(verdicts), ",".join(failed) or "-",
                                                              "ok" if not problems else "WRONG"))
        for p in problems:
            print("    " + p)
        bad.extend(problems)
    print("self-test: %d checks, %d problems" % (len(CHECKS), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
