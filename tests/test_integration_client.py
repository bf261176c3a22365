"""
Integration tests of the client side: forwarders, proxy entries and
endpoints dialing through our relay server (and through a test-side
imitation of a GOST server), over real sockets on 127.0.0.1.

Services run in-process (L{buildServices} on the real reactor) except in
L{ProxyClientLineTests}, which spawns C{python -m gostrelay} with the
seed's proxy-client line and drives it with curl.  Every test waits, at
cleanup, until every socket it opened is closed and every timer it caused
has run or been cancelled (L{ReactorSettler}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web import resource, server

from gostrelay.endpoints import chainEndpoint
from gostrelay.wire.relay import RequestParser, encodeResponse
from tests.processes import CONSOLE, childEnvironment, runToCompletion, spawn
from tests.support.cases import TransportTestCase
from tests.support.reactor import withTimeout
from tests.support.targets import BannerProtocol, HalfCloseCollector, UDPClient, UDPEcho

MIB = 1024 * 1024
OK = encodeResponse(0)


# -- keeping the reactor clean


# -- targets


# -- a relay server holding its response the way GOST does by default


class _HoldingTargetSide(Protocol):
    def __init__(self, server: HoldingRelayServer) -> None:
        self.server = server

    def connectionMade(self) -> None:
        self.server.targetConnected(self)

    def dataReceived(self, data: bytes) -> None:
        self.server.fromTarget(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.server.targetLost()


class HoldingRelayServer(Protocol):
    """
    GOST's relay handler with C{nodelay=false} (its default), from the wire
    format (spec-relay.md 2.3, 14): parse the request, dial the target, and
    hold the 4-byte OK until the target's first bytes, then write OK+bytes
    in one write; on target EOF without data, close without any reply.
    No auth.
    """

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.parser: RequestParser | None = RequestParser()
        self.pending = b""
        self.target: _HoldingTargetSide | None = None
        self.okSent = False

    def dataReceived(self, data: bytes) -> None:
        if self.parser is not None:
            request = self.parser.feed(data)
            if request is None:
                return
            self.pending, self.parser = self.parser.remainder, None
            self.factory.requests.append(request)  # type: ignore[attr-defined]
            host, _, port = request.addr.address.rpartition(":")
            ep = TCP4ClientEndpoint(reactor, host or "127.0.0.1", int(port), timeout=5)
            connectProtocol(ep, _HoldingTargetSide(self)).addErrback(lambda f: self.transport.loseConnection())
            return
        if self.target is not None:
            self.target.transport.write(data)  # type: ignore[union-attr]
        else:
            self.pending += data

    def targetConnected(self, target: _HoldingTargetSide) -> None:
        self.target = target
        if self.pending:
            target.transport.write(self.pending)  # type: ignore[union-attr]
            self.pending = b""

    def fromTarget(self, data: bytes) -> None:
        if not self.okSent:
            self.okSent = True
            data = OK + data
        self.transport.write(data)  # type: ignore[union-attr]

    def targetLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]
        if self.target is not None and self.target.transport is not None:
            self.target.transport.loseConnection()


class HoldingRelayFactory(Factory):
    protocol = HoldingRelayServer
    noisy = False

    def __init__(self) -> None:
        self.open: set[Any] = set()
        self.requests: list[Any] = []


# -- the test base


# -- (a) tcp forward through one and two hops


class TCPForwardTests(TransportTestCase):
    @defer.inlineCallbacks
    def test_oneHop(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay()
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", f"relay://127.0.0.1:{s1}")
        yield self.assertEchoesThrough(fwd, MIB + 12345)
        self.assertEqual(len(accepted1), 1)
        self.assertEqual(len(echo.accepted), 1)
        self.assertTrue(echo.accepted[0].halfClosed, "the client's FIN must reach the target as a half-close")

    @defer.inlineCallbacks
    def test_twoHops(self):  # type: ignore[no-untyped-def]
        """
        Two relay hops (the second with credentials), 1 MiB+ both ways,
        twice on the same forwarder.
        """
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay()
        s2, accepted2 = yield self.startRelay("relay://u2:p2@127.0.0.1:0")
        fwd = yield self.startClient(
            f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}",
            f"relay://127.0.0.1:{s1}",
            f"relay://u2:p2@127.0.0.1:{s2}",
        )
        yield self.assertEchoesThrough(fwd, MIB + 1)
        yield self.assertEchoesThrough(fwd, 2 * MIB)
        self.assertEqual((len(accepted1), len(accepted2), len(echo.accepted)), (2, 2, 2))
        # Hop 2 is reached through hop 1: its peer is hop 1's relay server,
        # never the forwarder's own connection.

    @defer.inlineCallbacks
    def test_twoHopsNodelay(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay()
        s2, accepted2 = yield self.startRelay()
        fwd = yield self.startClient(
            f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}",
            f"relay://127.0.0.1:{s1}?nodelay=true",
            f"relay://127.0.0.1:{s2}?nodelay=true",
        )
        yield self.assertEchoesThrough(fwd, MIB)

    @defer.inlineCallbacks
    def test_wrongCredentialsClosed(self):  # type: ignore[no-untyped-def]
        """
        A hop refusing our credentials: the forwarded connection is closed
        without a byte (nodelay=false: after the header went).
        """
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay("relay://u:right@127.0.0.1:0")
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", f"relay://u:wrong@127.0.0.1:{s1}")
        client = yield self.connect(fwd, HalfCloseCollector(b"hello", halfClose=False))
        yield withTimeout(client.done, 5, "close after refusal")
        self.assertEqual(bytes(client.data), b"")
        self.assertEqual(echo.accepted, [])


# -- (b) the seed's proxy-client line, driven by curl


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"hello from httpd " + (request.getHeader(b"host") or b"-")


class ProxyClientLineTests(TransportTestCase):
    """
    C{python -m gostrelay -L 127.0.0.1:0 -F relay://username:password@...?nodelay=false}
    against our relay server C{-L relay://username:password@127.0.0.1:0},
    then curl through it in every proxy flavour.
    """

    @defer.inlineCallbacks
    def test_curlThroughProxyClientLine(self):  # type: ignore[no-untyped-def]
        site = server.Site(_Hello())
        site.noisy = False
        httpd = self.listenTCP(site)
        s, accepted = yield self.startRelay("relay://username:password@127.0.0.1:0")
        childDir = os.path.abspath(self.mktemp())
        os.makedirs(childDir)
        proc = spawn(
            reactor,
            CONSOLE + ["-L", "127.0.0.1:0", "-F", f"relay://username:password@127.0.0.1:{s}?nodelay=false"],
            childDir,
            childEnvironment(home=childDir),
            name="gostrelay proxy client",
            addCleanup=self.addCleanup,
        )
        host, proxyPort = yield proc.waitForListening(timeout=15)
        self.assertEqual(host, "127.0.0.1")
        curlEnv = {"PATH": "/usr/bin:/bin", "HOME": childDir}
        url = f"http://127.0.0.1:{httpd}/"
        cases = [
            ("-x", f"http://127.0.0.1:{proxyPort}", url),
            ("-p", "-x", f"http://127.0.0.1:{proxyPort}", url),
            ("--socks5", f"127.0.0.1:{proxyPort}", url),
            ("--socks5-hostname", f"127.0.0.1:{proxyPort}", f"http://localhost:{httpd}/"),
            ("--socks4", f"127.0.0.1:{proxyPort}", url),
            ("--socks4a", f"127.0.0.1:{proxyPort}", f"http://localhost:{httpd}/"),
        ]
        failures = []
        for case in cases:
            args = ["/usr/bin/curl", "-q", "-sS", "--max-time", "8", *case]
            done = yield runToCompletion(reactor, args, childDir, curlEnv, timeout=12, addCleanup=self.addCleanup)
            expectedHost = case[-1].split("/")[2]
            if done.exitCode != 0 or done.out != f"hello from httpd {expectedHost}":
                failures.append(f"curl {' '.join(case)}: exit {done.exitCode}, out {done.out!r}, err {done.err!r}")
        self.assertEqual(failures, [], proc.describe())
        self.assertEqual(len(accepted), len(cases), "every request must go through the relay server")


# -- (c) server-speaks-first targets


class ServerSpeaksFirstTests(TransportTestCase):
    @defer.inlineCallbacks
    def test_bannerDefaultSettings(self):  # type: ignore[no-untyped-def]
        """
        Default client settings (nodelay=false): the header goes alone after
        quietDelay, so the banner arrives (GOST's client would hang here).
        """
        banner = self.startBanner()
        s, accepted = yield self.startRelay()
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{banner}", f"relay://127.0.0.1:{s}")
        client = yield self.connect(fwd, HalfCloseCollector())
        data = yield client.waitFor(len(BannerProtocol.BANNER), 3, "banner through our relay server")
        self.assertEqual(data, BannerProtocol.BANNER)
        client.transport.write(b"QUIT\r\n")
        data = yield client.waitFor(len(BannerProtocol.BANNER) + 6, 3, "echo after banner")
        self.assertEqual(data, BannerProtocol.BANNER + b"QUIT\r\n")

    @defer.inlineCallbacks
    def test_bannerTwoHopsDefault(self):  # type: ignore[no-untyped-def]
        banner = self.startBanner()
        s1, _ = yield self.startRelay()
        s2, _ = yield self.startRelay()
        fwd = yield self.startClient(
            f"tcp://127.0.0.1:0/127.0.0.1:{banner}", f"relay://127.0.0.1:{s1}", f"relay://127.0.0.1:{s2}"
        )
        client = yield self.connect(fwd, HalfCloseCollector())
        data = yield client.waitFor(len(BannerProtocol.BANNER), 3, "banner through two hops")
        self.assertEqual(data, BannerProtocol.BANNER)

    @defer.inlineCallbacks
    def test_bannerNodelayHoldingServer(self):  # type: ignore[no-untyped-def]
        """
        nodelay=true against a server that holds its OK until the target
        speaks (GOST's default): the banner arrives, with the OK stripped.
        """
        banner = self.startBanner()
        holding = HoldingRelayFactory()
        hs = self.listenTCP(holding)
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{banner}", f"relay://127.0.0.1:{hs}?nodelay=true")
        client = yield self.connect(fwd, HalfCloseCollector())
        data = yield client.waitFor(len(BannerProtocol.BANNER), 3, "banner through a holding server")
        self.assertEqual(data, BannerProtocol.BANNER)
        self.assertEqual(holding.requests[0].addr.address, f"127.0.0.1:{banner}")

    @defer.inlineCallbacks
    def test_clientSpeaksFirstNodelayHoldingServer(self):  # type: ignore[no-untyped-def]
        """
        The cell where GOST hangs: client nodelay=true, server holding its
        OK, a client-speaks-first protocol.  After responseWait the client's
        bytes go; the target answers; OK+answer arrive.
        """
        echo, echoPort = self.startEcho()
        holding = HoldingRelayFactory()
        hs = self.listenTCP(holding)
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", f"relay://127.0.0.1:{hs}?nodelay=true")
        client = yield self.connect(fwd, HalfCloseCollector())
        client.transport.write(b"GET / HTTP/1.0\r\n\r\n")
        data = yield client.waitFor(18, 3, "answer through a holding server with nodelay=true")
        self.assertEqual(data, b"GET / HTTP/1.0\r\n\r\n")

    @defer.inlineCallbacks
    def test_clientSpeaksFirstDefaultHoldingServer(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        holding = HoldingRelayFactory()
        hs = self.listenTCP(holding)
        fwd = yield self.startClient(f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", f"relay://127.0.0.1:{hs}")
        # No half-close: like GOST's pipe, the holding server ends both
        # directions when one ends.
        payload = os.urandom(300000)
        client = yield self.connect(fwd, HalfCloseCollector(payload, halfClose=False))
        data = yield client.waitFor(len(payload), 10, "echo through a holding server")
        self.assertEqual(data, payload)


# -- (d) UDP through relay


class UDPForwardTests(TransportTestCase):
    @defer.inlineCallbacks
    def exchangeSizes(self, fwd: int, sizes: tuple[int, ...]):  # type: ignore[no-untyped-def]
        client = UDPClient()
        self.listenUDP(client)
        for size in sizes:
            payload = os.urandom(size)
            reply = yield client.exchange(payload, ("127.0.0.1", fwd))
            self.assertEqual(len(reply), size)
            self.assertEqual(reply, payload, f"{size}-byte datagram came back altered")

    @defer.inlineCallbacks
    def test_udpForwardThroughChain(self):  # type: ignore[no-untyped-def]
        """
        C{-L udp://127.0.0.1:0/127.0.0.1:<echo> -F relay://s1 -F relay://s2}:
        5, 5000 and 60000-byte datagrams come back intact (GOST would
        truncate beyond ~4 KiB).
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s1, accepted1 = yield self.startRelay()
        s2, accepted2 = yield self.startRelay()
        fwd = yield self.startClient(
            f"udp://127.0.0.1:0/127.0.0.1:{echoPort}", f"relay://127.0.0.1:{s1}", f"relay://127.0.0.1:{s2}"
        )
        yield self.exchangeSizes(fwd, (5, 5000, 60000, 5))
        self.assertEqual([n for n, _ in echo.received], [5, 5000, 60000, 5])
        self.assertEqual((len(accepted1), len(accepted2)), (1, 1), "one session, one relay stream")

    @defer.inlineCallbacks
    def test_udpForwardOneHopKeepAliveFalse(self):  # type: ignore[no-untyped-def]
        """
        GOST's keepAlive=false: one relay stream per exchange.
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s1, accepted1 = yield self.startRelay()
        fwd = yield self.startClient(
            f"udp://127.0.0.1:0/127.0.0.1:{echoPort}?keepAlive=false", f"relay://127.0.0.1:{s1}"
        )
        yield self.exchangeSizes(fwd, (5, 5000))
        self.assertEqual(len(accepted1), 2)

    @defer.inlineCallbacks
    def test_relayForwardModeUDP(self):  # type: ignore[no-untyped-def]
        """
        Server C{-L relay://127.0.0.1:0/127.0.0.1:<echo>}, client
        C{-L udp://127.0.0.1:0 -F relay://...}: the client sends the empty
        target, the server forwards to its own.
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay(f"relay://127.0.0.1:0/127.0.0.1:{echoPort}")
        fwd = yield self.startClient("udp://127.0.0.1:0", f"relay://127.0.0.1:{s}")
        yield self.exchangeSizes(fwd, (5, 5000, 60000))
        self.assertEqual(len(echo.received), 3)

    @defer.inlineCallbacks
    def test_relayForwardModeTCP(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s, accepted = yield self.startRelay(f"relay://127.0.0.1:0/127.0.0.1:{echoPort}")
        fwd = yield self.startClient("tcp://127.0.0.1:0", f"relay://127.0.0.1:{s}")
        yield self.assertEchoesThrough(fwd, 100000)


# -- (e) the relay: endpoint string and chainEndpoint


def escape(description: str) -> str:
    """
    Escape an endpoint description to nest it as an argument of another.
    """
    return description.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class EndpointTests(TransportTestCase):
    @defer.inlineCallbacks
    def roundTrip(self, endpoint: Any, payload: bytes = b"hello, relay"):  # type: ignore[no-untyped-def]
        client = HalfCloseCollector(payload)
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(self._closeClient, client)
        yield withTimeout(client.done, 5, "echo through endpoint")
        self.assertEqual(bytes(client.data), payload)

    @defer.inlineCallbacks
    def test_relayEndpointString(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s, accepted = yield self.startRelay()
        ep = clientFromString(reactor, f"relay:{escape(f'tcp:127.0.0.1:{s}')}:host=127.0.0.1:port={echoPort}")
        yield self.roundTrip(ep)
        self.assertEqual(len(accepted), 1)

    @defer.inlineCallbacks
    def test_relayEndpointStringAuthNodelay(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s, accepted = yield self.startRelay("relay://u:p@127.0.0.1:0")
        ep = clientFromString(
            reactor,
            f"relay:{escape(f'tcp:127.0.0.1:{s}')}:host=127.0.0.1:port={echoPort}:username=u:password=p:nodelay=true",
        )
        yield self.roundTrip(ep)

    @defer.inlineCallbacks
    def test_relayEndpointStringNested(self):  # type: ignore[no-untyped-def]
        """
        Two hops by nesting: the outer relay: reaches the inner one's
        relay server through the first.
        """
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay()
        s2, accepted2 = yield self.startRelay()
        inner = f"relay:{escape(f'tcp:127.0.0.1:{s1}')}:host=127.0.0.1:port={s2}"
        ep = clientFromString(reactor, f"relay:{escape(inner)}:host=127.0.0.1:port={echoPort}")
        yield self.roundTrip(ep, os.urandom(200000))
        self.assertEqual((len(accepted1), len(accepted2)), (1, 1))

    @defer.inlineCallbacks
    def test_chainEndpoint(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        s1, accepted1 = yield self.startRelay()
        s2, accepted2 = yield self.startRelay("relay://u:p@127.0.0.1:0")
        ep = chainEndpoint(reactor, [f"relay://127.0.0.1:{s1}", f"relay://u:p@127.0.0.1:{s2}"], "127.0.0.1", echoPort)
        yield self.roundTrip(ep, os.urandom(MIB))
        self.assertEqual((len(accepted1), len(accepted2)), (1, 1))


# -- (f) SOCKS5 UDP ASSOCIATE on the entry (udp=true), directly and through relay


def socks5Datagram(host: str, port: int, data: bytes) -> bytes:
    from gostrelay.wire.socks import encodeSocks5Datagram

    return encodeSocks5Datagram(host, port, data)


class SOCKS5UDPTests(TransportTestCase):
    """
    RFC 1928 UDP ASSOCIATE on C{-L socks5://...?udp=true}: directly, and
    through a relay chain as a relay UDP association (a UDP BIND of
    0.0.0.0:0, which needs C{bind=true} on the server, as in GOST).
    """

    @defer.inlineCallbacks
    def associate(self, socksPort: int):  # type: ignore[no-untyped-def]
        """
        Open an association; fire with the control connection and the
        reply bytes.
        """
        control = yield self.connect(socksPort, HalfCloseCollector())
        control.transport.write(b"\x05\x01\x00")
        yield control.waitFor(2, 5, "method selection")
        control.transport.write(b"\x05\x03\x00\x01" + bytes(6))
        data = yield control.waitFor(12, 5, "UDP ASSOCIATE reply")
        return control, data[2:]

    @defer.inlineCallbacks
    def roundTrips(self, socksPort: int, echoPort: int, sizes: tuple[int, ...]):  # type: ignore[no-untyped-def]
        import struct

        control, reply = yield self.associate(socksPort)
        self.assertEqual(reply[:4], b"\x05\x00\x00\x01", reply)
        bnd = (".".join(str(b) for b in reply[4:8]), struct.unpack(">H", reply[8:10])[0])
        self.assertEqual(bnd[0], "127.0.0.1")
        client = UDPClient()
        self.listenUDP(client)
        for size in sizes:
            payload = os.urandom(size)
            answer = yield client.exchange(socks5Datagram("127.0.0.1", echoPort, payload), bnd)
            self.assertEqual(answer, socks5Datagram("127.0.0.1", echoPort, payload), f"{size}-byte datagram")
        return control

    @defer.inlineCallbacks
    def test_direct(self):  # type: ignore[no-untyped-def]
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        socksPort = yield self.startClient("socks5://127.0.0.1:0?udp=true")
        control = yield self.roundTrips(socksPort, echoPort, (5, 5000))
        control.transport.loseConnection()
        yield withTimeout(control.done, 5, "control close")

    @defer.inlineCallbacks
    def test_throughRelay(self):  # type: ignore[no-untyped-def]
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay("relay://127.0.0.1:0?bind=true")
        socksPort = yield self.startClient("socks5://127.0.0.1:0?udp=true", f"relay://127.0.0.1:{s}")
        yield self.roundTrips(socksPort, echoPort, (5, 5000, 30000))
        self.assertEqual(len(accepted), 1, "one relay stream per association")
        self.assertEqual([n for n, _ in echo.received], [5, 5000, 30000])

    @defer.inlineCallbacks
    def test_relayWithoutBindRefuses(self):  # type: ignore[no-untyped-def]
        """
        A relay server without bind=true refuses the association: the
        SOCKS5 client gets a failure reply and the control connection is
        closed.
        """
        s, accepted = yield self.startRelay()
        socksPort = yield self.startClient("socks5://127.0.0.1:0?udp=true", f"relay://127.0.0.1:{s}")
        control, reply = yield self.associate(socksPort)
        self.assertEqual(reply[:2], b"\x05\x01", reply)
        yield withTimeout(control.done, 5, "close after refusal")
