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

import enum
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer, providedBy

from gostrelay import logs
from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.connectors.carrier import CarrierDelegate, carrierDeclaration, nodeCredentials
from gostrelay.directwrite import loseConnectionNow
from gostrelay.errors import HopFailed, RelayRefused, UnsupportedNetwork, describeFailure
from gostrelay.interfaces import IConnector
from gostrelay.layering import connectLayered
from gostrelay.logs import Logger
from gostrelay.mux import MuxConfig
from gostrelay.statemachine import TransitionTable
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




class RelayClientState(enum.IntEnum):
    """
    Where a relay client connection is (L{RelayClientProtocol.state})::

        IDLE --hold--> HOLDING --send/quiet/finishWriting--> AWAITING --answered--> OPEN
        IDLE --ask---> ASKING  --responseLate--------------> AWAITING
                       HOLDING, ASKING --answered----------------------------------> OPEN
        HOLDING/ASKING/AWAITING/OPEN --failed--> FAILED
        any --lost--> CLOSED
    """

    #: The carrier is not up yet.
    IDLE = 0
    #: C{nodelay=false}: the application has the connection; the request
    #: waits for its first bytes (one write, GOST's wire) or C{quietDelay}.
    HOLDING = 1
    #: C{nodelay=true}: the request went; the application waits for the
    #: answer (or C{responseWait}).
    ASKING = 2
    #: The request went and the application has the connection; the answer
    #: is not read yet.
    AWAITING = 3
    #: The server said OK: bytes pass through.
    OPEN = 4
    #: The reason is known (refusal, bad or no answer, the application
    #: refused); the carrier is closing; nothing more is carried.
    FAILED = 5
    #: The carrier is gone.
    CLOSED = 6


_IDLE, _HOLDING, _ASKING, _AWAITING, _OPEN, _FAILED, _CLOSED = RelayClientState

#: The machine: (state, event) -> (next state, what the transition does).
#: An event a state does not list cannot happen there (the tests drive
#: every sequence of events to show it).
_MACHINE: TransitionTable[RelayClientState] = TransitionTable("relay client")
_upon = _MACHINE.upon


@_upon(_IDLE, event="hold", to=_HOLDING)
def _hold(s: RelayClientProtocol) -> None:
    s._connectApp()
    # The quiet delay only if the application did not speak (nor close)
    # as it got the connection: no timer made and cancelled for nothing.
    if s.state is _HOLDING and not s.disconnecting:
        s._timer = s.endpoint.reactor.callLater(s.endpoint.quietDelay, s._fire, "quiet")


@_upon(_IDLE, event="ask", to=_ASKING)
def _ask(s: RelayClientProtocol) -> None:
    ep = s.endpoint
    s.transport.write(ep.request)  # type: ignore[union-attr]
    s._send = s._sendThrough()
    if ep.responseWait is not None:
        s._timer = ep.reactor.callLater(ep.responseWait, s._fire, "responseLate")
    if ep.connectTimeout > 0:
        # Only nodelay waits for the response while connecting; in the
        # default mode the connection is the application's at once.
        s._connectTimer = ep.reactor.callLater(ep.connectTimeout, s._fire, "connectTimedOut")


@_upon(_HOLDING, event="send", to=_AWAITING)
def _sendWithRequest(s: RelayClientProtocol, data: bytes) -> None:
    s._cancelTimer()
    s._send = s._sendThrough()
    s.transport.write(s.endpoint.request + data)  # type: ignore[union-attr]


@_upon(_HOLDING, event="quiet", to=_AWAITING)
def _sendRequest(s: RelayClientProtocol) -> None:
    # The server must learn the target even if the application says
    # nothing first (server-speaks-first protocols) ...
    s._timer = None
    s._send = s._sendThrough()
    s.transport.write(s.endpoint.request)  # type: ignore[union-attr]


@_upon(_HOLDING, event="finishWriting", to=_AWAITING)
def _sendRequestAndFinish(s: RelayClientProtocol) -> None:
    # ... or nothing before its FIN.
    s._cancelTimer()
    s._send = s._sendThrough()
    s.transport.write(s.endpoint.request)  # type: ignore[union-attr]
    s.transport.loseWriteConnection()  # type: ignore[union-attr]


@_upon(_ASKING, _AWAITING, _OPEN, _FAILED, _CLOSED, event="finishWriting")
def _finishWriting(s: RelayClientProtocol) -> None:
    s.transport.loseWriteConnection()  # type: ignore[union-attr]


@_upon(_ASKING, event="responseLate", to=_AWAITING)
def _responseLate(s: RelayClientProtocol) -> None:
    s._timer = None
    s._connectApp()


@_upon(_ASKING, _AWAITING, event="connectTimedOut", to=_FAILED)
def _connectTimedOut(s: RelayClientProtocol) -> None:
    s._connectTimer = None
    ep = s.endpoint
    _log.debug("relay server {server}: no response for {target} within {t:g}s", server=ep.label, target=ep.target, t=ep.connectTimeout)
    s._failWith(Failure(HopFailed(ep.label, f"no response within {ep.connectTimeout:g}s")), abort=True)


