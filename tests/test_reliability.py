"""
The reliability guarantees of gostrelay, each proven by a test.

Two kinds of tests live here:

  - unit tests on a L{Clock} / L{MemoryReactorClock} (no sockets, no real
    time): every timeout (C{readTimeout}, C{dialTimeout}, C{connectTimeout},
    C{idleTimeout}, C{halfCloseTimeout}, the UDP session C{ttl}), every
    connection limit (C{maxConns}, C{maxConnsPerIP}, GOST's C{climiter},
    UDP C{maxSessions}), every buffer cap (relay request, proxy request,
    HTTP head, WebSocket message, smux per-stream hold) and the graceful
    drain;
  - scenarios against real C{python -m gostrelay} children on 127.0.0.1
    (L{Lab}): back-pressure through a two-hop chain (plain, C{splice=false},
    ws, rtcp/smux), one direction flowing while the other is held back,
    connection limits on real sockets, slowloris, no leaks over thousands
    of connections, faults mid-stream, half-close, graceful stop
    (C{SIGTERM}, C{gracePeriod}) and C{SIGHUP} reload.

The scenarios are plain functions of a L{Lab} and their sizes
(L{tests.support.scenarios}), so that C{bench/reliability.py} runs the very
same code at benchmark sizes (the CI
sizes here are small: 3 s of pushing, 300 slowloris connections, 2000
short connections).  docs/reliability.md has the guarantees, the commands
and the measured numbers.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from gostrelay.build import connectionLimits
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.connectors.relay import RelayClientEndpoint
from gostrelay.handlers.proxy import MAX_REQUEST_BUFFER
from gostrelay.handlers.relay import DEFAULT_READ_TIMEOUT
from gostrelay.layering import AcceptFactory
from gostrelay.mux import MuxConfig, MuxSession
from gostrelay.pipe import DEFAULT_HALF_CLOSE_TIMEOUT, A, B, Pipe
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.testing import MemoryRelay
from gostrelay.tracking import ConnectionTable
from gostrelay.transports.udp import DEFAULT_MAX_SESSIONS, DEFAULT_TTL
from gostrelay.wire import smux
from gostrelay.wire.httpproxy import MAX_HEAD_SIZE
from gostrelay.wire.relay import (
    OpaqueFeature,
    Request,
    Status,
    connectRequest,
    encodeResponse,
)
from tests.processes import (
    LineProcessProtocol,
    cpuSeconds,
)
from tests.support.fakes import HalfCloseableTransport, TCPLikeTransport
from tests.support.handlers import accept, autoHandler, completeDial, lose, pendingCalls, relayHandler
from tests.support.lab import Lab, RelayProbe, connectTo, pollUntil
from tests.support.logs import captureLogs
from tests.support.reactor import sleep
from tests.support.scenarios import RSS_BUDGET_KIB, backPressure, connectionKinds, noLeaks, slowloris
from tests.support.targets import EchoFactory
from tests.support.udp import udpTable

MIB = 1024 * 1024
KIB = 1024

OK = encodeResponse(Status.OK)
FORBIDDEN = encodeResponse(Status.FORBIDDEN)
NETWORK_UNREACHABLE = encodeResponse(Status.NETWORK_UNREACHABLE)
BAD_REQUEST = encodeResponse(Status.BAD_REQUEST)



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
        self.assertEqual(handler.options.readTimeout, DEFAULT_READ_TIMEOUT)
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
        self.assertEqual(handler.options.readTimeout, 2.0)
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
        self.assertEqual(relayHandler("relay://:8420?readTimeout=0").options.readTimeout, 15.0)
        self.assertEqual(relayHandler("relay://:8420?readTimeout=-1s").options.readTimeout, 15.0)

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
        self.assertEqual(handler.options.readTimeout, 15.0)
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
        transport = TCPLikeTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 8420))
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
        self.assertIn("no response within 3s", f.getErrorMessage())
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
        self.assertEqual(relay.handler.options.idleTimeout, 10.0)
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
        self.assertEqual(relayHandler("relay://:8420").options.halfCloseTimeout, 60.0)
        self.assertEqual(relayHandler("relay://:8420?halfCloseTimeout=5s").options.halfCloseTimeout, 5.0)
        self.assertEqual(autoHandler("auto://:8080?halfCloseTimeout=7s").options.halfCloseTimeout, 7.0)

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
        self.assertTrue(handler.byClient["127.0.0.1:1111"].closed)
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


def acceptFactory(clock: Any, maxConns: int = 0, maxConnsPerIP: int = 0) -> AcceptFactory:
    """
    A service's accept layer (limits, counting, drain) over a handler.
    """
    return AcceptFactory(_Handler(), ConnectionTable("svc", clock, maxConns, maxConnsPerIP), clock)


class ConnectionLimitTests(unittest.SynchronousTestCase):
    """
    Over C{maxConns} / C{maxConnsPerIP} / GOST's C{climiter}, a new
    connection gets no protocol (Twisted closes it at once), with a log
    line at most once a second.
    """

    def connect(self, factory: AcceptFactory, host: str) -> tuple[Any, TCPLikeTransport] | None:
        protocol = factory.buildProtocol(peer(host))
        if protocol is None:
            return None
        transport = TCPLikeTransport(peerAddress=peer(host))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_maxConns(self) -> None:
        logs = captureLogs(self)
        clock = Clock()
        factory = acceptFactory(clock, maxConns=2)
        first = self.connect(factory, "192.0.2.1")
        second = self.connect(factory, "192.0.2.2")
        self.assertIsNotNone(first)
        self.assertIsNotNone(second)
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertEqual(factory.table.refused, 2)
        self.assertEqual(len(logs.matching(r"svc: connection from 192\.0\.2\.3:1 refused: limit of 2 connections \(maxConns\) reached")), 1, "one line a second")
        clock.advance(1)
        self.assertIsNone(self.connect(factory, "192.0.2.3"))
        self.assertEqual(len(logs.matching("maxConns")), 2)
        assert first is not None
        first[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.connect(factory, "192.0.2.3"), "a slot freed")

    def test_maxConnsPerIP(self) -> None:
        factory = acceptFactory(Clock(), maxConnsPerIP=1)
        first = self.connect(factory, "192.0.2.1")
        self.assertIsNotNone(first)
        self.assertIsNone(self.connect(factory, "192.0.2.1"))
        self.assertIsNotNone(self.connect(factory, "192.0.2.2"))
        assert first is not None
        first[0].connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("192.0.2.1", factory.table.perIP, "no per-IP entry left behind")
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


class DrainTests(unittest.SynchronousTestCase):
    """
    A graceful stop (L{AcceptFactory.drain}): connections that end by
    themselves within C{gracePeriod} end the wait; the rest are closed
    when it runs out.
    """

    def factoryWith(self, n: int) -> tuple[Clock, AcceptFactory, list[tuple[Any, TCPLikeTransport]]]:
        clock = Clock()
        factory = acceptFactory(clock)
        connections = []
        for i in range(n):
            protocol = factory.buildProtocol(peer(f"192.0.2.{i + 1}"))
            transport = TCPLikeTransport(peerAddress=peer(f"192.0.2.{i + 1}"))
            protocol.makeConnection(transport)
            connections.append((protocol, transport))
        return clock, factory, connections

    def test_endWithinGrace(self) -> None:
        clock, factory, connections = self.factoryWith(2)
        d = factory.drain(3.0)
        clock.advance(1)
        for protocol, _ in connections:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertFalse(any(t.disconnecting for _, t in connections), "nobody was closed by us")
        self.assertEqual(pendingCalls(clock), [])

    def test_closedAtTheEnd(self) -> None:
        logs = captureLogs(self)
        clock, factory, connections = self.factoryWith(2)
        d = factory.drain(3.0)
        clock.advance(2.999)
        self.assertNoResult(d)
        self.assertFalse(any(t.disconnecting for _, t in connections))
        clock.advance(0.001)
        self.assertTrue(all(t.disconnecting for _, t in connections))
        for protocol, _ in connections:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertTrue(logs.matching("svc: waiting up to 3s for 2 connections to finish"))
        self.assertTrue(logs.matching("svc: closing 2 connections at the end of the grace period"))
        self.assertEqual(pendingCalls(clock), [])

    def test_noGrace(self) -> None:
        clock, factory, connections = self.factoryWith(1)
        d = factory.drain(0)
        self.assertTrue(connections[0][1].disconnecting)
        connections[0][0].connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)

    def test_boundedWait(self) -> None:
        """
        A connection that never reports its end does not hold the stop for
        ever.
        """
        from gostrelay.tracking import CLOSE_WAIT

        self.assertEqual(CLOSE_WAIT, 2.0)
        clock, factory, connections = self.factoryWith(1)
        d = factory.drain(3.0)
        clock.advance(3.0)
        self.assertTrue(connections[0][1].disconnecting)
        clock.advance(CLOSE_WAIT - 0.001)
        self.assertNoResult(d)
        clock.advance(0.001)
        self.successResultOf(d)
        self.assertEqual(pendingCalls(clock), [])


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
        self.assertTrue(handler.byClient["127.0.0.1:2"].closed)
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

    def test_webSocketMessage(self) -> None:
        """
        A WebSocket message is capped at 64 KiB (GOST's 32 KiB per
        message, with headroom), in one frame or in fragments: past it the
        connection is dropped with a log line.  (Issue 19.4: it was 4 MiB
        per connection.)  Since issue 20 payloads are delivered as they
        arrive (nothing of a message is held): the fragments within the
        cap were delivered, nothing past it is.
        """
        import struct

        import txaio

        from gostrelay.transports.ws import MAX_MESSAGE, serverFactory

        self.assertEqual(MAX_MESSAGE, 64 * KIB)
        clock = Clock()
        self.patch(txaio.config, "loop", clock)
        received: list[int] = []

        class App(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(len(data))

        factory = serverFactory(Factory.forProtocol(App))
        handshake = (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

        def frameHead(opcode: int, size: int) -> bytes:
            if size < 65536:  # the shortest length encoding, as RFC 6455 requires
                return bytes([opcode, 0x80 | 126]) + struct.pack(">H", size) + b"\0\0\0\0"
            return bytes([opcode, 0x80 | 127]) + struct.pack(">Q", size) + b"\0\0\0\0"

        transport = TCPLikeTransport()
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(handshake)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        logs = captureLogs(self)
        protocol.dataReceived(frameHead(0x82, MAX_MESSAGE + 1) + b"x" * 1000)
        self.assertTrue(transport.disconnecting, "a frame over the cap is refused from its header")
        self.assertEqual(received, [])
        self.assertTrue(logs.matching("message larger than 65536 bytes; dropping"), logs.text)
        protocol.connectionLost(Failure(ConnectionDone()))

        transport = TCPLikeTransport()
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived(handshake)
        for i in range(5):
            self.assertFalse(transport.disconnecting)
            protocol.dataReceived(frameHead(0x02 if i == 0 else 0x00, 16 * KIB) + b"y" * 16 * KIB)
        self.assertTrue(transport.disconnecting, "fragments over the cap are refused")
        self.assertEqual(sum(received), MAX_MESSAGE)
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(100)

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
# The scenarios as CI tests (small sizes)


class LabTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.lab = Lab(reactor, os.path.abspath(self.mktemp()), self.addCleanup)

    def describe(self, *procs: LineProcessProtocol) -> str:
        return "\n".join(p.describe() for p in procs)


class BackPressureTests(LabTestCase):
    """
    A sender pushing as fast as it can for 3 s (bench: 10 s) through a
    two-hop chain to a receiver that does not read: every gostrelay
    process stays within 64 MiB of its idle RSS, the sender is held back
    (its non-blocking sends get EAGAIN and it makes no progress in the
    last second), and once the receiver reads, every byte arrives, in
    order.
    """

    SECONDS = 3.0

    @defer.inlineCallbacks
    def check(self, variant: str):  # type: ignore[no-untyped-def]
        result = yield backPressure(self.lab, variant, self.SECONDS)
        logs = "\n".join(result["logs"].values())
        summary = {k: v for k, v in result.items() if k != "logs"}
        for name, growth in result["growthKiB"].items():
            self.assertLess(growth, RSS_BUDGET_KIB, f"{name} grew {growth} KiB: {summary}\n{logs}")
        self.assertIsNone(result["senderError"], summary)
        self.assertGreater(result["sent"], MIB, f"nothing flowed: {summary}\n{logs}")
        self.assertGreater(result["eagain"], 0, f"the sender was never held back: {summary}")
        self.assertLess(result["sentLastSecond"], MIB, f"the sender was still making progress: {summary}")
        self.assertIsNotNone(result["probeAccepted"], f"a non-blocking send never got EAGAIN: {summary}")
        self.assertEqual(result["receivedWhileHeld"], 0)
        for name, cpu in result["cpuLastSecond"].items():
            # Held back means idle, not spinning (a splice bug once made the
            # middle relay spin here: see BothDirectionsTests.test_splice).
            self.assertLess(cpu, 0.5, f"{name} busy while everything is held back: {summary}")
        self.assertEqual(result["delivered"], result["sent"], f"bytes lost: {summary}\n{logs}")
        self.assertTrue(result["intact"], f"bytes corrupted or reordered: {summary}")

    def test_splice(self):  # type: ignore[no-untyped-def]
        return self.check("splice")

    def test_noSplice(self):  # type: ignore[no-untyped-def]
        return self.check("nosplice")

    def test_ws(self):  # type: ignore[no-untyped-def]
        return self.check("ws")

    def test_rtcpSmux(self):  # type: ignore[no-untyped-def]
        return self.check("rtcp")


class SlowlorisTests(LabTestCase):
    """
    300 connections (bench: 2000) that send one byte of a relay request and
    stall neither hold up a well-behaved client until they time out nor
    outlive C{readTimeout} (2 s here).  How much they slow it (the loaded
    median against the unloaded one) is a speed figure, measured by
    C{bench/reliability.py slowloris}, not asserted here: under a loaded CI
    machine it moves with the load, not with the code.
    """

    CONNECTIONS = 300

    @defer.inlineCallbacks
    def test_slowloris(self):  # type: ignore[no-untyped-def]
        result = yield slowloris(self.lab, self.CONNECTIONS, readTimeout=2.0)
        log = result.pop("log")
        self.assertEqual(result["stalledOpenWhileMeasuring"], self.CONNECTIONS, result)
        # Half the read timeout: a client served only once the stalled
        # connections time out would wait the whole 2 s.
        self.assertLess(result["loadedMedian"], 1.0, result)
        self.assertEqual(result["closed"], self.CONNECTIONS, result)
        self.assertGreaterEqual(result["lifetimeMin"], 2.0 - 0.05, result)
        # Closed by the read timeout, not held until some later one; the
        # slack is for a loaded machine (3.09 s was seen with other
        # benchmarks running: every lifetime, minimum included, late).
        self.assertLessEqual(result["lifetimeMax"], 2.0 + 2.0, result)
        self.assertEqual(result["timeoutLogLines"], self.CONNECTIONS, log[-3000:])


class LeakTests(LabTestCase):
    """
    After 2000 short relay connections (bench: 20000), a tenth each to a
    refused target, with a bad password and with junk, the relay server's
    descriptors are back to their baseline and its RSS near it.
    """

    CONNECTIONS = 2000

    #: How much RSS may stay above the baseline (allocator arenas, caches).
    RSS_SLACK_KIB = 16 * 1024

    @defer.inlineCallbacks
    def test_noLeaks(self):  # type: ignore[no-untyped-def]
        result = yield noLeaks(self.lab, self.CONNECTIONS)
        log = result.pop("log")
        expected = {"ok": 0, "refused": 0, "badauth": 0, "junk": 0}
        for kind in connectionKinds(self.CONNECTIONS):
            expected[kind] += 1
        self.assertEqual(result["outcomes"], expected, result)
        self.assertLessEqual(result["after"]["fds"], result["baseline"]["fds"], result)
        self.assertLessEqual(result["after"]["rssKiB"] - result["baseline"]["rssKiB"], self.RSS_SLACK_KIB, result)
        self.assertEqual(result["targetsOpen"], 0, result)
        self.assertEqual(result["problems"], [], log[-3000:])


class LimitsOnSocketsTests(LabTestCase):
    """
    Over a connection limit, a new connection on a real socket is closed at
    once, without a byte; a freed slot is usable again.
    """

    @defer.inlineCallbacks
    def startService(self, config: Config):  # type: ignore[no-untyped-def]
        from gostrelay.build import buildServices

        top = buildServices(self.reactor, config)
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        port = yield svc.listening
        return port.getHost().port

    @defer.inlineCallbacks
    def check(self, config: Config):  # type: ignore[no-untyped-def]
        echo = EchoFactory()
        echoPort = self.lab.listen(echo)
        port = yield self.startService(config)
        first = RelayProbe(connectTo(echoPort, payload=b"1"))
        yield self.lab.connect(port, first)
        yield pollUntil(self.reactor, lambda: bytes(first.data) == b"1", timeout=5)
        second = RelayProbe(connectTo(echoPort, payload=b"2"))
        started = time.monotonic()
        yield self.lab.connect(port, second)
        yield second.done
        self.assertLess(time.monotonic() - started, 0.5)
        self.assertIsNone(second.status, "closed without a reply")
        self.assertEqual(bytes(second.data), b"")
        self.assertEqual(len(echo.accepted), 1, "the refused connection reached no target")
        first.transport.loseConnection()  # type: ignore[union-attr]
        yield first.done

        @defer.inlineCallbacks
        def third():  # type: ignore[no-untyped-def]
            probe = RelayProbe(connectTo(echoPort, payload=b"3"), closeAfter=1)
            yield self.lab.connect(port, probe)
            yield probe.done
            return probe

        for _ in range(50):  # the server sees the first one end a moment later
            probe = yield third()
            if probe.status == 0:
                break
            yield sleep(0.02, self.reactor)
        self.assertEqual(bytes(probe.data), b"3")

    def test_maxConns(self):  # type: ignore[no-untyped-def]
        return self.check(buildConfigFromCommandLine(["relay://127.0.0.1:0?maxConns=1"], []))

    def test_maxConnsPerIP(self):  # type: ignore[no-untyped-def]
        return self.check(buildConfigFromCommandLine(["relay://127.0.0.1:0?maxConnsPerIP=1"], []))

    def test_climiter(self):  # type: ignore[no-untyped-def]
        return self.check(
            Config.fromDict(
                {
                    "services": [{"name": "r", "addr": "127.0.0.1:0", "handler": {"type": "relay"}, "listener": {"type": "tcp"}, "climiter": "one"}],
                    "climiters": [{"name": "one", "limits": ["$ 10", "$$ 1"]}],
                }
            )
        )


class FaultTests(LabTestCase):
    """
    Faults mid-stream end with both sides closed and a log line naming the
    cause.
    """

    @defer.inlineCallbacks
    def relayToEcho(self, query: str = "", **echoOptions: Any):  # type: ignore[no-untyped-def]
        echo = EchoFactory(**echoOptions)
        echoPort = self.lab.listen(echo)
        server, port = yield self.lab.start("-L", f"relay://127.0.0.1:0{query}", name="relay")
        probe = RelayProbe(connectTo(echoPort, payload=b"first"))
        yield self.lab.connect(port, probe)
        yield probe.response
        self.assertEqual(probe.status, 0)
        yield pollUntil(self.reactor, lambda: len(probe.data) >= 5, timeout=5)
        yield sleep(0.1, self.reactor)  # let the pipe settle (and splice)
        return echo, echoPort, server, probe

    @defer.inlineCallbacks
    def stream(self, probe: RelayProbe, chunks: int = 20):  # type: ignore[no-untyped-def]
        for _ in range(chunks):
            if probe.ended is not None:
                break
            probe.transport.write(b"x" * 32768)  # type: ignore[union-attr]
            yield sleep(0.02, self.reactor)

    @defer.inlineCallbacks
    def targetResets(self, query: str):  # type: ignore[no-untyped-def]
        echo, echoPort, server, probe = yield self.relayToEcho(query, resetAfter=200000)
        yield self.stream(probe)
        yield self.assertFiresWithin(probe.done, 5, server)
        self.assertEqual(len(echo.closed), 1)
        line = yield server.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*: closed, .*", timeout=5)
        return line.group(0)

    def assertFiresWithin(self, d: defer.Deferred[Any], seconds: float, *procs: LineProcessProtocol) -> defer.Deferred[Any]:
        timer = self.reactor.callLater(seconds, d.cancel)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        def failed(f: Failure) -> None:
            f.trap(defer.CancelledError)
            self.fail(f"not within {seconds}s\n{self.describe(*procs)}")

        return d.addBoth(done).addErrback(failed)

    @defer.inlineCallbacks
    def test_targetResetsNoSplice(self):  # type: ignore[no-untyped-def]
        line = yield self.targetResets("?splice=false")
        self.assertRegex(line, r"lost in a non-clean fashion|reset")

    @defer.inlineCallbacks
    def test_targetResetsSplice(self):  # type: ignore[no-untyped-def]
        """
        With splice (the default) too: the reason is the socket's
        (regression: the line used to say "Connection was aborted locally",
        our own abort, until Splicer kept the failed socket's reason).
        """
        line = yield self.targetResets("")
        self.assertNotIn("aborted locally", line)
        self.assertRegex(line, r"lost in a non-clean fashion|reset")

    @defer.inlineCallbacks
    def clientVanishes(self, query: str):  # type: ignore[no-untyped-def]
        echo, echoPort, server, probe = yield self.relayToEcho(query)
        yield self.stream(probe, 5)
        probe.transport.abortConnection()  # type: ignore[union-attr]
        yield pollUntil(self.reactor, lambda: not echo.open, timeout=5)
        self.assertEqual(echo.open, set(), "the target's side was closed")
        line = yield server.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*: closed, .*", timeout=5)
        return line.group(0)

    @defer.inlineCallbacks
    def test_clientVanishesNoSplice(self):  # type: ignore[no-untyped-def]
        line = yield self.clientVanishes("?splice=false")
        self.assertRegex(line, r"lost in a non-clean fashion|reset")

    @defer.inlineCallbacks
    def test_clientVanishesSplice(self):  # type: ignore[no-untyped-def]
        """
        As L{test_targetResetsSplice}, for a client that vanishes (RST)
        while the pipe is spliced.
        """
        line = yield self.clientVanishes("")
        self.assertNotIn("aborted locally", line)
        self.assertRegex(line, r"lost in a non-clean fashion|reset")

    @defer.inlineCallbacks
    def test_relayServerKilled(self):  # type: ignore[no-untyped-def]
        """
        The relay server dies (SIGKILL) while bytes flow: the forwarder in
        front of it closes its client and logs the reset; the target's
        side is closed by the dead server's kernel.  (A server that dies
        with nothing in flight looks like a clean close to its peers: the
        kernel sends a FIN, and the line says "done".)
        """
        echo = EchoFactory()
        echoPort = self.lab.listen(echo)
        server, serverPort = yield self.lab.start("-L", "relay://127.0.0.1:0", name="relay")
        client, port = yield self.lab.start("-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"relay://127.0.0.1:{serverPort}", name="forwarder")
        app = RelayProbe(b"")
        app.parser = None  # plain bytes: no relay response to parse
        yield self.lab.connect(port, app)
        app.transport.write(b"hello")  # type: ignore[union-attr]
        yield pollUntil(self.reactor, lambda: len(app.data) >= 5, timeout=5)
        self.assertEqual(bytes(app.data), b"hello", self.describe(server, client))
        writer = task.LoopingCall(lambda: app.transport.write(b"x" * 4096) if app.ended is None else None)  # type: ignore[union-attr]
        writer.clock = self.reactor
        writer.start(0.005)
        self.addCleanup(lambda: writer.stop() if writer.running else None)
        yield sleep(0.1, self.reactor)
        server.transport.signalProcess("KILL")  # type: ignore[union-attr]
        yield server.whenEnded()
        yield self.assertFiresWithin(app.done, 5, client)
        writer.stop()
        yield pollUntil(self.reactor, lambda: not echo.open, timeout=5)
        self.assertEqual(echo.open, set())
        # The dead server's kernel closes the carrier with a FIN, which is
        # what a relay server's normal close looks like too (the relay
        # protocol has no close message); the forwarder names a reset only
        # when its next write meets the kernel's RST.  What is guaranteed,
        # and checked: both sides closed, and a closing line with the bytes.
        line = yield client.waitForLine(rf"-> 127\.0\.0\.1:{echoPort}: closed, \d+ bytes up, \d+ bytes down, .*", timeout=5)
        self.assertRegex(line.group(0), r"done|reset|lost in a non-clean fashion|aborted|Broken pipe", client.describe())

    @defer.inlineCallbacks
    def test_dnsFailure(self):  # type: ignore[no-untyped-def]
        """
        A CONNECT to a name that does not resolve (under .invalid) gets 0x07
        promptly and a log line saying so.
        """
        server, port = yield self.lab.start("-L", "relay://127.0.0.1:0", name="relay")
        probe = RelayProbe(connectRequest("no-such-host.invalid:80").encode())
        started = time.monotonic()
        yield self.lab.connect(port, probe)
        yield self.assertFiresWithin(probe.done, 5, server)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual(probe.status, Status.NETWORK_UNREACHABLE)
        yield server.waitForLine(r"CONNECT no-such-host\.invalid:80/tcp .*refused with Network Unreachable: .*(name not resolved|DNS lookup failed)", timeout=2)


class HalfCloseTests(LabTestCase):
    """
    TCP half-close passes through between plain TCP sockets: the client's
    FIN reaches the target as a read EOF while the target can still
    write; the target's later bytes and FIN reach the client.
    """

    @defer.inlineCallbacks
    def check(self, query: str):  # type: ignore[no-untyped-def]
        echo = EchoFactory(farewell=b"bye")
        echoPort = self.lab.listen(echo)
        server, port = yield self.lab.start("-L", f"relay://127.0.0.1:0{query}", name="relay")
        probe = RelayProbe(connectTo(echoPort, payload=b"hello"))
        yield self.lab.connect(port, probe)
        yield pollUntil(self.reactor, lambda: len(probe.data) >= 5, timeout=5)
        yield sleep(0.1, self.reactor)
        probe.transport.loseWriteConnection()  # type: ignore[union-attr]
        yield probe.done
        self.assertEqual(probe.status, 0)
        self.assertEqual(bytes(probe.data), b"hellobye", server.describe())
        self.assertTrue(probe.eof, "the target's FIN reached the client")
        (target,) = [p for p, _ in echo.closed]
        self.assertTrue(target.halfClosed, "the client's FIN reached the target as a half-close")
        yield server.waitForLine(r"closed, 5 bytes up, 8 bytes down, .*done", timeout=5)

    def test_splice(self):  # type: ignore[no-untyped-def]
        # Threshold 0: spliced at once, so the FIN passes through the kernel path.
        return self.check("?spliceThreshold=0")

    def test_spliceAfterThreshold(self):  # type: ignore[no-untyped-def]
        # The default: 5 bytes stay in userspace.
        return self.check("")

    def test_noSplice(self):  # type: ignore[no-untyped-def]
        return self.check("?splice=false")


class Downloader(Protocol):
    """
    A target that sends C{size} bytes as soon as it is connected and
    counts what it receives.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.received = b""

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.transport.write(b"d" * self.size)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class BothDirectionsTests(LabTestCase):
    """
    While one direction of a relayed connection is held back (its reader
    does not read), the other direction keeps flowing, and the relay
    server stays idle.
    """

    @defer.inlineCallbacks
    def check(self, query: str):  # type: ignore[no-untyped-def]
        factory = Factory()
        factory.open = set()  # type: ignore[attr-defined]
        factory.connections = []  # type: ignore[attr-defined]
        factory.protocol = lambda: Downloader(16 * MIB)  # type: ignore[assignment]
        targetPort = self.lab.listen(factory)
        server, port = yield self.lab.start("-L", f"relay://127.0.0.1:0{query}", name="relay")
        client = RelayProbe(connectTo(targetPort))
        yield self.lab.connect(port, client)
        client.transport.pauseProducing()  # type: ignore[union-attr]
        yield sleep(1.0, self.reactor)  # the download fills every buffer
        cpu0 = cpuSeconds(server.pid)
        client.transport.write(b"ping")  # type: ignore[union-attr]
        arrived = yield pollUntil(self.reactor, lambda: any(d.received == b"ping" for d in factory.connections), timeout=3)
        spent = cpuSeconds(server.pid) - cpu0
        client.transport.resumeProducing()  # type: ignore[union-attr]
        drained = yield pollUntil(self.reactor, lambda: len(client.data) >= 16 * MIB, timeout=10)
        self.assertTrue(arrived, f"the upload never reached the target while the download was held back\n{server.describe()}")
        self.assertLess(spent, 0.5, f"the relay server used {spent:.2f} s of CPU while waiting")
        self.assertTrue(drained, f"{len(client.data)} of {16 * MIB} bytes downloaded")

    def test_noSplice(self):  # type: ignore[no-untyped-def]
        return self.check("?splice=false")

    def test_splice(self):  # type: ignore[no-untyped-def]
        """
        With splice (the default) too.

        Regression (found by this test, fixed in 800ff00): gostrelay.splice
        registered one reactor descriptor per direction and role, two for
        each socket's fd (direction A->B reads fd A, direction B->A writes
        fd A), and Twisted's epoll reactor keeps one selectable per fd
        (EPollReactor._add: C{selectables[fd] = xer}).  Once B->A's writer
        was added for fd A, read events on fd A went to it: its doRead()
        read B, the bytes waiting on A were never read, and the
        level-triggered EPOLLIN fired again at once.  Here: the upload
        never arrived and the relay spun at 100% CPU.  Between relays, in
        the two-hop back-pressure chain, the middle relay sometimes spun and
        stopped passing R2's bytes back (R2's 4-byte OK arriving after R1
        began waiting to write to R2), and an rtcp tunnel under
        back-pressure lost its smux keepalives at the spliced hop and was
        closed after mux.keepaliveTimeout.  Now one descriptor per socket
        dispatches to both directions.
        """
        return self.check("")


