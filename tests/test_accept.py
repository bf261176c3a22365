"""
The accept layers (L{gostrelay.layering}): PROXY header -> admission ->
connection limits -> TLS / ws -> handler, and the PROXY header's wire
format (L{gostrelay.wire.proxyheader}, Twisted's parsers underneath).
"""

from __future__ import annotations

import socket
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    StandardIOEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.stdio import PipeAddress
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial import unittest

from gostrelay.build import buildServices
from gostrelay.config.model import ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.layering import AcceptFactory, HeaderFirstEndpoint, acceptStack
from gostrelay.tracking import ConnectionTable, describePeer, peerKey
from gostrelay.transports.tls import TLSServerEndpoint
from gostrelay.transports.ws import WebSocketServerEndpoint
from gostrelay.wire.proxyheader import MAX_V1, MAX_V2, HeaderReader, ProxyHeaderError, encodeHeader
from tests.support.logs import captureLogs
from tests.support.pki import isolate
from tests.support.reactor import ReactorSettler, waitUntil, withTimeout
from tests.support.targets import Collector

BALANCER = IPv4Address("TCP", "10.0.0.1", 40000)
LISTENER = IPv4Address("TCP", "10.0.0.2", 8420)
CLIENT = IPv4Address("TCP", "203.0.113.7", 51234)
SERVICE = IPv4Address("TCP", "198.51.100.1", 443)

#: HAProxy's v2 header as it sends it (recorded from "send-proxy-v2" in front
#: of a netcat: 172.19.0.1:42578 -> 172.19.0.3:80), then the client's bytes.
HAPROXY_V2 = bytes.fromhex("0d0a0d0a000d0a515549540a" "2111000c" "ac130001ac130003a6520050")
#: The specification's v1 example.
SPEC_V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"


# -- the wire format


class HeaderReaderTests(unittest.TestCase):
    def test_haproxyV2(self) -> None:
        reader = HeaderReader()
        info = reader.feed(HAPROXY_V2 + b"GET /")
        assert info is not None
        self.assertEqual((info.source.host, info.source.port), ("172.19.0.1", 42578))
        self.assertEqual((info.destination.host, info.destination.port), ("172.19.0.3", 80))
        self.assertEqual(reader.remainder, b"GET /")

    def test_specV1ByteByByte(self) -> None:
        reader = HeaderReader()
        data = SPEC_V1 + b"\x01"
        for i in range(len(SPEC_V1) - 1):
            self.assertIsNone(reader.feed(data[i : i + 1]))
        info = reader.feed(data[len(SPEC_V1) - 1 :])
        assert info is not None
        self.assertEqual((info.source.host, info.source.port), ("192.168.0.1", 56324))
        self.assertEqual(reader.remainder, b"\x01")

    def test_localAndUnknown(self) -> None:
        """
        v2 LOCAL (a balancer's health check) and v1 UNKNOWN name no
        source: the connection's own address stands.
        """
        for header in (V2Parser.PREFIX + b"\x20\x00\x00\x00", b"PROXY UNKNOWN\r\n"):
            info = HeaderReader().feed(header)
            assert info is not None
            self.assertIsNone(info.source)

    def test_refused(self) -> None:
        for data, why in [
            (b"\x05\x01\x00", "no PROXY header"),
            (b"\x01\x00\x00\x00", "no PROXY header"),
            (b"GET / HTTP/1.1\r\n", "no PROXY header"),
            (b"PROXY TCP4 1.2.3.999 1.1.1.1 1 2\r\n", "bad source address"),
            (b"PROXY TCP4 1.2.3.4 1.1.1.1 1 70000\r\n", "bad destination port"),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", "does not match its family"),
            (b"PROXY TCP5 1.2.3.4 1.1.1.1 1 2\r\n", "bad PROXY v1 header"),
            (b"PROXY TCP4 1.2.3.4\r\n", "bad PROXY v1 header"),
            (b"PROXY " + b"1" * MAX_V1, f"longer than {MAX_V1}"),
            (V2Parser.PREFIX + b"\x31\x11\x00\x0c", "version 3"),
            (V2Parser.PREFIX + b"\x21\x11\xff\xff", f"at most {MAX_V2}"),
            (V2Parser.PREFIX + b"\x21\x11\x00\x04" + b"\x01\x02\x03\x04", "bad PROXY v2 header"),
            (V2Parser.PREFIX + b"\x2f\x11\x00\x0c" + bytes(12), "bad PROXY v2 header"),
        ]:
            with self.assertRaises(ProxyHeaderError, msg=repr(data)) as cm:
                HeaderReader().feed(data)
            self.assertIn(why, str(cm.exception), repr(data))

    def test_waitsForMore(self) -> None:
        for partial in (b"PRO", b"PROXY TCP4 1.2.3.4", V2Parser.PREFIX[:5], V2Parser.PREFIX + b"\x21\x11\x00\x0c\x01"):
            self.assertIsNone(HeaderReader().feed(partial), repr(partial))


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


