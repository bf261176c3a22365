"""
Traffic limiter rates over wall-clock time (issue 21.3).

    python3 bench/limiter_bench.py [--rate 1MB] [--seconds 5]

Starts a sink target and one gostrelay forwarder in front of it with
C{limiter.conn.in=RATE} (what each client sends) and
C{limiter.in=2*RATE} (the whole service), then:

  - one client sending as fast as it can for SECONDS: its rate should be
    RATE (plus one second's burst spread over the run);
  - three clients at once: the service limit (2*RATE) is shared.

Prints bytes per second measured at the target.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from relay_bench import Processes, freePort  # noqa: E402

from gostrelay.limiter import parseRate  # noqa: E402


def sink(port: int, counter: list[int]) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)

    def serve(conn: socket.socket) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            counter[0] += len(data)
        conn.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def blast(port: int, seconds: float) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port)) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.sendall(chunk)


def measure(port: int, clients: int, seconds: float, counter: list[int]) -> float:
    counter[0] = 0
    threads = [threading.Thread(target=blast, args=(port, seconds)) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    time.sleep(0.5)
    return counter[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", default="1MB")
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args()
    rate = parseRate(options.rate)
    counter = [0]
    targetPort, entryPort = freePort(), freePort()
    server = sink(targetPort, counter)
    procs = Processes()
    try:
        procs.gostrelay(
            "-L", f"tcp://127.0.0.1:{entryPort}/127.0.0.1:{targetPort}"
            f"?limiter.conn.in={options.rate}&limiter.in={2 * rate}B",
            wait=entryPort,
        )
        one = measure(entryPort, 1, options.seconds, counter)
        three = measure(entryPort, 3, options.seconds, counter)
        print(f"limit per connection {rate} B/s, service {2 * rate} B/s, {options.seconds:g} s runs")
        print(f"1 client : {one:12.0f} B/s  ({one / rate:.2f} x the connection limit)")
        print(f"3 clients: {three:12.0f} B/s  ({three / (2 * rate):.2f} x the service limit)")
    finally:
        procs.stop()
        server.close()


if __name__ == "__main__":
    main()