class GracefulStopTests(LabTestCase):
    """
    SIGTERM stops listening at once; with gracePeriod=3s an established
    connection keeps working for up to 3 s and is then closed.
    """

    @defer.inlineCallbacks
    def test_gracePeriod(self):  # type: ignore[no-untyped-def]
        echo = EchoFactory()
        echoPort = self.lab.listen(echo)
        server, port = yield self.lab.start("-L", "relay://127.0.0.1:0?gracePeriod=3s", name="relay")
        probe = RelayProbe(connectTo(echoPort, payload=b"0"))
        yield self.lab.connect(port, probe)
        yield pollUntil(self.reactor, lambda: len(probe.data) >= 1, timeout=5)
        server.transport.signalProcess("TERM")  # type: ignore[union-attr]
        t0 = time.monotonic()
        yield server.waitForLine("waiting up to 3s for 1 connections to finish", timeout=2)
        # Not listening any more: a new connection is refused.
        refusedAt = None
        while time.monotonic() - t0 < 1.0:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):
                refusedAt = time.monotonic() - t0
                break
            yield sleep(0.02, self.reactor)
        self.assertIsNotNone(refusedAt, "still accepting after SIGTERM")
        # The established connection still works during the grace period.
        for i in range(1, 6):
            yield sleep(0.5, self.reactor)
            probe.transport.write(b"%d" % i)  # type: ignore[union-attr]
            ok = yield pollUntil(self.reactor, lambda n=i + 1: len(probe.data) >= n, timeout=0.4)
            self.assertTrue(ok, f"no echo {0.5 * i:.1f}s into the grace period\n{server.describe()}")
        yield self.assertFiresWithinGrace(probe)
        closedAt = time.monotonic() - t0
        self.assertGreaterEqual(closedAt, 2.9)
        self.assertLess(closedAt, 4.0)
        yield server.waitForExit(timeout=5)
        self.assertEqual(server.exitCode, 0, server.describe())
        self.assertIn("closing 1 connections at the end of the grace period", server.out)
        self.assertRegex(server.out, rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp user='': closed, 6 bytes up, 6 bytes down")

    def assertFiresWithinGrace(self, probe: RelayProbe) -> defer.Deferred[Any]:
        return FaultTests.assertFiresWithin(self, probe.done, 3, *self.lab.children)  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def test_noGracePeriod(self):  # type: ignore[no-untyped-def]
        """
        Without gracePeriod the connections are closed at once and the
        process exits.
        """
        echo = EchoFactory()
        echoPort = self.lab.listen(echo)
        server, port = yield self.lab.start("-L", "relay://127.0.0.1:0", name="relay")
        probe = RelayProbe(connectTo(echoPort, payload=b"0"))
        yield self.lab.connect(port, probe)
        yield pollUntil(self.reactor, lambda: len(probe.data) >= 1, timeout=5)
        t0 = time.monotonic()
        server.transport.signalProcess("TERM")  # type: ignore[union-attr]
        yield FaultTests.assertFiresWithin(self, probe.done, 2, server)  # type: ignore[arg-type]
        yield server.waitForExit(timeout=5)
        self.assertLess(time.monotonic() - t0, 2.0)


class ReloadTests(LabTestCase):
    """
    SIGHUP re-reads users files: a user added to the auther's file is
    accepted afterwards, and established connections carry on.
    """

    @defer.inlineCallbacks
    def test_sighupAddsUser(self):  # type: ignore[no-untyped-def]
        import yaml

        echo = EchoFactory()
        echoPort = self.lab.listen(echo)
        users = os.path.join(self.lab.path("conf"), "users.txt")
        with open(users, "w") as f:
            f.write("# user password\nalice wonderland\n")
        config = os.path.join(self.lab.path("conf"), "gost.yaml")
        with open(config, "w") as f:
            yaml.safe_dump(
                {
                    "services": [
                        {"name": "relay", "addr": "127.0.0.1:0", "handler": {"type": "relay", "auther": "users"}, "listener": {"type": "tcp"}}
                    ],
                    "authers": [{"name": "users", "file": {"path": users}}],
                },
                f,
            )
        server, port = yield self.lab.start("-C", config, name="relay")
        alice = RelayProbe(connectTo(echoPort, "alice", "wonderland", b"a"))
        yield self.lab.connect(port, alice)
        yield pollUntil(self.reactor, lambda: len(alice.data) >= 1, timeout=5)
        self.assertEqual(alice.status, 0, server.describe())

        bob = RelayProbe(connectTo(echoPort, "bob", "builder", b"b"))
        yield self.lab.connect(port, bob)
        yield bob.done
        self.assertEqual(bob.status, Status.UNAUTHORIZED)

        with open(users, "a") as f:
            f.write("bob builder\n")
        server.transport.signalProcess("HUP")  # type: ignore[union-attr]
        yield server.waitForLine("SIGHUP: reloaded 1 services", timeout=5)

        bob = RelayProbe(connectTo(echoPort, "bob", "builder", b"b"), closeAfter=1)
        yield self.lab.connect(port, bob)
        yield bob.done
        self.assertEqual(bob.status, 0, server.describe())
        self.assertEqual(bytes(bob.data), b"b")

        # alice's connection, established before the reload, still works.
        self.assertIsNone(alice.ended)
        alice.transport.write(b"after")  # type: ignore[union-attr]
        ok = yield pollUntil(self.reactor, lambda: bytes(alice.data) == b"aafter", timeout=5)
        self.assertTrue(ok, server.describe())
