"""
Tests of gostrelay-echo's types: units on in-memory transports and a
L{MemoryReactorClock}, and the plugin registry finding both types by name
(run them with C{python -m twisted.trial gostrelay_echo} once the package is
on the path).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gostrelay import registry
from gostrelay.config.model import ConfigError, DialerConfig, HandlerConfig, NodeConfig, ServiceConfig
from gostrelay_echo.dialer import SourceTCPDialer
from gostrelay_echo.handler import EchoHandler, EchoProtocol

PEER = IPv4Address("TCP", "192.0.2.1", 40000)


def echoService(**metadata: object) -> ServiceConfig:
    return ServiceConfig(name="echo-0", addr=":9999", handler=HandlerConfig(type="echo", metadata=dict(metadata)))


class EchoHandlerTests(SynchronousTestCase):
    def connect(self, **metadata: object) -> tuple[MemoryReactorClock, EchoProtocol, StringTransport]:
        reactor = MemoryReactorClock()
        handler = EchoHandler(reactor, echoService(**metadata), None)
        protocol = handler.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return reactor, protocol, transport

    def test_echo(self) -> None:
        reactor, protocol, transport = self.connect()
        protocol.dataReceived(b"hello")
        protocol.dataReceived(b" world")
        self.assertEqual(transport.value(), b"hello world")

    def test_backPressure(self) -> None:
        """
        The transport produces its own writes: when its buffer fills it
        pauses itself, and with it the peer.
        """
        reactor, protocol, transport = self.connect()
        self.assertIs(transport.producer, transport)
        self.assertTrue(transport.streaming)

    def test_idleTimeout(self) -> None:
        reactor, protocol, transport = self.connect(idleTimeout="10s")
        reactor.advance(9)
        protocol.dataReceived(b"x")
        reactor.advance(9)
        self.assertFalse(transport.disconnecting)
        reactor.advance(1.5)
        self.assertTrue(transport.disconnecting)

    def test_noIdleTimeout(self) -> None:
        reactor, protocol, transport = self.connect(idleTimeout=0)
        reactor.advance(10**6)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_badOption(self) -> None:
        e = self.assertRaises(ConfigError, EchoHandler, MemoryReactorClock(), echoService(idleTimeout=-1), None)
        self.assertIn("echo-0", str(e))


class SourceTCPDialerTests(SynchronousTestCase):
    def node(self, **metadata: object) -> NodeConfig:
        return NodeConfig(name="node-0", addr="127.0.0.1:8420", dialer=DialerConfig(type="srctcp", metadata=dict(metadata)))

    def test_dialsFromTheSourceAddress(self) -> None:
        reactor = MemoryReactorClock()
        dialer = SourceTCPDialer(reactor, self.node(source="127.0.0.2"), None)
        endpoint = dialer.endpoint("127.0.0.1:8420", timeout=3)
        endpoint.connect(Factory())
        [(host, port, factory, timeout, bindAddress)] = reactor.tcpClients
        self.assertEqual((host, port, timeout, bindAddress), ("127.0.0.1", 8420, 3, ("127.0.0.2", 0)))

    def test_throughAnEarlierHop(self) -> None:
        through = object()
        dialer = SourceTCPDialer(MemoryReactorClock(), self.node(source="127.0.0.2"), None)
        self.assertIs(dialer.endpoint("x:1", through), through)  # type: ignore[arg-type]

    def test_sourceRequired(self) -> None:
        e = self.assertRaises(ConfigError, SourceTCPDialer, MemoryReactorClock(), self.node(source="somewhere"), None)
        self.assertIn("source=IP", str(e))


class RegistryTests(SynchronousTestCase):
    def test_typesByName(self) -> None:
        """
        Installed, the package's plugin file makes both types known by name.
        """
        handler = registry.lookup("handler", "echo")
        dialer = registry.lookup("dialer", "srctcp")
        self.assertIsNotNone(handler)
        self.assertIsNotNone(dialer)
        self.assertIs(handler.load(), EchoHandler)  # type: ignore[union-attr]
        self.assertIs(dialer.load(), SourceTCPDialer)  # type: ignore[union-attr]


class EndpointStringTests(SynchronousTestCase):
    def test_srctcp(self) -> None:
        reactor = MemoryReactorClock()
        endpoint = clientFromString(reactor, "srctcp:127.0.0.1:8420:source=127.0.0.2:timeout=3")
        endpoint.connect(Factory())
        [(host, port, factory, timeout, bindAddress)] = reactor.tcpClients
        self.assertEqual((host, port, timeout, bindAddress), ("127.0.0.1", 8420, 3, ("127.0.0.2", 0)))

    def test_srctcpErrors(self) -> None:
        for description in ("srctcp:127.0.0.1:1", "srctcp:127.0.0.1:1:source=127.0.0.2:colour=red", "srctcp:x:source=127.0.0.2"):
            self.assertRaises(ValueError, clientFromString, MemoryReactorClock(), description)
