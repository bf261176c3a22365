"""
How layers stack on a connection, on both sides.

Dialing: endpoints that add a layer (a relay handshake, a WebSocket
upgrade) over another endpoint's connections share one shape: connect the
carrier, run the layer's handshake on it, and only then hand the
application its connection.  L{connectLayered} is that shape, cancellation
included.

Accepting: every stream listener (tcp, tls, ws, wss, a C{--listen}
endpoint description) runs one order of layers, the same for all::

    socket -> PROXY header -> admission -> connection limits -> TLS / ws -> handler

  1. B{PROXY header} (service option C{proxyProtocol=1|2}, or Twisted's
     C{haproxy:} endpoint prefix): required, read with a timeout (10 s)
     before anything else is built, so that every later layer -- logs,
     bypass, C{maxConnsPerIP}, C{climiter}, metrics -- sees the original
     client's address (C{getPeer}) and the address it connected to
     (C{getHost}).
  2. B{admission}: L{AcceptFactory}'s C{admission} hook, a callable taking
     the client's address and returning a refusal reason or C{None}.  This
     is where GOST's C{admission} (address allow/deny lists) plugs in; it
     runs before the limits so that a refused client never holds a slot.
  3. B{connection limits}: L{gostrelay.tracking.ConnectionTable}.
  4. B{TLS / WebSocket}: the listener's own layers, taken apart from its
     endpoint by L{acceptStack}, so that they sit I{above} the checks: a
     refused connection costs no handshake.
  5. B{handler}: wrapped for metrics by L{gostrelay.tracking.ServiceFactory}
     (with no TLS or WebSocket layer between, the accept wrapper does the
     metrics wrapper's job itself: one wrapper per connection, not two).

A refusal at any layer closes the socket at once (no byte written) with
one log line; nothing ever hands C{None} to a TLS or WebSocket wrapper.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet import endpoints as tx
from twisted.internet.interfaces import (
    IProtocolFactory,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.logs import Logger
from gostrelay.tracking import (
    ConnectionTable,
    PassThroughWrapper,
    ServiceFactory,
    describePeer,
    peerKey,
    provideLike,
)
from gostrelay.transports.tcp import _DualStackEndpoint, _ReusePortEndpoint
from gostrelay.transports.tls import BulkTLSFactory, TLSServerEndpoint
from gostrelay.wire.proxyheader import HeaderReader, ProxyHeaderError


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



def _passTCP(wrapper: Any, transport: Any) -> None:
    """
    A wrapper over a TCP transport says it is one (its C{__getattr__}
    already forwards C{setTcpNoDelay} and the rest), so that the layers
    above (TLS turning Nagle off, the pipe) treat it as TCP.
    """
    if ITCPTransport.providedBy(transport):
        provideLike(wrapper, ITCPTransport)


class _HeaderFirst(PassThroughWrapper):
    """
    Writes a header before the protocol it wraps sees its connection, then
    steps aside (and lets splice see the socket underneath).
    """

    def __init__(self, factory: Any, wrappedProtocol: Any, header: bytes) -> None:
        super().__init__(factory, wrappedProtocol)
        self.header = header

    def makeConnection(self, transport: Any) -> None:
        _passTCP(self, transport)
        transport.write(self.header)
        super().makeConnection(transport)


class _HeaderFirstFactory(WrappingFactory):
    noisy = False

    def __init__(self, wrappedFactory: IProtocolFactory, header: bytes) -> None:
        super().__init__(wrappedFactory)
        self.header = header

    def buildProtocol(self, addr: Any) -> Any:
        inner = self.wrappedFactory.buildProtocol(addr)
        return None if inner is None else _HeaderFirst(self, inner, self.header)


def _unwrap(wrapper: Any) -> Any:
    return wrapper.wrappedProtocol


@implementer(IStreamClientEndpoint)
class HeaderFirstEndpoint:
    """
    Connections of C{through} that begin with C{header} (a PROXY header to
    a chain node, GOST's node option C{proxyProtocol}); the connected
    protocol is the caller's own.
    """

    def __init__(self, through: IStreamClientEndpoint, header: bytes) -> None:
        self.through = through
        self.header = header

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = self.through.connect(_HeaderFirstFactory(protocolFactory, self.header))
        return d.addCallback(_unwrap)


# -- the accept side

_log = Logger(namespace="gostrelay.accept")

#: How long a client may take to send its PROXY header.
PROXY_HEADER_TIMEOUT = 10.0


class AcceptProtocol(PassThroughWrapper):
    """
    One accepted connection: reads the PROXY header when one is required,
    then (once admitted) is the transport of the layers above, naming the
    original client in C{getPeer}.  After that it relays bytes without
    looking.
    """

    factory: AcceptFactory

    def __init__(self, factory: AcceptFactory, wrappedProtocol: Any = None) -> None:
        self.factory = factory
        self.wrappedProtocol = wrappedProtocol
        self.peer: Any = None
        self.host: Any = None
        self.reader: HeaderReader | None = None
        self._timer: Any = None
        self._refused = False
        #: The service's request metrics, when this wrapper is also the
        #: handler's (L{AcceptFactory.service}).
        self.service: ServiceFactory | None = None

    def logPrefix(self) -> str:
        return "AcceptProtocol"

    def makeConnection(self, transport: Any) -> None:
        _passTCP(self, transport)
        self.connected = 1
        self.transport = transport
        self.factory.registerProtocol(self)
        if self._refused:
            transport.loseConnection()
        elif self.wrappedProtocol is not None:
            self._connectInner(self.wrappedProtocol)
        else:
            self.reader = HeaderReader()
            self._timer = self.factory.clock.callLater(self.factory.headerTimeout, self._headerTimedOut)

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        reader = self.reader
        if reader is None:
            return  # refused and closing
        try:
            info = reader.feed(data)
        except ProxyHeaderError as e:
            self._badHeader(str(e))
            return
        if info is None:
            return
        self.reader = None
        self._cancelTimer()
        self.peer = info.source or self.transport.getPeer()  # type: ignore[union-attr]
        self.host = info.destination or self.transport.getHost()  # type: ignore[union-attr]
        inner = self.factory.admit(self.peer, self)
        if inner is None:
            self.reader = None
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.wrappedProtocol = inner
        self._connectInner(inner)
        if reader.remainder and self.wrappedProtocol is not None and self.connected:
            inner.dataReceived(reader.remainder)

    def _connectInner(self, inner: Any) -> None:
        service = self.service
        if service is not None:
            service.started(self)
        inner.makeConnection(self)

    def _badHeader(self, why: str) -> None:
        self.reader = None
        self._cancelTimer()
        self.factory.headerRefused(describePeer(self.transport.getPeer()), why)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _headerTimedOut(self) -> None:
        self._timer = None
        if self.reader is None:
            return
        self._badHeader(f"no PROXY header within {self.factory.headerTimeout:g}s")

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def getPeer(self) -> Any:
        return self.peer if self.peer is not None else self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> Any:
        return self.host if self.host is not None else self.transport.getHost()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.connected = 0
        self.reader = None
        self._cancelTimer()
        self.factory.unregisterProtocol(self)
        inner, self.wrappedProtocol = self.wrappedProtocol, None  # type: ignore[assignment]
        try:
            if inner is not None:
                service = self.service
                error = getattr(inner, "error", None) if service is not None else None
                inner.connectionLost(reason)
                if service is not None:
                    service.ended(self, error)
        finally:
            self.factory.table.closed(self)


class AcceptFactory(WrappingFactory):
    """
    The accept layers of one service over the factory C{wrappedFactory}
    of the layers above (TLS, WebSocket, the handler); see the module
    docstring for the order.

    @param table: the service's connections and limits.
    @param proxyHeader: require a PROXY header (v1 or v2) first.
    @param admission: GOST's admission goes here: called with the client's
        address (after the PROXY header), returns why it is refused or
        C{None}.  Synchronous: a check that must wait (a remote admission
        plugin) would read like the PROXY header, connection first.
    @param outermost: this factory is given to a socket port directly, so
        that a refusal without a PROXY header can return C{None} from
        C{buildProtocol} (the port closes the socket before any protocol
        exists); otherwise (standard I/O, an endpoint we could not take
        apart) a refused connection gets a protocol that closes it.
    """

    protocol = AcceptProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        table: ConnectionTable,
        clock: Any,
        proxyHeader: bool = False,
        admission: Callable[[Any], str | None] | None = None,
        outermost: bool = True,
        headerTimeout: float = PROXY_HEADER_TIMEOUT,
    ) -> None:
        super().__init__(wrappedFactory)
        self.table = table
        self.clock = clock
        self.proxyHeader = proxyHeader
        self.admission = admission
        self.outermost = outermost
        self.headerTimeout = headerTimeout
        self.badHeaders = 0
        self._lastHeaderLog = -1.0
        # Nothing between this layer and the handler's metrics wrapper (a
        # plain tcp listener): the accept wrapper does that wrapper's job
        # too, one wrapper a connection instead of two.
        self._service = wrappedFactory if isinstance(wrappedFactory, ServiceFactory) else None

    @property
    def service(self) -> str:
        return self.table.service

    def buildProtocol(self, addr: Any) -> Any:
        if self.proxyHeader:
            return AcceptProtocol(self)
        protocol = AcceptProtocol(self)
        inner = self.admit(addr, protocol)
        if inner is None:
            if self.outermost:
                return None
            protocol._refused = True
            return protocol
        protocol.wrappedProtocol = inner
        return protocol

    def admit(self, peer: Any, connection: AcceptProtocol) -> Any:
        """
        Admission, then the limits, for a client at C{peer}; the protocol
        of the layers above when admitted (counted under the client's
        key), else C{None} (logged).
        """
        if self.admission is not None:
            why = self.admission(peer)
            if why:
                self.table.refuse(describePeer(peer), why)
                return None
        key = peerKey(peer)
        why = self.table.refusal(key)
        if why is not None:
            self.table.refuse(describePeer(peer), why)
            return None
        service = self._service
        if service is not None:
            inner = service.wrappedFactory.buildProtocol(peer)
        else:
            inner = self.wrappedFactory.buildProtocol(peer)
        if inner is None:
            return None
        self.table.opened(connection, key)
        connection.service = service
        return inner

    def headerRefused(self, peer: str, why: str) -> None:
        """
        Log a missing or bad PROXY header (at most once a second).
        """
        self.badHeaders += 1
        now = self.clock.seconds()
        if now - self._lastHeaderLog >= 1.0:
            self._lastHeaderLog = now
            _log.info(
                "{service}: connection from {peer} closed: {why} ({n} so far)",
                service=self.service, peer=peer, why=why, n=self.badHeaders,
            )

    def drain(self, gracePeriod: float) -> defer.Deferred[None]:
        """
        A graceful stop: connections still sending their PROXY header are
        closed now (nothing of theirs has started); the rest are the
        table's to wait for.
        """
        for protocol in list(self.protocols):
            if protocol.wrappedProtocol is None and protocol.transport is not None:
                protocol.transport.loseConnection()
        return self.table.drain(gracePeriod)


class AcceptStack:
    """
    A server endpoint taken apart for L{AcceptFactory}: the endpoint that
    owns the socket, the layers above it (each a function from the factory
    above to the factory below: WebSocket, TLS), whether a PROXY header
    comes first (Twisted's C{haproxy:} prefix), and whether the socket's
    port takes C{None} from C{buildProtocol} (L{AcceptFactory}'s
    C{outermost}).
    """

    def __init__(
        self,
        socket: Any,
        layers: list[Callable[[Any], Any]] | None = None,
        proxyHeader: bool = False,
        outermost: bool = False,
    ) -> None:
        self.socket = socket
        self.layers = list(layers or [])
        self.proxyHeader = proxyHeader
        self.outermost = outermost

    def wrap(self, factory: Any) -> Any:
        """
        The factory of the layers above the accept layer, over C{factory}
        (the handler's).
        """
        for layer in self.layers:
            factory = layer(factory)
        return factory


def _tlsLayer(contextFactory: Any) -> Callable[[Any], Any]:
    return lambda factory: BulkTLSFactory(contextFactory, False, factory)


def acceptStack(endpoint: Any) -> AcceptStack:
    """
    Take C{endpoint} apart into an L{AcceptStack}: our WebSocket and TLS
    server endpoints, Twisted's C{ssl:} and C{haproxy:} are seen through,
    down to the socket (TCP, unix, adopted from systemd, standard I/O).
    Anything else is kept whole: the accept layer then runs above that
    endpoint's own layers.
    """
    # Imported here: an import cycle (transports.ws dials with connectLayered).
    from gostrelay.transports.ws import WebSocketServerEndpoint, serverFactory

    if isinstance(endpoint, WebSocketServerEndpoint):
        stack = acceptStack(endpoint.inner)
        path, headers = endpoint.path, endpoint.headers
        stack.layers.insert(0, lambda factory: serverFactory(factory, path, headers))
        return stack
    if isinstance(endpoint, TLSServerEndpoint):
        stack = acceptStack(endpoint.inner)
        stack.layers.insert(0, _tlsLayer(endpoint.contextFactory))
        return stack
    if isinstance(endpoint, tx._WrapperServerEndpoint) and endpoint._wrapperFactory is HAProxyWrappingFactory:
        stack = acceptStack(endpoint._wrappedEndpoint)
        stack.proxyHeader = True
        return stack
    if isinstance(endpoint, tx.SSL4ServerEndpoint):
        socket = tx.TCP4ServerEndpoint(endpoint._reactor, endpoint._port, endpoint._backlog, endpoint._interface)
        return AcceptStack(socket, [_tlsLayer(endpoint._sslContextFactory)], outermost=True)
    ports = (
        tx.TCP4ServerEndpoint, tx.TCP6ServerEndpoint, tx.UNIXServerEndpoint, tx.AdoptedStreamServerEndpoint,
        _DualStackEndpoint, _ReusePortEndpoint,
    )
    return AcceptStack(endpoint, outermost=isinstance(endpoint, ports))