class EncodeTests(unittest.TestCase):
    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @example(2, ("::ffff:1.2.3.4", "::1"), 1, 2, b"")
    @example(1, ("::ffff:1.2.3.4", "::"), 1, 2, b"")
    @example(1, ("::ffff:1.2.3.4", "::ffff:1.2.3.5"), 1, 2, b"")
    @given(st.sampled_from([1, 2]), st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)), _port, _port, st.binary(max_size=8))
    def test_roundTrip(self, version: int, hosts: tuple[str, str], sport: int, dport: int, rest: bytes) -> None:
        """
        What we send, Twisted's parsers read back (and so does our reader,
        leaving the bytes after it).
        """
        make = IPv4Address if ":" not in hosts[0] else IPv6Address
        header = encodeHeader(version, make("TCP", hosts[0], sport), make("TCP", hosts[1], dport))
        parser = V1Parser() if version == 1 else V2Parser()
        info, remaining = parser.feed(header + rest)
        self.assertEqual(remaining or b"", rest)
        reader = HeaderReader()
        mine = reader.feed(header + rest)
        assert mine is not None
        import ipaddress

        def norm(host: str) -> Any:
            # IPv4-mapped IPv6 is sent as IPv4 (unless the other side is
            # IPv6); an unspecified address takes the other side's family.
            ip = ipaddress.ip_address(host)
            ip = getattr(ip, "ipv4_mapped", None) or ip
            return "unspecified" if ip.is_unspecified else ip

        for parsed in (info, mine):
            self.assertEqual(norm(parsed.source.host), norm(hosts[0]))
            self.assertEqual(norm(parsed.destination.host), norm(hosts[1]))
            self.assertEqual((parsed.source.port, parsed.destination.port), (sport, dport))
        self.assertEqual(reader.remainder, rest)

    def test_v1Text(self) -> None:
        self.assertEqual(encodeHeader(1, IPv4Address("TCP", "192.168.0.1", 56324), IPv4Address("TCP", "192.168.0.11", 443)), SPEC_V1)

    def test_v2Bytes(self) -> None:
        self.assertEqual(
            encodeHeader(2, IPv4Address("TCP", "172.19.0.1", 42578), IPv4Address("TCP", "172.19.0.3", 80)), HAPROXY_V2
        )

    def test_mixedFamilies(self) -> None:
        """
        An IPv4 client on a dual-stack socket (IPv4-mapped) is sent as
        IPv4; an unspecified destination takes the client's family; other
        mixes go as IPv6.
        """
        mapped = IPv6Address("TCP", "::ffff:192.0.2.1", 5)
        self.assertEqual(encodeHeader(1, mapped, IPv4Address("TCP", "192.0.2.2", 80)), b"PROXY TCP4 192.0.2.1 192.0.2.2 5 80\r\n")
        self.assertEqual(encodeHeader(1, IPv4Address("TCP", "192.0.2.1", 5), IPv6Address("TCP", "::", 80)), b"PROXY TCP4 192.0.2.1 0.0.0.0 5 80\r\n")
        self.assertEqual(
            encodeHeader(1, IPv4Address("TCP", "192.0.2.1", 5), IPv6Address("TCP", "2001:db8::1", 80)),
            b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 5 80\r\n",
        )

    def test_noIP(self) -> None:
        """
        A client without an IP (unix socket, stdio): v1 UNKNOWN, v2 LOCAL.
        """
        self.assertEqual(encodeHeader(1, UNIXAddress(None), LISTENER), b"PROXY UNKNOWN\r\n")
        self.assertEqual(encodeHeader(2, PipeAddress(), LISTENER), V2Parser.PREFIX + b"\x20\x00\x00\x00")
        self.assertRaises(ValueError, encodeHeader, 3, CLIENT, SERVICE)


# -- the accept layer, in memory


