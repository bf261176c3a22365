"""
Fake UDP sockets for unit tests on a memory reactor: one L{FakeUDPPort}
(the listening port and transport of one socket, recording what is sent),
one L{UDPMemoryReactor} that binds them, and a fake session handler for a
UDP listener's session table.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import DNSLookupError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.transports.udp import UDPListener, UDPSessionTable


class FakeUDPPort:
    """
    The listening port and transport of one fake UDP socket, as
    C{listenUDP} returns it: records every datagram written in C{sent},
    with its address (the connected one when none is given); refuses a
    write once closed; on C{stopListening} stops its protocol once, as a
    real port does.
    """

    def __init__(self, protocol: Any, address: IPv4Address | IPv6Address, interface: str = "", maxPacketSize: int = 8192) -> None:
        self.protocol = protocol
        self.address = address
        self.port = address.port
        self.interface = interface
        self.maxPacketSize = maxPacketSize
        self.addressFamily = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.connectedTo: tuple[str, int] | None = None
        self.sent: list[tuple[bytes, Any]] = []
        self.listening = True

    def connect(self, host: str, port: int) -> None:
        self.connectedTo = (host, port)

    def write(self, data: bytes, addr: Any = None) -> None:
        assert self.listening, "write on a closed UDP port"
        self.sent.append((bytes(data), addr if addr is not None else self.connectedTo))

    def stopListening(self) -> defer.Deferred[None]:
        if self.listening:
            self.listening = False
            self.protocol.doStop()
        return defer.succeed(None)

    loseConnection = stopListening

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.address


class UDPMemoryReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also binds fake UDP sockets (C{udpPorts},
    in order): on the port asked for, an ephemeral one from 40000 for port
    0; or refuses with C{udpError} when set.  It resolves the names in
    C{names}, and nothing else.
    """

    udpError: Exception | None = None

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[FakeUDPPort] = []
        self.names: dict[str, str] = {}
        self._ephemeral = 39999

    def ephemeralPort(self) -> int:
        self._ephemeral += 1
        return self._ephemeral

    def address(self, kind: str, interface: str, port: int) -> IPv4Address | IPv6Address:
        """
        The address a socket bound to C{interface}:C{port} reports.
        """
        if port == 0:
            port = self.ephemeralPort()
        host = interface or "0.0.0.0"
        return (IPv6Address if ":" in host else IPv4Address)(kind, host, port)  # type: ignore[arg-type]

    def makeUDPPort(self, port: int, protocol: Any, interface: str, maxPacketSize: int) -> FakeUDPPort:
        return FakeUDPPort(protocol, self.address("UDP", interface, port), interface, maxPacketSize)

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> FakeUDPPort:  # type: ignore[override]
        if self.udpError is not None:
            raise self.udpError
        fake = self.makeUDPPort(port, protocol, interface, maxPacketSize)
        self.udpPorts.append(fake)
        protocol.makeConnection(fake)
        return fake

    def resolve(self, name: str, timeout: Any = (1, 3, 11, 45)) -> defer.Deferred[str]:  # type: ignore[override]
        if name in self.names:
            return defer.succeed(self.names[name])
        return defer.fail(DNSLookupError(name))


class FakeSession:
    """
    One session a UDP listener opened: the client datagrams it was handed,
    and whether it was closed.
    """

    def __init__(self, table: Any, client: str) -> None:
        self.table = table
        self.client = client
        self.datagrams: list[bytes] = []
        self.closed = False

    def clientDatagram(self, data: bytes) -> None:
        self.datagrams.append(data)

    def close(self) -> None:
        self.closed = True


class FakeSessionHandler:
    """
    A UDP listener's handler that opens L{FakeSession}s: C{sessions} in
    order, C{byClient} by the client's C{host:port}.
    """

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.byClient: dict[str, FakeSession] = {}

    def openSession(self, table: Any, client: str) -> FakeSession:
        session = FakeSession(table, client)
        self.sessions.append(session)
        self.byClient[client] = session
        return session


def udpTable(url: str) -> tuple[Clock, UDPListener, UDPSessionTable, FakeSessionHandler]:
    """
    The session table of the UDP listener of C{-L url} on a L{Clock}, its
    sessions opened by a L{FakeSessionHandler}, its replies recorded by a
    L{FakeUDPPort}.
    """
    clock = Clock()
    config = buildConfigFromCommandLine([url], [])
    listener = UDPListener(clock, config.services[0], BuildContext(clock, config))
    handler = FakeSessionHandler()
    table = UDPSessionTable(listener, handler)
    table.transport = FakeUDPPort(table, IPv4Address("UDP", "127.0.0.1", 5353))  # type: ignore[assignment]
    return clock, listener, table, handler
