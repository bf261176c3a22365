"""
The C{echo} handler: every byte a peer sends comes back.

What a handler must honour, shown small:

  - back-pressure: the peer's transport is registered as the producer of
    its own writes, so a peer that does not read stops being read;
  - timeouts: C{idleTimeout} (handler metadata, 5 minutes by default)
    closes a connection that is silent for that long;
  - metrics: bytes in and out are reported once per connection with
    L{gostrelay.metrics.transferred} (a no-op without C{metrics:}); the
    connection counts, limits and graceful stop come from the service
    wrapper around every handler;
  - bad options are a L{ConfigError} naming where they came from.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.interfaces import IHandler

DEFAULT_IDLE_TIMEOUT = 300.0


class EchoProtocol(Protocol, TimeoutMixin):
    def __init__(self, handler: EchoHandler, addr: Any) -> None:
        self.handler = handler
        self.addr = addr
        self.received = 0

    def connectionMade(self) -> None:
        self.callLater = self.handler.reactor.callLater  # type: ignore[method-assign]  # TimeoutMixin's clock
        self.setTimeout(self.handler.idleTimeout)
        # The transport produces what we write: when its write buffer is
        # full it pauses itself (reading), which stops the peer.
        self.transport.registerProducer(self.transport, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        self.handler.log.info(
            "{service}: {peer} idle for {t:g}s; closing",
            service=self.handler.name, peer=getattr(self.addr, "host", "?"), t=self.handler.idleTimeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        metrics.transferred(self.handler.name, self.received, self.received)


@implementer(IHandler)
class EchoHandler(Factory):
    """
    Options (handler metadata): C{idleTimeout} (duration, 300 s; 0 = none).
    """

    noisy = False

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        assert service.handler is not None
        where = service.source or service.name
        md = service.handler.md
        self.reactor = reactor
        self.name = service.name
        self.log = Logger(namespace=f"gostrelay_echo.{service.name}")
        idle = md.getDuration("idleTimeout", default=DEFAULT_IDLE_TIMEOUT)
        if idle < 0:
            raise ConfigError(f"{where}: echo idleTimeout must not be negative")
        self.idleTimeout = idle or None

    def buildProtocol(self, addr: Any) -> EchoProtocol:
        return EchoProtocol(self, addr)
