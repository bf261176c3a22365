"""
In-memory stand-ins for the unit tests: transports that behave like TCP
ones and record what is written and how the connection was closed, and an
application protocol that records what it receives.  Fake UDP sockets live
in L{tests.support.udp}, fake routes in L{tests.support.routes}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

#: The peer a recording transport reports unless told otherwise: a relay
#: server on its default port.
SERVER = IPv4Address("TCP", "127.0.0.1", 8420)

#: The peer a TCP-like transport reports unless told otherwise: a client
#: on a public (documentation) address, so that no private-address rule
#: applies to it by accident.
CLIENT = IPv4Address("TCP", "198.51.100.7", 40000)


class TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, like Twisted's TCP transports, accepts
    C{unregisterProducer} with no producer registered (counted in
    C{unregistered}) and producer calls after C{loseConnection}; it records
    C{abortConnection} in C{aborted} and, given a C{log}, appends
    C{(name, data)} for each write to it, to check the order of writes
    across transports.
    """

    aborted = False

    def __init__(self, log: list[tuple[str, bytes]] | None = None, name: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("lenient", True)
        kwargs.setdefault("peerAddress", CLIENT)
        super().__init__(**kwargs)
        self.log = log
        self.name = name
        self.unregistered = 0

    def write(self, data: bytes) -> None:
        if self.log is not None:
            self.log.append((self.name, data))
        super().write(data)

    def unregisterProducer(self) -> None:
        self.unregistered += 1
        self.producer = None
        self.streaming = None

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


@implementer(IHalfCloseableDescriptor)
class HalfCloseableTransport(TCPLikeTransport):
    """
    A TCP-like transport that can shut its write side, as a TCP socket can.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class RecordingTransport(StringTransport):
    """
    A L{StringTransport} that remembers each write and each way of closing,
    in order, in C{events}.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("peerAddress", SERVER)
        super().__init__(**kwargs)
        self.writes: list[bytes] = []
        self.events: list[Any] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append(("write", data))
        super().write(data)

    def loseConnection(self) -> None:
        self.events.append("lose")
        super().loseConnection()

    def abortConnection(self) -> None:
        self.aborted = True
        self.events.append("abort")
        self.disconnecting = True

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


@implementer(IHalfCloseableDescriptor)
class HalfCloseableRecordingTransport(RecordingTransport):
    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True
        self.events.append("loseWrite")


@implementer(IHalfCloseableProtocol)
class App(Protocol):
    """
    Writes C{first} when connected (if given); records what it receives.
    """

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.received = b""
        self.made = False
        self.lostReason: Failure | None = None
        self.readEOF = False

    def connectionMade(self) -> None:
        self.made = True
        if self.first:
            self.transport.write(self.first)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.readEOF = True

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason


class AppFactory(Factory):
    noisy = False

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.built: list[App] = []

    def buildProtocol(self, addr: Any) -> App:
        app = App(self.first)
        app.factory = self
        self.built.append(app)
        return app
