"""
Memory per idle established connection through a relay chain.

    python3 bench/idle_rss.py [--connections 1000]

Starts a relay server and a tcp forwarder in front of it (two gostrelay
processes) and an echo target, opens N connections through the chain, sends
one byte on each (so every relay connection is established; a few bytes
stay below spliceThreshold, so nothing is spliced),
and reports how much each process's resident memory grew per connection.
Target (issue 9): at most 20 KiB per relay connection on each side.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from relay_bench import Processes, echoServer, freePort  # noqa: E402


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    procs = Processes()
    target = freePort()
    echo = echoServer(target)
    relay, local = freePort(), freePort()
    server = procs.gostrelay("-L", f"relay://127.0.0.1:{relay}", wait=relay)
    client = procs.gostrelay("-L", f"tcp://127.0.0.1:{local}/127.0.0.1:{target}", "-F", f"relay://127.0.0.1:{relay}", wait=local)
    time.sleep(0.5)
    before = {name: rssKiB(p.pid) for name, p in (("relay server", server), ("tcp forwarder", client))}
    sockets = []
    try:
        for _ in range(options.connections):
            s = socket.create_connection(("127.0.0.1", local))
            s.sendall(b"x")
            sockets.append(s)
        for s in sockets:
            s.recv(1)
        time.sleep(1.0)
        after = {name: rssKiB(p.pid) for name, p in (("relay server", server), ("tcp forwarder", client))}
    finally:
        for s in sockets:
            s.close()
        procs.stop()
        echo.close()
    print(f"# {options.connections} idle established connections through tcp forward -> relay -> echo")
    print("| process | RSS before (KiB) | RSS after (KiB) | per connection (KiB) |")
    print("|---|---|---|---|")
    for name in before:
        print(f"| {name} | {before[name]} | {after[name]} | {(after[name] - before[name]) / options.connections:.1f} |")


if __name__ == "__main__":
    main()
