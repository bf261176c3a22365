"""
The reliability guarantees of gostrelay, each proven by a test.

Two kinds of tests live here:

  - unit tests on a L{Clock} / L{MemoryReactorClock} (no sockets, no real
    time): every timeout (C{readTimeout}, C{dialTimeout}, C{connectTimeout},
    C{idleTimeout}, C{halfCloseTimeout}, the UDP session C{ttl}), every
    connection limit (C{maxConns}, C{maxConnsPerIP}, GOST's C{climiter},
    UDP C{maxSessions}) and every buffer cap (relay request, proxy request,
    HTTP head, smux per-stream hold);
  - scenarios against real C{python -m gostrelay} children on 127.0.0.1
    (L{Lab}): back-pressure through a two-hop chain (plain, C{splice=false},
    ws, rtcp/smux), slowloris, no leaks over thousands of connections,
    faults mid-stream, half-close, graceful stop (C{SIGTERM},
    C{gracePeriod}) and C{SIGHUP} reload.

The scenarios are plain functions of a L{Lab} and their sizes, so that
C{bench/reliability.py} runs the very same code at benchmark sizes (the CI
sizes here are small: 3 s of pushing, 300 slowloris connections, 2000
short connections).  docs/reliability.md has the guarantees, the commands
and the measured numbers.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import statistics
import time
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableDescriptor, IHalfCloseableProtocol, IWriteDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from gostrelay.build import BuildContext, buildServices, connectionLimits
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.connectors.relay import RelayClientEndpoint
from gostrelay.handlers.proxy import MAX_REQUEST_BUFFER, AutoHandler
from gostrelay.handlers.relay import DEFAULT_READ_TIMEOUT, RelayHandler
from gostrelay.mux import MuxConfig, MuxSession
from gostrelay.pipe import A, B, DEFAULT_HALF_CLOSE_TIMEOUT, Pipe
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.testing import MemoryRelay
from gostrelay.tracking import ServiceFactory
from gostrelay.transports.udp import DEFAULT_MAX_SESSIONS, DEFAULT_TTL, UDPListener, UDPSessionTable
from gostrelay.wire import smux
from gostrelay.wire.httpproxy import MAX_HEAD_SIZE
from gostrelay.wire.relay import (
    OpaqueFeature,
    Request,
    ResponseParser,
    Status,
    UserAuthFeature,
    connectRequest,
    encodeResponse,
)
from tests.processes import CONSOLE, LISTENING, LineProcessProtocol, childEnvironment, openFiles, spawn, statusKiB

MIB = 1024 * 1024
KIB = 1024

OK = encodeResponse(Status.OK)
FORBIDDEN = encodeResponse(Status.FORBIDDEN)
NETWORK_UNREACHABLE = encodeResponse(Status.NETWORK_UNREACHABLE)
BAD_REQUEST = encodeResponse(Status.BAD_REQUEST)

CLIENT = IPv4Address("TCP", "198.51.100.7", 40000)


# =====================================================================
# Helpers shared by the unit tests


class LogCapture:
    """
    Every log event while installed, as formatted text (and the events).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    @property
    def lines(self) -> list[str]:
        return [formatEvent(e) or "" for e in self.events]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]


def captureLogs(case: unittest.SynchronousTestCase) -> LogCapture:
    capture = LogCapture()
    case.addCleanup(capture.stop)
    return capture


class TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, like Twisted's TCP transports, accepts
    C{unregisterProducer} with no producer and producer calls after a
    close; it records C{abortConnection}.
    """

    aborted = False

    def __init__(self, peer: Any = CLIENT, **kwargs: Any) -> None:
        kwargs.setdefault("lenient", True)
        super().__init__(peerAddress=peer, **kwargs)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


@implementer(IHalfCloseableDescriptor)
class HalfCloseableTransport(TCPLikeTransport):
    """
    A transport that can shut its write side, as a TCP socket can.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def relayHandler(url: str, reactor: Any = None) -> RelayHandler:
    """
    The relay handler of the one service of C{-L url}, on C{reactor}
    (a fresh L{MemoryReactorClock} by default).
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    config = buildConfigFromCommandLine([url], [])
    return RelayHandler(reactor, config.services[0], BuildContext(reactor, config))


def autoHandler(url: str, reactor: Any = None) -> AutoHandler:
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
    return [c for c in reactor.getDelayedCalls() if c.active()]


def completeDial(reactor: MemoryReactorClock, index: int = -1) -> tuple[Any, TCPLikeTransport]:
    """
    Complete the dial recorded in C{reactor.tcpClients[index]}: its
    protocol and transport (a half-closeable TCP-like one).
    """
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    transport = HalfCloseableTransport(peer=IPv4Address("TCP", host, port))
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return protocol, transport


# =====================================================================
# Timeouts (unit, simulated time)


class ReadTimeoutTests(unittest.SynchronousTestCase):
    """
    C{readTimeout} (handler, default 15 s): a client must send its whole
    request within it, else the connection is closed without a reply.
    """

    def test_relayDefault(self) -> None:
        logs = captureLogs(self)
        handler = relayHandler("relay://:8420")
        self.assertEqual(handler.readTimeout, DEFAULT_READ_TIMEOUT)
        self.assertEqual(DEFAULT_READ_TIMEOUT, 15.0)
        protocol, transport = accept(handler)
        protocol.dataReceived(b"\x01\x00")
        handler.reactor.advance(14.999)
        self.assertFalse(transport.disconnecting)
        handler.reactor.advance(0.001)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"", "closed without a reply")
        self.assertEqual(len(logs.matching(r"closed without reply: no complete request within 15s \(2 bytes read\)")), 1, logs.text)
        lose(protocol, transport)
        self.assertEqual(pendingCalls(handler.reactor), [])

    def test_relayConfigured(self) -> None:
        handler = relayHandler("relay://:8420?readTimeout=2s")
        self.assertEqual(handler.readTimeout, 2.0)
        protocol, transport = accept(handler)
        handler.reactor.advance(1.999)
        self.assertFalse(transport.disconnecting)
        handler.reactor.advance(0.001)
        self.assertTrue(transport.disconnecting)

    def test_relayZeroMeansDefault(self) -> None:
        """
        0 (or less) is not "no timeout": a relay server always bounds the
        request, as GOST does.
        """
        self.assertEqual(relayHandler("relay://:8420?readTimeout=0").readTimeout, 15.0)
        self.assertEqual(relayHandler("relay://:8420?readTimeout=-1s").readTimeout, 15.0)

    def test_relayRequestCompleteCancels(self) -> None:
        """
        A complete request stops the read timer (the dial has its own).
        """
        handler = relayHandler("relay://:8420?readTimeout=2s&dialTimeout=60s")
        protocol, transport = accept(handler)
        protocol.dataReceived(connectRequest("192.0.2.1:80").encode())
        handler.reactor.advance(30)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(handler.reactor.tcpClients), 1)

    def test_proxyEntry(self) -> None:
        """
        The local proxy entry (auto/http/socks) bounds its request the same
        way.
        """
        logs = captureLogs(self)
        handler = autoHandler("auto://:8080")
        self.assertEqual(handler.readTimeout, 15.0)
        protocol, transport = accept(handler)
        protocol.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\n")
        handler.reactor.advance(14.9)
        self.assertFalse(transport.disconnecting)
        handler.reactor.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(logs.matching("no complete request within 15s"), logs.text)
        lose(protocol, transport)
        self.assertEqual(pendingCalls(handler.reactor), [])


class DialTimeoutTests(unittest.SynchronousTestCase):
    """
    C{dialTimeout} (service, default 15 s) bounds each dial; a CONNECT
    whose target does not answer gets 0x07 (Network Unreachable).
    """

    def dialNoAnswer(self, url: str, timeout: float) -> None:
        logs = captureLogs(self)
        handler = relayHandler(url)
        reactor = handler.reactor
        protocol, transport = accept(handler)
        protocol.dataReceived(connectRequest("192.0.2.1:80").encode())
        self.assertEqual(len(reactor.tcpClients), 1)
        reactor.advance(timeout - 0.001)
        self.assertEqual(transport.value(), b"")
        reactor.advance(0.001)
        self.assertEqual(transport.value(), NETWORK_UNREACHABLE)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(reactor.connectors[-1].stoppedConnecting, "the socket's connect was abandoned")
        self.assertTrue(logs.matching(rf"refused with Network Unreachable: dial 192\.0\.2\.1:80: timed out after {timeout:g}s"), logs.text)
        lose(protocol, transport)
        self.assertEqual(pendingCalls(reactor), [])

    def test_default(self) -> None:
        self.assertEqual(DEFAULT_DIAL_TIMEOUT, 15.0)
        self.dialNoAnswer("relay://:8420", 15.0)

    def test_configured(self) -> None:
        self.dialNoAnswer("relay://:8420?dialTimeout=2s", 2.0)

    def test_clientLeavesWhileDialing(self) -> None:
        """
        The client going away cancels the dial and its timer.
        """
        handler = relayHandler("relay://:8420")
        protocol, transport = accept(handler)
        protocol.dataReceived(connectRequest("192.0.2.1:80").encode())
        lose(protocol, transport, ConnectionLost())
        self.assertTrue(handler.reactor.connectors[-1].stoppedConnecting)
        self.assertEqual(pendingCalls(handler.reactor), [])


class _Carrier:
    """
    An endpoint whose connections are L{TCPLikeTransport}s, remembered.
    """

    def __init__(self) -> None:
        self.transports: list[TCPLikeTransport] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        transport = TCPLikeTransport(peer=IPv4Address("TCP", "192.0.2.9", 8420))
        protocol = factory.buildProtocol(transport.getPeer())
        transport.protocol = protocol  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return defer.succeed(protocol)


class ConnectTimeoutTests(unittest.SynchronousTestCase):
    """
    C{connectTimeout} (relay connector, 0 = none) bounds the wait for the
    relay response; only C{nodelay=true} waits for it while connecting.
    """

    def endpoint(self, nodelay: bool, connectTimeout: float) -> tuple[Clock, _Carrier, RelayClientEndpoint]:
        clock = task.Clock()
        carrier = _Carrier()
        ep = RelayClientEndpoint(
            clock, carrier, connectRequest("192.0.2.1:80").encode(), "192.0.2.1:80",
            nodelay=nodelay, responseWait=10.0, connectTimeout=connectTimeout,
        )
        return clock, carrier, ep

    def test_nodelayNoResponse(self) -> None:
        clock, carrier, ep = self.endpoint(True, 3.0)
        d = ep.connect(Factory.forProtocol(Protocol))
        self.assertNoResult(d)
        clock.advance(2.999)
        self.assertNoResult(d)
        self.assertFalse(carrier.transports[0].aborted)
        clock.advance(0.001)
        f = self.failureResultOf(d, ConnectError)
        self.assertIn("no relay response within 3s", f.getErrorMessage())
        self.assertTrue(carrier.transports[0].aborted)
        carrier.transports[0].protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(pendingCalls(clock), [])

    def test_nodelayResponseInTime(self) -> None:
        clock, carrier, ep = self.endpoint(True, 3.0)
        d = ep.connect(Factory.forProtocol(Protocol))
        clock.advance(1)
        carrier.transports[0].protocol.dataReceived(OK)
        self.successResultOf(d)
        clock.advance(100)
        self.assertFalse(carrier.transports[0].aborted)
        self.assertEqual(pendingCalls(clock), [])

    def test_defaultModeNoTimer(self) -> None:
        """
        Without nodelay the connection is the application's at once; no
        response timer runs.
        """
        clock, carrier, ep = self.endpoint(False, 3.0)
        d = ep.connect(Factory.forProtocol(Protocol))
        self.successResultOf(d)
        clock.advance(100)
        self.assertFalse(carrier.transports[0].aborted)

    def test_zeroIsOff(self) -> None:
        clock, carrier, ep = self.endpoint(True, 0.0)
        d = ep.connect(Factory.forProtocol(Protocol))
        clock.advance(1000)
        self.successResultOf(d)  # the application got it after responseWait
        self.assertFalse(carrier.transports[0].aborted)


Clock = task.Clock


def pipeBetween(clock: Any, idleTimeout: float = 0, halfCloseTimeout: float = 0, halfCloseable: bool = False) -> tuple[Pipe, list[TCPLikeTransport], list[Any]]:
    done: list[Any] = []
    pipe = Pipe(clock, idleTimeout, lambda p, r: done.append(r), halfCloseTimeout=halfCloseTimeout)
    kind = HalfCloseableTransport if halfCloseable else TCPLikeTransport
    transports = [kind(), kind()]
    pipe.attach(A, transports[0])
    pipe.attach(B, transports[1])
    return pipe, transports, done


class IdleTimeoutTests(unittest.SynchronousTestCase):
    """
    C{idleTimeout} (handler, 0 = off): a pipe without a byte either way for
    that long is closed both ways, and says so.
    """

    def test_pipeClosesWhenIdle(self) -> None:
        clock = Clock()
        pipe, (a, b), done = pipeBetween(clock, idleTimeout=5)
        clock.advance(3)
        pipe.dataReceived(A, b"x")
        clock.advance(4.999)
        self.assertFalse(a.disconnecting or b.disconnecting, "activity at 3 s moved the deadline to 8 s")
        clock.advance(0.001)
        self.assertTrue(a.disconnecting and b.disconnecting)
        self.assertTrue(pipe.idleTimedOut)
        pipe.connectionLost(A)
        pipe.connectionLost(B)
        self.assertEqual(len(done), 1)
        self.assertEqual(pendingCalls(clock), [])

    def test_zeroIsOff(self) -> None:
        clock = Clock()
        pipe, (a, b), _ = pipeBetween(clock, idleTimeout=0)
        self.assertEqual(pendingCalls(clock), [], "no timer at all")
        clock.advance(86400)
        self.assertFalse(a.disconnecting or b.disconnecting)

    def test_relayHandler(self) -> None:
        """
        Through the relay server (an in-memory one): the client and the
        target are both closed after idleTimeout, the log says "idle
        timeout".
        """
        logs = captureLogs(self)

        class Echo(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[union-attr]

        relay = MemoryRelay({"echo.example:7": Factory.forProtocol(Echo)}, url="relay://127.0.0.1:8420?idleTimeout=10s")
        self.assertEqual(relay.handler.idleTimeout, 10.0)
        received: list[bytes] = []

        class Client(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

        d = connectProtocol(relay.clientEndpoint("echo.example", 7), Client())
        relay.flush()
        client = self.successResultOf(d)
        client.transport.write(b"ping")
        relay.flush(advance=0.1)
        self.assertEqual(b"".join(received), b"ping")
        relay.flush(advance=9.5)
        self.assertFalse(client.transport.disconnecting)
        relay.flush(advance=0.5)
        relay.flush(advance=0.1)
        self.assertTrue(logs.matching(r"CONNECT echo\.example:7/tcp .*closed, 4 bytes up, 4 bytes down, .*idle timeout"), logs.text)
        self.assertEqual(relay.pumps, [], "both sides closed")
        self.assertEqual(pendingCalls(relay.reactor), [])


class HalfCloseTimeoutTests(unittest.SynchronousTestCase):
    """
    C{halfCloseTimeout} (handler, ours, default 60 s): once one direction
    has finished (a FIN passed on as a half-close), the other may go on for
    that long, then both sides are closed.
    """

    def test_default(self) -> None:
        self.assertEqual(DEFAULT_HALF_CLOSE_TIMEOUT, 60.0)
        self.assertEqual(relayHandler("relay://:8420").halfCloseTimeout, 60.0)
        self.assertEqual(relayHandler("relay://:8420?halfCloseTimeout=5s").halfCloseTimeout, 5.0)
        self.assertEqual(autoHandler("auto://:8080?halfCloseTimeout=7s").halfCloseTimeout, 7.0)

    def test_linger(self) -> None:
        clock = Clock()
        pipe, (a, b), done = pipeBetween(clock, halfCloseTimeout=60, halfCloseable=True)
        pipe.readEOF(A)
        self.assertTrue(b.writeClosed, "the FIN was passed on as a half-close")
        self.assertFalse(a.disconnecting or b.disconnecting)
        pipe.dataReceived(B, b"still talking")
        self.assertEqual(a.value(), b"still talking")
        clock.advance(59.999)
        self.assertFalse(a.disconnecting or b.disconnecting)
        clock.advance(0.001)
        self.assertTrue(a.disconnecting and b.disconnecting)
        self.assertTrue(pipe.halfCloseTimedOut)
        pipe.connectionLost(A)
        pipe.connectionLost(B)
        self.assertEqual(pendingCalls(clock), [])
        self.assertEqual(len(done), 1)

    def test_otherDirectionFinishes(self) -> None:
        """
        The linger timer goes when the other direction ends in time.
        """
        clock = Clock()
        pipe, (a, b), done = pipeBetween(clock, halfCloseTimeout=60, halfCloseable=True)
        pipe.readEOF(A)
        clock.advance(10)
        pipe.readEOF(B)
        self.assertTrue(a.disconnecting and b.disconnecting)
        self.assertFalse(pipe.halfCloseTimedOut)
        pipe.connectionLost(A)
        pipe.connectionLost(B)
        self.assertEqual(pendingCalls(clock), [])

    def test_zeroLingersForever(self) -> None:
        clock = Clock()
        pipe, (a, b), _ = pipeBetween(clock, halfCloseTimeout=0, halfCloseable=True)
        pipe.readEOF(A)
        self.assertEqual(pendingCalls(clock), [])
        clock.advance(86400)
        self.assertFalse(a.disconnecting or b.disconnecting)


class _FakeUpstream:
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.closed = False

    def clientDatagram(self, data: bytes) -> None:
        self.datagrams.append(data)

    def close(self) -> None:
        self.closed = True


class _FakeUDPHandler:
    def __init__(self) -> None:
        self.upstreams: dict[str, _FakeUpstream] = {}

    def openSession(self, table: Any, client: str) -> _FakeUpstream:
        upstream = self.upstreams[client] = _FakeUpstream()
        return upstream


class _FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def udpTable(url: str) -> tuple[Clock, UDPListener, UDPSessionTable, _FakeUDPHandler]:
    clock = Clock()
    config = buildConfigFromCommandLine([url], [])
    listener = UDPListener(clock, config.services[0], BuildContext(clock, config))
    handler = _FakeUDPHandler()
    table = UDPSessionTable(listener, handler)
    table.transport = _FakeUDPTransport()  # type: ignore[assignment]
    return clock, listener, table, handler


class UDPSessionTTLTests(unittest.SynchronousTestCase):
    """
    A UDP session (udp listener) ends after C{ttl} (default 60 s) without a
    datagram either way.
    """

    def test_default(self) -> None:
        self.assertEqual(DEFAULT_TTL, 60.0)
        clock, listener, table, handler = udpTable("udp://127.0.0.1:5353/192.0.2.1:53")
        self.assertEqual(listener.ttl, 60.0)
        table.datagramReceived(b"q1", ("127.0.0.1", 1111))
        clock.advance(59)
        table.datagramReceived(b"q2", ("127.0.0.1", 1111))
        clock.advance(30)
        table.reply("127.0.0.1:1111", b"a1")  # a reply counts too: now 89 s
        clock.advance(59.999)
        self.assertIn("127.0.0.1:1111", table.sessions)
        clock.advance(0.001)
        self.assertNotIn("127.0.0.1:1111", table.sessions)
        self.assertTrue(handler.upstreams["127.0.0.1:1111"].closed)
        self.assertEqual(table.expired, 1)
        self.assertEqual(pendingCalls(clock), [])

    def test_configured(self) -> None:
        clock, listener, table, handler = udpTable("udp://127.0.0.1:5353/192.0.2.1:53?ttl=5s")
        self.assertEqual(listener.ttl, 5.0)
        table.datagramReceived(b"q", ("127.0.0.1", 1111))
        clock.advance(5)
        self.assertEqual(table.sessions, {})
        self.assertEqual(pendingCalls(clock), [])


# =====================================================================
# Limits (unit and in-process)


class _Handler(Factory):
    noisy = False

    def buildProtocol(self, addr: Any) -> Protocol:
        return Protocol()


def peer(host: str, port: int = 1) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class ConnectionLimitTests(unittest.SynchronousTestCase):
    """
    Over C{maxConns} / C{maxConnsPerIP} / GOST's C{climiter}, a new
    connection gets no protocol (Twisted closes it at once), with a log
    line at most once a second.
    """

    def connect(self, factory: ServiceFactory, host: str) -> tuple[Any, TCPLikeTransport] | None:
        protocol = factory.buildProtocol(peer(host))
        if protocol is None:
            return None
        transport = TCPLikeTransport(peer=peer(host))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_maxConns(self) -> None:
        logs = captureLogs(self)
        clock = Clock()
        factory = ServiceFactory(_Handler(), "svc", clock, maxConns=2)
        first = self.connect(factory, "192.0.2.1")
        second = self.connect(factory, "192.0.2.2")
        self.assertIsNotNone(first)
        self.assertIsNotNone(second)
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertEqual(factory.refused, 2)
        self.assertEqual(len(logs.matching(r"svc: connection from 192\.0\.2\.3 refused: limit of 2 connections \(maxConns\)")), 1, "one line a second")
        clock.advance(1)
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertEqual(len(logs.matching("maxConns")), 2)
        assert first is not None
        first[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.connect(factory, "192.0.2.3"), "a slot freed")

    def test_maxConnsPerIP(self) -> None:
        factory = ServiceFactory(_Handler(), "svc", Clock(), maxConnsPerIP=1)
        first = self.connect(factory, "192.0.2.1")
        self.assertIsNotNone(first)
        self.assertIsNone(self.connect(factory, "192.0.2.1"))
        self.assertIsNotNone(self.connect(factory, "192.0.2.2"))
        assert first is not None
        first[0].connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("192.0.2.1", factory.perIP, "no per-IP entry left behind")
        self.assertIsNotNone(self.connect(factory, "192.0.2.1"))

    def test_climiter(self) -> None:
        """
        GOST's climiter: C{"$ N"} per service, C{"$$ N"} per client IP; the
        smallest of ours and GOST's wins; other forms are refused.
        """
        config = Config.fromDict(
            {
                "services": [
                    {"name": "s", "addr": ":8420", "handler": {"type": "relay"}, "climiter": "lim",
                     "metadata": {"maxConns": 10, "maxConnsPerIP": 1}},
                ],
                "climiters": [{"name": "lim", "limits": ["$ 3", "$$ 5"]}],
            }
        )
        self.assertEqual(connectionLimits(config.services[0], config, "s"), (3, 1))
        config.climiters[0].extra["limits"] = ["192.0.2.1 2"]
        self.assertRaises(ConfigError, connectionLimits, config.services[0], config, "s")
        config.services[0].climiter = "missing"
        self.assertRaises(ConfigError, connectionLimits, config.services[0], config, "s")

    def test_urlOptions(self) -> None:
        config = buildConfigFromCommandLine(["relay://:8420?maxConns=7&maxConnsPerIP=2"], [])
        self.assertEqual(connectionLimits(config.services[0], config, "s"), (7, 2))


class UDPMaxSessionsTests(unittest.SynchronousTestCase):
    """
    UDP sessions are capped (C{maxSessions}, default 4096): a new client
    evicts the least recently used session.
    """

    def test_evicts(self) -> None:
        self.assertEqual(DEFAULT_MAX_SESSIONS, 4096)
        clock, listener, table, handler = udpTable("udp://127.0.0.1:5353/192.0.2.1:53?maxSessions=2")
        self.assertEqual(listener.maxSessions, 2)
        table.datagramReceived(b"a", ("127.0.0.1", 1))
        table.datagramReceived(b"b", ("127.0.0.1", 2))
        table.datagramReceived(b"a", ("127.0.0.1", 1))  # 1 is now the most recent
        table.datagramReceived(b"c", ("127.0.0.1", 3))
        self.assertEqual(list(table.sessions), ["127.0.0.1:1", "127.0.0.1:3"])
        self.assertTrue(handler.upstreams["127.0.0.1:2"].closed)
        self.assertEqual(table.evicted, 1)
        for i in range(100):
            table.datagramReceived(b"x", ("127.0.0.1", 1000 + i))
        self.assertEqual(len(table.sessions), 2)
        self.assertEqual(len(pendingCalls(clock)), 2, "one ttl timer per live session")
        table.closeAll()
        self.assertEqual(pendingCalls(clock), [])


class BufferCapTests(unittest.SynchronousTestCase):
    """
    Nothing buffers without bound before a connection is established.
    """

    def test_relayRequestBounded(self) -> None:
        """
        A relay request is at most 4 + 65535 bytes (its length field is 16
        bits): the largest possible one is read whole and answered; the
        parser never holds more.
        """
        handler = relayHandler("relay://:8420")
        protocol, transport = accept(handler)
        request = Request(1, (OpaqueFeature(0x7F, b"\xaa" * 65532),)).encode()
        self.assertEqual(len(request), 4 + 65535)
        for i in range(0, len(request) - 1, 4096):
            protocol.dataReceived(request[i : min(i + 4096, len(request) - 1)])
            self.assertLessEqual(protocol.parser.buffered, 4 + 65535)
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(request[-1:] + b"\x00" * 100000)
        self.assertEqual(transport.value(), BAD_REQUEST, "answered: no target in the request")
        self.assertEqual(protocol.parser.buffered, 0)

    def test_relayPausedWhileHandling(self) -> None:
        """
        Once the request is complete the client is not read until the
        target is connected (what was already read waits, bounded by one
        socket read).
        """
        handler = relayHandler("relay://:8420")
        protocol, transport = accept(handler)
        protocol.dataReceived(connectRequest("192.0.2.1:80").encode() + b"early")
        self.assertEqual(transport.producerState, "paused")
        completeDial(handler.reactor)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(transport.value(), OK)

    def test_proxyRequestBuffer(self) -> None:
        """
        The proxy entry holds at most 128 KiB of a request: more at once is
        refused; the SOCKS parsers cap their own fields far below (a SOCKS4
        user id without its NUL ends at 255 bytes).
        """
        logs = captureLogs(self)
        self.assertEqual(MAX_REQUEST_BUFFER, 128 * KIB)
        handler = autoHandler("auto://:8080")
        protocol, transport = accept(handler)
        protocol.dataReceived(b"\x05\x01\x00" + b"z" * MAX_REQUEST_BUFFER)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(logs.matching(f"request larger than {MAX_REQUEST_BUFFER} bytes"), logs.text)

        protocol, transport = accept(handler)
        protocol.dataReceived(b"\x04\x01\x00\x50\xc0\x00\x02\x01")
        for _ in range(40):
            if transport.disconnecting:
                break
            protocol.dataReceived(b"u" * 100)
        self.assertTrue(transport.disconnecting)
        self.assertLess(len(protocol.buffer), 400)
        self.assertTrue(logs.matching("SOCKS4 userid longer than 255 bytes"), logs.text)

    def test_httpHead(self) -> None:
        """
        An HTTP request head over 64 KiB gets 431 and a close, whether it
        arrives in pieces or at once.
        """
        self.assertEqual(MAX_HEAD_SIZE, 64 * KIB)
        for pieces in (1, 64):
            handler = autoHandler("auto://:8080")
            protocol, transport = accept(handler)
            head = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"a" * (70 * KIB)
            size = len(head) // pieces + 1
            for i in range(0, len(head), size):
                if transport.disconnecting:
                    break
                protocol.dataReceived(head[i : i + size])
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:60])
            self.assertTrue(transport.disconnecting)

    def smuxSession(self, version: int, maxReceiveBuffer: int) -> tuple[MuxSession, TCPLikeTransport, list[Any]]:
        clock = Clock()
        transport = TCPLikeTransport()
        streams: list[Any] = []
        config = MuxConfig(version=version, maxReceiveBuffer=maxReceiveBuffer, keepaliveDisabled=True)
        session = MuxSession(clock, transport, client=False, config=config, acceptStream=streams.append)
        return session, transport, streams

    def test_smuxV2HoldCap(self) -> None:
        """
        smux v2: a paused stream holds what arrives (and withholds window
        updates) up to maxReceiveBuffer; past it the session is closed.
        """
        logs = captureLogs(self)
        session, transport, streams = self.smuxSession(2, 256 * KIB)
        session.dataReceived(smux.encodeFrame(2, smux.SYN, 3))
        stream = streams[0]
        stream.attach(Protocol())
        stream.pauseProducing()
        frame = smux.encodeFrame(2, smux.PSH, 3, b"x" * 32768)
        for _ in range(8):
            session.dataReceived(frame)
        self.assertFalse(session.closed)
        self.assertEqual(stream._pendingBytes, 256 * KIB)
        session.dataReceived(frame)
        self.assertTrue(session.closed)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(logs.matching("exceeded its receive buffer"), logs.text)

    def test_smuxUnattachedStreamCap(self) -> None:
        """
        A stream nobody has attached a protocol to yet is capped the same
        way (v1 too).
        """
        session, transport, streams = self.smuxSession(1, 64 * KIB)
        session.dataReceived(smux.encodeFrame(1, smux.SYN, 3))
        frame = smux.encodeFrame(1, smux.PSH, 3, b"x" * 32768)
        for _ in range(3):
            session.dataReceived(frame)
        self.assertTrue(session.closed)

    def test_smuxV1PausesCarrier(self) -> None:
        """
        smux v1 has no per-stream window: a paused stream pauses the
        carrier, so nothing piles up in the session.
        """
        session, transport, streams = self.smuxSession(1, 64 * KIB)
        session.dataReceived(smux.encodeFrame(1, smux.SYN, 3))
        stream = streams[0]
        stream.attach(Protocol())
        stream.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        stream.resumeProducing()
        self.assertEqual(transport.producerState, "producing")


# =====================================================================
# The lab: gostrelay children and in-process peers on 127.0.0.1


def freePort() -> int:
    """
    A TCP port that was free on 127.0.0.1 a moment ago.
    """
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def waitUntil(reactor: Any, predicate: Callable[[], bool], timeout: float, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """
    Poll C{predicate} until it holds (fires C{True}) or C{timeout} passes
    (fires C{False}).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        yield sleep(reactor, interval)
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


