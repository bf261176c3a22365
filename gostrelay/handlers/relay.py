"""
The relay handler: GOST's relay server (spec-relay.md section 2).

Each accepted stream sends one request; the handler authenticates it, picks
the target (the request's address, or in forward mode one of the service's
forwarder nodes), dials it through the service's router and then pipes bytes
both ways.  Bad requests get GOST's answer: a status code where GOST sends
one, a silent close where GOST closes, and always one log line naming the
peer and the reason.

Unlike GOST, the OK is sent as soon as the target is connected whatever the
handler's C{nodelay} says (design.md, "Compatibility stance"): every GOST
client accepts an early reply, and no client then waits for a target that
waits for it.
"""

from __future__ import annotations

from enum import IntEnum
from functools import partial
from typing import Any, Callable

from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs, metrics
from gostrelay.bypass import isPrivateHost
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.datagram import DatagramCallbacks, LengthFramedChannel
from gostrelay.errors import describeFailure
from gostrelay.handlers.base import DEFAULT_READ_TIMEOUT, PipingProtocol, StreamHandler, hostOf
from gostrelay.handlers.relaybind import TCPBind, UDPBind, bindAddress, parsePortRanges, portAllowed
from gostrelay.interfaces import IDatagramReceiver, IHandler
from gostrelay.mux import MuxConfig
from gostrelay.pipe import A, B, Pipe
from gostrelay.selector import Node
from gostrelay.statemachine import TransitionTable, UnexpectedEvent
from gostrelay.wire.address import joinHostPort, splitHostPort
from gostrelay.wire.relay import (
    Command,
    RelayDecodeError,
    Request,
    RequestParser,
    Status,
    encodeResponse,
    statusText,
)

__all__ = ["DEFAULT_READ_TIMEOUT", "RelayHandler", "RelayPhase", "RelayServerProtocol", "UnexpectedEvent", "isPrivate"]

_OK = encodeResponse(Status.OK)

_BIND_NETWORKS = frozenset({"tcp", "tcp4", "tcp6", "unix", "udp", "udp4", "udp6"})


def isPrivate(host: str) -> bool:
    """
    Whether C{host} as written is private (see L{gostrelay.bypass.isPrivateHost}).
    """
    return isPrivateHost(host)


class RelayPhase(IntEnum):
    """
    The phases of a relay connection (L{RelayServerProtocol}).
    """

    REQUEST = 0  # reading the request (under readTimeout)
    DIALING = 1  # the target (TCP) or datagram channel (UDP) is being dialed
    PIPING = 2  # bytes go both ways through the pipe
    DATAGRAMS = 3  # UDP CONNECT: length-framed datagrams on the stream
    BINDING = 4  # a BIND listener is being opened
    BOUND = 5  # the BIND session carries the bound port's traffic
    CLOSED = 6


