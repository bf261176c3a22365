"""
The reliability scenarios: plain functions of a L{Lab} and their sizes,
run by C{tests/test_reliability.py} at CI sizes and by
C{bench/reliability.py} at benchmark sizes; and the peers they use (a
receiver that holds back, a sender that pushes as fast as the kernel
takes it, an RSS sampler, a stalling client).
"""

from __future__ import annotations

import hashlib
import socket
import statistics
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IWriteDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.wire.relay import Status
from tests.processes import cpuSeconds, openFiles, statusKiB
from tests.support.lab import Lab, RelayProbe, connectTo, pollUntil
from tests.support.reactor import freePort, sleep
from tests.support.targets import EchoFactory

MIB = 1024 * 1024


def patternAt(offset: int, size: int, pattern: bytes) -> bytes:
    """
    C{size} bytes of the endless repetition of C{pattern}, from C{offset}.
    """
    start = offset % len(pattern)
    reps = (start + size) // len(pattern) + 1
    return (pattern * reps)[start : start + size]


PATTERN = hashlib.sha256(b"gostrelay").digest() * 2048  # 64 KiB, not all alike


class HeldReceiver(Protocol):
    """
    A target that does not read until told to (L{resume}); then it checks
    every byte against L{PATTERN}.
    """

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.factory.receivers.append(self)  # type: ignore[attr-defined]
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self.received = 0
        self.corrupt = False
        self.ended: defer.Deferred[None] = defer.Deferred()

    def resume(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.corrupt and data != patternAt(self.received, len(data), PATTERN):
            self.corrupt = True
        self.received += len(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]
        self.ended.callback(None)


class HeldReceiverFactory(Factory):
    protocol = HeldReceiver
    noisy = False

    def __init__(self) -> None:
        self.open: set[HeldReceiver] = set()
        self.receivers: list[HeldReceiver] = []


@implementer(IWriteDescriptor)
class Blaster:
    """
    A sender pushing L{PATTERN} on a non-blocking socket as fast as the
    kernel takes it, from the reactor's write readiness.  It records every
    C{EAGAIN} (its send buffer full: the sender is held back).
    """

    def __init__(self, reactor: Any, port: int) -> None:
        self.reactor = reactor
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.sent = 0
        self.eagain = 0
        self.lastSend = time.monotonic()
        self.error: OSError | None = None
        self.running = False
        self._data = memoryview(PATTERN * 2)

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "Blaster"

    def connectionLost(self, reason: Failure) -> None:
        self.stop()

    def start(self) -> None:
        self.running = True
        self.reactor.addWriter(self)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.reactor.removeWriter(self)

    def doWrite(self) -> None:
        budget = 8 * MIB  # then let the reactor breathe
        while budget > 0:
            offset = self.sent % len(PATTERN)
            try:
                n = self.sock.send(self._data[offset : offset + len(PATTERN)])
            except BlockingIOError:
                self.eagain += 1
                return
            except OSError as e:
                self.error = e
                self.stop()
                return
            self.sent += n
            budget -= n
            self.lastSend = time.monotonic()

    def probe(self, limit: int = MIB) -> int | None:
        """
        Send until a non-blocking send is refused with EAGAIN: how many
        bytes the kernel still took (C{None}: more than C{limit}, the
        sender is not held back).
        """
        accepted = 0
        while accepted <= limit:
            offset = self.sent % len(PATTERN)
            try:
                n = self.sock.send(self._data[offset : offset + 4096])
            except BlockingIOError:
                return accepted
            self.sent += n
            accepted += n
        return None

    def close(self) -> None:
        self.stop()
        self.sock.close()


class RSSSampler:
    """
    The largest VmRSS of each process seen while running.
    """

    def __init__(self, reactor: Any, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self.loop = task.LoopingCall(self.sample)
        self.loop.clock = reactor

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak[name], statusKiB(pid))

    def start(self, interval: float = 0.05) -> None:
        self.loop.start(interval)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()
        self.sample()


#: Back-pressure variants: how the two-hop chain is built.
VARIANTS = ("splice", "nosplice", "ws", "rtcp")

#: How much any gostrelay process may grow over its idle RSS.
RSS_BUDGET_KIB = 64 * 1024


@defer.inlineCallbacks
def startChain(lab: Lab, variant: str, target: int):  # type: ignore[no-untyped-def]
    """
    Two relay servers and a client in front of them, three processes:
    C{-L tcp://127.0.0.1:P/127.0.0.1:T -F relay://R1 -F relay://R2} (with
    C{splice=false} everywhere, or C{relay+ws} hops), or for C{rtcp}
    C{-L rtcp://127.0.0.1:P/127.0.0.1:T -F relay://R1 -F relay://R2} with
    C{bind=true} on R2 (peers connect to P on R2; the bytes cross an smux
    session back to the client).  Fires with C{(entry port, {name:
    process})}.
    """
    scheme = "relay+ws" if variant == "ws" else "relay"
    query = "?splice=false" if variant == "nosplice" else ""
    (r1, p1), (r2, p2) = yield defer.gatherResults(
        [
            lab.start("-L", f"{scheme}://127.0.0.1:0{query}", name="R1"),
            lab.start("-L", f"{scheme}://127.0.0.1:0" + ("?bind=true" if variant == "rtcp" else query), name="R2"),
        ],
        consumeErrors=True,
    )
    hops = ["-F", f"{scheme}://127.0.0.1:{p1}", "-F", f"{scheme}://127.0.0.1:{p2}"]
    if variant == "rtcp":
        entry = freePort()
        client, _ = yield lab.start("-L", f"rtcp://127.0.0.1:{entry}/127.0.0.1:{target}", *hops, waitFor="will listen on", name="client")
        yield r2.waitForLine(rf"BIND 127\.0\.0\.1:{entry}/tcp .*bound on", timeout=15)
    else:
        client, entry = yield lab.start("-L", f"tcp://127.0.0.1:0/127.0.0.1:{target}{query}", *hops, name="client")
    return entry, {"client": client, "R1": r1, "R2": r2}


@defer.inlineCallbacks
def backPressure(lab: Lab, variant: str, seconds: float):  # type: ignore[no-untyped-def]
    """
    Push as fast as possible for C{seconds} through a two-hop chain to a
    receiver that does not read; sample every process's RSS.  Then let the
    receiver read and check every byte arrived, in order.
    """
    reactor = lab.reactor
    receivers = HeldReceiverFactory()
    target = lab.listen(receivers)
    entry, procs = yield startChain(lab, variant, target)
    pids = {name: p.pid for name, p in procs.items()}
    yield sleep(0.3, reactor)
    idle = {name: statusKiB(pid) for name, pid in pids.items()}
    sampler = RSSSampler(reactor, pids)
    sampler.start()
    blaster = Blaster(reactor, entry)
    lab.onCleanup(blaster.close)
    t0 = time.monotonic()
    blaster.start()
    marks: list[tuple[float, int, dict[str, float]]] = []
    cpu0 = {name: cpuSeconds(pid) for name, pid in pids.items()}
    while time.monotonic() - t0 < seconds:
        yield sleep(0.1, reactor)
        marks.append((time.monotonic() - t0, blaster.sent, {name: cpuSeconds(pid) for name, pid in pids.items()}))
    blaster.stop()
    sampler.stop()
    before = [m for m in marks if m[0] <= seconds - 1.0]
    lastSecond = blaster.sent - (before[-1][1] if before else 0)
    cpuBefore = before[-1][2] if before else cpu0
    cpuEnd = marks[-1][2]
    probeAccepted = blaster.probe(8 * MIB)
    result: dict[str, Any] = {
        "variant": variant,
        "seconds": seconds,
        "sent": blaster.sent,
        "sentLastSecond": lastSecond,
        "eagain": blaster.eagain,
        "probeAccepted": probeAccepted,
        "senderError": str(blaster.error) if blaster.error else None,
        "idleKiB": idle,
        "peakKiB": dict(sampler.peak),
        "growthKiB": {name: sampler.peak[name] - idle[name] for name in pids},
        "receivedWhileHeld": sum(r.received for r in receivers.receivers),
        "cpuSeconds": {name: cpuEnd[name] - cpu0[name] for name in pids},
        "cpuLastSecond": {name: cpuEnd[name] - cpuBefore[name] for name in pids},
    }
    # Now read: everything sent must arrive, in order.
    for r in receivers.receivers:
        r.resume()
    t1 = time.monotonic()
    yield pollUntil(reactor, lambda: sum(r.received for r in receivers.receivers) >= blaster.sent, timeout=60)
    result["drainSeconds"] = time.monotonic() - t1
    result["delivered"] = sum(r.received for r in receivers.receivers)
    result["intact"] = bool(receivers.receivers) and not any(r.corrupt for r in receivers.receivers)
    blaster.close()
    result["logs"] = {name: p.describe() for name, p in procs.items()}
    return result


@defer.inlineCallbacks
def latency(lab: Lab, relayPort: int, echoPort: int, samples: int):  # type: ignore[no-untyped-def]
    """
    C{samples} sequential well-behaved relay round trips (connect, CONNECT,
    32 bytes echoed, close): their durations in seconds.
    """
    times = []
    payload = b"p" * 32
    for _ in range(samples):
        probe = RelayProbe(connectTo(echoPort, payload=payload), closeAfter=len(payload))
        start = time.monotonic()
        yield lab.connect(relayPort, probe)
        yield probe.done
        if probe.status != 0 or probe.echoed is None:
            raise AssertionError(f"well-behaved request failed: status {probe.status}, {bytes(probe.data)!r}")
        times.append(probe.echoed - start)
    return times


class Staller(Protocol):
    """
    Sends one byte of a relay request and stalls.  Its lifetime counts
    from the connection attempt (the server's timer cannot start before).
    """

    def __init__(self) -> None:
        self.attempted = time.monotonic()
        self.closed: float | None = None

    def connectionMade(self) -> None:
        self.transport.write(b"\x01")  # type: ignore[union-attr]
        self.factory.connected += 1  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = time.monotonic()
        self.factory.lost += 1  # type: ignore[attr-defined]


@defer.inlineCallbacks
def slowloris(lab: Lab, connections: int, readTimeout: float = 2.0, samples: int = 40):  # type: ignore[no-untyped-def]
    """
    A relay server with C{readTimeout}; the latency of a well-behaved
    client, alone and then beside C{connections} stalled requests; when
    the stalled connections are closed.
    """
    reactor = lab.reactor
    echo = EchoFactory()
    echoPort = lab.listen(echo)
    # backlog: a burst of thousands of connects must not wait for SYN retries.
    server, port = yield lab.start("-L", f"relay://127.0.0.1:0?readTimeout={readTimeout:g}s&backlog=4096", name="relay")
    yield latency(lab, port, echoPort, 5)  # warm up
    unloaded = yield latency(lab, port, echoPort, samples)
    stallers: list[Staller] = []
    factory = Factory()
    factory.connected = 0  # type: ignore[attr-defined]
    factory.lost = 0  # type: ignore[attr-defined]
    opening = []
    for _ in range(connections):
        staller = Staller()
        staller.factory = factory
        stallers.append(staller)
        opening.append(lab.connect(port, staller, timeout=10))
    yield defer.gatherResults(opening, consumeErrors=True)
    openedAll = time.monotonic()
    yield sleep(0.2, reactor)
    stillOpen = sum(1 for s in stallers if s.closed is None)
    loaded = yield latency(lab, port, echoPort, samples)
    yield pollUntil(reactor, lambda: factory.lost >= connections, timeout=readTimeout + 15)
    lifetimes = [s.closed - s.attempted for s in stallers if s.closed is not None]
    expected = f"no complete request within {readTimeout:g}s (1 bytes read)"

    def countTimeoutLines() -> int:
        return len([line for line in server.lines["out"] if expected in line])

    # The clients saw their connections closed; the server's log lines may
    # still be on their way through its stdout pipe (under load, the
    # reading lagged: 275 of 300 lines read at the check).  Wait for them,
    # bounded.
    yield pollUntil(reactor, lambda: countTimeoutLines() >= connections, timeout=10)
    timeoutLines = countTimeoutLines()
    return {
        "connections": connections,
        "readTimeout": readTimeout,
        "stalledOpenWhileMeasuring": stillOpen,
        "unloadedMedian": statistics.median(unloaded),
        "loadedMedian": statistics.median(loaded),
        "unloadedP90": statistics.quantiles(unloaded, n=10)[-1],
        "loadedP90": statistics.quantiles(loaded, n=10)[-1],
        "closed": len(lifetimes),
        "lifetimeMin": min(lifetimes) if lifetimes else None,
        "lifetimeMax": max(lifetimes) if lifetimes else None,
        "closedBy": (max(s.closed for s in stallers if s.closed) - openedAll) if lifetimes else None,
        "timeoutLogLines": timeoutLines,
        "serverRSSKiB": statusKiB(server.pid),
        "log": server.describe(),
    }


def connectionKinds(m: int) -> list[str]:
    """
    The mix of short connections: mostly good ones, one in ten each
    refused target, bad password and junk.
    """
    kinds = []
    for i in range(m):
        r = i % 10
        kinds.append({7: "refused", 8: "badauth", 9: "junk"}.get(r, "ok"))
    return kinds


@defer.inlineCallbacks
def shortConnections(lab: Lab, port: int, echoPort: int, closedPort: int, kinds: list[str], concurrency: int):  # type: ignore[no-untyped-def]
    outcomes: dict[str, int] = {}
    payload = b"hello" * 20
    sem = defer.DeferredSemaphore(concurrency)

    @defer.inlineCallbacks
    def one(kind: str):  # type: ignore[no-untyped-def]
        if kind == "ok":
            probe = RelayProbe(connectTo(echoPort, "user", "pass", payload), closeAfter=len(payload))
        elif kind == "refused":
            probe = RelayProbe(connectTo(closedPort, "user", "pass"))
        elif kind == "badauth":
            probe = RelayProbe(connectTo(echoPort, "user", "wrong"))
        else:
            probe = RelayProbe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            yield lab.connect(port, probe, timeout=10)
        except ConnectError:
            outcomes["connect failed"] = outcomes.get("connect failed", 0) + 1
            return
        yield probe.done
        if kind == "ok":
            good = probe.status == 0 and bytes(probe.data) == payload
        elif kind == "refused":
            good = probe.status == Status.NETWORK_UNREACHABLE
        elif kind == "badauth":
            good = probe.status == Status.UNAUTHORIZED
        else:
            good = probe.status is None and not probe.data
        key = kind if good else f"{kind}: unexpected"
        outcomes[key] = outcomes.get(key, 0) + 1

    yield defer.gatherResults([sem.run(one, kind) for kind in kinds], consumeErrors=True)
    return outcomes


@defer.inlineCallbacks
def noLeaks(lab: Lab, connections: int, concurrency: int = 32, warmup: int = 500, rounds: int = 1):  # type: ignore[no-untyped-def]
    """
    A relay server with a user; C{warmup} short connections, then the
    baseline (descriptors, RSS), then C{connections} more in C{rounds}
    (a tenth each refused, bad password, junk), measuring again once idle
    after each round.
    """
    reactor = lab.reactor
    echo = EchoFactory()
    echoPort = lab.listen(echo)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    lab.onCleanup(closed.close)
    closedPort = closed.getsockname()[1]
    server, port = yield lab.start("-L", "relay://user:pass@127.0.0.1:0", name="relay")
    pid = server.pid

    def fds() -> int:
        return openFiles(pid)

    start = {"fds": fds(), "rssKiB": statusKiB(pid)}
    yield shortConnections(lab, port, echoPort, closedPort, connectionKinds(warmup), concurrency)
    yield pollUntil(reactor, lambda: not echo.open, timeout=5)
    yield sleep(0.3, reactor)
    baseline = {"fds": fds(), "rssKiB": statusKiB(pid)}
    outcomes: dict[str, int] = {}
    checkpoints = []
    busy = 0.0
    peakFds = 0
    for r in range(rounds):
        t0 = time.monotonic()
        counted = shortConnections(lab, port, echoPort, closedPort, connectionKinds(connections // rounds), concurrency)
        peaks: list[int] = []
        sampler = task.LoopingCall(lambda seen=peaks: seen.append(fds()))
        sampler.clock = reactor
        sampler.start(0.05)
        got = yield counted
        sampler.stop()
        busy += time.monotonic() - t0
        peakFds = max([peakFds, *peaks])
        for key, n in got.items():
            outcomes[key] = outcomes.get(key, 0) + n
        yield pollUntil(reactor, lambda: not echo.open and fds() <= baseline["fds"], timeout=10)
        yield sleep(0.3, reactor)
        checkpoints.append({"connections": (r + 1) * (connections // rounds), "fds": fds(), "rssKiB": statusKiB(pid)})
    problems = [line for line in server.lines["out"] + server.lines["err"] if "Traceback" in line or "Unhandled" in line]
    return {
        "connections": connections,
        "concurrency": concurrency,
        "seconds": busy,
        "perSecond": connections / busy if busy else None,
        "outcomes": outcomes,
        "start": start,
        "baseline": baseline,
        "peakFds": peakFds,
        "peakRSSKiB": statusKiB(pid, "VmHWM"),
        "checkpoints": checkpoints,
        "after": checkpoints[-1],
        "targetsOpen": len(echo.open),
        "problems": problems,
        "log": server.describe(),
    }