# -- in-process targets


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echo every byte; on the peer's FIN send C{factory.farewell} and close.
    """

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.factory.accepted += 1  # type: ignore[attr-defined]
        self.received = 0
        self.eof = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]
        if self.factory.resetAfter and self.received >= self.factory.resetAfter:  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.eof = True
        self.transport.write(self.factory.farewell)  # type: ignore[union-attr, attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]
        self.factory.closed.append((self, reason))  # type: ignore[attr-defined]


class EchoFactory(Factory):
    protocol = Echo
    noisy = False

    def __init__(self, farewell: bytes = b"", resetAfter: int = 0) -> None:
        self.open: set[Echo] = set()
        self.closed: list[tuple[Echo, Failure]] = []
        self.accepted = 0
        self.farewell = farewell
        self.resetAfter = resetAfter


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


@implementer(IHalfCloseableProtocol)
class RelayProbe(Protocol):
    """
    A relay client by hand: sends C{first} (a request, maybe payload, maybe
    junk), parses the response, collects the bytes after it; optionally
    closes once C{closeAfter} bytes came back.

    @ivar done: fires with this probe when the connection is lost.
    """

    def __init__(self, first: bytes, closeAfter: int = -1, halfClose: bool = False) -> None:
        self.first = first
        self.closeAfter = closeAfter
        self.halfClose = halfClose
        self.parser: ResponseParser | None = ResponseParser()
        self.status: int | None = None
        self.data = bytearray()
        self.eof = False
        self.reason: Failure | None = None
        self.started = time.monotonic()
        self.answered: float | None = None
        self.echoed: float | None = None
        self.ended: float | None = None
        self.response: defer.Deferred[RelayProbe] = defer.Deferred()
        self.done: defer.Deferred[RelayProbe] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.first:
            self.transport.write(self.first)  # type: ignore[union-attr]
        if self.halfClose:
            self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
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

    def readConnectionLost(self) -> None:
        self.eof = True

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.ended = time.monotonic()
        if not self.response.called:
            self.response.callback(self)
        self.done.callback(self)


def connectTo(port: int, user: str | None = None, password: str = "", payload: bytes = b"") -> bytes:
    return connectRequest(f"127.0.0.1:{port}", username=user, password=password).encode() + payload


# =====================================================================
# Scenarios (also run by bench/reliability.py at benchmark sizes)

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
        client, _ = yield lab.start("-L", f"rtcp://127.0.0.1:{entry}/127.0.0.1:{target}", *hops, waitFor="listening on", name="client")
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
    yield sleep(reactor, 0.3)
    idle = {name: statusKiB(pid) for name, pid in pids.items()}
    sampler = RSSSampler(reactor, pids)
    sampler.start()
    blaster = Blaster(reactor, entry)
    lab.onCleanup(blaster.close)
    t0 = time.monotonic()
    blaster.start()
    marks: list[tuple[float, int]] = []
    while time.monotonic() - t0 < seconds:
        yield sleep(reactor, 0.1)
        marks.append((time.monotonic() - t0, blaster.sent))
    blaster.stop()
    sampler.stop()
    lastSecond = blaster.sent - max((s for t, s in marks if t <= seconds - 1.0), default=0)
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
    }
    # Now read: everything sent must arrive, in order.
    for r in receivers.receivers:
        r.resume()
    t1 = time.monotonic()
    yield waitUntil(reactor, lambda: sum(r.received for r in receivers.receivers) >= blaster.sent, timeout=60)
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
    Sends one byte of a relay request and stalls.
    """

    def connectionMade(self) -> None:
        self.opened = time.monotonic()
        self.closed: float | None = None
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
    server, port = yield lab.start("-L", f"relay://127.0.0.1:0?readTimeout={readTimeout:g}s", name="relay")
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
    yield sleep(reactor, 0.2)
    stillOpen = sum(1 for s in stallers if s.closed is None)
    loaded = yield latency(lab, port, echoPort, samples)
    yield waitUntil(reactor, lambda: factory.lost >= connections, timeout=readTimeout + 15)
    lifetimes = [s.closed - s.opened for s in stallers if s.closed is not None]
    yield server.waitForLine("no complete request within", timeout=1)
    timeoutLines = len([line for line in server.lines["out"] if f"no complete request within {readTimeout:g}s (1 bytes read)" in line])
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
def noLeaks(lab: Lab, connections: int, concurrency: int = 32, warmup: int = 500):  # type: ignore[no-untyped-def]
    """
    A relay server with a user; C{warmup} short connections, then the
    baseline (descriptors, RSS), then C{connections} more (a tenth each
    refused, bad password, junk); then the same measures once idle.
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
    yield waitUntil(reactor, lambda: not echo.open, timeout=5)
    yield sleep(reactor, 0.3)
    baseline = {"fds": fds(), "rssKiB": statusKiB(pid)}
    t0 = time.monotonic()
    outcomes = yield shortConnections(lab, port, echoPort, closedPort, connectionKinds(connections), concurrency)
    elapsed = time.monotonic() - t0
    peak = {"fds": fds(), "rssKiB": statusKiB(pid, "VmHWM")}
    yield waitUntil(reactor, lambda: not echo.open and fds() <= baseline["fds"], timeout=10)
    yield sleep(reactor, 0.3)
    after = {"fds": fds(), "rssKiB": statusKiB(pid)}
    problems = [line for line in server.lines["out"] + server.lines["err"] if "Traceback" in line or "Unhandled" in line]
    return {
        "connections": connections,
        "concurrency": concurrency,
        "seconds": elapsed,
        "outcomes": outcomes,
        "start": start,
        "baseline": baseline,
        "peak": peak,
        "after": after,
        "targetsOpen": len(echo.open),
        "problems": problems,
        "log": server.describe(),
    }
