"""
Endpoints that add a layer (a relay handshake, a WebSocket upgrade) over
another endpoint's connections share one shape: connect the carrier, run
the layer's handshake on it, and only then hand the application its
connection.  L{connectLayered} is that shape, cancellation included.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure


def connectLayered(
    through: IStreamClientEndpoint,
    makeFactory: Callable[[defer.Deferred[Any]], IProtocolFactory],
) -> defer.Deferred[Any]:
    """
    Connect C{through} with the factory C{makeFactory(ready)} builds; its
    protocol fires C{ready} with the application's protocol once the layer
    is up (or fails it).

    Cancelling the result cancels the carrier's connection attempt, or
    aborts the carrier once it is connected; a failed carrier fails the
    result.
    """
    state: dict[str, Any] = {}

    def cancel(d: defer.Deferred[Any]) -> None:
        carrier = state.get("carrier")
        if carrier is not None and not carrier.called:
            carrier.cancel()
        protocol = state.get("protocol")
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()

    ready: defer.Deferred[Any] = defer.Deferred(cancel)
    carrier = through.connect(makeFactory(ready))
    state["carrier"] = carrier

    def carried(protocol: Any) -> None:
        state["protocol"] = protocol

    def failed(f: Failure) -> None:
        if not ready.called:
            ready.errback(f)

    carrier.addCallbacks(carried, failed)
    return ready