class App(Protocol):
    def __init__(self, addr: Any) -> None:
        self.addr = addr
        self.data = b""
        self.lostReason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason


class AppFactory(Factory):
    def __init__(self) -> None:
        self.built: list[App] = []

    def buildProtocol(self, addr: Any) -> App:
        app = App(addr)
        self.built.append(app)
        return app


class AcceptLayerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.app = AppFactory()
        self.logs = captureLogs(self)

    def factory(self, proxyHeader: bool = True, **kwargs: Any) -> AcceptFactory:
        admission = kwargs.pop("admission", None)
        table = ConnectionTable("svc", self.clock, **kwargs)
        return AcceptFactory(self.app, table, self.clock, proxyHeader=proxyHeader, admission=admission)

    def accept(self, factory: AcceptFactory, peer: Any = BALANCER) -> tuple[Any, StringTransport]:
        protocol = factory.buildProtocol(peer)
        transport = StringTransport(hostAddress=LISTENER, peerAddress=peer)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def test_realAddressBeforeBuild(self) -> None:
        """
        The layers above are built only once the header has arrived, with
        the client's address; C{getPeer}/C{getHost} name the client and
        the address it connected to; its first bytes follow.
        """
        factory = self.factory()
        protocol, transport = self.accept(factory)
        self.assertEqual(self.app.built, [], "nothing is built before the header")
        header = encodeHeader(2, CLIENT, SERVICE)
        protocol.dataReceived(header[:7])
        self.assertEqual(self.app.built, [])
        protocol.dataReceived(header[7:] + b"hello")
        (app,) = self.app.built
        self.assertEqual(app.addr, CLIENT)
        self.assertEqual(app.transport.getPeer(), CLIENT)
        self.assertEqual(app.transport.getHost(), SERVICE)
        self.assertEqual(app.data, b"hello")
        protocol.dataReceived(b" world")
        self.assertEqual(app.data, b"hello world")
        self.assertEqual(factory.table.perIP, {"203.0.113.7": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [], "the header timer is gone")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(app.lostReason)
        self.assertEqual(factory.table.perIP, {})

    def test_tcpTransport(self) -> None:
        """
        Over a TCP transport the accept layer is one for the layers above
        (TLS turns Nagle off through it).
        """
        from twisted.internet.interfaces import ITCPTransport
        from zope.interface import directlyProvides

        factory = self.factory(proxyHeader=False)
        protocol = factory.buildProtocol(CLIENT)
        transport = StringTransport(hostAddress=LISTENER, peerAddress=CLIENT)
        directlyProvides(transport, ITCPTransport)
        transport.setTcpNoDelay = lambda on: setattr(transport, "noDelay", on)  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        self.assertTrue(ITCPTransport.providedBy(protocol))
        protocol.setTcpNoDelay(True)
        self.assertTrue(transport.noDelay)  # type: ignore[attr-defined]

    def test_oneWrapperOverTheHandler(self) -> None:
        """
        With no TLS or WebSocket layer between, the accept wrapper is the
        handler's transport and does the metrics wrapper's job (start and
        end of each request, the handler's error), with or without a PROXY
        header: one wrapper per connection, not two.
        """
        from gostrelay.tracking import ServiceFactory

        calls: list[tuple[str, Any, Any]] = []

        class Recording(ServiceFactory):
            def started(self, protocol: Any) -> None:
                calls.append(("started", protocol, None))

            def ended(self, protocol: Any, error: Any) -> None:
                calls.append(("ended", protocol, error))

        for proxyHeader in (False, True):
            del calls[:]
            service = Recording(self.app, "svc", self.clock)
            factory = AcceptFactory(service, ConnectionTable("svc", self.clock), self.clock, proxyHeader=proxyHeader)
            protocol, transport = self.accept(factory, CLIENT)
            if proxyHeader:
                protocol.dataReceived(encodeHeader(2, CLIENT, SERVICE))
            app = self.app.built[-1]
            self.assertIs(app.transport, protocol)
            self.assertEqual(calls, [("started", protocol, None)])
            app.error = "refused"  # type: ignore[attr-defined]
            protocol.connectionLost(Failure(ConnectionDone()))
            self.assertEqual(calls, [("started", protocol, None), ("ended", protocol, "refused")])
            self.assertEqual(factory.table.open, {})

    def test_localHeader(self) -> None:
        """
        A v2 LOCAL header (the balancer's own health check) leaves the
        connection's own addresses.
        """
        protocol, _ = self.accept(self.factory())
        protocol.dataReceived(encodeHeader(2, None, None))
        (app,) = self.app.built
        self.assertEqual(app.addr, BALANCER)
        self.assertEqual(app.transport.getHost(), LISTENER)

    def test_noHeader(self) -> None:
        """
        A client that does not start with a header is closed at once, one
        line naming it and why; nothing above is built.
        """
        factory = self.factory()
        protocol, transport = self.accept(factory)
        protocol.dataReceived(b"\x01\x00\x00\x00\x00")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.app.built, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        lines = [t for t in self.logs.lines if "svc:" in t]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("connection from 10.0.0.1:40000 closed: no PROXY header", lines[0])
        protocol.dataReceived(b"more")  # after the refusal: ignored
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.protocols, {})

    def test_headerTimeout(self) -> None:
        factory = self.factory()
        protocol, transport = self.accept(factory)
        protocol.dataReceived(b"PROXY TCP4")
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertIn("no PROXY header within 10s", self.logs.text)
        self.assertEqual(self.app.built, [])

    def test_limitsSeeTheClient(self) -> None:
        """
        maxConnsPerIP counts the clients the headers name, not the
        balancer every connection comes from; the refusal names the
        client's address and port.
        """
        factory = self.factory(maxConnsPerIP=1)
        first, _ = self.accept(factory)
        first.dataReceived(encodeHeader(1, CLIENT, SERVICE))
        other, _ = self.accept(factory)
        other.dataReceived(encodeHeader(1, IPv4Address("TCP", "203.0.113.8", 1), SERVICE))
        self.assertEqual(len(self.app.built), 2)
        again, transport = self.accept(factory)
        again.dataReceived(encodeHeader(1, IPv4Address("TCP", "203.0.113.7", 60000), SERVICE) + b"x")
        self.assertEqual(len(self.app.built), 2)
        self.assertTrue(transport.disconnecting)
        self.assertIn(
            "svc: connection from 203.0.113.7:60000 refused: limit of 1 connections from 203.0.113.7 (maxConnsPerIP) reached",
            self.logs.text,
        )
        again.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.table.perIP, {"203.0.113.7": 1, "203.0.113.8": 1})

    def test_admissionFirst(self) -> None:
        """
        The admission hook sees the client's address before the limits;
        a refused client holds no slot.
        """
        seen: list[Any] = []

        def admission(peer: Any) -> str | None:
            seen.append(peer)
            return "denied by admission" if peer.host == "203.0.113.66" else None

        factory = self.factory(maxConns=1, admission=admission)
        refused, transport = self.accept(factory)
        refused.dataReceived(encodeHeader(1, IPv4Address("TCP", "203.0.113.66", 9), SERVICE))
        self.assertTrue(transport.disconnecting)
        self.assertIn("connection from 203.0.113.66:9 refused: denied by admission", self.logs.text)
        admitted, _ = self.accept(factory)
        admitted.dataReceived(encodeHeader(1, CLIENT, SERVICE))
        self.assertEqual([p.host for p in seen], ["203.0.113.66", "203.0.113.7"])
        self.assertEqual(len(self.app.built), 1)

    def test_withoutHeaderRefusedHasNoProtocol(self) -> None:
        """
        Without a PROXY header, a refusal returns no protocol to the port
        (which closes the socket) -- nothing above is built, no TLS.
        """
        from twisted.internet.ssl import CertificateOptions

        tls = TLSMemoryBIOFactory(CertificateOptions(), False, self.app)
        table = ConnectionTable("svc", self.clock, maxConnsPerIP=1)
        factory = AcceptFactory(tls, table, self.clock)
        self.assertIsNotNone(factory.buildProtocol(CLIENT))
        self.assertIsNone(factory.buildProtocol(CLIENT))
        self.assertEqual(table.refused, 1)

    def test_refusedUnderAnotherLayer(self) -> None:
        """
        Not at a socket port (stdio, an endpoint we cannot take apart), a
        refused connection still gets a protocol, which closes it at once.
        """
        table = ConnectionTable("svc", self.clock, maxConns=1)
        factory = AcceptFactory(self.app, table, self.clock, outermost=False)
        self.accept(factory)
        protocol, transport = self.accept(factory)
        self.assertIsNotNone(protocol)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.app.built), 1)

    def test_drainClosesPendingHeaders(self) -> None:
        factory = self.factory()
        _, transport = self.accept(factory)
        d = factory.drain(5)
        self.assertTrue(transport.disconnecting)
        self.successResultOf(d)


