"""
New connections, latency, throughput and CPU cost of gostrelay relay
chains, side by side with direct connections and a bare two-process
Twisted chain, on loopback.

    python3 bench/relay_bench.py [--seconds 4] [--rounds 3] [--setups direct,bare,tcp,tls,wss]
                                 [--tests conn,latency,bulk1,bulk4]

Needs wrk, nginx and iperf3 (Debian: apt-get install wrk nginx-light
iperf3).  Setups, each GOST's shape (two processes between client and
backend):

  direct  the client talks to the backend
  bare    twisted.protocols.portforward twice (two processes, no relay, no
          features): the floor a Twisted relay chain's per-connection
          work can approach
  tcp     gostrelay tcp forward -> gostrelay relay server -> backend
  tls     the same with relay+tls between the two processes
  wss     the same with relay+wss between the two processes

Tests, run for every setup in interleaved rounds (A B C ... A B C ...):

  conn     wrk -t1 -c32 -H "Connection: close" against nginx serving
           1 KiB: one new connection through the whole chain per request;
           requests/s, p50/p99 latency, CPU per connection
  latency  the same with -c1 (unloaded per-connection latency)
  bulk1/4  iperf3 with 1 and 4 streams: Gbit/s and CPU s/GB

"CPU" adds the user+system time of every chain process (from
/proc/PID/stat) over the test and divides by the connections made or the
bytes moved.  Medians over the rounds; ratios to direct and to the bare
chain from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

BARE = """
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from twisted.protocols.portforward import ProxyFactory
listen, port = int(sys.argv[1]), int(sys.argv[2])
factory = ProxyFactory("127.0.0.1", port)
factory.noisy = False
reactor.listenTCP(listen, factory, backlog=1024, interface="127.0.0.1")
reactor.run()
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
{listen}
        root {dir}/www;
        location / {{ }}
    }}
}}
"""


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def cpuSeconds(pid: int) -> float:
    """
    User+system CPU of C{pid} and its children (workers).
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

    def start(self, args: list[str], wait: int | None = None, tree: str = ROOT) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=tree, HOME=self.tmp)
        proc = subprocess.Popen(args, cwd=self.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        if wait is not None:
            waitPort(wait)
        return proc

    def gostrelay(self, *args: str, wait: int | None = None, tree: str = ROOT) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "-m", "gostrelay", *args], wait, tree)

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
        shutil.rmtree(self.tmp, ignore_errors=True)


def echoServer(port: int) -> socket.socket:
    """
    A threaded echo server in this process (for bench/idle_rss.py).
    """
    import threading

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


def nginx(procs: Processes, count: int) -> list[int]:
    """
    nginx serving 1 KiB on C{count} ports: each wrk run against it directly
    gets a port of its own, so that the TIME_WAIT sockets of one run (tens
    of thousands of closed connections) do not leave the next without
    ephemeral ports.
    """
    ports = [freePort() for _ in range(count)]
    base = os.path.join(procs.tmp, "nginx")
    os.makedirs(os.path.join(base, "www"), exist_ok=True)
    os.chmod(procs.tmp, 0o755)  # nginx's worker (nobody) reads the page
    with open(os.path.join(base, "www", "index.html"), "wb") as f:
        f.write(b"x" * 1024)
    conf = os.path.join(base, "nginx.conf")
    with open(conf, "w") as f:
        listen = "\n".join(f"        listen 127.0.0.1:{port} backlog=4096;" for port in ports)
        f.write(NGINX_CONF.format(dir=base, listen=listen))
    procs.start(["nginx", "-p", base, "-c", conf], ports[0])
    return ports


