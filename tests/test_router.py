"""
The router's one retry loop (gostrelay.router._Dial) for streams, datagram
channels and UDP associations: each attempt bounded by the dial timeout, a
failure retried while attempts are left, a relay server's refusal and the
caller's cancellation ending the dial at once, no timer left behind.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.errors import DialError, HopFailed, RelayRefused
from gostrelay.router import Router
from gostrelay.wire.relay import Status

TARGET = "10.0.0.9:53"


class _Endpoint:
    def __init__(self, route: _Route, network: str, address: str) -> None:
        self.route = route
        self.network = network
        self.address = address

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.route.attempts.append((self.network, self.address, d))
        return d


class _Route:
    """
    A route whose attempts stay pending until the test fires them.
    """

    def __init__(self, hops: int = 1) -> None:
        self.hops = hops
        self.attempts: list[tuple[str, str, defer.Deferred[Any]]] = []

    def hopsFor(self, address: str) -> int:
        return self.hops

    def endpoint(self, network: str, address: str, timeout: float) -> _Endpoint:
        return _Endpoint(self, network, address)

    def bindEndpoint(self, network: str, address: str, timeout: float) -> _Endpoint:
        return _Endpoint(self, "bind " + network, address)


class _UDPReactor(MemoryReactorClock):
    """
    A memory reactor that also hands out (unbound) UDP ports.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[DatagramProtocol] = []

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192) -> Any:
        self.udpPorts.append(protocol)
        return object()


class RouterRetryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _UDPReactor()
        self.route = _Route()

    def router(self, retries: int = 0) -> Router:
        return Router(self.reactor, self.route, dialTimeout=3, retries=retries)

    def assertNoDelayedCalls(self) -> None:
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_datagramTimeoutsRetried(self) -> None:
        """
        Each attempt of a datagram dial times out after the dial timeout and
        the next one starts; the last timeout fails with a L{DialError}
        naming the target.
        """
        d = self.router(retries=1).datagram(TARGET, DatagramProtocol())
        self.assertEqual([a[:2] for a in self.route.attempts], [("udp", TARGET)])
        self.reactor.advance(3)
        self.assertEqual(len(self.route.attempts), 2)
        self.assertNoResult(d)
        self.reactor.advance(3)
        failure = self.failureResultOf(d, DialError)
        self.assertEqual(str(failure.value), f"dial udp {TARGET}: timed out after 3s")
        self.assertNoDelayedCalls()

    def test_datagramRefusalIsDialError(self) -> None:
        """
        A relay server's refusal of a UDP CONNECT is one more reason the
        target was not reached: a retried L{DialError}, as before the loop
        was shared.
        """
        d = self.router(retries=1).datagram(TARGET, DatagramProtocol())
        self.route.attempts[0][2].errback(RelayRefused(Status.FORBIDDEN, TARGET, "10.0.0.1:8420 (hop 1)"))
        self.assertEqual(len(self.route.attempts), 2)
        self.route.attempts[1][2].errback(ConnectionRefusedError())
        failure = self.failureResultOf(d, DialError)
        self.assertEqual(str(failure.value), f"dial udp {TARGET}: connection refused")
        self.assertNoDelayedCalls()

    def test_datagramDirectWhenNotChained(self) -> None:
        """
        A target the route does not chain (its hops bypassed) gets a UDP
        socket of ours, with a route configured.
        """
        self.route.hops = 0
        d = self.router().datagram("127.0.0.1:53", DatagramProtocol())
        channel = self.successResultOf(d)
        self.assertEqual(self.route.attempts, [])
        self.assertEqual(self.reactor.udpPorts, [channel])
        self.assertNoDelayedCalls()

    def test_streamRefusalNotRetried(self) -> None:
        """
        A relay server's refusal of a stream ends the dial at once, as it
        is: the caller maps its status.
        """
        d = self.router(retries=2).connect("tcp", TARGET, Factory.forProtocol(Protocol))
        refusal = RelayRefused(Status.FORBIDDEN, TARGET)
        self.route.attempts[0][2].errback(refusal)
        self.assertIs(self.failureResultOf(d, RelayRefused).value, refusal)
        self.assertEqual(len(self.route.attempts), 1)
        self.assertNoDelayedCalls()

    def test_streamHopFailureRetried(self) -> None:
        """
        A chain node's failure is retried and, the attempts spent, reaches
        the caller naming the node.
        """
        d = self.router(retries=1).connect("tcp", TARGET, Factory.forProtocol(Protocol))
        self.route.attempts[0][2].errback(HopFailed("10.0.0.1:8420 (hop 1)", "connection refused"))
        hop = HopFailed("10.0.0.1:8420 (hop 1)", "closed the connection")
        self.route.attempts[1][2].errback(hop)
        self.assertIs(self.failureResultOf(d, HopFailed).value, hop)
        self.assertNoDelayedCalls()

    def test_cancelStopsRetrying(self) -> None:
        """
        The caller's cancellation is not a failed attempt: no next attempt,
        no timer left.
        """
        for dial in (
            lambda router: router.connect("tcp", TARGET, Factory.forProtocol(Protocol)),
            lambda router: router.datagram(TARGET, DatagramProtocol()),
        ):
            self.route.attempts.clear()
            d = dial(self.router(retries=2))
            d.cancel()
            self.failureResultOf(d, defer.CancelledError)
            self.assertEqual(len(self.route.attempts), 1)
            self.assertNoDelayedCalls()

    def test_associationTimeout(self) -> None:
        """
        A UDP association through the route has one attempt, bounded by the
        dial timeout.
        """
        d = self.router(retries=2).association(DatagramProtocol())
        self.assertEqual([a[:2] for a in self.route.attempts], [("bind udp", "")])
        self.reactor.advance(3)
        failure = self.failureResultOf(d, DialError)
        self.assertEqual(str(failure.value), "UDP association: timed out after 3s")
        self.assertEqual(len(self.route.attempts), 1)
        self.assertNoDelayedCalls()

    def test_associationRefusal(self) -> None:
        """
        The relay server's refusal of a UDP association reaches the caller
        as it is (the SOCKS entry explains a Forbidden).
        """
        d = self.router().association(DatagramProtocol())
        self.route.attempts[0][2].errback(RelayRefused(Status.FORBIDDEN, ""))
        self.assertEqual(self.failureResultOf(d, RelayRefused).value.status, Status.FORBIDDEN)
        self.assertNoDelayedCalls()
