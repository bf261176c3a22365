"""
Integration tests: the PROXY protocol with the real thing.

  - A real HAProxy (C{send-proxy}, C{send-proxy-v2}) in front of a relay
    server started as users start it (C{-L "relay://...?proxyProtocol=N"}):
    the server logs, limits and counts the clients HAProxy names, not
    HAProxy; a client that skips HAProxy (no header) is closed.
  - The sending side: an rtcp forward whose local target reads the PROXY
    header and records the visitor's address; a C{-F} node with
    C{proxyProtocol} gets the header first.

Clients bind distinct loopback sources (127.0.0.2, 127.0.0.3) so that the
per-IP limit can tell them apart from HAProxy's own 127.0.0.1.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody

from gostrelay.wire.proxyheader import HeaderReader
from gostrelay.wire.relay import connectRequest
from tests.processes import CONSOLE, TWISTD_RELAY
from tests.support.cases import ProcessTestCase
from tests.support.reactor import freePort, waitUntil, withTimeout
from tests.support.targets import Collector, EchoFactory

OK = b"\x01\x00\x00\x00"

HAPROXY_CONFIG = """\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{front}
    default_backend relays
backend relays
    server relay 127.0.0.1:{relay} {sendProxy}
"""


def listeningOn(port: int) -> bool:
    """
    Whether a socket listens on 127.0.0.1:C{port} (from /proc/net/tcp,
    without connecting to it).
    """
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and local == f"0100007F:{port:04X}":
                return True
    return False


class _Recorder(Protocol):
    """
    A target that reads the PROXY header the forwarder sends first and
    records what it names; then echoes.
    """

    def connectionMade(self) -> None:
        self.reader: HeaderReader | None = HeaderReader()
        self.factory.open.add(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.reader is not None:
            info = self.reader.feed(data)
            if info is None:
                return
            self.factory.headers.append(info)  # type: ignore[attr-defined]
            data, self.reader = self.reader.remainder, None
        if data:
            self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class RecorderFactory(Factory):
    protocol = _Recorder
    noisy = False

    def __init__(self) -> None:
        self.headers: list[Any] = []
        self.open: set[Any] = set()


class ProxyProtocolTestCase(ProcessTestCase):
    """
    gostrelay children behind (or in front of) a real HAProxy; targets
    and clients in this process.
    """

    @defer.inlineCallbacks
    def startRelay(self, *args: str):  # type: ignore[no-untyped-def]
        proc = self.start(*args, name="relay server")
        _, port = yield proc.waitForListening(timeout=15)
        return proc, port

    @defer.inlineCallbacks
    def startHAProxy(self, relayPort: int, sendProxy: str):  # type: ignore[no-untyped-def]
        front = freePort()
        directory = self.childDir()
        config = os.path.join(directory, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(HAPROXY_CONFIG.format(front=front, relay=relayPort, sendProxy=sendProxy))
        proc = self.start("haproxy", "-db", "-f", config, launcher=[], name="haproxy")
        yield waitUntil(lambda: listeningOn(front) or proc.ended, 10, "haproxy listening")
        self.assertFalse(proc.ended, proc.describe())
        return proc, front

    @defer.inlineCallbacks
    def client(self, port: int, source: str, payload: bytes):  # type: ignore[no-untyped-def]
        """
        A client from C{source} sending C{payload}, left open.
        """
        client = Collector(payload, expect=0)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5, bindAddress=(source, 0))
        yield withTimeout(connectProtocol(endpoint, client), 5, "connect")

        def cleanup() -> Any:
            if not client.lost:
                client.transport.abortConnection()  # type: ignore[union-attr]
                return client.done
            return None

        self.addCleanup(cleanup)
        return client


class BehindHAProxyTests(ProxyProtocolTestCase):
    """
    HAProxy with C{send-proxy} / C{send-proxy-v2} in front of
    C{-L "relay://127.0.0.1:0?proxyProtocol=N&maxConnsPerIP=1"}.
    """

    @defer.inlineCallbacks
    def behindHAProxy(self, sendProxy: str, *service: str, launcher: list[str] = CONSOLE):  # type: ignore[no-untyped-def]
        echo = EchoFactory()
        echoPort = self.listenTCP(echo)
        metricsPort = freePort()
        relay = self.start(*service, "-metrics", f"127.0.0.1:{metricsPort}", launcher=launcher, name="relay server")
        _, relayPort = yield relay.waitForListening(timeout=15)
        haproxy, front = yield self.startHAProxy(relayPort, sendProxy)
        target = f"127.0.0.1:{echoPort}"
        request = connectRequest(target, "tcp").encode()

        # Two clients from two addresses, both through HAProxy (which
        # connects from 127.0.0.1 each time): both admitted.
        first = yield self.client(front, "127.0.0.2", request + b"one")
        yield waitUntil(lambda: len(first.data) >= 7 or first.lost, 10, "first echo")
        self.assertEqual(bytes(first.data), OK + b"one", relay.describe())
        second = yield self.client(front, "127.0.0.3", request + b"two")
        yield waitUntil(lambda: len(second.data) >= 7 or second.lost, 10, "second echo")
        self.assertEqual(bytes(second.data), OK + b"two", relay.describe())
        firstPeer = f"127.0.0.2:{first.transport.getHost().port}"
        yield relay.waitForLine(rf"{re.escape(firstPeer)} CONNECT {re.escape(target)}/tcp user='': connected")

        # A second connection from 127.0.0.2: over maxConnsPerIP=1, named
        # by its own address and port.
        third = yield self.client(front, "127.0.0.2", request)
        thirdPeer = f"127.0.0.2:{third.transport.getHost().port}"
        yield withTimeout(third.done, 10, "refused connection closed")
        self.assertEqual(bytes(third.data), b"")
        yield relay.waitForLine(
            rf"connection from {re.escape(thirdPeer)} refused: limit of 1 connections from 127\.0\.0\.2 \(maxConnsPerIP\) reached"
        )

        # Metrics count the two admitted clients' requests only.
        body = yield readBody((yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())))
        requests = re.search(rb'gost_service_requests_total\{host="[^"]*",service="service-0"\} (\S+)', body)
        self.assertIsNotNone(requests, body[:2000])
        self.assertEqual(float(requests.group(1)), 2.0)  # type: ignore[union-attr]

        # A client that skips HAProxy sends no header: closed, one line.
        direct = yield self.client(relayPort, "127.0.0.1", request)
        directPeer = f"127.0.0.1:{direct.transport.getHost().port}"
        yield withTimeout(direct.done, 15, "headerless connection closed")
        self.assertEqual(bytes(direct.data), b"")
        yield relay.waitForLine(rf"connection from {re.escape(directPeer)} closed: no PROXY header")

        for client in (first, second):
            client.transport.loseConnection()
            yield client.done
        yield relay.waitForLine(rf"{re.escape(firstPeer)} CONNECT {re.escape(target)}/tcp user='': closed")
        self.assertNotIn("Traceback", relay.out + relay.err)
        self.assertNotIn("Unhandled", relay.out + relay.err)

    def test_sendProxyV1(self):  # type: ignore[no-untyped-def]
        return self.behindHAProxy("send-proxy", "-L", "relay://127.0.0.1:0?proxyProtocol=1&maxConnsPerIP=1")

    def test_sendProxyV2(self):  # type: ignore[no-untyped-def]
        return self.behindHAProxy("send-proxy-v2", "-L", "relay://127.0.0.1:0?proxyProtocol=2&maxConnsPerIP=1")

    def test_twistdHAProxyEndpoint(self):  # type: ignore[no-untyped-def]
        """
        Twisted's own spelling, C{twistd relay --listen haproxy:tcp:...}:
        the same accept layers (header required, read before anything is
        built).
        """
        return self.behindHAProxy(
            "send-proxy-v2", "--listen", "haproxy:tcp:0:interface=127.0.0.1", "--option", "maxConnsPerIP=1",
            launcher=TWISTD_RELAY,
        )

    def test_haproxyEndpointV1(self):  # type: ignore[no-untyped-def]
        return self.behindHAProxy("send-proxy", "--listen", "haproxy:tcp:0:interface=127.0.0.1", "--option", "maxConnsPerIP=1")


class SendingTests(ProxyProtocolTestCase):
    """
    A forwarder sends a PROXY header naming the original client.
    """

    @defer.inlineCallbacks
    def test_rtcpTargetLearnsTheVisitor(self):  # type: ignore[no-untyped-def]
        """
        C{rtcp://:P/target?handler.proxyProtocol=2} through a relay
        server: the target's first bytes are a header naming the visitor
        (as the relay server named it in the stream's first response),
        then the visitor's bytes.
        """
        recorder = RecorderFactory()
        targetPort = self.listenTCP(recorder)
        server, serverPort = yield self.startRelay("-L", "relay://127.0.0.1:0?bind=true")
        remotePort = freePort()
        self.start(
            "-L", f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{targetPort}?handler.proxyProtocol=2",
            "-F", f"relay://127.0.0.1:{serverPort}",
            name="rtcp forwarder",
        )
        yield waitUntil(lambda: listeningOn(remotePort), 15, "the relay server bound the remote port")
        visitor = yield self.client(remotePort, "127.0.0.2", b"hello")
        yield waitUntil(lambda: len(visitor.data) >= 5 or visitor.lost, 10, "echo through the tunnel")
        self.assertEqual(bytes(visitor.data), b"hello", server.describe())
        (info,) = recorder.headers
        self.assertEqual((info.source.host, info.source.port), ("127.0.0.2", visitor.transport.getHost().port))
        self.assertEqual(info.destination.port, remotePort)

    @defer.inlineCallbacks
    def test_tcpForwardTargetLearnsTheClient(self):  # type: ignore[no-untyped-def]
        """
        A tcp forward sends the header from the command line
        (C{?handler.proxyProtocol=1}) and from a YAML forwarder node's
        metadata (C{proxyProtocol: 2}, which wins over the handler's):
        the target learns the client's own address and the address it
        connected to, then its bytes.
        """
        recorder = RecorderFactory()
        targetPort = self.listenTCP(recorder)
        _, urlPort = yield self.startRelay("-L", f"tcp://127.0.0.1:0/127.0.0.1:{targetPort}?handler.proxyProtocol=1")
        directory = self.childDir()
        with open(os.path.join(directory, "gost.yaml"), "w") as f:
            f.write(
                "services:\n- name: fwd\n  addr: 127.0.0.1:0\n  handler: {type: tcp, metadata: {proxyProtocol: 1}}\n"
                "  listener: {type: tcp}\n  forwarder:\n    nodes:\n"
                f"    - {{name: target-0, addr: '127.0.0.1:{targetPort}', metadata: {{proxyProtocol: 2}}}}\n"
            )
        yaml = self.start("-C", "gost.yaml", path=directory, name="yaml forwarder")
        _, yamlPort = yield yaml.waitForListening(timeout=15)
        for port, raw in ((urlPort, b"PROXY TCP4 "), (yamlPort, b"\r\n\r\n\x00\r\nQUIT\n")):
            client = yield self.client(port, "127.0.0.3", b"hello")
            yield waitUntil(lambda c=client: len(c.data) >= 5 or c.lost, 10, "echo through the forwarder")
            self.assertEqual(bytes(client.data), b"hello")
            info = recorder.headers[-1]
            self.assertTrue(info.header.startswith(raw), info.header)
            self.assertEqual((info.source.host, info.source.port), ("127.0.0.3", client.transport.getHost().port))
            self.assertEqual((info.destination.host, info.destination.port), ("127.0.0.1", port))
        self.assertEqual(len(recorder.headers), 2)

    @defer.inlineCallbacks
    def nodeGetsTheHeader(self, scheme: str = "relay", version: int = 1):  # type: ignore[no-untyped-def]
        """
        C{-F SCHEME://server?proxyProtocol=N} in front of a relay server
        (C{-L SCHEME://...?proxyProtocol=N}) that requires it: the header
        goes first, below the dialer's TLS or WebSocket, and the server
        logs the forwarder's client.
        """
        echo = EchoFactory()
        echoPort = self.listenTCP(echo)
        server, serverPort = yield self.startRelay("-L", f"{scheme}://127.0.0.1:0?proxyProtocol={version}")
        entry, entryPort = yield self.startRelay(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"{scheme}://127.0.0.1:{serverPort}?proxyProtocol={version}"
        )
        client = yield self.client(entryPort, "127.0.0.3", b"ping")
        yield waitUntil(lambda: len(client.data) >= 4 or client.lost, 10, "echo through the chain")
        self.assertEqual(bytes(client.data), b"ping", server.describe() + entry.describe())
        peer = f"127.0.0.3:{client.transport.getHost().port}"
        yield server.waitForLine(rf"{re.escape(peer)} CONNECT 127\.0\.0\.1:{echoPort}/tcp user='': connected")
        client.transport.loseConnection()
        yield client.done
        yield server.waitForLine(rf"{re.escape(peer)} CONNECT 127\.0\.0\.1:{echoPort}/tcp user='': closed")
        for child in (server, entry):
            self.assertNotIn("Traceback", child.out + child.err, child.describe())

    def test_nodeGetsTheHeader(self):  # type: ignore[no-untyped-def]
        return self.nodeGetsTheHeader()

    def test_tlsListener(self):  # type: ignore[no-untyped-def]
        """
        On tls, ws and wss listeners the header comes before the TLS
        handshake / WebSocket upgrade (issue 17.1: tcp/tls/ws/wss).
        """
        return self.nodeGetsTheHeader("relay+tls", 2)

    def test_wsListener(self):  # type: ignore[no-untyped-def]
        return self.nodeGetsTheHeader("relay+ws", 1)

    def test_wssListener(self):  # type: ignore[no-untyped-def]
        return self.nodeGetsTheHeader("relay+wss", 2)
