"""
What a service knows about its connections.

Accept side (L{ConnectionTable}, used by L{gostrelay.layering.AcceptFactory}
below any TLS or WebSocket layer): how many connections there are, per
client too, so that limits hold before a handshake costs anything and a
graceful stop can wait for them.  Limits: ours C{maxConns} and
C{maxConnsPerIP} (service metadata), and GOST's C{climiter} (C{"$ N"} for
the service, C{"$$ N"} per client IP).  A refusal is logged at most once a
second per service.

Handler side (L{ServiceFactory}, right above the handler): GOST's request
metrics when they are on.  Its wrapper stays out of the byte path: it
relays C{dataReceived} without looking, and exposes the socket underneath
(C{spliceCarrier}) so that L{gostrelay.splice} can still move plain TCP
pipes in the kernel.

Peers without an IP address share one key per kind for the per-IP limit
and are named so in logs: C{"unix"} (unix socket clients, which are
usually unnamed) and C{"stdio"}.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from twisted.internet import defer, tcp
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from gostrelay import metrics
from gostrelay.directwrite import loseConnectionNow
from gostrelay.logs import Logger
from gostrelay.splice import spliceCarrierOf

_log = Logger(namespace="gostrelay.limits")

#: How long a stop waits for closed connections to report their end.
CLOSE_WAIT = 2.0


def peerKey(address: Any) -> str:
    """
    The key a client counts under for per-IP limits: its IP (IPv4-mapped
    IPv6 as IPv4), C{"unix"} for unix socket peers, C{"stdio"} for
    standard I/O, else the address type's name.
    """
    host = getattr(address, "host", None)
    if isinstance(host, str) and host:
        if host.startswith("::ffff:") and "." in host:
            return host[len("::ffff:") :]
        return host
    if isinstance(address, UNIXAddress):
        return "unix"
    name = type(address).__name__
    return "stdio" if name == "PipeAddress" else name.lower()


def describePeer(address: Any) -> str:
    """
    A peer as the logs name it: C{host:port} (C{[v6]:port}), C{unix} or
    C{unix:PATH} for a named unix client, C{stdio}.
    """
    host = getattr(address, "host", None)
    if isinstance(host, str):
        if host.startswith("::ffff:") and "." in host:
            host = host[len("::ffff:") :]
        port = getattr(address, "port", None)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, UNIXAddress):
        raw: Any = address.name
        name = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        return f"unix:{name}" if name else "unix"
    return peerKey(address)


def takesHalfClose(protocol: Any, method: str = "readConnectionLost") -> TypeGuard[IHalfCloseableProtocol]:
    """
    Whether C{protocol} takes a half-close itself (C{method}: its
    C{readConnectionLost} or C{writeConnectionLost}).

    Its C{IHalfCloseableProtocol} declaration alone does not say so:
    Twisted's L{ProtocolWrapper} (and so its TLS protocol and our traffic
    limiter) copies every interface of its transport, and over one of our
    wrappers -- a protocol that is also the transport of the layer above,
    declaring C{IHalfCloseableProtocol} -- it declares it too without
    having the methods.  Its C{__getattr__} then finds them on its
    transport, our wrapper: calling them would call ourselves until the
    stack overflows.  So the method must be the class's own.
    """
    return IHalfCloseableProtocol.providedBy(protocol) and getattr(type(protocol), method, None) is not None


#: (wrapper class, the declaration it takes over) -> its declaration.
_provides: dict[tuple[type, Any], Any] = {}


def provideLike(wrapper: Any, *declarations: Any) -> None:
    """
    C{directlyProvides(wrapper, *declarations)}, for a wrapper that is
    its protocol's transport (it must say it is TCP when it wraps TCP):
    what Twisted's C{ProtocolWrapper.makeConnection} does for every
    connection, normalising the interface declarations each time; the
    result depends only on the class and the declarations, so it is
    computed once for each (a handful per process) and reused.
    """
    key = (type(wrapper), *declarations)
    provides = _provides.get(key)
    if provides is None:
        directlyProvides(wrapper, *declarations)
        if len(_provides) < 256:
            _provides[key] = wrapper.__provides__
    else:
        wrapper.__provides__ = provides


class ConnectionTable:
    """
    The accepted connections of one service, with its connection limits.

    L{refusal} says whether one more from a client key is over a limit;
    L{opened} and L{closed} keep the counts; L{drain} waits for (and at
    the end of the grace period closes) what is open.
    """

    def __init__(self, service: str, clock: Any, maxConns: int = 0, maxConnsPerIP: int = 0) -> None:
        self.service = service
        self.clock = clock
        self.maxConns = maxConns
        self.maxConnsPerIP = maxConnsPerIP
        self.open: dict[Any, str] = {}
        self.perIP: dict[str, int] = {}
        self.refused = 0
        self._lastRefusalLog = -1.0
        self._drained: defer.Deferred[None] | None = None

    def refusal(self, key: str) -> str | None:
        """
        Why one more connection from C{key} is refused (the limit it would
        exceed, in words), or C{None}.
        """
        if self.maxConns and len(self.open) >= self.maxConns:
            return f"limit of {self.maxConns} connections (maxConns) reached"
        if self.maxConnsPerIP and self.perIP.get(key, 0) >= self.maxConnsPerIP:
            return f"limit of {self.maxConnsPerIP} connections from {key} (maxConnsPerIP) reached"
        return None

    def refuse(self, peer: str, why: str) -> None:
        """
        Count a refused connection and log it (at most once a second).
        """
        self.refused += 1
        now = self.clock.seconds()
        if now - self._lastRefusalLog >= 1.0:
            self._lastRefusalLog = now
            _log.info(
                "{service}: connection from {peer} refused: {why} ({n} refused so far)",
                service=self.service, peer=peer, why=why, n=self.refused,
            )

    def opened(self, connection: Any, key: str) -> None:
        self.open[connection] = key
        self.perIP[key] = self.perIP.get(key, 0) + 1

    def closed(self, connection: Any) -> None:
        key = self.open.pop(connection, None)
        if key is None:
            return
        count = self.perIP.get(key, 0) - 1
        if count > 0:
            self.perIP[key] = count
        else:
            self.perIP.pop(key, None)
        if self._drained is not None and not self.open:
            d, self._drained = self._drained, None
            d.callback(None)

    def drain(self, gracePeriod: float) -> defer.Deferred[None]:
        """
        Wait for the connections to end, at most C{gracePeriod} seconds;
        then close the rest and wait (briefly) until they have ended, so
        that each still logs its closing line before the process exits.
        """
        if not self.open:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained = d
        if gracePeriod > 0:
            _log.info(
                "{service}: waiting up to {t:g}s for {n} connections to finish",
                service=self.service, t=gracePeriod, n=len(self.open),
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
        _log.info("{service}: closing {n} connections at the end of the grace period", service=self.service, n=len(self.open))
        self._closeAll()

    def _giveUp(self) -> None:
        if self._drained is not None:
            d, self._drained = self._drained, None
            d.callback(None)

    def _closeAll(self) -> None:
        for connection in list(self.open):
            transport = connection.transport
            if transport is not None:
                # loseConnection, not abort: an aborted TCP transport reports
                # its end on a later reactor turn, which a stopping reactor
                # may never run.
                transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class PassThroughWrapper(ProtocolWrapper):
    """
    A L{ProtocolWrapper} that stays out of the way of the layers around
    it: a half-close reaches the wrapped protocol when that protocol takes
    one (L{takesHalfClose}; else the connection closes, as Twisted's TCP
    does), and splice sees the socket underneath.  Every accept-side
    wrapper is one: the accept layer, the metrics wrapper, the PROXY
    header writer, the traffic limiter.

    Its interface declarations are its class's, never its transport's.
    L{ProtocolWrapper} forwards every attribute it lacks to its transport,
    dunder names included; zope's class declaration (C{__provides__} on
    the class that was given C{@implementer}) answers only for instances
    of that very class and raises C{AttributeError} for a subclass's, which
    Python then hands to C{__getattr__}.  So an instance of a subclass
    without an instance declaration of its own -- the accept layer over an
    rtcp/smux stream, a unix socket -- would report its I{transport's}
    interfaces: not C{IHalfCloseableProtocol}, and the stream would turn a
    peer's FIN into a full close (an rtcp visitor's last bytes lost while
    its target was being dialed).  Dunder names are therefore never
    forwarded; zope then falls back to the class's own declaration.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.transport, name)

    def readConnectionLost(self) -> None:
        if self.wrappedProtocol is not None and takesHalfClose(self.wrappedProtocol):
            self.wrappedProtocol.readConnectionLost()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        if self.wrappedProtocol is not None and takesHalfClose(self.wrappedProtocol, "writeConnectionLost"):
            self.wrappedProtocol.writeConnectionLost()

    def loseConnectionNow(self) -> None:
        """
        C{loseConnection}, closing a plain TCP socket with nothing to flush
        at once (L{gostrelay.directwrite.loseConnectionNow}: for callers
        that expect C{connectionLost} to run before this returns, as the
        pipe does; a wrapped protocol such as Twisted's TLS does not).
        """
        self.disconnecting = 1
        loseConnectionNow(self.transport)

    def spliceCarrier(self) -> Any:
        transport = self.transport
        if isinstance(transport, tcp.Connection):
            return transport
        inner = spliceCarrierOf(transport)
        return inner() if inner is not None else None


