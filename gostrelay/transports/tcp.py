"""
The tcp listener and dialer: plain TCP sockets.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint, IStreamServerEndpoint
from zope.interface import implementer

from gostrelay import workers
from gostrelay.config.model import ConfigError, NodeConfig, ServiceConfig
from gostrelay.interfaces import IDialer, IListener
from gostrelay.router import DEFAULT_DIAL_TIMEOUT, directEndpoint
from gostrelay.wire.address import AddressError, splitHostPort
from gostrelay.workers import reusePortSocket

DEFAULT_BACKLOG = 128


def serverEndpoint(reactor: Any, addr: str, backlog: int = DEFAULT_BACKLOG, where: str = "") -> IStreamServerEndpoint:
    """
    A server endpoint for a GOST service address: C{":8420"} listens on
    every address (dual-stack, as Go does), C{"127.0.0.1:8420"} on one.
    """
    if ":" not in addr:
        raise ConfigError(f"{where}: missing port in address {addr!r}")
    try:
        host, port = splitHostPort(addr)
    except AddressError as e:
        raise ConfigError(f"{where}: bad listen address {addr!r}: {e}") from None

    if workers.REUSE_PORT:
        return _ReusePortEndpoint(reactor, host, port, backlog)
    if host in ("", "::", "[::]"):
        # An IPv6 wildcard socket with IPV6_V6ONLY off accepts IPv4 too;
        # Twisted's TCP6 port leaves V6ONLY at the system default (off on
        # Linux).  Fall back to IPv4 where there is no IPv6.
        return _DualStackEndpoint(reactor, port, backlog)
    if ":" in host:
        return TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=host)
    if host == "localhost":
        host = "127.0.0.1"
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=host)


@implementer(IStreamServerEndpoint)
class _ReusePortEndpoint:
    """
    A listening socket shared with the other workers (C{SO_REUSEPORT}).
    """

    def __init__(self, reactor: Any, host: str, port: int, backlog: int) -> None:
        self.reactor = reactor
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory):  # type: ignore[no-untyped-def]

        host = self.host
        family = socket.AF_INET6 if host in ("", "::") or ":" in host else socket.AF_INET
        if host == "":
            host = "::"
        try:
            sock = reusePortSocket(family, socket.SOCK_STREAM, host, self.port)
        except OSError:
            if family != socket.AF_INET6 or self.host not in ("", "::"):
                return defer.fail()
            family, host = socket.AF_INET, "0.0.0.0"
            try:
                sock = reusePortSocket(family, socket.SOCK_STREAM, host, self.port)
            except OSError:
                return defer.fail()
        try:
            sock.listen(self.backlog)
            port = self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        except Exception:
            return defer.fail()
        finally:
            sock.close()
        return defer.succeed(port)


@implementer(IStreamServerEndpoint)
class _DualStackEndpoint:
    def __init__(self, reactor: Any, port: int, backlog: int) -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory):  # type: ignore[no-untyped-def]

        if socket.has_ipv6:
            try:
                probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                probe.close()
            except OSError:
                pass
            else:
                return TCP6ServerEndpoint(self.reactor, self.port, backlog=self.backlog, interface="::").listen(factory)
        return TCP4ServerEndpoint(self.reactor, self.port, backlog=self.backlog).listen(factory)


@implementer(IListener)
class TCPListener:
    """
    Options (listener metadata): C{backlog} (128).
    """

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        assert service.listener is not None
        backlog = service.listener.md.getInt("backlog") or DEFAULT_BACKLOG
        self.endpoint = serverEndpoint(reactor, service.addr, backlog, service.source or service.name)

    def listen(self, factory: IProtocolFactory):  # type: ignore[no-untyped-def]
        return self.endpoint.listen(factory)


@implementer(IDialer)
class TCPDialer:
    """
    The tcp dialer: a TCP connection to the node, or, behind an earlier
    hop, the tunnel that hop's connector already opened (tcp adds nothing).
    """

    #: A plain TCP connection to the node: a chain may dial it itself
    #: (L{gostrelay.chain.Chain.direct}).
    plainTCP = True

    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        self.reactor = reactor

    #: C{endpoint} takes C{timeout=None}: the caller (a chain under a
    #: router) bounds the attempt, so the TCP connection gets no timer.
    timeoutOptional = True

    def endpoint(
        self, address: str, through: IStreamClientEndpoint | None = None, timeout: float | None = DEFAULT_DIAL_TIMEOUT
    ) -> IStreamClientEndpoint:
        if through is not None:
            return through
        return directEndpoint(self.reactor, address, timeout)
