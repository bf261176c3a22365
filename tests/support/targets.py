"""
Echo targets and collecting clients for integration tests over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support.reactor import withTimeout


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echo every byte; on the peer's FIN (a half-close) write
    C{factory.farewell} and close after the echoed bytes; abort once
    C{factory.resetAfter} bytes arrived, when set.
    """

    def connectionMade(self) -> None:
        self.received = 0
        self.halfClosed = False
        self.factory.accepted.append(self)  # type: ignore[attr-defined]
        self.factory.open.add(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]
        resetAfter = self.factory.resetAfter  # type: ignore[attr-defined]
        if resetAfter and self.received >= resetAfter:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.halfClosed = True
        if self.factory.farewell:  # type: ignore[attr-defined]
            self.transport.write(self.factory.farewell)  # type: ignore[union-attr, attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]
        self.factory.closed.append((self, reason))  # type: ignore[attr-defined]


class EchoFactory(Factory):
    """
    Echo targets (see L{Echo} for C{farewell} and C{resetAfter}); records
    the peer address of every connection (C{addresses}), every connection
    accepted, those still open, and each one's end with its reason.
    """

    protocol = Echo
    noisy = False

    def __init__(self, farewell: bytes = b"", resetAfter: int = 0) -> None:
        self.farewell = farewell
        self.resetAfter = resetAfter
        self.addresses: list[Any] = []
        self.accepted: list[Echo] = []
        self.open: set[Echo] = set()
        self.closed: list[tuple[Echo, Failure]] = []

    def buildProtocol(self, addr: Any) -> Protocol | None:
        self.addresses.append(addr)
        return super().buildProtocol(addr)


class Collector(Protocol):
    """
    A client: sends C{payload} when connected, collects what comes back;
    once C{expect} bytes (default: as many as it sent, for an echo) have
    arrived it closes.  C{done} fires with itself when the connection is
    lost (C{reason} says why).
    """

    def __init__(self, payload: bytes = b"", expect: int | None = None) -> None:
        self.payload = payload
        self.expect = len(payload) if expect is None else expect
        self.data = bytearray()
        self.done: defer.Deferred[Collector] = defer.Deferred()
        self.reason: Failure | None = None
        self.lost = False
        self.connected = False

    def connectionMade(self) -> None:
        self.connected = True
        if self.payload:
            self.transport.write(self.payload)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.expect and len(self.data) >= self.expect:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        self.reason = reason
        self.done.callback(self)


class BannerProtocol(Protocol):
    """
    A server-speaks-first target (SMTP, FTP, MySQL, VNC): a banner at
    once, then an echo.
    """

    BANNER = b"220 banner.test ESMTP ready\r\n"

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.transport.write(self.BANNER)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class UDPEcho(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.received: list[tuple[int, Any]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append((len(data), addr))
        self.transport.write(data, addr)  # type: ignore[union-attr]


class UDPClient(DatagramProtocol):
    """
    Sends datagrams to one address; L{exchange} fires with the next reply.
    """

    noisy = False

    def __init__(self) -> None:
        self.waiting: list[defer.Deferred[bytes]] = []
        self.replies: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.replies.append(data)
        if self.waiting:
            self.waiting.pop(0).callback(data)

    def exchange(self, data: bytes, addr: tuple[str, int], timeout: float = 5.0) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        self.waiting.append(d)
        self.transport.write(data, addr)  # type: ignore[union-attr]

        def timedOut(result: Any, t: float) -> Any:
            if d in self.waiting:
                self.waiting.remove(d)
            if isinstance(result, Failure) and result.check(defer.CancelledError):
                raise defer.TimeoutError(f"no reply to a {len(data)}-byte datagram within {t:g}s")
            return result

        d.addTimeout(timeout, reactor, onTimeoutCancel=timedOut)
        return d


@implementer(IHalfCloseableProtocol)
class HalfCloseCollector(Protocol):
    """
    A client: optionally sends C{payload} then half-closes; collects
    everything until the connection ends (C{done}).
    """

    def __init__(self, payload: bytes = b"", halfClose: bool = True) -> None:
        self.payload = payload
        self.halfClose = halfClose
        self.data = bytearray()
        self.done: defer.Deferred[HalfCloseCollector] = defer.Deferred()
        self.lost = False
        self.waiters: list[tuple[int, defer.Deferred[bytes]]] = []

    def connectionMade(self) -> None:
        if self.payload:
            self.transport.write(self.payload)  # type: ignore[union-attr]
            if self.halfClose:
                self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for n, d in list(self.waiters):
            if len(self.data) >= n:
                self.waiters.remove((n, d))
                d.callback(bytes(self.data))

    def waitFor(self, n: int, timeout: float, what: str) -> defer.Deferred[bytes]:
        if len(self.data) >= n:
            return defer.succeed(bytes(self.data))
        d: defer.Deferred[bytes] = defer.Deferred()
        self.waiters.append((n, d))
        return withTimeout(d, timeout, what)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        self.done.callback(self)