class PeerKeyTests(unittest.TestCase):
    def test_keys(self) -> None:
        self.assertEqual(peerKey(CLIENT), "203.0.113.7")
        self.assertEqual(peerKey(IPv6Address("TCP", "::ffff:192.0.2.1", 1)), "192.0.2.1")
        self.assertEqual(peerKey(UNIXAddress(None)), "unix")
        self.assertEqual(peerKey(UNIXAddress(b"")), "unix")
        self.assertEqual(peerKey(PipeAddress()), "stdio")
        self.assertEqual(describePeer(UNIXAddress(None)), "unix")
        self.assertEqual(describePeer(UNIXAddress(b"/run/c.sock")), "unix:/run/c.sock")
        self.assertEqual(describePeer(PipeAddress()), "stdio")
        self.assertEqual(describePeer(IPv6Address("TCP", "2001:db8::1", 5)), "[2001:db8::1]:5")

    def test_unixPeersShareOneKey(self) -> None:
        clock = Clock()
        table = ConnectionTable("svc", clock, maxConnsPerIP=1)
        factory = AcceptFactory(AppFactory(), table, clock)
        self.assertIsNotNone(factory.buildProtocol(UNIXAddress(None)))
        self.assertIsNone(factory.buildProtocol(UNIXAddress(None)))
        self.assertEqual(table.perIP, {"unix": 1})


