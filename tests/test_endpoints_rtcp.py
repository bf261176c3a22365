"""
The C{rtcp:} server endpoint and L{bindEndpoint} against a real relay
server: a C{python -m gostrelay -L relay://127.0.0.1:P?bind=true} child,
this test process being the Twisted program that listens through it, and
clients reaching the echo it serves on the server's port.  Real sockets on
127.0.0.1 only; every child is stopped at cleanup, every wait is bounded.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.error import CannotListenError, ConnectError
from twisted.internet.protocol import Factory, Protocol

from gostrelay.endpoints import bindEndpoint
from gostrelay.transports.kcp import _KCPClientSocket
from tests.processes import ROOT
from tests.support.cases import ProcessTestCase
from tests.support.reactor import freePort, waitUntil, withTimeout
from tests.support.targets import Collector, EchoFactory

MIB = 1024 * 1024


class LocalPortCollector(Collector):
    def connectionMade(self) -> None:
        self.localPort = self.transport.getHost().port  # type: ignore[union-attr]
        super().connectionMade()


class RemoteEndpointTestCase(ProcessTestCase):
    @defer.inlineCallbacks
    def startRelay(self, port: int = 0, query: str = "bind=true", scheme: str = "relay"):  # type: ignore[no-untyped-def]
        """
        A relay server child on 127.0.0.1; fires with (process, port).
        """
        url = f"{scheme}://127.0.0.1:{port}" + (f"?{query}" if query else "")
        proc = self.start("-L", url, name="relay server")
        _, actual = yield proc.waitForListening(timeout=15)
        return proc, actual

    def listen(self, endpoint: Any, factory: Any, abortOpen: bool = False) -> defer.Deferred[Any]:
        # A visitor's connection left open at the end fails the test.
        return super().listen(endpoint, factory, abortOpen)

    def rtcp(self, remotePort: int, relayPort: int, extra: str = "") -> Any:
        return serverFromString(
            reactor, rf"rtcp:{remotePort}:interface=127.0.0.1:via=tcp\:127.0.0.1\:{relayPort}{extra}"
        )

    @defer.inlineCallbacks
    def echoThrough(self, port: int, size: int):  # type: ignore[no-untyped-def]
        """
        Echo C{size} random bytes through 127.0.0.1:port; fire with the
        client once it is done.
        """
        payload = os.urandom(size)
        client = LocalPortCollector(payload)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
        yield withTimeout(client.done, 30, f"the echo through port {port}")
        self.assertEqual(len(client.data), size)
        self.assertTrue(bytes(client.data) == payload, "echoed bytes differ")
        return client


class RemoteEndpointTests(RemoteEndpointTestCase):
    @defer.inlineCallbacks
    def test_echoOnTheRelayServersPort(self):  # type: ignore[no-untyped-def]
        """
        One serverFromString call exposes this program's echo on the relay
        server's port: 1 MiB comes back intact; getHost() is the address the
        server reported; the factory builds each visitor's protocol for the
        visitor's own address.
        """
        relay, relayPort = yield self.startRelay()
        remotePort = freePort()
        factory = EchoFactory()
        port = yield self.listen(self.rtcp(remotePort, relayPort), factory)
        self.assertEqual(port.getHost(), IPv4Address("TCP", "127.0.0.1", remotePort))
        client = yield self.echoThrough(remotePort, MIB)
        self.assertEqual(factory.addresses, [IPv4Address("TCP", "127.0.0.1", client.localPort)])
        yield relay.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': bound on 127\.0\.0\.1:{remotePort}")

    @defer.inlineCallbacks
    def test_documentedProgram(self):  # type: ignore[no-untyped-def]
        """
        docs/twisted.md's complete program (an echo on port 2222 of the
        relay server at 127.0.0.1:8420), run as a reader would, with free
        ports for 2222 and 8420: a visitor's bytes come back.
        """
        with open(os.path.join(ROOT, "docs", "twisted.md"), encoding="utf-8") as f:
            programs = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        [program] = [p for p in programs if "task.react" in p and "rtcp:2222" in p]
        relay, relayPort = yield self.startRelay()
        remotePort = freePort()
        path = self.childDir()
        script = os.path.join(path, "echo_on_relay.py")
        with open(script, "w") as f:
            f.write(program.replace("2222", str(remotePort)).replace("8420", str(relayPort)))
        self.start(script, name="docs/twisted.md's program", launcher=[sys.executable], path=path)
        yield relay.waitForLine(rf"BIND 0\.0\.0\.0:{remotePort}/tcp user='': bound", timeout=20)
        yield self.echoThrough(remotePort, 100_000)

    @defer.inlineCallbacks
    def test_rebindAfterRelayRestart(self):  # type: ignore[no-untyped-def]
        """
        The relay server restarts: the port binds again by itself (same
        port object, same address) and serves again.
        """
        relayPort = freePort()
        relay, _ = yield self.startRelay(relayPort)
        remotePort = freePort()
        port = yield self.listen(self.rtcp(remotePort, relayPort), EchoFactory())
        yield self.echoThrough(remotePort, 1000)
        yield relay.stop()
        yield self.startRelay(relayPort)
        yield waitUntil(lambda: port.binds >= 2, 15, "a second bind")
        self.assertEqual(port.getHost(), IPv4Address("TCP", "127.0.0.1", remotePort))
        yield self.echoThrough(remotePort, 200_000)

    @defer.inlineCallbacks
    def test_refusedWithoutBind(self):  # type: ignore[no-untyped-def]
        """
        A relay server without bind=true refuses: listen() fails with
        CannotListenError naming its answer.
        """
        relay, relayPort = yield self.startRelay(query="")
        failure = yield self.assertFailure(self.rtcp(freePort(), relayPort).listen(EchoFactory()), CannotListenError)
        self.assertIn("Forbidden", str(failure))
        self.assertIn("bind=true", str(failure))
        yield relay.waitForLine(r"refused with Forbidden")

    @defer.inlineCallbacks
    def test_stopListeningFreesThePort(self):  # type: ignore[no-untyped-def]
        """
        stopListening() releases the port on the relay server: visitors are
        refused and the port can be bound again, by anyone.
        """
        relay, relayPort = yield self.startRelay()
        remotePort = freePort()
        port = yield self.rtcp(remotePort, relayPort).listen(EchoFactory())
        yield self.echoThrough(remotePort, 1000)
        yield port.stopListening()
        yield relay.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': released", timeout=10)
        connecting = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", remotePort, timeout=5), Protocol())
        yield self.assertFailure(connecting, ConnectError)
        mine = reactor.listenTCP(remotePort, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
        yield mine.stopListening()

    @defer.inlineCallbacks
    def test_stopListeningOverTLS(self):  # type: ignore[no-untyped-def]
        """
        Through a TLS carrier (gosttls: to a relay+tls server) too,
        stopListening() closes the BIND and fires, and the server releases
        the port; TLS closes only once the BIND session has given up the
        carrier.
        """
        relay, relayPort = yield self.startRelay(scheme="relay+tls")
        remotePort = freePort()
        endpoint = serverFromString(
            reactor, rf"rtcp:{remotePort}:interface=127.0.0.1:via=gosttls\:tcp\\\:127.0.0.1\\\:{relayPort}"
        )
        port = yield self.listen(endpoint, EchoFactory())
        yield self.echoThrough(remotePort, 1000)
        yield withTimeout(port.stopListening(), 10, "stopListening over TLS")
        yield relay.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': released", timeout=10)

    @defer.inlineCallbacks
    def test_bindEndpointFromURLs(self):  # type: ignore[no-untyped-def]
        """
        bindEndpoint takes GOST -F URLs (credentials included) like
        chainEndpoint.
        """
        relay, relayPort = yield self.startRelay()
        remotePort = freePort()
        endpoint = bindEndpoint(reactor, [f"relay://127.0.0.1:{relayPort}"], remotePort, interface="127.0.0.1")
        port = yield self.listen(endpoint, EchoFactory())
        self.assertEqual(port.getHost(), IPv4Address("TCP", "127.0.0.1", remotePort))
        yield self.echoThrough(remotePort, 300_000)

    @defer.inlineCallbacks
    def test_credentials(self):  # type: ignore[no-untyped-def]
        """
        A relay server with users: the rtcp: username/password and the
        bindEndpoint URL's user info are sent; a wrong password is a
        CannotListenError naming the answer.
        """
        relay = self.start("-L", "relay://u:p@127.0.0.1:0?bind=true", name="relay with a user")
        _, relayPort = yield relay.waitForListening(timeout=15)
        remotePort = freePort()
        port = yield self.listen(self.rtcp(remotePort, relayPort, ":username=u:password=p"), EchoFactory())
        yield self.echoThrough(remotePort, 1000)
        yield port.stopListening()
        failure = yield self.assertFailure(
            self.rtcp(freePort(), relayPort, ":username=u:password=wrong").listen(EchoFactory()), CannotListenError
        )
        self.assertIn("Unauthorized", str(failure))
        other = freePort()
        endpoint = bindEndpoint(reactor, [f"relay://u:p@127.0.0.1:{relayPort}"], other, interface="127.0.0.1")
        yield self.listen(endpoint, EchoFactory())
        yield self.echoThrough(other, 1000)

    @defer.inlineCallbacks
    def test_viaKCP(self):  # type: ignore[no-untyped-def]
        """
        via is any client description: here kcp: to a relay+kcp server.
        """
        relay, relayPort = yield self.startRelay(scheme="relay+kcp")
        remotePort = freePort()
        endpoint = serverFromString(
            reactor, rf"rtcp:{remotePort}:interface=127.0.0.1:via=kcp\:127.0.0.1\:{relayPort}\:idle\=0.1"
        )
        port = yield endpoint.listen(EchoFactory())
        yield self.echoThrough(remotePort, 300_000)
        yield port.stopListening()

        def kcpSockets() -> list[Any]:
            return [r for r in reactor.getReaders() if isinstance(getattr(r, "protocol", None), _KCPClientSocket)]  # type: ignore[attr-defined]

        # The kcp session (its UDP socket) closes once its last stream, the
        # BIND, is gone.
        yield waitUntil(lambda: not kcpSockets(), 5, "the kcp session closed")


class ListenDescriptionTests(RemoteEndpointTestCase):
    """
    The same endpoint as a service description:
    C{gostrelay --listen rtcp:PORT:via=... --handler tcp --target ...}.
    """

    @defer.inlineCallbacks
    def test_forwarderOnTheRelayServersPort(self):  # type: ignore[no-untyped-def]
        echo = EchoFactory()
        echoPort = reactor.listenTCP(0, echo, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(echoPort.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in list(echo.open)])  # type: ignore[union-attr]
        relay, relayPort = yield self.startRelay()
        remotePort = freePort()
        client = self.start(
            "--listen", rf"rtcp:{remotePort}:interface=127.0.0.1:via=tcp\:127.0.0.1\:{relayPort}",
            "--handler", "tcp", "--target", f"127.0.0.1:{echoPort.getHost().port}",
            name="gostrelay --listen rtcp:",
        )
        _, port = yield client.waitForListening(timeout=20)
        self.assertEqual(port, remotePort)
        yield self.echoThrough(remotePort, 300_000)
        yield client.stop()
        yield relay.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': released", timeout=10)
        # One BIND, not a second listen() of the same service refused.
        self.assertEqual(client.out.count("bound 127.0.0.1"), 1, client.describe())
        self.assertNotIn("Service Unavailable", client.out + client.err, client.describe())
        self.assertNotIn("Traceback", client.out + client.err, client.describe())

    @defer.inlineCallbacks
    def test_refusalIsOneLine(self):  # type: ignore[no-untyped-def]
        relay, relayPort = yield self.startRelay(query="")
        client = self.start(
            "--listen", rf"rtcp:{freePort()}:interface=127.0.0.1:via=tcp\:127.0.0.1\:{relayPort}",
            "--handler", "tcp", "--target", "127.0.0.1:9",
            name="gostrelay --listen rtcp: (refused)",
        )
        yield client.waitForLine(r"refuses BIND \(start it with bind=true\)", timeout=20)
        self.assertNotIn("Traceback", client.out + client.err)
        self.assertNotIn("AlreadyCalledError", client.out + client.err)
