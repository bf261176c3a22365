"""
Tests for L{gostrelay.chain}: routes through hops of relay nodes
(spec-relay.md 7.1, 7.2), node selection and failure marking (section 8),
and L{gostrelay.endpoints.chainEndpoint}.

Chains are built from GOST command lines (C{-F ...}) on a
L{MemoryReactorClock}: the first hop's TCP connection shows up in
C{reactor.tcpClients} and is completed by hand with a transport that
records every write, so the bytes on the first carrier can be compared
with the nested relay requests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.build import BuildContext
from gostrelay.chain import Chain, _MarkingEndpoint
from gostrelay.config.model import ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.endpoints import chainEndpoint
from gostrelay.errors import HopFailed, RelayRefused
from gostrelay.wire.relay import connectRequest
from tests import vectors
from tests.support.fakes import AppFactory, RecordingTransport

OK = bytes.fromhex("01000000")
NETWORK_UNREACHABLE = vectors.caseBytes("server_resp_connect_refused")
TARGET = "example.com:80"


def buildChain(*nodes: str, reactor: MemoryReactorClock | None = None) -> tuple[MemoryReactorClock, Chain]:
    """
    The chain of GOST command line C{-F nodes[0] -F nodes[1] ...}.
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    cfg = buildConfigFromCommandLine([], list(nodes))
    chain = Chain.fromConfig(reactor, cfg.chains[0], BuildContext(reactor, cfg), "test")
    return reactor, chain


def connectVia(chain: Chain, first: bytes = b"", target: str = TARGET):  # type: ignore[no-untyped-def]
    """
    Connect an application through C{chain}; return its factory and a list
    collecting the outcome of the connect.
    """
    app = AppFactory(first)
    results: list[Any] = []
    endpoint = chain.endpoint("tcp", target, 15)
    endpoint.connect(app).addBoth(results.append)
    return app, results


def acceptFirstHop(reactor: MemoryReactorClock, index: int = -1) -> tuple[Any, RecordingTransport]:
    """
    Complete the TCP connection to the first hop: the relay protocol of
    hop 1 and the carrier's transport.
    """
    host, port, factory = reactor.tcpClients[index][:3]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    tr = RecordingTransport(peerAddress=IPv4Address("TCP", host, port))
    proto.makeConnection(tr)
    return proto, tr


def refuseFirstHop(reactor: MemoryReactorClock, index: int = -1) -> None:
    factory = reactor.tcpClients[index][2]
    factory.clientConnectionFailed(reactor.connectors[index], Failure(ConnectionRefusedError()))


def dialedHosts(reactor: MemoryReactorClock) -> list[tuple[str, int]]:
    return [(h, p) for h, p, *_ in reactor.tcpClients]


def request(address: str, auth: tuple[str, str] | None = None, network: str = "tcp") -> bytes:
    user, password = auth if auth else (None, "")
    return connectRequest(address, network, user, password).encode()