@_upon(_HOLDING, event="answered", to=_OPEN)
def _answeredFirst(s: RelayClientProtocol, rest: bytes) -> None:
    # A server that answers before it was asked (no GOST server does)
    # still gets its request, now, before any application byte.
    s._cancelTimer()
    s.transport.write(s.endpoint.request)  # type: ignore[union-attr]
    s._open(rest)


@_upon(_AWAITING, event="answered", to=_OPEN)
def _answered(s: RelayClientProtocol, rest: bytes) -> None:
    s._open(rest)


@_upon(_ASKING, event="answered", to=_OPEN)
def _answeredAsked(s: RelayClientProtocol, rest: bytes) -> None:
    s._cancelTimer()
    if s._connectApp():
        s._open(rest)


@_upon(_HOLDING, _ASKING, _AWAITING, _OPEN, event="failed", to=_FAILED)
def _failed(s: RelayClientProtocol, reason: Failure, abort: bool) -> None:
    s._failWith(reason, abort)


@_upon(_FAILED, _CLOSED, event="failed")
def _failedAgain(s: RelayClientProtocol, reason: Failure, abort: bool) -> None:
    pass  # the first reason stands (or the end came first)


@_upon(_OPEN, event="readLost")
def _readLost(s: RelayClientProtocol) -> None:
    if IHalfCloseableProtocol.providedBy(s.app):
        s.app.readConnectionLost()
    else:
        s.transport.loseConnection()  # type: ignore[union-attr]


@_upon(_HOLDING, _ASKING, _AWAITING, _FAILED, event="readLost")
def _closeUnanswered(s: RelayClientProtocol) -> None:
    # No answer yet (or a failed one): a half-closed server will not give
    # one.
    s.transport.loseConnection()  # type: ignore[union-attr]


@_upon(_IDLE, _HOLDING, _ASKING, _AWAITING, event="lost", to=_CLOSED)
def _lostUnanswered(s: RelayClientProtocol, reason: Failure | None) -> None:
    s._lost(reason, unanswered=True)


@_upon(_OPEN, _FAILED, event="lost", to=_CLOSED)
def _lostAfter(s: RelayClientProtocol, reason: Failure | None) -> None:
    s._lost(reason, unanswered=False)


def _drop(data: bytes) -> None:
    """
    Where bytes go once the stream can carry none (refused, failed, gone).
    """


