"""
The C{kcp:} endpoint strings (L{gostrelay.endpoints.kcp}): an echo both
ways between a C{kcp:} server and a C{kcp:} client in this process, and
interoperation with the C{relay+kcp} listener and dialer of a C{python -m
gostrelay} child.  Real UDP and TCP sockets on 127.0.0.1 only; every child
is stopped at cleanup, every wait is bounded, and each test waits until its
kcp sessions have closed their sockets.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, connectProtocol, serverFromString

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.endpoints.kcp import KCPClientEndpoint, KCPServerEndpoint
from gostrelay.handlers.relay import RelayHandler
from tests.support.cases import ProcessTestCase
from tests.support.reactor import waitUntil, withTimeout
from tests.support.targets import Collector, EchoFactory

MIB = 1024 * 1024


class KCPEndpointTestCase(ProcessTestCase):
    """
    KCP endpoints in this process, relay+kcp children; every kcp socket
    (client sessions included) closed by the end.
    """

    @defer.inlineCallbacks
    def exchange(self, endpoint: Any, size: int, timeout: float = 40):  # type: ignore[no-untyped-def]
        """
        Echo C{size} random bytes through a connection of C{endpoint}; fire
        with the collector once everything came back and it closed.
        """
        payload = os.urandom(size)
        client = Collector(payload)
        yield connectProtocol(endpoint, client)
        yield withTimeout(client.done, timeout, "the echo")
        self.assertEqual(len(client.data), size)
        self.assertEqual(hashlib.sha256(client.data).hexdigest(), hashlib.sha256(payload).hexdigest())
        return client


class KCPEndpointTests(KCPEndpointTestCase):
    @defer.inlineCallbacks
    def test_echoBothWays(self):  # type: ignore[no-untyped-def]
        """
        A kcp: server and a kcp: client with the same key and cipher: 2 MiB
        echoed back intact, then a second connection on the same session;
        the server's factory gets the client's UDP address.
        """
        factory = EchoFactory()
        port = yield self.listen(serverFromString(reactor, "kcp:0:interface=127.0.0.1:kcp.key=s3cret:crypt=aes-128"), factory)
        self.assertEqual(port.getHost().host, "127.0.0.1")
        client = clientFromString(reactor, f"kcp:127.0.0.1:{port.getHost().port}:key=s3cret:kcp.crypt=aes-128:idle=0.2")
        self.assertIsInstance(client, KCPClientEndpoint)
        yield self.exchange(client, 2 * MIB)
        [session] = client.dialer.clients.values()
        yield self.exchange(client, 1000)
        self.assertEqual(list(client.dialer.clients.values()), [session])
        self.assertEqual(len(factory.addresses), 2)
        self.assertEqual(factory.addresses[0].host, "127.0.0.1")
        self.assertEqual(factory.addresses[0].port, session.port.getHost().port)

    @defer.inlineCallbacks
    def test_idleSessionCloses(self):  # type: ignore[no-untyped-def]
        """
        The client's session (its UDP socket) closes idle= seconds after its
        last stream; a later connection opens a new one.
        """
        port = yield self.listen(serverFromString(reactor, "kcp:0:interface=127.0.0.1"), EchoFactory())
        client = clientFromString(reactor, f"kcp:host=127.0.0.1:port={port.getHost().port}:idle=0.3")
        yield self.exchange(client, 1000)
        self.assertEqual(len(client.dialer.clients), 1)
        yield waitUntil(lambda: not client.dialer.clients, 5, "the idle session closed")
        yield self.exchange(client, 1000)

    @defer.inlineCallbacks
    def test_fecAndWindowsFromKeywordsAndFile(self):  # type: ignore[no-untyped-def]
        """
        FEC shards and windows from keywords, and GOST's JSON file (c=),
        agree between the two ends.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            json.dump({"datashard": 5, "parityshard": 2}, f)
        server = serverFromString(reactor, f"kcp:0:interface=127.0.0.1:c={path}:sndwnd=128:rcvwnd=128:mode=fast")
        self.assertEqual((server.listener.config.dataShards, server.listener.config.parityShards), (5, 2))
        self.assertEqual(server.listener.config.sndwnd, 128)
        port = yield self.listen(server, EchoFactory())
        client = clientFromString(
            reactor, f"kcp:127.0.0.1:{port.getHost().port}:datashard=5:parityshard=2:kcp.sndwnd=128:rcvwnd=128:mode=fast:idle=0.2"
        )
        self.assertEqual((client.dialer.config.dataShards, client.dialer.config.parityShards), (5, 2))
        yield self.exchange(client, 500_000)

    def test_parseErrors(self) -> None:
        for parse, description, expected in (
            (serverFromString, "kcp:0:kcp.kee=x", "unknown option 'kcp.kee'"),
            (serverFromString, "kcp:interface=127.0.0.1", "needs a port"),
            (serverFromString, "kcp:0:crypt=twofish", "twofish"),
            (serverFromString, "kcp:0:mtu=9000", "at most 1500"),
            (clientFromString, "kcp:127.0.0.1", "needs a host and a port"),
            (clientFromString, "kcp:127.0.0.1:1:idle=soon", "idle must be a number"),
            (clientFromString, "kcp:127.0.0.1:1:tcp=true", "fake TCP"),
        ):
            e = self.assertRaises(ValueError, parse, reactor, description)
            self.assertIn(expected, str(e), description)

    def test_serverEndpointType(self) -> None:
        self.assertIsInstance(serverFromString(reactor, "kcp:8420"), KCPServerEndpoint)


class KCPInteropTests(KCPEndpointTestCase):
    @defer.inlineCallbacks
    def test_clientToRelayKCPListener(self):  # type: ignore[no-untyped-def]
        """
        relay: over kcp: reaches a target through a child's
        C{-L relay+kcp://} listener with GOST's defaults on both ends.
        """
        echo, echoPort = self.startEcho()
        server = self.start("-L", "relay+kcp://127.0.0.1:0", name="relay+kcp server")
        _, kcpPort = yield server.waitForListening(timeout=15)
        endpoint = clientFromString(
            reactor, rf"relay:kcp\:127.0.0.1\:{kcpPort}\:idle\=0.2:host=127.0.0.1:port={echoPort}"
        )
        yield self.exchange(endpoint, MIB)
        yield self.exchange(endpoint, 1000)

    @defer.inlineCallbacks
    def test_relayKCPDialerToServer(self):  # type: ignore[no-untyped-def]
        """
        A child's C{-F relay+kcp://} dialer reaches a relay server that this
        program serves on a kcp: server endpoint.
        """
        echo, echoPort = self.startEcho()
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0"], [])
        relay = RelayHandler(reactor, config.services[0], BuildContext(reactor, config))
        port = yield self.listen(serverFromString(reactor, "kcp:0:interface=127.0.0.1"), relay)
        entry = self.start(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"relay+kcp://127.0.0.1:{port.getHost().port}",
            name="forwarder over relay+kcp",
        )
        _, entryPort = yield entry.waitForListening(timeout=15)
        yield self.exchange(TCP4ClientEndpoint(reactor, "127.0.0.1", entryPort, timeout=5), MIB)
        # The child's session goes with it; ours close at stopListening.
        yield entry.stop()
