"""
The reliability scenarios of tests/test_reliability.py at benchmark sizes,
against real C{python -m gostrelay} processes on 127.0.0.1:

    python3 bench/reliability.py                    # everything (about 2 minutes)
    python3 bench/reliability.py backpressure --seconds 10
    python3 bench/reliability.py slowloris --connections 2000
    python3 bench/reliability.py leaks --connections 20000
    python3 bench/reliability.py fuzz --examples 100000   # long: runs tests.test_fuzz

The code that runs is the CI tests' own (the scenario functions of
tests/support/scenarios.py, which tests/test_reliability.py runs at CI
sizes); only the sizes differ.  Each part prints a table;
C{--json FILE} also writes every number.  Needs Linux (/proc) and nothing
else beyond the test dependencies.

  backpressure  a sender pushing as fast as it can for --seconds through a
                two-hop chain (client, relay R1, relay R2: three processes)
                to a receiver that does not read; per process: idle RSS,
                the largest RSS seen (VmRSS sampled every 50 ms), CPU
                seconds during the push and in its last second; for the
                sender: bytes accepted, EAGAINs, bytes accepted in the last
                second, what one more non-blocking send got before EAGAIN;
                then the receiver reads and every byte is checked.
                Variants: splice (default), nosplice (splice=false), ws
                (relay+ws hops), rtcp (remote forwarding over smux).
  slowloris     --connections clients each send one byte of a relay request
                and stall (readTimeout=2s, backlog=4096); a well-behaved
                client's round trip (connect, CONNECT, 32 bytes echoed)
                alone and beside them, and when the stalled ones are closed.
  leaks         --connections short relay connections (a tenth each refused
                target, bad password, junk) in --rounds; descriptors and RSS
                of the relay server at the baseline and after each round.
  fuzz          tests.test_fuzz with GOSTRELAY_FUZZ_EXAMPLES=--examples
                (random seeds); prints trial's report with each test's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import defer, task  # noqa: E402

from gostrelay.operations import raiseFileLimit  # noqa: E402
from tests.support.lab import Lab  # noqa: E402
from tests.support.scenarios import RSS_BUDGET_KIB, VARIANTS, backPressure, noLeaks, slowloris  # noqa: E402

MIB = 1024 * 1024


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def machine() -> str:
    import twisted

    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Twisted {twisted.__version__}"
    )


def printBackPressure(results: list[dict[str, Any]]) -> None:
    print(f"\nBack-pressure: {results[0]['seconds']:g} s of pushing into a receiver that does not read")
    print(
        f"{'variant':9} {'process':7} {'idle MiB':>8} {'peak MiB':>8} {'growth MiB':>10} {'CPU s':>6} {'CPU last 1 s':>12}   "
        f"{'sent MiB':>8} {'last 1 s':>8} {'EAGAIN':>6} {'probe':>7} {'delivered':>9} {'intact':>6}"
    )
    for r in results:
        for i, name in enumerate(("client", "R1", "R2")):
            sender = ""
            if i == 0:
                probe = "-" if r["probeAccepted"] is None else f"{r['probeAccepted'] // 1024}K"
                delivered = "all" if r["delivered"] == r["sent"] else f"{r['delivered'] / MIB:.1f}"
                sender = (
                    f"   {r['sent'] / MIB:8.1f} {r['sentLastSecond'] / MIB:8.2f} {r['eagain']:6d} {probe:>7} "
                    f"{delivered:>9} {'yes' if r['intact'] else 'NO':>6}"
                )
            print(
                f"{r['variant'] if i == 0 else '':9} {name:7} {mib(r['idleKiB'][name]):>8} {mib(r['peakKiB'][name]):>8} "
                f"{mib(r['growthKiB'][name]):>10} {r['cpuSeconds'][name]:6.2f} {r['cpuLastSecond'][name]:12.2f}{sender}"
            )
    worst = max(max(r["growthKiB"].values()) for r in results)
    print(f"largest growth over idle RSS: {mib(worst)} MiB (budget {mib(RSS_BUDGET_KIB)} MiB)")


def printSlowloris(r: dict[str, Any]) -> None:
    print(f"\nSlowloris: {r['connections']} stalled connections, readTimeout={r['readTimeout']:g}s")
    print(f"  stalled connections open while measuring: {r['stalledOpenWhileMeasuring']}")
    print(
        f"  well-behaved round trip, median (p90): alone {r['unloadedMedian'] * 1000:.2f} ms "
        f"({r['unloadedP90'] * 1000:.2f}), beside them {r['loadedMedian'] * 1000:.2f} ms ({r['loadedP90'] * 1000:.2f}); "
        f"ratio {r['loadedMedian'] / r['unloadedMedian']:.2f}"
    )
    print(
        f"  closed by readTimeout: {r['closed']}/{r['connections']}, each after {r['lifetimeMin']:.3f}-{r['lifetimeMax']:.3f} s; "
        f"all closed {r['closedBy']:.3f} s after the last opened; {r['timeoutLogLines']} log lines; "
        f"server RSS {mib(r['serverRSSKiB'])} MiB"
    )


def printLeaks(r: dict[str, Any]) -> None:
    print(f"\nNo leaks: {r['connections']} short relay connections, {r['concurrency']} at a time")
    print(f"  outcomes: {json.dumps(r['outcomes'], sort_keys=True)}; {r['perSecond']:.0f} connections/s")
    print(f"  {'point':>20} {'fds':>5} {'RSS MiB':>8}")
    print(f"  {'start':>20} {r['start']['fds']:5d} {mib(r['start']['rssKiB']):>8}")
    print(f"  {'baseline (warm)':>20} {r['baseline']['fds']:5d} {mib(r['baseline']['rssKiB']):>8}")
    for c in r["checkpoints"]:
        print(f"  {'after ' + str(c['connections']):>20} {c['fds']:5d} {mib(c['rssKiB']):>8}")
    print(f"  peak while running: {r['peakFds']} fds, {mib(r['peakRSSKiB'])} MiB (VmHWM)")
    growth = r["after"]["rssKiB"] - r["baseline"]["rssKiB"]
    print(f"  after - baseline: {r['after']['fds'] - r['baseline']['fds']:+d} fds, {growth / 1024:+.1f} MiB; problems logged: {len(r['problems'])}")


@defer.inlineCallbacks
def run(reactor: Any, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    results: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv)}
    workdir = tempfile.mkdtemp(prefix="gostrelay-reliability-")
    parts = args.parts or ["backpressure", "slowloris", "leaks"]
    print(f"machine: {results['machine']}")
    try:
        if "backpressure" in parts:
            bp = []
            for variant in args.variants or VARIANTS:
                lab = Lab(reactor, os.path.join(workdir, f"bp-{variant}"))
                try:
                    r = yield backPressure(lab, variant, args.seconds)
                finally:
                    yield lab.cleanup()
                r.pop("logs", None)
                bp.append(r)
            results["backpressure"] = bp
            printBackPressure(bp)
        if "slowloris" in parts:
            lab = Lab(reactor, os.path.join(workdir, "slowloris"))
            try:
                r = yield slowloris(lab, args.connections or 2000, readTimeout=2.0)
            finally:
                yield lab.cleanup()
            r.pop("log", None)
            results["slowloris"] = r
            printSlowloris(r)
        if "leaks" in parts:
            lab = Lab(reactor, os.path.join(workdir, "leaks"))
            try:
                r = yield noLeaks(lab, args.connections or 20000, rounds=args.rounds)
            finally:
                yield lab.cleanup()
            r.pop("log", None)
            results["leaks"] = r
            printLeaks(r)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
    return results


def fuzz(examples: int) -> int:
    env = dict(os.environ, GOSTRELAY_FUZZ_EXAMPLES=str(examples))
    print(f"machine: {machine()}\nfuzz: {examples} examples per machine (random seeds)", flush=True)
    started = time.monotonic()
    code = subprocess.call(
        [sys.executable, "-m", "twisted.trial", "--reporter=timing", "--temp-directory", os.path.join(tempfile.mkdtemp(prefix="gostrelay-fuzz-"), "trial"), "tests.test_fuzz"],
        cwd=ROOT,
        env=env,
    )
    print(f"fuzz: {time.monotonic() - started:.0f} s, exit code {code}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", help="backpressure, slowloris, leaks, fuzz (default: all but fuzz)")
    parser.add_argument("--seconds", type=float, default=10.0, help="back-pressure: how long to push (10)")
    parser.add_argument("--variant", dest="variants", action="append", choices=VARIANTS, help="back-pressure variants (all)")
    parser.add_argument("--connections", type=int, default=0, help="slowloris (2000) / leaks (20000) connections")
    parser.add_argument("--rounds", type=int, default=4, help="leaks: measure after each of this many rounds (4)")
    parser.add_argument("--examples", type=int, default=100000, help="fuzz: examples per machine (100000)")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()
    unknown = set(args.parts) - {"backpressure", "slowloris", "leaks", "fuzz"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if "fuzz" in args.parts:
        raise SystemExit(fuzz(args.examples))
    raiseFileLimit()
    task.react(run, [args])


if __name__ == "__main__":
    main()
