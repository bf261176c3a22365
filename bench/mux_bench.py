"""
smux per-frame cost, in process (issue 15.3: the stream and session state
machines must cost what the flags did).

    python3 bench/mux_bench.py [--tree DIR] [--rounds 7]

Pumps PSH frames (64 bytes and 16 KiB, smux v1 and v2) into one stream of
an L{gostrelay.mux.MuxSession} over a carrier that only counts, and as many
writes out of the stream, and prints the best time of C{--rounds}.  Run it
against two trees (C{--tree} names the directory holding C{gostrelay/}),
interleaved, to compare a change with what it replaces.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any


class CountingCarrier:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, data: Any) -> None:
        self.written += sum(map(len, data))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


def pump(version: int, size: int, frames: int) -> float:
    from twisted.internet.protocol import Protocol
    from twisted.internet.task import Clock

    from gostrelay.mux import MuxConfig, MuxSession
    from gostrelay.wire import smux

    class Sink(Protocol):
        received = 0

        def dataReceived(self, data: bytes) -> None:
            self.received += len(data)

    streams: list[Any] = []

    def accept(stream: Any) -> None:
        stream.attach(Sink())
        streams.append(stream)

    session = MuxSession(Clock(), CountingCarrier(), False, MuxConfig(version=version, keepaliveDisabled=True), acceptStream=accept)
    session.dataReceived(smux.encodeFrame(version, smux.SYN, 3))
    stream = streams[0]
    burst = smux.encodeFrame(version, smux.PSH, 3, b"x" * size) * 64
    payload = b"y" * size
    start = time.perf_counter()
    for _ in range(frames // 64):
        session.dataReceived(burst)
        for _ in range(64):
            stream.write(payload)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    best: dict[tuple[int, int], float] = {}
    for _ in range(args.rounds):
        for version in (1, 2):
            for size, frames in ((64, 128000), (16384, 32000)):
                elapsed = pump(version, size, frames)
                key = (version, size)
                best[key] = min(best.get(key, elapsed), elapsed)
    for (version, size), elapsed in sorted(best.items()):
        frames = 128000 if size == 64 else 32000
        print(f"smux v{version} {size:>5}-byte frames: {elapsed * 1e3:7.1f} ms, {elapsed / frames * 1e9:6.0f} ns per frame in and out")


if __name__ == "__main__":
    main()
