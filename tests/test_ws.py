"""
The ws and wss data channels (spec-transports.md section 3), unit by unit
over loopback sockets: our WebSocket client against a raw test server that
records the upgrade request and every frame, and our WebSocket server
against a raw test client that sends hand-made frames.

The raw side is an independent implementation of RFC 6455 framing written
for these tests (see L{encodeFrame}, L{FrameParser}), not autobahn.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory

from gostrelay.config.model import Config
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.transports.ws import (
    DEFAULT_PING_INTERVAL,
    WebSocketClientEndpoint,
    WebSocketServerEndpoint,
    WSDialer,
    WSListener,
    WSSDialer,
    serverFactory,
)
from tests.support.cases import TransportTestCase
from tests.support.pki import PKI, isolate
from tests.support.reactor import sleep, waitUntil, withTimeout
from tests.support.websocket import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    App,
    AppFactory,
    RawClient,
    RawServerFactory,
    acceptFor,
    encodeFrame,
    header,
    messages,
    upgradeRequest,
)

# ---------------------------------------------------------------------------
# Raw RFC 6455
# ---------------------------------------------------------------------------


def summary(items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """
    C{items} with every bytes value replaced by its length and a digest,
    so that a failing comparison of large payloads stays readable (and
    fast).
    """
    return [
        tuple((len(v), hashlib.sha256(v).hexdigest()[:12]) if isinstance(v, (bytes, bytearray)) else v for v in item)
        for item in items
    ]


def nodeFor(url: str) -> Any:
    return buildConfigFromCommandLine([], [url]).chains[0].hops[0].nodes[0]


# ---------------------------------------------------------------------------
# Our client against the raw server
# ---------------------------------------------------------------------------



def chunks(data: bytes) -> list[bytes]:
    """
    C{data} as our WebSocket writer sends it: messages of at most
    C{WRITE_CHUNK} (32 KiB) bytes.
    """
    from gostrelay.transports.ws import WRITE_CHUNK

    return [data[i : i + WRITE_CHUNK] for i in range(0, len(data), WRITE_CHUNK)]

class ClientTests(TransportTestCase):
    """
    L{WSDialer} (and L{WebSocketClientEndpoint}) against L{RawServer}.
    """

    def rawServer(self, **kwargs: Any) -> tuple[RawServerFactory, int]:
        factory = RawServerFactory(**kwargs)
        return factory, self.listenTCP(factory)

    @defer.inlineCallbacks
    def dial(self, endpoint: Any, **appKwargs: Any):  # type: ignore[no-untyped-def]
        app = App(**appKwargs)
        yield withTimeout(endpoint.connect(Factory.forProtocol(lambda: app)), 5, "WebSocket connect")

        def abort() -> Any:
            if app.reason is None and app.transport is not None:
                app.transport.abortConnection()
                return withTimeout(app.done, 5, "application end after abort")
            return None

        self.addCleanup(abort)
        return app

    @defer.inlineCallbacks
    def test_upgradeRequest(self):  # type: ignore[no-untyped-def]
        """
        GET /ws HTTP/1.1 with Host = the node address, the RFC 6455
        headers, and no Origin, no subprotocol, no extension offer.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        (conn,) = raw.connections
        self.assertEqual(conn.requestLine, "GET /ws HTTP/1.1")
        h = conn.headers
        self.assertEqual(header(h, "Host"), [f"127.0.0.1:{port}"])
        self.assertEqual([v.lower() for v in header(h, "Upgrade")], ["websocket"])
        self.assertIn("upgrade", header(h, "Connection")[0].lower())
        self.assertEqual(header(h, "Sec-WebSocket-Version"), ["13"])
        key = header(h, "Sec-WebSocket-Key")
        self.assertEqual(len(key), 1)
        self.assertEqual(len(base64.b64decode(key[0])), 16)
        for absent in ("Origin", "Sec-WebSocket-Origin", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"):
            self.assertEqual(header(h, absent), [], absent)

    @defer.inlineCallbacks
    def test_pathOption(self):  # type: ignore[no-untyped-def]
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?path=/tunnel"), None)
        yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        self.assertEqual(raw.connections[0].requestLine, "GET /tunnel HTTP/1.1")

    @defer.inlineCallbacks
    def test_hostOption(self):  # type: ignore[no-untyped-def]
        """
        The host option is the Host header exactly (GOST puts the option's
        value as it is; a value without port stays without port).

        Regression test (a bug found by this test and fixed in
        f9b4ff5); before the fix: autobahn always writes
        "Host: {host}:{port}", and WebSocketClientEndpoint turns host=
        cdn.example into the URL ws://cdn.example/ws, so the header sent
        is "cdn.example:80" (for wss "cdn.example:443").  A CDN or
        virtual host matching on the exact Host value sees a different
        name from what GOST sends.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?host=cdn.example"), None)
        yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        self.assertEqual(header(raw.connections[0].headers, "Host"), ["cdn.example"])

    @defer.inlineCallbacks
    def test_hostOptionWithPort(self):  # type: ignore[no-untyped-def]
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?host=cdn.example:8080"), None)
        yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        self.assertEqual(header(raw.connections[0].headers, "Host"), ["cdn.example:8080"])

    @defer.inlineCallbacks
    def test_hostIsNodeAddressEvenOnPort80(self):  # type: ignore[no-untyped-def]
        """
        Host = the node address including the port, even 80 (spec 3.1:
        "Host: example.com:443").  The carrier here reaches the raw server
        whatever the node address says.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor("relay+ws://relay.example:80"), None)
        yield self.dial(dialer.endpoint("relay.example:80", through=TCP4ClientEndpoint(reactor, "127.0.0.1", port)))
        self.assertEqual(header(raw.connections[0].headers, "Host"), ["relay.example:80"])

    @defer.inlineCallbacks
    def test_headerOptionOverridesHost(self):  # type: ignore[no-untyped-def]
        """
        YAML dialer metadata header: extra request headers; a Host entry
        replaces the Host header (gorilla/Go: one Host header).

        Regression test (a bug found by this test and fixed in
        f9b4ff5); before the fix: WebSocketClientEndpoint passes the
        map to autobahn as extra headers, which autobahn appends after its
        own Host line, so the request carries two Host headers
        ("127.0.0.1:P" and "override.example"), which HTTP servers reject
        (RFC 7230 5.4: 400 for more than one Host).
        """
        raw, port = self.rawServer()
        config = Config.fromDict(
            {
                "chains": [
                    {
                        "name": "c",
                        "hops": [
                            {
                                "name": "h",
                                "nodes": [
                                    {
                                        "name": "n",
                                        "addr": f"127.0.0.1:{port}",
                                        "connector": {"type": "relay"},
                                        "dialer": {
                                            "type": "ws",
                                            "metadata": {"header": {"X-Test": "yes", "Host": "override.example"}},
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        )
        node = config.chains[0].hops[0].nodes[0]
        dialer = WSDialer(reactor, node, None)
        yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        h = raw.connections[0].headers
        self.assertEqual(header(h, "X-Test"), ["yes"])
        self.assertEqual(header(h, "Host"), ["override.example"])

    @defer.inlineCallbacks
    def test_waitsFor101(self):  # type: ignore[no-untyped-def]
        """
        Nothing is sent after the request until the 101 has arrived (gorilla
        refuses early data), and the application is connected only then.
        """
        raw, port = self.rawServer(answer=None)
        endpoint = WebSocketClientEndpoint(reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", port), f"127.0.0.1:{port}")
        app = App(writes=(b"first",))
        d = endpoint.connect(Factory.forProtocol(lambda: app))
        yield waitUntil(lambda: raw.connections and raw.connections[0].head is not None, 5, "request")
        yield sleep(0.1)
        conn = raw.connections[0]
        self.assertEqual(conn.early, b"")
        self.assertFalse(app.connected)
        self.assertFalse(d.called)
        conn.answer("101")
        yield withTimeout(d, 5, "connect after 101")
        self.addCleanup(lambda: app.reason is None and app.transport.abortConnection())
        yield waitUntil(lambda: conn.frames, 5, "first frame")
        self.assertEqual(messages(conn.frames), [(BINARY, b"first")])
        app.transport.abortConnection()
        yield app.done

    @defer.inlineCallbacks
    def test_badAcceptRefused(self):  # type: ignore[no-untyped-def]
        """
        A 101 with a wrong Sec-WebSocket-Accept fails the connect; the
        application is never made.
        """
        raw, port = self.rawServer(answer="101-bad-accept")
        endpoint = WebSocketClientEndpoint(reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", port), f"127.0.0.1:{port}")
        made: list[Any] = []
        d = endpoint.connect(Factory.forProtocol(lambda: made.append(1) or App()))
        yield self.assertFailure(withTimeout(d, 5, "refused connect"), Exception)
        self.assertEqual(made, [])

    @defer.inlineCallbacks
    def test_404Refused(self):  # type: ignore[no-untyped-def]
        raw, port = self.rawServer(answer="404")
        endpoint = WebSocketClientEndpoint(reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", port), f"127.0.0.1:{port}")
        made: list[Any] = []
        d = endpoint.connect(Factory.forProtocol(lambda: made.append(1) or App()))
        yield self.assertFailure(withTimeout(d, 5, "refused connect"), Exception)
        self.assertEqual(made, [])

    @defer.inlineCallbacks
    def test_oneBinaryMessagePerWrite(self):  # type: ignore[no-untyped-def]
        """
        Each write is one masked binary message with exactly its bytes, a
        write larger than 32 KiB several (GOST writes at most 32 KiB per
        message; readers cap messages at 64 KiB, issue 19.4).
        """
        raw, port = self.rawServer()
        big = os.urandom(100000)
        writes = (b"abc", b"defgh", big, b"x")
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"), writes=writes)
        conn = raw.connections[0]
        expected = [(BINARY, piece) for w in writes for piece in chunks(w)]
        yield waitUntil(lambda: len(messages(conn.frames)) >= len(expected), 5, "every message")
        self.assertEqual(summary(messages(conn.frames)), summary(expected))
        self.assertTrue(all(f.masked for f in conn.frames), "client frames must be masked")
        self.assertTrue(all(f.rsv == 0 for f in conn.frames), "no compression")
        app.transport.abortConnection()
        yield app.done

    @defer.inlineCallbacks
    def test_messagesConcatenated(self):  # type: ignore[no-untyped-def]
        """
        Several binary messages, a text message and a fragmented message
        (with a ping between its fragments) arrive as one byte stream.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        conn = raw.connections[0]
        conn.send(BINARY, b"hel")
        conn.send(BINARY, b"lo ")
        conn.send(TEXT, "wörld ".encode())
        conn.send(BINARY, b"fra", fin=False)
        conn.send(PING, b"p")
        conn.send(CONT, b"gme", fin=False)
        conn.send(CONT, b"nted")
        expected = "hello wörld fragmented".encode()
        yield waitUntil(lambda: len(app.data) >= len(expected), 5, "stream")
        self.assertEqual(bytes(app.data), expected)
        yield waitUntil(lambda: any(f.opcode == PONG for f in conn.frames), 5, "pong")
        self.assertEqual([f.payload for f in conn.frames if f.opcode == PONG], [b"p"])
        app.transport.abortConnection()
        yield app.done

    @defer.inlineCallbacks
    def test_tcpCloseIsNormalEnd(self):  # type: ignore[no-untyped-def]
        """
        The server closing TCP without a Close frame (GOST's way) ends the
        stream normally: the data first, then ConnectionDone.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        conn = raw.connections[0]
        conn.send(BINARY, b"last words")
        conn.transport.loseConnection()
        yield withTimeout(app.done, 5, "end of stream")
        self.assertEqual(bytes(app.data), b"last words")
        self.assertTrue(app.reason.check(ConnectionDone), repr(app.reason))

    @defer.inlineCallbacks
    def test_writeAfterLossIgnored(self):  # type: ignore[no-untyped-def]
        """
        Writing to the stream once the connection is gone is a no-op, as on
        any Twisted transport (a TLS layer above flushes its close_notify
        from connectionLost, for one).

        Regression test (a bug found by this test and fixed in
        f9b4ff5); before the fix: WebSocketStream.write checks only
        its own C{disconnecting} flag, so after the carrier was lost it
        calls autobahn's sendMessage, which raises
        autobahn.exception.Disconnected("Attempt to send on a closed
        protocol").  Seen as an unhandled error whenever a tls hop runs
        over a ws hop and the WebSocket goes away first
        (TLSMemoryBIOProtocol.connectionLost -> _flushSendBIO -> write).
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        raw.connections[0].transport.loseConnection()
        yield withTimeout(app.done, 5, "end of stream")
        app.transport.write(b"too late")
        app.transport.writeSequence([b"too", b"late"])

    @defer.inlineCallbacks
    def test_closeFrameIsNormalEnd(self):  # type: ignore[no-untyped-def]
        """
        A Close frame from the server is answered with a Close frame, and
        the stream ends normally, after the data, at once (spec 3.5:
        gorilla replies and GOST's read returns an error, so the relay pair
        winds down without waiting for the server to drop TCP).

        Regression test (a minor bug, found by this test and fixed in
        f9b4ff5); before the fix: our client answers the Close
        frame at once but tells the application only when the server has
        closed TCP or autobahn's drop timer fires, about 6 s later here;
        a relay pair over it lingers that long.
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        conn = raw.connections[0]
        conn.send(BINARY, b"bye")
        conn.send(CLOSE, struct.pack("!H", 1000))
        self.addCleanup(lambda: conn.lost is None and conn.transport.abortConnection())
        yield waitUntil(lambda: any(f.opcode == CLOSE for f in conn.frames), 5, "Close reply")
        self.assertEqual(bytes(app.data), b"bye")
        yield withTimeout(app.done, 2, "end of stream after a Close frame")
        self.assertTrue(app.reason.check(ConnectionDone), repr(app.reason))

    @defer.inlineCallbacks
    def test_applicationCloseSendsNoCloseFrame(self):  # type: ignore[no-untyped-def]
        """
        The application's loseConnection closes the carrier after its
        bytes, like GOST (no Close frame owed).
        """
        raw, port = self.rawServer()
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"), writes=(b"one", b"two"), closeAfterWrites=True)
        conn = raw.connections[0]
        yield waitUntil(lambda: conn.lost is not None, 5, "carrier closed")
        self.assertEqual(messages(conn.frames), [(BINARY, b"one"), (BINARY, b"two")])
        yield withTimeout(app.done, 5, "application told")

    def test_keepaliveOptions(self) -> None:
        """
        keepalive=true&ttl=1s pings every second; keepalive alone every
        15 s; without keepalive (even with ttl) never.
        """
        self.assertEqual(WSDialer(reactor, nodeFor("relay+ws://h:1?keepalive=true&ttl=1s"), None).pingInterval, 1.0)
        self.assertEqual(WSDialer(reactor, nodeFor("relay+ws://h:1?keepalive=true"), None).pingInterval, DEFAULT_PING_INTERVAL)
        self.assertEqual(DEFAULT_PING_INTERVAL, 15.0)
        self.assertEqual(WSDialer(reactor, nodeFor("relay+ws://h:1?ttl=1s"), None).pingInterval, 0.0)
        self.assertEqual(WSDialer(reactor, nodeFor("relay+ws://h:1"), None).pingInterval, 0.0)
        self.assertEqual(WSDialer(reactor, nodeFor("relay+ws://h:1?ws.keepalive=true&ws.ttl=2s"), None).pingInterval, 2.0)

    @defer.inlineCallbacks
    def test_keepalivePings(self):  # type: ignore[no-untyped-def]
        """
        keepalive=true&ttl=1s: masked pings about every second; answered
        with pongs, the connection stays up past 2 x ttl.
        """
        raw, port = self.rawServer(pong=True)
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?keepalive=true&ttl=1s"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        conn = raw.connections[0]
        # (autobahn's timers are quantised to whole seconds, so the first
        # ping comes between 0 and 1 s; then one a second.)
        yield sleep(2.6)
        pings = [f for f in conn.frames if f.opcode == PING]
        self.assertIn(len(pings), (2, 3), conn.frames)
        self.assertTrue(all(p.masked for p in pings))
        self.assertIsNone(app.reason, "the connection must stay up while pongs come back")
        conn.send(BINARY, b"still here")
        yield waitUntil(lambda: app.data, 5, "data after pings")
        app.transport.abortConnection()
        yield app.done

    @defer.inlineCallbacks
    def test_keepaliveWithoutPongs(self):  # type: ignore[no-untyped-def]
        """
        Without pongs the client gives up after about 2 x ttl.
        """
        raw, port = self.rawServer(pong=False)
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?keepalive=true&ttl=1s"), None)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        started = reactor.seconds()
        yield withTimeout(app.done, 5, "give up without pongs")
        self.assertGreaterEqual(reactor.seconds() - started, 1.0)
        self.assertTrue(any(f.opcode == PING for f in raw.connections[0].frames))

    @defer.inlineCallbacks
    def test_subSecondTTLWithPongs(self):  # type: ignore[no-untyped-def]
        """
        keepalive=true&ttl=300ms against a server that answers every ping
        at once: the connection stays up (GOST: deadline 2 x ttl, extended
        by each pong).

        Regression test (a bug found by this test and fixed in
        f9b4ff5); before the fix: WebSocketClientEndpoint sets
        autobahn's autoPingTimeout = 2 x ttl = 0.6 s, but autobahn's
        batched timer truncates every deadline to a whole second
        (txaio _BatchedTimer.call_later: int(now + delay)), so the pong
        timeout of the first ping fires with (almost) no delay and the
        connection is dropped before the pong, about 0.3 s after opening.
        Any ttl below ~1 s is affected.
        """
        raw, port = self.rawServer(pong=True)
        dialer = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{port}?keepalive=true&ttl=300ms"), None)
        self.assertEqual(dialer.pingInterval, 0.3)
        app = yield self.dial(dialer.endpoint(f"127.0.0.1:{port}"))
        yield sleep(1.2)
        conn = raw.connections[0]
        self.assertTrue(any(f.opcode == PING for f in conn.frames), "no ping at all")
        self.assertIsNone(app.reason, "dropped although every ping got its pong")
        app.transport.abortConnection()
        yield app.done


# ---------------------------------------------------------------------------
# Our server against the raw client
# ---------------------------------------------------------------------------


class ServerTests(TransportTestCase):
    """
    L{serverFactory} / L{WebSocketServerEndpoint} against L{RawClient}.
    """

    @defer.inlineCallbacks
    def serve(self, path: str = "/ws", headers: dict[str, str] | None = None, **appKwargs: Any):  # type: ignore[no-untyped-def]
        apps = AppFactory(**appKwargs)
        endpoint = WebSocketServerEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), path, headers)
        port = yield self.listen(endpoint, apps)
        return apps, port.getHost().port

    @defer.inlineCallbacks
    def rawClient(self, port: int, request: bytes):  # type: ignore[no-untyped-def]
        client = RawClient(request)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

        def close() -> Any:
            if client.lost is None:
                client.transport.abortConnection()
                return withTimeout(client.done, 5, "raw client end after abort")
            return None

        self.addCleanup(close)
        return client

    @defer.inlineCallbacks
    def upgrade(self, port: int, **kwargs: Any):  # type: ignore[no-untyped-def]
        request, key = upgradeRequest(**kwargs)
        client = yield self.rawClient(port, request)
        yield waitUntil(lambda: client.head is not None or client.lost is not None, 5, "response")
        return client, key

    @defer.inlineCallbacks
    def test_101(self):  # type: ignore[no-untyped-def]
        """
        /ws gets 101 with the right accept, no extension, no subprotocol,
        and the application is connected.
        """
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port)
        self.assertEqual(client.status, 101, client.head)
        self.assertEqual(header(client.headers, "Sec-WebSocket-Accept"), [acceptFor(key).decode()])
        self.assertEqual(header(client.headers, "Sec-WebSocket-Extensions"), [])
        self.assertEqual(header(client.headers, "Sec-WebSocket-Protocol"), [])
        yield waitUntil(lambda: apps.apps, 5, "application")

    @defer.inlineCallbacks
    def test_otherPath404(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port, path="/other")
        self.assertEqual(client.status, 404, client.head)
        client2, key = yield self.upgrade(port, path="/ws/")
        self.assertEqual(client2.status, 404, client2.head)
        self.assertEqual(apps.apps, [])

    @defer.inlineCallbacks
    def test_configuredPath(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve(path="/tunnel")
        client, key = yield self.upgrade(port, path="/tunnel")
        self.assertEqual(client.status, 101, client.head)
        client2, key = yield self.upgrade(port, path="/ws")
        self.assertEqual(client2.status, 404, client2.head)

    @defer.inlineCallbacks
    def test_anyOriginAnyHost(self):  # type: ignore[no-untyped-def]
        """
        Origin is not checked, nor is Host (a Host without port, as GOST
        clients with a host option send, is fine).
        """
        apps, port = yield self.serve()
        for host, extra in (
            ("cdn.example", "Origin: https://evil.example\r\n"),
            ("cdn.example:443", "Origin: http://127.0.0.1:1\r\n"),
            (f"127.0.0.1:{port}", ""),
        ):
            client, key = yield self.upgrade(port, host=host, extra=extra)
            self.assertEqual(client.status, 101, (host, extra, client.head))

    @defer.inlineCallbacks
    def test_nullOrigin(self):  # type: ignore[no-untyped-def]
        """
        "Origin: null" (sandboxed pages, file: URLs) is an Origin like any
        other: GOST does not check it.

        Regression test (a minor bug, found by this test and fixed in
        f9b4ff5); before the fix: autobahn refuses it with
        "400 WebSocket connection denied: origin 'null' not allowed"
        unless the factory is given allowNullOrigin=True, which
        ws.serverFactory does not set.
        """
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port, extra="Origin: null\r\n")
        self.assertEqual(client.status, 101, client.head)

    @defer.inlineCallbacks
    def test_compressionOfferDeclined(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve()
        client, key = yield self.upgrade(
            port, extra="Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        )
        self.assertEqual(client.status, 101)
        self.assertEqual(header(client.headers, "Sec-WebSocket-Extensions"), [])

    @defer.inlineCallbacks
    def test_nonGetRefused(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve()
        post, key = yield self.upgrade(port, method="POST")
        self.assertEqual(post.status, 405, post.head)
        self.assertEqual(apps.apps, [])

    @defer.inlineCallbacks
    def test_onlyVersion13(self):  # type: ignore[no-untyped-def]
        """
        Sec-WebSocket-Version other than 13 gets 400 (gorilla, spec 3.2).

        Regression test (a minor bug, found by this test and fixed in
        f9b4ff5); before the fix: autobahn also accepts the
        draft versions 8 (hybi-10) and answers 101; ws.serverFactory does
        not restrict setProtocolOptions(versions=[13]).
        """
        apps, port = yield self.serve()
        old, key = yield self.upgrade(port, version="8")
        self.assertEqual(old.status, 400, old.head)
        self.assertEqual(apps.apps, [])

    @defer.inlineCallbacks
    def test_extraResponseHeaders(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve(headers={"X-Served-By": "gostrelay-test"})
        client, key = yield self.upgrade(port)
        self.assertEqual(client.status, 101)
        self.assertEqual(header(client.headers, "X-Served-By"), ["gostrelay-test"])

    @defer.inlineCallbacks
    def test_listenerOptionsFromYAML(self):  # type: ignore[no-untyped-def]
        """
        WSListener takes path and header from listener metadata.
        """
        config = Config.fromDict(
            {
                "services": [
                    {
                        "name": "s",
                        "addr": "127.0.0.1:0",
                        "handler": {"type": "relay"},
                        "listener": {"type": "ws", "metadata": {"path": "/yaml", "header": {"X-Yaml": "1"}}},
                    }
                ]
            }
        )
        listener = WSListener(reactor, config.services[0], None)
        apps = AppFactory()
        port = yield listener.listen(apps)
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [a.transport.abortConnection() for a in apps.apps if a.reason is None])
        client, key = yield self.upgrade(port.getHost().port, path="/yaml")
        self.assertEqual(client.status, 101, client.head)
        self.assertEqual(header(client.headers, "X-Yaml"), ["1"])

    @defer.inlineCallbacks
    def test_messagesConcatenated(self):  # type: ignore[no-untyped-def]
        """
        Binary, text and fragmented messages from the client arrive as one
        stream; a ping between fragments gets its pong.
        """
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port)
        client.send(BINARY, b"one ")
        client.send(TEXT, b"two ")
        client.send(BINARY, b"thr", fin=False)
        client.send(PING, b"are you there")
        client.send(CONT, b"ee")
        big = os.urandom(60000)  # within the 64 KiB message cap (issue 19.4)
        client.send(BINARY, big)
        expected = b"one two three" + big
        yield waitUntil(lambda: apps.apps and len(apps.apps[0].data) >= len(expected), 5, "stream")
        self.assertTrue(bytes(apps.apps[0].data) == expected)
        yield waitUntil(lambda: any(f.opcode == PONG for f in client.frames), 5, "pong")
        self.assertEqual([f.payload for f in client.frames if f.opcode == PONG], [b"are you there"])

    @defer.inlineCallbacks
    def test_oneBinaryMessagePerWrite(self):  # type: ignore[no-untyped-def]
        """
        Every write of the application is one unmasked binary frame with
        FIN, exactly its bytes (server frames are never fragmented); a
        write larger than 32 KiB is several messages (issue 19.4).
        """
        big = os.urandom(70000)
        writes = (b"hello", b"", b"world", big)
        apps, port = yield self.serve(writes=writes)
        client, key = yield self.upgrade(port)
        expected = [(True, BINARY, False, piece) for w in writes if w for piece in chunks(w)]
        yield waitUntil(lambda: len(client.frames) >= len(expected), 5, "frames")
        self.assertEqual(
            summary([(f.fin, f.opcode, f.masked, f.payload) for f in client.frames]),
            summary(expected),
        )

    @defer.inlineCallbacks
    def test_exampleFrame(self):  # type: ignore[no-untyped-def]
        """
        spec 3.3: server -> client 'hello' is 82 05 68 65 6c 6c 6f.
        """
        apps, port = yield self.serve(writes=(b"hello",))
        client, key = yield self.upgrade(port)
        yield waitUntil(lambda: client.frames, 5, "frame")
        self.assertEqual(client.parser.buffer, b"")
        self.assertEqual(encodeFrame(BINARY, client.frames[0].payload), bytes.fromhex("820568656c6c6f"))

    @defer.inlineCallbacks
    def test_echo(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve(echo=True)
        client, key = yield self.upgrade(port)
        # spec 3.3 example: mask 37 fa 21 3d, payload hello
        client.transport.write(bytes.fromhex("828537fa213d5f9f4d5158"))
        yield waitUntil(lambda: client.frames, 5, "echo")
        self.assertEqual(messages(client.frames), [(BINARY, b"hello")])

    @defer.inlineCallbacks
    def test_tcpCloseIsNormalEnd(self):  # type: ignore[no-untyped-def]
        """
        The client closing TCP without a Close frame (GOST's way) ends the
        application's stream with ConnectionDone, after the data.
        """
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port)
        client.send(BINARY, b"data then FIN")
        client.transport.loseConnection()
        yield waitUntil(lambda: apps.apps, 5, "application")
        app = apps.apps[0]
        yield withTimeout(app.done, 5, "application end")
        self.assertEqual(bytes(app.data), b"data then FIN")
        self.assertTrue(app.reason.check(ConnectionDone), repr(app.reason))

    @defer.inlineCallbacks
    def test_closeFrameAnswered(self):  # type: ignore[no-untyped-def]
        """
        A Close frame from the client is answered with a Close frame and
        ends the application's stream normally.
        """
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port)
        client.send(CLOSE, struct.pack("!H", 1000))
        yield waitUntil(lambda: apps.apps, 5, "application")
        app = apps.apps[0]
        yield withTimeout(app.done, 5, "application end")
        self.assertTrue(app.reason.check(ConnectionDone), repr(app.reason))
        yield waitUntil(lambda: any(f.opcode == CLOSE for f in client.frames), 5, "close reply")
        client.transport.loseConnection()

    @defer.inlineCallbacks
    def test_applicationCloseSendsNoCloseFrame(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve(writes=(b"bye",), closeAfterWrites=True)
        client, key = yield self.upgrade(port)
        yield withTimeout(client.done, 5, "carrier closed")
        self.assertEqual([(f.opcode, f.payload) for f in client.frames], [(BINARY, b"bye")])
        self.assertTrue(client.lost.check(ConnectionDone), repr(client.lost))

    @defer.inlineCallbacks
    def test_noPingsFromServer(self):  # type: ignore[no-untyped-def]
        apps, port = yield self.serve()
        client, key = yield self.upgrade(port)
        yield sleep(0.3)
        self.assertEqual(client.frames, [])


# ---------------------------------------------------------------------------
# Our client against our server, ws and wss
# ---------------------------------------------------------------------------


class LoopbackTests(TransportTestCase):
    @defer.inlineCallbacks
    def test_wsEcho(self):  # type: ignore[no-untyped-def]
        apps = AppFactory(echo=True)
        port = yield WebSocketServerEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")).listen(apps)
        self.addCleanup(port.stopListening)
        p = port.getHost().port
        endpoint = WSDialer(reactor, nodeFor(f"relay+ws://127.0.0.1:{p}"), None).endpoint(f"127.0.0.1:{p}")
        payload = os.urandom(300000)
        app = App(writes=(payload,))
        yield endpoint.connect(Factory.forProtocol(lambda: app))
        yield waitUntil(lambda: len(app.data) >= len(payload), 10, "echo")
        self.assertTrue(bytes(app.data) == payload)
        app.transport.loseConnection()
        yield withTimeout(app.done, 5, "client end")
        yield withTimeout(apps.apps[0].done, 5, "server end")
        self.assertTrue(apps.apps[0].reason.check(ConnectionDone), repr(apps.apps[0].reason))

    @defer.inlineCallbacks
    def test_wssEcho(self):  # type: ignore[no-untyped-def]
        """
        wss with a CA-signed certificate, the client verifying it
        (secure=true, serverName=localhost).
        """
        isolate(self)
        pki = PKI(self.mktemp())
        cert, key = pki.server
        config = buildConfigFromCommandLine([f"relay+wss://127.0.0.1:0?certFile={cert}&keyFile={key}"], [])
        from gostrelay.transports.ws import WSSListener

        listener = WSSListener(reactor, config.services[0], None)
        apps = AppFactory(echo=True)
        port = yield listener.listen(apps)
        self.addCleanup(port.stopListening)
        p = port.getHost().port
        node = nodeFor(f"relay+wss://127.0.0.1:{p}?secure=true&serverName=localhost&caFile={pki.ca.certFile}")
        endpoint = WSSDialer(reactor, node, None).endpoint(f"127.0.0.1:{p}")
        app = App(writes=(b"over wss",))
        yield endpoint.connect(Factory.forProtocol(lambda: app))
        yield waitUntil(lambda: len(app.data) >= 8, 10, "echo")
        self.assertEqual(bytes(app.data), b"over wss")
        app.transport.loseConnection()
        yield withTimeout(app.done, 5, "client end")
        yield withTimeout(apps.apps[0].done, 5, "server end")

    @defer.inlineCallbacks
    def test_wssWrongNameRefused(self):  # type: ignore[no-untyped-def]
        isolate(self)
        pki = PKI(self.mktemp())
        cert, key = pki.server
        config = buildConfigFromCommandLine([f"relay+wss://127.0.0.1:0?certFile={cert}&keyFile={key}"], [])
        from gostrelay.transports.ws import WSSListener

        apps = AppFactory(echo=True)
        port = yield WSSListener(reactor, config.services[0], None).listen(apps)
        self.addCleanup(port.stopListening)
        p = port.getHost().port
        node = nodeFor(f"relay+wss://127.0.0.1:{p}?secure=true&serverName=other.example&caFile={pki.ca.certFile}")
        endpoint = WSSDialer(reactor, node, None).endpoint(f"127.0.0.1:{p}")
        d = endpoint.connect(Factory.forProtocol(App))
        yield self.assertFailure(withTimeout(d, 5, "refused"), Exception)
        self.assertEqual(apps.apps, [])

    @defer.inlineCallbacks
    def test_serverFactoryDirect(self):  # type: ignore[no-untyped-def]
        """
        serverFactory is usable with plain listenTCP.
        """
        apps = AppFactory(writes=(b"hi",))
        p = self.listenTCP(serverFactory(apps, "/direct"))
        endpoint = WebSocketClientEndpoint(reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", p), f"127.0.0.1:{p}", "/direct")
        app = App()
        yield endpoint.connect(Factory.forProtocol(lambda: app))
        yield waitUntil(lambda: app.data, 5, "data")
        self.assertEqual(bytes(app.data), b"hi")
        app.transport.loseConnection()
        yield withTimeout(app.done, 5, "end")
        yield withTimeout(apps.apps[0].done, 5, "server end")