class CompositionTests(SynchronousTestCase):
    """
    Hop 2's CONNECT travels inside hop 1's CONNECT stream (spec 7.2).
    """

    def test_twoHopsGluedDefault(self) -> None:
        """
        nodelay=false on both hops: the first carrier receives, in ONE
        write, hop 1's header (CONNECT to node 2's address, hop 1's
        credentials), hop 2's header (CONNECT to the target, hop 2's
        credentials) and the application's first bytes; the connect fires
        at once; the two OKs are stripped from the reply.
        """
        reactor, chain = buildChain("relay://u1:p1@10.0.0.1:1001", "relay://u2:p2@10.0.0.2:1002")
        app, results = connectVia(chain, b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(dialedHosts(reactor), [("10.0.0.1", 1001)])
        hop1, tr = acceptFirstHop(reactor)
        expected = request("10.0.0.2:1002", ("u1", "p1")) + request(TARGET, ("u2", "p2")) + b"GET / HTTP/1.1\r\n\r\n"
        self.assertEqual(tr.writes, [expected])
        self.assertEqual(len(results), 1)
        self.assertIs(results[0], app.built[0])
        hop1.dataReceived(OK + OK + b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(app.built[0].received, b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_twoHopsResponsesSplit(self) -> None:
        """
        The two responses arriving byte by byte are both stripped.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002")
        app, results = connectVia(chain, b"x")
        hop1, tr = acceptFirstHop(reactor)
        for b in OK + OK + b"yz":
            hop1.dataReceived(bytes([b]))
        self.assertEqual(app.built[0].received, b"yz")

    def test_threeHops(self) -> None:
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002", "relay://10.0.0.3:1003")
        app, results = connectVia(chain, b"hello")
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(
            tr.writes,
            [request("10.0.0.2:1002") + request("10.0.0.3:1003") + request(TARGET) + b"hello"],
        )

    def test_twoHopsQuietDelay(self) -> None:
        """
        An application that says nothing: after quietDelay the carrier has
        carried both headers, in order (whether in one write or two).
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(len(results), 1)
        self.assertEqual(tr.writes, [])
        reactor.advance(0.02)
        self.assertEqual(b"".join(tr.writes), request("10.0.0.2:1002") + request(TARGET))
        self.assertEqual(reactor.getDelayedCalls(), [])
        hop1.dataReceived(OK + OK + b"220 banner\r\n")
        self.assertEqual(app.built[0].received, b"220 banner\r\n")

    def test_twoHopsNodelay(self) -> None:
        """
        nodelay=true on both hops: hop 1's header at once; hop 2's header
        once hop 1's OK arrived; the application gets the connection with
        hop 2's OK.
        """
        reactor, chain = buildChain(
            "relay://10.0.0.1:1001?nodelay=true", "relay://10.0.0.2:1002?nodelay=true"
        )
        app, results = connectVia(chain, b"hello")
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(tr.writes, [request("10.0.0.2:1002")])
        self.assertEqual(results, [])
        hop1.dataReceived(OK)
        self.assertEqual(tr.writes, [request("10.0.0.2:1002"), request(TARGET)])
        self.assertEqual(results, [])
        hop1.dataReceived(OK + b"banner")
        self.assertEqual(len(results), 1)
        self.assertEqual(tr.writes[2:], [b"hello"])
        self.assertEqual(app.built[0].received, b"banner")
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_mixedNodelay(self) -> None:
        """
        Hop 1 default, hop 2 nodelay=true: hop 2's header is sent at once,
        glued behind hop 1's header in one write.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002?nodelay=true")
        app, results = connectVia(chain, b"hello")
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(tr.writes, [request("10.0.0.2:1002") + request(TARGET)])
        hop1.dataReceived(OK + OK)
        self.assertEqual(len(results), 1)
        self.assertEqual(tr.writes[1:], [b"hello"])

    def test_secondHopRefusesTarget(self) -> None:
        """
        With nodelay=true, the last hop refusing the target fails the
        connect with L{RelayRefused}.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002?nodelay=true")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        hop1.dataReceived(OK + NETWORK_UNREACHABLE)
        self.assertIsInstance(results[0], Failure)
        results[0].trap(RelayRefused)
        self.assertEqual(app.built, [])

    def test_udpThroughTwoHops(self) -> None:
        """
        A UDP CONNECT through two hops: hop 1 CONNECTs (tcp) to node 2,
        hop 2 sends the UDP CONNECT.
        """
        from gostrelay.datagram import ChannelFactory, LengthFramedChannel

        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002")
        channel = LengthFramedChannel(None, "10.9.9.9:53")
        chain.endpoint("udp", "10.9.9.9:53", 15).connect(ChannelFactory(channel))
        hop1, tr = acceptFirstHop(reactor)
        channel.sendDatagram(b"hello", "")
        self.assertEqual(
            tr.writes,
            [request("10.0.0.2:1002") + request("10.9.9.9:53", network="udp") + b"\x00\x05hello"],
        )


class SelectionTests(SynchronousTestCase):
    """
    Several nodes per hop (C{-F relay://a,b}): round robin and failure
    marking (spec 8).
    """

    def test_roundRobin(self) -> None:
        reactor, chain = buildChain("relay://10.0.0.1:1001,10.0.0.2:1002")
        for _ in range(4):
            connectVia(chain)
        self.assertEqual(
            dialedHosts(reactor),
            [("10.0.0.1", 1001), ("10.0.0.2", 1002), ("10.0.0.1", 1001), ("10.0.0.2", 1002)],
        )

    def test_roundRobinSecondHop(self) -> None:
        """
        The second hop's node is chosen per route too: it shows up as the
        address hop 1 CONNECTs to.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002,10.0.0.3:1003")
        seen = []
        for i in range(2):
            connectVia(chain, b"x")
            hop1, tr = acceptFirstHop(reactor, i)
            seen.append(tr.writes[0][: len(request("10.0.0.2:1002"))])
        self.assertEqual(seen, [request("10.0.0.2:1002"), request("10.0.0.3:1003")])

    def test_refusedDialMarksNode(self) -> None:
        """
        A refused dial marks the node; the next routes use the other node
        until failTimeout (10 s) has passed.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001,10.0.0.2:1002")
        app, results = connectVia(chain)
        refuseFirstHop(reactor)
        self.assertIsInstance(results[0], Failure)
        nodes = chain.hops[0].selector.nodes
        self.assertEqual(nodes[0].failures, 1)
        for _ in range(3):
            connectVia(chain)
        self.assertEqual(
            dialedHosts(reactor)[1:], [("10.0.0.2", 1002)] * 3, "a failed node must be left out"
        )
        reactor.advance(11)
        connectVia(chain)
        connectVia(chain)
        self.assertIn(("10.0.0.1", 1001), dialedHosts(reactor)[4:])

    def test_fifoFailover(self) -> None:
        """
        C{strategy=fifo}: always the first node, until it fails.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001,10.0.0.2:1002?strategy=fifo")
        connectVia(chain)
        connectVia(chain)
        self.assertEqual(dialedHosts(reactor), [("10.0.0.1", 1001)] * 2)
        refuseFirstHop(reactor)
        connectVia(chain)
        self.assertEqual(dialedHosts(reactor)[-1], ("10.0.0.2", 1002))

    def test_successResetsFailures(self) -> None:
        reactor, chain = buildChain("relay://10.0.0.1:1001,10.0.0.2:1002?strategy=fifo")
        connectVia(chain)
        refuseFirstHop(reactor)
        node = chain.hops[0].selector.nodes[0]
        self.assertEqual(node.failures, 1)
        reactor.advance(31)
        connectVia(chain)
        self.assertEqual(dialedHosts(reactor)[-1], ("10.0.0.1", 1001))
        acceptFirstHop(reactor)
        self.assertEqual(node.failures, 0)

    def test_relayRefusalOfNextHopMarks(self) -> None:
        """
        Hop 1's relay server refusing the CONNECT to node 2 (nodelay=true)
        fails the route; the next route avoids a failed node.
        """
        reactor, chain = buildChain(
            "relay://10.0.0.1:1001?nodelay=true", "relay://10.0.0.2:1002,10.0.0.3:1003?strategy=fifo"
        )
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(tr.writes, [request("10.0.0.2:1002")])
        hop1.dataReceived(NETWORK_UNREACHABLE)
        results[0].trap(ConnectError)
        hop1.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(chain.hops[1].selector.nodes[0].failures, 1)
        connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(tr.writes, [request("10.0.0.3:1003")])

    def test_onlyTheFailingNodeIsMarked(self) -> None:
        """
        GOST marks only the node whose dial (or the CONNECT to it) failed
        (go-gost/x chain/route.go, C{route.connect}: each node's own
        marker).  A refused dial of hop 1 must not mark hop 2's node, which
        was never tried.

        (Regression: L{_MarkingEndpoint} used to mark every node of the
        route on any failure, leaving a healthy hop-2 node out for
        failTimeout because hop 1 was down.)
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001", "relay://10.0.0.2:1002,10.0.0.3:1003")
        app, results = connectVia(chain)
        refuseFirstHop(reactor)
        self.assertEqual(chain.hops[0].selector.nodes[0].failures, 1)
        self.assertEqual(
            [n.failures for n in chain.hops[1].selector.nodes], [0, 0],
            "hop 2's node was marked failed although only hop 1's dial failed",
        )

    def test_targetRefusalMarksNoNode(self) -> None:
        """
        GOST does not mark any chain node when the last hop's CONNECT to
        the *target* fails (go-gost/x chain/route.go, C{route.Dial}: the
        final C{Transport.Connect} error is returned without marking): an
        unreachable target says nothing about the relay nodes.

        (Regression: every node of the route used to be marked when the
        last relay server answered 01070000 with nodelay=true, so one
        request for a dead target took a healthy relay node out of
        rotation for failTimeout.)
        """
        reactor, chain = buildChain("relay://10.0.0.1:1001,10.0.0.2:1002?nodelay=true")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        hop1.dataReceived(NETWORK_UNREACHABLE)
        results[0].trap(RelayRefused)
        hop1.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            [n.failures for n in chain.hops[0].selector.nodes], [0, 0],
            "a relay node was marked failed because the target was unreachable",
        )


class ChainEndpointTests(SynchronousTestCase):
    """
    L{chainEndpoint}: GOST C{-F} URLs for any Twisted program.
    """

    def test_builds(self) -> None:
        reactor = MemoryReactorClock()
        endpoint = chainEndpoint(reactor, ["relay://a:1", "relay://b:2"], "x", 80)
        self.assertIsInstance(endpoint, _MarkingEndpoint)
        self.assertEqual([node.addr for _, node in endpoint.route], ["a:1", "b:2"])
        self.assertEqual(endpoint.wrapped.request, request("x:80"))
        # Each node's dialer endpoint is wrapped to name the node on failure.
        self.assertEqual(endpoint.wrapped.through.wrapped.request, request("b:2"))

    def test_bytesOnTheWire(self) -> None:
        reactor = MemoryReactorClock()
        endpoint = chainEndpoint(reactor, ["relay://u:p@10.0.0.1:1", "relay://10.0.0.2:2?nodelay=false"], "x", 80)
        app = AppFactory(b"hi")
        endpoint.connect(app)
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(tr.writes, [request("10.0.0.2:2", ("u", "p")) + request("x:80") + b"hi"])

    def test_ipv6Target(self) -> None:
        reactor = MemoryReactorClock()
        endpoint = chainEndpoint(reactor, ["relay://10.0.0.1:1"], "2001:db8::1", 443)
        self.assertEqual(endpoint.wrapped.request, request("[2001:db8::1]:443"))

    def test_unimplementedDialer(self) -> None:
        """
        A dialer we do not implement is refused, naming it.
        """
        reactor = MemoryReactorClock()
        e = self.assertRaises(ConfigError, chainEndpoint, reactor, ["relay+quic://a:1"], "x", 80)
        self.assertIn("quic", str(e))

    def test_unimplementedConnector(self) -> None:
        reactor = MemoryReactorClock()
        e = self.assertRaises(ConfigError, chainEndpoint, reactor, ["relay://a:1", "ss://b:2"], "x", 80)
        self.assertIn("ss", str(e))

    def test_noNodes(self) -> None:
        self.assertRaises(ConfigError, chainEndpoint, MemoryReactorClock(), [], "x", 80)


class HopNamingTests(SynchronousTestCase):
    """
    A failure names the relay server and hop at fault and how it failed,
    never the target (issue 14.2); C{-D} logs the route, node and timing.
    """

    def test_firstHopRefused(self) -> None:
        reactor, chain = buildChain("relay://10.0.0.1:1")
        app, results = connectVia(chain)
        refuseFirstHop(reactor)
        f = results[0]
        f.trap(HopFailed)
        self.assertEqual(str(f.value), "relay server 10.0.0.1:1 (hop 1): connection refused")
        self.assertNotIn(TARGET, f.getErrorMessage())

    def test_secondHopNamedByTheFirst(self) -> None:
        """
        Hop 1's relay server cannot reach hop 2: the refusal names both.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1?nodelay=true", "relay://10.0.0.2:2")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        hop1.dataReceived(NETWORK_UNREACHABLE)
        results[0].trap(RelayRefused)
        self.assertEqual(str(results[0].value), "relay server 10.0.0.1:1 (hop 1) refused 10.0.0.2:2: Network Unreachable")

    def test_lostBeforeAnswer(self) -> None:
        """
        A relay server that closes before answering (nodelay=true) is named.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1?nodelay=true")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        hop1.connectionLost(Failure(ConnectionDone()))
        results[0].trap(HopFailed)
        self.assertEqual(str(results[0].value), "relay server 10.0.0.1:1 (hop 1): closed the connection before answering")

    def test_refusalIsTheApplicationsReason(self) -> None:
        """
        With nodelay=false the application is connected before the answer;
        a refusal then is its connectionLost reason, not a clean close.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1")
        app, results = connectVia(chain, b"GET / HTTP/1.0\r\n\r\n")
        hop1, tr = acceptFirstHop(reactor)
        self.assertEqual(len(results), 1)
        hop1.dataReceived(bytes.fromhex("01020000"))  # Unauthorized
        hop1.connectionLost(Failure(ConnectionDone()))
        reason = app.built[0].lostReason
        self.assertIsInstance(reason.value, RelayRefused)
        self.assertEqual(str(reason.value), f"relay server 10.0.0.1:1 (hop 1) refused {TARGET}: Unauthorized")

    def test_timeoutNamesTheStalledHop(self) -> None:
        from gostrelay.router import Router

        reactor, chain = buildChain("relay://10.0.0.1:1", "relay://10.0.0.2:2")
        router = Router(reactor, chain, dialTimeout=3)
        results: list[Any] = []
        router.connect("tcp", TARGET, AppFactory(b"")).addBoth(results.append)
        # Hop 1's TCP connection never completes (a host dropping SYNs).
        reactor.advance(3)
        results[0].trap(HopFailed)
        self.assertEqual(str(results[0].value), f"relay server 10.0.0.1:1 (hop 1): timed out after 3s (dialing {TARGET})")

    def test_debugRoute(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        reactor, chain = buildChain("relay://10.0.0.1:1?nodelay=true")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        reactor.advance(0.25)
        hop1.dataReceived(OK)
        lines = [formatEvent(e) for e in events if e.get("log_namespace") == "gostrelay.chain"]
        self.assertEqual(lines, [f"chain chain-0: {TARGET} via 10.0.0.1:1 (hop 1): connected in 0.250s"])
        self.assertEqual(events[-1]["log_level"].name, "debug")

    def test_tlsHandshakeNotFinished(self) -> None:
        """
        A TLS carrier lost before its handshake finished says so (a relay+tls
        client dialing a plain relay server).
        """
        from twisted.internet.error import ConnectionLost

        reactor, chain = buildChain("relay://10.0.0.1:1?nodelay=true")
        app, results = connectVia(chain)
        hop1, tr = acceptFirstHop(reactor)
        tr._handshakeDone = False  # type: ignore[attr-defined]  # as Twisted's TLS wrapper has it
        hop1.connectionLost(Failure(ConnectionLost()))
        results[0].trap(HopFailed)
        self.assertEqual(
            str(results[0].value),
            "relay server 10.0.0.1:1 (hop 1): TLS handshake failed: the server closed the connection (does it speak TLS?)",
        )


class OneStepDialTests(SynchronousTestCase):
    """
    A route of one relay node over plain TCP is dialed in one step: the
    TCP connection's protocol is the relay client, under the router's
    timeout alone (issue 20); every other route keeps its nested endpoints.
    """

    def test_oneStep(self) -> None:
        """
        The first hop's connection is built by the dial itself, and its
        protocol is the relay client carrying the application.
        """
        from gostrelay.connectors.relay import RelayClientProtocol

        reactor, chain = buildChain("relay://10.0.0.1:1")
        app, results = connectVia(chain, b"hi")
        endpoint = chain.endpoint("tcp", TARGET, 15)
        self.assertIsInstance(reactor.tcpClients[0][2], _MarkingEndpoint)
        hop1, tr = acceptFirstHop(reactor)
        self.assertIsInstance(hop1, RelayClientProtocol)
        self.assertIs(results[0], app.built[0])
        self.assertEqual(tr.writes, [request(TARGET) + b"hi"])
        self.assertEqual(endpoint.wrapped.request, request(TARGET))  # type: ignore[attr-defined]

    def test_nestedWhenNotPlain(self) -> None:
        """
        Two hops, a host name, a PROXY header: nested endpoints, whose
        first connection's factory is Twisted's.
        """
        for nodes in (
            ("relay://10.0.0.1:1", "relay://10.0.0.2:2"),
            ("relay://relay.example:1",),
            ("relay://10.0.0.1:1?proxyProtocol=1",),
        ):
            reactor, chain = buildChain(*nodes)
            connectVia(chain)
            self.assertFalse(isinstance(reactor.tcpClients[0][2], _MarkingEndpoint), nodes)

    def test_eachConnectIsAnAttempt(self) -> None:
        """
        Connecting one endpoint twice makes two independent attempts.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1")
        endpoint = chain.endpoint("tcp", TARGET, 15)
        first, second = AppFactory(b""), AppFactory(b"")
        results: list[Any] = []
        endpoint.connect(first).addBoth(results.append)
        endpoint.connect(second).addBoth(results.append)
        self.assertIsNot(reactor.tcpClients[0][2], reactor.tcpClients[1][2])
        refuseFirstHop(reactor, 0)
        acceptFirstHop(reactor, 1)
        results[0].trap(HopFailed)
        self.assertIs(results[1], second.built[0])

    def test_timerOnlyTheRouters(self) -> None:
        """
        Dialed by a router, the TCP connection to the node gets no timer of
        its own (the router's dial timeout bounds the attempt); dialed as a
        plain endpoint (L{chainEndpoint}) it keeps the timeout.
        """
        from gostrelay.router import Router

        for nodes in (("relay://10.0.0.1:1",), ("relay://10.0.0.1:1", "relay://10.0.0.2:2")):
            reactor, chain = buildChain(*nodes)
            Router(reactor, chain, dialTimeout=3).connect("tcp", TARGET, AppFactory(b""))
            self.assertIsNone(reactor.tcpClients[0][3], nodes)
            self.assertEqual(len(reactor.getDelayedCalls()), 1, nodes)
            connectVia(chain)
            self.assertEqual(reactor.tcpClients[1][3], 15, nodes)

    def test_directDialTimerOnlyTheRouters(self) -> None:
        """
        Without a chain too: the router's timeout is the only timer.
        """
        from gostrelay.router import Router

        reactor = MemoryReactorClock()
        Router(reactor, None, dialTimeout=3).connect("tcp", "10.0.0.9:80", AppFactory(b""))
        self.assertIsNone(reactor.tcpClients[0][3])
        self.assertEqual([c.getTime() for c in reactor.getDelayedCalls()], [3])

    def test_timeoutStopsTheConnection(self) -> None:
        """
        The router's timeout names the node and stops the connection
        attempt; nothing is left behind.
        """
        from gostrelay.router import Router

        reactor, chain = buildChain("relay://10.0.0.1:1")
        results: list[Any] = []
        Router(reactor, chain, dialTimeout=3).connect("tcp", TARGET, AppFactory(b"")).addBoth(results.append)
        reactor.advance(3)
        results[0].trap(HopFailed)
        self.assertEqual(str(results[0].value), f"relay server 10.0.0.1:1 (hop 1): timed out after 3s (dialing {TARGET})")
        self.assertTrue(reactor.connectors[0].stoppedConnecting)
        self.assertEqual(chain.hops[0].selector.nodes[0].failures, 0)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_cancelOnceConnected(self) -> None:
        """
        Cancelled while the relay server's answer is awaited (nodelay):
        the carrier is aborted.
        """
        reactor, chain = buildChain("relay://10.0.0.1:1?nodelay=true")
        app = AppFactory(b"")
        results: list[Any] = []
        d = chain.endpoint("tcp", TARGET, 15).connect(app)
        d.addBoth(results.append)
        hop1, tr = acceptFirstHop(reactor)
        d.cancel()
        from twisted.internet.defer import CancelledError

        results[0].trap(CancelledError)
        self.assertTrue(tr.aborted)

    def test_originOnlyForProxyHeaders(self) -> None:
        """
        A router asks for the client's addresses (a getsockname per
        connection) only when its chain sends PROXY headers.
        """
        from gostrelay.router import Router

        reactor = MemoryReactorClock()
        self.assertFalse(Router(reactor, None).wantsOrigin)
        self.assertFalse(Router(reactor, buildChain("relay://10.0.0.1:1")[1]).wantsOrigin)
        self.assertTrue(Router(reactor, buildChain("relay://10.0.0.1:1?proxyProtocol=2")[1]).wantsOrigin)
