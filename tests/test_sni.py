"""
TLS by SNI on the local entry (C{auto}, and GOST's C{sni} handler): the
ClientHello parser (L{gostrelay.wire.tlshello}) on real ClientHellos from
Python's TLS stack and on hypothesis-cut bytes; the entry dialing the name
(port 443) with the ClientHello forwarded untouched, the bypass applied to
the name; and a real TLS client through an entry and a relay chain.
"""

from __future__ import annotations

import ssl
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.build import BuildContext, buildServices
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.wire.tlshello import MAX_HELLO_BYTES, TLSHelloError, serverName
from tests.support.fakes import RecordingTransport
from tests.support.pki import PKI
from tests.support.targets import EchoFactory


def clientHello(name: str | None) -> bytes:
    """
    The ClientHello Python's TLS client sends for C{name}.
    """
    context = ssl.create_default_context()
    if name is None:
        context.check_hostname = False
    out = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


#: One ClientHello for the hypothesis tests (made once: a TLS context per
#: example would be slow and make the examples' timing unreliable).
_HELLO = clientHello("a.example")


class ParserTests(SynchronousTestCase):
    def test_realHello(self) -> None:
        hello = clientHello("example.com")
        self.assertEqual(serverName(hello), "example.com")
        self.assertEqual(serverName(hello + b"more records"), "example.com")

    def test_noName(self) -> None:
        self.assertEqual(serverName(clientHello(None)), "")

    @given(st.integers(0, 600))
    def test_incomplete(self, cut: int) -> None:
        hello = _HELLO
        if cut < len(hello):
            self.assertIsNone(serverName(hello[:cut]))

    @given(st.binary(max_size=300))
    def test_garbageNeverCrashes(self, tail: bytes) -> None:
        """
        Anything after a handshake record header is a name, None or
        L{TLSHelloError}: never another exception.
        """
        data = b"\x16\x03\x01" + len(tail).to_bytes(2, "big") + tail
        try:
            serverName(data)
        except TLSHelloError:
            pass

    def test_notTLS(self) -> None:
        self.assertRaises(TLSHelloError, serverName, b"GET / HTTP/1.1\r\n")
        self.assertRaises(TLSHelloError, serverName, b"\x16\x03\x01\xff\xff")
        self.assertLessEqual(len(clientHello("x.example")), MAX_HELLO_BYTES)


class _Dial:
    def __init__(self, address: str, factory: Any) -> None:
        self.address = address
        self.factory = factory
        self.deferred: defer.Deferred[Any] = defer.Deferred()

    def accept(self) -> RecordingTransport:
        proto = self.factory.buildProtocol(None)
        tr = RecordingTransport(hostAddress=IPv4Address("TCP", "10.1.1.1", 4000), peerAddress=IPv4Address("TCP", "10.2.2.2", 443))
        proto.makeConnection(tr)
        self.deferred.callback(proto)
        return tr


class _Router:
    def __init__(self) -> None:
        self.dials: list[_Dial] = []

    def connect(self, network: str, address: str, factory: Any, **kwargs: Any) -> defer.Deferred[Any]:
        self.dials.append(_Dial(address, factory))
        return self.dials[-1].deferred


def entry(url: str) -> tuple[Any, _Router]:
    from gostrelay import registry

    clock = MemoryReactorClock()
    config = buildConfigFromCommandLine([url], [])
    svc = config.services[0]
    handler = registry.lookup("handler", svc.handler.type).load()(clock, svc, BuildContext(clock, config))
    handler.options.router = router = _Router()
    return handler, router


def client(handler: Any) -> tuple[Any, RecordingTransport]:
    proto = handler.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    tr = RecordingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555), hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
    proto.makeConnection(tr)
    return proto, tr


