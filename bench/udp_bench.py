"""
UDP datagrams per second through C{udp://} -> relay -> target, against
direct, on loopback.

    python3 bench/udp_bench.py [--seconds 3] [--rounds 3] [--clients 8]

Each client sends a 64-byte datagram and waits for its echo (with a short
timeout, counting losses), for the duration; the table shows medians of
round-trips per second and the ratio to direct.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from relay_bench import Processes, freePort  # noqa: E402


def udpEcho(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))

    def serve() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
                sock.sendto(data, addr)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return sock


def freeUDPPort() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def waitUDP(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    while time.time() < deadline:
        s.sendto(b"ping", ("127.0.0.1", port))
        try:
            s.recvfrom(100)
            s.close()
            return
        except OSError:
            continue
    raise RuntimeError(f"no UDP echo through port {port}")


def rate(port: int, seconds: float, clients: int) -> float:
    stop = time.time() + seconds
    counts = [0] * clients
    payload = b"x" * 64

    def worker(i: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        while time.time() < stop:
            s.sendto(payload, ("127.0.0.1", port))
            try:
                s.recvfrom(100)
                counts[i] += 1
            except OSError:
                pass
        s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    options = parser.parse_args()
    procs = Processes()
    echoPort = freeUDPPort()
    echo = udpEcho(echoPort)
    relay, local = freePort(), freeUDPPort()
    procs.gostrelay("-L", f"relay://127.0.0.1:{relay}", wait=relay)
    procs.gostrelay("-L", f"udp://127.0.0.1:{local}/127.0.0.1:{echoPort}", "-F", f"relay://127.0.0.1:{relay}")
    waitUDP(local)
    setups = {"direct": echoPort, "ours udp -> relay": local}
    results: dict[str, list[float]] = {name: [] for name in setups}
    try:
        for _ in range(options.rounds):
            for name, port in setups.items():
                results[name].append(rate(port, options.seconds, options.clients))
    finally:
        procs.stop()
        echo.close()
    print(f"# {platform.node()} {os.cpu_count()} cpus, {options.clients} clients, 64 B datagrams, "
          f"{options.rounds} rounds x {options.seconds:g}s, medians")
    print("| setup | datagram round trips/s | ratio |")
    print("|---|---|---|")
    base = statistics.median(results["direct"])
    for name, values in results.items():
        m = statistics.median(values)
        print(f"| {name} | {m:.0f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
