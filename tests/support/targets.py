"""
Echo targets and collecting clients for integration tests over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echo every byte; on the peer's FIN close after the echoed bytes.
    """

    def connectionMade(self) -> None:
        self.received = 0
        self.factory.accepted.append(self)  # type: ignore[attr-defined]
        self.factory.open.add(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class EchoFactory(Factory):
    protocol = Echo
    noisy = False

    def __init__(self) -> None:
        self.accepted: list[Echo] = []
        self.open: set[Echo] = set()


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
