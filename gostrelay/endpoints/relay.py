"""
Dialing through relay servers: the C{relay:} client endpoint string, one hop
per level of nesting::

    clientFromString(reactor, r"relay:tcp\\:proxy.example\\:8420:host=example.com:port=80")

The first positional argument is the endpoint description of the relay
server (escaped, since it is itself an endpoint string); keywords C{host}
and C{port} name the target, C{username}, C{password} and C{nodelay} are the
relay connector's.  Since the inner description is any endpoint string,
hops nest, at the price of doubling escapes at each level.

L{chainEndpoint} takes GOST C{-F} URLs instead, one per hop::

    chainEndpoint(reactor, ["relay://a:8420", "relay://u:p@b:8420"], "example.com", 80)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint

from gostrelay.build import BuildContext
from gostrelay.chain import Chain
from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ChainConfig, Config, ConfigError
from gostrelay.config.url import parseNodeURL
from gostrelay.connectors.relay import (
    DEFAULT_QUIET_DELAY,
    DEFAULT_RESPONSE_WAIT,
    RelayClientEndpoint,
)
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.wire.address import joinHostPort
from gostrelay.wire.relay import connectRequest


def relayEndpoint(
    reactor: Any,
    server: IStreamClientEndpoint,
    host: str,
    port: int,
    username: str | None = None,
    password: str = "",
    nodelay: bool = False,
    quietDelay: float = DEFAULT_QUIET_DELAY,
    responseWait: float = DEFAULT_RESPONSE_WAIT,
) -> RelayClientEndpoint:
    """
    An endpoint reaching C{host:port} through the relay server that
    C{server} reaches.
    """
    target = joinHostPort(host, int(port))
    request = connectRequest(target, "tcp", username, password).encode()
    return RelayClientEndpoint(
        reactor, server, request, target,
        nodelay=nodelay, quietDelay=quietDelay, responseWait=responseWait, label=repr(server),
    )


def parseRelayClient(reactor: Any, server: str, **kwargs: str) -> RelayClientEndpoint:
    """
    The C{relay:} endpoint string parser (see the module docstring).
    """
    if "host" not in kwargs or "port" not in kwargs:
        raise ValueError("relay: endpoint needs host= and port=")
    md = Metadata(kwargs)
    return relayEndpoint(
        reactor,
        clientFromString(reactor, server),
        kwargs["host"],
        int(kwargs["port"]),
        kwargs.get("username"),
        kwargs.get("password", ""),
        md.getBool("nodelay"),
        md.getDuration("quietDelay", default=DEFAULT_QUIET_DELAY),
        md.getDuration("responseWait", default=DEFAULT_RESPONSE_WAIT),
    )


def chainEndpoint(
    reactor: Any,
    nodes: Sequence[str],
    host: str,
    port: int,
    timeout: float = DEFAULT_DIAL_TIMEOUT,
) -> IStreamClientEndpoint:
    """
    An endpoint reaching C{host:port} through a chain given as GOST C{-F}
    URLs, one hop each, in order (C{"relay+tls://a:8443"}, ...).

    @raise ConfigError: when a URL names a type that is not implemented.
    """
    if not nodes:
        raise ConfigError("chainEndpoint needs at least one node URL")
    config = Config()
    chain = ChainConfig(name="chain-0")
    for i, url in enumerate(nodes):
        chain.hops.append(parseNodeURL(config, url, i))
    config.chains.append(chain)
    built = Chain.fromConfig(reactor, chain, BuildContext(reactor, config), "chainEndpoint")
    return built.endpoint("tcp", joinHostPort(host, int(port)), timeout)