class AcceptStackTests(unittest.TestCase):
    """
    Endpoints are taken apart so that the accept layer runs below TLS and
    WebSocket, and Twisted's C{haproxy:} means a required header.
    """

    def setUp(self) -> None:
        isolate(self)

    def test_haproxyPrefix(self) -> None:
        stack = acceptStack(serverFromString(MemoryReactorClock(), "haproxy:tcp:8420:interface=127.0.0.1"))
        self.assertTrue(stack.proxyHeader)
        self.assertTrue(stack.outermost)
        self.assertIsInstance(stack.socket, TCP4ServerEndpoint)
        self.assertEqual(stack.layers, [])

    def test_systemd(self) -> None:
        stack = acceptStack(AdoptedStreamServerEndpoint(MemoryReactorClock(), 3, socket.AF_INET))
        self.assertTrue(stack.outermost)
        self.assertFalse(stack.proxyHeader)

    def test_stdio(self) -> None:
        stack = acceptStack(StandardIOEndpoint(MemoryReactorClock()))
        self.assertFalse(stack.outermost, "stdio's endpoint cannot take a None protocol")

    def test_wssOverHAProxy(self) -> None:
        """
        wss over haproxy: socket, then the header, then TLS, then the
        WebSocket upgrade, whatever the nesting.
        """
        from gostrelay.transports.tls import serverContextFactory

        inner = serverFromString(MemoryReactorClock(), "haproxy:tcp:8443")
        endpoint = WebSocketServerEndpoint(TLSServerEndpoint(inner, serverContextFactory(None, "test")), "/p")
        stack = acceptStack(endpoint)
        self.assertTrue(stack.proxyHeader)
        wrapped = stack.wrap(AppFactory())
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertEqual(wrapped.wrappedFactory.path, "/p")

    def test_twistedSSL(self) -> None:
        from gostrelay.transports.tls import generateCertificate

        certificate, key = generateCertificate()
        with open("key.pem", "wb") as f:
            f.write(certificate + key)
        stack = acceptStack(serverFromString(MemoryReactorClock(), "ssl:8443:privateKey=key.pem"))
        self.assertIsInstance(stack.socket, TCP4ServerEndpoint)
        self.assertIsInstance(stack.wrap(AppFactory()), TLSMemoryBIOFactory)


