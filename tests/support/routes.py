"""
A router's route whose dials wait for the test: each dial is recorded as
a L{PendingDial} until the test completes it (a L{Target} on the far side)
or fails it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.python.failure import Failure

from tests.support.fakes import HalfCloseableTransport


class PendingDial:
    """
    One dial through a L{FakeRoute}: where to, the factory to connect, and
    whether the dialer cancelled it.
    """

    def __init__(self, network: str, address: str, factory: Any) -> None:
        self.network = network
        self.address = address
        self.factory = factory
        self.cancelled = False
        self.deferred: defer.Deferred[Any] = defer.Deferred(self._cancel)

    def _cancel(self, d: defer.Deferred[Any]) -> None:
        self.cancelled = True


class FakeRoute:
    """
    A router's route whose dials wait for the test to complete or fail
    them.
    """

    def __init__(self) -> None:
        self.dials: list[PendingDial] = []

    def endpoint(self, network: str, address: str, timeout: float) -> Any:
        route = self

        class _Endpoint:
            def connect(self, factory: Any) -> defer.Deferred[Any]:
                dial = PendingDial(network, address, factory)
                route.dials.append(dial)
                return dial.deferred

        return _Endpoint()

    def pending(self) -> list[PendingDial]:
        return [d for d in self.dials if not d.deferred.called]


class Target:
    """
    The far side of a completed dial (refused if the factory builds no
    protocol).
    """

    def __init__(self, dial: PendingDial) -> None:
        self.transport = HalfCloseableTransport(peerAddress=IPv4Address("TCP", "192.0.2.80", 80))
        self.protocol = dial.factory.buildProtocol(self.transport.getPeer())
        self.lost = False
        if self.protocol is None:
            self.lost = True
            dial.deferred.errback(Failure(ConnectionRefusedError()))
            return
        self.protocol.makeConnection(self.transport)
        dial.deferred.callback(self.protocol)

    def lose(self, reason: Failure | None = None) -> None:
        if not self.lost:
            self.lost = True
            self.transport.disconnecting = True
            self.protocol.connectionLost(reason or Failure(ConnectionDone()))