@implementer(IDatagramReceiver)
class RelayServerProtocol(PipingProtocol):
    """
    One relay connection, from request to the end of its pipe.

    Its phases are one explicit machine: L{RelayPhase} in C{state}, and the
    table C{_MACHINE} (a L{TransitionTable}) from (phase, event) to the next
    phase and the action to run; every event goes through L{_fire}, and an
    event the phase cannot take raises L{UnexpectedEvent} instead of
    falling through an if-chain::

        request ─┬─ refuse, requestFailed ───────────────────> closed
                 ├─ dial, dialDatagrams ─> dialing ─┬─ targetConnected ─> piping
                 │                                  ├─ channelReady ────> datagrams
                 │                                  └─ dialFailed ──────> closed
                 └─ bind ─> binding ─┬─ bound ─> bound
                                     └─ bindFailed ─> closed
        (any) ─ connectionLost ─> closed

    A table rather than an automat machine: automat finds a transition by
    scanning all of them (32 here), 25 us per connection (four events)
    against 64 us for the whole in-memory lifecycle; the table is one dict
    lookup an event (docs/design.md, "State machines").

    Bytes are not events: they are the bulk path, so each phase that moves
    them names their receiver as it is entered (L{receive}: the request
    parser, the held remainder, the pipe, the datagram stream, the BIND
    session) and L{dataReceived} hands off in one call; so do datagrams
    from the target (L{_toClient}).
    """

    bound: Any = None
    stream: Any = None
    #: The status a failed dial is answered with.
    _failure = Status.NETWORK_UNREACHABLE

    def __init__(self, handler: RelayHandler) -> None:
        super().__init__(handler)
        self.handler = handler
        self.parser = RequestParser()
        self.user = ""
        self.network = "tcp"
        self.command = ""
        self._timeout: Any = None
        self._binding: Any = None
        self.state = RelayPhase.REQUEST
        #: Where the client's bytes go in the current state.
        self.receive: Callable[[bytes], None] = self._requestBytes
        #: Where the target's datagrams go in the current state.
        self._toClient: Callable[[bytes, str], None] = _dropDatagram

    def _fire(self, event: str, *args: Any) -> None:
        """
        Hand C{event} to the machine (C{_MACHINE}).
        """
        _MACHINE.fire(self, event, *args)

    # -- events, handed to the machine

    def connectionMade(self) -> None:
        super().connectionMade()
        self._timeout = self.reactor.callLater(self.options.readTimeout, self._requestTimedOut)

    def dataReceived(self, data: bytes) -> None:
        self.receive(data)

    def readConnectionLost(self) -> None:
        self._fire("readConnectionLost")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._fire("connectionLost", reason)

    def datagramReceived(self, data: bytes, addr: str) -> None:
        """
        A datagram from the target: framed to the client while the
        connection moves datagrams, or dropped while the stream is full.
        """
        self._toClient(data, addr)

    def channelClosed(self, reason: Failure | None) -> None:
        self._fire("channelClosed")

    def dialSucceeded(self, protocol: Any) -> None:
        self._fire("targetConnected", protocol)

    def dialFailed(self, reason: Failure) -> None:
        self._fire("dialFailed", reason)

    def _channelReady(self, channel: Any) -> None:
        self.dialing = None
        self.options.markNode(self.node, True)
        self._fire("channelReady", channel)

    def _bound(self, ignored: object) -> None:
        self._fire("bound")

    def _bindFailedEvent(self, reason: Failure) -> None:
        self._fire("bindFailed", reason)

    # -- the request

    def _requestBytes(self, data: bytes) -> None:
        if logs.TRACE:
            # Sizes only: a request carries the password.
            self.log.debug("{peer} request bytes: {n}", peer=self.peer, n=len(data))
        try:
            request = self.parser.feed(data)
        except RelayDecodeError as e:
            self._fire("requestFailed", f"bad request: {e}")
            return
        if request is not None:
            self._decide(request)

    def _holdBytes(self, data: bytes) -> None:
        # Bytes already read when we paused; they follow the remainder.
        self.parser.remainder += data

    def _ignoreBytes(self, data: bytes) -> None:
        pass

    def _requestTimedOut(self) -> None:
        self._timeout = None
        self._fire(
            "requestFailed",
            f"no complete request within {self.options.readTimeout:g}s ({self.parser.buffered} bytes read)"
        )

    def _cancelTimeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    # -- deciding (still in the request state: each branch ends in one input)

    def _decide(self, request: Request) -> None:
        options = self.options
        auth = request.userAuth
        self.user = auth.username if auth is not None else ""
        self.network = request.network
        command = request.command
        self.command = {0: "CONNECT", 1: "CONNECT", 2: "BIND"}.get(command, f"0x{request.cmd:02x}")
        if request.addr is not None:
            self.target = request.addr.address

        if options.authenticator is not None:
            user, password = (auth.username, auth.password) if auth is not None else ("", "")
            if not options.authenticator.authenticate(user, password):
                self._fire(
                    "refuse",
                    Status.UNAUTHORIZED,
                    f"authentication failed for user {user!r}" if auth else "no credentials",
                )
                return

        if options.forwarder is not None:
            self._forward()
        elif command in (0, Command.CONNECT):
            self._connect(request)
        elif command == Command.BIND:
            self._bind(request)
        else:
            self._fire("refuse", Status.BAD_REQUEST, f"unknown command 0x{request.cmd:02x}")

    def _connect(self, request: Request) -> None:
        if request.addr is None:
            self._fire("refuse", Status.BAD_REQUEST, "target not specified")
            return
        bypass = self.options.bypass
        if bypass and bypass.contains(request.addr.host, request.addr.port):
            self._fire("refuse", Status.FORBIDDEN, "target matches the service bypass")
            return
        # denyPrivate (and a bypass's private matcher) are the router's
        # guard: it resolves, checks every address and dials a checked one.
        if self.network == "udp":
            self._fire("dialDatagrams", self.target, Status.NETWORK_UNREACHABLE, None)
            return
        if self.network != "tcp":
            self._fire("refuse", Status.NETWORK_UNREACHABLE, f"network {self.network!r} is not supported")
            return
        self._dialChecked(self.target, Status.NETWORK_UNREACHABLE, None)

    def _forward(self) -> None:
        options = self.options
        assert options.forwarder is not None
        # The client ID is the authenticated user; an unchecked user name
        # only goes to the logs (spec-relay.md 2.1).  Else the client IP.
        clientID = self.user if options.authenticator is not None else ""
        node = options.forwarder.select(clientID or hostOf(self.transport.getPeer()))  # type: ignore[union-attr]
        if node is None:
            self._fire("refuse", Status.SERVICE_UNAVAILABLE, "no forward target available")
            return
        self.target = node.addr
        self.command = "FORWARD"
        if self.network == "udp":
            self._fire("dialDatagrams", node.addr, Status.HOST_UNREACHABLE, node)
            return
        self._dialChecked(node.addr, Status.HOST_UNREACHABLE, node)

    def _dialChecked(self, address: str, failure: Status, node: Node | None) -> None:
        try:
            splitHostPort(address)
        except ValueError as e:
            self._fire("refuse", failure, f"bad target {address!r}: {e}")
            return
        self._fire("dial", address, failure, node)

    def _bind(self, request: Request) -> None:
        if not self.handler.bind:
            self._fire("refuse", Status.FORBIDDEN, "BIND is disabled (set bind=true to allow it)")
            return
        if self.network not in _BIND_NETWORKS:
            self._fire("refuse", Status.BAD_REQUEST, f"BIND on network {self.network!r} is not supported")
            return
        if self.network == "unix":
            self._fire("refuse", Status.SERVICE_UNAVAILABLE, "BIND on unix sockets is not implemented")
            return
        try:
            host, port = bindAddress(request.addr)
        except ValueError as e:
            self._fire("refuse", Status.BAD_REQUEST, f"bad BIND address: {e}")
            return
        self.target = joinHostPort(host, port)
        if not portAllowed(port, self.handler.bindPorts):
            self._fire("refuse", Status.FORBIDDEN, f"BIND of port {port} is not allowed by bindPorts")
            return
        udp = self.network.startswith("udp")
        self.network = "udp" if udp else "tcp"
        self._fire("bind", (UDPBind if udp else TCPBind)(self, host, port))

    # -- outputs: what the machine does on its transitions

    def _leaveRequest(self) -> None:
        """
        The request is complete: no more timeout, no more reading until the
        target (or the BIND listener) is there.
        """
        self._cancelTimeout()
        self.receive = self._holdBytes
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def _startDial(self, address: str, failure: Status, node: Node | None) -> None:
        self._leaveRequest()
        self._failure = failure
        self.dialTarget(address, node)

    def _startDatagramDial(self, address: str, failure: Status, node: Node | None) -> None:
        self._leaveRequest()
        self._failure = failure
        self.node = node
        d = self.dialing = self.options.router.datagram(address, self)
        d.addCallbacks(self._channelReady, self._failed)

    def _startBind(self, bind: Any) -> None:
        self._leaveRequest()
        self._binding = bind
        bind.start().addCallbacks(self._bound, self._bindFailedEvent)

    def _refuse(self, status: Status, why: str) -> None:
        self._leaveRequest()
        self._reply(status, why)

    def targetConnected(self, protocol: Any) -> None:
        pipe = self.pipe
        assert pipe is not None
        self.receive = partial(pipe.dataReceived, A)
        self.transport.write(_OK)  # type: ignore[union-attr]
        self.log.info(
            "{peer} {command} {target}/{network} user={user!r}: connected",
            peer=self.peer,
            command=self.command,
            target=logs.escape(self.target),
            network=self.network,
            user=self.user,
        )

    def targetRefused(self, reason: Failure) -> None:
        self._reply(Status.FORBIDDEN, str(reason.value))

    def targetFailed(self, reason: Failure, why: str) -> None:
        self._reply(self._failure, why)

    def takeBuffered(self) -> bytes:
        rest, self.parser.remainder = self.parser.remainder, b""
        return rest

    def pipeClosed(self, pipe: Pipe, outcome: str) -> None:
        self.log.info(
            "{peer} {command} {target}/{network} user={user!r}: closed, "
            "{up} bytes up, {down} bytes down, {duration:.3f}s, {outcome}",
            peer=self.peer,
            command=self.command,
            target=logs.escape(self.target),
            network=self.network,
            user=self.user,
            up=pipe.transferred[A],
            down=pipe.transferred[B],
            duration=self.reactor.seconds() - self.started,
            outcome=outcome,
        )

    def _bindReady(self) -> None:
        bind = self.bound = self._binding
        self.log.info(
            "{peer} BIND {target}/{network} user={user!r}: bound on {bound}",
            peer=self.peer, target=logs.escape(self.target), network=self.network, user=self.user, bound=bind.bound,
        )
        self.receive = bind.dataReceived
        rest, self.parser.remainder = self.parser.remainder, b""
        if rest:
            bind.dataReceived(rest)
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _bindFailed(self, reason: Failure) -> None:
        self._reply(Status.SERVICE_UNAVAILABLE, f"cannot bind {self.target}/{self.network}: {reason.getErrorMessage()}")

    # -- UDP (CONNECT and forward mode): frames on the stream, datagrams outside

    def _udpEstablished(self, channel: Any) -> None:
        self.channel = channel
        # The client's side: our stream, from here on length-framed.
        stream = self.stream = LengthFramedChannel(DatagramCallbacks(self._fromClient), self.target)
        stream.makeConnection(self.transport)
        self.receive = stream.dataReceived
        self._toClient = self._frameToClient
        self.transport.write(_OK)  # type: ignore[union-attr]
        self.log.info(
            "{peer} {command} {target}/udp user={user!r}: connected",
            peer=self.peer, command=self.command, target=logs.escape(self.target), user=self.user,
        )
        rest, self.parser.remainder = self.parser.remainder, b""
        if rest:
            stream.dataReceived(rest)
        if self.clientEOF:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _fromClient(self, datagram: bytes, target: str) -> None:
        if logs.TRACE:
            self.log.debug("{peer} udp -> {n} bytes", peer=self.peer, n=len(datagram))
        self.channel.sendDatagram(datagram, target)

    def _frameToClient(self, data: bytes, addr: str) -> None:
        if self.stream.sendDatagram(data) and logs.TRACE:
            self.log.debug("{peer} udp <- {n} bytes from {addr}", peer=self.peer, n=len(data), addr=addr)

    def _udpDone(self, reason: Failure | None) -> None:
        self._toClient = _dropDatagram
        stream = self.stream
        stream.connectionLost(reason)
        self.channel.close()
        metrics.transferred(self.handler.service.name, stream.receivedBytes, stream.sentBytes)
        self.log.info(
            "{peer} {command} {target}/udp user={user!r}: closed, {du} datagrams ({bu} bytes) up, "
            "{dd} datagrams ({bd} bytes) down, {dropped} dropped, {duration:.3f}s, {outcome}",
            peer=self.peer, command=self.command, target=logs.escape(self.target), user=self.user,
            du=stream.received, bu=stream.receivedBytes, dd=stream.sent, bd=stream.sentBytes, dropped=stream.dropped,
            duration=self.reactor.seconds() - self.started, outcome=describeFailure(reason),
        )

    # -- endings

    def _reply(self, status: Status, why: str) -> None:
        """
        Answer C{status}, log why, close.
        """
        self.receive = self._ignoreBytes
        self.error = f"{statusText(status)}: {why}"
        self.transport.write(encodeResponse(status))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.log.info(
            "{peer} {command} {target}/{network} user={user!r}: refused with {status}: {why}",
            peer=self.peer,
            command=self.command or "request",
            target=logs.escape(self.target or "-"),
            network=self.network,
            user=self.user,
            status=statusText(status),
            why=logs.escape(why),
        )

    def _closeSilently(self, why: str) -> None:
        self.receive = self._ignoreBytes
        self.error = why
        self._cancelTimeout()
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.log.info("{peer}: closed without reply: {why}", peer=self.peer, why=logs.escape(why))

    def _close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _noteClientEOF(self) -> None:
        self.clientEOF = True

    def _eofDuringRequest(self) -> None:
        self._closeSilently(f"peer closed before a complete request ({self.parser.buffered} bytes read)")

    def _boundLost(self, reason: Failure | None) -> None:
        self.bound.connectionLost(reason)

    def _dropTarget(self, protocol: Any) -> None:
        protocol.transport.loseConnection()

    def _dropChannel(self, channel: Any) -> None:
        channel.close()

    def _releaseBind(self) -> None:
        self._binding.connectionLost(None)

    def _clientEOFToPipe(self) -> None:
        assert self.pipe is not None
        self.pipe.readEOF(A)

    def _clientLostToPipe(self, reason: Failure | None) -> None:
        assert self.pipe is not None
        self.pipe.connectionLost(A, reason)

    def _leftWhileDialing(self, reason: Failure | None) -> None:
        self.log.info(
            "{peer} {command} {target}/{network}: peer left while dialing",
            peer=self.peer, command=self.command, target=logs.escape(self.target), network=self.network,
        )
        self.cancelDial()

    def _leftDuringRequest(self, reason: Failure | None) -> None:
        self._cancelTimeout()
        self.log.info(
            "{peer}: closed before a complete request ({n} bytes read)",
            peer=self.peer, n=self.parser.buffered,
        )


