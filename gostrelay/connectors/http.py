"""
The C{http} connector: a chain hop through an HTTP proxy by C{CONNECT}
(GOST's connector/http), over any dialer.

Options (connector metadata, GOST's names): C{timeout} (how long the
proxy may take to answer, 0 = only the dial timeout), C{header} (a map of
extra request headers, YAML only).  Credentials come from the URL's
userinfo or C{auth} and go as C{Proxy-Authorization: Basic}.  UDP goes by
GOST's UDP tunnel (C{X-Gost-Protocol: udp}), which GOST's own HTTP proxy
serves with C{udp=true}; other HTTP proxies refuse it.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.connectors.carrier import nodeCredentials
from gostrelay.connectors.handshake import HandshakeEndpoint, nodeLabel
from gostrelay.errors import UnsupportedNetwork
from gostrelay.interfaces import IConnector
from gostrelay.wire.address import AddressError, joinHostPort, splitHostPort
from gostrelay.wire.httpconnect import HTTPConnectHandshake


def _headers(value: Any, where: str) -> list[tuple[str, str]]:
    if not value:
        return []
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: connector option header must be a map of header names to values")
    return [(str(k), str(v)) for k, v in value.items()]


@implementer(IConnector)
class HTTPConnector:
    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        assert node.connector is not None
        where = node.source or node.name
        md = node.connector.md
        self.reactor = reactor
        self.proxy = node.addr
        self.label = nodeLabel(node, context, "http")
        self.timeout = md.getDuration("timeout")
        self.headers = _headers(node.connector.metadata.get("header"), where)
        self.username, self.password = nodeCredentials(node, where)
        try:
            HTTPConnectHandshake("check:1", self.username, self.password, self.headers)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None

    def endpoint(self, through: Any, network: str, address: str) -> HandshakeEndpoint:
        udp = network in ("udp", "udp4", "udp6")
        if not udp and network not in ("tcp", "tcp4", "tcp6"):
            raise UnsupportedNetwork(f"http connector: network {network!r} is not supported")
        try:
            host, port = splitHostPort(address)
        except AddressError as e:
            raise UnsupportedNetwork(f"http connector: bad target {address!r}: {e}") from None
        authority = joinHostPort(host, port)
        return HandshakeEndpoint(
            self.reactor, through,
            lambda: HTTPConnectHandshake(authority, self.username, self.password, self.headers, udp=udp),
            self.proxy, self.label, address, self.timeout, udp=udp,
        )