class ConfigTests(unittest.TestCase):
    def build(self, *urls: str) -> Any:
        return buildServices(MemoryReactorClock(), buildConfigFromCommandLine(list(urls), []))

    def test_receivingNeedsAStreamListener(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.build("udp://:5353/127.0.0.1:53?proxyProtocol=1")
        self.assertIn("proxyProtocol", str(cm.exception))
        self.assertIn("handler.proxyProtocol", str(cm.exception))

    def test_versions(self) -> None:
        self.assertRaises(ConfigError, self.build, "relay://:8420?proxyProtocol=3")
        self.assertRaises(ConfigError, self.build, "tcp://:8080/127.0.0.1:80?handler.proxyProtocol=3")
        with self.assertRaises(ConfigError) as cm:
            self.build("relay://:8420?handler.proxyProtocol=1")
        self.assertIn("tcp and rtcp forwarders", str(cm.exception))

    def test_accepted(self) -> None:
        for url in ("relay://127.0.0.1:0?proxyProtocol=1", "relay+tls://127.0.0.1:0?proxyProtocol=2",
                    "relay+wss://127.0.0.1:0?proxyProtocol=2", "tcp://127.0.0.1:0/127.0.0.1:80?handler.proxyProtocol=1"):
            isolate(self)
            (svc,) = list(self.build(url))
            self.assertEqual(svc.handler.proxyHeader, "handler." not in url, url)


class HeaderFirstEndpointTests(unittest.TestCase):
    def test_headerBeforeTheProtocol(self) -> None:
        """
        The header is on the wire before the protocol's first write, and
        the caller gets its own protocol back.
        """
        memory = MemoryReactorClock()
        endpoint = HeaderFirstEndpoint(TCP4ClientEndpoint(memory, "127.0.0.1", 8420), b"PROXY UNKNOWN\r\n")

        class Greeter(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"hello")  # type: ignore[union-attr]

        d = connectProtocol(endpoint, Greeter())
        factory = memory.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"PROXY UNKNOWN\r\nhello")
        self.assertIsInstance(self.successResultOf(d), Greeter)


# -- on real sockets


class TLSLimitTests(unittest.TestCase):
    """
    Issue 19.5: on a tls listener, a connection over maxConnsPerIP is
    closed before any TLS byte, with one log line and no traceback.
    """

    timeout = 30

    def setUp(self) -> None:
        isolate(self)
        self.addCleanup(ReactorSettler().settle)

    @defer.inlineCallbacks
    def test_refusedBeforeHandshake(self):  # type: ignore[no-untyped-def]
        logs = captureLogs(self)
        top = buildServices(reactor, buildConfigFromCommandLine(["relay+tls://127.0.0.1:0?maxConnsPerIP=1"], []))
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        yield svc.listening
        port = svc.port.getHost().port
        holder = Collector()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), holder)
        self.addCleanup(lambda: holder.lost or holder.transport.abortConnection())
        yield waitUntil(lambda: svc.handler.table.open, 5, "the first connection admitted")
        # A TLS ClientHello-like first flight: the server must answer nothing.
        refused = Collector(b"\x16\x03\x01\x00\x05hello", expect=0)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), refused)
        yield withTimeout(refused.done, 5, "the refused connection closed")
        self.assertEqual(bytes(refused.data), b"", "no TLS byte from the server")
        text = logs.text
        self.assertEqual(text.count("refused: limit of 1 connections from 127.0.0.1 (maxConnsPerIP) reached"), 1, text)
        self.assertNotIn("Unhandled", text)
        self.assertNotIn("Traceback", text)
        self.assertFalse([e for e in logs.events if e.get("log_failure") is not None], "no failure logged")
        holder.transport.loseConnection()
        yield holder.done

    @defer.inlineCallbacks
    def test_rateRefusedBeforeHandshake(self):  # type: ignore[no-untyped-def]
        """
        GOST's rlimiter is checked with the connection limits: over the
        rate, a tls connection is closed before any TLS byte too.
        """
        logs = captureLogs(self)
        top = buildServices(reactor, buildConfigFromCommandLine(["relay+tls://127.0.0.1:0?rlimiter=1"], []))
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        yield svc.listening
        port = svc.port.getHost().port
        clients = []
        for _ in range(3):  # a burst of int(1)+1 = 2, then one over
            client = Collector(b"\x16\x03\x01\x00\x05hello", expect=0)
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
            self.addCleanup(lambda c=client: c.lost or c.transport.abortConnection())
            clients.append(client)
        yield withTimeout(clients[2].done, 5, "the connection over the rate closed")
        self.assertEqual(bytes(clients[2].data), b"", "no TLS byte from the server")
        text = logs.text
        self.assertIn("refused: request rate limit (rlimiter)", text)
        self.assertNotIn("Unhandled", text)
        for client in clients[:2]:
            if not client.lost:
                client.transport.loseConnection()
                yield client.done