def _dropDatagram(data: bytes, addr: str) -> None:
    """
    A datagram from the target while none is wanted (before the stream
    is framed, after it ended).
    """


def _nothing(protocol: RelayServerProtocol, *args: Any) -> None:
    pass


_P = RelayServerProtocol
_R, _D, _PIPE, _UDP, _BINDING, _BOUND, _X = RelayPhase

#: The relay connection's machine: (phase, event) -> (next phase, action).
#: Every event a phase can meet is declared; any other raises.
_MACHINE: TransitionTable[RelayPhase] = TransitionTable("relay server")
_upon = _MACHINE.upon

# The request ends in a refusal, a dial or a BIND.
_upon(_R, event="requestFailed", to=_X)(_P._closeSilently)
_upon(_R, event="refuse", to=_X)(_P._refuse)
_upon(_R, event="dial", to=_D)(_P._startDial)
_upon(_R, event="dialDatagrams", to=_D)(_P._startDatagramDial)
_upon(_R, event="bind", to=_BINDING)(_P._startBind)
_upon(_R, event="readConnectionLost", to=_X)(_P._eofDuringRequest)
_upon(_R, event="connectionLost", to=_X)(_P._leftDuringRequest)
# Dialing: the client's end of input waits for the pipe.
_upon(_D, event="targetConnected", to=_PIPE)(_P.pipeTo)
_upon(_D, event="channelReady", to=_UDP)(_P._udpEstablished)
_upon(_D, event="dialFailed", to=_X)(_P.answerDialFailure)
_upon(_D, _BINDING, event="readConnectionLost")(_P._noteClientEOF)
_upon(_D, event="channelClosed")(_nothing)
_upon(_D, event="connectionLost", to=_X)(_P._leftWhileDialing)
_upon(_PIPE, event="readConnectionLost")(_P._clientEOFToPipe)
_upon(_PIPE, event="connectionLost", to=_X)(_P._clientLostToPipe)
# UDP and BIND have no half-close: the client's end of input ends them.
_upon(_UDP, _BOUND, event="readConnectionLost")(_P._close)
_upon(_UDP, event="channelClosed")(_P._close)
_upon(_UDP, event="connectionLost", to=_X)(_P._udpDone)
_upon(_BINDING, event="bound", to=_BOUND)(_P._bindReady)
_upon(_BINDING, event="bindFailed", to=_X)(_P._bindFailed)
_upon(_BINDING, event="connectionLost", to=_X)(_nothing)
_upon(_BOUND, event="connectionLost", to=_X)(_P._boundLost)
# Closed: what was under way when the client left is released.
_upon(_X, event="targetConnected")(_P._dropTarget)
_upon(_X, event="channelReady")(_P._dropChannel)
_upon(_X, event="bound")(_P._releaseBind)
_upon(_X, event="dialFailed")(_nothing)
_upon(_X, event="bindFailed")(_nothing)
_upon(_X, event="readConnectionLost")(_nothing)
_upon(_X, event="channelClosed")(_nothing)
_upon(_X, event="connectionLost")(_nothing)


