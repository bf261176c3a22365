"""
What every handler shares: its options, read once per service
(L{HandlerOptions}), and the one path from a client whose target is known
to a pipe to that target (L{PipingProtocol}): dial through the service's
router, mark the forwarder node, reply, pipe, and at the end count and log.

The handlers differ in how they learn the target (a relay request, a SOCKS
or HTTP request, a forwarder node) and in what they answer; those are the
hooks a L{PipingProtocol} fills in.  Nothing here is per-connection
parsing: a connection reads its handler's L{HandlerOptions} as they are.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics
from gostrelay.auth import Authenticator, authenticatorFor, emptyUserWarning
from gostrelay.bypass import bypassesFor
from gostrelay.config.model import ServiceConfig
from gostrelay.errors import TargetRefused, describeFailure
from gostrelay.guard import TargetGuard
from gostrelay.logs import Logger
from gostrelay.pipe import DEFAULT_HALF_CLOSE_TIMEOUT, DEFAULT_SPLICE_THRESHOLD, A, B, Pipe, PipeSideFactory
from gostrelay.router import Router
from gostrelay.selector import Node, Selector
from gostrelay.tracking import describePeer
from gostrelay.wire.address import splitHostPort

#: How long a client has to send its whole request (handler C{readTimeout}).
DEFAULT_READ_TIMEOUT = 15.0

#: The target of a forwarder without nodes: a relay server in forward mode
#: replaces it by its own (spec-relay.md 6.5).
EMPTY_TARGET = ":0"


def hostOf(address: IAddress | None) -> str:
    """
    The IP of C{address} as Go's C{SplitHostPort} gives it (no brackets;
    IPv4-mapped IPv6 as plain IPv4): a forwarder's client ID.
    """
    host = getattr(address, "host", None)
    if host is None:
        return ""
    if host.startswith("::ffff:") and "." in host:
        return str(host[len("::ffff:") :])
    return str(host)


def forwarderSelector(service: ServiceConfig, clock: IReactorTime) -> Selector | None:
    """
    The selector over a service's forwarder nodes, or C{None} without a
    forwarder.
    """
    forwarder = service.forwarder
    if forwarder is None or not forwarder.nodes:
        return None
    nodes = [Node(n.name, n.addr, n.md, value=n) for n in forwarder.nodes]
    return Selector.fromConfig(nodes, forwarder.selector, clock, f"{service.name}.forwarder.selector")


def dialFailureText(reason: Failure) -> str:
    """
    Why a dial failed, for a log line: the error's own text (a
    L{gostrelay.router.DialError} names the route and the hop).
    """
    return reason.getErrorMessage()


class HandlerOptions:
    """
    The options every handler reads, parsed once when its service is built
    (L{fromService}), shared by all of its connections.

    @ivar readTimeout: how long a client may take over its request.
    @ivar idleTimeout: a pipe with no bytes either way for this long closes
        (0: never).
    @ivar splice: whether plain TCP pipes move to splice(2) (ours).
    @ivar spliceThreshold: bytes a pipe moves in userspace first (ours).
    @ivar halfCloseTimeout: how long one direction may go on after the
        other finished (ours).
    @ivar router: the service's outgoing dials (its chain, or direct).
    @ivar bypass: the service's bypasses: targets it refuses.
    @ivar forwarder: the selector over the service's forward targets, or
        C{None}.
    @ivar authenticator: the users a client must be one of, or C{None}.
    @ivar denyPrivate: whether private targets are refused (ours).
    @ivar guard: the router's target guard, or C{None}.
    """

    __slots__ = (
        "reactor", "service", "where", "readTimeout", "idleTimeout", "splice", "spliceThreshold",
        "halfCloseTimeout", "router", "bypass", "forwarder", "authenticator", "denyPrivate", "guard",
        "_users",
    )

    def __init__(self, reactor: Any, service: ServiceConfig, router: Router) -> None:
        self.reactor = reactor
        self.service = service
        self.where = service.source or service.name
        self.readTimeout = DEFAULT_READ_TIMEOUT
        self.idleTimeout = 0.0
        self.splice = True
        self.spliceThreshold = DEFAULT_SPLICE_THRESHOLD
        self.halfCloseTimeout = DEFAULT_HALF_CLOSE_TIMEOUT
        self.router = router
        self.bypass: Any = None
        self.forwarder: Selector | None = None
        self.authenticator: Authenticator | None = None
        self.denyPrivate = False
        self.guard: TargetGuard | None = None
        self._users: tuple[Any, ...] | None = None

    @classmethod
    def fromService(
        cls, reactor: Any, service: ServiceConfig, context: Any, log: Logger,
        *, authenticates: bool = False, guardsTargets: bool = False,
    ) -> HandlerOptions:
        """
        The options of C{service}'s handler.  C{authenticates}: it checks
        users (and warns, once, of a password without a user name);
        C{guardsTargets}: its router refuses private targets under
        C{denyPrivate} and the bypass's C{private} matcher.
        """
        handler = service.handler
        assert handler is not None
        md = handler.md
        where = service.source or service.name
        options = cls(reactor, service, context.router(service, handler.chain, where))
        readTimeout = md.getDuration("readTimeout")
        if readTimeout > 0:
            options.readTimeout = readTimeout
        options.idleTimeout = max(0.0, md.getDuration("idleTimeout"))
        options.splice = md.getBool("splice", default=True)
        options.spliceThreshold = max(0, md.getInt("spliceThreshold", default=DEFAULT_SPLICE_THRESHOLD))
        options.halfCloseTimeout = md.getDuration("halfCloseTimeout", default=DEFAULT_HALF_CLOSE_TIMEOUT)
        options.forwarder = forwarderSelector(service, reactor)
        options.bypass = bypassesFor([service.bypass, *service.bypasses], context.config, where)
        if authenticates:
            options._users = (handler, context.config, where)
            options.authenticator = authenticatorFor(handler, context.config, where)
            warning = emptyUserWarning(handler)
            if warning:
                # The service name, not its source: the URL holds the password.
                log.warn("service {name}: {text}", name=service.name, text=warning)
        if guardsTargets:
            options.denyPrivate = md.getBool("denyPrivate")
            options.guard = TargetGuard.forHandler(reactor, options.denyPrivate, options.bypass)
            options.router.guard = options.guard
        return options

    def reload(self) -> None:
        """
        Re-read users files (SIGHUP); on an error the previous users stay.
        """
        if self._users is not None:
            self.authenticator = authenticatorFor(*self._users)

    def bypasses(self, target: str) -> bool:
        """
        Whether C{target} (C{host:port}) matches the service's bypass: the
        handler refuses it.
        """
        if not self.bypass:
            return False
        try:
            host, port = splitHostPort(target)
        except ValueError:
            return False
        return bool(self.bypass.contains(host, port))

    def markNode(self, node: Node | None, succeeded: bool) -> None:
        """
        Tell the forwarder how a dial of C{node} went (failed nodes rest).
        """
        if node is not None and self.forwarder is not None:
            if succeeded:
                self.forwarder.markSucceeded(node)
            else:
                self.forwarder.markFailed(node)


class _DelegatedOption:
    """
    A handler attribute that lives in its L{HandlerOptions}.

    Handlers kept these options as their own attributes before they moved to
    C{handler.options}; embedders (tests, L{gostrelay.testing}-style
    harnesses) assign C{handler.router = ...}.  Without this, such an
    assignment would set a new attribute nobody reads while every connection
    went on using C{handler.options.router}: a silent no-op.  Reading and
    assigning through the handler reaches the shared options instead.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, handler: Any, owner: type | None = None) -> Any:
        if handler is None:
            return self
        return getattr(handler.options, self.name)

    def __set__(self, handler: Any, value: Any) -> None:
        setattr(handler.options, self.name, value)