class EntryTests(SynchronousTestCase):
    def test_autoForwardsByName(self) -> None:
        """
        The auto entry dials the ClientHello's name on port 443 and passes
        the ClientHello on untouched, then pipes; nothing is answered.
        """
        handler, router = entry(":0")
        proto, tr = client(handler)
        hello = clientHello("www.example.com")
        proto.dataReceived(hello[:20])
        self.assertEqual(router.dials, [])
        proto.dataReceived(hello[20:])
        (dial,) = router.dials
        self.assertEqual(dial.address, "www.example.com:443")
        upstream = dial.accept()
        self.assertEqual(upstream.value(), hello)
        self.assertEqual(tr.value(), b"")
        proto.dataReceived(b"\x17\x03\x03\x00\x01x")
        self.assertEqual(upstream.value(), hello + b"\x17\x03\x03\x00\x01x")

    def test_sniHandler(self) -> None:
        """
        GOST's C{sni} handler: TLS by name, HTTP by Host (port 80).
        """
        handler, router = entry("sni://:0")
        proto, _tr = client(handler)
        proto.dataReceived(clientHello("tls.example"))
        proto2, _tr2 = client(handler)
        proto2.dataReceived(b"GET /x HTTP/1.1\r\nHost: plain.example\r\n\r\n")
        self.assertEqual([d.address for d in router.dials], ["tls.example:443", "plain.example:80"])

    def test_bypassOnTheName(self) -> None:
        """
        The service bypass is applied to the name: closed without a byte,
        nothing dialed.
        """
        handler, router = entry(":0?bypass=*.blocked.example")
        proto, tr = client(handler)
        proto.dataReceived(clientHello("www.blocked.example"))
        self.assertEqual(router.dials, [])
        self.assertEqual(tr.value(), b"")
        self.assertTrue(tr.disconnecting)

    def test_noNameOrGarbageClosed(self) -> None:
        handler, router = entry(":0")
        for data in (clientHello(None), b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"):
            proto, tr = client(handler)
            proto.dataReceived(data)
            self.assertTrue(tr.disconnecting)
            self.assertEqual(tr.value(), b"")
        self.assertEqual(router.dials, [])


class _Client(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"hello over TLS")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= len(b"hello over TLS") and not self.done.called:
            self.done.callback(self.data)
            self.transport.loseConnection()  # type: ignore[union-attr]


class ThroughChainTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_tlsClientThroughAutoEntryAndRelay(self):  # type: ignore[no-untyped-def]
        """
        A real TLS client (SNI C{localhost}) to C{-L :0 -F relay://R}; the
        relay server R is in forward mode to a TLS echo server (standing in
        for localhost:443): the handshake and the echo work end to end, and
        the entry logs the name it forwarded to.
        """
        from twisted.internet import ssl as tssl
        from twisted.logger import formatEvent, globalLogPublisher

        pki = PKI(self.mktemp())
        certFile, keyFile = pki.server
        with open(certFile, "rb") as f:
            cert = f.read()
        with open(keyFile, "rb") as f:
            key = f.read()
        with open(pki.ca.certFile, "rb") as f:
            caCert = tssl.Certificate.loadPEM(f.read())
        serverOptions = tssl.PrivateCertificate.loadPEM(cert + key).options()
        server = reactor.listenSSL(0, EchoFactory(), serverOptions, interface="127.0.0.1")
        self.addCleanup(server.stopListening)
        relayTop = buildServices(reactor, buildConfigFromCommandLine([f"relay://127.0.0.1:0/127.0.0.1:{server.getHost().port}"], []))
        relayTop.startService()
        self.addCleanup(relayTop.stopService)
        (relay,) = list(relayTop)
        yield relay.listening
        entryTop = buildServices(reactor, buildConfigFromCommandLine(["127.0.0.1:0"], [f"relay://127.0.0.1:{relay.port.getHost().port}"]))
        entryTop.startService()
        self.addCleanup(entryTop.stopService)
        (svc,) = list(entryTop)
        yield svc.listening
        lines: list[str] = []
        observer = lambda e: lines.append(formatEvent(e))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        options = tssl.optionsForClientTLS("localhost", trustRoot=caCert)
        from twisted.internet.endpoints import wrapClientTLS

        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", svc.port.getHost().port))
        proto = _Client()
        yield connectProtocol(endpoint, proto)
        got = yield proto.done
        self.assertEqual(got, b"hello over TLS")
        self.assertTrue([line for line in lines if "localhost:443" in line and "connected" in line], lines)
