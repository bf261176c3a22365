"""
Local TCP port forwarding: the C{tcp} (alias C{forward}) handler of
C{-L tcp://:2222/:22} (spec-relay.md 6.1).

Each accepted connection goes to one of the service's forward targets
(selected by the forwarder's strategy, failures marked), dialed through the
service's chain when it has one, and is then piped.  A service without
targets dials the empty target C{":0"}, which a relay server in forward
mode replaces by its own target (spec-relay.md 6.5).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.errors import DialError
from gostrelay.handlers.relay import _outcome, describeAddress, forwarderSelector, hostOf, serviceBypass
from gostrelay.interfaces import IHandler
from gostrelay.pipe import DEFAULT_HALF_CLOSE_TIMEOUT, DEFAULT_SPLICE_THRESHOLD, A, B, Pipe, PipeSideFactory
from gostrelay.router import Router
from gostrelay.selector import Node
from gostrelay.wire.address import splitHostPort
from gostrelay.wire.proxyheader import encodeHeader

EMPTY_TARGET = ":0"


def _bypassed(bypass: Any, target: str) -> bool:
    """
    Whether a forward target matches the service's bypass (GOST's forward
    handlers refuse those, as its proxy handlers do).
    """
    try:
        host, port = splitHostPort(target)
    except ValueError:
        return False
    return bool(bypass.contains(host, port))


@implementer(IHalfCloseableProtocol)
class ForwardProtocol(Protocol):
    _state = "dialing"
    _dial: Any = None
    error: str | None = None

    def __init__(self, handler: TCPForwardHandler) -> None:
        self.handler = handler
        self.reactor = handler.reactor
        self.log = handler.log
        self.pipe = Pipe(self.reactor, handler.idleTimeout, self._pipeDone, splice=handler.splice, halfCloseTimeout=handler.halfCloseTimeout, spliceThreshold=handler.spliceThreshold)
        self.target = EMPTY_TARGET
        self.node: Node | None = None
        self.peer = ""
        self._started = 0.0
        self._eof = False

    def connectionMade(self) -> None:
        self.peer = describeAddress(self.transport.getPeer())  # type: ignore[union-attr]
        self.pipe.label = self.peer
        self._started = self.reactor.seconds()
        self.transport.pauseProducing()  # type: ignore[union-attr]
        handler = self.handler
        if handler.forwarder is not None:
            self.node = handler.forwarder.select(hostOf(self.transport.getPeer()))  # type: ignore[union-attr]
            if self.node is not None:
                self.target = self.node.addr
        if handler.bypass and _bypassed(handler.bypass, self.target):
            self._state = "closed"
            self.error = "target matches the service bypass"
            self.log.info("{peer} -> {target}: refused: target matches the service bypass", peer=self.peer, target=self.target)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        origin = (self.transport.getPeer(), self.transport.getHost())  # type: ignore[union-attr]
        d = handler.router.connect("tcp", self.target, PipeSideFactory(self.pipe, B), origin=origin)
        self._dial = d
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol: Any) -> None:
        self._dial = None
        if self.node is not None and self.handler.forwarder is not None:
            self.handler.forwarder.markSucceeded(self.node)
        if self._state != "dialing":
            protocol.transport.loseConnection()
            return
        self._state = "piping"
        version = self.handler.proxyHeaderFor(self.node)
        if version:
            # GOST's proxyProtocol on a forwarder: the target learns the
            # original client (across a reverse tunnel, the visitor the
            # relay server named) and the address it connected to.
            header = encodeHeader(version, self.transport.getPeer(), self.transport.getHost())  # type: ignore[union-attr]
            protocol.transport.write(header)
        self.log.info(
            "{peer} -> {target}: connected", peer=self.peer, target=self.target,
        )
        self.pipe.attach(A, self.transport)  # type: ignore[arg-type]
        if self._eof:
            self.pipe.readEOF(A)
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _failed(self, reason: Failure) -> None:
        self._dial = None
        if self._state != "dialing":
            return
        if self.node is not None and self.handler.forwarder is not None:
            self.handler.forwarder.markFailed(self.node)
        self._state = "closed"
        why = reason.getErrorMessage() if reason.check(DialError) else str(reason.value)
        self.error = why
        self.log.info("{peer} -> {target}: failed: {why}", peer=self.peer, target=self.target, why=why)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _pipeDone(self, pipe: Pipe, reason: Failure | None) -> None:
        metrics.transferred(self.handler.service.name, pipe.transferred[A], pipe.transferred[B])

        self.log.info(
            "{peer} -> {target}: closed, {up} bytes up, {down} bytes down, {duration:.3f}s, {outcome}",
            peer=self.peer,
            target=self.target,
            up=pipe.transferred[A],
            down=pipe.transferred[B],
            duration=self.reactor.seconds() - self._started,
            outcome="idle timeout" if pipe.idleTimedOut else _outcome(reason),
        )

    def dataReceived(self, data: bytes) -> None:
        self.pipe.dataReceived(A, data)

    def readConnectionLost(self) -> None:
        self._eof = True
        if self._state == "piping":
            self.pipe.readEOF(A)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        state, self._state = self._state, "closed"
        if state == "piping":
            self.pipe.connectionLost(A, reason)
        elif state == "dialing" and self._dial is not None:
            self.log.info("{peer} -> {target}: peer left while dialing", peer=self.peer, target=self.target)
            self._dial.cancel()


@implementer(IHandler)
class TCPForwardHandler(Factory):
    """
    Options: C{idleTimeout} (handler metadata, 0 = none); C{dialTimeout}
    (service metadata, 15 s); C{retries} (handler); C{proxyProtocol} (1 or
    2: a PROXY header naming the client first on every target connection;
    handler metadata, or a forwarder node's own metadata).
    """

    noisy = False

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        handler = service.handler
        assert handler is not None
        self.reactor = reactor
        self.service = service
        self.log = Logger(namespace=f"gostrelay.forward.{service.name}")
        self.idleTimeout = max(0.0, handler.md.getDuration("idleTimeout"))
        # Ours: move plain TCP pipes with splice(2) (gostrelay.splice).
        self.splice = handler.md.getBool("splice", default=True)
        # Ours: bytes a pipe moves in userspace before it splices.
        self.spliceThreshold = max(0, handler.md.getInt("spliceThreshold", default=DEFAULT_SPLICE_THRESHOLD))
        # Ours: how long one direction may go on after the other finished.
        self.halfCloseTimeout = handler.md.getDuration("halfCloseTimeout", default=DEFAULT_HALF_CLOSE_TIMEOUT)
        self.forwarder = forwarderSelector(service, reactor)
        where = service.source or service.name
        self.router: Router = context.router(service, handler.chain, where)
        self.bypass = serviceBypass(service, context.config, where)
        self.proxyProtocol = handler.md.getInt("proxyProtocol")
        for node in service.forwarder.nodes if service.forwarder is not None else []:
            if node.md.getInt("proxyProtocol") not in (0, 1, 2):
                raise ConfigError(f"{where}: forwarder node {node.name}: proxyProtocol: 1 or 2 (PROXY protocol version)")

    def proxyHeaderFor(self, node: Node | None) -> int:
        """
        The PROXY protocol version to send to C{node}'s target (0: none).
        """
        if node is not None:
            version = node.metadata.getInt("proxyProtocol")
            if version:
                return version
        return self.proxyProtocol

    def buildProtocol(self, addr: IAddress | None) -> ForwardProtocol:
        return ForwardProtocol(self)
