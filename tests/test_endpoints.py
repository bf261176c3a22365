"""
The endpoint strings of twisted/plugins/gostrelay_endpoints.py (C{relay:},
C{gosttls:}, C{ws:}/C{wss:} client and server) and
L{gostrelay.endpoints.chainEndpoint} with tls/ws/wss nodes, against
in-process services over real sockets on 127.0.0.1.

Endpoint descriptions nest: each level of nesting escapes C{:}, C{=} and
C{\\} once more (L{escape}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint, clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory

from gostrelay.config.model import ConfigError, TLSConfig
from gostrelay.endpoints import chainEndpoint
from gostrelay.transports.tls import generateCertificate, serverContextFactory
from tests.support.cases import MIB, TransportTestCase
from tests.support.pki import PKI, isolate
from tests.support.reactor import waitUntil, withTimeout
from tests.support.targets import EchoFactory
from tests.support.websocket import App, AppFactory, RawServerFactory, header


def escape(description: str) -> str:
    """
    C{description} as one argument of an enclosing endpoint string.
    """
    return description.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class EscapeTests(TransportTestCase):
    def test_escapeMatchesTheDocumentedForm(self) -> None:
        """
        The helper gives the brief's literal form for relay over ws.
        """
        inner = "tcp:127.0.0.1:12390"
        self.assertEqual(
            f"relay:{escape('ws:' + escape(inner))}:host=127.0.0.1:port=9901",
            r"relay:ws\:tcp\\\:127.0.0.1\\\:12390:host=127.0.0.1:port=9901",
        )


class RelayEndpointStringTests(TransportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)

    @defer.inlineCallbacks
    def test_relayOverTCP(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay://127.0.0.1:0")
        ep = clientFromString(reactor, rf"relay:tcp\:127.0.0.1\:{port}:host=127.0.0.1:port={echoPort}")
        payload = os.urandom(MIB)
        client = yield self.exchange(ep, payload)
        self.assertEchoed(client, payload)
        self.assertEqual(len(echo.accepted), 1)

    def test_relayNeedsTarget(self) -> None:
        self.assertRaises(ValueError, clientFromString, reactor, r"relay:tcp\:127.0.0.1\:1:host=127.0.0.1")

    @defer.inlineCallbacks
    def test_relayOverWS(self):  # type: ignore[no-untyped-def]
        """
        The literal doubly-escaped form: relay: over ws: over tcp:.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+ws://127.0.0.1:0")
        ep = clientFromString(reactor, rf"relay:ws\:tcp\\\:127.0.0.1\\\:{port}:host=127.0.0.1:port={echoPort}")
        payload = os.urandom(300000)
        client = yield self.exchange(ep, payload)
        self.assertEchoed(client, payload)

    @defer.inlineCallbacks
    def test_relayOverWSWithPath(self):  # type: ignore[no-untyped-def]
        """
        ws: options inside the nested description (path=/x), built with
        escape(); the wrong path gets nothing through.
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+ws://127.0.0.1:0?path=/x")
        ws = f"ws:{escape(f'tcp:127.0.0.1:{port}')}:path=/x"
        ep = clientFromString(reactor, f"relay:{escape(ws)}:host=127.0.0.1:port={echoPort}")
        client = yield self.exchange(ep, b"through /x")
        self.assertEchoed(client, b"through /x")

        wrong = f"ws:{escape(f'tcp:127.0.0.1:{port}')}:path=/y"
        ep = clientFromString(reactor, f"relay:{escape(wrong)}:host=127.0.0.1:port={echoPort}")
        client = yield self.exchange(ep, b"through /y")
        self.assertEqual(bytes(client.data), b"")
        self.assertEqual(len(echo.accepted), 1)

    @defer.inlineCallbacks
    def test_relayOverWSS(self):  # type: ignore[no-untyped-def]
        """
        relay: over wss: with the server's default certificate (no
        verification by default).
        """
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+wss://127.0.0.1:0")
        ep = clientFromString(reactor, rf"relay:wss\:tcp\\\:127.0.0.1\\\:{port}:host=127.0.0.1:port={echoPort}")
        client = yield self.exchange(ep, b"over wss")
        self.assertEchoed(client, b"over wss")

    @defer.inlineCallbacks
    def test_relayOverGostTLS(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+tls://127.0.0.1:0")
        ep = clientFromString(reactor, rf"relay:gosttls\:tcp\\\:127.0.0.1\\\:{port}:host=127.0.0.1:port={echoPort}")
        client = yield self.exchange(ep, b"over tls")
        self.assertEchoed(client, b"over tls")

    @defer.inlineCallbacks
    def test_twoRelayHopsOverWS(self):  # type: ignore[no-untyped-def]
        """
        relay: over (relay: over ws:) — hop 2's connection is a relay
        CONNECT through hop 1, which runs over WebSocket.
        """
        echo, echoPort = self.startEcho()
        svc1, p1 = yield self.startService("relay+ws://127.0.0.1:0")
        svc2, p2 = yield self.startService("relay://127.0.0.1:0")
        hop1 = f"relay:{escape('ws:' + escape(f'tcp:127.0.0.1:{p1}'))}:host=127.0.0.1:port={p2}"
        ep = clientFromString(reactor, f"relay:{escape(hop1)}:host=127.0.0.1:port={echoPort}")
        payload = os.urandom(200000)
        client = yield self.exchange(ep, payload)
        self.assertEchoed(client, payload)


class GostTLSEndpointTests(TransportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)
        self.pki = PKI(self.mktemp())

    def startTLSEcho(self, tls: TLSConfig) -> tuple[EchoFactory, int, Any]:
        contextFactory = serverContextFactory(tls, "test TLS echo")
        echo = EchoFactory()
        port = self.listenTCP(TLSMemoryBIOFactory(contextFactory, False, echo))
        # the open protocols are the echo's; abort those at cleanup too
        return echo, port, contextFactory

    def selfSigned(self) -> TLSConfig:
        certPem, keyPem = generateCertificate("self.example", "Self")
        return TLSConfig(certFile=self.pki.write("self.pem", certPem), keyFile=self.pki.write("self-key.pem", keyPem))

    @defer.inlineCallbacks
    def test_defaultAcceptsSelfSigned(self):  # type: ignore[no-untyped-def]
        echo, port, cf = self.startTLSEcho(self.selfSigned())
        client = yield self.exchange(clientFromString(reactor, rf"gosttls:tcp\:127.0.0.1\:{port}"), b"self-signed ok")
        self.assertEchoed(client, b"self-signed ok")

    @defer.inlineCallbacks
    def test_secureRefusesSelfSigned(self):  # type: ignore[no-untyped-def]
        echo, port, cf = self.startTLSEcho(self.selfSigned())
        ep = clientFromString(
            reactor, rf"gosttls:tcp\:127.0.0.1\:{port}:secure=true:serverName=self.example:caFile={self.pki.ca.certFile}"
        )
        client = yield self.exchange(ep, b"must not pass")
        self.assertFailedWithout(client)
        self.assertEqual([e.received for e in echo.accepted], [0] * len(echo.accepted))

    @defer.inlineCallbacks
    def test_secureWithCA(self):  # type: ignore[no-untyped-def]
        cert, key = self.pki.server
        echo, port, cf = self.startTLSEcho(TLSConfig(certFile=cert, keyFile=key))
        ep = clientFromString(
            reactor, rf"gosttls:tcp\:127.0.0.1\:{port}:secure=true:serverName=localhost:caFile={self.pki.ca.certFile}"
        )
        client = yield self.exchange(ep, b"verified")
        self.assertEchoed(client, b"verified")

    @defer.inlineCallbacks
    def test_sniFromInnerHost(self):  # type: ignore[no-untyped-def]
        """
        SNI is the inner endpoint's host name (none for an IP).
        """
        echo, port, cf = self.startTLSEcho(self.selfSigned())
        seen: list[Any] = []
        cf.getContext().set_tlsext_servername_callback(lambda conn: seen.append(conn.get_servername()))
        client = yield self.exchange(clientFromString(reactor, rf"gosttls:tcp\:localhost\:{port}"), b"a")
        self.assertEchoed(client, b"a")
        client = yield self.exchange(clientFromString(reactor, rf"gosttls:tcp\:127.0.0.1\:{port}"), b"b")
        self.assertEchoed(client, b"b")
        self.assertEqual(seen, [b"localhost", None])


class WebSocketEndpointStringTests(TransportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)

    @defer.inlineCallbacks
    def listenString(self, description: str, **appKwargs: Any):  # type: ignore[no-untyped-def]
        apps = AppFactory(**appKwargs)
        port = yield self.listen(serverFromString(reactor, description), apps)
        return apps, port.getHost().port

    @defer.inlineCallbacks
    def roundTrip(self, description: str, payload: bytes):  # type: ignore[no-untyped-def]
        app = App(writes=(payload,))
        yield withTimeout(clientFromString(reactor, description).connect(Factory.forProtocol(lambda: app)), 5, "connect")
        yield waitUntil(lambda: len(app.data) >= len(payload) or app.reason is not None, 5, "echo")
        self.assertTrue(bytes(app.data) == payload, "echo differs")
        app.transport.loseConnection()
        yield withTimeout(app.done, 5, "end")

    @defer.inlineCallbacks
    def test_wsServerString(self):  # type: ignore[no-untyped-def]
        """
        The brief's server description: ws over tcp on 127.0.0.1 at /x,
        reached by a ws: client description; another path fails.
        """
        apps, port = yield self.listenString(r"ws:tcp\:0\:interface\=127.0.0.1:path=/x", echo=True)
        yield self.roundTrip(rf"ws:tcp\:127.0.0.1\:{port}:path=/x", os.urandom(100000))
        d = clientFromString(reactor, rf"ws:tcp\:127.0.0.1\:{port}").connect(Factory.forProtocol(App))
        yield self.assertFailure(withTimeout(d, 5, "refused"), Exception)
        self.assertEqual(len(apps.apps), 1)

    @defer.inlineCallbacks
    def test_wssServerStringDefaultCertificate(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.listenString(r"wss:tcp\:0\:interface\=127.0.0.1", echo=True)
        self.assertTrue(os.path.isfile(os.path.join(self.home, ".gost", "auto-ca-cert.pem")))
        yield self.roundTrip(rf"wss:tcp\:127.0.0.1\:{port}", b"wss default")

    @defer.inlineCallbacks
    def test_wssServerStringWithCertificate(self):  # type: ignore[no-untyped-def]
        pki = PKI(self.mktemp())
        cert, key = pki.server
        apps, port = yield self.listenString(
            rf"wss:tcp\:0\:interface\=127.0.0.1:certFile={escape(cert)}:keyFile={escape(key)}", echo=True
        )
        yield self.roundTrip(rf"wss:tcp\:127.0.0.1\:{port}:caFile={escape(pki.ca.certFile)}", b"verified")
        d = clientFromString(
            reactor, rf"wss:tcp\:127.0.0.1\:{port}:caFile={escape(pki.otherCA.certFile)}"
        ).connect(Factory.forProtocol(App))
        yield self.assertFailure(withTimeout(d, 5, "refused"), Exception)

    @defer.inlineCallbacks
    def test_wssClientSecure(self):  # type: ignore[no-untyped-def]
        """
        wss: takes gosttls:'s options, secure=true among them.

        Regression test (a bug found by this test and fixed in
        7fd1946); before the fix: the wss client parser is registered
        with the option secure=True (meaning "wss, not ws") and passes it
        as a keyword of parseWebSocketClient, so a description with
        secure=true raises "TypeError: parseWebSocketClient() got multiple
        values for keyword argument 'secure'": a wss: endpoint string can
        never verify the server's name.
        """
        pki = PKI(self.mktemp())
        cert, key = pki.server
        apps, port = yield self.listenString(
            rf"wss:tcp\:0\:interface\=127.0.0.1:certFile={escape(cert)}:keyFile={escape(key)}", echo=True
        )
        yield self.roundTrip(
            rf"wss:tcp\:127.0.0.1\:{port}:secure=true:serverName=localhost:caFile={escape(pki.ca.certFile)}", b"verified"
        )

    @defer.inlineCallbacks
    def test_wsClientHostHeader(self):  # type: ignore[no-untyped-def]
        """
        The ws: client's Host header: the inner host:port, or host=.
        """
        raw = RawServerFactory()
        port = self.listenTCP(raw)
        for description, expected in (
            (rf"ws:tcp\:127.0.0.1\:{port}", f"127.0.0.1:{port}"),
            (rf"ws:tcp\:127.0.0.1\:{port}:host=cdn.example\:8443", "cdn.example:8443"),
        ):
            app = App()
            factory = Factory.forProtocol(lambda app=app: app)
            yield withTimeout(clientFromString(reactor, description).connect(factory), 5, "connect")
            self.assertEqual(header(raw.connections[-1].headers, "Host"), [expected], description)
            self.assertEqual(raw.connections[-1].requestLine, "GET /ws HTTP/1.1")
            app.transport.abortConnection()
            yield app.done

    def test_wsClientPingOnlyWithKeepalive(self) -> None:
        """
        ws: pings only with keepalive=true (ttl alone changes nothing, as
        on the ws dialer and in GOST); ttl is the interval, 15 s default.
        """
        self.assertEqual(clientFromString(reactor, r"ws:tcp\:127.0.0.1\:1").pingInterval, 0.0)
        self.assertEqual(clientFromString(reactor, r"ws:tcp\:127.0.0.1\:1:keepalive=true").pingInterval, 15.0)
        self.assertEqual(clientFromString(reactor, r"ws:tcp\:127.0.0.1\:1:keepalive=true:ttl=2s").pingInterval, 2.0)
        self.assertEqual(clientFromString(reactor, r"ws:tcp\:127.0.0.1\:1:ttl=2s").pingInterval, 0.0)


class ChainEndpointTests(TransportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.home, self.cwd = isolate(self)

    @defer.inlineCallbacks
    def test_relayWSS(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+wss://127.0.0.1:0")
        for url in (f"relay+wss://127.0.0.1:{port}", f"relay+wss://127.0.0.1:{port}?secure=false"):
            payload = os.urandom(MIB)
            client = yield self.exchange(chainEndpoint(reactor, [url], "127.0.0.1", echoPort), payload)
            self.assertEchoed(client, payload)
        self.assertEqual(len(echo.accepted), 2)

    @defer.inlineCallbacks
    def test_relayWSSPath(self):  # type: ignore[no-untyped-def]
        echo, echoPort = self.startEcho()
        svc, port = yield self.startService("relay+wss://127.0.0.1:0?path=/tunnel")
        client = yield self.exchange(
            chainEndpoint(reactor, [f"relay+wss://127.0.0.1:{port}?path=/tunnel"], "127.0.0.1", echoPort), b"p"
        )
        self.assertEchoed(client, b"p")
        client = yield self.exchange(chainEndpoint(reactor, [f"relay+wss://127.0.0.1:{port}"], "127.0.0.1", echoPort), b"q")
        self.assertEqual(bytes(client.data), b"")
        self.assertEqual(len(echo.accepted), 1)

    @defer.inlineCallbacks
    def mixedChain(self, schemes: list[str]):  # type: ignore[no-untyped-def]
        """
        One relay service per scheme, chained in that order; 1 MiB echoes
        and each service accepted exactly one connection.
        """
        echo, echoPort = self.startEcho()
        accepted: list[list[Any]] = []
        urls = []
        for scheme in schemes:
            svc, port = yield self.startService(f"{scheme}://127.0.0.1:0")
            into: list[Any] = []
            accepted.append(into)
            original = svc.handler.buildProtocol

            def counting(addr: Any, original: Any = original, into: list[Any] = into) -> Any:
                into.append(addr)
                return original(addr)

            svc.handler.buildProtocol = counting
            urls.append(f"{scheme}://127.0.0.1:{port}")
        payload = os.urandom(MIB)
        client = yield self.exchange(chainEndpoint(reactor, urls, "127.0.0.1", echoPort), payload, timeout=5)
        self.assertEchoed(client, payload)
        self.assertEqual([len(a) for a in accepted], [1] * len(schemes))

    def test_mixedChainWSThenWSSThenTLS(self):  # type: ignore[no-untyped-def]
        """
        Each hop's carrier runs inside the previous hop's relay CONNECT.
        """
        return self.mixedChain(["relay+ws", "relay+wss", "relay+tls"])

    def test_mixedChainTLSThenWSS(self):  # type: ignore[no-untyped-def]
        return self.mixedChain(["relay+tls", "relay+wss"])

    def test_mixedChainTLSThenWS(self):  # type: ignore[no-untyped-def]
        """
        A ws hop inside a tls hop's relay CONNECT.

        Regression test (a bug found by this test and fixed in
        c49b9b3); before the fix: RelayClientProtocol.connectionMade
        does directlyProvides(self, providedBy(self.transport)), so over a
        TLS carrier it claims ISSLTransport; autobahn's client
        connectionMade (create_transport_details -> transport_channel_id)
        then asks it for the TLS channel id and raises "RuntimeError:
        cannot determine TLS channel ID of type "tls-unique" when TLS is
        not available on this transport RelayClientProtocol", followed by
        an AttributeError (serverConnectionDropTimeoutCall) in
        connectionLost; the connect never completes.  Every ws hop right
        after a tls hop (gost -F relay+tls://A -F relay+ws://B) is broken.
        """
        return self.mixedChain(["relay+tls", "relay+ws"])

    def test_emptyAndUnknown(self) -> None:
        self.assertRaises(ConfigError, chainEndpoint, reactor, [], "127.0.0.1", 1)
        self.assertRaises(ConfigError, chainEndpoint, reactor, ["relay+mwss://127.0.0.1:1"], "127.0.0.1", 1)

    @defer.inlineCallbacks
    def test_wsOverTCPServerEndpointClass(self):  # type: ignore[no-untyped-def]
        """
        serverFromString gives a WebSocketServerEndpoint over the inner
        endpoint (here a TCP4ServerEndpoint bound to 127.0.0.1).
        """
        from gostrelay.transports.ws import WebSocketServerEndpoint

        endpoint = serverFromString(reactor, r"ws:tcp\:0\:interface\=127.0.0.1:path=/x")
        self.assertIsInstance(endpoint, WebSocketServerEndpoint)
        self.assertEqual(endpoint.path, "/x")
        self.assertIsInstance(endpoint.inner, TCP4ServerEndpoint)
        self.assertEqual(endpoint.inner._interface, "127.0.0.1")
        yield None