class Handler:
    """
    A handler of one service: its reactor, logger and L{HandlerOptions}.

    The options' names are also readable and assignable on the handler
    itself (C{handler.router} is C{handler.options.router}); see
    L{_DelegatedOption}.

    @cvar authenticates: the handler checks users (see
        L{HandlerOptions.fromService}).
    @cvar guardsTargets: the handler's router guards targets.
    """

    authenticates = False
    guardsTargets = False

    readTimeout = _DelegatedOption()
    idleTimeout = _DelegatedOption()
    splice = _DelegatedOption()
    spliceThreshold = _DelegatedOption()
    halfCloseTimeout = _DelegatedOption()
    router = _DelegatedOption()
    bypass = _DelegatedOption()
    forwarder = _DelegatedOption()
    authenticator = _DelegatedOption()
    denyPrivate = _DelegatedOption()
    guard = _DelegatedOption()

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any, kind: str) -> None:
        self.reactor = reactor
        self.service = service
        self.name = service.name
        self.log = Logger(namespace=f"gostrelay.{kind}.{service.name}")
        self.options = HandlerOptions.fromService(
            reactor, service, context, self.log,
            authenticates=self.authenticates, guardsTargets=self.guardsTargets,
        )


class StreamHandler(Handler, Factory):
    """
    A handler of stream connections (L{buildProtocol}).
    """

    noisy = False


