"""
A lab for integration scenarios with real processes: C{python -m
gostrelay} children, in-process listeners and clients on 127.0.0.1, every
one released at cleanup; and a relay client written by hand from the wire
format.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.wire.relay import ResponseParser, connectRequest
from tests.processes import CONSOLE, LISTENING, LineProcessProtocol, childEnvironment, spawn
from tests.support.reactor import sleep


@defer.inlineCallbacks
def pollUntil(reactor: Any, predicate: Callable[[], bool], timeout: float, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """
    Poll C{predicate} until it holds (fires C{True}) or C{timeout} passes
    (fires C{False}): for scenarios that report what they saw rather than
    fail (L{tests.support.reactor.waitUntil} fails instead).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        yield sleep(interval, reactor)
    return True


class Lab:
    """
    The children and sockets of one scenario, all released by
    L{cleanup} (registered with a test's C{addCleanup} when given).
    """

    def __init__(self, reactor: Any, workdir: str, addCleanup: Callable[..., Any] | None = None) -> None:
        self.reactor = reactor
        self.workdir = workdir
        self.children: list[LineProcessProtocol] = []
        self._cleanups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        if addCleanup is not None:
            addCleanup(self.cleanup)

    def onCleanup(self, f: Callable[..., Any], *args: Any) -> None:
        self._cleanups.append((f, args))

    @defer.inlineCallbacks
    def cleanup(self):  # type: ignore[no-untyped-def]
        while self._cleanups:
            f, args = self._cleanups.pop()
            try:
                yield defer.maybeDeferred(f, *args)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass

    def path(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    @defer.inlineCallbacks
    def start(self, *args: str, waitFor: Any = LISTENING, name: str = ""):  # type: ignore[no-untyped-def]
        """
        Start C{python -m gostrelay ARGS} in its own directory (and HOME);
        fire with C{(process, port)} once it prints C{waitFor} (default
        its "listening on" line; port is then the port it names, else 0).
        """
        home = self.path(f"child-{len(self.children)}")
        proc = spawn(self.reactor, CONSOLE + list(args), home, childEnvironment(home=home), name=name or " ".join(args))
        self.children.append(proc)
        self.onCleanup(proc.stop)
        m = yield proc.waitForLine(waitFor, timeout=15)
        port = int(m.group(2)) if waitFor is LISTENING else 0
        return proc, port

    def listen(self, factory: Any) -> int:
        """
        Listen on 127.0.0.1 in this process; stopped (and its connections
        aborted) at cleanup.
        """
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")

        def stop() -> Any:
            for protocol in list(getattr(factory, "open", ())):
                if protocol.transport is not None:
                    protocol.transport.abortConnection()
            return port.stopListening()

        self.onCleanup(stop)
        return int(port.getHost().port)

    def connect(self, port: int, protocol: Protocol, timeout: float = 5) -> defer.Deferred[Any]:
        """
        Connect C{protocol} to 127.0.0.1:C{port}; it is aborted at cleanup
        if still connected.
        """

        def abort() -> None:
            if protocol.transport is not None and protocol.connected:
                protocol.transport.abortConnection()

        self.onCleanup(abort)
        return connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", port, timeout=timeout), protocol)


@implementer(IHalfCloseableProtocol)
class RelayProbe(Protocol):
    """
    A relay client by hand: sends C{first} (a request, maybe payload, maybe
    junk), parses the response, collects the bytes after it; optionally
    half-closes after C{first}, or closes once C{closeAfter} bytes came
    back.

    @ivar response: fires with this probe once the response arrived (or
        the connection was lost without one: C{status} is then C{None}).
    @ivar done: fires with this probe when the connection is lost.
    @ivar raw: every byte received; C{data}: the bytes after the response.
    @ivar eof: whether the peer half-closed us (FIN) before the loss.
    """

    def __init__(self, first: bytes, closeAfter: int = -1, halfClose: bool = False) -> None:
        self.first = first
        self.closeAfter = closeAfter
        self.halfClose = halfClose
        self.parser: ResponseParser | None = ResponseParser()
        self.status: int | None = None
        self.raw = bytearray()
        self.data = bytearray()
        self.eof = False
        self.lost = False
        self.localPort = 0
        self.reason: Failure | None = None
        self.started = time.monotonic()
        self.answered: float | None = None
        self.echoed: float | None = None
        self.ended: float | None = None
        self.response: defer.Deferred[RelayProbe] = defer.Deferred()
        self.done: defer.Deferred[RelayProbe] = defer.Deferred()

    def connectionMade(self) -> None:
        self.localPort = getattr(self.transport.getHost(), "port", 0)  # type: ignore[union-attr]  # 0 over a unix socket
        if self.first:
            self.transport.write(self.first)  # type: ignore[union-attr]
        if self.halfClose:
            self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        if self.parser is not None:
            response = self.parser.feed(data)
            if response is None:
                return
            self.status = response.status
            self.answered = time.monotonic()
            data, self.parser = self.parser.remainder, None
            self.response.callback(self)
        self.data += data
        if self.closeAfter >= 0 and len(self.data) >= self.closeAfter and self.echoed is None:
            self.echoed = time.monotonic()
            self.transport.loseConnection()  # type: ignore[union-attr]

    def send(self, payload: bytes, halfClose: bool = False) -> None:
        self.transport.write(payload)  # type: ignore[union-attr]
        if halfClose:
            self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        # The peer's FIN: noted (half-close tests look), then we close too.
        self.eof = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        self.reason = reason
        self.ended = time.monotonic()
        if not self.response.called:
            self.response.callback(self)
        self.done.callback(self)



def connectTo(port: int, user: str | None = None, password: str = "", payload: bytes = b"") -> bytes:
    """
    A relay CONNECT to 127.0.0.1:C{port} (with a user, when given),
    followed by C{payload}.
    """
    return connectRequest(f"127.0.0.1:{port}", username=user, password=password).encode() + payload
