"""
The C{srctcp} dialer: TCP to a chain node from a chosen source address
(C{source}, dialer or node metadata), e.g. to leave by one of several
addresses of the host: C{-F "relay+srctcp://server:8420?source=192.0.2.7"}.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.interfaces import IDialer
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.wire.address import splitHostPort


@implementer(IDialer)
class SourceTCPDialer:
    """
    Options: C{source} (an IP address; required).
    """

    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        where = node.source or node.name
        md = node.dialer.md if node.dialer is not None else node.md
        source = md.getString("source")
        try:
            ipaddress.ip_address(source)
        except ValueError:
            raise ConfigError(f"{where}: srctcp needs source=IP, not {source!r}") from None
        self.reactor = reactor
        self.source = source

    def endpoint(
        self, address: str, through: IStreamClientEndpoint | None = None, timeout: float = DEFAULT_DIAL_TIMEOUT
    ) -> IStreamClientEndpoint:
        if through is not None:
            # Behind an earlier hop the tunnel is already there: a TCP
            # dialer adds no layer of its own.
            return through
        host, port = splitHostPort(address)
        return HostnameEndpoint(self.reactor, host.encode("idna") if host else b"127.0.0.1", port,
                                timeout=timeout, bindAddress=(self.source, 0))


def parseSourceTCPClient(reactor: Any, *args: str, **kwargs: str) -> IStreamClientEndpoint:
    """
    The C{srctcp:} client endpoint string: C{srctcp:HOST:PORT:source=ADDR}
    (or C{host=}, C{port=}), C{timeout} in seconds (15).  Bad input is a
    C{ValueError}, as Twisted's own parsers raise.
    """
    host = args[0] if args else kwargs.pop("host", "")
    port = args[1] if len(args) > 1 else kwargs.pop("port", "")
    source = kwargs.pop("source", "")
    timeout = float(kwargs.pop("timeout", DEFAULT_DIAL_TIMEOUT))
    if kwargs or len(args) > 2:
        raise ValueError(f"srctcp: unknown arguments {sorted(kwargs) or list(args[2:])}")
    if not host or not str(port).isdigit():
        raise ValueError("srctcp: needs HOST:PORT")
    try:
        ipaddress.ip_address(source)
    except ValueError:
        raise ValueError(f"srctcp: needs source=IP, not {source!r}") from None
    return HostnameEndpoint(reactor, host.encode("idna"), int(port), timeout=timeout, bindAddress=(source, 0))
