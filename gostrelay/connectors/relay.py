"""
The relay connector: GOST's relay client (spec-relay.md section 3), as an
endpoint wrapper.

C{RelayConnector.endpoint(through, network, address)} wraps an endpoint
that reaches a relay server into one whose connections reach C{address}
behind it.  The wrapping protocol (L{RelayClientProtocol}) sits between the
carrier and the application protocol and is the application's transport.

When the request header goes (design.md, "Compatibility stance"):

  - default (C{nodelay=false}): with the application's first bytes, in one
    write (no extra round trip, GOST's wire), or alone after C{quietDelay}
    (20 ms) when the application has said nothing, so that
    server-speaks-first protocols (SMTP, FTP, MySQL, VNC) work where GOST's
    client hangs.  The connection is handed to the application at once.
  - C{nodelay=true}: at once.  The application gets the connection when the
    server's response arrives (a refusal fails the connect, so a local HTTP
    or SOCKS entry can answer 503 or a SOCKS error), or after
    C{responseWait} (500 ms) when the server holds its response back, as
    GOST servers with their default do; the application's bytes are never
    held waiting for the response.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
    ITLSTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from gostrelay import logs
from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.connectors.carrier import CarrierDelegate
from gostrelay.errors import HopFailed, RelayRefused, UnsupportedNetwork, describeFailure
from gostrelay.interfaces import IConnector
from gostrelay.layering import connectLayered
from gostrelay.mux import MuxConfig
from gostrelay.splice import spliceCarrierOf
from gostrelay.wire.address import joinHostPort, splitHostPort
from gostrelay.wire.relay import (
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    RelayDecodeError,
    RelayEncodeError,
    Request,
    ResponseParser,
    Status,
    UserAuthFeature,
    connectRequest,
    statusText,
)

DEFAULT_QUIET_DELAY = 0.020
DEFAULT_RESPONSE_WAIT = 0.5

_log = Logger(namespace="gostrelay.connector.relay")


#: What a relay stream offers for each kind of carrier (its interfaces but
#: TLS): worked out once per carrier type, not per connection.
_offered: dict[Any, tuple[Any, ...]] = {}


def _carrierInterfaces(spec: Any, tls: bool = False) -> tuple[Any, ...]:
    offered = _offered.get((spec, tls))
    if offered is None:
        if len(_offered) >= 256:
            _offered.clear()
        offered = _offered[(spec, tls)] = tuple(
            i for i in spec
            if not i.isOrExtends(ISSLTransport) and not i.isOrExtends(ITLSTransport)
            and not (tls and i.isOrExtends(IHalfCloseableDescriptor))
        )
    return offered


@implementer(IHalfCloseableProtocol, ITransport)
class RelayClientProtocol(CarrierDelegate, Protocol):
    """
    Speaks the relay request/response on a carrier, then passes bytes
    between the carrier and the application protocol, whose transport it is.
    """

    disconnecting = False

    def __init__(self, endpoint: RelayClientEndpoint, appFactory: IProtocolFactory, ready: defer.Deferred[Any]) -> None:
        self.endpoint = endpoint
        self.appFactory = appFactory
        self.ready = ready
        self.app: Any = None
        self.response: Any = None
        self.parser: ResponseParser | None = ResponseParser()
        self.headerSent = False
        self._timer: Any = None
        self._connectTimer: Any = None
        #: Why the connection failed, once we know better than the carrier's
        #: close: the server's refusal, a bad or missing response.
        self.failure: Failure | None = None

    # -- carrier side

    def connectionMade(self) -> None:
        # Offer what the carrier offers (half-close, TCP options), except
        # TLS: the application's peer is the target, not the TLS server.
        # Nor half-close over TLS: Twisted's TLS wrapper claims the TCP
        # transport's IHalfCloseableDescriptor and passes loseWriteConnection
        # to the socket under TLS (a FIN inside the TLS stream; once a
        # handshake was aborted, a write on a closed descriptor).  Without
        # it the pipe closes both ways, as over WebSocket (issue 19.9).
        tls = isinstance(self.transport, TLSMemoryBIOProtocol)
        directlyProvides(self, *_carrierInterfaces(providedBy(self.transport), tls))
        ep = self.endpoint
        if ep.nodelay:
            self._sendHeader()
            if ep.responseWait is not None:
                self._timer = ep.reactor.callLater(ep.responseWait, self._responseLate)
        else:
            self._timer = ep.reactor.callLater(ep.quietDelay, self._quiet)
            self._connectApp()
        if ep.connectTimeout > 0 and ep.nodelay:
            # Only nodelay waits for the response while connecting; in the
            # default mode the connection is the application's at once.
            self._connectTimer = ep.reactor.callLater(ep.connectTimeout, self._connectTimedOut)

    def _connectApp(self) -> None:
        if self.app is not None:
            return
        try:
            app = self.appFactory.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        except BaseException:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self._fail(Failure())
            return
        if app is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self._fail(Failure(ConnectError("the application refused the connection")))
            return
        self.app = app
        app.makeConnection(self)
        if not self.ready.called:
            self.ready.callback(app)

    def _fail(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(reason)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _cancelConnectTimer(self) -> None:
        if self._connectTimer is not None and self._connectTimer.active():
            self._connectTimer.cancel()
        self._connectTimer = None

    def _quiet(self) -> None:
        self._timer = None
        if not self.headerSent and not self.disconnecting:
            self._sendHeader()

    def _responseLate(self) -> None:
        self._timer = None
        self._connectApp()

    def _connectTimedOut(self) -> None:
        self._connectTimer = None
        _log.debug(
            "relay server {server}: no response for {target} within {t:g}s",
            server=self.endpoint.label, target=self.endpoint.target, t=self.endpoint.connectTimeout,
        )
        self.failure = Failure(HopFailed(self.endpoint.label, f"no response within {self.endpoint.connectTimeout:g}s"))
        self._fail(self.failure)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _sendHeader(self, data: bytes = b"") -> None:
        self.headerSent = True
        self.transport.write(self.endpoint.request + data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.parser is not None:
            try:
                response = self.parser.feed(data)
            except RelayDecodeError as e:
                _log.debug("relay server {server}: bad response: {e}", server=self.endpoint.label, e=e)
                self.failure = Failure(HopFailed(self.endpoint.label, f"bad response: {e}"))
                self._fail(self.failure)
                self.transport.abortConnection()  # type: ignore[union-attr]
                return
            if response is None:
                return
            rest, self.parser = self.parser.remainder, None
            self.response = response
            self._cancelConnectTimer()
            if response.status != Status.OK:
                # The service's close line says it too (the refusal is the
                # connection's reason), so this is detail for -D.
                _log.debug(
                    "relay server {server} refused {target}: {status}",
                    server=self.endpoint.label, target=self.endpoint.target,
                    status=statusText(response.status),
                )
                self._cancelTimer()
                self.failure = Failure(RelayRefused(response.status, self.endpoint.target, self.endpoint.label))
                self._fail(self.failure)
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            if self.app is None:
                self._cancelTimer()
                self._connectApp()
            if not rest:
                return
            data = rest
        if self.app is not None:
            if logs.TRACE:
                _log.debug("relay {target} <- {n} bytes", target=self.endpoint.target, n=len(data))
            self.app.dataReceived(data)

    def readConnectionLost(self) -> None:
        if self.parser is not None or self.app is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if IHalfCloseableProtocol.providedBy(self.app):
            self.app.readConnectionLost()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        if self.app is not None and IHalfCloseableProtocol.providedBy(self.app):
            self.app.writeConnectionLost()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancelTimer()
        self._cancelConnectTimer()
        lostEarly = self.parser is not None and self.failure is None
        if self.failure is not None:
            # The application learns the server's refusal, not "done": the
            # entry's close line says why and an HTTP entry can answer.
            reason = self.failure
        elif self.parser is not None and not self.disconnecting and not (reason is not None and reason.check(HopFailed, RelayRefused)):
            # No response, and not because we closed: this server's fault
            # (a failure further down is already named).
            how = (
                "closed the connection before answering"
                if reason is None or reason.check(ConnectionDone)
                else f"connection lost before answering: {describeFailure(reason)}"
            )
            if getattr(self.transport, "_handshakeDone", None) is False:
                # Twisted's TLS wrapper: the handshake never finished.
                how = (
                    "TLS handshake failed: " + describeFailure(reason)
                    if reason is not None and describeFailure(reason).startswith("TLS")
                    else "TLS handshake failed: the server closed the connection (does it speak TLS?)"
                )
            reason = Failure(HopFailed(self.endpoint.label, how))
        if self.app is not None:
            app, self.app = self.app, None
            app.connectionLost(reason)
        else:
            if reason is None or reason.check(ConnectionDone):
                reason = Failure(HopFailed(self.endpoint.label, "closed the connection"))
            self._fail(reason)
        if lostEarly and not self.disconnecting:
            _log.debug("relay {target}: {why}", target=self.endpoint.target, why=reason.getErrorMessage() if reason else "closed")

    def spliceCarrier(self) -> Any:
        """
        The carrier transport, once the relay handshake is over and every
        byte passes through unchanged (so L{gostrelay.splice} may move bytes
        on the carrier directly); C{None} before that.
        """
        if self.headerSent and self.parser is None and self.app is not None and not self.disconnecting:
            carrier = self.transport
            inner = spliceCarrierOf(carrier)
            return inner() if inner is not None else carrier
        return None

    # -- the application's transport

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.headerSent:
            self._cancelTimer()
            self._sendHeader(data)
            return
        if logs.TRACE:
            _log.debug("relay {target} -> {n} bytes", target=self.endpoint.target, n=len(data))
        self.transport.write(data)  # type: ignore[union-attr]

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._cancelTimer()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._cancelTimer()
        self.transport.abortConnection()  # type: ignore[union-attr]

    def loseWriteConnection(self) -> None:
        if not self.headerSent:
            # The server must learn the target even if the application
            # sends nothing before its FIN.
            self._cancelTimer()
            self._sendHeader()
        self.transport.loseWriteConnection()  # type: ignore[union-attr]


class _RelayClientFactory(Factory):
    noisy = False

    def __init__(self, endpoint: RelayClientEndpoint, appFactory: IProtocolFactory, ready: defer.Deferred[Any]) -> None:
        self.endpoint = endpoint
        self.appFactory = appFactory
        self.ready = ready

    def buildProtocol(self, addr: Any) -> RelayClientProtocol:
        return RelayClientProtocol(self.endpoint, self.appFactory, self.ready)


@implementer(IStreamClientEndpoint)
class RelayClientEndpoint:
    """
    Connections through a relay server to one target.

    @param through: an endpoint reaching the relay server.
    @param request: the encoded relay request.
    """

    def __init__(
        self,
        reactor: Any,
        through: IStreamClientEndpoint,
        request: bytes,
        target: str,
        nodelay: bool = False,
        quietDelay: float = DEFAULT_QUIET_DELAY,
        responseWait: float | None = DEFAULT_RESPONSE_WAIT,
        connectTimeout: float = 0.0,
        label: str = "",
    ) -> None:
        self.reactor = reactor
        self.through = through
        self.request = request
        self.target = target
        self.nodelay = nodelay
        self.quietDelay = quietDelay
        self.responseWait = responseWait
        self.connectTimeout = connectTimeout
        self.label = label or repr(through)

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        return connectLayered(self.through, lambda ready: _RelayClientFactory(self, protocolFactory, ready))


def _credentials(node: NodeConfig, where: str) -> tuple[str | None, str]:
    connector = node.connector
    auth = connector.auth if connector is not None else None
    if auth is None:
        return None, ""
    if auth.file:
        try:
            with open(auth.file, encoding="utf-8") as f:
                first = f.readline().strip()
        except OSError as e:
            raise ConfigError(f"{where}: cannot read auth file {auth.file}: {e.strerror}") from None
        user, _, password = first.partition(" ")
        return user, password.strip()
    if not auth.username:
        return None, ""
    return auth.username, auth.password


def relayBindEndpoint(
    reactor: Any,
    through: IStreamClientEndpoint,
    network: str,
    address: str,
    username: str | None = None,
    password: str = "",
    connectTimeout: float = 0.0,
    label: str = "",
) -> RelayClientEndpoint:
    """
    An endpoint whose connections are relay BINDs of C{address} on the
    server C{through} reaches: the request goes at once and the connection
    is handed over when the server answers OK (the response, with the bound
    address, is the protocol's C{transport.response}); a refusal fails the
    connect with L{RelayRefused}.  Shared by the relay connector (rtcp/rudp
    listeners) and the C{rtcp:} endpoint.

    The empty host means every IPv4 address: C{":2222"} is sent as
    C{0.0.0.0:2222}, as GOST intends (GOST's own client sends a broken
    domain; see tests/data/vectors transcripts rtcp_bind_empty_host_BUG).
    """
    network = "udp" if network.startswith("udp") else "tcp"
    host, port = splitHostPort(address) if address else ("", 0)
    if host == "":
        host = "0.0.0.0"
    features: list[Any] = []
    if username is not None:
        features.append(UserAuthFeature(username, password))
    features.append(NetworkFeature(Network.UDP if network == "udp" else Network.TCP))
    features.append(AddrFeature.fromHostPort(host, port))
    cmd = Command.BIND | (FLAG_UDP if network == "udp" else 0)
    request = Request(int(cmd), tuple(features)).encode()
    return RelayClientEndpoint(
        reactor,
        through,
        request,
        joinHostPort(host, port),
        nodelay=True,
        responseWait=None,
        connectTimeout=connectTimeout,
        label=label,
    )


@implementer(IConnector)
class RelayConnector:
    """
    The relay connector of one chain node.

    Options (connector metadata): C{nodelay} (false), C{quietDelay} (20 ms,
    ours), C{responseWait} (500 ms, ours), C{connectTimeout} (0 = none).
    """

    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        assert node.connector is not None
        where = node.source or node.name
        md = node.connector.md
        self.reactor = reactor
        self.label = node.addr
        self.nodelay = md.getBool("nodelay")
        self.quietDelay = md.getDuration("quietDelay", default=DEFAULT_QUIET_DELAY)
        self.responseWait = md.getDuration("responseWait", default=DEFAULT_RESPONSE_WAIT)
        self.connectTimeout = md.getDuration("connectTimeout")
        self.username, self.password = _credentials(node, where)
        # Encoded CONNECT requests by (network, target): a forward service
        # sends the same one on every connection.
        self._requests: dict[tuple[str, str], bytes] = {}
        # The BIND session's smux settings, as GOST reads them: the connector's.
        self.muxConfig = MuxConfig.fromMetadata(md, where)
        if self.username is not None:
            try:
                connectRequest("", username=self.username, password=self.password).encode()
            except RelayEncodeError as e:
                raise ConfigError(f"{where}: {e}") from None

    def bindEndpoint(self, through: IStreamClientEndpoint, network: str, address: str) -> RelayClientEndpoint:
        """
        L{relayBindEndpoint} with this node's credentials and timeout.
        """
        return relayBindEndpoint(
            self.reactor, through, network, address, self.username, self.password,
            connectTimeout=self.connectTimeout, label=self.label,
        )

    def endpoint(self, through: IStreamClientEndpoint, network: str, address: str) -> RelayClientEndpoint:
        if network in ("tcp4", "tcp6"):
            network = "tcp"
        elif network in ("udp4", "udp6"):
            network = "udp"
        if network not in ("tcp", "udp"):
            raise UnsupportedNetwork(f"relay connector: network {network!r} is not supported")
        request = self._requests.get((network, address))
        if request is None:
            try:
                request = connectRequest(address, network, self.username, self.password).encode()
            except (RelayEncodeError, ValueError) as e:
                raise UnsupportedNetwork(f"relay connector: bad target {address!r}: {e}") from None
            if len(self._requests) >= 1024:
                self._requests.clear()
            self._requests[(network, address)] = request
        return RelayClientEndpoint(
            self.reactor,
            through,
            request,
            address,
            nodelay=self.nodelay,
            quietDelay=self.quietDelay,
            responseWait=self.responseWait,
            connectTimeout=self.connectTimeout,
            label=self.label,
        )
