"""
Tests for L{gostrelay.handlers.proxy}: the local proxy entry (C{-L :8080},
handlers C{auto}, C{http}, C{socks5}, C{socks4}; spec-relay.md section 11).

The client is a L{StringTransport}; targets are reached through a fake
router whose dials are completed or refused by hand, except in
L{ThroughRelayTests}, where the real router dials a relay chain on a
L{MemoryReactorClock} and the relay server's answers are fed by hand.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.errors import DialError
from gostrelay.handlers.proxy import DEFAULT_READ_TIMEOUT, ProxyEntryHandler
from gostrelay.wire.relay import connectRequest
from tests import vectors
from tests.support.fakes import RecordingTransport

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
UPSTREAM_LOCAL = IPv4Address("TCP", "10.1.1.1", 40000)
OK = bytes.fromhex("01000000")


# -- a router whose dials are completed by hand


class FakeDial:
    def __init__(self, network: str, address: str, factory: Any) -> None:
        self.network = network
        self.address = address
        self.factory = factory
        self.deferred: defer.Deferred[Any] = defer.Deferred(lambda d: setattr(self, "cancelled", True))
        self.cancelled = False
        self.protocol: Any = None
        self.transport: RecordingTransport | None = None

    def accept(self) -> tuple[Any, RecordingTransport]:
        proto = self.factory.buildProtocol(None)
        tr = RecordingTransport(hostAddress=UPSTREAM_LOCAL, peerAddress=IPv4Address("TCP", "10.2.2.2", 80))
        proto.makeConnection(tr)
        self.protocol, self.transport = proto, tr
        self.deferred.callback(proto)
        return proto, tr

    def refuse(self, reason: Exception | None = None) -> None:
        self.deferred.errback(reason or DialError(f"dial {self.address}: connection refused"))


class FakeRouter:
    def __init__(self) -> None:
        self.dials: list[FakeDial] = []

    def connect(self, network: str, address: str, factory: Any, origin: Any = None) -> defer.Deferred[Any]:
        dial = FakeDial(network, address, factory)
        self.dials.append(dial)
        return dial.deferred


def makeHandler(url: str, *nodes: str, reactor: MemoryReactorClock | None = None, fakeRouter: bool = True):  # type: ignore[no-untyped-def]
    """
    The handler of the first service of C{-L url [-F nodes]}, built through
    the plugin registry as the assembly does.
    """
    from gostrelay import registry

    reactor = reactor if reactor is not None else MemoryReactorClock()
    cfg = buildConfigFromCommandLine([url], list(nodes))
    svc = cfg.services[0]
    plugin = registry.lookup("handler", svc.handler.type)
    handler = plugin.load()(reactor, svc, BuildContext(reactor, cfg))
    self_router = None
    if fakeRouter:
        self_router = FakeRouter()
        handler.options.router = self_router
    return reactor, handler, self_router


def connectClient(handler: ProxyEntryHandler) -> tuple[Any, RecordingTransport]:
    proto = handler.buildProtocol(CLIENT)
    tr = RecordingTransport(peerAddress=CLIENT, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
    proto.makeConnection(tr)
    return proto, tr


def socks5Connect(host: bytes, port: int, atyp: int = 1, cmd: int = 1) -> bytes:
    if atyp == 3:
        addr = bytes([len(host)]) + host
    else:
        addr = host
    return bytes([5, cmd, 0, atyp]) + addr + struct.pack(">H", port)


def socks4Connect(ip: bytes, port: int, userid: bytes = b"", domain: bytes | None = None) -> bytes:
    data = b"\x04\x01" + struct.pack(">H", port) + ip + userid + b"\x00"
    if domain is not None:
        data += domain + b"\x00"
    return data


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ProxyTestCase(SynchronousTestCase):
    def assertClosed(self, tr: RecordingTransport) -> None:
        self.assertTrue(tr.disconnecting, "client connection not closed")

    def assertPiping(self, proto: Any, tr: RecordingTransport, dial: FakeDial) -> None:
        """
        Bytes flow both ways between client and target.
        """
        before = tr.value()
        proto.dataReceived(b"ping")
        self.assertTrue(dial.transport.value().endswith(b"ping"))
        dial.protocol.dataReceived(b"pong")
        self.assertEqual(tr.value(), before + b"pong")
        self.assertFalse(tr.disconnecting)


# -- SOCKS5


class SOCKS5Tests(ProxyTestCase):
    def test_noAuthConnect(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00")
        self.assertEqual(tr.value(), b"\x05\x00")
        proto.dataReceived(socks5Connect(bytes([93, 184, 216, 34]), 80))
        self.assertEqual([(d.network, d.address) for d in router.dials], [("tcp", "93.184.216.34:80")])
        self.assertEqual(tr.value(), b"\x05\x00", "no reply before the dial completed")
        router.dials[0].accept()
        self.assertEqual(tr.value(), b"\x05\x00" + b"\x05\x00\x00\x01" + bytes([10, 1, 1, 1]) + struct.pack(">H", 40000))
        self.assertPiping(proto, tr, router.dials[0])
        self.assertEqual(reactor.getDelayedCalls(), [], "the read timeout must be cancelled")

    def test_domainAndIPv6Targets(self) -> None:
        for request, expected in (
            (socks5Connect(b"example.com", 443, atyp=3), "example.com:443"),
            (socks5Connect(bytes.fromhex("20010db8000000000000000000000001"), 8443, atyp=4), "[2001:db8::1]:8443"),
        ):
            reactor, handler, router = makeHandler("socks5://:0")
            proto, tr = connectClient(handler)
            proto.dataReceived(b"\x05\x01\x00" + request)
            self.assertEqual(router.dials[0].address, expected)

    def test_gluedAndSplit(self) -> None:
        """
        Greeting, request and first payload in one segment, or byte by
        byte: same result; early payload reaches the target after the dial.
        """
        data = b"\x05\x02\x00\x02" + socks5Connect(b"example.com", 80, atyp=3) + b"early"
        for chunks in ([data], [bytes([b]) for b in data]):
            reactor, handler, router = makeHandler(":0")
            proto, tr = connectClient(handler)
            for c in chunks:
                proto.dataReceived(c)
            self.assertEqual(router.dials[0].address, "example.com:80")
            router.dials[0].accept()
            self.assertEqual(router.dials[0].transport.value(), b"early")

    def test_userPassGood(self) -> None:
        reactor, handler, router = makeHandler("user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x02\x00\x02")
        self.assertEqual(tr.value(), b"\x05\x02")
        proto.dataReceived(b"\x01\x04user\x04pass")
        self.assertEqual(tr.value(), b"\x05\x02\x01\x00")
        proto.dataReceived(socks5Connect(b"example.com", 80, atyp=3))
        router.dials[0].accept()
        self.assertTrue(tr.value().startswith(b"\x05\x02\x01\x00\x05\x00\x00"))
        self.assertFalse(tr.disconnecting)

    def test_userPassBad(self) -> None:
        """
        Wrong password: status 01 01, then close; nothing dialed.
        """
        for creds in (b"\x01\x04user\x05wrong", b"\x01\x05other\x04pass", b"\x01\x00\x00"):
            reactor, handler, router = makeHandler("socks5://user:pass@:0")
            proto, tr = connectClient(handler)
            proto.dataReceived(b"\x05\x01\x02")
            proto.dataReceived(creds)
            self.assertEqual(tr.value(), b"\x05\x02\x01\x01")
            self.assertClosed(tr)
            proto.dataReceived(socks5Connect(b"example.com", 80, atyp=3))
            self.assertEqual(router.dials, [])

    def test_noAcceptableMethod(self) -> None:
        """
        Auth configured, client offers only no-auth: 05 FF, close.
        """
        reactor, handler, router = makeHandler("user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00")
        self.assertEqual(tr.value(), b"\x05\xff")
        self.assertClosed(tr)

    def test_udpAssociateNotSupported(self) -> None:
        """
        UDP ASSOCIATE: reply 07 (command not supported), close, no dial.
        """
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00" + socks5Connect(bytes(4), 0, cmd=3))
        self.assertEqual(tr.value()[:4], b"\x05\x00\x05\x07")
        self.assertEqual(len(tr.value()), 2 + 10)
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_bindNotSupported(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00" + socks5Connect(bytes(4), 0, cmd=2))
        self.assertEqual(tr.value()[2:4], b"\x05\x07")
        self.assertClosed(tr)

    def test_dialFailure(self) -> None:
        """
        A failed dial: reply 03 (network unreachable), close.
        """
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00" + socks5Connect(b"example.com", 80, atyp=3))
        router.dials[0].refuse()
        self.assertEqual(tr.value(), b"\x05\x00" + b"\x05\x03\x00\x01" + bytes(6))
        self.assertClosed(tr)

    def test_clientLeavesWhileDialing(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00" + socks5Connect(b"example.com", 80, atyp=3))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(router.dials[0].cancelled)

    def test_socksOnlyHandlerRefusesHTTP(self) -> None:
        reactor, handler, router = makeHandler("socks5://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])


# -- SOCKS4 / 4a


class SOCKS4Tests(ProxyTestCase):
    def test_connectGranted(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(socks4Connect(bytes([93, 184, 216, 34]), 80, b"someone"))
        self.assertEqual(router.dials[0].address, "93.184.216.34:80")
        self.assertEqual(tr.value(), b"")
        router.dials[0].accept()
        self.assertEqual(tr.value()[:2], b"\x00\x5a")
        self.assertEqual(len(tr.value()), 8)
        self.assertPiping(proto, tr, router.dials[0])

    def test_socks4a(self) -> None:
        reactor, handler, router = makeHandler("socks4://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(socks4Connect(bytes([0, 0, 0, 1]), 8080, b"", b"example.com"))
        self.assertEqual(router.dials[0].address, "example.com:8080")
        router.dials[0].accept()
        self.assertEqual(tr.value()[:2], b"\x00\x5a")

    def test_rejectedOnDialFailure(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(socks4Connect(bytes([0, 0, 0, 1]), 80, b"", b"example.com"))
        router.dials[0].refuse()
        self.assertEqual(tr.value(), b"\x00\x5b" + bytes(6))
        self.assertClosed(tr)

    def test_authChecksUseridWithEmptyPassword(self) -> None:
        """
        With users configured, a SOCKS4 userid is checked with an empty
        password: a user with a password cannot pass (GOST).
        """
        reactor, handler, router = makeHandler("user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(socks4Connect(bytes([1, 2, 3, 4]), 80, b"user"))
        self.assertEqual(tr.value()[:2], b"\x00\x5b")
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_bindRejected(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x04\x02\x00\x50\x01\x02\x03\x04\x00")
        self.assertEqual(tr.value()[:2], b"\x00\x5b")
        self.assertClosed(tr)


# -- HTTP


class HTTPTests(ProxyTestCase):
    def test_connect(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        self.assertEqual(router.dials[0].address, "example.com:443")
        self.assertEqual(tr.value(), b"")
        router.dials[0].accept()
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 200 Connection established\r\n"))
        self.assertTrue(tr.value().endswith(b"\r\n\r\n"))
        self.assertEqual(router.dials[0].transport.value(), b"", "the CONNECT head must not reach the target")
        self.assertPiping(proto, tr, router.dials[0])

    def test_connectWithEarlyPayload(self) -> None:
        """
        A TLS ClientHello sent right behind the CONNECT head (same segment)
        reaches the target.
        """
        reactor, handler, router = makeHandler("http://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01hello")
        router.dials[0].accept()
        self.assertEqual(router.dials[0].transport.value(), b"\x16\x03\x01hello")

    def test_connectDialFailure(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        router.dials[0].refuse()
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 503 "))
        self.assertClosed(tr)

    def test_absoluteURIForwarded(self) -> None:
        """
        An absolute-URI GET goes to the origin in origin form, without the
        proxy headers, with C{Connection: close}; the response comes back
        verbatim.
        """
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(
            b"GET http://example.com:8080/path?q=1 HTTP/1.1\r\n"
            b"Host: example.com:8080\r\n"
            b"User-Agent: test\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"Accept: */*\r\n\r\n"
        )
        self.assertEqual(router.dials[0].address, "example.com:8080")
        router.dials[0].accept()
        sent = router.dials[0].transport.value()
        head, _, rest = sent.partition(b"\r\n\r\n")
        self.assertEqual(rest, b"")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"GET /path?q=1 HTTP/1.1")
        lowered = [line.lower() for line in lines[1:]]
        self.assertIn(b"host: example.com:8080", lowered)
        self.assertIn(b"user-agent: test", lowered)
        self.assertIn(b"accept: */*", lowered)
        self.assertIn(b"connection: close", lowered)
        self.assertFalse([line for line in lowered if line.startswith(b"proxy-")], lines)
        self.assertEqual(tr.value(), b"", "nothing is answered by the proxy itself")
        router.dials[0].protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(tr.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

    def test_absoluteURIWithBody(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(
            b"POST http://example.com/submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nab"
        )
        proto.dataReceived(b"cde")
        self.assertEqual(router.dials[0].address, "example.com:80")
        router.dials[0].accept()
        sent = router.dials[0].transport.value()
        self.assertTrue(sent.startswith(b"POST /submit HTTP/1.1\r\n"))
        self.assertTrue(sent.endswith(b"\r\n\r\nabcde"))

    def test_absoluteURIDialFailure(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        router.dials[0].refuse()
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 503 "))
        self.assertClosed(tr)

    def test_authMissing(self) -> None:
        reactor, handler, router = makeHandler("user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 407 "))
        self.assertIn(b'\r\nProxy-Authenticate: Basic realm="gost"\r\n', tr.value())
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_authWrong(self) -> None:
        for value in (basic("user", "wrong"), basic("nobody", "pass"), "Basic !!!notbase64", "Bearer abc"):
            reactor, handler, router = makeHandler("http://user:pass@:0")
            proto, tr = connectClient(handler)
            proto.dataReceived(
                b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: "
                + value.encode()
                + b"\r\n\r\n"
            )
            self.assertTrue(tr.value().startswith(b"HTTP/1.1 407 "), (value, tr.value()))
            self.assertIn(b'Proxy-Authenticate: Basic realm="gost"', tr.value())
            self.assertClosed(tr)
            self.assertEqual(router.dials, [])

    def test_authRealmOption(self) -> None:
        reactor, handler, router = makeHandler("user:pass@:0?authBasicRealm=corp")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
        self.assertIn(b'Proxy-Authenticate: Basic realm="corp"', tr.value())

    def test_authGood(self) -> None:
        reactor, handler, router = makeHandler("user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        router.dials[0].accept()
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 200 Connection established"))

    def test_tlsFirstByteWithUsersClosed(self) -> None:
        """
        A TLS ClientHello (0x16) on an entry with users is not forwarded by
        SNI (it carries no credentials): closed, no reply, nothing dialed.
        (Without users it is: tests/test_sni.py.)
        """
        reactor, handler, router = makeHandler("auto://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        self.assertEqual(tr.value(), b"")
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_httpOnlyHandlerTreatsSocksAsHTTP(self) -> None:
        """
        C{-L http://:0}: a 0x05 first byte is not SOCKS5 there; it is a bad
        HTTP request, answered 400.
        """
        reactor, handler, router = makeHandler("http://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00")
        self.assertNotEqual(tr.value()[:2], b"\x05\x00")
        if not tr.disconnecting:
            proto.dataReceived(b"\r\n\r\n")
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 400 "), tr.value())
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_nonProxyRequest(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 400 "), tr.value())
        self.assertClosed(tr)


class ReadTimeoutTests(ProxyTestCase):
    def test_silentClient(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        reactor.advance(DEFAULT_READ_TIMEOUT - 0.1)
        self.assertFalse(tr.disconnecting)
        reactor.advance(0.1)
        self.assertClosed(tr)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_partialRequest(self) -> None:
        reactor, handler, router = makeHandler(":0?readTimeout=5s")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\n")
        reactor.advance(5)
        self.assertClosed(tr)
        self.assertEqual(router.dials, [])

    def test_socksHalfwayTimesOut(self) -> None:
        reactor, handler, router = makeHandler(":0?readTimeout=2s")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x05\x01\x00")
        reactor.advance(2)
        self.assertClosed(tr)

    def test_lostCancelsTimeout(self) -> None:
        reactor, handler, router = makeHandler(":0")
        proto, tr = connectClient(handler)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])


# -- through a relay chain (the real router, a MemoryReactorClock)


class ThroughRelayTests(ProxyTestCase):
    """
    The entry in front of a relay chain: the relay header carries the
    client's target; GOST's default answers at once; nodelay=true turns
    relay refusals into 503 / SOCKS errors.
    """

    def setupRelay(self, nodeQuery: str = ""):  # type: ignore[no-untyped-def]
        reactor, handler, _ = makeHandler(
            "user:pass@:0", f"relay://ru:rp@10.0.0.1:8420{nodeQuery}", fakeRouter=False
        )
        proto, tr = connectClient(handler)
        return reactor, handler, proto, tr

    def acceptRelay(self, reactor: MemoryReactorClock) -> tuple[Any, RecordingTransport]:
        host, port, factory = reactor.tcpClients[-1][:3]
        self.assertEqual((host, port), ("10.0.0.1", 8420))
        relay = factory.buildProtocol(None)
        rtr = RecordingTransport(hostAddress=UPSTREAM_LOCAL)
        relay.makeConnection(rtr)
        return relay, rtr

    def test_httpConnectDefaultAnswersAtOnce(self) -> None:
        """
        nodelay=false: 200 at once (before the relay server answered), and
        the header rides on the client's first bytes.
        """
        reactor, handler, proto, tr = self.setupRelay()
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        relay, rtr = self.acceptRelay(reactor)
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 200 Connection established"))
        self.assertEqual(rtr.writes, [])
        proto.dataReceived(b"\x16\x03\x01hello")
        self.assertEqual(rtr.writes, [connectRequest("example.com:443", "tcp", "ru", "rp").encode() + b"\x16\x03\x01hello"])
        relay.dataReceived(OK + b"\x16\x03\x03server")
        self.assertTrue(tr.value().endswith(b"\r\n\r\n\x16\x03\x03server"))

    def test_httpConnectNodelayRefused(self) -> None:
        reactor, handler, proto, tr = self.setupRelay("?nodelay=true")
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        relay, rtr = self.acceptRelay(reactor)
        self.assertEqual(rtr.writes, [connectRequest("example.com:443", "tcp", "ru", "rp").encode()])
        self.assertEqual(tr.value(), b"")
        relay.dataReceived(vectors.caseBytes("server_resp_connect_refused"))
        # The relay server could not reach the target: a 502, not GOST's 503.
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 502 "), tr.value())
        self.assertClosed(tr)
        relay.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_httpConnectNodelayOK(self) -> None:
        reactor, handler, proto, tr = self.setupRelay("?nodelay=true")
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        relay, rtr = self.acceptRelay(reactor)
        relay.dataReceived(OK)
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 200 Connection established"))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_httpConnectNodelayHeldResponse(self) -> None:
        """
        A relay server that holds its OK (GOST's default): the 200 comes
        after responseWait, not never.
        """
        reactor, handler, proto, tr = self.setupRelay("?nodelay=true")
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        relay, rtr = self.acceptRelay(reactor)
        reactor.advance(0.49)
        self.assertEqual(tr.value(), b"")
        reactor.advance(0.01)
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 200 Connection established"))

    def socks5ThroughRefusal(self, status: int) -> RecordingTransport:
        reactor, handler, proto, tr = self.setupRelay("?nodelay=true")
        proto.dataReceived(b"\x05\x01\x02\x01\x04user\x04pass" + socks5Connect(b"example.com", 80, atyp=3))
        relay, rtr = self.acceptRelay(reactor)
        relay.dataReceived(bytes([1, status, 0, 0]))
        self.assertClosed(tr)
        return tr

    def test_socks5NodelayRefused(self) -> None:
        """
        The relay server refusing (network unreachable, unauthorized)
        becomes SOCKS5 reply 03, as GOST answers any dial error.
        """
        for status in (7, 2, 1):
            tr = self.socks5ThroughRefusal(status)
            self.assertEqual(tr.value()[4:6], b"\x05\x03", (status, tr.value()))

    def test_socks5NodelayForbidden(self) -> None:
        """
        The relay server answering Forbidden (its bypass matched) is meant
        to become SOCKS5 reply 02 (connection not allowed):
        L{ProxyEntryProtocol._socks5} checks C{reason.check(RelayRefused)}
        and C{status == FORBIDDEN}.

        (Regression: L{Router.connect} used to turn every L{ConnectError},
        L{RelayRefused} included, into a L{DialError}, so the handler never
        saw the status and answered 03.)
        """
        tr = self.socks5ThroughRefusal(3)
        self.assertEqual(tr.value()[4:6], b"\x05\x02", tr.value())

    def test_socks4NodelayRefused(self) -> None:
        reactor, handler, _ = makeHandler(":0", "relay://10.0.0.1:8420?nodelay=true", fakeRouter=False)
        proto, tr = connectClient(handler)
        proto.dataReceived(socks4Connect(bytes([0, 0, 0, 1]), 80, b"", b"example.com"))
        relay, rtr = self.acceptRelay(reactor)
        self.assertEqual(rtr.writes, [connectRequest("example.com:80").encode()])
        relay.dataReceived(bytes.fromhex("01070000"))
        self.assertEqual(tr.value(), b"\x00\x5b" + bytes(6))

    def test_clientLeavesWhileWaitingForRelay(self) -> None:
        """
        The client going away while a nodelay=true relay connect waits for
        its response cancels the dial down to the carrier (aborted), and
        leaves no timer (dial timeout, responseWait) behind.
        """
        reactor, handler, proto, tr = self.setupRelay("?nodelay=true")
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        relay, rtr = self.acceptRelay(reactor)
        self.assertNotEqual(reactor.getDelayedCalls(), [])
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(rtr.aborted, "the relay carrier must be aborted")
        relay.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertEqual(tr.value(), b"")

    def test_clientLeavesBeforeRelayReached(self) -> None:
        reactor, handler, proto, tr = self.setupRelay()
        proto.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: " + basic("user", "pass").encode() + b"\r\n\r\n"
        )
        self.assertEqual(len(reactor.tcpClients), 1)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(reactor.connectors[-1].stoppedConnecting or reactor.connectors[-1]._disconnected)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_relayDialTimeout(self) -> None:
        """
        A relay server that cannot be reached within dialTimeout: 504, and
        the close line names the relay server, not the target.
        """
        reactor, handler, _ = makeHandler(":0?dialTimeout=3s", "relay://10.0.0.1:8420", fakeRouter=False)
        proto, tr = connectClient(handler)
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
        reactor.advance(3)
        self.assertTrue(tr.value().startswith(b"HTTP/1.1 504 "), tr.value())
        self.assertEqual(proto.error, "example.com:443: relay server 10.0.0.1:8420 (hop 1): timed out after 3s (dialing example.com:443); answered 504")
        self.assertClosed(tr)
