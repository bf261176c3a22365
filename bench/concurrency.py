"""
Many concurrent connections through a two-process chain under the
machine's descriptor limit (issue 20): each connection echoes once, the
whole set is held idle, then each echoes again.

    python3 bench/concurrency.py [--connections 10000] [--hold 10]

Chain: client -> gostrelay tcp forward -> gostrelay relay server -> echo
target (a Twisted echo server in its own process).  Each gostrelay process
holds two sockets per connection; a connection that carries a few bytes
never takes kernel pipes (gostrelay.splice), so it costs the same two
descriptors as GOST's.  Reports how many connections echoed twice, the
descriptors and RSS of each chain process at the peak, and whether both
processes are back to their descriptors at start once the clients close.
Target: 10,000 connections under a 20,000-descriptor limit (GOST: 9,996 of
10,000), RSS <= 100 MiB per process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from relay_bench import Processes, freePort  # noqa: E402

ECHO = """
import resource, sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import protocol, reactor
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)
f = protocol.Factory.forProtocol(Echo)
f.noisy = False
reactor.listenTCP(int(sys.argv[1]), f, backlog=4096, interface="127.0.0.1")
reactor.run()
"""


def status(pid: int) -> tuple[int, int]:
    """
    (RSS KiB, open descriptors) of C{pid}.
    """
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def run(options: argparse.Namespace) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, protocol, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    procs = Processes()
    target, relay, local = freePort(), freePort(), freePort()
    procs.start([sys.executable, "-c", ECHO, str(target)], target)
    server = procs.gostrelay("-L", f"relay://127.0.0.1:{relay}", wait=relay)
    client = procs.gostrelay("-L", f"tcp://127.0.0.1:{local}/127.0.0.1:{target}", "-F", f"relay://127.0.0.1:{relay}", wait=local)
    chain = {"relay server": server.pid, "tcp forwarder": client.pid}
    time.sleep(0.5)
    start = {name: status(pid) for name, pid in chain.items()}

    class Client(protocol.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.waiting: defer.Deferred[bool] | None = None
            self.lost = False

        def echo(self, data: bytes) -> defer.Deferred[bool]:
            self.buffer = b""
            self.want = data
            self.waiting = d = defer.Deferred()
            self.transport.write(data)  # type: ignore[union-attr]
            return d

        def dataReceived(self, data: bytes) -> None:
            self.buffer += data
            if self.waiting is not None and len(self.buffer) >= len(self.want):
                d, self.waiting = self.waiting, None
                d.callback(self.buffer == self.want)

        def connectionLost(self, reason: object = None) -> None:
            self.lost = True
            if self.waiting is not None:
                d, self.waiting = self.waiting, None
                d.callback(False)

    clients: list[Client] = []
    results = {"connected": 0, "echo1": 0, "echo2": 0, "failed": 0}
    peak: dict[str, tuple[int, int]] = {}

    def timeout(d: defer.Deferred[bool], seconds: float) -> defer.Deferred[bool]:
        return d.addTimeout(seconds, reactor).addErrback(lambda f: False)

    @defer.inlineCallbacks
    def one(i: int):  # type: ignore[no-untyped-def]
        c = Client()
        try:
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", local, timeout=30), c)
        except Exception:  # noqa: BLE001
            results["failed"] += 1
            return
        results["connected"] += 1
        clients.append(c)
        ok = yield timeout(c.echo(b"first %d\n" % i), 30)
        results["echo1"] += bool(ok)

    @defer.inlineCallbacks
    def main():  # type: ignore[no-untyped-def]
        began = time.time()
        sem = defer.DeferredSemaphore(options.parallel)
        yield defer.DeferredList([sem.run(one, i) for i in range(options.connections)])
        opened = time.time() - began
        print(f"opened {results['connected']} connections in {opened:.1f}s; holding {options.hold:g}s", file=sys.stderr)
        yield task.deferLater(reactor, options.hold, lambda: None)
        for name, pid in chain.items():
            peak[name] = status(pid)
        live = [c for c in clients if not c.lost]
        oks = yield defer.DeferredList([timeout(c.echo(b"second\n"), 30) for c in live])
        results["echo2"] = sum(1 for ok, value in oks if ok and value)
        for c in clients:
            c.transport.loseConnection()  # type: ignore[union-attr]
        closed = time.time()
        while time.time() - closed < 60:
            yield task.deferLater(reactor, 0.5, lambda: None)
            if all(status(pid)[1] <= start[name][1] for name, pid in chain.items()):
                break
        results["released"] = time.time() - closed  # type: ignore[assignment]
        reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    end = {name: status(pid) for name, pid in chain.items()}
    procs.stop()

    print(f"# {options.connections} connections, descriptor limit {hard}, hold {options.hold:g}s")
    print(f"connected {results['connected']}, echoed once {results['echo1']}, echoed twice {results['echo2']}, failed to connect {results['failed']}")
    print(f"descriptors back to their count at start {results['released']:.1f}s after the clients closed (60 = not)")
    print("| process | fds at start | fds at peak | fds at the end | RSS at start (MiB) | RSS at peak (MiB) |")
    print("|---|---|---|---|---|---|")
    for name in chain:
        print(
            f"| {name} | {start[name][1]} | {peak[name][1]} | {end[name][1]} | "
            f"{start[name][0] / 1024:.0f} | {peak[name][0] / 1024:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
