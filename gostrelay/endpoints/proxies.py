"""
Dialing through standard proxies from any Twisted program: the client
endpoint strings C{socks5:}, C{socks4:} and C{httpconnect:}, which nest like
C{relay:} (see L{gostrelay.endpoints.relay}).

The first positional argument is the endpoint description of the proxy
(escaped, since it is itself an endpoint string); keywords C{host} and
C{port} name the target, C{username} and C{password} the credentials
(SOCKS4: C{username} is the user id), C{timeout} how long the proxy may
take to answer::

    clientFromString(reactor, r"socks5:tcp\\:127.0.0.1\\:1080:host=example.com:port=80")
    clientFromString(reactor,
        r"relay:httpconnect\\:tcp\\\\\\:proxy\\\\\\:3128\\:host\\=relay.example\\:port\\=8420:host=example.com:port=80")

Twisted has no SOCKS client of its own (and txsocksx does not work with
current Twisted): these are the same connectors a GOST chain uses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import AuthConfig, ConnectorConfig, NodeConfig
from gostrelay.connectors.http import HTTPConnector
from gostrelay.connectors.socks import SOCKS4Connector, SOCKS5Connector
from gostrelay.endpoints.carriers import _innerHost
from gostrelay.wire.address import joinHostPort

_TYPES = {"socks5": "socks5", "socks4": "socks4", "httpconnect": "http"}


def proxyEndpoint(
    reactor: Any,
    kind: str,
    proxy: IStreamClientEndpoint,
    host: str,
    port: int,
    username: str | None = None,
    password: str = "",
    timeout: float = 0.0,
    proxyAddress: str = "",
    disable4a: bool = False,
) -> IStreamClientEndpoint:
    """
    An endpoint reaching C{host:port} through the proxy that C{proxy}
    reaches; C{kind} is C{"http"}, C{"socks5"} or C{"socks4"}.
    """
    factories = {"http": HTTPConnector, "socks5": SOCKS5Connector, "socks4": SOCKS4Connector}
    metadata: dict[str, Any] = {"timeout": timeout}
    if disable4a:
        metadata["disable4a"] = True
    node = NodeConfig(
        name=f"{kind} endpoint",
        addr=proxyAddress or repr(proxy),
        connector=ConnectorConfig(
            type=kind,
            auth=AuthConfig(username=username, password=password) if username else None,
            metadata=metadata,
        ),
    )
    connector = factories[kind](reactor, node, None)
    return connector.endpoint(proxy, "tcp", joinHostPort(host, int(port)))  # type: ignore[no-any-return]


def parseProxyClient(reactor: Any, inner: str, kind: str = "socks5", **kwargs: str) -> IStreamClientEndpoint:
    """
    The C{socks5:}, C{socks4:} and C{httpconnect:} endpoint string parsers.
    """
    if "host" not in kwargs or "port" not in kwargs:
        raise ValueError(f"{kind}: endpoint needs host= and port=")

    md = Metadata(kwargs)
    return proxyEndpoint(
        reactor,
        _TYPES.get(kind, kind),
        clientFromString(reactor, inner),
        kwargs["host"],
        int(kwargs["port"]),
        kwargs.get("username") or None,
        kwargs.get("password", ""),
        md.getDuration("timeout"),
        _innerHost(inner) or inner,
        md.getBool("disable4a"),
    )
