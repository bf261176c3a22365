"""
Test helpers for programs that dial through relay servers: an in-memory
relay server and a client pump, in the shape of C{treq.testing.StubTreq}.

Everything runs over L{twisted.test.iosim} fake transports on a
L{MemoryReactorClock}: no sockets, no real time, deterministic.  The relay
server is the real L{RelayHandler} and the client the real relay connector,
so the bytes between them are the GOST wire format.  Example::

    from twisted.internet.endpoints import connectProtocol
    from twisted.internet.protocol import Factory, Protocol
    from twisted.trial.unittest import SynchronousTestCase
    from gostrelay.testing import MemoryRelay

    class Echo(Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

    class Accumulate(Protocol):
        received = b""

        def dataReceived(self, data):
            self.received += data

    class EchoThroughRelay(SynchronousTestCase):
        def test_echo(self):
            relay = MemoryRelay({"example.com:7": Factory.forProtocol(Echo)})
            client = Accumulate()
            d = connectProtocol(relay.clientEndpoint("example.com", 7), client)
            relay.flush()
            client.transport.write(b"hi")
            relay.flush()
            self.assertEqual(client.received, b"hi")

Targets are protocol factories keyed by C{"host:port"}; dialing an unknown
target fails as a refused connection would (the relay answers 0x07).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from zope.interface import implementer

from gostrelay.build import BuildContext
from gostrelay.config.model import AuthConfig, AutherConfig
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.endpoints import relayEndpoint
from gostrelay.handlers.relay import RelayHandler
from gostrelay.router import Router


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    Connects a client protocol to a fresh protocol of C{serverFactory} over
    an iosim pump registered with C{relay}.
    """

    def __init__(self, relay: MemoryRelay, serverFactory: IProtocolFactory, port: int) -> None:
        self.relay = relay
        self.serverFactory = serverFactory
        self.port = port

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        self.relay._nextPort += 1
        clientAddress = IPv4Address("TCP", "127.0.0.1", self.relay._nextPort)
        serverAddress = IPv4Address("TCP", "127.0.0.1", self.port)
        server = self.serverFactory.buildProtocol(clientAddress)
        client = factory.buildProtocol(serverAddress)
        if server is None or client is None:
            return defer.fail(ConnectionRefusedError("factory refused the connection"))
        serverTransport = iosim.FakeTransport(server, True, serverAddress, clientAddress)
        clientTransport = iosim.FakeTransport(client, False, clientAddress, serverAddress)
        pump = iosim.connect(server, serverTransport, client, clientTransport, greet=False)
        self.relay.pumps.append(pump)
        return defer.succeed(client)


class _MemoryRoute:
    """
    The relay server's outgoing connections: to the in-memory targets.
    """

    def __init__(self, relay: MemoryRelay) -> None:
        self.relay = relay

    def endpoint(self, network: str, address: str, timeout: float) -> IStreamClientEndpoint:
        return _TargetEndpoint(self.relay, address)


@implementer(IStreamClientEndpoint)
class _TargetEndpoint:
    def __init__(self, relay: MemoryRelay, address: str) -> None:
        self.relay = relay
        self.address = address

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        target = self.relay.targets.get(self.address)
        if target is None:
            return defer.fail(ConnectionRefusedError(f"no in-memory target {self.address}"))
        port = int(self.address.rsplit(":", 1)[1]) if ":" in self.address else 0
        # The target is the server side of this connection.
        return MemoryEndpoint(self.relay, target, port).connect(factory)


class MemoryRelay:
    """
    An in-memory relay server in front of in-memory targets.

    @param targets: C{{"host:port": factory}} the relay server may reach.
    @param users: C{{user: password}}; when given, the server requires them.
    @param url: the relay service URL (its options: C{readTimeout}, ...).
    """

    def __init__(
        self,
        targets: Mapping[str, IProtocolFactory],
        users: Mapping[str, str] | None = None,
        url: str = "relay://127.0.0.1:8420",
    ) -> None:
        self.reactor = MemoryReactorClock()
        self.targets = dict(targets)
        self.pumps: list[iosim.IOPump] = []
        self._nextPort = 40000
        config = buildConfigFromCommandLine([url], [])
        service = config.services[0]
        assert service.handler is not None
        if users:
            config.authers.append(
                AutherConfig(name="memory-users", auths=[AuthConfig(u, p) for u, p in users.items()])
            )
            service.handler.auther = "memory-users"
        self.handler = RelayHandler(self.reactor, service, BuildContext(self.reactor, config))
        self.handler.options.router = Router(self.reactor, _MemoryRoute(self), self.handler.options.router.dialTimeout)

    def serverEndpoint(self) -> MemoryEndpoint:
        """
        An endpoint reaching the relay server itself (to speak the relay
        protocol by hand).
        """
        return MemoryEndpoint(self, self.handler, 8420)

    def clientEndpoint(
        self, host: str, port: int, username: str | None = None, password: str = "", nodelay: bool = False
    ) -> IStreamClientEndpoint:
        """
        An endpoint reaching C{host:port} through the relay server, with our
        relay connector.
        """
        return relayEndpoint(self.reactor, self.serverEndpoint(), host, port, username, password, nodelay)

    def flush(self, advance: float = 0.0) -> None:
        """
        Move every byte until nothing moves, running due timers (and
        C{advance} seconds of them) between rounds.
        """
        if advance:
            self.reactor.advance(advance)
        for _ in range(1000):
            moved = False
            for pump in list(self.pumps):
                if pump.pump():
                    moved = True
            self.reactor.advance(0)
            if not moved:
                break
        self.pumps = [p for p in self.pumps if not (p.client.transport.disconnected and p.server.transport.disconnected)]
