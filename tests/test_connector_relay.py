"""
Tests for L{gostrelay.connectors.relay}: the relay client (spec-relay.md
section 3) and its timing (design.md, "Compatibility stance").

Everything runs on a L{task.Clock}: the carrier (the stream to the relay
server) is a L{StringTransport} that records each write separately, so the
write grouping GOST's vectors record (C{client_connect_*} with their
C{writes}) is checked exactly, and the whole client sessions captured
between a real GOST client and server (C{transcripts/tcp_forward_*},
C{udp_forward_default}) are replayed against our connector.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IStreamClientEndpoint,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.connectors.relay import (
    DEFAULT_QUIET_DELAY,
    DEFAULT_RESPONSE_WAIT,
    RelayClientEndpoint,
    RelayClientState,
    RelayConnector,
    _drop,
)
from gostrelay.datagram import ChannelFactory, LengthFramedChannel
from gostrelay.errors import RelayRefused, UnsupportedNetwork
from gostrelay.wire.relay import RequestParser, Status
from tests import vectors
from tests.support.fakes import SERVER, AppFactory, HalfCloseableRecordingTransport, RecordingTransport

OK = bytes.fromhex("01000000")
NETWORK_UNREACHABLE = vectors.caseBytes("server_resp_connect_refused")


# -- the carrier


@implementer(IStreamClientEndpoint)
class FakeCarrierEndpoint:
    """
    Reaches "the relay server": each C{connect} is recorded and completed
    by hand (L{succeed}, L{fail}) or at once when C{auto}.
    """

    def __init__(self, auto: bool = True, transportFactory: Any = RecordingTransport) -> None:
        self.auto = auto
        self.transportFactory = transportFactory
        self.attempts: list[list[Any]] = []
        self.cancelled: list[Any] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred(lambda d: self.cancelled.append(factory))
        self.attempts.append([factory, d])
        if self.auto:
            self.succeed()
        return d

    def succeed(self, index: int = -1) -> tuple[Any, RecordingTransport]:
        factory, d = self.attempts[index]
        proto = factory.buildProtocol(SERVER)
        tr = self.transportFactory()
        proto.makeConnection(tr)
        self.attempts[index].append(proto)
        d.callback(proto)
        return proto, tr

    def fail(self, index: int = -1, reason: Exception | None = None) -> None:
        self.attempts[index][1].errback(reason or ConnectionRefusedError())


# -- building connectors the way the command line does


def connectorFor(url: str, clock: Clock) -> RelayConnector:
    """
    The relay connector of the single node of C{-F url}.
    """
    cfg = buildConfigFromCommandLine([], [url])
    node = cfg.chains[0].hops[0].nodes[0]
    return RelayConnector(clock, node, None)


def nodeURL(auth: str | None = None, nodelay: bool = False, extra: str = "") -> str:
    userinfo = f"{auth}@" if auth else ""
    query = f"?nodelay={'true' if nodelay else 'false'}"
    if extra:
        query += "&" + extra
    return f"relay://{userinfo}127.0.0.1:8420{query}"


def connectThrough(
    url: str, address: str = "127.0.0.1:8080", network: str = "tcp", first: bytes = b"", auto: bool = True,
    transportFactory: Any = RecordingTransport,
):  # type: ignore[no-untyped-def]
    """
    Connect an L{App} to C{address} through a connector built from C{url}.

    @return: C{(clock, carrierEndpoint, appFactory, connectDeferred, results)}
        where C{results} collects the Deferred's outcome.
    """
    clock = Clock()
    connector = connectorFor(url, clock)
    carrier = FakeCarrierEndpoint(auto=auto, transportFactory=transportFactory)
    appFactory = AppFactory(first)
    endpoint = connector.endpoint(carrier, network, address)
    d = endpoint.connect(appFactory)
    results: list[Any] = []
    d.addBoth(results.append)
    return clock, carrier, appFactory, d, results


def carrierOf(carrier: FakeCarrierEndpoint, index: int = -1) -> tuple[Any, RecordingTransport]:
    """
    The relay protocol and transport of an attempt that has connected.
    """
    proto = carrier.attempts[index][2]
    return proto, proto.transport


class ConnectorTestCase(SynchronousTestCase):
    def assertNoDelayedCalls(self, clock: Clock) -> None:
        self.assertEqual(clock.getDelayedCalls(), [], "timers left behind")


# -- bytes on the wire vs GOST's vectors


class VectorTests(ConnectorTestCase):
    """
    What our connector writes equals what GOST's connector writes for the
    same inputs (vectors C{client_connect_*}).
    """

    def checkCase(self, case: dict) -> None:
        f = case["fields"]
        name = case["name"]
        expected = [bytes.fromhex(w) for w in case.get("writes", [case["hex"]])]
        first = f.get("first_write", "").encode()
        nodelay = bool(f["nodelay"])
        network = f["network"]
        url = nodeURL(f.get("auth"), nodelay)
        clock = Clock()
        connector = connectorFor(url, clock)
        carrier = FakeCarrierEndpoint()
        channel: LengthFramedChannel | None = None
        if network == "udp":
            channel = LengthFramedChannel(None, f["address"])
            d = connector.endpoint(carrier, network, f["address"]).connect(ChannelFactory(channel))
        else:
            d = connector.endpoint(carrier, network, f["address"]).connect(AppFactory(first))
        results: list[Any] = []
        d.addBoth(results.append)
        proto, tr = carrierOf(carrier)
        if nodelay:
            # The header goes at once, alone; the connection is handed over
            # when the response arrives.
            self.assertEqual(tr.writes, expected[:1], name)
            self.assertEqual(results, [], f"{name}: nodelay=true must wait for the response")
            proto.dataReceived(OK)
        self.assertEqual(len(results), 1, name)
        self.assertFalse(isinstance(results[0], Failure), f"{name}: {results[0]}")
        if network == "udp" and first:
            assert channel is not None
            channel.sendDatagram(first, f["address"])
        if nodelay:
            if network == "udp":
                # GOST writes LEN and DATA separately; a stream has no
                # boundaries, so the bytes after the header must match.
                self.assertEqual(tr.writes[0], expected[0], name)
                self.assertEqual(b"".join(tr.writes), b"".join(expected), name)
            else:
                self.assertEqual(tr.writes, expected, name)
        else:
            # nodelay=false: header and first bytes in ONE write.
            self.assertEqual(tr.writes, expected, name)
        self.assertEqual(b"".join(tr.writes), vectors.caseFileBytes(name), name)
        self.assertEqual(clock.getDelayedCalls(), [], f"{name}: timers left once the response arrived / bytes went")

    def test_allClientConnectVectors(self) -> None:
        """
        Every C{client_connect_*} case (TCP and UDP, with and without auth,
        IPv4/IPv6/domain, nodelay true and false, with a first write).
        """
        cases = vectors.casesWithPrefix("client_connect_")
        self.assertGreaterEqual(len(cases), 11)
        for case in cases:
            self.checkCase(case)

    def test_tcpNodelayFalseOneWrite(self) -> None:
        """
        nodelay=false, first write "hello": header+hello in one write
        (vector client_connect_tcp_auth_delayed_first_write_hello).
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL("user:pass"), first=b"hello")
        proto, tr = carrierOf(carrier)
        self.assertEqual(tr.writes, vectors.caseWrites("client_connect_tcp_auth_delayed_first_write_hello"))
        self.assertEqual(len(tr.writes), 1)
        self.assertIs(results[0], appFactory.built[0])
        self.assertNoDelayedCalls(clock)

    def test_tcpNodelayTrueTwoWrites(self) -> None:
        """
        nodelay=true: the header alone at once, then hello
        (vector client_connect_tcp_auth_nodelay_then_hello).
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL("user:pass", True), first=b"hello")
        proto, tr = carrierOf(carrier)
        expected = vectors.caseWrites("client_connect_tcp_auth_nodelay_then_hello")
        self.assertEqual(tr.writes, expected[:1])
        proto.dataReceived(OK)
        self.assertEqual(tr.writes, expected)

    def test_udpNodelayFalseOneWrite(self) -> None:
        """
        UDP CONNECT, nodelay=false: the first datagram rides with the header
        as LEN+DATA in one write (client_connect_udp_auth_delayed_first_write_hello).
        """
        clock = Clock()
        connector = connectorFor(nodeURL("user:pass"), clock)
        carrier = FakeCarrierEndpoint()
        channel = LengthFramedChannel(None, "127.0.0.1:53")
        connector.endpoint(carrier, "udp", "127.0.0.1:53").connect(ChannelFactory(channel))
        channel.sendDatagram(b"hello", "127.0.0.1:53")
        proto, tr = carrierOf(carrier)
        self.assertEqual(tr.writes, vectors.caseWrites("client_connect_udp_auth_delayed_first_write_hello"))

    def test_udp4AndTcp6Networks(self) -> None:
        """
        C{udp4}/C{udp6} are UDP, C{tcp4}/C{tcp6} are TCP; other networks
        are refused.
        """
        connector = connectorFor(nodeURL(), Clock())
        carrier = FakeCarrierEndpoint()
        self.assertEqual(connector.endpoint(carrier, "udp4", "127.0.0.1:53").request[:2], b"\x01\x81")
        self.assertEqual(connector.endpoint(carrier, "tcp6", "127.0.0.1:53").request[:2], b"\x01\x01")
        self.assertRaises(UnsupportedNetwork, connector.endpoint, carrier, "ip", "127.0.0.1:53")
        self.assertRaises(UnsupportedNetwork, connector.endpoint, carrier, "tcp", "127.0.0.1:notaport")


class TranscriptTests(ConnectorTestCase):
    """
    Whole GOST client sessions replayed: our connector, given the same
    server bytes, writes the same client bytes (and delivers the same
    payload to the application).
    """

    def replay(self, fileName: str, nodelay: bool) -> None:
        t = vectors.transcript(fileName)
        c2s = [bytes.fromhex(h) for who, h in t["chunks"] if who == "c2s"]
        s2c = [bytes.fromhex(h) for who, h in t["chunks"] if who == "s2c"]
        request = RequestParser().feed(c2s[0])
        self.assertIsNotNone(request)
        auth = request.userAuth
        url = nodeURL(f"{auth.username}:{auth.password}" if auth else None, nodelay)
        clock = Clock()
        connector = connectorFor(url, clock)
        carrier = FakeCarrierEndpoint()
        endpoint = connector.endpoint(carrier, request.network, request.addr.address)
        received: list[bytes] = []
        if request.network == "udp":

            class Receiver:
                def datagramReceived(self, data: bytes, addr: str) -> None:
                    received.append(data)

                def channelClosed(self, reason: Any) -> None:
                    pass

            channel = LengthFramedChannel(Receiver(), request.addr.address)
            d = endpoint.connect(ChannelFactory(channel))
            send = lambda: channel.sendDatagram(b"hello", "")  # noqa: E731
        else:
            appFactory = AppFactory()
            d = endpoint.connect(appFactory)
            send = lambda: appFactory.built[0].transport.write(b"hello")  # noqa: E731
        results: list[Any] = []
        d.addBoth(results.append)
        proto, tr = carrierOf(carrier)
        if nodelay:
            self.assertEqual(tr.writes, c2s[:1])
            proto.dataReceived(s2c[0])
            self.assertEqual(len(results), 1)
            send()
            proto.dataReceived(s2c[1])
        else:
            self.assertEqual(len(results), 1)
            send()
            proto.dataReceived(s2c[0])
        self.assertEqual(tr.writes, c2s)
        self.assertEqual(b"".join(tr.writes), bytes.fromhex(t["c2s"]))
        if request.network == "udp":
            self.assertEqual(received, [b"hello"])
        else:
            self.assertEqual(appFactory.built[0].received, b"hello")
        self.assertNoDelayedCalls(clock)

    def test_tcpForwardDefault(self) -> None:
        self.replay("tcp_forward_default-conn1.json", nodelay=False)

    def test_tcpForwardNodelay(self) -> None:
        self.replay("tcp_forward_nodelay-conn1.json", nodelay=True)

    def test_udpForwardDefault(self) -> None:
        self.replay("udp_forward_default-conn1.json", nodelay=False)


# -- timing


class DefaultModeTests(ConnectorTestCase):
    """
    nodelay=false (GOST's default): the connection is handed over at once;
    the header goes with the first bytes, or alone after quietDelay.
    """

    def test_connectFiresImmediately(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        self.assertEqual(len(results), 1)
        self.assertIs(results[0], appFactory.built[0])
        proto, tr = carrierOf(carrier)
        self.assertEqual(tr.writes, [], "nothing may be written before quietDelay")

    def test_headerAloneAfterQuietDelay(self) -> None:
        """
        An application that says nothing (a server-speaks-first protocol)
        gets the header sent alone after 20 ms.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        clock.advance(DEFAULT_QUIET_DELAY - 0.001)
        self.assertEqual(tr.writes, [])
        clock.advance(0.001)
        self.assertEqual(tr.writes, [vectors.caseBytes("client_connect_tcp_ipv4_noauth_nodelay")])
        self.assertNoDelayedCalls(clock)
        # The banner (after the response, in the same read) reaches the app.
        proto.dataReceived(OK + b"220 smtp ready\r\n")
        self.assertEqual(appFactory.built[0].received, b"220 smtp ready\r\n")
        # Later writes pass through unchanged.
        appFactory.built[0].transport.write(b"EHLO x\r\n")
        self.assertEqual(tr.writes[1:], [b"EHLO x\r\n"])

    def test_quietDelayOption(self) -> None:
        """
        C{quietDelay} is a connector option (GOST-style duration).
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(extra="quietDelay=100ms"))
        proto, tr = carrierOf(carrier)
        clock.advance(0.099)
        self.assertEqual(tr.writes, [])
        clock.advance(0.001)
        self.assertEqual(len(tr.writes), 1)

    def test_writeBeforeQuietDelayCancelsTimer(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        clock.advance(0.01)
        appFactory.built[0].transport.write(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(len(tr.writes), 1)
        self.assertTrue(tr.writes[0].endswith(b"GET / HTTP/1.1\r\n\r\n"))
        self.assertNoDelayedCalls(clock)
        clock.advance(1)
        self.assertEqual(len(tr.writes), 1, "the header must not be sent twice")

    def test_writeSequenceGluedToHeader(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        appFactory.built[0].transport.writeSequence([b"he", b"llo"])
        self.assertEqual(tr.writes, [vectors.caseBytes("client_connect_tcp_noauth_delayed_first_write_hello")])

    def test_emptyWriteDoesNotSendHeader(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        appFactory.built[0].transport.write(b"")
        self.assertEqual(tr.writes, [])
        appFactory.built[0].transport.write(b"hello")
        self.assertEqual(tr.writes, [vectors.caseBytes("client_connect_tcp_noauth_delayed_first_write_hello")])

    def test_refusalClosesApplication(self) -> None:
        """
        A non-OK response in default mode (the connection was already
        handed over) closes the carrier, and with it the application; the
        bytes after the refusal are not delivered.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"hello")
        proto, tr = carrierOf(carrier)
        app = appFactory.built[0]
        proto.dataReceived(NETWORK_UNREACHABLE + b"junk")
        self.assertTrue(tr.disconnecting)
        self.assertEqual(app.received, b"")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(app.lostReason)
        self.assertNoDelayedCalls(clock)

    def test_refusalBeforeQuietDelay(self) -> None:
        """
        (Defensive) a response before the header was even sent: the carrier
        is closed and the quiet timer does not fire later.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        proto.dataReceived(NETWORK_UNREACHABLE)
        self.assertTrue(tr.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        clock.advance(1)
        self.assertEqual(tr.writes, [])
        self.assertNoDelayedCalls(clock)


class NodelayTests(ConnectorTestCase):
    """
    nodelay=true: the header at once; the connection is handed over when
    the response arrives, or after responseWait.
    """

    def test_connectWaitsForResponse(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        self.assertEqual(tr.writes, [vectors.caseBytes("client_connect_tcp_ipv4_noauth_nodelay")])
        self.assertEqual(results, [])
        self.assertEqual(appFactory.built, [])
        clock.advance(0.1)
        self.assertEqual(results, [])
        proto.dataReceived(OK)
        self.assertEqual(len(results), 1)
        self.assertIs(results[0], appFactory.built[0])
        self.assertNoDelayedCalls(clock)

    def test_responseWait(self) -> None:
        """
        A server holding its response (a GOST server with its default) does
        not hang the connect: after 500 ms the application gets the
        connection; the late response is stripped when it arrives.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        clock.advance(DEFAULT_RESPONSE_WAIT - 0.001)
        self.assertEqual(results, [])
        clock.advance(0.001)
        self.assertEqual(len(results), 1)
        app = appFactory.built[0]
        app.transport.write(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(tr.writes[1:], [b"GET / HTTP/1.1\r\n\r\n"], "client bytes must not be held")
        proto.dataReceived(OK + b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(app.received, b"HTTP/1.1 200 OK\r\n")
        self.assertNoDelayedCalls(clock)

    def test_responseWaitOption(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True, extra="responseWait=2s"))
        clock.advance(1.9)
        self.assertEqual(results, [])
        clock.advance(0.1)
        self.assertEqual(len(results), 1)

    def test_refusedFailsConnect(self) -> None:
        """
        01070000 fails the connect with L{RelayRefused} (status 7) and
        closes the carrier; no application is built.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        proto.dataReceived(NETWORK_UNREACHABLE)
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0], Failure)
        results[0].trap(RelayRefused)
        self.assertEqual(results[0].value.status, Status.NETWORK_UNREACHABLE)
        self.assertTrue(tr.disconnecting)
        self.assertEqual(appFactory.built, [])
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertNoDelayedCalls(clock)

    def test_eachRefusalStatus(self) -> None:
        for status in (1, 2, 3, 4, 5, 6, 7, 8):
            clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
            proto, tr = carrierOf(carrier)
            proto.dataReceived(bytes([1, status, 0, 0]))
            self.assertEqual(results[0].value.status, status)

    def test_eofBeforeResponse(self) -> None:
        """
        The server closing before any response fails the connect.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(results[0], Failure)
        results[0].trap(ConnectError)
        self.assertEqual(appFactory.built, [])
        self.assertNoDelayedCalls(clock)

    def test_responseWithFeaturesAccepted(self) -> None:
        """
        An OK carrying features (as a BIND reply would) is skipped whole.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        proto.dataReceived(bytes.fromhex("0100000a020007017f0000011f90") + b"data")
        self.assertEqual(appFactory.built[0].received, b"data")


class ResponseParsingTests(ConnectorTestCase):
    def test_splitAndGlued(self) -> None:
        """
        The response split across reads and glued to the payload is
        stripped; only the payload reaches the application.
        """
        for nodelay in (False, True):
            clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=nodelay), first=b"hello")
            proto, tr = carrierOf(carrier)
            proto.dataReceived(b"\x01")
            proto.dataReceived(b"\x00\x00")
            proto.dataReceived(b"\x00HTTP/1.1 200 OK\r\n")
            proto.dataReceived(b"\r\nbody")
            self.assertEqual(appFactory.built[0].received, b"HTTP/1.1 200 OK\r\n\r\nbody")

    def test_byteByByte(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"x")
        proto, tr = carrierOf(carrier)
        for b in OK + b"abc":
            proto.dataReceived(bytes([b]))
        self.assertEqual(appFactory.built[0].received, b"abc")

    def test_payloadLooksLikeAResponse(self) -> None:
        """
        Only the first response is stripped: later bytes equal to 01000000
        are payload.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"x")
        proto, tr = carrierOf(carrier)
        proto.dataReceived(OK + OK)
        proto.dataReceived(OK)
        self.assertEqual(appFactory.built[0].received, OK + OK)

    def test_badVersionAborts(self) -> None:
        for nodelay in (False, True):
            clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=nodelay), first=b"hello")
            proto, tr = carrierOf(carrier)
            proto.dataReceived(b"\x05\x00\x00\x00payload")
            self.assertTrue(tr.aborted, "a bad response version must abort the carrier")
            if nodelay:
                self.assertIsInstance(results[0], Failure)
                results[0].trap(ConnectError)
            else:
                self.assertEqual(appFactory.built[0].received, b"")
            proto.connectionLost(Failure(ConnectionLost()))
            self.assertNoDelayedCalls(clock)

    def test_httpResponseInsteadOfRelay(self) -> None:
        """
        A server that is not a relay server (answers HTTP) is detected by
        the version byte: aborted, nothing delivered.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        proto.dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertTrue(tr.aborted)
        results[0].trap(ConnectError)


class HalfCloseTests(ConnectorTestCase):
    def test_loseWriteBeforeWriteSendsHeader(self) -> None:
        """
        An application that half-closes before writing anything: the
        header goes first (the server must learn the target), then the
        carrier's FIN.
        """
        clock, carrier, appFactory, d, results = connectThrough(
            nodeURL(), transportFactory=HalfCloseableRecordingTransport
        )
        proto, tr = carrierOf(carrier)
        app = appFactory.built[0]
        self.assertTrue(IHalfCloseableDescriptor.providedBy(app.transport))
        app.transport.loseWriteConnection()
        self.assertEqual(
            tr.events, [("write", vectors.caseBytes("client_connect_tcp_ipv4_noauth_nodelay")), "loseWrite"]
        )
        self.assertNoDelayedCalls(clock)
        clock.advance(1)
        self.assertEqual(len(tr.writes), 1)

    def test_loseWriteAfterWrite(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(
            nodeURL(), first=b"hello", transportFactory=HalfCloseableRecordingTransport
        )
        proto, tr = carrierOf(carrier)
        appFactory.built[0].transport.loseWriteConnection()
        self.assertEqual(
            tr.events,
            [("write", vectors.caseBytes("client_connect_tcp_noauth_delayed_first_write_hello")), "loseWrite"],
        )

    def test_readEOFPassedToHalfCloseableApp(self) -> None:
        """
        The server's FIN after the response reaches a half-closeable
        application as C{readConnectionLost}.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"x")
        proto, tr = carrierOf(carrier)
        proto.dataReceived(OK + b"bye")
        proto.readConnectionLost()
        app = appFactory.built[0]
        self.assertTrue(app.readEOF)
        self.assertEqual(app.received, b"bye")
        self.assertFalse(tr.disconnecting)

    def test_readEOFBeforeResponseCloses(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"x")
        proto, tr = carrierOf(carrier)
        proto.readConnectionLost()
        self.assertTrue(tr.disconnecting)
        self.assertFalse(appFactory.built[0].readEOF)


