"""
Integration tests of the tls, ws and wss data channels as users run them:
C{python -m gostrelay} children (each in its own empty working directory,
with its own empty C{HOME}) for the relay server and for a forwarding
client, 1 MiB echoed through them to an in-process echo target over real
sockets on 127.0.0.1.

Every child is stopped (TERM, then KILL) at cleanup; every socket and timer
the test opened is checked closed (L{ReactorSettler}).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.processes import LineProcessProtocol
from tests.support.cases import MIB, ProcessTestCase, TransportTestCase


class ChildrenTestCase(ProcessTestCase, TransportTestCase):
    timeout = 40

    @defer.inlineCallbacks
    def startChild(self, *args: str):  # type: ignore[no-untyped-def]
        """
        Start C{python -m gostrelay ARGS} in a fresh directory, its HOME;
        fire with C{(process, port, home)} once it says where it listens.
        """
        home = self.childDir()
        proc = self.start(*args, path=home)
        host, port = yield proc.waitForListening(timeout=15)
        self.assertEqual(host, "127.0.0.1", proc.describe())
        return proc, port, home

    def writeYAML(self, data: Any) -> str:
        path = os.path.join(self.childDir(), "gost.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        return path

    @defer.inlineCallbacks
    def assertEchoesThrough(self, port: int, size: int, *procs: LineProcessProtocol):  # type: ignore[no-untyped-def]
        payload = os.urandom(size)
        client = yield self.exchange(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), payload, timeout=20)
        described = "\n".join(p.describe() for p in procs)
        self.assertIsNone(getattr(client, "connectError", None), described)
        self.assertEqual(len(client.data), size, described)
        self.assertEqual(hashlib.sha256(client.data).hexdigest(), hashlib.sha256(payload).hexdigest())

    @defer.inlineCallbacks
    def oneHop(self, scheme: str):  # type: ignore[no-untyped-def]
        """
        C{-L SCHEME://127.0.0.1:0} and a client C{-L tcp://.../echo -F
        SCHEME://...}; fire with the server's HOME.
        """
        echo, echoPort = self.startEcho()
        server, port, serverHome = yield self.startChild("-L", f"{scheme}://127.0.0.1:0")
        client, fwd, clientHome = yield self.startChild(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"{scheme}://127.0.0.1:{port}"
        )
        yield self.assertEchoesThrough(fwd, MIB, server, client)
        yield self.assertEchoesThrough(fwd, 1000, server, client)
        self.assertEqual(len(echo.accepted), 2)
        self.assertFalse(os.path.exists(os.path.join(clientHome, ".gost")), "the client needs no certificate")
        return serverHome


class OneHopTests(ChildrenTestCase):
    @defer.inlineCallbacks
    def test_relayTLS(self):  # type: ignore[no-untyped-def]
        """
        The server generates its certificate into its HOME/.gost.
        """
        home = yield self.oneHop("relay+tls")
        self.assertTrue(os.path.isfile(os.path.join(home, ".gost", "auto-ca-cert.pem")))
        self.assertTrue(os.path.isfile(os.path.join(home, ".gost", "auto-ca-key.pem")))

    @defer.inlineCallbacks
    def test_relayWS(self):  # type: ignore[no-untyped-def]
        home = yield self.oneHop("relay+ws")
        self.assertFalse(os.path.exists(os.path.join(home, ".gost")), "ws needs no certificate")

    @defer.inlineCallbacks
    def test_relayWSS(self):  # type: ignore[no-untyped-def]
        home = yield self.oneHop("relay+wss")
        self.assertTrue(os.path.isfile(os.path.join(home, ".gost", "auto-ca-cert.pem")))


class MixedChainTests(ChildrenTestCase):
    @defer.inlineCallbacks
    def test_tlsThenWS(self):  # type: ignore[no-untyped-def]
        """
        C{-F relay+tls://A -F relay+ws://B}: hop 2's WebSocket runs inside
        hop 1's relay CONNECT (A dials B, B dials the echo).

        Regression test (a bug found by this test and fixed in
        c49b9b3); before the fix: the client cannot open the ws hop
        over the relay-over-TLS stream (RelayClientProtocol claims
        ISSLTransport and autobahn's connectionMade raises "cannot
        determine TLS channel ID"; see
        test_endpoints.ChainEndpointTests.test_mixedChainTLSThenWS), so the
        forwarded connection is closed without data.
        """
        echo, echoPort = self.startEcho()
        (a, portA, _), (b, portB, _) = yield defer.gatherResults(
            [self.startChild("-L", "relay+tls://127.0.0.1:0"), self.startChild("-L", "relay+ws://127.0.0.1:0")]
        )
        client, fwd, _ = yield self.startChild(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}?dialTimeout=3s",
            "-F", f"relay+tls://127.0.0.1:{portA}",
            "-F", f"relay+ws://127.0.0.1:{portB}",
        )
        yield self.assertEchoesThrough(fwd, MIB, a, b, client)
        # A relayed to B; B relayed to the echo.
        yield a.waitForLine(rf"CONNECT 127\.0\.0\.1:{portB}/tcp .*connected", timeout=5)
        yield b.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*connected", timeout=5)

    @defer.inlineCallbacks
    def test_wsThenTLS(self):  # type: ignore[no-untyped-def]
        """
        The other order: a tls hop inside a ws hop's relay CONNECT.

        Regression test (a bug found by this test and fixed in
        c49b9b3); before the fix: the forwarder's dial through the
        chain fails with "AttributeError: 'WebSocketStream' object has no
        attribute 'setTcpNoDelay'" (logged by the client) and then times
        out.  Hop 2's RelayClientProtocol copies the interfaces of its TLS
        carrier, which claims ISSLTransport and hence ITCPTransport;
        gostrelay.pipe.setNoDelay believes it, and the call is forwarded
        by __getattr__ (RelayClientProtocol, then the TLS wrapper, then hop
        1's RelayClientProtocol) down to the WebSocketStream, which has no
        such method (only OSError is caught).  The same happens for a tls
        hop after a wss hop.  (chainEndpoint with a plain application
        protocol works: nobody calls setTcpNoDelay there.)
        """
        echo, echoPort = self.startEcho()
        (a, portA, _), (b, portB, _) = yield defer.gatherResults(
            [self.startChild("-L", "relay+ws://127.0.0.1:0"), self.startChild("-L", "relay+tls://127.0.0.1:0")]
        )
        client, fwd, _ = yield self.startChild(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}?dialTimeout=3s",
            "-F", f"relay+ws://127.0.0.1:{portA}",
            "-F", f"relay+tls://127.0.0.1:{portB}",
        )
        yield self.assertEchoesThrough(fwd, MIB, a, b, client)
        yield a.waitForLine(rf"CONNECT 127\.0\.0\.1:{portB}/tcp .*connected", timeout=5)
        yield b.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*connected", timeout=5)


class YAMLPathTests(ChildrenTestCase):
    def clientConfig(self, echoPort: int, serverPort: int, path: str) -> dict[str, Any]:
        return {
            "services": [
                {
                    "name": "fwd",
                    "addr": "127.0.0.1:0",
                    "handler": {"type": "tcp", "chain": "chain-0"},
                    "listener": {"type": "tcp"},
                    "forwarder": {"nodes": [{"name": "echo", "addr": f"127.0.0.1:{echoPort}"}]},
                }
            ],
            "chains": [
                {
                    "name": "chain-0",
                    "hops": [
                        {
                            "name": "hop-0",
                            "nodes": [
                                {
                                    "name": "node-0",
                                    "addr": f"127.0.0.1:{serverPort}",
                                    "connector": {"type": "relay"},
                                    "dialer": {"type": "wss", "metadata": {"path": path}},
                                }
                            ],
                        }
                    ],
                }
            ],
        }

    @defer.inlineCallbacks
    def test_wssTunnelPath(self):  # type: ignore[no-untyped-def]
        """
        listener {type: wss, metadata: {path: /tunnel}} with a dialer of
        the same path works; a dialer with another path gets nothing
        through (the server answers 404, no relay request is served).
        """
        echo, echoPort = self.startEcho()
        serverYAML = self.writeYAML(
            {
                "services": [
                    {
                        "name": "relay-wss",
                        "addr": "127.0.0.1:0",
                        "handler": {"type": "relay"},
                        "listener": {"type": "wss", "metadata": {"path": "/tunnel"}},
                    }
                ]
            }
        )
        server, port, home = yield self.startChild("-C", serverYAML)
        (good, goodPort, _), (bad, badPort, _) = yield defer.gatherResults(
            [
                self.startChild("-C", self.writeYAML(self.clientConfig(echoPort, port, "/tunnel"))),
                self.startChild("-C", self.writeYAML(self.clientConfig(echoPort, port, "/ws"))),
            ]
        )
        yield self.assertEchoesThrough(goodPort, MIB, server, good)
        self.assertEqual(len(echo.accepted), 1)

        client = yield self.exchange(TCP4ClientEndpoint(reactor, "127.0.0.1", badPort, timeout=5), b"wrong path", timeout=10)
        self.assertEqual(bytes(client.data), b"", bad.describe())
        self.assertEqual(len(echo.accepted), 1, "the wrong path must not reach the target")
        served = [line for line in server.lines["out"] if f"CONNECT 127.0.0.1:{echoPort}/tcp" in line and "connected" in line]
        self.assertEqual(len(served), 1, server.describe())
