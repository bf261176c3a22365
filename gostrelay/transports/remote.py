"""
The rtcp and rudp listeners: remote port forwarding (spec-relay.md 6.3,
6.4).

An rtcp listener asks the relay server at the end of its chain to BIND a
port (C{-L rtcp://:2222/:22}: the server's port 2222); every connection the
server accepts there arrives here as an smux stream, which the rtcp handler
forwards to the local target.  An rudp listener does the same for UDP: the
BIND stream carries tunnel datagrams, demultiplexed into sessions by the
remote peer's address.

The tunnel stays up: the BIND is kept by a
L{twisted.application.internet.ClientService}, which re-binds with back-off
and jitter (1 s, doubling, at most C{maxRetryDelay}, 5 s by default as in
GOST) after the server restarts or the network drops; both ends send smux
keepalives, so a dead peer is noticed within C{mux.keepaliveTimeout}.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.chain import Chain
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.datagram import TunnelFramedChannel
from gostrelay.errors import RelayRefused
from gostrelay.interfaces import IListener
from gostrelay.logs import Logger
from gostrelay.mux import MuxConfig, MuxSession, MuxStream, _StreamAddress
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.transports.udp import UDPListener, UDPSessionTable
from gostrelay.wire.address import splitHostPort
from gostrelay.wire.relay import RelayDecodeError, ResponseParser, Status, statusText

DEFAULT_MAX_RETRY_DELAY = 5.0


def retryPolicy(maxRetryDelay: float = DEFAULT_MAX_RETRY_DELAY) -> Any:
    """
    GOST's re-bind back-off for a L{ClientService}: 1 s, doubling, at most
    C{maxRetryDelay}, plus up to 1 s of jitter (backoffPolicy counts from
    the first failure: 0.5 * 2**1 = 1 s).
    """
    return backoffPolicy(initialDelay=0.5, maxDelay=maxRetryDelay, factor=2.0, jitter=random.random)


def bindFailureText(reason: Failure, address: str) -> str:
    """
    Why a BIND of C{address} failed, in one line: the relay server's answer
    by name, with what it usually means.
    """
    if isinstance(reason.value, RelayRefused):
        status = reason.value.status
        answered = f"the relay server answered {statusText(status)}"
        if status == Status.FORBIDDEN:
            return f"{answered}: it refuses BIND (start it with bind=true)"
        if status == Status.SERVICE_UNAVAILABLE:
            return f"{answered}: it cannot bind {address}"
        return answered
    return reason.getErrorMessage()


def tcpAddress(host: str, port: int) -> IPv4Address | IPv6Address:
    """
    An L{IAddress} for an address a relay server reported.
    """
    return IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)


@implementer(IStreamClientEndpoint)
class _BindEachTime:
    """
    Chooses the route anew for every (re)bind, so that a failed node is
    left out the next time.
    """

    def __init__(self, chain: Any, network: str, address: str, timeout: float, onFailure: Any) -> None:
        self.onFailure = onFailure
        self.chain = chain
        self.network = network
        self.address = address
        self.timeout = timeout

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        try:
            endpoint = self.chain.bindEndpoint(self.network, self.address, self.timeout)
            d = endpoint.connect(factory)
        except Exception:
            d = defer.fail()

        def failed(reason: Failure) -> Failure:
            if not reason.check(defer.CancelledError):
                self.onFailure(reason)
            return reason

        return d.addErrback(failed)


class _RemoteListener:
    """
    What rtcp and rudp share: the chain, the BIND kept up by a ClientService.
    """

    network = "tcp"

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        listener = service.listener
        assert listener is not None
        where = service.source or service.name
        self.reactor = reactor
        self.service = service
        self.where = where
        self.log = Logger(namespace=f"gostrelay.{listener.type}.{service.name}")
        self.address = service.addr
        try:
            splitHostPort(self.address)
        except ValueError as e:
            raise ConfigError(f"{where}: bad address {self.address!r}: {e}") from None
        chainName = listener.chain
        if not chainName:
            raise ConfigError(
                f"{where}: {listener.type} needs a chain (-F relay://server:port) to bind through; "
                "without one GOST degrades to a local forwarder, which is not implemented"
            )
        chainConfig = context.config.chain(chainName)
        if chainConfig is None:
            raise ConfigError(f"{where}: chain {chainName!r} is not defined")

        self.chain = Chain.fromConfig(reactor, chainConfig, context, where)
        dialTimeout = service.md.getDuration("dialTimeout") or DEFAULT_DIAL_TIMEOUT
        self.endpoint = _BindEachTime(self.chain, self.network, self.address, dialTimeout, self.failed)
        md = listener.md
        self.maxRetryDelay = md.getDuration("maxRetryDelay") or DEFAULT_MAX_RETRY_DELAY
        # GOST takes the BIND session's mux.* from the last node's connector;
        # the listener's own mux.* keys are a fallback.
        lastConnector = self.chain.hops[-1].selector.nodes[0].value[0] if self.chain.hops else None
        self.muxConfig = getattr(lastConnector, "muxConfig", None) or MuxConfig.fromMetadata(md, where)
        self.binds = 0
        self.boundAddress = ""
        self.boundHost: Any = None

    @property
    def name(self) -> str:
        return self.service.name

    def describeListening(self) -> str:
        """
        Where this service listens: on the last hop's relay server, reached
        through the hops before it.
        """
        hops = self.chain.hops

        def nodes(hop: Any) -> str:
            return " or ".join(self.chain.label(node) for node in hop.selector.nodes)

        where = f"will listen on {self.address} at the relay server {nodes(hops[-1])}" if hops else f"will listen on {self.address}"
        if len(hops) > 1:
            where += ", via " + " -> ".join(nodes(hop) for hop in hops[:-1])
        return where

    def listen(self, handler: Any) -> defer.Deferred[Any]:
        self.handler = handler
        factory = self._factory()
        service = ClientService(self.endpoint, factory, retryPolicy=retryPolicy(self.maxRetryDelay), clock=self.reactor)
        service.startService()
        return defer.succeed(_RemotePort(self, service, factory))

    def _factory(self) -> BindFactory:
        raise NotImplementedError

    def bound(self, transport: Any) -> None:
        response = getattr(transport, "response", None)
        addr = response.addr if response is not None else None
        self.binds += 1
        self.boundAddress = addr.address if addr is not None else ""
        # What the visitors connected to: the streams' getHost (and the
        # destination of a PROXY header sent to the target).
        self.boundHost = tcpAddress(addr.host, addr.port) if addr is not None else None
        self.log.info(
            "{name}: bound {address} on the relay server as {bound} (bind #{n})",
            name=self.service.name, address=self.address, bound=self.boundAddress or "?", n=self.binds,
        )

    def failed(self, reason: Failure) -> None:
        why = bindFailureText(reason, self.address)
        self.log.info("{name}: bind {address} failed: {why}; retrying", name=self.service.name, address=self.address, why=why)


class _RemotePort:
    def __init__(self, listener: _RemoteListener, service: ClientService, factory: BindFactory) -> None:
        self.listener = listener
        self.service = service
        self.factory = factory

    def getHost(self) -> Any:
        host, port = splitHostPort(self.listener.address)
        return _StreamAddress(host or "0.0.0.0", port)

    def stopListening(self) -> Any:
        return stopBinding(self.service, self.factory)


def stopBinding(service: ClientService, factory: BindFactory) -> defer.Deferred[None]:
    """
    Stop a L{ClientService} that keeps a BIND, and end the BIND it holds.

    The service closes its connection with C{loseConnection}; a TLS carrier
    (C{relay+tls}, C{gosttls:}, C{wss:}) waits for its producer to be
    unregistered before it closes, and the BIND protocol (its smux session,
    its UDP tunnel) is that producer: so each live BIND protocol lets go of
    the carrier too (L{TCPBindProtocol.release}).  Stopped first, the service
    does not bind again when the connection goes.
    """
    stopped: defer.Deferred[None] = service.stopService()
    factory.releaseAll()
    return stopped


# -- rtcp


class PerPeerPreamble(Protocol):
    """
    Reads the per-peer relay response the server writes first on every BIND
    stream (naming the remote peer), then hands the stream to the handler's
    protocol, built for the peer's address.

    C{listener} is the owner of the BIND: an rtcp listener or the C{rtcp:}
    endpoint's port (C{handler}, C{log}).
    """

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.parser = ResponseParser()

    def dataReceived(self, data: bytes) -> None:
        try:
            response = self.parser.feed(data)
        except RelayDecodeError as e:
            self.listener.log.info("bad per-peer response on a BIND stream: {e}", e=e)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if response is None:
            return
        stream: MuxStream = self.transport  # type: ignore[assignment]
        if response.status != Status.OK:
            self.listener.log.info("BIND stream refused by the server: {s}", s=statusText(response.status))
            stream.loseConnection()
            return
        addr = response.addr
        if addr is not None:
            # The visitor, as the relay server names it: the handler's
            # getPeer (logs, a PROXY header to the target).
            stream.peerAddress = tcpAddress(addr.host, addr.port)
        boundHost = getattr(self.listener, "boundHost", None)  # the rtcp: endpoint's port has none
        if boundHost is not None:
            stream.hostAddress = boundHost
        try:
            protocol = self.listener.handler.buildProtocol(stream.peerAddress)
        except Exception:
            # One visitor's failure; the BIND and the other visitors go on.
            self.listener.log.failure("buildProtocol failed for a visitor from {peer}", peer=stream.peerAddress)
            protocol = None
        if protocol is None:
            stream.loseConnection()
            return
        stream.protocol = protocol
        protocol.makeConnection(stream)
        if self.parser.remainder:
            protocol.dataReceived(self.parser.remainder)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        pass


class TCPBindProtocol(Protocol):
    """
    The client side of a TCP BIND: an smux session (server role) over the
    BIND's relay stream; every stream is a remote peer.

    C{listener} owns the BIND (an rtcp listener, the C{rtcp:} endpoint's
    port): C{reactor}, C{muxConfig}, C{name}, C{boundAddress}, C{log},
    C{handler}, and C{bound(transport)}, called once the server answered OK.
    """

    #: The factory that built this BIND (set by it), which keeps it live.
    bindFactory: BindFactory

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.session: MuxSession | None = None

    def connectionMade(self) -> None:
        self.listener.bound(self.transport)
        self.session = MuxSession(
            self.listener.reactor,
            self.transport,
            client=False,
            config=self.listener.muxConfig,
            acceptStream=self._accept,
            label=f"{self.listener.name} BIND {self.listener.boundAddress}",
        )

    def _accept(self, stream: MuxStream) -> None:
        stream.attach(PerPeerPreamble(self.listener))

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.dataReceived(data)

    def release(self) -> None:
        """
        End the BIND now: the session closes, unregistering itself from the
        carrier, which then closes (see L{stopBinding}).
        """
        if self.session is not None:
            self.session.close()
        elif self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.bindFactory.live.discard(self)
        if self.session is not None:
            self.session.connectionLost(reason)
        self.listener.log.info(
            "{name}: BIND {bound} ended: {why}",
            name=self.listener.name, bound=self.listener.boundAddress,
            why=reason.getErrorMessage() if reason is not None else "closed",
        )


class BindFactory(Factory):
    """
    Builds C{protocolClass(listener)} for every (re)bind of a
    L{ClientService}, and knows the ones whose connection is not lost yet
    (L{releaseAll}).
    """

    noisy = False

    def __init__(self, listener: Any, protocolClass: Any) -> None:
        self.listener = listener
        self.protocolClass = protocolClass
        self.live: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol = self.protocolClass(self.listener)
        protocol.bindFactory = self
        self.live.add(protocol)
        return protocol  # type: ignore[no-any-return]

    def releaseAll(self) -> None:
        """
        End every live BIND (each protocol's C{release}).
        """
        for protocol in list(self.live):
            protocol.release()

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        pass


@implementer(IListener)
class RTCPListener(_RemoteListener):
    """
    Options (listener metadata): C{mux.*} (as the server's), ours:
    C{maxRetryDelay} (5 s).
    """

    network = "tcp"

    def _factory(self) -> BindFactory:
        return BindFactory(self, TCPBindProtocol)


# -- rudp


class _TunnelSocket:
    """
    What a L{UDPSessionTable} writes replies to: here, tunnel datagrams on
    the BIND stream, addressed to the remote peer (dropped while the
    stream is full).
    """

    def __init__(self, stream: TunnelFramedChannel) -> None:
        self.stream = stream

    def write(self, data: bytes, addr: Any) -> None:
        self.stream.sendTunnelDatagram(addr[0], addr[1], data)


class _UDPBindProtocol(TunnelFramedChannel):
    """
    The client side of a UDP BIND: tunnel datagrams from remote peers,
    demultiplexed into sessions by the rudp handler.
    """

    #: The factory that built this BIND (set by it), which keeps it live.
    bindFactory: BindFactory

    def __init__(self, listener: RUDPListener) -> None:
        super().__init__(None, listener.log)
        self.listener = listener
        self.table = UDPSessionTable(listener.sessions, listener.handler)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.listener.bound(self.transport)
        self.label = f"{self.listener.service.name}: UDP BIND {self.listener.boundAddress}"
        self.table.transport = _TunnelSocket(self)  # type: ignore[assignment]

    def tunnelDatagramReceived(self, host: str, port: int, data: bytes) -> None:
        self.table.datagramReceived(data, (host, port))

    def release(self) -> None:
        """
        End the BIND now: the tunnel's gate leaves the carrier, which then
        closes (see L{stopBinding}).
        """
        if self.transport is not None:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.bindFactory.live.discard(self)
        super().connectionLost(reason)
        self.table.closeAll()
        self.listener.log.info(
            "{name}: UDP BIND {bound} ended: {why} ({dropped} replies dropped)",
            name=self.listener.service.name, bound=self.listener.boundAddress,
            why=reason.getErrorMessage() if reason is not None else "closed", dropped=self.dropped,
        )


@implementer(IListener)
class RUDPListener(_RemoteListener):
    """
    Options (listener metadata): the udp listener's session options
    (C{ttl} 60 s, C{readQueueSize}, C{maxSessions}; sessions are always kept
    alive), ours: C{maxRetryDelay} (5 s).
    """

    network = "udp"
    datagram = True

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        super().__init__(reactor, service, context)
        self.sessions = UDPListener(reactor, service, context)
        self.sessions.keepAlive = True
        self.sessions.log = self.log

    def listen(self, handler: Any) -> defer.Deferred[Any]:
        if not hasattr(handler, "openSession"):
            return defer.fail(ConfigError(f"{self.where}: handler cannot serve an rudp listener"))
        return super().listen(handler)

    def _factory(self) -> BindFactory:
        return BindFactory(self, _UDPBindProtocol)