def iperf(port: int, seconds: float, streams: int) -> tuple[float, float]:
    data: dict = {}
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


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port: int, seconds: float, connections: int) -> dict[str, float]:
    """
    wrk -t1 -cN -H "Connection: close" --latency: requests/s, p50 and p99
    latency (ms), completed requests and errors.
    """
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-H", "Connection: close", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    result = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "requests": 0.0, "errors": 0.0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        result["requests"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            result[key] = float(m.group(1)) * _UNITS[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["errors"] += int(m.group(1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", default="direct,bare,tcp,tls,wss")
    parser.add_argument("--tests", default="conn,latency,bulk1,bulk4")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument(
        "--baseline",
        help="another gostrelay source tree (e.g. git worktree add /tmp/base COMMIT): its tcp, tls and wss "
        "chains are measured in the same rounds, as 'tcp@base', ...",
    )
    options = parser.parse_args()
    wanted = options.setups.split(",")
    tests = options.tests.split(",")

    procs = Processes()
    iperfPort = freePort()
    procs.start(["iperf3", "-s", "-p", str(iperfPort)])
    httpPorts = nginx(procs, 2 + 2 * options.rounds)
    httpPort, directPorts = httpPorts[0], httpPorts[2:]
    waitPort(iperfPort)

    # Each setup: its port in front of nginx and of iperf3, and the pids
    # whose CPU counts for each.
    setups: dict[str, dict[str, tuple[int, list[int]]]] = {}
    print("starting setups...", file=sys.stderr)
    if "direct" in wanted:
        setups["direct"] = {"http": (httpPort, []), "iperf": (iperfPort, [])}
    if "bare" in wanted:
        setups["bare"] = {}
        for what, backend in (("http", httpPorts[1]), ("iperf", iperfPort)):
            middle, front = freePort(), freePort()
            second = procs.start([sys.executable, "-c", BARE, str(middle), str(backend)], middle)
            first = procs.start([sys.executable, "-c", BARE, str(front), str(middle)], front)
            setups["bare"][what] = (front, [first.pid, second.pid])
    trees = [("", ROOT)] + ([("@base", os.path.abspath(options.baseline))] if options.baseline else [])
    for name, scheme in (("tcp", "relay"), ("tls", "relay+tls"), ("wss", "relay+wss")):
        if name not in wanted:
            continue
        for suffix, tree in trees:
            relay = freePort()
            server = procs.gostrelay("-L", f"{scheme}://127.0.0.1:{relay}", wait=relay, tree=tree)
            setups[name + suffix] = {}
            for what, backend in (("http", httpPort), ("iperf", iperfPort)):
                local = freePort()
                client = procs.gostrelay(
                    "-L", f"tcp://127.0.0.1:{local}/127.0.0.1:{backend}", "-F", f"{scheme}://127.0.0.1:{relay}",
                    wait=local, tree=tree,
                )
                setups[name + suffix][what] = (local, [client.pid, server.pid])
    time.sleep(1.0)

    keys = ("rps", "p50", "p99", "cpuConn", "errors", "rps1", "p50_1", "p99_1", "bps1", "cpu1", "bps4", "cpu4")
    results: dict[str, dict[str, list[float]]] = {name: {k: [] for k in keys} for name in setups}
    try:
        for r in range(options.rounds):
            print(f"round {r + 1}/{options.rounds}", file=sys.stderr)
            for name, setup in setups.items():
                port, pids = setup["http"]
                if name == "direct":
                    port = directPorts.pop()
                if "conn" in tests:
                    before = sum(cpuSeconds(p) for p in pids)
                    w = wrk(port, options.seconds, 32)
                    spent = sum(cpuSeconds(p) for p in pids) - before
                    results[name]["rps"].append(w["rps"])
                    results[name]["p50"].append(w["p50"])
                    results[name]["p99"].append(w["p99"])
                    results[name]["errors"].append(w["errors"])
                    results[name]["cpuConn"].append(spent / w["requests"] * 1e6 if pids and w["requests"] else float("nan"))
                if "latency" in tests:
                    if name == "direct":
                        port = directPorts.pop()
                    w = wrk(port, options.seconds, 1)
                    results[name]["rps1"].append(w["rps"])
                    results[name]["p50_1"].append(w["p50"])
                    results[name]["p99_1"].append(w["p99"])
                port, pids = setup["iperf"]
                for streams in (1, 4):
                    if f"bulk{streams}" not in tests:
                        continue
                    before = sum(cpuSeconds(p) for p in pids)
                    bps, moved = iperf(port, options.seconds, streams)
                    spent = sum(cpuSeconds(p) for p in pids) - before
                    results[name][f"bps{streams}"].append(bps)
                    results[name][f"cpu{streams}"].append(spent / (moved / 1e9) if pids else float("nan"))
    finally:
        procs.stop()

    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=1)

    def median(values: list[float]) -> float:
        values = [v for v in values if v == v]
        return statistics.median(values) if values else float("nan")

    med = {name: {k: median(v) for k, v in r.items()} for name, r in results.items()}
    direct = med.get("direct", {})
    bare = med.get("bare", {})

    def ratio(value: float, base: dict[str, float], key: str, invert: bool = False) -> str:
        b = base.get(key, float("nan"))
        if not b or b != b or value != value:
            return "-"
        return f"{(b / value if invert else value / b):.2f}x"

    def num(value: float, fmt: str) -> str:
        return "-" if value != value else format(value, fmt)

    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{options.rounds} interleaved rounds x {options.seconds:g}s, medians")
    if "conn" in tests or "latency" in tests:
        print()
        print("| setup | new conn/s (wrk -c32) | / direct | / bare | p50 ms | p99 ms | p99 / bare | CPU µs/conn (chain) | errors | -c1 p50 ms | -c1 p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, m in med.items():
            print(
                f"| {name} | {num(m['rps'], '.0f')} | {ratio(m['rps'], direct, 'rps')} | {ratio(m['rps'], bare, 'rps')} | "
                f"{num(m['p50'], '.2f')} | {num(m['p99'], '.2f')} | {ratio(m['p99'], bare, 'p99')} | {num(m['cpuConn'], '.0f')} | "
                f"{num(m['errors'], '.0f')} | {num(m['p50_1'], '.3f')} | {num(m['p99_1'], '.3f')} |"
            )
    if "bulk1" in tests or "bulk4" in tests:
        print()
        print("| setup | 1 stream Gbit/s | / direct | CPU s/GB | 4 streams Gbit/s | / direct | CPU s/GB |")
        print("|---|---|---|---|---|---|---|")
        for name, m in med.items():
            print(
                f"| {name} | {num(m['bps1'] / 1e9, '.2f')} | {ratio(m['bps1'], direct, 'bps1')} | {num(m['cpu1'], '.2f')} | "
                f"{num(m['bps4'] / 1e9, '.2f')} | {ratio(m['bps4'], direct, 'bps4')} | {num(m['cpu4'], '.2f')} |"
            )


if __name__ == "__main__":
    main()