@implementer(IHalfCloseableProtocol)
class PipingProtocol(Protocol):
    """
    A client connection that ends in a pipe to a target its handler dials.

    L{dialTarget} dials; the subclass says whether it still waits for that
    dial (L{isDialing}: the client may have left; or it takes the outcome
    itself, L{dialSucceeded} and L{dialFailed}), answers the client
    (L{targetConnected}, L{targetRefused}, L{targetFailed}), gives the
    bytes it read ahead (L{takeBuffered}) and logs the end
    (L{pipeClosed}).  The connection arrives paused while dialing; once
    piped it is resumed.

    @ivar clientEOF: the client finished writing before the pipe was there.
    """

    pipe: Pipe | None = None
    node: Node | None = None
    #: The pending dial (a L{Deferred}), cancelled if the client leaves.
    dialing: Deferred[Any] | None = None
    #: Why the connection failed, for the request metrics.
    error: str | None = None

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.options: HandlerOptions = handler.options
        self.reactor = handler.reactor
        self.log: Logger = handler.log
        self.peer = ""
        self.target = ""
        self.clientEOF = False
        self.started = 0.0

    def connectionMade(self) -> None:
        self.peer = describePeer(self.transport.getPeer())  # type: ignore[union-attr]
        self.started = self.reactor.seconds()

    # -- what a subclass says

    def isDialing(self) -> bool:
        """
        Whether the connection still waits for its dial.
        """
        raise NotImplementedError()

    def targetConnected(self, protocol: Any) -> None:
        """
        The target is connected: move to piping, answer the client, log.
        """
        raise NotImplementedError()

    def targetRefused(self, reason: Failure) -> None:
        """
        The target guard refused the target (L{TargetRefused}).
        """
        raise NotImplementedError()

    def targetFailed(self, reason: Failure, why: str) -> None:
        """
        The dial failed; C{why} says why in one line.
        """
        raise NotImplementedError()

    def takeBuffered(self) -> bytes:
        """
        Client bytes read past the request, to go first through the pipe.
        """
        return b""

    def pipeClosed(self, pipe: Pipe, outcome: str) -> None:
        """
        Log the end of the pipe (the byte counts are in C{pipe}).
        """
        raise NotImplementedError()

    # -- the path

    def dialTarget(self, target: str, node: Node | None = None, sideFactory: Callable[[Pipe], Factory] | None = None) -> None:
        """
        Dial C{target} through the service's router (C{node}: the forwarder
        node it came from) and pipe the client to it.  C{sideFactory} builds
        the target side's factory from the pipe (default: a plain
        L{PipeSideFactory}).
        """
        options = self.options
        self.node = node
        self.pipe = pipe = Pipe(
            self.reactor, options.idleTimeout, self._pipeDone, label=self.peer, splice=options.splice,
            halfCloseTimeout=options.halfCloseTimeout, spliceThreshold=options.spliceThreshold,
        )
        transport = self.transport
        router = options.router
        d = router.connect(
            "tcp", target, PipeSideFactory(pipe, B) if sideFactory is None else sideFactory(pipe),
            # The client's addresses, for a chain sending PROXY headers only.
            origin=(transport.getPeer(), transport.getHost()) if getattr(router, "wantsOrigin", True) else None,  # type: ignore[union-attr]
        )
        self.dialing = d
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol: Any) -> None:
        self.dialing = None
        self.options.markNode(self.node, True)
        self.dialSucceeded(protocol)

    def _failed(self, reason: Failure) -> None:
        self.dialing = None
        self.dialFailed(reason)

    def dialSucceeded(self, protocol: Any) -> None:
        """
        The dial succeeded: pipe to C{protocol}'s target, unless the client
        left meanwhile.
        """
        if self.isDialing():
            self.pipeTo(protocol)
        else:
            protocol.transport.loseConnection()

    def dialFailed(self, reason: Failure) -> None:
        """
        A dial (of a stream or a datagram channel) failed: answered unless
        the client left meanwhile.
        """
        if self.isDialing():
            self.answerDialFailure(reason)

    def pipeTo(self, protocol: Any) -> None:
        """
        Answer the client and pipe it to C{protocol}'s target: the bytes it
        sent ahead first, then the end of its input if it came already.
        """
        self.targetConnected(protocol)
        pipe = self.pipe
        assert pipe is not None
        pipe.attach(A, self.transport)  # type: ignore[arg-type]
        rest = self.takeBuffered()
        if rest:
            pipe.dataReceived(A, rest)
        if self.clientEOF:
            pipe.readEOF(A)
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def answerDialFailure(self, reason: Failure) -> None:
        """
        The guard's refusal, or the failure (its forwarder node marked).
        """
        if reason.check(TargetRefused):
            self.targetRefused(reason)
            return
        self.options.markNode(self.node, False)
        self.targetFailed(reason, dialFailureText(reason))

    def _pipeDone(self, pipe: Pipe, reason: Failure | None) -> None:
        metrics.transferred(self.options.service.name, pipe.transferred[A], pipe.transferred[B])
        self.pipeClosed(pipe, "idle timeout" if pipe.idleTimedOut else describeFailure(reason))

    def readConnectionLost(self) -> None:
        self.clientEOF = True

    def writeConnectionLost(self) -> None:
        pass

    def cancelDial(self) -> None:
        """
        Cancel the pending dial, if any (the client left).
        """
        d, self.dialing = self.dialing, None
        if d is not None:
            d.cancel()
