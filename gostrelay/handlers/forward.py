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

from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.handlers.base import EMPTY_TARGET, PipingProtocol, StreamHandler, hostOf
from gostrelay.interfaces import IHandler
from gostrelay.pipe import A, B, Pipe
from gostrelay.selector import Node
from gostrelay.wire.proxyheader import encodeHeader


class ForwardProtocol(PipingProtocol):
    _state = "dialing"

    def __init__(self, handler: TCPForwardHandler) -> None:
        super().__init__(handler)
        self.handler = handler
        self.target = EMPTY_TARGET

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.pauseProducing()  # type: ignore[union-attr]
        options = self.options
        node = None
        if options.forwarder is not None:
            node = options.forwarder.select(hostOf(self.transport.getPeer()))  # type: ignore[union-attr]
            if node is not None:
                self.target = node.addr
        if options.bypasses(self.target):
            self._state = "closed"
            self.error = "target matches the service bypass"
            self.log.info("{peer} -> {target}: refused: target matches the service bypass", peer=self.peer, target=self.target)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.dialTarget(self.target, node)

    def isDialing(self) -> bool:
        return self._state == "dialing"

    def targetConnected(self, protocol: Any) -> None:
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

    def targetRefused(self, reason: Failure) -> None:
        # No target guard on a forwarder: a refusal is a failure.
        self.targetFailed(reason, str(reason.value))

    def targetFailed(self, reason: Failure, why: str) -> None:
        self._state = "closed"
        self.error = why
        self.log.info("{peer} -> {target}: failed: {why}", peer=self.peer, target=self.target, why=why)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def pipeClosed(self, pipe: Pipe, outcome: str) -> None:
        self.log.info(
            "{peer} -> {target}: closed, {up} bytes up, {down} bytes down, {duration:.3f}s, {outcome}",
            peer=self.peer,
            target=self.target,
            up=pipe.transferred[A],
            down=pipe.transferred[B],
            duration=self.reactor.seconds() - self.started,
            outcome=outcome,
        )

    def dataReceived(self, data: bytes) -> None:
        pipe = self.pipe
        if pipe is not None:
            pipe.dataReceived(A, data)

    def readConnectionLost(self) -> None:
        self.clientEOF = True
        if self._state == "piping":
            assert self.pipe is not None
            self.pipe.readEOF(A)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        state, self._state = self._state, "closed"
        if state == "piping":
            assert self.pipe is not None
            self.pipe.connectionLost(A, reason)
        elif state == "dialing" and self.dialing is not None:
            self.log.info("{peer} -> {target}: peer left while dialing", peer=self.peer, target=self.target)
            self.cancelDial()


@implementer(IHandler)
class TCPForwardHandler(StreamHandler):
    """
    Options: C{idleTimeout} (handler metadata, 0 = none) and the pipe's
    (L{HandlerOptions}); C{dialTimeout} (service metadata, 15 s);
    C{retries} (handler); C{proxyProtocol} (1 or 2: a PROXY header naming
    the client first on every target connection; handler metadata, or a
    forwarder node's own metadata).
    """

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        super().__init__(reactor, service, context, "forward")
        handler = service.handler
        assert handler is not None
        self.proxyProtocol = handler.md.getInt("proxyProtocol")
        for node in service.forwarder.nodes if service.forwarder is not None else []:
            if node.md.getInt("proxyProtocol") not in (0, 1, 2):
                raise ConfigError(
                    f"{self.options.where}: forwarder node {node.name}: proxyProtocol: 1 or 2 (PROXY protocol version)"
                )

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
