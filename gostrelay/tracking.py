"""
What a service knows about its connections: how many there are (per
client IP too), so that limits hold and a graceful stop can wait for them;
and, when metrics are on, GOST's request metrics.

L{ServiceFactory} wraps a stream handler.  Over a limit, a new connection
is closed at once (C{buildProtocol} returns C{None}) and logged, at most
once a second per service.  Limits: ours C{maxConns} and C{maxConnsPerIP}
(service metadata), and GOST's C{climiter} (C{"$ N"} for the service,
C{"$$ N"} per client IP).

The wrapper stays out of the byte path: it relays C{dataReceived} without
looking, and exposes the socket underneath (C{spliceCarrier}) so that
L{gostrelay.splice} can still move plain TCP pipes in the kernel.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics

_log = Logger(namespace="gostrelay.limits")

#: How long a stop waits for closed connections to report their end.
CLOSE_WAIT = 2.0


@implementer(IHalfCloseableProtocol)
class TrackedProtocol(ProtocolWrapper):
    def makeConnection(self, transport: Any) -> None:
        factory: ServiceFactory = self.factory  # type: ignore[assignment]
        factory.started(self)
        super().makeConnection(transport)

    def readConnectionLost(self) -> None:
        if IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.readConnectionLost()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        if IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.writeConnectionLost()

    def spliceCarrier(self) -> Any:
        transport = self.transport
        if isinstance(transport, tcp.Connection):
            return transport
        inner = getattr(transport, "spliceCarrier", None)
        return inner() if inner is not None else None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        factory: ServiceFactory = self.factory  # type: ignore[assignment]
        error = getattr(self.wrappedProtocol, "error", None)
        super().connectionLost(reason)
        factory.ended(self, error)


class ServiceFactory(WrappingFactory):
    """
    A stream handler, with its connections counted.
    """

    protocol = TrackedProtocol
    noisy = False

    def __init__(
        self,
        handler: Any,
        service: str,
        clock: Any,
        maxConns: int = 0,
        maxConnsPerIP: int = 0,
    ) -> None:
        super().__init__(handler)
        self.service = service
        self.clock = clock
        self.maxConns = maxConns
        self.maxConnsPerIP = maxConnsPerIP
        self.perIP: dict[str, int] = {}
        self.refused = 0
        self._lastRefusalLog = -1.0
        self._drained: defer.Deferred[None] | None = None
        self._startTimes: dict[int, float] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["wrappedFactory"], name)

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", ""))
        if self.maxConns and len(self.protocols) >= self.maxConns:
            return self._refuse(host, f"{self.maxConns} connections (maxConns)")
        if self.maxConnsPerIP and self.perIP.get(host, 0) >= self.maxConnsPerIP:
            return self._refuse(host, f"{self.maxConnsPerIP} connections from {host} (maxConnsPerIP)")
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            protocol.clientHost = host  # type: ignore[attr-defined]
            self.perIP[host] = self.perIP.get(host, 0) + 1
        return protocol

    def _refuse(self, host: str, limit: str) -> None:
        self.refused += 1
        now = self.clock.seconds()
        if now - self._lastRefusalLog >= 1.0:
            self._lastRefusalLog = now
            _log.info(
                "{service}: connection from {host} refused: limit of {limit} reached ({n} refused so far)",
                service=self.service, host=host, limit=limit, n=self.refused,
            )
        return None

    def started(self, protocol: TrackedProtocol) -> None:
        self._startTimes[id(protocol)] = self.clock.seconds()
        m = metrics.current
        if m is not None:
            m.requests.labels(m.host, self.service).inc()
            m.inFlight.labels(m.host, self.service).inc()

    def ended(self, protocol: TrackedProtocol, error: Any) -> None:
        host = getattr(protocol, "clientHost", "")
        count = self.perIP.get(host, 0) - 1
        if count > 0:
            self.perIP[host] = count
        else:
            self.perIP.pop(host, None)
        started = self._startTimes.pop(id(protocol), None)
        m = metrics.current
        if m is not None and started is not None:
            m.inFlight.labels(m.host, self.service).dec()
            m.duration.labels(m.host, self.service).observe(self.clock.seconds() - started)
            if error:
                m.handlerErrors.labels(m.host, self.service).inc()
        if self._drained is not None and not self.protocols:
            d, self._drained = self._drained, None
            d.callback(None)

    def drain(self, gracePeriod: float) -> defer.Deferred[None]:
        """
        Wait for the connections to end, at most C{gracePeriod} seconds;
        then close the rest and wait (briefly) until they have ended, so
        that each still logs its closing line before the process exits.
        """
        if not self.protocols:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained = d
        if gracePeriod > 0:
            _log.info(
                "{service}: waiting up to {t:g}s for {n} connections to finish",
                service=self.service, t=gracePeriod, n=len(self.protocols),
            )
            grace = self.clock.callLater(gracePeriod, self._graceOver)
        else:
            grace = None
            self._closeAll()
        # Whatever happens, the stop does not wait for ever.
        cap = self.clock.callLater(max(gracePeriod, 0) + CLOSE_WAIT, self._giveUp)

        def done(result: Any) -> Any:
            for call in (grace, cap):
                if call is not None and call.active():
                    call.cancel()
            return result

        d.addBoth(done)
        return d

    def _graceOver(self) -> None:
        if self._drained is None:
            return
        _log.info("{service}: closing {n} connections at the end of the grace period", service=self.service, n=len(self.protocols))
        self._closeAll()

    def _giveUp(self) -> None:
        if self._drained is not None:
            d, self._drained = self._drained, None
            d.callback(None)

    def _closeAll(self) -> None:
        for protocol in list(self.protocols):
            transport = protocol.transport
            if transport is not None:
                # loseConnection, not abort: an aborted TCP transport reports
                # its end on a later reactor turn, which a stopping reactor
                # may never run.
                transport.loseConnection()
