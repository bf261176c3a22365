"""
Driving a handler in memory: build the handler of a GOST command line on a
memory reactor, accept a connection into it, complete its dials, deliver
the end of a connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.handlers.proxy import AutoHandler
from gostrelay.handlers.relay import RelayHandler
from tests.support.fakes import HalfCloseableTransport, TCPLikeTransport


def relayHandler(url: str, reactor: Any = None) -> RelayHandler:
    """
    The relay handler of the one service of C{-L url}, on C{reactor}
    (a fresh L{MemoryReactorClock} by default).
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    config = buildConfigFromCommandLine([url], [])
    return RelayHandler(reactor, config.services[0], BuildContext(reactor, config))


def autoHandler(url: str, reactor: Any = None) -> AutoHandler:
    """
    The proxy entry (C{auto}: HTTP, SOCKS4, SOCKS5) of C{-L url}.
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    config = buildConfigFromCommandLine([url], [])
    return AutoHandler(reactor, config.services[0], BuildContext(reactor, config))


def accept(handler: Any, transport: TCPLikeTransport | None = None) -> tuple[Any, TCPLikeTransport]:
    """
    A connection to C{handler}: its protocol and its client transport.
    """
    transport = transport if transport is not None else TCPLikeTransport()
    protocol = handler.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    return protocol, transport


def lose(protocol: Any, transport: StringTransport, reason: Any = None) -> None:
    """
    Deliver the end of a connection the protocol (or its peer) closed.
    """
    transport.disconnecting = True
    protocol.connectionLost(Failure(reason or ConnectionDone()))


def pendingCalls(reactor: Any) -> list[Any]:
    """
    The timers still to run on C{reactor} (a memory reactor or a clock).
    """
    return [c for c in reactor.getDelayedCalls() if c.active()]


def completeDial(reactor: MemoryReactorClock, index: int = -1) -> tuple[Any, TCPLikeTransport]:
    """
    Complete the dial recorded in C{reactor.tcpClients[index]}: its
    protocol and transport (a half-closeable TCP-like one).
    """
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    transport = HalfCloseableTransport(peerAddress=IPv4Address("TCP", host, port))
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return protocol, transport
