"""
Tests for L{gostrelay.splice}: when a pipe moves to the kernel, where its
kernel pipes come from, and what happens when there are none (issue 19.0:
descriptor exhaustion must fall back to userspace and leave nothing behind).

In-process tests relay real loopback sockets through a L{Pipe}; the
descriptor-exhaustion test runs gostrelay in a child whose C{RLIMIT_NOFILE}
is lowered.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from gostrelay import splice
from gostrelay.pipe import A, B, Pipe, PipeProtocol, PipeSideFactory
from tests.processes import LISTENING, childEnvironment, openFiles, spawn
from tests.support.cases import ReactorTestCase
from tests.support.lab import pollUntil
from tests.support.reactor import sleep

KIB = 1024


def _isPipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


class Client(Protocol):
    """
    Sends what it is told and collects what comes back.
    """

    def __init__(self) -> None:
        self.received = 0
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        self.ended.callback(None)


class _ForwardSide(PipeProtocol):
    """
    Side A of a pipe that dials the echo server for side B when accepted.
    """

    def connectionMade(self) -> None:
        factory = self.factory  # type: ignore[attr-defined]
        factory.pipes.append(self.pipe)
        self.transport.pauseProducing()  # type: ignore[union-attr]

        def connected(_: Any) -> None:
            self.pipe.attach(A, self.transport)  # type: ignore[arg-type]
            self.transport.resumeProducing()  # type: ignore[union-attr]

        d = TCP4ClientEndpoint(reactor, "127.0.0.1", factory.target).connect(PipeSideFactory(self.pipe, B))
        d.addCallbacks(connected, lambda f: self.transport.loseConnection())  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.pipe.connected:
            self.pipe.connectionLost(A, reason)


class ForwardFactory(Factory):
    noisy = False

    def __init__(self, target: int, threshold: int) -> None:
        self.target = target
        self.threshold = threshold
        self.pipes: list[Pipe] = []
        self.done: list[Pipe] = []

    def buildProtocol(self, addr: Any) -> _ForwardSide:
        pipe = Pipe(reactor, onDone=lambda p, r: self.done.append(p), splice=True, spliceThreshold=self.threshold)
        protocol = _ForwardSide(pipe, A)
        protocol.factory = self
        return protocol


class InProcessTests(ReactorTestCase):
    """
    A forwarder made of a L{Pipe}, in this process, between a client and an
    echo server on loopback.
    """

    timeout = 120

    if not splice.AVAILABLE:
        skip = "splice(2) is Linux only"

    def setUp(self) -> None:
        super().setUp()
        self.echo, echoPort = self.startEcho()
        self.forward = ForwardFactory(echoPort, threshold=64 * KIB)
        self.port = self.listenTCP(self.forward)
        self.assertEqual(splice.pool.open, 0, "a previous test left kernel pipes open")
        self.addCleanup(self._noPipesLeft)

    def _noPipesLeft(self) -> None:
        self.assertEqual(splice.pool.open, 0, "kernel pipes left open")
        self.assertEqual(splice._sweep.splicers, set())

    @defer.inlineCallbacks
    def connect(self):  # type: ignore[no-untyped-def]
        client = Client()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(lambda: client.transport.abortConnection() if not client.closed else None)  # type: ignore[union-attr]
        yield pollUntil(reactor, lambda: len(self.forward.pipes) > 0 and self.forward.pipes[-1].connected, 5)
        return client, self.forward.pipes[-1]

    @defer.inlineCallbacks
    def echoed(self, client: Client, size: int, chunk: int = 16 * KIB):  # type: ignore[no-untyped-def]
        want = client.received + size
        for offset in range(0, size, chunk):
            client.transport.write(b"x" * min(chunk, size - offset))  # type: ignore[union-attr]
        ok = yield pollUntil(reactor, lambda: client.received >= want, 10)
        self.assertTrue(ok, f"{client.received} of {want} bytes echoed")
        self.assertEqual(client.received, want)

    @defer.inlineCallbacks
    def close(self, client: Client):  # type: ignore[no-untyped-def]
        client.transport.loseConnection()  # type: ignore[union-attr]
        yield client.ended
        yield pollUntil(reactor, lambda: not self.echo.open, 5)

    @defer.inlineCallbacks
    def test_shortConnectionStaysInUserspace(self):  # type: ignore[no-untyped-def]
        """
        A connection that carries less than the threshold never takes
        kernel pipes: it costs its two sockets only.
        """
        client, pipe = yield self.connect()
        yield self.echoed(client, 4 * KIB)
        yield sleep(0.05)
        self.assertIsNone(pipe.spliced)
        self.assertEqual(splice.pool.open, 0)
        yield self.close(client)

    @defer.inlineCallbacks
    def test_bulkSplices(self):  # type: ignore[no-untyped-def]
        """
        Past the threshold the pipe moves to the kernel; every byte still
        arrives, counted.
        """
        client, pipe = yield self.connect()
        yield self.echoed(client, 1024 * KIB)
        self.assertIsNotNone(pipe.spliced)
        self.assertEqual(splice.pool.open, 2)
        yield self.echoed(client, 512 * KIB)
        self.assertEqual(pipe.transferred, [1536 * KIB, 1536 * KIB])
        yield self.close(client)
        yield pollUntil(reactor, lambda: bool(self.forward.done), 5)
        self.assertEqual(splice.pool.open, 0, "the last spliced connection's pipes are closed")

    @defer.inlineCallbacks
    def test_noPipeFallsBackToUserspace(self):  # type: ignore[no-untyped-def]
        """
        Regression (issue 19.0): C{pipe2} failing with EMFILE escaped as a
        traceback after both sockets had stopped reading, and the
        connection hung.  Now the pipe stays in userspace, untouched, and
        keeps relaying.
        """
        calls: list[int] = []

        def pipe2(flags: int) -> tuple[int, int]:
            calls.append(flags)
            raise OSError(errno.EMFILE, "Too many open files")

        self.patch(splice.os, "pipe2", pipe2)
        client, pipe = yield self.connect()
        yield self.echoed(client, 1024 * KIB)
        self.assertTrue(calls, "a splice was attempted")
        self.assertIsNone(pipe.spliced)
        self.assertEqual(splice.pool.open, 0)
        yield self.echoed(client, 256 * KIB)
        yield self.close(client)

    @defer.inlineCallbacks
    def test_secondPipeFails(self):  # type: ignore[no-untyped-def]
        """
        When the first kernel pipe is had and the second is not, the first
        is given back (closed when nothing else is spliced).
        """
        real = os.pipe2
        made: list[tuple[int, int]] = []

        def pipe2(flags: int) -> tuple[int, int]:
            if made:
                raise OSError(errno.EMFILE, "Too many open files")
            fds = real(flags)
            made.append(fds)
            return fds

        self.patch(splice.os, "pipe2", pipe2)
        client, pipe = yield self.connect()
        yield self.echoed(client, 512 * KIB)
        self.assertIsNone(pipe.spliced)
        self.assertTrue(made)
        self.assertEqual(len(made), 1)
        self.assertEqual(splice.pool.open, 0)
        for fd in made[0]:
            self.assertFalse(_isPipe(fd), "the first pipe was closed")
        yield self.close(client)

    @defer.inlineCallbacks
    def test_idleGivesPipesBack(self):  # type: ignore[no-untyped-def]
        """
        A spliced connection that goes idle returns to userspace and gives
        its pipes back; more bulk splices it again.
        """
        self.patch(splice, "IDLE_RETURN", 0.2)
        client, pipe = yield self.connect()
        yield self.echoed(client, 1024 * KIB)
        self.assertIsNotNone(pipe.spliced)
        given = yield pollUntil(reactor, lambda: pipe.spliced is None, 5)
        self.assertTrue(given, "the idle connection kept its kernel pipes")
        self.assertEqual(splice.pool.open, 0)
        yield self.echoed(client, 4 * KIB)  # in userspace again
        self.assertIsNone(pipe.spliced)
        yield self.echoed(client, 1024 * KIB)
        self.assertIsNotNone(pipe.spliced)
        self.assertEqual(pipe.transferred, [2052 * KIB, 2052 * KIB])
        yield self.close(client)

    @defer.inlineCallbacks
    def test_poolLimit(self):  # type: ignore[no-untyped-def]
        """
        Past the pool's limit a connection stays in userspace.
        """
        self.patch(splice.pool, "_limit", 2)
        first, p1 = yield self.connect()
        yield self.echoed(first, 512 * KIB)
        second, p2 = yield self.connect()
        yield self.echoed(second, 512 * KIB)
        self.assertIsNotNone(p1.spliced)
        self.assertIsNone(p2.spliced)
        self.assertEqual(splice.pool.open, 2)
        yield self.close(first)
        yield self.close(second)


class DescriptorExhaustionTests(ReactorTestCase):
    """
    Issue 19.0, end to end: a gostrelay forwarder whose descriptor table is
    nearly full serves every client (splicing those it has pipes for,
    relaying the rest in userspace), logs no traceback, and is back to its
    descriptors at start once the clients have gone.
    """

    timeout = 120

    if not splice.AVAILABLE:
        skip = "splice(2) is Linux only"

    LIMIT = 256
    #: Descriptors the child opens (on /dev/null) before starting, so that
    #: sockets fill the table before the pipe pool's limit (a quarter of
    #: the descriptor limit) is reached: C{pipe2} then fails with EMFILE.
    HELD = 170
    CLIENTS = 20
    SIZE = 256 * KIB

    @defer.inlineCallbacks
    def test_exhaustion(self):  # type: ignore[no-untyped-def]
        echo, target = self.startEcho()
        wrapper = (
            "import os, resource, runpy, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.LIMIT}, {self.LIMIT}))\n"
            f"held = [os.open('/dev/null', os.O_RDONLY) for _ in range({self.HELD})]\n"
            "sys.argv = ['gostrelay'] + sys.argv[1:]\n"
            "runpy.run_module('gostrelay', run_name='__main__', alter_sys=True)\n"
        )
        home = self.mktemp()
        child = spawn(
            reactor,
            [sys.executable, "-c", wrapper, "-L", f"tcp://127.0.0.1:0/127.0.0.1:{target}"],
            home, childEnvironment(home=os.path.abspath(home)), name="forwarder", addCleanup=self.addCleanup,
        )
        m = yield child.waitForLine(LISTENING, timeout=15)
        port = int(m.group(2))
        yield sleep(0.2)
        baseline = openFiles(child.pid)
        self.assertGreater(baseline, self.HELD)

        clients = [Client() for _ in range(self.CLIENTS)]
        for c in clients:
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), c)
            self.addCleanup(lambda c=c: c.transport.abortConnection() if not c.closed else None)  # type: ignore[union-attr]
        connected = yield pollUntil(reactor, lambda: len(echo.open) == self.CLIENTS, 10)
        self.assertTrue(connected, child.describe())
        for c in clients:
            for _ in range(self.SIZE // (32 * KIB)):
                c.transport.write(b"y" * 32 * KIB)  # type: ignore[union-attr]
        served = yield pollUntil(reactor, lambda: all(c.received >= self.SIZE or c.closed for c in clients), 30)
        self.assertTrue(served, f"{[c.received for c in clients]}\n{child.describe()}")
        self.assertEqual([c.received for c in clients], [self.SIZE] * self.CLIENTS, child.describe())
        yield child.waitForLine(r"splice: no kernel pipe \(\[Errno 24\]", timeout=5)

        for c in clients:
            c.transport.loseConnection()  # type: ignore[union-attr]
        yield defer.DeferredList([c.ended for c in clients])
        back = yield pollUntil(reactor, lambda: openFiles(child.pid) <= baseline, 15)
        self.assertTrue(back, f"{openFiles(child.pid)} descriptors open, {baseline} at start\n{child.describe()}")
        yield pollUntil(reactor, lambda: not echo.open, 5)
        self.assertEqual(echo.open, set())  # type: ignore[attr-defined]
        self.assertNotIn("Traceback", child.out + child.err, child.describe())
        self.assertNotIn("Unhandled", child.out + child.err, child.describe())