class CancelAndTimeoutTests(ConnectorTestCase):
    def test_cancelWhileWaitingForResponse(self) -> None:
        """
        Cancelling the connect (a dial timeout, a client that left) while
        waiting for the response aborts the carrier.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        d.cancel()
        self.assertTrue(tr.aborted)
        results[0].trap(defer.CancelledError)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(appFactory.built, [])
        self.assertNoDelayedCalls(clock)

    def test_cancelBeforeCarrierConnected(self) -> None:
        """
        Cancelling before the relay server is even reached cancels the
        carrier's own connection attempt.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True), auto=False)
        d.cancel()
        self.assertEqual(len(carrier.cancelled), 1)
        self.assertIsInstance(results[0], Failure)
        results[0].trap(defer.CancelledError)
        self.assertNoDelayedCalls(clock)

    def test_carrierFailure(self) -> None:
        """
        The relay server cannot be reached: the connect fails with the
        carrier's reason.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), auto=False)
        carrier.fail()
        results[0].trap(ConnectionRefusedError)
        self.assertNoDelayedCalls(clock)

    def test_connectTimeout(self) -> None:
        """
        C{connectTimeout} (shorter than responseWait) with no response:
        the connect fails and the carrier is aborted.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True, extra="connectTimeout=200ms"))
        proto, tr = carrierOf(carrier)
        clock.advance(0.199)
        self.assertEqual(results, [])
        clock.advance(0.001)
        self.assertIsInstance(results[0], Failure)
        results[0].trap(ConnectError)
        self.assertTrue(tr.aborted)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(appFactory.built, [])
        self.assertNoDelayedCalls(clock)

    def test_connectTimeoutAfterResponseWait(self) -> None:
        """
        C{connectTimeout} longer than responseWait: the application got the
        connection at 500 ms; with still no response at the timeout, the
        carrier is aborted and the application sees the loss.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True, extra="connectTimeout=2s"))
        proto, tr = carrierOf(carrier)
        clock.advance(0.5)
        self.assertEqual(len(results), 1)
        self.assertNotIsInstance(results[0], Failure)
        clock.advance(1.5)
        self.assertTrue(tr.aborted)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertIsNotNone(appFactory.built[0].lostReason)
        self.assertNoDelayedCalls(clock)

    def test_connectTimeoutCancelledByResponse(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True, extra="connectTimeout=2s"))
        proto, tr = carrierOf(carrier)
        proto.dataReceived(OK)
        self.assertNoDelayedCalls(clock)
        clock.advance(5)
        self.assertFalse(tr.aborted)

    def test_connectTimeoutIgnoredInDefaultMode(self) -> None:
        """
        GOST applies C{connectTimeout} only while C{Connect()} waits for the
        response, i.e. with nodelay=true (spec-relay.md 3.1: "connectTimeout
        has no effect in this mode"; 13.3).  In default mode the connection
        is already the application's; a GOST server holding its OK until
        the target speaks (its default) with a slow target (a long-polling
        HTTP request) must not be cut.

        (Regression: the connectTimeout timer used to start whatever
        C{nodelay} said, so in default mode an established, working
        connection was aborted when the server's legitimately held response
        had not come within connectTimeout.)
        """
        clock, carrier, appFactory, d, results = connectThrough(
            nodeURL(nodelay=False, extra="connectTimeout=1s"), first=b"GET /poll HTTP/1.1\r\n\r\n"
        )
        proto, tr = carrierOf(carrier)
        self.assertEqual(len(results), 1)
        clock.advance(1.5)
        self.assertFalse(tr.aborted, "an established default-mode connection was aborted by connectTimeout")
        proto.dataReceived(OK + b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(appFactory.built[0].received, b"HTTP/1.1 200 OK\r\n")

    def test_lostClearsTimers(self) -> None:
        """
        A carrier lost in any phase leaves no timer behind.
        """
        for nodelay in (False, True):
            clock, carrier, appFactory, d, results = connectThrough(
                nodeURL(nodelay=nodelay, extra="connectTimeout=3s")
            )
            proto, tr = carrierOf(carrier)
            proto.connectionLost(Failure(ConnectionLost()))
            self.assertNoDelayedCalls(clock)


class TransportTests(ConnectorTestCase):
    def test_addressesAndProducer(self) -> None:
        """
        The application's transport is the carrier's, for addresses and
        flow control.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        app = appFactory.built[0]
        self.assertEqual(app.transport.getPeer(), SERVER)
        self.assertEqual(app.transport.getHost(), tr.getHost())
        producer = object()
        app.transport.registerProducer(producer, True)
        self.assertIs(tr.producer, producer)
        app.transport.unregisterProducer()
        self.assertIsNone(tr.producer)
        app.transport.pauseProducing()
        self.assertEqual(tr.producerState, "paused")
        app.transport.resumeProducing()
        self.assertEqual(tr.producerState, "producing")

    def test_loseConnectionCancelsQuietTimer(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        appFactory.built[0].transport.loseConnection()
        self.assertTrue(tr.disconnecting)
        self.assertNoDelayedCalls(clock)

    def test_requestIsPrecomputed(self) -> None:
        """
        The endpoint's request equals the vector for the same target (no
        surprise encoding at connect time).
        """
        connector = connectorFor(nodeURL("user:pass"), Clock())
        ep = connector.endpoint(FakeCarrierEndpoint(), "tcp", "example.com:80")
        self.assertIsInstance(ep, RelayClientEndpoint)
        self.assertEqual(ep.request, vectors.caseBytes("client_connect_tcp_domain_auth_nodelay"))


class MachineTests(ConnectorTestCase):
    """
    The relay client's life is an explicit machine
    (L{gostrelay.connectors.relay.RelayClientState} and its transition
    table); the stream's bytes pass it by once it is open.
    """

    def test_states(self) -> None:
        """
        The states a connection goes through, in each mode.
        """
        State = RelayClientState
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        seen = [proto.state]
        proto.write(b"hello")
        seen.append(proto.state)
        proto.dataReceived(OK)
        seen.append(proto.state)
        proto.connectionLost(Failure(ConnectionDone()))
        seen.append(proto.state)
        self.assertEqual(seen, [State.HOLDING, State.AWAITING, State.OPEN, State.CLOSED])

        clock, carrier, appFactory, d, results = connectThrough(nodeURL(nodelay=True))
        proto, tr = carrierOf(carrier)
        seen = [proto.state]
        clock.advance(DEFAULT_RESPONSE_WAIT)
        seen.append(proto.state)
        proto.dataReceived(NETWORK_UNREACHABLE)
        seen.append(proto.state)
        proto.connectionLost(Failure(ConnectionDone()))
        seen.append(proto.state)
        self.assertEqual(seen, [State.ASKING, State.AWAITING, State.FAILED, State.CLOSED])
        self.assertNoDelayedCalls(clock)

    def test_everyEventSequence(self) -> None:
        """
        Every sequence of three events a connection can meet (the
        application, once it has the connection, writes, half-closes,
        closes or aborts; the server answers OK, refuses, garbles or
        half-closes; time passes; the carrier goes), in both modes, with
        and without C{connectTimeout}: the machine has a transition for
        each (nothing raised), the connect attempt ends once, the
        application learns the end, and once the carrier is gone no timer
        is left.
        """
        events = {
            "write": lambda proto, clock: proto.write(b"data"),
            "halfClose": lambda proto, clock: proto.loseWriteConnection(),
            "close": lambda proto, clock: proto.loseConnection(),
            "abort": lambda proto, clock: proto.abortConnection(),
            "ok": lambda proto, clock: proto.dataReceived(OK + b"rest"),
            "refused": lambda proto, clock: proto.dataReceived(NETWORK_UNREACHABLE),
            "garbage": lambda proto, clock: proto.dataReceived(b"\xff\xff\xff\xff"),
            "serverEOF": lambda proto, clock: proto.readConnectionLost(),
            "time": lambda proto, clock: clock.advance(0.6),
        }
        urls = [nodeURL(), nodeURL(nodelay=True), nodeURL(nodelay=True, extra="connectTimeout=1s"), nodeURL(extra="quietDelay=1s")]
        runs = 0
        for url in urls:
            for sequence in itertools.product(events, repeat=3):
                clock, carrier, appFactory, d, results = connectThrough(url, transportFactory=HalfCloseableRecordingTransport)
                proto, tr = carrierOf(carrier)
                for name in sequence:
                    if name in ("write", "halfClose", "close", "abort") and not appFactory.built:
                        continue  # no application holds the connection yet
                    events[name](proto, clock)
                proto.connectionLost(Failure(ConnectionDone()))
                clock.advance(10)
                self.assertEqual(clock.getDelayedCalls(), [], (url, sequence))
                self.assertEqual(len(results), 1, (url, sequence))
                for app in appFactory.built:
                    self.assertIsNotNone(app.lostReason, (url, sequence))
                runs += 1
        self.assertEqual(runs, 4 * 9**3)

    def test_spliceCarrierOnlyWhenOpen(self) -> None:
        """
        The carrier is offered to splice only once the server said OK and
        while the application has the stream: before, the response still
        has to be read here (a splice would hand its bytes to the target).
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        self.assertIsNone(proto.spliceCarrier(), "holding the request")
        proto.write(b"hello")
        self.assertIsNone(proto.spliceCarrier(), "awaiting the answer")
        proto.dataReceived(OK)
        self.assertIs(proto.spliceCarrier(), tr)
        proto.loseConnection()
        self.assertIsNone(proto.spliceCarrier(), "closing")
        proto.connectionLost(Failure(ConnectionDone()))
        clock.advance(1)
        self.assertNoDelayedCalls(clock)

    def test_refusedIsNeverSpliced(self) -> None:
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        proto.write(b"hello")
        proto.dataReceived(NETWORK_UNREACHABLE)
        self.assertIsNone(proto.spliceCarrier())
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertNoDelayedCalls(clock)

    def test_openStreamBypassesMachine(self) -> None:
        """
        Once open, the server's bytes go straight to the application and its
        bytes straight to the carrier: no transition per read or write.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        app = appFactory.built[0]
        proto.write(b"hello")
        proto.dataReceived(OK + b"first")
        self.assertEqual(proto.state, RelayClientState.OPEN)
        self.assertEqual(proto._deliver, app.dataReceived)
        self.assertEqual(proto._send, tr.write)
        proto.dataReceived(b" more")
        proto.write(b"again")
        self.assertEqual(app.received, b"first more")
        self.assertEqual(tr.writes[-1], b"again")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIs(proto._deliver, _drop, "after the end, nothing more is carried")
        proto.dataReceived(b"late")
        self.assertEqual(app.received, b"first more")
        self.assertNoDelayedCalls(clock)

    def test_applicationWritesWhileConnecting(self) -> None:
        """
        An application that writes from its C{connectionMade} (inside the
        machine's transition that hands it the connection) still gets its
        bytes sent with the request, in one write.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL(), first=b"GET /")
        proto, tr = carrierOf(carrier)
        self.assertEqual(len(tr.writes), 1)
        self.assertTrue(tr.writes[0].endswith(b"GET /"))
        self.assertIsNotNone(RequestParser().feed(tr.writes[0][: -len(b"GET /")]))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertNoDelayedCalls(clock)

    def test_answerBeforeRequest(self) -> None:
        """
        A server that answers before it was asked (no GOST server does) is
        sent the request at once, before any byte of the application.
        """
        clock, carrier, appFactory, d, results = connectThrough(nodeURL())
        proto, tr = carrierOf(carrier)
        app = appFactory.built[0]
        proto.dataReceived(OK + b"banner")
        self.assertEqual(app.received, b"banner")
        self.assertEqual(len(tr.writes), 1)
        self.assertIsNotNone(RequestParser().feed(tr.writes[0]))
        proto.write(b"hello")
        self.assertEqual(tr.writes[-1], b"hello")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertNoDelayedCalls(clock)
