"""
Throughput and CPU cost of one relay+kcp stream on loopback.

    python3 bench/kcp_bench.py [--seconds 5] [--rounds 3]
    python3 bench/kcp_bench.py --profile "fast3 + windows 1024" [--seconds 5]

The chain is GOST's own benchmark shape: iperf3 client -> gostrelay tcp
forward (``-L tcp://127.0.0.1:F/127.0.0.1:T -F relay+kcp://127.0.0.1:K?Q``)
-> gostrelay relay+kcp server (``-L relay+kcp://127.0.0.1:K?Q``) -> iperf3
server on T.  One iperf3 stream, client to server.  Setups (Q on both
sides):

  defaults            (no kcp option: windows 32/32, no mode, FEC 10/3, snappy)
  windows 1024        kcp.sndwnd=1024&kcp.rcvwnd=1024
  fast3 + windows 1024  kcp.mode=fast3&kcp.sndwnd=1024&kcp.rcvwnd=1024

Each setup's two processes run for the whole benchmark; setups are measured
in interleaved rounds (A B C A B C ...) and the table shows medians.  "CPU
ms/MB" is the user+system CPU time of each gostrelay process (from
/proc/PID/stat) divided by the megabytes iperf3's receiver got.  GOST's
numbers are iperf3 through the same chain between two real GOST processes
on this machine (the anchors the project was given).

--profile SETUP runs that setup once with both gostrelay processes under
``python -m cProfile -o FILE -m gostrelay ...``, stops them with SIGTERM
(cProfile writes its file as the process exits) and prints the top entries
of each by own time (and the files' paths, for pstats/snakeviz).

Needs iperf3 (Debian: apt-get install iperf3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

SETUPS = {
    "defaults": "",
    "windows 1024": "kcp.sndwnd=1024&kcp.rcvwnd=1024",
    "fast3 + windows 1024": "kcp.mode=fast3&kcp.sndwnd=1024&kcp.rcvwnd=1024",
}

#: Real GOST <-> GOST through the same chain on this machine (Mbit/s).
GOST_MBITS = {"defaults": 25.0, "windows 1024": 33.0, "fast3 + windows 1024": 668.0}

#: Ours must reach this fraction of GOST.
TARGETS = {"defaults": 1.0, "windows 1024": 1.0, "fast3 + windows 1024": 0.5}


def freePort(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def cpuSeconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def waitTCP(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"TCP port {port} never opened")


def waitLog(path: str, text: str, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                if text in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{path}: no {text!r} within {timeout:g}s")


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = tempfile.mkdtemp(prefix="gostrelay-kcp-bench-")

    def start(self, args: list[str], log: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=ROOT, HOME=self.tmp)
        out = open(os.path.join(self.tmp, log), "wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(args, cwd=self.tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def gostrelay(self, args: list[str], log: str, profile: str | None = None) -> subprocess.Popen[bytes]:
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", profile]
        return self.start(prefix + ["-m", "gostrelay", *args], log)

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        targets = self.procs if procs is None else procs
        for proc in targets:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in targets:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Chain:
    """
    One setup's two gostrelay processes.
    """

    def __init__(self, procs: Processes, name: str, query: str, iperfPort: int, profileDir: str | None = None) -> None:
        self.name = name
        kcpPort, self.port = freePort(socket.SOCK_DGRAM), freePort()
        suffix = f"?{query}" if query else ""
        tag = name.replace(" ", "_").replace("+", "")
        self.serverLog = os.path.join(procs.tmp, f"{tag}-server.log")
        self.profiles = (
            (os.path.join(profileDir, f"{tag}-server.prof"), os.path.join(profileDir, f"{tag}-client.prof"))
            if profileDir else (None, None)
        )
        self.server = procs.gostrelay(
            ["-L", f"relay+kcp://127.0.0.1:{kcpPort}{suffix}"], os.path.basename(self.serverLog), self.profiles[0]
        )
        waitLog(self.serverLog, "listening on")
        self.client = procs.gostrelay(
            ["-L", f"tcp://127.0.0.1:{self.port}/127.0.0.1:{iperfPort}", "-F", f"relay+kcp://127.0.0.1:{kcpPort}{suffix}"],
            f"{tag}-client.log", self.profiles[1],
        )
        waitTCP(self.port)

    @property
    def pids(self) -> tuple[int, int]:
        return self.client.pid, self.server.pid


def iperf(port: int, seconds: float) -> tuple[float, int]:
    """
    One iperf3 stream through C{port}: (bits/s, bytes) as the receiver saw
    them.
    """
    data: dict = {}
    for attempt in range(10):
        out = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
            capture_output=True, timeout=seconds + 60,
        )
        data = json.loads(out.stdout or b"{}")
        if "busy" in data.get("error", "") and attempt < 9:
            time.sleep(1.0)
            continue
        break
    if "error" in data:
        raise RuntimeError(data["error"])
    end = data["end"]["sum_received"]
    return end["bits_per_second"], end["bytes"]


def measure(chain: Chain, seconds: float) -> dict[str, float]:
    clientPid, serverPid = chain.pids
    c0, s0 = cpuSeconds(clientPid), cpuSeconds(serverPid)
    bps, moved = iperf(chain.port, seconds)
    c1, s1 = cpuSeconds(clientPid), cpuSeconds(serverPid)
    mb = moved / 1e6
    return {
        "mbits": bps / 1e6,
        "clientMsPerMB": (c1 - c0) * 1000 / mb if mb else float("nan"),
        "serverMsPerMB": (s1 - s0) * 1000 / mb if mb else float("nan"),
    }


def table(results: dict[str, list[dict[str, float]]], seconds: float, rounds: int) -> str:
    lines = [
        f"# {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"1 iperf3 stream, {rounds} round(s) x {seconds:g}s, medians",
        "| setup | ours Mbit/s | GOST Mbit/s | ours/GOST | target | met | CPU ms/MB client | CPU ms/MB server | CPU ms/MB both |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        ratio = med["mbits"] / GOST_MBITS[name]
        target = TARGETS[name]
        lines.append(
            f"| {name} | {med['mbits']:.1f} | {GOST_MBITS[name]:.0f} | {ratio:.2f}x | >= {target:g}x | "
            f"{'yes' if ratio >= target else 'NO'} | {med['clientMsPerMB']:.1f} | {med['serverMsPerMB']:.1f} | "
            f"{med['clientMsPerMB'] + med['serverMsPerMB']:.1f} |"
        )
    return "\n".join(lines)


def profile(name: str, seconds: float, top: int) -> None:
    procs = Processes()
    profileDir = tempfile.mkdtemp(prefix="gostrelay-kcp-profile-")
    iperfPort = freePort()
    iperfServer = procs.start(["iperf3", "-s", "-p", str(iperfPort)])
    time.sleep(0.5)
    try:
        chain = Chain(procs, name, SETUPS[name], iperfPort, profileDir)
        time.sleep(0.5)
        result = measure(chain, seconds)
        print(f"{name}: {result['mbits']:.1f} Mbit/s under cProfile (profiling slows it down)")
        procs.stop([chain.client, chain.server])
    finally:
        procs.stop([iperfServer])
        procs.stop()
    for what, path in zip(("server", "client"), (chain.profiles[0], chain.profiles[1])):
        assert path is not None
        print(f"\n## {what} ({path}), top {top} by own time")
        stats = pstats.Stats(path)
        stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setup", action="append", choices=list(SETUPS), help="only these setups (repeatable)")
    parser.add_argument("--profile", choices=list(SETUPS), help="profile one run of this setup instead")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()

    if options.profile:
        profile(options.profile, options.seconds, options.top)
        return

    names = options.setup or list(SETUPS)
    procs = Processes()
    iperfPort = freePort()
    procs.start(["iperf3", "-s", "-p", str(iperfPort)])
    time.sleep(0.5)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        chains = {name: Chain(procs, name, SETUPS[name], iperfPort) for name in names}
        time.sleep(0.5)
        for r in range(options.rounds):
            for name, chain in chains.items():
                result = measure(chain, options.seconds)
                results[name].append(result)
                print(f"round {r + 1}: {name}: {result['mbits']:.1f} Mbit/s", file=sys.stderr)
    finally:
        procs.stop()
    print(table(results, options.seconds, options.rounds))


if __name__ == "__main__":
    main()