@implementer(IHalfCloseableProtocol, ITransport)
class RelayClientProtocol(CarrierDelegate, Protocol):
    """
    Speaks the relay request/response on a carrier, then passes bytes
    between the carrier and the application protocol, whose transport it is.

    Its life is an explicit machine: L{RelayClientState} and the
    transition table above (L{gostrelay.statemachine}; C{_upon}
    declarations, L{_fire} to run one).
    The protocol's methods only hand events to it, or to where it points
    them: C{_deliver} (the server's bytes: the response parser, then the
    application) and C{_send} (the application's: the machine, whose first
    bytes carry the request, then the carrier), so no byte of a bulk
    transfer pays for a transition.

    Not automat, as Twisted's C{ClientService} is: see
    L{gostrelay.statemachine} for why (automat tripled this protocol's
    work per connection).
    """

    machine = _MACHINE

    disconnecting = False

    def __init__(self, endpoint: RelayClientEndpoint, appFactory: IProtocolFactory, ready: defer.Deferred[Any]) -> None:
        self.endpoint = endpoint
        self.appFactory = appFactory
        self.ready = ready
        self.state = _IDLE
        self.response: Any = None
        self.parser: ResponseParser | None = ResponseParser()
        self._timer: Any = None
        self._connectTimer: Any = None
        #: Why the connection failed, once we know better than the carrier's
        #: close: the server's refusal, a bad or missing response.
        self.failure: Failure | None = None
        self._deliver: Callable[[bytes], None] = self._readResponse
        self._send: Callable[[bytes], None] = self._sendFirst

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
        self.__provides__ = carrierDeclaration(type(self), providedBy(self.transport), tls)
        self._fire("ask" if self.endpoint.nodelay else "hold")

    def spliceCarrier(self) -> Any:
        """
        The carrier transport, once the relay handshake is over and every
        byte passes through unchanged (so L{gostrelay.splice} may move bytes
        on the carrier directly); C{None} before that.
        """
        if self.state is _OPEN and not self.disconnecting:
            return self.carrierForSplice()
        return None

    # -- the application's transport

    def write(self, data: bytes) -> None:
        if data:
            self._send(data)

    def loseConnection(self) -> None:
        self._closeCarrier(abort=False)

    def loseConnectionNow(self) -> None:
        """
        L{loseConnection}, closing a plain TCP carrier with nothing to flush
        at once (L{gostrelay.directwrite.loseConnectionNow}; for the pipe).
        """
        self._closeCarrier(abort=False, now=True)

    def abortConnection(self) -> None:
        self._closeCarrier(abort=True)

    def loseWriteConnection(self) -> None:
        self._fire("finishWriting")

    # -- what the machine's transitions use

    def _sendFirst(self, data: bytes) -> None:
        """
        The application's bytes before the request went: they go with it
        (C{HOLDING}); a stream that failed or ended carries nothing.
        """
        if self.state is _HOLDING:
            self._fire("send", data)

    def _readResponse(self, data: bytes) -> None:
        """
        The server's bytes before its answer: the sans-IO response parser
        turns them into the machine's C{answered} or C{failed}.
        """
        parser = self.parser
        assert parser is not None
        try:
            response = parser.feed(data)
        except RelayDecodeError as e:
            _log.debug("relay server {server}: bad response: {e}", server=self.endpoint.label, e=e)
            self._fire("failed", Failure(HopFailed(self.endpoint.label, f"bad response: {e}")), True)
            return
        if response is None:
            return
        rest, self.parser = parser.remainder, None
        self.response = response
        self._cancelConnectTimer()
        if response.status != Status.OK:
            # The service's close line says it too (the refusal is the
            # connection's reason), so this is detail for -D.
            _log.debug(
                "relay server {server} refused {target}: {status}",
                server=self.endpoint.label, target=self.endpoint.target, status=statusText(response.status),
            )
            self._fire("failed", Failure(RelayRefused(response.status, self.endpoint.target, self.endpoint.label)), False)
            return
        self._fire("answered", rest)

    def _connectApp(self) -> bool:
        failure = self.buildApp(self.appFactory)
        if failure is not None:
            self._fire("failed", failure, False)
            return False
        if not self.ready.called:
            self.ready.callback(self.app)
        return True

    def _sendThrough(self) -> Callable[[bytes], None]:
        """
        The direct path for the application's bytes, once the request went.
        """
        carrier = self.transport
        if not logs.TRACE:
            return carrier.write  # type: ignore[union-attr, no-any-return]
        target = self.endpoint.target

        def send(data: bytes) -> None:
            _log.debug("relay {target} -> {n} bytes", target=target, n=len(data))
            carrier.write(data)  # type: ignore[union-attr]

        return send

    def _open(self, rest: bytes) -> None:
        """
        The stream is open: bytes pass straight between the carrier and
        the application from now on.
        """
        app = self.app
        if logs.TRACE:
            target = self.endpoint.target

            def deliver(data: bytes) -> None:
                _log.debug("relay {target} <- {n} bytes", target=target, n=len(data))
                app.dataReceived(data)

            self._deliver = deliver
        else:
            self._deliver = app.dataReceived
        self._send = self._sendThrough()
        if rest:
            self._deliver(rest)

    def _closeCarrier(self, abort: bool, now: bool = False) -> None:
        self.disconnecting = True
        self._cancelTimer()
        if abort:
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif now:
            loseConnectionNow(self.transport)
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _failWith(self, reason: Failure, abort: bool) -> None:
        self._cancelTimer()
        self._cancelConnectTimer()
        self._deliver = self._send = _drop
        self.failure = reason
        if not self.ready.called:
            self.ready.errback(reason)
        if abort:
            self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _lost(self, reason: Failure | None, unanswered: bool) -> None:
        self._cancelTimer()
        self._cancelConnectTimer()
        self._deliver = self._send = _drop
        if self.failure is not None:
            # The application learns the server's refusal, not "done": the
            # entry's close line says why and an HTTP entry can answer.
            reason = self.failure
        elif unanswered and not self.disconnecting and not (reason is not None and reason.check(HopFailed, RelayRefused)):
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
            if not self.ready.called:
                self.ready.errback(reason)
        if unanswered and not self.disconnecting:
            _log.debug("relay {target}: {why}", target=self.endpoint.target, why=reason.getErrorMessage() if reason else "closed")

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _cancelConnectTimer(self) -> None:
        if self._connectTimer is not None and self._connectTimer.active():
            self._connectTimer.cancel()
        self._connectTimer = None


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
        self.username, self.password = nodeCredentials(node, where)
        # Encoded CONNECT requests by (network, target): a forward service
        # sends the same one on every connection.
        self._requests: dict[tuple[str, str], bytes] = {}
        self._streams: dict[tuple[str, str], RelayClientEndpoint] = {}
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

    def streamEndpoint(self, network: str, address: str) -> RelayClientEndpoint:
        """
        L{endpoint}'s relay client parameters for a chain that connects the
        carrier itself (L{gostrelay.chain.Chain.direct}): no carrier
        endpoint; made once per target, as a forward service dials the same
        one on every connection.
        """
        key = (network, address)
        endpoint = self._streams.get(key)
        if endpoint is None:
            endpoint = self.endpoint(None, network, address)  # type: ignore[arg-type]
            if len(self._streams) >= 1024:
                self._streams.clear()
            self._streams[key] = endpoint
        return endpoint

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
