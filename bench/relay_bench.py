"""
Throughput, CPU cost and connection rate of gostrelay relay chains, side by
side with direct connections and socat, on loopback.

    python3 bench/relay_bench.py [--seconds 3] [--rounds 3]

Needs iperf3 and socat (Debian: apt-get install iperf3 socat).  Each setup
is measured in rounds, interleaved (A B C A B C ...), and the table shows
medians and ratios to direct from this one run.  Setups:

  direct          iperf3 client -> iperf3 server
  socat           client -> socat (one userspace hop) -> server
  ours splice     client -> gostrelay tcp forward -> gostrelay relay -> server
  ours userspace  the same with splice=false on both handlers
  ours 2 workers  "ours splice" with --workers 2 on both processes
  ours tls, ws    the same chain with relay+tls / relay+ws between the two processes

"CPU s/GB" adds the user+system CPU time of every process in the chain
(from /proc) and divides by the bytes moved.  "conn/s" is new connections
per second through the chain (32 concurrent clients, each connect, 1 byte
echoed, close), measured against an echo server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def cpuSeconds(pid: int) -> float:
    """
    User+system CPU of C{pid} and its children (workers, socat's forks).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / CLK_TCK
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return total + sum(cpuSeconds(c) for c in children)


def waitPort(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = tempfile.mkdtemp(prefix="gostrelay-bench-")

    def start(self, args: list[str], wait: int | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=ROOT, HOME=self.tmp)
        proc = subprocess.Popen(args, cwd=self.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        if wait is not None:
            waitPort(wait)
        return proc

    def gostrelay(self, *args: str, wait: int | None = None) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "-m", "gostrelay", *args], wait)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def echoServer(port: int) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)

    def serve(conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
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


def iperf(port: int, seconds: float, streams: int) -> tuple[float, float]:
    for attempt in range(10):
        out = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams), "-J"],
            capture_output=True, timeout=seconds + 30,
        )
        data = json.loads(out.stdout)
        if "busy" in data.get("error", "") and attempt < 9:
            time.sleep(1.0)  # the previous test's teardown is still in flight
            continue
        break
    if "error" in data:
        raise RuntimeError(data["error"])
    end = data["end"]["sum_received"]
    return end["bits_per_second"], end["bytes"]


def connectionRate(port: int, seconds: float, concurrency: int = 32) -> float:
    stop = time.time() + seconds
    counts = [0] * concurrency

    def worker(i: int) -> None:
        while time.time() < stop:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b"x")
                if s.recv(1) == b"x":
                    counts[i] += 1
                s.close()
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    procs = Processes()
    iperfPort, echoPort = freePort(), freePort()
    procs.start(["iperf3", "-s", "-p", str(iperfPort)])
    echo = echoServer(echoPort)
    time.sleep(0.5)

    setups: dict[str, dict[str, int | list[int]]] = {"direct": {"iperf": iperfPort, "echo": echoPort, "pids": []}}
    print("starting setups...", file=sys.stderr)

    def chain(name: str, serverScheme: str, extra: str = "", workers: int = 1) -> None:
        relay = freePort()
        flags = ["--workers", str(workers)] if workers > 1 else []
        server = procs.gostrelay(*flags, "-L", f"{serverScheme}://127.0.0.1:{relay}{extra}", wait=relay)
        ports = {}
        pids = [server.pid]
        for what, target in (("iperf", iperfPort), ("echo", echoPort)):
            local = freePort()
            client = procs.gostrelay(
                *flags,
                "-L", f"tcp://127.0.0.1:{local}/127.0.0.1:{target}{extra}",
                "-F", f"{serverScheme}://127.0.0.1:{relay}", wait=local,
            )
            ports[what] = local
            pids.append(client.pid)
        setups[name] = {"iperf": ports["iperf"], "echo": ports["echo"], "pids": pids}

    socatIperf, socatEcho = freePort(), freePort()
    s1 = procs.start(["socat", f"TCP-LISTEN:{socatIperf},fork,reuseaddr,bind=127.0.0.1", f"TCP:127.0.0.1:{iperfPort}"], socatIperf)
    s2 = procs.start(["socat", f"TCP-LISTEN:{socatEcho},fork,reuseaddr,bind=127.0.0.1", f"TCP:127.0.0.1:{echoPort}"], socatEcho)
    setups["socat"] = {"iperf": socatIperf, "echo": socatEcho, "pids": [s1.pid, s2.pid]}
    chain("ours splice", "relay")
    chain("ours userspace", "relay", "?splice=false")
    chain("ours splice, 2 workers", "relay", workers=2)
    chain("ours tls", "relay+tls")
    chain("ours ws", "relay+ws")
    time.sleep(1.0)

    results: dict[str, dict[str, list[float]]] = {name: {"bps1": [], "bps4": [], "cpu": [], "conn": []} for name in setups}
    try:
        for _ in range(options.rounds):
            for name, setup in setups.items():
                pids = setup["pids"]
                assert isinstance(pids, list)
                before = sum(cpuSeconds(p) for p in pids)
                bps, moved = iperf(int(setup["iperf"]), options.seconds, 1)  # type: ignore[arg-type]
                after = sum(cpuSeconds(p) for p in pids)
                results[name]["bps1"].append(bps)
                results[name]["cpu"].append((after - before) / (moved / 1e9) if pids else float("nan"))
                bps4, _ = iperf(int(setup["iperf"]), options.seconds, 4)  # type: ignore[arg-type]
                results[name]["bps4"].append(bps4)
                results[name]["conn"].append(connectionRate(int(setup["echo"]), options.seconds))  # type: ignore[arg-type]
    finally:
        procs.stop()
        echo.close()

    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    base = med["direct"]
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{options.rounds} rounds x {options.seconds:g}s, medians")
    print("| setup | 1 stream Gbit/s | ratio | 4 streams Gbit/s | ratio | CPU s/GB (chain) | conn/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in med.items():
        print(
            f"| {name} | {m['bps1'] / 1e9:.2f} | {m['bps1'] / base['bps1']:.2f}x | {m['bps4'] / 1e9:.2f} | "
            f"{m['bps4'] / base['bps4']:.2f}x | {'-' if m['cpu'] != m['cpu'] else format(m['cpu'], '.2f')} | {m['conn']:.0f} | {m['conn'] / base['conn']:.2f}x |"
        )


if __name__ == "__main__":
    main()