class TrackedProtocol(PassThroughWrapper):
    def makeConnection(self, transport: Any) -> None:
        factory: ServiceFactory = self.factory  # type: ignore[assignment]
        factory.started(self)
        # ProtocolWrapper.makeConnection, with the declaration cached.
        provideLike(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        factory: ServiceFactory = self.factory  # type: ignore[assignment]
        error = getattr(self.wrappedProtocol, "error", None)
        super().connectionLost(reason)
        factory.ended(self, error)


class ServiceFactory(WrappingFactory):
    """
    A stream handler, with GOST's request metrics (requests, in flight,
    duration, handler errors).  The connection limits are the accept
    layer's (L{ConnectionTable}).
    """

    protocol = TrackedProtocol
    noisy = False

    def __init__(self, handler: Any, service: str, clock: Any) -> None:
        super().__init__(handler)
        self.service = service
        self.clock = clock
        self._startTimes: dict[int, float] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["wrappedFactory"], name)

    def started(self, protocol: Any) -> None:
        self._startTimes[id(protocol)] = self.clock.seconds()
        m = metrics.current
        if m is not None:
            m.requests.labels(m.host, self.service).inc()
            m.inFlight.labels(m.host, self.service).inc()

    def ended(self, protocol: Any, error: Any) -> None:
        started = self._startTimes.pop(id(protocol), None)
        m = metrics.current
        if m is not None and started is not None:
            m.inFlight.labels(m.host, self.service).dec()
            m.duration.labels(m.host, self.service).observe(self.clock.seconds() - started)
            if error:
                m.handlerErrors.labels(m.host, self.service).inc()