class HalfCloseTests(unittest.TestCase):
    """
    A client's read EOF through the accept layer reaches the layer above
    only when that layer really takes it (issue 17: on every TLS and wss
    listener a client that closed without a TLS close_notify -- a killed
    curl, many non-Twisted clients -- sent the accept layer into endless
    recursion, logged as a thousand-frame traceback, because Twisted's TLS
    protocol copies the accept layer's IHalfCloseableProtocol and finds
    its readConnectionLost on it again).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.app = AppFactory()

    def accepted(self, above: Any) -> tuple[Any, StringTransport]:
        factory = AcceptFactory(above, ConnectionTable("svc", self.clock), self.clock, proxyHeader=False)
        protocol = factory.buildProtocol(CLIENT)
        transport = StringTransport(hostAddress=LISTENER, peerAddress=CLIENT)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_tlsAboveReadEOF(self) -> None:
        from twisted.internet.interfaces import IHalfCloseableProtocol
        from twisted.internet.ssl import CertificateOptions

        protocol, transport = self.accepted(TLSMemoryBIOFactory(CertificateOptions(), False, self.app))
        tls = protocol.wrappedProtocol
        self.assertTrue(IHalfCloseableProtocol.providedBy(tls), "the TLS layer copies the declaration")
        for method in ("readConnectionLost", "writeConnectionLost"):
            getattr(protocol, method)()  # no RecursionError
        self.assertTrue(transport.disconnecting, "a read EOF under TLS closes, as Twisted's TCP would")

    def test_wrapperAboveThatTakesIt(self) -> None:
        """
        The traffic limiter (a ProtocolWrapper too) over the accept layer
        hands the read EOF to a handler that takes half-close: the client
        that shut down its sending side still gets its answer.
        """
        from twisted.internet.interfaces import IHalfCloseableProtocol
        from zope.interface import implementer

        from gostrelay.limiter import LimitedFactory, TrafficLimits

        eofs: list[str] = []

        @implementer(IHalfCloseableProtocol)
        class HalfClosing(App):
            def readConnectionLost(self) -> None:
                eofs.append("read")

            def writeConnectionLost(self) -> None:
                eofs.append("write")

        class HalfClosingFactory(AppFactory):
            def buildProtocol(self, addr: Any) -> App:
                app = HalfClosing(addr)
                self.built.append(app)
                return app

        limited = LimitedFactory(HalfClosingFactory(), "svc", self.clock, TrafficLimits(self.clock, ["$ 1MB"]))
        protocol, transport = self.accepted(limited)
        protocol.readConnectionLost()
        protocol.writeConnectionLost()
        self.assertEqual(eofs, ["read", "write"])
        self.assertFalse(transport.disconnecting, "the handler decides when to close")


class PassThroughDeclarationTests(unittest.TestCase):
    """
    A wrapper's interface declarations are its class's, never its
    transport's (L{gostrelay.tracking.PassThroughWrapper}).  A shared base
    without this (e726e42, reverted) made the accept layer over an rtcp
    stream report the stream's interfaces: no C{IHalfCloseableProtocol},
    so the stream turned a visitor's FIN into a full close and the bytes
    of short-lived visitors were lost (test_integration_remote's
    test_shortLivedPeers: 2 of 20 delivered).
    """

    def test_subclassOverAStream(self) -> None:
        """
        Over a transport that is not TCP (an smux stream declares
        ITransport, IPushProducer, IConsumer: so does StringTransport), an
        accept-side wrapper of a subclass that never had zope compute its
        declaration (a fresh one, as AcceptProtocol is in a fresh process)
        still says it takes half-close, and the stream's EOF reaches the
        handler as a read EOF.
        """
        from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocol
        from zope.interface import implementer, providedBy

        from gostrelay.layering import AcceptProtocol

        eofs: list[str] = []

        @implementer(IHalfCloseableProtocol)
        class Handler(App):
            def readConnectionLost(self) -> None:
                eofs.append("read")

            def writeConnectionLost(self) -> None:
                eofs.append("write")

        class Fresh(AcceptProtocol):
            pass

        clock = Clock()
        factory = AcceptFactory(AppFactory(), ConnectionTable("svc", clock), clock)
        stream = StringTransport(hostAddress=LISTENER, peerAddress=CLIENT)
        self.assertFalse(IHalfCloseableProtocol.providedBy(stream))
        protocol = Fresh(factory, Handler(CLIENT))
        protocol.makeConnection(stream)
        declared = list(providedBy(protocol))
        self.assertIn(IHalfCloseableProtocol, declared)
        self.assertIn(IProtocol, declared)
        # What the smux stream does with a FIN (gostrelay.mux):
        if IHalfCloseableProtocol.providedBy(protocol):
            protocol.readConnectionLost()
        else:
            stream.loseConnection()
        self.assertEqual(eofs, ["read"])
        self.assertFalse(stream.disconnecting, "the handler decides when to close")

    def test_attributesStillForwarded(self) -> None:
        """
        Ordinary attributes still come from the transport (a TCP
        transport's C{setTcpNoDelay}, C{getHandle}); dunder names do not.
        """
        from gostrelay.tracking import PassThroughWrapper

        transport = StringTransport()
        transport.getHandle = lambda: "handle"  # type: ignore[attr-defined]
        transport.__secret__ = "transport's"  # type: ignore[attr-defined]
        wrapper = PassThroughWrapper(AppFactory(), App(None))  # type: ignore[arg-type]
        wrapper.transport = transport
        self.assertEqual(wrapper.getHandle(), "handle")
        self.assertRaises(AttributeError, getattr, wrapper, "__secret__")


class SpliceCarrierTests(unittest.TestCase):
    def test_notThroughTLS(self) -> None:
        """
        A TLS protocol forwards unknown attributes to its transport; the
        accept layer's C{spliceCarrier} under it must not become the TLS
        layer's (splice would move ciphertext to the handler's peer).
        """
        from twisted.internet.ssl import CertificateOptions
        from twisted.protocols.tls import TLSMemoryBIOProtocol

        from gostrelay.splice import spliceCarrierOf

        class Under:
            def spliceCarrier(self) -> str:
                return "the raw socket"

        tls = TLSMemoryBIOProtocol(TLSMemoryBIOFactory(CertificateOptions(), False, AppFactory()), App(None))
        tls.transport = Under()  # type: ignore[assignment]
        self.assertEqual(tls.spliceCarrier(), "the raw socket", "TLS forwards the attribute")
        self.assertIsNone(spliceCarrierOf(tls))
        self.assertEqual(spliceCarrierOf(Under())(), "the raw socket")


class StdioTests(unittest.TestCase):
    """
    C{--listen stdio:}: standard output carries the relay's bytes only;
    the logs (naming the peer C{stdio}) go to standard error.
    """

    timeout = 30

    def setUp(self) -> None:
        self.addCleanup(ReactorSettler().settle)

    @defer.inlineCallbacks
    def test_logsOffStandardOutput(self):  # type: ignore[no-untyped-def]
        import os

        from twisted.internet.protocol import ProcessProtocol

        from gostrelay.wire.relay import connectRequest
        from tests.processes import CONSOLE, childEnvironment
        from tests.support.targets import EchoFactory

        echo = EchoFactory()
        port = reactor.listenTCP(0, echo, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)

        class Child(ProcessProtocol):
            def __init__(self) -> None:
                self.out = b""
                self.err = b""
                self.ended: defer.Deferred[None] = defer.Deferred()

            def outReceived(self, data: bytes) -> None:
                self.out += data

            def errReceived(self, data: bytes) -> None:
                self.err += data

            def processEnded(self, reason: Failure) -> None:
                self.ended.callback(None)

        child = Child()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            child, CONSOLE[0], [*CONSOLE, "--listen", "stdio:"], env=childEnvironment(home=directory), path=directory
        )

        def stop() -> Any:
            if not child.ended.called:
                process.signalProcess("KILL")
            return child.ended

        self.addCleanup(stop)
        request = connectRequest(f"127.0.0.1:{port.getHost().port}", "tcp").encode()
        process.write(request + b"ping")
        yield waitUntil(lambda: len(child.out) >= 8 or child.ended.called, 20, "the echo on standard output")
        self.assertEqual(child.out, b"\x01\x00\x00\x00ping", child.err.decode(errors="replace"))
        yield waitUntil(lambda: b"stdio CONNECT" in child.err or child.ended.called, 10, "the log line on standard error")
        self.assertIn(b"stdio CONNECT", child.err)
        process.signalProcess("TERM")
        yield withTimeout(child.ended, 10, "the child ends on TERM")
        self.assertEqual(child.out, b"\x01\x00\x00\x00ping", "nothing but the relay's bytes on standard output")
        err = child.err.decode(errors="replace")
        self.assertIn("listening on stdio", err)
        self.assertNotIn("Traceback", err, "a stop closes standard I/O (it has no stopListening)")