@implementer(IHandler)
class RelayHandler(StreamHandler):
    """
    The relay handler of one service.

    Options (handler metadata, GOST names): C{readTimeout} (15 s),
    C{bind} (false), C{nodelay} (accepted: our OK is never held back),
    C{idleTimeout} (0 = none), C{mux.*} (the BIND session's smux); ours:
    C{bindPorts} (ports a BIND may ask for, e.g. C{"2000-2999,8080"};
    default any), C{denyPrivate}, the pipe's (L{HandlerOptions}).  Service
    metadata: C{dialTimeout} (15 s).
    """

    protocol = RelayServerProtocol  # type: ignore[assignment]
    authenticates = True
    guardsTargets = True

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        super().__init__(reactor, service, context, "relay")
        assert service.handler is not None
        md = service.handler.md
        where = self.options.where
        self.bind = md.getBool("bind")
        self.muxConfig = MuxConfig.fromMetadata(md, where)
        self.bindPorts: list[tuple[int, int]] | None = None
        if md.getString("bindPorts"):
            try:
                self.bindPorts = parsePortRanges(md.getString("bindPorts"))
            except ValueError as e:
                raise ConfigError(f"{where}: bindPorts: {e}") from None

    def buildProtocol(self, addr: IAddress | None) -> RelayServerProtocol:
        return RelayServerProtocol(self)

    def reload(self) -> None:
        """
        Re-read users files (SIGHUP); on an error the previous users stay.
        """
        self.options.reload()
