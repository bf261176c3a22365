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

from typing import Any

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

__all__ = ["DEFAULT_READ_TIMEOUT", "RelayHandler", "RelayServerProtocol", "isPrivate"]

_OK = encodeResponse(Status.OK)

_BIND_NETWORKS = frozenset({"tcp", "tcp4", "tcp6", "unix", "udp", "udp4", "udp6"})


def isPrivate(host: str) -> bool:
    """
    Whether C{host} as written is private (see L{gostrelay.bypass.isPrivateHost}).
    """
    return isPrivateHost(host)


@implementer(IDatagramReceiver)
class RelayServerProtocol(PipingProtocol):
    """
    One relay connection, from request to the end of its pipe.
    """

    _state = "request"
    bound: Any = None
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

    # -- the request

    def connectionMade(self) -> None:
        super().connectionMade()
        self._timeout = self.reactor.callLater(self.options.readTimeout, self._requestTimedOut)

    def dataReceived(self, data: bytes) -> None:
        if self._state == "piping":
            assert self.pipe is not None
            self.pipe.dataReceived(A, data)
            return
        if self._state == "udp":
            self.stream.dataReceived(data)
            return
        if self._state == "bound":
            self.bound.dataReceived(data)
            return
        if self._state != "request":
            # Bytes already read when we paused; they follow the remainder.
            self.parser.remainder += data
            return
        if logs.TRACE:
            # Sizes only: a request carries the password.
            self.log.debug("{peer} request bytes: {n}", peer=self.peer, n=len(data))
        try:
            request = self.parser.feed(data)
        except RelayDecodeError as e:
            self._closeSilently(f"bad request: {e}")
            return
        if request is None:
            return
        self._cancelTimeout()
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self._state = "handling"
        self._handle(request)

    def _requestTimedOut(self) -> None:
        self._timeout = None
        self._closeSilently(
            f"no complete request within {self.options.readTimeout:g}s ({self.parser.buffered} bytes read)"
        )

    def _cancelTimeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    # -- deciding

    def _handle(self, request: Request) -> None:
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
                self._reply(
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
            self._reply(Status.BAD_REQUEST, f"unknown command 0x{request.cmd:02x}")

    def _connect(self, request: Request) -> None:
        if request.addr is None:
            self._reply(Status.BAD_REQUEST, "target not specified")
            return
        bypass = self.options.bypass
        if bypass and bypass.contains(request.addr.host, request.addr.port):
            self._reply(Status.FORBIDDEN, "target matches the service bypass")
            return
        # denyPrivate (and a bypass's private matcher) are the router's
        # guard: it resolves, checks every address and dials a checked one.
        if self.network == "udp":
            self._dialUDP(self.target, Status.NETWORK_UNREACHABLE)
            return
        if self.network != "tcp":
            self._reply(Status.NETWORK_UNREACHABLE, f"network {self.network!r} is not supported")
            return
        self._dialTarget(self.target, Status.NETWORK_UNREACHABLE)

    def _forward(self) -> None:
        options = self.options
        assert options.forwarder is not None
        # The client ID is the authenticated user; an unchecked user name
        # only goes to the logs (spec-relay.md 2.1).  Else the client IP.
        clientID = self.user if options.authenticator is not None else ""
        node = options.forwarder.select(clientID or hostOf(self.transport.getPeer()))  # type: ignore[union-attr]
        if node is None:
            self._reply(Status.SERVICE_UNAVAILABLE, "no forward target available")
            return
        self.target = node.addr
        self.command = "FORWARD"
        if self.network == "udp":
            self._dialUDP(node.addr, Status.HOST_UNREACHABLE, node)
            return
        self._dialTarget(node.addr, Status.HOST_UNREACHABLE, node)

    def _bind(self, request: Request) -> None:
        if not self.handler.bind:
            self._reply(Status.FORBIDDEN, "BIND is disabled (set bind=true to allow it)")
            return
        if self.network not in _BIND_NETWORKS:
            self._reply(Status.BAD_REQUEST, f"BIND on network {self.network!r} is not supported")
            return
        if self.network == "unix":
            self._reply(Status.SERVICE_UNAVAILABLE, "BIND on unix sockets is not implemented")
            return

        try:
            host, port = bindAddress(request.addr)
        except ValueError as e:
            self._reply(Status.BAD_REQUEST, f"bad BIND address: {e}")
            return
        self.target = joinHostPort(host, port)
        if not portAllowed(port, self.handler.bindPorts):
            self._reply(Status.FORBIDDEN, f"BIND of port {port} is not allowed by bindPorts")
            return
        udp = self.network.startswith("udp")
        self.network = "udp" if udp else "tcp"
        bind = (UDPBind if udp else TCPBind)(self, host, port)
        self._state = "binding"

        def bound(_: Any) -> None:
            if self._state != "binding":
                bind.connectionLost(None)
                return
            self.bound = bind
            self._state = "bound"
            self.log.info(
                "{peer} BIND {target}/{network} user={user!r}: bound on {bound}",
                peer=self.peer, target=logs.escape(self.target), network=self.network, user=self.user, bound=bind.bound,
            )
            rest, self.parser.remainder = self.parser.remainder, b""
            if rest:
                bind.dataReceived(rest)
            self.transport.resumeProducing()  # type: ignore[union-attr]

        def failed(reason: Failure) -> None:
            if self._state != "binding":
                return
            self._reply(Status.SERVICE_UNAVAILABLE, f"cannot bind {self.target}/{self.network}: {reason.getErrorMessage()}")

        bind.start().addCallbacks(bound, failed)

    # -- dialing

    def _dialTarget(self, address: str, failure: Status, node: Node | None = None) -> None:
        try:
            splitHostPort(address)
        except ValueError as e:
            self._reply(failure, f"bad target {address!r}: {e}")
            return
        self._state = "dialing"
        self._failure = failure
        self.dialTarget(address, node)

    def isDialing(self) -> bool:
        return self._state == "dialing"

    def targetConnected(self, protocol: Any) -> None:
        self._state = "piping"
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

    # -- UDP (CONNECT and forward mode): frames on the stream, datagrams outside

    def _dialUDP(self, address: str, failure: Status, node: Node | None = None) -> None:
        self._state = "dialing"
        self._failure = failure
        self.node = node
        d = self.dialing = self.options.router.datagram(address, self)
        d.addCallbacks(self._channelReady, self.dialFailed)

    def _channelReady(self, channel: Any) -> None:
        self.dialing = None
        self.options.markNode(self.node, True)
        if self._state != "dialing":
            channel.close()
            return
        self.channel = channel
        self._udpEstablished()

    def _udpEstablished(self) -> None:
        self._state = "udp"
        # The client's side: our stream, from here on length-framed.
        self.stream = LengthFramedChannel(DatagramCallbacks(self._fromClient), self.target)
        self.stream.makeConnection(self.transport)
        self.transport.write(_OK)  # type: ignore[union-attr]
        self.log.info(
            "{peer} {command} {target}/udp user={user!r}: connected",
            peer=self.peer, command=self.command, target=logs.escape(self.target), user=self.user,
        )
        rest, self.parser.remainder = self.parser.remainder, b""
        if rest:
            self.stream.dataReceived(rest)
        if self.clientEOF:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _fromClient(self, datagram: bytes, target: str) -> None:
        if logs.TRACE:
            self.log.debug("{peer} udp -> {n} bytes", peer=self.peer, n=len(datagram))
        self.channel.sendDatagram(datagram, target)

    def datagramReceived(self, data: bytes, addr: str) -> None:
        """
        A datagram from the target: framed to the client, or dropped while
        the stream is full.
        """
        if self._state != "udp":
            return
        if self.stream.sendDatagram(data) and logs.TRACE:
            self.log.debug("{peer} udp <- {n} bytes from {addr}", peer=self.peer, n=len(data), addr=addr)

    def channelClosed(self, reason: Failure | None) -> None:
        if self._state == "udp":
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _udpDone(self, reason: Failure | None) -> None:
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
        self._state = "closed"
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
        self._state = "closed"
        self.error = why
        self._cancelTimeout()
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.log.info("{peer}: closed without reply: {why}", peer=self.peer, why=logs.escape(why))

    def readConnectionLost(self) -> None:
        self.clientEOF = True
        if self._state in ("udp", "bound"):
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif self._state == "piping":
            assert self.pipe is not None
            self.pipe.readEOF(A)
        elif self._state == "request":
            self._closeSilently(f"peer closed before a complete request ({self.parser.buffered} bytes read)")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancelTimeout()
        state, self._state = self._state, "closed"
        if state == "piping":
            assert self.pipe is not None
            self.pipe.connectionLost(A, reason)
        elif state == "udp":
            self._udpDone(reason)
        elif state == "bound":
            self.bound.connectionLost(reason)
        elif state == "dialing":
            self.log.info(
                "{peer} {command} {target}/{network}: peer left while dialing",
                peer=self.peer, command=self.command, target=logs.escape(self.target), network=self.network,
            )
            self.cancelDial()
        elif state == "request":
            self.log.info(
                "{peer}: closed before a complete request ({n} bytes read)",
                peer=self.peer, n=self.parser.buffered,
            )


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
